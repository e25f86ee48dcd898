//! Test kit for Strom's integration tests: real `strom` processes, driven by real clients.
//!
//! Every test starts its own broker on its own loopback port and its own temporary directory,
//! so tests in one file run in parallel without sharing state. Every wait is a poll of a
//! condition with a deadline; nothing synchronises by sleeping a fixed time.
//!
//! # Layout
//!
//! - [`broker`]: start, stop (SIGTERM / SIGKILL), restart a `strom server` process; its stderr
//!   is captured to a file whose tail is printed when a test panics.
//! - [`cluster`]: several `strom server` processes forming one cluster (every node a broker and
//!   a controller voter), each on its own ports and data directory.
//! - [`wait`]: [`wait::poll_until`], the one way tests wait for something.
//! - [`client`]: blocking wrappers over `rdkafka` (producer, assigned consumer, admin) whose
//!   every call has a timeout.
//! - [`wire`]: a raw-socket Kafka client built on the `kafka-protocol` encoders, for requests a
//!   well-behaved client would never send (bad frames, corrupt batches, duplicate retries),
//!   plus batch builders: [`wire::record_batch`] (exactly one valid v2 batch),
//!   [`wire::raw_batch`] (a hand-built batch around arbitrary record bytes, correctly sealed)
//!   and [`wire::reseal_batch`] (recompute the CRC after editing a batch).
//!
//! # Debugging a failure
//!
//! A panicking test prints the tail of its broker's log. Set `TESTKIT_KEEP_SCRATCH=1` to keep
//! the scratch directory (data directory and full log); its path is printed. Brokers never
//! see the test's `STROM_*` environment variables: only `--set` configures them.
//!
//! # Known client limitations
//!
//! `rdkafka` 0.39 drops the per-resource error codes of DescribeConfigs and AlterConfigs
//! ([`Admin::describe_topic_configs`], [`Admin::alter_topic_configs`]); check those errors with
//! the wire client. Its `assign()` needs a `group.id`, which [`Consumer`] sets but never uses.

pub mod broker;
pub mod client;
pub mod cluster;
pub mod group;
pub mod wait;
pub mod wire;

pub use broker::{Broker, BrokerBuilder};
pub use client::{Admin, Consumed, Consumer, Producer, Rec};
pub use cluster::Cluster;
pub use group::GroupMember;
pub use wait::poll_until;
pub use wire::WireClient;

/// The `strom` binary under test, for tests in the `strom` package:
/// `strom_testkit::bin!()` expands to `env!("CARGO_BIN_EXE_strom")` as a `&Path`.
#[macro_export]
macro_rules! bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_strom"))
    };
}
