//! Helpers shared by the integration test files (each file is its own crate and uses a
//! subset, hence the `dead_code` allowance).
#![allow(dead_code)]

use strom_testkit::{Admin, Broker, Consumer, Producer, Rec};

/// Starts a broker with default settings.
pub(crate) fn start() -> Broker {
    Broker::start(strom_testkit::bin!())
}

/// Creates `name` with `partitions` partitions, panicking on failure.
pub(crate) fn create_topic(broker: &Broker, name: &str, partitions: i32) {
    Admin::new(&broker.bootstrap()).create_topic_ok(name, partitions, &[]);
}

/// `count` records with values `<prefix>-<i>`, no key, for partition `partition`.
pub(crate) fn numbered(prefix: &str, count: usize, partition: i32) -> Vec<Rec> {
    (0..count)
        .map(|i| Rec::value(format!("{prefix}-{i}")).partition(partition))
        .collect()
}

pub(crate) fn utf8(bytes: &Option<Vec<u8>>) -> String {
    String::from_utf8_lossy(bytes.as_deref().unwrap_or(b"<null>")).into_owned()
}

/// Asserts `topic`/`partition` holds exactly `expected` values at offsets `0..`.
pub(crate) fn assert_partition_holds(broker: &Broker, topic: &str, partition: i32, expected: &[String]) {
    let consumer = Consumer::new(&broker.bootstrap());
    let records = consumer.read_to_end(topic, partition, rdkafka::Offset::Beginning);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    let expected_offsets: Vec<i64> = (0..expected.len() as i64).collect();
    assert_eq!(offsets, expected_offsets, "offsets of {topic}/{partition}");
    let values: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(values, expected, "values of {topic}/{partition}");
}

/// Produces `count` numbered records with acks=all to partition 0 and returns their values.
pub(crate) fn produce_numbered(broker: &Broker, topic: &str, prefix: &str, count: usize) -> Vec<String> {
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let recs = numbered(prefix, count, 0);
    producer.send_all_ok(topic, &recs);
    recs.iter().map(|r| utf8(&r.value)).collect()
}
