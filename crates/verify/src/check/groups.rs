//! Consumer groups: committed offsets and assignments.
//!
//! - Committed offsets only go forward. A member commits what it consumed, and a new owner
//!   starts from the last commit, so a successful commit below an earlier one means the broker
//!   accepted a commit from a member that no longer owned the partition: generation fencing
//!   (and, for transactional commits, KIP-447's) failed. The successful commits are plain
//!   `Commit`s without an error and the `TxnOffsets` of committed transactions, the latter
//!   taking effect when the client learnt of the commit (its `TxnEnd`). They are ordered by
//!   time, ties by history line. (The workload never seeks back and commits; if it did, this
//!   check would flag it.)
//! - One owner per partition per generation: eager rebalancing hands out a whole assignment
//!   per generation, and two members holding the same partition in one generation would both
//!   consume it.

use std::collections::HashMap;
use std::fmt;

use crate::history::{Op, Outcome, TpOffset};

use super::index::{Index, TpRef};
use super::{Anomaly, AnomalyKind, Stats};

/// A successful commit of one partition's offset, in the order it took effect.
struct Commit<'a> {
    /// When it took effect, then the line that made it so, then the line that carried it.
    at: (f64, usize, usize),
    group: &'a str,
    tp: TpRef<'a>,
    offset: i64,
    by: Committer<'a>,
}

#[derive(Clone, Copy)]
enum Committer<'a> {
    Member { client: &'a str, generation: i32 },
    Txn { client: &'a str, txn: &'a str },
}

impl fmt::Display for Committer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Committer::Member { client, generation } => write!(f, "{client} in generation {generation}"),
            Committer::Txn { client, txn } => write!(f, "{client}'s transaction {txn}"),
        }
    }
}

pub(super) fn committed_offsets(index: &Index<'_>, stats: &mut Stats, out: &mut Vec<Anomaly>) {
    let mut commits = Vec::new();
    for (line, event) in index.events.iter().enumerate() {
        let client = event.client.as_str();
        match &event.op {
            Op::Commit {
                group,
                generation,
                offsets,
                error: None,
            } => {
                let by = Committer::Member {
                    client,
                    generation: *generation,
                };
                add(&mut commits, (event.t, line, line), group, offsets, by);
            }
            Op::TxnOffsets { txn, group, offsets } => {
                let Some(committed) = index.txns.get(txn.as_str()) else {
                    continue;
                };
                let Some((t, end_line)) = committed.end.filter(|_| committed.outcome == Outcome::Committed) else {
                    continue;
                };
                add(
                    &mut commits,
                    (t, end_line, line),
                    group,
                    offsets,
                    Committer::Txn { client, txn },
                );
            }
            _ => {}
        }
    }
    commits.sort_by(|a, b| a.at.0.total_cmp(&b.at.0).then((a.at.1, a.at.2).cmp(&(b.at.1, b.at.2))));
    stats.offset_commits = commits.len();

    let mut last: HashMap<(&str, TpRef<'_>), &Commit<'_>> = HashMap::new();
    for commit in &commits {
        if let Some(previous) = last.insert((commit.group, commit.tp), commit) {
            if commit.offset < previous.offset {
                let message = format!(
                    "group {} committed {} offset {} ({}, t={}) after offset {} ({}, t={})",
                    commit.group,
                    commit.tp,
                    commit.offset,
                    commit.by,
                    commit.at.0,
                    previous.offset,
                    previous.by,
                    previous.at.0
                );
                out.push(Anomaly::new(AnomalyKind::CommittedOffsetBackwards, message));
            }
        }
    }
}

/// One commit per partition of a commit request.
fn add<'a>(
    commits: &mut Vec<Commit<'a>>,
    at: (f64, usize, usize),
    group: &'a str,
    offsets: &'a [TpOffset],
    by: Committer<'a>,
) {
    for offset in offsets {
        let tp = TpRef::new(&offset.topic, offset.partition);
        commits.push(Commit {
            at,
            group,
            tp,
            offset: offset.offset,
            by,
        });
    }
}

pub(super) fn ownership(index: &Index<'_>, out: &mut Vec<Anomaly>) {
    // (group, generation, partition) → the member given it first, and its client.
    let mut owners: HashMap<(&str, i32, TpRef<'_>), (&str, &str)> = HashMap::new();
    for event in index.events {
        let Op::Assigned {
            group,
            generation,
            member,
            partitions,
        } = &event.op
        else {
            continue;
        };
        for tp in partitions {
            let tp = TpRef::new(&tp.topic, tp.partition);
            let owner = (member.as_str(), event.client.as_str());
            let (first, first_client) = *owners.entry((group, *generation, tp)).or_insert(owner);
            if first != member {
                let message = format!(
                    "group {group} generation {generation} assigned {tp} to both {first} ({first_client}) and \
                     {member} ({})",
                    event.client
                );
                out.push(Anomaly::new(AnomalyKind::DoubleOwnership, message));
            }
        }
    }
}
