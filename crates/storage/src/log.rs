//! One partition's log: the ordered segments, the offsets that bound them, and the append and
//! read paths. Recovery (`recovery`), retention (`retention`) and compaction
//! (`compaction`) add their own `impl Log` blocks.
//!
//! A `Log` is not internally synchronised: the server holds it in a `Mutex`. Reads return file
//! handles and positions, so the bytes can be copied (or sent) after the lock is released.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strom_record::control::{encode_marker, Marker};
use strom_record::header::{set_base_offset, set_log_append_time, set_partition_leader_epoch};
use strom_record::{BatchHeader, TimestampType, ValidatedBatches, HEADER_LEN};

use crate::checkpoint;
use crate::config::LogConfig;
use crate::epoch_checkpoint::LeaderEpochCache;
use crate::error::{AppendError, IoContext, ReadError, StorageError};
use crate::producer_state::{ProducerState, SequenceCheck};
use crate::segment::Segment;
use crate::txn_index::AbortedTxn;

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point";
pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
pub(crate) const CLEANER_OFFSET_FILE: &str = "cleaner-offset";
/// Where earlier versions kept a replicated log's high watermark, read when the broker's
/// checkpoint has no entry for the log.
pub(crate) const LEGACY_HIGH_WATERMARK_FILE: &str = "high-watermark";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker timestamp written into the batches, or -1 for CreateTime topics.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log; nothing was written.
    pub duplicate: bool,
}

/// A byte range of a segment file. The handle stays valid even if the segment is deleted or
/// replaced after the read returns.
#[derive(Debug, Clone)]
pub struct FileChunk {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

/// Whole batches, as file ranges in log order.
#[derive(Debug, Clone, Default)]
pub struct ReadSlice {
    pub chunks: Vec<FileChunk>,
    pub total_len: usize,
}

impl ReadSlice {
    /// Copies the chunks into one buffer with positioned reads (one allocation).
    pub fn read_to_bytes(&self) -> io::Result<Bytes> {
        let mut buf = vec![0u8; self.total_len];
        let mut at = 0;
        for chunk in &self.chunks {
            chunk.file.read_exact_at(&mut buf[at..at + chunk.len], chunk.position)?;
            at += chunk.len;
        }
        debug_assert_eq!(at, self.total_len);
        Ok(Bytes::from(buf))
    }

    pub fn is_empty(&self) -> bool {
        self.total_len == 0
    }
}

/// An answer to ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

/// What opening a log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub clean_shutdown: bool,
    pub segments: usize,
    /// Segments whose batches were all read and CRC-checked.
    pub segments_scanned: usize,
    pub truncated_bytes: u64,
    pub deleted_segments: usize,
    /// Snapshot offset the producer state was loaded from, if any.
    pub producer_snapshot_offset: Option<i64>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// One line per repair.
    pub repairs: Vec<String>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} shutdown, {} segments ({} scanned), offsets [{}, {}), {} bytes truncated, {} segments deleted, producer state from {}",
            if self.clean_shutdown { "clean" } else { "unclean" },
            self.segments,
            self.segments_scanned,
            self.log_start_offset,
            self.log_end_offset,
            self.truncated_bytes,
            self.deleted_segments,
            match self.producer_snapshot_offset {
                Some(o) => format!("snapshot at {o}"),
                None => "log replay".to_string(),
            }
        )?;
        for repair in &self.repairs {
            write!(f, "; {repair}")?;
        }
        Ok(())
    }
}

/// One partition's log. See the crate docs for the offset diagram.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Keyed by base offset; never empty: the last one is the active segment.
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    pub(crate) high_watermark: i64,
    /// Everything below this offset has been fsynced. The broker records it on disk in its log
    /// directory's [`crate::dir_checkpoint::RECOVERY_POINTS`]; a truncation that lowers it
    /// also writes it in the log's own directory at once (see [`Log::truncate_to`]).
    pub(crate) recovery_point: i64,
    /// Counts changes to the log's directory (a file created or renamed) that a flush must
    /// make durable with an fsync of the directory; `dir_synced` is the count the last such
    /// fsync covered. Changes already synced where they happen (checkpoint files written with
    /// [`checkpoint::write_atomically`]) are not counted.
    pub(crate) dir_changes: u64,
    pub(crate) dir_synced: u64,
    pub(crate) producer_state: ProducerState,
    pub(crate) epoch_cache: LeaderEpochCache,
    pub(crate) unflushed_messages: u64,
    /// Set by a failed fsync; see [`StorageError::Poisoned`].
    pub(crate) poisoned: bool,
    /// Compaction's progress: the first offset not yet cleaned.
    pub(crate) cleaner_offset: i64,
}

impl Log {
    pub(crate) fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has a segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// After a plain open this equals the log end offset: a single node acknowledges only what
    /// it has written, so everything in the log is committed. Opened with
    /// [`crate::LogOpenOptions::high_watermark_from_checkpoint`] it starts at the last
    /// checkpointed value (see [`crate::dir_checkpoint::HIGH_WATERMARKS`]).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn set_high_watermark(&mut self, offset: i64) {
        self.high_watermark = offset.clamp(self.log_start_offset, self.log_end_offset());
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Takes effect for later appends, rolls, retention and compaction. Index sizing changes
    /// apply to segments created from now on.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub(crate) fn check_writable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned { path: self.dir.clone() });
        }
        Ok(())
    }

    pub(crate) fn poison(&mut self, error: &StorageError) {
        tracing::error!(dir = %self.dir.display(), %error, "fsync failed: log refuses further writes");
        self.poisoned = true;
    }

    /// Appends validated batches at the log end. See the crate docs for what is patched.
    pub fn append(
        &mut self,
        batches: &ValidatedBatches,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_checked(batches, leader_epoch, now_ms, true)
    }

    /// Appends batches a coordinator wrote on a producer's behalf (transactional offset
    /// commits): they carry the producer's id and epoch but no sequence, so only the epoch is
    /// checked, and they open a transaction here like the producer's own writes.
    pub fn append_for_producer(
        &mut self,
        batches: &ValidatedBatches,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_checked(batches, leader_epoch, now_ms, false)
    }

    fn append_checked(
        &mut self,
        batches: &ValidatedBatches,
        leader_epoch: i32,
        now_ms: i64,
        check_sequence: bool,
    ) -> Result<AppendOutcome, AppendError> {
        self.check_writable()?;
        let headers = batches.batches();
        assert!(!headers.is_empty(), "validated batches are never empty");
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        if let Some((_, idempotent)) = headers.iter().find(|(_, h)| h.has_producer_id()) {
            assert_eq!(headers.len(), 1, "validation allows one idempotent batch per append");
            if !check_sequence {
                self.producer_state
                    .check_epoch(idempotent.producer_id, idempotent.producer_epoch)?;
            } else if let SequenceCheck::Duplicate(original) = self.producer_state.check(idempotent)? {
                return Ok(AppendOutcome {
                    base_offset: original.first_offset,
                    last_offset: original.last_offset,
                    log_append_time: if log_append_time { original.timestamp_ms } else { -1 },
                    log_start_offset: self.log_start_offset,
                    duplicate: true,
                });
            }
        }
        self.roll_if_needed(batches.len_bytes() as u64, batches.offset_count(), now_ms)?;
        let base_offset = self.log_end_offset();
        // A new epoch reaches the checkpoint with the next flush (recovery finds it in the
        // batches until then).
        let _ = self.epoch_cache.assign_deferred(leader_epoch, base_offset);
        let bytes = batches.bytes();
        let mut written = Vec::with_capacity(headers.len());
        let mut next_offset = base_offset;
        for (position, received) in headers {
            let batch = &bytes[*position..*position + received.total_len()];
            let result = if log_append_time {
                // The CRC covers the timestamp, so this path copies the batch.
                let mut copy = batch.to_vec();
                set_base_offset(&mut copy, next_offset);
                set_partition_leader_epoch(&mut copy, leader_epoch);
                set_log_append_time(&mut copy, now_ms);
                let header = BatchHeader::parse(&copy).expect("a patched valid batch parses");
                self.active_mut().append_whole(&copy, &header).map(|()| header)
            } else {
                let mut head = [0u8; HEADER_LEN];
                head.copy_from_slice(&batch[..HEADER_LEN]);
                set_base_offset(&mut head, next_offset);
                set_partition_leader_epoch(&mut head, leader_epoch);
                let header = BatchHeader::parse(&head).expect("a patched valid header parses");
                self.active_mut()
                    .append(&head, &batch[HEADER_LEN..], &header)
                    .map(|()| header)
            };
            match result {
                Ok(header) => {
                    next_offset = header.next_offset();
                    written.push(header);
                }
                Err(e) => {
                    // Undo earlier batches of this request so it is all or nothing.
                    if let Err(undo) = self.active_mut().truncate_to(base_offset) {
                        self.poison(&undo);
                    }
                    return Err(e.into());
                }
            }
        }
        for header in &written {
            let _ = self.producer_state.update(header);
        }
        if self.active().size_bytes == batches.len_bytes() as u64 {
            // First append to this segment: a producer's old timestamps must not make every
            // append roll, so segment.ms counts from the broker's clock.
            self.active_mut().roll_start_ms = Some(now_ms);
        }
        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(batches.record_count().max(0) as u64);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(AppendOutcome {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Writes a transaction marker for `producer_id` at the log end, ending its open
    /// transaction here (if any). An abort records the transaction in the active segment's
    /// aborted-transaction index. A marker older than the producer's epoch is refused; a newer
    /// one fences the producer's older epoch.
    pub fn append_marker(
        &mut self,
        marker: Marker,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        self.check_writable()?;
        self.producer_state.check_epoch(producer_id, producer_epoch)?;
        let mut batch = encode_marker(marker, producer_id, producer_epoch, coordinator_epoch, now_ms)
            .map_err(|e| StorageError::corrupt(&self.dir, "transaction marker", e.to_string()))?
            .to_vec();
        self.roll_if_needed(batch.len() as u64, 1, now_ms)?;
        let offset = self.log_end_offset();
        // A new epoch reaches the checkpoint with the next flush (recovery finds it in the
        // batches until then).
        let _ = self.epoch_cache.assign_deferred(leader_epoch, offset);
        set_base_offset(&mut batch, offset);
        set_partition_leader_epoch(&mut batch, leader_epoch);
        let header = BatchHeader::parse(&batch).expect("an encoded marker parses");
        // The marker, then (for an abort) its index entry, and only then the producer state
        // that ends the transaction and lets the last stable offset pass its records. Either
        // write failing (a full disk) undoes the marker: the transaction stays open, so
        // read_committed consumers never see its records without the index entry that tells
        // them they were aborted, and the coordinator writes the marker again later.
        let aborted = match (marker, self.producer_state.open_transaction(producer_id)) {
            (Marker::Abort, Some((_, first_offset))) => Some(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: offset,
            }),
            _ => None,
        };
        let written = self
            .active_mut()
            .append_whole(&batch, &header)
            .and_then(|()| aborted.map_or(Ok(()), |entry| self.active_mut().aborted.append(entry)));
        if let Err(e) = written {
            if let Err(undo) = self.active_mut().truncate_to(offset) {
                self.poison(&undo);
            }
            return Err(e.into());
        }
        if self.active().size_bytes == batch.len() as u64 {
            self.active_mut().roll_start_ms = Some(now_ms);
        }
        self.producer_state.update(&header);
        self.unflushed_messages = self.unflushed_messages.saturating_add(1);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(AppendOutcome {
            base_offset: offset,
            last_offset: offset,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark if it comes first. A read_committed consumer reads only below it. Retention
    /// may have deleted an open transaction's first records; the LSO never falls below the
    /// log start offset.
    pub fn last_stable_offset(&self) -> i64 {
        self.producer_state
            .first_unstable_offset()
            .map_or(self.high_watermark, |first| first.min(self.high_watermark))
            .max(self.log_start_offset)
    }

    /// The producer's epoch and the first offset of its open transaction here, if one is open.
    pub fn open_transaction(&self, producer_id: i64) -> Option<(i16, i64)> {
        self.producer_state.open_transaction(producer_id)
    }

    /// Every producer this partition remembers (DescribeProducers).
    pub fn producers(&self) -> Vec<crate::ProducerDescription> {
        self.producer_state.describe()
    }

    /// Every open transaction here: (producer id, first offset), oldest first.
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.producer_state.open_transactions()
    }

    /// Aborted transactions a read of `[from, upper)` must tell a read_committed consumer
    /// about: those whose marker is at or after `from` and whose first offset is below `upper`.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let first_base = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        self.segments
            .range(first_base..)
            .flat_map(|(_, s)| s.aborted.entries())
            .filter(|e| e.last_offset >= from && e.first_offset < upper)
            .copied()
            .collect()
    }

    fn roll_if_needed(&mut self, bytes: u64, offset_count: i64, now_ms: i64) -> Result<(), StorageError> {
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size_bytes + bytes > self.config.segment_bytes_max();
        let old = active
            .roll_start_ms
            .is_some_and(|first| now_ms.saturating_sub(first) > self.config.segment_ms);
        let offsets_overflow = active.next_offset + offset_count - 1 - active.base_offset > i64::from(u32::MAX);
        if full || old || offsets_overflow || active.indexes_full() {
            self.roll()?;
        }
        Ok(())
    }

    /// Rolls by `segment.ms` even when nothing is appended (the server calls this on a timer).
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        let active = self.active();
        let old = active
            .roll_start_ms
            .is_some_and(|first| now_ms.saturating_sub(first) > self.config.segment_ms);
        if old && !active.is_empty() {
            self.roll()?;
        }
        Ok(())
    }

    /// Starts a new empty active segment at the log end offset, snapshotting producer state
    /// there so recovery replays at most one segment. No-op if the active segment is empty.
    pub(crate) fn roll(&mut self) -> Result<(), StorageError> {
        self.roll_at(self.log_end_offset())
    }

    /// [`Log::roll`] with the new segment starting at `base_offset`, at or above the log end
    /// offset: a follower starts it at the next batch's base offset, which a compacted leader
    /// may have placed above the log end.
    pub(crate) fn roll_at(&mut self, base_offset: i64) -> Result<(), StorageError> {
        if self.active().is_empty() {
            return Ok(());
        }
        assert!(
            base_offset >= self.log_end_offset(),
            "a new segment starts at or above the log end offset"
        );
        self.producer_state.write_snapshot(&self.dir, base_offset)?;
        self.remove_old_snapshots(base_offset)?;
        let segment = Segment::create(&self.dir, base_offset, self.config.index_config(), "")?;
        let _ = self.segments.insert(base_offset, segment);
        self.dir_changed();
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolled segment");
        Ok(())
    }

    /// Keeps the newest two snapshots at or below `keep_through` (one spare in case the newest
    /// is damaged) and drops any above it.
    pub(crate) fn remove_old_snapshots(&self, keep_through: i64) -> Result<(), StorageError> {
        let snapshots = crate::producer_state::list_snapshots(&self.dir)?;
        let usable: Vec<i64> = snapshots.iter().copied().filter(|o| *o <= keep_through).collect();
        let keep_from = usable.len().saturating_sub(2);
        for (i, offset) in usable.iter().enumerate() {
            if i < keep_from {
                remove_if_exists(&crate::producer_state::snapshot_path(&self.dir, *offset))?;
            }
        }
        for offset in snapshots.iter().filter(|o| **o > keep_through) {
            remove_if_exists(&crate::producer_state::snapshot_path(&self.dir, *offset))?;
        }
        Ok(())
    }

    /// Reads whole batches from the one containing `start_offset`, at most `max_bytes` (but
    /// the first batch regardless if `min_one_batch`, KIP-74), stopping before any batch that
    /// reaches `max_offset`. May span segments.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadSlice, ReadError> {
        let log_end_offset = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > log_end_offset {
            return Err(ReadError::OffsetOutOfRange {
                requested: start_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let limit = max_offset.min(log_end_offset);
        let mut slice = ReadSlice::default();
        if start_offset >= limit {
            return Ok(slice);
        }
        let first_base = self
            .segments
            .range(..=start_offset)
            .next_back()
            .map_or(start_offset, |(base, _)| *base);
        'segments: for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            let Some((start_position, mut header)) = segment.find_batch(start_offset)? else {
                continue;
            };
            let mut position = start_position;
            let mut done = false;
            loop {
                if header.last_offset() >= limit {
                    done = true;
                    break;
                }
                let len = header.total_len();
                let first = slice.total_len == 0;
                if slice.total_len + len > max_bytes && !(first && min_one_batch) {
                    done = true;
                    break;
                }
                slice.total_len += len;
                position += len as u64;
                match segment.read_header_at(position)? {
                    Some(next) => header = next,
                    None => break,
                }
            }
            if position > start_position {
                slice.chunks.push(FileChunk {
                    file: Arc::clone(&segment.file),
                    position: start_position,
                    len: (position - start_position) as usize,
                });
            }
            if done {
                break 'segments;
            }
        }
        Ok(slice)
    }

    /// The first batch whose max timestamp is at or after `timestamp_ms`, narrowed to the first
    /// record at or after it when the batch can be decoded.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<TimestampOffset>, StorageError> {
        for segment in self.segments.values() {
            if segment.max_timestamp_ms < timestamp_ms || segment.next_offset <= self.log_start_offset {
                continue;
            }
            let mut position = segment.time_search_start(timestamp_ms)?;
            while let Some(header) = segment.read_header_at(position)? {
                if header.max_timestamp >= timestamp_ms && header.last_offset() >= self.log_start_offset {
                    return Ok(Some(
                        self.locate_record(segment, position, &header, |t| t >= timestamp_ms)?,
                    ));
                }
                position += header.total_len() as u64;
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp (the earliest one on ties).
    pub fn max_timestamp(&self) -> Option<TimestampOffset> {
        let segment =
            self.segments
                .values()
                .filter(|s| !s.is_empty())
                .fold(None::<&Segment>, |best, s| match best {
                    Some(b) if b.max_timestamp_ms >= s.max_timestamp_ms => Some(b),
                    _ => Some(s),
                })?;
        let max = segment.max_timestamp_ms;
        let found = segment
            .find_batch(segment.offset_of_max_timestamp)
            .ok()
            .flatten()
            .and_then(|(position, header)| self.locate_record(segment, position, &header, |t| t >= max).ok());
        Some(found.unwrap_or(TimestampOffset {
            offset: segment.offset_of_max_timestamp,
            timestamp: max,
            leader_epoch: -1,
        }))
    }

    /// Finds the first record of a batch whose timestamp passes `wanted`; falls back to the
    /// batch's base offset if the batch cannot be decoded.
    fn locate_record(
        &self,
        segment: &Segment,
        position: u64,
        header: &BatchHeader,
        wanted: impl Fn(i64) -> bool,
    ) -> Result<TimestampOffset, StorageError> {
        let fallback = TimestampOffset {
            offset: header.base_offset.max(self.log_start_offset),
            timestamp: header.max_timestamp,
            leader_epoch: header.partition_leader_epoch,
        };
        if header.timestamp_type() == TimestampType::LogAppendTime {
            return Ok(fallback);
        }
        let batch = segment.read_batch_at(position, header)?;
        let Ok(records) = strom_record::records::decode_records(&batch) else {
            return Ok(fallback);
        };
        Ok(records
            .iter()
            .find(|r| r.offset >= self.log_start_offset && wanted(r.timestamp))
            .map_or(fallback, |r| TimestampOffset {
                offset: r.offset,
                timestamp: r.timestamp,
                leader_epoch: header.partition_leader_epoch,
            }))
    }

    /// OffsetForLeaderEpoch: (largest epoch <= `leader_epoch`, its end offset); `None` if
    /// undefined (no epochs, or `leader_epoch` is newer than any known).
    pub fn end_offset_for_epoch(&self, leader_epoch: i32) -> Option<(i32, i64)> {
        self.epoch_cache.end_offset_for(leader_epoch, self.log_end_offset())
    }

    /// Forgets idempotent producers that have not written for `expiration_ms`
    /// (`producer.id.expiration.ms`); a later batch from one is treated as from a new producer.
    /// Returns how many were forgotten.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producer_state.remove_expired(now_ms, expiration_ms)
    }

    /// Flushes, snapshots producer state at the log end, and marks a clean shutdown so the next
    /// open trusts the indexes instead of scanning. (The high watermark is the broker's to
    /// checkpoint: [`crate::dir_checkpoint::HIGH_WATERMARKS`].)
    pub fn close(mut self) -> Result<(), StorageError> {
        self.flush()?;
        let log_end_offset = self.log_end_offset();
        self.producer_state.write_snapshot(&self.dir, log_end_offset)?;
        self.remove_old_snapshots(log_end_offset)?;
        checkpoint::write_offset(&self.dir.join(CLEAN_SHUTDOWN_FILE), log_end_offset)
    }

    /// Removes the log's directory (DeleteTopics). Readers holding chunks keep their files.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).at(&dir)
    }

    /// Removes everything at and after `offset` (replication's truncation). An offset inside a
    /// batch removes the whole batch, so the log end offset becomes that batch's base offset.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.log_start_offset {
            return Err(StorageError::OffsetBelowLogStart {
                path: self.dir.clone(),
                offset,
                log_start_offset: self.log_start_offset,
            });
        }
        let first_base = *self.segments.keys().next().expect("a log always has a segment");
        let doomed: Vec<i64> = self
            .segments
            .range(offset..)
            .map(|(b, _)| *b)
            .filter(|b| *b != first_base)
            .collect();
        let removed_segments = !doomed.is_empty();
        for base in doomed {
            let segment = self.segments.remove(&base).expect("listed above");
            segment.delete_files()?;
        }
        let _ = self.active_mut().truncate_to(offset)?;
        let log_end_offset = self.log_end_offset();
        self.high_watermark = self.high_watermark.min(log_end_offset);
        self.cleaner_offset = self.cleaner_offset.min(log_end_offset);
        if self.recovery_point > log_end_offset {
            // The directory's checkpoint may hold the old, higher recovery point until the
            // broker writes it again; recovery would then trust segments that appends after
            // this truncation fill without an fsync. This file, which recovery reads too and
            // whose lower value wins, closes that window.
            self.recovery_point = log_end_offset;
            checkpoint::write_offset(&self.dir.join(RECOVERY_POINT_FILE), log_end_offset)?;
        } else if removed_segments {
            // Removed segments must not come back after a crash.
            checkpoint::sync_dir(&self.dir)?;
        }
        if self.epoch_cache.truncate_from_end(log_end_offset) {
            self.epoch_cache.persist()?;
        }
        self.remove_old_snapshots(log_end_offset)?;
        let _ = self.rebuild_producer_state()?;
        Ok(())
    }

    /// Calls `f` with each batch header from the batch containing `offset` to the log end.
    pub(crate) fn for_each_header_from(
        &self,
        offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), StorageError> {
        self.for_each_batch_from(offset, &mut |_, _, header| {
            f(header);
            Ok(())
        })
    }

    /// Calls `f` with each batch's segment, position and header, from the batch containing
    /// `offset` to the log end.
    pub(crate) fn for_each_batch_from(
        &self,
        offset: i64,
        f: &mut dyn FnMut(&Segment, u64, &BatchHeader) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let first_base = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            let Some((mut position, _)) = segment.find_batch(offset)? else {
                continue;
            };
            while let Some(header) = segment.read_header_at(position)? {
                f(segment, position, &header)?;
                position += header.total_len() as u64;
            }
        }
        Ok(())
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}
