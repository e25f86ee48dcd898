//! Typed errors. Expected failures (a fencing producer, an offset out of range, a bad file) are
//! values; broken invariants are assertions elsewhere.

use std::io;
use std::path::{Path, PathBuf};

/// A storage failure, always naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An fsync failed earlier. The kernel may have dropped the dirty pages and cleared the error,
    /// so a later fsync could "succeed" over lost data; only a restart (and crash recovery from
    /// the last recovery point) can tell what reached the disk.
    #[error("log {path} refuses writes after a failed fsync; restart the broker to recover")]
    Poisoned { path: PathBuf },
    #[error("corrupt {what} {path}: {reason}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("offset {offset} is above the high watermark {high_watermark} of {path}")]
    OffsetAboveHighWatermark {
        path: PathBuf,
        offset: i64,
        high_watermark: i64,
    },
    #[error("offset {offset} is below the log start offset {log_start_offset} of {path}")]
    OffsetBelowLogStart {
        path: PathBuf,
        offset: i64,
        log_start_offset: i64,
    },
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, what: &'static str, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            what,
            reason: reason.into(),
        }
    }
}

/// Adds the path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StorageError> {
        self.map_err(|e| StorageError::io(path, e))
    }
}

/// Why an append was refused. The server maps each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("producer {producer_id}: sequence {received} out of order, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        /// The sequence the broker expected; -1 when the producer is unknown.
        expected: i32,
        received: i32,
    },
    #[error("producer {producer_id}: epoch {received} is older than current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
    /// Kept for the server's error mapping. Storage answers an unknown producer with a
    /// non-zero sequence with [`AppendError::OutOfOrderSequence`], as Kafka has since KIP-360.
    #[error("producer {producer_id} is unknown to this partition")]
    UnknownProducerId { producer_id: i64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("offset {requested} is outside [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a follower refused batches from its leader ([`crate::Log::append_replicated`]). Apart
/// from `Storage`, nothing was written. A separate type from [`AppendError`]: a follower never
/// refuses for producer state (the leader already checked), and it has its own refusals.
#[derive(Debug, thiserror::Error)]
pub enum ReplicatedAppendError {
    /// Damaged or malformed bytes (CRC mismatch, torn batch, bad header): refetch.
    #[error("replicated batch at byte {position}: {source}")]
    InvalidBatch {
        position: usize,
        #[source]
        source: strom_record::BatchError,
    },
    /// A header field no leader writes (negative offsets, a record count beyond the offsets).
    #[error("replicated batch at byte {position}: {reason}")]
    InvalidHeader { position: usize, reason: &'static str },
    /// The batches start below the log end offset: the follower must truncate (after
    /// OffsetForLeaderEpoch) or fetch from its log end.
    #[error("replicated batches start at offset {base_offset}, below the log end offset {log_end_offset}")]
    UnexpectedBaseOffset { base_offset: i64, log_end_offset: i64 },
    /// Within one record set, a batch starts at or below the previous batch's last offset.
    #[error("replicated batch at offset {base_offset} does not follow the previous batch, which ended at {previous_last_offset}")]
    OffsetsOutOfOrder {
        previous_last_offset: i64,
        base_offset: i64,
    },
    /// A batch's leader epoch is below one the log already holds data of (or below an earlier
    /// batch of the same record set): the follower has diverged and must truncate.
    #[error("replicated batch at offset {base_offset} has leader epoch {received}, below the latest epoch {latest}")]
    EpochRegression {
        base_offset: i64,
        received: i32,
        latest: i32,
    },
    /// The gap between an empty active segment's base offset and the batch is more than a
    /// segment's relative offsets can hold (a follower far behind a leader whose log starts
    /// much later): the follower has to start its log over at the leader's log start offset.
    #[error("replicated batch at offset {base_offset} is beyond the reach of segment {segment_base_offset}")]
    OffsetGapTooLarge { base_offset: i64, segment_base_offset: i64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}
