//! InitProducerId (key 22): a producer id and epoch for an idempotent producer, or, with a
//! transactional id, from the transaction coordinator (which fences the id's previous
//! producer and aborts its open transaction).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::code;
use super::transactions::{versioned_txn_error_code, INIT_PRODUCER_ID_FENCED_SINCE};
use crate::broker::Broker;
use crate::txns;

pub(super) async fn handle(broker: &Broker, request: &InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    // KIP-360 (v3+): a producer that is not new names its current id and epoch.
    let current =
        (version >= 3 && request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    if let Some(transactional_id) = &request.transactional_id {
        match txns::init_producer_id(&broker.txns, transactional_id, request.transaction_timeout_ms, current).await {
            Ok((producer_id, epoch)) => {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = epoch;
            }
            Err(error) => response.error_code = versioned_txn_error_code(error, version, INIT_PRODUCER_ID_FENCED_SINCE),
        }
        return response;
    }
    // KIP-360: a producer that lost track of its sequence numbers asks to bump its epoch,
    // keeping its id; once the epoch would overflow it gets a fresh id instead.
    if let Some((producer_id, epoch)) = current.filter(|(_, epoch)| *epoch >= 0 && *epoch < i16::MAX - 1) {
        response.producer_id = ProducerId(producer_id);
        response.producer_epoch = epoch + 1;
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
