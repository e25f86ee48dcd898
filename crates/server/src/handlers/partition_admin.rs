//! ElectLeaders (key 43), AlterPartitionReassignments (key 45) and ListPartitionReassignments
//! (key 46): leadership and replica placement, decided by the active controller (forwarded
//! from any broker) and answered from the metadata image.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;
use strom_metadata::controller::PartitionReassignment;
use strom_metadata::election::Election;

use super::cluster_admin::{ask, controller_error_code};
use super::{code, str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};

/// ElectLeaders' `election_type` (v1+; v0 is always preferred).
const ELECTION_PREFERRED: i8 = 0;
const ELECTION_UNCLEAN: i8 = 1;

type PartitionResults = Vec<((String, i32), Result<(), (i16, String)>)>;

pub(super) async fn elect_leaders(broker: &Broker, request: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    let election = match request.election_type {
        ELECTION_PREFERRED => Election::Preferred,
        ELECTION_UNCLEAN => Election::Unclean,
        _ => {
            response.error_code = code(ResponseError::InvalidRequest);
            return response;
        }
    };
    let wanted: Option<Vec<(String, i32)>> = request.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect()
    });
    let results: PartitionResults = {
        {
            let request = ControllerRequest::ElectLeaders {
                election,
                partitions: wanted.clone(),
            };
            match ask(&broker.cluster, request).await {
                Ok(ControllerReply::Elections(results)) => results
                    .into_iter()
                    .map(|(key, result)| (key, result.map_err(|e| (controller_error_code(&e), e.to_string()))))
                    .collect(),
                Ok(other) => unexpected(wanted, &other),
                Err(error) => match wanted {
                    Some(wanted) => wanted.into_iter().map(|key| (key, Err(error.clone()))).collect(),
                    None => {
                        if version >= 1 {
                            response.error_code = error.0;
                        }
                        Vec::new()
                    }
                },
            }
        }
    };
    for ((topic, partition), result) in results {
        let entry = match response
            .replica_election_results
            .iter_mut()
            .find(|t| t.topic.as_str() == topic)
        {
            Some(entry) => entry,
            None => {
                let mut entry = ReplicaElectionResult::default();
                entry.topic = topic_name(&topic);
                response.replica_election_results.push(entry);
                response.replica_election_results.last_mut().expect("just pushed")
            }
        };
        let mut answer = PartitionResult::default();
        answer.partition_id = partition;
        if let Err((error, message)) = result {
            answer.error_code = error;
            answer.error_message = Some(str_bytes(&message));
        }
        entry.partition_result.push(answer);
    }
    response
}

/// A reply of the wrong kind: the controller and this broker disagree on the protocol.
fn unexpected(wanted: Option<Vec<(String, i32)>>, reply: &ControllerReply) -> PartitionResults {
    tracing::error!(?reply, "unexpected answer from the controller");
    let error = (
        code(ResponseError::UnknownServerError),
        "unexpected controller answer".to_string(),
    );
    wanted
        .unwrap_or_default()
        .into_iter()
        .map(|key| (key, Err(error.clone())))
        .collect()
}

pub(super) async fn alter_reassignments(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default();
    let asks: Vec<PartitionReassignment> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| PartitionReassignment {
                topic: t.name.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    let results: PartitionResults = {
        {
            let keys: Vec<(String, i32)> = asks.iter().map(|a| (a.topic.clone(), a.partition)).collect();
            match ask(&broker.cluster, ControllerRequest::AlterReassignments(asks)).await {
                Ok(ControllerReply::Elections(results)) => results
                    .into_iter()
                    .map(|(key, result)| (key, result.map_err(|e| (controller_error_code(&e), e.to_string()))))
                    .collect(),
                Ok(other) => unexpected(Some(keys), &other),
                Err((error, message)) => {
                    response.error_code = error;
                    response.error_message = Some(str_bytes(&message));
                    return response;
                }
            }
        }
    };
    for ((topic, partition), result) in results {
        let entry = match response.responses.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(entry) => entry,
            None => {
                let mut entry = ReassignableTopicResponse::default();
                entry.name = topic_name(&topic);
                response.responses.push(entry);
                response.responses.last_mut().expect("just pushed")
            }
        };
        let mut answer = ReassignablePartitionResponse::default();
        answer.partition_index = partition;
        if let Err((error, message)) = result {
            answer.error_code = error;
            answer.error_message = Some(str_bytes(&message));
        }
        entry.partitions.push(answer);
    }
    response
}

pub(super) fn list_reassignments(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut response = ListPartitionReassignmentsResponse::default();
    let image = broker.cluster.image();
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    for (topic, partition, state) in strom_metadata::Controller::list_reassignments(&image) {
        if !wanted(&topic, partition) {
            continue;
        }
        let entry = match response.topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(entry) => entry,
            None => {
                let mut entry = OngoingTopicReassignment::default();
                entry.name = topic_name(&topic);
                response.topics.push(entry);
                response.topics.last_mut().expect("just pushed")
            }
        };
        let ids = |ids: &[i32]| ids.iter().map(|id| BrokerId(*id)).collect();
        let mut ongoing = OngoingPartitionReassignment::default();
        ongoing.partition_index = partition;
        ongoing.replicas = ids(&state.replicas);
        ongoing.adding_replicas = ids(&state.adding_replicas);
        ongoing.removing_replicas = ids(&state.removing_replicas);
        entry.partitions.push(ongoing);
    }
    response
}
