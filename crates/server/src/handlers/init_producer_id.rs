//! InitProducerId (key 22) for idempotent producers. Transactional ids come with the
//! transaction coordinator.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::code;
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, request: &InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        response.error_code = code(ResponseError::TransactionalIdAuthorizationFailed);
        return response;
    }
    // KIP-360: a producer that lost track of its sequence numbers asks to bump its epoch,
    // keeping its id; once the epoch would overflow it gets a fresh id instead.
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 && request.producer_epoch < i16::MAX - 1 {
        response.producer_id = request.producer_id;
        response.producer_epoch = request.producer_epoch + 1;
        return response;
    }
    match broker.producer_ids.allocate() {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "could not persist producer id block");
            response.error_code = code(ResponseError::KafkaStorageError);
        }
    }
    response
}
