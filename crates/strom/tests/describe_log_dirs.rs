//! DescribeLogDirs (key 35) over the wire: the one data directory, every hosted partition's
//! log size (what `kafka-log-dirs --describe` and the consoles show), and the volume's sizes
//! from v4.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{create_topic, produce_numbered, start};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_testkit::Broker;

fn topic(name: &str, partitions: &[i32]) -> DescribableLogDirTopic {
    DescribableLogDirTopic::default()
        .with_topic(TopicName(StrBytes::from_string(name.to_owned())))
        .with_partitions(partitions.to_vec())
}

fn describe(broker: &Broker, topics: Option<Vec<DescribableLogDirTopic>>, version: i16) -> DescribeLogDirsResponse {
    broker
        .wire()
        .call(&DescribeLogDirsRequest::default().with_topics(topics), version)
        .unwrap_or_else(|e| panic!("DescribeLogDirs v{version}: {e:#}"))
}

/// The one result's (topic, partition) -> size, after checking the fields every version shares.
fn sizes(broker: &Broker, response: &DescribeLogDirsResponse, version: i16) -> BTreeMap<(String, i32), i64> {
    assert_eq!(response.error_code, 0, "v{version}");
    assert_eq!(
        response.results.len(),
        1,
        "one data directory, v{version}: {response:?}"
    );
    let result = &response.results[0];
    assert_eq!(result.error_code, 0, "v{version}");
    let expected_dir = std::path::absolute(broker.data_dir()).unwrap();
    assert_eq!(Path::new(result.log_dir.as_str()), expected_dir, "v{version}");
    if version >= 4 {
        assert!(result.usable_bytes > 0, "v{version}: {result:?}");
        assert!(result.total_bytes >= result.usable_bytes, "v{version}: {result:?}");
    }
    let mut sizes = BTreeMap::new();
    for topic in &result.topics {
        for partition in &topic.partitions {
            assert_eq!(partition.offset_lag, 0, "v{version}");
            assert!(!partition.is_future_key, "v{version}");
            let previous = sizes.insert(
                (topic.name.0.to_string(), partition.partition_index),
                partition.partition_size,
            );
            assert!(previous.is_none(), "listed twice, v{version}: {result:?}");
        }
    }
    sizes
}

/// The bytes of the partition's segment files on disk.
fn segment_bytes(broker: &Broker, topic: &str, partition: i32) -> i64 {
    std::fs::read_dir(broker.data_dir().join(format!("{topic}-{partition}")))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .map(|path| std::fs::metadata(path).unwrap().len() as i64)
        .sum()
}

#[test]
fn describe_log_dirs_reports_every_hosted_partition_with_its_log_size() {
    let broker = start();
    create_topic(&broker, "sized", 2);
    create_topic(&broker, "empty", 1);
    produce_numbered(&broker, "sized", "first", 20);
    let written = segment_bytes(&broker, "sized", 0);
    assert!(written > 0);

    for version in 1..=4 {
        let all = sizes(&broker, &describe(&broker, None, version), version);
        assert_eq!(all.get(&("sized".to_owned(), 0)), Some(&written), "v{version}: {all:?}");
        assert_eq!(all.get(&("sized".to_owned(), 1)), Some(&0), "v{version}: {all:?}");
        assert_eq!(all.get(&("empty".to_owned(), 0)), Some(&0), "v{version}: {all:?}");

        // Named partitions: only those hosted here; unknown topics and partitions are absent.
        let named = Some(vec![
            topic("sized", &[0, 7]),
            topic("empty", &[3]),
            topic("no-such-topic", &[0]),
        ]);
        let named = sizes(&broker, &describe(&broker, named, version), version);
        assert_eq!(
            named,
            BTreeMap::from([(("sized".to_owned(), 0), written)]),
            "v{version}"
        );
    }

    // More writes: the size grows with the log.
    produce_numbered(&broker, "sized", "second", 20);
    let grown = segment_bytes(&broker, "sized", 0);
    assert!(grown > written, "{grown} <= {written}");
    let after = sizes(&broker, &describe(&broker, Some(vec![topic("sized", &[0, 1])]), 4), 4);
    assert_eq!(
        after,
        BTreeMap::from([(("sized".to_owned(), 0), grown), (("sized".to_owned(), 1), 0)])
    );
}
