//! `strom bench group`: how fast consumer groups settle, and what explicit commits cost.
//!
//! Phases (`--phases`), run in this order whatever order they are given in, each with a fresh
//! group (ids are unique per run):
//!
//! - `first-record`: `--prefill` records are produced to the topic, then a group of one member
//!   subscribes (reading from the earliest offset); time from `subscribe` to the first record.
//! - `join`: `--members` consumers subscribe; time from the last `subscribe` until the group is
//!   stable.
//! - `leave`: then the member owning the most partitions closes; time from the start of its
//!   close until the others are stable again. Implies `join`.
//! - `commit`: a group of one member owns every partition, pauses fetching, and commits an
//!   explicit offset (commit `i` commits offset `i`) for every partition `--commit-rate` times
//!   a second for `--duration-s`, synchronously; reports the acknowledged rate and the latency
//!   from the commit call to its acknowledgement.
//!
//! Stable means every partition of the topic is assigned to exactly one member and the
//! members' partition counts differ by at most one: the assignors of both protocols are
//! balanced over one topic, and the balance check is what keeps the first member of a fresh
//! group, which briefly owns every partition, from counting as a settled group (this holds
//! while there are at least as many partitions as members). Assignments are read with
//! librdkafka's `assignment()`: a partition counts once the member's client applied it.
//!
//! All members live in this process, each its own librdkafka client. One thread polls them
//! round-robin without waiting (a member makes no progress through a rebalance unless polled);
//! closing members are dropped on their own threads, which poll them until closed. Every wait
//! is bounded by `--timeout-ms`.
//!
//! The commit phase prints `commit phase: start` and `commit phase: end` on stderr at its
//! bounds, so a script can sample the broker's CPU over exactly that window
//! (`scripts/bench.sh group`).

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{due_offset_ns, latency_histogram, produce, BenchArgs, Budget, LatencySummary, SETUP_TIMEOUT};
use crate::connection::StderrContext;
use crate::payload::Clock;

/// `--partitions` of the group mode.
pub(super) const PARTITIONS_DEFAULT: i32 = 100;
/// `--timeout-ms` of the group mode: the bound on each wait.
pub(super) const WAIT_DEFAULT: Duration = Duration::from_secs(60);
/// `--prefill` of the group mode.
const PREFILL_DEFAULT: u64 = 1000;
/// Length of the commit phase without `--duration-s`.
const COMMIT_DURATION_DEFAULT: Duration = Duration::from_secs(10);
/// Pause between polling rounds over the members.
const ROUND_PAUSE: Duration = Duration::from_millis(1);
/// Most events served from one member per round, so a busy member does not starve the rest.
const EVENTS_PER_ROUND_MAX: usize = 64;
/// How long closing a group's members may take before the bench moves on.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Longest single poll of the one-member phases; a poll returns early on any event.
const POLL_SLICE: Duration = Duration::from_millis(10);

/// librdkafka's `group.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat; the group's leader assigns.
    Classic,
    /// KIP-848 ConsumerGroupHeartbeat; the broker assigns.
    Consumer,
}

impl GroupProtocol {
    fn name(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

/// What `strom bench group` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum GroupPhase {
    /// A fresh one-member group: from subscribing to the first record (after `--prefill`).
    FirstRecord,
    /// A fresh group of `--members`: from all subscribed to stable.
    Join,
    /// One member of the joined group closes: from the close to the others stable again.
    Leave,
    /// One member commits every partition at `--commit-rate` for `--duration-s`.
    Commit,
}

impl GroupPhase {
    pub(super) const ALL: [GroupPhase; 4] = [
        GroupPhase::FirstRecord,
        GroupPhase::Join,
        GroupPhase::Leave,
        GroupPhase::Commit,
    ];
}

pub(super) fn run(args: &BenchArgs, clock: Clock, run_id: u64) -> anyhow::Result<GroupSummary> {
    let has = |phase| args.phases.contains(&phase);
    if has(GroupPhase::Leave) && args.members < 2 {
        bail!("--phases leave needs --members 2 or more");
    }
    let partitions = partition_count(args)?;
    if partitions != args.partitions() {
        eprintln!(
            "topic {} exists with {partitions} partition(s); using those",
            args.topic
        );
    }
    let timeout = args.timeout();
    let mut summary = GroupSummary {
        topic: args.topic.clone(),
        protocol: args.group_protocol,
        members: args.members,
        partitions,
        first_record: None,
        join: None,
        leave: None,
        commit: None,
    };
    if has(GroupPhase::FirstRecord) {
        summary.first_record = Some(first_record(args, clock, run_id, timeout)?);
        eprintln!("first record: done");
    }
    if has(GroupPhase::Join) || has(GroupPhase::Leave) {
        let mut group = Group::new(args, &group_id(run_id, "join"), args.members, "latest")?;
        group.subscribe(&args.topic)?;
        let subscribed = Instant::now();
        let stable = group.wait_stable(&args.topic, partitions, subscribed + timeout, "join")?;
        summary.join = Some(stable - subscribed);
        eprintln!("join: done");
        if has(GroupPhase::Leave) {
            summary.leave = Some(leave(&mut group, &args.topic, partitions, timeout)?);
            eprintln!("leave: done");
        }
        group.close();
    }
    if has(GroupPhase::Commit) {
        summary.commit = Some(commit(args, run_id, partitions, timeout)?);
    }
    Ok(summary)
}

/// A group id no earlier run used.
fn group_id(run_id: u64, phase: &str) -> String {
    format!("strom-bench-{run_id:016x}-{phase}")
}

/// The topic's partition count as the broker reports it (the topic may predate this run).
fn partition_count(args: &BenchArgs) -> anyhow::Result<i32> {
    let client: BaseConsumer<StderrContext> = args
        .connection
        .client_config(&[])
        .create_with_context(StderrContext::default())
        .context("create metadata client")?;
    let metadata = client
        .fetch_metadata(Some(&args.topic), SETUP_TIMEOUT)
        .with_context(|| format!("fetch metadata of `{}`", args.topic))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == args.topic)
        .map_or(0, |t| t.partitions().len());
    if count == 0 {
        bail!("topic `{}` has no partitions in metadata", args.topic);
    }
    i32::try_from(count).context("partition count")
}

/// Time from subscribing a fresh one-member group to its first record.
fn first_record(args: &BenchArgs, clock: Clock, run_id: u64, timeout: Duration) -> anyhow::Result<FirstRecord> {
    let prefilled = args.prefill.unwrap_or(PREFILL_DEFAULT);
    if prefilled > 0 {
        let produced = produce(args, clock, run_id, Budget::Messages(prefilled), None)?;
        if produced.errors > 0 || produced.shortfall.is_some() {
            bail!(
                "prefill: {} of {prefilled} record(s) failed: {}",
                produced.errors,
                produced.shortfall.or(produced.first_error).unwrap_or_default()
            );
        }
    }
    let group = Group::new(args, &group_id(run_id, "first-record"), 1, "earliest")?;
    let member = &group.members[0];
    let started = Instant::now();
    member.subscribe(&[&args.topic]).context("subscribe")?;
    let deadline = started + timeout;
    let mut last_error = None;
    let elapsed = loop {
        match member.poll(POLL_SLICE) {
            Some(Ok(message)) if message.topic() == args.topic => break started.elapsed(),
            Some(Ok(_)) | None => {}
            Some(Err(error)) => last_error = Some(error.to_string()),
        }
        if Instant::now() >= deadline {
            bail!(
                "first-record: no record of `{}` within {} ms of subscribing{}",
                args.topic,
                timeout.as_millis(),
                error_suffix(last_error.as_deref())
            );
        }
    };
    group.close();
    Ok(FirstRecord { elapsed, prefilled })
}

/// Closes the member owning the most partitions and waits for the others to be stable.
fn leave(group: &mut Group, topic: &str, partitions: i32, timeout: Duration) -> anyhow::Result<Leave> {
    let assignments = group.assignments(topic)?;
    let index = (0..assignments.len())
        .max_by_key(|&i| assignments[i].len())
        .expect("leave needs members");
    let leaving = group.members.swap_remove(index);
    let started = Instant::now();
    thread::scope(|scope| {
        // Dropping a consumer closes it: leaves the group, polling itself until closed.
        let closer = scope.spawn(move || {
            drop(leaving);
            started.elapsed()
        });
        let stable = group.wait_stable(topic, partitions, started + timeout, "leave");
        let close = closer.join().expect("closing thread panicked");
        Ok(Leave {
            stable: stable? - started,
            close,
        })
    })
}

/// Explicit commits of every partition at a rate, from a member that owns them all.
///
/// Commits are synchronous, one at a time: librdkafka reports an asynchronous commit's
/// outcome only to an `offset_commit_cb`, which the rdkafka crate's consumer does not set. A
/// commit slower than the interval delays the next ones, which shows in the achieved rate.
fn commit(args: &BenchArgs, run_id: u64, partitions: i32, timeout: Duration) -> anyhow::Result<CommitSummary> {
    let mut group = Group::new(args, &group_id(run_id, "commit"), 1, "latest")?;
    group.subscribe(&args.topic)?;
    let subscribed = Instant::now();
    let _ = group.wait_stable(&args.topic, partitions, subscribed + timeout, "commit: join")?;
    let member = &group.members[0];
    let assignment = member.assignment().context("assignment")?;
    // Only commits should load the broker: no fetches.
    member.pause(&assignment).context("pause fetching")?;
    let owned: Vec<i32> = assignment.elements().iter().map(|e| e.partition()).collect();
    let duration = args.duration_s.map_or(COMMIT_DURATION_DEFAULT, Duration::from_secs);
    let rate = args.commit_rate;
    let mut log = CommitLog::default();
    eprintln!("commit phase: start");
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let due = started + Duration::from_nanos(due_offset_ns(sent, rate));
        if due >= started + duration {
            break;
        }
        // Serve the member's queue while waiting; a poll returns early on any event.
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            let _ = member.poll((due - now).min(POLL_SLICE));
        }
        let mut list = TopicPartitionList::with_capacity(owned.len());
        let offset = i64::try_from(sent).context("commit index")?;
        for &partition in &owned {
            list.add_partition_offset(&args.topic, partition, Offset::Offset(offset))
                .context("build commit list")?;
        }
        let call = Instant::now();
        let result = member.commit(&list, CommitMode::Sync);
        log.book(result.map_err(|e| e.to_string()), call.elapsed());
        sent += 1;
    }
    let elapsed = started.elapsed().max(duration);
    eprintln!("commit phase: end");
    let summary = CommitSummary {
        partitions: owned.len(),
        rate_requested: rate,
        sent,
        acknowledged: log.acknowledged,
        errors: log.failed,
        first_error: log.first_error,
        elapsed,
        latency: LatencySummary::from_histogram(&log.latency),
    };
    group.close();
    Ok(summary)
}

fn error_suffix(error: Option<&str>) -> String {
    error.map(|e| format!(" (last client error: {e})")).unwrap_or_default()
}

/// A member's client context: prints client errors.
#[derive(Default)]
struct MemberContext {
    printer: StderrContext,
}

impl ClientContext for MemberContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.printer.error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.printer.log(level, fac, message);
    }
}

impl ConsumerContext for MemberContext {}

/// Outcomes of the commit phase's commits.
struct CommitLog {
    acknowledged: u64,
    failed: u64,
    first_error: Option<String>,
    /// Commit call to acknowledgement of the acknowledged commits, ns.
    latency: Histogram<u64>,
}

impl Default for CommitLog {
    fn default() -> Self {
        CommitLog {
            acknowledged: 0,
            failed: 0,
            first_error: None,
            latency: latency_histogram(),
        }
    }
}

impl CommitLog {
    fn book(&mut self, result: Result<(), String>, latency: Duration) {
        match result {
            Ok(()) => {
                self.acknowledged += 1;
                let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                self.latency.saturating_record(ns);
            }
            Err(error) => {
                self.failed += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(error);
                }
            }
        }
    }
}

/// The members of one group, all in this process.
struct Group {
    id: String,
    members: Vec<BaseConsumer<MemberContext>>,
    last_error: Option<String>,
}

impl Group {
    fn new(args: &BenchArgs, id: &str, count: u32, offset_reset: &str) -> anyhow::Result<Group> {
        let members = (0..count)
            .map(|i| {
                // Session and heartbeat timing stay librdkafka's (and with the consumer
                // protocol the broker's: librdkafka refuses them there).
                args.connection
                    .client_config(&[
                        ("group.id", id.to_string()),
                        ("group.protocol", args.group_protocol.name().to_string()),
                        ("client.id", format!("strom-bench-member-{i}")),
                        ("enable.auto.commit", "false".to_string()),
                        ("enable.auto.offset.store", "false".to_string()),
                        ("enable.partition.eof", "false".to_string()),
                        ("auto.offset.reset", offset_reset.to_string()),
                    ])
                    .create_with_context(MemberContext::default())
                    .with_context(|| format!("create group member {i}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Group {
            id: id.to_string(),
            members,
            last_error: None,
        })
    }

    fn subscribe(&self, topic: &str) -> anyhow::Result<()> {
        for member in &self.members {
            member.subscribe(&[topic]).context("subscribe")?;
        }
        Ok(())
    }

    /// Serves every member's queue without waiting: rebalances, acknowledgements, records
    /// (dropped). Remembers the last consumer error.
    fn pump(&mut self) {
        for member in &self.members {
            for _ in 0..EVENTS_PER_ROUND_MAX {
                match member.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(_)) => {}
                    Some(Err(error)) => self.last_error = Some(error.to_string()),
                }
            }
        }
    }

    /// Each member's partitions of `topic`.
    fn assignments(&self, topic: &str) -> anyhow::Result<Vec<Vec<i32>>> {
        self.members
            .iter()
            .map(|member| {
                let list = member.assignment().context("assignment")?;
                Ok(list
                    .elements()
                    .iter()
                    .filter(|e| e.topic() == topic)
                    .map(|e| e.partition())
                    .collect())
            })
            .collect()
    }

    /// Polls every member until the group is stable over `partitions` partitions of `topic`;
    /// returns when it was first seen stable.
    fn wait_stable(&mut self, topic: &str, partitions: i32, deadline: Instant, what: &str) -> anyhow::Result<Instant> {
        loop {
            self.pump();
            let coverage = Coverage::of(&self.assignments(topic)?, partitions);
            let now = Instant::now();
            if coverage.is_stable() {
                return Ok(now);
            }
            if now >= deadline {
                bail!(
                    "{what}: group {} of {} member(s) not stable by the deadline (--timeout-ms): {coverage}{}",
                    self.id,
                    self.members.len(),
                    error_suffix(self.last_error.as_deref())
                );
            }
            thread::sleep(ROUND_PAUSE);
        }
    }

    /// Closes every member at once (leaving the group), waiting at most [`CLOSE_WAIT`]. The
    /// clients are then forgotten, not destroyed: their drop would close them again (and log
    /// an error), and destroying a client that made synchronous commits was seen to block
    /// forever; a bench must not hang on its way out, and the process ends soon anyway.
    fn close(self) {
        for member in &self.members {
            if let Err(error) = member.close_queue() {
                eprintln!("warning: group {}: close: {error}", self.id);
            }
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            let open: Vec<_> = self.members.iter().filter(|m| !m.closed()).collect();
            if open.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: group {}: {} member(s) not closed within {} ms, left to their session timeout",
                    self.id,
                    open.len(),
                    CLOSE_WAIT.as_millis()
                );
                break;
            }
            for member in open {
                let _ = member.poll(Duration::ZERO);
            }
            thread::sleep(ROUND_PAUSE);
        }
        std::mem::forget(self.members);
    }
}

/// How a group's assignments cover a topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Coverage {
    partitions: usize,
    /// Partitions owned by at least one member.
    owned: usize,
    /// Partitions owned by more than one member.
    shared: usize,
    /// Fewest and most partitions a member owns.
    fewest: usize,
    most: usize,
}

impl Coverage {
    /// From each member's partition ids; ids outside `0..partitions` are not counted.
    fn of(assignments: &[Vec<i32>], partitions: i32) -> Coverage {
        let total = usize::try_from(partitions).unwrap_or(0);
        let mut owners = vec![0u32; total];
        let mut fewest = usize::MAX;
        let mut most = 0;
        for assignment in assignments {
            let mut count = 0;
            for &partition in assignment {
                if let Some(owner) = usize::try_from(partition).ok().and_then(|p| owners.get_mut(p)) {
                    *owner += 1;
                    count += 1;
                }
            }
            fewest = fewest.min(count);
            most = most.max(count);
        }
        Coverage {
            partitions: total,
            owned: owners.iter().filter(|&&n| n > 0).count(),
            shared: owners.iter().filter(|&&n| n > 1).count(),
            fewest: if assignments.is_empty() { 0 } else { fewest },
            most,
        }
    }

    /// Every partition owned by exactly one member, and the members' counts within one.
    fn is_stable(&self) -> bool {
        self.owned == self.partitions && self.shared == 0 && self.most - self.fewest <= 1
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} partition(s) owned, {} by more than one member, members own {} to {}",
            self.owned, self.partitions, self.shared, self.fewest, self.most
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct FirstRecord {
    elapsed: Duration,
    prefilled: u64,
}

#[derive(Debug, Clone, Copy)]
struct Leave {
    /// From the start of the close to the others stable.
    stable: Duration,
    /// How long the leaving member's close took.
    close: Duration,
}

#[derive(Debug, Clone)]
struct CommitSummary {
    partitions: usize,
    rate_requested: u64,
    sent: u64,
    acknowledged: u64,
    errors: u64,
    first_error: Option<String>,
    /// The phase's length, or longer if acknowledgements came after it.
    elapsed: Duration,
    latency: Option<LatencySummary>,
}

impl CommitSummary {
    fn per_second(&self) -> f64 {
        super::per_second(self.acknowledged, self.elapsed.as_secs_f64())
    }
}

/// The result of one `strom bench group` run; phases not run are `None`.
#[derive(Debug)]
pub(super) struct GroupSummary {
    topic: String,
    protocol: GroupProtocol,
    members: u32,
    partitions: i32,
    first_record: Option<FirstRecord>,
    join: Option<Duration>,
    leave: Option<Leave>,
    commit: Option<CommitSummary>,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

impl GroupSummary {
    pub(super) fn to_text(&self) -> String {
        let mut text = format!(
            "bench group: topic {}, {} partition(s), {} member(s), {} protocol\n",
            self.topic,
            self.partitions,
            self.members,
            self.protocol.name()
        );
        if let Some(first) = &self.first_record {
            text.push_str(&format!(
                "first record: {:.3} ms after subscribing (1 member, {} record(s) prefilled)\n",
                ms(first.elapsed),
                first.prefilled
            ));
        }
        if let Some(join) = self.join {
            text.push_str(&format!(
                "join: stable {:.3} ms after {} member(s) subscribed\n",
                ms(join),
                self.members
            ));
        }
        if let Some(leave) = &self.leave {
            text.push_str(&format!(
                "leave: stable again {:.3} ms after a member began to close (its close took {:.3} ms)\n",
                ms(leave.stable),
                ms(leave.close)
            ));
        }
        if let Some(c) = &self.commit {
            text.push_str(&format!(
                "commit: {} of {} commit(s) of {} partition(s) acknowledged in {:.3} s, {:.1} commits/s \
                 ({} requested), errors {}\n",
                c.acknowledged,
                c.sent,
                c.partitions,
                c.elapsed.as_secs_f64(),
                c.per_second(),
                c.rate_requested,
                c.errors
            ));
            if let Some(l) = &c.latency {
                text.push_str(&format!(
                    "commit latency: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms\n",
                    l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                ));
            }
            if let Some(error) = &c.first_error {
                text.push_str(&format!("first commit error: {error}\n"));
            }
        }
        text
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let commit = self.commit.as_ref().map(|c| {
            let latency = c.latency.map(|l| {
                serde_json::json!({
                    "p50": l.p50_ms, "p99": l.p99_ms, "p99_9": l.p999_ms, "max": l.max_ms,
                })
            });
            serde_json::json!({
                "partitions": c.partitions,
                "rate_requested": c.rate_requested,
                "sent": c.sent,
                "commits": c.acknowledged,
                "errors": c.errors,
                "first_error": c.first_error,
                "elapsed_s": c.elapsed.as_secs_f64(),
                "commits_per_s": c.per_second(),
                "latency_ms": latency,
            })
        });
        serde_json::json!({
            "mode": "group",
            "topic": self.topic,
            "group_protocol": self.protocol.name(),
            "members": self.members,
            "partitions": self.partitions,
            "first_record_ms": self.first_record.map(|f| ms(f.elapsed)),
            "prefilled": self.first_record.map(|f| f.prefilled),
            "join_stable_ms": self.join.map(ms),
            "leave_stable_ms": self.leave.map(|l| ms(l.stable)),
            "leave_close_ms": self.leave.map(|l| ms(l.close)),
            "commit": commit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::bench;
    use crate::bench::BenchMode;
    use crate::tests::parse_error;

    #[test]
    fn group_defaults() {
        let args = bench(&["bench", "group"]);
        assert_eq!(args.mode, BenchMode::Group);
        assert_eq!(args.members, 10);
        assert_eq!(args.partitions(), PARTITIONS_DEFAULT);
        assert_eq!(args.group_protocol, GroupProtocol::Classic);
        assert_eq!(args.phases, GroupPhase::ALL.to_vec());
        assert_eq!(args.commit_rate, 10);
        assert_eq!(args.timeout(), WAIT_DEFAULT);
        // Other modes keep their defaults.
        let produce = bench(&["bench", "produce"]);
        assert_eq!(produce.partitions(), 1);
        assert_eq!(produce.timeout(), Duration::from_secs(10));
    }

    #[test]
    fn group_flags() {
        let args = bench(&[
            "bench",
            "group",
            "g",
            "--members",
            "50",
            "--partitions",
            "500",
            "--group-protocol",
            "consumer",
            "--phases",
            "join,leave",
            "--commit-rate",
            "100",
            "--duration-s",
            "30",
            "--timeout-ms",
            "5000",
        ]);
        assert_eq!((args.topic.as_str(), args.members, args.partitions()), ("g", 50, 500));
        assert_eq!(args.group_protocol, GroupProtocol::Consumer);
        assert_eq!(args.phases, vec![GroupPhase::Join, GroupPhase::Leave]);
        assert_eq!((args.commit_rate, args.duration_s), (100, Some(30)));
        assert_eq!(args.timeout(), Duration::from_millis(5000));
        let args = bench(&["bench", "group", "--phases", "commit", "--phases", "first-record"]);
        assert_eq!(args.phases, vec![GroupPhase::Commit, GroupPhase::FirstRecord]);
    }

    #[test]
    fn group_rejects_bad_input() {
        let _ = parse_error(&["bench", "group", "--members", "0"]);
        let _ = parse_error(&["bench", "group", "--partitions", "0"]);
        let _ = parse_error(&["bench", "group", "--commit-rate", "0"]);
        let _ = parse_error(&["bench", "group", "--group-protocol", "eager"]);
        let error = parse_error(&["bench", "group", "--phases", "join,rejoin"]);
        assert!(error.contains("rejoin"), "{error}");
    }

    #[test]
    fn group_ids_are_unique_per_run_and_phase() {
        assert_eq!(group_id(0xab, "join"), "strom-bench-00000000000000ab-join");
        assert_ne!(group_id(1, "join"), group_id(2, "join"));
        assert_ne!(group_id(1, "join"), group_id(1, "commit"));
    }

    #[test]
    fn stable_means_covered_once_and_balanced() {
        let stable = Coverage::of(&[vec![0, 1, 2], vec![3, 4], vec![5, 6]], 7);
        assert!(stable.is_stable(), "{stable}");
        assert_eq!((stable.owned, stable.shared, stable.fewest, stable.most), (7, 0, 2, 3));
        // The first member of a fresh group owns everything: covered, but not settled.
        let first = Coverage::of(&[vec![0, 1, 2, 3], vec![], vec![]], 4);
        assert_eq!((first.owned, first.shared), (4, 0));
        assert!(!first.is_stable(), "{first}");
        // Mid-rebalance: a partition still with its old owner and already with the new one.
        let shared = Coverage::of(&[vec![0, 1], vec![1, 2], vec![3]], 4);
        assert_eq!(shared.shared, 1);
        assert!(!shared.is_stable());
        // A partition nobody owns yet.
        let gap = Coverage::of(&[vec![0], vec![2]], 3);
        assert_eq!(gap.owned, 2);
        assert!(!gap.is_stable());
        // Eager revocation: nobody owns anything.
        assert!(!Coverage::of(&[vec![], vec![]], 2).is_stable());
        // More members than partitions: some own none.
        assert!(Coverage::of(&[vec![0], vec![1], vec![]], 2).is_stable());
        // Ids outside the topic are not counted.
        let stray = Coverage::of(&[vec![0, 7, -1], vec![1]], 2);
        assert!(stray.is_stable(), "{stray}");
        // No members: nothing owned.
        let none = Coverage::of(&[], 3);
        assert_eq!((none.owned, none.fewest, none.most), (0, 0, 0));
        assert!(!none.is_stable());
        assert_eq!(
            gap.to_string(),
            "2 of 3 partition(s) owned, 0 by more than one member, members own 1 to 1"
        );
    }

    #[test]
    fn commit_log_books_latency_of_acknowledged_commits_only() {
        let mut log = CommitLog::default();
        log.book(Ok(()), Duration::from_millis(3));
        log.book(Ok(()), Duration::from_millis(5));
        log.book(Err("boom".to_string()), Duration::from_millis(900));
        log.book(Err("later".to_string()), Duration::from_millis(1));
        assert_eq!((log.acknowledged, log.failed), (2, 2));
        assert_eq!(log.first_error.as_deref(), Some("boom"));
        assert_eq!(log.latency.len(), 2);
        let close = |got: u64, want: u64| got.abs_diff(want) <= want / 1000;
        assert!(close(log.latency.max(), 5_000_000), "{}", log.latency.max());
        assert!(close(log.latency.min(), 3_000_000), "{}", log.latency.min());
    }

    fn summary() -> GroupSummary {
        GroupSummary {
            topic: "t".to_string(),
            protocol: GroupProtocol::Consumer,
            members: 3,
            partitions: 6,
            first_record: Some(FirstRecord {
                elapsed: Duration::from_millis(120),
                prefilled: 1000,
            }),
            join: Some(Duration::from_millis(1500)),
            leave: Some(Leave {
                stable: Duration::from_millis(700),
                close: Duration::from_millis(20),
            }),
            commit: Some(CommitSummary {
                partitions: 6,
                rate_requested: 10,
                sent: 20,
                acknowledged: 20,
                errors: 0,
                first_error: None,
                elapsed: Duration::from_secs(2),
                latency: Some(LatencySummary {
                    p50_ms: 1.0,
                    p99_ms: 2.0,
                    p999_ms: 3.0,
                    max_ms: 4.0,
                }),
            }),
        }
    }

    #[test]
    fn summary_json_and_text() {
        let full = summary();
        let json = full.to_json();
        assert_eq!(json["mode"], "group");
        assert_eq!(json["group_protocol"], "consumer");
        assert_eq!(
            (json["members"].as_u64(), json["partitions"].as_u64()),
            (Some(3), Some(6))
        );
        assert_eq!(json["first_record_ms"], 120.0);
        assert_eq!(json["prefilled"], 1000);
        assert_eq!(json["join_stable_ms"], 1500.0);
        assert_eq!(json["leave_stable_ms"], 700.0);
        assert_eq!(json["leave_close_ms"], 20.0);
        assert_eq!(json["commit"]["commits"], 20);
        assert_eq!(json["commit"]["commits_per_s"], 10.0);
        assert_eq!(json["commit"]["latency_ms"]["p99"], 2.0);
        assert!(!json.to_string().contains('\n'));
        let text = full.to_text();
        assert!(
            text.contains("join: stable 1500.000 ms after 3 member(s) subscribed"),
            "{text}"
        );
        assert!(text.contains("10.0 commits/s (10 requested), errors 0"), "{text}");
        assert!(text.contains("commit latency: p50 1.000 ms, p99 2.000 ms"), "{text}");

        let only_join = GroupSummary {
            first_record: None,
            leave: None,
            commit: None,
            ..summary()
        };
        let json = only_join.to_json();
        assert!(json["first_record_ms"].is_null() && json["commit"].is_null());
        assert!(json["leave_stable_ms"].is_null());
        assert_eq!(only_join.to_text().lines().count(), 2);
    }
}
