//! Admin and metadata edge cases over the raw wire, where Kafka's answer is a specific error
//! code that `rdkafka` would blur (or never send the request for).

mod common;

use common::{create_topic, produce_numbered, start};
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DescribeConfigsRequest, ListOffsetsRequest, MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;
use strom_testkit::wire::topic_name;
use strom_testkit::{Admin, Broker, Producer, Rec, WireClient};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_REQUEST: i16 = 42;
const UNKNOWN_TOPIC_ID: i16 = 100;

fn creatable(name: &str, partitions: i32, replication_factor: i16) -> CreatableTopic {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = partitions;
    topic.replication_factor = replication_factor;
    topic
}

fn create(wire: &mut WireClient, topics: Vec<CreatableTopic>) -> CreateTopicsResponse {
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = 10_000;
    request.topics = topics;
    wire.call(&request, 7).expect("CreateTopics v7")
}

fn error_of(response: &CreateTopicsResponse, name: &str) -> i16 {
    response
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == name)
        .unwrap_or_else(|| panic!("no result for {name}: {response:?}"))
        .error_code
}

fn topics(broker: &Broker) -> std::collections::HashMap<String, usize> {
    Admin::new(&broker.bootstrap()).topics().unwrap()
}

fn assigned(name: &str, brokers_by_partition: &[&[i32]]) -> CreatableTopic {
    let mut topic = creatable(name, -1, -1);
    topic.assignments = brokers_by_partition
        .iter()
        .enumerate()
        .map(|(index, brokers)| {
            let mut assignment = CreatableReplicaAssignment::default();
            assignment.partition_index = index as i32;
            assignment.broker_ids = brokers.iter().map(|&id| BrokerId(id)).collect();
            assignment
        })
        .collect();
    topic
}

#[test]
fn create_topics_checks_replication_against_one_node_and_applies_defaults() {
    let broker = start();
    let mut wire = broker.wire();
    let response = create(
        &mut wire,
        vec![
            creatable("two-replicas", 1, 2),
            creatable("defaults", -1, -1),
            assigned("on-node-one", &[&[1], &[1]]),
        ],
    );
    assert_eq!(error_of(&response, "two-replicas"), INVALID_REPLICATION_FACTOR);
    assert_eq!(error_of(&response, "defaults"), 0);
    assert_eq!(error_of(&response, "on-node-one"), 0);
    // -1 partitions means the broker default (num.partitions, 1 unless set); a manual
    // assignment fixes the count.
    let result = response
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "defaults")
        .unwrap();
    assert_eq!((result.num_partitions, result.replication_factor), (1, 1));
    let listed = topics(&broker);
    assert_eq!(listed.get("defaults"), Some(&1));
    assert_eq!(listed.get("on-node-one"), Some(&2));
    assert!(!listed.contains_key("two-replicas"));
}

/// Kafka: "The manual partition assignment includes broker 2, but no broker with that ID is
/// registered." -> INVALID_REPLICA_ASSIGNMENT.
#[test]
fn a_manual_assignment_to_an_unknown_broker_is_invalid_replica_assignment() {
    let broker = start();
    let mut wire = broker.wire();
    let response = create(&mut wire, vec![assigned("on-node-two", &[&[2]])]);
    assert_eq!(error_of(&response, "on-node-two"), INVALID_REPLICA_ASSIGNMENT);
    assert!(!topics(&broker).contains_key("on-node-two"));
}

/// Kafka refuses every entry of a name listed twice ("contains multiple entries for the
/// following topics") with INVALID_REQUEST, and creates none.
#[test]
fn the_same_topic_twice_in_one_create_request_is_invalid_request() {
    let broker = start();
    let mut wire = broker.wire();
    let response = create(&mut wire, vec![creatable("twice", 1, 1), creatable("twice", 2, 1)]);
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert!(!codes.is_empty());
    assert_eq!(codes, vec![INVALID_REQUEST; codes.len()], "error per entry");
    assert!(!topics(&broker).contains_key("twice"));
}

#[test]
fn topic_names_up_to_249_characters_are_valid() {
    let broker = start();
    let mut wire = broker.wire();
    let longest = "l".repeat(249);
    let too_long = "l".repeat(250);
    let response = create(
        &mut wire,
        vec![
            creatable(&longest, 1, 1),
            creatable(&too_long, 1, 1),
            creatable("dots.and_underscores-0", 1, 1),
        ],
    );
    assert_eq!(error_of(&response, &longest), 0);
    assert_eq!(error_of(&response, &too_long), INVALID_TOPIC_EXCEPTION);
    assert_eq!(error_of(&response, "dots.and_underscores-0"), 0);
}

#[test]
fn create_partitions_rejects_no_growth_and_honours_validate_only() {
    let broker = start();
    create_topic(&broker, "fixed", 2);
    let mut wire = broker.wire();
    // No assignment (null: clients send null, not an empty list, which names no partition).
    let grow = |count: i32, validate_only: bool| grow("fixed", count, None, validate_only);
    let response = wire.call(&grow(2, false), 3).expect("CreatePartitions v3");
    assert_eq!(response.results[0].error_code, INVALID_PARTITIONS, "same count");
    let response = wire.call(&grow(5, true), 3).unwrap();
    assert_eq!(response.results[0].error_code, 0, "validate-only growth");
    assert_eq!(
        topics(&broker).get("fixed"),
        Some(&2),
        "validate_only changed the topic"
    );
    let response = wire.call(&grow(5, false), 3).unwrap();
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(topics(&broker).get("fixed"), Some(&5));
}

#[test]
fn describe_configs_filters_keys_and_describes_the_broker() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("log.retention.check.interval.ms", "4321")
        .start();
    create_topic(&broker, "described", 1);
    let mut wire = broker.wire();

    let mut topic = DescribeConfigsResource::default();
    topic.resource_type = 2;
    topic.resource_name = StrBytes::from_static_str("described");
    topic.configuration_keys = Some(vec![
        StrBytes::from_static_str("retention.ms"),
        StrBytes::from_static_str("cleanup.policy"),
    ]);
    let mut node = DescribeConfigsResource::default();
    node.resource_type = 4;
    node.resource_name = StrBytes::from_static_str("1");
    node.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![topic, node];
    let response = wire.call(&request, 4).expect("DescribeConfigs v4");
    assert_eq!(response.results.len(), 2);

    let topic = &response.results[0];
    assert_eq!(topic.error_code, 0, "{topic:?}");
    let mut names: Vec<&str> = topic.configs.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["cleanup.policy", "retention.ms"], "only the keys asked for");

    let node = &response.results[1];
    assert_eq!(node.error_code, 0, "{node:?}");
    let interval = node
        .configs
        .iter()
        .find(|c| c.name.as_str() == "log.retention.check.interval.ms")
        .expect("broker config lists log.retention.check.interval.ms");
    assert_eq!(interval.value.as_ref().map(|v| v.as_str()), Some("4321"));
}

#[test]
fn delete_records_to_minus_one_means_the_high_watermark() {
    let broker = start();
    create_topic(&broker, "emptied", 1);
    produce_numbered(&broker, "emptied", "e", 12);
    let mut wire = broker.wire();
    let mut partition = DeleteRecordsPartition::default();
    partition.partition_index = 0;
    partition.offset = -1;
    let mut topic = DeleteRecordsTopic::default();
    topic.name = topic_name("emptied");
    topic.partitions = vec![partition];
    let mut request = DeleteRecordsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    let response = wire.call(&request, 2).expect("DeleteRecords v2");
    let answer = &response.topics[0].partitions[0];
    assert_eq!((answer.error_code, answer.low_watermark), (0, 12), "{answer:?}");
}

#[test]
fn metadata_null_lists_all_topics_and_empty_lists_none() {
    let broker = start();
    create_topic(&broker, "alpha", 1);
    create_topic(&broker, "beta", 2);
    let mut wire = broker.wire();
    let mut request = MetadataRequest::default();
    request.topics = None;
    let all = wire.call(&request, 12).expect("Metadata v12");
    let mut names: Vec<&str> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str()))
        .filter(|name| !name.starts_with("__"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["alpha", "beta"], "user topics");
    request.topics = Some(Vec::new());
    let none = wire.call(&request, 12).unwrap();
    assert!(none.topics.is_empty(), "{:?}", none.topics);
    assert_eq!(none.brokers.len(), 1);
}

/// Java's admin client describes topics by id with the name left empty (`""`, not null): the
/// id must win, as in Kafka, or the answer is about a topic named "" and has no id, and the
/// client fails the call ("Use errors() when managing topic using topic name").
#[test]
fn metadata_by_topic_id_ignores_an_empty_name() {
    let broker = start();
    create_topic(&broker, "by-id", 2);
    create_topic(&broker, "deleted", 1);
    let mut wire = broker.wire();
    let by_name = {
        let mut request = MetadataRequest::default();
        request.topics = Some(
            ["by-id", "deleted"]
                .iter()
                .map(|name| {
                    let mut wanted = MetadataRequestTopic::default();
                    wanted.name = Some(topic_name(name));
                    wanted
                })
                .collect(),
        );
        wire.call(&request, 12).expect("Metadata v12 by name")
    };
    let id = by_name.topics[0].topic_id;
    let unknown = by_name.topics[1].topic_id;
    assert!(!id.is_nil() && !unknown.is_nil(), "{by_name:?}");
    Admin::new(&broker.bootstrap()).delete_topic("deleted").expect("delete");

    let mut request = MetadataRequest::default();
    request.allow_auto_topic_creation = false;
    request.topics = Some(
        [id, unknown]
            .into_iter()
            .map(|topic_id| {
                let mut wanted = MetadataRequestTopic::default();
                wanted.topic_id = topic_id;
                wanted.name = Some(topic_name(""));
                wanted
            })
            .collect(),
    );
    let response = wire.call(&request, 12).expect("Metadata v12 by id");
    assert_eq!(response.topics.len(), 2, "{response:?}");
    let found = &response.topics[0];
    assert_eq!(found.error_code, 0, "{found:?}");
    assert_eq!(found.topic_id, id);
    assert_eq!(found.name.as_ref().map(|n| n.0.as_str()), Some("by-id"));
    assert_eq!(found.partitions.len(), 2);
    let missing = &response.topics[1];
    assert_eq!(missing.error_code, UNKNOWN_TOPIC_ID, "{missing:?}");
    assert_eq!(missing.topic_id, unknown);
    assert!(missing.name.is_none(), "{missing:?}");
    assert!(
        !topics(&broker).contains_key(""),
        "nothing was created under the empty name"
    );
}

#[test]
fn metadata_auto_creation_never_creates_an_invalid_name() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("auto.create.topics.enable", "true")
        .start();
    let mut wire = broker.wire();
    let mut request = MetadataRequest::default();
    request.allow_auto_topic_creation = true;
    request.topics = Some(
        ["bad name!", "fine-name"]
            .iter()
            .map(|name| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(topic_name(name));
                topic
            })
            .collect(),
    );
    let response = wire.call(&request, 12).expect("Metadata v12");
    let error = |name: &str| {
        response
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name))
            .map(|t| t.error_code)
    };
    assert_eq!(error("bad name!"), Some(INVALID_TOPIC_EXCEPTION));
    // The valid one is created (Kafka may answer LEADER_NOT_AVAILABLE while it does).
    assert!(matches!(error("fine-name"), Some(0 | 5)), "{response:?}");
    let listed = topics(&broker);
    assert!(listed.contains_key("fine-name"), "{listed:?}");
    assert!(!listed.contains_key("bad name!"), "{listed:?}");
}

#[test]
fn list_offsets_max_timestamp_finds_the_newest_record() {
    let broker = start();
    create_topic(&broker, "maxed", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let base = 1_700_000_000_000i64;
    for (i, ts) in [5_000i64, 9_000, 7_000].iter().enumerate() {
        producer
            .send("maxed", &Rec::value(format!("m{i}")).partition(0).timestamp(base + ts))
            .unwrap();
    }
    let mut wire = broker.wire();
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.current_leader_epoch = -1;
    partition.timestamp = -3; // MAX_TIMESTAMP, ListOffsets v7+
    let mut topic = ListOffsetsTopic::default();
    topic.name = topic_name("maxed");
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = vec![topic];
    let response = wire.call(&request, 7).expect("ListOffsets v7");
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    assert_eq!((answer.offset, answer.timestamp), (1, base + 9_000));
    // An unknown partition is UNKNOWN_TOPIC_OR_PARTITION.
    request.topics[0].partitions[0].partition_index = 4;
    let response = wire.call(&request, 7).unwrap();
    assert_eq!(response.topics[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn a_max_message_bytes_change_applies_to_the_next_produce() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("resized", 1, &[("max.message.bytes", "2000")]);
    let mut wire = broker.wire();
    let value = vec![b'm'; 5000];
    let batch = || {
        strom_testkit::wire::record_batch(
            &[&value],
            strom_testkit::wire::BatchProducer::NONE,
            kafka_protocol::records::Compression::None,
            1,
        )
    };
    assert_eq!(
        wire.produce("resized", 0, batch(), -1).unwrap().error_code,
        10,
        "MESSAGE_TOO_LARGE"
    );
    admin
        .alter_topic_configs("resized", &[("max.message.bytes", "10000")])
        .unwrap();
    let response = wire.produce("resized", 0, batch(), -1).unwrap();
    assert_eq!(
        (response.error_code, response.base_offset),
        (0, 0),
        "after raising the limit"
    );
}

/// Kafka refuses a name that differs from an existing one only by '.' versus '_' (their
/// metric names would collide): INVALID_TOPIC_EXCEPTION.
#[test]
fn topic_names_colliding_on_dot_and_underscore_are_refused() {
    let broker = start();
    create_topic(&broker, "orders.v1", 1);
    let mut wire = broker.wire();
    let response = create(&mut wire, vec![creatable("orders_v1", 1, 1)]);
    assert_eq!(error_of(&response, "orders_v1"), INVALID_TOPIC_EXCEPTION);
    assert!(!topics(&broker).contains_key("orders_v1"));
}

#[test]
fn a_null_config_value_in_create_topics_is_invalid_config() {
    let broker = start();
    let mut wire = broker.wire();
    let mut topic = creatable("null-config", 1, 1);
    let mut config = kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default();
    config.name = StrBytes::from_static_str("retention.ms");
    config.value = None;
    topic.configs = vec![config];
    let response = create(&mut wire, vec![topic]);
    assert_eq!(error_of(&response, "null-config"), 40, "INVALID_CONFIG");
    assert!(!topics(&broker).contains_key("null-config"));
}

fn incremental(
    topic: &str,
    changes: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> kafka_protocol::messages::IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_string(topic.to_owned());
    resource.configs = changes
        .iter()
        .map(|(name, operation, value)| {
            let mut config = AlterableConfig::default();
            config.name = StrBytes::from_string((*name).to_owned());
            config.config_operation = *operation;
            config.value = value.map(|v| StrBytes::from_string(v.to_owned()));
            config
        })
        .collect();
    let mut request = kafka_protocol::messages::IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    request.validate_only = validate_only;
    request
}

#[test]
fn incremental_alter_configs_refuses_duplicate_keys() {
    let broker = start();
    create_topic(&broker, "altered-twice", 1);
    let mut wire = broker.wire();
    // Kafka: "Error due to duplicate config keys" -> INVALID_REQUEST, and nothing changes.
    let twice = incremental(
        "altered-twice",
        &[("retention.ms", 0, Some("1000")), ("retention.ms", 0, Some("2000"))],
        false,
    );
    let response = wire.call(&twice, 1).expect("IncrementalAlterConfigs");
    assert_eq!(response.responses[0].error_code, INVALID_REQUEST, "duplicate keys");
    let configs = Admin::new(&broker.bootstrap())
        .describe_topic_configs("altered-twice")
        .unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("604800000"));
}

#[test]
fn incremental_alter_configs_validate_only_changes_nothing() {
    let broker = start();
    create_topic(&broker, "dry-altered", 1);
    let mut wire = broker.wire();
    let dry = incremental("dry-altered", &[("retention.ms", 0, Some("3000"))], true);
    let response = wire.call(&dry, 1).expect("IncrementalAlterConfigs");
    assert_eq!(response.responses[0].error_code, 0);
    let invalid = incremental("dry-altered", &[("retention.ms", 0, Some("soon"))], true);
    let response = wire.call(&invalid, 1).unwrap();
    assert_eq!(response.responses[0].error_code, 40, "validate_only still validates");
    let configs = Admin::new(&broker.bootstrap())
        .describe_topic_configs("dry-altered")
        .unwrap();
    assert_eq!(
        configs["retention.ms"].as_deref(),
        Some("604800000"),
        "validate_only changed it"
    );
}

/// One replica cannot satisfy min.insync.replicas=2: acks=all is refused with
/// NOT_ENOUGH_REPLICAS and appends nothing; acks=1 still works.
#[test]
fn acks_all_needs_min_insync_replicas() {
    let broker = start();
    Admin::new(&broker.bootstrap()).create_topic_ok("strict", 1, &[("min.insync.replicas", "2")]);
    let mut wire = broker.wire();
    let batch = || {
        strom_testkit::wire::record_batch(
            &[b"r"],
            strom_testkit::wire::BatchProducer::NONE,
            kafka_protocol::records::Compression::None,
            1,
        )
    };
    let refused = wire.produce("strict", 0, batch(), -1).unwrap();
    assert_eq!(refused.error_code, 19, "NOT_ENOUGH_REPLICAS");
    let accepted = wire.produce("strict", 0, batch(), 1).unwrap();
    assert_eq!(
        (accepted.error_code, accepted.base_offset),
        (0, 0),
        "acks=1 appends at offset 0"
    );
}

/// KIP-430's "not provided" value of an authorized-operations field.
const NOT_PROVIDED: i32 = i32::MIN;

/// A bit field with bit `i` set for the ACL operation of code `i`.
fn operations(codes: &[i32]) -> i32 {
    codes.iter().map(|code| 1 << code).sum()
}

/// Without an authorizer Kafka answers every operation the resource type supports when a
/// request asks for authorized operations (KIP-430), and "not provided" when it does not.
/// kafka-python's admin always asks, and reads the sentinel as no operations at all (None).
#[test]
fn authorized_operations_are_every_supported_operation_when_asked() {
    use kafka_protocol::messages::{
        ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, DescribeClusterRequest, DescribeGroupsRequest,
        GroupId,
    };
    // READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
    // DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
    let topic_ops = operations(&[3, 4, 5, 6, 7, 8, 10, 11]);
    let group_ops = operations(&[3, 6, 8, 10, 11]);
    let cluster_ops = operations(&[5, 7, 8, 9, 10, 11, 12]);

    let broker = start();
    create_topic(&broker, "guarded", 1);
    let mut wire = broker.wire();

    // Metadata: v8-10 carry the cluster's operations, v8+ each topic's.
    for (version, asked) in [(8, true), (10, true), (12, true), (8, false), (12, false)] {
        let mut request = MetadataRequest::default();
        let mut named = MetadataRequestTopic::default();
        named.name = Some(topic_name("guarded"));
        let mut missing = MetadataRequestTopic::default();
        missing.name = Some(topic_name("not-there"));
        request.topics = Some(vec![named, missing]);
        request.allow_auto_topic_creation = false;
        request.include_cluster_authorized_operations = asked && version <= 10;
        request.include_topic_authorized_operations = asked;
        let response = wire.call(&request, version).expect("Metadata");
        let expected = if asked { topic_ops } else { NOT_PROVIDED };
        let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            [0, UNKNOWN_TOPIC_OR_PARTITION],
            "the unknown topic is answered too"
        );
        for topic in &response.topics {
            assert_eq!(
                topic.topic_authorized_operations, expected,
                "v{version} asked={asked}: {topic:?}"
            );
        }
        if version <= 10 {
            let expected = if asked { cluster_ops } else { NOT_PROVIDED };
            assert_eq!(
                response.cluster_authorized_operations, expected,
                "v{version} asked={asked}"
            );
        }
    }

    for version in [0, 1] {
        for asked in [true, false] {
            let mut request = DescribeClusterRequest::default();
            request.include_cluster_authorized_operations = asked;
            let response = wire.call(&request, version).expect("DescribeCluster");
            let expected = if asked { cluster_ops } else { NOT_PROVIDED };
            assert_eq!(
                response.cluster_authorized_operations, expected,
                "v{version} asked={asked}"
            );
        }
    }

    // A KIP-848 group with one member, and a classic group id nobody uses (described Dead,
    // without an error, so with operations, as Kafka does).
    let mut heartbeat = ConsumerGroupHeartbeatRequest::default();
    heartbeat.group_id = GroupId(StrBytes::from_static_str("ops-group"));
    heartbeat.member_id = StrBytes::from_static_str("ops-member-0000000000");
    heartbeat.member_epoch = 0;
    heartbeat.rebalance_timeout_ms = 30_000;
    heartbeat.subscribed_topic_names = Some(vec![topic_name("guarded")]);
    heartbeat.topic_partitions = Some(vec![]);
    wire.find_coordinator(0, "ops-group").expect("FindCoordinator");
    let joined = wire.call(&heartbeat, 0).expect("ConsumerGroupHeartbeat");
    assert_eq!(joined.error_code, 0, "{joined:?}");

    for asked in [true, false] {
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![GroupId(StrBytes::from_static_str("nobody-here"))];
        request.include_authorized_operations = asked;
        let response = wire.call(&request, 5).expect("DescribeGroups v5");
        let expected = if asked { group_ops } else { NOT_PROVIDED };
        assert_eq!(response.groups[0].error_code, 0);
        assert_eq!(response.groups[0].authorized_operations, expected, "asked={asked}");

        let mut request = ConsumerGroupDescribeRequest::default();
        request.group_ids = vec![
            GroupId(StrBytes::from_static_str("ops-group")),
            GroupId(StrBytes::from_static_str("no-such-group")),
        ];
        request.include_authorized_operations = asked;
        let response = wire.call(&request, 0).expect("ConsumerGroupDescribe");
        let [known, unknown] = &response.groups[..] else {
            panic!("two groups: {response:?}")
        };
        assert_eq!((known.error_code, known.members.len()), (0, 1), "{known:?}");
        let expected = if asked { group_ops } else { NOT_PROVIDED };
        assert_eq!(known.authorized_operations, expected, "asked={asked}");
        // Kafka leaves a group it could not describe without operations.
        assert_ne!(unknown.error_code, 0);
        assert_eq!(unknown.authorized_operations, NOT_PROVIDED);
    }
}

fn grow(name: &str, count: i32, assignments: Option<&[&[i32]]>, validate_only: bool) -> CreatePartitionsRequest {
    let mut topic = CreatePartitionsTopic::default();
    topic.name = topic_name(name);
    topic.count = count;
    topic.assignments = assignments.map(|lists| {
        lists
            .iter()
            .map(|brokers| {
                let mut assignment = CreatePartitionsAssignment::default();
                assignment.broker_ids = brokers.iter().map(|&id| BrokerId(id)).collect();
                assignment
            })
            .collect()
    });
    let mut request = CreatePartitionsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    request.validate_only = validate_only;
    request
}

/// CreatePartitions checks a manual assignment as Kafka's controller does: one replica list
/// per new partition, each non-empty, naming only registered brokers, none twice, with the
/// topic's replication factor; INVALID_REPLICA_ASSIGNMENT otherwise, validate_only or not, and
/// the topic keeps its partitions.
#[test]
fn create_partitions_checks_a_manual_assignment() {
    let broker = start();
    create_topic(&broker, "grown", 2);
    let mut wire = broker.wire();
    let refused: [(&str, &[&[i32]]); 6] = [
        ("more lists than new partitions", &[&[1], &[1], &[1]]),
        ("fewer lists than new partitions", &[&[1]]),
        ("no lists", &[]),
        ("an empty list", &[&[1], &[]]),
        ("an unknown broker", &[&[1], &[2]]),
        ("a broker twice", &[&[1], &[1, 1]]),
    ];
    for validate_only in [true, false] {
        for (what, lists) in refused {
            let response = wire
                .call(&grow("grown", 4, Some(lists), validate_only), 3)
                .expect("CreatePartitions v3");
            let result = &response.results[0];
            assert_eq!(
                result.error_code, INVALID_REPLICA_ASSIGNMENT,
                "{what} (validate_only {validate_only}): {result:?}"
            );
            assert!(
                result.error_message.as_ref().is_some_and(|m| !m.is_empty()),
                "{what}: a message says why"
            );
        }
    }
    // A count that is no increase is INVALID_PARTITIONS, whatever the assignment says (Kafka
    // checks the count first).
    let response = wire.call(&grow("grown", 2, Some(&[&[1]]), false), 3).unwrap();
    assert_eq!(response.results[0].error_code, INVALID_PARTITIONS);
    assert_eq!(topics(&broker).get("grown"), Some(&2), "nothing was added");

    let response = wire.call(&grow("grown", 4, Some(&[&[1], &[1]]), true), 3).unwrap();
    assert_eq!(response.results[0].error_code, 0, "{response:?}");
    assert_eq!(topics(&broker).get("grown"), Some(&2), "validate_only added partitions");
    let response = wire.call(&grow("grown", 4, Some(&[&[1], &[1]]), false), 3).unwrap();
    assert_eq!(response.results[0].error_code, 0, "{response:?}");
    let response = wire.call(&grow("grown", 5, None, false), 3).unwrap();
    assert_eq!(response.results[0].error_code, 0, "{response:?}");
    assert_eq!(topics(&broker).get("grown"), Some(&5));
}

/// CreateTopics' manual assignment goes through the same checks, and its partitions must be
/// numbered 0, 1, ... each once.
#[test]
fn create_topics_checks_a_manual_assignment() {
    let broker = start();
    let mut wire = broker.wire();
    let mut gap = assigned("gap", &[&[1], &[1]]);
    gap.assignments[1].partition_index = 2;
    let mut twice = assigned("index-twice", &[&[1], &[1]]);
    twice.assignments[1].partition_index = 0;
    let response = create(
        &mut wire,
        vec![
            assigned("empty-list", &[&[1], &[]]),
            assigned("broker-twice", &[&[1, 1]]),
            gap,
            twice,
            assigned("valid", &[&[1], &[1], &[1]]),
        ],
    );
    let valid = response.topics.iter().find(|t| t.name.0.as_str() == "valid").unwrap();
    assert_eq!((valid.error_code, valid.num_partitions), (0, 3), "{valid:?}");
    let listed = topics(&broker);
    assert_eq!(listed.get("valid"), Some(&3));
    for name in ["empty-list", "broker-twice", "gap", "index-twice"] {
        assert_eq!(
            error_of(&response, name),
            INVALID_REPLICA_ASSIGNMENT,
            "{name}: {response:?}"
        );
        assert!(!listed.contains_key(name), "{name} was created");
    }
}
