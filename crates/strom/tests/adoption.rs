//! A data directory written by a single-node broker, opened by a one-node cluster: its topics
//! (same ids, partitions and configs), records, committed offsets and transactions carry on,
//! and producer ids the single node handed out are never handed out again.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::Producer as _;
use strom_testkit::client::CALL_TIMEOUT;
use strom_testkit::cluster::{free_ports, metadata};
use strom_testkit::{poll_until, Admin, Broker, Cluster, Consumer, GroupMember, Producer, Rec};

const WAIT: Duration = Duration::from_secs(40);
const TOPIC: &str = "kept";
const PARTITIONS: i32 = 3;
const GROUP: &str = "kept-readers";
const TRANSACTIONAL_ID: &str = "kept-txn";

/// Every value of the topic a read_committed consumer reads, per partition in offset order.
fn read_committed(bootstrap: &str) -> BTreeMap<i32, Vec<String>> {
    Consumer::read_values(bootstrap, TOPIC, PARTITIONS, "read_committed", WAIT)
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

#[test]
fn a_single_node_data_directory_opens_as_a_one_node_cluster_with_everything_it_held() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let data = scratch.path().join("data");

    // The single node: records, a group's offsets, a committed and an aborted transaction.
    let mut single = Broker::builder(strom_testkit::bin!())
        .data_dir(&data)
        .set("group.initial.rebalance.delay.ms", "0")
        .start();
    let bootstrap = single.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic(TOPIC, PARTITIONS, 1, &[("retention.ms", "123456789")], false)
        .expect("create");
    let plain: Vec<Rec> = (0..PARTITIONS)
        .flat_map(|p| (0..5).map(move |i| Rec::value(format!("plain-{p}-{i}")).partition(p)))
        .collect();
    Producer::new(&bootstrap, &[("acks", "all"), ("enable.idempotence", "true")]).send_all_ok(TOPIC, &plain);
    let producer = Producer::new(&bootstrap, &[("transactional.id", TRANSACTIONAL_ID)]);
    producer.inner().init_transactions(CALL_TIMEOUT).expect("init");
    for (outcome, commit) in [("committed", true), ("aborted", false)] {
        producer.inner().begin_transaction().expect("begin");
        let recs: Vec<Rec> = (0..PARTITIONS)
            .map(|p| Rec::value(format!("{outcome}-{p}")).partition(p))
            .collect();
        producer.send_all_ok(TOPIC, &recs);
        match commit {
            true => producer.inner().commit_transaction(CALL_TIMEOUT).expect("commit"),
            false => producer.inner().abort_transaction(CALL_TIMEOUT).expect("abort"),
        }
    }
    drop(producer);
    let member = GroupMember::join(&bootstrap, GROUP, &[TOPIC], &[]);
    // Committed once the member holds its assignment (a commit during the join is refused).
    poll_until(WAIT, "the group's offsets committed", || {
        let _ = member.poll(Duration::from_millis(100));
        (0..PARTITIONS)
            .all(|partition| member.commit_offset(TOPIC, partition, 3 + i64::from(partition)).is_ok())
            .then_some(())
    });
    drop(member);
    let before = read_committed(&bootstrap);
    let (id, _) = poll_until(WAIT, "the topic's id", || {
        metadata(&single).and_then(|m| {
            m.topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == TOPIC))
                .map(|t| (t.topic_id.to_string(), t.partitions.len()))
        })
    });
    let stopped = single.sigterm_and_wait();
    assert!(stopped.success(), "the single node stops cleanly: {stopped:?}");

    // The same directory as node 1 of a one-node cluster.
    let controller_ports = free_ports(1);
    let mut node = Cluster::node_builder(strom_testkit::bin!(), 1, &controller_ports)
        .data_dir(&data)
        .set("group.initial.rebalance.delay.ms", "0")
        .start();
    let (adopted_id, partitions) = poll_until(WAIT, "the adopted topic in the cluster's metadata", || topic_id(&node));
    assert_eq!(
        (adopted_id, partitions),
        (id.clone(), PARTITIONS as usize),
        "same id and partitions"
    );
    let bootstrap = node.bootstrap();
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
        fresh_id >= 1000,
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
    assert_eq!(restarted_id, id);
    let mut after = read_committed(&node.bootstrap());
    assert_eq!(after.get_mut(&0).and_then(Vec::pop).as_deref(), Some("after-0"));
    assert_eq!(after, before);
    assert!(data.join("__strom/adopted").join(format!("{TOPIC}.toml")).exists());
    assert!(!data.join("__strom/adopting").exists());
}
