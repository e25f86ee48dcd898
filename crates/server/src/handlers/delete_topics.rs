//! DeleteTopics (key 20).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub(super) fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let mut response = DeleteTopicsResponse::default();
    let names: Vec<_> = if version >= 6 {
        request.topics.into_iter().filter_map(|t| t.name).collect()
    } else {
        request.topic_names
    };
    for name in names {
        let mut result = DeletableTopicResult::default();
        if let Some(topic) = broker.topics.get(&name).filter(|_| version >= 6) {
            result.topic_id = topic.id;
        }
        match broker.topics.delete(&name) {
            Ok(()) => crate::groups::forget_topic(broker, &name),
            Err(e) => {
                result.error_code = e.code();
                if version >= 5 {
                    result.error_message = Some(str_bytes(&e.to_string()));
                }
            }
        }
        result.name = Some(name);
        response.responses.push(result);
    }
    response
}
