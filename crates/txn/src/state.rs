//! What the coordinator knows about one transactional id, and the states its transactions move
//! through.
//!
//! ```text
//!                     AddPartitions              EndTxn(commit)                markers written
//!   Empty, Complete* ───────────────▶ Ongoing ─────────────────▶ PrepareCommit ───────────────▶ CompleteCommit
//!                                        │
//!                                        │ EndTxn(abort); a timeout or a new producer's
//!                                        │ InitProducerId (both bump the epoch)
//!                                        ▼                                markers written
//!                                   PrepareAbort ─────────────────────────────────────────────▶ CompleteAbort
//!
//!   InitProducerId on Empty or Complete*: the epoch is bumped and the id is Empty again.
//! ```
//!
//! The Prepare states are the durable decision: once one is in the log the transaction will end
//! that way, even across a crash, because whoever finds it there writes the markers and the
//! Complete record. `Dead` and `PrepareEpochFence` exist in Kafka only in memory (an id being
//! removed, a fence about to become an abort); they are named here so codes and names match
//! Kafka's, but the coordinator never holds them (see [`crate::TxnCoordinator::apply`]).

use std::collections::BTreeSet;

/// Where a transactional id's current transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The code stored in `__transaction_state` (the value's `transaction_status`).
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.code() == code)
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Parses a ListTransactions state filter. Names are case-sensitive, as in Kafka.
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.name() == name)
    }

    /// A state in which no transaction is open, so a new producer can take the id over at once
    /// and an idle id can expire.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// A transactional id's state: both the value of its `__transaction_state` record and what the
/// coordinator holds in memory, so that replaying the log and running live cannot disagree.
/// The transactional id itself is the record's key and the coordinator's map key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The producer's `transaction.timeout.ms`, as given to InitProducerId.
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions written in the current transaction (a group's `__consumer_offsets`
    /// partition among them after AddOffsetsToTxn), in the order markers are written.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction's first partition was added; -1 when none is open.
    pub txn_start_ms: i64,
    pub last_update_ms: i64,
    /// The producer id this id had before an epoch overflow gave it a new one at an end of
    /// transactions v2, so a retried EndTxn that still names the old one is recognised; -1
    /// when there was none.
    pub previous_producer_id: i64,
    /// In a Prepare state whose epoch bump overflowed: the producer id the transaction
    /// completes under, at epoch 0. Kept in the record so a restart completes it the same
    /// way; -1 otherwise.
    pub next_producer_id: i64,
    /// The transaction protocol the client used for its current or last transaction, in
    /// Kafka's `transaction.version` levels: 0 for v1 (KIP-98), 2 for v2 (KIP-890 part 2,
    /// whose every end bumps the epoch).
    pub client_transaction_version: i16,
}

impl TransactionMetadata {
    /// The metadata of an id with no transaction open and no transactions v2 history.
    pub fn empty(producer_id: i64, producer_epoch: i16, timeout_ms: i32, now_ms: i64) -> TransactionMetadata {
        TransactionMetadata {
            producer_id,
            producer_epoch,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            txn_start_ms: -1,
            last_update_ms: now_ms,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for (code, state) in TxnState::ALL.into_iter().enumerate() {
            assert_eq!(state.code(), code as i8);
            assert_eq!(TxnState::from_code(state.code()), Some(state));
            assert_eq!(TxnState::from_name(state.name()), Some(state));
        }
        assert_eq!(TxnState::from_code(8), None);
        assert_eq!(TxnState::from_code(-1), None);
        assert_eq!(TxnState::from_name("ongoing"), None);
        assert_eq!(TxnState::PrepareEpochFence.name(), "PrepareEpochFence");
    }
}
