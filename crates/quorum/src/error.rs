//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

use crate::types::NodeId;

/// What can go wrong starting, driving or stopping a quorum node.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("invalid quorum config: {0}")]
    InvalidConfig(String),

    #[error(
        "data dir {dir} belongs to node {found_node_id} of cluster {found_cluster_id:?}, \
         but this is node {node_id} of cluster {cluster_id:?}; refusing to start"
    )]
    DataDirMismatch {
        dir: PathBuf,
        found_node_id: NodeId,
        found_cluster_id: String,
        node_id: NodeId,
        cluster_id: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("corrupt quorum data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("this node is not the leader{}", match (leader, leader_addr) {
        (Some(id), Some(addr)) => format!("; the leader is node {id} at {addr}"),
        (Some(id), None) => format!("; the leader is node {id}"),
        _ => "; no leader is known".to_string(),
    })]
    NotLeader {
        leader: Option<NodeId>,
        leader_addr: Option<String>,
    },

    #[error("timed out after {after_ms} ms {what} (leader: {})",
        leader.map_or("none known".to_string(), |id| format!("node {id}")))]
    Timeout {
        what: String,
        after_ms: u64,
        leader: Option<NodeId>,
    },

    #[error("the quorum node is shutting down")]
    ShuttingDown,

    #[error("forwarding to node {leader} at {addr} failed: {reason}")]
    Forward {
        leader: NodeId,
        addr: String,
        reason: String,
    },

    #[error("raft: {0}")]
    Raft(String),
}

impl QuorumError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        QuorumError::Io {
            context: context.into(),
            source,
        }
    }
}
