//! Consumer groups as pure logic: Kafka's classic group protocol, committed offsets, and the
//! records that make both durable.
//!
//! No sockets, no files, no clock: the server feeds requests and the time in, carries out the
//! [`Output`]s (write a record, answer a parked JoinGroup or SyncGroup), and ticks the
//! coordinator when [`Coordinator::next_deadline`] says. That makes every rebalance, timeout
//! and fencing rule testable with a fake clock.
//!
//! # Layout
//! - [`coordinator`]: the requests (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets,
//!   admin), the rebalance protocol, session and rebalance timeouts.
//! - [`consumer`]: the KIP-848 consumer group protocol: heartbeats, server-side assignors
//!   (uniform, range), incremental reconciliation, member epochs.
//! - [`group`]: one group's state, members and offsets.
//! - [`records`]: the `__consumer_offsets` key and value layouts (Kafka's), and which partition
//!   holds a group.

pub mod consumer;
pub mod coordinator;
pub mod group;
pub mod records;

pub use consumer::{
    Assignment, ConsumerGroupConfig, ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatAnswer,
    ConsumerMemberDescription,
};
pub use coordinator::{
    Coordinator, DescribedMember, GroupConfig, GroupDescription, GroupError, GroupListing, JoinAnswer, JoinRequest,
    JoinedMember, LeavingMember, MemberRef, OffsetToCommit, Output, SyncAnswer, SyncRequest,
};
pub use group::{GroupState, Token};
pub use records::{
    partition_for, ConsumerGroupSnapshot, ConsumerMemberSnapshot, GroupMetadata, MemberMetadata, OffsetCommit, Record,
};
