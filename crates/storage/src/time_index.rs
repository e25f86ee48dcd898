//! The sparse time index (`.timeindex`): entries of (largest timestamp seen so far in the
//! segment: i64, relative offset of the batch that carried it: u32), big endian. Timestamps
//! and offsets never decrease, so a lookup can binary search: every batch before an entry's
//! offset has a max timestamp at or below the entry's timestamp.

use std::path::Path;

use crate::error::StorageError;
use crate::index_file::{Entry, IndexFile};
use crate::offset_index::relative;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp_ms: i64,
    pub(crate) relative_offset: u32,
}

impl Entry for TimeEntry {
    const LEN: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        TimeEntry {
            timestamp_ms: i64::from_be_bytes(b[0..8].try_into().expect("8")),
            relative_offset: u32::from_be_bytes(b[8..12].try_into().expect("4")),
        }
    }
}

#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    file: IndexFile<TimeEntry>,
}

impl TimeIndex {
    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u64) -> Result<Self, StorageError> {
        Ok(TimeIndex {
            base_offset,
            file: IndexFile::create(path, max_bytes)?,
        })
    }

    /// Loads and checks an index; `next_offset` is the segment's end. `Ok(None)` means rebuild.
    pub(crate) fn open(
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
        next_offset: i64,
    ) -> Result<Option<Self>, StorageError> {
        let Some(file) = IndexFile::<TimeEntry>::open(path, max_bytes)? else {
            return Ok(None);
        };
        let ordered = file
            .entries
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms && w[0].relative_offset <= w[1].relative_offset);
        let inside = file
            .entries
            .last()
            .is_none_or(|e| base_offset + i64::from(e.relative_offset) < next_offset);
        if !ordered || !inside {
            return Ok(None);
        }
        Ok(Some(TimeIndex { base_offset, file }))
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Records a new largest timestamp; ignored unless it is larger than the last entry's.
    pub(crate) fn maybe_append(&mut self, timestamp_ms: i64, offset: i64) -> Result<(), StorageError> {
        if self.last().is_some_and(|(t, _)| t >= timestamp_ms) || self.is_full() {
            return Ok(());
        }
        self.file.push(TimeEntry {
            timestamp_ms,
            relative_offset: relative(self.base_offset, offset),
        })
    }

    /// The last entry whose timestamp is below `timestamp_ms`: a search for the first batch
    /// with max timestamp >= `timestamp_ms` may start at that entry's offset.
    pub(crate) fn lookup_below(&self, timestamp_ms: i64) -> Option<(i64, i64)> {
        let entries = &self.file.entries;
        let count = entries.partition_point(|e| e.timestamp_ms < timestamp_ms);
        entries[..count]
            .last()
            .map(|e| (e.timestamp_ms, self.base_offset + i64::from(e.relative_offset)))
    }

    /// (timestamp, absolute offset) of the last entry.
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.file
            .entries
            .last()
            .map(|e| (e.timestamp_ms, self.base_offset + i64::from(e.relative_offset)))
    }

    /// Drops entries at or past `offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) -> Result<(), StorageError> {
        let keep = self
            .file
            .entries
            .partition_point(|e| self.base_offset + i64::from(e.relative_offset) < offset);
        self.file.truncate(keep)
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file.sync()
    }

    pub(crate) fn handle(&self) -> Result<Option<std::fs::File>, StorageError> {
        self.file.handle()
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn rename(&mut self, path: &Path) -> Result<(), StorageError> {
        self.file.rename(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_monotonic_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut index = TimeIndex::create(&path, 10, 1024).unwrap();
        index.maybe_append(100, 10).unwrap();
        index.maybe_append(90, 12).unwrap(); // not larger: ignored
        index.maybe_append(200, 15).unwrap();
        drop(index);
        let mut index = TimeIndex::open(&path, 10, 1024, 20).unwrap().unwrap();
        assert_eq!(index.last(), Some((200, 15)));
        assert_eq!(index.lookup_below(100), None);
        assert_eq!(index.lookup_below(150), Some((100, 10)));
        assert_eq!(index.lookup_below(201), Some((200, 15)));
        // An entry past the segment's end means the index is stale.
        assert!(TimeIndex::open(&path, 10, 1024, 15).unwrap().is_none());
        index.truncate_to_offset(15).unwrap();
        assert_eq!(index.last(), Some((100, 10)));
        std::fs::write(&path, [1, 2, 3]).unwrap();
        assert!(TimeIndex::open(&path, 10, 1024, 20).unwrap().is_none());
    }
}
