//! The fault campaign's workload and checker, end to end without faults: `strom verify run`
//! against a three-node cluster (replication factor 3) writes a history holding every kind of
//! client observation the checker relies on (sends and their acks, group and free reads,
//! committed and deliberately aborted transactions, a complete drain, a final read of every
//! partition at both isolations), and `strom verify check` finds nothing wrong in it.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Instant;

use strom_testkit::Cluster;
use strom_verify::history::{Event, Isolation, Op, Outcome};

fn strom(args: &[&str]) -> Output {
    let mut command = Command::new(strom_testkit::bin!());
    let _ = command.args(args);
    // Only the flags may say where to connect.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STROM_") {
            let _ = command.env_remove(key);
        }
    }
    command.output().unwrap_or_else(|e| panic!("run strom {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_run_on_a_healthy_cluster_writes_a_full_history_that_checks_clean() {
    let mut cluster = Cluster::start(
        strom_testkit::bin!(),
        3,
        &[
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
            ("replica.lag.time.max.ms", "3000"),
            ("group.initial.rebalance.delay.ms", "0"),
            ("offsets.topic.num.partitions", "6"),
            ("transaction.state.log.num.partitions", "6"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    let scratch = tempfile::tempdir().expect("scratch directory");
    let history = scratch.path().join("history.jsonl");
    let history_arg = history.to_str().expect("a UTF-8 path");

    let started = Instant::now();
    let run = strom(&[
        "verify",
        "run",
        "-b",
        &bootstrap,
        "--history",
        history_arg,
        "--prefix",
        "v",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--producers",
        "1",
        "--members",
        "2",
        "--seekers",
        "1",
        "--transactors",
        "2",
        "--observers",
        "1",
        "--rate",
        "100",
        // 40-odd transactions in 8 s: with one in three aborted, none aborted is a 1e-7 chance.
        "--abort-percent",
        "33",
        "--duration-s",
        "8",
        "--drain-timeout-s",
        "30",
    ]);
    let run_stderr = text(&run.stderr);
    assert!(run.status.success(), "verify run failed: {}\n{run_stderr}", run.status);
    eprintln!("verify run took {:.1} s", started.elapsed().as_secs_f64());

    let events: Vec<Event> =
        strom_verify::history::parse(&std::fs::read_to_string(&history).expect("read history")).expect("parse");
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &events {
        let kind = match &event.op {
            Op::Send { txn: None, .. } => "send",
            Op::Send { txn: Some(_), .. } => "txn send",
            Op::Ack { txn: None, .. } => "ack",
            Op::Ack { txn: Some(_), .. } => "txn ack",
            Op::Read {
                isolation: Isolation::ReadCommitted,
                ..
            } => "read committed",
            Op::Read { .. } => "read uncommitted",
            Op::Assigned { .. } => "assigned",
            Op::Commit { error: None, .. } => "commit",
            Op::TxnOffsets { .. } => "txn offsets",
            Op::TxnEnd {
                outcome: Outcome::Committed,
                ..
            } => "committed",
            Op::TxnEnd {
                outcome: Outcome::Aborted,
                ..
            } => "aborted",
            Op::Seek { .. } => "seek",
            Op::Drained { complete: true, .. } => "drained",
            Op::FinalRead { .. } => "final read",
            Op::FinalEnd { .. } => "final end",
            _ => "other",
        };
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!("history: {kinds:?}");
    let failures: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.op {
            Op::SendFailed { error, .. } => Some(error.as_str()),
            _ => None,
        })
        .take(3)
        .collect();
    let run_stderr = format!("{run_stderr}first send failures: {failures:?}");
    for kind in [
        "send",
        "ack",
        "txn send",
        "txn ack",
        "read committed",
        "read uncommitted",
        "assigned",
        "commit",
        "txn offsets",
        "committed",
        "aborted",
        "final read",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} in the history: {kinds:?}\n{run_stderr}"
        );
    }
    assert_eq!(
        kinds.get("drained"),
        Some(&1),
        "the txn group drained: {kinds:?}\n{run_stderr}"
    );
    // Three topics of three partitions, each read whole at both isolations.
    assert_eq!(kinds.get("final end"), Some(&18), "{kinds:?}\n{run_stderr}");
    // The producer's and the feeder's records: every one answered.
    let sends = kinds["send"];
    let answered = kinds["ack"]
        + events
            .iter()
            .filter(|e| matches!(e.op, Op::SendFailed { txn: None, .. }))
            .count();
    assert_eq!(answered, sends, "every send answered: {kinds:?}");

    let check = strom(&["verify", "check", history_arg]);
    let report = text(&check.stdout);
    eprintln!("verify check:\n{report}");
    assert!(
        check.status.success(),
        "verify check: {}\n{report}{}",
        check.status,
        text(&check.stderr)
    );
    assert!(report.contains("anomalies: none"), "{report}");
    let json = strom(&["verify", "check", "--json", history_arg]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("a JSON report");
    assert!(json["stats"]["acks"].as_u64().unwrap_or(0) > 0, "{json}");
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}
