//! The transaction coordinator: requests and the time in, plans out.
//!
//! Nothing here waits, reads a clock or touches a file. Each `prepare_*` call checks a request
//! against the state the log has built and answers with the [`Step`]s that carry it out, or
//! the Kafka error to return. State changes only in [`TxnCoordinator::apply`], called with each
//! record once it is durable, so replay at start-up and live operation run the same code.
//!
//! # Fencing
//! A transactional id belongs to one producer at a time, named by its producer id and epoch.
//! InitProducerId bumps the epoch, and every later request must carry the new one: a producer
//! with a lower epoch is a zombie and gets PRODUCER_FENCED. When a transaction must be aborted
//! on the producer's behalf (a new producer took the id over, or the transaction timed out) the
//! abort is written with the epoch already bumped, so the ABORT markers also fence the old
//! producer's writes still in flight to the partitions.
//!
//! Epochs near `i16::MAX` are kept for those fencing bumps: a producer is never handed an epoch
//! at or above [`PRODUCER_EPOCH_EXHAUSTED`]; it gets a new producer id at epoch 0 instead.
//!
//! # Transactions v2 (KIP-890 part 2)
//! A client of the second protocol ([`TxnProtocol::V2`], told by its request versions) adds no
//! partitions itself: its first write to a partition, or its first transactional offset
//! commit, adds it ([`TxnCoordinator::prepare_add_partitions`] on its behalf). Every EndTxn
//! bumps the epoch ([`TxnCoordinator::prepare_end_txn_v2`]): the markers carry the new epoch,
//! so a write of the ended transaction still in flight is refused by the partition, and the
//! answer hands the client the epoch (or, past [`PRODUCER_EPOCH_EXHAUSTED`], the new producer
//! id) of its next transaction. An EndTxn retried with the epoch before such a bump is
//! recognised and answered again, as is the client's abort of a transaction the coordinator
//! already aborted for it (a timeout bumps the epoch the same way).
//!
//! # Carrying out a plan
//! Steps run in order, and the server stops at the first that fails:
//! - a failed [`Step::Persist`] changed nothing the coordinator knows; answer
//!   COORDINATOR_NOT_AVAILABLE and the client retries.
//! - a failed [`Step::WriteMarkers`] leaves the transaction in its Prepare state, a decision
//!   already durable; [`TxnCoordinator::pending_completions`] finishes it later. Kafka answers
//!   EndTxn as soon as the Prepare record is written, so the server may answer EndTxn with
//!   success here; an InitProducerId should get CONCURRENT_TRANSACTIONS, and its retry gets
//!   the new epoch once the abort is complete.

use std::collections::{BTreeMap, BTreeSet};

use crate::records::{TxnRecord, STRING_BYTES_MAX};
use crate::state::{TransactionMetadata, TxnState};

/// The lowest epoch Kafka considers used up. Producers are handed epochs below it; the epochs
/// from here to `i16::MAX` are left for bumps that fence a producer while its transaction is
/// aborted, which must not overflow.
pub const PRODUCER_EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

/// Broker settings the coordinator follows, under Kafka's names.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask
    /// for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: how long an id with no open transaction is kept
    /// after its last update.
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
        }
    }
}

/// Why the coordinator refused a request; each is the Kafka error of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("another operation on this transaction is still completing; retry")]
    ConcurrentTransactions,
    #[error("a newer producer owns this transactional id")]
    ProducerFenced,
    #[error("the producer epoch is newer than the coordinator's")]
    InvalidProducerEpoch,
    #[error("the producer id does not own this transactional id")]
    InvalidProducerIdMapping,
    #[error("the request is not valid in the transaction's current state")]
    InvalidTxnState,
    #[error("the transaction timeout is not positive or exceeds transaction.max.timeout.ms")]
    InvalidTransactionTimeout,
    #[error("the coordinator cannot serve the request now (no producer id could be allocated)")]
    CoordinatorNotAvailable,
    #[error("the transactional id is not known")]
    TransactionalIdNotFound,
    /// In a cluster: another broker coordinates this id (the leader of its
    /// `__transaction_state` partition). Never returned by this crate, only by the server.
    #[error("this broker is not the id's transaction coordinator")]
    NotCoordinator,
    /// In a cluster: this broker has just become the id's coordinator and is reading its
    /// partition of `__transaction_state`. Never returned by this crate.
    #[error("the transaction coordinator is loading its state")]
    CoordinatorLoadInProgress,
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
}

/// What the server does to carry out a request, in order.
pub type Plan = Vec<Step>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Append the record to `__transaction_state`; once it is durable, hand it to
    /// [`TxnCoordinator::apply`].
    Persist(TxnRecord),
    /// Write a transaction marker into each partition.
    WriteMarkers(Markers),
}

impl Step {
    /// The transactional id the step belongs to.
    pub fn transactional_id(&self) -> &str {
        match self {
            Step::Persist(record) => &record.transactional_id,
            Step::WriteMarkers(markers) => &markers.transactional_id,
        }
    }
}

/// The COMMIT or ABORT control batch that ends a transaction in each of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The epoch the markers carry. Partitions refuse later writes from lower epochs, so an
    /// abort on a producer's behalf carries the bumped epoch.
    pub producer_epoch: i16,
    pub commit: bool,
    /// Sorted by topic, then partition.
    pub partitions: Vec<(String, i32)>,
}

/// InitProducerId's plan and, once every step is carried out, its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    pub steps: Plan,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// EndTxn's plan and, once every step is carried out, the producer id and epoch its answer
/// gives for the client's next transaction (transactions v2; v1 answers carry none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndPlan {
    pub steps: Plan,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Which transaction protocol a request belongs to, as its version tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnProtocol {
    /// KIP-98: the client adds each partition with AddPartitionsToTxn before writing to it and
    /// keeps its epoch from one InitProducerId to the next.
    V1,
    /// KIP-890 part 2 (Produce 12, TxnOffsetCommit 5, EndTxn 5): writes add their partitions
    /// and every end of a transaction bumps the epoch.
    V2,
}

impl TxnProtocol {
    /// Kafka's `transaction.version` level for the protocol, as `__transaction_state` keeps it.
    pub fn client_transaction_version(self) -> i16 {
        match self {
            TxnProtocol::V1 => 0,
            TxnProtocol::V2 => 2,
        }
    }
}

/// One entry of a ListTransactions answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

/// Every transactional id this broker coordinates, and what it knows about each.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    config: TxnConfig,
    transactions: BTreeMap<String, TransactionMetadata>,
    /// Per id, the producer id and epoch a KIP-360 producer named when it asked for its
    /// current epoch (see [`TxnCoordinator::remember_bump`]). If the answer was lost, its
    /// retry names them again and gets the same epoch instead of being fenced by its own
    /// bump. Forgotten at the id's next producer change, and, as in Kafka, not persisted: a
    /// retry across a broker restart is fenced.
    previous_producer: BTreeMap<String, (i64, i16)>,
    /// (timeout deadline, id) of every Ongoing transaction, so the timer's questions cost a
    /// lookup, not a scan of every id.
    deadlines: BTreeSet<(i64, String)>,
    /// Ids in PrepareCommit or PrepareAbort: markers still to write.
    preparing: BTreeSet<String>,
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            transactions: BTreeMap::new(),
            previous_producer: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            preparing: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    // ------------------------------------------------------------------- requests

    /// InitProducerId for a transactional id: gives the caller the id's producer id and a new
    /// epoch, fencing whichever producer held it before. (A request without a transactional id
    /// is an idempotent producer and never reaches the coordinator.)
    ///
    /// `expected` is KIP-360's current producer id and epoch, sent by a producer that wants a
    /// new epoch but is not new; `None` or `(-1, -1)` is a fresh producer. An open transaction
    /// is aborted with a bumped epoch first, in the same plan. `allocate_id` is called when a
    /// new producer id is needed; `None` from it means none could be reserved.
    pub fn prepare_init_producer_id(
        &self,
        now_ms: i64,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate_id: &mut dyn FnMut() -> Option<i64>,
    ) -> Result<InitPlan, TxnError> {
        if transactional_id.is_empty() {
            return Err(TxnError::InvalidRequest("the transactional id is empty"));
        }
        if transactional_id.len() > STRING_BYTES_MAX {
            return Err(TxnError::InvalidRequest(
                "the transactional id is longer than 32767 bytes",
            ));
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let expected = match expected {
            None | Some((-1, -1)) => None,
            Some((-1, _)) | Some((_, -1)) => {
                return Err(TxnError::InvalidRequest("only one of producer id and epoch is given"))
            }
            Some(expected) => Some(expected),
        };
        let Some(txn) = self.transactions.get(transactional_id) else {
            // An unknown id with an expected producer is a producer whose id expired while it
            // was idle (KIP-360); like Kafka, it simply starts over under a new producer id.
            let producer_id = allocate_id().ok_or(TxnError::CoordinatorNotAvailable)?;
            let empty = TransactionMetadata::empty(producer_id, 0, timeout_ms, now_ms);
            return Ok(InitPlan {
                steps: vec![persist(transactional_id, empty)],
                producer_id,
                producer_epoch: 0,
            });
        };
        // Kafka answers PRODUCER_FENCED for either mismatch: another producer took the id over.
        // A retry of a bump that already happened: the same answer again, nothing to write.
        let retried = expected.is_some_and(|expected| {
            txn.state == TxnState::Empty && self.previous_producer.get(transactional_id) == Some(&expected)
        });
        if retried {
            return Ok(InitPlan {
                steps: Vec::new(),
                producer_id: txn.producer_id,
                producer_epoch: txn.producer_epoch,
            });
        }
        if let Some((producer_id, producer_epoch)) = expected {
            // A transactions v2 client whose last end overflowed the epoch may not have seen
            // the answer naming its new producer id; its old id at the last epoch is its own.
            let before_overflow = producer_id == txn.previous_producer_id
                && producer_id != txn.producer_id
                && producer_epoch >= PRODUCER_EPOCH_EXHAUSTED
                && txn.producer_epoch == 0;
            let current = producer_id == txn.producer_id && producer_epoch == txn.producer_epoch;
            if !current && !before_overflow {
                return Err(TxnError::ProducerFenced);
            }
        }
        match txn.state {
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let (producer_id, producer_epoch) = next_producer(txn.producer_id, txn.producer_epoch, allocate_id)?;
                let empty = TransactionMetadata::empty(producer_id, producer_epoch, timeout_ms, now_ms);
                Ok(InitPlan {
                    steps: vec![persist(transactional_id, empty)],
                    producer_id,
                    producer_epoch,
                })
            }
            TxnState::Ongoing => {
                // The old producer's transaction is aborted under a fencing epoch it never
                // sees, then the new producer gets the epoch after it.
                let fencing_epoch = fencing_epoch(txn.producer_epoch);
                let (producer_id, producer_epoch) = next_producer(txn.producer_id, fencing_epoch, allocate_id)?;
                let mut steps = abort_fenced(transactional_id, txn, now_ms, None);
                steps.push(persist(
                    transactional_id,
                    TransactionMetadata::empty(producer_id, producer_epoch, timeout_ms, now_ms),
                ));
                Ok(InitPlan {
                    steps,
                    producer_id,
                    producer_epoch,
                })
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::ConcurrentTransactions),
            TxnState::Dead | TxnState::PrepareEpochFence => Err(TxnError::InvalidTxnState),
        }
    }

    /// AddPartitionsToTxn, or for a [`TxnProtocol::V2`] client the write or offset commit
    /// that adds its partition: the producer is about to write to these partitions inside its
    /// transaction, which starts with the first of them. The server answers every partition of
    /// the request with the same result.
    pub fn prepare_add_partitions(
        &self,
        now_ms: i64,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        partitions: &[(String, i32)],
        protocol: TxnProtocol,
    ) -> Result<Plan, TxnError> {
        if let Some(txn) = self.transactions.get(transactional_id) {
            // Markers still being written: the producer's next transaction waits for them, even
            // when it already holds the epoch (or producer id) the end gave it.
            let preparing = matches!(txn.state, TxnState::PrepareCommit | TxnState::PrepareAbort);
            if preparing && (producer_id == txn.producer_id || producer_id == txn.next_producer_id) {
                return Err(TxnError::ConcurrentTransactions);
            }
        }
        let txn = self.owned(transactional_id, producer_id, producer_epoch)?;
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(TxnError::ConcurrentTransactions),
            TxnState::Dead | TxnState::PrepareEpochFence => return Err(TxnError::InvalidTxnState),
            TxnState::Empty | TxnState::Ongoing | TxnState::CompleteCommit | TxnState::CompleteAbort => {}
        }
        if partitions.iter().any(|(topic, _)| topic.len() > STRING_BYTES_MAX) {
            return Err(TxnError::InvalidRequest("a topic name is longer than 32767 bytes"));
        }
        let ongoing = txn.state == TxnState::Ongoing;
        let known = |partition: &(String, i32)| ongoing && txn.partitions.contains(partition);
        // Nothing to record: already part of the open transaction, or nothing asked for.
        if partitions.iter().all(known) {
            return Ok(Vec::new());
        }
        let version = protocol.client_transaction_version();
        let mut added = TransactionMetadata {
            state: TxnState::Ongoing,
            txn_start_ms: if ongoing { txn.txn_start_ms } else { now_ms },
            last_update_ms: now_ms,
            client_transaction_version: if ongoing {
                txn.client_transaction_version.max(version)
            } else {
                version
            },
            ..txn.clone()
        };
        if !ongoing {
            added.partitions.clear();
        }
        added.partitions.extend(partitions.iter().cloned());
        Ok(vec![persist(transactional_id, added)])
    }

    /// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition (the server computes
    /// which) to the transaction, so the offsets committed in it are committed or aborted with
    /// the records.
    pub fn prepare_add_offsets(
        &self,
        now_ms: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        offsets_partition: (String, i32),
    ) -> Result<Plan, TxnError> {
        self.prepare_add_partitions(
            now_ms,
            transactional_id,
            (producer_id, producer_epoch),
            &[offsets_partition],
            TxnProtocol::V1,
        )
    }

    /// EndTxn: commit or abort the open transaction. A retry of an end that already happened
    /// succeeds with nothing to do; one whose markers are still being written is told to retry.
    pub fn prepare_end_txn(
        &self,
        now_ms: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<Plan, TxnError> {
        let txn = self.owned(transactional_id, producer_id, producer_epoch)?;
        match (txn.state, commit) {
            (TxnState::Ongoing, _) => {
                let prepare = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                let prepared = TransactionMetadata {
                    state: prepare,
                    last_update_ms: now_ms,
                    ..txn.clone()
                };
                let mut steps = vec![persist(transactional_id, prepared.clone())];
                steps.extend(complete(transactional_id, &prepared, now_ms));
                Ok(steps)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(Vec::new()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(TxnError::ConcurrentTransactions),
            // Kafka refuses both commit and abort of an Empty transaction; clients do not send
            // EndTxn when they added no partitions.
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// EndTxn v5 (transactions v2): commit or abort, bumping the epoch. The answer's producer
    /// id and epoch are those of the client's next transaction: the bumped epoch, or a new
    /// producer id at epoch 0 once the bump reaches `i16::MAX`.
    ///
    /// | state | commit | abort |
    /// | --- | --- | --- |
    /// | Ongoing, current epoch | end it | end it |
    /// | Empty, Complete*, current epoch | INVALID_TXN_STATE | an empty abort: the epoch is bumped, no markers |
    /// | CompleteCommit, epoch before the bump | answered again | INVALID_TXN_STATE |
    /// | CompleteAbort, epoch before the bump | PRODUCER_FENCED (the coordinator aborted it) | answered again |
    /// | Prepare* | CONCURRENT_TRANSACTIONS | CONCURRENT_TRANSACTIONS |
    ///
    /// Any other epoch is PRODUCER_FENCED. "The epoch before the bump" is the current epoch
    /// minus one, or after an overflow the previous producer id at the exhausted epoch.
    pub fn prepare_end_txn_v2(
        &self,
        now_ms: i64,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        allocate_id: &mut dyn FnMut() -> Option<i64>,
    ) -> Result<EndPlan, TxnError> {
        let txn = self
            .transactions
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        let retried_bump = producer_id == txn.producer_id && producer_epoch.checked_add(1) == Some(txn.producer_epoch);
        let retried_overflow = producer_id == txn.previous_producer_id
            && producer_id != txn.producer_id
            && producer_epoch >= PRODUCER_EPOCH_EXHAUSTED
            && txn.producer_epoch == 0;
        if matches!(txn.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
            && (producer_id == txn.producer_id || producer_id == txn.next_producer_id)
        {
            return Err(TxnError::ConcurrentTransactions);
        }
        if producer_id != txn.producer_id && !retried_overflow {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        let current = producer_id == txn.producer_id && producer_epoch == txn.producer_epoch;
        let answered_again = || EndPlan {
            steps: Vec::new(),
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
        };
        match txn.state {
            TxnState::Ongoing if current => end_bumped(now_ms, transactional_id, txn, commit, allocate_id),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort if current => {
                if commit {
                    Err(TxnError::InvalidTxnState)
                } else {
                    // The client may not know whether a failed write added a partition, so it
                    // aborts; the bump fences any such write still in flight.
                    end_bumped(now_ms, transactional_id, txn, false, allocate_id)
                }
            }
            TxnState::CompleteCommit if retried_bump || retried_overflow => {
                if commit {
                    Ok(answered_again())
                } else {
                    Err(TxnError::InvalidTxnState)
                }
            }
            TxnState::CompleteAbort if retried_bump || retried_overflow => {
                if commit {
                    Err(TxnError::ProducerFenced)
                } else {
                    Ok(answered_again())
                }
            }
            TxnState::Dead | TxnState::PrepareEpochFence => Err(TxnError::InvalidTxnState),
            _ => Err(TxnError::ProducerFenced),
        }
    }

    /// KIP-890's server-side check before a transactional producer's first write to a
    /// partition, and TxnOffsetCommit's check of its offsets partition: the producer must own
    /// the id at its current epoch and have added the partition to its open transaction.
    pub fn verify_partition(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let txn = self.owned(transactional_id, producer_id, producer_epoch)?;
        let added = txn
            .partitions
            .iter()
            .any(|(added_topic, added_partition)| added_topic == topic && *added_partition == partition);
        if txn.state == TxnState::Ongoing && added {
            Ok(())
        } else {
            Err(TxnError::InvalidTxnState)
        }
    }

    // ------------------------------------------------------------------- timers

    /// Aborts every open transaction that has run past its timeout, one plan each, with the
    /// epoch bumped so the abandoned producer is fenced. Plans are independent: one failing
    /// does not stop the others.
    ///
    /// A bump that reaches `i16::MAX` (only a transactions v2 client gets that close) also
    /// moves the id to a new producer id from `allocate_id`, so the client's own abort can be
    /// answered with an epoch it can still bump; if none can be had the abort goes ahead
    /// without one.
    pub fn prepare_timed_out(&self, now_ms: i64, allocate_id: &mut dyn FnMut() -> Option<i64>) -> Vec<Plan> {
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .filter_map(|(_, transactional_id)| {
                let txn = self.transactions.get(transactional_id)?;
                let next_producer_id = if txn.producer_epoch >= PRODUCER_EPOCH_EXHAUSTED {
                    allocate_id()
                } else {
                    None
                };
                Some(abort_fenced(transactional_id, txn, now_ms, next_producer_id))
            })
            .collect()
    }

    /// The earliest time [`TxnCoordinator::prepare_timed_out`] has something to abort.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Finishes every transaction whose outcome is decided but whose markers are not all
    /// written: after replaying the log at start-up, and on each timer tick after a marker
    /// write failed.
    pub fn pending_completions(&self, now_ms: i64) -> Vec<Plan> {
        self.preparing
            .iter()
            .filter_map(|transactional_id| {
                let txn = self.transactions.get(transactional_id)?;
                Some(complete(transactional_id, txn, now_ms))
            })
            .collect()
    }

    /// Ids the timer has work for now: markers still to write, or a timeout passed. The
    /// server takes each id's own lock, then asks [`TxnCoordinator::prepare_due`].
    pub fn due(&self, now_ms: i64) -> Vec<String> {
        let timed_out = self
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .map(|(_, id)| id);
        let mut ids: Vec<String> = self.preparing.iter().chain(timed_out).cloned().collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The timer's plan for one id, if it still has one: finishing its markers, or aborting
    /// its transaction past the timeout (as [`TxnCoordinator::prepare_timed_out`] does).
    pub fn prepare_due(
        &self,
        transactional_id: &str,
        now_ms: i64,
        allocate_id: &mut dyn FnMut() -> Option<i64>,
    ) -> Option<Plan> {
        let txn = self.transactions.get(transactional_id)?;
        if self.preparing.contains(transactional_id) {
            return Some(complete(transactional_id, txn, now_ms));
        }
        if txn.state != TxnState::Ongoing || timeout_deadline(txn) > now_ms {
            return None;
        }
        let next_producer_id = if txn.producer_epoch >= PRODUCER_EPOCH_EXHAUSTED {
            allocate_id()
        } else {
            None
        };
        Some(abort_fenced(transactional_id, txn, now_ms, next_producer_id))
    }

    /// The tombstone for one id if it is idle past `transactional.id.expiration.ms`.
    pub fn prepare_expiry(&self, transactional_id: &str, now_ms: i64) -> Option<Plan> {
        let txn = self.transactions.get(transactional_id)?;
        let expired = txn.state.is_idle() && txn.last_update_ms.saturating_add(self.config.id_expiration_ms) <= now_ms;
        expired.then(|| {
            vec![Step::Persist(TxnRecord {
                transactional_id: transactional_id.to_string(),
                value: None,
            })]
        })
    }

    /// Tombstones for ids with no open transaction and no update for
    /// `transactional.id.expiration.ms`.
    pub fn prepare_expired_ids(&self, now_ms: i64) -> Plan {
        self.transactions
            .iter()
            .filter(|(_, txn)| {
                txn.state.is_idle() && txn.last_update_ms.saturating_add(self.config.id_expiration_ms) <= now_ms
            })
            .map(|(transactional_id, _)| {
                Step::Persist(TxnRecord {
                    transactional_id: transactional_id.clone(),
                    value: None,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------- the log

    /// Installs a record just made durable, or one read back from `__transaction_state` at
    /// start-up. A tombstone forgets the id.
    ///
    /// Kafka never writes its in-memory-only states, but a log that holds them still replays
    /// to something this coordinator can finish: `Dead` means the id was being removed, and
    /// `PrepareEpochFence` always becomes an abort, so it is held as `PrepareAbort`.
    pub fn apply(&mut self, record: TxnRecord) {
        let TxnRecord {
            transactional_id,
            value,
        } = record;
        if let Some(old) = self.transactions.get(&transactional_id) {
            if old.state == TxnState::Ongoing {
                let _ = self
                    .deadlines
                    .remove(&(timeout_deadline(old), transactional_id.clone()));
            }
        }
        let _ = self.preparing.remove(&transactional_id);
        match value {
            None
            | Some(TransactionMetadata {
                state: TxnState::Dead, ..
            }) => {
                let _removed = self.transactions.remove(&transactional_id);
                let _ = self.previous_producer.remove(&transactional_id);
            }
            Some(mut txn) => {
                if txn.state == TxnState::PrepareEpochFence {
                    txn.state = TxnState::PrepareAbort;
                }
                let changed = self
                    .transactions
                    .get(&transactional_id)
                    .is_none_or(|old| (old.producer_id, old.producer_epoch) != (txn.producer_id, txn.producer_epoch));
                if changed {
                    let _ = self.previous_producer.remove(&transactional_id);
                }
                match txn.state {
                    TxnState::Ongoing => {
                        let _ = self
                            .deadlines
                            .insert((timeout_deadline(&txn), transactional_id.clone()));
                    }
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        let _ = self.preparing.insert(transactional_id.clone());
                    }
                    _ => {}
                }
                let _replaced = self.transactions.insert(transactional_id, txn);
            }
        }
    }

    /// Called once an InitProducerId with a KIP-360 `expected` producer was carried out, so a
    /// retry of that same request (its answer lost) is answered with the epoch it got.
    /// Fresh producers (no `expected`) leave nothing: a zombie must not be handed the epoch of
    /// the producer that fenced it.
    pub fn remember_bump(&mut self, transactional_id: &str, expected: (i64, i16)) {
        if expected.0 >= 0 && expected.1 >= 0 && self.transactions.contains_key(transactional_id) {
            let _ = self.previous_producer.insert(transactional_id.to_string(), expected);
        }
    }

    // ------------------------------------------------------------------- admin

    /// DescribeTransactions; `None` is TRANSACTIONAL_ID_NOT_FOUND.
    pub fn describe(&self, transactional_id: &str) -> Option<&TransactionMetadata> {
        self.transactions.get(transactional_id)
    }

    /// ListTransactions, by transactional id. An empty filter matches everything. With
    /// `duration_filter_ms` (KIP-994) only transactions open for longer than that are listed;
    /// an id with no transaction open has no duration and is left out.
    pub fn list(
        &self,
        now_ms: i64,
        state_filter: &[TxnState],
        producer_id_filter: &[i64],
        duration_filter_ms: Option<i64>,
    ) -> Vec<TxnListing> {
        self.transactions
            .iter()
            .filter(|(_, txn)| state_filter.is_empty() || state_filter.contains(&txn.state))
            .filter(|(_, txn)| producer_id_filter.is_empty() || producer_id_filter.contains(&txn.producer_id))
            .filter(|(_, txn)| match duration_filter_ms {
                None => true,
                Some(duration_ms) => txn.txn_start_ms >= 0 && now_ms.saturating_sub(txn.txn_start_ms) > duration_ms,
            })
            .map(|(transactional_id, txn)| TxnListing {
                transactional_id: transactional_id.clone(),
                producer_id: txn.producer_id,
                state: txn.state,
            })
            .collect()
    }

    /// Forgets every id `leaving` picks, without writing anything: the ids of a
    /// `__transaction_state` partition now coordinated by another broker, which loads them from
    /// the replicated log. Their open transactions carry on there.
    pub fn unload(&mut self, leaving: impl Fn(&str) -> bool) -> usize {
        let before = self.transactions.len();
        self.transactions.retain(|id, _| !leaving(id));
        self.previous_producer.retain(|id, _| !leaving(id));
        self.deadlines.retain(|(_, id)| !leaving(id));
        self.preparing.retain(|id| !leaving(id));
        before - self.transactions.len()
    }

    /// How many transactional ids the coordinator holds.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    // ------------------------------------------------------------------- helpers

    /// The id's metadata if this producer owns it at its current epoch.
    fn owned(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&TransactionMetadata, TxnError> {
        let txn = self
            .transactions
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if txn.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        match producer_epoch.cmp(&txn.producer_epoch) {
            std::cmp::Ordering::Less => Err(TxnError::ProducerFenced),
            std::cmp::Ordering::Greater => Err(TxnError::InvalidProducerEpoch),
            std::cmp::Ordering::Equal => Ok(txn),
        }
    }
}

/// The producer id and epoch to hand out next: the epoch bumped, or a new producer id at
/// epoch 0 once the bump would reach the exhausted range.
fn next_producer(
    producer_id: i64,
    producer_epoch: i16,
    allocate_id: &mut dyn FnMut() -> Option<i64>,
) -> Result<(i64, i16), TxnError> {
    match producer_epoch.checked_add(1) {
        Some(next) if next < PRODUCER_EPOCH_EXHAUSTED => Ok((producer_id, next)),
        _ => {
            let producer_id = allocate_id().ok_or(TxnError::CoordinatorNotAvailable)?;
            Ok((producer_id, 0))
        }
    }
}

/// The epoch an abort on a producer's behalf is written with. Producers never hold an epoch
/// at or above [`PRODUCER_EPOCH_EXHAUSTED`], so the bump stays in range; only a log written
/// elsewhere could hold `i16::MAX`, and then the abort keeps that epoch.
fn fencing_epoch(producer_epoch: i16) -> i16 {
    producer_epoch.saturating_add(1)
}

fn timeout_deadline(txn: &TransactionMetadata) -> i64 {
    txn.txn_start_ms.saturating_add(i64::from(txn.timeout_ms))
}

fn persist(transactional_id: &str, txn: TransactionMetadata) -> Step {
    Step::Persist(TxnRecord {
        transactional_id: transactional_id.to_string(),
        value: Some(txn),
    })
}

/// Ends `txn` under a bumped epoch (transactions v2): the Prepare record, the markers, the
/// Complete record, and the producer id and epoch the Complete record hands the client.
fn end_bumped(
    now_ms: i64,
    transactional_id: &str,
    txn: &TransactionMetadata,
    commit: bool,
    allocate_id: &mut dyn FnMut() -> Option<i64>,
) -> Result<EndPlan, TxnError> {
    let next_producer_id = if txn.producer_epoch >= PRODUCER_EPOCH_EXHAUSTED {
        allocate_id().ok_or(TxnError::CoordinatorNotAvailable)?
    } else {
        -1
    };
    let ongoing = txn.state == TxnState::Ongoing;
    let prepared = TransactionMetadata {
        producer_epoch: fencing_epoch(txn.producer_epoch),
        state: if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        },
        partitions: if ongoing {
            txn.partitions.clone()
        } else {
            BTreeSet::new()
        },
        txn_start_ms: if ongoing { txn.txn_start_ms } else { now_ms },
        last_update_ms: now_ms,
        next_producer_id,
        client_transaction_version: TxnProtocol::V2.client_transaction_version(),
        ..txn.clone()
    };
    let next = completed(&prepared, now_ms);
    let mut steps = vec![persist(transactional_id, prepared.clone())];
    steps.extend(complete(transactional_id, &prepared, now_ms));
    Ok(EndPlan {
        steps,
        producer_id: next.producer_id,
        producer_epoch: next.producer_epoch,
    })
}

/// Aborts an open transaction on its producer's behalf, under a bumped epoch that fences it;
/// with `next_producer_id`, the id completes under that producer id at epoch 0.
fn abort_fenced(transactional_id: &str, txn: &TransactionMetadata, now_ms: i64, next_producer_id: Option<i64>) -> Plan {
    let prepared = TransactionMetadata {
        producer_epoch: fencing_epoch(txn.producer_epoch),
        state: TxnState::PrepareAbort,
        last_update_ms: now_ms,
        next_producer_id: next_producer_id.unwrap_or(-1),
        ..txn.clone()
    };
    let mut steps = vec![persist(transactional_id, prepared.clone())];
    steps.extend(complete(transactional_id, &prepared, now_ms));
    steps
}

/// Writes the markers of a transaction in a Prepare state (if it has partitions), then records
/// it complete: under its next producer id at epoch 0 if the Prepare record named one.
fn complete(transactional_id: &str, prepared: &TransactionMetadata, now_ms: i64) -> Plan {
    let commit = prepared.state == TxnState::PrepareCommit;
    let mut steps = Vec::with_capacity(2);
    if !prepared.partitions.is_empty() {
        steps.push(Step::WriteMarkers(Markers {
            transactional_id: transactional_id.to_string(),
            producer_id: prepared.producer_id,
            producer_epoch: prepared.producer_epoch,
            commit,
            partitions: prepared.partitions.iter().cloned().collect(),
        }));
    }
    steps.push(persist(transactional_id, completed(prepared, now_ms)));
    steps
}

/// The Complete record that follows a Prepare record once its markers are written.
fn completed(prepared: &TransactionMetadata, now_ms: i64) -> TransactionMetadata {
    let commit = prepared.state == TxnState::PrepareCommit;
    let rotated = prepared.next_producer_id >= 0;
    TransactionMetadata {
        state: if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        },
        partitions: BTreeSet::new(),
        txn_start_ms: -1,
        last_update_ms: now_ms,
        producer_id: if rotated {
            prepared.next_producer_id
        } else {
            prepared.producer_id
        },
        producer_epoch: if rotated { 0 } else { prepared.producer_epoch },
        previous_producer_id: if rotated {
            prepared.producer_id
        } else {
            prepared.previous_producer_id
        },
        next_producer_id: -1,
        ..prepared.clone()
    }
}
