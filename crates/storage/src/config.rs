//! Per-topic log settings, named after Kafka's topic configs.

use strom_record::TimestampType;

/// `cleanup.policy`: `delete`, `compact`, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            delete: true,
            compact: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this (capped at 4 GiB,
    /// the reach of an index position).
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: i64,
    /// `segment.index.bytes`: the size cap of each index file; a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`: -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`: -1 means unlimited.
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone survives in the cleaned part of the log.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact when dirty bytes / cleanable bytes reach this.
    pub min_cleanable_dirty_ratio: f64,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `flush.messages`: fsync after this many records; `u64::MAX` leaves flushing to the
    /// server's interval.
    pub flush_messages: u64,
}

/// How a log is opened: properties of the broker's role for the partition, not topic configs,
/// so they are not in [`LogConfig`] (which the server rebuilds from topic configs and replaces
/// with [`crate::Log::set_config`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOpenOptions {
    /// Replicated semantics: the high watermark starts at [`LogOpenOptions::high_watermark`]
    /// (clamped to the log's offsets), or without one at the `high-watermark` file earlier
    /// versions kept in the log's directory, or else at the log start offset, instead of the
    /// log end offset. Off (the default), the log is committed up to its end (how a data
    /// directory of the single-node broker of before is read).
    pub high_watermark_from_checkpoint: bool,
    /// The log's entry in its log directory's `replication-offset-checkpoint`
    /// ([`crate::dir_checkpoint::HIGH_WATERMARKS`]), which the broker reads once for all its
    /// logs.
    pub high_watermark: Option<i64>,
    /// The log's entry in its log directory's `recovery-point-offset-checkpoint`
    /// ([`crate::dir_checkpoint::RECOVERY_POINTS`]). Recovery trusts the segments below the one
    /// holding it (the lower of it and a `recovery-point` file in the log's own directory);
    /// without either it scans every segment.
    pub recovery_point: Option<i64>,
}

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * DAY_MS,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::default(),
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
            message_timestamp_type: TimestampType::CreateTime,
            flush_messages: u64::MAX,
        }
    }
}

impl LogConfig {
    pub(crate) fn index_config(&self) -> crate::segment::IndexConfig {
        crate::segment::IndexConfig {
            index_bytes_max: self.segment_index_bytes,
            index_interval_bytes: self.index_interval_bytes.max(1),
        }
    }

    pub(crate) fn segment_bytes_max(&self) -> u64 {
        self.segment_bytes.clamp(1, crate::segment::SEGMENT_BYTES_MAX)
    }
}
