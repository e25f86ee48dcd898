//! Clusters of `strom server` processes on loopback (every node a broker and a controller
//! voter), driven by rdkafka and the raw wire client.
//!
//! What is promised today: the nodes agree on the metadata through the quorum; topics created
//! through any node are spread over the brokers; each partition is served by its leader and
//! every acknowledged record is read back in order; the active controller can die and another
//! takes over; a broker that stops (SIGTERM or SIGKILL) loses its leaderships and gets them
//! back when it returns, with its data; bad cluster settings are refused in one line, and an
//! unreachable quorum is reported in one.
//! Replicated topics (replication factor above 1) are tested in `replication.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::Offset;
use strom_testkit::cluster::metadata;
use strom_testkit::{poll_until, Admin, Broker, Cluster, Consumer, Producer, Rec};

const WAIT: Duration = Duration::from_secs(30);

fn cluster(size: usize) -> Cluster {
    Cluster::start(
        strom_testkit::bin!(),
        size,
        &[
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
        ],
    )
}

/// Partition → leader as a running node's Metadata tells it, for `topic`.
fn leaders(node: &Broker, topic: &str) -> Option<BTreeMap<i32, i32>> {
    let metadata = metadata(node)?;
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?;
    Some(
        found
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect(),
    )
}

/// Produces `per_partition` keyed-by-partition records to each partition with acks=all.
fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    tag: &str,
) -> BTreeMap<i32, Vec<String>> {
    let producer = Producer::new(bootstrap, &[("acks", "all"), ("enable.idempotence", "true")]);
    let mut sent = BTreeMap::new();
    for partition in 0..partitions {
        let values: Vec<String> = (0..per_partition).map(|i| format!("{tag}-{partition}-{i}")).collect();
        let recs: Vec<Rec> = values
            .iter()
            .map(|v| Rec::value(v.clone()).partition(partition))
            .collect();
        producer.send_all_ok(topic, &recs);
        sent.insert(partition, values);
    }
    sent
}

/// Reads each partition from the beginning and checks it holds exactly `expected`, in order.
fn assert_holds(bootstrap: &str, topic: &str, expected: &BTreeMap<i32, Vec<String>>) {
    let consumer = Consumer::new(bootstrap);
    for (partition, values) in expected {
        let records = consumer.read(topic, *partition, Offset::Beginning, values.len());
        let read: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect();
        assert_eq!(&read, values, "{topic}/{partition}");
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (0..values.len() as i64).collect::<Vec<_>>(),
            "{topic}/{partition} offsets"
        );
    }
}

#[test]
fn three_nodes_spread_partitions_and_serve_them_from_their_leaders() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    // Created through one node, visible through every node.
    Admin::new(&cluster.nodes[1].bootstrap()).create_topic_ok("spread", 6, &[]);
    let seen = poll_until(WAIT, "every node to know the topic's leaders", || {
        let all: Vec<BTreeMap<i32, i32>> = cluster.nodes.iter().filter_map(|n| leaders(n, "spread")).collect();
        (all.len() == 3 && all.windows(2).all(|w| w[0] == w[1]) && all[0].values().all(|l| *l > 0))
            .then(|| all[0].clone())
    });
    let distinct: BTreeSet<i32> = seen.values().copied().collect();
    assert_eq!(distinct.len(), 3, "leaders on every broker: {seen:?}");
    // Each broker holds the data of the partitions it leads, and only those.
    for (partition, leader) in &seen {
        for (i, node) in cluster.nodes.iter().enumerate() {
            let holds = node.data_dir().join(format!("spread-{partition}")).exists();
            assert_eq!(holds, i as i32 + 1 == *leader, "spread-{partition} on node {}", i + 1);
        }
    }
    let sent = produce(&bootstrap, "spread", 6, 50, "a");
    assert_holds(&bootstrap, "spread", &sent);

    // A node that is not a partition's leader refuses it, naming the error clients follow.
    let (partition, leader) = seen.iter().next().map(|(p, l)| (*p, *l)).unwrap();
    let other = if leader == 1 { 2 } else { 1 };
    let mut wire = cluster.node(other).wire();
    let batch = strom_testkit::wire::record_batch(
        &[b"x"],
        strom_testkit::wire::BatchProducer::NONE,
        kafka_protocol::records::Compression::None,
        0,
    );
    let response = wire.produce("spread", partition, batch, -1).expect("produce answer");
    assert_eq!(response.error_code, 6, "NOT_LEADER_OR_FOLLOWER from a non-leader");
    // KIP-951: from Produce 10 and Fetch 12 the refusal names the leader and its address.
    let batch = strom_testkit::wire::record_batch(
        &[b"x"],
        strom_testkit::wire::BatchProducer::NONE,
        kafka_protocol::records::Compression::None,
        0,
    );
    let request = strom_testkit::wire::produce_request("spread", partition, batch, -1);
    let response: kafka_protocol::messages::ProduceResponse = wire.call(&request, 10).expect("Produce v10");
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 6);
    assert_eq!(answer.current_leader.leader_id.0, leader);
    let endpoint = response
        .node_endpoints
        .iter()
        .find(|n| n.node_id.0 == leader)
        .expect("the leader's endpoint");
    assert_eq!(endpoint.port, i32::from(cluster.nodes[leader as usize - 1].port()));
    let mut fetch_partition = kafka_protocol::messages::fetch_request::FetchPartition::default();
    fetch_partition.partition = partition;
    fetch_partition.partition_max_bytes = 1024;
    fetch_partition.current_leader_epoch = -1;
    let mut fetch_topic = kafka_protocol::messages::fetch_request::FetchTopic::default();
    fetch_topic.topic = strom_testkit::wire::topic_name("spread");
    fetch_topic.partitions = vec![fetch_partition];
    let mut fetch = kafka_protocol::messages::FetchRequest::default();
    fetch.replica_id = kafka_protocol::messages::BrokerId(-1);
    fetch.max_bytes = 1024;
    fetch.topics = vec![fetch_topic];
    let response: kafka_protocol::messages::FetchResponse = wire.call(&fetch, 12).expect("Fetch v12");
    let answer = &response.responses[0].partitions[0];
    assert_eq!(answer.error_code, 6);
    assert_eq!(answer.current_leader.leader_id.0, leader);
}

/// DescribeQuorum's answer: (leader, epoch, high watermark, each voter's id and log end).
type QuorumAnswer = (i32, i32, i64, Vec<(i32, i64)>);

/// DescribeQuorum as any node answers it.
fn describe_quorum(node: &Broker) -> Option<QuorumAnswer> {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let mut partition = PartitionData::default();
    partition.partition_index = 0;
    let mut topic = TopicData::default();
    topic.topic_name = strom_testkit::wire::topic_name("__cluster_metadata");
    topic.partitions = vec![partition];
    let mut request = kafka_protocol::messages::DescribeQuorumRequest::default();
    request.topics = vec![topic];
    let response = node.wire().call(&request, 2).ok()?;
    let p = response.topics.first()?.partitions.first()?;
    (response.error_code == 0 && p.error_code == 0).then(|| {
        let voters = p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset))
            .collect();
        (p.leader_id.0, p.leader_epoch, p.high_watermark, voters)
    })
}

#[test]
fn describe_quorum_shows_the_leader_and_every_voter_caught_up() {
    let cluster = cluster(3);
    let controller = cluster.controller(WAIT);
    let (leader, epoch, high_watermark, voters) = poll_until(WAIT, "every voter caught up", || {
        describe_quorum(&cluster.nodes[2])
            .filter(|(_, _, hw, voters)| voters.len() == 3 && voters.iter().all(|(_, end)| end == hw))
    });
    assert_eq!(leader as usize, controller);
    assert!(epoch >= 1 && high_watermark > 0, "{epoch} {high_watermark}");
    let ids: BTreeSet<i32> = voters.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, BTreeSet::from([1, 2, 3]));
    // Asking for another partition than the metadata log's gets an error there.
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let mut topic = TopicData::default();
    topic.topic_name = strom_testkit::wire::topic_name("orders");
    topic.partitions = vec![PartitionData::default()];
    let mut request = kafka_protocol::messages::DescribeQuorumRequest::default();
    request.topics = vec![topic];
    let response = cluster.nodes[0].wire().call(&request, 2).expect("an answer");
    assert_eq!(
        response.topics[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
}

#[test]
fn the_active_controller_dies_and_another_takes_over() {
    let mut cluster = cluster(3);
    let controller = cluster.controller(WAIT);
    cluster.node(controller).sigkill();
    let survivor = if controller == 1 { 2 } else { 1 };
    let bootstrap = cluster.nodes[survivor - 1].bootstrap();
    // Admin requests are forwarded to the new active controller.
    poll_until(WAIT, "a topic created after the controller died", || {
        Admin::new(&bootstrap).create_topic("after", 2, &[]).ok()
    });
    let new_controller = cluster.controller(WAIT);
    assert_ne!(new_controller, controller);
    // The dead broker is fenced: the new topic and its leaders avoid it.
    cluster.wait_for_live_brokers(2, WAIT);
    let after = poll_until(WAIT, "leaders of the new topic", || {
        leaders(&cluster.nodes[survivor - 1], "after").filter(|l| l.values().all(|id| *id > 0))
    });
    assert!(after.values().all(|id| *id as usize != controller), "{after:?}");
    let sent = produce(&bootstrap, "after", 2, 20, "b");
    assert_holds(&bootstrap, "after", &sent);
}

#[test]
fn a_stopped_broker_gets_its_partitions_back_with_their_data() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap).create_topic_ok("kept", 3, &[]);
    let before = poll_until(WAIT, "leaders", || {
        leaders(&cluster.nodes[0], "kept").filter(|l| l.values().all(|id| *id > 0))
    });
    let sent = produce(&bootstrap, "kept", 3, 30, "c");
    // A topic config set through one node reaches every node, and survives their restarts.
    Admin::new(&cluster.nodes[0].bootstrap())
        .alter_topic_configs("kept", &[("retention.ms", "3600000")])
        .expect("AlterConfigs");
    let retention = |node: &Broker| {
        Admin::new(&node.bootstrap())
            .describe_topic_configs("kept")
            .ok()
            .and_then(|configs| configs.get("retention.ms").cloned().flatten())
    };
    poll_until(WAIT, "the config on node 3", || {
        (retention(&cluster.nodes[2]).as_deref() == Some("3600000")).then_some(())
    });
    // Node 3 stops under the controller's control, then node 2 crashes (one at a time: two of
    // the three voters keep the quorum).
    let status = cluster.node(3).sigterm_and_wait();
    assert!(status.success(), "SIGTERM exit status {status}");
    wait_offline(&cluster, &before, 3);
    cluster.node(3).restart();
    wait_led_as(&cluster, &before);
    cluster.node(2).sigkill();
    wait_offline(&cluster, &before, 2);
    cluster.node(2).restart();
    wait_led_as(&cluster, &before);
    assert_eq!(retention(&cluster.nodes[2]).as_deref(), Some("3600000"));
    let bootstrap = cluster.bootstrap();
    assert_holds(&bootstrap, "kept", &sent);
}

/// Waits until the partitions `stopped` led have no leader, as node 1 sees it.
fn wait_offline(cluster: &Cluster, before: &BTreeMap<i32, i32>, stopped: i32) {
    poll_until(WAIT, "the stopped broker's partitions to go offline", || {
        let now = leaders(&cluster.nodes[0], "kept")?;
        let offline = before
            .iter()
            .all(|(p, leader)| (*leader == stopped) == (now.get(p) == Some(&-1)));
        offline.then_some(())
    });
}

/// Waits until every partition is led by the broker that led it at first.
fn wait_led_as(cluster: &Cluster, before: &BTreeMap<i32, i32>) {
    poll_until(WAIT, "every partition led by its broker again", || {
        leaders(&cluster.nodes[0], "kept").filter(|now| now == before)
    });
}

#[test]
fn bad_cluster_settings_are_refused_in_one_line() {
    let bin = strom_testkit::bin!();
    // A controller that is not among the voters.
    let ports = [1u16, 2, 3];
    let stranger = Cluster::node_builder(bin, 1, &ports)
        .set("controller.quorum.voters", "2@127.0.0.1:2,3@127.0.0.1:3")
        .try_start();
    let report = stranger.err().expect("refused");
    assert!(report.contains("is not among the voters"), "{report}");
    // A data directory written for another cluster.
    let mut one = Cluster::start(bin, 1, &[]);
    let data_dir = one.node(1).data_dir().to_path_buf();
    let status = one.node(1).sigterm_and_wait();
    assert!(status.success());
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&data_dir, copy.path());
    let other_ports = [free_port()];
    let refused = Cluster::node_builder(bin, 1, &other_ports)
        .data_dir(copy.path())
        .try_start();
    let report = refused.err().expect("refused");
    assert!(report.contains("cluster"), "{report}");
}

#[test]
fn a_node_whose_quorum_is_unreachable_says_so_once_and_writes_no_data() {
    // Node 1 of three voters, the other two never started: no leader can be elected.
    let ports = strom_testkit::cluster::free_ports(3);
    let mut lonely = Cluster::node_builder(strom_testkit::bin!(), 1, &ports)
        .set("broker.session.timeout.ms", "2000")
        .start();
    let line = "is a majority of voters up?";
    poll_until(WAIT, "the broker saying the quorum is unreachable", || {
        lonely.log_tail().contains(line).then_some(())
    });
    // Watched over three more registration attempts (one per session timeout): not said again.
    let repeated = strom_testkit::wait::try_poll_until(Duration::from_secs(6), || {
        let log = lonely.log_tail();
        (log.matches(line).count() > 1).then_some(log)
    });
    assert!(
        repeated.is_none(),
        "said more than once:\n{}",
        repeated.unwrap_or_default()
    );
    let data_dir = lonely.data_dir().to_path_buf();
    lonely.sigterm_and_wait();
    let mut written: Vec<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".lock")
        .collect();
    written.sort();
    assert_eq!(written, ["__cluster_metadata", "meta.properties"], "no topic data");
}

fn free_port() -> u16 {
    strom_testkit::cluster::free_ports(1)[0]
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A base port whose node ports (base + 10 * i and the one above, for three nodes) are free
/// now, below the ephemeral range.
fn free_base_port() -> u16 {
    let mut seed = std::process::id() as u64 ^ 0x9E37_79B9;
    for _ in 0..200 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let base = 20_000 + (seed >> 33) as u16 % 10_000;
        let ports = (0..3u16).flat_map(|i| [base + 10 * i, base + 10 * i + 1]);
        let held: Vec<_> = ports.map(|p| std::net::TcpListener::bind(("127.0.0.1", p))).collect();
        if held.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free port range found");
}

#[test]
fn dev_cluster_starts_three_nodes_and_stops_them_on_ctrl_c() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let mut child = std::process::Command::new(strom_testkit::bin!())
        .args([
            "dev-cluster",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dev-cluster starts");
    let mut first_line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let bootstrap = first_line.trim().to_string();
    assert_eq!(bootstrap.split(',').count(), 3, "{bootstrap}");
    poll_until(WAIT, "a topic created on the dev cluster", || {
        Admin::new(&bootstrap).create_topic("dev", 3, &[]).ok()
    });
    let sent = produce(&bootstrap, "dev", 3, 5, "d");
    assert_holds(&bootstrap, "dev", &sent);
    // Ctrl-C stops every node.
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on our own unreaped child; plain integers.
    let signalled = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(signalled, 0);
    let status = poll_until(WAIT, "dev-cluster to exit", || child.try_wait().ok().flatten());
    assert!(status.success(), "{status}");
    let running = std::fs::read_to_string("/proc/self/status").is_ok()
        && (0..3u16).any(|i| std::net::TcpStream::connect(("127.0.0.1", base + 10 * i)).is_ok());
    assert!(!running, "a node still answers after dev-cluster exited");
}

/// IncrementalAlterConfigs on a broker resource (`name`: a node id, or "" for the cluster-wide
/// default) through `node`, with the raw wire client; returns the resource's error code.
fn set_broker_config(node: &Broker, name: &str, key: &str, value: &str) -> i16 {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut config = AlterableConfig::default();
    config.name = kafka_protocol::protocol::StrBytes::from_string(key.to_string());
    config.config_operation = 0;
    config.value = Some(kafka_protocol::protocol::StrBytes::from_string(value.to_string()));
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 4;
    resource.resource_name = kafka_protocol::protocol::StrBytes::from_string(name.to_string());
    resource.configs = vec![config];
    let mut request = kafka_protocol::messages::IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    let response = node.wire().call(&request, 1).expect("IncrementalAlterConfigs");
    response.responses[0].error_code
}

/// DescribeConfigs of one key of a resource (type 2 topic, 4 broker) on `node`: value, source.
fn describe_config(node: &Broker, resource_type: i8, name: &str, key: &str) -> Option<(String, i8)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = resource_type;
    resource.resource_name = kafka_protocol::protocol::StrBytes::from_string(name.to_string());
    resource.configuration_keys = Some(vec![kafka_protocol::protocol::StrBytes::from_string(key.to_string())]);
    let mut request = kafka_protocol::messages::DescribeConfigsRequest::default();
    request.resources = vec![resource];
    let response = node.wire().call(&request, 4).ok()?;
    let entry = response.results.first()?.configs.first()?;
    Some((entry.value.as_ref()?.to_string(), entry.config_source))
}

#[test]
fn dynamic_broker_configs_reach_every_broker_through_the_metadata() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap).create_topic_ok("tuned", 3, &[]);
    // The cluster-wide default, set through node 1, is every broker's topic default.
    assert_eq!(
        set_broker_config(&cluster.nodes[0], "", "log.retention.ms", "7200000"),
        0
    );
    for node in &cluster.nodes {
        poll_until(WAIT, "the cluster default on every node", || {
            (describe_config(node, 2, "tuned", "retention.ms")? == ("7200000".to_string(), 3)).then_some(())
        });
    }
    // Broker 2's own value, set through node 3 (forwarded to the controller), beats it on
    // broker 2 only.
    assert_eq!(
        set_broker_config(&cluster.nodes[2], "2", "log.retention.ms", "3600000"),
        0
    );
    poll_until(WAIT, "broker 2's value on broker 2", || {
        (describe_config(&cluster.nodes[1], 4, "2", "log.retention.ms")? == ("3600000".to_string(), 2)).then_some(())
    });
    assert_eq!(
        describe_config(&cluster.nodes[1], 2, "tuned", "retention.ms"),
        Some(("3600000".to_string(), 2))
    );
    assert_eq!(
        describe_config(&cluster.nodes[0], 2, "tuned", "retention.ms"),
        Some(("7200000".to_string(), 3))
    );
    // A property only read at start-up is refused; a bad value is refused as INVALID_CONFIG.
    assert_eq!(set_broker_config(&cluster.nodes[0], "1", "num.partitions", "3"), 42);
    assert_eq!(
        set_broker_config(&cluster.nodes[0], "1", "log.retention.ms", "soon"),
        40
    );
    // Kept across a restart: it is in the metadata log.
    cluster.node(2).restart();
    poll_until(WAIT, "broker 2's value after its restart", || {
        (describe_config(&cluster.nodes[1], 4, "2", "log.retention.ms")? == ("3600000".to_string(), 2)).then_some(())
    });
}

#[test]
fn a_crashed_broker_is_fenced_long_before_its_session_runs_out() {
    // A 60 s session: only the controller's probe of the crashed broker's closed listener can
    // move its leaderships within the 15 s this test waits.
    let mut cluster = Cluster::start(
        strom_testkit::bin!(),
        3,
        &[
            ("broker.session.timeout.ms", "60000"),
            ("broker.heartbeat.interval.ms", "500"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap).create_topic_ok("probed", 3, &[]);
    let before = poll_until(WAIT, "leaders", || {
        leaders(&cluster.nodes[0], "probed").filter(|l| l.values().all(|id| *id > 0))
    });
    let victim = *before.values().max().unwrap();
    let watcher = if victim == 1 { 2 } else { 1 };
    cluster.node(victim as usize).sigkill();
    poll_until(
        Duration::from_secs(15),
        "the crashed broker's partitions offline",
        || {
            let now = leaders(&cluster.nodes[watcher - 1], "probed")?;
            before
                .iter()
                .filter(|(_, leader)| **leader == victim)
                .all(|(p, _)| now.get(p) == Some(&-1))
                .then_some(())
        },
    );
    // A paused broker still accepts connections: it is left to its session.
    let paused = (1..=3).find(|n| *n != victim as usize && *n != watcher).unwrap();
    cluster.nodes[paused - 1].sigstop();
    let still = leaders(&cluster.nodes[watcher - 1], "probed").unwrap();
    // Watched for 3 s (well under its session): its leaderships stay where they are.
    let moved = strom_testkit::wait::try_poll_until(Duration::from_secs(3), || {
        leaders(&cluster.nodes[watcher - 1], "probed").filter(|now| *now != still)
    });
    assert_eq!(
        moved, None,
        "the paused broker's leaderships moved before its session ended"
    );
    cluster.nodes[paused - 1].sigcont();
}

/// A broker-only node (`process.roles=broker`: a learner of the metadata quorum) of `cluster`.
fn broker_only(cluster: &Cluster, id: usize) -> strom_testkit::BrokerBuilder {
    Broker::builder(strom_testkit::bin!())
        .set("node.id", &id.to_string())
        .set("process.roles", "broker")
        .set("controller.listener", &format!("127.0.0.1:{}", free_port()))
        .set("controller.quorum.voters", &Cluster::voters(&cluster.controller_ports))
        .set("broker.session.timeout.ms", "3000")
        .set("broker.heartbeat.interval.ms", "500")
}

#[test]
fn a_broker_only_node_joins_and_a_second_one_with_its_id_says_so_once() {
    let mut cluster = cluster(1);
    // Node 2 is a broker without the controller role: it learns the metadata and serves.
    let node2 = broker_only(&cluster, 2).start();
    cluster.wait_for_live_brokers(2, WAIT);
    let bootstrap = format!("{},{}", cluster.bootstrap(), node2.bootstrap());
    Admin::new(&bootstrap).create_topic_ok("spread", 4, &[]);
    let placement = poll_until(WAIT, "leaders on both brokers", || {
        leaders(&node2, "spread").filter(|l| l.values().all(|id| *id > 0))
    });
    assert!(placement.values().any(|id| *id == 2), "{placement:?}");
    let sent = produce(&bootstrap, "spread", 4, 10, "s");

    // Another process claims node id 2.
    let impostor = broker_only(&cluster, 2).start();
    let line = "node id 2 is in use by another live broker";
    poll_until(WAIT, "the impostor to say its node id is taken", || {
        std::fs::read_to_string(impostor.log_path())
            .ok()
            .filter(|log| log.contains(line))
            .map(drop)
    });
    // Said once, though it keeps asking (twice a second) until that session ends.
    let asked_since = std::time::Instant::now();
    poll_until(WAIT, "a few more registration attempts", || {
        (asked_since.elapsed() > Duration::from_secs(2)).then_some(())
    });
    let log = std::fs::read_to_string(impostor.log_path()).unwrap();
    assert_eq!(log.matches(line).count(), 1, "{log}");
    // Nothing changed: both brokers serve what they served.
    assert_holds(&bootstrap, "spread", &sent);
    let metadata = metadata(&cluster.nodes[0]).expect("metadata");
    let node2_port = metadata.brokers.iter().find(|b| b.node_id.0 == 2).map(|b| b.port);
    assert_eq!(node2_port, Some(i32::from(node2.port())));
}

/// The voters DescribeQuorum lists, as `node` answers.
fn voters_of(node: &Broker) -> Option<BTreeSet<i32>> {
    describe_quorum(node).map(|(_, _, _, voters)| voters.into_iter().map(|(id, _)| id).collect())
}

#[test]
fn voters_are_added_and_removed_at_run_time() {
    let mut cluster = cluster(3);
    // Node 4 runs as a broker (a learner of the quorum), then becomes a voter.
    let learner_port = free_port();
    let node4 = broker_only(&cluster, 4)
        .set("controller.listener", &format!("127.0.0.1:{learner_port}"))
        .start();
    cluster.wait_for_live_brokers(4, WAIT);
    let bootstrap = cluster.bootstrap();
    let strom = |args: &[&str]| {
        std::process::Command::new(strom_testkit::bin!())
            .args(["cluster"])
            .args(args)
            .args(["--bootstrap-server", &bootstrap, "--timeout-ms", "30000"])
            .output()
            .expect("run strom cluster")
    };
    let added = strom(&[
        "controllers",
        "add",
        "--id",
        "4",
        "--address",
        &format!("127.0.0.1:{learner_port}"),
    ]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    poll_until(WAIT, "four voters", || {
        (voters_of(&cluster.nodes[0])? == BTreeSet::from([1, 2, 3, 4])).then_some(())
    });
    // Voter 1 leaves: two of the three remaining voters are then a majority.
    let removed = strom(&["controllers", "remove", "--id", "1"]);
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    poll_until(WAIT, "voters 2, 3 and 4", || {
        (voters_of(&cluster.nodes[1])? == BTreeSet::from([2, 3, 4])).then_some(())
    });
    // Nodes 1 and 2 stop: with 1 no longer a voter, 3 and 4 still agree on metadata.
    cluster.node(1).sigkill();
    cluster.node(2).sigkill();
    let survivors = format!("{},{}", cluster.nodes[2].bootstrap(), node4.bootstrap());
    poll_until(WAIT, "a topic created with nodes 1 and 2 gone", || {
        Admin::new(&survivors).create_topic("after-change", 1, &[]).ok()
    });
    // Removing the last voters is refused, with nothing changed.
    let refused = std::process::Command::new(strom_testkit::bin!())
        .args([
            "cluster",
            "controllers",
            "remove",
            "--id",
            "9",
            "--bootstrap-server",
            &survivors,
        ])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a voter"));
}
