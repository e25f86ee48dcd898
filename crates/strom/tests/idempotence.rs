//! The idempotent producer: through `rdkafka` (no duplicates, in order) and at the wire level
//! (a retried batch is acknowledged once with its original offset; a sequence gap is refused).

mod common;

use bytes::Bytes;
use common::{create_topic, numbered, start, utf8};
use kafka_protocol::records::Compression;
use rdkafka::Offset;
use strom_testkit::wire::{record_batch, BatchProducer};
use strom_testkit::{Consumer, Producer};

/// OUT_OF_ORDER_SEQUENCE_NUMBER.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

#[test]
fn idempotent_producer_writes_each_record_once_in_order() {
    let broker = start();
    create_topic(&broker, "idem", 2);
    let producer = Producer::new(
        &broker.bootstrap(),
        &[("enable.idempotence", "true"), ("linger.ms", "2")],
    );
    let mut recs = numbered("p0", 2000, 0);
    recs.extend(numbered("p1", 500, 1));
    let delivered = producer.send_all_ok("idem", &recs);
    for (i, d) in delivered[..2000].iter().enumerate() {
        assert_eq!((d.partition, d.offset), (0, i as i64));
    }

    let consumer = Consumer::new(&broker.bootstrap());
    for (partition, prefix, count) in [(0, "p0", 2000), (1, "p1", 500)] {
        let records = consumer.read_to_end("idem", partition, Offset::Beginning);
        assert_eq!(records.len(), count, "partition {partition}");
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.offset, i as i64);
            assert_eq!(utf8(&record.value), format!("{prefix}-{i}"));
        }
    }
}

fn values(prefix: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| format!("{prefix}-{i}").into_bytes()).collect()
}

fn batch(values: &[Vec<u8>], producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Bytes {
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    record_batch(
        &values,
        BatchProducer {
            producer_id,
            producer_epoch,
            base_sequence,
        },
        Compression::None,
        1_700_000_000_000,
    )
}

#[test]
fn a_retried_batch_is_acknowledged_with_its_first_offset_and_stored_once() {
    let broker = start();
    create_topic(&broker, "retry", 1);
    let mut wire = broker.wire();
    let (producer_id, epoch) = wire.init_producer_id().expect("InitProducerId");
    assert!(producer_id >= 0, "producer id {producer_id}");

    let first = batch(&values("a", 3), producer_id, epoch, 0);
    let original = wire.produce("retry", 0, first.clone(), -1).unwrap();
    assert_eq!(original.error_code, 0, "{original:?}");
    assert_eq!(original.base_offset, 0);
    // The same batch again, as a producer whose acknowledgement was lost would send it.
    let retried = wire.produce("retry", 0, first, -1).unwrap();
    assert_eq!(retried.error_code, 0, "duplicate must succeed: {retried:?}");
    assert_eq!(retried.base_offset, original.base_offset);

    let next = wire
        .produce("retry", 0, batch(&values("b", 2), producer_id, epoch, 3), -1)
        .unwrap();
    assert_eq!((next.error_code, next.base_offset), (0, 3), "{next:?}");

    let records = Consumer::new(&broker.bootstrap()).read_to_end("retry", 0, Offset::Beginning);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(read, ["a-0", "a-1", "a-2", "b-0", "b-1"]);
}

#[test]
fn a_sequence_gap_is_out_of_order_and_changes_nothing() {
    let broker = start();
    create_topic(&broker, "gap", 1);
    let mut wire = broker.wire();
    let (producer_id, epoch) = wire.init_producer_id().unwrap();

    let ok = wire
        .produce("gap", 0, batch(&values("a", 3), producer_id, epoch, 0), -1)
        .unwrap();
    assert_eq!(ok.error_code, 0, "{ok:?}");
    // Sequence 3 is expected next; 10 leaves a gap.
    let gap = wire
        .produce("gap", 0, batch(&values("lost", 2), producer_id, epoch, 10), -1)
        .unwrap();
    assert_eq!(gap.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER, "{gap:?}");
    // The refused batch did not advance the expected sequence.
    let resumed = wire
        .produce("gap", 0, batch(&values("b", 1), producer_id, epoch, 3), -1)
        .unwrap();
    assert_eq!((resumed.error_code, resumed.base_offset), (0, 3), "{resumed:?}");

    let records = Consumer::new(&broker.bootstrap()).read_to_end("gap", 0, Offset::Beginning);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(read, ["a-0", "a-1", "a-2", "b-0"]);
}

#[test]
fn producers_get_distinct_ids_and_sequences_are_per_producer() {
    let broker = start();
    create_topic(&broker, "two-producers", 1);
    let mut wire = broker.wire();
    let (first_id, first_epoch) = wire.init_producer_id().unwrap();
    let (second_id, second_epoch) = wire.init_producer_id().unwrap();
    assert_ne!(first_id, second_id);
    // Both start at sequence 0 on the same partition; neither is a duplicate of the other.
    let a = wire
        .produce("two-producers", 0, batch(&values("x", 2), first_id, first_epoch, 0), -1)
        .unwrap();
    let b = wire
        .produce(
            "two-producers",
            0,
            batch(&values("y", 2), second_id, second_epoch, 0),
            -1,
        )
        .unwrap();
    assert_eq!((a.error_code, a.base_offset), (0, 0), "{a:?}");
    assert_eq!((b.error_code, b.base_offset), (0, 2), "{b:?}");
}

#[test]
fn duplicate_detection_survives_a_restart() {
    let mut broker = start();
    create_topic(&broker, "idem-restart", 1);
    let (producer_id, epoch, first) = {
        let mut wire = broker.wire();
        let (producer_id, epoch) = wire.init_producer_id().unwrap();
        let first = batch(&values("a", 4), producer_id, epoch, 0);
        let response = wire.produce("idem-restart", 0, first.clone(), -1).unwrap();
        assert_eq!((response.error_code, response.base_offset), (0, 0));
        (producer_id, epoch, first)
    };
    broker.sigkill();
    broker.restart();

    // The producer, not knowing whether its batch landed, retries it after the crash.
    let mut wire = broker.wire();
    let retried = wire.produce("idem-restart", 0, first, -1).unwrap();
    assert_eq!(
        (retried.error_code, retried.base_offset),
        (0, 0),
        "retry after restart: {retried:?}"
    );
    let next = wire
        .produce("idem-restart", 0, batch(&values("b", 1), producer_id, epoch, 4), -1)
        .unwrap();
    assert_eq!((next.error_code, next.base_offset), (0, 4), "{next:?}");
    let gap = wire
        .produce("idem-restart", 0, batch(&values("c", 1), producer_id, epoch, 9), -1)
        .unwrap();
    assert_eq!(gap.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER, "{gap:?}");
    let records = Consumer::new(&broker.bootstrap()).read_to_end("idem-restart", 0, Offset::Beginning);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(read, ["a-0", "a-1", "a-2", "a-3", "b-0"]);
}

#[test]
fn an_older_duplicate_within_the_last_five_batches_is_still_recognised() {
    let broker = start();
    create_topic(&broker, "idem-window", 1);
    let mut wire = broker.wire();
    let (producer_id, epoch) = wire.init_producer_id().unwrap();
    let batches: Vec<Bytes> = (0..5)
        .map(|i| batch(&values(&format!("w{i}"), 2), producer_id, epoch, i * 2))
        .collect();
    for (i, b) in batches.iter().enumerate() {
        let response = wire.produce("idem-window", 0, b.clone(), -1).unwrap();
        assert_eq!((response.error_code, response.base_offset), (0, i as i64 * 2));
    }
    // Kafka keeps the last five batches per producer: a retry of the second is a duplicate.
    let retried = wire.produce("idem-window", 0, batches[1].clone(), -1).unwrap();
    assert_eq!((retried.error_code, retried.base_offset), (0, 2), "{retried:?}");
    let (_, high) = Consumer::new(&broker.bootstrap()).watermarks("idem-window", 0).unwrap();
    assert_eq!(high, 10, "no record appended twice");
}

/// INVALID_PRODUCER_EPOCH.
const INVALID_PRODUCER_EPOCH: i16 = 47;

#[test]
fn a_newer_epoch_fences_the_older_one() {
    let broker = start();
    create_topic(&broker, "epochs", 1);
    let mut wire = broker.wire();
    let (producer_id, epoch) = wire.init_producer_id().unwrap();
    let first = wire
        .produce("epochs", 0, batch(&values("e0", 2), producer_id, epoch, 0), -1)
        .unwrap();
    assert_eq!(first.error_code, 0, "{first:?}");
    // A bumped epoch starts its sequence again at 0.
    let bumped = wire
        .produce("epochs", 0, batch(&values("e1", 2), producer_id, epoch + 1, 0), -1)
        .unwrap();
    assert_eq!((bumped.error_code, bumped.base_offset), (0, 2), "{bumped:?}");
    // The old epoch is now fenced, whatever its sequence.
    let stale = wire
        .produce("epochs", 0, batch(&values("old", 1), producer_id, epoch, 2), -1)
        .unwrap();
    assert_eq!(stale.error_code, INVALID_PRODUCER_EPOCH, "{stale:?}");
    // A bumped epoch must start at sequence 0.
    let skipping = wire
        .produce("epochs", 0, batch(&values("e2", 1), producer_id, epoch + 2, 5), -1)
        .unwrap();
    assert_eq!(skipping.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER, "{skipping:?}");
    let (_, high) = Consumer::new(&broker.bootstrap()).watermarks("epochs", 0).unwrap();
    assert_eq!(high, 4);
}

#[test]
fn producer_ids_are_never_reused_across_restarts() {
    let mut broker = start();
    create_topic(&broker, "pids", 1);
    let first_id = {
        let mut wire = broker.wire();
        let (producer_id, epoch) = wire.init_producer_id().unwrap();
        let response = wire
            .produce("pids", 0, batch(&values("old", 3), producer_id, epoch, 0), -1)
            .unwrap();
        assert_eq!(response.error_code, 0);
        producer_id
    };
    // A graceful restart, then a crash.
    broker.restart();
    broker.sigkill();
    broker.restart();
    let mut wire = broker.wire();
    let (producer_id, epoch) = wire.init_producer_id().unwrap();
    assert_ne!(producer_id, first_id, "producer id reused after restarts");
    // A new producer's first batch is new data, not a duplicate of the old producer's.
    let response = wire
        .produce("pids", 0, batch(&values("new", 3), producer_id, epoch, 0), -1)
        .unwrap();
    assert_eq!((response.error_code, response.base_offset), (0, 3), "{response:?}");
}

#[test]
fn sequences_are_tracked_per_partition() {
    let broker = start();
    create_topic(&broker, "per-partition", 2);
    let mut wire = broker.wire();
    let (producer_id, epoch) = wire.init_producer_id().unwrap();
    for partition in 0..2 {
        let response = wire
            .produce(
                "per-partition",
                partition,
                batch(&values("p", 2), producer_id, epoch, 0),
                -1,
            )
            .unwrap();
        assert_eq!(
            (response.error_code, response.base_offset),
            (0, 0),
            "partition {partition}"
        );
    }
    let next = wire
        .produce("per-partition", 1, batch(&values("q", 1), producer_id, epoch, 2), -1)
        .unwrap();
    assert_eq!((next.error_code, next.base_offset), (0, 2));
}

/// An idempotent `rdkafka` producer writing through a broker restart (graceful, then a
/// crash): its retries after reconnecting must not duplicate anything, and every
/// acknowledged record must be there, in the order sent.
#[test]
fn an_idempotent_producer_writes_through_restarts_without_duplicates() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut broker = start();
    create_topic(&broker, "through", 1);
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let bootstrap = broker.bootstrap();
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        move || {
            let producer = Producer::new(
                &bootstrap,
                &[
                    ("enable.idempotence", "true"),
                    ("message.timeout.ms", "30000"),
                    ("linger.ms", "5"),
                ],
            );
            let mut sent = 0;
            let mut acknowledged = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let recs: Vec<strom_testkit::Rec> = (sent..sent + 50)
                    .map(|i| strom_testkit::Rec::value(format!("t{i:06}")).partition(0))
                    .collect();
                sent += 50;
                for (rec, result) in recs.iter().zip(producer.send_all("through", &recs)) {
                    if result.is_ok() {
                        acknowledged.push(utf8(&rec.value));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            acknowledged
        }
    });
    let wait_for = |count: usize| {
        strom_testkit::poll_until(std::time::Duration::from_secs(40), "acknowledgements", || {
            (acked.load(Ordering::Relaxed) >= count).then_some(())
        })
    };
    wait_for(500);
    broker.restart();
    wait_for(1500);
    broker.sigkill();
    broker.restart();
    wait_for(2500);
    stop.store(true, Ordering::Relaxed);
    let acknowledged = writer.join().expect("writer");

    let records = Consumer::new(&broker.bootstrap()).read_to_end("through", 0, Offset::Beginning);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    let mut unique = read.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        read.len(),
        "{} duplicated records",
        read.len() - unique.len()
    );
    assert!(read.windows(2).all(|w| w[0] < w[1]), "records out of send order");
    let present: std::collections::HashSet<&String> = read.iter().collect();
    let missing: Vec<&String> = acknowledged.iter().filter(|v| !present.contains(v)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records missing, first {:?}",
        missing.len(),
        missing.first()
    );
}

/// `producer.id.expiration.ms`: a producer whose batches are all older than the expiration is
/// forgotten (its next sequence is then a gap, as from an unknown producer); a recent one is
/// remembered, so its retries are still recognised.
#[test]
fn idle_producer_ids_expire_and_recent_ones_do_not() {
    let broker = strom_testkit::Broker::builder(strom_testkit::bin!())
        .set("producer.id.expiration.ms", "60000")
        .set("log.retention.check.interval.ms", "50")
        .start();
    create_topic(&broker, "expiry", 1);
    let mut wire = broker.wire();
    let (recent_id, recent_epoch) = wire.init_producer_id().unwrap();
    let (idle_id, idle_epoch) = wire.init_producer_id().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stamped = |values: &[Vec<u8>], id: i64, epoch: i16, sequence: i32, timestamp_ms: i64| {
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        record_batch(
            &values,
            BatchProducer {
                producer_id: id,
                producer_epoch: epoch,
                base_sequence: sequence,
            },
            Compression::None,
            timestamp_ms,
        )
    };
    let recent_batch = stamped(&values("recent", 1), recent_id, recent_epoch, 0, now_ms);
    let first = wire.produce("expiry", 0, recent_batch.clone(), -1).unwrap();
    assert_eq!(first.error_code, 0, "{first:?}");

    // The idle producer writes with timestamps ten minutes old; each accepted batch is still
    // idle, so a retention pass forgets it and the next sequence is refused as a gap.
    let stale_ms = now_ms - 10 * 60 * 1000;
    let mut sequence = 0;
    strom_testkit::poll_until(
        std::time::Duration::from_secs(20),
        "the idle producer to expire",
        || {
            let response = wire
                .produce(
                    "expiry",
                    0,
                    stamped(&values("idle", 1), idle_id, idle_epoch, sequence, stale_ms),
                    -1,
                )
                .unwrap();
            match response.error_code {
                0 => {
                    sequence += 1;
                    None
                }
                OUT_OF_ORDER_SEQUENCE_NUMBER if sequence > 0 => Some(()),
                other => panic!("unexpected error {other} at sequence {sequence}"),
            }
        },
    );
    // Forgotten, it may start over at sequence 0.
    let restart = wire
        .produce(
            "expiry",
            0,
            stamped(&values("again", 1), idle_id, idle_epoch, 0, now_ms),
            -1,
        )
        .unwrap();
    assert_eq!(restart.error_code, 0, "{restart:?}");
    // The recent producer is remembered: a retry of its batch is a duplicate, not a new write.
    let retried = wire.produce("expiry", 0, recent_batch, -1).unwrap();
    assert_eq!(
        (retried.error_code, retried.base_offset),
        (0, first.base_offset),
        "{retried:?}"
    );
}
