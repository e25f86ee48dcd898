//! ListOffsets: earliest, latest and by timestamp, through a real client.

mod common;

use common::{create_topic, numbered, start, utf8};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, OffsetForLeaderEpochRequest};
use rdkafka::Offset;
use strom_testkit::wire::topic_name;
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
        .map(|i| Rec::value(format!("t{i}")).partition(0).timestamp(base_ms + i * 1000))
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
        assert_eq!(offset, expected, "timestamp base+{}", timestamp_ms - base_ms);
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
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "100")]);
    let base_ms = now_ms() - 600_000;
    // Many records per batch: the broker must look inside batches, not at batch boundaries.
    let recs: Vec<Rec> = (0..100)
        .map(|i| Rec::value(format!("t{i}")).partition(0).timestamp(base_ms + i * 10))
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

#[test]
fn offset_for_leader_epoch_of_the_current_epoch_is_the_log_end() {
    let broker = start();
    create_topic(&broker, "epochs", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    producer.send_all_ok("epochs", &numbered("e", 12, 0));

    let mut wire = broker.wire();
    let mut metadata_request = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(topic_name("epochs"));
    metadata_request.topics = Some(vec![wanted]);
    let metadata = wire.call(&metadata_request, 12).expect("Metadata v12");
    let partition = &metadata.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let epoch = partition.leader_epoch;
    assert!(epoch >= 0, "leader epoch {epoch}");

    let ask = |leader_epoch: i32| {
        let mut partition = OffsetForLeaderPartition::default();
        partition.partition = 0;
        partition.current_leader_epoch = epoch;
        partition.leader_epoch = leader_epoch;
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = topic_name("epochs");
        topic.partitions = vec![partition];
        let mut request = OffsetForLeaderEpochRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = vec![topic];
        request
    };
    let response = wire.call(&ask(epoch), 4).expect("OffsetForLeaderEpoch v4");
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    assert_eq!((answer.leader_epoch, answer.end_offset), (epoch, 12));

    // A current_leader_epoch newer than the broker's is UNKNOWN_LEADER_EPOCH (75).
    let mut from_the_future = ask(epoch);
    from_the_future.topics[0].partitions[0].current_leader_epoch = epoch + 1;
    let response = wire.call(&from_the_future, 4).unwrap();
    assert_eq!(response.topics[0].partitions[0].error_code, 75);
}

#[test]
fn fetching_past_the_end_is_offset_out_of_range() {
    let broker = start();
    create_topic(&broker, "short", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    producer.send_all_ok("short", &numbered("s", 10, 0));
    // With no reset policy the client surfaces the broker's OFFSET_OUT_OF_RANGE.
    let consumer = Consumer::with(&broker.bootstrap(), &[("auto.offset.reset", "error")]);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset("short", 0, Offset::Offset(1000))
        .unwrap();
    rdkafka::consumer::Consumer::assign(consumer.inner(), &assignment).unwrap();
    let error = strom_testkit::poll_until(std::time::Duration::from_secs(20), "an error", || {
        match consumer.inner().poll(std::time::Duration::from_millis(100)) {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => None,
            Some(Err(e)) => Some(e),
            Some(Ok(m)) => panic!("read offset {} past the end", rdkafka::Message::offset(&m)),
        }
    });
    assert!(
        format!("{error}").contains("out of range")
            || error.rdkafka_error_code() == Some(rdkafka::error::RDKafkaErrorCode::AutoOffsetReset),
        "{error:?}"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn fetching_below_the_log_start_is_offset_out_of_range() {
    let broker = start();
    create_topic(&broker, "trimmed-fetch", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    producer.send_all_ok("trimmed-fetch", &numbered("t", 10, 0));
    let admin = strom_testkit::Admin::new(&broker.bootstrap());
    assert_eq!(admin.delete_records("trimmed-fetch", 0, 6).unwrap(), 6);

    let consumer = Consumer::with(&broker.bootstrap(), &[("auto.offset.reset", "error")]);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset("trimmed-fetch", 0, Offset::Offset(2))
        .unwrap();
    rdkafka::consumer::Consumer::assign(consumer.inner(), &assignment).unwrap();
    let error = strom_testkit::poll_until(std::time::Duration::from_secs(20), "an error", || {
        match consumer.inner().poll(std::time::Duration::from_millis(100)) {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => None,
            Some(Err(e)) => Some(e),
            Some(Ok(m)) => panic!("read deleted offset {}", rdkafka::Message::offset(&m)),
        }
    });
    assert_eq!(
        error.rdkafka_error_code(),
        Some(rdkafka::error::RDKafkaErrorCode::AutoOffsetReset),
        "{error:?}"
    );
    // With a reset policy the client lands on the new log start.
    let records = Consumer::new(&broker.bootstrap()).read("trimmed-fetch", 0, Offset::Offset(2), 1);
    assert_eq!(records[0].offset, 6);
}

#[test]
fn leader_epochs_stay_answerable_across_a_restart() {
    let mut broker = start();
    create_topic(&broker, "epoch-restart", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    producer.send_all_ok("epoch-restart", &numbered("before", 5, 0));
    drop(producer);
    let epoch_of = |broker: &strom_testkit::Broker| {
        let mut request = MetadataRequest::default();
        let mut wanted = MetadataRequestTopic::default();
        wanted.name = Some(topic_name("epoch-restart"));
        request.topics = Some(vec![wanted]);
        let metadata = broker.wire().call(&request, 12).expect("Metadata v12");
        metadata.topics[0].partitions[0].leader_epoch
    };
    let first_epoch = epoch_of(&broker);
    broker.restart();
    let second_epoch = epoch_of(&broker);
    assert!(
        second_epoch >= first_epoch,
        "epoch went back: {first_epoch} -> {second_epoch}"
    );
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    producer.send_all_ok("epoch-restart", &numbered("after", 5, 0));

    let ask = |leader_epoch: i32| {
        let mut partition = OffsetForLeaderPartition::default();
        partition.partition = 0;
        partition.current_leader_epoch = second_epoch;
        partition.leader_epoch = leader_epoch;
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = topic_name("epoch-restart");
        topic.partitions = vec![partition];
        let mut request = OffsetForLeaderEpochRequest::default();
        request.replica_id = BrokerId(-1);
        request.topics = vec![topic];
        let response = broker.wire().call(&request, 4).expect("OffsetForLeaderEpoch");
        let answer = response.topics[0].partitions[0].clone();
        assert_eq!(answer.error_code, 0, "{answer:?}");
        (answer.leader_epoch, answer.end_offset)
    };
    assert_eq!(ask(second_epoch), (second_epoch, 10));
    // The first epoch ends where the second began: at 5 if the restart bumped the epoch.
    let expected_first_end = if second_epoch > first_epoch { 5 } else { 10 };
    assert_eq!(ask(first_epoch), (first_epoch, expected_first_end));
}
