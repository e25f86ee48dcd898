//! DeleteTopics (key 20), by name or (v6+) by id: through the active controller, answered
//! once this broker has followed the deletion.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::cluster_admin::{ask, await_image, controller_error_code, unavailable};
use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};

pub(super) async fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let cluster = &broker.cluster;
    let mut names: Vec<String> = request.topic_names.iter().map(|n| n.to_string()).collect();
    // v6 names topics in `topics`, by name or by id.
    let image = cluster.image();
    for topic in &request.topics {
        match &topic.name {
            Some(name) => names.push(name.to_string()),
            None => {
                if let Some(found) = image.topic(&topic.topic_id) {
                    names.push(found.name.clone());
                }
            }
        }
    }
    let mut response = DeleteTopicsResponse::default();
    let outcome = ask(cluster, ControllerRequest::DeleteTopics(names.clone())).await;
    response.responses = match outcome {
        Ok(ControllerReply::DeleteTopics(results)) => results
            .into_iter()
            .map(|(name, result)| {
                let mut out = DeletableTopicResult::default();
                out.name = Some(topic_name(&name));
                match result {
                    Ok(id) => {
                        if version >= 6 {
                            out.topic_id = id;
                        }
                    }
                    Err(e) => {
                        out.error_code = controller_error_code(&e);
                        if version >= 5 {
                            out.error_message = Some(str_bytes(&e.to_string()));
                        }
                    }
                }
                out
            })
            .collect(),
        other => {
            let (error, _) = match other {
                Err(failure) => failure,
                Ok(reply) => unavailable(&format!("unexpected answer {reply:?}")),
            };
            names
                .iter()
                .map(|name| {
                    let mut out = DeletableTopicResult::default();
                    out.name = Some(topic_name(name));
                    out.error_code = error;
                    out
                })
                .collect()
        }
    };
    await_image(cluster, |image| names.iter().all(|n| image.topic_by_name(n).is_none())).await;
    response
}
