//! `strom verify run`: the fault campaign's workload runner; `strom verify check`: the checker
//! over the history it wrote.
//!
//! `run` drives a cluster through librdkafka only, so it runs unchanged against Apache Kafka,
//! and writes every client call and its answer to a history (JSONL, the format of
//! `strom_verify::history`). Two workloads, each on its own topics:
//!
//! - **queue** (`{prefix}-queue`): idempotent producers send unique values to explicit
//!   partitions at `--rate`; a consumer group (`{prefix}-queue-group`, eager range assignment,
//!   manual commits) reads them; seekers read every partition without a group and jump back
//!   now and then.
//! - **txn** (`{prefix}-txn-in` to `{prefix}-txn-out`): a feeder writes inputs; transactors
//!   (group `{prefix}-txn-group`) consume, transform and produce in transactions that carry
//!   their consumed offsets, aborting some on purpose (`--abort-percent`); observers read the
//!   output read_committed.
//!
//! Values are unique within a run, and the checker must see every write to the topics, so a
//! run creates its topics or finds them empty (a run of its own needs a `--prefix` of its own).
//!
//! It runs until SIGTERM or SIGINT (or `--duration-s`), then drains: producers stop and wait
//! for their last answers, the groups consume until their committed offsets reach the inputs'
//! ends (the txn group's result is the history's `drained` event), and finally every partition
//! is read whole, once with each isolation level. A second signal ends the process at once.
//! Client errors are expected under faults: they go to the history where they are answers, and
//! to stderr at most once a second per client; only a setup error ends `run` with a failure.
//!
//! # Layout
//!
//! - `verify/history_writer.rs`: the one thread that owns the history file; [`Recorder`]s
//!   stamp events with the time and their client's name and hand them to it.
//! - `verify/clients.rs`: what every workload client shares: configurations, the producer
//!   context that records answers, the group member context that records assignments with the
//!   group generation (through librdkafka's C API), bounded closing, error rate limiting.
//! - `verify/runner.rs`: topics, starting the workloads, waiting for the stop, the drain.
//! - `verify/queue.rs`: producers (the txn feeder too), group members, readers without a
//!   group (seekers, and the txn observers).
//! - `verify/txn.rs`: the transactors' consume-transform-produce loops.
//! - `verify/final_read.rs`: reading every partition whole after the drain.
//! - `verify/check.rs`: `strom verify check`.
//!
//! [`Recorder`]: history_writer::Recorder

mod check;
mod clients;
mod final_read;
mod history_writer;
mod queue;
mod runner;
mod txn;

use std::path::PathBuf;

use crate::connection::ConnectionArgs;

/// `strom verify <command>`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(subcommand)]
    pub command: VerifyCommand,
}

/// The verify subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VerifyCommand {
    /// Run the workloads against a cluster until SIGTERM/SIGINT, then drain and read every
    /// partition; writes the history.
    Run(RunArgs),
    /// Check a history: print anomalies, exit 1 if there is any.
    Check(CheckArgs),
}

/// A workload of `strom verify run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Idempotent producers, a consumer group with manual commits, seeking readers.
    Queue,
    /// Consume-transform-produce in transactions, read_committed observers.
    Txn,
}

/// `strom verify run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// History file to write (JSONL); must not exist yet.
    #[arg(long)]
    pub history: PathBuf,
    /// Workloads to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::Queue, Workload::Txn])]
    pub workload: Vec<Workload>,
    /// Prefix of the topic and group names; its topics must be new or empty.
    #[arg(long, default_value = "verify")]
    pub prefix: String,
    /// Partitions of each topic created.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub partitions: i32,
    /// Replication factor of each topic created; `min.insync.replicas` is 2 from 3 up, else 1.
    #[arg(long = "replication-factor", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replication_factor: i32,
    /// Queue workload: idempotent producers.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub producers: u32,
    /// Queue workload: members of the consumer group.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub members: u32,
    /// Queue workload: readers without a group that seek back now and then.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub seekers: u32,
    /// Txn workload: consume-transform-produce loops, each with its own transactional id.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub transactors: u32,
    /// Txn workload: read_committed readers of the output topic.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub observers: u32,
    /// Records per second of each producer and of the feeder.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Txn workload: share of the transactions aborted on purpose, percent.
    #[arg(long = "abort-percent", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub abort_percent: u32,
    /// Bound on the drain: the producers' last answers and the groups catching up, seconds.
    #[arg(long = "drain-timeout-s", default_value_t = 120)]
    pub drain_timeout_s: u64,
    /// Stop by itself after this many seconds, as if sent SIGTERM.
    #[arg(long = "duration-s")]
    pub duration_s: Option<u64>,
    /// librdkafka debug contexts for the idempotent producers (`eos,msg,broker`, ...), whose
    /// lines go to stderr: for looking into a producer that stopped getting answers.
    #[arg(long = "producer-debug", value_name = "CONTEXTS")]
    pub producer_debug: Option<String>,
}

/// `strom verify check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The history a `strom verify run` wrote.
    pub history: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The nemesis's fault log (JSONL, `{"kind": .., "start": ms, "end": ms, ..}` per line):
    /// report how long the workload was unavailable during each fault.
    #[arg(long, value_name = "FAULTS.jsonl")]
    pub faults: Option<PathBuf>,
}

impl RunArgs {
    fn runs(&self, workload: Workload) -> bool {
        self.workload.contains(&workload)
    }
}

pub(crate) fn run(args: VerifyArgs) -> anyhow::Result<()> {
    match args.command {
        VerifyCommand::Run(args) => runner::run(args),
        VerifyCommand::Check(args) => check::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, parse_error};
    use crate::ClientCommand;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut all = vec!["verify", "run"];
        all.extend_from_slice(args);
        match parse(&all) {
            ClientCommand::Verify(VerifyArgs {
                command: VerifyCommand::Run(args),
            }) => args,
            other => panic!("expected verify run, got {other:?}"),
        }
    }

    #[test]
    fn run_defaults() {
        let args = run_args(&["--history", "h.jsonl"]);
        assert_eq!(args.history, PathBuf::from("h.jsonl"));
        assert_eq!(args.workload, vec![Workload::Queue, Workload::Txn]);
        assert_eq!(args.prefix, "verify");
        assert_eq!((args.partitions, args.replication_factor), (3, 3));
        assert_eq!((args.producers, args.members, args.seekers), (2, 2, 1));
        assert_eq!((args.transactors, args.observers), (2, 1));
        assert_eq!((args.rate, args.drain_timeout_s, args.duration_s), (100, 120, None));
        assert_eq!(args.abort_percent, 10);
        assert!(args.runs(Workload::Txn));
    }

    #[test]
    fn run_flags() {
        let args = run_args(&[
            "-b",
            "h:1,h:2",
            "--history",
            "/tmp/x",
            "--workload",
            "txn",
            "--prefix",
            "p",
            "--partitions",
            "6",
            "--replication-factor",
            "1",
            "--producers",
            "0",
            "--members",
            "3",
            "--seekers",
            "0",
            "--transactors",
            "4",
            "--observers",
            "2",
            "--rate",
            "10",
            "--abort-percent",
            "50",
            "--drain-timeout-s",
            "30",
            "--duration-s",
            "8",
            "-X",
            "socket.timeout.ms=5000",
        ]);
        assert_eq!(args.connection.bootstrap_server, "h:1,h:2");
        assert_eq!(args.workload, vec![Workload::Txn]);
        assert!(!args.runs(Workload::Queue));
        assert_eq!(
            (args.prefix.as_str(), args.partitions, args.replication_factor),
            ("p", 6, 1)
        );
        assert_eq!((args.producers, args.members, args.seekers), (0, 3, 0));
        assert_eq!((args.transactors, args.observers, args.rate), (4, 2, 10));
        assert_eq!(args.abort_percent, 50);
        assert_eq!((args.drain_timeout_s, args.duration_s), (30, Some(8)));
        assert_eq!(
            args.connection.config,
            vec![("socket.timeout.ms".to_string(), "5000".to_string())]
        );
        let both = run_args(&["--history", "h", "--workload", "queue,txn"]);
        assert_eq!(both.workload, vec![Workload::Queue, Workload::Txn]);
    }

    #[test]
    fn run_refuses_bad_values() {
        let _ = parse_error(&["verify", "run"]);
        let _ = parse_error(&["verify", "run", "--history", "h", "--workload", "stream"]);
        let _ = parse_error(&["verify", "run", "--history", "h", "--partitions", "0"]);
        let _ = parse_error(&["verify", "run", "--history", "h", "--rate", "0"]);
        let _ = parse_error(&["verify", "run", "--history", "h", "--replication-factor", "0"]);
        let _ = parse_error(&["verify", "run", "--history", "h", "--abort-percent", "101"]);
    }

    #[test]
    fn check_flags() {
        let ClientCommand::Verify(VerifyArgs {
            command: VerifyCommand::Check(args),
        }) = parse(&["verify", "check", "h.jsonl", "--json", "--faults", "f.jsonl"])
        else {
            panic!("expected verify check");
        };
        assert_eq!(args.history, PathBuf::from("h.jsonl"));
        assert!(args.json);
        assert_eq!(args.faults, Some(PathBuf::from("f.jsonl")));
        let _ = parse_error(&["verify", "check"]);
    }
}
