//! DescribeTopicPartitions (KIP-966) on a single node and a cluster: topics in name order,
//! pages bounded by the partition limit with a cursor to the next, unknown topics named as
//! such, and each partition's leader, replicas, ISR and eligible leader replicas.

use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use strom_testkit::wire::topic_name;
use strom_testkit::{poll_until, Admin, Broker, Cluster};

fn describe(
    node: &Broker,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let mut request = DescribeTopicPartitionsRequest::default();
    request.topics = topics
        .iter()
        .map(|name| {
            let mut topic = TopicRequest::default();
            topic.name = topic_name(name);
            topic
        })
        .collect();
    request.response_partition_limit = limit;
    request.cursor = cursor.map(|(name, partition)| {
        let mut cursor = Cursor::default();
        cursor.topic_name = topic_name(name);
        cursor.partition_index = partition;
        cursor
    });
    node.wire().call(&request, 0).expect("DescribeTopicPartitions")
}

/// (topic, partition) pairs of an answer, in order.
fn listed(response: &DescribeTopicPartitionsResponse) -> Vec<(String, i32)> {
    response
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
            t.partitions.iter().map(move |p| (name.clone(), p.partition_index))
        })
        .collect()
}

#[test]
fn pages_of_partitions_in_topic_order_on_a_single_node() {
    let broker = Broker::start(strom_testkit::bin!());
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("b-topic", 3, &[]);
    admin.create_topic_ok("a-topic", 2, &[]);

    let first = describe(&broker, &["b-topic", "a-topic", "missing"], 3, None);
    assert_eq!(
        listed(&first),
        [("a-topic".into(), 0), ("a-topic".into(), 1), ("b-topic".into(), 0)]
    );
    let cursor = first.next_cursor.as_ref().expect("more to come");
    assert_eq!((cursor.topic_name.as_str(), cursor.partition_index), ("b-topic", 1));
    let a = &first.topics[0];
    assert_eq!(a.partitions[0].leader_id.0, 1);
    assert_eq!(a.partitions[0].replica_nodes.len(), 1);
    assert!(!a.topic_id.is_nil());

    let rest = describe(&broker, &["b-topic", "a-topic", "missing"], 3, Some(("b-topic", 1)));
    assert_eq!(listed(&rest), [("b-topic".into(), 1), ("b-topic".into(), 2)]);
    assert!(rest.next_cursor.is_none());
    let missing = rest.topics.last().unwrap();
    assert_eq!(missing.name.as_ref().unwrap().as_str(), "missing");
    assert_eq!(missing.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    // No names: every topic.
    let all = describe(&broker, &[], 0, None);
    assert_eq!(listed(&all).len(), 5);
}

#[test]
fn a_cluster_answers_from_its_metadata_with_replicas_and_isr() {
    let cluster = Cluster::start(strom_testkit::bin!(), 3, &[]);
    Admin::new(&cluster.nodes[0].bootstrap())
        .create_replicated_topic("replicated", 2, 3, &[], false)
        .expect("create");
    let answer = poll_until(std::time::Duration::from_secs(30), "the topic on node 3", || {
        let answer = describe(&cluster.nodes[2], &["replicated"], 0, None);
        let topic = answer.topics.first()?;
        (topic.error_code == 0
            && topic.partitions.len() == 2
            && topic.partitions.iter().all(|p| p.isr_nodes.len() == 3))
        .then_some(answer)
    });
    for partition in &answer.topics[0].partitions {
        assert_eq!(partition.replica_nodes.len(), 3);
        assert!(partition.replica_nodes.contains(&partition.leader_id));
        assert!(partition.leader_epoch >= 0);
        assert_eq!(partition.eligible_leader_replicas.as_deref(), Some(&[][..]));
    }
}
