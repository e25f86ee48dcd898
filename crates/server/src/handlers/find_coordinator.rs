//! FindCoordinator (key 10). A group's coordinator is the leader of its `__consumer_offsets` partition, and a transactional id's the leader of
//! its `__transaction_state` partition (each topic is created through the controller on first
//! use). A request that finds no leader waits a little for one (the topic being created, a
//! leader being elected) before answering COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{code, str_bytes};
use crate::broker::Broker;

/// Coordinator key types: consumer groups and transactional ids (share groups, 2, are not
/// supported).
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub(super) async fn handle(broker: &Broker, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let keys: Vec<&StrBytes> = match version {
        0..=3 => vec![&request.key],
        _ => request.coordinator_keys.iter().collect(),
    };
    {
        let cluster = &broker.cluster;
        let located = |image: &strom_metadata::MetadataImage| {
            keys.iter()
                .all(|key| !matches!(locate(image, request.key_type, key), Some(Err(_))))
        };
        if !located(&cluster.image()) {
            ensure_topic(broker, request.key_type);
            crate::handlers::cluster_admin::await_image(cluster, located).await;
        }
    }
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let answer = answer(broker, request.key_type, key);
                let mut coordinator = Coordinator::default();
                coordinator.key = key.clone();
                coordinator.node_id = answer.node_id;
                coordinator.host = answer.host;
                coordinator.port = answer.port;
                coordinator.error_code = answer.error_code;
                coordinator.error_message = answer.error_message;
                coordinator
            })
            .collect();
        return response;
    }
    let answer = answer(broker, request.key_type, &request.key);
    response.node_id = answer.node_id;
    response.host = answer.host;
    response.port = answer.port;
    response.error_code = answer.error_code;
    if version >= 1 {
        response.error_message = answer.error_message;
    }
    response
}

/// One key's answer, in the fields both response forms share.
struct Answer {
    node_id: BrokerId,
    host: StrBytes,
    port: i32,
    error_code: i16,
    error_message: Option<StrBytes>,
}

fn answer(broker: &Broker, key_type: i8, key: &StrBytes) -> Answer {
    match find(broker, key_type, key) {
        Ok((node_id, host, port)) => Answer {
            node_id,
            host,
            port,
            error_code: 0,
            error_message: None,
        },
        Err(error) => Answer {
            node_id: BrokerId(-1),
            host: StrBytes::default(),
            port: -1,
            error_code: code(error),
            error_message: Some(str_bytes(&error.to_string())),
        },
    }
}

fn find(broker: &Broker, key_type: i8, key: &StrBytes) -> Result<(BrokerId, StrBytes, i32), ResponseError> {
    match key_type {
        KEY_TYPE_GROUP if key.is_empty() => Err(ResponseError::InvalidGroupId),
        // The coordinator is the leader of the key's partition of the coordinator's topic
        // (created through the controller on first use).
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => {
            if !ensure_topic(broker, key_type) {
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            locate(&broker.cluster.image(), key_type, key).unwrap_or(Err(ResponseError::InvalidRequest))
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// Whether the coordinator's topic exists (asking the controller for it if not).
fn ensure_topic(broker: &Broker, key_type: i8) -> bool {
    match key_type {
        KEY_TYPE_GROUP => crate::groups::ensure_offsets_topic(&broker.groups),
        _ => crate::txns::ensure_state_topic(&broker.txns),
    }
}

/// The coordinator of `key` in `image`: `None` for a key type without one, an error while its
/// topic or partition leader is missing.
fn locate(
    image: &strom_metadata::MetadataImage,
    key_type: i8,
    key: &StrBytes,
) -> Option<Result<(BrokerId, StrBytes, i32), ResponseError>> {
    let (topic, partition_for): (&str, fn(&str, i32) -> i32) = match key_type {
        KEY_TYPE_GROUP if key.is_empty() => return None,
        KEY_TYPE_GROUP => (crate::groups::OFFSETS_TOPIC, strom_group::partition_for),
        KEY_TYPE_TRANSACTION => (crate::txns::TXN_STATE_TOPIC, strom_txn::partition_for),
        _ => return None,
    };
    let found = || {
        let leader = image
            .topic_by_name(topic)
            .and_then(|t| {
                let partition = partition_for(key, t.partitions.len() as i32);
                t.partitions.get(&partition).map(|p| p.leader)
            })
            .filter(|leader| *leader >= 0)?;
        let endpoint = image.broker(leader)?.endpoints.first()?;
        Some((BrokerId(leader), str_bytes(&endpoint.host), i32::from(endpoint.port)))
    };
    Some(found().ok_or(ResponseError::CoordinatorNotAvailable))
}
