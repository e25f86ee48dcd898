//! Transactions (KIP-98) against a real broker process: librdkafka's transactional producer and
//! read_committed consumer for what applications see (visibility, fencing, timeouts, crashes,
//! consume-transform-produce), and the raw wire client for the refusals a well-behaved client
//! never provokes.
//!
//! Records are tagged with where they come from (transaction, partition, index) so every check
//! can say exactly which records a consumer must, may, or must not see.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::create_topic;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, BrokerId, DescribeTransactionsRequest, EndTxnRequest, FetchRequest,
    FetchResponse, GroupId, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListTransactionsRequest,
    OffsetFetchRequest, ProduceRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use strom_testkit::client::CALL_TIMEOUT;
use strom_testkit::wire::{
    partition_response, produce_request, record_batch, topic_name, transactional_batch, BatchProducer, PRODUCE_VERSION,
};
use strom_testkit::{poll_until, Broker, Consumer, GroupMember, Producer, Rec, WireClient};

/// Bound on reading a topic to its end (the high watermark, or the last stable offset).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// One consumer poll; short so deadlines are checked often.
const POLL_STEP: Duration = Duration::from_millis(100);

// Kafka error codes.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

fn start() -> Broker {
    Broker::builder(strom_testkit::bin!())
        .set("group.initial.rebalance.delay.ms", "0")
        .start()
}

// ------------------------------------------------------------------ rdkafka helpers

/// A transactional producer whose `init_transactions` has succeeded; `extra` overrides the
/// test kit's producer settings.
fn txn_producer(bootstrap: &str, transactional_id: &str, extra: &[(&str, &str)]) -> Producer {
    let mut settings = vec![("transactional.id", transactional_id), ("linger.ms", "2")];
    settings.extend_from_slice(extra);
    let producer = Producer::new(bootstrap, &settings);
    producer
        .inner()
        .init_transactions(CALL_TIMEOUT)
        .unwrap_or_else(|e| panic!("init_transactions for {transactional_id}: {e}"));
    producer
}

/// Whether `error` is librdkafka's fatal error state (a fenced producer can do nothing more).
fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(error) => error.is_fatal(),
        _ => false,
    }
}

/// Whether `error` leaves the transaction to be aborted before the producer can go on.
fn requires_abort(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(error) => error.txn_requires_abort(),
        _ => false,
    }
}

/// A record as a consumer read it: partition, offset, value.
type Seen = (i32, i64, String);

/// Reads every partition of `topic` from its start with `isolation.level=isolation` until each
/// has reported its end: the high watermark under read_uncommitted, the last stable offset
/// under read_committed (librdkafka's end-of-partition follows the isolation level). Returned
/// partition by partition, each in the order delivered, which must be offset order.
fn read_all(broker: &Broker, topic: &str, partitions: i32, isolation: &str) -> Vec<Seen> {
    let consumer = Consumer::with(&broker.bootstrap(), &[("isolation.level", isolation)]);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("valid offset");
    }
    consumer.inner().assign(&assignment).expect("assign");
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut at_end = BTreeSet::new();
    let mut last_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen = Vec::new();
    while at_end.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{isolation} read of {topic} reached the end of only {at_end:?} within {READ_TIMEOUT:?}"
        );
        match consumer.inner().poll(POLL_STEP) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(e)) => panic!("{isolation} read of {topic}: {e}"),
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                at_end.remove(&partition);
                if let Some(last) = last_offsets.insert(partition, offset) {
                    assert!(
                        offset > last,
                        "{isolation} read of {topic}/{partition}: {offset} after {last}"
                    );
                }
                let value = String::from_utf8_lossy(message.payload().unwrap_or(b"<null>")).into_owned();
                seen.push((partition, offset, value));
            }
        }
    }
    seen.sort_by_key(|(partition, _, _)| *partition);
    seen
}

fn values(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(|(_, _, value)| value.clone()).collect()
}

// ------------------------------------------------------------------ wire helpers

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn init_txn(wire: &mut WireClient, transactional_id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    wire.find_coordinator(1, transactional_id).expect("FindCoordinator");
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = Some(TransactionalId(str_bytes(transactional_id)));
    request.transaction_timeout_ms = timeout_ms;
    request.producer_id = ProducerId(-1);
    request.producer_epoch = -1;
    wire.call(&request, 4).expect("InitProducerId")
}

/// InitProducerId that must succeed: (producer id, epoch).
fn init_txn_ok(wire: &mut WireClient, transactional_id: &str, timeout_ms: i32) -> (i64, i16) {
    let response = init_txn(wire, transactional_id, timeout_ms);
    assert_eq!(
        response.error_code, 0,
        "InitProducerId {transactional_id}: {response:?}"
    );
    (response.producer_id.0, response.producer_epoch)
}

/// AddPartitionsToTxn v3: the error code of every (topic, partition) asked, in request order.
fn add_partitions(
    wire: &mut WireClient,
    transactional_id: &str,
    (producer_id, epoch): (i64, i16),
    partitions: &[(&str, &[i32])],
) -> Vec<(String, i32, i16)> {
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = TransactionalId(str_bytes(transactional_id));
    request.v3_and_below_producer_id = ProducerId(producer_id);
    request.v3_and_below_producer_epoch = epoch;
    request.v3_and_below_topics = partitions
        .iter()
        .map(|(topic, indexes)| {
            let mut entry = AddPartitionsToTxnTopic::default();
            entry.name = topic_name(topic);
            entry.partitions = indexes.to_vec();
            entry
        })
        .collect();
    let response = wire.call(&request, 3).expect("AddPartitionsToTxn");
    response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|topic| {
            topic
                .results_by_partition
                .iter()
                .map(|p| (topic.name.to_string(), p.partition_index, p.partition_error_code))
        })
        .collect()
}

fn end_txn(wire: &mut WireClient, transactional_id: &str, producer: (i64, i16), commit: bool) -> i16 {
    let request = end_txn_request(transactional_id, producer, commit);
    wire.call(&request, 3).expect("EndTxn").error_code
}

fn end_txn_request(transactional_id: &str, (producer_id, epoch): (i64, i16), commit: bool) -> EndTxnRequest {
    let mut request = EndTxnRequest::default();
    request.transactional_id = TransactionalId(str_bytes(transactional_id));
    request.producer_id = ProducerId(producer_id);
    request.producer_epoch = epoch;
    request.committed = commit;
    request
}

/// One transactional v2 batch (the attribute's transactional bit set) of `values`.
fn txn_batch(values: &[&str], (producer_id, epoch): (i64, i16), base_sequence: i32) -> Bytes {
    let values: Vec<&[u8]> = values.iter().map(|value| value.as_bytes()).collect();
    let producer = BatchProducer {
        producer_id,
        producer_epoch: epoch,
        base_sequence,
    };
    transactional_batch(&values, producer, 1_700_000_000_000)
}

/// A Produce carrying a transactional id, for one partition (a transactions v1 version).
fn txn_produce(
    wire: &mut WireClient,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> PartitionProduceResponse {
    txn_produce_at(wire, PRODUCE_VERSION, transactional_id, topic, partition, batch)
}

fn txn_produce_at(
    wire: &mut WireClient,
    version: i16,
    transactional_id: &str,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> PartitionProduceResponse {
    let mut request: ProduceRequest = produce_request(topic, partition, batch, -1);
    request.transactional_id = Some(TransactionalId(str_bytes(transactional_id)));
    let response = wire.call(&request, version).expect("Produce");
    partition_response(response, topic, partition).expect("partition answer")
}

/// ListOffsets v4 `latest` of one partition under each isolation level: (high watermark, last
/// stable offset).
fn ends(broker: &Broker, topic: &str, partition: i32) -> (i64, i64) {
    let mut wire = broker.wire();
    let mut latest = |isolation_level: i8| {
        let mut wanted = ListOffsetsPartition::default();
        wanted.partition_index = partition;
        wanted.current_leader_epoch = -1;
        wanted.timestamp = -1;
        let mut entry = ListOffsetsTopic::default();
        entry.name = topic_name(topic);
        entry.partitions = vec![wanted];
        let mut request = ListOffsetsRequest::default();
        request.replica_id = BrokerId(-1);
        request.isolation_level = isolation_level;
        request.topics = vec![entry];
        let response = wire.call(&request, 4).expect("ListOffsets");
        let answer = &response.topics[0].partitions[0];
        assert_eq!(answer.error_code, 0, "ListOffsets {topic}/{partition}: {answer:?}");
        answer.offset
    };
    (latest(0), latest(1))
}

/// What DescribeTransactions says about one id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Described {
    state: String,
    producer_id: i64,
    epoch: i16,
    partitions: BTreeSet<(String, i32)>,
}

fn describe(broker: &Broker, transactional_id: &str) -> Described {
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![TransactionalId(str_bytes(transactional_id))];
    let response = broker.wire().call(&request, 0).expect("DescribeTransactions");
    let [txn] = &response.transaction_states[..] else {
        panic!("one answer per id: {response:?}");
    };
    assert_eq!(txn.error_code, 0, "describe {transactional_id}: {txn:?}");
    assert_eq!(txn.transactional_id.as_str(), transactional_id);
    Described {
        state: txn.transaction_state.to_string(),
        producer_id: txn.producer_id.0,
        epoch: txn.producer_epoch,
        partitions: txn
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect(),
    }
}

/// ListTransactions filtered by state: the ids listed.
fn listed(broker: &Broker, states: &[&str]) -> BTreeSet<String> {
    let mut request = ListTransactionsRequest::default();
    request.state_filters = states.iter().map(|s| str_bytes(s)).collect();
    request.duration_filter = -1;
    let response = broker.wire().call(&request, 1).expect("ListTransactions");
    assert_eq!(response.error_code, 0, "{response:?}");
    response
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.to_string())
        .collect()
}

fn partitions_of(topic: &str, partitions: &[i32]) -> BTreeSet<(String, i32)> {
    partitions.iter().map(|p| (topic.to_string(), *p)).collect()
}

// ------------------------------------------------------------------ visibility

/// What [`interleave`] wrote, and what every partition must therefore hold.
struct Interleaved {
    /// (partition, offset, value, committed) of every data record, in offset order.
    written: Vec<(i32, i64, String, bool)>,
    /// (producer name, commit) of the markers every partition holds, in order.
    ended: Vec<(String, bool)>,
    /// (producer name, partition, first offset) of every aborted transaction.
    aborted_first: BTreeSet<(String, i32, i64)>,
    /// Producer id -> producer name.
    names: BTreeMap<i64, String>,
}

/// Two transactional producers (`<topic>-a`, `<topic>-b`) interleave their records in every
/// partition of `topic`, one committing and the other aborting each of `rounds` rounds, with
/// plain records landing between them; each record's value is padded to `value_bytes`.
fn interleave(broker: &Broker, topic: &str, partitions: i32, rounds: usize, value_bytes: usize) -> Interleaved {
    let bootstrap = broker.bootstrap();
    let producers = [
        ("a", txn_producer(&bootstrap, &format!("{topic}-a"), &[])),
        ("b", txn_producer(&bootstrap, &format!("{topic}-b"), &[])),
    ];
    let plain = Producer::new(&bootstrap, &[("acks", "all")]);
    let value = |tag: String| format!("{tag:-<value_bytes$}");
    let mut written: Vec<(i32, i64, String, bool)> = Vec::new();
    let mut ended: Vec<(String, bool)> = Vec::new();
    let mut aborted_first: BTreeSet<(String, i32, i64)> = BTreeSet::new();
    for round in 0..rounds {
        let committer = round % 2;
        for (_, producer) in &producers {
            producer.inner().begin_transaction().expect("begin");
        }
        let mut round_records: Vec<(usize, i32, i64, String)> = Vec::new();
        for step in 0..2 {
            for (index, (name, producer)) in producers.iter().enumerate() {
                let recs: Vec<Rec> = (0..partitions)
                    .map(|p| Rec::value(value(format!("r{round}-{name}-s{step}-p{p}"))).partition(p))
                    .collect();
                let delivered = producer.send_all_ok(topic, &recs);
                for (rec, at) in recs.iter().zip(delivered) {
                    round_records.push((index, at.partition, at.offset, common::utf8(&rec.value)));
                }
            }
            // Committed at once, but behind both open transactions in every partition.
            let recs: Vec<Rec> = (0..partitions)
                .map(|p| Rec::value(value(format!("r{round}-plain-s{step}-p{p}"))).partition(p))
                .collect();
            for (rec, at) in recs.iter().zip(plain.send_all_ok(topic, &recs)) {
                written.push((at.partition, at.offset, common::utf8(&rec.value), true));
            }
        }
        // Commit first in even rounds, abort first in odd ones.
        let (first, second) = if round % 2 == 0 {
            (committer, 1 - committer)
        } else {
            (1 - committer, committer)
        };
        for index in [first, second] {
            ended.push((producers[index].0.to_string(), index == committer));
            let producer = producers[index].1.inner();
            if index == committer {
                producer.commit_transaction(CALL_TIMEOUT).expect("commit");
            } else {
                // Every record was delivered (send_all_ok waits), so the abort purges nothing.
                producer.abort_transaction(CALL_TIMEOUT).expect("abort");
            }
        }
        let aborter = 1 - committer;
        for partition in 0..partitions {
            let first_offset = round_records
                .iter()
                .filter(|(index, p, _, _)| *index == aborter && *p == partition)
                .map(|(_, _, offset, _)| *offset)
                .min()
                .expect("the aborter wrote every partition");
            aborted_first.insert((producers[aborter].0.to_string(), partition, first_offset));
        }
        written.extend(
            round_records
                .into_iter()
                .map(|(index, partition, offset, value)| (partition, offset, value, index == committer)),
        );
    }
    written.sort();
    let names = producers
        .iter()
        .map(|(name, _)| {
            (
                describe(broker, &format!("{topic}-{name}")).producer_id,
                name.to_string(),
            )
        })
        .collect();
    Interleaved {
        written,
        ended,
        aborted_first,
        names,
    }
}

/// Checks what consumers and a raw read_committed Fetch get from a topic [`interleave`]
/// wrote: read_committed exactly the committed and plain records, in offset order;
/// read_uncommitted every data record; the offsets between them exactly the markers, of the
/// right producer and kind, in order; the Fetch's aborted transactions exactly the aborted
/// ones.
fn check_interleaved(broker: &Broker, topic: &str, partitions: i32, expected: &Interleaved) {
    let committed: Vec<Seen> = expected
        .written
        .iter()
        .filter(|w| w.3)
        .map(|(p, o, v, _)| (*p, *o, v.clone()))
        .collect();
    let everything: Vec<Seen> = expected
        .written
        .iter()
        .map(|(p, o, v, _)| (*p, *o, v.clone()))
        .collect();
    assert_eq!(
        read_all(broker, topic, partitions, "read_committed"),
        committed,
        "read_committed"
    );
    assert_eq!(
        read_all(broker, topic, partitions, "read_uncommitted"),
        everything,
        "read_uncommitted"
    );
    for partition in 0..partitions {
        let data: BTreeSet<i64> = expected
            .written
            .iter()
            .filter(|w| w.0 == partition)
            .map(|w| w.1)
            .collect();
        let (high_watermark, stable) = ends(broker, topic, partition);
        assert_eq!(stable, high_watermark, "nothing open in partition {partition}");
        let markers: BTreeSet<i64> = (0..high_watermark).filter(|o| !data.contains(o)).collect();
        assert_eq!(markers.len(), expected.ended.len(), "markers in partition {partition}");

        // A read_committed Fetch returns the aborted records and the markers too; the consumer
        // filters them.
        let fetched = fetch_read_committed(broker, topic, partition, 0);
        let data_fetched: BTreeSet<i64> = fetched
            .records
            .iter()
            .filter(|r| r.marker.is_none())
            .map(|r| r.offset)
            .collect();
        let control_fetched: BTreeSet<i64> = fetched
            .records
            .iter()
            .filter(|r| r.marker.is_some())
            .map(|r| r.offset)
            .collect();
        assert_eq!(
            (data_fetched, control_fetched),
            (data, markers),
            "offsets of the records a read_committed Fetch of partition {partition} returns"
        );
        let marker_kinds: Vec<(String, bool)> = fetched
            .records
            .iter()
            .filter_map(|r| r.marker.map(|commit| (expected.names[&r.producer_id].clone(), commit)))
            .collect();
        assert_eq!(
            marker_kinds, expected.ended,
            "markers of partition {partition}, in offset order"
        );
        assert_eq!(fetched.last_stable_offset, high_watermark);
        let listed: BTreeSet<(String, i32, i64)> = fetched
            .aborted
            .iter()
            .map(|(producer_id, first)| (expected.names[producer_id].clone(), partition, *first))
            .collect();
        let aborted: BTreeSet<(String, i32, i64)> = expected
            .aborted_first
            .iter()
            .filter(|(_, p, _)| *p == partition)
            .cloned()
            .collect();
        assert_eq!(listed, aborted, "aborted transactions of partition {partition}");
    }
}

/// Two transactional producers interleave their records in three partitions, one committing
/// and the other aborting each round, with plain records between them: see
/// [`check_interleaved`] for what consumers and the broker's Fetch must then return.
#[test]
fn read_committed_sees_exactly_the_committed_records_in_order() {
    const TOPIC: &str = "visibility";
    let broker = start();
    create_topic(&broker, TOPIC, 3);
    let written = interleave(&broker, TOPIC, 3, 4, 0);
    check_interleaved(&broker, TOPIC, 3, &written);
}

/// The same with 1 KiB segments, so transactions straddle segments and their aborts are
/// indexed in a later segment than their first records; read again after a SIGKILL (the
/// producer state and the aborted-transaction indexes come from crash recovery's scan of the
/// log) and after a graceful restart (they come from the snapshot and index files as written).
#[test]
fn aborted_transactions_spanning_segments_stay_hidden_after_restarts() {
    const TOPIC: &str = "segmented";
    let mut broker = start();
    strom_testkit::Admin::new(&broker.bootstrap()).create_topic_ok(TOPIC, 1, &[("segment.bytes", "1024")]);
    let written = interleave(&broker, TOPIC, 1, 12, 120);
    check_interleaved(&broker, TOPIC, 1, &written);
    broker.sigkill();
    broker.restart();
    let segments = std::fs::read_dir(broker.data_dir().join(format!("{TOPIC}-0")))
        .expect("partition directory")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|ext| ext == "log"))
        })
        .count();
    assert!(
        segments >= 10,
        "only {segments} segments: transactions do not straddle them"
    );
    check_interleaved(&broker, TOPIC, 1, &written);
    broker.restart();
    check_interleaved(&broker, TOPIC, 1, &written);

    // A fetch from any offset lists exactly the aborted transactions whose marker is at or
    // after it, wherever their first record is.
    let whole = fetch_read_committed(&broker, TOPIC, 0, 0);
    let aborts: Vec<(i64, i64, i64)> = whole
        .aborted
        .iter()
        .map(|&(producer_id, first)| {
            let marker = whole
                .records
                .iter()
                .find(|r| r.producer_id == producer_id && r.offset > first && r.marker == Some(false))
                .expect("an abort marker after the first record")
                .offset;
            (producer_id, first, marker)
        })
        .collect();
    let (high_watermark, _) = ends(&broker, TOPIC, 0);
    for from in 0..high_watermark {
        let mut listed = fetch_read_committed(&broker, TOPIC, 0, from).aborted;
        listed.sort();
        let mut expected: Vec<(i64, i64)> = aborts
            .iter()
            .filter(|(_, _, marker)| *marker >= from)
            .map(|&(producer_id, first, _)| (producer_id, first))
            .collect();
        expected.sort();
        assert_eq!(listed, expected, "aborted transactions listed for a fetch from {from}");
    }
}

/// Asserts that a read_committed Fetch of the whole partition reports `stable` as its last
/// stable offset and returns nothing at or past it. (A consumer may not show such records
/// at once: librdkafka reports the end of a partition before looking at what the response
/// holds past it.)
fn assert_fetch_stops_at(broker: &Broker, topic: &str, partition: i32, stable: i64) {
    let fetched = fetch_read_committed(broker, topic, partition, 0);
    assert_eq!(fetched.last_stable_offset, stable, "LSO of {topic}/{partition}");
    let beyond: Vec<i64> = fetched
        .records
        .iter()
        .map(|r| r.offset)
        .filter(|offset| *offset >= stable)
        .collect();
    assert_eq!(
        beyond,
        Vec::<i64>::new(),
        "read_committed Fetch of {topic}/{partition} past the LSO {stable}"
    );
}

/// One record of a fetched batch.
struct FetchedRecord {
    offset: i64,
    producer_id: i64,
    /// For a control record, whether it is a COMMIT (else an ABORT) marker.
    marker: Option<bool>,
}

/// What one read_committed Fetch of a whole partition returned.
struct Fetched {
    /// Every record of the returned batches, in offset order.
    records: Vec<FetchedRecord>,
    /// (producer id, first offset) of each aborted transaction listed.
    aborted: Vec<(i64, i64)>,
    last_stable_offset: i64,
}

/// A read_committed Fetch of one partition from `from`, of up to 1 MiB.
fn fetch_read_committed(broker: &Broker, topic: &str, partition: i32, from: i64) -> Fetched {
    let mut wanted = FetchPartition::default();
    wanted.partition = partition;
    wanted.current_leader_epoch = -1;
    wanted.fetch_offset = from;
    wanted.last_fetched_epoch = -1;
    wanted.log_start_offset = -1;
    wanted.partition_max_bytes = 1 << 20;
    let mut entry = FetchTopic::default();
    entry.topic = topic_name(topic);
    entry.partitions = vec![wanted];
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 0;
    request.min_bytes = 1;
    request.max_bytes = 1 << 20;
    request.isolation_level = 1;
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics = vec![entry];
    let response: FetchResponse = broker.wire().call(&request, 12).expect("Fetch");
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0, "fetch {topic}/{partition}");
    let mut bytes = data.records.clone().unwrap_or_default();
    let records = RecordBatchDecoder::decode_all(&mut bytes)
        .expect("decode fetched batches")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|record| FetchedRecord {
            offset: record.offset,
            producer_id: record.producer_id,
            // A control record's key is a version (i16) and a type (i16): 0 abort, 1 commit.
            marker: record.control.then(|| {
                let key = record.key.as_deref().expect("a control record has a key");
                assert_eq!(key.len(), 4, "control record key {key:?}");
                match i16::from_be_bytes([key[2], key[3]]) {
                    0 => false,
                    1 => true,
                    other => panic!("control record type {other}"),
                }
            }),
        })
        .collect();
    Fetched {
        records,
        aborted: data
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
        last_stable_offset: data.last_stable_offset,
    }
}

// ------------------------------------------------------------------ fencing

/// A second producer with the same transactional id fences the first: the first's open
/// transaction is aborted (its records are in the log, invisible to read_committed), its next
/// write is refused and lands nowhere, it can neither commit nor abort and ends in librdkafka's
/// fatal state, and the second's transactions commit normally.
#[test]
fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
    const TOPIC: &str = "fencing";
    let broker = start();
    let bootstrap = broker.bootstrap();
    create_topic(&broker, TOPIC, 2);
    let old = txn_producer(&bootstrap, "fenced-id", &[]);
    let old_epoch = describe(&broker, "fenced-id").epoch;
    old.inner().begin_transaction().expect("begin");
    old.send_all_ok(
        TOPIC,
        &[Rec::value("old-0").partition(0), Rec::value("old-1").partition(1)],
    );

    let new = txn_producer(&bootstrap, "fenced-id", &[]);
    let after_fence = describe(&broker, "fenced-id");
    assert!(
        after_fence.epoch > old_epoch + 1,
        "the abort on the old producer's behalf bumps the epoch, and the new producer's epoch \
         is above that: {old_epoch} -> {after_fence:?}"
    );
    new.inner().begin_transaction().expect("begin");
    new.send_all_ok(
        TOPIC,
        &[Rec::value("new-0").partition(0), Rec::value("new-1").partition(1)],
    );

    // The old producer learns it is fenced on its next request, whichever that is.
    let sent = old.send(TOPIC, &Rec::value("zombie-0").partition(0));
    assert!(sent.is_err(), "a fenced producer's write was acknowledged: {sent:?}");
    // A fenced write only makes the transaction abortable (KIP-588); the abort, refused by
    // the coordinator, is what tells the producer it is fenced for good.
    let commit = old
        .inner()
        .commit_transaction(CALL_TIMEOUT)
        .expect_err("the fenced producer committed");
    if !is_fatal(&commit) {
        assert!(requires_abort(&commit), "{commit}");
        let abort = old
            .inner()
            .abort_transaction(CALL_TIMEOUT)
            .expect_err("the fenced producer aborted");
        assert!(
            is_fatal(&abort),
            "the fenced producer's abort must fail fatally: {abort}"
        );
    }
    new.inner().commit_transaction(CALL_TIMEOUT).expect("commit");
    assert_eq!(describe(&broker, "fenced-id").state, "CompleteCommit");

    assert_eq!(
        values(&read_all(&broker, TOPIC, 2, "read_committed")),
        ["new-0", "new-1"],
        "only the new producer's transaction"
    );
    // The old records were written and aborted, not lost; the zombie write never landed.
    assert_eq!(
        values(&read_all(&broker, TOPIC, 2, "read_uncommitted")),
        ["old-0", "new-0", "old-1", "new-1"]
    );

    new.inner().begin_transaction().expect("a second transaction");
    new.send_all_ok(TOPIC, &[Rec::value("new-2").partition(0)]);
    new.inner().commit_transaction(CALL_TIMEOUT).expect("commit");
    assert_eq!(
        values(&read_all(&broker, TOPIC, 2, "read_committed")),
        ["new-0", "new-2", "new-1"]
    );
}

// ------------------------------------------------------------------ timeout

/// A producer that opens a transaction and goes quiet holds back read_committed consumers
/// (the last stable offset stays at its first record) until `transaction.timeout.ms` passes;
/// then the broker aborts it under a bumped epoch, the records behind it become visible, and
/// its own records never do.
#[test]
fn an_abandoned_transaction_is_aborted_by_its_timeout() {
    const TOPIC: &str = "abandoned";
    /// Long enough for the checks of the open transaction to finish before it on two busy
    /// cores; they take a second or two.
    const TIMEOUT: Duration = Duration::from_secs(8);
    /// How late after its deadline the abort may be seen: the broker's timer task and the
    /// ListOffsets polls, generously for two slow cores.
    const SLACK: Duration = Duration::from_secs(10);
    let broker = start();
    let bootstrap = broker.bootstrap();
    create_topic(&broker, TOPIC, 3);
    let timeout_ms = TIMEOUT.as_millis().to_string();
    // librdkafka refuses message and socket timeouts above the transaction timeout.
    let quiet = txn_producer(
        &bootstrap,
        "quiet",
        &[
            ("transaction.timeout.ms", &timeout_ms),
            ("message.timeout.ms", "4000"),
            ("socket.timeout.ms", "3000"),
        ],
    );
    let (producer_id, epoch) = {
        let described = describe(&broker, "quiet");
        (described.producer_id, described.epoch)
    };
    // The broker starts the clock at the first AddPartitionsToTxn, which comes after this.
    let began = Instant::now();
    quiet.inner().begin_transaction().expect("begin");
    let abandoned = quiet.send_all_ok(
        TOPIC,
        &[
            Rec::value("abandoned-0").partition(0),
            Rec::value("abandoned-1").partition(1),
        ],
    );
    let first_open = abandoned[0].offset;

    let later = Producer::new(&bootstrap, &[("acks", "all")]);
    later.send_all_ok(
        TOPIC,
        &[Rec::value("later-0").partition(0), Rec::value("later-2").partition(2)],
    );

    let open = describe(&broker, "quiet");
    assert_eq!(
        open,
        Described {
            state: "Ongoing".into(),
            producer_id,
            epoch,
            partitions: partitions_of(TOPIC, &[0, 1]),
        }
    );
    assert!(listed(&broker, &["Ongoing"]).contains("quiet"));
    assert!(!listed(&broker, &["CompleteAbort"]).contains("quiet"));
    assert_eq!(ends(&broker, TOPIC, 0), (2, first_open), "(high watermark, LSO) held");
    assert_fetch_stops_at(&broker, TOPIC, 0, first_open);
    // Partition 2 is not in the transaction, so nothing holds it back.
    assert_eq!(
        values(&read_all(&broker, TOPIC, 3, "read_committed")),
        ["later-2"],
        "read_committed while the transaction is open"
    );
    assert_eq!(
        ends(&broker, TOPIC, 0),
        (2, first_open),
        "(high watermark, LSO) still held"
    );
    assert!(
        began.elapsed() < TIMEOUT,
        "the checks of the open transaction took {:?}, longer than its timeout: too slow to mean anything",
        began.elapsed()
    );

    poll_until(TIMEOUT + SLACK, "the timeout to release the LSO", || {
        let (high_watermark, stable) = ends(&broker, TOPIC, 0);
        (stable == high_watermark).then_some(())
    });
    let released = began.elapsed();
    assert!(released >= TIMEOUT, "aborted after {released:?}, before its timeout");
    // The abort marker follows the two records.
    assert_eq!(ends(&broker, TOPIC, 0), (3, 3));
    assert_eq!(
        values(&read_all(&broker, TOPIC, 3, "read_committed")),
        ["later-0", "later-2"],
        "read_committed after the abort"
    );
    let aborted = describe(&broker, "quiet");
    assert_eq!(
        aborted,
        Described {
            state: "CompleteAbort".into(),
            producer_id,
            epoch: epoch + 1,
            partitions: BTreeSet::new(),
        }
    );
    assert!(listed(&broker, &["CompleteAbort"]).contains("quiet"));
    assert!(!listed(&broker, &["Ongoing"]).contains("quiet"));
    // The bumped epoch fences the producer that went quiet.
    let commit = quiet.inner().commit_transaction(CALL_TIMEOUT);
    assert!(commit.is_err(), "a timed-out transaction committed");
    assert_eq!(
        values(&read_all(&broker, TOPIC, 3, "read_committed")),
        ["later-0", "later-2"],
        "read_committed after the late commit attempt"
    );
}

// ------------------------------------------------------------------ crashes

/// Transactions the crash test's writers started, and how each ended as far as the writer knows.
#[derive(Default)]
struct Ledger {
    /// Transaction number -> whether its commit returned Ok.
    outcomes: Mutex<BTreeMap<u64, bool>>,
    committed: AtomicUsize,
    /// What the running writer is doing: one of the `PHASE_*` constants.
    phase: AtomicU8,
    next: AtomicU64,
    stop: AtomicBool,
}

const PHASE_IDLE: u8 = 0;
const PHASE_SENDING: u8 = 1;
const PHASE_COMMITTING: u8 = 2;

const CRASH_TOPIC: &str = "crash";
const CRASH_PARTITIONS: u64 = 8;
/// Each transaction writes this many of the topic's partitions...
const CRASH_PARTITIONS_PER_TXN: u64 = 6;
/// ... and this many records to each.
const CRASH_RECORDS_PER_PARTITION: u64 = 2;

/// The records of transaction `n`: (partition, value).
fn crash_records(n: u64) -> Vec<(i32, String)> {
    (0..CRASH_PARTITIONS_PER_TXN)
        .flat_map(|k| {
            let partition = (n + k) % CRASH_PARTITIONS;
            (0..CRASH_RECORDS_PER_PARTITION).map(move |i| (partition as i32, format!("{n:06}/{partition}/{i}")))
        })
        .collect()
}

/// How long a writer's commit may take before the writer gives up on it.
const COMMIT_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs transactions until one step fails or `stop` is set; returns why it stopped.
fn write_transactions(bootstrap: &str, ledger: &Ledger) -> String {
    let producer = Producer::new(
        bootstrap,
        &[
            ("transactional.id", "crash-writer"),
            ("linger.ms", "1"),
            ("transaction.timeout.ms", "10000"),
            ("message.timeout.ms", "5000"),
            ("socket.timeout.ms", "3000"),
        ],
    );
    if let Err(e) = producer.inner().init_transactions(Duration::from_secs(10)) {
        return format!("init_transactions: {e}");
    }
    while !ledger.stop.load(Ordering::SeqCst) {
        let n = ledger.next.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = producer.inner().begin_transaction() {
            return format!("begin {n}: {e}");
        }
        ledger.outcomes.lock().unwrap().insert(n, false);
        ledger.phase.store(PHASE_SENDING, Ordering::SeqCst);
        let recs: Vec<Rec> = crash_records(n)
            .into_iter()
            .map(|(partition, value)| Rec::value(value).partition(partition))
            .collect();
        if let Some(Err(e)) = producer.send_all(CRASH_TOPIC, &recs).into_iter().find(Result::is_err) {
            return format!("send in {n}: {e}");
        }
        ledger.phase.store(PHASE_COMMITTING, Ordering::SeqCst);
        // Short, so a commit the broker's crash interrupts fails rather than riding the restart
        // out; its outcome is then unknown to the writer, which is what the test is about.
        let committed = producer.inner().commit_transaction(COMMIT_TIMEOUT);
        ledger.phase.store(PHASE_IDLE, Ordering::SeqCst);
        match committed {
            Ok(()) => {
                ledger.outcomes.lock().unwrap().insert(n, true);
                ledger.committed.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => return format!("commit {n}: {e}"),
        }
    }
    "stopped".into()
}

/// A writer commits transactions over 6 of 8 partitions each while the broker is SIGKILLed
/// and restarted five times (at three points of a commit, once mid-produce, once anywhere).
/// Afterwards every transaction whose commit returned Ok is entirely visible to
/// read_committed, and every other one is either entirely visible or not at all; no record
/// appears twice. A writer that saw an error stops, and the next one, with the same
/// transactional id, fences it and aborts what it left open.
#[test]
fn transactions_are_all_or_nothing_across_broker_crashes() {
    const COMMITS_PER_ROUND: usize = 12;
    const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
    let mut broker = start();
    let bootstrap = broker.bootstrap();
    create_topic(&broker, CRASH_TOPIC, CRASH_PARTITIONS as i32);
    let ledger = Arc::new(Ledger::default());
    let spawn = || -> JoinHandle<String> {
        let bootstrap = bootstrap.clone();
        let ledger = Arc::clone(&ledger);
        std::thread::spawn(move || write_transactions(&bootstrap, &ledger))
    };
    let mut stops = Vec::new();
    let mut writer = spawn();
    let mut killed_in = Vec::new();
    // Where each crash lands: once the writer is in this phase, and this long into it. The
    // delays are not synchronisation; they spread the crashes over a commit (EndTxn not yet
    // sent, the decision written but not all markers, all written but not answered).
    let kill_points = [
        (Some(PHASE_COMMITTING), Duration::ZERO),
        (Some(PHASE_SENDING), Duration::ZERO),
        (Some(PHASE_COMMITTING), Duration::from_micros(1500)),
        (Some(PHASE_COMMITTING), Duration::from_micros(4000)),
        (None, Duration::ZERO),
    ];
    for (kill_in, delay) in kill_points {
        let target = ledger.committed.load(Ordering::SeqCst) + COMMITS_PER_ROUND;
        poll_until(ROUND_TIMEOUT, "transactions committed between crashes", || {
            if writer.is_finished() {
                // The last crash stopped the writer; a new one fences and aborts what it left.
                let old = std::mem::replace(&mut writer, spawn());
                stops.push(old.join().expect("writer thread"));
            }
            (ledger.committed.load(Ordering::SeqCst) >= target).then_some(())
        });
        if let Some(phase) = kill_in {
            // Checked far more often than the poll interval: a commit lasts milliseconds.
            let deadline = Instant::now() + Duration::from_secs(10);
            while ledger.phase.load(Ordering::SeqCst) != phase && !writer.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(delay);
        }
        killed_in.push(ledger.phase.load(Ordering::SeqCst));
        broker.sigkill();
        broker.restart();
    }
    ledger.stop.store(true, Ordering::SeqCst);
    stops.push(writer.join().expect("writer thread"));

    // A last producer with the same id aborts whatever the writers left open, and its own
    // committed transaction must be visible like any other.
    let last = txn_producer(&bootstrap, "crash-writer", &[]);
    let final_n = ledger.next.fetch_add(1, Ordering::SeqCst);
    last.inner().begin_transaction().expect("begin");
    let recs: Vec<Rec> = crash_records(final_n)
        .into_iter()
        .map(|(partition, value)| Rec::value(value).partition(partition))
        .collect();
    last.send_all_ok(CRASH_TOPIC, &recs);
    last.inner().commit_transaction(CALL_TIMEOUT).expect("final commit");
    ledger.outcomes.lock().unwrap().insert(final_n, true);

    let seen = read_all(&broker, CRASH_TOPIC, CRASH_PARTITIONS as i32, "read_committed");
    let mut by_txn: BTreeMap<u64, Vec<(i32, String)>> = BTreeMap::new();
    for (partition, _, value) in &seen {
        let n: u64 = value[..6].parse().unwrap_or_else(|_| panic!("untagged record {value}"));
        by_txn.entry(n).or_default().push((*partition, value.clone()));
    }
    let outcomes = ledger.outcomes.lock().unwrap().clone();
    let (mut unknown_visible, mut unknown_invisible) = (0, 0);
    for (n, records) in &mut by_txn {
        let Some(&committed) = outcomes.get(n) else {
            panic!("records of transaction {n}, which no writer began: {records:?}");
        };
        records.sort();
        let mut expected = crash_records(*n);
        expected.sort();
        assert_eq!(
            *records, expected,
            "transaction {n} (commit returned Ok: {committed}) is partly visible or duplicated"
        );
        if !committed {
            unknown_visible += 1;
        }
    }
    for (n, committed) in &outcomes {
        if *committed {
            assert!(by_txn.contains_key(n), "committed transaction {n} is not visible");
        } else if !by_txn.contains_key(n) {
            unknown_invisible += 1;
        }
    }
    assert!(
        outcomes.values().filter(|c| **c).count() > 3 * COMMITS_PER_ROUND,
        "too few commits to mean anything: {outcomes:?}"
    );
    eprintln!(
        "{} transactions committed, {unknown_visible} unacknowledged but visible, \
         {unknown_invisible} unacknowledged and invisible; killed in phases {killed_in:?}; \
         writers stopped: {stops:?}",
        outcomes.values().filter(|c| **c).count()
    );
}

/// A transaction left open when the broker crashes, by a producer that never comes back, is
/// still aborted by its timeout after the restart: the deadline is in the coordinator's log,
/// not only in its memory.
#[test]
fn a_transaction_orphaned_by_a_crash_is_aborted_by_its_timeout_after_the_restart() {
    const TOPIC: &str = "orphan";
    /// Long enough for a restart and the checks of the open transaction to finish before it.
    const TIMEOUT: Duration = Duration::from_secs(8);
    const SLACK: Duration = Duration::from_secs(10);
    let mut broker = start();
    create_topic(&broker, TOPIC, 1);
    let mut wire = broker.wire();
    let producer = init_txn_ok(&mut wire, "orphan", TIMEOUT.as_millis() as i32);
    let opened = Instant::now();
    assert_eq!(
        add_partitions(&mut wire, "orphan", producer, &[(TOPIC, &[0])]),
        [(TOPIC.to_string(), 0, 0)]
    );
    let written = txn_produce(&mut wire, "orphan", TOPIC, 0, txn_batch(&["o-0", "o-1"], producer, 0));
    assert_eq!(written.error_code, 0, "{written:?}");
    let plain = record_batch(&[b"plain"], BatchProducer::NONE, Compression::None, 0);
    assert_eq!(wire.produce(TOPIC, 0, plain, -1).unwrap().error_code, 0);
    drop(wire);
    broker.sigkill();
    broker.restart();

    let open = describe(&broker, "orphan");
    assert_eq!((open.state.as_str(), open.epoch), ("Ongoing", producer.1), "{open:?}");
    assert_eq!(
        ends(&broker, TOPIC, 0),
        (3, 0),
        "(high watermark, LSO) after the restart"
    );
    assert_fetch_stops_at(&broker, TOPIC, 0, 0);
    assert!(
        opened.elapsed() < TIMEOUT,
        "the restart took {:?}, longer than the transaction's timeout: too slow to mean anything",
        opened.elapsed()
    );
    poll_until(TIMEOUT + SLACK, "the timeout to release the LSO", || {
        let (high_watermark, stable) = ends(&broker, TOPIC, 0);
        (stable == high_watermark).then_some(())
    });
    assert!(opened.elapsed() >= TIMEOUT, "aborted after {:?}", opened.elapsed());
    let aborted = describe(&broker, "orphan");
    assert_eq!(
        (aborted.state.as_str(), aborted.epoch),
        ("CompleteAbort", producer.1 + 1),
        "{aborted:?}"
    );
    assert_eq!(values(&read_all(&broker, TOPIC, 1, "read_committed")), ["plain"]);
    // Were the producer to come back with its old epoch, it would find itself fenced.
    assert_eq!(end_txn(&mut broker.wire(), "orphan", producer, true), PRODUCER_FENCED);
}

/// The transaction the restart tests leave open: (partition, offset) of its records.
fn open_transaction(producer: &Producer, topic: &str) -> Vec<(i32, i64)> {
    producer.inner().begin_transaction().expect("begin");
    let recs = [
        Rec::value("open-0a").partition(0),
        Rec::value("open-0b").partition(0),
        Rec::value("open-1a").partition(1),
    ];
    producer
        .send_all_ok(topic, &recs)
        .into_iter()
        .map(|d| (d.partition, d.offset))
        .collect()
}

/// A transaction open across a broker restart (SIGKILL, or SIGTERM when `crash` is false) is
/// still open afterwards, holding back read_committed, until its producer ends it the way
/// `commit` says; then a committed transaction followed at once by a SIGKILL is visible after
/// the restart.
fn an_open_transaction_survives_a_restart(crash: bool, commit: bool) {
    const TOPIC: &str = "reopen";
    let mut broker = start();
    let bootstrap = broker.bootstrap();
    create_topic(&broker, TOPIC, 2);
    let producer = txn_producer(&bootstrap, "reopen", &[]);
    let written = open_transaction(&producer, TOPIC);
    assert_eq!(written, [(0, 0), (0, 1), (1, 0)]);
    let before = describe(&broker, "reopen");
    assert_eq!(before.state, "Ongoing");
    assert_eq!(before.partitions, partitions_of(TOPIC, &[0, 1]));

    if crash {
        broker.sigkill();
    }
    broker.restart();
    assert_eq!(describe(&broker, "reopen"), before, "the transaction after the restart");
    let plain = Producer::new(&bootstrap, &[("acks", "all")]);
    plain.send_all_ok(TOPIC, &[Rec::value("plain-0").partition(0)]);
    assert_eq!(ends(&broker, TOPIC, 0), (3, 0), "(high watermark, LSO) of partition 0");
    assert_eq!(ends(&broker, TOPIC, 1), (1, 0), "(high watermark, LSO) of partition 1");
    assert_fetch_stops_at(&broker, TOPIC, 0, 0);
    assert_fetch_stops_at(&broker, TOPIC, 1, 0);
    assert_eq!(
        read_all(&broker, TOPIC, 2, "read_committed"),
        [],
        "read_committed while the transaction is open"
    );

    // The producer never noticed the restart; its client reconnects.
    if commit {
        producer
            .inner()
            .commit_transaction(CALL_TIMEOUT)
            .expect("commit after restart");
    } else {
        producer
            .inner()
            .abort_transaction(CALL_TIMEOUT)
            .expect("abort after restart");
    }
    let after = describe(&broker, "reopen");
    assert_eq!(
        (after.state.as_str(), after.epoch),
        (if commit { "CompleteCommit" } else { "CompleteAbort" }, before.epoch)
    );
    let expected: &[&str] = if commit {
        &["open-0a", "open-0b", "plain-0", "open-1a"]
    } else {
        &["plain-0"]
    };
    assert_eq!(values(&read_all(&broker, TOPIC, 2, "read_committed")), expected);

    producer.inner().begin_transaction().expect("begin");
    producer.send_all_ok(
        TOPIC,
        &[
            Rec::value("durable-0").partition(0),
            Rec::value("durable-1").partition(1),
        ],
    );
    producer.inner().commit_transaction(CALL_TIMEOUT).expect("commit");
    broker.sigkill();
    broker.restart();
    assert_eq!(describe(&broker, "reopen").state, "CompleteCommit");
    for partition in 0..2 {
        let (high_watermark, stable) = ends(&broker, TOPIC, partition);
        assert_eq!(stable, high_watermark, "nothing open in partition {partition}");
    }
    let mut expected = expected.to_vec();
    expected.insert(expected.len() - usize::from(commit), "durable-0");
    expected.push("durable-1");
    assert_eq!(
        values(&read_all(&broker, TOPIC, 2, "read_committed")),
        expected,
        "after a SIGKILL right after the commit"
    );
}

#[test]
fn an_open_transaction_survives_a_sigkill_and_commits_afterwards() {
    an_open_transaction_survives_a_restart(true, true);
}

#[test]
fn an_open_transaction_survives_a_graceful_restart_and_aborts_afterwards() {
    an_open_transaction_survives_a_restart(false, false);
}

// ------------------------------------------------------------------ consume-transform-produce

/// OffsetFetch v7 of one group's partitions: (error code, committed offset) of each.
fn offset_fetch(
    broker: &Broker,
    group: &str,
    topic: &str,
    partitions: &[i32],
    require_stable: bool,
) -> Vec<(i16, i64)> {
    let mut wanted = OffsetFetchRequestTopic::default();
    wanted.name = topic_name(topic);
    wanted.partition_indexes = partitions.to_vec();
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(str_bytes(group));
    request.topics = Some(vec![wanted]);
    request.require_stable = require_stable;
    let response = broker.wire().call(&request, 7).expect("OffsetFetch");
    assert_eq!(response.error_code, 0, "{response:?}");
    partitions
        .iter()
        .map(|index| {
            let answer = response.topics[0]
                .partitions
                .iter()
                .find(|p| p.partition_index == *index)
                .expect("every partition answered");
            (answer.error_code, answer.committed_offset)
        })
        .collect()
}

/// Exactly-once consume-transform-produce with librdkafka: a read_committed group member's
/// records are transformed into another topic and its positions committed in the same
/// transactions (send_offsets_to_transaction). One transaction is aborted: its offsets stay
/// pending (require_stable sees them as unstable) and then never count, and a new member of
/// the group resumes from the offsets the earlier transactions committed. In the end every
/// input record is in the output exactly once for read_committed.
#[test]
fn consume_transform_produce_commits_offsets_with_the_transaction() {
    const INPUT: &str = "ctp-in";
    const OUTPUT: &str = "ctp-out";
    const GROUP: &str = "ctp";
    const PER_PARTITION: i64 = 20;
    const BATCH: usize = 8;
    const ABORTED_BATCH: usize = 2;
    let broker = start();
    let bootstrap = broker.bootstrap();
    create_topic(&broker, INPUT, 2);
    create_topic(&broker, OUTPUT, 2);
    let input: Vec<Rec> = (0..2)
        .flat_map(|p| (0..PER_PARTITION).map(move |i| Rec::value(format!("in-{p}-{i}")).partition(p)))
        .collect();
    Producer::new(&bootstrap, &[("acks", "all")]).send_all_ok(INPUT, &input);

    let join = || GroupMember::join(&bootstrap, GROUP, &[INPUT], &[("isolation.level", "read_committed")]);
    let producer = txn_producer(&bootstrap, "ctp-txn", &[]);
    let mut member = join();
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut aborted_output: Vec<String> = Vec::new();
    let total = 2 * PER_PARTITION;
    for batch_index in 0..10 {
        let done: i64 = committed.values().sum();
        if done == total {
            break;
        }
        let batch = member.take(BATCH.min((total - done) as usize), Duration::from_secs(30));
        // Each batch continues exactly where the committed transactions left off: after a
        // commit because the member read on, after the abort because a new member resumed
        // from the group's committed offsets.
        for partition in 0..2 {
            let offsets: Vec<i64> = batch
                .iter()
                .filter(|r| r.partition == partition)
                .map(|r| r.offset)
                .collect();
            let from = committed.get(&partition).copied().unwrap_or(0);
            let contiguous: Vec<i64> = (from..from + offsets.len() as i64).collect();
            assert_eq!(offsets, contiguous, "batch {batch_index}, partition {partition}");
        }
        producer.inner().begin_transaction().expect("begin");
        let out: Vec<Rec> = batch
            .iter()
            .map(|r| Rec::value(format!("out:{}", common::utf8(&r.value))).partition(r.partition))
            .collect();
        producer.send_all_ok(OUTPUT, &out);
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        for record in &batch {
            let next = positions.entry(record.partition).or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &positions {
            offsets
                .add_partition_offset(INPUT, *partition, Offset::Offset(*next))
                .expect("offset");
        }
        let metadata = member.inner().group_metadata().expect("group metadata");
        producer
            .inner()
            .send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
            .expect("send offsets");
        let as_committed = |committed: &BTreeMap<i32, i64>| -> Vec<Option<i64>> {
            (0..2).map(|p| committed.get(&p).copied()).collect()
        };
        if batch_index == ABORTED_BATCH {
            // Pending in the open transaction: unstable for a consumer that asks, the old
            // value for one that does not.
            let stable = offset_fetch(&broker, GROUP, INPUT, &[0, 1], true);
            let unstable = offset_fetch(&broker, GROUP, INPUT, &[0, 1], false);
            for partition in 0..2 {
                let old = committed.get(&partition).copied().unwrap_or(-1);
                let pending = positions.contains_key(&partition);
                assert_eq!(
                    stable[partition as usize],
                    if pending {
                        (UNSTABLE_OFFSET_COMMIT, -1)
                    } else {
                        (0, old)
                    },
                    "require_stable, partition {partition}"
                );
                assert_eq!(unstable[partition as usize], (0, old), "partition {partition}");
            }
            producer.inner().abort_transaction(CALL_TIMEOUT).expect("abort");
            aborted_output.extend(out.iter().map(|r| common::utf8(&r.value)));
            assert_eq!(
                member.committed(INPUT, &[0, 1]).expect("committed"),
                as_committed(&committed),
                "the aborted transaction's offsets do not count"
            );
            // A new member resumes where the committed transactions left off, so this batch
            // is read and transformed again.
            drop(member);
            member = join();
        } else {
            producer.inner().commit_transaction(CALL_TIMEOUT).expect("commit");
            committed.extend(positions);
            assert_eq!(
                member.committed(INPUT, &[0, 1]).expect("committed"),
                as_committed(&committed),
                "after committed batch {batch_index}"
            );
        }
    }
    assert_eq!(committed, BTreeMap::from([(0, PER_PARTITION), (1, PER_PARTITION)]));

    // Each output partition holds its input partition's records, in order, exactly once.
    let expected: Vec<String> = input
        .iter()
        .map(|r| format!("out:{}", common::utf8(&r.value)))
        .collect();
    assert_eq!(
        values(&read_all(&broker, OUTPUT, 2, "read_committed")),
        expected,
        "every input record transformed exactly once"
    );
    // The aborted batch's output is in the log all the same.
    let mut everything = values(&read_all(&broker, OUTPUT, 2, "read_uncommitted"));
    everything.sort();
    let mut written = expected;
    written.extend(aborted_output);
    written.sort();
    assert_eq!(everything, written, "read_uncommitted");

    // Only what arrives after the last transaction is new to the group.
    drop(member);
    Producer::new(&bootstrap, &[("acks", "all")]).send_all_ok(INPUT, &common::numbered("late", 3, 0));
    let member = join();
    let late: Vec<(i32, i64, String)> = member
        .take(3, Duration::from_secs(30))
        .iter()
        .map(|r| (r.partition, r.offset, common::utf8(&r.value)))
        .collect();
    let expected_late: Vec<(i32, i64, String)> = (0..3).map(|i| (0, PER_PARTITION + i, format!("late-{i}"))).collect();
    assert_eq!(late, expected_late, "a new member resumes from the committed offsets");
}

/// Offsets committed in a transaction become the group's only with its commit marker, also
/// when the group coordinator rebuilds its state from `__consumer_offsets` after a crash: a
/// committed transaction's offset survives, an aborted one's never appears, and a pending
/// one's is still pending (unstable to require_stable) and can still be committed.
#[test]
fn transactional_offsets_survive_a_crash_as_committed_aborted_or_pending() {
    const TOPIC: &str = "offsets-src";
    const GROUP: &str = "offsets-group";
    let mut broker = start();
    let bootstrap = broker.bootstrap();
    create_topic(&broker, TOPIC, 1);
    // A consumer that never joins: the group stays Empty and takes its commits at generation -1.
    let consumer = Consumer::with(&bootstrap, &[("group.id", GROUP)]);
    let metadata = consumer.inner().group_metadata().expect("group metadata");
    let producer = txn_producer(&bootstrap, "offsets-txn", &[]);
    let send_offset = |offset: i64| {
        producer.inner().begin_transaction().expect("begin");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(TOPIC, 0, Offset::Offset(offset))
            .expect("offset");
        producer
            .inner()
            .send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
            .expect("send offsets");
    };
    let fetch = |broker: &Broker| {
        (
            offset_fetch(broker, GROUP, TOPIC, &[0], false)[0],
            offset_fetch(broker, GROUP, TOPIC, &[0], true)[0],
        )
    };

    send_offset(10);
    producer.inner().commit_transaction(CALL_TIMEOUT).expect("commit");
    send_offset(20);
    producer.inner().abort_transaction(CALL_TIMEOUT).expect("abort");
    assert_eq!(
        fetch(&broker),
        ((0, 10), (0, 10)),
        "(plain, require_stable) before the crash"
    );
    send_offset(30);
    let pending = ((0, 10), (UNSTABLE_OFFSET_COMMIT, -1));
    assert_eq!(fetch(&broker), pending, "pending before the crash");

    broker.sigkill();
    broker.restart();
    assert_eq!(fetch(&broker), pending, "pending after the crash");
    producer
        .inner()
        .commit_transaction(CALL_TIMEOUT)
        .expect("commit after the crash");
    assert_eq!(fetch(&broker), ((0, 30), (0, 30)), "committed after the crash");
    broker.sigkill();
    broker.restart();
    assert_eq!(fetch(&broker), ((0, 30), (0, 30)), "after a second crash");
}

// ------------------------------------------------------------------ the wire

/// ApiVersions lists every transactional API and finalizes `transaction.version` (2, or what
/// the broker is told), and InitProducerId refuses a transaction timeout that is not positive
/// or above `transaction.max.timeout.ms`.
#[test]
fn wire_api_versions_and_transaction_timeout_limits() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("transaction.max.timeout.ms", "10000")
        .start();
    let mut wire = broker.wire();
    let versions = wire.api_versions().expect("ApiVersions");
    for (key, min, max) in [
        (ApiKey::Produce, 3, 12),
        (ApiKey::InitProducerId, 0, 4),
        (ApiKey::AddPartitionsToTxn, 0, 3),
        (ApiKey::AddOffsetsToTxn, 0, 4),
        (ApiKey::EndTxn, 0, 5),
        (ApiKey::TxnOffsetCommit, 0, 5),
        (ApiKey::DescribeTransactions, 0, 0),
        (ApiKey::DescribeProducers, 0, 0),
        (ApiKey::ListTransactions, 0, 2),
    ] {
        let listed = versions
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .unwrap_or_else(|| panic!("{key:?} missing from ApiVersions"));
        assert_eq!((listed.min_version, listed.max_version), (min, max), "{key:?}");
    }
    // Transactions v2 is finalized, so clients that know it use it. A supported range from 0
    // is listed only to v4 requests (older clients refuse a minimum of 0).
    let finalized = |versions: &kafka_protocol::messages::ApiVersionsResponse| -> Vec<(String, i16, i16)> {
        versions
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
            .collect()
    };
    assert_eq!(finalized(&versions), [("transaction.version".to_string(), 2, 2)]);
    assert!(versions.finalized_features_epoch > 0, "{versions:?}");
    assert!(versions.supported_features.is_empty(), "{versions:?}");
    let v4: kafka_protocol::messages::ApiVersionsResponse = wire
        .call(&kafka_protocol::messages::ApiVersionsRequest::default(), 4)
        .expect("ApiVersions v4");
    let supported: Vec<(String, i16, i16)> = v4
        .supported_features
        .iter()
        .map(|f| (f.name.to_string(), f.min_version, f.max_version))
        .collect();
    assert_eq!(supported, [("transaction.version".to_string(), 0, 2)]);
    let v1_only = Broker::builder(strom_testkit::bin!())
        .set("transaction.version", "1")
        .start();
    let pinned = v1_only.wire().api_versions().expect("ApiVersions");
    assert_eq!(finalized(&pinned), [("transaction.version".to_string(), 1, 1)]);

    for timeout_ms in [10_001, 0, -5] {
        let refused = init_txn(&mut wire, "limits", timeout_ms);
        assert_eq!(
            (refused.error_code, refused.producer_id.0),
            (INVALID_TRANSACTION_TIMEOUT, -1),
            "timeout {timeout_ms}"
        );
    }
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = vec![TransactionalId(str_bytes("limits"))];
    let response = wire.call(&request, 0).expect("DescribeTransactions");
    assert_eq!(
        response.transaction_states[0].error_code, TRANSACTIONAL_ID_NOT_FOUND,
        "a refused InitProducerId creates nothing"
    );
    init_txn_ok(&mut wire, "limits", 10_000);
    assert_eq!(describe(&broker, "limits").state, "Empty");
}

/// KIP-890's server-side check: a transactional write to a partition not added to the open
/// transaction is refused with INVALID_TXN_STATE and appends nothing; AddPartitionsToTxn with
/// an unknown partition adds none of the request's partitions.
#[test]
fn wire_writes_outside_the_transaction_and_unknown_partitions_are_refused() {
    const TOPIC: &str = "wire-txn";
    let broker = start();
    create_topic(&broker, TOPIC, 3);
    let mut wire = broker.wire();
    let producer = init_txn_ok(&mut wire, "kip890", 60_000);

    // Before any AddPartitionsToTxn there is no open transaction at all.
    let early = txn_produce(&mut wire, "kip890", TOPIC, 0, txn_batch(&["early"], producer, 0));
    assert_eq!(early.error_code, INVALID_TXN_STATE, "{early:?}");
    assert_eq!(
        add_partitions(&mut wire, "kip890", producer, &[(TOPIC, &[0])]),
        [(TOPIC.to_string(), 0, 0)]
    );
    let added = txn_produce(&mut wire, "kip890", TOPIC, 0, txn_batch(&["a", "b"], producer, 0));
    assert_eq!((added.error_code, added.base_offset), (0, 0), "{added:?}");
    let outside = txn_produce(&mut wire, "kip890", TOPIC, 1, txn_batch(&["c"], producer, 0));
    assert_eq!(outside.error_code, INVALID_TXN_STATE, "{outside:?}");
    assert_eq!(ends(&broker, TOPIC, 1), (0, 0), "nothing appended to partition 1");
    assert_eq!(
        ends(&broker, TOPIC, 0),
        (2, 0),
        "partition 0 holds the open transaction"
    );

    let answers = add_partitions(
        &mut wire,
        "kip890",
        producer,
        &[(TOPIC, &[1, 7]), ("no-such-topic", &[0])],
    );
    assert_eq!(
        answers,
        [
            (TOPIC.to_string(), 1, OPERATION_NOT_ATTEMPTED),
            (TOPIC.to_string(), 7, UNKNOWN_TOPIC_OR_PARTITION),
            ("no-such-topic".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    assert_eq!(describe(&broker, "kip890").partitions, partitions_of(TOPIC, &[0]));
    let still_outside = txn_produce(&mut wire, "kip890", TOPIC, 1, txn_batch(&["c"], producer, 0));
    assert_eq!(still_outside.error_code, INVALID_TXN_STATE, "{still_outside:?}");
    assert_eq!(ends(&broker, TOPIC, 1), (0, 0));

    assert_eq!(end_txn(&mut wire, "kip890", producer, true), 0);
    // The transaction is over: its partition no longer accepts its writes either.
    let late = txn_produce(&mut wire, "kip890", TOPIC, 0, txn_batch(&["late"], producer, 2));
    assert_eq!(late.error_code, INVALID_TXN_STATE, "{late:?}");
    assert_eq!(ends(&broker, TOPIC, 0), (3, 3), "two records and the commit marker");
    assert_eq!(values(&read_all(&broker, TOPIC, 3, "read_committed")), ["a", "b"]);
}

/// EndTxn's refusals: a stale epoch is PRODUCER_FENCED, another producer id is
/// INVALID_PRODUCER_ID_MAPPING, and ending an Empty transaction (nothing added) is
/// INVALID_TXN_STATE, whether commit or abort. None of them changes the transaction. A
/// re-initialising producer (KIP-360) is bumped only if it names the current epoch.
#[test]
fn wire_end_txn_refuses_stale_epochs_and_empty_transactions() {
    const TOPIC: &str = "wire-end";
    let broker = start();
    create_topic(&broker, TOPIC, 1);
    let mut wire = broker.wire();
    let first = init_txn_ok(&mut wire, "ender", 60_000);
    assert_eq!(end_txn(&mut wire, "ender", first, true), INVALID_TXN_STATE);
    assert_eq!(end_txn(&mut wire, "ender", first, false), INVALID_TXN_STATE);
    assert_eq!(describe(&broker, "ender").state, "Empty");

    assert_eq!(
        add_partitions(&mut wire, "ender", first, &[(TOPIC, &[0])]),
        [(TOPIC.to_string(), 0, 0)]
    );
    let written = txn_produce(&mut wire, "ender", TOPIC, 0, txn_batch(&["x"], first, 0));
    assert_eq!(written.error_code, 0, "{written:?}");
    // A second InitProducerId takes the id over, aborting the open transaction.
    let second = init_txn_ok(&mut wire, "ender", 60_000);
    assert_eq!(second.0, first.0, "same producer id, new epoch");
    assert!(second.1 > first.1);
    assert_eq!(end_txn(&mut wire, "ender", first, true), PRODUCER_FENCED);
    assert_eq!(
        add_partitions(&mut wire, "ender", first, &[(TOPIC, &[0])]),
        [(TOPIC.to_string(), 0, PRODUCER_FENCED)]
    );
    assert_eq!(
        end_txn(&mut wire, "ender", (first.0 + 1000, second.1), true),
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(end_txn(&mut wire, "ender", second, true), INVALID_TXN_STATE);
    assert_eq!(
        describe(&broker, "ender"),
        Described {
            state: "Empty".into(),
            producer_id: second.0,
            epoch: second.1,
            partitions: BTreeSet::new(),
        }
    );
    assert_eq!(ends(&broker, TOPIC, 0), (2, 2), "the record and the abort marker");
    assert_eq!(read_all(&broker, TOPIC, 1, "read_committed"), []);
    assert_eq!(values(&read_all(&broker, TOPIC, 1, "read_uncommitted")), ["x"]);

    // KIP-360: a producer that names itself gets its epoch bumped if it is the current one,
    // and is fenced if it is not.
    let mut reinit = |expected: (i64, i16)| {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = Some(TransactionalId(str_bytes("ender")));
        request.transaction_timeout_ms = 60_000;
        request.producer_id = ProducerId(expected.0);
        request.producer_epoch = expected.1;
        let response = wire.call(&request, 4).expect("InitProducerId");
        (response.error_code, response.producer_id.0, response.producer_epoch)
    };
    assert_eq!(reinit(second), (0, second.0, second.1 + 1));
    assert_eq!(reinit(first).0, PRODUCER_FENCED);
    assert_eq!(reinit((second.0 + 1000, second.1 + 1)).0, PRODUCER_FENCED);
    assert_eq!(describe(&broker, "ender").epoch, second.1 + 1);
}

/// A fenced producer is told so in the code its request's version knows: PRODUCER_FENCED came
/// with KIP-588 (InitProducerId 4, AddPartitionsToTxn 2, AddOffsetsToTxn 2, EndTxn 2), and
/// Kafka answers older versions INVALID_PRODUCER_EPOCH, which their clients treat the same way
/// (KafkaJS, on EndTxn 1, knows no code 90 at all). TxnOffsetCommit answers a fenced producer
/// INVALID_PRODUCER_EPOCH at every version, as Kafka's write verification does.
#[test]
fn wire_fenced_producer_gets_the_code_its_request_version_knows() {
    use kafka_protocol::messages::AddOffsetsToTxnRequest;
    const TOPIC: &str = "fenced-codes";
    let broker = start();
    create_topic(&broker, TOPIC, 1);
    let mut wire = broker.wire();
    let first = init_txn_ok(&mut wire, "fenced-codes", 60_000);
    assert_eq!(
        add_partitions(&mut wire, "fenced-codes", first, &[(TOPIC, &[0])]),
        [(TOPIC.to_string(), 0, 0)]
    );
    let second = init_txn_ok(&mut wire, "fenced-codes", 60_000);
    assert!(second.1 > first.1, "{first:?} then {second:?}");

    let end_at = |wire: &mut WireClient, version: i16| {
        let request = end_txn_request("fenced-codes", first, true);
        wire.call(&request, version).expect("EndTxn").error_code
    };
    assert_eq!(end_at(&mut wire, 0), INVALID_PRODUCER_EPOCH);
    assert_eq!(end_at(&mut wire, 1), INVALID_PRODUCER_EPOCH);
    assert_eq!(end_at(&mut wire, 2), PRODUCER_FENCED);

    let add_at = |wire: &mut WireClient, version: i16| {
        let mut request = AddPartitionsToTxnRequest::default();
        request.v3_and_below_transactional_id = TransactionalId(str_bytes("fenced-codes"));
        request.v3_and_below_producer_id = ProducerId(first.0);
        request.v3_and_below_producer_epoch = first.1;
        let mut entry = AddPartitionsToTxnTopic::default();
        entry.name = topic_name(TOPIC);
        entry.partitions = vec![0];
        request.v3_and_below_topics = vec![entry];
        let response = wire.call(&request, version).expect("AddPartitionsToTxn");
        response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    };
    assert_eq!(add_at(&mut wire, 1), INVALID_PRODUCER_EPOCH);
    assert_eq!(add_at(&mut wire, 2), PRODUCER_FENCED);

    let add_offsets_at = |wire: &mut WireClient, version: i16| {
        let mut request = AddOffsetsToTxnRequest::default();
        request.transactional_id = TransactionalId(str_bytes("fenced-codes"));
        request.producer_id = ProducerId(first.0);
        request.producer_epoch = first.1;
        request.group_id = GroupId(str_bytes("fenced-codes-group"));
        wire.call(&request, version).expect("AddOffsetsToTxn").error_code
    };
    assert_eq!(add_offsets_at(&mut wire, 1), INVALID_PRODUCER_EPOCH);
    assert_eq!(add_offsets_at(&mut wire, 2), PRODUCER_FENCED);

    // KIP-360 (InitProducerId 3+): a producer naming an epoch that is not the current one.
    let reinit_at = |wire: &mut WireClient, version: i16| {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = Some(TransactionalId(str_bytes("fenced-codes")));
        request.transaction_timeout_ms = 60_000;
        request.producer_id = ProducerId(first.0);
        request.producer_epoch = first.1;
        wire.call(&request, version).expect("InitProducerId").error_code
    };
    assert_eq!(reinit_at(&mut wire, 3), INVALID_PRODUCER_EPOCH);
    assert_eq!(reinit_at(&mut wire, 4), PRODUCER_FENCED);

    for version in [0, 1, 2, 3, 4] {
        assert_eq!(
            txn_offset_commit(
                &mut wire,
                version,
                "fenced-codes",
                first,
                "fenced-codes-group",
                TOPIC,
                0,
                1
            ),
            INVALID_PRODUCER_EPOCH,
            "TxnOffsetCommit v{version}"
        );
    }
    // None of it touched the successor's state.
    assert_eq!(describe(&broker, "fenced-codes").epoch, second.1);
}

/// KIP-360: a producer that asks for an epoch bump and loses the answer retries with the epoch
/// it had; Kafka's coordinator remembers the epoch before the bump (`lastProducerEpoch`) and
/// answers the retry with the bumped epoch instead of fencing the producer that got it.
#[test]
fn wire_a_retried_epoch_bump_gets_the_bumped_epoch() {
    let broker = start();
    let mut wire = broker.wire();
    let (producer_id, epoch) = init_txn_ok(&mut wire, "bumper", 60_000);
    let mut bump = || {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = Some(TransactionalId(str_bytes("bumper")));
        request.transaction_timeout_ms = 60_000;
        request.producer_id = ProducerId(producer_id);
        request.producer_epoch = epoch;
        let response = wire.call(&request, 4).expect("InitProducerId");
        (response.error_code, response.producer_id.0, response.producer_epoch)
    };
    assert_eq!(bump(), (0, producer_id, epoch + 1));
    assert_eq!(bump(), (0, producer_id, epoch + 1), "the retry of the same bump");
    assert_eq!(describe(&broker, "bumper").epoch, epoch + 1);
}

// ------------------------------------------------------------------ decided, then crashed

/// Appends `record` to `__transaction_state`'s only partition while the broker is down, as if
/// the coordinator had written its decision and the process died before any marker: a valid
/// batch at the log end of the active segment, which recovery then reads like any other.
fn append_decision(data_dir: &std::path::Path, record: &strom_txn::TxnRecord) {
    let dir = data_dir.join("__transaction_state-0");
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("transaction state partition")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    let active = segments.pop().expect("a segment");
    let existing = std::fs::read(&active).expect("read segment");
    let next_offset = strom_record::BatchIter::new(&existing)
        .map(|batch| batch.expect("intact segment").header.next_offset())
        .last()
        .unwrap_or_else(|| {
            let stem = active.file_stem().expect("stem").to_string_lossy();
            stem.parse().expect("segment named by offset")
        });
    let (key, value) = record.encode();
    let batch_record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: next_offset,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(key),
        value,
        headers: Default::default(),
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        std::slice::from_ref(&batch_record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode decision");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .expect("open segment");
    std::io::Write::write_all(&mut file, &batch).expect("append decision");
}

/// A transaction whose outcome reached `__transaction_state` but none of whose markers were
/// written before the broker died is finished by the restarted broker before it serves
/// anyone: committed in every partition (PrepareCommit) or aborted in every one
/// (PrepareAbort), and its producer's id moves on.
#[test]
fn a_decision_without_markers_is_finished_after_the_restart() {
    for commit in [true, false] {
        let mut broker = Broker::builder(strom_testkit::bin!())
            .set("transaction.state.log.num.partitions", "1")
            .start();
        let topic = if commit { "decided-commit" } else { "decided-abort" };
        create_topic(&broker, topic, 2);
        let id = format!("decided-{commit}");
        let mut wire = broker.wire();
        let producer = init_txn_ok(&mut wire, &id, 60_000);
        let added = add_partitions(&mut wire, &id, producer, &[(topic, &[0, 1])]);
        assert!(added.iter().all(|(_, _, error)| *error == 0), "{added:?}");
        for partition in 0..2 {
            let answer = txn_produce(&mut wire, &id, topic, partition, txn_batch(&["in-txn"], producer, 0));
            assert_eq!(answer.error_code, 0, "{answer:?}");
        }
        let ongoing = describe(&broker, &id);
        assert_eq!(ongoing.state, "Ongoing");
        drop(wire);
        broker.sigkill();

        let decided = strom_txn::TransactionMetadata {
            producer_id: producer.0,
            producer_epoch: producer.1,
            timeout_ms: 60_000,
            state: if commit {
                strom_txn::TxnState::PrepareCommit
            } else {
                strom_txn::TxnState::PrepareAbort
            },
            partitions: partitions_of(topic, &[0, 1]),
            txn_start_ms: 1_700_000_000_000,
            last_update_ms: 1_700_000_000_000,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        };
        append_decision(
            broker.data_dir(),
            &strom_txn::TxnRecord {
                transactional_id: id.clone(),
                value: Some(decided),
            },
        );
        broker.restart();

        // Finished before the listener opened: no waiting, no timeout involved.
        let finished = describe(&broker, &id);
        let expected = if commit { "CompleteCommit" } else { "CompleteAbort" };
        assert_eq!(finished.state, expected, "{}", broker.log_tail());
        for partition in 0..2 {
            let (high_watermark, stable) = ends(&broker, topic, partition);
            assert_eq!(stable, high_watermark, "{topic}/{partition} still held back");
            assert_eq!(high_watermark, 2, "one record and one marker in {topic}/{partition}");
        }
        let committed = values(&read_all(&broker, topic, 2, "read_committed"));
        let expected_values: Vec<String> = if commit {
            vec!["in-txn".to_string(); 2]
        } else {
            Vec::new()
        };
        assert_eq!(committed, expected_values, "{topic} under read_committed");
        assert_eq!(values(&read_all(&broker, topic, 2, "read_uncommitted")).len(), 2);
        // The producer that wrote the transaction is still the id's owner: the restart
        // finished its transaction, it did not fence it.
        let mut wire = broker.wire();
        assert_eq!(end_txn(&mut wire, &id, producer, commit), 0, "retry of the same end");
    }
}

/// DescribeProducers (KIP-664), with ListTransactions the way to find a hanging transaction:
/// each partition lists its producers, and an open transaction's first offset until its
/// marker; unknown partitions are named as such.
#[test]
fn describe_producers_shows_open_transactions_per_partition() {
    let broker = start();
    create_topic(&broker, "producers", 2);
    let mut wire = broker.wire();
    let producer = init_txn_ok(&mut wire, "described", 60_000);
    let added = add_partitions(&mut wire, "described", producer, &[("producers", &[1])]);
    assert!(added.iter().all(|(_, _, error)| *error == 0), "{added:?}");
    for batch in 0..2 {
        let answer = txn_produce(
            &mut wire,
            "described",
            "producers",
            1,
            txn_batch(&["a", "b"], producer, batch * 2),
        );
        assert_eq!(answer.error_code, 0, "{answer:?}");
    }
    let epoch = i32::from(producer.1);
    assert_eq!(
        describe_producers(&mut wire, "producers", &[0, 1, 7]),
        vec![
            (0, 0, vec![]),
            (1, 0, vec![(producer.0, epoch, 3, 0)]),
            (7, UNKNOWN_TOPIC_OR_PARTITION, vec![]),
        ]
    );
    assert_eq!(end_txn(&mut wire, "described", producer, true), 0);
    assert_eq!(
        describe_producers(&mut wire, "producers", &[1]),
        [(1, 0, vec![(producer.0, epoch, 3, -1)])]
    );
}

/// DescribeProducers of `partitions` of `topic`: per partition its index, error code and
/// (producer id, epoch, last sequence, open transaction's first offset) of each producer.
#[allow(clippy::type_complexity)]
fn describe_producers(
    wire: &mut WireClient,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, i16, Vec<(i64, i32, i32, i64)>)> {
    let mut wanted = kafka_protocol::messages::describe_producers_request::TopicRequest::default();
    wanted.name = topic_name(topic);
    wanted.partition_indexes = partitions.to_vec();
    let mut request = kafka_protocol::messages::DescribeProducersRequest::default();
    request.topics = vec![wanted];
    let response = wire.call(&request, 0).expect("DescribeProducers");
    response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            let producers = p
                .active_producers
                .iter()
                .map(|a| {
                    (
                        a.producer_id.0,
                        a.producer_epoch,
                        a.last_sequence,
                        a.current_txn_start_offset,
                    )
                })
                .collect();
            (p.partition_index, p.error_code, producers)
        })
        .collect()
}

// ------------------------------------------------------------------ transactions v2

/// The codes of a transactions v2 client's errors.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

/// EndTxn v5 (transactions v2): (error, producer id, epoch) of the answer.
fn end_txn_v5(wire: &mut WireClient, transactional_id: &str, producer: (i64, i16), commit: bool) -> (i16, i64, i16) {
    let request = end_txn_request(transactional_id, producer, commit);
    let response = wire.call(&request, 5).expect("EndTxn");
    (response.error_code, response.producer_id.0, response.producer_epoch)
}

/// TxnOffsetCommit of one offset for a group with no members (generation -1), at `version`.
#[allow(clippy::too_many_arguments)]
fn txn_offset_commit(
    wire: &mut WireClient,
    version: i16,
    transactional_id: &str,
    (producer_id, epoch): (i64, i16),
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> i16 {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    wire.find_coordinator(0, group).expect("FindCoordinator");
    let mut committed = TxnOffsetCommitRequestPartition::default();
    committed.partition_index = partition;
    committed.committed_offset = offset;
    committed.committed_leader_epoch = -1;
    let mut entry = TxnOffsetCommitRequestTopic::default();
    entry.name = topic_name(topic);
    entry.partitions = vec![committed];
    let mut request = kafka_protocol::messages::TxnOffsetCommitRequest::default();
    request.transactional_id = TransactionalId(str_bytes(transactional_id));
    request.group_id = GroupId(str_bytes(group));
    request.producer_id = ProducerId(producer_id);
    request.producer_epoch = epoch;
    request.generation_id = -1;
    request.topics = vec![entry];
    let response = wire.call(&request, version).expect("TxnOffsetCommit");
    response.topics[0].partitions[0].error_code
}

/// A transactions v2 client (KIP-890 part 2, as the Java client from 4.0 runs it): Produce 12
/// adds its partition to the transaction by writing, every EndTxn 5 bumps the epoch (the
/// markers carry the new one, the answer hands it to the client), a lost answer is retried
/// with the old epoch and answered again, the ended transaction's late writes are refused, and
/// the next transaction's sequences start at 0. Produce 11 keeps v1's rule.
#[test]
fn wire_transactions_v2_writes_add_their_partitions_and_every_end_bumps_the_epoch() {
    const TOPIC: &str = "v2";
    let broker = start();
    create_topic(&broker, TOPIC, 3);
    let mut wire = broker.wire();
    let first = init_txn_ok(&mut wire, "v2", 60_000);
    for partition in 0..2 {
        let written = txn_produce_at(&mut wire, 12, "v2", TOPIC, partition, txn_batch(&["one"], first, 0));
        assert_eq!(written.error_code, 0, "{written:?}");
    }
    let open = describe(&broker, "v2");
    assert_eq!(
        (open.state.as_str(), open.partitions),
        ("Ongoing", partitions_of(TOPIC, &[0, 1]))
    );
    assert_eq!(ends(&broker, TOPIC, 0), (1, 0), "held back by the open transaction");
    let v1 = txn_produce(&mut wire, "v2", TOPIC, 2, txn_batch(&["v1"], first, 0));
    assert_eq!(v1.error_code, INVALID_TXN_STATE, "Produce 11 does not add: {v1:?}");

    let (error, producer_id, epoch) = end_txn_v5(&mut wire, "v2", first, true);
    assert_eq!((error, producer_id, epoch), (0, first.0, first.1 + 1));
    let second = (producer_id, epoch);
    for partition in 0..2 {
        assert_eq!(
            ends(&broker, TOPIC, partition),
            (2, 2),
            "record and marker in {partition}"
        );
    }
    assert_eq!(
        describe_producers(&mut wire, TOPIC, &[0]),
        [(0, 0, vec![(first.0, i32::from(second.1), -1, -1)])],
        "the marker carries the bumped epoch and restarts the sequence"
    );
    // The answer was lost: the retry is answered again and writes nothing.
    assert_eq!(end_txn_v5(&mut wire, "v2", first, true), (0, second.0, second.1));
    assert_eq!(end_txn_v5(&mut wire, "v2", first, false).0, INVALID_TXN_STATE);
    assert_eq!(ends(&broker, TOPIC, 0), (2, 2));
    // A late write of the ended transaction is refused.
    let late = txn_produce_at(&mut wire, 12, "v2", TOPIC, 0, txn_batch(&["late"], first, 1));
    assert_eq!(late.error_code, INVALID_PRODUCER_EPOCH, "{late:?}");

    let continued = txn_produce_at(&mut wire, 12, "v2", TOPIC, 0, txn_batch(&["two"], second, 1));
    assert_eq!(continued.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER, "{continued:?}");
    let restarted = txn_produce_at(&mut wire, 12, "v2", TOPIC, 0, txn_batch(&["two"], second, 0));
    assert_eq!(restarted.error_code, 0, "{restarted:?}");
    assert_eq!(end_txn_v5(&mut wire, "v2", second, false), (0, second.0, second.1 + 1));
    let third = (second.0, second.1 + 1);
    assert_eq!(values(&read_all(&broker, TOPIC, 3, "read_committed")), ["one", "one"]);
    assert_eq!(
        values(&read_all(&broker, TOPIC, 3, "read_uncommitted")),
        ["one", "two", "one"]
    );

    // Nothing written: a commit is refused, an abort still bumps the epoch (the client cannot
    // know whether a failed write added a partition).
    assert_eq!(end_txn_v5(&mut wire, "v2", third, true).0, INVALID_TXN_STATE);
    assert_eq!(end_txn_v5(&mut wire, "v2", third, false), (0, third.0, third.1 + 1));
    assert_eq!(
        end_txn_v5(&mut wire, "v2", third, false).0,
        0,
        "the retry of that abort"
    );
    assert_eq!(
        end_txn_v5(&mut wire, "v2", (third.0 + 1000, third.1), false).0,
        INVALID_PRODUCER_ID_MAPPING
    );
    assert_eq!(end_txn_v5(&mut wire, "v2", first, false).0, PRODUCER_FENCED);
    assert_eq!(ends(&broker, TOPIC, 0), (4, 4), "the empty abort wrote no marker");
}

/// Transactions v2 offsets: TxnOffsetCommit 5 adds the group's offsets partition itself (no
/// AddOffsetsToTxn), the offsets stay unstable until the end, vanish with an abort and count
/// with a commit. TxnOffsetCommit 4 still needs AddOffsetsToTxn first.
#[test]
fn wire_transactions_v2_offsets_join_the_transaction_by_committing() {
    const TOPIC: &str = "v2-in";
    let broker = start();
    create_topic(&broker, TOPIC, 1);
    let mut wire = broker.wire();
    let mut producer = init_txn_ok(&mut wire, "v2-offsets", 60_000);
    assert_eq!(
        txn_offset_commit(&mut wire, 4, "v2-offsets", producer, "g", TOPIC, 0, 7),
        INVALID_TXN_STATE,
        "v1 needs AddOffsetsToTxn"
    );
    for (offset, commit) in [(5, false), (9, true)] {
        assert_eq!(
            txn_offset_commit(&mut wire, 5, "v2-offsets", producer, "g", TOPIC, 0, offset),
            0
        );
        let open = describe(&broker, "v2-offsets");
        assert_eq!(open.state, "Ongoing");
        assert!(
            open.partitions.iter().all(|(topic, _)| topic == "__consumer_offsets") && open.partitions.len() == 1,
            "{open:?}"
        );
        assert_eq!(
            offset_fetch(&broker, "g", TOPIC, &[0], true),
            [(UNSTABLE_OFFSET_COMMIT, -1)]
        );
        let (error, producer_id, epoch) = end_txn_v5(&mut wire, "v2-offsets", producer, commit);
        assert_eq!((error, producer_id, epoch), (0, producer.0, producer.1 + 1));
        let expected = if commit { offset } else { -1 };
        assert_eq!(offset_fetch(&broker, "g", TOPIC, &[0], true), [(0, expected)]);
        let fenced = txn_offset_commit(&mut wire, 5, "v2-offsets", producer, "g", TOPIC, 0, 1);
        assert_eq!(fenced, INVALID_PRODUCER_EPOCH, "the ended transaction's epoch");
        producer = (producer_id, epoch);
    }
}

/// A transactions v2 transaction aborted by its timeout: the client's writes are fenced, its
/// commit is PRODUCER_FENCED, and its abort is answered with the epoch the timeout's abort
/// took, after which it carries on.
#[test]
fn wire_transactions_v2_a_timed_out_transaction_answers_its_clients_abort() {
    const TOPIC: &str = "v2-timeout";
    let broker = start();
    create_topic(&broker, TOPIC, 1);
    let mut wire = broker.wire();
    let producer = init_txn_ok(&mut wire, "v2-slow", 1_000);
    let written = txn_produce_at(&mut wire, 12, "v2-slow", TOPIC, 0, txn_batch(&["slow"], producer, 0));
    assert_eq!(written.error_code, 0, "{written:?}");
    poll_until(Duration::from_secs(15), "the timeout to abort the transaction", || {
        (describe(&broker, "v2-slow").state == "CompleteAbort").then_some(())
    });
    let late = txn_produce_at(&mut wire, 12, "v2-slow", TOPIC, 0, txn_batch(&["late"], producer, 1));
    assert_eq!(late.error_code, INVALID_PRODUCER_EPOCH, "{late:?}");
    assert_eq!(end_txn_v5(&mut wire, "v2-slow", producer, true).0, PRODUCER_FENCED);
    let (error, producer_id, epoch) = end_txn_v5(&mut wire, "v2-slow", producer, false);
    assert_eq!((error, producer_id, epoch), (0, producer.0, producer.1 + 1));
    let next = (producer_id, epoch);
    let again = txn_produce_at(&mut wire, 12, "v2-slow", TOPIC, 0, txn_batch(&["again"], next, 0));
    assert_eq!(again.error_code, 0, "{again:?}");
    assert_eq!(end_txn_v5(&mut wire, "v2-slow", next, true), (0, next.0, next.1 + 1));
    assert_eq!(values(&read_all(&broker, TOPIC, 1, "read_committed")), ["again"]);
}

/// An EndTxn 5 whose bump would leave no epoch to bump moves the id to a new producer id at
/// epoch 0 (the markers carry the old id at `i16::MAX`), and the retry of its lost answer,
/// naming the old id, is still recognised after a broker crash.
#[test]
fn wire_transactions_v2_an_overflowing_end_is_recognised_after_a_crash() {
    const TOPIC: &str = "v2-overflow";
    const LAST: i16 = i16::MAX - 1;
    let mut broker = Broker::builder(strom_testkit::bin!())
        .set("transaction.state.log.num.partitions", "1")
        .start();
    create_topic(&broker, TOPIC, 1);
    let mut wire = broker.wire();
    let (producer_id, _) = init_txn_ok(&mut wire, "v2-old", 60_000);
    drop(wire);
    broker.sigkill();
    // The id as a long-lived v2 client leaves it: a transaction open at the last epoch.
    append_decision(
        broker.data_dir(),
        &strom_txn::TxnRecord {
            transactional_id: "v2-old".into(),
            value: Some(strom_txn::TransactionMetadata {
                state: strom_txn::TxnState::Ongoing,
                partitions: partitions_of(TOPIC, &[0]),
                txn_start_ms: 4_000_000_000_000,
                client_transaction_version: 2,
                ..strom_txn::TransactionMetadata::empty(producer_id, LAST, 60_000, 4_000_000_000_000)
            }),
        },
    );
    broker.restart();
    let mut wire = broker.wire();
    let (error, new_id, epoch) = end_txn_v5(&mut wire, "v2-old", (producer_id, LAST), true);
    assert_eq!((error, epoch), (0, 0), "{}", broker.log_tail());
    assert_ne!(new_id, producer_id);
    assert_eq!(
        describe_producers(&mut wire, TOPIC, &[0]),
        [(0, 0, vec![(producer_id, i32::from(i16::MAX), -1, -1)])],
        "the marker carries the old id at the last epoch"
    );
    drop(wire);
    broker.sigkill();
    broker.restart();

    let mut wire = broker.wire();
    assert_eq!(
        end_txn_v5(&mut wire, "v2-old", (producer_id, LAST), true),
        (0, new_id, 0)
    );
    let written = txn_produce_at(&mut wire, 12, "v2-old", TOPIC, 0, txn_batch(&["new"], (new_id, 0), 0));
    assert_eq!(written.error_code, 0, "{written:?}");
    assert_eq!(end_txn_v5(&mut wire, "v2-old", (new_id, 0), true), (0, new_id, 1));
    assert_eq!(values(&read_all(&broker, TOPIC, 1, "read_committed")), ["new"]);
}
