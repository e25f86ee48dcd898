//! The history: every client call a workload made and the answer it got, one JSON object per
//! line (JSONL), written by `strom verify run` against any Kafka-compatible cluster and read
//! by the checker.
//!
//! Every line is an [`Event`]: when it happened (`t`, wall-clock milliseconds since the Unix
//! epoch, so the nemesis's fault log can be laid beside it), which client saw it (`client`, a
//! name unique in the run such as `producer-2`, `member-0`, `txn-1`, `final`), and what
//! happened (`op`, flattened into the same object with a `"type"` tag).
//!
//! Record values are unique strings chosen by the workload: the checker identifies a record by
//! its value alone. Values written inside a transaction name their transaction, so a value
//! never needs a second lookup to know which transaction wrote it.
//!
//! The history says what clients observed, never what the broker believes: the same workload
//! and checker run unchanged against Apache Kafka.

use serde::{Deserialize, Serialize};

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time in milliseconds since the Unix epoch (fractions allowed).
    pub t: f64,
    /// The client that made the call or saw the answer.
    pub client: String,
    #[serde(flatten)]
    pub op: Op,
}

/// A topic partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tp {
    pub topic: String,
    pub partition: i32,
}

/// A position in a partition: the next offset to read, as committed offsets are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// How a consumer reads: every record, or only committed transactions' records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

/// How a transaction ended as its client saw it. `Unknown`: the commit was sent but its answer
/// never came (or was an error after which either outcome is possible); the checker then
/// accepts either outcome, but not a mix of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Committed,
    Aborted,
    Unknown,
}

/// What happened. Producer calls: `Send` when the record is handed to the client, then
/// exactly one of `Ack` or `SendFailed` for it (or neither, if the client died first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// A record handed to the producer for this partition. `txn` names the transaction it
    /// belongs to, if any; `source` the input record's value it was made from, when a
    /// consume-transform-produce loop wrote it (exactly once means: one committed output per
    /// input).
    Send {
        topic: String,
        partition: i32,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        txn: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    /// The broker acknowledged the record at this offset (acks=all). For a transactional
    /// record this only means it was appended: the transaction's outcome decides whether it
    /// counts.
    Ack {
        topic: String,
        partition: i32,
        offset: i64,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        txn: Option<String>,
    },
    /// The producer gave up on the record. Indeterminate: it may or may not have been written,
    /// so it may be read at most once, and its absence is no loss.
    SendFailed {
        topic: String,
        partition: i32,
        value: String,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        txn: Option<String>,
    },

    /// A group member was given these partitions for this generation (eager rebalancing: the
    /// whole assignment at once). `member` is the broker-given member id.
    Assigned {
        group: String,
        generation: i32,
        member: String,
        partitions: Vec<Tp>,
    },
    /// The member gave up these partitions (before a rebalance, or when it learnt it had
    /// lost them).
    Revoked {
        group: String,
        generation: i32,
        member: String,
        partitions: Vec<Tp>,
    },
    /// The client moved its position in a partition: the next record it reads there may come
    /// from anywhere at or after `offset`, including before its last read.
    Seek { topic: String, partition: i32, offset: i64 },
    /// The client was handed this record by a poll.
    Read {
        topic: String,
        partition: i32,
        offset: i64,
        value: String,
        isolation: Isolation,
    },
    /// A group offset commit (outside a transaction) and its answer: `error` is `None` when
    /// the broker accepted it.
    Commit {
        group: String,
        generation: i32,
        offsets: Vec<TpOffset>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },

    /// A transaction began. Its id is unique in the history.
    TxnBegin { txn: String },
    /// The transaction's consumed offsets were added to it (`send_offsets_to_transaction`).
    TxnOffsets {
        txn: String,
        group: String,
        offsets: Vec<TpOffset>,
    },
    /// The transaction ended with this outcome (`error` says why, when not committed).
    TxnEnd {
        txn: String,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },

    /// A consume-transform-produce group finished: with the faults healed and the inputs no
    /// longer written, its committed offsets reached the input topics' ends (`complete`), or
    /// the drain timed out (`complete: false`; then inputs without an output are not counted
    /// as lost).
    Drained { group: String, complete: bool },

    /// After the faults healed and the workload drained: the final read found this record.
    /// Each partition is read from its log start offset to its end, once with each isolation.
    FinalRead {
        topic: String,
        partition: i32,
        offset: i64,
        value: String,
        isolation: Isolation,
    },
    /// The final read of one partition at one isolation is complete: it covered
    /// `[start_offset, end_offset)` (end: the high watermark for read_uncommitted, the last
    /// stable offset for read_committed).
    FinalEnd {
        topic: String,
        partition: i32,
        isolation: Isolation,
        start_offset: i64,
        end_offset: i64,
    },
}

impl Event {
    /// One history line, without its newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }
}

/// Parses a history, one event per non-empty line. A line that does not parse is an error
/// naming its line number: a truncated last line (the writer was killed mid-write) is
/// skipped, anything else is reported.
pub fn parse(text: &str) -> Result<Vec<Event>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(event) => events.push(event),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(format!("history line {}: {e}", i + 1)),
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_flat_json_object_with_a_type_tag() {
        let event = Event {
            t: 1.5,
            client: "producer-0".into(),
            op: Op::Ack {
                topic: "q".into(),
                partition: 2,
                offset: 7,
                value: "p0-7".into(),
                txn: None,
            },
        };
        let line = event.to_line();
        assert_eq!(
            line,
            r#"{"t":1.5,"client":"producer-0","type":"ack","topic":"q","partition":2,"offset":7,"value":"p0-7"}"#
        );
        assert_eq!(parse(&line).unwrap(), vec![event]);
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error() {
        let good = r#"{"t":1,"client":"c","type":"txn_begin","txn":"x"}"#;
        let torn = r#"{"t":2,"client":"c","type":"txn_"#;
        assert_eq!(parse(&format!("{good}\n{torn}")).unwrap().len(), 1);
        let err = parse(&format!("{torn}\n{good}\n")).unwrap_err();
        assert!(err.starts_with("history line 1:"), "{err}");
    }
}
