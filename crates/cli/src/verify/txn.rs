//! The txn workload's consume-transform-produce loops ("transactors").
//!
//! Each has a group member reading `{prefix}-txn-in` read_committed and a transactional
//! producer (`transactional.id` `{prefix}-txn-{i}`). A loop: poll a batch (up to
//! [`BATCH_RECORDS_MAX`] records or [`BATCH_WAIT`]); begin a transaction `{client}-{n}`;
//! send `{input}@{txn}` for every input to the same partition number of `{prefix}-txn-out`;
//! add the consumed offsets to the transaction; commit it, or, for `--abort-percent` of them,
//! abort it on purpose.
//!
//! How a transaction's end is recorded:
//! - `committed`: the commit call succeeded.
//! - `aborted`: the abort call succeeded; or the commit was never asked for (a send or the
//!   offsets failed first), whatever happened next, since only a commit request commits; or
//!   the commit failed because a record's delivery failed, which librdkafka checks before it
//!   sends EndTxn.
//! - `unknown`: any other failed commit: EndTxn may have reached the coordinator.
//!
//! After an abort the consumer goes back to the group's committed offsets, to process the
//! inputs again. A fatal error (the producer fenced, say), or a failure that leaves the
//! client in a state it cannot leave, replaces both clients under a new name `{client}.{n}`
//! with the same transactional id: its `init_transactions` fences the old producer and ends
//! its open transaction, and the new member starts from the committed offsets.
//!
//! A rebalance while a batch is being polled drops what was polled before it: those
//! partitions may have another owner now, and this member restarts from the committed
//! offsets of what it still (or newly) owns.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Offset;
use strom_verify::history::{Isolation, Op, Outcome, TpOffset};

use super::clients::{
    abandon_producer, close_member, member_config, position_list, producer_config, sleep_while, value_of,
    DeliveryContext, ErrorLog, MemberContext, Random, Sent,
};
use super::history_writer::Recorder;
use super::queue::{incarnation_name, POLL_SLICE, RESTART_PAUSE};
use super::runner::Shared;

/// Most inputs in one transaction.
const BATCH_RECORDS_MAX: usize = 50;
/// Longest a batch is polled for.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Bound on each transactional call (init, offsets, commit, abort) and on the rewind's calls.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a commit or an abort that failed retriably is tried again.
const TXN_RETRY_WINDOW: Duration = Duration::from_secs(60);
/// Pause before a retriable transactional call is made again; most such errors come after a
/// wait of their own (a timeout), some at once.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long past its own timeout a transactional call may block before the clients are
/// replaced.
const HUNG_GRACE: Duration = Duration::from_secs(15);
/// Bound on serving the delivery reports of an aborted transaction's purged records.
const REPORTS_WAIT: Duration = Duration::from_secs(5);

/// Why the current clients must be replaced.
struct Replace(String);

/// A transactional call's failure: its text, and whether the producer is beyond use.
struct Failure {
    error: String,
    fatal: bool,
}

impl Failure {
    fn of(error: &KafkaError, producer: &BaseProducer<DeliveryContext>) -> Failure {
        let fatal =
            matches!(error, KafkaError::Transaction(e) if e.is_fatal()) || producer.client().fatal_error().is_some();
        Failure {
            error: error.to_string(),
            fatal,
        }
    }
}

/// An input record of the batch being processed.
struct Input {
    topic: String,
    partition: i32,
    offset: i64,
    value: String,
}

/// Runs transactor `index` (and its successors) until the run stops consuming.
pub(super) fn transactor(shared: &Shared, recorder: Recorder, index: u32) {
    let transactional_id = format!("{}-txn-{index}", shared.names.prefix);
    let mut random = Random::new(recorder.client());
    let mut incarnation = 0;
    while shared.consuming() {
        let client = incarnation_name(recorder.client(), incarnation);
        incarnation += 1;
        let log = ErrorLog::new(&client);
        match Transactor::start(shared, recorder.named(&client), &transactional_id) {
            Ok(mut transactor) => {
                let replaced = transactor.run(&mut random);
                transactor.close();
                match replaced {
                    Some(Replace(why)) => log.error(format_args!("replacing the clients: {why}")),
                    None => return,
                }
            }
            Err(Replace(why)) => log.error(format_args!("start: {why}")),
        }
        let _ = sleep_while(RESTART_PAUSE, || shared.consuming());
    }
}

struct Transactor<'a> {
    shared: &'a Shared,
    client: String,
    consumer: BaseConsumer<MemberContext>,
    /// Shared only with a `send_offsets_to_transaction` call's own thread (see
    /// [`Transactor::send_offsets`]).
    producer: Arc<BaseProducer<DeliveryContext>>,
    /// Transactions begun.
    count: u64,
}

impl<'a> Transactor<'a> {
    /// The producer first (its `init_transactions` fences any predecessor and ends its open
    /// transaction), then the member, which then starts from settled committed offsets.
    fn start(shared: &'a Shared, recorder: Recorder, transactional_id: &str) -> Result<Self, Replace> {
        let client = recorder.client().to_string();
        let producer: BaseProducer<DeliveryContext> =
            producer_config(&shared.connection, &client, Some(transactional_id), None)
                .create_with_context(DeliveryContext::new(recorder.clone()))
                .map_err(|e| Replace(format!("create producer: {e}")))?;
        let deadline = Instant::now() + TXN_RETRY_WINDOW;
        loop {
            match producer.init_transactions(TXN_CALL_TIMEOUT) {
                Ok(()) => break,
                Err(error) => {
                    let failure = Failure::of(&error, &producer);
                    let retriable = matches!(&error, KafkaError::Transaction(e) if e.is_retriable());
                    if !retriable || failure.fatal || Instant::now() >= deadline || !shared.consuming() {
                        abandon_producer(producer, Duration::ZERO);
                        return Err(Replace(format!("init transactions: {}", failure.error)));
                    }
                    producer
                        .context()
                        .log()
                        .error(format_args!("init transactions: {error}; retrying"));
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        let group = &shared.names.txn_group;
        let consumer: BaseConsumer<MemberContext> =
            match member_config(&shared.connection, &client, group, Isolation::ReadCommitted)
                .create_with_context(MemberContext::new(recorder, group))
            {
                Ok(consumer) => consumer,
                Err(error) => {
                    abandon_producer(producer, Duration::ZERO);
                    return Err(Replace(format!("create group member: {error}")));
                }
            };
        let transactor = Transactor {
            shared,
            client,
            consumer,
            producer: Arc::new(producer),
            count: 0,
        };
        if let Err(error) = transactor.consumer.subscribe(&[&shared.names.txn_in.name]) {
            transactor.close();
            return Err(Replace(format!("subscribe: {error}")));
        }
        Ok(transactor)
    }

    fn close(self) {
        close_member(self.consumer, &ErrorLog::new(&self.client));
        match Arc::try_unwrap(self.producer) {
            Ok(producer) => abandon_producer(producer, Duration::from_secs(1)),
            // A hung call's thread still holds it: it is left to that thread, never used again.
            Err(shared) => std::mem::forget(shared),
        }
    }

    /// Transactions until the run stops consuming (`None`) or the clients must be replaced.
    fn run(&mut self, random: &mut Random) -> Option<Replace> {
        while self.shared.consuming() {
            if let Err(replace) = self.step(random) {
                return Some(replace);
            }
        }
        None
    }

    /// One batch in one transaction.
    fn step(&mut self, random: &mut Random) -> Result<(), Replace> {
        let batch = self.poll_batch();
        if batch.is_empty() {
            return Ok(());
        }
        self.count += 1;
        let txn = format!("{}-{}", self.client, self.count);
        if let Err(error) = self.producer.begin_transaction() {
            return Err(Replace(format!("begin transaction: {error}")));
        }
        self.recorder().record(Op::TxnBegin { txn: txn.clone() });
        let failure = self
            .send_batch(&txn, &batch)
            .and_then(|()| self.send_offsets(&txn, &batch))
            .err();
        match failure {
            None if random.below(100) >= u64::from(self.shared.abort_percent) => self.commit(&txn),
            None => self.abort(&txn, Outcome::Aborted, None),
            Some(failure) if failure.fatal => {
                // No commit was asked for: the transaction can only be aborted.
                self.end(&txn, Outcome::Aborted, Some(failure.error.clone()));
                Err(Replace(failure.error))
            }
            Some(failure) => self.abort(&txn, Outcome::Aborted, Some(failure.error)),
        }
    }

    fn recorder(&self) -> &Recorder {
        self.producer.context().recorder()
    }

    fn end(&self, txn: &str, outcome: Outcome, error: Option<String>) {
        self.recorder().record(Op::TxnEnd {
            txn: txn.to_string(),
            outcome,
            error,
        });
    }

    /// Polls inputs for up to [`BATCH_WAIT`], keeping only those read since the last
    /// rebalance.
    fn poll_batch(&self) -> Vec<Input> {
        let context = self.consumer.context();
        let deadline = Instant::now() + BATCH_WAIT;
        let mut batch = Vec::new();
        while batch.len() < BATCH_RECORDS_MAX {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let rebalances = context.rebalances();
            let polled = self.consumer.poll((deadline - now).min(POLL_SLICE));
            if context.rebalances() != rebalances {
                batch.clear();
            }
            match polled {
                Some(Ok(message)) => {
                    let input = Input {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        offset: message.offset(),
                        value: value_of(&message),
                    };
                    context.recorder().record(Op::Read {
                        topic: input.topic.clone(),
                        partition: input.partition,
                        offset: input.offset,
                        value: input.value.clone(),
                        isolation: Isolation::ReadCommitted,
                    });
                    batch.push(input);
                }
                Some(Err(error)) => context.log().error(format_args!("poll: {error}")),
                None => {}
            }
        }
        batch
    }

    /// Sends one output per input, to the same partition number of the output topic.
    fn send_batch(&self, txn: &str, batch: &[Input]) -> Result<(), Failure> {
        let context = self.producer.context();
        let out = &self.shared.names.txn_out;
        for input in batch {
            let partition = input.partition % out.partitions.max(1);
            let value = format!("{}@{txn}", input.value);
            context.recorder().record(Op::Send {
                topic: out.name.clone(),
                partition,
                value: value.clone(),
                txn: Some(txn.to_string()),
                source: Some(input.value.clone()),
            });
            let sent = Box::new(Sent {
                topic: out.name.clone(),
                partition,
                value: value.clone(),
                txn: Some(txn.to_string()),
            });
            let record = BaseRecord::<(), str, Box<Sent>>::with_opaque_to(&out.name, sent)
                .partition(partition)
                .payload(value.as_str());
            match self.producer.send(record) {
                Ok(()) => context.handed_over(),
                Err((error, record)) => {
                    context.failed(&record.delivery_opaque, format!("enqueue: {error}"));
                    return Err(Failure::of(&error, &self.producer));
                }
            }
            self.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    /// Adds the batch's next offsets to the transaction, under the member's group metadata.
    fn send_offsets(&self, txn: &str, batch: &[Input]) -> Result<(), Failure> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for input in batch {
            let offset = next.entry((&input.topic, input.partition)).or_insert(0);
            *offset = (*offset).max(input.offset + 1);
        }
        let offsets: Vec<TpOffset> = next
            .into_iter()
            .map(|((topic, partition), offset)| TpOffset {
                topic: topic.to_string(),
                partition,
                offset,
            })
            .collect();
        self.recorder().record(Op::TxnOffsets {
            txn: txn.to_string(),
            group: self.shared.names.txn_group.clone(),
            offsets: offsets.clone(),
        });
        let Some(metadata) = self.consumer.group_metadata() else {
            return Err(Failure {
                error: "the member has no group metadata".to_string(),
                fatal: false,
            });
        };
        let list = position_list(&offsets).map_err(|e| Failure::of(&e, &self.producer))?;
        // librdkafka's call can block long past its timeout when the group coordinator it
        // cached has gone (librdkafka issues 5456 and 5511; seen in the campaign after a
        // coordinator was killed): it runs on a thread of its own, and one that hangs is left
        // behind with its producer, which is replaced. No commit was asked for, so the
        // transaction can only end aborted (the successor's init_transactions aborts it).
        let producer = Arc::clone(&self.producer);
        let (done, answer) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("verify-txn-offsets".into())
            .spawn(move || {
                let result = producer.send_offsets_to_transaction(&list, &metadata, TXN_CALL_TIMEOUT);
                let _ = done.send(result);
            });
        if let Err(error) = spawned {
            return Err(Failure {
                error: format!("send offsets: no thread: {error}"),
                fatal: true,
            });
        }
        match answer.recv_timeout(TXN_CALL_TIMEOUT + HUNG_GRACE) {
            Ok(result) => result.map_err(|e| Failure::of(&e, &self.producer)),
            Err(_) => Err(Failure {
                error: format!(
                    "send_offsets_to_transaction still blocked {:?} after its timeout",
                    HUNG_GRACE
                ),
                fatal: true,
            }),
        }
    }

    /// Commits, retrying what librdkafka says may be retried; aborts what it says must be.
    fn commit(&self, txn: &str) -> Result<(), Replace> {
        let deadline = Instant::now() + TXN_RETRY_WINDOW;
        loop {
            let error = match self.producer.commit_transaction(TXN_CALL_TIMEOUT) {
                Ok(()) => {
                    self.end(txn, Outcome::Committed, None);
                    return Ok(());
                }
                Err(error) => error,
            };
            let (retriable, requires_abort) = match &error {
                // rdkafka's flush before the commit timed out: nothing was asked yet.
                KafkaError::Flush(_) => (true, false),
                KafkaError::Transaction(e) => (e.is_retriable() && !e.is_fatal(), e.txn_requires_abort()),
                _ => (false, false),
            };
            let failure = Failure::of(&error, &self.producer);
            if retriable && !failure.fatal && Instant::now() < deadline {
                self.producer
                    .context()
                    .log()
                    .error(format_args!("commit {txn}: {error}; retrying"));
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
            if requires_abort && !failure.fatal {
                let outcome = if self.producer.context().delivery_failed_in(txn) {
                    Outcome::Aborted
                } else {
                    Outcome::Unknown
                };
                return self.abort(txn, outcome, Some(failure.error));
            }
            self.end(txn, Outcome::Unknown, Some(failure.error.clone()));
            return Err(Replace(format!("commit {txn}: {}", failure.error)));
        }
    }

    /// Aborts (the transaction is recorded as ending with `outcome` either way), then goes
    /// back to the committed offsets.
    fn abort(&self, txn: &str, outcome: Outcome, why: Option<String>) -> Result<(), Replace> {
        let deadline = Instant::now() + TXN_RETRY_WINDOW;
        loop {
            // librdkafka's abort waits for the records in flight, whose reports only a poll
            // serves: rdkafka's flush polls (its commit does the same).
            if let Err(error) = self.producer.flush(TXN_CALL_TIMEOUT) {
                self.producer
                    .context()
                    .log()
                    .error(format_args!("abort {txn}: flush: {error}"));
            }
            match self.producer.abort_transaction(TXN_CALL_TIMEOUT) {
                Ok(()) => break,
                Err(error) => {
                    let failure = Failure::of(&error, &self.producer);
                    let retriable = matches!(&error, KafkaError::Transaction(e) if e.is_retriable());
                    if retriable && !failure.fatal && Instant::now() < deadline {
                        self.producer
                            .context()
                            .log()
                            .error(format_args!("abort {txn}: {error}; retrying"));
                        std::thread::sleep(RETRY_PAUSE);
                        continue;
                    }
                    self.end(txn, outcome, Some(why.unwrap_or(failure.error.clone())));
                    return Err(Replace(format!("abort {txn}: {}", failure.error)));
                }
            }
        }
        self.end(txn, outcome, why);
        // Any report still due, so it is not taken for the next transaction's.
        let deadline = Instant::now() + REPORTS_WAIT;
        while self.producer.context().in_flight() > 0 && Instant::now() < deadline {
            self.producer.poll(POLL_SLICE);
        }
        self.rewind()
    }

    /// Moves every assigned partition back to the group's committed offset.
    fn rewind(&self) -> Result<(), Replace> {
        let committed = self
            .consumer
            .committed(TXN_CALL_TIMEOUT)
            .map_err(|e| Replace(format!("committed offsets: {e}")))?;
        for element in committed.elements() {
            element.error().map_err(|e| {
                Replace(format!(
                    "committed offset of {}/{}: {e}",
                    element.topic(),
                    element.partition()
                ))
            })?;
            let (offset, to) = match element.offset() {
                Offset::Offset(offset) => (offset, Offset::Offset(offset)),
                // Nothing committed: auto.offset.reset=earliest.
                _ => (0, Offset::Beginning),
            };
            self.recorder().record(Op::Seek {
                topic: element.topic().to_string(),
                partition: element.partition(),
                offset,
            });
            self.consumer
                .seek(element.topic(), element.partition(), to, TXN_CALL_TIMEOUT)
                .map_err(|e| Replace(format!("seek {}/{}: {e}", element.topic(), element.partition())))?;
        }
        Ok(())
    }
}
