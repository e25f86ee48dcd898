//! The Strom broker: accepts Kafka clients, answers each API from the storage engine.
//!
//! The server owns sockets and the mapping of domain errors to Kafka error codes; it holds
//! partition logs from `strom-storage` and speaks through `strom-protocol`.
//!
//! # Layout
//! - [`config`]: broker properties by Kafka name, from file, environment and flags.
//! - [`topic_config`]: topic-level configs, validation, translation to storage `LogConfig`.
//! - [`dynamic_config`]: broker configs changed at run time (AlterConfigs on a broker).
//! - [`adoption`]: a data directory of the single-node broker of before, handed to the cluster.
//! - [`broker`]: the shared state of a broker process (topics, ids, the append signal).
//! - [`cluster`]: the node's part in its cluster (a standalone node's too): the metadata quorum,
//!   the image of the committed metadata, the active controller, registration and heartbeats;
//!   [`cluster_config`] its settings.
//! - [`topics`]: the topic registry, following the cluster's metadata.
//! - [`log_dirs`]: the log directories (`log.dirs`): placing, finding and moving partition logs.
//! - [`partition`]: one partition's log behind its lock, and its replication leader's state.
//! - [`groups`]: the group coordinator (`strom-group`) behind its lock, writing to and loading
//!   from `__consumer_offsets`, with its timer task.
//! - [`txns`]: the transaction coordinator (`strom-txn`), one id's work at a time, writing to
//!   and loading from `__transaction_state` (following its leadership), writing
//!   markers here or through their partitions' leaders, with its timer task.
//! - [`internal_topic`]: creating, appending to and replaying the coordinators' topics.
//! - `ownership`: which partitions of their topics the coordinators answer for, following
//!   leadership.
//! - `connection`: one client connection's read-answer-write loop, with admission control.
//! - `handlers`: one module per Kafka API.
//! - `outbox`: responses queued for a connection; fetched records leave by `sendfile`.
//! - [`server`]: the listener, background maintenance, graceful shutdown.

pub mod adoption;
pub mod broker;
mod clock;
pub mod cluster;
pub mod cluster_config;
pub mod config;
mod connection;
pub mod dynamic_config;
pub mod groups;
mod handlers;
pub mod internal_topic;
pub mod log_dirs;
mod log_limit;
mod outbox;
mod ownership;
pub mod partition;
pub mod producer_ids;
pub mod server;
pub mod signals;
pub mod topic_config;
pub mod topics;
pub mod txns;

pub use config::BrokerConfig;
pub use server::{run, ServerError};
