//! The sparse offset index (`.index`): for some batches, the batch's base offset relative to
//! the segment's base offset (u32) and the batch's byte position in the log file (u32), both
//! big endian, strictly increasing. A lookup finds the last entry at or below an offset; the
//! reader then walks batch headers forward from there.

use std::path::Path;

use crate::error::StorageError;
use crate::index_file::{Entry, IndexFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl Entry for OffsetEntry {
    const LEN: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes(b[0..4].try_into().expect("4")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4")),
        }
    }
}

#[derive(Debug)]
pub(crate) struct OffsetIndex {
    base_offset: i64,
    file: IndexFile<OffsetEntry>,
}

impl OffsetIndex {
    pub(crate) fn create(path: &Path, base_offset: i64, max_bytes: u64) -> Result<Self, StorageError> {
        Ok(OffsetIndex {
            base_offset,
            file: IndexFile::create(path, max_bytes)?,
        })
    }

    /// Loads and checks an index against its log's size. `Ok(None)` means rebuild.
    pub(crate) fn open(
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
        log_size_bytes: u64,
    ) -> Result<Option<Self>, StorageError> {
        let Some(file) = IndexFile::<OffsetEntry>::open(path, max_bytes)? else {
            return Ok(None);
        };
        let ordered = file
            .entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        let inside = file
            .entries
            .last()
            .is_none_or(|e| u64::from(e.position) < log_size_bytes);
        if !ordered || !inside {
            return Ok(None);
        }
        Ok(Some(OffsetIndex { base_offset, file }))
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn append(&mut self, offset: i64, position: u64) -> Result<(), StorageError> {
        let relative_offset = relative(self.base_offset, offset);
        let position = u32::try_from(position).expect("segment positions fit in u32");
        if let Some(last) = self.file.entries.last() {
            assert!(
                relative_offset > last.relative_offset && position > last.position,
                "offset index entries must increase"
            );
        }
        self.file.push(OffsetEntry {
            relative_offset,
            position,
        })
    }

    /// The last entry whose offset is at or below `offset`, as (absolute offset, position).
    pub(crate) fn lookup(&self, offset: i64) -> Option<(i64, u64)> {
        if offset < self.base_offset {
            return None;
        }
        let target = (offset - self.base_offset).min(i64::from(u32::MAX)) as u32;
        let entries = &self.file.entries;
        let count = entries.partition_point(|e| e.relative_offset <= target);
        let e = entries[..count].last()?;
        Some((self.base_offset + i64::from(e.relative_offset), u64::from(e.position)))
    }

    pub(crate) fn last(&self) -> Option<(i64, u64)> {
        self.file
            .entries
            .last()
            .map(|e| (self.base_offset + i64::from(e.relative_offset), u64::from(e.position)))
    }

    /// Drops entries pointing at or past `position` (after the log was truncated there).
    pub(crate) fn truncate_to_position(&mut self, position: u64) -> Result<(), StorageError> {
        let keep = self.file.entries.partition_point(|e| u64::from(e.position) < position);
        self.file.truncate(keep)
    }

    pub(crate) fn handle(&self) -> Result<Option<std::fs::File>, StorageError> {
        self.file.handle()
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file.sync()
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn rename(&mut self, path: &Path) -> Result<(), StorageError> {
        self.file.rename(path)
    }
}

pub(crate) fn relative(base_offset: i64, offset: i64) -> u32 {
    u32::try_from(offset - base_offset).expect("relative offsets fit in u32 (segments roll first)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut index = OffsetIndex::create(&path, 100, 1024).unwrap();
        index.append(100, 0).unwrap();
        index.append(110, 500).unwrap();
        index.append(130, 900).unwrap();
        drop(index);
        let index = OffsetIndex::open(&path, 100, 1024, 1000).unwrap().unwrap();
        assert_eq!(index.lookup(99), None);
        assert_eq!(index.lookup(100), Some((100, 0)));
        assert_eq!(index.lookup(129), Some((110, 500)));
        assert_eq!(index.lookup(1000), Some((130, 900)));
        assert_eq!(index.last(), Some((130, 900)));
    }

    #[test]
    fn damaged_indexes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 0, 1024).unwrap();
        index.append(0, 0).unwrap();
        index.append(5, 100).unwrap();
        drop(index);
        // Last entry beyond the log file.
        assert!(OffsetIndex::open(&path, 0, 1024, 100).unwrap().is_none());
        // Torn entry.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(1);
        std::fs::write(&path, &bytes).unwrap();
        assert!(OffsetIndex::open(&path, 0, 1024, 1000).unwrap().is_none());
        // Out of order.
        std::fs::write(&path, [0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 10]).unwrap();
        assert!(OffsetIndex::open(&path, 0, 1024, 1000).unwrap().is_none());
        // Missing.
        std::fs::remove_file(&path).unwrap();
        assert!(OffsetIndex::open(&path, 0, 1024, 1000).unwrap().is_none());
    }

    #[test]
    fn truncates_by_position_and_fills_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 0, 16).unwrap();
        index.append(1, 10).unwrap();
        index.append(2, 20).unwrap();
        assert!(index.is_full());
        index.truncate_to_position(20).unwrap();
        assert_eq!(index.last(), Some((1, 10)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
    }
}
