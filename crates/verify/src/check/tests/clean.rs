//! A larger history of every kind of client, written by a model of a correct broker: it must
//! come out clean.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::super::check;
use crate::history::{Isolation, Outcome};
use crate::testing::{History, RC, RU};

type TpName = (&'static str, i32);

const Q: [TpName; 3] = [("q", 0), ("q", 1), ("q", 2)];
const IN0: TpName = ("in", 0);
const OUT0: TpName = ("out", 0);

enum Entry {
    Record {
        value: String,
        txn: Option<String>,
    },
    /// A transaction marker: takes an offset, holds no record.
    Marker,
}

/// Partition logs that assign offsets in order and never lose anything, writing the history
/// of what clients were told as they go.
#[derive(Default)]
struct Broker {
    h: History,
    logs: BTreeMap<TpName, Vec<Entry>>,
    committed: HashSet<String>,
    /// Each open transaction's partitions.
    open: BTreeMap<String, BTreeSet<TpName>>,
}

impl Broker {
    fn new() -> Self {
        Self {
            h: History::new(),
            ..Self::default()
        }
    }

    fn append(&mut self, tp: TpName, entry: Entry) -> i64 {
        let log = self.logs.entry(tp).or_default();
        log.push(entry);
        log.len() as i64 - 1
    }

    fn end(&self, tp: TpName) -> i64 {
        self.logs.get(&tp).map_or(0, |log| log.len() as i64)
    }

    fn produce(&mut self, client: &str, tp: TpName, value: &str) {
        let offset = self.append(
            tp,
            Entry::Record {
                value: value.into(),
                txn: None,
            },
        );
        let _ = self.h.produce(client, tp, offset, value);
    }

    /// A send that timed out, whether or not it was written.
    fn produce_failed(&mut self, client: &str, tp: TpName, value: &str, written: bool) {
        let _ = self.h.send(client, tp, value);
        if written {
            let _ = self.append(
                tp,
                Entry::Record {
                    value: value.into(),
                    txn: None,
                },
            );
        }
        let _ = self.h.failed(client, tp, value);
    }

    fn begin(&mut self, client: &str, txn: &str) {
        let _ = self.open.insert(txn.into(), BTreeSet::new());
        let _ = self.h.txn_begin(client, txn);
    }

    fn txn_produce(&mut self, client: &str, txn: &str, tp: TpName, value: &str, source: Option<&str>) {
        let _ = self.open.get_mut(txn).expect("an open transaction").insert(tp);
        match source {
            Some(source) => self.h.send_from(client, txn, tp, value, source),
            None => self.h.send_in(client, txn, tp, value),
        };
        let offset = self.append(
            tp,
            Entry::Record {
                value: value.into(),
                txn: Some(txn.into()),
            },
        );
        let _ = self.h.ack_in(client, txn, tp, offset, value);
    }

    fn end_txn(&mut self, client: &str, txn: &str, outcome: Outcome) {
        for tp in self.open.remove(txn).expect("an open transaction") {
            let _ = self.append(tp, Entry::Marker);
        }
        if outcome == Outcome::Committed {
            let _ = self.committed.insert(txn.into());
        }
        let _ = self.h.txn_end(client, txn, outcome);
    }

    /// What a consumer at this isolation sees of `[from, to)`.
    fn visible(&self, tp: TpName, isolation: Isolation, (from, to): (i64, i64)) -> Vec<(i64, String)> {
        let log = self.logs.get(&tp).map_or(&[][..], Vec::as_slice);
        (from..to)
            .filter_map(|offset| match &log[offset as usize] {
                Entry::Record { value, txn } => {
                    let shown = isolation == RU || txn.as_ref().is_none_or(|txn| self.committed.contains(txn));
                    shown.then(|| (offset, value.clone()))
                }
                Entry::Marker => None,
            })
            .collect()
    }

    /// A consumer polls `tp` from `from` up to the log end; returns its next position.
    fn poll(&mut self, client: &str, isolation: Isolation, tp: TpName, from: i64) -> i64 {
        let end = self.end(tp);
        for (offset, value) in self.visible(tp, isolation, (from, end)) {
            let _ = self.h.read(client, isolation, tp, offset, &value);
        }
        end
    }

    fn final_reads(&mut self) {
        let partitions: Vec<TpName> = self.logs.keys().copied().collect();
        for tp in partitions {
            let range = (0, self.end(tp));
            for isolation in [RU, RC] {
                let records = self.visible(tp, isolation, range);
                let records: Vec<(i64, &str)> = records.iter().map(|(o, v)| (*o, v.as_str())).collect();
                let _ = self.h.final_read(isolation, tp, range, &records);
            }
        }
    }
}

#[test]
fn a_history_of_every_client_against_a_correct_broker_is_clean() {
    let mut b = Broker::new();
    let round = |b: &mut Broker, r: usize| {
        for producer in 0..2 {
            for (i, &tp) in Q[..1 + r % 3].iter().enumerate() {
                b.produce(&format!("producer-{producer}"), tp, &format!("p{producer}-r{r}-{i}"));
            }
        }
    };
    for r in 0..4 {
        round(&mut b, r);
    }

    // Generation 1: member-0 has q/0 and q/1, member-1 has q/2.
    let _ =
        b.h.assigned("member-0", "g", 1, &[Q[0], Q[1]])
            .assigned("member-1", "g", 1, &[Q[2]]);
    let q0 = b.poll("member-0", RU, Q[0], 0);
    let q1 = b.poll("member-0", RU, Q[1], 0);
    let q2 = b.poll("member-1", RU, Q[2], 0);
    let _ = b.h.commit("member-0", "g", 1, &[("q", 0, q0), ("q", 1, 2)], None);
    let _ = b.h.commit("member-1", "g", 1, &[("q", 2, q2)], None);
    assert!(q1 > 2, "member-0 read past what it committed");

    // A send timed out unwritten, one timed out but was written, more rounds.
    b.produce_failed("producer-0", Q[0], "p0-lost-in-flight", false);
    b.produce_failed("producer-1", Q[0], "p1-written-anyway", true);
    for r in 4..6 {
        round(&mut b, r);
    }

    // A transaction commits across q/1 and q/2; another aborts on q/1.
    b.begin("txn-0", "t1");
    b.txn_produce("txn-0", "t1", Q[1], "t1-a", None);
    b.txn_produce("txn-0", "t1", Q[2], "t1-b", None);
    b.end_txn("txn-0", "t1", Outcome::Committed);
    b.begin("txn-0", "t2");
    b.txn_produce("txn-0", "t2", Q[1], "t2-a", None);
    b.end_txn("txn-0", "t2", Outcome::Aborted);
    round(&mut b, 6);

    // A late commit by member-0 in generation 1 fails: the group is rebalancing.
    let _ =
        b.h.commit("member-0", "g", 1, &[("q", 1, q1)], Some("REBALANCE_IN_PROGRESS"));
    let _ = b.h.push(
        "member-0",
        crate::history::Op::Revoked {
            group: "g".into(),
            generation: 1,
            member: "member-0-id".into(),
            partitions: vec![],
        },
    );
    // Generation 2: q/1 moves to member-1, which re-reads it from the commit.
    let _ =
        b.h.assigned("member-0", "g", 2, &[Q[0]])
            .assigned("member-1", "g", 2, &[Q[1], Q[2]]);
    let q0 = b.poll("member-0", RU, Q[0], q0);
    let q1 = b.poll("member-1", RU, Q[1], 2);
    let q2 = b.poll("member-1", RU, Q[2], q2);
    let _ = b.h.commit("member-0", "g", 2, &[("q", 0, q0)], None);
    let _ = b.h.commit("member-1", "g", 2, &[("q", 1, q1), ("q", 2, q2)], None);

    // A read_committed reader sees t1 and neither t2 nor the markers.
    for tp in Q {
        let _ = b.poll("audit-0", RC, tp, 0);
    }

    // Exactly once: e1 commits outputs of i0 and i1; e2 aborts after i2 and i3, and e3 redoes
    // them with i4 after seeking back.
    for i in 0..5 {
        b.produce("producer-0", IN0, &format!("i{i}"));
    }
    let _ = b.h.assigned("etl-0", "etl", 1, &[IN0]);
    for (txn, inputs, outcome) in [
        ("e1", 0..2, Outcome::Committed),
        ("e2", 2..4, Outcome::Aborted),
        ("e3", 2..5, Outcome::Committed),
    ] {
        if txn == "e3" {
            let _ = b.h.seek("etl-0", IN0, 2);
        }
        b.begin("etl-0", txn);
        let next = inputs.end;
        for i in inputs {
            let input = format!("i{i}");
            let _ = b.h.read("etl-0", RC, IN0, i, &input);
            b.txn_produce("etl-0", txn, OUT0, &format!("{txn}-{input}"), Some(&input));
        }
        let _ = b.h.txn_offsets("etl-0", txn, "etl", &[("in", 0, next)]);
        b.end_txn("etl-0", txn, outcome);
    }
    let _ = b.h.drained("etl", true);

    b.final_reads();
    let report = check(b.h.events());
    let anomalies: Vec<_> = report.anomalies.iter().map(ToString::to_string).collect();
    assert!(report.is_clean(), "{anomalies:#?}");

    let stats = &report.stats;
    assert_eq!(
        (stats.txns_committed, stats.txns_aborted, stats.txns_unknown),
        (3, 2, 0)
    );
    assert_eq!((stats.send_failures, stats.sends_unanswered), (2, 0));
    assert_eq!(
        stats.acks_checked,
        stats.acks - 10,
        "every non-transactional ack was checked"
    );
    assert_eq!(stats.inputs_checked, 5);
    assert_eq!(stats.offset_commits, 8);
    assert_eq!(stats.final_reads, 2 * 5);
}
