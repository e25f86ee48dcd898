//! The transaction coordinator inside the broker: [`strom_txn::TxnCoordinator`] behind one
//! lock, its records written to `__transaction_state`, its markers written into the
//! transactions' partitions, and its clock (timeouts, id expiry, unfinished markers) ticked by
//! a background task.
//!
//! Every plan is carried out under the coordinator lock, in order: a record is applied only
//! once it is in the log, and a marker is written only after the record that decided it. Lock
//! order is coordinator, then group coordinator, then partition; nothing that holds a
//! partition or the group lock takes this one.
//!
//! Markers are written before EndTxn is answered, so a producer's next transaction never
//! overlaps its last one in any partition. A marker that cannot be written leaves the
//! transaction in PrepareCommit/PrepareAbort (the outcome is decided and durable); the timer
//! task retries until every partition has it. After a restart, transactions found in a Prepare
//! state are finished the same way before clients are served.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use strom_group::MemberRef;
use strom_group::OffsetToCommit;
use strom_record::control::Marker;
use strom_storage::AppendError;
use strom_txn::{Markers, Plan, Step, TxnConfig, TxnCoordinator, TxnError, TxnProtocol, TxnRecord};
use tokio::sync::watch;

use crate::broker::{now_ms, Broker};
use crate::groups::{self, CommitResult, OFFSETS_TOPIC};
use crate::internal_topic::{self, InternalTopic};
use crate::partition::Partition;
use crate::topics::TopicRegistry;

pub const TXN_STATE_TOPIC: &str = "__transaction_state";

/// The timer task wakes at least this often: to retry markers that could not be written, and
/// to notice a transaction started since it went to sleep. A timeout is thus acted on at most
/// this late (Kafka checks every 10 s), and starting a transaction costs no wake-up.
const TICK_INTERVAL_MAX_MS: i64 = 1000;

pub struct Txns {
    coordinator: Mutex<TxnCoordinator>,
    state_topic: InternalTopic,
}

/// How far a plan got.
enum Carried {
    All,
    /// The deciding record is durable but some marker is not written; the timer retries.
    MarkersPending,
    /// A record could not be written; nothing after it happened.
    NotPersisted,
}

impl Txns {
    /// Builds the coordinator and replays `__transaction_state` into it, if it exists.
    pub fn load(topics: &TopicRegistry, config: TxnConfig, partitions: i32, segment_bytes: u64) -> Txns {
        let mut coordinator = TxnCoordinator::new(config);
        let mut loaded = 0usize;
        if let Some(topic) = topics.get(TXN_STATE_TOPIC) {
            for partition in topic.partitions() {
                if let Some(log) = partition.lock().as_ref() {
                    internal_topic::for_each_batch(log, TXN_STATE_TOPIC, partition.index, &mut |header, bytes| {
                        if header.is_control() {
                            return;
                        }
                        let Ok(records) = strom_record::records::decode_records(bytes) else {
                            tracing::warn!(
                                partition = partition.index,
                                "undecodable transaction state batch skipped"
                            );
                            return;
                        };
                        for record in records {
                            let Some(key) = record.key else { continue };
                            match TxnRecord::decode(key, record.value) {
                                Ok(record) => {
                                    coordinator.apply(record);
                                    loaded += 1;
                                }
                                Err(e) => tracing::warn!(error = %e, "undecodable transaction state record skipped"),
                            }
                        }
                    });
                }
            }
        }
        if loaded > 0 {
            tracing::info!(
                records = loaded,
                transactional_ids = coordinator.len(),
                "loaded transaction state"
            );
        }
        Txns {
            coordinator: Mutex::new(coordinator),
            // Local to the coordinating broker until transaction coordinators move with
            // leadership.
            state_topic: InternalTopic {
                name: TXN_STATE_TOPIC,
                partitions,
                segment_bytes,
                cluster: None,
            },
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TxnCoordinator> {
        self.coordinator.lock().expect("transaction coordinator lock")
    }
}

/// A new producer id, or `None` (logged) if its block could not be reserved.
fn allocate_producer_id(broker: &Broker) -> Option<i64> {
    match broker.producer_ids.allocate() {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(error = %e, "could not persist producer id block");
            None
        }
    }
}

/// InitProducerId with a transactional id: the producer id and the new epoch.
pub fn init_producer_id(
    broker: &Broker,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), TxnError> {
    let mut coordinator = broker.txns.lock();
    let mut allocate = || allocate_producer_id(broker);
    let plan = coordinator.prepare_init_producer_id(now_ms(), transactional_id, timeout_ms, expected, &mut allocate)?;
    let outcome = carry_out(broker, &mut coordinator, plan.steps);
    if let (Carried::All, Some(expected)) = (&outcome, expected) {
        coordinator.remember_bump(transactional_id, expected);
    }
    match outcome {
        Carried::All => Ok((plan.producer_id, plan.producer_epoch)),
        // The fenced transaction's abort finishes on the timer; the client retries.
        Carried::MarkersPending => Err(TxnError::ConcurrentTransactions),
        Carried::NotPersisted => Err(TxnError::CoordinatorNotAvailable),
    }
}

/// AddPartitionsToTxn.
pub fn add_partitions(
    broker: &Broker,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
) -> Result<(), TxnError> {
    let mut coordinator = broker.txns.lock();
    add_locked(
        broker,
        &mut coordinator,
        transactional_id,
        producer,
        partitions,
        TxnProtocol::V1,
    )
}

fn add_locked(
    broker: &Broker,
    coordinator: &mut TxnCoordinator,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    protocol: TxnProtocol,
) -> Result<(), TxnError> {
    let plan = coordinator.prepare_add_partitions(now_ms(), transactional_id, producer, partitions, protocol)?;
    match carry_out(broker, coordinator, plan) {
        Carried::NotPersisted => Err(TxnError::CoordinatorNotAvailable),
        Carried::All | Carried::MarkersPending => Ok(()),
    }
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
pub fn add_offsets(
    broker: &Broker,
    transactional_id: &str,
    producer: (i64, i16),
    group_id: &str,
) -> Result<(), TxnError> {
    let partition = (
        OFFSETS_TOPIC.to_string(),
        groups::offsets_partition_of(broker, group_id),
    );
    add_partitions(broker, transactional_id, producer, std::slice::from_ref(&partition))
}

/// EndTxn. Answered once the outcome is durable; by then the markers are written too unless
/// a partition refused one, in which case the timer finishes them.
pub fn end_txn(broker: &Broker, transactional_id: &str, producer: (i64, i16), commit: bool) -> Result<(), TxnError> {
    let mut coordinator = broker.txns.lock();
    let plan = coordinator.prepare_end_txn(now_ms(), transactional_id, producer.0, producer.1, commit)?;
    match carry_out(broker, &mut coordinator, plan) {
        Carried::NotPersisted => Err(TxnError::CoordinatorNotAvailable),
        Carried::All | Carried::MarkersPending => Ok(()),
    }
}

/// EndTxn v5 (transactions v2): the producer id and epoch of the client's next transaction.
/// Answered, like v1, once the outcome is durable.
pub fn end_txn_v2(
    broker: &Broker,
    transactional_id: &str,
    producer: (i64, i16),
    commit: bool,
) -> Result<(i64, i16), TxnError> {
    let mut coordinator = broker.txns.lock();
    let mut allocate = || allocate_producer_id(broker);
    let plan = coordinator.prepare_end_txn_v2(now_ms(), transactional_id, producer, commit, &mut allocate)?;
    match carry_out(broker, &mut coordinator, plan.steps) {
        Carried::NotPersisted => Err(TxnError::CoordinatorNotAvailable),
        Carried::All | Carried::MarkersPending => Ok((plan.producer_id, plan.producer_epoch)),
    }
}

/// TxnOffsetCommit: checked against the transaction (v1: its offsets partition must have been
/// added; v2: the commit adds it) and written under the coordinator lock, so no marker slips
/// in between.
pub fn txn_offset_commit(
    broker: &Broker,
    transactional_id: &str,
    producer: (i64, i16),
    committer: &MemberRef,
    offsets: &[OffsetToCommit],
    protocol: TxnProtocol,
) -> Result<Result<Vec<CommitResult>, strom_group::GroupError>, TxnError> {
    let mut coordinator = broker.txns.lock();
    let partition = groups::offsets_partition_of(broker, &committer.group_id);
    match protocol {
        TxnProtocol::V1 => {
            coordinator.verify_partition(transactional_id, producer.0, producer.1, OFFSETS_TOPIC, partition)?;
        }
        TxnProtocol::V2 => {
            let offsets_partition = [(OFFSETS_TOPIC.to_string(), partition)];
            add_locked(
                broker,
                &mut coordinator,
                transactional_id,
                producer,
                &offsets_partition,
                protocol,
            )?;
        }
    }
    Ok(groups::txn_commit(broker, committer, producer, offsets))
}

/// Runs `append` for a transactional write to `partition` if the producer may write there now
/// (KIP-890's server-side check): its open transaction there already holds this epoch, or
/// the coordinator says the partition was added to its open transaction; for a transactions
/// v2 client (Produce 12), the coordinator adds it now. The check and the append happen under
/// the locks markers take, so a write can never land after its transaction's marker and
/// start a transaction nobody will end.
pub fn verified_write<R>(
    broker: &Broker,
    transactional_id: &str,
    producer: (i64, i16),
    partition: &Partition,
    protocol: TxnProtocol,
    append: impl FnOnce(&mut strom_storage::Log) -> R,
) -> Result<Option<R>, TxnError> {
    {
        let mut guard = partition.lock();
        let Some(log) = guard.as_mut() else { return Ok(None) };
        if log
            .open_transaction(producer.0)
            .is_some_and(|(epoch, _)| epoch == producer.1)
        {
            return Ok(Some(append(log)));
        }
    }
    let mut coordinator = broker.txns.lock();
    match protocol {
        TxnProtocol::V1 => coordinator.verify_partition(
            transactional_id,
            producer.0,
            producer.1,
            &partition.topic,
            partition.index,
        )?,
        TxnProtocol::V2 => {
            let added = [(partition.topic.clone(), partition.index)];
            add_locked(broker, &mut coordinator, transactional_id, producer, &added, protocol)?;
        }
    }
    let mut guard = partition.lock();
    Ok(guard.as_mut().map(append))
}

pub fn describe(broker: &Broker, transactional_id: &str) -> Option<strom_txn::TransactionMetadata> {
    broker.txns.lock().describe(transactional_id).cloned()
}

pub fn list(
    broker: &Broker,
    states: &[strom_txn::TxnState],
    producer_ids: &[i64],
    duration_ms: Option<i64>,
) -> Vec<strom_txn::TxnListing> {
    broker.txns.lock().list(now_ms(), states, producer_ids, duration_ms)
}

/// Finishes transactions left in a Prepare state (after a restart or a failed marker write)
/// and aborts those past their timeout.
pub fn tick(broker: &Broker) {
    let mut coordinator = broker.txns.lock();
    let now = now_ms();
    for plan in coordinator.pending_completions(now) {
        let _ = carry_out(broker, &mut coordinator, plan);
    }
    let mut allocate = || allocate_producer_id(broker);
    let timed_out = coordinator.prepare_timed_out(now, &mut allocate);
    if !timed_out.is_empty() {
        tracing::info!(
            transactions = timed_out.len(),
            "aborting transactions past their timeout"
        );
    }
    for plan in timed_out {
        let _ = carry_out(broker, &mut coordinator, plan);
    }
}

/// Tombstones transactional ids idle for `transactional.id.expiration.ms`.
pub fn expire_ids(broker: &Broker) {
    let mut coordinator = broker.txns.lock();
    let plan = coordinator.prepare_expired_ids(now_ms());
    if !plan.is_empty() {
        tracing::info!(transactional_ids = plan.len(), "expiring idle transactional ids");
    }
    let _ = carry_out(broker, &mut coordinator, plan);
}

/// Ticks whenever a transaction times out (and at least every second), until `stop` changes.
pub async fn run_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        let wait_ms = {
            let coordinator = broker.txns.lock();
            coordinator.next_deadline().map_or(TICK_INTERVAL_MAX_MS, |at| {
                (at - now_ms()).clamp(0, TICK_INTERVAL_MAX_MS)
            })
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = stop.changed() => return,
        }
        let ticking = broker.clone();
        let _ = tokio::task::spawn_blocking(move || tick(&ticking)).await;
    }
}

fn carry_out(broker: &Broker, coordinator: &mut TxnCoordinator, plan: Plan) -> Carried {
    for step in plan {
        match step {
            Step::Persist(record) => {
                let index = strom_txn::partition_for(&record.transactional_id, state_partition_count(broker));
                let encoded: [(Bytes, Option<Bytes>); 1] = [record.encode()];
                if let Err(e) = broker.txns.state_topic.append(broker, index, &encoded, None) {
                    tracing::error!(transactional_id = record.transactional_id, error = %e, "transaction state not written");
                    return Carried::NotPersisted;
                }
                coordinator.apply(record);
            }
            Step::WriteMarkers(markers) => {
                if !write_markers(broker, &markers) {
                    return Carried::MarkersPending;
                }
            }
        }
    }
    Carried::All
}

fn state_partition_count(broker: &Broker) -> i32 {
    broker
        .topics
        .get(TXN_STATE_TOPIC)
        .map_or(broker.txns.state_topic.partitions, |topic| topic.partition_count())
}

/// Writes the markers into every partition; false if any partition could not take one.
fn write_markers(broker: &Broker, markers: &Markers) -> bool {
    let marker = if markers.commit { Marker::Commit } else { Marker::Abort };
    let now = now_ms();
    let mut all = true;
    for (topic, index) in &markers.partitions {
        // A partition deleted since it joined the transaction has nothing left to end.
        let Some(partition) = broker.topics.partition(topic, *index) else {
            continue;
        };
        if !partition.is_leader() {
            // The coordinator writes markers only into partitions led here; a follower's log
            // takes only what its leader sends. Kept for a retry once leadership settles.
            tracing::warn!(
                topic,
                partition = index,
                "transaction marker waits: the partition is led elsewhere"
            );
            all = false;
            continue;
        }
        let mut guard = partition.lock();
        let Some(log) = guard.as_mut() else { continue };
        match log.append_marker(
            marker,
            markers.producer_id,
            markers.producer_epoch,
            0,
            partition.leader_epoch(),
            now,
        ) {
            Ok(_) => {
                partition.after_local_append(log);
            }
            // The partition has seen a newer epoch of this producer, whose own marker ends
            // anything this one would.
            Err(AppendError::InvalidProducerEpoch { current, .. }) => {
                tracing::warn!(
                    topic,
                    partition = index,
                    current,
                    ?markers,
                    "marker older than the partition's producer epoch skipped"
                );
            }
            Err(e) => {
                tracing::error!(topic, partition = index, error = %e, "transaction marker not written");
                all = false;
                continue;
            }
        }
        drop(guard);
        if topic == OFFSETS_TOPIC {
            groups::end_txn(broker, *index, markers.producer_id, markers.commit);
        }
    }
    broker.notify_appended();
    all
}
