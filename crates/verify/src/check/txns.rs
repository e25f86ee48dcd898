//! Transactions and exactly once.
//!
//! A transaction is atomic: after its outcome, read_committed shows all of its records or none.
//! The final read_committed read decides what each transaction came to; only records whose
//! acknowledged offset that read covers (`[start_offset, last stable offset)`) are counted.
//!
//! - Committed, none of its records visible: every acknowledged write of it was lost.
//! - Committed or unknown, some visible and some not: torn.
//! - Aborted, or unknown and resolved as aborted (none visible, though the final read covers
//!   where it wrote): a read_committed read of any of its records is an aborted read.
//!
//! Exactly once, for a consume-transform-produce group that drained (its committed offsets
//! reached its inputs' ends): every acknowledged input record the final read_uncommitted read
//! has is the `source` of at least one output visible to read_committed, and no input is the
//! source of two. A group's inputs are the topics its transactions committed offsets of.

use std::collections::{HashMap, HashSet};

use crate::history::{Isolation, Op, Outcome};

use super::index::{Index, TpRef, Txn};
use super::{listed, Anomaly, AnomalyKind, Stats};

/// What the final read_committed read shows of one transaction.
#[derive(Default)]
struct View<'a> {
    /// Its records the final read has: value, partition, offset.
    visible: Vec<(&'a str, TpRef<'a>, i64)>,
    /// Its acknowledged records the final read covers but lacks: value, partition, acked offset.
    missing: Vec<(&'a str, TpRef<'a>, i64)>,
}

impl View<'_> {
    /// None visible although some acknowledged record was covered: the transaction came to
    /// nothing.
    fn came_to_nothing(&self) -> bool {
        self.visible.is_empty() && !self.missing.is_empty()
    }
}

pub(super) fn check(index: &Index<'_>, stats: &mut Stats, out: &mut Vec<Anomaly>) {
    let views: HashMap<&str, View<'_>> = index
        .txn_ids
        .iter()
        .map(|&id| (id, view(index, &index.txns[id])))
        .collect();
    lost_and_torn(index, &views, out);
    aborted_reads(index, &views, out);
    lost_inputs(index, stats, out);
    duplicate_outputs(index, out);
}

fn view<'a>(index: &Index<'a>, txn: &Txn<'a>) -> View<'a> {
    let mut view = View::default();
    for &value in &txn.values {
        let acked = index.acks.get(value);
        let Some(tp) = index
            .sends
            .get(value)
            .map(|sent| sent.tp)
            .or(acked.map(|acked| acked.tp))
        else {
            continue;
        };
        if let Some(offset) = index.final_offset(value, tp, Isolation::ReadCommitted) {
            view.visible.push((value, tp, offset));
        } else if let Some(acked) = acked {
            let log = index.final_log(acked.tp, Isolation::ReadCommitted);
            if log.is_some_and(|log| log.covers(acked.offset)) {
                view.missing.push((value, acked.tp, acked.offset));
            }
        }
    }
    view
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Committed => "committed",
        Outcome::Aborted => "aborted",
        Outcome::Unknown => "outcome unknown",
    }
}

fn records<'a>(records: &'a [(&'a str, TpRef<'a>, i64)]) -> impl Iterator<Item = String> + 'a {
    records
        .iter()
        .map(|(value, tp, offset)| format!("{value} ({tp} offset {offset})"))
}

fn lost_and_torn(index: &Index<'_>, views: &HashMap<&str, View<'_>>, out: &mut Vec<Anomaly>) {
    for &id in &index.txn_ids {
        let (txn, view) = (&index.txns[id], &views[id]);
        if txn.outcome == Outcome::Committed && view.came_to_nothing() {
            let message = format!(
                "{}'s transaction {id} committed but none of its acknowledged records is in the final \
                 read_committed read: {}",
                txn.client,
                listed(records(&view.missing))
            );
            out.push(Anomaly::new(AnomalyKind::LostWrite, message));
        }
        if txn.outcome != Outcome::Aborted && !view.visible.is_empty() && !view.missing.is_empty() {
            let message = format!(
                "{}'s transaction {id} ({}) is partly in the final read_committed read: {} visible; {} missing",
                txn.client,
                outcome_name(txn.outcome),
                listed(records(&view.visible)),
                listed(records(&view.missing))
            );
            out.push(Anomaly::new(AnomalyKind::TornTransaction, message));
        }
    }
}

/// A record of an aborted transaction and who read it with read_committed.
struct AbortedRecord<'a> {
    value: &'a str,
    tp: TpRef<'a>,
    offset: i64,
    txn: &'a str,
    readers: Vec<&'a str>,
}

fn aborted_reads(index: &Index<'_>, views: &HashMap<&str, View<'_>>, out: &mut Vec<Anomaly>) {
    let mut found: Vec<AbortedRecord<'_>> = Vec::new();
    let mut by_value: HashMap<&str, usize> = HashMap::new();
    for event in index.events {
        let (topic, partition, offset, value, reader) = match &event.op {
            Op::Read {
                topic,
                partition,
                offset,
                value,
                isolation: Isolation::ReadCommitted,
            } => (topic, partition, offset, value, event.client.as_str()),
            Op::FinalRead {
                topic,
                partition,
                offset,
                value,
                isolation: Isolation::ReadCommitted,
            } => (topic, partition, offset, value, "the final read"),
            _ => continue,
        };
        let Some(id) = index.txn_of(value) else { continue };
        let tp = TpRef::new(topic, *partition);
        let aborted = match index.txns[id].outcome {
            Outcome::Committed => false,
            Outcome::Aborted => true,
            // Resolved as aborted: nothing of it is visible, and the final read covers either
            // one of its acknowledged records or this very offset.
            Outcome::Unknown => {
                let view = &views[id];
                let covered = || {
                    index
                        .final_log(tp, Isolation::ReadCommitted)
                        .is_some_and(|log| log.covers(*offset))
                };
                view.visible.is_empty() && (!view.missing.is_empty() || covered())
            }
        };
        if !aborted {
            continue;
        }
        let i = *by_value.entry(value).or_insert_with(|| {
            found.push(AbortedRecord {
                value,
                tp,
                offset: *offset,
                txn: id,
                readers: Vec::new(),
            });
            found.len() - 1
        });
        if !found[i].readers.contains(&reader) {
            found[i].readers.push(reader);
        }
    }
    for record in found {
        let txn = &index.txns[record.txn];
        let outcome = match txn.outcome {
            Outcome::Aborted => "aborted",
            _ => "outcome unknown, resolved as aborted: none of it is in the final read_committed read",
        };
        let message = format!(
            "{}'s {} at {} offset {} of transaction {} ({outcome}) was read with read_committed by {}",
            txn.client,
            record.value,
            record.tp,
            record.offset,
            record.txn,
            listed(&record.readers)
        );
        out.push(Anomaly::new(AnomalyKind::AbortedRead, message));
    }
}

/// Inputs of a drained consume-transform-produce group that no committed transaction turned
/// into output.
fn lost_inputs(index: &Index<'_>, stats: &mut Stats, out: &mut Vec<Anomaly>) {
    let drained: HashSet<&str> = index
        .events
        .iter()
        .filter_map(|event| match &event.op {
            Op::Drained { group, complete: true } => Some(group.as_str()),
            _ => None,
        })
        .collect();
    let input_topics: HashSet<&str> = index
        .events
        .iter()
        .filter_map(|event| match &event.op {
            Op::TxnOffsets { group, offsets, .. } if drained.contains(group.as_str()) => Some(offsets),
            _ => None,
        })
        .flatten()
        .map(|offset| offset.topic.as_str())
        .collect();
    if input_topics.is_empty() {
        return;
    }
    let mut outputs: HashMap<&str, Vec<&str>> = HashMap::new();
    for (line, event) in index.events.iter().enumerate() {
        if let Op::Send {
            value,
            source: Some(source),
            ..
        } = &event.op
        {
            if index.sends[value.as_str()].line == line {
                outputs.entry(source.as_str()).or_default().push(value);
            }
        }
    }

    for (tp, isolation, log) in index.final_logs() {
        if isolation != Isolation::ReadUncommitted || log.range.is_none() || !input_topics.contains(tp.topic) {
            continue;
        }
        for &(offset, input) in log.records() {
            if !index.acks.contains_key(input) || index.txn_of(input).is_some() {
                continue; // not an input the workload was told it wrote
            }
            let outputs = outputs.get(input).map(Vec::as_slice).unwrap_or_default();
            match processed(index, outputs) {
                Some(true) => stats.inputs_checked += 1,
                None => stats.inputs_unchecked += 1,
                Some(false) => {
                    stats.inputs_checked += 1;
                    let described = outputs.iter().map(|&output| {
                        let txn = index.txn_of(output);
                        let outcome = txn.map_or("outside a transaction", |id| outcome_name(index.txns[id].outcome));
                        format!("{output} (transaction {}, {outcome})", txn.unwrap_or("none"))
                    });
                    let outputs = if outputs.is_empty() {
                        "it has no output".to_string()
                    } else {
                        format!("outputs {}", listed(described))
                    };
                    let message = format!(
                        "{}'s input {input} at {tp} offset {offset} was processed by no committed transaction \
                         (none of its outputs is in the final read_committed read; {outputs})",
                        index.producer(input)
                    );
                    out.push(Anomaly::new(AnomalyKind::LostWrite, message));
                }
            }
        }
    }
}

/// Whether any of an input's outputs is visible to read_committed: `None` when one of them
/// could be but the final read does not cover where it went.
fn processed(index: &Index<'_>, outputs: &[&str]) -> Option<bool> {
    let mut decided = true;
    for &output in outputs {
        let tp = index.sends[output].tp;
        if index.final_offset(output, tp, Isolation::ReadCommitted).is_some() {
            return Some(true);
        }
        let log = index
            .final_log(tp, Isolation::ReadCommitted)
            .filter(|log| log.range.is_some());
        let covered = match (log, index.acks.get(output)) {
            (None, _) => false,
            (Some(log), Some(acked)) => acked.tp != tp || log.covers(acked.offset),
            (Some(_), None) => true,
        };
        decided &= covered;
    }
    decided.then_some(false)
}

/// One input turned into output visible to read_committed by two transactions.
fn duplicate_outputs(index: &Index<'_>, out: &mut Vec<Anomaly>) {
    let mut first: HashMap<&str, (&str, TpRef<'_>, i64)> = HashMap::new();
    for (tp, isolation, log) in index.final_logs() {
        if isolation != Isolation::ReadCommitted {
            continue;
        }
        for &(offset, output) in log.records() {
            let Some(source) = index.sends.get(output).and_then(|sent| sent.source) else {
                continue;
            };
            let (other, other_tp, other_offset) = *first.entry(source).or_insert((output, tp, offset));
            if other == output {
                continue;
            }
            let txn = |value| index.txn_of(value).unwrap_or("none");
            let message = format!(
                "input {source} was processed twice: the final read_committed read has {other} at {other_tp} \
                 offset {other_offset} (transaction {}) and {output} at {tp} offset {offset} (transaction {})",
                txn(other),
                txn(output)
            );
            out.push(Anomaly::new(AnomalyKind::Duplicate, message));
        }
    }
}
