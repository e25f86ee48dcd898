//! Flushing a log: fsyncs of its dirty segments (and of its directory when files were created
//! or renamed there), inline ([`Log::flush`]) or prepared under the log's lock and run without
//! it ([`Log::flush_job`], [`FlushJob::run`], [`Log::complete_flush`]). A flush moves the
//! recovery point in memory; the broker records it for the whole log directory
//! ([`crate::dir_checkpoint::RECOVERY_POINTS`]).

use std::fs::File;
use std::path::PathBuf;

use crate::checkpoint;
use crate::error::{IoContext, StorageError};
use crate::log::Log;

/// An fsync of a log's dirty files, prepared by [`Log::flush_job`].
pub struct FlushJob {
    files: Vec<(PathBuf, File)>,
    dir: PathBuf,
    /// The log's directory changes to make durable too (see [`Log::dir_changes`]), if any.
    dir_changes: Option<u64>,
    target_offset: i64,
    messages: u64,
}

impl FlushJob {
    /// Syncs the files, and the directory where files were created or renamed in it. The new
    /// recovery point reaches the disk with the broker's next
    /// [`crate::dir_checkpoint::RECOVERY_POINTS`].
    pub fn run(&self) -> Result<(), StorageError> {
        for (path, file) in &self.files {
            file.sync_data().at(path)?;
        }
        if self.dir_changes.is_some() {
            checkpoint::sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

impl Log {
    /// Everything below this offset is on disk (fsynced); for the broker's
    /// [`crate::dir_checkpoint::RECOVERY_POINTS`].
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Notes a file created or renamed in the log's directory that the next flush makes durable.
    pub(crate) fn dir_changed(&mut self) {
        self.dir_changes += 1;
    }

    /// Fsyncs every segment that may hold unflushed data (and the directory if files were
    /// created in it) and moves the recovery point, which the broker's next
    /// [`crate::dir_checkpoint::RECOVERY_POINTS`] records. A failure poisons the log.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.check_writable()?;
        let log_end_offset = self.log_end_offset();
        if self.recovery_point >= log_end_offset && self.unflushed_messages == 0 {
            return Ok(());
        }
        let from = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        let result = self.epoch_cache.persist_deferred().and_then(|renamed| {
            if renamed {
                self.dir_changed();
            }
            self.segments.range(from..).try_for_each(|(_, s)| s.sync())?;
            if self.dir_changes != self.dir_synced {
                checkpoint::sync_dir(&self.dir)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            self.poison(&e);
            return Err(e);
        }
        self.dir_synced = self.dir_changes;
        self.recovery_point = log_end_offset;
        self.unflushed_messages = 0;
        Ok(())
    }

    /// Prepares a flush of everything appended so far, to be run with [`FlushJob::run`] without
    /// the log's lock (an fsync can take many milliseconds, and appends should not wait for a
    /// periodic flush) and finished with [`Log::complete_flush`]. `None` when nothing is dirty.
    pub fn flush_job(&mut self) -> Result<Option<FlushJob>, StorageError> {
        self.check_writable()?;
        let target_offset = self.log_end_offset();
        if self.recovery_point >= target_offset && self.unflushed_messages == 0 {
            return Ok(None);
        }
        // The job moves the recovery point: an epoch whose entry waited for it is written first
        // (once per leadership, so here, under the lock; the job's fsync of the directory makes
        // the new file durable).
        match self.epoch_cache.persist_deferred() {
            Ok(true) => self.dir_changed(),
            Ok(false) => {}
            Err(e) => {
                self.poison(&e);
                return Err(e);
            }
        }
        let from = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        let mut files = Vec::new();
        for (_, segment) in self.segments.range(from..) {
            files.extend(segment.sync_handles()?);
        }
        Ok(Some(FlushJob {
            files,
            dir: self.dir.clone(),
            dir_changes: (self.dir_changes != self.dir_synced).then_some(self.dir_changes),
            target_offset,
            messages: self.unflushed_messages,
        }))
    }

    /// Records the outcome of a [`FlushJob`]. A failed fsync poisons the log, as in [`Log::flush`].
    pub fn complete_flush(&mut self, job: &FlushJob, result: Result<(), StorageError>) -> Result<(), StorageError> {
        if let Err(e) = result {
            self.poison(&e);
            return Err(e);
        }
        // Appends (or a truncation) may have happened while the job ran.
        self.recovery_point = self.recovery_point.max(job.target_offset.min(self.log_end_offset()));
        if let Some(changes) = job.dir_changes {
            self.dir_synced = self.dir_synced.max(changes);
        }
        self.unflushed_messages = self.unflushed_messages.saturating_sub(job.messages);
        Ok(())
    }
}
