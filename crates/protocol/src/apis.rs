//! The single table of APIs Strom implements, and the versions of each it implements correctly.
//!
//! ApiVersions answers, request admission and the server's dispatch all derive from [`SUPPORTED_APIS`].
//! A version is listed only when every field it adds is honoured, so the ranges are often
//! narrower than what the `kafka-protocol` crate can decode.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn api(key: ApiKey, min_version: i16, max_version: i16) -> SupportedApi {
    SupportedApi {
        key,
        min_version,
        max_version,
    }
}

/// Why each ceiling is where it is:
/// - Produce 12 and Fetch 12: later versions address topics by id only.
/// - ListOffsets 8: v9+ adds tiered-storage offset specs Strom does not have yet.
/// - Metadata 12: v13 adds a top-level error code for KIP-1102 rebootstrap we do not emit.
/// - InitProducerId 4: v5 adds two-phase commit (KIP-939). EndTxn 5, TxnOffsetCommit 5 and
///   Produce 12 are transactions v2 (KIP-890 part 2); clients use them when ApiVersions
///   finalizes `transaction.version` 2. AddPartitionsToTxn 3: v4+ is the brokers' batched
///   verification form.
/// - DescribeCluster 1: v2 adds endpoint types for controllers.
/// - DescribeQuorum 2: every version Kafka 4.4 has (v2 adds the voters' listeners, KIP-853).
/// - DescribeLogDirs 1-4: v0 is gone since Kafka 4.0; v5 adds KIP-1066's cordoned flag, which
///   `kafka-protocol` 0.18 does not have (and Strom cannot cordon a log directory).
///   AlterReplicaLogDirs 1-2: every version Kafka 4.4 has.
/// - AlterPartitionReassignments 0: v1 adds KIP-860's `allow_replication_factor_change`.
/// - FindCoordinator 5: v6 adds share groups.
/// - OffsetCommit 9 and OffsetFetch 9: v10 addresses topics by id.
/// - DescribeGroups 5: v6 answers unknown groups with GROUP_ID_NOT_FOUND and a message.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    api(ApiKey::Produce, 3, 12),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 5),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DescribeQuorum, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::AlterReplicaLogDirs, 1, 2),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::AlterPartitionReassignments, 0, 0),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    api(ApiKey::AddRaftVoter, 0, 0),
    api(ApiKey::RemoveRaftVoter, 0, 0),
    api(ApiKey::FindCoordinator, 0, 5),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 2),
    // A transaction coordinator ending a transaction in a partition led elsewhere, and an
    // admin aborting a hanging transaction whose producer is gone (KIP-664's
    // `kafka-transactions abort`). Once ACLs exist it needs CLUSTER_ACTION, as in Kafka.
    api(ApiKey::WriteTxnMarkers, 1, 1),
];

/// Requests only brokers send each other, answered but not advertised: a client that picked
/// its version from ApiVersions never sends these (Kafka advertises them, and some clients
/// would then send AddPartitionsToTxn in the brokers' form).
/// - AddPartitionsToTxn 4-5: a partition leader or group coordinator checking a transactional
///   write with the transaction coordinator (KIP-890).
pub const BROKER_ONLY_APIS: &[SupportedApi] = &[api(ApiKey::AddPartitionsToTxn, 4, 5)];

/// The advertised range for an API key, if Strom implements it for clients.
pub fn supported(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|api| api.key == key)
}

/// Whether `version` of `key` is one Strom answers (clients' or brokers').
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED_APIS
        .iter()
        .chain(BROKER_ONLY_APIS)
        .any(|api| api.key == key && (api.min_version..=api.max_version).contains(&version))
}

/// The ApiVersions entries for every supported API.
pub fn api_version_entries() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|api| {
            let mut entry = ApiVersion::default();
            entry.api_key = api.key as i16;
            entry.min_version = api.min_version;
            entry.max_version = api.max_version;
            entry
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised range must be one the codec crate can actually decode and encode.
    #[test]
    fn table_is_within_codec_ranges() {
        for api in SUPPORTED_APIS.iter().chain(BROKER_ONLY_APIS) {
            let codec = api.key.valid_versions();
            assert!(api.min_version <= api.max_version, "{:?}", api.key);
            assert!(
                codec.min <= api.min_version && api.max_version <= codec.max,
                "{:?} {codec}",
                api.key
            );
        }
        let apiversions = kafka_protocol::messages::ApiVersionsRequest::VERSIONS;
        assert_eq!(supported(ApiKey::ApiVersions).unwrap().max_version, apiversions.max);
    }

    #[test]
    fn broker_only_versions_are_answered_but_not_advertised() {
        assert!(is_supported(ApiKey::AddPartitionsToTxn, 4));
        assert!(is_supported(ApiKey::AddPartitionsToTxn, 3));
        assert_eq!(supported(ApiKey::AddPartitionsToTxn).unwrap().max_version, 3);
        assert!(!is_supported(ApiKey::AddPartitionsToTxn, 6));
    }

    #[test]
    fn keys_are_unique() {
        for (i, a) in SUPPORTED_APIS.iter().enumerate() {
            assert!(
                SUPPORTED_APIS[i + 1..].iter().all(|b| b.key != a.key),
                "{:?} twice",
                a.key
            );
        }
    }
}
