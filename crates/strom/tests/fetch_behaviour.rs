//! Fetch semantics a client library hides: response size limits across partitions, and long
//! polling (max_wait_ms / min_bytes).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{create_topic, start};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use strom_testkit::wire::{record_batch, topic_name, BatchProducer};
use strom_testkit::WireClient;

const FETCH_VERSION: i16 = 12;

fn fetch_request(
    topic: &str,
    partitions: &[i32],
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic_name(topic);
    fetch_topic.partitions = partitions
        .iter()
        .map(|&index| {
            let mut partition = FetchPartition::default();
            partition.partition = index;
            partition.current_leader_epoch = -1;
            partition.fetch_offset = 0;
            partition.last_fetched_epoch = -1;
            partition.log_start_offset = -1;
            partition.partition_max_bytes = partition_max_bytes;
            partition
        })
        .collect();
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = min_bytes;
    request.max_bytes = max_bytes;
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics = vec![fetch_topic];
    request
}

/// Record count per partition index in a fetch response.
fn records_per_partition(response: &FetchResponse) -> Vec<(i32, usize)> {
    response.responses[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
            let mut bytes: Bytes = p.records.clone().unwrap_or_default();
            let count = RecordBatchDecoder::decode_all(&mut bytes)
                .expect("decode")
                .iter()
                .map(|set| set.records.len())
                .sum();
            (p.partition_index, count)
        })
        .collect()
}

fn produce_batches(wire: &mut WireClient, topic: &str, partition: i32, batches: usize) {
    let value = vec![b'v'; 4000];
    for _ in 0..batches {
        let batch = record_batch(&[&value], BatchProducer::NONE, Compression::None, 1);
        let response = wire.produce(topic, partition, batch, -1).unwrap();
        assert_eq!(response.error_code, 0);
    }
}

#[test]
fn max_bytes_bounds_the_response_but_the_first_batch_always_comes() {
    let broker = start();
    create_topic(&broker, "limited", 3);
    let mut wire = broker.wire();
    for partition in 0..3 {
        produce_batches(&mut wire, "limited", partition, 5);
    }
    // A limit smaller than one batch: exactly the first batch of the first partition.
    let response = wire
        .call(
            &fetch_request("limited", &[0, 1, 2], 0, 1, 10, 1024 * 1024),
            FETCH_VERSION,
        )
        .expect("Fetch");
    let counts = records_per_partition(&response);
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1, "max_bytes=10 returned {counts:?}");
    assert_eq!(counts.iter().find(|(p, _)| *p == 0).map(|(_, n)| *n), Some(1));

    // Room for about two and a half batches in total: fewer than all 15, more than 1.
    let response = wire
        .call(
            &fetch_request("limited", &[0, 1, 2], 0, 1, 10_000, 1024 * 1024),
            FETCH_VERSION,
        )
        .unwrap();
    let total: usize = records_per_partition(&response).iter().map(|(_, n)| n).sum();
    assert!(
        (2..=3).contains(&total),
        "max_bytes=10000 returned {total} 4 KB records"
    );

    // partition_max_bytes bounds each partition; only the first non-empty partition gets a
    // batch larger than the limit (KIP-74), so the response makes progress and no more.
    let response = wire
        .call(
            &fetch_request("limited", &[0, 1, 2], 0, 1, 1024 * 1024, 10),
            FETCH_VERSION,
        )
        .unwrap();
    assert_eq!(records_per_partition(&response), [(0, 1), (1, 0), (2, 0)]);
    // With room for two batches per partition, each partition returns two.
    let response = wire
        .call(
            &fetch_request("limited", &[0, 1, 2], 0, 1, 1024 * 1024, 8300),
            FETCH_VERSION,
        )
        .unwrap();
    assert_eq!(records_per_partition(&response), [(0, 2), (1, 2), (2, 2)]);
}

#[test]
fn an_empty_fetch_waits_about_max_wait() {
    let broker = start();
    create_topic(&broker, "quiet", 1);
    let mut wire = broker.wire();
    let started = Instant::now();
    let response = wire
        .call(
            &fetch_request("quiet", &[0], 1000, 1, 1024 * 1024, 1024 * 1024),
            FETCH_VERSION,
        )
        .expect("Fetch");
    let elapsed = started.elapsed();
    assert_eq!(records_per_partition(&response), [(0, 0)]);
    assert!(
        elapsed >= Duration::from_millis(800),
        "answered an empty fetch after {elapsed:?}, before max_wait_ms=1000"
    );
    assert!(elapsed < Duration::from_secs(8), "long poll took {elapsed:?}");
}

/// A fetch naming no partition is answered at once, whatever max_wait_ms says, as in Kafka.
/// The Java consumer sends one (session 0, epoch -1: close the session) when it closes, and
/// waits for the answer, so a wait here made every close of a Java consumer half a second
/// longer.
#[test]
fn a_fetch_naming_no_partition_is_answered_at_once() {
    let broker = start();
    let mut wire = broker.wire();
    for topics in [Vec::new(), vec![FetchTopic::default()]] {
        let mut request = fetch_request("unused", &[], 5000, 1, 1024 * 1024, 1024 * 1024);
        request.topics = topics;
        let started = Instant::now();
        let response = wire.call(&request, FETCH_VERSION).expect("Fetch");
        let elapsed = started.elapsed();
        assert_eq!(response.error_code, 0, "{response:?}");
        assert!(
            elapsed < Duration::from_millis(2500),
            "a fetch of nothing waited {elapsed:?} (max_wait_ms=5000)"
        );
    }
}

#[test]
fn a_waiting_fetch_returns_as_soon_as_data_arrives() {
    let broker = start();
    create_topic(&broker, "awaited", 1);
    let mut waiting = broker.wire();
    let addr = broker.addr();
    let request = fetch_request("awaited", &[0], 15_000, 1, 1024 * 1024, 1024 * 1024);
    let (correlation_id, body) = waiting.encode(&request, FETCH_VERSION).unwrap();
    waiting.send_body(&body).unwrap();
    let started = Instant::now();
    let producer = thread::spawn(move || {
        let mut wire = WireClient::connect(addr).unwrap();
        produce_batches(&mut wire, "awaited", 0, 1);
    });
    let frame = waiting.read_frame().expect("fetch answer");
    let elapsed = started.elapsed();
    producer.join().unwrap();
    let response = strom_testkit::wire::decode_response::<FetchRequest>(frame, FETCH_VERSION, correlation_id).unwrap();
    assert_eq!(records_per_partition(&response), [(0, 1)]);
    assert!(
        elapsed < Duration::from_secs(10),
        "fetch waited {elapsed:?} although data arrived (max_wait_ms=15000)"
    );
}

#[test]
fn a_waiting_fetch_does_not_hold_up_its_connection_forever() {
    // Kafka answers requests on one connection in order: a request behind a long poll waits
    // for it. What must hold: both are answered, in order, within max_wait plus slack.
    let broker = start();
    create_topic(&broker, "ordered-waits", 1);
    let mut wire = broker.wire();
    let request = fetch_request("ordered-waits", &[0], 1000, 1, 1024 * 1024, 1024 * 1024);
    let (fetch_id, fetch_body) = wire.encode(&request, FETCH_VERSION).unwrap();
    let versions = kafka_protocol::messages::ApiVersionsRequest::default();
    let (versions_id, versions_body) = wire.encode(&versions, 0).unwrap();
    wire.send_body(&fetch_body).unwrap();
    wire.send_body(&versions_body).unwrap();
    let first = wire.read_frame().expect("first answer");
    let second = wire.read_frame().expect("second answer");
    assert_eq!(&first[..4], fetch_id.to_be_bytes(), "fetch answered first");
    assert_eq!(&second[..4], versions_id.to_be_bytes());
}

#[test]
fn fetch_and_produce_responses_report_the_log_start_offset() {
    let broker = start();
    create_topic(&broker, "started", 1);
    let mut wire = broker.wire();
    produce_batches(&mut wire, "started", 0, 6);
    let admin = strom_testkit::Admin::new(&broker.bootstrap());
    assert_eq!(admin.delete_records("started", 0, 4).unwrap(), 4);

    let mut request = fetch_request("started", &[0], 0, 1, 1024 * 1024, 1024 * 1024);
    request.topics[0].partitions[0].fetch_offset = 4;
    let response = wire.call(&request, FETCH_VERSION).unwrap();
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(
        (data.log_start_offset, data.high_watermark, data.last_stable_offset),
        (4, 6, 6)
    );
    let value = vec![b'n'; 10];
    let batch = record_batch(&[&value], BatchProducer::NONE, Compression::None, 1);
    let produced = wire.produce("started", 0, batch, -1).unwrap();
    assert_eq!(
        (produced.error_code, produced.base_offset, produced.log_start_offset),
        (0, 6, 4)
    );
}

#[test]
fn deleting_a_topic_under_a_waiting_fetch_answers_it() {
    let mut broker = start();
    create_topic(&broker, "vanishing", 1);
    let mut waiting = broker.wire();
    let request = fetch_request("vanishing", &[0], 5000, 1, 1024 * 1024, 1024 * 1024);
    let (correlation_id, body) = waiting.encode(&request, FETCH_VERSION).unwrap();
    waiting.send_body(&body).unwrap();
    let started = Instant::now();
    strom_testkit::Admin::new(&broker.bootstrap())
        .delete_topic("vanishing")
        .expect("delete");
    let frame = waiting.read_frame().expect("the waiting fetch is answered");
    assert!(started.elapsed() < Duration::from_secs(9), "{:?}", started.elapsed());
    let response = strom_testkit::wire::decode_response::<FetchRequest>(frame, FETCH_VERSION, correlation_id)
        .expect("a decodable answer");
    let data = &response.responses[0].partitions[0];
    assert!(
        [0, 3, 6, 100].contains(&data.error_code),
        "unexpected error {} for a fetch on a deleted topic",
        data.error_code
    );
    broker.assert_healthy();
}

#[test]
fn a_topic_compression_type_is_refused_or_honoured() {
    let broker = start();
    let admin = strom_testkit::Admin::new(&broker.bootstrap());
    let mut failures = Vec::new();
    for (codec, attribute) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4), ("uncompressed", 0)] {
        let topic = format!("recompressed-{codec}");
        // Refusing the setting is honest; accepting it and storing something else is not.
        match admin.create_topic(&topic, 1, &[("compression.type", codec)]) {
            Ok(()) => {}
            Err(rdkafka::types::RDKafkaErrorCode::InvalidConfig) => {
                eprintln!("compression.type={codec} refused at creation");
                continue;
            }
            Err(code) => panic!("create with compression.type={codec}: {code:?}"),
        }
        let mut wire = broker.wire();
        // Sent as lz4 (or uncompressed for the lz4 topic), so every topic must convert.
        let sent_as = if codec == "lz4" {
            Compression::None
        } else {
            Compression::Lz4
        };
        let batch = record_batch(&[b"alpha", b"beta"], BatchProducer::NONE, sent_as, 1);
        assert_eq!(wire.produce(&topic, 0, batch, -1).unwrap().error_code, 0, "{codec}");
        let response = wire
            .call(
                &fetch_request(&topic, &[0], 0, 1, 1024 * 1024, 1024 * 1024),
                FETCH_VERSION,
            )
            .unwrap();
        let mut records: Bytes = response.responses[0].partitions[0].records.clone().unwrap_or_default();
        let infos = RecordBatchDecoder::decode_batch_info(&mut records.clone()).expect("batch info");
        let stored = infos.first().map(|i| i.compression as i32);
        if stored != Some(attribute) {
            failures.push(format!("{codec} topic stored compression {stored:?}"));
        }
        let sets = RecordBatchDecoder::decode_all(&mut records).expect("decode");
        let values: Vec<Vec<u8>> = sets
            .iter()
            .flat_map(|s| s.records.iter().map(|r| r.value.clone().unwrap_or_default().to_vec()))
            .collect();
        assert_eq!(values, [b"alpha".to_vec(), b"beta".to_vec()], "{codec}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
