//! AddRaftVoter (key 80) and RemoveRaftVoter (key 81), KIP-853: changing the metadata quorum's
//! voters at run time. A new voter must already run as a member of the quorum (a broker-only
//! node is one, as a learner); it becomes a voter once it has caught up. The change goes to
//! the active controller, which makes it through openraft's joint consensus.

use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
};
use kafka_protocol::ResponseError;

use super::cluster_admin::ask;
use super::{code, str_bytes};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};

/// The error code and message of a voter change, or `None` on success.
async fn change(broker: &Broker, cluster_id: Option<&str>, request: ControllerRequest) -> Option<(i16, String)> {
    let cluster = &broker.cluster;
    if let Some(id) = cluster_id.filter(|id| !id.is_empty() && *id != cluster.cluster_id) {
        return Some((
            code(ResponseError::InconsistentClusterId),
            format!("this is cluster {}, not {id}", cluster.cluster_id),
        ));
    }
    match ask(cluster, request).await {
        Ok(ControllerReply::Done) => None,
        Ok(other) => Some((
            code(ResponseError::UnknownServerError),
            format!("unexpected answer {other:?}"),
        )),
        Err(failure) => Some(failure),
    }
}

pub(super) async fn add(broker: &Broker, request: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let mut response = AddRaftVoterResponse::default();
    let outcome = match request.listeners.first() {
        None => Some((
            code(ResponseError::InvalidRequest),
            "the new voter's listener is missing".to_string(),
        )),
        Some(listener) => {
            let addr = format!("{}:{}", listener.host, listener.port);
            let ask = ControllerRequest::AddVoter {
                id: request.voter_id.max(0) as u64,
                addr,
            };
            change(broker, request.cluster_id.as_deref(), ask).await
        }
    };
    if let Some((error, message)) = outcome {
        response.error_code = error;
        response.error_message = Some(str_bytes(&message));
    }
    response
}

pub(super) async fn remove(broker: &Broker, request: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let mut response = RemoveRaftVoterResponse::default();
    let ask = ControllerRequest::RemoveVoter {
        id: request.voter_id.max(0) as u64,
    };
    if let Some((error, message)) = change(broker, request.cluster_id.as_deref(), ask).await {
        response.error_code = error;
        response.error_message = Some(str_bytes(&message));
    }
    response
}
