//! AlterReplicaLogDirs (key 34): moves replicas hosted here into another of this broker's log
//! directories (`log.dirs`), as `kafka-reassign-partitions` does with `log_dirs` in its plan.
//! Each move is finished before the answer (Kafka copies into a "future" log in the background
//! and answers at once): on one filesystem it is a rename; across filesystems a copy, during
//! which requests for that partition are answered as for a partition not hosted here.
//!
//! Per partition: LOG_DIR_NOT_FOUND for a path that is not one of the log directories,
//! REPLICA_NOT_AVAILABLE for a partition without a replica here, KAFKA_STORAGE_ERROR if the
//! move fails (the log then stays where it was).

use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};
use kafka_protocol::ResponseError;

use super::code;
use crate::broker::{now_ms, Broker};

pub(super) async fn handle(broker: &Arc<Broker>, request: AlterReplicaLogDirsRequest) -> AlterReplicaLogDirsResponse {
    let mut response = AlterReplicaLogDirsResponse::default();
    for dir in request.dirs {
        let path = PathBuf::from(dir.path.as_str());
        let target = broker.topics.log_dirs.find_dir(&path).map(PathBuf::from);
        for topic in dir.topics {
            let mut result = AlterReplicaLogDirTopicResult::default();
            result.topic_name = topic.name.clone();
            for index in topic.partitions {
                let error = match &target {
                    None => Some(ResponseError::LogDirNotFound),
                    Some(target) => move_one(broker, topic.name.as_str(), index, target.clone()).await,
                };
                let mut partition = AlterReplicaLogDirPartitionResult::default();
                partition.partition_index = index;
                partition.error_code = error.map_or(0, code);
                result.partitions.push(partition);
            }
            response.results.push(result);
        }
    }
    response
}

async fn move_one(broker: &Arc<Broker>, topic: &str, index: i32, target: PathBuf) -> Option<ResponseError> {
    let Some(partition) = broker.topics.partition(topic, index) else {
        return Some(ResponseError::ReplicaNotAvailable);
    };
    if partition.lock().is_none() {
        return Some(ResponseError::ReplicaNotAvailable);
    }
    let moving = broker.clone();
    let outcome = tokio::task::spawn_blocking(move || moving.topics.move_log(&partition, &target, now_ms()))
        .await
        .expect("log move task panicked");
    match outcome {
        Ok(()) => None,
        Err(crate::topics::TopicError::Unknown(_)) => Some(ResponseError::ReplicaNotAvailable),
        Err(e) => {
            tracing::error!(topic, partition = index, error = %e, "moving a log between log directories failed");
            Some(ResponseError::KafkaStorageError)
        }
    }
}
