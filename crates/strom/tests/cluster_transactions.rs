//! Transactions on a three-node cluster, driven by librdkafka: the transaction coordinator is
//! the leader of the id's `__transaction_state` partition, a transaction spans partitions led
//! by every broker (markers reach the others through WriteTxnMarkers, the first write to each
//! is checked with the coordinator), and an open transaction carries on when its coordinator
//! is SIGKILLed: the new coordinator loads it from its replica and commits it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use strom_testkit::client::CALL_TIMEOUT;
use strom_testkit::cluster::metadata;
use strom_testkit::{poll_until, Admin, Broker, Cluster, Consumer, GroupMember, Producer, Rec, WireClient};

const WAIT: Duration = Duration::from_secs(40);
const INPUT: &str = "ctp-in";
const OUTPUT: &str = "ctp-out";
const GROUP: &str = "ctp-group";
const TRANSACTIONAL_ID: &str = "ctp-txn";
const IN_PARTITIONS: i32 = 3;
const OUT_PARTITIONS: i32 = 6;
const PER_PARTITION: i64 = 20;
const BATCH: usize = 10;

fn cluster() -> Cluster {
    Cluster::start(
        strom_testkit::bin!(),
        3,
        &[
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
            ("replica.lag.time.max.ms", "3000"),
            ("group.initial.rebalance.delay.ms", "0"),
            ("offsets.topic.num.partitions", "6"),
            ("transaction.state.log.num.partitions", "6"),
        ],
    )
}

/// The node FindCoordinator names for the transactional id, asked of `node`.
fn transaction_coordinator(node: &Broker, transactional_id: &str) -> Option<i32> {
    let mut client = WireClient::connect(node.addr()).ok()?;
    let mut request = FindCoordinatorRequest::default();
    request.key = StrBytes::from_string(transactional_id.to_string());
    request.key_type = 1;
    let response: FindCoordinatorResponse = client.call(&request, 3).ok()?;
    (response.error_code == 0).then_some(response.node_id.0)
}

/// Leaders of every partition of `topic`, once each has one, as `node` sees them.
fn leaders(node: &Broker, topic: &str, partitions: i32) -> BTreeMap<i32, i32> {
    poll_until(WAIT, &format!("a leader for every partition of {topic}"), || {
        let metadata = metadata(node)?;
        let found = metadata
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?;
        let leaders: BTreeMap<i32, i32> = found
            .partitions
            .iter()
            .filter(|p| p.leader_id.0 > 0 && p.isr_nodes.len() == 3)
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        (leaders.len() == partitions as usize).then_some(leaders)
    })
}

#[test]
fn consume_transform_produce_spans_every_broker_and_carries_on_when_its_coordinator_is_killed() {
    let mut cluster = cluster();
    let bootstrap = cluster.bootstrap();
    let admin = Admin::new(&bootstrap);
    for (topic, partitions) in [(INPUT, IN_PARTITIONS), (OUTPUT, OUT_PARTITIONS)] {
        admin
            .create_replicated_topic(topic, partitions, 3, &[("min.insync.replicas", "2")], false)
            .unwrap_or_else(|e| panic!("creating {topic}: {e:?}"));
    }
    let out_leaders = leaders(cluster.node(1), OUTPUT, OUT_PARTITIONS);
    let leading: BTreeSet<i32> = out_leaders.values().copied().collect();
    assert_eq!(leading.len(), 3, "the output's leaders are spread: {out_leaders:?}");

    let input: Vec<Rec> = (0..IN_PARTITIONS)
        .flat_map(|p| (0..PER_PARTITION).map(move |i| Rec::value(format!("in-{p}-{i}")).partition(p)))
        .collect();
    Producer::new(&bootstrap, &[("acks", "all")]).send_all_ok(INPUT, &input);

    let producer = Producer::new(
        &bootstrap,
        &[("transactional.id", TRANSACTIONAL_ID), ("linger.ms", "2")],
    );
    producer
        .inner()
        .init_transactions(CALL_TIMEOUT)
        .expect("init_transactions");
    let join = || GroupMember::join(&bootstrap, GROUP, &[INPUT], &[("isolation.level", "read_committed")]);
    let mut member = join();
    let mut committed_batches = 0usize;
    let mut killed: Option<i32> = None;
    let total = (IN_PARTITIONS as i64 * PER_PARTITION) as usize;
    let mut transformed = 0usize;
    for batch_index in 0..20 {
        if transformed == total {
            break;
        }
        let batch = member.take(BATCH.min(total - transformed), WAIT);
        producer.inner().begin_transaction().expect("begin");
        // Each input record goes to an output partition of its own choosing, so every
        // transaction writes to partitions led by all three brokers.
        let out: Vec<Rec> = batch
            .iter()
            .map(|r| {
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
                Rec::value(format!("out:{value}")).partition((r.offset % OUT_PARTITIONS as i64) as i32)
            })
            .collect();
        producer.send_all_ok(OUTPUT, &out);
        let mut offsets = TopicPartitionList::new();
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        for record in &batch {
            let next = positions.entry(record.partition).or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
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
        if batch_index == 1 {
            // Aborted: a new member resumes from the committed offsets and does it again.
            producer.inner().abort_transaction(CALL_TIMEOUT).expect("abort");
            drop(member);
            member = join();
            continue;
        }
        if batch_index == 3 {
            // The coordinator dies with this transaction open; the one that takes over its
            // `__transaction_state` partition finishes it.
            let coordinator = poll_until(WAIT, "the transaction coordinator", || {
                transaction_coordinator(cluster.node(1), TRANSACTIONAL_ID)
            });
            cluster.node(coordinator as usize).sigkill();
            killed = Some(coordinator);
        }
        let commit_deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match producer.inner().commit_transaction(CALL_TIMEOUT) {
                Ok(()) => break,
                // A timeout while the coordinator moves is retriable: commit again.
                Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < commit_deadline => {}
                Err(e) => panic!("batch {batch_index}: commit: {e}"),
            }
        }
        committed_batches += 1;
        transformed += batch.len();
    }
    assert!(killed.is_some(), "the coordinator was killed mid-transaction");
    assert!(committed_batches >= 3);

    // Every input record transformed exactly once into the committed output, nothing from the
    // aborted batch twice, and the group's offsets at the end of the input.
    let read = Consumer::read_values(&cluster.bootstrap(), OUTPUT, OUT_PARTITIONS, "read_committed", WAIT);
    let mut values: Vec<String> = read.values().flatten().cloned().collect();
    values.sort();
    let mut expected: Vec<String> = input
        .iter()
        .map(|r| {
            format!(
                "out:{}",
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
            )
        })
        .collect();
    expected.sort();
    assert_eq!(values, expected, "committed output");
    let committed = poll_until(WAIT, "the group's committed offsets", || {
        member.committed(INPUT, &[0, 1, 2]).ok()
    });
    assert_eq!(committed, vec![Some(PER_PARTITION); IN_PARTITIONS as usize]);
}

const ROLLING_TOPIC: &str = "rolling-out";
const ROLLING_TXN: &str = "rolling-txn";
const ROLLING_PARTITIONS: i32 = 6;
const RECORDS_PER_TXN: i32 = 12;

/// One transaction of the rolling-restart test: `RECORDS_PER_TXN` values over every output
/// partition, written in two halves with `between` run after the first. Aborts and retries
/// (the same values) when the client says the transaction must be aborted; returns whether
/// the first attempt had to be retried.
fn transaction(producer: &Producer, batch: usize, between: &mut dyn FnMut()) -> bool {
    let recs: Vec<Rec> = (0..RECORDS_PER_TXN)
        .map(|i| Rec::value(format!("txn-{batch}-{i}")).partition(i % ROLLING_PARTITIONS))
        .collect();
    let (first, second) = recs.split_at(recs.len() / 2);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut between = Some(between);
    let mut retried = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "transaction {batch} did not commit within 90 s"
        );
        producer.inner().begin_transaction().expect("begin");
        let mut outcome = producer.send_all(ROLLING_TOPIC, first);
        if let Some(between) = between.take() {
            between();
        }
        outcome.extend(producer.send_all(ROLLING_TOPIC, second));
        let sent = outcome.into_iter().all(|r| r.is_ok());
        let committed = sent && {
            loop {
                match producer.inner().commit_transaction(CALL_TIMEOUT) {
                    Ok(()) => break true,
                    Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {}
                    Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => break false,
                    Err(e) => panic!("transaction {batch}: commit: {e}"),
                }
            }
        };
        if committed {
            return retried;
        }
        // A write or the commit failed in a way that needs an abort: none of this attempt may
        // become visible, and the same values are written again.
        retried = true;
        loop {
            match producer.inner().abort_transaction(CALL_TIMEOUT) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {}
                Err(e) => panic!("transaction {batch}: abort: {e}"),
            }
        }
    }
}

/// A rolling restart (each node SIGTERMed and started again in turn, every partition back in
/// sync before the next) while a transactional producer keeps writing, one restart inside
/// each of three open transactions: every transaction commits (after an abort and a retry
/// where the client needed one), and a read_committed consumer reads each committed value
/// exactly once, in order per partition, and nothing of an aborted attempt.
#[test]
fn transactions_commit_through_a_rolling_restart() {
    let mut cluster = cluster();
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic(
            ROLLING_TOPIC,
            ROLLING_PARTITIONS,
            3,
            &[("min.insync.replicas", "2")],
            false,
        )
        .expect("create");
    leaders(cluster.node(1), ROLLING_TOPIC, ROLLING_PARTITIONS);
    let producer = Producer::new(&bootstrap, &[("transactional.id", ROLLING_TXN), ("linger.ms", "2")]);
    producer
        .inner()
        .init_transactions(CALL_TIMEOUT)
        .expect("init_transactions");
    let mut batches = 0usize;
    for _ in 0..2 {
        transaction(&producer, batches, &mut || {});
        batches += 1;
    }
    for restarted in 1..=3usize {
        let mut restart = || {
            let node = cluster.node(restarted);
            assert!(node.sigterm_and_wait().success(), "node {restarted} stops cleanly");
            node.restart();
        };
        transaction(&producer, batches, &mut restart);
        batches += 1;
        // Every partition (the output's and the transaction state's) back on three replicas
        // before the next node goes.
        leaders(cluster.node(1), ROLLING_TOPIC, ROLLING_PARTITIONS);
        leaders(cluster.node(1), "__transaction_state", 6);
        transaction(&producer, batches, &mut || {});
        batches += 1;
    }

    let read = Consumer::read_values(&bootstrap, ROLLING_TOPIC, ROLLING_PARTITIONS, "read_committed", WAIT);
    let expected: BTreeMap<i32, Vec<String>> = (0..ROLLING_PARTITIONS)
        .map(|p| {
            let values = (0..batches).flat_map(|batch| {
                (0..RECORDS_PER_TXN)
                    .filter(move |i| i % ROLLING_PARTITIONS == p)
                    .map(move |i| format!("txn-{batch}-{i}"))
            });
            (p, values.collect())
        })
        .collect();
    assert_eq!(read, expected, "each committed value once, in order, nothing aborted");
}
