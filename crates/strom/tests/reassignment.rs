//! Moving replicas and leaders on a running cluster through the admin APIs Kafka's tools use
//! (AlterPartitionReassignments, ListPartitionReassignments, ElectLeaders), with the raw wire
//! client: a partition moves to another broker with its data, and leadership goes back to the
//! preferred replica.

use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest, ListPartitionReassignmentsRequest,
};
use rdkafka::Offset;
use strom_testkit::cluster::metadata;
use strom_testkit::{poll_until, Admin, Broker, Cluster, Consumer, Producer, Rec};

const WAIT: Duration = Duration::from_secs(40);

/// (leader, replicas, ISR) of partition 0 of `topic`, as `node` answers Metadata.
fn partition0(node: &Broker, topic: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let metadata = metadata(node)?;
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?;
    let p = found.partitions.iter().find(|p| p.partition_index == 0)?;
    Some((
        p.leader_id.0,
        p.replica_nodes.iter().map(|b| b.0).collect(),
        p.isr_nodes.iter().map(|b| b.0).collect(),
    ))
}

fn reassign(node: &Broker, topic: &str, replicas: Option<Vec<i32>>) -> (i16, i16) {
    let mut partition = ReassignablePartition::default();
    partition.partition_index = 0;
    partition.replicas = replicas.map(|r| r.into_iter().map(BrokerId).collect());
    let mut entry = ReassignableTopic::default();
    entry.name = strom_testkit::wire::topic_name(topic);
    entry.partitions = vec![partition];
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = 10_000;
    request.topics = vec![entry];
    let response = node.wire().call(&request, 0).expect("AlterPartitionReassignments");
    let partition_error = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .map_or(-1, |p| p.error_code);
    (response.error_code, partition_error)
}

fn reassignments_in_progress(node: &Broker) -> usize {
    let mut request = ListPartitionReassignmentsRequest::default();
    request.timeout_ms = 10_000;
    request.topics = None;
    let response = node.wire().call(&request, 0).expect("ListPartitionReassignments");
    assert_eq!(response.error_code, 0);
    response.topics.iter().map(|t| t.partitions.len()).sum()
}

#[test]
fn a_partition_moves_to_another_broker_with_its_data_and_leadership_returns_to_the_preferred_replica() {
    let mut cluster = Cluster::start(
        strom_testkit::bin!(),
        3,
        &[
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("moving", 1, 1, &[], false)
        .expect("create");
    let (from, _, _) = poll_until(WAIT, "a leader", || {
        partition0(&cluster.nodes[0], "moving").filter(|p| p.0 > 0)
    });
    let values: Vec<String> = (0..200).map(|i| format!("m-{i}")).collect();
    let recs: Vec<Rec> = values.iter().map(|v| Rec::value(v.clone()).partition(0)).collect();
    Producer::new(&bootstrap, &[("acks", "all")]).send_all_ok("moving", &recs);

    // Move the only replica to another broker: it copies the log, joins the ISR, takes the
    // leadership, and the old replica is deleted.
    let to = from % 3 + 1;
    assert_eq!(reassign(&cluster.nodes[2], "moving", Some(vec![to])), (0, 0));
    poll_until(WAIT, "the partition on its new broker only", || {
        (partition0(&cluster.nodes[0], "moving")? == (to, vec![to], vec![to])).then_some(())
    });
    poll_until(WAIT, "no reassignment in progress", || {
        (reassignments_in_progress(&cluster.nodes[0]) == 0).then_some(())
    });
    poll_until(WAIT, "the old replica's data deleted", || {
        (!cluster.nodes[from as usize - 1].data_dir().join("moving-0").exists()).then_some(())
    });
    let read = Consumer::new(&bootstrap).read("moving", 0, Offset::Beginning, values.len());
    let got: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(got, values);
    // Cancelling when nothing is in progress says so.
    assert_eq!(
        reassign(&cluster.nodes[0], "moving", None).1,
        85,
        "NO_REASSIGNMENT_IN_PROGRESS"
    );

    // Three replicas with the preferred one listed first; leadership is moved off it by a
    // controlled shutdown and comes back with a preferred election.
    Admin::new(&bootstrap)
        .create_replicated_topic("elected", 1, 3, &[], false)
        .expect("create");
    let (preferred, replicas, _) = poll_until(WAIT, "three in sync", || {
        partition0(&cluster.nodes[0], "elected").filter(|p| p.0 > 0 && p.2.len() == 3)
    });
    assert_eq!(preferred, replicas[0]);
    let elect = |node: &Broker| {
        let mut partitions = TopicPartitions::default();
        partitions.topic = strom_testkit::wire::topic_name("elected");
        partitions.partitions = vec![0];
        let mut request = ElectLeadersRequest::default();
        request.election_type = 0;
        request.topic_partitions = Some(vec![partitions]);
        request.timeout_ms = 10_000;
        let response = node.wire().call(&request, 2).expect("ElectLeaders");
        response.replica_election_results[0].partition_result[0].error_code
    };
    assert_eq!(
        elect(&cluster.nodes[0]),
        84,
        "ELECTION_NOT_NEEDED while the preferred replica leads"
    );
    let status = cluster.node(preferred as usize).sigterm_and_wait();
    assert!(status.success());
    let other = (1..=3).find(|n| *n != preferred as usize).unwrap();
    poll_until(WAIT, "another leader", || {
        partition0(&cluster.nodes[other - 1], "elected").filter(|p| p.0 > 0 && p.0 != preferred)
    });
    cluster.node(preferred as usize).restart();
    poll_until(WAIT, "the preferred replica back in the ISR", || {
        partition0(&cluster.nodes[other - 1], "elected").filter(|p| p.2.contains(&preferred))
    });
    if partition0(&cluster.nodes[other - 1], "elected").is_some_and(|p| p.0 != preferred) {
        assert_eq!(elect(&cluster.nodes[other - 1]), 0);
    }
    poll_until(WAIT, "the preferred replica leading again", || {
        partition0(&cluster.nodes[other - 1], "elected").filter(|p| p.0 == preferred)
    });
}
