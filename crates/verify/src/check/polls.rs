//! What each consumer was handed, poll after poll, per partition.
//!
//! A consumer's position in a partition only moves forward: each record a poll hands over is
//! at a higher offset than the one before, and nothing that exists in between is skipped
//! (read_committed skips aborted records and markers, which its final read does not have
//! either). Only the client itself moves its position back or past records: a `Seek`, or a new
//! assignment (it then starts from the committed offset). Both reset the comparison.
//!
//! - Non-monotonic poll: an offset at or below the previous one.
//! - Unexplained gap: between two consecutive offsets, the final read of the same isolation
//!   has a record. Once a later offset was readable the records below it were decided, so the
//!   consumer was owed every one the final read shows.

use std::collections::HashMap;

use crate::history::{Isolation, Op};

use super::index::{isolation_name, Index, TpRef};
use super::{listed, Anomaly, AnomalyKind};

/// The last record a client was handed in a partition.
struct LastRead<'a> {
    offset: i64,
    value: &'a str,
    /// The client's assignment count when it was read: a later assignment resets.
    assignment: u64,
}

pub(super) fn check(index: &Index<'_>, out: &mut Vec<Anomaly>) {
    let mut last: HashMap<(&str, TpRef<'_>), LastRead<'_>> = HashMap::new();
    // Per client, how many `Assigned` it has seen.
    let mut assignments: HashMap<&str, u64> = HashMap::new();
    for event in index.events {
        let client = event.client.as_str();
        match &event.op {
            Op::Assigned { .. } => *assignments.entry(client).or_default() += 1,
            Op::Seek { topic, partition, .. } => {
                let _ = last.remove(&(client, TpRef::new(topic, *partition)));
            }
            Op::Read {
                topic,
                partition,
                offset,
                value,
                isolation,
            } => {
                let tp = TpRef::new(topic, *partition);
                let assignment = assignments.get(client).copied().unwrap_or(0);
                let read = LastRead {
                    offset: *offset,
                    value,
                    assignment,
                };
                if let Some(previous) = last.insert((client, tp), read) {
                    if previous.assignment == assignment {
                        compare(index, client, tp, *isolation, &previous, (*offset, value), out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Two consecutive reads of one client in one partition.
fn compare(
    index: &Index<'_>,
    client: &str,
    tp: TpRef<'_>,
    isolation: Isolation,
    previous: &LastRead<'_>,
    (offset, value): (i64, &str),
    out: &mut Vec<Anomaly>,
) {
    let reads = format!(
        "{client} read {tp} offset {} ({}) then offset {offset} ({value}) with no seek or assignment between",
        previous.offset, previous.value
    );
    if offset <= previous.offset {
        out.push(Anomaly::new(AnomalyKind::NonMonotonicPoll, reads));
        return;
    }
    let Some(log) = index.final_log(tp, isolation) else {
        return;
    };
    let skipped = log.between(previous.offset, offset);
    if !skipped.is_empty() {
        let message = format!(
            "{reads}, skipping {} record(s) the final {} read has: {}",
            skipped.len(),
            isolation_name(isolation),
            listed(
                skipped
                    .iter()
                    .map(|(offset, value)| format!("offset {offset} ({value})"))
            )
        );
        out.push(Anomaly::new(AnomalyKind::UnexplainedGap, message));
    }
}
