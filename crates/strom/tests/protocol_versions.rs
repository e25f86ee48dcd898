//! Every version the broker advertises for the data-path APIs, spoken over a raw socket.
//!
//! `rdkafka` only ever uses the newest version both sides know; older clients use older ones.
//! Each test asks ApiVersions for the advertised range and exercises every version in it, so a
//! version-specific encoding bug (a field written for the wrong versions) shows up here.

mod common;

use bytes::Bytes;
use common::{create_topic, start};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest,
};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use strom_testkit::wire::{produce_request, record_batch, topic_name, BatchProducer};
use strom_testkit::{Broker, WireClient};

/// The advertised (min, max) versions of `key`.
fn advertised(wire: &mut WireClient, key: ApiKey) -> (i16, i16) {
    let versions = wire.api_versions().expect("ApiVersions");
    let entry = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == key as i16)
        .unwrap_or_else(|| panic!("{key:?} not advertised"));
    assert!(entry.min_version <= entry.max_version, "{entry:?}");
    (entry.min_version, entry.max_version)
}

#[test]
fn every_api_versions_version_answers_with_the_same_list() {
    let broker = start();
    let mut wire = broker.wire();
    let (min, max) = advertised(&mut wire, ApiKey::ApiVersions);
    assert_eq!(min, 0);
    let reference = wire.api_versions().unwrap().api_keys;
    for version in min..=max {
        let mut request = ApiVersionsRequest::default();
        if version >= 3 {
            request.client_software_name = "strom-test".into();
            request.client_software_version = "1".into();
        }
        let response = wire
            .call(&request, version)
            .unwrap_or_else(|e| panic!("ApiVersions v{version}: {e:#}"));
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.api_keys, reference, "v{version}");
    }
}

#[test]
fn every_produce_and_fetch_version_round_trips() {
    let broker = start();
    create_topic(&broker, "versions", 1);
    let mut wire = broker.wire();
    let (produce_min, produce_max) = advertised(&mut wire, ApiKey::Produce);
    let (fetch_min, fetch_max) = advertised(&mut wire, ApiKey::Fetch);

    let mut expected: Vec<String> = Vec::new();
    for version in produce_min..=produce_max {
        let values = [format!("p{version}-a"), format!("p{version}-b")];
        let value_refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let batch = record_batch(&value_refs, BatchProducer::NONE, Compression::None, 1);
        let request = produce_request("versions", 0, batch, -1);
        let response = wire
            .call(&request, version)
            .unwrap_or_else(|e| panic!("Produce v{version}: {e:#}"));
        let partition = strom_testkit::wire::partition_response(response, "versions", 0)
            .unwrap_or_else(|e| panic!("Produce v{version}: {e:#}"));
        assert_eq!(partition.error_code, 0, "Produce v{version}");
        assert_eq!(
            partition.base_offset,
            expected.len() as i64,
            "Produce v{version} base offset"
        );
        expected.extend(values);
    }

    for version in fetch_min..=fetch_max {
        let (high_watermark, values) = fetch_all(&mut wire, "versions", version);
        assert_eq!(high_watermark, expected.len() as i64, "Fetch v{version}");
        assert_eq!(values, expected, "Fetch v{version}");
    }
}

/// Fetches partition 0 of `topic` from offset 0 at `version`: (high watermark, values).
fn fetch_all(wire: &mut WireClient, topic: &str, version: i16) -> (i64, Vec<String>) {
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.current_leader_epoch = -1;
    partition.fetch_offset = 0;
    partition.last_fetched_epoch = -1;
    partition.log_start_offset = -1;
    partition.partition_max_bytes = 1024 * 1024;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = topic_name(topic);
    fetch_topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 100;
    request.min_bytes = 1;
    request.max_bytes = 4 * 1024 * 1024;
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics = vec![fetch_topic];
    let response = wire
        .call(&request, version)
        .unwrap_or_else(|e| panic!("Fetch v{version}: {e:#}"));
    assert_eq!(response.error_code, 0, "Fetch v{version}");
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, 0, "Fetch v{version} partition");
    let mut records: Bytes = data.records.clone().unwrap_or_default();
    let mut values = Vec::new();
    let mut next_offset = 0;
    for set in RecordBatchDecoder::decode_all(&mut records).expect("decode batches") {
        for record in set.records {
            assert_eq!(record.offset, next_offset, "Fetch v{version} offsets");
            next_offset += 1;
            let value = record.value.expect("value");
            values.push(String::from_utf8_lossy(&value).into_owned());
        }
    }
    (data.high_watermark, values)
}

#[test]
fn every_list_offsets_version_finds_earliest_and_latest() {
    let broker = start();
    create_topic(&broker, "listed", 1);
    common::produce_numbered(&broker, "listed", "v", 7);
    let mut wire = broker.wire();
    let (min, max) = advertised(&mut wire, ApiKey::ListOffsets);
    for version in min..=max {
        for (timestamp, expected) in [(-2i64, 0i64), (-1, 7)] {
            let mut partition = ListOffsetsPartition::default();
            partition.partition_index = 0;
            partition.current_leader_epoch = -1;
            partition.timestamp = timestamp;
            let mut topic = ListOffsetsTopic::default();
            topic.name = topic_name("listed");
            topic.partitions = vec![partition];
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            request.topics = vec![topic];
            request.timeout_ms = 10_000;
            let response = wire
                .call(&request, version)
                .unwrap_or_else(|e| panic!("ListOffsets v{version}: {e:#}"));
            let answer = &response.topics[0].partitions[0];
            assert_eq!(answer.error_code, 0, "ListOffsets v{version} ts {timestamp}");
            assert_eq!(answer.offset, expected, "ListOffsets v{version} timestamp {timestamp}");
        }
    }
}

#[test]
fn every_metadata_version_describes_topic_and_broker() {
    let broker = start();
    create_topic(&broker, "described", 3);
    let mut wire = broker.wire();
    let (min, max) = advertised(&mut wire, ApiKey::Metadata);
    for version in min..=max {
        let mut topic = MetadataRequestTopic::default();
        topic.name = Some(topic_name("described"));
        let mut request = MetadataRequest::default();
        request.topics = Some(vec![topic]);
        let response = wire
            .call(&request, version)
            .unwrap_or_else(|e| panic!("Metadata v{version}: {e:#}"));
        check_metadata(&broker, &response, version);
    }
}

fn check_metadata(broker: &Broker, response: &kafka_protocol::messages::MetadataResponse, version: i16) {
    let brokers: Vec<(i32, &str, i32)> = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.as_str(), b.port))
        .collect();
    assert_eq!(
        brokers,
        [(1, "127.0.0.1", i32::from(broker.port()))],
        "Metadata v{version} brokers"
    );
    assert_eq!(response.topics.len(), 1, "Metadata v{version}");
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0, "Metadata v{version}");
    assert_eq!(topic.name.as_ref().map(|n| n.0.as_str()), Some("described"));
    let mut indexes: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1, 2], "Metadata v{version} partitions");
    for partition in &topic.partitions {
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.leader_id.0, 1, "Metadata v{version} leader");
    }
    if version >= 1 {
        assert_eq!(response.controller_id.0, 1, "Metadata v{version} controller");
    }
}

#[test]
fn acks_zero_produce_gets_no_response_and_the_next_answer_matches() {
    let broker = start();
    create_topic(&broker, "fire-and-forget", 1);
    let mut wire = broker.wire();
    let batch = record_batch(&[b"quiet"], BatchProducer::NONE, Compression::None, 1);
    let request = produce_request("fire-and-forget", 0, batch, 0);
    let (_, body) = wire.encode(&request, 9).unwrap();
    wire.send_body(&body).unwrap();
    // The next frame on the connection must answer the next request, not the acks=0 one.
    let versions = wire.api_versions().expect("ApiVersions after acks=0 produce");
    assert_eq!(versions.error_code, 0);
    let (high_watermark, values) = fetch_all(&mut wire, "fire-and-forget", 12);
    assert_eq!((high_watermark, values), (1, vec!["quiet".to_owned()]));
}

/// The request type of `key` with its defaults, adjusted where a zero default means something
/// else than "a plain client asking for nothing" (acks=0 gets no answer; replica 0 is a
/// follower).
fn empty_request(key: ApiKey) -> Option<kafka_protocol::messages::RequestKind> {
    use kafka_protocol::messages::*;
    Some(match key {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(-1).with_timeout_ms(1000)),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_session_epoch(-1),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_replica_id(BrokerId(-1))),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_timeout_ms(-1),
        ),
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)))
        }
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DescribeQuorum => {
            RequestKind::DescribeQuorum(kafka_protocol::messages::DescribeQuorumRequest::default())
        }
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        ApiKey::AlterReplicaLogDirs => {
            RequestKind::AlterReplicaLogDirs(kafka_protocol::messages::AlterReplicaLogDirsRequest::default())
        }
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default()),
        _ => return None,
    })
}

#[test]
fn every_advertised_api_version_answers_an_empty_request() {
    let broker = start();
    let mut wire = broker.wire();
    let advertised = wire.api_versions().expect("ApiVersions").api_keys;
    // The APIs the broker is specified to implement are all advertised.
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::Metadata,
        ApiKey::ApiVersions,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::DeleteRecords,
        ApiKey::InitProducerId,
        ApiKey::OffsetForLeaderEpoch,
        ApiKey::DescribeConfigs,
        ApiKey::AlterConfigs,
        ApiKey::CreatePartitions,
        ApiKey::IncrementalAlterConfigs,
        ApiKey::DescribeCluster,
    ] {
        assert!(
            advertised.iter().any(|a| a.api_key == key as i16),
            "{key:?} not advertised"
        );
    }
    let mut failures = Vec::new();
    for api in &advertised {
        let key = ApiKey::try_from(api.api_key).expect("a known key");
        let Some(request) = empty_request(key) else {
            // An API added after this test: extend `empty_request` to cover it.
            eprintln!("{key:?} is advertised but not covered here");
            continue;
        };
        for version in api.min_version..=api.max_version {
            let mut header = kafka_protocol::messages::RequestHeader::default();
            header.request_api_key = api.api_key;
            header.request_api_version = version;
            header.correlation_id = i32::from(api.api_key) * 100 + i32::from(version);
            header.client_id = Some("versions".into());
            let mut body = bytes::BytesMut::new();
            kafka_protocol::protocol::Encodable::encode(&header, &mut body, key.request_header_version(version))
                .unwrap();
            request.encode(&mut body, version).unwrap();
            wire.send_body(&body).unwrap();
            let mut frame = match wire.read_frame() {
                Ok(frame) => frame,
                Err(e) => {
                    failures.push(format!("{key:?} v{version}: no answer ({e})"));
                    wire = broker.wire();
                    continue;
                }
            };
            let response_header =
                <kafka_protocol::messages::ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
                    &mut frame,
                    key.response_header_version(version),
                );
            match response_header {
                Ok(h) if h.correlation_id == header.correlation_id => {}
                other => {
                    failures.push(format!("{key:?} v{version}: header {other:?}"));
                    continue;
                }
            }
            match kafka_protocol::messages::ResponseKind::decode(key, &mut frame, version) {
                Ok(_) if frame.is_empty() => {}
                Ok(_) => failures.push(format!("{key:?} v{version}: {} trailing bytes", frame.len())),
                Err(e) => failures.push(format!("{key:?} v{version}: undecodable answer: {e:#}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const INVALID_REQUEST: i16 = 42;
const INVALID_GROUP_ID: i16 = 24;

/// One broker coordinates every group and transactional id: each FindCoordinator version,
/// single-key (v0-3) and batched (v4+), names this broker; an unknown key type or an empty
/// group id gets Kafka's error.
#[test]
fn every_find_coordinator_version_names_this_broker() {
    use kafka_protocol::messages::FindCoordinatorRequest;
    let broker = start();
    let mut wire = broker.wire();
    let (min, max) = advertised(&mut wire, ApiKey::FindCoordinator);
    assert_eq!((min, max), (0, 5));
    let port = i32::from(broker.addr().port());
    for version in min..=max {
        let key_types: &[i8] = if version == 0 { &[0] } else { &[0, 1] };
        for &key_type in key_types {
            let mut request = FindCoordinatorRequest::default();
            if version >= 1 {
                request.key_type = key_type;
            }
            if version >= 4 {
                request.coordinator_keys = vec!["g1".into(), "g2".into()];
            } else {
                request.key = "g1".into();
            }
            let response = wire
                .call(&request, version)
                .unwrap_or_else(|e| panic!("FindCoordinator v{version}: {e:#}"));
            let found: Vec<(i16, i32, String, i32)> = if version >= 4 {
                response
                    .coordinators
                    .iter()
                    .map(|c| (c.error_code, c.node_id.0, c.host.to_string(), c.port))
                    .collect()
            } else {
                vec![(
                    response.error_code,
                    response.node_id.0,
                    response.host.to_string(),
                    response.port,
                )]
            };
            let expected = (0, 1, "127.0.0.1".to_string(), port);
            assert_eq!(found.len(), if version >= 4 { 2 } else { 1 }, "v{version}");
            assert!(
                found.iter().all(|f| *f == expected),
                "v{version} key type {key_type}: {found:?}"
            );
        }
    }
    let mut unknown_type = FindCoordinatorRequest::default();
    unknown_type.key_type = 7;
    unknown_type.key = "g".into();
    let response = wire.call(&unknown_type, 3).unwrap();
    assert_eq!(
        (response.error_code, response.node_id.0),
        (INVALID_REQUEST, -1),
        "{response:?}"
    );
    let mut empty_group = FindCoordinatorRequest::default();
    empty_group.coordinator_keys = vec!["".into()];
    let response = wire.call(&empty_group, 4).unwrap();
    assert_eq!(response.coordinators[0].error_code, INVALID_GROUP_ID, "{response:?}");
}
