//! How long partitions went without acknowledging writes, per fault window.
//!
//! A partition is unavailable while a write to it is pending and no acknowledgement comes. An
//! interval of unavailability opens when a write becomes pending: at its `Send`, or, if writes
//! were still pending, at the partition's last `Ack` (the later of the last ack and the oldest
//! unanswered send). It closes at the partition's next `Ack`. A `SendFailed` that leaves
//! nothing pending suspends it and the next `Send` resumes it: a producer that retries after
//! each timeout sees one outage, not many. Only the time writes were pending counts, so a
//! producer that paused adds nothing; an interval never answered by an ack ends at its last
//! failure, or, with a write unanswered to the end of the history, never. Only
//! non-transactional writes count (a transaction's appends wait for its coordinator too).
//!
//! For each window `[start, end)` (a fault injected, until the next fault or the heal) the
//! answer is the longest interval of any one partition that had a write pending in the window,
//! counted from the window's start. It is not clipped at the window's end: an outage that began
//! in the window counts whole, however long it lasted; one that never ended counts to the
//! window's end. In steady state the intervals are the gaps between acknowledgements, a few
//! milliseconds.

use std::collections::{HashMap, HashSet};

use crate::history::{Event, Op};

/// For each window, the longest a partition went without acknowledging a pending write, in
/// milliseconds; 0 when nothing was pending in it.
pub fn unavailability(events: &[Event], windows: &[(f64, f64)]) -> Vec<f64> {
    let intervals = intervals(events);
    windows
        .iter()
        .map(|&window| {
            intervals
                .values()
                .map(|intervals| longest(intervals, window))
                .fold(0.0, f64::max)
        })
        .collect()
}

/// An interval of unavailability of one partition: the stretches when writes were pending,
/// in time order, disjoint; the last one's end is `INFINITY` if it never ended.
#[derive(Debug, PartialEq)]
struct Interval {
    first: (f64, f64),
    /// Stretches after a suspension; almost always none.
    more: Vec<(f64, f64)>,
}

impl Interval {
    fn from_stretches(mut stretches: Vec<(f64, f64)>) -> Self {
        let first = stretches.remove(0);
        Self { first, more: stretches }
    }

    fn stretches(&self) -> impl Iterator<Item = &(f64, f64)> {
        std::iter::once(&self.first).chain(&self.more)
    }

    fn start(&self) -> f64 {
        self.first.0
    }

    fn end(&self) -> f64 {
        self.more.last().unwrap_or(&self.first).1
    }

    /// Its length as seen from a window: 0 if no write was pending in the window, else the
    /// pending time from the window's start on, to the window's end if it never ended.
    fn length_ms(&self, (from, to): (f64, f64)) -> f64 {
        if !self.stretches().any(|&(start, end)| start < to && end > from) {
            return 0.0;
        }
        self.stretches()
            .map(|&(start, end)| {
                let end = if end.is_finite() { end } else { to };
                (end - start.max(from)).max(0.0)
            })
            .sum()
    }
}

/// The longest interval of one partition overlapping a window. `intervals` are disjoint and
/// in time order.
fn longest(intervals: &[Interval], (from, to): (f64, f64)) -> f64 {
    let first = intervals.partition_point(|interval| interval.end() <= from);
    intervals[first..]
        .iter()
        .take_while(|interval| interval.start() < to)
        .map(|interval| interval.length_ms((from, to)))
        .fold(0.0, f64::max)
}

/// A non-transactional `Send`, `Ack` or `SendFailed`.
struct Write<'a> {
    t: f64,
    line: usize,
    kind: Kind,
    tp: (&'a str, i32),
    value: &'a str,
}

#[derive(Clone, Copy)]
enum Kind {
    Send,
    Ack,
    Failed,
}

/// A partition's state while the history is replayed.
#[derive(Default)]
struct Partition {
    /// Writes sent and not yet answered.
    pending: usize,
    open: Option<Open>,
    closed: Vec<Interval>,
}

struct Open {
    /// When the current stretch of pending writes began, or `None` while suspended.
    pending_since: Option<f64>,
    /// Earlier stretches, if it was ever suspended.
    stretches: Vec<(f64, f64)>,
}

impl Open {
    fn at(t: f64) -> Self {
        Self {
            pending_since: Some(t),
            stretches: Vec::new(),
        }
    }
}

impl Partition {
    /// A write was sent; `counted` unless it was answered already or sent twice.
    fn send(&mut self, t: f64, counted: bool) {
        if !counted {
            return;
        }
        self.pending += 1;
        match &mut self.open {
            None => self.open = Some(Open::at(t)),
            Some(open) => {
                let _ = open.pending_since.get_or_insert(t); // resumed
            }
        }
    }

    /// The partition acknowledged a write: the open interval closes, and a new one opens if
    /// writes are still pending.
    fn ack(&mut self, t: f64) {
        self.close(t);
        if self.pending > 0 {
            self.open = Some(Open::at(t));
        }
    }

    /// A write failed; with nothing left pending the open interval is suspended.
    fn failed(&mut self, t: f64) {
        if self.pending > 0 {
            return;
        }
        if let Some(open) = &mut self.open {
            if let Some(since) = open.pending_since.take() {
                open.stretches.push((since, t));
            }
        }
    }

    /// Closes the open interval at `t` (`INFINITY`: never), or where it was suspended.
    fn close(&mut self, t: f64) {
        let Some(mut open) = self.open.take() else { return };
        if let Some(since) = open.pending_since {
            open.stretches.push((since, t));
        }
        self.closed.push(Interval::from_stretches(open.stretches));
    }
}

/// Every partition's intervals, from the history's non-transactional writes in time order.
fn intervals(events: &[Event]) -> HashMap<(&str, i32), Vec<Interval>> {
    let transactional: HashSet<&str> = events
        .iter()
        .filter_map(|event| match &event.op {
            Op::Send {
                value, txn: Some(_), ..
            } => Some(value.as_str()),
            _ => None,
        })
        .collect();
    let mut writes: Vec<Write<'_>> = events
        .iter()
        .enumerate()
        .filter_map(|(line, event)| {
            let (kind, topic, partition, value, txn) = match &event.op {
                Op::Send {
                    topic,
                    partition,
                    value,
                    txn,
                    ..
                } => (Kind::Send, topic, partition, value, txn),
                Op::Ack {
                    topic,
                    partition,
                    value,
                    txn,
                    ..
                } => (Kind::Ack, topic, partition, value, txn),
                Op::SendFailed {
                    topic,
                    partition,
                    value,
                    txn,
                    ..
                } => (Kind::Failed, topic, partition, value, txn),
                _ => return None,
            };
            let transactional = txn.is_some() || transactional.contains(value.as_str());
            let write = Write {
                t: event.t,
                line,
                kind,
                tp: (topic, *partition),
                value,
            };
            (!transactional).then_some(write)
        })
        .collect();
    writes.sort_by(|a, b| a.t.total_cmp(&b.t).then(a.line.cmp(&b.line)));

    // A write is pending from its send to its first answer; an answer that comes before the
    // send (clocks of different threads) or a second time changes nothing.
    let mut answered: HashSet<&str> = HashSet::new();
    let mut pending: HashMap<&str, (&str, i32)> = HashMap::new();
    let mut partitions: HashMap<(&str, i32), Partition> = HashMap::new();
    for Write { t, kind, tp, value, .. } in writes {
        if let Kind::Send = kind {
            let counted = !answered.contains(value) && !pending.contains_key(value);
            if counted {
                let _ = pending.insert(value, tp);
            }
            partitions.entry(tp).or_default().send(t, counted);
            continue;
        }
        let _ = answered.insert(value);
        if let Some(sent_to) = pending.remove(value) {
            partitions
                .get_mut(&sent_to)
                .expect("a pending write's partition")
                .pending -= 1;
        }
        let partition = partitions.entry(tp).or_default();
        match kind {
            Kind::Ack => partition.ack(t),
            _ => partition.failed(t),
        }
    }
    partitions
        .into_iter()
        .map(|(tp, mut partition)| {
            partition.close(f64::INFINITY);
            (tp, partition.closed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unavailability;
    use crate::history::Outcome;
    use crate::testing::History;

    const Q0: (&str, i32) = ("q", 0);
    const Q1: (&str, i32) = ("q", 1);

    /// A producer sending to `tp` every 10 ms over `[from, to)`, each acked 2 ms later.
    fn steady(h: &mut History, tp: (&str, i32), (from, to): (u32, u32)) {
        for t in (from..to).step_by(10) {
            let (t, value) = (f64::from(t), format!("{}-{}-{t}", tp.0, tp.1));
            let _ = h
                .at(t)
                .send("producer-0", tp, &value)
                .at(t + 2.0)
                .ack("producer-0", tp, 0, &value);
        }
    }

    #[track_caller]
    fn assert_near(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 0.001, "{actual} ms, expected {expected} ms");
    }

    #[test]
    fn steady_state_is_the_time_to_an_ack() {
        let mut h = History::new();
        steady(&mut h, Q0, (0, 1_000));
        steady(&mut h, Q1, (5, 1_000));
        let answer = unavailability(h.events(), &[(100.0, 900.0), (0.0, 1_000.0)]);
        assert_near(answer[0], 2.0);
        assert_near(answer[1], 2.0);
    }

    #[test]
    fn a_two_second_outage_counts_whole_in_the_window_it_began_in() {
        let mut h = History::new();
        steady(&mut h, Q0, (0, 1_000));
        steady(&mut h, Q1, (0, 4_000));
        // From 1 s, q/0's sends wait for 2 s, then are acked in a burst.
        for t in (1_000..3_000).step_by(100) {
            let _ = h.at(f64::from(t)).send("producer-1", Q0, &format!("late-{t}"));
        }
        for t in (1_000..3_000).step_by(100) {
            let _ = h.at(3_000.0).ack("producer-1", Q0, 0, &format!("late-{t}"));
        }
        steady(&mut h, Q0, (3_100, 4_000));
        let answer = unavailability(h.events(), &[(0.0, 900.0), (900.0, 1_500.0), (2_000.0, 4_000.0)]);
        assert_near(answer[0], 2.0);
        assert_near(answer[1], 2_000.0); // not clipped at the window's end
        assert_near(answer[2], 1_000.0); // clipped at its start
    }

    #[test]
    fn a_window_without_pending_writes_is_zero() {
        let mut h = History::new();
        steady(&mut h, Q0, (0, 1_000));
        // A transaction's append waiting long does not count.
        let _ = h
            .at(2_000.0)
            .txn_begin("txn-0", "t1")
            .send_in("txn-0", "t1", Q1, "t1-a");
        let _ = h
            .at(2_900.0)
            .ack_in("txn-0", "t1", Q1, 0, "t1-a")
            .txn_end("txn-0", "t1", Outcome::Committed);
        assert_eq!(unavailability(h.events(), &[(1_500.0, 3_000.0)]), vec![0.0]);
        assert_eq!(unavailability(&[], &[(0.0, 1.0)]), vec![0.0]);
    }

    #[test]
    fn a_send_never_answered_counts_to_the_window_s_end() {
        let mut h = History::new();
        steady(&mut h, Q0, (0, 1_000));
        let _ = h.at(1_000.0).send("producer-0", Q0, "orphan");
        let answer = unavailability(h.events(), &[(500.0, 1_500.0), (2_000.0, 3_000.0)]);
        assert_near(answer[0], 500.0);
        assert_near(answer[1], 1_000.0);
    }

    #[test]
    fn a_failed_send_ends_the_outage_unless_the_producer_retries() {
        let mut h = History::new();
        let _ = h
            .at(1_000.0)
            .send("producer-0", Q0, "a")
            .at(1_600.0)
            .failed("producer-0", Q0, "a");
        assert_eq!(unavailability(h.events(), &[(0.0, 5_000.0)]), vec![600.0]);

        // Retried at once after each timeout, acked at last: one outage of 1.2 s.
        let _ = h
            .at(1_601.0)
            .send("producer-0", Q0, "b")
            .at(2_100.0)
            .failed("producer-0", Q0, "b");
        let _ = h
            .at(2_101.0)
            .send("producer-0", Q0, "c")
            .at(2_200.0)
            .ack("producer-0", Q0, 0, "c");
        assert_near(unavailability(h.events(), &[(0.0, 5_000.0)])[0], 1_198.0);

        // A producer that pauses after a failure: the pause is no outage.
        let mut h = History::new();
        let _ = h
            .at(1_000.0)
            .send("producer-0", Q0, "a")
            .at(1_500.0)
            .failed("producer-0", Q0, "a");
        let _ = h
            .at(9_000.0)
            .send("producer-0", Q0, "b")
            .at(9_001.0)
            .ack("producer-0", Q0, 0, "b");
        let answer = unavailability(h.events(), &[(2_000.0, 8_000.0), (8_000.0, 10_000.0)]);
        assert_eq!(answer[0], 0.0);
        assert_near(answer[1], 1.0);
    }
}
