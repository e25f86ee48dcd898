//! One segment: a log file of whole batches plus its offset and time indexes, all named by the
//! segment's base offset (20 digits, zero padded).
//!
//! The log file is opened in append mode and shared as `Arc<File>`: readers keep their handle
//! after the segment is deleted or replaced by compaction (the inode lives until the last
//! handle closes), so a fetch running outside the partition lock never sees a file vanish.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strom_record::{BatchHeader, HEADER_LEN};

use crate::error::{IoContext, StorageError};
use crate::offset_index::OffsetIndex;
use crate::time_index::TimeIndex;
use crate::txn_index::{TxnIndex, TXN_INDEX_SUFFIX};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Suffix of files a compaction run writes before they are swapped in.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// Positions in the offset index are u32, so a segment may not grow past this.
pub(crate) const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;
/// The buffer recovery streams a batch through to check its CRC: memory stays bounded no
/// matter how large a (possibly corrupt) length field claims a batch is.
const CRC_BUFFER_BYTES: usize = 64 * 1024;

/// Index sizing, from the topic config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexConfig {
    pub(crate) index_bytes_max: u64,
    pub(crate) index_interval_bytes: u64,
}

pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

pub(crate) fn parse_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn paths(dir: &Path, base_offset: i64, extra: &str) -> [PathBuf; 3] {
    [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX].map(|s| dir.join(format!("{}{extra}", file_name(base_offset, s))))
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    pub(crate) file: Arc<File>,
    pub(crate) size_bytes: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// One past the last offset stored here; `base_offset` while empty.
    pub(crate) next_offset: i64,
    /// -1 while empty.
    pub(crate) max_timestamp_ms: i64,
    pub(crate) offset_of_max_timestamp: i64,
    /// Where segment.ms starts counting: the broker's clock at the first append, or after a
    /// restart the first batch's max timestamp (Kafka's rolling-based timestamp).
    pub(crate) roll_start_ms: Option<i64>,
    bytes_since_index_entry: u64,
    config: IndexConfig,
    /// Transactions aborted by markers in this segment.
    pub(crate) aborted: TxnIndex,
}

/// What a scan of a segment's batches found.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    pub(crate) batches: u64,
    /// Bytes cut off the end because they were torn, corrupt, or out of order.
    pub(crate) truncated_bytes: u64,
    pub(crate) reason: Option<String>,
}

impl Segment {
    /// Creates an empty segment; `extra` is appended to every file name (".cleaned").
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        config: IndexConfig,
        extra: &str,
    ) -> Result<Segment, StorageError> {
        let [log_path, index_path, time_path] = paths(dir, base_offset, extra);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .at(&log_path)?;
        file.set_len(0).at(&log_path)?;
        Ok(Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size_bytes: 0,
            offset_index: OffsetIndex::create(&index_path, base_offset, config.index_bytes_max)?,
            time_index: TimeIndex::create(&time_path, base_offset, config.index_bytes_max)?,
            next_offset: base_offset,
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
            roll_start_ms: None,
            bytes_since_index_entry: 0,
            config,
            aborted: TxnIndex::empty(dir.join(format!("{}{extra}", file_name(base_offset, TXN_INDEX_SUFFIX)))),
        })
    }

    /// Opens an existing segment. With `full_scan` every batch is read and CRC-checked and
    /// both indexes are rebuilt; otherwise the indexes are trusted if they pass their checks
    /// and only the batches after the last index entry are walked (headers only). Either way a
    /// torn or corrupt tail is cut off and reported in the outcome.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        config: IndexConfig,
        full_scan: bool,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(Segment, ScanOutcome, Vec<String>), StorageError> {
        let [log_path, index_path, time_path] = paths(dir, base_offset, "");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&log_path)
            .at(&log_path)?;
        let size_bytes = file.metadata().at(&log_path)?.len();
        let mut notes = Vec::new();
        let offset_index = OffsetIndex::open(&index_path, base_offset, config.index_bytes_max, size_bytes)?;
        // The time index is checked against the segment's end once the scan knows it.
        let time_index = TimeIndex::open(&time_path, base_offset, config.index_bytes_max, i64::MAX)?;
        // A segment smaller than the index interval has no entry, so (its files being created
        // with their first entry) no index files: nothing to repair.
        let too_small_for_an_entry = size_bytes == 0 || size_bytes < config.index_interval_bytes;
        let (offset_index, time_index) = match (offset_index, time_index) {
            (None, None) if too_small_for_an_entry => (
                Some(OffsetIndex::create(&index_path, base_offset, config.index_bytes_max)?),
                Some(TimeIndex::create(&time_path, base_offset, config.index_bytes_max)?),
            ),
            other => other,
        };
        let rebuild = full_scan || offset_index.is_none() || time_index.is_none();
        if !full_scan && rebuild {
            notes.push(format!("rebuilt missing or damaged indexes of {}", log_path.display()));
        }
        let (offset_index, time_index) = match (offset_index, time_index, rebuild) {
            (Some(o), Some(t), false) => (o, t),
            _ => (
                OffsetIndex::create(&index_path, base_offset, config.index_bytes_max)?,
                TimeIndex::create(&time_path, base_offset, config.index_bytes_max)?,
            ),
        };
        let (aborted, aborted_damaged) = TxnIndex::open(dir.join(file_name(base_offset, TXN_INDEX_SUFFIX)))?;
        if aborted_damaged {
            notes.push(format!("cut the damaged tail of {}", aborted.path().display()));
        }
        let mut segment = Segment {
            base_offset,
            log_path,
            file: Arc::new(file),
            size_bytes,
            offset_index,
            time_index,
            next_offset: base_offset,
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
            roll_start_ms: None,
            bytes_since_index_entry: 0,
            config,
            aborted,
        };
        let outcome = segment.scan(rebuild, on_batch)?;
        if !rebuild {
            let stale = segment
                .time_index
                .last()
                .is_some_and(|(_, offset)| offset >= segment.next_offset);
            if stale {
                notes.push(format!("rebuilt stale time index of {}", segment.log_path.display()));
                segment.time_index = TimeIndex::create(&time_path, base_offset, config.index_bytes_max)?;
                segment.offset_index = OffsetIndex::create(&index_path, base_offset, config.index_bytes_max)?;
                let _ = segment.scan(true, &mut |_| {})?;
            }
        }
        Ok((segment, outcome, notes))
    }

    /// Walks batches, (re)building index state, and cuts the file at the first batch that is
    /// torn, corrupt, or breaks offset order. `from_start` rebuilds the indexes from scratch
    /// and checks CRCs; otherwise the walk resumes at the last offset index entry.
    fn scan(&mut self, from_start: bool, on_batch: &mut dyn FnMut(&BatchHeader)) -> Result<ScanOutcome, StorageError> {
        let mut outcome = ScanOutcome::default();
        let mut position = 0u64;
        let mut skip_index_once = false;
        self.next_offset = self.base_offset;
        self.max_timestamp_ms = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.bytes_since_index_entry = 0;
        self.roll_start_ms = None;
        if from_start {
            self.offset_index.truncate_to_position(0)?;
            self.time_index.truncate_to_offset(i64::MIN)?;
        } else {
            if let Some((ts, offset)) = self.time_index.last() {
                self.max_timestamp_ms = ts;
                self.offset_of_max_timestamp = offset;
            }
            // A damaged first header is found (and cut) by the walk below, not an error here.
            if let Ok(Some(first)) = self.read_header_at(0) {
                self.roll_start_ms = Some(first.max_timestamp);
            }
            if let Some((offset, pos)) = self.offset_index.last() {
                position = pos;
                self.next_offset = offset;
                skip_index_once = true;
            }
        }
        let mut crc_buffer = Vec::new();
        while position < self.size_bytes {
            let header = match self.read_header_at(position) {
                Ok(Some(header)) => header,
                Ok(None) => {
                    outcome.reason = Some(format!("torn batch header at position {position}"));
                    break;
                }
                Err(StorageError::Corrupt { reason, .. }) => {
                    outcome.reason = Some(format!("bad batch header at position {position}: {reason}"));
                    break;
                }
                Err(e) => return Err(e),
            };
            let len = header.total_len() as u64;
            if position + len > self.size_bytes {
                outcome.reason = Some(format!("torn batch at position {position}"));
                break;
            }
            if header.base_offset < self.next_offset
                || header.last_offset_delta < 0
                || header.last_offset() - self.base_offset > i64::from(u32::MAX)
                || position + len > SEGMENT_BYTES_MAX
            {
                outcome.reason = Some(format!(
                    "batch at position {position} has offsets {}..={} out of order",
                    header.base_offset,
                    header.last_offset()
                ));
                break;
            }
            if from_start && !self.crc_matches(position, &header, &mut crc_buffer)? {
                outcome.reason = Some(format!("CRC mismatch in batch at position {position}"));
                break;
            }
            if skip_index_once {
                skip_index_once = false;
                self.note_batch(&header, 0);
                self.bytes_since_index_entry = 0;
            } else {
                self.index_batch(&header, position, len)?;
            }
            on_batch(&header);
            outcome.batches += 1;
            position += len;
        }
        if position < self.size_bytes {
            outcome.truncated_bytes = self.size_bytes - position;
            self.file.set_len(position).at(&self.log_path)?;
            self.size_bytes = position;
            self.offset_index.truncate_to_position(position)?;
            self.time_index.truncate_to_offset(self.next_offset)?;
        }
        Ok(outcome)
    }

    fn crc_matches(&self, position: u64, header: &BatchHeader, buffer: &mut Vec<u8>) -> Result<bool, StorageError> {
        // The CRC covers the batch from the attributes (byte 21) to its end.
        const CRC_START: u64 = 21;
        buffer.resize(CRC_BUFFER_BYTES, 0);
        let end = position + header.total_len() as u64;
        let mut at = position + CRC_START;
        let mut crc = 0u32;
        while at < end {
            let n = ((end - at) as usize).min(CRC_BUFFER_BYTES);
            self.file.read_exact_at(&mut buffer[..n], at).at(&self.log_path)?;
            crc = crc32c::crc32c_append(crc, &buffer[..n]);
            at += n as u64;
        }
        Ok(crc == header.crc)
    }

    fn note_batch(&mut self, header: &BatchHeader, _position: u64) {
        if self.roll_start_ms.is_none() {
            self.roll_start_ms = Some(header.max_timestamp);
        }
        if header.max_timestamp > self.max_timestamp_ms {
            self.max_timestamp_ms = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        self.next_offset = header.next_offset();
    }

    /// Updates in-memory state and the sparse indexes for a batch now at `position`.
    fn index_batch(&mut self, header: &BatchHeader, position: u64, len: u64) -> Result<(), StorageError> {
        self.note_batch(header, position);
        self.bytes_since_index_entry += len;
        if self.bytes_since_index_entry >= self.config.index_interval_bytes && !self.offset_index.is_full() {
            self.offset_index.append(header.base_offset, position)?;
            self.time_index
                .maybe_append(self.max_timestamp_ms, self.offset_of_max_timestamp)?;
            self.bytes_since_index_entry = 0;
        }
        Ok(())
    }

    /// Reads the header of the batch at `position`; `Ok(None)` at or near the end of the file.
    pub(crate) fn read_header_at(&self, position: u64) -> Result<Option<BatchHeader>, StorageError> {
        read_header(&self.file, &self.log_path, position, self.size_bytes)
    }

    /// Reads a whole batch at `position` (a bounded allocation: one batch).
    pub(crate) fn read_batch_at(&self, position: u64, header: &BatchHeader) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; header.total_len()];
        self.file.read_exact_at(&mut buf, position).at(&self.log_path)?;
        Ok(buf)
    }

    /// The first batch whose last offset is at or after `offset`, with its position.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let mut position = self.offset_index.lookup(offset).map_or(0, |(_, p)| p);
        while let Some(header) = self.read_header_at(position)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_len() as u64;
        }
        Ok(None)
    }

    /// Position of the batch from which a search for `timestamp_ms` may start.
    pub(crate) fn time_search_start(&self, timestamp_ms: i64) -> Result<u64, StorageError> {
        match self.time_index.lookup_below(timestamp_ms) {
            Some((_, offset)) => Ok(self.find_batch(offset)?.map_or(0, |(p, _)| p)),
            None => Ok(0),
        }
    }

    /// Appends one batch given as its (patched) header and the rest of its bytes, without
    /// joining them: the payload is never copied on this path.
    pub(crate) fn append(
        &mut self,
        header_bytes: &[u8],
        rest: &[u8],
        header: &BatchHeader,
    ) -> Result<(), StorageError> {
        let position = self.size_bytes;
        let len = (header_bytes.len() + rest.len()) as u64;
        debug_assert_eq!(len, header.total_len() as u64);
        assert!(header.base_offset >= self.next_offset, "appends must move forward");
        assert!(position + len <= SEGMENT_BYTES_MAX, "segment rolled too late");
        if let Err(e) = write_all_vectored(&self.file, header_bytes, rest) {
            // Cut off whatever part reached the file so the segment stays whole.
            self.file.set_len(position).at(&self.log_path)?;
            return Err(StorageError::io(&self.log_path, e));
        }
        self.size_bytes += len;
        self.index_batch(header, position, len)
    }

    /// Keeps only batches whose last offset is below `offset`; returns bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<u64, StorageError> {
        let Some((position, _)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size_bytes - position;
        self.file.set_len(position).at(&self.log_path)?;
        self.size_bytes = position;
        let _ = self.scan(true, &mut |_| {})?;
        self.aborted.truncate_from(offset)?;
        Ok(removed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub(crate) fn indexes_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Handles on the segment's three files, for an fsync run without the log's lock.
    pub(crate) fn sync_handles(&self) -> Result<Vec<(PathBuf, File)>, StorageError> {
        let mut handles = vec![(self.log_path.clone(), self.file.try_clone().at(&self.log_path)?)];
        if let Some(handle) = self.offset_index.handle()? {
            handles.push((self.offset_index.path().to_path_buf(), handle));
        }
        if let Some(handle) = self.time_index.handle()? {
            handles.push((self.time_index.path().to_path_buf(), handle));
        }
        Ok(handles)
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().at(&self.log_path)?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Unlinks the segment's files. Open `Arc<File>` handles stay readable.
    pub(crate) fn delete_files(&self) -> Result<(), StorageError> {
        for path in [
            &self.log_path,
            &self.offset_index.path().to_path_buf(),
            &self.time_index.path().to_path_buf(),
        ] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(path, e)),
            }
        }
        self.aborted.delete_file()
    }

    /// Moves a ".cleaned" segment onto the real names. Indexes of the old segment are removed
    /// first and the log renamed before its indexes, so a crash at any point leaves either a
    /// whole old log or a whole new log, never a log with another log's index (a missing index
    /// is rebuilt on open).
    pub(crate) fn install_as_real(&mut self, dir: &Path) -> Result<(), StorageError> {
        let [log_path, index_path, time_path] = paths(dir, self.base_offset, "");
        for path in [&index_path, &time_path] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(path, e)),
            }
        }
        fs::rename(&self.log_path, &log_path).at(&log_path)?;
        self.log_path = log_path;
        self.offset_index.rename(&index_path)?;
        self.time_index.rename(&time_path)?;
        // A cleaned segment never writes its own transaction index: it adopts the original's.
        self.aborted
            .renamed(&dir.join(file_name(self.base_offset, TXN_INDEX_SUFFIX)));
        Ok(())
    }

    /// Appends a whole batch held in memory (LogAppendTime copies, compaction output).
    pub(crate) fn append_whole(&mut self, batch: &[u8], header: &BatchHeader) -> Result<(), StorageError> {
        let (head, rest) = batch.split_at(HEADER_LEN);
        self.append(head, rest, header)
    }
}

/// Reads the batch header at `position` of a log file of `size_bytes`; `Ok(None)` if fewer
/// than a header's bytes remain.
pub(crate) fn read_header(
    file: &File,
    path: &Path,
    position: u64,
    size_bytes: u64,
) -> Result<Option<BatchHeader>, StorageError> {
    if position + HEADER_LEN as u64 > size_bytes {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_LEN];
    match file.read_exact_at(&mut buf, position) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(StorageError::io(path, e)),
    }
    let header = BatchHeader::parse(&buf).map_err(|e| StorageError::corrupt(path, "batch header", e.to_string()))?;
    // The base offset is outside the CRC: check it before any offset arithmetic trusts it.
    let offsets_ok = header.base_offset >= 0
        && header.last_offset_delta >= 0
        && header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta) + 1)
            .is_some();
    if !offsets_ok {
        return Err(StorageError::corrupt(
            path,
            "batch header",
            format!("impossible offsets at position {position}"),
        ));
    }
    Ok(Some(header))
}

/// `Write::write_all_vectored` is unstable; this loops on `write_vectored` instead.
fn write_all_vectored(mut file: &File, first: &[u8], second: &[u8]) -> std::io::Result<()> {
    let mut first = first;
    let mut second = second;
    while !first.is_empty() || !second.is_empty() {
        let written = match file.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_first = written.min(first.len());
        first = &first[from_first..];
        second = &second[written - from_first..];
    }
    Ok(())
}
