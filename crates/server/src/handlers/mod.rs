//! One handler per Kafka API. Each takes the decoded request and the broker, and returns the
//! response body; errors become Kafka error codes here and nowhere else.
//!
//! The dispatch below matches on [`strom_protocol::apis::SUPPORTED_APIS`] and
//! [`strom_protocol::apis::BROKER_ONLY_APIS`]: the protocol crate only lets through versions
//! from those tables, and every key in them has an arm here.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_protocol::request::Request;

use crate::broker::Broker;
use crate::groups::CommitError;
use strom_group::GroupError;

mod admin_configs;
mod alter_replica_log_dirs;
mod api_versions;
mod authorized_operations;
mod cluster_admin;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_log_dirs;
mod describe_quorum;
mod describe_topic_partitions;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod partition_admin;
mod produce;
mod raft_voters;
mod sync_group;
mod transactions;

/// What a handler produced.
pub(crate) enum Reply {
    Response(ResponseKind),
    /// A fetch response whose record sets are placeholders for these file slices, in order.
    Fetch(kafka_protocol::messages::FetchResponse, Vec<strom_storage::ReadSlice>),
    /// Produce with acks=0: Kafka sends nothing back.
    None,
    /// A Produce whose appends are done and which waits for its replicas (acks=all); the
    /// connection may take its next Produce meanwhile.
    Replicating(Replicating),
}

/// A Produce waiting for its acks=all appends to be replicated.
pub(crate) struct Replicating(produce::Appended);

impl Replicating {
    /// Its reply, once replicated or failed (bounded by the request's timeout).
    pub(crate) async fn reply(self, broker: Arc<Broker>) -> Reply {
        match self.0.answer(&broker).await {
            Some(response) => Reply::Response(ResponseKind::Produce(response)),
            None => Reply::None,
        }
    }
}

pub(crate) async fn handle(broker: &Arc<Broker>, request: Request, peer: SocketAddr) -> Reply {
    let version = request.api_version;
    let client_id = request.client_id().to_string();
    let response = match request.body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(broker, &r, version)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(broker, r, version).await),
        RequestKind::Produce(r) => {
            let appended = produce::append(broker, r, version).await;
            if appended.is_replicating() {
                return Reply::Replicating(Replicating(appended));
            }
            match appended.answer(broker).await {
                Some(response) => ResponseKind::Produce(response),
                None => return Reply::None,
            }
        }
        RequestKind::Fetch(r) => {
            let (response, slices) = fetch::handle(broker, r, version).await;
            return Reply::Fetch(response, slices);
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(broker, r, version)),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics::handle(broker, r, version).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(delete_topics::handle(broker, r, version).await),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(create_partitions::handle(broker, r).await),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(admin_configs::describe(broker, r, version)),
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(admin_configs::alter(broker, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(admin_configs::incremental_alter(broker, r).await)
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(delete_records::handle(broker, r)),
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(describe_cluster::handle(broker, &r, version)),
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(broker, r))
        }
        RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(describe_log_dirs::handle(broker, r, version)),
        RequestKind::AlterReplicaLogDirs(r) => {
            ResponseKind::AlterReplicaLogDirs(alter_replica_log_dirs::handle(broker, r).await)
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(broker, r, version).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, &r, version).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, &r, version).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(transactions::add_partitions(broker, r, version).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(transactions::add_offsets(broker, &r, version).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(transactions::end(broker, &r, version).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(transactions::offset_commit(broker, r, version).await)
        }
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(transactions::write_markers(broker, r).await),
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(transactions::describe_producers(broker, r))
        }
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(transactions::describe(broker, r)),
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(transactions::list(broker, r, version)),
        RequestKind::AddRaftVoter(r) => ResponseKind::AddRaftVoter(raft_voters::add(broker, r).await),
        RequestKind::RemoveRaftVoter(r) => ResponseKind::RemoveRaftVoter(raft_voters::remove(broker, r).await),
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(partition_admin::elect_leaders(broker, r, version).await)
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(partition_admin::alter_reassignments(broker, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(partition_admin::list_reassignments(broker, r))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, r))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group::handle(broker, r, version, &client_id, peer).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(broker, r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(broker, &r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(broker, r, version)),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit::handle(broker, r, version).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch::handle(broker, r, version)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(offset_delete::handle(broker, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(broker, &r, version)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(describe_groups::handle(broker, r, version)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(delete_groups::handle(broker, r)),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            ResponseKind::ConsumerGroupHeartbeat(consumer_group_heartbeat::handle(broker, r, &client_id, peer))
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(broker, r, version))
        }
        other => unreachable!("request {other:?} passed the version table but has no handler"),
    };
    Reply::Response(response)
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

pub(crate) fn code(error: kafka_protocol::ResponseError) -> i16 {
    error.code()
}

/// The Kafka error for each of the group coordinator's refusals.
pub(crate) fn group_error_code(error: GroupError) -> i16 {
    use kafka_protocol::ResponseError as E;
    code(match error {
        GroupError::InvalidGroupId => E::InvalidGroupId,
        GroupError::InvalidSessionTimeout => E::InvalidSessionTimeout,
        GroupError::InconsistentGroupProtocol => E::InconsistentGroupProtocol,
        GroupError::UnknownMemberId => E::UnknownMemberId,
        GroupError::MemberIdRequired => E::MemberIdRequired,
        GroupError::FencedInstanceId => E::FencedInstanceId,
        GroupError::IllegalGeneration => E::IllegalGeneration,
        GroupError::RebalanceInProgress => E::RebalanceInProgress,
        GroupError::GroupMaxSizeReached => E::GroupMaxSizeReached,
        GroupError::CoordinatorNotAvailable => E::CoordinatorNotAvailable,
        GroupError::GroupIdNotFound => E::GroupIdNotFound,
        GroupError::NonEmptyGroup => E::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => E::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge => E::OffsetMetadataTooLarge,
        GroupError::UnsupportedAssignor => E::UnsupportedAssignor,
        GroupError::UnreleasedInstanceId => E::UnreleasedInstanceId,
        GroupError::FencedMemberEpoch => E::FencedMemberEpoch,
        GroupError::StaleMemberEpoch => E::StaleMemberEpoch,
        GroupError::InvalidRegularExpression => E::InvalidRegularExpression,
        GroupError::InvalidRequest(_) => E::InvalidRequest,
        GroupError::NotCoordinator => E::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => E::CoordinatorLoadInProgress,
    })
}

/// One partition of an OffsetCommit or TxnOffsetCommit, as the group coordinator takes it;
/// `leader_epoch` is -1 for versions that do not carry one.
pub(crate) fn offset_to_commit(
    topic: &TopicName,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&StrBytes>,
) -> strom_group::OffsetToCommit {
    strom_group::OffsetToCommit {
        topic: topic.to_string(),
        partition,
        offset,
        leader_epoch,
        metadata: metadata.map(|metadata| metadata.to_string()).unwrap_or_default(),
    }
}

/// Offsets that could not be written to `__consumer_offsets` are reported as Kafka reports a
/// failed write to its offsets topic: the coordinator is not available, so clients retry.
pub(crate) fn commit_error_code(error: CommitError) -> i16 {
    match error {
        CommitError::Group(error) => group_error_code(error),
        CommitError::UnknownTopicOrPartition => code(kafka_protocol::ResponseError::UnknownTopicOrPartition),
        CommitError::Storage => code(kafka_protocol::ResponseError::CoordinatorNotAvailable),
        CommitError::ProducerFenced => code(kafka_protocol::ResponseError::ProducerFenced),
    }
}

#[cfg(test)]
mod tests {
    use strom_protocol::apis::{BROKER_ONLY_APIS, SUPPORTED_APIS};
    use strom_protocol::ApiKey;

    /// The dispatch must cover the table; this lists the keys the match handles, and fails when
    /// someone adds a key to the table without a handler.
    #[test]
    fn every_supported_api_has_a_handler() {
        let handled = [
            ApiKey::ApiVersions,
            ApiKey::Metadata,
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::ListOffsets,
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::CreatePartitions,
            ApiKey::DescribeConfigs,
            ApiKey::AlterConfigs,
            ApiKey::IncrementalAlterConfigs,
            ApiKey::DeleteRecords,
            ApiKey::DescribeCluster,
            ApiKey::DescribeQuorum,
            ApiKey::DescribeLogDirs,
            ApiKey::AlterReplicaLogDirs,
            ApiKey::FindCoordinator,
            ApiKey::InitProducerId,
            ApiKey::OffsetForLeaderEpoch,
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
            ApiKey::OffsetDelete,
            ApiKey::ListGroups,
            ApiKey::DescribeGroups,
            ApiKey::DeleteGroups,
            ApiKey::ConsumerGroupHeartbeat,
            ApiKey::ConsumerGroupDescribe,
            ApiKey::AddPartitionsToTxn,
            ApiKey::AddOffsetsToTxn,
            ApiKey::EndTxn,
            ApiKey::TxnOffsetCommit,
            ApiKey::DescribeTransactions,
            ApiKey::DescribeProducers,
            ApiKey::ListTransactions,
            ApiKey::ElectLeaders,
            ApiKey::AlterPartitionReassignments,
            ApiKey::ListPartitionReassignments,
            ApiKey::DescribeTopicPartitions,
            ApiKey::AddRaftVoter,
            ApiKey::RemoveRaftVoter,
            ApiKey::WriteTxnMarkers,
        ];
        for api in SUPPORTED_APIS.iter().chain(BROKER_ONLY_APIS) {
            assert!(handled.contains(&api.key), "{:?} has no handler", api.key);
        }
    }
}
