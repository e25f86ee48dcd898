//! FindCoordinator (key 10). A single broker is the coordinator of every group and
//! transactional id, so the answer is always this broker. It is advertised before the group
//! APIs because librdkafka only uses LZ4 (and other KIP-era features) with brokers that
//! advertise it; transactional ids then meet InitProducerId's refusal.

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

pub(super) fn handle(broker: &Broker, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
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
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => match &broker.cluster {
            None => Ok((
                BrokerId(broker.node_id()),
                str_bytes(&broker.config.advertised_host),
                i32::from(broker.config.advertised_port),
            )),
            // Until coordinators move with the leadership of their partitions, one broker
            // coordinates every group and transactional id: the lowest-numbered live one.
            Some(cluster) => {
                let image = cluster.image();
                let coordinator = image
                    .brokers()
                    .filter(|b| !b.fenced && !b.in_controlled_shutdown)
                    .find_map(|b| b.endpoints.first().map(|e| (b.id, e.host.clone(), e.port)));
                match coordinator {
                    Some((id, host, port)) => Ok((BrokerId(id), str_bytes(&host), i32::from(port))),
                    None => Err(ResponseError::CoordinatorNotAvailable),
                }
            }
        },
        _ => Err(ResponseError::InvalidRequest),
    }
}
