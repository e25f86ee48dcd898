//! `strom verify run` from start to end: the topics, the workloads' threads, the wait for the
//! stop, the drain, the final read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use strom_verify::history::{Isolation, Op};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::clients::{close_member, sleep_while, ErrorLog, LogContext};
use super::history_writer::{History, Recorder};
use super::{final_read, queue, txn, RunArgs, Workload};
use crate::connection::ConnectionArgs;
use crate::topic::Admin;

/// Bound on creating the topics and seeing a leader for each partition: a cluster that was
/// just started, or just had a fault, may still be electing.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on each admin and metadata call while setting up.
const SETUP_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two looks at a group's committed offsets during the drain.
const DRAIN_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Bound on an OffsetFetch or ListOffsets while draining.
const DRAIN_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long consumers get to finish once told to stop: a transactor may be in the middle of a
/// commit (30 s per call, retried for up to 60 s).
const CONSUMERS_STOP_WAIT: Duration = Duration::from_secs(90);

/// A topic of the run and its partition count as the cluster has it.
#[derive(Clone, Debug)]
pub(super) struct Topic {
    pub(super) name: String,
    pub(super) partitions: i32,
}

/// The run's topic and group names, from `--prefix`.
#[derive(Clone, Debug)]
pub(super) struct Names {
    pub(super) prefix: String,
    pub(super) queue: Topic,
    pub(super) txn_in: Topic,
    pub(super) txn_out: Topic,
    pub(super) queue_group: String,
    pub(super) txn_group: String,
}

impl Names {
    fn new(prefix: &str, partitions: i32) -> Names {
        let topic = |suffix: &str| Topic {
            name: format!("{prefix}-{suffix}"),
            partitions,
        };
        Names {
            prefix: prefix.to_string(),
            queue: topic("queue"),
            txn_in: topic("txn-in"),
            txn_out: topic("txn-out"),
            queue_group: format!("{prefix}-queue-group"),
            txn_group: format!("{prefix}-txn-group"),
        }
    }
}

/// What every workload thread sees: where to connect, the names, and the run's phase.
pub(super) struct Shared {
    pub(super) connection: ConnectionArgs,
    pub(super) names: Names,
    /// Records per second of each producer.
    pub(super) rate: u32,
    /// Share of the transactions aborted on purpose, percent.
    pub(super) abort_percent: u32,
    pub(super) drain_timeout: Duration,
    /// librdkafka debug contexts for the idempotent producers (`--producer-debug`).
    pub(super) producer_debug: Option<String>,
    producing: AtomicBool,
    consuming: AtomicBool,
}

impl Shared {
    /// Until the drain begins.
    pub(super) fn producing(&self) -> bool {
        self.producing.load(Ordering::Relaxed)
    }

    /// Until the groups drained (or the drain timed out).
    pub(super) fn consuming(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
    }
}

/// What a workload thread runs.
type Work = Box<dyn FnOnce(&Shared, Recorder) + Send>;

/// A workload thread.
struct Worker {
    name: String,
    thread: thread::JoinHandle<()>,
}

pub(super) fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.workload.is_empty() {
        bail!("--workload: give at least one of queue, txn");
    }
    let (runtime, mut signals) = listen_for_signals()?;
    let mut names = Names::new(&args.prefix, args.partitions);
    let mut topics = Vec::new();
    if args.runs(Workload::Queue) {
        topics.push(&mut names.queue);
    }
    if args.runs(Workload::Txn) {
        topics.push(&mut names.txn_in);
        topics.push(&mut names.txn_out);
    }
    create_topics(&args, &mut topics)?;
    let topics: Vec<Topic> = topics.into_iter().map(|t| t.clone()).collect();
    let history = History::create(&args.history)?;
    let shared = Arc::new(Shared {
        connection: args.connection.clone(),
        names,
        rate: args.rate,
        abort_percent: args.abort_percent,
        drain_timeout: Duration::from_secs(args.drain_timeout_s),
        producer_debug: args.producer_debug.clone(),
        producing: AtomicBool::new(true),
        consuming: AtomicBool::new(true),
    });

    let (producers, consumers) = start_workloads(&args, &shared, &history)?;
    eprintln!(
        "verify: running {} producer(s) and {} consumer(s); writing {}",
        producers.len(),
        consumers.len(),
        args.history.display()
    );
    let why = runtime.block_on(async {
        let sleep = async {
            match args.duration_s {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = signals.0.recv() => "SIGTERM",
            _ = signals.1.recv() => "SIGINT",
            () = sleep => "the end of --duration-s",
        }
    });
    eprintln!("verify: stopping ({why}): draining");
    // From now on another signal ends the process at once.
    let _ = thread::Builder::new()
        .name("verify-signals".to_string())
        .spawn(move || {
            let why = runtime.block_on(async {
                tokio::select! {
                    _ = signals.0.recv() => "SIGTERM",
                    _ = signals.1.recv() => "SIGINT",
                }
            });
            eprintln!("verify: second signal ({why}): exiting without draining");
            std::process::exit(130);
        });

    let drain_deadline = Instant::now() + shared.drain_timeout;
    shared.producing.store(false, Ordering::Relaxed);
    join(producers, drain_deadline);
    let txn_complete = drain_groups(&args, &shared, drain_deadline);
    if args.runs(Workload::Txn) {
        history.recorder("drain").record(Op::Drained {
            group: shared.names.txn_group.clone(),
            complete: txn_complete,
        });
    }
    shared.consuming.store(false, Ordering::Relaxed);
    join(consumers, Instant::now() + CONSUMERS_STOP_WAIT);

    eprintln!("verify: final read");
    final_read::run(&shared.connection, &topics, &history.recorder("final"));
    let events = history.finish()?;
    eprintln!("verify: done: {events} event(s) in {}", args.history.display());
    Ok(())
}

/// SIGTERM and SIGINT, listened for from the start so that neither kills the run.
fn listen_for_signals() -> anyhow::Result<(tokio::runtime::Runtime, (Signal, Signal))> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    let signals = runtime.block_on(async {
        let term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
        anyhow::Ok((term, int))
    })?;
    Ok((runtime, signals))
}

/// Creates the topics that are missing (retrying while the cluster is not ready), waits for a
/// leader of every partition, learns each topic's partition count, and checks that the topics
/// are empty.
fn create_topics(args: &RunArgs, topics: &mut [&mut Topic]) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let admin = Admin::connect(&args.connection, SETUP_CALL_TIMEOUT)?;
    let min_insync = if args.replication_factor >= 3 { "2" } else { "1" };
    let config = [("min.insync.replicas".to_string(), min_insync.to_string())];
    for topic in topics.iter() {
        loop {
            match admin.create_topic(&topic.name, args.partitions, args.replication_factor, &config) {
                Ok(true) => eprintln!("verify: created topic {}", topic.name),
                Ok(false) => eprintln!("verify: topic {} exists", topic.name),
                Err(error) if Instant::now() < deadline => {
                    eprintln!("verify: create topic {}: {error:#}; retrying", topic.name);
                    thread::sleep(Duration::from_secs(1));
                    continue;
                }
                Err(error) => return Err(error.context(format!("create topic `{}`", topic.name))),
            }
            break;
        }
    }
    drop(admin);
    let probe: BaseConsumer<LogContext> = args
        .connection
        .client_config(&[])
        .create_with_context(LogContext(ErrorLog::new("setup")))
        .context("create metadata client")?;
    for topic in topics.iter_mut() {
        topic.partitions = loop {
            let led = probe
                .fetch_metadata(Some(&topic.name), SETUP_CALL_TIMEOUT)
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic.name && t.error().is_none())
                        .filter(|t| !t.partitions().is_empty())
                        .filter(|t| t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0))
                        .map(|t| t.partitions().len())
                });
            match led {
                Ok(Some(count)) => break i32::try_from(count).context("partition count")?,
                _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(250)),
                Ok(None) => bail!("topic `{}`: no leader for every partition in time", topic.name),
                Err(error) => return Err(error).context(format!("metadata of `{}`", topic.name)),
            }
        };
        // Values are unique within a run only, and the checker must see every write to the
        // topics: an earlier run's records would read as duplicates and strangers.
        for partition in 0..topic.partitions {
            let (_, high) = probe
                .fetch_watermarks(&topic.name, partition, SETUP_CALL_TIMEOUT)
                .with_context(|| format!("end of `{}` partition {partition}", topic.name))?;
            if high > 0 {
                bail!(
                    "topic `{}` already holds records (an earlier run's?): give a --prefix of its own to every run",
                    topic.name
                );
            }
        }
    }
    Ok(())
}

/// Starts every client thread: returns the producers (stopped first) and the consumers.
fn start_workloads(
    args: &RunArgs,
    shared: &Arc<Shared>,
    history: &History,
) -> anyhow::Result<(Vec<Worker>, Vec<Worker>)> {
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    let spawn = |name: String, work: Work| {
        let shared = Arc::clone(shared);
        let recorder = history.recorder(&name);
        let thread = thread::Builder::new()
            .name(format!("verify-{name}"))
            .spawn(move || work(&shared, recorder))
            .with_context(|| format!("start {name}"))?;
        anyhow::Ok(Worker { name, thread })
    };
    if args.runs(Workload::Queue) {
        for i in 0..args.producers {
            producers.push(spawn(
                format!("producer-{i}"),
                Box::new(|shared, recorder| queue::produce(shared, recorder, &shared.names.queue)),
            )?);
        }
        for i in 0..args.members {
            consumers.push(spawn(format!("member-{i}"), Box::new(queue::member))?);
        }
        for i in 0..args.seekers {
            consumers.push(spawn(
                format!("seeker-{i}"),
                Box::new(|shared, recorder| {
                    queue::reader(shared, recorder, &shared.names.queue, Isolation::ReadUncommitted, true)
                }),
            )?);
        }
    }
    if args.runs(Workload::Txn) {
        producers.push(spawn(
            "feeder".to_string(),
            Box::new(|shared, recorder| queue::produce(shared, recorder, &shared.names.txn_in)),
        )?);
        for i in 0..args.transactors {
            consumers.push(spawn(
                format!("txn-{i}"),
                Box::new(move |shared, recorder| txn::transactor(shared, recorder, i)),
            )?);
        }
        for i in 0..args.observers {
            consumers.push(spawn(
                format!("observer-{i}"),
                Box::new(|shared, recorder| {
                    queue::reader(shared, recorder, &shared.names.txn_out, Isolation::ReadCommitted, false)
                }),
            )?);
        }
    }
    Ok((producers, consumers))
}

/// Waits for the workers until `deadline`; those still running are left to themselves.
fn join(workers: Vec<Worker>, deadline: Instant) {
    for worker in workers {
        while !worker.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if worker.thread.is_finished() {
            if worker.thread.join().is_err() {
                eprintln!("verify: {} panicked", worker.name);
            }
        } else {
            eprintln!("verify: {} did not stop in time; carrying on without it", worker.name);
        }
    }
}

/// Lets the groups consume until their committed offsets reach their input topics' ends, or
/// the deadline; returns whether the txn group got there.
fn drain_groups(args: &RunArgs, shared: &Shared, deadline: Instant) -> bool {
    let names = &shared.names;
    let mut groups: Vec<(&str, &Topic)> = Vec::new();
    if args.runs(Workload::Queue) && args.members > 0 {
        groups.push((&names.queue_group, &names.queue));
    }
    if args.runs(Workload::Txn) && args.transactors > 0 {
        groups.push((&names.txn_group, &names.txn_in));
    }
    let mut pending = Vec::new();
    for (group, topic) in groups {
        match probe(&shared.connection, group) {
            Ok(probe) => pending.push((group, topic, probe)),
            Err(error) => eprintln!("verify: group {group}: {error:#}"),
        }
    }
    let mut txn_complete = false;
    let mut drained = Vec::new();
    loop {
        let mut still = Vec::new();
        for (group, topic, probe) in pending {
            match caught_up(&probe, topic) {
                Ok(true) => {
                    eprintln!("verify: group {group} drained");
                    txn_complete |= group == names.txn_group;
                    drained.push(probe);
                }
                Ok(false) => still.push((group, topic, probe)),
                Err(error) => {
                    probe.context().0.error(format_args!("{error:#}"));
                    still.push((group, topic, probe));
                }
            }
        }
        pending = still;
        if pending.is_empty() || !sleep_while(DRAIN_POLL_INTERVAL, || Instant::now() < deadline) {
            break;
        }
    }
    for (group, _, probe) in pending {
        eprintln!("verify: group {group} did not drain within --drain-timeout-s");
        drained.push(probe);
    }
    for probe in drained {
        close_member(probe, &ErrorLog::new("drain"));
    }
    txn_complete
}

/// A client of the group that never subscribes: it only fetches the group's offsets
/// (OffsetFetch), and the topics' ends. read_uncommitted, so that librdkafka does not ask for
/// stable offsets (KIP-447), which an open transaction holding offsets of the group would
/// keep it waiting for: only offsets already committed count here.
fn probe(connection: &ConnectionArgs, group: &str) -> anyhow::Result<BaseConsumer<LogContext>> {
    connection
        .client_config(&[
            ("group.id", group.to_string()),
            ("enable.auto.commit", "false".to_string()),
            ("isolation.level", "read_uncommitted".to_string()),
        ])
        .create_with_context(LogContext(ErrorLog::new(&format!("drain {group}"))))
        .context("create group probe")
}

/// Whether the group's committed offset of every partition of `topic` is at its end.
fn caught_up(probe: &BaseConsumer<LogContext>, topic: &Topic) -> anyhow::Result<bool> {
    let mut list = TopicPartitionList::with_capacity(topic.partitions as usize);
    for partition in 0..topic.partitions {
        list.add_partition_offset(&topic.name, partition, Offset::Invalid)?;
    }
    let committed = probe
        .committed_offsets(list, DRAIN_CALL_TIMEOUT)
        .with_context(|| format!("committed offsets of `{}`", topic.name))?;
    for element in committed.elements() {
        element.error()?;
        let (_, high) = probe
            .fetch_watermarks(&topic.name, element.partition(), DRAIN_CALL_TIMEOUT)
            .with_context(|| format!("end of `{}` partition {}", topic.name, element.partition()))?;
        let offset = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        };
        if offset < high {
            return Ok(false);
        }
    }
    Ok(true)
}
