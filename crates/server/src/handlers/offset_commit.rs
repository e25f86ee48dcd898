//! OffsetCommit (key 8): store consumed positions in `__consumer_offsets`. An offset is
//! acknowledged once it is in the log (with the broker's flush policy, as for produce); in a
//! cluster, once it is on every in-sync replica of the group's partition, as an acks=all
//! produce, so a new coordinator after a failover has it.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use strom_group::{MemberRef, OffsetToCommit};

use super::{commit_error_code, offset_to_commit};
use crate::broker::Broker;
use crate::groups::{self, CommitError};

pub(super) async fn handle(broker: &Broker, request: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let committer = MemberRef {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
    };
    let offsets: Vec<OffsetToCommit> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                let leader_epoch = if version >= 6 {
                    partition.committed_leader_epoch
                } else {
                    -1
                };
                offset_to_commit(
                    &topic.name,
                    partition.partition_index,
                    partition.committed_offset,
                    leader_epoch,
                    partition.committed_metadata.as_ref(),
                )
            })
        })
        .collect();
    let mut results = match groups::commit(&broker.groups, &committer, &offsets) {
        Ok(results) => results,
        Err(error) => vec![Err(CommitError::Group(error)); offsets.len()],
    };
    if results.iter().any(Result::is_ok) {
        // Not answered as done until it would survive a failover: otherwise the client
        // commits again (with its new coordinator, if leadership moved).
        if let Err(error) = groups::until_commits_replicated(&broker.groups, &committer.group_id).await {
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(error);
            }
        }
    }
    let mut results = results.into_iter();
    let mut response = OffsetCommitResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut out = OffsetCommitResponseTopic::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut answer = OffsetCommitResponsePartition::default();
                    answer.partition_index = partition.partition_index;
                    answer.error_code = results.next().and_then(Result::err).map_or(0, commit_error_code);
                    answer
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}
