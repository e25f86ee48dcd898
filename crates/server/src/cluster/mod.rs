//! This node's part in a cluster: the metadata quorum (strom-quorum on openraft), the image of
//! the committed metadata (strom-metadata), the active controller when this node leads the
//! quorum, and the broker's registration and heartbeats.
//!
//! ```text
//!   broker handlers ──► Cluster::call ──► quorum leader's ControllerService ──► Controller (plan)
//!                                                   │ records
//!                                                   ▼
//!                     Quorum::propose ──► every node's MetadataStore ──► MetadataImage (watch)
//! ```
//!
//! Every node runs a quorum node: voters (`process.roles` with `controller`) take part in
//! elections, other brokers are learners the controller adds when they register. Quorum data
//! lives in `<data-dir>/__cluster_metadata/`.
//!
//! # Layout
//! - `protocol`: the requests brokers send the active controller, and its answers.
//! - `metadata_store`: the quorum's state machine, publishing the image.
//! - `controller_service`: the active controller, one decision at a time.
//! - `lifecycle`: registration, heartbeats, controlled shutdown.
//! - `replicas`: the broker's topics and partition roles following the image.
//! - `fetcher`: the follower's side of replication, one fetcher per leader broker.
//! - `isr`: the leader's ISR changes to the controller, and the replication timer.
//! - `peers`: connections to other brokers' listeners, for fetches and coordinators' calls.

mod controller_service;
pub(crate) mod fetcher;
pub(crate) mod isr;
mod lease;
pub mod lifecycle;
mod metadata_store;
pub(crate) mod peers;
pub(crate) mod protocol;
pub(crate) mod replicas;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use strom_metadata::{ControllerConfig, MetadataImage};
use strom_quorum::{Quorum, QuorumConfig, QuorumError};
use tokio::sync::watch;

use crate::cluster_config::ClusterConfig;
use crate::config::BrokerConfig;
use controller_service::{CallHandler, ControllerService};
use metadata_store::MetadataStore;
use protocol::{ControllerReply, ControllerRequest};

/// Worker threads of the quorum's runtime: openraft's core fsyncs the log on one of them.
const QUORUM_THREADS: usize = 2;

/// Where a retried call waits between "not the controller" answers (a new leader is being
/// elected or has not caught up yet).
const NOT_CONTROLLER_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("metadata quorum")]
    Quorum(#[from] QuorumError),
    #[error("{0}")]
    Config(String),
}

pub struct Cluster {
    pub(crate) config: ClusterConfig,
    /// This node's id (`node.id`).
    pub(crate) node_id: i32,
    /// `<data-dir>/__cluster_metadata`.
    pub(crate) dir: PathBuf,
    pub(crate) cluster_id: String,
    pub(crate) quorum: Arc<Quorum>,
    /// The quorum runs on threads of its own, so request handlers that block (file I/O on the
    /// broker's workers) cannot delay its heartbeats into elections.
    runtime: Option<tokio::runtime::Runtime>,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// This node's quorum address, for the controller to add it as a learner (non-voters).
    pub(crate) metadata_addr: Option<String>,
    service: Arc<ControllerService>,
    /// The partitions this broker follows, fetched from their leaders.
    pub(crate) fetchers: fetcher::ReplicaFetchers,
    /// Connections for calls to other brokers (transaction markers and checks).
    pub(crate) peers: peers::Peers,
    /// This broker's ISR changes on their way to the controller.
    pub(crate) isr_changes: isr::IsrChanges,
    /// This node's data directory was a single node's, being adopted (`crate::adoption`).
    pub(crate) adopting: bool,
    /// The latest image this broker's topics and coordinators have followed
    /// (`replicas::follow_metadata`), which can be behind [`Cluster::image`].
    pub(crate) applied: watch::Sender<Arc<MetadataImage>>,
    /// Asks `replicas::follow_metadata` to apply the current image again, for a change on
    /// this broker's side (an adoption ending lets topics through that it held back).
    pub(crate) refollow: tokio::sync::Notify,
    /// Whether the controller cannot have fenced this broker yet (`lease.rs`).
    pub(crate) lease: lease::Lease,
}

/// Every node of a cluster derives the same id from the initial voters, so nodes of two
/// clusters (or a node pointed at the wrong voters) refuse each other's data directories.
pub fn cluster_id_for(voters: &BTreeMap<i32, crate::cluster_config::Voter>) -> String {
    // FNV-1a over the voter list, twice with different seeds, as 16 bytes in Kafka's base64.
    let text: String = voters
        .values()
        .map(|v| format!("{}@{}:{}", v.id, v.host, v.port))
        .collect::<Vec<_>>()
        .join(",");
    let fnv = |seed: u64| {
        text.bytes().fold(seed, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    bytes[8..].copy_from_slice(&fnv(0x8422_2325_cbf2_9ce4).to_be_bytes());
    crate::broker::base64_url(&bytes)
}

/// A standalone node keeps the id its data directory has (a single node's of before, kept
/// through adoption) or takes a random one on first start, as Kafka's `--standalone` format does.
fn standalone_cluster_id(data_dir: &Path) -> std::io::Result<String> {
    Ok(crate::broker::read_cluster_id(data_dir)?
        .unwrap_or_else(|| crate::broker::base64_url(uuid::Uuid::new_v4().as_bytes())))
}

impl Cluster {
    /// Starts this node's quorum node and controller service. Returns once the quorum node is
    /// up (not once a leader is known).
    pub async fn start(broker: &BrokerConfig) -> Result<Arc<Cluster>, ClusterError> {
        let config = broker.cluster.clone();
        let node_id = broker.node_id;
        let dir = broker.data_dir.join("__cluster_metadata");
        // Before the quorum creates its directory: a single node's data has none.
        let adopting = crate::adoption::detect(&broker.data_dir)
            .map_err(|e| ClusterError::Config(format!("{}: {e}", broker.data_dir.display())))?;
        let standalone = config.is_standalone();
        let listen = match config.controller_listener {
            Some(listen) => listen,
            // Nobody else needs to reach a standalone node's quorum: any loopback port will do.
            None if standalone => SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            None => {
                return Err(ClusterError::Config(
                    "a cluster node needs --controller-listener".into(),
                ))
            }
        };
        let (voters, cluster_id): (BTreeMap<u64, String>, String) = if standalone {
            let id = standalone_cluster_id(&broker.data_dir)
                .map_err(|e| ClusterError::Config(format!("{}: {e}", broker.data_dir.display())))?;
            ([(node_id as u64, listen.to_string())].into(), id)
        } else {
            let voters = config.voters.values().map(|v| (v.id as u64, v.address())).collect();
            (voters, cluster_id_for(&config.voters))
        };
        let advertised = voters
            .get(&(node_id as u64))
            .cloned()
            .unwrap_or_else(|| listen.to_string());
        let mut quorum_config = QuorumConfig::new(
            node_id as u64,
            cluster_id.clone(),
            listen.to_string(),
            &dir,
            voters.clone(),
        );
        quorum_config.advertised_addr = Some(advertised.clone());
        quorum_config.snapshot_logs_since_last = config.metadata_snapshot_interval_records;
        let store = MetadataStore::new();
        let image = store.subscribe();
        let store = Arc::new(RwLock::new(store));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(QUORUM_THREADS)
            .thread_name("strom-quorum")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Config(format!("starting the quorum's threads: {e}")))?;
        let started = runtime
            .spawn(Quorum::start(quorum_config, store))
            .await
            .expect("quorum start-up task panicked");
        let quorum = match started {
            Ok(quorum) => Arc::new(quorum),
            Err(e) => {
                // Dropped here, in async code, a runtime would block on its threads and panic.
                runtime.shutdown_background();
                return Err(e.into());
            }
        };
        // Probe a broker once it is half a heartbeat (at least 250 ms) past its next one.
        let heartbeat_ms = config.broker_heartbeat_interval_ms;
        let service = Arc::new(ControllerService::new(
            node_id as u64,
            Arc::downgrade(&quorum),
            image.clone(),
            controller_config(broker),
            heartbeat_ms + (heartbeat_ms / 2).max(250),
        ));
        quorum.set_call_handler(Arc::new(CallHandler(service.clone())));
        let metadata_addr = (!voters.contains_key(&(node_id as u64))).then_some(advertised);
        tracing::info!(node_id, %cluster_id, controller_listener = %quorum.local_addr(), "joined the metadata quorum");
        Ok(Arc::new(Cluster {
            config,
            node_id,
            dir,
            cluster_id,
            quorum,
            runtime: Some(runtime),
            image,
            metadata_addr,
            service,
            fetchers: fetcher::ReplicaFetchers::default(),
            peers: peers::Peers::default(),
            isr_changes: isr::IsrChanges::default(),
            adopting,
            applied: watch::channel(Arc::new(MetadataImage::new())).0,
            refollow: tokio::sync::Notify::new(),
            lease: lease::Lease::new(),
        }))
    }

    /// The active controller's timer, on whichever node leads; runs until `stop`.
    pub(crate) async fn run_controller_timer(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(controller_service::TICK_INTERVAL) => {}
                _ = stop.changed() => return,
            }
            self.service.tick().await;
        }
    }

    /// Waits until this broker's new session is unfenced and the metadata it has followed
    /// since names a leader for every partition: when a standalone node (the only broker of
    /// its cluster) can serve every topic. False if that takes longer than `timeout`.
    pub(crate) async fn until_serving(
        &self,
        mut session: watch::Receiver<Option<lifecycle::Session>>,
        timeout: Duration,
    ) -> bool {
        let mut applied = self.applied.subscribe();
        let image = self.image.clone();
        let serving = async move {
            // The image can still show the last run's session (after a crash) as unfenced.
            if session.wait_for(|s| s.is_some_and(|s| !s.fenced)).await.is_err() {
                return false;
            }
            let registered = image.borrow().offset;
            let found = applied.wait_for(|followed| {
                followed.offset >= registered && followed.partitions().all(|(_, _, state)| state.leader >= 0)
            });
            found.await.is_ok()
        };
        tokio::time::timeout(timeout, serving).await.unwrap_or(false)
    }

    /// The latest committed metadata this node has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// Asks the active controller, wherever it is, retrying while leadership moves.
    pub(crate) async fn call(&self, request: &ControllerRequest, timeout: Duration) -> Result<ControllerReply, String> {
        let deadline = Instant::now() + timeout;
        let text = serde_json::to_string(request).expect("requests encode");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(format!("no active controller answered within {timeout:?}"));
            }
            let answer = match self.quorum.call_leader(text.clone(), remaining).await {
                Ok(answer) => answer,
                // Said the same way every time (callers report each trouble once).
                Err(QuorumError::Timeout { leader, .. }) => {
                    let leader = leader.map_or_else(|| "none known".to_string(), |l| l.to_string());
                    return Err(format!(
                        "no quorum leader answered within {timeout:?}; is a majority of voters up? (leader: {leader})"
                    ));
                }
                Err(e) => return Err(e.to_string()),
            };
            match serde_json::from_str::<ControllerReply>(&answer) {
                Ok(ControllerReply::NotController) => {
                    tokio::time::sleep(NOT_CONTROLLER_BACKOFF.min(remaining)).await;
                }
                Ok(reply) => return Ok(reply),
                Err(e) => return Err(format!("the controller's answer does not decode: {e}")),
            }
        }
    }

    /// Stops the quorum node (after the broker's controlled shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.quorum.shutdown().await {
            tracing::warn!(error = %e, "stopping the metadata quorum node");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropped from async code at the end of `server::run`: a plain drop would block.
            runtime.shutdown_background();
        }
    }
}

/// The controller's settings from the broker's.
fn controller_config(broker: &BrokerConfig) -> ControllerConfig {
    let cluster = &broker.cluster;
    let min_isr = broker
        .topic_defaults
        .get("min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    ControllerConfig {
        broker_session_timeout_ms: cluster.broker_session_timeout_ms,
        default_replication_factor: cluster.default_replication_factor,
        default_num_partitions: broker.num_partitions,
        min_insync_replicas: min_isr,
        unclean_leader_election_enable: cluster.unclean_leader_election_enable,
        auto_leader_rebalance_enable: cluster.auto_leader_rebalance_enable,
        leader_imbalance_check_interval_ms: cluster.leader_imbalance_check_interval_ms,
        producer_id_block_size: 1000,
        partitions_per_topic_max: crate::topics::PARTITIONS_PER_TOPIC_MAX,
    }
}
