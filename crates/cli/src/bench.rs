//! `strom bench produce|consume|e2e`: throughput and latency against any Kafka broker;
//! `strom bench group`: consumer group rebalancing and commits (see `bench/group.rs`).
//!
//! Honest numbers first: produce counts only acknowledged records (failures are counted and
//! reported apart), consume counts records received, end-to-end counts only records of this
//! run (matched by run id) and measures from just before `send` to receipt on one monotonic
//! clock; see `payload.rs` for the record layout.
//!
//! Transactional produce (`--transaction-records N`) wraps every N records in a transaction:
//! begin, send, wait until every record is acknowledged, commit. Only records of committed
//! transactions count. The commit is timed apart, after the flush, so its time is the
//! broker's EndTxn (the coordinator writing its decision and the partitions' markers) plus one
//! round trip.
//!
//! `--producers N` runs N producers at once, each with its own rdkafka producer on its own
//! thread (transactional: its own `transactional.id`), sharing the records and, when there are
//! several, writing one partition each; throughput counts from their common start to the last
//! acknowledgement.

mod group;

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::connection::{ConnectionArgs, StderrContext};
use crate::payload::{self, Clock, Payload, HEADER_SIZE};
use crate::topic::Admin;

pub use group::{GroupPhase, GroupProtocol};

/// Records per run when neither `--messages` nor `--duration-s` is given.
const MESSAGES_DEFAULT: u64 = 1_000_000;
/// `--timeout-ms` of every mode but group: how long consuming may see nothing new.
const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// `--partitions` of every mode but group.
const PARTITIONS_DEFAULT: i32 = 1;
/// Bound on admin and metadata calls made while setting up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of the progress line on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait of the delivery-report poll loop, so it notices the end of a run quickly.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Highest latency the histograms hold; larger values are clamped to it.
const LATENCY_NS_MAX: u64 = 600_000_000_000;
/// Records librdkafka may hold in its local queue: large, so the send loop rarely waits.
const QUEUE_MESSAGES_MAX: u32 = 1_000_000;
/// Bytes librdkafka may hold in its local queue (`queue.buffering.max.kbytes`, 1 GiB).
const QUEUE_KBYTES_MAX: u32 = 1_048_576;
/// Bytes of prefetched records the consumer may buffer (`queued.max.messages.kbytes`).
const CONSUMER_QUEUE_KBYTES_MAX: u32 = 1_048_576;
/// How long the end of a produce run waits for every acknowledgement.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on each transactional call: init, commit, abort, and a transaction's flush.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// librdkafka `statistics.interval.ms` of an idempotent producer: how it tells that it has
/// its producer id (statistics cost a little work each interval for the whole run).
const STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Which path to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMode {
    /// Send records; latency is send to acknowledgement (delivery report).
    Produce,
    /// Read a pre-filled topic from the beginning (see `--prefill`).
    Consume,
    /// Produce and consume in one process; latency is send to receipt.
    E2e,
    /// Consumer group rebalancing: time to a stable group, to the first record, from a member
    /// leaving to stable again, and explicit commits at a rate (see `--phases`).
    Group,
}

/// `strom bench MODE [TOPIC]`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: BenchMode,
    /// Topic to use; created with `--partitions` when missing.
    #[arg(default_value = "strom-bench")]
    pub topic: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Records to produce (consume: to receive; default: everything up to the high watermark).
    #[arg(long, conflicts_with = "duration_s")]
    pub messages: Option<u64>,
    /// Run for this long instead of a record count, in seconds (group: length of the commit
    /// phase, default 10).
    #[arg(long = "duration-s")]
    pub duration_s: Option<u64>,
    /// Payload bytes per record (at least 16: send time and run id).
    #[arg(long = "record-size", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(HEADER_SIZE as i64..))]
    pub record_size: u32,
    /// Acknowledgements required: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Use the idempotent producer (librdkafka `enable.idempotence`); implied by
    /// `--transaction-records`. The clock starts once the producer has its producer id.
    #[arg(long)]
    pub idempotent: bool,
    /// Produce mode: send in transactions of this many records (under a fresh
    /// `transactional.id`: begin, send, wait for the acknowledgements, commit) and report the
    /// commit latency; only records of committed transactions count.
    #[arg(long = "transaction-records", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub transaction_records: Option<u64>,
    /// Produce mode: run this many producers at once, each on its own thread with its own
    /// connections (and `transactional.id`), splitting `--messages` (or each running for
    /// `--duration-s`) and `--rate`. With several, producer i writes only partition
    /// i % partitions, so `--partitions` equal to this gives each producer its own; one
    /// producer spreads its records with librdkafka's partitioner.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub producers: u32,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Largest batch in bytes (librdkafka `batch.size`).
    #[arg(long = "batch-size", default_value_t = 1_000_000)]
    pub batch_size: u32,
    /// How long to wait to fill a batch, in milliseconds (librdkafka `linger.ms`).
    #[arg(long = "linger-ms", default_value_t = 5)]
    pub linger_ms: u32,
    /// Partitions of the topic when the bench creates it [default: 1; group: 100].
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,
    /// Target send rate in records per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Consume and group modes: produce this many records first [group default: 1000].
    #[arg(long, value_name = "N")]
    pub prefill: Option<u64>,
    /// Stop consuming after this long without a record, in milliseconds [default: 10000];
    /// group: the bound on each wait for a stable group or a first record [default: 60000].
    #[arg(long = "timeout-ms")]
    pub timeout_ms: Option<u64>,
    /// Group mode: consumers in the group (all in this process).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub members: u32,
    /// Group mode: `classic` (JoinGroup/SyncGroup) or `consumer` (KIP-848,
    /// ConsumerGroupHeartbeat); librdkafka's `group.protocol`.
    #[arg(long = "group-protocol", value_enum, default_value_t = GroupProtocol::Classic)]
    pub group_protocol: GroupProtocol,
    /// Group mode: what to measure, comma-separated; `leave` needs 2 or more members.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = GroupPhase::ALL)]
    pub phases: Vec<GroupPhase>,
    /// Group mode, commit phase: offset commits per second, each of every partition.
    #[arg(long = "commit-rate", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub commit_rate: u64,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// When a send loop stops.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Budget {
    Messages(u64),
    Duration(Duration),
}

impl Budget {
    /// Part `index` of `parts` sending together: a share of the records, or the same duration.
    fn share(self, index: u32, parts: u32) -> Self {
        match self {
            Budget::Messages(count) => Budget::Messages(share(count, index, parts)),
            Budget::Duration(_) => self,
        }
    }
}

/// Part `index` (0-based) of `total` split in `parts` that differ by at most one, the first
/// ones larger.
fn share(total: u64, index: u32, parts: u32) -> u64 {
    let parts = u64::from(parts.max(1));
    total / parts + u64::from(u64::from(index) < total % parts)
}

impl BenchArgs {
    /// What clap cannot check: options of one mode given to another.
    fn check(&self) -> anyhow::Result<()> {
        if self.transaction_records.is_some() && self.mode != BenchMode::Produce {
            bail!("--transaction-records applies to produce mode only");
        }
        if self.producers > 1 && self.mode != BenchMode::Produce {
            bail!("--producers applies to produce mode only");
        }
        if self.rate.is_some_and(|rate| rate < u64::from(self.producers)) {
            bail!("--rate must be at least --producers: each producer sends at least 1 record/s");
        }
        Ok(())
    }

    fn budget(&self) -> Budget {
        match (self.messages, self.duration_s) {
            (_, Some(seconds)) => Budget::Duration(Duration::from_secs(seconds)),
            (Some(count), None) => Budget::Messages(count),
            (None, None) => Budget::Messages(MESSAGES_DEFAULT),
        }
    }

    fn partitions(&self) -> i32 {
        let default = match self.mode {
            BenchMode::Group => group::PARTITIONS_DEFAULT,
            _ => PARTITIONS_DEFAULT,
        };
        self.partitions.unwrap_or(default)
    }

    /// `--timeout-ms` or the mode's default.
    fn timeout(&self) -> Duration {
        let default = match self.mode {
            BenchMode::Group => group::WAIT_DEFAULT,
            _ => IDLE_TIMEOUT_DEFAULT,
        };
        self.timeout_ms.map_or(default, Duration::from_millis)
    }
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    args.check()?;
    let admin = Admin::connect(&args.connection, SETUP_TIMEOUT)?;
    let partitions = args.partitions();
    let created = admin
        .create_topic(&args.topic, partitions, -1, &[])
        .with_context(|| format!("create bench topic `{}`", args.topic))?;
    if created {
        eprintln!("created topic {} with {partitions} partition(s)", args.topic);
    }
    drop(admin);

    let clock = Clock::new();
    let run_id = payload::new_run_id();
    if args.mode == BenchMode::Group {
        let summary = group::run(&args, clock, run_id)?;
        if args.json {
            println!("{}", summary.to_json());
        } else {
            print!("{}", summary.to_text());
        }
        return Ok(());
    }
    let summary = match args.mode {
        BenchMode::Produce => produce(&args, clock, run_id, args.budget(), None)?,
        BenchMode::Consume => {
            if let Some(count) = args.prefill {
                let prefill = produce(&args, clock, run_id, Budget::Messages(count), None)?;
                eprintln!(
                    "prefilled {} record(s) at {:.0} msgs/s",
                    prefill.messages,
                    prefill.msgs_per_s()
                );
                if prefill.errors > 0 {
                    bail!(
                        "prefill: {} record(s) failed: {}",
                        prefill.errors,
                        prefill.first_error.unwrap_or_default()
                    );
                }
            }
            consume(&args)?
        }
        BenchMode::E2e => e2e(&args, clock, run_id)?,
        BenchMode::Group => unreachable!("handled above"),
    };
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_text());
    }
    if let Some(shortfall) = &summary.shortfall {
        bail!("{shortfall}");
    }
    Ok(())
}

/// Delivery-report bookkeeping of the produce path.
struct DeliveryStats {
    printer: StderrContext,
    clock: Clock,
    record_size: u64,
    acked: AtomicU64,
    acked_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Send-to-acknowledgement latency in ns; only the poll threads record into it.
    latency: Mutex<Histogram<u64>>,
    /// An idempotent producer's statistics said it holds a producer id.
    has_producer_id: AtomicBool,
}

impl ClientContext for DeliveryStats {
    fn error(&self, error: KafkaError, reason: &str) {
        self.printer.error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.printer.log(level, fac, message);
    }

    /// Only an idempotent producer's statistics are asked for, to learn when it has its id.
    fn stats(&self, statistics: Statistics) {
        if statistics.eos.is_some_and(|eos| eos.idemp_state == "Assigned") {
            self.has_producer_id.store(true, Ordering::Relaxed);
        }
    }
}

impl ProducerContext for DeliveryStats {
    /// The send time, ns on the bench clock.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, send_ns: usize) {
        match result {
            Ok(_) => {
                let latency = payload::latency_ns(send_ns as u64, self.clock.now_ns());
                self.latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .saturating_record(latency);
                let _ = self.acked.fetch_add(1, Ordering::Relaxed);
                let _ = self.acked_bytes.fetch_add(self.record_size, Ordering::Relaxed);
            }
            Err((error, _)) => self.fail(error.to_string()),
        }
    }
}

impl DeliveryStats {
    fn fail(&self, error: String) {
        let _ = self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(error);
        }
    }
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("static histogram bounds are valid")
}

/// Produces records until `budget` is spent, then waits for every acknowledgement:
/// `--producers` producers at once, each sending its share from its own thread (see
/// [`BenchProducer`]); with `--transaction-records`, in transactions (see [`Transactions`]).
/// The clock runs from the common start to the last acknowledgement of the last producer to
/// finish; latencies and transactions are merged over the producers.
///
/// `sent_total` (e2e) receives the number of records handed to librdkafka once every producer
/// is done sending and flushing.
fn produce(
    args: &BenchArgs,
    clock: Clock,
    run_id: u64,
    budget: Budget,
    sent_total: Option<&AtomicU64>,
) -> anyhow::Result<Summary> {
    let count = args.producers;
    // One producer spreads its records with librdkafka's partitioner; several each write one
    // partition, so they need to know how many there are.
    let partitions = if count > 1 {
        Some(partition_ids(&consumer(args)?, &args.topic)?.len())
    } else {
        None
    };
    let producers = (0..count)
        .map(|index| BenchProducer::new(args, clock, run_id, index, budget, partitions))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Getting producer ids is setup, not throughput: the clock starts once every producer has
    // one (created together, idempotent producers get theirs at about the same time).
    for producer in &producers {
        producer.prepare()?;
    }

    let sending_done = &AtomicBool::new(false);
    let started = Instant::now();
    let start_ns = clock.now_ns();
    let runs: Vec<ProducerRun> = thread::scope(|scope| {
        for producer in &producers {
            let _ = scope.spawn(move || {
                while !sending_done.load(Ordering::Relaxed) {
                    producer.producer.poll(POLL_INTERVAL);
                }
            });
        }
        let acked: Counter<'_> = Box::new(|| {
            producers.iter().fold((0, 0), |(messages, bytes), producer| {
                let context = producer.producer.context();
                (
                    messages + context.acked.load(Ordering::Relaxed),
                    bytes + context.acked_bytes.load(Ordering::Relaxed),
                )
            })
        });
        let progress = Progress::start(scope, "produce", vec![("acked", acked)], sending_done);
        let senders: Vec<_> = producers
            .iter()
            .map(|producer| scope.spawn(move || producer.send(args, clock, run_id, start_ns)))
            .collect();
        let runs = senders
            .into_iter()
            .map(|sender| sender.join().expect("producer thread panicked"))
            .collect();
        sending_done.store(true, Ordering::Relaxed);
        drop(progress);
        runs
    });

    let (summary, sent) = produce_summary(args, started, &producers, runs);
    if let Some(total) = sent_total {
        total.store(sent, Ordering::Release);
    }
    Ok(summary)
}

/// The summary of a produce run that started at `started`, adding up its producers' runs,
/// and the number of records handed to librdkafka.
fn produce_summary(
    args: &BenchArgs,
    started: Instant,
    producers: &[BenchProducer],
    runs: Vec<ProducerRun>,
) -> (Summary, u64) {
    let mut summary = Summary {
        mode: "produce",
        topic: args.topic.clone(),
        record_size: args.record_size,
        producers: Some(args.producers),
        messages: 0,
        bytes: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latency_label: "send to ack",
        latency: None,
        transactions: None,
        shortfall: None,
    };
    let mut latency = latency_histogram();
    let mut transactions = Vec::new();
    let mut sent = 0;
    for (producer, run) in producers.iter().zip(runs) {
        let context = producer.producer.context();
        let acked = context.acked.load(Ordering::Relaxed);
        let failed = context.failed.load(Ordering::Relaxed);
        latency
            .add(&*context.latency.lock().unwrap_or_else(|e| e.into_inner()))
            .expect("every latency histogram has the same bounds");
        // Transactional: acknowledged records count only once their transaction committed.
        let (messages, errors) = match &run.transactions {
            Some(t) => (t.committed_records, failed + (acked - t.committed_records)),
            None => (acked, failed),
        };
        summary.messages += messages;
        summary.errors += errors;
        if summary.first_error.is_none() {
            summary.first_error = context.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        }
        let shortfall = match (run.stopped, run.flushed) {
            (Some(error), _) => Some(format!("transaction: {error}")),
            (None, Ok(())) => None,
            (None, Err(error)) => Some(format!(
                "flush: {error}: {} of {} record(s) neither acknowledged nor failed",
                run.sent - acked - failed,
                run.sent
            )),
        };
        if summary.shortfall.is_none() {
            summary.shortfall = shortfall.map(|s| match args.producers {
                1 => s,
                _ => format!("producer {}: {s}", producer.index),
            });
        }
        // From the common start to this producer's last acknowledgement.
        summary.elapsed = summary.elapsed.max(run.finished.saturating_duration_since(started));
        sent += run.sent;
        transactions.extend(run.transactions);
    }
    let transactions = transactions.into_iter().reduce(|mut merged, t| {
        merged.absorb(t);
        merged
    });
    if let Some(t) = &transactions {
        summary.first_error = summary.first_error.take().or_else(|| t.first_error.clone());
    }
    summary.bytes = summary.messages * u64::from(args.record_size);
    summary.latency = LatencySummary::from_histogram(&latency);
    summary.transactions = transactions.map(|t| t.summary());
    (summary, sent)
}

/// One producer of a produce run: its own rdkafka producer (with its own `transactional.id`
/// when transactional), whose context counts its delivery reports, and its share of the run.
struct BenchProducer {
    /// 0-based, among the run's `--producers`.
    index: u32,
    producer: BaseProducer<DeliveryStats>,
    /// This producer's share of the records (or the whole duration).
    budget: Budget,
    /// This producer's share of `--rate`.
    rate: Option<u64>,
    /// The one partition it writes; `None`: librdkafka's partitioner spreads its records.
    partition: Option<i32>,
    transaction_records: Option<u64>,
    idempotent: bool,
}

/// What one producer's thread did.
struct ProducerRun {
    /// Records handed to librdkafka.
    sent: u64,
    transactions: Option<Transactions>,
    /// A transactional error that ended its run.
    stopped: Option<KafkaError>,
    /// Whether every record was acknowledged or failed in time.
    flushed: KafkaResult<()>,
    /// When its last record was acknowledged (or failed).
    finished: Instant,
}

impl BenchProducer {
    /// Producer `index` of `args.producers`. `partitions` (the topic's partition count, known
    /// when there are several producers) makes it write partition `index % partitions` only.
    fn new(
        args: &BenchArgs,
        clock: Clock,
        run_id: u64,
        index: u32,
        budget: Budget,
        partitions: Option<usize>,
    ) -> anyhow::Result<Self> {
        let stats = DeliveryStats {
            printer: StderrContext::default(),
            clock,
            record_size: u64::from(args.record_size),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latency: Mutex::new(latency_histogram()),
            has_producer_id: AtomicBool::new(false),
        };
        let idempotent = args.idempotent || args.transaction_records.is_some();
        let mut config = vec![
            ("acks", args.acks.clone()),
            ("compression.type", args.compression.clone()),
            ("batch.size", args.batch_size.to_string()),
            ("batch.num.messages", "1000000".to_string()),
            ("linger.ms", args.linger_ms.to_string()),
            ("queue.buffering.max.messages", QUEUE_MESSAGES_MAX.to_string()),
            ("queue.buffering.max.kbytes", QUEUE_KBYTES_MAX.to_string()),
            ("message.timeout.ms", "60000".to_string()),
            ("enable.idempotence", idempotent.to_string()),
        ];
        if args.transaction_records.is_some() {
            config.push(("transactional.id", format!("strom-bench-{run_id:016x}-{index}")));
        } else if idempotent {
            config.push(("statistics.interval.ms", STATS_INTERVAL.as_millis().to_string()));
        }
        let producer = args
            .connection
            .client_config(&config)
            .create_with_context(stats)
            .with_context(|| format!("create producer {index}"))?;
        let partition =
            partitions.map(|count| i32::try_from(index as usize % count).expect("a partition id is an i32"));
        Ok(BenchProducer {
            index,
            producer,
            budget: budget.share(index, args.producers),
            rate: args.rate.map(|rate| share(rate, index, args.producers)),
            partition,
            transaction_records: args.transaction_records,
            idempotent,
        })
    }

    /// Gets the producer id: `init_transactions`, or waiting for an idempotent producer's.
    fn prepare(&self) -> anyhow::Result<()> {
        if self.transaction_records.is_some() {
            self.producer
                .init_transactions(TXN_TIMEOUT)
                .with_context(|| format!("init transactions of producer {}", self.index))
        } else if self.idempotent {
            wait_for_producer_id(&self.producer)
        } else {
            Ok(())
        }
    }

    /// Sends this producer's share from the run's start (`start_ns` on `clock`), then waits
    /// for every acknowledgement; the delivery reports are served by another thread.
    fn send(&self, args: &BenchArgs, clock: Clock, run_id: u64, start_ns: u64) -> ProducerRun {
        let context = self.producer.context();
        let mut transactions = self.transaction_records.map(Transactions::new);
        let mut payload = Payload::new(args.record_size as usize, run_id);
        let (deadline_ns, count_max) = match self.budget {
            Budget::Duration(duration) => (start_ns.saturating_add(nanos(duration)), u64::MAX),
            Budget::Messages(count) => (u64::MAX, count),
        };
        let mut sent = 0u64;
        let mut stopped: Option<KafkaError> = None;
        while sent < count_max {
            let mut send_ns = clock.now_ns();
            if send_ns >= deadline_ns {
                break;
            }
            if let Some(Err(error)) = transactions.as_mut().map(|t| t.begin_if_idle(&self.producer)) {
                stopped = Some(error);
                break;
            }
            if let Some(rate) = self.rate {
                send_ns = pace(clock, start_ns, sent, rate);
            }
            let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(&args.topic, send_ns as usize)
                .payload(payload.stamp(send_ns));
            if let Some(partition) = self.partition {
                record = record.partition(partition);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(1));
                    }
                    Err((error, _)) => {
                        context.fail(format!("enqueue: {error}"));
                        break;
                    }
                }
            }
            sent += 1;
            if let Some(Err(error)) = transactions.as_mut().map(|t| t.sent(&self.producer)) {
                stopped = Some(error);
                break;
            }
        }
        if stopped.is_none() {
            // The last transaction may hold fewer records.
            if let Some(Err(error)) = transactions.as_mut().map(|t| t.commit(&self.producer)) {
                stopped = Some(error);
            }
        }
        let flushed = flush_now(&self.producer, FLUSH_TIMEOUT);
        ProducerRun {
            sent,
            transactions,
            stopped,
            flushed,
            finished: Instant::now(),
        }
    }
}

/// Waits until an idempotent producer has its producer id. librdkafka asks for one only
/// 500 ms after the producer is created, and records sent before then wait for it.
fn wait_for_producer_id(producer: &BaseProducer<DeliveryStats>) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while !producer.context().has_producer_id.load(Ordering::Relaxed) {
        if Instant::now() >= deadline {
            bail!(
                "the idempotent producer got no producer id within {} s",
                SETUP_TIMEOUT.as_secs()
            );
        }
        producer.poll(STATS_INTERVAL / 2);
    }
    Ok(())
}

/// Waits until every record handed to librdkafka is acknowledged or failed, sending what
/// lingers at once (`rd_kafka_flush`); the poll thread serves the delivery reports meanwhile.
///
/// rdkafka's `Producer::flush` is no use here: between its checks it polls in 100 ms slices
/// that always run to their end, so it returns up to 100 ms late, which would dominate a
/// transaction (its `commit_transaction` begins with that flush too, hence this one first).
#[allow(unsafe_code)]
fn flush_now(producer: &BaseProducer<DeliveryStats>, timeout: Duration) -> KafkaResult<()> {
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: the handle belongs to `producer`, alive for the call; `rd_kafka_flush` may be
    // called from any thread, and with event-based delivery reports (rdkafka's) it only waits
    // for the count of records in flight to reach zero.
    let code = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    match RDKafkaErrorCode::from(code) {
        RDKafkaErrorCode::NoError => Ok(()),
        code => Err(KafkaError::Flush(code)),
    }
}

/// The transactions of a transactional produce run: one is begun before the first record
/// of every `records`, and committed once they are all acknowledged, so the commit's time is
/// EndTxn alone: the coordinator's decision and markers, plus a round trip.
struct Transactions {
    /// Records per transaction (`--transaction-records`).
    records: u64,
    /// Records sent in the open transaction; 0 while none is open.
    open_records: u64,
    began: Instant,
    /// Records acknowledged when the open transaction began.
    acked_at_begin: u64,
    committed: u64,
    committed_records: u64,
    aborted: u64,
    /// Why the first aborted transaction's commit failed.
    first_error: Option<String>,
    /// `commit_transaction` once the transaction's records were acknowledged, in ns.
    commit: Histogram<u64>,
    /// From `begin_transaction` to the commit's return, in ns.
    whole: Histogram<u64>,
}

impl Transactions {
    fn new(records: u64) -> Self {
        Transactions {
            records,
            open_records: 0,
            began: Instant::now(),
            acked_at_begin: 0,
            committed: 0,
            committed_records: 0,
            aborted: 0,
            first_error: None,
            commit: latency_histogram(),
            whole: latency_histogram(),
        }
    }

    /// Begins a transaction unless one is open.
    fn begin_if_idle(&mut self, producer: &BaseProducer<DeliveryStats>) -> KafkaResult<()> {
        if self.open_records == 0 {
            producer.begin_transaction()?;
            self.began = Instant::now();
            self.acked_at_begin = producer.context().acked.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Counts a record sent in the open transaction, and commits it once it is full.
    fn sent(&mut self, producer: &BaseProducer<DeliveryStats>) -> KafkaResult<()> {
        self.open_records += 1;
        if self.open_records < self.records {
            return Ok(());
        }
        self.commit(producer)
    }

    /// Commits the open transaction, if any, once its records are acknowledged; aborts it
    /// instead if the commit failed in a way that requires that. An error ends the run.
    fn commit(&mut self, producer: &BaseProducer<DeliveryStats>) -> KafkaResult<()> {
        if self.open_records == 0 {
            return Ok(());
        }
        self.open_records = 0;
        flush_now(producer, TXN_TIMEOUT)?;
        let commit_started = Instant::now();
        let committed = producer.commit_transaction(TXN_TIMEOUT);
        let done = Instant::now();
        match committed {
            Ok(()) => {
                let acked = producer.context().acked.load(Ordering::Relaxed);
                self.committed += 1;
                self.committed_records += acked - self.acked_at_begin;
                self.commit.saturating_record(nanos(done - commit_started));
                self.whole.saturating_record(nanos(done - self.began));
                Ok(())
            }
            Err(KafkaError::Transaction(error)) if error.txn_requires_abort() => {
                let _ = self.first_error.get_or_insert_with(|| format!("commit: {error}"));
                producer.abort_transaction(TXN_TIMEOUT)?;
                self.aborted += 1;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Adds another producer's transactions (same `records`) to these.
    fn absorb(&mut self, other: Transactions) {
        self.committed += other.committed;
        self.committed_records += other.committed_records;
        self.aborted += other.aborted;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        for (mine, theirs) in [(&mut self.commit, &other.commit), (&mut self.whole, &other.whole)] {
            mine.add(theirs).expect("every latency histogram has the same bounds");
        }
    }

    fn summary(&self) -> TxnSummary {
        TxnSummary {
            records: self.records,
            committed: self.committed,
            aborted: self.aborted,
            commit: LatencySummary::from_histogram(&self.commit),
            whole: LatencySummary::from_histogram(&self.whole),
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Sleeps until record `index` is due at `rate` records/s; returns its due time (ns), which
/// becomes its send time so a late sender does not hide its own lateness.
fn pace(clock: Clock, start_ns: u64, index: u64, rate: u64) -> u64 {
    let due_ns = start_ns + due_offset_ns(index, rate);
    let now_ns = clock.now_ns();
    if due_ns > now_ns {
        thread::sleep(Duration::from_nanos(due_ns - now_ns));
    }
    due_ns
}

/// When record `index` is due, in ns after the start, at `rate` records/s.
fn due_offset_ns(index: u64, rate: u64) -> u64 {
    let rate = rate.max(1);
    u64::try_from(u128::from(index) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX)
}

fn consumer(args: &BenchArgs) -> anyhow::Result<BaseConsumer<StderrContext>> {
    args.connection
        .client_config(&[
            // librdkafka needs a group.id for assign(); nothing is committed under it.
            ("group.id", format!("strom-bench-{}", std::process::id())),
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            ("enable.partition.eof", "false".to_string()),
            ("fetch.max.bytes", "52428800".to_string()),
            ("max.partition.fetch.bytes", "10485760".to_string()),
            ("queued.min.messages", "1000000".to_string()),
            ("queued.max.messages.kbytes", CONSUMER_QUEUE_KBYTES_MAX.to_string()),
        ])
        .create_with_context(StderrContext::default())
        .context("create consumer")
}

/// The topic's partition ids, from metadata.
fn partition_ids(consumer: &BaseConsumer<StderrContext>, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), SETUP_TIMEOUT)
        .with_context(|| format!("fetch metadata of `{topic}`"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic `{topic}` has no partitions in metadata");
    }
    Ok(partitions)
}

/// Every partition of the topic with its (low, high) watermarks.
fn watermarks(consumer: &BaseConsumer<StderrContext>, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    partition_ids(consumer, topic)?
        .into_iter()
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, SETUP_TIMEOUT)
                .with_context(|| format!("watermarks of `{topic}` partition {partition}"))?;
            Ok((partition, low, high))
        })
        .collect()
}

/// How many records the consume loop counts before publishing them to the progress line.
const PUBLISH_EVERY: u64 = 4096;

fn consume(args: &BenchArgs) -> anyhow::Result<Summary> {
    let consumer = consumer(args)?;
    let marks = watermarks(&consumer, &args.topic)?;
    let available: u64 = marks
        .iter()
        .map(|&(_, low, high)| u64::try_from(high - low).unwrap_or(0))
        .sum();
    let (target, deadline) = match (args.messages, args.duration_s) {
        (_, Some(seconds)) => (u64::MAX, Some(Duration::from_secs(seconds))),
        (Some(count), None) => (count, None),
        (None, None) => (available, None),
    };
    if target == 0 {
        bail!(
            "topic `{}` is empty: run `strom bench produce` first or pass --prefill N",
            args.topic
        );
    }
    let mut assignment = TopicPartitionList::with_capacity(marks.len());
    for &(partition, _, _) in &marks {
        assignment
            .add_partition_offset(&args.topic, partition, Offset::Beginning)
            .context("build partition list")?;
    }
    consumer.assign(&assignment).context("assign partitions")?;

    let received = AtomicU64::new(0);
    let received_bytes = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let idle_limit = args.timeout();
    let started = Instant::now();
    // The loop is the client's hot path: the clock is read only when the queue runs dry (and
    // once at the end), and the progress counters are published in batches.
    let mut last_record = Instant::now();
    let mut since_idle = 0u64;
    let mut count = 0u64;
    let mut unpublished = (0u64, 0u64);
    let mut idle_stop = false;
    thread::scope(|scope| -> anyhow::Result<()> {
        let progress = Progress::start(
            scope,
            "consume",
            vec![("received", counter(&received, &received_bytes))],
            &done,
        );
        let publish = |unpublished: &mut (u64, u64)| {
            let _ = received.fetch_add(unpublished.0, Ordering::Relaxed);
            let _ = received_bytes.fetch_add(unpublished.1, Ordering::Relaxed);
            *unpublished = (0, 0);
        };
        while count < target && deadline.is_none_or(|d| started.elapsed() < d) {
            match consumer.poll(POLL_INTERVAL) {
                Some(Ok(message)) => {
                    count += 1;
                    since_idle += 1;
                    unpublished.0 += 1;
                    unpublished.1 += (message.payload_len() + message.key_len()) as u64;
                    if unpublished.0 == PUBLISH_EVERY {
                        publish(&mut unpublished);
                    }
                }
                Some(Err(error)) => {
                    done.store(true, Ordering::Relaxed);
                    return Err(error).context("consume");
                }
                None => {
                    if since_idle > 0 {
                        last_record = Instant::now();
                        since_idle = 0;
                    }
                    if last_record.elapsed() >= idle_limit {
                        idle_stop = true;
                        break;
                    }
                }
            }
        }
        if since_idle > 0 {
            last_record = Instant::now();
        }
        publish(&mut unpublished);
        done.store(true, Ordering::Relaxed);
        drop(progress);
        Ok(())
    })?;
    let elapsed = last_record.saturating_duration_since(started);
    let shortfall = (idle_stop && deadline.is_none()).then(|| {
        format!(
            "received {count} of {target} record(s): nothing new for {} ms",
            idle_limit.as_millis()
        )
    });
    Ok(Summary {
        mode: "consume",
        topic: args.topic.clone(),
        record_size: args.record_size,
        producers: None,
        messages: count,
        bytes: received_bytes.load(Ordering::Relaxed),
        errors: 0,
        first_error: None,
        elapsed,
        latency_label: "",
        latency: None,
        transactions: None,
        shortfall,
    })
}

fn e2e(args: &BenchArgs, clock: Clock, run_id: u64) -> anyhow::Result<Summary> {
    let consumer = consumer(args)?;
    // Start exactly at today's end of every partition, so every record of this run is read
    // and none of an earlier one; the run id filters any stragglers anyway.
    let marks = watermarks(&consumer, &args.topic)?;
    let mut assignment = TopicPartitionList::with_capacity(marks.len());
    for &(partition, _, high) in &marks {
        assignment
            .add_partition_offset(&args.topic, partition, Offset::Offset(high))
            .context("build partition list")?;
    }
    consumer.assign(&assignment).context("assign partitions")?;

    let sent_total = AtomicU64::new(u64::MAX);
    let received = AtomicU64::new(0);
    let received_bytes = AtomicU64::new(0);
    let consumer_done = AtomicBool::new(false);
    let idle_limit = args.timeout();
    let started = Instant::now();
    let (produced, consumed) = thread::scope(|scope| {
        let reader = scope.spawn(|| -> anyhow::Result<(Histogram<u64>, Instant, bool)> {
            let mut latency = latency_histogram();
            let mut last_record = Instant::now();
            let mut count = 0u64;
            loop {
                let total = sent_total.load(Ordering::Acquire);
                if count >= total {
                    return Ok((latency, last_record, false));
                }
                match consumer.poll(POLL_INTERVAL) {
                    Some(Ok(message)) => {
                        let Some(send_ns) = message.payload().and_then(|p| payload::decode_send_ns(p, run_id)) else {
                            continue;
                        };
                        latency.saturating_record(payload::latency_ns(send_ns, clock.now_ns()));
                        count += 1;
                        let size = message.payload_len() + message.key_len();
                        let _ = received.fetch_add(1, Ordering::Relaxed);
                        let _ = received_bytes.fetch_add(size as u64, Ordering::Relaxed);
                        last_record = Instant::now();
                    }
                    Some(Err(error)) => return Err(error).context("consume"),
                    None if total != u64::MAX && last_record.elapsed() >= idle_limit => {
                        return Ok((latency, last_record, true));
                    }
                    None => {}
                }
            }
        });
        let progress = Progress::start(
            scope,
            "e2e",
            vec![("received", counter(&received, &received_bytes))],
            &consumer_done,
        );
        let produced = produce(args, clock, run_id, args.budget(), Some(&sent_total));
        if produced.is_err() {
            // Let the reader stop: nothing more is coming.
            sent_total.store(0, Ordering::Release);
        }
        let consumed = reader.join().expect("e2e reader thread panicked");
        consumer_done.store(true, Ordering::Relaxed);
        drop(progress);
        (produced, consumed)
    });
    let produced = produced?;
    let (latency, last_record, idle_stop) = consumed?;
    let count = received.load(Ordering::Relaxed);
    let sent = sent_total.load(Ordering::Relaxed);
    let shortfall = idle_stop.then(|| {
        format!(
            "received {count} of {sent} sent record(s) ({} acknowledged): nothing new for {} ms",
            produced.messages,
            idle_limit.as_millis()
        )
    });
    Ok(Summary {
        mode: "e2e",
        topic: args.topic.clone(),
        record_size: args.record_size,
        producers: produced.producers,
        messages: count,
        bytes: received_bytes.load(Ordering::Relaxed),
        errors: produced.errors,
        first_error: produced.first_error,
        elapsed: last_record.saturating_duration_since(started),
        latency_label: "send to receive",
        latency: LatencySummary::from_histogram(&latency),
        transactions: None,
        shortfall: shortfall.or(produced.shortfall),
    })
}

/// A progress counter: its (records, bytes) so far.
type Counter<'a> = Box<dyn Fn() -> (u64, u64) + Send + 'a>;

/// The counter of a pair of atomics.
fn counter<'a>(messages: &'a AtomicU64, bytes: &'a AtomicU64) -> Counter<'a> {
    Box::new(|| (messages.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed)))
}

/// Prints `msgs/s` and `MB/s` of some counters to stderr every second until dropped.
struct Progress<'scope> {
    stop: &'scope AtomicBool,
    thread: Option<thread::ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Progress<'scope> {
    fn start<'env>(
        scope: &'scope thread::Scope<'scope, 'env>,
        label: &'static str,
        counters: Vec<(&'static str, Counter<'scope>)>,
        stop: &'scope AtomicBool,
    ) -> Self {
        let thread = scope.spawn(move || {
            let started = Instant::now();
            let mut last: Vec<(u64, u64)> = vec![(0, 0); counters.len()];
            let mut last_tick = started;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
                let interval = last_tick.elapsed();
                if interval < PROGRESS_INTERVAL {
                    continue;
                }
                last_tick = Instant::now();
                let mut line = format!("{label} {:6.1} s", started.elapsed().as_secs_f64());
                for ((name, read), last) in counters.iter().zip(last.iter_mut()) {
                    let now = read();
                    let seconds = interval.as_secs_f64();
                    line.push_str(&format!(
                        "  {:>10.0} msgs/s {:>8.2} MB/s  {name} {}",
                        per_second(now.0 - last.0, seconds),
                        per_second(now.1 - last.1, seconds) / 1e6,
                        now.0
                    ));
                    *last = now;
                }
                eprintln!("{line}");
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LatencySummary {
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

impl LatencySummary {
    /// From a histogram of nanoseconds; `None` when it holds no samples.
    fn from_histogram(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Some(LatencySummary {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        })
    }

    /// `label: p50 .. ms, ...` and a newline.
    fn to_text(self, label: &str) -> String {
        format!(
            "{label}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms\n",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "p50": self.p50_ms, "p99": self.p99_ms, "p99_9": self.p999_ms, "max": self.max_ms,
        })
    }
}

/// What the transactions of a transactional produce run did.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TxnSummary {
    /// Records per transaction (`--transaction-records`; the last may hold fewer).
    records: u64,
    committed: u64,
    aborted: u64,
    /// `commit_transaction` once the transaction's records were acknowledged.
    commit: Option<LatencySummary>,
    /// From `begin_transaction` to the commit's return.
    whole: Option<LatencySummary>,
}

impl TxnSummary {
    fn to_text(self) -> String {
        let mut text = format!(
            "transactions: {} committed, {} aborted, {} records each\n",
            self.committed, self.aborted, self.records
        );
        if let Some(l) = &self.commit {
            text.push_str(&l.to_text("commit (after the flush)"));
        }
        if let Some(l) = &self.whole {
            text.push_str(&l.to_text("transaction (begin to committed)"));
        }
        text
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "records": self.records,
            "committed": self.committed,
            "aborted": self.aborted,
            "commit_ms": self.commit.map(|l| l.to_json()),
            "transaction_ms": self.whole.map(|l| l.to_json()),
        })
    }
}

/// The result of one bench run.
#[derive(Debug)]
struct Summary {
    mode: &'static str,
    topic: String,
    record_size: u32,
    /// Producers that sent the records (produce and e2e); `None` for consume.
    producers: Option<u32>,
    /// Acknowledged (produce; transactional: in committed transactions) or received
    /// (consume, e2e) records.
    messages: u64,
    /// Payload and key bytes of `messages`.
    bytes: u64,
    /// Records that failed to enqueue or were not acknowledged (transactional: or were, but
    /// their transaction did not commit).
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latency_label: &'static str,
    latency: Option<LatencySummary>,
    /// Transactional produce only.
    transactions: Option<TxnSummary>,
    /// Why the run counted fewer records than it meant to, if it did.
    shortfall: Option<String>,
}

impl Summary {
    fn msgs_per_s(&self) -> f64 {
        per_second(self.messages, self.elapsed.as_secs_f64())
    }

    /// Megabytes (10^6 bytes) per second.
    fn mb_per_s(&self) -> f64 {
        per_second(self.bytes, self.elapsed.as_secs_f64()) / 1e6
    }

    fn to_text(&self) -> String {
        let from = match self.producers {
            Some(count) if count > 1 => format!(" from {count} producers"),
            _ => String::new(),
        };
        let mut text = format!(
            "bench {}: {} records of {} B{from} in {:.3} s, errors {}\n\
             throughput: {:.0} msgs/s, {:.2} MB/s\n",
            self.mode,
            self.messages,
            self.record_size,
            self.elapsed.as_secs_f64(),
            self.errors,
            self.msgs_per_s(),
            self.mb_per_s(),
        );
        if let Some(l) = &self.latency {
            text.push_str(&l.to_text(&format!("latency ({})", self.latency_label)));
        }
        if let Some(t) = &self.transactions {
            text.push_str(&t.to_text());
        }
        if let Some(error) = &self.first_error {
            text.push_str(&format!("first error: {error}\n"));
        }
        text
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode,
            "topic": self.topic,
            "record_size": self.record_size,
            "producers": self.producers,
            "messages": self.messages,
            "bytes": self.bytes,
            "errors": self.errors,
            "first_error": self.first_error,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "msgs_per_s": self.msgs_per_s(),
            "mb_per_s": self.mb_per_s(),
            "latency_kind": (!self.latency_label.is_empty()).then_some(self.latency_label),
            "latency_ms": self.latency.map(|l| l.to_json()),
            "transactions": self.transactions.map(|t| t.to_json()),
            "shortfall": self.shortfall,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, parse_error};
    use crate::ClientCommand;

    pub(super) fn bench(args: &[&str]) -> BenchArgs {
        match parse(args) {
            ClientCommand::Bench(args) => args,
            other => panic!("expected bench, got {other:?}"),
        }
    }

    #[test]
    fn bench_defaults() {
        let args = bench(&["bench", "produce"]);
        assert_eq!(args.mode, BenchMode::Produce);
        assert_eq!(args.topic, "strom-bench");
        assert_eq!(args.record_size, 100);
        assert_eq!((args.batch_size, args.linger_ms), (1_000_000, 5));
        assert!(matches!(args.budget(), Budget::Messages(MESSAGES_DEFAULT)));
        assert!(!args.json);
        assert!(!args.idempotent);
        assert_eq!(args.transaction_records, None);
        assert_eq!(args.producers, 1);
    }

    #[test]
    fn bench_producers_are_for_produce_mode() {
        let args = bench(&[
            "bench",
            "produce",
            "--producers",
            "4",
            "--partitions",
            "4",
            "--transaction-records",
            "1000",
            "--rate",
            "4",
        ]);
        assert_eq!((args.producers, args.partitions()), (4, 4));
        assert!(args.check().is_ok());
        let error = bench(&["bench", "e2e", "--producers", "2"]).check().unwrap_err();
        assert!(error.to_string().contains("produce mode only"), "{error}");
        let error = bench(&["bench", "produce", "--producers", "3", "--rate", "2"])
            .check()
            .unwrap_err();
        assert!(
            error.to_string().contains("--rate must be at least --producers"),
            "{error}"
        );
        let error = parse_error(&["bench", "produce", "--producers", "0"]);
        assert!(error.contains("producers"), "{error}");
    }

    #[test]
    fn producers_split_the_records_and_share_the_duration() {
        let shares: Vec<u64> = (0..3).map(|i| share(10, i, 3)).collect();
        assert_eq!(shares, [4, 3, 3]);
        assert_eq!((0..4).map(|i| share(2, i, 4)).collect::<Vec<_>>(), [1, 1, 0, 0]);
        assert_eq!(share(7, 0, 1), 7);
        assert_eq!(Budget::Messages(10).share(2, 3), Budget::Messages(3));
        let minute = Budget::Duration(Duration::from_secs(60));
        assert_eq!(minute.share(1, 4), minute);
    }

    #[test]
    fn transactions_of_several_producers_add_up() {
        let mut first = Transactions::new(10);
        first.committed = 2;
        first.committed_records = 20;
        first.commit.saturating_record(1_000_000);
        let mut second = Transactions::new(10);
        second.committed = 3;
        second.committed_records = 25;
        second.aborted = 1;
        second.first_error = Some("fenced".to_string());
        second.commit.saturating_record(3_000_000);
        first.absorb(second);
        assert_eq!((first.committed, first.committed_records, first.aborted), (5, 45, 1));
        assert_eq!(first.first_error.as_deref(), Some("fenced"));
        let summary = first.summary();
        assert_eq!(first.commit.len(), 2);
        assert!(summary.commit.is_some_and(|c| c.max_ms >= 2.99), "{summary:?}");
        assert_eq!(summary.whole, None);
    }

    #[test]
    fn bench_transactions_are_for_produce_mode() {
        let args = bench(&["bench", "produce", "--transaction-records", "1000"]);
        assert_eq!(args.transaction_records, Some(1000));
        assert!(args.check().is_ok());
        let args = bench(&["bench", "produce", "--idempotent"]);
        assert!(args.idempotent);
        assert!(args.check().is_ok());
        let error = bench(&["bench", "e2e", "--transaction-records", "10"])
            .check()
            .unwrap_err();
        assert!(error.to_string().contains("produce mode only"), "{error}");
        let error = parse_error(&["bench", "produce", "--transaction-records", "0"]);
        assert!(error.contains("transaction-records"), "{error}");
    }

    #[test]
    fn bench_flags() {
        let args = bench(&[
            "bench",
            "e2e",
            "lat",
            "--duration-s",
            "10",
            "--record-size",
            "16",
            "--acks",
            "1",
            "--compression",
            "lz4",
            "--partitions",
            "3",
            "--rate",
            "50000",
            "--json",
            "-X",
            "socket.nagle.disable=true",
        ]);
        assert_eq!(args.mode, BenchMode::E2e);
        assert_eq!(args.topic, "lat");
        assert!(matches!(args.budget(), Budget::Duration(d) if d == Duration::from_secs(10)));
        assert_eq!((args.partitions(), args.rate), (3, Some(50_000)));
        assert!(args.json);
        let args = bench(&["bench", "consume", "t", "--prefill", "1000"]);
        assert_eq!(args.prefill, Some(1000));
    }

    #[test]
    fn bench_rejects_bad_input() {
        let error = parse_error(&["bench", "produce", "--record-size", "15"]);
        assert!(error.contains("15"), "{error}");
        let _ = parse_error(&["bench", "produce", "--messages", "1", "--duration-s", "1"]);
        let _ = parse_error(&["bench", "fetch"]);
    }

    #[test]
    fn pacing_spreads_records_evenly() {
        assert_eq!(due_offset_ns(0, 1000), 0);
        assert_eq!(due_offset_ns(1, 1000), 1_000_000);
        assert_eq!(due_offset_ns(1000, 1000), 1_000_000_000);
        assert_eq!(due_offset_ns(3, 0), 3_000_000_000);
        assert_eq!(due_offset_ns(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn latency_percentiles_in_milliseconds() {
        let mut histogram = latency_histogram();
        for ms in 1..=1000u64 {
            histogram.saturating_record(ms * 1_000_000);
        }
        let summary = LatencySummary::from_histogram(&histogram).unwrap();
        // Three significant digits: each value within 0.1 % of the exact quantile.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1000.0), "{summary:?}");
        assert_eq!(LatencySummary::from_histogram(&latency_histogram()), None);
    }

    #[test]
    fn histogram_clamps_instead_of_failing() {
        let mut histogram = latency_histogram();
        histogram.saturating_record(u64::MAX);
        assert!(histogram.max() >= LATENCY_NS_MAX);
    }

    #[test]
    fn summary_rates_and_json() {
        let summary = Summary {
            mode: "produce",
            topic: "t".to_string(),
            record_size: 100,
            producers: Some(1),
            messages: 2_000_000,
            bytes: 200_000_000,
            errors: 3,
            first_error: Some("boom".to_string()),
            elapsed: Duration::from_secs(2),
            latency_label: "send to ack",
            latency: Some(LatencySummary {
                p50_ms: 1.0,
                p99_ms: 2.0,
                p999_ms: 3.0,
                max_ms: 4.0,
            }),
            transactions: None,
            shortfall: None,
        };
        assert_eq!(summary.msgs_per_s(), 1_000_000.0);
        assert_eq!(summary.mb_per_s(), 100.0);
        let json = summary.to_json();
        assert_eq!(json["msgs_per_s"], 1_000_000.0);
        assert_eq!(json["errors"], 3);
        assert_eq!(json["latency_ms"]["p99_9"], 3.0);
        assert!(!json.to_string().contains('\n'));
        assert!(summary.to_text().contains("p99.9 3.000 ms"));
        assert!(json["transactions"].is_null());
        assert_eq!(json["producers"], 1);
        assert!(summary
            .to_text()
            .starts_with("bench produce: 2000000 records of 100 B in 2.000 s"));
        let transactional = Summary {
            transactions: Some(TxnSummary {
                records: 1000,
                committed: 2000,
                aborted: 1,
                commit: summary.latency,
                whole: None,
            }),
            ..summary
        };
        let json = transactional.to_json();
        assert_eq!(json["transactions"]["committed"], 2000);
        assert_eq!(json["transactions"]["commit_ms"]["p99"], 2.0);
        assert!(json["transactions"]["transaction_ms"].is_null());
        let text = transactional.to_text();
        assert!(text.starts_with("bench produce: 2000000 records of 100 B in"), "{text}");
        assert!(
            text.contains("transactions: 2000 committed, 1 aborted, 1000 records each"),
            "{text}"
        );
        assert!(text.contains("commit (after the flush): p50 1.000 ms"), "{text}");
        let several = Summary {
            producers: Some(4),
            ..transactional
        };
        assert_eq!(several.to_json()["producers"], 4);
        let text = several.to_text();
        assert!(
            text.starts_with("bench produce: 2000000 records of 100 B from 4 producers in 2.000 s"),
            "{text}"
        );
        let empty = Summary {
            elapsed: Duration::ZERO,
            ..several
        };
        assert_eq!(empty.msgs_per_s(), 0.0);
    }
}
