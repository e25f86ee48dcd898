//! CreatePartitions (key 37): grow a topic.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::{now_ms, Broker};

pub(super) fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        let assignments = topic.assignments.iter().flatten().map(|a| &a.broker_ids[..]);
        let outcome = super::create_topics::check_assignments(broker, assignments).and_then(|()| {
            broker
                .topics
                .add_partitions(&topic.name, topic.count, request.validate_only, now_ms())
        });
        if let Err(e) = outcome {
            result.error_code = e.code();
            result.error_message = Some(str_bytes(&e.to_string()));
        }
        result.name = topic.name;
        response.results.push(result);
    }
    response
}
