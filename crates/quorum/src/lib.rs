//! Strom's controller quorum: Raft (on the `openraft` crate) replicating opaque commands to an
//! application state machine. It knows nothing of Kafka; the metadata state machine lives in
//! another crate and plugs in through [`StateMachine`].
//!
//! ```text
//! app ── Quorum::propose(bytes) ──► openraft (leader) ── AppendEntries ──► peers
//!                                        │ committed
//!                                        ▼
//!                          StateMachine::apply(index, bytes)   (every node, same order)
//! ```
//!
//! A node is started with [`Quorum::start`] from a [`QuorumConfig`] (its id, listener address,
//! data dir and the initial voters) and the application's state machine behind an
//! `Arc<RwLock<_>>` that the application keeps to read its state. `propose` works on any node:
//! a follower forwards the command to the leader over the same listener. Voters are added and
//! removed at run time (learner first, as KIP-853 does), and [`Quorum::status`] reports what
//! Kafka's DescribeQuorum needs.
//!
//! # On disk (`<data_dir>/`)
//!
//! `quorum.meta` (node id and cluster id; a dir of another node or cluster is refused),
//! `log/<first index>.log` segments of checksummed frames, `vote.json`, `committed.json`,
//! `purged.json`, and `snapshot.bin` (the latest snapshot). Small files are replaced atomically
//! (temp, fsync, rename, fsync dir); the log is fsynced before an append is acknowledged; a torn
//! log tail is truncated on open. Details in [`log_store`] and [`state_machine`].
//!
//! # Layout
//! - [`config`]: [`QuorumConfig`], its defaults and validation, the openraft config it means.
//! - [`types`]: openraft's type configuration ([`TypeConfig`]): node ids, [`Node`], [`Command`].
//! - [`log_store`]: the segmented log, vote and committed id on disk (openraft's
//!   `RaftLogStorage`).
//! - [`state_machine`]: the [`StateMachine`] trait the application implements, its adapter to
//!   openraft's `RaftStateMachine`, and the snapshot file.
//! - `disk`: the checksummed frame and atomic file replace the two stores share.
//! - `wire`: the request and response frames between nodes.
//! - `network`: the client side (openraft's `RaftNetwork`), pooled connections, forwarding.
//! - `server`: the listener serving peers' RPCs and forwarded proposals.
//! - `quorum`: [`Quorum`], the handle: start, propose, membership changes, status, shutdown.
//! - `error`: [`QuorumError`].

pub mod config;
mod disk;
mod error;
pub mod log_store;
mod network;
mod quorum;
mod server;
pub mod state_machine;
pub mod types;
mod wire;

pub use config::QuorumConfig;
pub use config::FRAME_BYTES_MAX;
pub use error::QuorumError;
pub use log_store::LogStore;
pub use quorum::CallHandler;
pub use quorum::Membership;
pub use quorum::Metrics;
pub use quorum::Quorum;
pub use quorum::QuorumStatus;
pub use quorum::ReplicaStatus;
pub use quorum::Role;
pub use state_machine::StateMachine;
pub use state_machine::StateMachineStore;
pub use types::Command;
pub use types::Node;
pub use types::NodeId;
pub use types::TypeConfig;
