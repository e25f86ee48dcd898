//! What the workloads' clients share: their configurations, the contexts that turn librdkafka's
//! callbacks into history events (delivery reports; a group member's assignments, with the
//! group generation librdkafka does not hand to a rebalance callback), bounded closing, and
//! an error log that says each client's trouble at most once a second.

use std::ffi::CStr;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use strom_verify::history::{Isolation, Op, Tp, TpOffset};

use super::history_writer::Recorder;
use crate::connection::ConnectionArgs;

/// How long a record may wait for its answer (librdkafka `message.timeout.ms`).
const MESSAGE_TIMEOUT_MS: u32 = 30_000;
/// Bound on a transaction's life before the coordinator aborts it.
const TRANSACTION_TIMEOUT_MS: u32 = 30_000;
/// A member's session: how long the group waits for a silent member.
const SESSION_TIMEOUT_MS: u32 = 10_000;
/// Longest wait for a group member to leave its group when it is closed.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Shortest interval between two error lines of one client on stderr.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A client's errors on stderr, at most one line per [`ERROR_LOG_INTERVAL`]; the ones left out
/// are counted in the next line.
pub(super) struct ErrorLog {
    client: String,
    state: Mutex<(Option<Instant>, u64)>,
}

impl ErrorLog {
    pub(super) fn new(client: &str) -> ErrorLog {
        ErrorLog {
            client: client.to_string(),
            state: Mutex::new((None, 0)),
        }
    }

    /// A client error reported by librdkafka's error callback. The end of a partition is no
    /// error (librdkafka reports it there too, with `enable.partition.eof`).
    pub(super) fn client_error(&self, error: &KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        self.error(format_args!("{error}: {reason}"));
    }

    pub(super) fn error(&self, what: impl Display) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < ERROR_LOG_INTERVAL) {
            *suppressed += 1;
            return;
        }
        let more = match *suppressed {
            0 => String::new(),
            n => format!(" ({n} more since the last line)"),
        };
        eprintln!("verify: {}: {what}{more}", self.client);
        *last = Some(Instant::now());
        *suppressed = 0;
    }

    /// librdkafka's own log: only its debug lines, which it writes only when asked to
    /// (`-X debug=eos,msg,...`), for looking into a client's state after a fault.
    pub(super) fn client_log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if matches!(level, RDKafkaLogLevel::Debug) {
            eprintln!("verify: {}: {} {facility}: {message}", self.client, clock_text());
        }
    }
}

/// Wall-clock seconds with milliseconds, to line debug lines up with the brokers' logs.
fn clock_text() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

/// A context for clients whose callbacks only report errors: readers, probes.
pub(super) struct LogContext(pub(super) ErrorLog);

impl ClientContext for LogContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.client_error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.0.client_log(level, facility, message);
    }
}

impl ConsumerContext for LogContext {}

/// What a delivery report needs to name its record.
pub(super) struct Sent {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) value: String,
    pub(super) txn: Option<String>,
}

/// A producer's context: each delivery report becomes `ack` or `send_failed`.
pub(super) struct DeliveryContext {
    recorder: Recorder,
    log: ErrorLog,
    in_flight: AtomicUsize,
    /// The last transaction a record of which failed delivery.
    failed_txn: Mutex<Option<String>>,
}

impl DeliveryContext {
    pub(super) fn new(recorder: Recorder) -> DeliveryContext {
        DeliveryContext {
            log: ErrorLog::new(recorder.client()),
            recorder,
            in_flight: AtomicUsize::new(0),
            failed_txn: Mutex::new(None),
        }
    }

    pub(super) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub(super) fn log(&self) -> &ErrorLog {
        &self.log
    }

    /// Records handed to librdkafka and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(super) fn handed_over(&self) {
        let _ = self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a record of `txn` failed delivery.
    pub(super) fn delivery_failed_in(&self, txn: &str) -> bool {
        self.failed_txn.lock().unwrap_or_else(|e| e.into_inner()).as_deref() == Some(txn)
    }

    /// Records that `sent` was never handed over or failed: `send_failed`.
    pub(super) fn failed(&self, sent: &Sent, error: String) {
        self.log
            .error(format_args!("send to {}/{}: {error}", sent.topic, sent.partition));
        if let Some(txn) = &sent.txn {
            *self.failed_txn.lock().unwrap_or_else(|e| e.into_inner()) = Some(txn.clone());
        }
        self.recorder.record(Op::SendFailed {
            topic: sent.topic.clone(),
            partition: sent.partition,
            value: sent.value.clone(),
            error,
            txn: sent.txn.clone(),
        });
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.client_error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.client_log(level, facility, message);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        match result {
            Ok(message) => self.recorder.record(Op::Ack {
                topic: sent.topic,
                partition: message.partition(),
                offset: message.offset(),
                value: sent.value,
                txn: sent.txn,
            }),
            Err((error, _)) => self.failed(&sent, error.to_string()),
        }
        let _ = self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The generation and member id the member holds its assignment under.
#[derive(Clone, Debug, Default)]
struct Membership {
    generation: i32,
    member: String,
}

/// A group member's context: rebalances become `assigned` and `revoked` events.
pub(super) struct MemberContext {
    recorder: Recorder,
    log: ErrorLog,
    group: String,
    membership: Mutex<Membership>,
    /// Assignments and revocations seen; a change tells the poll loop that the records it
    /// holds may belong to partitions it no longer owns.
    rebalances: AtomicU64,
}

impl MemberContext {
    pub(super) fn new(recorder: Recorder, group: &str) -> MemberContext {
        MemberContext {
            log: ErrorLog::new(recorder.client()),
            recorder,
            group: group.to_string(),
            membership: Mutex::new(Membership {
                generation: -1,
                member: String::new(),
            }),
            rebalances: AtomicU64::new(0),
        }
    }

    pub(super) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    pub(super) fn log(&self) -> &ErrorLog {
        &self.log
    }

    pub(super) fn group(&self) -> &str {
        &self.group
    }

    pub(super) fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Relaxed)
    }

    /// The generation of the last assignment (-1 before the first).
    pub(super) fn assigned_generation(&self) -> i32 {
        self.membership.lock().unwrap_or_else(|e| e.into_inner()).generation
    }
}

impl ClientContext for MemberContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.client_error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.client_log(level, facility, message);
    }
}

impl ConsumerContext for MemberContext {
    /// A revocation is recorded under the generation the partitions were assigned in, before
    /// librdkafka lets go of them.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let held = self.membership.lock().unwrap_or_else(|e| e.into_inner()).clone();
                self.recorder.record(Op::Revoked {
                    group: self.group.clone(),
                    generation: held.generation,
                    member: held.member,
                    partitions: tps(list),
                });
                let _ = self.rebalances.fetch_add(1, Ordering::Relaxed);
            }
            Rebalance::Error(error) => self.log.error(format_args!("rebalance: {error}")),
            Rebalance::Assign(_) => {}
        }
    }

    /// An assignment is recorded once librdkafka took it, with the generation it came with.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let (generation, member) = group_generation(consumer).unwrap_or((-1, String::new()));
            *self.membership.lock().unwrap_or_else(|e| e.into_inner()) = Membership {
                generation,
                member: member.clone(),
            };
            self.recorder.record(Op::Assigned {
                group: self.group.clone(),
                generation,
                member,
                partitions: tps(list),
            });
            let _ = self.rebalances.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The group generation and member id librdkafka holds now, which its next commit carries.
///
/// The rdkafka crate keeps the consumer group metadata opaque, so this asks librdkafka's C API
/// for a copy and reads its fields.
#[allow(unsafe_code)]
pub(super) fn group_generation<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<(i32, String)> {
    use rdkafka::bindings as ffi;
    // SAFETY: the handle belongs to `consumer`, alive for the whole call.
    // `rd_kafka_consumer_group_metadata` returns a new object owned by the caller (or NULL
    // when the client has no group); its accessors read it, the member id is a NUL-terminated
    // string owned by that object, copied here before the object is destroyed exactly once.
    // librdkafka answers the request from its main thread, never the caller's, so this may
    // run inside a rebalance callback.
    unsafe {
        let metadata = ffi::rd_kafka_consumer_group_metadata(consumer.client().native_ptr());
        if metadata.is_null() {
            return None;
        }
        let generation = ffi::rd_kafka_consumer_group_metadata_generation_id(metadata);
        let member_ptr = ffi::rd_kafka_consumer_group_metadata_member_id(metadata);
        let member = if member_ptr.is_null() {
            String::new()
        } else {
            CStr::from_ptr(member_ptr).to_string_lossy().into_owned()
        };
        ffi::rd_kafka_consumer_group_metadata_destroy(metadata);
        Some((generation, member))
    }
}

/// An idempotent producer's settings; transactional with `transactional_id`; with `debug`,
/// librdkafka's debug contexts (`--producer-debug`).
pub(super) fn producer_config(
    connection: &ConnectionArgs,
    client: &str,
    transactional_id: Option<&str>,
    debug: Option<&str>,
) -> ClientConfig {
    let mut settings = vec![
        ("client.id", client.to_string()),
        ("enable.idempotence", "true".to_string()),
        ("acks", "all".to_string()),
        ("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string()),
        ("linger.ms", "5".to_string()),
    ];
    if let Some(id) = transactional_id {
        settings.push(("transactional.id", id.to_string()));
        settings.push(("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string()));
    } else if let Some(contexts) = debug {
        settings.push(("debug", contexts.to_string()));
    }
    let mut config = connection.client_config(&settings);
    if debug.is_some() && transactional_id.is_none() {
        // rust-rdkafka passes on only the levels the `log` crate enables, none here.
        config.set_log_level(RDKafkaLogLevel::Debug);
    }
    config
}

/// A consumer group member's settings: eager range assignment, manual commits.
pub(super) fn member_config(
    connection: &ConnectionArgs,
    client: &str,
    group: &str,
    isolation: Isolation,
) -> ClientConfig {
    connection.client_config(&[
        ("client.id", client.to_string()),
        ("group.id", group.to_string()),
        ("partition.assignment.strategy", "range".to_string()),
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("auto.offset.reset", "earliest".to_string()),
        ("isolation.level", isolation_name(isolation).to_string()),
        ("session.timeout.ms", SESSION_TIMEOUT_MS.to_string()),
    ])
}

/// A reader's settings: partitions assigned by hand, nothing committed. librdkafka wants a
/// `group.id` for `assign`, so it gets one of its own that is never joined.
pub(super) fn reader_config(
    connection: &ConnectionArgs,
    client: &str,
    isolation: Isolation,
    partition_eof: bool,
) -> ClientConfig {
    connection.client_config(&[
        ("client.id", client.to_string()),
        (
            "group.id",
            format!("strom-verify-reader-{}-{client}", std::process::id()),
        ),
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("auto.offset.reset", "earliest".to_string()),
        ("isolation.level", isolation_name(isolation).to_string()),
        ("enable.partition.eof", partition_eof.to_string()),
    ])
}

pub(super) fn isolation_name(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::ReadUncommitted => "read_uncommitted",
        Isolation::ReadCommitted => "read_committed",
    }
}

/// A group member leaves its group (waiting at most [`CLOSE_WAIT`]) and is then abandoned,
/// not destroyed: rdkafka's drop waits without a bound for the close, and destroying a
/// client that made synchronous commits was seen to block; the process ends soon anyway.
pub(super) fn close_member<C: ConsumerContext>(consumer: BaseConsumer<C>, log: &ErrorLog) {
    match consumer.close_queue() {
        Ok(()) => {
            let deadline = Instant::now() + CLOSE_WAIT;
            while !consumer.closed() && Instant::now() < deadline {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        }
        Err(error) => log.error(format_args!("close: {error}")),
    }
    std::mem::forget(consumer);
}

/// Fails what a producer still holds (as `send_failed`: in flight, so indeterminate), serves
/// those reports for at most `wait`, and abandons the client (see [`close_member`]).
pub(super) fn abandon_producer(producer: BaseProducer<DeliveryContext>, wait: Duration) {
    producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    let deadline = Instant::now() + wait;
    while producer.context().in_flight() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(50));
    }
    std::mem::forget(producer);
}

/// The partitions of a list.
pub(super) fn tps(list: &TopicPartitionList) -> Vec<Tp> {
    list.elements()
        .iter()
        .map(|e| Tp {
            topic: e.topic().to_string(),
            partition: e.partition(),
        })
        .collect()
}

/// A list of positions for a commit.
pub(super) fn position_list(offsets: &[TpOffset]) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for o in offsets {
        list.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))?;
    }
    Ok(list)
}

/// A record's value as the history's string.
pub(super) fn value_of(message: &BorrowedMessage<'_>) -> String {
    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned()
}

/// Sleeps `total` in slices, returning early (false) once `go_on` turns false.
pub(super) fn sleep_while(total: Duration, go_on: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + total;
    loop {
        if !go_on() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// A small pseudo-random source (xorshift64*) for choices that need no quality: which
/// transaction to abort, where to seek.
pub(super) struct Random(u64);

impl Random {
    /// Seeded from the clock and the client's name, different for every client.
    pub(super) fn new(client: &str) -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let salt = client.bytes().fold(u64::from(std::process::id()), |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        Random((nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..bound` (`bound` > 0).
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_stays_below_its_bound_and_varies() {
        let mut random = Random::new("txn-0");
        let draws: Vec<u64> = (0..1000).map(|_| random.below(10)).collect();
        assert!(draws.iter().all(|d| *d < 10));
        assert!((0..10).all(|v| draws.contains(&v)), "{draws:?}");
        assert_eq!(random.below(0), 0);
    }

    #[test]
    fn position_lists_carry_offsets() {
        let list = position_list(&[TpOffset {
            topic: "t".into(),
            partition: 2,
            offset: 9,
        }])
        .unwrap();
        let elements = list.elements();
        assert_eq!((elements[0].topic(), elements[0].partition()), ("t", 2));
        assert_eq!(elements[0].offset(), Offset::Offset(9));
        assert_eq!(
            tps(&list),
            vec![Tp {
                topic: "t".into(),
                partition: 2
            }]
        );
    }
}
