//! Replication's side of one partition's log (Kafka's ISR design). Storage knows no network:
//! the caller fetches from the leader and hands the bytes over.
//!
//! # A follower's append
//! [`ReplicatedBatches::parse`] checks what the leader sent for integrity only (whole v2
//! batches, CRC-32C, sane header offsets, offsets and leader epochs moving forward); a follower
//! does not apply the client-facing rules (`max.message.bytes`, keys on compacted topics,
//! sequences), which the leader already applied. [`Log::append_replicated`] then checks the
//! batches against the log and stores them byte for byte: base offsets and leader epochs are
//! the leader's, never reassigned.
//!
//! ```text
//!   follower log end offset 120
//!                       |
//!   leader sends:   [120..124] e5  [125..125] e5  (gap: compacted)  [130..139] e6
//!   accepted when:  first base >= 120, each base > the previous last offset,
//!                   epochs never below the latest epoch the follower holds data of
//!   afterwards:     log end offset 140; epoch cache gains (6, 130); high watermark unchanged
//! ```
//! The first base offset may sit above the log end offset: a compacted leader drops batches
//! that lost every record, and a fetch from the follower's log end then starts at the next
//! batch that survived (Kafka accepts this too; refusing it would make the follower refetch
//! the same answer forever). A base below the log end offset is refused: the follower has to
//! truncate or fetch from its log end.
//!
//! Segments roll per batch by the usual rules, a new segment taking the batch's base offset,
//! so a leader that appended one batch per request and its followers hold identical files.
//! Producer state, open transactions, the aborted-transaction index and the leader epoch cache
//! follow the batches exactly as on the leader, so a follower that becomes leader answers with
//! the same last stable offset, producer state and aborted transactions.
//!
//! # High watermark checkpoint
//! As in Kafka, one `replication-offset-checkpoint` per log directory holds the high watermark
//! of every log in it ([`crate::dir_checkpoint::HIGH_WATERMARKS`]): the broker writes it on an
//! interval (Kafka's `replica.high.watermark.checkpoint.interval.ms`) and at shutdown, two
//! fsyncs per directory however many partitions, and gives each log its entry when opening it. A stale checkpoint is
//! safe: the high watermark only grows, and a restarted replica learns the current one from
//! its leader (or, as leader, from its followers' fetches). On open it is clamped to the log's
//! offsets, since a crash may have taken an unflushed tail.

use bytes::Bytes;
use strom_record::control::{parse_marker, Marker};
use strom_record::{BatchHeader, BatchIter, HEADER_LEN};

use crate::checkpoint;
use crate::epoch_checkpoint::LeaderEpochCache;
use crate::error::{ReplicatedAppendError, StorageError};
use crate::log::Log;
use crate::txn_index::AbortedTxn;

/// Batches as a leader sent them, checked for integrity. Only [`ReplicatedBatches::parse`]
/// makes one.
#[derive(Debug, Clone)]
pub struct ReplicatedBatches {
    bytes: Bytes,
    batches: Vec<(usize, BatchHeader)>,
    record_count: i64,
}

impl ReplicatedBatches {
    /// Checks a record set fetched from the leader: whole v2 batches (a partial batch at the
    /// end is refused; a Strom leader sends whole batches), each with a matching CRC-32C, a
    /// known codec, non-negative offsets, a record count within its offsets and a leader
    /// epoch, in increasing offset order (gaps allowed) with non-decreasing epochs. An empty
    /// set is valid (a fetch with nothing new).
    pub fn parse(bytes: Bytes) -> Result<ReplicatedBatches, ReplicatedAppendError> {
        let mut batches = Vec::new();
        let mut record_count = 0i64;
        let mut previous: Option<BatchHeader> = None;
        let mut end = 0;
        for batch in BatchIter::new(&bytes) {
            let batch = batch.map_err(|source| ReplicatedAppendError::InvalidBatch { position: end, source })?;
            end = batch.position + batch.bytes.len();
            let header = batch.header;
            let position = batch.position;
            let invalid = |reason| ReplicatedAppendError::InvalidHeader { position, reason };
            let computed = strom_record::header::compute_crc(batch.bytes);
            if computed != header.crc {
                return Err(ReplicatedAppendError::InvalidBatch {
                    position,
                    source: strom_record::BatchError::CorruptCrc {
                        stored: header.crc,
                        computed,
                    },
                });
            }
            header
                .compression()
                .map_err(|source| ReplicatedAppendError::InvalidBatch { position, source })?;
            if header.base_offset < 0 || header.last_offset_delta < 0 {
                return Err(invalid("negative base offset or last offset delta"));
            }
            if header
                .base_offset
                .checked_add(i64::from(header.last_offset_delta) + 1)
                .is_none()
            {
                return Err(invalid("last offset overflows"));
            }
            // Compaction may leave fewer records than offsets, never more.
            if header.records_count < 0 || i64::from(header.records_count) > i64::from(header.last_offset_delta) + 1 {
                return Err(invalid("record count does not fit the batch's offsets"));
            }
            if header.partition_leader_epoch < 0 {
                return Err(invalid("no partition leader epoch"));
            }
            if let Some(previous) = previous {
                if header.base_offset <= previous.last_offset() {
                    return Err(ReplicatedAppendError::OffsetsOutOfOrder {
                        previous_last_offset: previous.last_offset(),
                        base_offset: header.base_offset,
                    });
                }
                if header.partition_leader_epoch < previous.partition_leader_epoch {
                    return Err(ReplicatedAppendError::EpochRegression {
                        base_offset: header.base_offset,
                        received: header.partition_leader_epoch,
                        latest: previous.partition_leader_epoch,
                    });
                }
            }
            record_count += i64::from(header.records_count);
            previous = Some(header);
            batches.push((position, header));
        }
        Ok(ReplicatedBatches {
            bytes,
            batches,
            record_count,
        })
    }

    /// The record set exactly as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Each batch's position in [`Self::bytes`] and its header.
    pub fn batches(&self) -> &[(usize, BatchHeader)] {
        &self.batches
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn record_count(&self) -> i64 {
        self.record_count
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// What a follower's append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicatedAppend {
    /// The first batch's base offset (the old log end offset for an empty set).
    pub base_offset: i64,
    /// The last batch's last offset (`base_offset - 1` for an empty set).
    pub last_offset: i64,
    pub log_end_offset: i64,
    pub batch_count: usize,
    pub record_count: i64,
}

impl Log {
    /// Appends batches exactly as the leader sent them (a follower's append; see the module
    /// docs). Refused, with nothing written, when the first batch starts below the log end
    /// offset or a batch's leader epoch is below the latest epoch this log holds data of. An
    /// epoch this replica assigned as leader without writing anything in it
    /// ([`Log::assign_leader_epoch`]) is dropped when the new leader's batches carry an older
    /// one (as Kafka's epoch cache drops entries that would break monotonicity). The high
    /// watermark is not moved: the caller sets it from the leader's answer. A failed write
    /// undoes the whole append; a failed undo poisons the log.
    pub fn append_replicated(
        &mut self,
        batches: &ReplicatedBatches,
        now_ms: i64,
    ) -> Result<ReplicatedAppend, ReplicatedAppendError> {
        self.check_writable()?;
        let log_end_offset = self.log_end_offset();
        let (Some((_, first)), Some((_, last))) = (batches.batches.first(), batches.batches.last()) else {
            return Ok(ReplicatedAppend {
                base_offset: log_end_offset,
                last_offset: log_end_offset - 1,
                log_end_offset,
                batch_count: 0,
                record_count: 0,
            });
        };
        if first.base_offset < log_end_offset {
            return Err(ReplicatedAppendError::UnexpectedBaseOffset {
                base_offset: first.base_offset,
                log_end_offset,
            });
        }
        if let Some(latest) = self.epoch_cache.latest_epoch_below(log_end_offset) {
            if first.partition_leader_epoch < latest {
                return Err(ReplicatedAppendError::EpochRegression {
                    base_offset: first.base_offset,
                    received: first.partition_leader_epoch,
                    latest,
                });
            }
        }
        // An empty active segment cannot roll; the batch must fit its relative offsets.
        let active = self.active();
        if active.is_empty() && first.last_offset() - active.base_offset > i64::from(u32::MAX) {
            return Err(ReplicatedAppendError::OffsetGapTooLarge {
                base_offset: first.base_offset,
                segment_base_offset: active.base_offset,
            });
        }

        // Epochs first, as `append` does, so the checkpoint never lacks an epoch the data has.
        let epochs_before = self.epoch_cache.clone();
        if self
            .epoch_cache
            .latest_epoch()
            .is_some_and(|latest| latest > first.partition_leader_epoch)
        {
            // Checked above: only epochs starting at the log end (with no data) are newer.
            // Forgetting one is written at once: a file naming it would make recovery refuse
            // the older epochs it scans.
            if self.epoch_cache.truncate_from_end(log_end_offset) {
                if let Err(e) = self.epoch_cache.persist() {
                    self.undo_replicated(log_end_offset, epochs_before);
                    return Err(e.into());
                }
            }
        }
        // New epochs reach the file with the next flush: until then recovery finds them in
        // the batches themselves.
        for (_, header) in &batches.batches {
            let _ = self
                .epoch_cache
                .assign_deferred(header.partition_leader_epoch, header.base_offset);
        }

        if let Err(e) = self.write_replicated(batches, now_ms) {
            self.undo_replicated(log_end_offset, epochs_before);
            return Err(e.into());
        }

        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(batches.record_count.max(0) as u64);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(ReplicatedAppend {
            base_offset: first.base_offset,
            last_offset: last.last_offset(),
            log_end_offset: self.log_end_offset(),
            batch_count: batches.batches.len(),
            record_count: batches.record_count,
        })
    }

    /// Writes each batch untouched, rolling before it by the usual rules, and applies it to
    /// producer state (and an abort to the segment's transaction index) before the next one:
    /// a roll snapshots producer state, which must cover every batch below the new segment.
    /// A failure (a full disk) leaves the log for [`Log::undo_replicated`], which takes it
    /// back to where this append began, the transaction indexes included.
    pub(crate) fn write_replicated(&mut self, batches: &ReplicatedBatches, now_ms: i64) -> Result<(), StorageError> {
        for (position, header) in &batches.batches {
            let len = header.total_len();
            let active = self.active();
            if !active.is_empty() {
                let full = active.size_bytes + len as u64 > self.config.segment_bytes_max();
                let old = active
                    .roll_start_ms
                    .is_some_and(|first| now_ms.saturating_sub(first) > self.config.segment_ms);
                let offsets_overflow = header.last_offset() - active.base_offset > i64::from(u32::MAX);
                if full || old || offsets_overflow || active.indexes_full() {
                    self.roll_at(header.base_offset)?;
                }
            }
            let batch = &batches.bytes[*position..*position + len];
            let first_in_segment = self.active().is_empty();
            self.active_mut()
                .append(&batch[..HEADER_LEN], &batch[HEADER_LEN..], header)?;
            if first_in_segment {
                // As for the leader: segment.ms counts from this broker's clock.
                self.active_mut().roll_start_ms = Some(now_ms);
            }
            // The leader checked producers; a follower records what it accepted.
            let Some(first_offset) = self.producer_state.update(header) else {
                continue;
            };
            if parse_marker(batch) == Some(Marker::Abort) {
                let entry = AbortedTxn {
                    producer_id: header.producer_id,
                    first_offset,
                    last_offset: header.base_offset,
                };
                self.active_mut().aborted.append(entry)?;
            }
        }
        Ok(())
    }

    /// Takes the log back to `log_end_offset` (truncation rebuilds producer state and the
    /// transaction indexes) and the epoch cache to `epochs`; poisons the log if that fails.
    pub(crate) fn undo_replicated(&mut self, log_end_offset: i64, epochs: LeaderEpochCache) {
        let result = if self.log_end_offset() > log_end_offset {
            self.truncate_to(log_end_offset)
        } else {
            Ok(())
        };
        let restore = self.epoch_cache.entries() != epochs.entries();
        self.epoch_cache = epochs;
        let result = match result {
            Ok(()) if restore => self.epoch_cache.persist(),
            other => other,
        };
        if let Err(e) = result {
            self.poison(&e);
        }
    }

    /// Becoming leader at `leader_epoch`: records (epoch, log end offset) in the leader epoch
    /// cache now, before any append (as Kafka's `makeLeader` does), so followers asking
    /// OffsetForLeaderEpoch see the new epoch at once. An epoch at or below the latest is
    /// ignored. Returns whether the cache changed. The checkpoint file is written with the next
    /// recovery point rather than now (nothing of the epoch is in the log yet).
    pub fn assign_leader_epoch(&mut self, leader_epoch: i32) -> Result<bool, StorageError> {
        self.check_writable()?;
        Ok(self.epoch_cache.assign_deferred(leader_epoch, self.log_end_offset()))
    }

    /// The latest leader epoch in the cache (the one a new leader assigned, even before it
    /// wrote anything).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest_epoch()
    }

    /// The first offset written in exactly `leader_epoch`, if the cache knows that epoch.
    pub fn epoch_start_offset(&self, leader_epoch: i32) -> Option<i64> {
        self.epoch_cache.start_offset_of(leader_epoch)
    }

    /// The leader epoch cache: (epoch, start offset), oldest first.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.epoch_cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// The partition leader epoch of the last batch stored (Fetch's `last_fetched_epoch` for a
    /// follower), or `None` if the log holds no batch. One header read.
    pub fn last_batch_epoch(&self) -> Result<Option<i32>, StorageError> {
        let Some(segment) = self.segments.values().rev().find(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let found = segment.find_batch(segment.next_offset - 1)?;
        Ok(found.map(|(_, header)| header.partition_leader_epoch))
    }

    /// A follower whose log cannot be continued from the leader's (its end is below the
    /// leader's log start, after retention or DeleteRecords ran while it was away; or the
    /// leader's first batch for it starts below its end because the leader's log start is
    /// inside that batch) drops its whole log and starts again, empty, at `offset` (Kafka's
    /// "truncate fully and start at"). The old segments go first, then the new one is made and
    /// the log start offset written: a crash in between leaves an empty log at the old start,
    /// which the next fetch resets again. Leader epochs, producer state and its snapshots
    /// start empty; the next fetch brings them.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        let log_end_offset = self.log_end_offset();
        let old: Vec<i64> = self.segments.keys().copied().collect();
        for base in old {
            let segment = self.segments.remove(&base).expect("listed above");
            segment.delete_files()?;
        }
        for snapshot in crate::producer_state::list_snapshots(&self.dir)? {
            crate::log::remove_if_exists(&crate::producer_state::snapshot_path(&self.dir, snapshot))?;
        }
        let segment = crate::segment::Segment::create(&self.dir, offset, self.config.index_config(), "")?;
        let _ = self.segments.insert(offset, segment);
        checkpoint::write_offset(&self.dir.join(crate::log::LOG_START_OFFSET_FILE), offset)?;
        self.log_start_offset = offset;
        self.epoch_cache.clear();
        self.epoch_cache.persist()?;
        let _ = self.rebuild_producer_state()?;
        self.high_watermark = offset;
        self.cleaner_offset = offset;
        self.recovery_point = offset;
        checkpoint::write_offset(&self.dir.join(crate::log::RECOVERY_POINT_FILE), offset)?;
        tracing::info!(dir = %self.dir.display(), from = log_end_offset, to = offset, "log truncated fully; it starts again at the leader's offset");
        Ok(())
    }
}
