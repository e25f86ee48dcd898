//! DescribeLogDirs (key 35): the broker's log directories (`log.dirs`) and the size of every
//! partition log in each, as `kafka-log-dirs --describe`, AKHQ, Kafka UI and kafka-python's
//! `describe_log_dirs` read them: one result per directory, in `log.dirs` order.
//!
//! As in Kafka: null `topics` asks for every partition hosted here; otherwise only the named
//! partitions that are hosted here are listed, and unknown ones are simply absent (no error).
//! A partition this node knows from the cluster's metadata but holds no log for (a replica
//! elsewhere) is in no directory, so it is skipped. Internal topics are included.
//! `offset_lag` is 0: Kafka reports a current log's distance below its high watermark, which a
//! log never has, and Strom has no future (moving) logs: a move completes before its answer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;

/// Kafka's value for a volume size it could not read (`UNKNOWN_VOLUME_BYTES`).
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub(super) fn handle(broker: &Broker, request: DescribeLogDirsRequest, version: i16) -> DescribeLogDirsResponse {
    // None: every partition; Some: the named topics, each with the partitions asked for.
    let wanted: Option<BTreeMap<TopicName, BTreeSet<i32>>> = request.topics.map(|topics| {
        let mut wanted: BTreeMap<TopicName, BTreeSet<i32>> = BTreeMap::new();
        for topic in topics {
            wanted.entry(topic.topic).or_default().extend(topic.partitions);
        }
        wanted
    });

    // Per log directory, per topic (in name order): the partitions whose log is there.
    let dirs = broker.topics.log_dirs.dirs();
    let mut placed: Vec<Vec<DescribeLogDirsTopic>> = vec![Vec::new(); dirs.len()];
    let mut listed = broker.topics.list();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    for topic in listed {
        let name = TopicName(str_bytes(&topic.name));
        let asked = match &wanted {
            None => None,
            Some(wanted) => match wanted.get(&name) {
                None => continue,
                Some(partitions) => Some(partitions),
            },
        };
        let mut by_dir: Vec<Vec<DescribeLogDirsPartition>> = vec![Vec::new(); dirs.len()];
        for partition in topic.partitions() {
            if asked.is_some_and(|asked| !asked.contains(&partition.index)) {
                continue;
            }
            let (size, dir) = match partition.lock().as_ref() {
                // Not hosted here: a replica on another node.
                None => continue,
                Some(log) => (log.size_bytes(), log.dir().parent().map(Path::to_path_buf)),
            };
            let Some(slot) = dir.and_then(|dir| dirs.iter().position(|d| *d == dir)) else {
                continue;
            };
            let mut entry = DescribeLogDirsPartition::default();
            entry.partition_index = partition.index;
            entry.partition_size = i64::try_from(size).unwrap_or(i64::MAX);
            entry.offset_lag = 0;
            entry.is_future_key = false;
            by_dir[slot].push(entry);
        }
        // Kafka groups a directory's logs by topic: a topic with none of its logs there is absent.
        for (slot, partitions) in by_dir.into_iter().enumerate() {
            if !partitions.is_empty() {
                let mut entry = DescribeLogDirsTopic::default();
                entry.name = name.clone();
                entry.partitions = partitions;
                placed[slot].push(entry);
            }
        }
    }

    let mut response = DescribeLogDirsResponse::default();
    response.error_code = 0;
    for (dir, topics) in dirs.iter().zip(placed) {
        let mut result = DescribeLogDirsResult::default();
        result.error_code = 0;
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        result.log_dir = str_bytes(&absolute.to_string_lossy());
        result.topics = topics;
        if version >= 4 {
            let (total, usable) = volume_bytes(&absolute);
            result.total_bytes = total;
            result.usable_bytes = usable;
        }
        response.results.push(result);
    }
    response
}

/// The total and usable (available to an unprivileged user) bytes of the filesystem holding
/// `dir`, as Java's `FileStore.getTotalSpace`/`getUsableSpace` report them for Kafka; -1 each
/// when the filesystem cannot be asked.
fn volume_bytes(dir: &Path) -> (i64, i64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(stat) => {
            let fragment = u128::from(stat.fragment_size());
            let bytes = |blocks: u64| i64::try_from(u128::from(blocks) * fragment).unwrap_or(i64::MAX);
            (bytes(stat.blocks()), bytes(stat.blocks_available()))
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "statvfs of the data directory failed");
            (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES)
        }
    }
}
