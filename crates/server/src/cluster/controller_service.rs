//! The active controller: runs on whichever node leads the metadata quorum, answering brokers'
//! [`ControllerRequest`]s one at a time with `strom_metadata::Controller`'s plans, committed
//! through the quorum before the answer goes out.
//!
//! One operation at a time, each against an image holding everything committed before it:
//! before deciding, the controller confirms its leadership with a majority (a leader restarted
//! from its old vote, or cut off and replaced, fails that) and waits until its image has applied
//! everything committed; a plan's records are applied here before the next
//! operation starts (`Quorum::propose` returns once they are). A node that becomes leader
//! starts a fresh `Controller`, which gives every broker a full session before fencing it.
//!
//! A broker that misses its heartbeats has its client listener probed: a refused connection
//! means its process is gone (a crash, a SIGKILL), and it is fenced at once rather than when
//! its session runs out, so its leaderships move within about a second and a half. A broker
//! that is paused or cut off still accepts or times out, and waits for its session.

use std::sync::{Arc, Weak};
use std::time::Duration;

use strom_metadata::controller::Registered;
use strom_metadata::{encode_batch, Controller, ControllerConfig, MetadataImage, Plan};
use strom_quorum::{Quorum, Role};
use tokio::sync::{watch, Mutex};

use super::protocol::{ControllerReply, ControllerRequest};
use crate::broker::now_ms;
use crate::clock::steady_ms;

/// How long the controller waits to confirm its leadership and catch its image up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// A quorum member the leader has not heard from for this long is reported as not answering.
const QUORUM_SILENCE_MS: u64 = 3_000;
/// How often the active controller looks for expired broker sessions and leader imbalance.
pub(crate) const TICK_INTERVAL: Duration = Duration::from_millis(250);

struct Active {
    term: u64,
    controller: Controller,
}

pub(crate) struct ControllerService {
    node_id: u64,
    quorum: Weak<Quorum>,
    image: watch::Receiver<Arc<MetadataImage>>,
    config: ControllerConfig,
    /// A broker whose heartbeat is this late has its listener probed ([`probe_down`]).
    probe_after_ms: i64,
    active: Mutex<Option<Active>>,
    /// Quorum members the leader has not heard from lately, so each change is logged once.
    silent_members: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl ControllerService {
    pub(crate) fn new(
        node_id: u64,
        quorum: Weak<Quorum>,
        image: watch::Receiver<Arc<MetadataImage>>,
        config: ControllerConfig,
        probe_after_ms: i64,
    ) -> ControllerService {
        ControllerService {
            node_id,
            quorum,
            image,
            config,
            probe_after_ms,
            active: Mutex::new(None),
            silent_members: std::sync::Mutex::default(),
        }
    }

    /// Answers one request on the active controller.
    pub(crate) async fn handle(&self, request: ControllerRequest) -> ControllerReply {
        let mut active = self.active.lock().await;
        let Some((quorum, term)) = self.leadership().await else {
            *active = None;
            return ControllerReply::NotController;
        };
        match &request {
            ControllerRequest::DescribeQuorum => return describe_quorum(&quorum).await,
            ControllerRequest::AddVoter { id, addr } => {
                tracing::info!(node_id = id, %addr, "adding a voter to the metadata quorum");
                return match quorum.add_voter(*id, addr.clone()).await {
                    Ok(()) => ControllerReply::Done,
                    Err(e) => ControllerReply::Unavailable(e.to_string()),
                };
            }
            ControllerRequest::RemoveVoter { id } => {
                let voters = quorum.membership().voters;
                if !voters.contains_key(id) {
                    return ControllerReply::Refused(strom_metadata::ControllerError::InvalidRequest(format!(
                        "node {id} is not a voter"
                    )));
                }
                if voters.len() == 1 {
                    return ControllerReply::Refused(strom_metadata::ControllerError::InvalidRequest(
                        "the last voter cannot be removed".to_string(),
                    ));
                }
                tracing::info!(node_id = id, "removing a voter from the metadata quorum");
                return match quorum.remove_voter(*id).await {
                    Ok(()) => ControllerReply::Done,
                    Err(e) => ControllerReply::Unavailable(e.to_string()),
                };
            }
            _ => {}
        }
        let image = self.image.borrow().clone();
        // Broker sessions are measured on the steady clock (`clock.rs`).
        let now = steady_ms();
        let controller = self.controller_for(&mut active, term, &image, now);
        let metadata_addr = match &request {
            ControllerRequest::Register { request, metadata_addr } => {
                metadata_addr.clone().map(|addr| (request.id, addr))
            }
            _ => None,
        };
        let reply = match decide(controller, &image, now, request) {
            Ok((records, reply)) => {
                if records.is_empty() {
                    return reply;
                }
                match quorum.propose(encode_batch(&records)).await {
                    Ok(index) => match reply {
                        ControllerReply::Registered { .. } => ControllerReply::Registered { epoch: index as i64 },
                        other => other,
                    },
                    Err(e) => ControllerReply::Unavailable(e.to_string()),
                }
            }
            Err(reply) => reply,
        };
        if let (Some((id, addr)), ControllerReply::Registered { .. }) = (metadata_addr, &reply) {
            add_learner_if_new(&quorum, id, addr);
        }
        reply
    }

    /// Fences silent brokers and rebalances leaders, if this node is the active controller.
    pub(crate) async fn tick(&self) {
        let mut active = self.active.lock().await;
        let Some((quorum, term)) = self.leadership().await else {
            *active = None;
            return;
        };
        let image = self.image.borrow().clone();
        let now = steady_ms();
        self.log_quorum_health(&quorum).await;
        let controller = self.controller_for(&mut active, term, &image, now);
        let plan = controller.tick(&image, now);
        if !plan.records.is_empty() {
            if let Err(e) = quorum.propose(encode_batch(&plan.records)).await {
                tracing::warn!(error = %e, "the controller's timer could not commit its decisions");
            }
            return;
        }
        let suspects = controller.overdue(&image, now, self.probe_after_ms);
        if suspects.is_empty() {
            return;
        }
        // Probed without holding the controller: a probe may take its timeout.
        drop(active);
        let mut down = Vec::new();
        for id in suspects {
            if let Some(address) = listener_of(&image, id) {
                if probe_down(&address).await {
                    down.push(id);
                }
            }
        }
        if down.is_empty() {
            return;
        }
        let mut active = self.active.lock().await;
        let Some(Active {
            term: current,
            controller,
        }) = active.as_mut()
        else {
            return;
        };
        if *current != term {
            return;
        }
        let image = self.image.borrow().clone();
        for id in down {
            let plan = controller.fence_down(&image, id);
            if plan.records.is_empty() {
                continue;
            }
            tracing::info!(
                broker = id,
                "fencing a broker whose listener refuses connections (its process is gone)"
            );
            if let Err(e) = quorum.propose(encode_batch(&plan.records)).await {
                tracing::warn!(error = %e, "the controller could not commit a fencing");
            }
            // One at a time: the next decision needs the image with this one applied.
            return;
        }
    }

    /// One line when a quorum member stops answering the leader, and one when it answers
    /// again (openraft's own per-attempt errors are not logged: see the binary's filter).
    async fn log_quorum_health(&self, quorum: &Quorum) {
        let Ok(status) = quorum.status().await else { return };
        let silent: std::collections::BTreeSet<u64> = status
            .voters
            .iter()
            .chain(status.learners.iter())
            .filter(|r| r.id != self.node_id)
            .filter(|r| r.last_contact_ms_ago.is_none_or(|ago| ago > QUORUM_SILENCE_MS))
            .map(|r| r.id)
            .collect();
        let mut known = self.silent_members.lock().expect("silent members lock");
        for id in silent.difference(&known) {
            tracing::warn!(node_id = id, "metadata quorum: node {id} does not answer the leader");
        }
        for id in known.difference(&silent) {
            tracing::info!(node_id = id, "metadata quorum: node {id} answers the leader again");
        }
        *known = silent;
    }

    /// The controller of `term`: a node that has just become leader starts a fresh one.
    fn controller_for<'a>(
        &self,
        active: &'a mut Option<Active>,
        term: u64,
        image: &MetadataImage,
        now: i64,
    ) -> &'a mut Controller {
        if active.as_ref().is_none_or(|a| a.term != term) {
            tracing::info!(node_id = self.node_id, term, "this node is the active controller");
            *active = Some(Active {
                term,
                controller: Controller::new(self.config.clone(), image, now),
            });
        }
        &mut active.as_mut().expect("set above").controller
    }

    /// The quorum and the term if this node leads and its image has caught up with its log.
    async fn leadership(&self) -> Option<(Arc<Quorum>, u64)> {
        let quorum = self.quorum.upgrade()?;
        let status = quorum.status().await.ok()?;
        if status.role != Role::Leader {
            return None;
        }
        let term = status.term;
        // A leader restarted from its old vote, or cut off and replaced, believes it leads for
        // a moment: only a majority's answer proves it, and the image must hold everything
        // committed before this node decides anything.
        if let Err(e) = quorum.ensure_leader(CATCH_UP_TIMEOUT).await {
            tracing::debug!(error = %e, "not confirmed as the quorum leader");
            return None;
        }
        let still = quorum
            .status()
            .await
            .ok()
            .is_some_and(|s| s.role == Role::Leader && s.term == term);
        still.then_some((quorum, term))
    }
}

/// The quorum as this node, its leader, sees it.
async fn describe_quorum(quorum: &Quorum) -> ControllerReply {
    let status = match quorum.status().await {
        Ok(status) => status,
        Err(e) => return ControllerReply::Unavailable(e.to_string()),
    };
    let now = now_ms();
    let member = |r: &strom_quorum::ReplicaStatus| super::protocol::QuorumMember {
        id: r.id,
        addr: r.addr.clone(),
        log_end_offset: r.matched_index.map_or(-1, |i| i as i64),
        last_fetch_ms: r.last_contact_ms_ago.map_or(-1, |ago| now - ago as i64),
    };
    ControllerReply::Quorum(super::protocol::QuorumView {
        leader: status.node_id,
        term: status.term,
        committed: status.committed.map_or(-1, |c| c as i64),
        voters: status.voters.iter().map(member).collect(),
        observers: status.learners.iter().map(member).collect(),
    })
}

fn add_learner_if_new(quorum: &Arc<Quorum>, id: i32, addr: String) {
    let id = id as u64;
    let membership = quorum.membership();
    if membership.voters.contains_key(&id) || membership.learners.contains_key(&id) {
        return;
    }
    let quorum = quorum.clone();
    tokio::spawn(async move {
        if let Err(e) = quorum.add_learner(id, addr.clone()).await {
            tracing::warn!(node_id = id, %addr, error = %e, "could not add the broker as a metadata learner");
        }
    });
}

type Decision = Result<(Vec<strom_metadata::MetadataRecord>, ControllerReply), ControllerReply>;

fn plan<R>(plan: Plan<R>, reply: impl FnOnce(R) -> ControllerReply) -> Decision {
    Ok((plan.records, reply(plan.reply)))
}

fn decide(controller: &mut Controller, image: &MetadataImage, now: i64, request: ControllerRequest) -> Decision {
    let refused = ControllerReply::Refused;
    match request {
        ControllerRequest::Register { request, .. } => {
            let p = controller.register_broker(image, now, request).map_err(refused)?;
            plan(p, |r| match r {
                Registered::Existing { epoch } => ControllerReply::Registered { epoch },
                // Filled in with the commit index once committed.
                Registered::AtCommitIndex => ControllerReply::Registered { epoch: -1 },
            })
        }
        ControllerRequest::Heartbeat(h) => plan(
            controller.heartbeat(image, now, &h).map_err(refused)?,
            ControllerReply::Heartbeat,
        ),
        ControllerRequest::CreateTopics { topics, validate_only } => plan(
            controller.create_topics(image, topics, validate_only),
            ControllerReply::CreateTopics,
        ),
        ControllerRequest::DeleteTopics(names) => {
            plan(controller.delete_topics(image, names), ControllerReply::DeleteTopics)
        }
        ControllerRequest::CreatePartitions {
            requests,
            validate_only,
        } => plan(
            controller.create_partitions(image, requests, validate_only),
            ControllerReply::CreatePartitions,
        ),
        ControllerRequest::AlterConfigs {
            resource,
            ops,
            replace,
            validate_only,
        } => plan(
            controller
                .alter_configs(image, resource, ops, replace, validate_only)
                .map_err(refused)?,
            |()| ControllerReply::Done,
        ),
        ControllerRequest::AlterPartitions(requests) => plan(
            controller.alter_partitions(image, &requests),
            ControllerReply::AlterPartitions,
        ),
        ControllerRequest::ElectLeaders { election, partitions } => plan(
            controller.elect_leaders(image, election, partitions),
            ControllerReply::Elections,
        ),
        ControllerRequest::AlterReassignments(requests) => plan(
            controller.alter_reassignments(image, requests),
            ControllerReply::Elections,
        ),
        ControllerRequest::AllocateProducerIds {
            broker_id,
            broker_epoch,
        } => plan(
            controller
                .allocate_producer_ids(image, broker_id, broker_epoch)
                .map_err(refused)?,
            ControllerReply::ProducerIds,
        ),
        ControllerRequest::ReserveProducerIds {
            broker_id,
            broker_epoch,
            floor,
        } => plan(
            controller
                .reserve_producer_ids(image, broker_id, broker_epoch, floor)
                .map_err(refused)?,
            |()| ControllerReply::Done,
        ),
        ControllerRequest::UnregisterBroker(id) => {
            plan(controller.unregister_broker(image, id).map_err(refused)?, |()| {
                ControllerReply::Done
            })
        }
        ControllerRequest::DescribeQuorum
        | ControllerRequest::AddVoter { .. }
        | ControllerRequest::RemoveVoter { .. } => {
            unreachable!("answered before deciding")
        }
    }
}

/// The quorum's application calls, decoded and handed to the service.
pub(crate) struct CallHandler(pub(crate) Arc<ControllerService>);

impl strom_quorum::CallHandler for CallHandler {
    fn call(&self, request: String) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> {
        let service = self.0.clone();
        Box::pin(async move {
            let reply = match serde_json::from_str::<ControllerRequest>(&request) {
                Ok(request) => service.handle(request).await,
                Err(e) => ControllerReply::Unavailable(format!("request does not decode: {e}")),
            };
            serde_json::to_string(&reply).expect("replies encode")
        })
    }
}

/// How long a liveness probe may take: a refused connection answers at once, and anything
/// slower (a pause, a partition) is left to the session timeout.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// A broker's client listener, from its registration.
fn listener_of(image: &MetadataImage, id: strom_metadata::BrokerId) -> Option<String> {
    let registration = image.broker(id)?;
    let endpoint = registration.endpoints.first()?;
    Some(format!("{}:{}", endpoint.host, endpoint.port))
}

/// Whether nothing listens at `address` any more: the connection is refused (the process
/// is gone; its port is closed). A paused or unreachable broker is not "down" here.
async fn probe_down(address: &str) -> bool {
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}
