//! Every admin API, through `rdkafka`'s admin client where it has one and the raw wire client
//! where it does not (IncrementalAlterConfigs, DescribeCluster).

mod common;

use std::time::Duration;

use common::{create_topic, numbered, produce_numbered, start, utf8};
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request as incremental;
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::{AlterConfigsRequest, DescribeConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::Offset;
use strom_testkit::{poll_until, Admin, Consumer, Producer};

/// Kafka's ConfigResource type for topics.
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[test]
fn created_topics_are_listed_in_metadata_with_their_partition_counts() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("one", 1, &[]);
    admin.create_topic_ok("two", 2, &[]);
    admin.create_topic_ok("five", 5, &[]);
    let topics = admin.topics().unwrap();
    assert_eq!(topics.get("one"), Some(&1), "{topics:?}");
    assert_eq!(topics.get("two"), Some(&2), "{topics:?}");
    assert_eq!(topics.get("five"), Some(&5), "{topics:?}");

    // Metadata names this broker, node 1, at the address it listens on.
    let metadata = admin
        .inner()
        .inner()
        .fetch_metadata(Some("five"), Duration::from_secs(10))
        .unwrap();
    let brokers: Vec<(i32, String, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_owned(), b.port()))
        .collect();
    assert_eq!(brokers, [(1, "127.0.0.1".to_owned(), broker.port() as i32)]);
    let five = &metadata.topics()[0];
    for (i, partition) in five.partitions().iter().enumerate() {
        assert_eq!(partition.id(), i as i32);
        assert_eq!(partition.leader(), 1);
        assert_eq!(partition.replicas(), [1]);
        assert_eq!(partition.isr(), [1]);
    }
}

#[test]
fn validate_only_creates_nothing() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin
        .create_topic_with("dry", 3, &[("retention.ms", "1000")], true)
        .expect("validate-only create");
    assert!(!admin.topics().unwrap().contains_key("dry"));
    // A validate-only request with a bad config is rejected like a real one.
    assert_eq!(
        admin.create_topic_with("dry", 3, &[("retention.ms", "soon")], true),
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    // Nothing was left behind: the real create works.
    admin.create_topic_ok("dry", 3, &[]);
    assert_eq!(admin.topics().unwrap().get("dry"), Some(&3));
}

#[test]
fn creating_an_existing_topic_fails_with_topic_already_exists() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("taken", 2, &[]);
    assert_eq!(
        admin.create_topic("taken", 4, &[]),
        Err(RDKafkaErrorCode::TopicAlreadyExists)
    );
    assert_eq!(admin.topics().unwrap().get("taken"), Some(&2));
}

#[test]
fn invalid_create_requests_are_rejected() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    assert_eq!(
        admin.create_topic("zero", 0, &[]),
        Err(RDKafkaErrorCode::InvalidPartitions)
    );
    assert_eq!(
        admin.create_topic("unknown-config", 1, &[("no.such.config", "1")]),
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    let topics = admin.topics().unwrap();
    assert!(!topics.contains_key("zero") && !topics.contains_key("unknown-config"));
}

#[test]
fn deleted_topic_disappears_and_can_be_recreated_empty() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("doomed", 2, &[]);
    produce_numbered(&broker, "doomed", "old", 25);
    admin.delete_topic("doomed").expect("delete");
    poll_until(Duration::from_secs(10), "metadata to drop the topic", || {
        (!admin.topics().unwrap().contains_key("doomed")).then_some(())
    });
    assert_eq!(
        admin.delete_topic("doomed"),
        Err(RDKafkaErrorCode::UnknownTopicOrPartition)
    );

    admin.create_topic_ok("doomed", 1, &[]);
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(consumer.watermarks("doomed", 0).unwrap(), (0, 0));
    let values = produce_numbered(&broker, "doomed", "new", 3);
    let records = consumer.read("doomed", 0, Offset::Beginning, 3);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(read, values, "no old data resurfaces");
}

#[test]
fn create_partitions_grows_a_topic_and_never_shrinks_it() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("growing", 1, &[]);
    produce_numbered(&broker, "growing", "p0", 5);
    admin.create_partitions("growing", 3).expect("grow to 3");
    assert_eq!(admin.topics().unwrap().get("growing"), Some(&3));
    assert_eq!(
        admin.create_partitions("growing", 2),
        Err(RDKafkaErrorCode::InvalidPartitions)
    );
    assert_eq!(
        admin.create_partitions("no-such-topic", 2),
        Err(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    // The new partition takes writes; the old one kept its data.
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let delivered = producer.send_all_ok("growing", &numbered("p2", 4, 2));
    assert_eq!(delivered[3].offset, 3);
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(consumer.watermarks("growing", 0).unwrap(), (0, 5));
    assert_eq!(consumer.watermarks("growing", 1).unwrap(), (0, 0));
    assert_eq!(consumer.watermarks("growing", 2).unwrap(), (0, 4));
}

#[test]
fn describe_configs_shows_creation_configs_and_defaults() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok(
        "configured",
        1,
        &[("retention.ms", "12345"), ("cleanup.policy", "compact")],
    );
    let configs = admin.describe_topic_configs("configured").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("12345"));
    assert_eq!(configs["cleanup.policy"].as_deref(), Some("compact"));
    for key in [
        "segment.bytes",
        "retention.bytes",
        "max.message.bytes",
        "message.timestamp.type",
    ] {
        assert!(configs.contains_key(key), "{key} missing from {configs:?}");
    }
    assert_eq!(configs["message.timestamp.type"].as_deref(), Some("CreateTime"));
    // rdkafka drops per-resource DescribeConfigs errors, so the unknown topic is asked raw.
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = StrBytes::from_static_str("no-such-topic");
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    let response = broker.wire().call(&request, 4).expect("DescribeConfigs v4");
    assert_eq!(response.results.len(), 1);
    assert_eq!(response.results[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

#[test]
fn alter_configs_replaces_the_topic_config_set() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("altered", 1, &[("cleanup.policy", "compact")]);
    admin
        .alter_topic_configs("altered", &[("retention.ms", "55555")])
        .expect("alter");
    let configs = admin.describe_topic_configs("altered").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("55555"));
    // AlterConfigs is not incremental: keys it does not name go back to their defaults.
    assert_eq!(configs["cleanup.policy"].as_deref(), Some("delete"));
    // rdkafka drops per-resource AlterConfigs errors, so the invalid value goes raw.
    let mut config = AlterableConfig::default();
    config.name = StrBytes::from_static_str("retention.ms");
    config.value = Some(StrBytes::from_static_str("not-a-number"));
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = StrBytes::from_static_str("altered");
    resource.configs = vec![config];
    let mut request = AlterConfigsRequest::default();
    request.resources = vec![resource];
    let response = broker.wire().call(&request, 1).expect("AlterConfigs v1");
    assert_eq!(response.responses[0].error_code, 40, "INVALID_CONFIG");
    let configs = admin.describe_topic_configs("altered").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("55555"));
}

#[test]
fn incremental_alter_configs_sets_and_deletes_single_keys() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok(
        "incremental",
        1,
        &[("cleanup.policy", "compact"), ("retention.bytes", "999999")],
    );
    let mut wire = broker.wire();
    let request = incremental_request(
        "incremental",
        &[
            ("retention.ms", OP_SET, Some("77777")),
            ("retention.bytes", OP_DELETE, None),
        ],
    );
    let response = wire.call(&request, 1).expect("IncrementalAlterConfigs");
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].error_code, 0, "{response:?}");

    let configs = admin.describe_topic_configs("incremental").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("77777"));
    assert_eq!(configs["retention.bytes"].as_deref(), Some("-1"), "deleted -> default");
    // Untouched keys stay: this is what distinguishes it from AlterConfigs.
    assert_eq!(configs["cleanup.policy"].as_deref(), Some("compact"));

    // An invalid value is rejected and changes nothing.
    let bad = incremental_request("incremental", &[("retention.ms", OP_SET, Some("x"))]);
    let response = wire.call(&bad, 1).unwrap();
    assert_eq!(response.responses[0].error_code, 40, "INVALID_CONFIG");
    let unknown = incremental_request("missing", &[("retention.ms", OP_SET, Some("1"))]);
    let response = wire.call(&unknown, 1).unwrap();
    assert_eq!(response.responses[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let configs = admin.describe_topic_configs("incremental").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("77777"));
}

fn incremental_request(topic: &str, changes: &[(&str, i8, Option<&str>)]) -> IncrementalAlterConfigsRequest {
    let mut resource = incremental::AlterConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = StrBytes::from_string(topic.to_owned());
    resource.configs = changes
        .iter()
        .map(|(name, operation, value)| {
            let mut config = incremental::AlterableConfig::default();
            config.name = StrBytes::from_string((*name).to_owned());
            config.config_operation = *operation;
            config.value = value.map(|v| StrBytes::from_string(v.to_owned()));
            config
        })
        .collect();
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    request
}

#[test]
fn delete_records_moves_the_low_watermark() {
    let broker = start();
    create_topic(&broker, "trimmed", 1);
    let values = produce_numbered(&broker, "trimmed", "v", 100);
    let admin = Admin::new(&broker.bootstrap());
    assert_eq!(admin.delete_records("trimmed", 0, 40).unwrap(), 40);
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(consumer.watermarks("trimmed", 0).unwrap(), (40, 100));
    let first = consumer.read("trimmed", 0, Offset::Beginning, 1);
    assert_eq!(first[0].offset, 40);
    assert_eq!(utf8(&first[0].value), values[40]);

    // Moving it backwards is a no-op that reports the current low watermark.
    assert_eq!(admin.delete_records("trimmed", 0, 10).unwrap(), 40);
    // Past the high watermark is out of range.
    match admin.delete_records("trimmed", 0, 101) {
        Err(KafkaError::OffsetFetch(code) | KafkaError::AdminOp(code)) => {
            assert_eq!(code, RDKafkaErrorCode::OffsetOutOfRange)
        }
        other => panic!("delete past high watermark answered {other:?}"),
    }
    // Exactly the high watermark empties the partition; new records follow on.
    assert_eq!(admin.delete_records("trimmed", 0, 100).unwrap(), 100);
    assert_eq!(consumer.watermarks("trimmed", 0).unwrap(), (100, 100));
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let delivered = producer.send_all_ok("trimmed", &numbered("w", 2, 0));
    assert_eq!(delivered[0].offset, 100);
}

#[test]
fn describe_cluster_names_this_broker() {
    let broker = start();
    let mut wire = broker.wire();
    let response = wire
        .call(&DescribeClusterRequest::default(), 1)
        .expect("DescribeCluster v1");
    assert_eq!(response.error_code, 0, "{response:?}");
    assert_eq!(response.controller_id.0, 1);
    assert!(!response.cluster_id.as_str().is_empty());
    let brokers: Vec<(i32, String, i32)> = response
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.as_str().to_owned(), b.port))
        .collect();
    assert_eq!(brokers, [(1, "127.0.0.1".to_owned(), broker.port() as i32)]);

    // v0 answers the same.
    let v0 = wire.call(&DescribeClusterRequest::default(), 0).unwrap();
    assert_eq!(v0.cluster_id, response.cluster_id);
    assert_eq!(v0.brokers.len(), 1);
}

#[test]
fn describe_configs_reports_where_each_value_comes_from() {
    use rdkafka::admin::{AdminOptions, ConfigSource, ResourceSpecifier};
    let broker = strom_testkit::Broker::builder(strom_testkit::bin!())
        .set("log.segment.bytes", "65536")
        .start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("sourced", 1, &[("retention.ms", "4242")]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                admin
                    .inner()
                    .describe_configs([&ResourceSpecifier::Topic("sourced")], &AdminOptions::new()),
            )
            .await
        })
        .expect("in time")
        .expect("DescribeConfigs");
    let resource = results.into_iter().next().unwrap().expect("resource");
    let source = |name: &str| {
        resource
            .get(name)
            .map(|e| (e.value.clone(), format!("{:?}", e.source), e.is_default))
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(
        source("retention.ms"),
        (
            Some("4242".to_owned()),
            format!("{:?}", ConfigSource::DynamicTopic),
            false
        ),
        "set at creation"
    );
    assert_eq!(
        source("segment.bytes"),
        (
            Some("65536".to_owned()),
            format!("{:?}", ConfigSource::StaticBroker),
            false
        ),
        "inherited from --set log.segment.bytes"
    );
    let (_, cleanup_source, cleanup_default) = source("cleanup.policy");
    assert_eq!(
        (cleanup_source, cleanup_default),
        (format!("{:?}", ConfigSource::Default), true),
        "never set"
    );
}
