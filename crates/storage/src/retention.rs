//! Deleting old data: `retention.ms`, `retention.bytes`, and DeleteRecords.
//!
//! Only whole segments are deleted. The log start offset can also sit inside a segment
//! (DeleteRecords), so it is checkpointed in `log-start-offset`; reads below it fail even
//! where the bytes still exist.

use crate::checkpoint;
use crate::error::StorageError;
use crate::log::{Log, LOG_START_OFFSET_FILE};

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub log_start_offset: i64,
}

impl Log {
    /// DeleteRecords: moves the log start offset up to `offset` (-1 means the high watermark)
    /// and deletes segments wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, StorageError> {
        self.check_writable()?;
        let offset = if offset == -1 { self.high_watermark } else { offset };
        if offset > self.high_watermark {
            return Err(StorageError::OffsetAboveHighWatermark {
                path: self.dir.clone(),
                offset,
                high_watermark: self.high_watermark,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.advance_log_start(offset)?;
        let _ = self.delete_segments_below_log_start()?;
        Ok(self.log_start_offset)
    }

    /// Applies `retention.ms` and `retention.bytes` when the cleanup policy includes delete.
    /// As in Kafka, the active segment may go too once all of it is committed: a new empty
    /// active segment is rolled first, so the log end offset never moves back.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport, StorageError> {
        self.check_writable()?;
        let mut report = RetentionReport {
            log_start_offset: self.log_start_offset,
            ..RetentionReport::default()
        };
        if !self.config.cleanup_policy.delete {
            return Ok(report);
        }
        let mut doomed = 0usize;
        let mut size_bytes = self.size_bytes() as i64;
        let active_base = self.active().base_offset;
        for segment in self.segments.values() {
            // Compaction can leave closed segments empty; those go like any other.
            let empty_active = segment.base_offset == active_base && segment.is_empty();
            if empty_active || segment.next_offset > self.high_watermark {
                break;
            }
            let expired = self.config.retention_ms >= 0
                && segment.max_timestamp_ms < now_ms.saturating_sub(self.config.retention_ms);
            let oversized = self.config.retention_bytes >= 0
                && size_bytes - segment.size_bytes as i64 >= self.config.retention_bytes;
            if !(expired || oversized) {
                break;
            }
            size_bytes -= segment.size_bytes as i64;
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(report);
        }
        if doomed == self.segments.len() {
            self.roll()?;
        }
        let new_start = *self
            .segments
            .keys()
            .nth(doomed)
            .expect("a segment remains after the doomed ones");
        self.advance_log_start(new_start)?;
        let (count, bytes) = self.delete_segments_below_log_start()?;
        report.deleted_segments = count;
        report.deleted_bytes = bytes;
        report.log_start_offset = self.log_start_offset;
        tracing::info!(dir = %self.dir.display(), count, bytes, log_start_offset = self.log_start_offset, "retention deleted segments");
        Ok(report)
    }

    fn advance_log_start(&mut self, offset: i64) -> Result<(), StorageError> {
        assert!(offset <= self.log_end_offset(), "log start beyond log end");
        if offset <= self.log_start_offset {
            return Ok(());
        }
        checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_FILE), offset)?;
        self.log_start_offset = offset;
        self.high_watermark = self.high_watermark.max(offset);
        self.cleaner_offset = self.cleaner_offset.max(offset);
        if self.epoch_cache.truncate_from_start(offset) {
            self.epoch_cache.persist()?;
        }
        Ok(())
    }

    /// Deletes segments whose successor starts at or below the log start offset. The active
    /// segment is never deleted here.
    fn delete_segments_below_log_start(&mut self) -> Result<(usize, u64), StorageError> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut count = 0;
        let mut bytes = 0;
        for pair in bases.windows(2) {
            if pair[1] > self.log_start_offset {
                break;
            }
            let segment = self.segments.remove(&pair[0]).expect("listed above");
            segment.delete_files()?;
            count += 1;
            bytes += segment.size_bytes;
        }
        Ok((count, bytes))
    }
}
