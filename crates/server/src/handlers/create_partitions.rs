//! CreatePartitions (key 37): grow a topic, optionally with a manual assignment of the new
//! partitions, which the controller checks as Kafka's does.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use strom_metadata::controller::CreatePartitions;

use super::cluster_admin::{ask, await_image, controller_error_code, unavailable};
use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};

pub(super) async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let cluster = &broker.cluster;
    let asks: Vec<CreatePartitions> = request
        .topics
        .iter()
        .map(|t| CreatePartitions {
            name: t.name.to_string(),
            count: t.count,
            assignments: t
                .assignments
                .as_ref()
                .map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect()),
        })
        .collect();
    let names: Vec<String> = asks.iter().map(|a| a.name.clone()).collect();
    let outcome = ask(
        cluster,
        ControllerRequest::CreatePartitions {
            requests: asks,
            validate_only: request.validate_only,
        },
    )
    .await;
    let mut response = CreatePartitionsResponse::default();
    response.results = match outcome {
        Ok(ControllerReply::CreatePartitions(results)) => results
            .into_iter()
            .map(|(name, result)| {
                let mut out = CreatePartitionsTopicResult::default();
                out.name = topic_name(&name);
                if let Err(e) = result {
                    out.error_code = controller_error_code(&e);
                    out.error_message = Some(str_bytes(&e.to_string()));
                }
                out
            })
            .collect(),
        other => {
            let (error, message) = match other {
                Err(failure) => failure,
                Ok(reply) => unavailable(&format!("unexpected answer {reply:?}")),
            };
            names
                .iter()
                .map(|name| {
                    let mut out = CreatePartitionsTopicResult::default();
                    out.name = topic_name(name);
                    out.error_code = error;
                    out.error_message = Some(str_bytes(&message));
                    out
                })
                .collect()
        }
    };
    let wanted: Vec<(String, i32)> = request.topics.iter().map(|t| (t.name.to_string(), t.count)).collect();
    if !request.validate_only {
        await_image(cluster, |image| {
            wanted.iter().all(|(n, count)| {
                image
                    .topic_by_name(n)
                    .is_none_or(|t| t.partitions.len() as i32 >= *count)
            })
        })
        .await;
    }
    response
}
