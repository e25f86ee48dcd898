//! `compression.type` as a topic and broker config (with KIP-390's levels): batches in another
//! codec are recompressed into the topic's before they are stored, batches already in it are
//! stored byte for byte, and consumers read the same records either way.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression as Codec;
use rdkafka::Offset;
use strom_record::{BatchHeader, BatchIter, Compression};
use strom_testkit::wire::{record_batch, BatchProducer};
use strom_testkit::{Admin, Broker, Consumer, Producer, Rec};

const RESOURCE_TOPIC: i8 = 2;
const INVALID_CONFIG: i16 = 40;
const NOW_MS: i64 = 1_700_000_000_000;

/// Every stored batch of the partition, as fetched.
fn stored_batches(broker: &Broker, topic: &str) -> Vec<Bytes> {
    let records = broker.wire().fetch_records(topic, 0, 0).expect("fetch");
    BatchIter::new(&records)
        .map(|batch| Bytes::copy_from_slice(batch.expect("whole batch").bytes))
        .collect()
}

fn codec(batch: &[u8]) -> Compression {
    BatchHeader::parse(batch).unwrap().compression().unwrap()
}

fn recs(prefix: &str, count: usize) -> Vec<Rec> {
    (0..count)
        .map(|i| {
            Rec::keyed(format!("{prefix}-key-{i}"), format!("{prefix}-value-{i} ").repeat(5))
                .partition(0)
                .header("h", Some(format!("{i}").as_bytes()))
        })
        .collect()
}

/// Key, value and header count of a record.
type Fields = (Option<Vec<u8>>, Option<Vec<u8>>, usize);

/// Every record of the partition, read by a consumer.
fn consumed(broker: &Broker, topic: &str) -> Vec<Fields> {
    Consumer::new(&broker.bootstrap())
        .read_to_end(topic, 0, Offset::Beginning)
        .into_iter()
        .map(|r| (r.key, r.value, r.headers.len()))
        .collect()
}

/// A topic at compression.type=lz4 receives gzip, uncompressed and idempotent zstd batches
/// from librdkafka: every stored batch is lz4, idempotent batches keep their producer id and
/// sequences, and a consumer reads exactly what was sent.
#[test]
fn a_topic_recompresses_batches_into_its_compression_type() {
    let mut broker = common::start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("lz4-topic", 1, &[("compression.type", "lz4")]);
    let mut sent = Vec::new();
    for (name, extra) in [
        ("gzip", vec![("compression.codec", "gzip")]),
        ("none", vec![("compression.codec", "none")]),
        (
            "zstd-idempotent",
            vec![("compression.codec", "zstd"), ("enable.idempotence", "true")],
        ),
    ] {
        let batch = recs(name, 300);
        Producer::new(&broker.bootstrap(), &extra).send_all_ok("lz4-topic", &batch);
        sent.extend(batch);
    }
    let batches = stored_batches(&broker, "lz4-topic");
    assert!(!batches.is_empty());
    for batch in &batches {
        assert_eq!(codec(batch), Compression::Lz4);
    }
    let idempotent: Vec<BatchHeader> = batches
        .iter()
        .map(|b| BatchHeader::parse(b).unwrap())
        .filter(|h| h.has_producer_id())
        .collect();
    assert!(!idempotent.is_empty(), "the idempotent producer's batches keep its id");
    assert_eq!(idempotent[0].base_sequence, 0);
    let records: Vec<_> = consumed(&broker, "lz4-topic");
    let expected: Vec<_> = sent
        .iter()
        .map(|r| (r.key.clone(), r.value.clone(), r.headers.len()))
        .collect();
    assert_eq!(records, expected);
    broker.assert_healthy();
}

/// A batch already in the topic's codec is stored as sent (but for the broker's base offset
/// and leader epoch); `uncompressed` stores a compressed batch without codec.
#[test]
fn a_batch_in_the_topic_codec_is_stored_byte_for_byte() {
    let broker = common::start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("same", 1, &[("compression.type", "lz4")]);
    admin.create_topic_ok("plain", 1, &[("compression.type", "uncompressed")]);
    let values: Vec<Vec<u8>> = (0..50).map(|i| format!("value {i} ").repeat(10).into_bytes()).collect();
    let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let batch = record_batch(&values, BatchProducer::NONE, Codec::Lz4, NOW_MS);
    let mut wire = broker.wire();
    assert_eq!(wire.produce("same", 0, batch.clone(), 1).unwrap().error_code, 0);
    let stored = stored_batches(&broker, "same");
    assert_eq!(stored.len(), 1);
    // Base offset (0..8) and partition leader epoch (12..16) belong to the broker.
    assert_eq!(stored[0][8..12], batch[8..12]);
    assert_eq!(stored[0][16..], batch[16..], "the producer's bytes");
    assert_eq!(wire.produce("plain", 0, batch.clone(), 1).unwrap().error_code, 0);
    let stored = stored_batches(&broker, "plain");
    assert_eq!(codec(&stored[0]), Compression::None);
    let fields = |batch: &[u8]| -> Vec<_> {
        strom_record::records::decode_records(batch)
            .unwrap()
            .into_iter()
            .map(|r| (r.offset, r.timestamp, r.key, r.value))
            .collect()
    };
    assert!(fields(&stored[0]) == fields(&batch), "the same records, uncompressed");
}

/// KIP-390: the codec's level is honoured, as a topic config and as a broker default.
#[test]
fn compression_levels_change_the_stored_size() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("compression.type", "zstd")
        .set("compression.zstd.level", "19")
        .start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("zstd-1", 1, &[("compression.zstd.level", "1")]);
    admin.create_topic_ok("zstd-broker-19", 1, &[]);
    let text: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("{} ", (i * 7919) % 1000).into_bytes())
        .collect();
    let values: Vec<&[u8]> = text.chunks(1000).collect();
    let batch = record_batch(&values, BatchProducer::NONE, Codec::None, NOW_MS);
    let mut wire = broker.wire();
    let mut sizes = BTreeMap::new();
    for topic in ["zstd-1", "zstd-broker-19"] {
        assert_eq!(wire.produce(topic, 0, batch.clone(), 1).unwrap().error_code, 0);
        let stored = stored_batches(&broker, topic);
        assert_eq!(codec(&stored[0]), Compression::Zstd, "{topic}");
        sizes.insert(topic, stored[0].len());
    }
    assert!(
        sizes["zstd-broker-19"] < sizes["zstd-1"],
        "level 19 should compress better than level 1: {sizes:?}"
    );
}

fn describe(broker: &Broker, topic: &str) -> BTreeMap<String, (String, i8, String)> {
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = StrBytes::from_string(topic.to_string());
    resource.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    request.include_documentation = true;
    let response = broker.wire().call(&request, 4).expect("DescribeConfigs");
    response.results[0]
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            let doc = c.documentation.as_ref().map(|d| d.to_string()).unwrap_or_default();
            (c.name.to_string(), (value, c.config_source, doc))
        })
        .collect()
}

/// compression.type and its levels in CreateTopics, DescribeConfigs (default `producer`,
/// sources, documentation), IncrementalAlterConfigs (a bad codec or level is INVALID_CONFIG).
#[test]
fn compression_configs_are_described_altered_and_checked() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("compression.gzip.level", "4")
        .start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("configured", 1, &[]);
    let configs = describe(&broker, "configured");
    let (value, source, doc) = &configs["compression.type"];
    assert_eq!((value.as_str(), *source), ("producer", 5), "default");
    assert!(doc.contains("producer"), "{doc}");
    assert_eq!(configs["compression.gzip.level"].0, "4");
    assert_eq!(configs["compression.gzip.level"].1, 4, "static broker config");
    assert_eq!(configs["compression.lz4.level"].0, "9");
    assert_eq!(configs["compression.zstd.level"].0, "3");
    let alter = |name: &str, value: &str| {
        let mut config = AlterableConfig::default();
        config.name = StrBytes::from_string(name.to_string());
        config.value = Some(StrBytes::from_string(value.to_string()));
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = RESOURCE_TOPIC;
        resource.resource_name = StrBytes::from_static_str("configured");
        resource.configs = vec![config];
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        broker
            .wire()
            .call(&request, 1)
            .expect("IncrementalAlterConfigs")
            .responses[0]
            .error_code
    };
    assert_eq!(alter("compression.type", "snappy"), 0);
    assert_eq!(alter("compression.type", "brotli"), INVALID_CONFIG);
    assert_eq!(alter("compression.zstd.level", "23"), INVALID_CONFIG);
    assert_eq!(alter("compression.gzip.level", "-1"), 0);
    let configs = describe(&broker, "configured");
    assert_eq!(
        (configs["compression.type"].0.as_str(), configs["compression.type"].1),
        ("snappy", 1)
    );
    // The altered topic recompresses from then on.
    Producer::new(&broker.bootstrap(), &[("compression.codec", "lz4")]).send_all_ok("configured", &recs("x", 10));
    let batches = stored_batches(&broker, "configured");
    assert!(batches.iter().all(|b| codec(b) == Compression::Snappy));
    assert_eq!(consumed(&broker, "configured").len(), 10);
}
