//! Records outside transactions: lost, duplicated, reordered, and holes in a final read.
//!
//! - Lost: acks=all promises that an acknowledged record is in the log at its offset from then
//!   on. The final read (after the faults healed) must show the acknowledged value at the
//!   acknowledged offset, unless retention has since deleted it (an offset below the final
//!   read's log start). A non-transactional record is never filtered by read_committed, so it
//!   must be there too when below the last stable offset.
//! - Duplicate: an idempotent producer writes each record once, so one value seen at two
//!   positions (by consumers' polls or by the final reads) was written twice. The same value at
//!   the same offset seen twice is a re-read, not a duplicate.
//! - Reorder: an idempotent producer keeps its records' order in a partition, so its acked
//!   offsets rise in the order of its sends, and the final read lists its records in that
//!   order.
//! - Holes: a partition no transaction wrote to has a record at every offset of
//!   `[start_offset, end_offset)`; only transaction markers and aborted records make holes
//!   (compacted topics are not part of the campaign).

use std::collections::HashMap;

use crate::history::{Isolation, Op};

use super::index::{isolation_name, Index, TpRef};
use super::{listed, Anomaly, AnomalyKind, Stats};

/// Non-transactional acknowledged records missing from the final read.
pub(super) fn lost_writes(index: &Index<'_>, stats: &mut Stats, out: &mut Vec<Anomaly>) {
    for (line, event) in index.events.iter().enumerate() {
        let Op::Ack { value, .. } = &event.op else { continue };
        let Some(acked) = index.acks.get(value.as_str()).filter(|acked| acked.line == line) else {
            continue; // a second ack of the same value: checked once
        };
        if index.txn_of(value).is_some() {
            continue; // a transaction's outcome decides: txns.rs
        }
        let (tp, offset) = (acked.tp, acked.offset);
        let Some(uncommitted) = index.final_log(tp, Isolation::ReadUncommitted) else {
            stats.acks_without_final_read += 1;
            continue;
        };
        let Some((start, end)) = uncommitted.range else {
            stats.acks_without_final_read += 1;
            continue;
        };
        if offset < start {
            stats.acks_below_log_start += 1;
            continue;
        }
        stats.acks_checked += 1;

        let what = format!("{}'s {value} acknowledged at {tp} offset {offset}", event.client);
        let found = uncommitted.at(offset);
        let missing = match found {
            Some(found) if found == value => None,
            Some(other) => Some(format!(
                "offset {offset} holds {other} (from {})",
                index.producer(other)
            )),
            None if offset >= end => Some(format!("the log ends at {end}: truncated below an acknowledged record")),
            None => Some(match index.final_offset(value, tp, Isolation::ReadUncommitted) {
                Some(elsewhere) => format!("offset {offset} is empty and the value is at offset {elsewhere}"),
                None => format!("offset {offset} is empty"),
            }),
        };
        if let Some(missing) = missing {
            let message = format!("{what} is not in the final read_uncommitted read: {missing}");
            out.push(Anomaly::new(AnomalyKind::LostWrite, message));
            continue;
        }

        let committed = index.final_log(tp, Isolation::ReadCommitted);
        if let Some(committed) = committed.filter(|log| log.covers(offset)) {
            if committed.at(offset) != Some(value.as_str()) {
                let message = format!(
                    "{what} is in the final read_uncommitted read but not the read_committed one, \
                     though written outside any transaction and below the last stable offset"
                );
                out.push(Anomaly::new(AnomalyKind::LostWrite, message));
            }
        }
    }
}

/// Where one value was seen, and by whom.
#[derive(Clone, Copy)]
struct Seen<'a> {
    tp: TpRef<'a>,
    offset: i64,
    /// The client whose poll handed it over, or the final read's isolation.
    by: Witness<'a>,
}

#[derive(Clone, Copy)]
enum Witness<'a> {
    Poll(&'a str),
    Final(Isolation),
}

impl std::fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.by {
            Witness::Poll(client) => write!(f, "{} offset {} (read by {client})", self.tp, self.offset),
            Witness::Final(isolation) => {
                write!(
                    f,
                    "{} offset {} (final {} read)",
                    self.tp,
                    self.offset,
                    isolation_name(isolation)
                )
            }
        }
    }
}

/// One value at two or more positions, across every poll and both final reads.
pub(super) fn duplicates(index: &Index<'_>, out: &mut Vec<Anomaly>) {
    // Per value: every distinct position, first witness of each. Almost every value has one,
    // so the rest live in a vector that seldom allocates.
    let mut positions: HashMap<&str, (Seen<'_>, Vec<Seen<'_>>)> = HashMap::new();
    let mut duplicated = Vec::new();
    for event in index.events {
        let (seen, value) = match &event.op {
            Op::Read {
                topic,
                partition,
                offset,
                value,
                ..
            } => {
                let tp = TpRef::new(topic, *partition);
                (
                    Seen {
                        tp,
                        offset: *offset,
                        by: Witness::Poll(&event.client),
                    },
                    value,
                )
            }
            Op::FinalRead {
                topic,
                partition,
                offset,
                value,
                isolation,
            } => {
                let tp = TpRef::new(topic, *partition);
                (
                    Seen {
                        tp,
                        offset: *offset,
                        by: Witness::Final(*isolation),
                    },
                    value,
                )
            }
            _ => continue,
        };
        let (first, more) = positions.entry(value.as_str()).or_insert((seen, Vec::new()));
        let same = |other: &Seen<'_>| other.tp == seen.tp && other.offset == seen.offset;
        if same(first) || more.iter().any(same) {
            continue;
        }
        if more.is_empty() {
            duplicated.push(value.as_str());
        }
        more.push(seen);
    }
    for value in duplicated {
        let (first, more) = &positions[value];
        let message = format!(
            "{}'s {value} is at {} positions: {}",
            index.producer(value),
            more.len() + 1,
            listed(std::iter::once(first).chain(more))
        );
        out.push(Anomaly::new(AnomalyKind::Duplicate, message));
    }
}

/// One producer's records out of its send order: in their acked offsets, or in the final read.
pub(super) fn reorders(index: &Index<'_>, out: &mut Vec<Anomaly>) {
    // Acked offsets, in send order, per producer and partition.
    let mut last_acked: HashMap<(&str, TpRef<'_>), (i64, &str)> = HashMap::new();
    for (line, event) in index.events.iter().enumerate() {
        let Op::Send { value, .. } = &event.op else { continue };
        let Some(sent) = index.sends.get(value.as_str()).filter(|sent| sent.line == line) else {
            continue;
        };
        if index.txn_of(value).is_some() {
            continue;
        }
        let Some(acked) = index.acks.get(value.as_str()).filter(|acked| acked.tp == sent.tp) else {
            continue;
        };
        let key = (sent.client, sent.tp);
        if let Some(&(previous_offset, previous)) = last_acked.get(&key) {
            if acked.offset <= previous_offset {
                let message = format!(
                    "{} sent {previous} then {value} to {}, acknowledged at offsets {previous_offset} then {}",
                    sent.client, sent.tp, acked.offset
                );
                out.push(Anomaly::new(AnomalyKind::Reorder, message));
            }
        }
        let _ = last_acked.insert(key, (acked.offset, value));
    }

    // The final read's order, per producer. A pair both acknowledged where the final read has
    // them is an inversion of their acked offsets too, reported above.
    let acked_here = |value: &str, tp: TpRef<'_>, offset: i64| {
        index
            .acks
            .get(value)
            .is_some_and(|acked| acked.tp == tp && acked.offset == offset)
    };
    for (tp, isolation, log) in index.final_logs() {
        if isolation != Isolation::ReadUncommitted {
            continue;
        }
        let mut last: HashMap<&str, (usize, i64, &str)> = HashMap::new();
        for &(offset, value) in log.records() {
            let Some(sent) = index.sends.get(value).filter(|sent| sent.tp == tp) else {
                continue;
            };
            if let Some(&(previous_line, previous_offset, previous)) = last.get(sent.client) {
                let explained = acked_here(previous, tp, previous_offset) && acked_here(value, tp, offset);
                if sent.line < previous_line && !explained {
                    let message = format!(
                        "the final read_uncommitted read of {tp} has {}'s {previous} at offset {previous_offset} \
                         before {value} at offset {offset}, which it sent first",
                        sent.client
                    );
                    out.push(Anomaly::new(AnomalyKind::Reorder, message));
                }
            }
            let _ = last.insert(sent.client, (sent.line, offset, value));
        }
    }
}

/// Offsets with no record in the final read_uncommitted read of a partition no transaction
/// wrote to.
pub(super) fn holes(index: &Index<'_>, out: &mut Vec<Anomaly>) {
    for (tp, isolation, log) in index.final_logs() {
        let Some((start, end)) = log.range else { continue };
        if isolation != Isolation::ReadUncommitted || index.transactional.contains(&tp) {
            continue;
        }
        let mut expected = start;
        let offsets = log
            .records()
            .iter()
            .map(|&(offset, _)| offset)
            .filter(|&o| o >= start && o < end);
        for offset in offsets.chain(std::iter::once(end)) {
            if offset > expected {
                let message = format!(
                    "the final read_uncommitted read of {tp} has no record at offsets [{expected}, {offset}) \
                     ({} of them), though no transaction wrote to it",
                    offset - expected
                );
                out.push(Anomaly::new(AnomalyKind::UnexplainedGap, message));
            }
            expected = expected.max(offset + 1);
        }
    }
}
