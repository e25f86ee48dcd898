//! The fault campaign's history format and its checker.
//!
//! `history.rs`: the events a workload writes (JSONL), the same for Strom and for Apache
//! Kafka. `check.rs`: reads a history and reports every anomaly Kafka's contract forbids.
//! Pure logic: no network, no files; `strom verify` does the I/O.

pub mod history;
