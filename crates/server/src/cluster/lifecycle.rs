//! A broker's life in the cluster: it registers with the active controller, heartbeats every
//! `broker.heartbeat.interval.ms` (reporting how far its metadata has caught up; the controller
//! unfences it once it has seen its own registration), and on SIGTERM asks for a controlled
//! shutdown, waiting until the controller has moved its leaderships elsewhere.
//!
//! The epoch of a session closed by a controlled shutdown is kept in
//! `__cluster_metadata/clean-shutdown-epoch` and named at the next registration: only then does
//! the broker keep the KIP-966 eligibility of its replicas (an unclean stop may have lost
//! records it held unflushed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_metadata::controller::{BrokerHeartbeat, BrokerRegistrationRequest};
use strom_metadata::ControllerError;
use tokio::sync::watch;

use super::protocol::{ControllerReply, ControllerRequest};
use super::Cluster;

const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown-epoch";
/// How long a controlled shutdown waits for the controller to move leaderships away.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
const CONTROLLED_SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// What the broker knows of its own session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub epoch: i64,
    pub fenced: bool,
}

/// Reads and removes the epoch a controlled shutdown left (-1 if the last stop was not one).
pub(crate) fn take_clean_shutdown_epoch(dir: &Path) -> i64 {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let epoch = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(-1);
    let _ = std::fs::remove_file(&path);
    epoch
}

fn record_clean_shutdown(dir: &Path, epoch: i64) {
    let path: PathBuf = dir.join(CLEAN_SHUTDOWN_FILE);
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, epoch.to_string())
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not record the clean shutdown");
    }
}

/// Registers and heartbeats until `stop` turns true, then shuts down under the controller's
/// control. `session` tells the rest of the broker its epoch and whether it is fenced.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    registration: BrokerRegistrationRequest,
    session: watch::Sender<Option<Session>>,
    mut stop: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(cluster.config.broker_heartbeat_interval_ms as u64);
    let session_timeout = Duration::from_millis(cluster.config.broker_session_timeout_ms as u64);
    // A call lost in a cut network waits for TCP's retransmissions (seconds apart, doubling):
    // given up after a third of the session, the next attempt dials afresh, so a healed
    // network is noticed well before the controller's session timer ends.
    let call_timeout = (session_timeout / 3).max(interval);
    let id = registration.id;
    // Each trouble is said once (heartbeats run twice a second), and its end once.
    let mut trouble: Option<String> = None;
    let mut report = |now: Option<String>| {
        match (&trouble, &now) {
            (Some(before), Some(after)) if before == after => {}
            (_, Some(after)) => tracing::warn!(node_id = id, "{after}"),
            (Some(_), None) => tracing::info!(node_id = id, "the controller answers again"),
            (None, None) => {}
        }
        trouble = now;
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let current = *session.borrow();
        match current {
            None => {
                let request = ControllerRequest::Register {
                    request: registration.clone(),
                    metadata_addr: cluster.metadata_addr.clone(),
                };
                match cluster.call(&request, call_timeout).await {
                    Ok(ControllerReply::Registered { epoch }) => {
                        report(None);
                        tracing::info!(node_id = id, broker_epoch = epoch, "registered with the controller");
                        cluster.lease.revoke();
                        session.send_replace(Some(Session { epoch, fenced: true }));
                        continue;
                    }
                    Ok(ControllerReply::Refused(ControllerError::DuplicateBrokerRegistration(_))) => report(Some(
                        format!("node id {id} is in use by another live broker; this broker waits until that one's session ends"),
                    )),
                    Ok(other) => report(Some(format!("registration not accepted yet: {other:?}"))),
                    Err(e) => report(Some(format!("cannot reach the controller to register: {e}"))),
                }
            }
            Some(Session { epoch, .. }) => {
                // The offset of the image this broker's topics and coordinators have followed,
                // not merely the quorum's: only that tells the controller what it acts on.
                let request = ControllerRequest::Heartbeat(BrokerHeartbeat {
                    id,
                    epoch,
                    metadata_offset: cluster.applied.borrow().offset,
                    want_fence: false,
                    want_shutdown: false,
                });
                let sent = crate::clock::steady_ms();
                match cluster.call(&request, call_timeout).await {
                    Ok(ControllerReply::Heartbeat(reply)) => {
                        report(None);
                        if reply.is_fenced {
                            cluster.lease.revoke();
                        } else {
                            cluster.lease.renew(sent, session_timeout);
                        }
                        let next = Some(Session {
                            epoch,
                            fenced: reply.is_fenced,
                        });
                        if next != current {
                            tracing::info!(node_id = id, fenced = reply.is_fenced, "broker session changed");
                        }
                        session.send_replace(next);
                    }
                    Ok(ControllerReply::Refused(
                        ControllerError::StaleBrokerEpoch { .. } | ControllerError::BrokerNotRegistered(_),
                    )) => {
                        tracing::warn!(
                            node_id = id,
                            broker_epoch = epoch,
                            "the controller ended this session; registering again"
                        );
                        cluster.lease.revoke();
                        session.send_replace(None);
                        continue;
                    }
                    Ok(other) => report(Some(format!("heartbeat not accepted: {other:?}"))),
                    Err(e) => report(Some(format!("cannot reach the controller to heartbeat: {e}"))),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
    controlled_shutdown(&cluster, id, &session).await;
}

async fn controlled_shutdown(cluster: &Cluster, id: i32, session: &watch::Sender<Option<Session>>) {
    let Some(Session { epoch, .. }) = *session.borrow() else {
        return;
    };
    let started = Instant::now();
    let deadline = started + CONTROLLED_SHUTDOWN_TIMEOUT;
    while Instant::now() < deadline {
        let request = ControllerRequest::Heartbeat(BrokerHeartbeat {
            id,
            epoch,
            // Followed, not merely received: the coordinators must have let go of what moved
            // (their parked requests answered NOT_COORDINATOR) before the shutdown goes on.
            metadata_offset: cluster.applied.borrow().offset,
            want_fence: false,
            want_shutdown: true,
        });
        let remaining = deadline.saturating_duration_since(Instant::now());
        match cluster.call(&request, remaining).await {
            Ok(ControllerReply::Heartbeat(reply)) if reply.should_shut_down => {
                record_clean_shutdown(&cluster.dir, epoch);
                tracing::info!(
                    node_id = id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "controlled shutdown: the controller moved every leadership away"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(node_id = id, error = %e, "controlled shutdown: controller unreachable; stopping anyway");
                return;
            }
        }
        // Waiting for the controller's records to reach what this node has followed.
        let mut image = cluster.applied.subscribe();
        let _ = tokio::time::timeout(CONTROLLED_SHUTDOWN_POLL, image.changed()).await;
    }
    tracing::warn!(
        node_id = id,
        "controlled shutdown did not finish in time; stopping anyway"
    );
}
