//! Opening a log: crash recovery.
//!
//! After a clean shutdown (the `clean-shutdown` marker exists) indexes are trusted when they
//! pass their checks, and only the active segment's batches after its last index entry are
//! walked. After a crash every segment from the one holding the recovery point onward is read
//! in full with CRC checks and its indexes rebuilt. In both cases:
//! - a torn, corrupt or out-of-order tail is cut off, and every later segment is deleted (the
//!   log must stay contiguous);
//! - missing or damaged indexes are rebuilt;
//! - stray files of an interrupted compaction or checkpoint write (`*.cleaned`, `*.tmp`) are
//!   removed;
//! - with [`LogOpenOptions::high_watermark_from_checkpoint`], the high watermark is the
//!   checkpointed one clamped to the recovered log (else the log end offset);
//! - the leader epoch cache is truncated to the log end (or rebuilt from batch headers if its
//!   file is missing or corrupt), and producer state is loaded from the newest usable snapshot
//!   and replayed from batch headers up to the log end.
//!
//! Every repair is logged with `tracing::warn!` and listed in the [`RecoveryReport`].

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::checkpoint;
use crate::config::{LogConfig, LogOpenOptions};
use crate::epoch_checkpoint::{self, LeaderEpochCache};
use crate::error::{IoContext, StorageError};
use crate::log::{
    remove_if_exists, Log, RecoveryReport, CLEANER_OFFSET_FILE, CLEAN_SHUTDOWN_FILE, LEGACY_HIGH_WATERMARK_FILE,
    LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE,
};
use crate::producer_state::{self, ProducerState};
use crate::segment::{self, Segment, CLEANED_SUFFIX, LOG_SUFFIX};
use crate::txn_index::{AbortedTxn, TXN_INDEX_SUFFIX};

/// A recorded recovery point above the log end (a crash took an unflushed tail after the last
/// checkpoint, or the entry is a deleted namesake's) would let later appends be trusted without
/// their fsync. The log's own file, whose lower value recovery takes, holds the log end until
/// the broker records a new one. Returns whether it wrote the file.
fn hold_recovery_point(dir: &Path, recorded: Option<i64>, log_end_offset: i64) -> Result<bool, StorageError> {
    if recorded.is_some_and(|recorded| recorded > log_end_offset) {
        checkpoint::write_offset(&dir.join(RECOVERY_POINT_FILE), log_end_offset)?;
        return Ok(true);
    }
    Ok(false)
}

impl Log {
    /// Opens (creating if absent) the log in `dir`, running crash recovery. `now_ms` is not
    /// read yet; it is part of the signature so time-based repairs stay injectable.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<(Log, RecoveryReport), StorageError> {
        Log::open_with(dir, config, LogOpenOptions::default(), now_ms)
    }

    /// [`Log::open`] with options; see [`LogOpenOptions`].
    pub fn open_with(
        dir: &Path,
        config: LogConfig,
        options: LogOpenOptions,
        now_ms: i64,
    ) -> Result<(Log, RecoveryReport), StorageError> {
        let _ = now_ms;
        let created = match fs::create_dir(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).at(dir)?;
                true
            }
            Err(e) => return Err(StorageError::io(dir, e)),
        };
        if created {
            return Log::create(dir, config, options);
        }
        let mut report = RecoveryReport::default();
        let mut repair = |report: &mut RecoveryReport, message: String| {
            tracing::warn!(dir = %dir.display(), "{message}");
            report.repairs.push(message);
        };

        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for entry in fs::read_dir(dir).at(dir)? {
            let path = entry.at(dir)?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".tmp") || name.ends_with(&format!(".{CLEANED_SUFFIX}")) {
                remove_if_exists(&path)?;
                repair(&mut report, format!("removed stray file {name}"));
                continue;
            }
            let Some((stem, suffix)) = name.split_once('.') else {
                continue;
            };
            match (segment::parse_offset(stem), suffix) {
                (Some(base), LOG_SUFFIX) => bases.push(base),
                (Some(base), segment::INDEX_SUFFIX | segment::TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX) => {
                    index_files.push((base, path))
                }
                _ => {}
            }
        }
        bases.sort_unstable();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                remove_if_exists(&path)?;
                repair(&mut report, format!("removed index without a log: {}", path.display()));
            }
        }

        let clean_path = dir.join(CLEAN_SHUTDOWN_FILE);
        report.clean_shutdown = matches!(checkpoint::read_offset(&clean_path), Ok(Some(_)));
        if clean_path.exists() {
            // From here on a crash must be treated as one.
            remove_if_exists(&clean_path)?;
            checkpoint::sync_dir(dir)?;
        }
        // The lower of the directory's checkpoint and the log's own file (written by a
        // truncation, or by earlier versions); without either, every segment is scanned.
        let own_recovery_point = read_checkpoint(dir, RECOVERY_POINT_FILE, &mut report, &mut repair);
        let recovery_point = match (options.recovery_point, own_recovery_point) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(i64::MIN),
        };
        let log_start_checkpoint = read_checkpoint(dir, LOG_START_OFFSET_FILE, &mut report, &mut repair);
        let cleaner_checkpoint = read_checkpoint(dir, CLEANER_OFFSET_FILE, &mut report, &mut repair);
        let high_watermark_checkpoint = match options.high_watermark_from_checkpoint {
            true => options
                .high_watermark
                .or_else(|| read_checkpoint(dir, LEGACY_HIGH_WATERMARK_FILE, &mut report, &mut repair)),
            false => None,
        };

        let index_config = config.index_config();
        let mut segments = BTreeMap::new();
        // A new log: nothing in it needs to survive a crash (an empty log is made again just
        // as it was), so opening it costs no fsync. A broker taking on a thousand new
        // partitions at once would otherwise spend seconds syncing empty files.
        let fresh = bases.is_empty() && log_start_checkpoint.is_none();
        if bases.is_empty() {
            let base = log_start_checkpoint.unwrap_or(0).max(0);
            let _ = segments.insert(base, Segment::create(dir, base, index_config, "")?);
        }
        let scan_from = if report.clean_shutdown {
            *bases.last().unwrap_or(&0)
        } else {
            bases
                .iter()
                .copied()
                .rfind(|b| *b <= recovery_point)
                .unwrap_or(i64::MIN)
        };
        let mut scanned_epochs = Vec::new();
        let mut cut = false;
        let mut previous_end = i64::MIN;
        for (i, base) in bases.iter().copied().enumerate() {
            if cut {
                for suffix in [
                    LOG_SUFFIX,
                    segment::INDEX_SUFFIX,
                    segment::TIME_INDEX_SUFFIX,
                    TXN_INDEX_SUFFIX,
                ] {
                    remove_if_exists(&dir.join(segment::file_name(base, suffix)))?;
                }
                report.deleted_segments += 1;
                repair(&mut report, format!("deleted segment {base} after a truncated one"));
                continue;
            }
            let is_last = i + 1 == bases.len();
            let full_scan = !report.clean_shutdown && base >= scan_from;
            let (segment, outcome, notes) = Segment::open(dir, base, index_config, full_scan, &mut |h| {
                // Only epoch changes are kept: memory does not grow with the segment.
                let newer = scanned_epochs.last().is_none_or(|(e, _)| h.partition_leader_epoch > *e);
                if full_scan && newer {
                    scanned_epochs.push((h.partition_leader_epoch, h.base_offset));
                }
            })?;
            if full_scan {
                report.segments_scanned += 1;
            }
            for note in notes {
                repair(&mut report, note);
            }
            if base < previous_end {
                // Overlapping segments: keep the earlier one and what precedes it.
                segment.delete_files()?;
                report.deleted_segments += 1;
                repair(
                    &mut report,
                    format!("deleted segment {base} overlapping offsets below {previous_end}"),
                );
                cut = true;
                continue;
            }
            if outcome.truncated_bytes > 0 {
                report.truncated_bytes += outcome.truncated_bytes;
                repair(
                    &mut report,
                    format!(
                        "truncated {} bytes of {}: {}",
                        outcome.truncated_bytes,
                        segment.log_path().display(),
                        outcome.reason.as_deref().unwrap_or("damaged tail")
                    ),
                );
                cut = !is_last;
            }
            previous_end = segment.next_offset;
            let _ = segments.insert(base, segment);
        }
        report.segments = segments.len();

        let (epoch_cache, epochs_ok) = LeaderEpochCache::load(dir);
        let first_base = *segments.keys().next().expect("at least one segment");
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: first_base,
            high_watermark: 0,
            recovery_point: 0,
            producer_state: ProducerState::default(),
            epoch_cache,
            unflushed_messages: 0,
            poisoned: false,
            cleaner_offset: 0,
            dir_changes: 0,
            dir_synced: 0,
        };
        let log_end_offset = log.log_end_offset();
        log.log_start_offset = log_start_checkpoint
            .unwrap_or(first_base)
            .clamp(first_base, log_end_offset);
        log.high_watermark = if options.high_watermark_from_checkpoint {
            // No checkpoint: nothing is known to be committed (Kafka starts at 0, clamped).
            let checkpointed = high_watermark_checkpoint.unwrap_or(log.log_start_offset);
            if checkpointed > log_end_offset {
                repair(
                    &mut report,
                    format!("high watermark checkpoint {checkpointed} is above the log end offset {log_end_offset}: clamped"),
                );
            }
            checkpointed.clamp(log.log_start_offset, log_end_offset)
        } else {
            log_end_offset
        };
        log.cleaner_offset = cleaner_checkpoint
            .unwrap_or(log.log_start_offset)
            .clamp(log.log_start_offset, log_end_offset);

        // Leader epochs.
        let mut epochs_changed = log.epoch_cache.truncate_from_end(log_end_offset);
        if !epochs_ok && log_end_offset > log.log_start_offset {
            // A missing file is no damage: a log's epochs reach it with its first flush.
            if dir.join(epoch_checkpoint::FILE_NAME).exists() {
                repair(
                    &mut report,
                    "rebuilt leader epoch checkpoint from batch headers".to_string(),
                );
            }
            log.epoch_cache.clear();
            let mut all = Vec::new();
            log.for_each_header_from(log.log_start_offset, &mut |h| {
                if all.last().is_none_or(|(e, _)| h.partition_leader_epoch > *e) {
                    all.push((h.partition_leader_epoch, h.base_offset))
                }
            })?;
            scanned_epochs = all;
            epochs_changed = true;
        }
        for (epoch, offset) in scanned_epochs {
            // The epoch field is outside the CRC; an entry that would go backwards is damage.
            let in_order = log
                .epoch_cache
                .latest_start_offset()
                .is_none_or(|start| offset >= start);
            if in_order {
                epochs_changed |= log.epoch_cache.assign(epoch, offset);
            }
        }
        epochs_changed |= log.epoch_cache.truncate_from_start(log.log_start_offset);
        if epochs_changed || (!epochs_ok && dir.join(epoch_checkpoint::FILE_NAME).exists()) {
            log.epoch_cache.persist()?;
        }

        report.producer_snapshot_offset = log.rebuild_producer_state()?;
        if report.producer_snapshot_offset.is_none() && log.producer_state.len() > 0 {
            repair(
                &mut report,
                "rebuilt producer state from the log (no usable snapshot)".to_string(),
            );
        }

        // What recovery validated becomes the new recovery point once it is on disk.
        let scanned_from = if report.clean_shutdown {
            log.active().base_offset
        } else {
            scan_from
        };
        if !fresh {
            for segment in log.segments.range(scanned_from..).map(|(_, s)| s) {
                segment.sync()?;
            }
            checkpoint::sync_dir(dir)?;
            if log_start_checkpoint != Some(log.log_start_offset) {
                checkpoint::write_offset(&dir.join(LOG_START_OFFSET_FILE), log.log_start_offset)?;
            }
        }
        // Everything is on disk now (a fresh log holds nothing), so any recorded recovery point
        // at or below the log end is true, and the broker's next checkpoint records the log end.
        if !hold_recovery_point(dir, options.recovery_point, log_end_offset)? && own_recovery_point.is_some() {
            remove_if_exists(&dir.join(RECOVERY_POINT_FILE))?;
        }
        log.recovery_point = log_end_offset;

        report.log_start_offset = log.log_start_offset;
        report.log_end_offset = log_end_offset;
        if report.repairs.is_empty() {
            tracing::debug!(dir = %dir.display(), %report, "opened log");
        } else {
            tracing::warn!(dir = %dir.display(), %report, "recovered log");
        }
        Ok((log, report))
    }

    /// A log in a directory just created: one empty segment, nothing to read or repair, no
    /// fsync (an empty log lost to a crash is made again just as it was; its directory reaches
    /// the disk with its first flush). A broker taking on a thousand new partitions at once
    /// creates a directory and a file for each, and nothing more.
    fn create(dir: &Path, config: LogConfig, options: LogOpenOptions) -> Result<(Log, RecoveryReport), StorageError> {
        let segment = Segment::create(dir, 0, config.index_config(), "")?;
        let log = Log {
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::from([(0, segment)]),
            log_start_offset: 0,
            high_watermark: 0,
            recovery_point: 0,
            producer_state: ProducerState::default(),
            epoch_cache: LeaderEpochCache::empty(dir),
            unflushed_messages: 0,
            poisoned: false,
            cleaner_offset: 0,
            dir_changes: 1,
            dir_synced: 0,
        };
        // An entry for its name in a directory checkpoint belongs to a deleted log of that name,
        // not yet dropped from the file.
        hold_recovery_point(dir, options.recovery_point, 0)?;
        let report = RecoveryReport {
            segments: 1,
            ..RecoveryReport::default()
        };
        tracing::debug!(dir = %dir.display(), "created log");
        Ok((log, report))
    }

    /// Loads the newest snapshot at or below the log end and replays later batch headers.
    /// Returns the snapshot's offset, or `None` if it replayed the whole log.
    pub(crate) fn rebuild_producer_state(&mut self) -> Result<Option<i64>, StorageError> {
        let log_end_offset = self.log_end_offset();
        let snapshots = producer_state::list_snapshots(&self.dir)?;
        let mut loaded = None;
        for offset in snapshots.iter().rev().copied() {
            if offset > log_end_offset {
                remove_if_exists(&producer_state::snapshot_path(&self.dir, offset))?;
                continue;
            }
            match producer_state::read_snapshot(&self.dir, offset) {
                Some(state) => {
                    loaded = Some((offset, state));
                    break;
                }
                None => {
                    tracing::warn!(dir = %self.dir.display(), offset, "ignoring corrupt producer snapshot");
                    remove_if_exists(&producer_state::snapshot_path(&self.dir, offset))?;
                }
            }
        }
        let snapshot_offset = loaded.as_ref().map(|(o, _)| *o);
        let (from, mut state) = match loaded {
            Some((offset, state)) => (offset, state),
            None => (self.log_start_offset, ProducerState::default()),
        };
        // Aborts from `from` on are re-derived below, so entries there are dropped first
        // (entries past the log end point at data a crash took).
        for segment in self.segments.values_mut() {
            segment.aborted.truncate_from(from)?;
        }
        let mut aborted = Vec::new();
        if from < log_end_offset {
            self.for_each_batch_from(from, &mut |segment, position, h| {
                if h.base_offset < from {
                    return Ok(());
                }
                if let Some(first_offset) = state.update(h) {
                    let batch = segment.read_batch_at(position, h)?;
                    if strom_record::control::parse_marker(&batch) == Some(strom_record::control::Marker::Abort) {
                        aborted.push(AbortedTxn {
                            producer_id: h.producer_id,
                            first_offset,
                            last_offset: h.base_offset,
                        });
                    }
                }
                Ok(())
            })?;
        }
        for entry in aborted {
            if let Some((_, segment)) = self.segments.range_mut(..=entry.last_offset).next_back() {
                segment.aborted.ensure(entry)?;
            }
        }
        self.producer_state = state;
        Ok(snapshot_offset)
    }
}

fn read_checkpoint(
    dir: &Path,
    name: &str,
    report: &mut RecoveryReport,
    repair: &mut impl FnMut(&mut RecoveryReport, String),
) -> Option<i64> {
    match checkpoint::read_offset(&dir.join(name)) {
        Ok(found) => found,
        Err(e) => {
            repair(report, format!("ignored damaged checkpoint: {e}"));
            None
        }
    }
}
