//! Several log directories (`log.dirs`, Kafka's JBOD): new partition logs are spread over them,
//! DescribeLogDirs reports each directory with the logs it holds, AlterReplicaLogDirs moves a
//! log to another directory without losing or reordering a record, and it stays there across
//! a restart. Bad requests get Kafka's error codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kafka_protocol::messages::alter_replica_log_dirs_request::{AlterReplicaLogDir, AlterReplicaLogDirTopic};
use kafka_protocol::messages::{AlterReplicaLogDirsRequest, DescribeLogDirsRequest};
use kafka_protocol::protocol::StrBytes;
use strom_testkit::wire::topic_name;
use strom_testkit::{Admin, Broker, Consumer, Producer, Rec};

const TOPIC: &str = "spread";
const PARTITIONS: i32 = 4;
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_DIR_NOT_FOUND: i16 = 57;
const REPLICA_NOT_AVAILABLE: i16 = 9;

/// Which log directory holds each partition of `TOPIC`, by DescribeLogDirs v4; also checks
/// that every configured directory is answered, in order.
fn placement(broker: &Broker) -> BTreeMap<i32, PathBuf> {
    let mut request = DescribeLogDirsRequest::default();
    request.topics = None; // every partition
    let response = broker.wire().call(&request, 4).expect("DescribeLogDirs");
    let answered: Vec<PathBuf> = response
        .results
        .iter()
        .map(|r| PathBuf::from(r.log_dir.as_str()))
        .collect();
    let configured: Vec<PathBuf> = broker
        .log_dirs()
        .iter()
        .map(|d| std::path::absolute(d).unwrap())
        .collect();
    assert_eq!(answered, configured, "one result per log directory");
    let mut placed = BTreeMap::new();
    for result in &response.results {
        assert_eq!(result.error_code, 0);
        assert!(result.total_bytes > 0 && result.usable_bytes > 0, "{result:?}");
        for topic in result.topics.iter().filter(|t| t.name.as_str() == TOPIC) {
            for partition in &topic.partitions {
                let dir = PathBuf::from(result.log_dir.as_str());
                assert!(
                    placed.insert(partition.partition_index, dir).is_none(),
                    "partition {} in two directories",
                    partition.partition_index
                );
            }
        }
    }
    placed
}

fn alter(broker: &Broker, dir: &Path, topic: &str, partitions: Vec<i32>) -> Vec<(i32, i16)> {
    let mut wanted = AlterReplicaLogDirTopic::default();
    wanted.name = topic_name(topic);
    wanted.partitions = partitions;
    let mut target = AlterReplicaLogDir::default();
    target.path = StrBytes::from_string(dir.display().to_string());
    target.topics = vec![wanted];
    let mut request = AlterReplicaLogDirsRequest::default();
    request.dirs = vec![target];
    let response = broker.wire().call(&request, 2).expect("AlterReplicaLogDirs");
    response
        .results
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.error_code)))
        .collect()
}

fn values(broker: &Broker) -> BTreeMap<i32, Vec<String>> {
    Consumer::read_values(&broker.bootstrap(), TOPIC, PARTITIONS, "read_uncommitted", READ_TIMEOUT)
}

fn produce(broker: &Broker, prefix: &str, per_partition: usize) {
    let recs: Vec<Rec> = (0..PARTITIONS)
        .flat_map(|p| (0..per_partition).map(move |i| Rec::value(format!("{prefix}-{p}-{i}")).partition(p)))
        .collect();
    Producer::new(&broker.bootstrap(), &[("acks", "all")]).send_all_ok(TOPIC, &recs);
}

#[test]
fn logs_spread_over_log_dirs_and_move_between_them_losing_nothing() {
    let mut broker = Broker::builder(strom_testkit::bin!()).extra_log_dirs(1).start();
    let dirs: Vec<PathBuf> = broker
        .log_dirs()
        .iter()
        .map(|d| std::path::absolute(d).unwrap())
        .collect();
    Admin::new(&broker.bootstrap()).create_topic_ok(TOPIC, PARTITIONS, &[]);
    produce(&broker, "before", 20);

    // Spread: each directory holds half of the new topic's logs.
    let placed = placement(&broker);
    assert_eq!(placed.len(), PARTITIONS as usize, "{placed:?}");
    for dir in &dirs {
        let here = placed.values().filter(|d| *d == dir).count();
        assert_eq!(
            here,
            PARTITIONS as usize / 2,
            "{} holds {here}: {placed:?}",
            dir.display()
        );
    }

    // Partition 0 moves to the other directory; its files go with it.
    let from = placed[&0].clone();
    let to = dirs.iter().find(|d| **d != from).unwrap().clone();
    assert_eq!(alter(&broker, &to, TOPIC, vec![0]), [(0, 0)]);
    assert_eq!(placement(&broker)[&0], to);
    assert!(!from.join(format!("{TOPIC}-0")).exists(), "left the old directory");
    assert!(to.join(format!("{TOPIC}-0")).is_dir(), "in the new directory");
    // Moving it where it is already is a no-op.
    assert_eq!(alter(&broker, &to, TOPIC, vec![0]), [(0, 0)]);

    // It keeps being written and read, in order, across a restart.
    produce(&broker, "after", 5);
    let expected: BTreeMap<i32, Vec<String>> = (0..PARTITIONS)
        .map(|p| {
            let before = (0..20).map(|i| format!("before-{p}-{i}"));
            let after = (0..5).map(|i| format!("after-{p}-{i}"));
            (p, before.chain(after).collect())
        })
        .collect();
    assert_eq!(values(&broker), expected);
    broker.restart();
    assert_eq!(placement(&broker)[&0], to, "still there after a restart");
    assert_eq!(values(&broker), expected);
    // Each directory's one high watermark checkpoint holds its logs' (written at the graceful
    // stop): every record committed, and no log keeps a file of its own for it.
    for (partition, dir) in placement(&broker) {
        let checkpointed = strom_storage::dir_checkpoint::HIGH_WATERMARKS
            .read(&dir)
            .expect("checkpoint");
        assert_eq!(
            checkpointed.get(&format!("{TOPIC}-{partition}")),
            Some(&25),
            "{checkpointed:?}"
        );
        assert!(!dir.join(format!("{TOPIC}-{partition}/high-watermark")).exists());
    }

    // Kafka's answers to bad requests: a path that is no log directory, a partition not here.
    let nowhere = dirs[0].parent().unwrap().join("not-a-log-dir");
    assert_eq!(alter(&broker, &nowhere, TOPIC, vec![1]), [(1, LOG_DIR_NOT_FOUND)]);
    assert_eq!(
        alter(&broker, &to, "no-such-topic", vec![0]),
        [(0, REPLICA_NOT_AVAILABLE)]
    );
    assert_eq!(
        alter(&broker, &to, TOPIC, vec![PARTITIONS]),
        [(PARTITIONS, REPLICA_NOT_AVAILABLE)]
    );
}
