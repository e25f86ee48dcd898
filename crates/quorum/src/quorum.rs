//! [`Quorum`], the handle the application holds: start a node, propose commands, change the
//! voters at run time (as KIP-853 does), read the quorum's state, stop.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::error::Fatal;
use openraft::error::InitializeError;
use openraft::error::RaftError;
use openraft::ChangeMembers;
use openraft::ServerState;
use serde::Deserialize;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::QuorumConfig;
use crate::disk;
use crate::error::QuorumError;
use crate::log_store::LogStore;
use crate::network::CallError;
use crate::network::NetworkFactory;
use crate::network::PeerPool;
use crate::server;
use crate::state_machine::StateMachine;
use crate::state_machine::StateMachineStore;
use crate::types::Command;
use crate::types::Node;
use crate::types::NodeId;
use crate::types::Raft;
use crate::wire::ForwardError;

/// The application's side of [`Quorum::call_leader`]: a request in the application's own
/// protocol, answered on the node that receives it (the leader, as the caller believed; the
/// handler checks and answers "not here" in its own terms if leadership moved).
pub trait CallHandler: Send + Sync + 'static {
    fn call(&self, request: String) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;
}

pub(crate) type CallSlot = Arc<RwLock<Option<Arc<dyn CallHandler>>>>;

/// openraft's metrics of this node, for [`Quorum::wait_for`].
pub type Metrics = openraft::RaftMetrics<NodeId, Node>;

const META_FILE: &str = "quorum.meta";
const META_FORMAT_VERSION: u32 = 1;
/// Longest a proposal waits for a leader to appear before trying again.
const LEADER_WAIT_STEP: Duration = Duration::from_millis(100);

/// Who a data dir belongs to.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct DirMeta {
    format_version: u32,
    node_id: NodeId,
    cluster_id: String,
}

/// This node's part in the quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Candidate,
    Follower,
    Learner,
    Shutdown,
}

/// One replica as the leader sees it (matched index and contact are known on the leader only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub id: NodeId,
    pub addr: String,
    /// The highest log index known to be on that replica.
    pub matched_index: Option<u64>,
    /// Since this node last had an answer from that replica; `Some(0)` for this node itself.
    pub last_contact_ms_ago: Option<u64>,
}

/// A picture of the quorum from this node (what Kafka's DescribeQuorum answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    /// Last log index covered by this node's latest snapshot.
    pub snapshot: Option<u64>,
    pub voters: Vec<ReplicaStatus>,
    pub learners: Vec<ReplicaStatus>,
}

/// The voters and learners of the current membership, id → address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeMap<NodeId, String>,
    pub learners: BTreeMap<NodeId, String>,
}

/// A running quorum node.
pub struct Quorum {
    node_id: NodeId,
    raft: Raft,
    pool: Arc<PeerPool>,
    config: QuorumConfig,
    local_addr: SocketAddr,
    server_stop: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
    stopped: AtomicBool,
    calls: CallSlot,
    /// Which initial voter a node that knows no leader asks next ([`Quorum::call_leader`]).
    next_voter: std::sync::atomic::AtomicUsize,
}

fn check_dir_meta(config: &QuorumConfig) -> Result<(), QuorumError> {
    let dir = &config.data_dir;
    let path = dir.join(META_FILE);
    let expected = DirMeta {
        format_version: META_FORMAT_VERSION,
        node_id: config.node_id,
        cluster_id: config.cluster_id.clone(),
    };
    match disk::read_optional(&path).map_err(|e| QuorumError::io(format!("reading {}", path.display()), e))? {
        Some(bytes) => {
            let found: DirMeta = serde_json::from_slice(&bytes).map_err(|e| QuorumError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if found.format_version != META_FORMAT_VERSION {
                let reason = format!(
                    "format version {} (this build reads {META_FORMAT_VERSION})",
                    found.format_version
                );
                return Err(QuorumError::Corrupt { path, reason });
            }
            if found != expected {
                return Err(QuorumError::DataDirMismatch {
                    dir: dir.clone(),
                    found_node_id: found.node_id,
                    found_cluster_id: found.cluster_id,
                    node_id: config.node_id,
                    cluster_id: config.cluster_id.clone(),
                });
            }
            Ok(())
        }
        None => {
            let entries = fs::read_dir(dir).map_err(|e| QuorumError::io(format!("listing {}", dir.display()), e))?;
            if let Some(entry) = entries.flatten().next() {
                let reason = format!(
                    "holds {:?} but no {META_FILE}; not a quorum data dir",
                    entry.file_name()
                );
                return Err(QuorumError::Corrupt {
                    path: dir.clone(),
                    reason,
                });
            }
            let bytes = serde_json::to_vec(&expected).expect("meta encodes");
            disk::write_atomic(dir, META_FILE, &bytes)
                .map_err(|e| QuorumError::io(format!("writing {}", path.display()), e))
        }
    }
}

fn fatal_error(fatal: Fatal<NodeId>) -> QuorumError {
    match fatal {
        Fatal::Stopped => QuorumError::ShuttingDown,
        other => QuorumError::Raft(other.to_string()),
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> QuorumError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => QuorumError::NotLeader {
            leader: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(other) => QuorumError::Raft(other.to_string()),
        RaftError::Fatal(fatal) => fatal_error(fatal),
    }
}

/// Why [`propose_local`] did not apply a command.
pub(crate) enum LocalWriteError {
    /// Not appended here: this node is not the leader.
    NotLeader {
        leader: Option<NodeId>,
        leader_addr: Option<String>,
    },
    Other(QuorumError),
}

/// Proposes `command` to the local Raft node and waits until it is applied here (leader only).
pub(crate) async fn propose_local(raft: &Raft, command: Command, timeout: Duration) -> Result<u64, LocalWriteError> {
    match tokio::time::timeout(timeout, raft.client_write(command)).await {
        Ok(Ok(response)) => Ok(response.log_id.index),
        Ok(Err(e)) => match write_error(e) {
            QuorumError::NotLeader { leader, leader_addr } => Err(LocalWriteError::NotLeader { leader, leader_addr }),
            other => Err(LocalWriteError::Other(other)),
        },
        Err(_) => Err(LocalWriteError::Other(QuorumError::Timeout {
            what: "waiting for the command to commit; is a majority of voters reachable? (it may still commit later)"
                .to_string(),
            after_ms: timeout.as_millis() as u64,
            leader: raft.metrics().borrow().current_leader,
        })),
    }
}

impl Quorum {
    /// Starts a node: checks `quorum.meta`, opens the log, restores `state_machine` (which must
    /// hold its initial, empty state) from the latest snapshot, binds the listener, and, if this
    /// node is an initial voter with an empty log, initializes the cluster with `voters`.
    ///
    /// The application keeps its own clone of `state_machine` to read its state; Raft holds the
    /// write lock only while applying a batch or restoring a snapshot.
    pub async fn start<S: StateMachine>(
        config: QuorumConfig,
        state_machine: Arc<RwLock<S>>,
    ) -> Result<Quorum, QuorumError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config()?);
        let dir = &config.data_dir;
        fs::create_dir_all(dir).map_err(|e| QuorumError::io(format!("creating {}", dir.display()), e))?;
        check_dir_meta(&config)?;
        let log_store = LogStore::open(dir, config.log_segment_bytes)?;
        let state_machine = StateMachineStore::open(dir, state_machine)?;

        let listener = TcpListener::bind(&config.listen_addr)
            .await
            .map_err(|e| QuorumError::io(format!("binding the quorum listener to {}", config.listen_addr), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| QuorumError::io("reading the listener address", e))?;
        let pool = PeerPool::new(config.rpc_timeout);
        let network = NetworkFactory { pool: pool.clone() };
        let raft = Raft::new(config.node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(fatal_error)?;
        let (server_stop, stop_rx) = watch::channel(false);
        let calls: CallSlot = Arc::default();
        let server = server::spawn(listener, raft.clone(), config.propose_timeout, calls.clone(), stop_rx);
        let quorum = Quorum {
            node_id: config.node_id,
            raft,
            pool,
            config,
            local_addr,
            server_stop,
            server: Mutex::new(Some(server)),
            stopped: AtomicBool::new(false),
            calls,
            next_voter: std::sync::atomic::AtomicUsize::new(0),
        };
        quorum.initialize_if_new().await?;
        tracing::info!(node_id = quorum.node_id, addr = %local_addr, "quorum node started");
        Ok(quorum)
    }

    async fn initialize_if_new(&self) -> Result<(), QuorumError> {
        if !self.config.voters.contains_key(&self.node_id) {
            tracing::info!(
                node_id = self.node_id,
                "quorum: not an initial voter; waiting to be added as a learner"
            );
            return Ok(());
        }
        if self.raft.is_initialized().await.map_err(fatal_error)? {
            return Ok(());
        }
        let members: BTreeMap<NodeId, Node> = self
            .config
            .voters
            .iter()
            .map(|(&id, addr)| (id, Node { addr: addr.clone() }))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.node_id, voters = ?self.config.voters, "quorum: initialized a new cluster");
                Ok(())
            }
            // Another initial voter got there first and this node already has its log.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(QuorumError::Raft(format!("initializing the cluster: {e}"))),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn check_running(&self) -> Result<(), QuorumError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(QuorumError::ShuttingDown);
        }
        Ok(())
    }

    /// Replicates `command` and returns the log index it was applied at. On the leader it
    /// returns once the command is committed and applied here; on another node it is forwarded
    /// to the leader and returns once it is applied on the leader and (within the timeout) here.
    ///
    /// A `Timeout` or `Forward` error is ambiguous: the command may still commit. Commands
    /// that must not apply twice need an id the state machine deduplicates.
    pub async fn propose(&self, command: Vec<u8>) -> Result<u64, QuorumError> {
        let timeout = self.config.propose_timeout;
        let deadline = Instant::now() + timeout;
        let command = Command(command);
        let mut metrics = self.raft.metrics();
        loop {
            self.check_running()?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let leader = metrics.borrow_and_update().current_leader;
            if remaining.is_zero() {
                let what = "waiting for a leader to accept the command; is a majority of voters reachable?";
                return Err(QuorumError::Timeout {
                    what: what.to_string(),
                    after_ms: timeout.as_millis() as u64,
                    leader,
                });
            }
            let (leader, leader_addr) = match propose_local(&self.raft, command.clone(), remaining).await {
                Ok(index) => return Ok(index),
                Err(LocalWriteError::Other(e)) => return Err(e),
                Err(LocalWriteError::NotLeader { leader, leader_addr }) => (leader, leader_addr),
            };
            if let (Some(leader), Some(addr)) = (leader, leader_addr) {
                if leader != self.node_id {
                    match self.pool.forward(&addr, command.clone(), remaining).await {
                        Ok(Ok(index)) => {
                            // Read-your-writes on this node, best effort within the deadline.
                            let remaining = deadline.saturating_duration_since(Instant::now());
                            let _ = self
                                .raft
                                .wait(Some(remaining))
                                .applied_index_at_least(Some(index), "forwarded")
                                .await;
                            return Ok(index);
                        }
                        // Leadership moved on, or the leader is not listening: nothing was
                        // appended, try again once the metrics change.
                        Ok(Err(ForwardError::NotLeader { .. })) | Err(CallError::Unreachable(_)) => {}
                        Ok(Err(ForwardError::Failed(reason))) => {
                            return Err(QuorumError::Forward { leader, addr, reason });
                        }
                        Err(CallError::Network(e)) => {
                            return Err(QuorumError::Forward {
                                leader,
                                addr,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
            let step = LEADER_WAIT_STEP.min(deadline.saturating_duration_since(Instant::now()));
            let _ = tokio::time::timeout(step, metrics.changed()).await;
        }
    }

    /// Confirms that this node leads now (a heartbeat round answered by a majority: a leader
    /// restarted from its old vote, or cut off and replaced, fails here) and waits until its
    /// state machine has applied everything committed before. Reads that must reflect the
    /// whole committed log, such as a controller's decisions, call this first.
    pub async fn ensure_leader(&self, timeout: Duration) -> Result<(), QuorumError> {
        self.check_running()?;
        match tokio::time::timeout(timeout, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(e))) => Err(QuorumError::Raft(format!("not the leader: {e}"))),
            Ok(Err(RaftError::Fatal(fatal))) => Err(fatal_error(fatal)),
            Err(_) => Err(QuorumError::Timeout {
                what: "confirming leadership with a majority of voters".to_string(),
                after_ms: timeout.as_millis() as u64,
                leader: self.raft.metrics().borrow().current_leader,
            }),
        }
    }

    /// Sets the handler of [`Quorum::call_leader`] requests arriving at this node.
    pub fn set_call_handler(&self, handler: Arc<dyn CallHandler>) {
        *self.calls.write().expect("call handler lock") = Some(handler);
    }

    /// Sends an application request to the current leader's [`CallHandler`] (this node's own if
    /// it leads) and returns its answer. Waits up to `timeout` for a leader to be known and
    /// reachable; a request that reached a handler is never sent twice.
    pub async fn call_leader(&self, request: String, timeout: Duration) -> Result<String, QuorumError> {
        let deadline = Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            self.check_running()?;
            let (leader, addr) = {
                let m = metrics.borrow_and_update();
                let leader = m.current_leader;
                let addr = leader.and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone()));
                (leader, addr)
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(QuorumError::Timeout {
                    what: "waiting for a reachable quorum leader to answer; is a majority of voters up?".to_string(),
                    after_ms: timeout.as_millis() as u64,
                    leader,
                });
            }
            match (leader, addr) {
                (Some(leader), _) if leader == self.node_id => {
                    let handler = self.calls.read().expect("call handler lock").clone();
                    if let Some(handler) = handler {
                        return Ok(handler.call(request).await);
                    }
                }
                (Some(leader), Some(addr)) => match self.pool.call_app(&addr, request.clone(), remaining).await {
                    Ok(Ok(answer)) => return Ok(answer),
                    // Its handler is not set up yet: ask again shortly.
                    Ok(Err(_)) | Err(CallError::Unreachable(_)) => {}
                    Err(CallError::Network(e)) => {
                        return Err(QuorumError::Forward {
                            leader,
                            addr,
                            reason: e.to_string(),
                        })
                    }
                },
                // No leader known: a node outside the membership (a new broker, before it is
                // added as a learner) never learns one by itself, so it asks the initial
                // voters in turn; the application answers "not the leader" from the others.
                (None, _) => {
                    let others: Vec<&String> = self
                        .config
                        .voters
                        .iter()
                        .filter(|(id, _)| **id != self.node_id)
                        .map(|(_, addr)| addr)
                        .collect();
                    if !others.is_empty() {
                        let turn = self.next_voter.fetch_add(1, Ordering::Relaxed) % others.len();
                        if let Ok(Ok(answer)) = self.pool.call_app(others[turn], request.clone(), remaining).await {
                            return Ok(answer);
                        }
                    }
                }
                _ => {}
            }
            let step = LEADER_WAIT_STEP.min(deadline.saturating_duration_since(Instant::now()));
            let _ = tokio::time::timeout(step, metrics.changed()).await;
        }
    }

    fn leader_only<T>(
        &self,
        result: Result<T, RaftError<NodeId, ClientWriteError<NodeId, Node>>>,
    ) -> Result<T, QuorumError> {
        result.map_err(write_error)
    }

    /// Adds node `id` at `addr` as a learner and waits until it has caught up (leader only).
    pub async fn add_learner(&self, id: NodeId, addr: impl Into<String>) -> Result<(), QuorumError> {
        self.check_running()?;
        let node = Node { addr: addr.into() };
        let timeout = self.config.propose_timeout;
        match tokio::time::timeout(timeout, self.raft.add_learner(id, node, true)).await {
            Ok(result) => self.leader_only(result).map(|_| ()),
            Err(_) => Err(QuorumError::Timeout {
                what: format!("waiting for learner {id} to catch up"),
                after_ms: timeout.as_millis() as u64,
                leader: self.raft.metrics().borrow().current_leader,
            }),
        }
    }

    /// Makes node `id` a voter: a learner first (if it is not one), then a membership change
    /// (leader only).
    pub async fn add_voter(&self, id: NodeId, addr: impl Into<String>) -> Result<(), QuorumError> {
        let addr = addr.into();
        let membership = self.membership();
        if membership.voters.contains_key(&id) {
            return Ok(());
        }
        if !membership.learners.contains_key(&id) {
            self.add_learner(id, addr).await?;
        }
        self.change_membership(
            ChangeMembers::AddVoterIds(BTreeSet::from([id])),
            &format!("adding voter {id}"),
        )
        .await
    }

    /// Removes voter `id` from the membership entirely (leader only). The last voter cannot be
    /// removed.
    pub async fn remove_voter(&self, id: NodeId) -> Result<(), QuorumError> {
        self.change_membership(
            ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            &format!("removing voter {id}"),
        )
        .await
    }

    async fn change_membership(&self, change: ChangeMembers<NodeId, Node>, what: &str) -> Result<(), QuorumError> {
        self.check_running()?;
        let timeout = self.config.propose_timeout;
        match tokio::time::timeout(timeout, self.raft.change_membership(change, false)).await {
            Ok(result) => self.leader_only(result).map(|_| ()),
            Err(_) => Err(QuorumError::Timeout {
                what: what.to_string(),
                after_ms: timeout.as_millis() as u64,
                leader: self.raft.metrics().borrow().current_leader,
            }),
        }
    }

    /// The latest membership this node knows (committed or not).
    pub fn membership(&self) -> Membership {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let addr = |id: &NodeId| membership.get_node(id).map(|n| n.addr.clone()).unwrap_or_default();
        Membership {
            voters: membership.voter_ids().map(|id| (id, addr(&id))).collect(),
            learners: membership.learner_ids().map(|id| (id, addr(&id))).collect(),
        }
    }

    /// The current metrics of the local Raft node (a watch: `changed()` wakes on updates).
    pub fn metrics(&self) -> watch::Receiver<Metrics> {
        self.raft.metrics()
    }

    /// This node's view of the quorum.
    pub async fn status(&self) -> Result<QuorumStatus, QuorumError> {
        self.check_running()?;
        let committed = self
            .raft
            .with_raft_state(|state| state.committed.map(|c| c.index))
            .await
            .map_err(fatal_error)?;
        let metrics = self.raft.metrics().borrow().clone();
        let membership = self.membership();
        let replica = |(&id, addr): (&NodeId, &String)| {
            let matched_index = match &metrics.replication {
                Some(replication) if id != self.node_id => replication.get(&id).and_then(|m| m.map(|l| l.index)),
                _ if id == self.node_id => metrics.last_log_index,
                _ => None,
            };
            let last_contact_ms_ago = if id == self.node_id {
                Some(0)
            } else {
                self.pool.last_contact(id).map(|d| d.as_millis() as u64)
            };
            ReplicaStatus {
                id,
                addr: addr.clone(),
                matched_index,
                last_contact_ms_ago,
            }
        };
        Ok(QuorumStatus {
            node_id: self.node_id,
            role: match metrics.state {
                ServerState::Leader => Role::Leader,
                ServerState::Candidate => Role::Candidate,
                ServerState::Follower => Role::Follower,
                ServerState::Learner => Role::Learner,
                ServerState::Shutdown => Role::Shutdown,
            },
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            committed,
            applied: metrics.last_applied.map(|l| l.index),
            snapshot: metrics.snapshot.map(|l| l.index),
            voters: membership.voters.iter().map(replica).collect(),
            learners: membership.learners.iter().map(replica).collect(),
        })
    }

    /// Waits until `condition` holds on this node's metrics; `what` names it in the timeout
    /// error.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&Metrics) -> bool + Send,
    ) -> Result<Metrics, QuorumError> {
        self.raft
            .wait(Some(timeout))
            .metrics(condition, what)
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::ShuttingDown => QuorumError::ShuttingDown,
                openraft::metrics::WaitError::Timeout(..) => QuorumError::Timeout {
                    what: format!("waiting for {what}"),
                    after_ms: timeout.as_millis() as u64,
                    leader: self.raft.metrics().borrow().current_leader,
                },
            })
    }

    /// Waits until this node knows a leader and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, QuorumError> {
        let metrics = self
            .wait_for(timeout, "a leader", |m| m.current_leader.is_some())
            .await?;
        Ok(metrics.current_leader.expect("waited for a leader"))
    }

    /// Waits until this node has applied the log up to `index`.
    pub async fn wait_for_applied(&self, index: u64, timeout: Duration) -> Result<(), QuorumError> {
        let what = format!("log index {index} to be applied");
        self.wait_for(timeout, &what, |m| m.last_applied.is_some_and(|l| l.index >= index))
            .await
            .map(|_| ())
    }

    /// Stops the listener and the Raft node. Later calls return `ShuttingDown` errors.
    pub async fn shutdown(&self) -> Result<(), QuorumError> {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _ = self.server_stop.send(true);
        let server = self.server.lock().expect("server lock").take();
        if let Some(server) = server {
            let _ = server.await;
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| QuorumError::Raft(format!("shutting down: {e}")))?;
        tracing::info!(node_id = self.node_id, "quorum node stopped");
        Ok(())
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        // Not shut down explicitly: stop what can be stopped without waiting.
        let _ = self.server_stop.send(true);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            drop(runtime.spawn(async move { raft.shutdown().await }));
        }
    }
}
