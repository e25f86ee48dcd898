//! Kafka's ISR replication of one partition as pure logic: no sockets, no files, no clock.
//!
//! The broker feeds in what happens (a local append, a follower's fetch, the time, a metadata
//! change) and gets back what to do (move the high watermark, ask the controller to change the
//! ISR, answer a waiting acks=all produce, truncate a follower's log). It stores nothing: the
//! leader's view of its followers is rebuilt from their next fetches when leadership moves.
//!
//! # Layout
//! - [`leader`]: followers' progress, the high watermark, ISR shrink and expansion proposals
//!   (AlterPartition), acks=all.
//! - [`follower`]: the diverging-epoch check a leader applies to a follower's fetch, and where
//!   the follower truncates.

pub mod follower;
pub mod leader;

/// A broker's node id.
pub type BrokerId = i32;

pub use follower::{diverging_epoch, truncation, EpochEndOffset, Truncation};
pub use leader::{AcksAll, Assignment, FetchOutcome, IsrProposal, Leader, NotEnoughReplicas, ReplicaConfig};
