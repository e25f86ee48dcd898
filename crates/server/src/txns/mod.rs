//! The transaction coordinator inside the broker: [`strom_txn::TxnCoordinator`] behind a
//! lock, its records written to `__transaction_state`, its markers written into the
//! transactions' partitions (here, or by their leaders elsewhere through WriteTxnMarkers), and
//! its clock (timeouts, id expiry, unfinished markers) ticked by a background task.
//!
//! An id's coordinator is the leader of its `__transaction_state` partition: the partition is
//! replicated, a new leader loads the ids it now owns from its copy, and a broker that lost a
//! partition forgets its ids ([`lead_partitions`]).
//!
//! One transactional id's plans are carried out one at a time, under that id's own lock
//! ([`IdLocks`]), in order: a record is applied only once it is on every in-sync replica of
//! its partition, and a marker is written only after the record that decided it. The
//! coordinator's own lock is held only to prepare a plan and to apply a record, so one slow
//! replication delays one id, not the broker's other transactions. Lock order: an id's lock,
//! then the coordinator, then the group coordinator, then a partition.
//!
//! Markers are written (and replicated) before EndTxn is answered, so a producer's next
//! transaction never overlaps its last one in any partition. A marker that cannot be written
//! leaves the transaction in PrepareCommit/PrepareAbort (the outcome is decided and durable);
//! the timer task retries until every partition has it. A coordinator that takes over an id
//! (after a restart or a failover) finishes such transactions the same way.
//!
//! # Layout
//! - [`loading`]: which ids this broker coordinates, loading and forgetting them.
//! - [`markers`]: writing a transaction's markers into its partitions, here or remotely.
//! - [`remote`]: KIP-890's check of a transactional write, asked of a coordinator on another
//!   broker, and answered for other brokers.

mod loading;
mod markers;
mod remote;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use strom_group::{MemberRef, OffsetToCommit};
use strom_txn::{Plan, Step, TxnCoordinator, TxnError, TxnProtocol};
use tokio::sync::{watch, OwnedMutexGuard};

use crate::clock::now_ms;
use crate::groups::{self, CommitResult, Groups, OFFSETS_TOPIC};
use crate::internal_topic::{CoordinatorLogs, InternalTopic, PersistError};
use crate::ownership::{NotOwned, Ownership};
use crate::producer_ids::ProducerIdAllocator;

pub use loading::lead_partitions;
pub(crate) use markers::write_here as write_markers_here;
pub(crate) use remote::{check_for_broker, check_writes, WriteChecks};

pub use crate::internal_topic::TXN_STATE_TOPIC;

/// The timer task wakes at least this often: to retry markers that could not be written, and
/// to notice a transaction started since it went to sleep. A timeout is thus acted on at most
/// this late (Kafka checks every 10 s), and starting a transaction costs no wake-up.
const TICK_INTERVAL_MAX_MS: i64 = 1000;
/// How long a coordinator waits for one of its records (or markers) to reach every in-sync
/// replica before it gives up on the step (the client retries; the timer finishes markers).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Txns {
    state: Mutex<State>,
    ids: IdLocks,
    state_topic: InternalTopic,
    /// The broker's partitions, cluster and signals.
    logs: CoordinatorLogs,
    /// The group coordinator, for offsets committed in transactions (TxnOffsetCommit, and
    /// the markers that end them in `__consumer_offsets`).
    groups: Arc<Groups>,
    producer_ids: Arc<ProducerIdAllocator>,
}

/// `__transaction_state` as the broker's configuration describes it.
#[derive(Debug, Clone, Copy)]
pub struct StateTopic {
    /// `transaction.state.log.num.partitions`, until the topic exists.
    pub partitions: i32,
    /// `transaction.state.log.segment.bytes`.
    pub segment_bytes: u64,
    /// `transaction.state.log.replication.factor`, for creating the topic.
    pub replication_factor: i16,
}

pub(crate) struct State {
    pub(crate) coordinator: TxnCoordinator,
    /// Which `__transaction_state` partitions' ids this broker coordinates.
    ownership: Ownership,
}

impl State {
    /// Whether this broker coordinates `transactional_id` now.
    fn owns(&self, transactional_id: &str, partition_count: i32) -> Result<(), TxnError> {
        let partition = strom_txn::partition_for(transactional_id, partition_count);
        self.ownership.check(partition).map_err(|refusal| match refusal {
            NotOwned::NotCoordinator => TxnError::NotCoordinator,
            NotOwned::LoadInProgress => TxnError::CoordinatorLoadInProgress,
        })
    }
}

/// How far a plan got.
enum Carried {
    All,
    /// The deciding record is durable but some marker is not written; the timer retries.
    MarkersPending,
    /// A record could not be written (or this broker stopped coordinating the id meanwhile);
    /// nothing after it happened.
    NotPersisted(TxnError),
}

impl Txns {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("transaction coordinator lock")
    }
}

/// One async lock per transactional id with work in progress: its plans, and the check and
/// append of a write that needs the coordinator's word, run one at a time. Entries exist only
/// while someone holds or waits for them.
#[derive(Default)]
struct IdLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds one id's lock; dropping it lets the id's next operation run.
pub(crate) struct IdGuard<'a> {
    locks: &'a IdLocks,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl IdLocks {
    async fn lock(&self, id: &str) -> IdGuard<'_> {
        let lock = self.entry(id);
        let guard = lock.lock_owned().await;
        IdGuard {
            locks: self,
            id: id.to_string(),
            guard: Some(guard),
        }
    }

    /// The id's lock if nobody holds it (the timer skips ids busy with a client's request).
    fn try_lock(&self, id: &str) -> Option<IdGuard<'_>> {
        let lock = self.entry(id);
        let guard = lock.try_lock_owned().ok();
        let guard = IdGuard {
            locks: self,
            id: id.to_string(),
            guard,
        };
        guard.guard.is_some().then_some(guard)
    }

    fn entry(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("id locks")
            .entry(id.to_string())
            .or_default()
            .clone()
    }
}

impl Drop for IdGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().expect("id locks");
        // Only the map's own reference left: nobody holds or waits for this id.
        if locks.get(&self.id).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            locks.remove(&self.id);
        }
    }
}

/// A new producer id, or `None` (logged) if its block could not be reserved.
fn allocate_producer_id(txns: &Txns) -> Option<i64> {
    match txns.producer_ids.allocate() {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(error = %e, "could not persist producer id block");
            None
        }
    }
}

/// Prepares a plan for `transactional_id` on the coordinator, if this broker coordinates it.
fn prepare<T>(
    txns: &Txns,
    transactional_id: &str,
    plan: impl FnOnce(&TxnCoordinator) -> Result<T, TxnError>,
) -> Result<T, TxnError> {
    let count = state_partition_count(txns);
    let state = txns.lock();
    state.owns(transactional_id, count)?;
    plan(&state.coordinator)
}

/// InitProducerId with a transactional id: the producer id and the new epoch.
pub async fn init_producer_id(
    txns: &Txns,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), TxnError> {
    let _id = txns.ids.lock(transactional_id).await;
    let mut allocate = || allocate_producer_id(txns);
    let plan = prepare(txns, transactional_id, |coordinator| {
        coordinator.prepare_init_producer_id(now_ms(), transactional_id, timeout_ms, expected, &mut allocate)
    })?;
    let outcome = carry_out(txns, plan.steps).await;
    if let (Carried::All, Some(expected)) = (&outcome, expected) {
        txns.lock().coordinator.remember_bump(transactional_id, expected);
    }
    match outcome {
        Carried::All => Ok((plan.producer_id, plan.producer_epoch)),
        // The fenced transaction's abort finishes on the timer; the client retries.
        Carried::MarkersPending => Err(TxnError::ConcurrentTransactions),
        Carried::NotPersisted(error) => Err(error),
    }
}

/// AddPartitionsToTxn.
pub async fn add_partitions(
    txns: &Txns,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
) -> Result<(), TxnError> {
    let _id = txns.ids.lock(transactional_id).await;
    add_locked(txns, transactional_id, producer, partitions, TxnProtocol::V1).await
}

/// Adds partitions to the id's transaction; the caller holds the id's lock.
async fn add_locked(
    txns: &Txns,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    protocol: TxnProtocol,
) -> Result<(), TxnError> {
    let plan = prepare(txns, transactional_id, |coordinator| {
        coordinator.prepare_add_partitions(now_ms(), transactional_id, producer, partitions, protocol)
    })?;
    match carry_out(txns, plan).await {
        Carried::NotPersisted(error) => Err(error),
        Carried::All | Carried::MarkersPending => Ok(()),
    }
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
pub async fn add_offsets(
    txns: &Txns,
    transactional_id: &str,
    producer: (i64, i16),
    group_id: &str,
) -> Result<(), TxnError> {
    let partition = (
        OFFSETS_TOPIC.to_string(),
        groups::offsets_partition_of(&txns.groups, group_id),
    );
    add_partitions(txns, transactional_id, producer, std::slice::from_ref(&partition)).await
}

/// EndTxn. Answered once the outcome is durable; by then the markers are written too unless
/// a partition refused one, in which case the timer finishes them.
pub async fn end_txn(txns: &Txns, transactional_id: &str, producer: (i64, i16), commit: bool) -> Result<(), TxnError> {
    let _id = txns.ids.lock(transactional_id).await;
    let plan = prepare(txns, transactional_id, |coordinator| {
        coordinator.prepare_end_txn(now_ms(), transactional_id, producer.0, producer.1, commit)
    })?;
    match carry_out(txns, plan).await {
        Carried::NotPersisted(error) => Err(error),
        Carried::All | Carried::MarkersPending => Ok(()),
    }
}

/// EndTxn v5 (transactions v2): the producer id and epoch of the client's next transaction.
/// Answered, like v1, once the outcome is durable.
pub async fn end_txn_v2(
    txns: &Txns,
    transactional_id: &str,
    producer: (i64, i16),
    commit: bool,
) -> Result<(i64, i16), TxnError> {
    let _id = txns.ids.lock(transactional_id).await;
    let mut allocate = || allocate_producer_id(txns);
    let plan = prepare(txns, transactional_id, |coordinator| {
        coordinator.prepare_end_txn_v2(now_ms(), transactional_id, producer, commit, &mut allocate)
    })?;
    match carry_out(txns, plan.steps).await {
        Carried::NotPersisted(error) => Err(error),
        Carried::All | Carried::MarkersPending => Ok((plan.producer_id, plan.producer_epoch)),
    }
}

/// TxnOffsetCommit, on the group's coordinator: checked against the transaction (v1: its
/// offsets partition must have been added; v2: the commit adds it), by this broker's
/// transaction coordinator or the id's coordinator on another broker, then written.
///
/// When the id is coordinated here the check and the write happen under the id's lock, so
/// no marker of the transaction can slip in between. When it is coordinated elsewhere, a
/// marker written meanwhile carries a newer epoch (an abort on the producer's behalf bumps
/// it) and the offsets log refuses the late write.
pub async fn txn_offset_commit(
    txns: &Txns,
    transactional_id: &str,
    producer: (i64, i16),
    committer: &MemberRef,
    offsets: &[OffsetToCommit],
    protocol: TxnProtocol,
) -> Result<Result<Vec<CommitResult>, strom_group::GroupError>, TxnError> {
    if let Err(error) = groups::check_coordinator(&txns.groups, &committer.group_id) {
        return Ok(Err(error));
    }
    let partition = [(
        OFFSETS_TOPIC.to_string(),
        groups::offsets_partition_of(&txns.groups, &committer.group_id),
    )];
    let checks = check_writes(txns, transactional_id, producer, &partition, protocol).await;
    checks.verdict(&partition[0])?;
    let mut results = match groups::txn_commit(&txns.groups, committer, producer, offsets) {
        Ok(results) => results,
        Err(error) => return Ok(Err(error)),
    };
    drop(checks);
    if results.iter().any(Result::is_ok) {
        if let Err(error) = groups::until_commits_replicated(&txns.groups, &committer.group_id).await {
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(error);
            }
        }
    }
    Ok(Ok(results))
}

pub fn describe(txns: &Txns, transactional_id: &str) -> Result<strom_txn::TransactionMetadata, TxnError> {
    let count = state_partition_count(txns);
    let state = txns.lock();
    state.owns(transactional_id, count)?;
    state
        .coordinator
        .describe(transactional_id)
        .cloned()
        .ok_or(TxnError::TransactionalIdNotFound)
}

/// ListTransactions: the ids this broker coordinates (Kafka's admin client asks every broker).
pub fn list(
    txns: &Txns,
    states: &[strom_txn::TxnState],
    producer_ids: &[i64],
    duration_ms: Option<i64>,
) -> Vec<strom_txn::TxnListing> {
    txns.lock()
        .coordinator
        .list(now_ms(), states, producer_ids, duration_ms)
}

/// Finishes transactions left in a Prepare state (after a restart, a failover or a failed
/// marker write) and aborts those past their timeout. Ids busy with a client's request are
/// left for the next tick.
pub async fn tick(txns: &Txns) {
    let due = txns.lock().coordinator.due(now_ms());
    let mut aborted = 0usize;
    for id in due {
        let Some(_id) = txns.ids.try_lock(&id) else {
            continue;
        };
        let (plan, timing_out) = {
            let state = txns.lock();
            let mut allocate = || allocate_producer_id(txns);
            let ongoing = state
                .coordinator
                .describe(&id)
                .is_some_and(|txn| txn.state == strom_txn::TxnState::Ongoing);
            (state.coordinator.prepare_due(&id, now_ms(), &mut allocate), ongoing)
        };
        let Some(plan) = plan else { continue };
        aborted += usize::from(timing_out);
        let _ = carry_out(txns, plan).await;
    }
    if aborted > 0 {
        tracing::info!(transactions = aborted, "aborted transactions past their timeout");
    }
}

/// Tombstones transactional ids idle for `transactional.id.expiration.ms`.
pub async fn expire_ids(txns: &Txns) {
    let plan = txns.lock().coordinator.prepare_expired_ids(now_ms());
    let mut expired = 0usize;
    for step in plan {
        let id = step.transactional_id().to_string();
        let Some(_id) = txns.ids.try_lock(&id) else {
            continue;
        };
        let Some(plan) = txns.lock().coordinator.prepare_expiry(&id, now_ms()) else {
            continue;
        };
        if let Carried::All = carry_out(txns, plan).await {
            expired += 1;
        }
    }
    if expired > 0 {
        tracing::info!(transactional_ids = expired, "expired idle transactional ids");
    }
}

/// Ticks whenever a transaction times out (and at least every second), and expires idle ids
/// every `interval_ms`, until `stop` changes.
pub async fn run_timers(txns: Arc<Txns>, expiry_interval_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut next_expiry = tokio::time::Instant::now() + Duration::from_millis(expiry_interval_ms);
    loop {
        let wait_ms = {
            let state = txns.lock();
            state.coordinator.next_deadline().map_or(TICK_INTERVAL_MAX_MS, |at| {
                (at - now_ms()).clamp(0, TICK_INTERVAL_MAX_MS)
            })
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = stop.changed() => return,
        }
        tick(&txns).await;
        if tokio::time::Instant::now() >= next_expiry {
            expire_ids(&txns).await;
            next_expiry = tokio::time::Instant::now() + Duration::from_millis(expiry_interval_ms);
        }
    }
}

/// Carries out a plan; the caller holds the lock of the plan's id.
async fn carry_out(txns: &Txns, plan: Plan) -> Carried {
    for step in plan {
        match step {
            Step::Persist(record) => {
                if let Err(error) = persist(txns, &record).await {
                    return Carried::NotPersisted(error);
                }
                let count = state_partition_count(txns);
                let mut state = txns.lock();
                // Lost the partition while writing: its new coordinator reads the record (if it
                // survived) from its own copy.
                if let Err(error) = state.owns(&record.transactional_id, count) {
                    return Carried::NotPersisted(error);
                }
                state.coordinator.apply(record);
            }
            Step::WriteMarkers(markers) => {
                if !markers::write(txns, &markers).await {
                    return Carried::MarkersPending;
                }
            }
        }
    }
    Carried::All
}

/// Writes a record to the id's `__transaction_state` partition and waits until every in-sync
/// replica has it.
async fn persist(txns: &Txns, record: &strom_txn::TxnRecord) -> Result<(), TxnError> {
    let index = strom_txn::partition_for(&record.transactional_id, state_partition_count(txns));
    let encoded: [(Bytes, Option<Bytes>); 1] = [record.encode()];
    let written = txns.state_topic.append(&txns.logs, index, &encoded, None);
    let result = match written {
        Ok(written) => written.replicated(&txns.logs.signals, REPLICATION_TIMEOUT).await,
        Err(e) => Err(e),
    };
    result.map_err(|e| {
        tracing::warn!(transactional_id = record.transactional_id, error = %e, "transaction state not written");
        match e {
            PersistError::NotLeader(_) => TxnError::NotCoordinator,
            _ => TxnError::CoordinatorNotAvailable,
        }
    })
}

/// Partitions by topic, in the order requests list them (markers and checks sent to another
/// broker).
fn by_topic(partitions: &[(String, i32)]) -> std::collections::BTreeMap<&str, Vec<i32>> {
    let mut topics: std::collections::BTreeMap<&str, Vec<i32>> = std::collections::BTreeMap::new();
    for (topic, index) in partitions {
        topics.entry(topic).or_default().push(*index);
    }
    topics
}

fn state_partition_count(txns: &Txns) -> i32 {
    txns.logs
        .topics
        .get(TXN_STATE_TOPIC)
        .map_or(txns.state_topic.partitions, |topic| topic.partition_count())
}

/// In a cluster: asks for `__transaction_state` if it does not exist yet (FindCoordinator,
/// InitProducerId); true once it does.
pub fn ensure_state_topic(txns: &Txns) -> bool {
    txns.state_topic.get_or_create(&txns.logs).is_ok()
}
