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
