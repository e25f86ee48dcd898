//! Log compaction (`cleanup.policy=compact`): in closed segments only the latest record per
//! key survives, and tombstones go once they have aged past `delete.retention.ms` in the
//! cleaned part of the log.
//!
//! It never blocks produce or fetch: [`Log::compaction_job`] snapshots what to clean under the
//! partition lock, [`CompactionJob::run`] reads and writes files without it, and
//! [`Log::install_compaction`] swaps the cleaned segments in under the lock, unless a segment
//! changed meanwhile (retention, truncation), in which case the result is discarded.
//!
//! Run at most one job per log at a time: a job writes `<base>.log.cleaned` files next to
//! the segments it cleans. A crash mid-run leaves only those temp files, removed on open.
//!
//! Rules:
//! - Offsets never change. A batch that loses records is re-encoded with its codec, keeping
//!   its base and last offsets, base sequence and producer fields (as Kafka's cleaner does), so
//!   every survivor keeps its offset and sequence and producer state still lines up. A batch
//!   that loses every record is dropped; the segment keeps its base offset, so file names stay
//!   right.
//! - The last batch of each producer id is kept whole, so producer state survives (as in
//!   Kafka). Other idempotent batches are compacted like any other.
//! - Transactions: nothing at or past the last stable offset is cleaned (an open
//!   transaction's records may yet be aborted, so they must not supersede anything). Batches
//!   of aborted transactions (by the segments' aborted-transaction indexes) are removed and
//!   never enter the key map. A marker is kept until no record of its transaction is left in
//!   the log and `delete.retention.ms` has passed since it was written, so a consumer that
//!   read the transaction's records also sees its end; then it goes too. (Never while it is
//!   its producer's last batch: a replay from a snapshot taken while the transaction was open
//!   relies on a later marker of that producer to close it.)
//! - Tombstones (null values) follow KIP-534: the first clean that keeps one rewrites its batch
//!   with a delete horizon (now + `delete.retention.ms`, in the batch's base timestamp, with
//!   the delete-horizon attribute bit); a clean after the horizon removes it. So a consumer
//!   that reads the cleaned log within `delete.retention.ms` of that first clean sees the
//!   delete, whatever the record's own timestamp. Like Kafka, removal needs a later pass,
//!   which runs when new dirty data calls for one.
//! - The key map (latest offset per key over the dirty part) is capped at
//!   [`KEY_MAP_BYTES_MAX`]; when full, the pass cleans up to where the map reaches and the
//!   next pass continues from there.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use strom_record::records::{decode_records, encode_retained, Record};
use strom_record::BatchHeader;

use crate::checkpoint;
use crate::error::StorageError;
use crate::log::{Log, CLEANER_OFFSET_FILE};
use crate::segment::{self, IndexConfig, Segment};
use crate::txn_index::AbortedTxn;

/// Memory bound of one pass's key map, counting key bytes plus per-entry overhead.
pub const KEY_MAP_BYTES_MAX: usize = 64 * 1024 * 1024;
const KEY_MAP_ENTRY_OVERHEAD_BYTES: usize = 48;

/// A closed segment as the job saw it.
#[derive(Debug, Clone)]
struct SegmentSnapshot {
    base_offset: i64,
    path: PathBuf,
    file: Arc<File>,
    size_bytes: u64,
}

/// Work taken from a log under its lock; run it without the lock.
#[derive(Debug)]
pub struct CompactionJob {
    dir: PathBuf,
    segments: Vec<SegmentSnapshot>,
    first_dirty_offset: i64,
    now_ms: i64,
    delete_retention_ms: i64,
    index_config: IndexConfig,
    key_map_bytes_max: usize,
    aborted: Vec<AbortedTxn>,
}

/// Cleaned segments waiting to be installed.
#[derive(Debug)]
pub struct CompactionResult {
    cleaned: Vec<(SegmentSnapshot, Segment)>,
    cleaner_offset: i64,
    records_removed: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// False if the log changed under the job and the result was thrown away.
    pub installed: bool,
    pub segments_cleaned: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// Where the next pass's dirty section starts.
    pub cleaner_offset: i64,
}

impl Log {
    /// A job if the log is compacted and its dirty ratio calls for cleaning; only closed
    /// segments wholly below the high watermark and older than `min.compaction.lag.ms` count.
    pub fn compaction_job(&self, now_ms: i64) -> Option<CompactionJob> {
        if !self.config.cleanup_policy.compact || self.poisoned {
            return None;
        }
        let active_base = self.active().base_offset;
        let lag_limit_ms = now_ms.saturating_sub(self.config.min_compaction_lag_ms.max(0));
        let stable = self.last_stable_offset();
        let cleanable: Vec<&Segment> = self
            .segments
            .range(..active_base)
            .map(|(_, s)| s)
            .take_while(|s| s.next_offset <= stable && s.max_timestamp_ms <= lag_limit_ms)
            .collect();
        let dirty_bytes: u64 = cleanable
            .iter()
            .filter(|s| s.next_offset > self.cleaner_offset)
            .map(|s| s.size_bytes)
            .sum();
        let total_bytes: u64 = cleanable.iter().map(|s| s.size_bytes).sum();
        if dirty_bytes == 0 || (dirty_bytes as f64) < self.config.min_cleanable_dirty_ratio * total_bytes as f64 {
            return None;
        }
        Some(CompactionJob {
            dir: self.dir.clone(),
            segments: cleanable
                .iter()
                .map(|s| SegmentSnapshot {
                    base_offset: s.base_offset,
                    path: s.log_path().to_path_buf(),
                    file: Arc::clone(&s.file),
                    size_bytes: s.size_bytes,
                })
                .collect(),
            first_dirty_offset: self.cleaner_offset,
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            index_config: self.config.index_config(),
            key_map_bytes_max: KEY_MAP_BYTES_MAX,
            aborted: self
                .segments
                .values()
                .flat_map(|s| s.aborted.entries())
                .copied()
                .collect(),
        })
    }

    /// Swaps cleaned segments in, unless any of them changed since the job was taken.
    pub fn install_compaction(&mut self, result: CompactionResult) -> Result<CompactionReport, StorageError> {
        let active_base = self.active().base_offset;
        let unchanged = result.cleaned.iter().all(|(original, _)| {
            original.base_offset < active_base
                && self.segments.get(&original.base_offset).is_some_and(|current| {
                    Arc::ptr_eq(&current.file, &original.file) && current.size_bytes == original.size_bytes
                })
        });
        let mut report = CompactionReport {
            cleaner_offset: self.cleaner_offset,
            ..CompactionReport::default()
        };
        if !unchanged || self.poisoned {
            for (_, cleaned) in &result.cleaned {
                cleaned.delete_files()?;
            }
            tracing::info!(dir = %self.dir.display(), "discarded compaction result: log changed meanwhile");
            return Ok(report);
        }
        for (original, mut cleaned) in result.cleaned {
            cleaned.sync()?;
            cleaned.install_as_real(&self.dir)?;
            if let Some(current) = self.segments.get(&original.base_offset) {
                cleaned.aborted.adopt(&current.aborted)?;
            }
            report.segments_cleaned += 1;
            report.bytes_before += original.size_bytes;
            report.bytes_after += cleaned.size_bytes;
            // The old segment's files were replaced by the renames; dropping it closes our
            // handle, and readers holding the old file keep it alive.
            let _ = self.segments.insert(original.base_offset, cleaned);
        }
        checkpoint::sync_dir(&self.dir)?;
        if result.cleaner_offset > self.cleaner_offset {
            self.cleaner_offset = result.cleaner_offset;
            checkpoint::write_offset(&self.dir.join(CLEANER_OFFSET_FILE), self.cleaner_offset)?;
        }
        report.installed = true;
        report.records_removed = result.records_removed;
        report.cleaner_offset = self.cleaner_offset;
        tracing::info!(dir = %self.dir.display(), ?report, "installed compaction");
        Ok(report)
    }
}

impl CompactionJob {
    /// Lowers the key map's memory bound (tests use this to force several passes).
    pub fn set_key_map_bytes_max(&mut self, bytes: usize) {
        self.key_map_bytes_max = bytes;
    }

    /// Builds the key map over the dirty section, then writes a cleaned copy of every segment
    /// it covers. Reads only the closed segments captured in the job.
    pub fn run(self) -> Result<CompactionResult, StorageError> {
        let mut aborted_ranges: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in &self.aborted {
            aborted_ranges
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        let is_aborted = |header: &BatchHeader| {
            header.is_transactional()
                && !header.is_control()
                && aborted_ranges.get(&header.producer_id).is_some_and(|ranges| {
                    ranges
                        .iter()
                        .any(|(first, last)| *first <= header.base_offset && header.base_offset < *last)
                })
        };
        let mut last_batch_of_producer: HashMap<i64, i64> = HashMap::new();
        for snapshot in &self.segments {
            for_each_batch(snapshot, |_, header| {
                if header.has_producer_id() {
                    let _ = last_batch_of_producer.insert(header.producer_id, header.base_offset);
                }
                Ok(true)
            })?;
        }

        let mut latest_offset_by_key: HashMap<Bytes, i64> = HashMap::new();
        let mut map_bytes = 0usize;
        let mut map_end = self.first_dirty_offset;
        'map: for snapshot in &self.segments {
            let mut stop = false;
            for_each_batch(snapshot, |position, header| {
                if header.next_offset() <= self.first_dirty_offset || header.is_control() || is_aborted(header) {
                    map_end = map_end.max(header.next_offset());
                    return Ok(true);
                }
                let Some(records) = read_records(snapshot, position, header)? else {
                    map_end = map_end.max(header.next_offset());
                    return Ok(true);
                };
                let new_bytes: usize = records
                    .iter()
                    .filter_map(|r| r.key.as_ref())
                    .map(|k| k.len() + KEY_MAP_ENTRY_OVERHEAD_BYTES)
                    .sum();
                if map_bytes + new_bytes > self.key_map_bytes_max && !latest_offset_by_key.is_empty() {
                    stop = true;
                    return Ok(false);
                }
                map_bytes += new_bytes;
                for record in records {
                    if let Some(key) = record.key {
                        let _ = latest_offset_by_key.insert(key, record.offset);
                    }
                }
                map_end = map_end.max(header.next_offset());
                Ok(true)
            })?;
            if stop {
                break 'map;
            }
        }

        let mut cleaned = Vec::new();
        let mut records_removed = 0u64;
        // Per producer: whether records of its current transaction survive this pass so far.
        let mut txn_has_records: HashMap<i64, bool> = HashMap::new();
        for snapshot in self.segments.iter().filter(|s| s.base_offset < map_end) {
            let mut output = Segment::create(
                &self.dir,
                snapshot.base_offset,
                self.index_config,
                &format!(".{}", segment::CLEANED_SUFFIX),
            )?;
            let written = for_each_batch(snapshot, |position, header| {
                let last_of_producer = last_batch_of_producer.get(&header.producer_id) == Some(&header.base_offset);
                if header.is_control() {
                    let had_records = txn_has_records.remove(&header.producer_id).unwrap_or(false);
                    let aged = header.max_timestamp.saturating_add(self.delete_retention_ms.max(0)) <= self.now_ms;
                    if !had_records && aged && !last_of_producer && header.next_offset() <= map_end {
                        records_removed += 1;
                        return Ok(true);
                    }
                } else if is_aborted(header) && !last_of_producer && header.next_offset() <= map_end {
                    records_removed += header.records_count.max(0) as u64;
                    return Ok(true);
                }
                let keep_whole = header.is_control() || header.next_offset() > map_end || last_of_producer;
                if header.is_transactional() && !header.is_control() {
                    // Keeps the transaction's marker (conservatively, even if this batch then
                    // loses every record to newer keys).
                    let _ = txn_has_records.insert(header.producer_id, true);
                }
                let original = read_batch(snapshot, position, header)?;
                let records = if keep_whole {
                    None
                } else {
                    decode_records(&original).ok()
                };
                let Some(records) = records else {
                    output.append_whole(&original, header)?;
                    return Ok(true);
                };
                let total = records.len();
                let horizon = header.delete_horizon_ms();
                let survivors: Vec<Record> = records
                    .into_iter()
                    .filter(|r| {
                        let superseded = r
                            .key
                            .as_ref()
                            .and_then(|k| latest_offset_by_key.get(k))
                            .is_some_and(|latest| *latest > r.offset);
                        let expired_tombstone = r.value.is_none() && horizon.is_some_and(|h| h <= self.now_ms);
                        !superseded && !expired_tombstone
                    })
                    .collect();
                // KIP-534: the first clean that keeps a tombstone stamps its batch with a
                // delete horizon; a clean after the horizon removes it.
                let set_horizon = (horizon.is_none() && survivors.iter().any(|r| r.value.is_none()))
                    .then(|| self.now_ms.saturating_add(self.delete_retention_ms.max(0)));
                records_removed += (total - survivors.len()) as u64;
                if survivors.len() == total && set_horizon.is_none() {
                    output.append_whole(&original, header)?;
                } else if !survivors.is_empty() {
                    let encoded = encode_retained(header, &survivors, set_horizon)
                        .and_then(|bytes| Ok((BatchHeader::parse(&bytes)?, bytes)));
                    match encoded {
                        Ok((new_header, bytes)) => output.append_whole(&bytes, &new_header)?,
                        Err(_) => {
                            records_removed -= (total - survivors.len()) as u64;
                            output.append_whole(&original, header)?
                        }
                    }
                }
                Ok(true)
            });
            if let Err(e) = written {
                output.delete_files()?;
                for (_, done) in &cleaned {
                    let done: &Segment = done;
                    done.delete_files()?;
                }
                return Err(e);
            }
            cleaned.push((snapshot.clone(), output));
        }
        Ok(CompactionResult {
            cleaned,
            cleaner_offset: map_end,
            records_removed,
        })
    }
}

/// Walks the batches of a captured segment; `f` returns false to stop.
fn for_each_batch(
    snapshot: &SegmentSnapshot,
    mut f: impl FnMut(u64, &BatchHeader) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    let mut position = 0u64;
    while let Some(header) = segment::read_header(&snapshot.file, &snapshot.path, position, snapshot.size_bytes)? {
        if position + header.total_len() as u64 > snapshot.size_bytes {
            return Err(StorageError::corrupt(
                &snapshot.path,
                "segment",
                "batch runs past the end",
            ));
        }
        if !f(position, &header)? {
            break;
        }
        position += header.total_len() as u64;
    }
    Ok(())
}

fn read_batch(snapshot: &SegmentSnapshot, position: u64, header: &BatchHeader) -> Result<Vec<u8>, StorageError> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; header.total_len()];
    snapshot
        .file
        .read_exact_at(&mut buf, position)
        .map_err(|e| StorageError::io(&snapshot.path, e))?;
    Ok(buf)
}

/// Decoded records of a batch, or `None` if they cannot be decoded (the batch is then kept).
fn read_records(
    snapshot: &SegmentSnapshot,
    position: u64,
    header: &BatchHeader,
) -> Result<Option<Vec<Record>>, StorageError> {
    let batch = read_batch(snapshot, position, header)?;
    Ok(decode_records(&batch).ok())
}
