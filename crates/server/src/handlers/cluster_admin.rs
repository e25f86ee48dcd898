//! The way from admin handlers to the active controller, wherever it runs: asking it, its
//! refusals as Kafka's error codes, and waiting until this broker has followed a change so
//! the client's next request here sees it.

use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use strom_metadata::controller::ConfigOp;
use strom_metadata::{ConfigResource, ControllerError, MetadataImage};

use super::code;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};
use crate::cluster::Cluster;

/// How long an admin request waits for the active controller.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request that created a topic waits for this node's image to show it.
const IMAGE_WAIT: Duration = Duration::from_secs(5);

/// The Kafka error for a controller's refusal.
pub(crate) fn controller_error_code(error: &ControllerError) -> i16 {
    use ResponseError as E;
    code(match error {
        ControllerError::BrokerNotRegistered(_) => E::BrokerIdNotRegistered,
        ControllerError::StaleBrokerEpoch { .. } => E::StaleBrokerEpoch,
        ControllerError::DuplicateBrokerRegistration(_) => E::DuplicateBrokerRegistration,
        ControllerError::TopicAlreadyExists(_) => E::TopicAlreadyExists,
        ControllerError::InvalidTopic(..) => E::InvalidTopicException,
        ControllerError::UnknownTopicOrPartition(_) => E::UnknownTopicOrPartition,
        ControllerError::UnknownTopicId(_) => E::UnknownTopicId,
        ControllerError::InvalidPartitions(_) => E::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
        ControllerError::InvalidRequest(_) => E::InvalidRequest,
        ControllerError::NotLeader(_) => E::NotLeaderOrFollower,
        ControllerError::FencedLeaderEpoch { .. } => E::FencedLeaderEpoch,
        ControllerError::InvalidUpdateVersion { .. } => E::InvalidUpdateVersion,
        ControllerError::IneligibleReplica(_) => E::IneligibleReplica,
        ControllerError::ElectionNotNeeded => E::ElectionNotNeeded,
        ControllerError::PreferredLeaderNotAvailable => E::PreferredLeaderNotAvailable,
        ControllerError::EligibleLeadersNotAvailable => E::EligibleLeadersNotAvailable,
        ControllerError::NoReassignmentInProgress => E::NoReassignmentInProgress,
        ControllerError::ProducerIdsExhausted => E::UnknownServerError,
    })
}

/// A failure to get an answer from the controller, as the error clients retry on.
pub(super) fn unavailable(reason: &str) -> (i16, String) {
    (
        code(ResponseError::RequestTimedOut),
        format!("the controller did not answer: {reason}"),
    )
}

pub(super) async fn ask(cluster: &Cluster, request: ControllerRequest) -> Result<ControllerReply, (i16, String)> {
    match cluster.call(&request, CONTROLLER_TIMEOUT).await {
        Ok(ControllerReply::Unavailable(reason)) => Err(unavailable(&reason)),
        Ok(ControllerReply::Refused(e)) => Err((controller_error_code(&e), e.to_string())),
        Ok(reply) => Ok(reply),
        Err(reason) => Err(unavailable(&reason)),
    }
}

/// Waits until the image this broker has followed satisfies `done` (a change the controller
/// committed has arrived here and the broker's topics and configs show it), so the client's
/// next request here sees it.
pub(crate) async fn await_image(cluster: &Cluster, done: impl Fn(&MetadataImage) -> bool) {
    let deadline = Instant::now() + IMAGE_WAIT;
    let mut images = cluster.applied.subscribe();
    loop {
        if done(&images.borrow_and_update()) {
            return;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || tokio::time::timeout(remaining, images.changed()).await.is_err() {
            return;
        }
    }
}

/// Replaces a resource's configs (a topic's overrides, a broker's or the cluster-wide dynamic
/// configs) through the controller, and waits for this node's image to show them.
pub(super) async fn alter_configs(
    cluster: &Cluster,
    resource: ConfigResource,
    overrides: std::collections::BTreeMap<String, String>,
    validate_only: bool,
) -> Option<(i16, String)> {
    let ops: Vec<ConfigOp> = overrides
        .iter()
        .map(|(name, value)| ConfigOp {
            name: name.clone(),
            value: Some(value.clone()),
        })
        .collect();
    let request = ControllerRequest::AlterConfigs {
        resource: resource.clone(),
        ops,
        replace: true,
        validate_only,
    };
    match ask(cluster, request).await {
        Ok(ControllerReply::Done) => {
            if !validate_only {
                await_image(cluster, |image| {
                    image.configs(&resource).cloned().unwrap_or_default() == overrides
                })
                .await;
            }
            None
        }
        Ok(other) => Some(unavailable(&format!("unexpected answer {other:?}"))),
        Err(failure) => Some(failure),
    }
}
