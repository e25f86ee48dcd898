//! CreatePartitions (key 37): grow a topic.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::topics::TopicError;

pub(super) fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        let single_broker = topic
            .assignments
            .iter()
            .flatten()
            .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == broker.node_id());
        let outcome = if single_broker {
            broker
                .topics
                .add_partitions(&topic.name, topic.count, request.validate_only, now_ms())
        } else {
            Err(TopicError::InvalidReplicationFactor(
                "every replica must be on this single broker".into(),
            ))
        };
        if let Err(e) = outcome {
            result.error_code = e.code();
            result.error_message = Some(str_bytes(&e.to_string()));
        }
        result.name = topic.name;
        response.results.push(result);
    }
    response
}
