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
                let mut coordinator = Coordinator::default();
                coordinator.key = key.clone();
                match find(broker, request.key_type, key) {
                    Ok((node_id, host, port)) => {
                        coordinator.node_id = node_id;
                        coordinator.host = host;
                        coordinator.port = port;
                    }
                    Err(error) => {
                        coordinator.node_id = BrokerId(-1);
                        coordinator.port = -1;
                        coordinator.error_code = code(error);
                        coordinator.error_message = Some(str_bytes(&error.to_string()));
                    }
                }
                coordinator
            })
            .collect();
        return response;
    }
    match find(broker, request.key_type, &request.key) {
        Ok((node_id, host, port)) => {
            response.node_id = node_id;
            response.host = host;
            response.port = port;
        }
        Err(error) => {
            response.node_id = BrokerId(-1);
            response.port = -1;
            response.error_code = code(error);
            if version >= 1 {
                response.error_message = Some(str_bytes(&error.to_string()));
            }
        }
    }
    response
}

fn find(broker: &Broker, key_type: i8, key: &StrBytes) -> Result<(BrokerId, StrBytes, i32), ResponseError> {
    match key_type {
        KEY_TYPE_GROUP if key.is_empty() => Err(ResponseError::InvalidGroupId),
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => Ok((
            BrokerId(broker.node_id()),
            str_bytes(&broker.config.advertised_host),
            i32::from(broker.config.advertised_port),
        )),
        _ => Err(ResponseError::InvalidRequest),
    }
}
