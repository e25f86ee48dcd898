//! The aborted-transaction index of one segment (`<base>.txnindex`): for every transaction an
//! abort marker in this segment ended, the producer id and the offsets of its first record
//! and of the marker. A read_committed fetch lists the entries overlapping what it returns,
//! and the consumer drops that producer's batches inside the range.
//!
//! Entries are 28 bytes: `producer_id i64 | first_offset i64 | last_offset i64 | crc32c u32`
//! (of the 24 bytes before it). Aborts are rare, so each entry is fsynced as it is written:
//! recovery then only has to drop entries past the log end and re-derive those at or after
//! the producer snapshot it replays from. Reading stops at the first torn or damaged entry.
//! The whole index is held in memory; it is small (one entry per aborted transaction that
//! touched the segment).

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::error::{IoContext, StorageError};

pub(crate) const TXN_INDEX_SUFFIX: &str = "txnindex";
const ENTRY_BYTES: usize = 28;

/// One aborted transaction in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The transaction's first offset in this partition.
    pub first_offset: i64,
    /// The offset of the abort marker.
    pub last_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[..8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.first_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.last_offset.to_be_bytes());
        let crc = crc32c::crc32c(&out[..24]);
        out[24..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<AbortedTxn> {
        let field = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let crc = u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes"));
        (crc == crc32c::crc32c(&bytes[..24])).then(|| AbortedTxn {
            producer_id: field(0),
            first_offset: field(8),
            last_offset: field(16),
        })
    }
}

#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// An index with no entries; its file is created by the first entry.
    pub(crate) fn empty(path: PathBuf) -> TxnIndex {
        TxnIndex {
            path,
            entries: Vec::new(),
        }
    }

    /// Loads the entries at `path`; a missing file is an empty index. Returns whether the
    /// file had a damaged tail (which is then cut off).
    pub(crate) fn open(path: PathBuf) -> Result<(TxnIndex, bool), StorageError> {
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((TxnIndex::empty(path), false)),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let entries: Vec<AbortedTxn> = bytes.chunks_exact(ENTRY_BYTES).map_while(AbortedTxn::decode).collect();
        let index = TxnIndex { path, entries };
        let damaged = index.entries.len() * ENTRY_BYTES != bytes.len();
        if damaged {
            index.rewrite()?;
        }
        Ok((index, damaged))
    }

    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Adds an entry, durably. A failed write (a full disk) takes the file back to its
    /// length before it, so the index never keeps a torn entry, and leaves the entries as they
    /// were: the caller can undo what the entry was for and try again later.
    pub(crate) fn append(&mut self, entry: AbortedTxn) -> Result<(), StorageError> {
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .at(&self.path)?;
        let before = (self.entries.len() * ENTRY_BYTES) as u64;
        let written = file
            .write_all(&entry.encode())
            .and_then(|()| file.sync_data())
            .at(&self.path);
        if let Err(e) = written {
            file.set_len(before).at(&self.path)?;
            return Err(e);
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Adds an entry unless it is already there (recovery re-derives entries it may have).
    pub(crate) fn ensure(&mut self, entry: AbortedTxn) -> Result<(), StorageError> {
        if self.entries.contains(&entry) {
            return Ok(());
        }
        self.append(entry)
    }

    /// Drops entries whose marker is at or after `offset`.
    pub(crate) fn truncate_from(&mut self, offset: i64) -> Result<(), StorageError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.last_offset < offset);
        if self.entries.len() != before {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Takes over another index's entries (compaction swaps a segment's files, not its
    /// transactions), writing them under this index's path.
    pub(crate) fn adopt(&mut self, other: &TxnIndex) -> Result<(), StorageError> {
        self.entries = other.entries.clone();
        if self.path != other.path {
            self.rewrite()?;
        }
        Ok(())
    }

    pub(crate) fn renamed(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }

    pub(crate) fn delete_file(&self) -> Result<(), StorageError> {
        crate::log::remove_if_exists(&self.path)
    }

    fn rewrite(&self) -> Result<(), StorageError> {
        if self.entries.is_empty() {
            return self.delete_file();
        }
        let bytes: Vec<u8> = self.entries.iter().flat_map(AbortedTxn::encode).collect();
        checkpoint::write_atomically(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
        }
    }

    #[test]
    fn entries_persist_truncate_and_survive_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndex::empty(path.clone());
        assert!(!path.exists());
        index.append(entry(1, 0, 5)).unwrap();
        index.append(entry(2, 3, 9)).unwrap();
        index.ensure(entry(2, 3, 9)).unwrap();
        let (reopened, damaged) = TxnIndex::open(path.clone()).unwrap();
        assert!(!damaged);
        assert_eq!(reopened.entries(), &[entry(1, 0, 5), entry(2, 3, 9)]);

        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        fs::write(&path, &bytes).unwrap();
        let (mut reopened, damaged) = TxnIndex::open(path.clone()).unwrap();
        assert!(damaged);
        assert_eq!(reopened.entries().len(), 2);
        assert_eq!(fs::read(&path).unwrap().len(), 2 * ENTRY_BYTES);

        reopened.truncate_from(9).unwrap();
        assert_eq!(TxnIndex::open(path.clone()).unwrap().0.entries(), &[entry(1, 0, 5)]);
        reopened.truncate_from(0).unwrap();
        assert!(!path.exists());

        fs::write(&path, [0u8; ENTRY_BYTES]).unwrap();
        let (damaged_index, damaged) = TxnIndex::open(path).unwrap();
        assert!(damaged && damaged_index.entries().is_empty());
    }
}
