//! ListOffsets: earliest, latest and by timestamp, through a real client.

mod common;

use common::{create_topic, numbered, start, utf8};
use rdkafka::Offset;
use strom_testkit::{Consumer, Producer, Rec};

#[test]
fn earliest_and_latest_track_the_log() {
    let broker = start();
    create_topic(&broker, "marks", 2);
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(consumer.watermarks("marks", 0).unwrap(), (0, 0));

    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    producer.send_all_ok("marks", &numbered("a", 10, 0));
    assert_eq!(consumer.watermarks("marks", 0).unwrap(), (0, 10));
    assert_eq!(consumer.watermarks("marks", 1).unwrap(), (0, 0));
    producer.send_all_ok("marks", &numbered("b", 7, 0));
    assert_eq!(consumer.watermarks("marks", 0).unwrap(), (0, 17));

    // Reading from "beginning" resolves to the earliest offset.
    let first = consumer.read("marks", 0, Offset::Beginning, 1);
    assert_eq!((first[0].offset, utf8(&first[0].value)), (0, "a-0".into()));
}

#[test]
fn offsets_for_times_finds_the_first_record_at_or_after() {
    let broker = start();
    create_topic(&broker, "times", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    // An hour ago, well inside the default retention, one second apart.
    let base_ms = now_ms() - 3_600_000;
    let recs: Vec<Rec> = (0..10)
        .map(|i| {
            Rec::value(format!("t{i}"))
                .partition(0)
                .timestamp(base_ms + i * 1000)
        })
        .collect();
    // One record per request, so the timestamps are spread over batches too.
    for rec in &recs {
        producer.send("times", rec).expect("deliver");
    }

    let consumer = Consumer::new(&broker.bootstrap());
    let cases = [
        (base_ms - 10_000, Offset::Offset(0)),
        (base_ms, Offset::Offset(0)),
        (base_ms + 1, Offset::Offset(1)),
        (base_ms + 3000, Offset::Offset(3)),
        (base_ms + 3500, Offset::Offset(4)),
        (base_ms + 9000, Offset::Offset(9)),
        (base_ms + 9001, Offset::End),
    ];
    for (timestamp_ms, expected) in cases {
        let offset = consumer
            .offset_for_time("times", 0, timestamp_ms)
            .unwrap_or_else(|e| panic!("offsets_for_times({timestamp_ms}): {e}"));
        assert_eq!(
            offset,
            expected,
            "timestamp base+{}",
            timestamp_ms - base_ms
        );
    }

    // The consumer sees the timestamps the producer set (CreateTime).
    let records = consumer.read("times", 0, Offset::Beginning, 10);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.timestamp_ms, Some(base_ms + i as i64 * 1000));
    }
}

#[test]
fn offsets_for_times_on_batched_records() {
    let broker = start();
    create_topic(&broker, "batched-times", 1);
    let producer = Producer::new(
        &broker.bootstrap(),
        &[("acks", "all"), ("linger.ms", "100")],
    );
    let base_ms = now_ms() - 600_000;
    // Many records per batch: the broker must look inside batches, not at batch boundaries.
    let recs: Vec<Rec> = (0..100)
        .map(|i| {
            Rec::value(format!("t{i}"))
                .partition(0)
                .timestamp(base_ms + i * 10)
        })
        .collect();
    producer.send_all_ok("batched-times", &recs);
    let consumer = Consumer::new(&broker.bootstrap());
    for i in [0i64, 1, 37, 50, 99] {
        let offset = consumer
            .offset_for_time("batched-times", 0, base_ms + i * 10 - 5)
            .unwrap();
        assert_eq!(offset, Offset::Offset(i), "timestamp of record {i} minus 5");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
