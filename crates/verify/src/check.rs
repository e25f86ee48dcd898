//! The checker: reads a history and reports every anomaly Kafka's contract forbids, each
//! naming the records involved.
//!
//! A record is identified by its value alone (the workload makes values unique per write
//! attempt). The history is first folded into an index (`index.rs`: value → its `Send`, value →
//! its `Ack`, transaction → outcome, the final reads sorted by offset); every check then looks
//! records up there, so a history of a million events costs a few hash maps and one sort per
//! final read, never a quadratic scan.
//!
//! What each [`AnomalyKind`] means, and why Kafka forbids it:
//!
//! - [`LostWrite`](AnomalyKind::LostWrite): an acknowledged write that the final read does not
//!   have. acks=all promises that an acknowledged record survives any fault short of losing
//!   every in-sync replica; a committed transaction promises all of its records; a
//!   consume-transform-produce group that drained promises an output for every input.
//! - [`Duplicate`](AnomalyKind::Duplicate): one write found at two offsets (an idempotent
//!   producer writes each record once), or one input that two committed transactions turned
//!   into output (exactly once).
//! - [`Reorder`](AnomalyKind::Reorder): one producer's records in a partition out of the order it
//!   sent them in (an idempotent producer keeps its order).
//! - [`NonMonotonicPoll`](AnomalyKind::NonMonotonicPoll): a consumer handed an offset at or
//!   below one it already had, with no seek or new assignment to explain it.
//! - [`UnexplainedGap`](AnomalyKind::UnexplainedGap): a consumer skipped a record that exists,
//!   or a partition without transactions has an offset with no record (only transaction
//!   markers and aborted records may leave holes).
//! - [`AbortedRead`](AnomalyKind::AbortedRead): a read_committed consumer saw a record of an
//!   aborted transaction.
//! - [`TornTransaction`](AnomalyKind::TornTransaction): part of a transaction is visible to
//!   read_committed and part is not: transactions are atomic.
//! - [`CommittedOffsetBackwards`](AnomalyKind::CommittedOffsetBackwards): a group's committed
//!   offset for a partition went down: a zombie member's commit was accepted (generation
//!   fencing, KIP-447 for transactional commits).
//! - [`DoubleOwnership`](AnomalyKind::DoubleOwnership): two members of one generation were both
//!   given a partition.
//!
//! # Layout
//! - `index.rs`: the one pass over the history.
//! - `records.rs`: lost non-transactional writes, duplicates, reorders, holes in a final read.
//! - `polls.rs`: what each consumer was handed, poll after poll.
//! - `txns.rs`: transactions and exactly once.
//! - `groups.rs`: committed offsets and assignments.

mod groups;
mod index;
mod polls;
mod records;
mod txns;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::Event;
use index::Index;

/// What the checker found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Every anomaly, grouped by kind in the order of [`AnomalyKind::ALL`], each kind in the
    /// order the history shows it.
    pub anomalies: Vec<Anomaly>,
    pub stats: Stats,
}

impl Report {
    /// How many anomalies of this kind were found.
    pub fn count(&self, kind: AnomalyKind) -> usize {
        self.anomalies.iter().filter(|anomaly| anomaly.kind == kind).count()
    }

    /// No anomaly at all.
    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// One violation of Kafka's contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// One line naming the records involved: topic, partition, offsets, values, clients,
    /// transaction ids.
    pub message: String,
}

impl Anomaly {
    fn new(kind: AnomalyKind, message: String) -> Self {
        Self { kind, message }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The kinds of anomaly; see the module docs for what each means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    LostWrite,
    Duplicate,
    Reorder,
    NonMonotonicPoll,
    UnexplainedGap,
    AbortedRead,
    TornTransaction,
    CommittedOffsetBackwards,
    DoubleOwnership,
}

impl AnomalyKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [AnomalyKind; 9] = [
        AnomalyKind::LostWrite,
        AnomalyKind::Duplicate,
        AnomalyKind::Reorder,
        AnomalyKind::NonMonotonicPoll,
        AnomalyKind::UnexplainedGap,
        AnomalyKind::AbortedRead,
        AnomalyKind::TornTransaction,
        AnomalyKind::CommittedOffsetBackwards,
        AnomalyKind::DoubleOwnership,
    ];

    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::LostWrite => "lost_write",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::Reorder => "reorder",
            AnomalyKind::NonMonotonicPoll => "non_monotonic_poll",
            AnomalyKind::UnexplainedGap => "unexplained_gap",
            AnomalyKind::AbortedRead => "aborted_read",
            AnomalyKind::TornTransaction => "torn_transaction",
            AnomalyKind::CommittedOffsetBackwards => "committed_offset_backwards",
            AnomalyKind::DoubleOwnership => "double_ownership",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts of what the history holds and of what could be checked: a clean report means little
/// if nothing was compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Events in the history.
    pub events: usize,
    /// Records handed to producers.
    pub sends: usize,
    pub acks: usize,
    pub send_failures: usize,
    /// Sends that got neither an ack nor a failure (the client died first).
    pub sends_unanswered: usize,
    /// Records consumers were handed by polls.
    pub reads: usize,
    /// Records the final reads found, both isolations.
    pub final_records: usize,
    /// Partition and isolation pairs whose final read completed.
    pub final_reads: usize,
    pub txns_committed: usize,
    pub txns_aborted: usize,
    /// Transactions that began but whose outcome the client never learnt.
    pub txns_unknown: usize,
    /// Non-transactional acks compared with a final read.
    pub acks_checked: usize,
    /// Non-transactional acks below the final read's log start offset: deleted by retention,
    /// not checked.
    pub acks_below_log_start: usize,
    /// Non-transactional acks to a partition with no final read: not checked.
    pub acks_without_final_read: usize,
    /// Inputs of a drained consume-transform-produce group checked for a committed output.
    pub inputs_checked: usize,
    /// Inputs whose outputs went to partitions the final read does not cover: not checked.
    pub inputs_unchecked: usize,
    /// Successful offset commits per partition (plain, and in committed transactions).
    pub offset_commits: usize,
}

/// Checks a history against Kafka's contract.
pub fn check(events: &[Event]) -> Report {
    let mut stats = Stats::default();
    let index = Index::build(events, &mut stats);
    let mut anomalies = Vec::new();

    records::lost_writes(&index, &mut stats, &mut anomalies);
    records::duplicates(&index, &mut anomalies);
    records::reorders(&index, &mut anomalies);
    records::holes(&index, &mut anomalies);
    polls::check(&index, &mut anomalies);
    txns::check(&index, &mut stats, &mut anomalies);
    groups::committed_offsets(&index, &mut stats, &mut anomalies);
    groups::ownership(&index, &mut anomalies);

    // Stable: each kind keeps the order its check found them in.
    anomalies.sort_by_key(|anomaly| anomaly.kind);
    Report { anomalies, stats }
}

/// At most this many items are named in one message; the rest are counted.
const LISTED_MAX: usize = 8;

/// `a, b, c` — or the first [`LISTED_MAX`] and how many more.
fn listed<I>(items: I) -> String
where
    I: IntoIterator,
    I::Item: fmt::Display,
{
    let mut text = String::new();
    let mut count = 0;
    for item in items {
        if count < LISTED_MAX {
            if count > 0 {
                text.push_str(", ");
            }
            text.push_str(&item.to_string());
        }
        count += 1;
    }
    if count > LISTED_MAX {
        text.push_str(&format!(" and {} more", count - LISTED_MAX));
    }
    text
}
