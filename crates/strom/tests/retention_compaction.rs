//! Retention (by time and by size) and log compaction, observed from a client: the earliest
//! offset advances, and a compacted partition keeps the latest value of every key.
//!
//! The broker runs with short check and back-off intervals; topics use small segments so that
//! there are closed segments to delete or clean. Every expectation is polled with a deadline.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{numbered, utf8};
use rdkafka::Offset;
use strom_testkit::{poll_until, Admin, Broker, Consumer, Producer, Rec};

/// How long the background retention / cleaner work may take to become visible.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(45);

fn start_with_fast_background_work() -> Broker {
    Broker::builder(strom_testkit::bin!())
        .set("log.retention.check.interval.ms", "200")
        .set("log.cleaner.backoff.ms", "200")
        .start()
}

/// A producer whose batches stay near 1 KiB, so 4 KiB segments roll every few batches (a
/// segment only rolls between batches).
fn small_batch_producer(broker: &Broker) -> Producer {
    Producer::new(
        &broker.bootstrap(),
        &[("acks", "all"), ("batch.size", "1024"), ("linger.ms", "1")],
    )
}

/// ~100-byte values, so a 4 KiB segment holds a few dozen records.
fn padded(prefix: &str, count: usize) -> Vec<Rec> {
    (0..count)
        .map(|i| Rec::value(format!("{prefix}-{i:05}-{}", "x".repeat(90))).partition(0))
        .collect()
}

#[test]
fn retention_ms_deletes_old_segments() {
    let broker = start_with_fast_background_work();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("short-lived", 1, &[("segment.bytes", "4096"), ("retention.ms", "1000")]);
    admin.create_topic_ok("kept", 1, &[("segment.bytes", "4096")]);
    let producer = small_batch_producer(&broker);
    producer.send_all_ok("short-lived", &padded("old", 300));
    producer.send_all_ok("kept", &padded("kept", 300));

    let consumer = Consumer::new(&broker.bootstrap());
    let (low, high) = poll_until(BACKGROUND_TIMEOUT, "retention to delete segments", || {
        let (low, high) = consumer.watermarks("short-lived", 0).unwrap();
        (low > 0).then_some((low, high))
    });
    assert_eq!(high, 300, "retention never moves the high watermark");
    assert!(low <= high);
    // What remains (if anything: every segment may have expired) starts exactly at the low
    // watermark and is intact.
    let remaining = consumer.read_to_end("short-lived", 0, Offset::Beginning);
    for (record, offset) in remaining.iter().zip(low..) {
        assert_eq!(record.offset, offset);
        assert!(utf8(&record.value).starts_with(&format!("old-{offset:05}-")));
    }
    // Records written after the deletion still land at the end, and are readable.
    let delivered = producer.send_all_ok("short-lived", &padded("new", 1));
    assert_eq!(delivered[0].offset, 300);
    let after = consumer.read("short-lived", 0, Offset::Offset(300), 1);
    assert!(utf8(&after[0].value).starts_with("new-00000-"));

    // The topic without a short retention lost nothing meanwhile.
    assert_eq!(consumer.watermarks("kept", 0).unwrap(), (0, 300));
}

#[test]
fn retention_bytes_caps_the_partition_size() {
    let broker = start_with_fast_background_work();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok(
        "capped",
        1,
        &[
            ("segment.bytes", "4096"),
            ("retention.bytes", "8192"),
            ("retention.ms", "-1"),
        ],
    );
    let producer = small_batch_producer(&broker);
    producer.send_all_ok("capped", &padded("v", 400));

    let consumer = Consumer::new(&broker.bootstrap());
    let low = poll_until(BACKGROUND_TIMEOUT, "size retention to delete segments", || {
        let (low, _) = consumer.watermarks("capped", 0).unwrap();
        // ~40 KiB written against an 8 KiB cap: most of it must go.
        (low >= 200).then_some(low)
    });
    let remaining = consumer.read_to_end("capped", 0, Offset::Beginning);
    assert_eq!(remaining.first().map(|r| r.offset), Some(low));
    assert_eq!(remaining.last().map(|r| r.offset), Some(399));
    for (record, offset) in remaining.iter().zip(low..) {
        assert_eq!(record.offset, offset, "no gaps after size retention");
    }
}

#[test]
fn compaction_keeps_the_latest_value_per_key() {
    let broker = start_with_fast_background_work();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok(
        "compacted",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let producer = small_batch_producer(&broker);
    const KEYS: usize = 8;
    const ROUNDS: usize = 100;
    let mut recs = Vec::new();
    for round in 0..ROUNDS {
        for key in 0..KEYS {
            recs.push(Rec::keyed(format!("key-{key}"), format!("{key}:{round:03}:{}", "y".repeat(60))).partition(0));
        }
    }
    // A key deleted by a tombstone halfway through, and never written again.
    recs.insert(
        KEYS * ROUNDS / 2,
        Rec {
            key: Some(b"key-3".to_vec()),
            value: None,
            partition: Some(0),
            ..Rec::default()
        },
    );
    recs.retain(|r| !(r.key.as_deref() == Some(b"key-3") && later_than_tombstone(r, ROUNDS)));
    let delivered = producer.send_all_ok("compacted", &recs);
    let written: HashMap<i64, (String, Option<String>)> = delivered
        .iter()
        .zip(&recs)
        .map(|(d, rec)| (d.offset, (utf8(&rec.key), text(&rec.value))))
        .collect();
    // Roll the last segment with more writes for one extra key, so the records above are
    // all in closed segments the cleaner may touch.
    producer.send_all_ok("compacted", &filler(200));
    let total = (recs.len() + 200) as i64;

    let mut latest: HashMap<String, Option<String>> = HashMap::new();
    for rec in recs.iter().chain(filler(200).iter()) {
        latest.insert(utf8(&rec.key), text(&rec.value));
    }

    let consumer = Consumer::new(&broker.bootstrap());
    let compacted = poll_until(BACKGROUND_TIMEOUT, "the cleaner to compact", || {
        let records = consumer.read_to_end("compacted", 0, Offset::Beginning);
        (records.len() < recs.len() / 2).then_some(records)
    });
    assert_eq!(consumer.watermarks("compacted", 0).unwrap().1, total);

    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    let mut previous_offset = -1;
    for record in &compacted {
        assert!(record.offset > previous_offset, "offsets increase");
        previous_offset = record.offset;
        seen.insert(utf8(&record.key), text(&record.value));
        // Compaction removes records; it never moves or alters one.
        if let Some(original) = written.get(&record.offset) {
            assert_eq!(
                &(utf8(&record.key), text(&record.value)),
                original,
                "record at offset {} changed",
                record.offset
            );
        }
    }
    // The last value read for every key is the last one written, tombstone included.
    assert_eq!(seen, latest);
}

/// Polls until a full read of `topic`/0 satisfies `done`, producing `filler` records between
/// reads so segments keep rolling and the cleaner has closed segments to work on.
fn read_until_compacted(
    broker: &Broker,
    topic: &str,
    what: &str,
    done: impl Fn(&[strom_testkit::Consumed]) -> bool,
) -> Vec<strom_testkit::Consumed> {
    let consumer = Consumer::new(&broker.bootstrap());
    let producer = small_batch_producer(broker);
    poll_until(BACKGROUND_TIMEOUT, what, || {
        let records = consumer.read_to_end(topic, 0, Offset::Beginning);
        if done(&records) {
            return Some(records);
        }
        producer.send_all_ok(topic, &filler(40));
        None
    })
}

#[test]
fn compaction_drops_tombstones_after_delete_retention_and_survives_a_crash() {
    let mut broker = start_with_fast_background_work();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok(
        "tombstones",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
        ],
    );
    // Compressed batches: the cleaner must rewrite them record by record.
    let producer = Producer::new(
        &broker.bootstrap(),
        &[
            ("acks", "all"),
            ("batch.size", "1024"),
            ("linger.ms", "1"),
            ("compression.type", "zstd"),
        ],
    );
    let mut recs = Vec::new();
    for round in 0..60 {
        for key in ["keep", "doomed", "other"] {
            recs.push(Rec::keyed(key, format!("{key}-{round:03}-{}", "w".repeat(50))).partition(0));
        }
    }
    recs.push(Rec {
        key: Some(b"doomed".to_vec()),
        value: None,
        partition: Some(0),
        ..Rec::default()
    });
    producer.send_all_ok("tombstones", &recs);

    let has_key =
        |records: &[strom_testkit::Consumed], key: &[u8]| records.iter().any(|r| r.key.as_deref() == Some(key));
    let compacted = read_until_compacted(&broker, "tombstones", "the tombstone to go", |records| {
        !has_key(records, b"doomed")
    });
    let latest = |records: &[strom_testkit::Consumed], key: &[u8]| {
        records
            .iter()
            .rev()
            .find(|r| r.key.as_deref() == Some(key))
            .map(|r| utf8(&r.value))
    };
    assert!(
        latest(&compacted, b"keep").is_some_and(|v| v.starts_with("keep-059-")),
        "latest value of 'keep' after compaction: {:?}",
        latest(&compacted, b"keep")
    );
    assert!(latest(&compacted, b"other").is_some_and(|v| v.starts_with("other-059-")));

    // A crash after compaction: the cleaned log recovers to the same records.
    broker.sigkill();
    broker.restart();
    let recovered = Consumer::new(&broker.bootstrap()).read_to_end("tombstones", 0, Offset::Beginning);
    // The cleaner may have run again meanwhile, so compare only what it cannot have removed:
    // the latest record of each key.
    for key in [&b"keep"[..], b"other"] {
        assert_eq!(latest(&recovered, key), latest(&compacted, key), "after crash");
    }
    assert!(
        !has_key(&recovered, b"doomed"),
        "tombstoned key resurrected by recovery"
    );
    let offsets: Vec<i64> = recovered.iter().map(|r| r.offset).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets increase after recovery"
    );
}

#[test]
fn a_retention_change_takes_effect_without_a_restart() {
    let broker = start_with_fast_background_work();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("changed", 1, &[("segment.bytes", "4096")]);
    let producer = small_batch_producer(&broker);
    producer.send_all_ok("changed", &padded("c", 300));
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(consumer.watermarks("changed", 0).unwrap(), (0, 300));

    admin
        .alter_topic_configs("changed", &[("segment.bytes", "4096"), ("retention.ms", "500")])
        .unwrap();
    let low = poll_until(BACKGROUND_TIMEOUT, "the new retention to apply", || {
        let (low, _) = consumer.watermarks("changed", 0).unwrap();
        (low > 0).then_some(low)
    });
    assert!(low <= 300);
}

fn text(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes.as_deref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn later_than_tombstone(rec: &Rec, rounds: usize) -> bool {
    let value = utf8(&rec.value);
    let round: usize = value.split(':').nth(1).and_then(|r| r.parse().ok()).unwrap_or(0);
    round >= rounds / 2
}

fn filler(count: usize) -> Vec<Rec> {
    numbered("filler", count, 0)
        .into_iter()
        .enumerate()
        .map(|(i, r)| Rec {
            key: Some(format!("filler-{}", i % 4).into_bytes()),
            ..r
        })
        .collect()
}

#[test]
fn crashes_while_the_cleaner_works_lose_no_latest_value() {
    let mut broker = start_with_fast_background_work();
    Admin::new(&broker.bootstrap()).create_topic_ok(
        "crash-clean",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let mut written: HashMap<i64, (String, String)> = HashMap::new();
    let mut latest: HashMap<String, (i64, String)> = HashMap::new();
    for round in 0..4 {
        let producer = small_batch_producer(&broker);
        let recs: Vec<Rec> = (0..300)
            .map(|i| {
                let key = format!("key-{}", i % 6);
                Rec::keyed(key.clone(), format!("{key}:{round}:{i:03}:{}", "c".repeat(50))).partition(0)
            })
            .collect();
        let delivered = producer.send_all_ok("crash-clean", &recs);
        for (d, rec) in delivered.iter().zip(&recs) {
            let entry = (utf8(&rec.key), utf8(&rec.value));
            latest.insert(entry.0.clone(), (d.offset, entry.1.clone()));
            written.insert(d.offset, entry);
        }
        drop(producer);
        // Crash with the cleaner most likely mid-pass over the new segments.
        broker.sigkill();
        broker.restart();

        let records = Consumer::new(&broker.bootstrap()).read_to_end("crash-clean", 0, Offset::Beginning);
        let mut last_seen: HashMap<String, (i64, String)> = HashMap::new();
        let mut previous = -1;
        for record in &records {
            assert!(record.offset > previous, "round {round}: offsets increase");
            previous = record.offset;
            let entry = (utf8(&record.key), utf8(&record.value));
            assert_eq!(
                written.get(&record.offset),
                Some(&entry),
                "round {round}: record at {}",
                record.offset
            );
            last_seen.insert(entry.0, (record.offset, entry.1));
        }
        assert_eq!(last_seen, latest, "round {round}: latest value per key");
    }
}

#[test]
fn min_compaction_lag_protects_recent_records() {
    let broker = start_with_fast_background_work();
    let admin = Admin::new(&broker.bootstrap());
    let compact = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "4096"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    admin.create_topic_ok(
        "lagged",
        1,
        &[compact.as_slice(), &[("min.compaction.lag.ms", "600000")]].concat(),
    );
    admin.create_topic_ok("control", 1, &compact);
    let producer = small_batch_producer(&broker);
    let duplicates = |prefix: &str| -> Vec<Rec> {
        (0..400)
            .map(|i| Rec::keyed(format!("k{}", i % 4), format!("{prefix}-{i:03}-{}", "l".repeat(60))).partition(0))
            .collect()
    };
    producer.send_all_ok("lagged", &duplicates("lagged"));
    producer.send_all_ok("control", &duplicates("control"));

    // Two cleaner passes over the control topic: by then the cleaner has seen "lagged" too.
    let consumer = Consumer::new(&broker.bootstrap());
    for pass in 0..2 {
        poll_until(BACKGROUND_TIMEOUT, "the control topic to compact", || {
            let records = consumer.read_to_end("control", 0, Offset::Beginning);
            (records.len() < 200).then_some(())
        });
        if pass == 0 {
            producer.send_all_ok("control", &duplicates("control-again"));
        }
    }
    let lagged = consumer.read_to_end("lagged", 0, Offset::Beginning);
    assert_eq!(
        lagged.len(),
        400,
        "records younger than min.compaction.lag.ms were compacted"
    );
}

#[test]
fn a_compact_delete_policy_still_applies_retention() {
    let broker = start_with_fast_background_work();
    Admin::new(&broker.bootstrap()).create_topic_ok(
        "both",
        1,
        &[
            ("cleanup.policy", "compact,delete"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("retention.ms", "1500"),
        ],
    );
    let producer = small_batch_producer(&broker);
    let recs: Vec<Rec> = (0..400)
        .map(|i| Rec::keyed(format!("k{}", i % 4), format!("{i:03}-{}", "b".repeat(60))).partition(0))
        .collect();
    producer.send_all_ok("both", &recs);
    let consumer = Consumer::new(&broker.bootstrap());
    // Retention: the log start moves past old segments even though they hold keys.
    let low = poll_until(BACKGROUND_TIMEOUT, "retention under compact,delete", || {
        let (low, _) = consumer.watermarks("both", 0).unwrap();
        (low > 0).then_some(low)
    });
    assert!(low <= 400);
    assert_eq!(consumer.watermarks("both", 0).unwrap().1, 400);
}
