//! KIP-467 per-record errors: records a topic refuses one by one (no key on a compacted topic)
//! are named by their index in the batch, so a client fails only
//! those and sends the rest again. On the wire, and through librdkafka.

mod common;

use std::net::{SocketAddr, ToSocketAddrs};

use kafka_protocol::messages::ProduceResponse;
use kafka_protocol::records::Compression;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::Offset;
use strom_testkit::wire::{batch_of, partition_response, produce_request};
use strom_testkit::{Admin, Consumer, Producer, Rec, WireClient};

const INVALID_RECORD: i16 = 87;
const NOW_MS: i64 = 1_700_000_000_000;

/// 20 records of 40-byte values, keyless at `keyless`.
fn records(keyless: &[usize]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    (0..20)
        .map(|i| {
            let key = (!keyless.contains(&i)).then(|| format!("key-{i}").into_bytes());
            (key, format!("value-{i:034}").into_bytes())
        })
        .collect()
}

fn batch(records: &[(Option<Vec<u8>>, Vec<u8>)], compression: Compression) -> bytes::Bytes {
    let borrowed: Vec<(Option<&[u8]>, &[u8])> = records
        .iter()
        .map(|(key, value)| (key.as_deref(), value.as_slice()))
        .collect();
    batch_of(&borrowed, compression, NOW_MS)
}

/// The record-error checks against any broker: `compacted` is an empty compacted topic of
/// one partition.
fn assert_record_errors(addr: SocketAddr, compacted: &str) {
    let keyless = [3, 7, 8, 19];
    let mut wire = WireClient::connect(addr).expect("connect");
    for compression in [Compression::None, Compression::Lz4] {
        let answer = wire
            .produce(compacted, 0, batch(&records(&keyless), compression), 1)
            .expect("produce");
        assert_eq!(answer.error_code, INVALID_RECORD, "{compression:?}");
        let indexes: Vec<i32> = answer.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, [3, 7, 8, 19], "{compression:?}");
        let expected = format!("Compacted topic cannot accept message without key in topic partition {compacted}-0");
        for error in &answer.record_errors {
            assert_eq!(error.batch_index_error_message.as_deref(), Some(expected.as_str()));
        }
        let message = answer.error_message.as_deref().unwrap_or_default().to_string();
        assert_eq!(
            message,
            format!(
                "One or more records have been rejected due to 4 record errors in total, and only showing the \
                 first three errors at most: [RecordError(batchIndex=3, message='{expected}'), \
                 RecordError(batchIndex=7, message='{expected}'), RecordError(batchIndex=8, message='{expected}')]"
            )
        );
    }
    // Produce v7 has no record errors: the batch is refused all the same.
    let request = produce_request(compacted, 0, batch(&records(&keyless), Compression::None), 1);
    let response: ProduceResponse = wire.call(&request, 7).expect("produce v7");
    let answer = partition_response(response, compacted, 0).unwrap();
    assert_eq!((answer.error_code, answer.record_errors.len()), (INVALID_RECORD, 0));
    // The keyed records alone are accepted, from offset 0: nothing of the refused batches was
    // appended.
    let keyed: Vec<_> = records(&[]).into_iter().take(16).collect();
    let answer = wire.produce(compacted, 0, batch(&keyed, Compression::None), 1).unwrap();
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));
}

#[test]
fn refused_records_are_named_by_their_batch_index() {
    let mut broker = common::start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("compacted", 1, &[("cleanup.policy", "compact")]);
    assert_record_errors(broker.addr(), "compacted");
    broker.assert_healthy();
}

/// The same checks against Apache Kafka (`scripts/kafka.sh start`, then
/// `KAFKA_REF_BOOTSTRAP=127.0.0.1:PORT cargo test -p strom --test record_errors -- --ignored`).
#[test]
#[ignore = "needs a running Kafka: KAFKA_REF_BOOTSTRAP"]
fn kafka_names_refused_records_the_same_way() {
    let bootstrap = std::env::var("KAFKA_REF_BOOTSTRAP").expect("KAFKA_REF_BOOTSTRAP");
    let addr = bootstrap.to_socket_addrs().unwrap().next().unwrap();
    let compacted = format!("compacted-{}", std::process::id());
    Admin::new(&bootstrap).create_topic_ok(&compacted, 1, &[("cleanup.policy", "compact")]);
    assert_record_errors(addr, &compacted);
}

/// librdkafka and KIP-467: 100 records in one batch to a compacted topic, every tenth without
/// key. As against Kafka 4.4, only the ten keyless ones fail with INVALID_RECORD; librdkafka
/// fails the other ninety too, but with its own "an invalid record in the same batch caused
/// the failure of this message too" (it does not retry them itself), so the application knows
/// to send them again, and they are then stored. Before, all hundred were INVALID_RECORD.
#[test]
fn librdkafka_fails_only_the_keyless_records_with_invalid_record() {
    let mut broker = common::start();
    let bootstrap = broker.bootstrap();
    Admin::new(&bootstrap).create_topic_ok("keys", 1, &[("cleanup.policy", "compact")]);
    let recs: Vec<Rec> = (0..100)
        .map(|i| {
            let value = format!("value-{i}");
            if i % 10 == 5 {
                Rec::value(value).partition(0)
            } else {
                Rec::keyed(format!("key-{i}"), value).partition(0)
            }
        })
        .collect();
    // One batch: everything is queued within the linger.
    let producer = Producer::new(&bootstrap, &[("linger.ms", "500"), ("batch.num.messages", "1000")]);
    let results = producer.send_all("keys", &recs);
    let mut retry = Vec::new();
    for (i, result) in results.iter().enumerate() {
        let expected = if i % 10 == 5 {
            RDKafkaErrorCode::InvalidRecord
        } else {
            retry.push(recs[i].clone());
            RDKafkaErrorCode::InvalidDifferentRecord
        };
        match result {
            Err(KafkaError::MessageProduction(code)) => assert_eq!(*code, expected, "record {i}"),
            other => panic!("record {i}: {other:?}, expected {expected:?}"),
        }
    }
    let delivered = producer.send_all_ok("keys", &retry);
    let offsets: Vec<i64> = delivered.iter().map(|d| d.offset).collect();
    assert_eq!(
        offsets,
        (0..90).collect::<Vec<i64>>(),
        "the ninety, and nothing before them"
    );
    let read = Consumer::new(&bootstrap).read_to_end("keys", 0, Offset::Beginning);
    let values: Vec<String> = read.iter().map(|r| common::utf8(&r.value)).collect();
    let expected: Vec<String> = retry.iter().map(|r| common::utf8(&r.value)).collect();
    assert_eq!(values, expected);
    broker.assert_healthy();
}
