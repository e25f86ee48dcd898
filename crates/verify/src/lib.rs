//! The fault campaign's history format and its checker.
//!
//! A workload (`strom verify run`) drives Kafka clients against a cluster while a nemesis
//! injects faults, and writes down every call and answer as a history. This crate defines that
//! history and judges it: which of the clients' observations Kafka's contract forbids
//! (lost, duplicated, reordered records, torn or aborted-but-visible transactions, offsets
//! going back, a partition with two owners), and how long partitions stayed unavailable
//! during each fault. Pure logic: no network, no files, no clock; `strom verify` does the I/O.
//! The same history and checker serve Strom and Apache Kafka.
//!
//! # Layout
//! - [`history`]: the events a workload writes (JSONL).
//! - [`check`](mod@check): [`check()`] reads a history and returns a [`Report`] of every [`Anomaly`],
//!   each naming the records involved, with [`Stats`] of what was checked.
//! - [`unavailability`](mod@unavailability): per fault window, the longest a partition went
//!   without acknowledging a pending write.

pub mod check;
pub mod history;
pub mod unavailability;

#[cfg(test)]
mod testing;

pub use check::{check, Anomaly, AnomalyKind, Report, Stats};
pub use unavailability::unavailability;
