//! Background work racing clients: retention deleting and the cleaner rewriting segments
//! while consumers read them, and topics deleted under active clients.
//!
//! Every record's value names the offset it was written at, so a reader can check each record
//! it gets is the one written there: a race may cost a reader a reset, never a wrong record.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use strom_testkit::{Admin, Broker, Consumer, Producer, Rec};

/// How long each race runs.
const RACE_DURATION: Duration = Duration::from_secs(6);

fn start_busy_broker() -> Broker {
    Broker::builder(strom_testkit::bin!())
        .set("log.retention.check.interval.ms", "100")
        .set("log.cleaner.backoff.ms", "100")
        .start()
}

/// Writes records whose value is `<key>@<offset>` (the offset of the previous write + 1,
/// checked against the acknowledgement) until `stop`; returns how many were written.
fn spawn_writer(bootstrap: String, topic: &'static str, keys: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<i64> {
    thread::spawn(move || {
        let producer = Producer::new(
            &bootstrap,
            &[("acks", "all"), ("batch.size", "1024"), ("linger.ms", "1")],
        );
        let mut next: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let recs: Vec<Rec> = (0..20)
                .map(|i| {
                    let offset = next + i;
                    Rec::keyed(
                        format!("k{}", offset as usize % keys),
                        format!("k{}@{offset}-{}", offset as usize % keys, "x".repeat(60)),
                    )
                    .partition(0)
                })
                .collect();
            let delivered = producer.send_all_ok(topic, &recs);
            for (i, d) in delivered.iter().enumerate() {
                assert_eq!(d.offset, next + i as i64, "single writer: offsets are sequential");
            }
            next += recs.len() as i64;
        }
        next
    })
}

/// Reads from the beginning over and over until `stop`, checking every record is the one
/// written at its offset; returns how many records were checked.
fn spawn_reader(bootstrap: String, topic: &'static str, stop: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let consumer = Consumer::with(&bootstrap, &[("auto.offset.reset", "earliest")]);
        let mut checked = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
            consumer.inner().assign(&assignment).unwrap();
            let mut previous = -1;
            let pass_end = Instant::now() + Duration::from_secs(1);
            while Instant::now() < pass_end && !stop.load(Ordering::Relaxed) {
                match consumer.inner().poll(Duration::from_millis(50)) {
                    None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => panic!("reader error: {e}"),
                    Some(Ok(message)) => {
                        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                        let written_at: i64 = value
                            .split('@')
                            .nth(1)
                            .and_then(|rest| rest.split('-').next())
                            .and_then(|n| n.parse().ok())
                            .unwrap_or_else(|| panic!("unparsable value {value:?}"));
                        assert_eq!(written_at, message.offset(), "record served at the wrong offset");
                        assert!(message.offset() > previous, "offsets go backwards");
                        previous = message.offset();
                        checked += 1;
                    }
                }
            }
        }
        checked
    })
}

fn race(broker: &Broker, topic: &'static str, keys: usize) -> (i64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(broker.bootstrap(), topic, keys, Arc::clone(&stop));
    let readers: Vec<_> = (0..2)
        .map(|_| spawn_reader(broker.bootstrap(), topic, Arc::clone(&stop)))
        .collect();
    let deadline = Instant::now() + RACE_DURATION;
    while Instant::now() < deadline && !writer.is_finished() {
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    let checked = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    eprintln!("{topic}: wrote {written}, readers checked {checked}");
    (written, checked)
}

#[test]
fn readers_racing_retention_never_get_a_wrong_record() {
    let mut broker = start_busy_broker();
    Admin::new(&broker.bootstrap()).create_topic_ok(
        "expiring",
        1,
        &[("segment.bytes", "4096"), ("retention.ms", "300")],
    );
    let (written, checked) = race(&broker, "expiring", 1000);
    assert!(
        written > 200 && checked > 100,
        "too little happened: wrote {written}, checked {checked}"
    );
    broker.assert_healthy();
    let (low, high) = Consumer::new(&broker.bootstrap()).watermarks("expiring", 0).unwrap();
    assert_eq!(high, written);
    assert!(low > 0, "retention never ran during the race");
}

#[test]
fn readers_racing_the_cleaner_never_get_a_wrong_record() {
    let mut broker = start_busy_broker();
    Admin::new(&broker.bootstrap()).create_topic_ok(
        "cleaning",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let (written, checked) = race(&broker, "cleaning", 5);
    assert!(
        written > 200 && checked > 100,
        "too little happened: wrote {written}, checked {checked}"
    );
    broker.assert_healthy();
    let records = Consumer::new(&broker.bootstrap()).read_to_end("cleaning", 0, Offset::Beginning);
    assert!(
        (records.len() as i64) < written,
        "the cleaner never removed anything: {} of {written}",
        records.len()
    );
}

#[test]
fn deleting_a_topic_under_active_clients_leaves_the_broker_healthy() {
    // Without auto-creation: the writer's metadata requests would otherwise bring it back.
    let mut broker = Broker::builder(strom_testkit::bin!())
        .set("auto.create.topics.enable", "false")
        .start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("doomed", 1, &[("segment.bytes", "4096")]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = thread::spawn({
        let bootstrap = broker.bootstrap();
        let stop = Arc::clone(&stop);
        move || {
            let producer = Producer::new(&bootstrap, &[("acks", "all"), ("message.timeout.ms", "2000")]);
            let mut acked = 0;
            while !stop.load(Ordering::Relaxed) {
                let results = producer.send_all("doomed", &common::numbered("d", 20, 0));
                acked += results.iter().filter(|r| r.is_ok()).count();
            }
            acked
        }
    });
    strom_testkit::poll_until(Duration::from_secs(20), "some writes", || {
        let (_, high) = Consumer::new(&broker.bootstrap()).watermarks("doomed", 0).ok()?;
        (high >= 100).then_some(())
    });
    admin.delete_topic("doomed").expect("delete under load");
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().expect("writer");
    assert!(acked >= 100);
    broker.assert_healthy();
    // The name is free again and starts empty.
    admin.create_topic_ok("doomed", 1, &[]);
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(consumer.watermarks("doomed", 0).unwrap().1, 0);
}
