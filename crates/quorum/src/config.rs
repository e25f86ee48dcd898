//! What a node is told at start: who it is, where it listens and stores, the initial voters and
//! the Raft timings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::QuorumError;
use crate::types::NodeId;

/// Largest frame accepted on the quorum listener or read back from the log: one serde_json
/// request or log entry. Anything larger is refused before it is buffered.
pub const FRAME_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// Snapshot chunk size on the wire. A chunk's bytes are a JSON array of numbers (up to 4 bytes
/// each) inside one frame, so four chunks must fit in a frame.
pub(crate) const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_BYTES * 4 + 64 * 1024 < FRAME_BYTES_MAX as u64);

/// Configuration of one quorum node.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id; must be stable for the life of `data_dir`.
    pub node_id: NodeId,
    /// Names the cluster; a data dir written for another cluster is refused.
    pub cluster_id: String,
    /// `host:port` this node's quorum listener binds (and the address peers are told, unless
    /// `advertised_addr` is set).
    pub listen_addr: String,
    /// The address other nodes use to reach this one, if not `listen_addr`.
    pub advertised_addr: Option<String>,
    /// Where the log, vote, snapshot and `quorum.meta` live.
    pub data_dir: PathBuf,
    /// The *initial* voters (id → quorum address), identical on every initial voter, never
    /// changed afterwards: run-time changes go through `add_voter`/`remove_voter`. A voter with
    /// an empty log initializes the cluster with exactly this set (openraft accepts the same
    /// initialization from several nodes); a node not listed starts as a learner and waits to be
    /// added.
    pub voters: BTreeMap<NodeId, String>,
    /// A follower that hears no leader for a random time in this range starts an election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How often the leader sends heartbeats; well below `election_timeout_min`.
    pub heartbeat_interval: Duration,
    /// Build a snapshot after this many log entries since the last one (openraft's
    /// `SnapshotPolicy::LogsSinceLast`).
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log below the latest snapshot, so a slightly lagging follower catches
    /// up from the log rather than a snapshot.
    pub logs_to_keep_after_snapshot: u64,
    /// A log segment file is closed and a new one started beyond this size; purging drops whole
    /// segments, so this bounds the space purged logs can hold.
    pub log_segment_bytes: u64,
    /// Bound on one Raft RPC (connect, send, answer) other than snapshot chunks.
    pub rpc_timeout: Duration,
    /// How long `propose` waits for a command to be committed and applied (and forwarded).
    pub propose_timeout: Duration,
}

impl QuorumConfig {
    /// A config with the defaults below for everything but identity, addresses and storage.
    pub fn new(
        node_id: NodeId,
        cluster_id: impl Into<String>,
        listen_addr: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        voters: BTreeMap<NodeId, String>,
    ) -> Self {
        QuorumConfig {
            node_id,
            cluster_id: cluster_id.into(),
            listen_addr: listen_addr.into(),
            advertised_addr: None,
            data_dir: data_dir.into(),
            voters,
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            heartbeat_interval: Duration::from_millis(200),
            snapshot_logs_since_last: 1000,
            logs_to_keep_after_snapshot: 100,
            log_segment_bytes: 8 * 1024 * 1024,
            rpc_timeout: Duration::from_millis(2000),
            propose_timeout: Duration::from_secs(10),
        }
    }

    /// The address peers reach this node at.
    pub fn advertised(&self) -> &str {
        self.advertised_addr.as_deref().unwrap_or(&self.listen_addr)
    }

    pub(crate) fn validate(&self) -> Result<(), QuorumError> {
        let invalid = |why: String| Err(QuorumError::InvalidConfig(why));
        if self.cluster_id.is_empty() {
            return invalid("cluster_id is empty".to_string());
        }
        if self.voters.is_empty() {
            return invalid("the initial voter set is empty".to_string());
        }
        if let Some(addr) = self.voters.get(&self.node_id) {
            if addr != self.advertised() {
                return invalid(format!(
                    "voters lists node {} at {addr} but this node advertises {}",
                    self.node_id,
                    self.advertised()
                ));
            }
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.election_timeout_min {
            return invalid(format!(
                "heartbeat_interval {:?} must be non-zero and below election_timeout_min {:?}",
                self.heartbeat_interval, self.election_timeout_min
            ));
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return invalid(format!(
                "election_timeout_min {:?} must be below election_timeout_max {:?}",
                self.election_timeout_min, self.election_timeout_max
            ));
        }
        if self.snapshot_logs_since_last == 0 {
            return invalid("snapshot_logs_since_last must be at least 1".to_string());
        }
        if self.log_segment_bytes == 0 {
            return invalid("log_segment_bytes must be at least 1".to_string());
        }
        if self.rpc_timeout.is_zero() || self.propose_timeout.is_zero() {
            return invalid("rpc_timeout and propose_timeout must be non-zero".to_string());
        }
        Ok(())
    }

    /// The openraft config these settings mean.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        let config = openraft::Config {
            cluster_name: self.cluster_id.clone(),
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            install_snapshot_timeout: (self.rpc_timeout.as_millis() as u64).max(1000) * 5,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.logs_to_keep_after_snapshot,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        };
        config.validate().map_err(|e| QuorumError::InvalidConfig(e.to_string()))
    }
}
