//! One pass over the history into the maps every check looks records up in: value → its
//! `Send`, value → its `Ack`, transaction → its values and outcome, and each final read sorted
//! by offset.
//!
//! A value sent, acknowledged or read twice keeps its first `Send` and first `Ack` here; the
//! checks see every read themselves.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::history::{Event, Isolation, Op, Outcome};

use super::Stats;

/// A topic partition borrowed from the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct TpRef<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
}

impl<'a> TpRef<'a> {
    pub(super) fn new(topic: &'a str, partition: i32) -> Self {
        Self { topic, partition }
    }
}

impl fmt::Display for TpRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// `read_committed` or `read_uncommitted`, as the history spells it.
pub(super) fn isolation_name(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::ReadUncommitted => "read_uncommitted",
        Isolation::ReadCommitted => "read_committed",
    }
}

/// A record handed to a producer.
#[derive(Debug)]
pub(super) struct Sent<'a> {
    /// The line of the `Send` in the history.
    pub(super) line: usize,
    pub(super) client: &'a str,
    pub(super) tp: TpRef<'a>,
    pub(super) txn: Option<&'a str>,
    pub(super) source: Option<&'a str>,
}

/// A record the broker acknowledged.
#[derive(Debug)]
pub(super) struct Acked<'a> {
    pub(super) line: usize,
    pub(super) tp: TpRef<'a>,
    pub(super) offset: i64,
    pub(super) txn: Option<&'a str>,
}

/// A transaction as its client saw it.
#[derive(Debug)]
pub(super) struct Txn<'a> {
    /// The client that first named it.
    pub(super) client: &'a str,
    /// `Unknown` until a `TxnEnd` says otherwise; the last `TxnEnd` wins.
    pub(super) outcome: Outcome,
    /// The time and line of its `TxnEnd`.
    pub(super) end: Option<(f64, usize)>,
    /// Its values: sent, or acknowledged without a `Send`, in history order.
    pub(super) values: Vec<&'a str>,
}

/// The final read of one partition at one isolation.
#[derive(Debug, Default)]
pub(super) struct FinalLog<'a> {
    /// The records found, sorted by offset, an identical record found twice kept once.
    records: Vec<(i64, &'a str)>,
    /// `[start_offset, end_offset)` from its `FinalEnd`: without one the read is incomplete
    /// and nothing is concluded from what it lacks.
    pub(super) range: Option<(i64, i64)>,
}

impl<'a> FinalLog<'a> {
    pub(super) fn records(&self) -> &[(i64, &'a str)] {
        &self.records
    }

    /// The value at this offset.
    pub(super) fn at(&self, offset: i64) -> Option<&'a str> {
        let i = self.records.partition_point(|&(o, _)| o < offset);
        self.records
            .get(i)
            .filter(|&&(o, _)| o == offset)
            .map(|&(_, value)| value)
    }

    /// The records at offsets strictly between `low` and `high`.
    pub(super) fn between(&self, low: i64, high: i64) -> &[(i64, &'a str)] {
        let from = self.records.partition_point(|&(o, _)| o <= low);
        let to = self.records.partition_point(|&(o, _)| o < high);
        &self.records[from..to.max(from)]
    }

    /// The read is complete and `offset` lies in `[start_offset, end_offset)`.
    pub(super) fn covers(&self, offset: i64) -> bool {
        self.range.is_some_and(|(start, end)| start <= offset && offset < end)
    }
}

/// Everything the checks look up, borrowed from the history.
pub(super) struct Index<'a> {
    pub(super) events: &'a [Event],
    pub(super) sends: HashMap<&'a str, Sent<'a>>,
    pub(super) acks: HashMap<&'a str, Acked<'a>>,
    /// Transactions by id, and their ids in the order the history first names them.
    pub(super) txns: HashMap<&'a str, Txn<'a>>,
    pub(super) txn_ids: Vec<&'a str>,
    finals: HashMap<(TpRef<'a>, Isolation), FinalLog<'a>>,
    /// The keys of `finals`, sorted, for checks that walk every final read.
    final_keys: Vec<(TpRef<'a>, Isolation)>,
    /// Where each final read first found each value.
    final_offsets: HashMap<(&'a str, Isolation), (TpRef<'a>, i64)>,
    /// Partitions that any transactional record was sent to.
    pub(super) transactional: HashSet<TpRef<'a>>,
}

impl<'a> Index<'a> {
    pub(super) fn build(events: &'a [Event], stats: &mut Stats) -> Self {
        let mut index = Index {
            events,
            sends: HashMap::new(),
            acks: HashMap::new(),
            txns: HashMap::new(),
            txn_ids: Vec::new(),
            finals: HashMap::new(),
            final_keys: Vec::new(),
            final_offsets: HashMap::new(),
            transactional: HashSet::new(),
        };
        let mut answered = HashSet::new();
        stats.events = events.len();
        for (line, event) in events.iter().enumerate() {
            let client = event.client.as_str();
            match &event.op {
                Op::Send {
                    topic,
                    partition,
                    value,
                    txn,
                    source,
                } => {
                    stats.sends += 1;
                    let tp = TpRef::new(topic, *partition);
                    let txn = txn.as_deref();
                    if index.sends.contains_key(value.as_str()) {
                        continue;
                    }
                    let sent = Sent {
                        line,
                        client,
                        tp,
                        txn,
                        source: source.as_deref(),
                    };
                    let _ = index.sends.insert(value, sent);
                    if let Some(txn) = txn {
                        let _ = index.transactional.insert(tp);
                        index.txn(txn, client).values.push(value);
                    }
                }
                Op::Ack {
                    topic,
                    partition,
                    offset,
                    value,
                    txn,
                } => {
                    stats.acks += 1;
                    let _ = answered.insert(value.as_str());
                    let tp = TpRef::new(topic, *partition);
                    if index.acks.contains_key(value.as_str()) {
                        continue;
                    }
                    let txn = txn.as_deref();
                    let _ = index.acks.insert(
                        value,
                        Acked {
                            line,
                            tp,
                            offset: *offset,
                            txn,
                        },
                    );
                    if let Some(txn) = txn {
                        let _ = index.transactional.insert(tp);
                        if !index.sends.contains_key(value.as_str()) {
                            index.txn(txn, client).values.push(value);
                        }
                    }
                }
                Op::SendFailed {
                    topic,
                    partition,
                    value,
                    txn,
                    ..
                } => {
                    stats.send_failures += 1;
                    let _ = answered.insert(value.as_str());
                    if txn.is_some() {
                        let _ = index.transactional.insert(TpRef::new(topic, *partition));
                    }
                }
                Op::Read { .. } => stats.reads += 1,
                Op::TxnBegin { txn } | Op::TxnOffsets { txn, .. } => {
                    let _ = index.txn(txn, client);
                }
                Op::TxnEnd { txn, outcome, .. } => {
                    let entry = index.txn(txn, client);
                    entry.outcome = *outcome;
                    entry.end = Some((event.t, line));
                }
                Op::FinalRead {
                    topic,
                    partition,
                    offset,
                    value,
                    isolation,
                } => {
                    stats.final_records += 1;
                    let key = (TpRef::new(topic, *partition), *isolation);
                    index.finals.entry(key).or_default().records.push((*offset, value));
                }
                Op::FinalEnd {
                    topic,
                    partition,
                    isolation,
                    start_offset,
                    end_offset,
                } => {
                    let key = (TpRef::new(topic, *partition), *isolation);
                    index.finals.entry(key).or_default().range = Some((*start_offset, *end_offset));
                }
                Op::Assigned { .. } | Op::Revoked { .. } | Op::Seek { .. } | Op::Commit { .. } | Op::Drained { .. } => {
                }
            }
        }

        stats.sends_unanswered = index.sends.keys().filter(|value| !answered.contains(*value)).count();
        for txn in index.txns.values() {
            match txn.outcome {
                Outcome::Committed => stats.txns_committed += 1,
                Outcome::Aborted => stats.txns_aborted += 1,
                Outcome::Unknown => stats.txns_unknown += 1,
            }
        }

        index.final_keys = index.finals.keys().copied().collect();
        index
            .final_keys
            .sort_by_key(|&(tp, isolation)| (tp, isolation == Isolation::ReadCommitted));
        for key in &index.final_keys {
            let log = index.finals.get_mut(key).expect("a key of the map");
            log.records.sort_unstable();
            log.records.dedup();
            stats.final_reads += usize::from(log.range.is_some());
            for &(offset, value) in &log.records {
                let _ = index.final_offsets.entry((value, key.1)).or_insert((key.0, offset));
            }
        }
        index
    }

    /// The transaction, created as `Unknown` when first named.
    fn txn(&mut self, id: &'a str, client: &'a str) -> &mut Txn<'a> {
        self.txns.entry(id).or_insert_with(|| {
            self.txn_ids.push(id);
            Txn {
                client,
                outcome: Outcome::Unknown,
                end: None,
                values: Vec::new(),
            }
        })
    }

    /// The final read of a partition at an isolation, complete or not.
    pub(super) fn final_log(&self, tp: TpRef<'a>, isolation: Isolation) -> Option<&FinalLog<'a>> {
        self.finals.get(&(tp, isolation))
    }

    /// Every final read, in partition order, read_uncommitted first.
    pub(super) fn final_logs(&self) -> impl Iterator<Item = (TpRef<'a>, Isolation, &FinalLog<'a>)> + '_ {
        self.final_keys
            .iter()
            .map(|&(tp, isolation)| (tp, isolation, &self.finals[&(tp, isolation)]))
    }

    /// The offset at which the final read of `tp` found `value`, if it did.
    pub(super) fn final_offset(&self, value: &str, tp: TpRef<'_>, isolation: Isolation) -> Option<i64> {
        self.final_offsets
            .get(&(value, isolation))
            .filter(|(found_tp, _)| *found_tp == tp)
            .map(|&(_, offset)| offset)
    }

    /// The transaction a value was written in: its `Send`'s, else its `Ack`'s.
    pub(super) fn txn_of(&self, value: &str) -> Option<&'a str> {
        let sent = self.sends.get(value).and_then(|sent| sent.txn);
        sent.or_else(|| self.acks.get(value).and_then(|acked| acked.txn))
    }

    /// Who produced a value, for messages: `producer-0`, or `?` if it was never sent.
    pub(super) fn producer(&self, value: &str) -> &'a str {
        self.sends.get(value).map_or("?", |sent| sent.client)
    }
}
