//! Strom's client-side commands: topic and consumer group administration, produce, consume,
//! bench, and the fault campaign's workload and checker (verify).
//!
//! Every command speaks the Kafka protocol through librdkafka (the `rdkafka` crate), and
//! directly (`wire.rs`) for the few APIs librdkafka does not expose, so it works against any
//! Kafka-compatible broker, not only Strom. The `strom` binary flattens
//! [`ClientCommand`] into `strom <command>` and calls [`run`].
//!
//! # Layout
//!
//! - `connection.rs`: `--bootstrap-server` and `--config key=value` shared by every command,
//!   turned into an rdkafka `ClientConfig`; the context that prints client errors to stderr.
//! - `topic.rs`: `strom topic create|list|describe|alter|delete` (Kafka admin APIs).
//! - `cluster.rs`: `strom cluster describe|brokers|quorum|elect-leaders|reassign|decommission`
//!   (DescribeCluster, DescribeQuorum, ElectLeaders and the reassignment APIs, over `wire.rs`).
//! - `group.rs`: `strom group list|describe|delete|reset-offsets`, like Kafka's
//!   `kafka-consumer-groups.sh`.
//! - `consumer_protocol.rs`: decoding a member's assignment (Kafka's consumer protocol).
//! - `datetime.rs`: epoch milliseconds or RFC 3339 date-times given on the command line.
//! - `produce.rs`: `strom produce`, lines from stdin to a topic.
//! - `consume.rs`: `strom consume`, records to stdout as plain text or JSON lines.
//! - `bench.rs`: `strom bench produce|consume|e2e`, throughput and latency; `bench/group.rs`:
//!   `strom bench group`, consumer group rebalancing and commit load.
//! - `payload.rs`: the bench payload format (send timestamp and run id) and latency math.
//! - `verify.rs`: `strom verify run`, the fault campaign's workload (queue and transactional
//!   clients recording a history), and `strom verify check`, the checker over that history;
//!   its parts in `verify/`.
//! - `wire.rs`: a minimal blocking Kafka request/response client (kafka-protocol) for the APIs
//!   librdkafka does not expose: FindCoordinator and ConsumerGroupDescribe for KIP-848 groups.
//!
//! # Errors
//!
//! [`run`] returns an `anyhow` chain; [`error_line`] renders it on one line, which is what the
//! binary prints before exiting with status 1.

mod bench;
mod cluster;
mod connection;
mod consume;
mod consumer_protocol;
mod datetime;
mod group;
mod payload;
mod produce;
mod topic;
mod verify;
mod wire;

pub use bench::{BenchArgs, BenchMode, GroupPhase, GroupProtocol};
pub use cluster::{ClusterArgs, ClusterCommand, ControllersAction};
pub use connection::{AdminConnectionArgs, ConnectionArgs};
pub use consume::{ConsumeArgs, OutputFormat};
pub use group::{GroupArgs, GroupCommand, ResetOffsetsArgs, ResetScope, ResetTarget, TopicPartitions};
pub use produce::ProduceArgs;
pub use topic::{TopicArgs, TopicCommand};
pub use verify::{CheckArgs, RunArgs, VerifyArgs, VerifyCommand, Workload};

/// Top-level client commands; the binary flattens these into `strom <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create, list, describe, alter and delete topics.
    Topic(TopicArgs),
    /// List, describe and delete consumer groups; reset their committed offsets.
    Group(GroupArgs),
    /// Look at a cluster (brokers, metadata quorum, partitions out of sync) and move leaders
    /// and replicas (elections, reassignments, decommissioning a broker).
    Cluster(ClusterArgs),
    /// Produce lines read from stdin, one record per line.
    Produce(ProduceArgs),
    /// Consume records and print them to stdout.
    Consume(ConsumeArgs),
    /// Measure produce, consume or end-to-end throughput and latency, or group rebalancing.
    Bench(BenchArgs),
    /// Run the fault campaign's workload and write its history, or check a history.
    Verify(VerifyArgs),
}

/// Runs one client command to completion.
///
/// Blocking: admin calls run on a private single-threaded tokio runtime, produce, consume,
/// bench and verify use rdkafka's synchronous clients on their own threads.
pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Topic(args) => topic::run(args),
        ClientCommand::Group(args) => group::run(args),
        ClientCommand::Cluster(args) => cluster::run(args),
        ClientCommand::Produce(args) => produce::run(args),
        ClientCommand::Consume(args) => consume::run(args),
        ClientCommand::Bench(args) => bench::run(args),
        ClientCommand::Verify(args) => verify::run(args),
    }
}

/// Renders an error and its causes on one line (`outer: cause: root cause`), never a backtrace.
pub fn error_line(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Stands in for the `strom` binary, which flattens [`ClientCommand`].
    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    pub(crate) fn parse(args: &[&str]) -> ClientCommand {
        let mut all = vec!["strom"];
        all.extend_from_slice(args);
        TestCli::try_parse_from(all)
            .unwrap_or_else(|e| panic!("parse {args:?}: {e}"))
            .command
    }

    pub(crate) fn parse_error(args: &[&str]) -> String {
        let mut all = vec!["strom"];
        all.extend_from_slice(args);
        match TestCli::try_parse_from(all) {
            Ok(cli) => panic!("parse {args:?} should fail, got {:?}", cli.command),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn command_tree_is_valid() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn error_line_joins_the_chain() {
        let error = anyhow::anyhow!("connection refused").context("create topic `a`");
        assert_eq!(error_line(&error), "create topic `a`: connection refused");
    }
}
