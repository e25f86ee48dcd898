//! Strom's cluster metadata as pure logic: what the metadata quorum agrees on, the image every
//! broker answers from, and the active controller's decisions.
//!
//! No sockets, no files, no clock: the controller is handed the time, the quorum (openraft,
//! in the server) commits the records it plans and hands them back to [`MetadataImage::apply`]
//! on every node, in the same order. This is Kafka's KRaft design: the log of records is the
//! truth, the image is derived from it, and a snapshot of the image bounds the log.
//!
//! # Layout
//! - [`records`]: the metadata log's records (brokers, topics, partitions, configs, producer id
//!   blocks, features) and their encoding as one quorum command per batch.
//! - [`image`]: the committed state, applying records and reporting what changed; also the
//!   snapshot.
//! - [`election`]: leader election and ISR rules for one partition (KIP-966's eligible leader
//!   replicas; unclean election only when allowed).
//! - [`placement`]: rack-aware replica placement.
//! - [`controller`]: the active controller's operations: registration, heartbeats and fencing,
//!   controlled shutdown, topics and partitions, configs, AlterPartition, elections,
//!   reassignments, producer id blocks; each returns a plan of records and an answer.

pub mod controller;
pub mod election;
pub mod image;
pub mod placement;
pub mod records;

pub use controller::{Controller, ControllerConfig, ControllerError, Plan};
pub use image::{Change, MetadataImage, TopicImage};
pub use records::{
    decode_batch, encode_batch, BrokerId, BrokerRegistration, ConfigResource, Endpoint, LeaderRecoveryState,
    MetadataRecord, PartitionChange, PartitionState, NO_LEADER,
};
