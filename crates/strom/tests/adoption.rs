//! A data directory written by the single-node broker Strom was before `strom server` became
//! a one-node cluster, opened by today's binary, both as a standalone node (no flags) and as
//! node 1 of a cluster: its topics (same ids, partitions and configs), records, committed
//! offsets and transactions carry on, and producer ids the single node handed out are never
//! handed out again.
//!
//! The directory is `fixtures/single-node-data.tar.gz`, made by
//! `scripts/make-single-node-fixture.py` (which says what it holds) with that broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::producer::Producer as _;
use strom_testkit::client::CALL_TIMEOUT;
use strom_testkit::cluster::{free_ports, metadata};
use strom_testkit::{poll_until, Admin, Broker, BrokerBuilder, Cluster, Consumer, GroupMember, Producer, Rec};

const WAIT: Duration = Duration::from_secs(40);
const TOPIC: &str = "kept";
const PARTITIONS: i32 = 3;
const GROUP: &str = "kept-readers";
const TRANSACTIONAL_ID: &str = "kept-txn";
/// The fixture's topic id and cluster id.
const TOPIC_ID: &str = "37bb885d-bc3f-408a-a320-cd018896f635";
const SINGLE_NODE_CLUSTER_ID: &str = "p85ZSYefRWGyKb1j-ManZA";
/// The single node had reserved producer ids below this (its `producer-id-block`).
const PRODUCER_ID_FLOOR: i64 = 1000;

/// Every value of the topic a read_committed consumer reads, per partition in offset order.
fn read_committed(bootstrap: &str) -> BTreeMap<i32, Vec<String>> {
    Consumer::read_values(bootstrap, TOPIC, PARTITIONS, "read_committed", WAIT)
}

/// What the single node held, as a read_committed consumer reads it.
fn held() -> BTreeMap<i32, Vec<String>> {
    (0..PARTITIONS)
        .map(|p| {
            let mut values: Vec<String> = (0..5).map(|i| format!("plain-{p}-{i}")).collect();
            values.push(format!("committed-{p}"));
            (p, values)
        })
        .collect()
}

/// The topic's id and partition count as `node` answers Metadata.
fn topic_id(node: &Broker) -> Option<(String, usize)> {
    let metadata = metadata(node)?;
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC) && t.error_code == 0)?;
    let leaders_known = topic.partitions.iter().all(|p| p.leader_id.0 == 1);
    leaders_known.then_some((topic.topic_id.to_string(), topic.partitions.len()))
}

/// The fixture unpacked under `scratch`: the data directory's path.
fn unpack_fixture(scratch: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/single-node-data.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(scratch)
        .status()
        .expect("run tar");
    assert!(status.success(), "unpacking {}", fixture.display());
    scratch.join("data")
}

fn cluster_id(data: &Path) -> String {
    let text = std::fs::read_to_string(data.join("meta.properties")).expect("meta.properties");
    text.lines()
        .find_map(|l| l.strip_prefix("cluster.id="))
        .expect("a cluster id")
        .to_string()
}

#[test]
fn a_single_node_data_directory_opens_as_a_standalone_node_with_everything_it_held() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let data = unpack_fixture(scratch.path());
    opens_with_everything_it_held(&data, Broker::builder(strom_testkit::bin!()));
    assert_eq!(
        cluster_id(&data),
        SINGLE_NODE_CLUSTER_ID,
        "a standalone node keeps its id"
    );
}

#[test]
fn a_single_node_data_directory_opens_as_node_1_of_a_cluster_with_everything_it_held() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let data = unpack_fixture(scratch.path());
    let controller_ports = free_ports(1);
    opens_with_everything_it_held(
        &data,
        Cluster::node_builder(strom_testkit::bin!(), 1, &controller_ports),
    );
    assert_ne!(
        cluster_id(&data),
        SINGLE_NODE_CLUSTER_ID,
        "the cluster's id, from its voters"
    );
}

/// Starts `builder` on the unpacked single-node directory `data` and checks everything the
/// single node held carries on, through a restart.
fn opens_with_everything_it_held(data: &Path, builder: BrokerBuilder) {
    let mut node = builder
        .data_dir(data)
        .set("group.initial.rebalance.delay.ms", "0")
        .start();
    let (adopted_id, partitions) = poll_until(WAIT, "the adopted topic in the cluster's metadata", || topic_id(&node));
    assert_eq!(
        (adopted_id.as_str(), partitions),
        (TOPIC_ID, PARTITIONS as usize),
        "same id and partitions"
    );
    let bootstrap = node.bootstrap();
    let before = held();
    assert_eq!(
        read_committed(&bootstrap),
        before,
        "every committed record, nothing aborted"
    );
    let configs = Admin::new(&bootstrap)
        .describe_topic_configs(TOPIC)
        .expect("describe configs");
    assert_eq!(configs.get("retention.ms"), Some(&Some("123456789".to_string())));

    // The group's offsets, from the adopted `__consumer_offsets`.
    let member = GroupMember::join(&bootstrap, GROUP, &[TOPIC], &[]);
    let committed = poll_until(WAIT, "the group's committed offsets", || {
        member
            .committed(TOPIC, &[0, 1, 2])
            .ok()
            .filter(|c| c.iter().all(Option::is_some))
    });
    assert_eq!(committed, vec![Some(3), Some(4), Some(5)]);
    drop(member);

    // Producer ids the single node handed out stay its own; the transactional id carries on
    // from the adopted `__transaction_state`.
    let mut wire = node.wire();
    let (fresh_id, _) = wire.init_producer_id().expect("idempotent producer id");
    assert!(
        fresh_id >= PRODUCER_ID_FLOOR,
        "producer id {fresh_id} is one the single node could have handed out"
    );
    let producer = Producer::new(&bootstrap, &[("transactional.id", TRANSACTIONAL_ID)]);
    producer
        .inner()
        .init_transactions(CALL_TIMEOUT)
        .expect("init after adoption");
    producer.inner().begin_transaction().expect("begin");
    producer.send_all_ok(TOPIC, &[Rec::value("after-0").partition(0)]);
    producer
        .inner()
        .commit_transaction(CALL_TIMEOUT)
        .expect("commit after adoption");
    drop(producer);

    // A restart keeps it all and adopts nothing again.
    node.restart();
    let (restarted_id, _) = poll_until(WAIT, "the topic after a restart", || topic_id(&node));
    assert_eq!(restarted_id, TOPIC_ID);
    let mut after = read_committed(&node.bootstrap());
    assert_eq!(after.get_mut(&0).and_then(Vec::pop).as_deref(), Some("after-0"));
    assert_eq!(after, before);
    assert!(data.join("__strom/adopted").join(format!("{TOPIC}.toml")).exists());
    assert!(!data.join("__strom/adopting").exists());
}
