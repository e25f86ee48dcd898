//! Strom's storage engine: one segmented log per partition, with sparse indexes, crash
//! recovery, retention, compaction, leader epochs and idempotent producer state. It knows
//! nothing of the network; the server holds each [`Log`] in a mutex and calls it.
//!
//! # Layout
//! - [`log`]: the `Log` of one partition: offsets, append, read, flush, truncate.
//! - `segment`: one log file with its two indexes; append, batch lookup, tail scan.
//! - `offset_index`: the sparse `.index` file (relative offset -> file position).
//! - `time_index`: the sparse `.timeindex` file (max timestamp so far -> relative offset).
//! - `index_file`: fixed-size entries in memory and on disk, shared by both indexes.
//! - `recovery`: `Log::open`: validate, truncate torn tails, rebuild indexes and state.
//! - `replication`: a follower's append of the leader's batches as they are, leader epoch
//!   queries and assignment, and the `high-watermark` checkpoint.
//! - `retention`: `retention.ms`, `retention.bytes`, DeleteRecords.
//! - `compaction`: `cleanup.policy=compact` as job (under lock) / run (no lock) / install.
//! - `producer_state`: idempotent producer sequences, open transactions, and their
//!   `.snapshot` files.
//! - `txn_index`: the per-segment `.txnindex` of aborted transactions.
//! - `epoch_checkpoint`: the leader epoch cache and `leader-epoch-checkpoint`.
//! - `checkpoint`: framed, checksummed, atomically written small files.
//! - `config`: [`LogConfig`], named after Kafka's topic configs.
//! - `error`: [`StorageError`], [`AppendError`], [`ReadError`].
//!
//! # Offsets
//!
//! ```text
//!   log start offset                            high watermark   log end offset
//!   (DeleteRecords moved it into segment 0)          |              |
//!          |                                         v              v
//!  +-------v---------+-------------------+-------------------------+
//!  |     0.log       |     1000.log      |     2500.log (active)   |
//!  +-----------------+-------------------+-------------------------+
//!  0      400        1000                2500            2600      2730
//!  ^ base offsets of segments: file names, 20 digits zero padded
//! ```
//! Segments are named by their base offset (`00000000000000001000.log`). The log start
//! offset may sit inside the first segment (DeleteRecords); reads below it or above the log
//! end offset are `OffsetOutOfRange`; a read at the log end offset is empty. Fetches are
//! bounded by the high watermark, which the server advances (on open it equals the log end
//! offset, or for a replicated partition the `high-watermark` checkpoint). A follower's log
//! may have offset gaps between batches (its leader compacted them away).
//!
//! # Directory
//! `<base>.log`, `<base>.index`, `<base>.timeindex` (and `<base>.txnindex` once a transaction
//! aborted there) per segment; `<offset>.snapshot` producer
//! state; `leader-epoch-checkpoint`, `log-start-offset`, `cleaner-offset` checkpoints (the
//! `high-watermark` and `recovery-point` files of earlier versions are still read; a
//! `recovery-point` is written again when a truncation lowers it); `clean-shutdown` while
//! closed cleanly. The log directory above holds `replication-offset-checkpoint` and
//! `recovery-point-offset-checkpoint` ([`dir_checkpoint`]). Temp files end in `.tmp` or
//! `.cleaned`.
//!
//! # Appends
//! Batches are stored byte for byte as validated; the broker patches only the base offset,
//! the partition leader epoch and, for `LogAppendTime` topics, the timestamp (with the CRC).
//! The patched header and the untouched rest are written with one vectored write, so the
//! payload is not copied (except for `LogAppendTime`). A follower patches nothing: it stores
//! the leader's batches byte for byte (`replication`).

mod checkpoint;
mod compaction;
mod config;
pub mod dir_checkpoint;
mod epoch_checkpoint;
mod error;
mod flush;
mod index_file;
pub mod log;
mod offset_index;
mod producer_state;
mod recovery;
mod replication;
mod retention;
mod segment;
mod time_index;
mod txn_index;

#[cfg(test)]
mod replication_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;

pub use compaction::{CompactionJob, CompactionReport, CompactionResult, KEY_MAP_BYTES_MAX};
pub use config::{CleanupPolicy, LogConfig, LogOpenOptions, DAY_MS};
pub use error::{AppendError, ReadError, ReplicatedAppendError, StorageError};
pub use flush::FlushJob;
pub use log::{AppendOutcome, FileChunk, Log, ReadSlice, RecoveryReport, TimestampOffset};
pub use producer_state::{ProducerDescription, BATCHES_PER_PRODUCER_MAX};
pub use replication::{ReplicatedAppend, ReplicatedBatches};
pub use retention::RetentionReport;
pub use txn_index::AbortedTxn;
