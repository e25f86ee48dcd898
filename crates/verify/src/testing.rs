//! Hand-made histories for tests: one short call per event, events 1 ms apart unless a test
//! sets the clock.

use crate::history::{Event, Isolation, Op, Outcome, Tp, TpOffset};

pub(crate) const RU: Isolation = Isolation::ReadUncommitted;
pub(crate) const RC: Isolation = Isolation::ReadCommitted;

#[derive(Default)]
pub(crate) struct History {
    events: Vec<Event>,
    t: f64,
}

impl History {
    pub(crate) fn new() -> Self {
        Self {
            events: Vec::new(),
            t: 1_000.0,
        }
    }

    pub(crate) fn events(&self) -> &[Event] {
        &self.events
    }

    /// The next event happens at `t`, those after it 1 ms apart.
    pub(crate) fn at(&mut self, t: f64) -> &mut Self {
        self.t = t;
        self
    }

    pub(crate) fn push(&mut self, client: &str, op: Op) -> &mut Self {
        self.events.push(Event {
            t: self.t,
            client: client.into(),
            op,
        });
        self.t += 1.0;
        self
    }

    pub(crate) fn send(&mut self, client: &str, tp: (&str, i32), value: &str) -> &mut Self {
        self.send_full(client, tp, value, None, None)
    }

    /// A send inside transaction `txn`.
    pub(crate) fn send_in(&mut self, client: &str, txn: &str, tp: (&str, i32), value: &str) -> &mut Self {
        self.send_full(client, tp, value, Some(txn), None)
    }

    /// A consume-transform-produce output of input `source`, inside transaction `txn`.
    pub(crate) fn send_from(
        &mut self,
        client: &str,
        txn: &str,
        tp: (&str, i32),
        value: &str,
        source: &str,
    ) -> &mut Self {
        self.send_full(client, tp, value, Some(txn), Some(source))
    }

    fn send_full(
        &mut self,
        client: &str,
        (topic, partition): (&str, i32),
        value: &str,
        txn: Option<&str>,
        source: Option<&str>,
    ) -> &mut Self {
        let op = Op::Send {
            topic: topic.into(),
            partition,
            value: value.into(),
            txn: txn.map(Into::into),
            source: source.map(Into::into),
        };
        self.push(client, op)
    }

    pub(crate) fn ack(&mut self, client: &str, (topic, partition): (&str, i32), offset: i64, value: &str) -> &mut Self {
        let op = Op::Ack {
            topic: topic.into(),
            partition,
            offset,
            value: value.into(),
            txn: None,
        };
        self.push(client, op)
    }

    /// An ack of a record of transaction `txn`.
    pub(crate) fn ack_in(
        &mut self,
        client: &str,
        txn: &str,
        (topic, partition): (&str, i32),
        offset: i64,
        value: &str,
    ) -> &mut Self {
        let op = Op::Ack {
            topic: topic.into(),
            partition,
            offset,
            value: value.into(),
            txn: Some(txn.into()),
        };
        self.push(client, op)
    }

    pub(crate) fn failed(&mut self, client: &str, (topic, partition): (&str, i32), value: &str) -> &mut Self {
        let op = Op::SendFailed {
            topic: topic.into(),
            partition,
            value: value.into(),
            error: "timed out".into(),
            txn: None,
        };
        self.push(client, op)
    }

    /// A send and its ack.
    pub(crate) fn produce(&mut self, client: &str, tp: (&str, i32), offset: i64, value: &str) -> &mut Self {
        self.send(client, tp, value).ack(client, tp, offset, value)
    }

    pub(crate) fn read(
        &mut self,
        client: &str,
        isolation: Isolation,
        (topic, partition): (&str, i32),
        offset: i64,
        value: &str,
    ) -> &mut Self {
        let op = Op::Read {
            topic: topic.into(),
            partition,
            offset,
            value: value.into(),
            isolation,
        };
        self.push(client, op)
    }

    pub(crate) fn seek(&mut self, client: &str, (topic, partition): (&str, i32), offset: i64) -> &mut Self {
        self.push(
            client,
            Op::Seek {
                topic: topic.into(),
                partition,
                offset,
            },
        )
    }

    pub(crate) fn assigned(
        &mut self,
        client: &str,
        group: &str,
        generation: i32,
        partitions: &[(&str, i32)],
    ) -> &mut Self {
        let partitions = partitions
            .iter()
            .map(|&(topic, partition)| Tp {
                topic: topic.into(),
                partition,
            })
            .collect();
        // The broker-given member id: the client's name, marked.
        let op = Op::Assigned {
            group: group.into(),
            generation,
            member: format!("{client}-id"),
            partitions,
        };
        self.push(client, op)
    }

    pub(crate) fn commit(
        &mut self,
        client: &str,
        group: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
        error: Option<&str>,
    ) -> &mut Self {
        let op = Op::Commit {
            group: group.into(),
            generation,
            offsets: offsets_of(offsets),
            error: error.map(Into::into),
        };
        self.push(client, op)
    }

    pub(crate) fn txn_begin(&mut self, client: &str, txn: &str) -> &mut Self {
        self.push(client, Op::TxnBegin { txn: txn.into() })
    }

    pub(crate) fn txn_offsets(
        &mut self,
        client: &str,
        txn: &str,
        group: &str,
        offsets: &[(&str, i32, i64)],
    ) -> &mut Self {
        self.push(
            client,
            Op::TxnOffsets {
                txn: txn.into(),
                group: group.into(),
                offsets: offsets_of(offsets),
            },
        )
    }

    pub(crate) fn txn_end(&mut self, client: &str, txn: &str, outcome: Outcome) -> &mut Self {
        self.push(
            client,
            Op::TxnEnd {
                txn: txn.into(),
                outcome,
                error: None,
            },
        )
    }

    pub(crate) fn drained(&mut self, group: &str, complete: bool) -> &mut Self {
        self.push(
            "final",
            Op::Drained {
                group: group.into(),
                complete,
            },
        )
    }

    /// A complete final read of `[start, end)` that found `records`.
    pub(crate) fn final_read(
        &mut self,
        isolation: Isolation,
        (topic, partition): (&str, i32),
        (start, end): (i64, i64),
        records: &[(i64, &str)],
    ) -> &mut Self {
        for &(offset, value) in records {
            let op = Op::FinalRead {
                topic: topic.into(),
                partition,
                offset,
                value: value.into(),
                isolation,
            };
            let _ = self.push("final", op);
        }
        let op = Op::FinalEnd {
            topic: topic.into(),
            partition,
            isolation,
            start_offset: start,
            end_offset: end,
        };
        self.push("final", op)
    }

    /// The same final read at both isolations: a partition no transaction wrote to.
    pub(crate) fn final_both(&mut self, tp: (&str, i32), range: (i64, i64), records: &[(i64, &str)]) -> &mut Self {
        self.final_read(RU, tp, range, records)
            .final_read(RC, tp, range, records)
    }
}

fn offsets_of(offsets: &[(&str, i32, i64)]) -> Vec<TpOffset> {
    offsets
        .iter()
        .map(|&(topic, partition, offset)| TpOffset {
            topic: topic.into(),
            partition,
            offset,
        })
        .collect()
}
