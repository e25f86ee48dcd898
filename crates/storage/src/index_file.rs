//! The shared machinery of the two sparse indexes: fixed-size entries kept in memory and
//! appended to a file. Each index module owns its entry format and its validity rules.
//!
//! Files are not preallocated, so a file's length is always a whole number of entries; any
//! other length means a torn write and the index is rebuilt.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, StorageError};

pub(crate) trait Entry: Copy {
    const LEN: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

#[derive(Debug)]
pub(crate) struct IndexFile<E: Entry> {
    path: PathBuf,
    file: File,
    pub(crate) entries: Vec<E>,
    max_entries: usize,
}

impl<E: Entry> IndexFile<E> {
    /// Creates an empty index, replacing any file at `path`.
    pub(crate) fn create(path: &Path, max_bytes: u64) -> Result<Self, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .at(path)?;
        file.set_len(0).at(path)?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
            max_entries: max_entries::<E>(max_bytes),
        })
    }

    /// Loads an index. `Ok(None)` if the file is missing or not a whole number of entries
    /// (the caller rebuilds); the caller checks the entries themselves.
    pub(crate) fn open(path: &Path, max_bytes: u64) -> Result<Option<Self>, StorageError> {
        let mut file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        let len = file.metadata().at(path)?.len();
        let max_entries = max_entries::<E>(max_bytes);
        if len % E::LEN as u64 != 0 || len / E::LEN as u64 > max_entries as u64 {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(len as usize);
        let _ = file.read_to_end(&mut bytes).at(path)?;
        if bytes.len() as u64 != len {
            return Ok(None);
        }
        let entries = bytes.chunks_exact(E::LEN).map(E::decode).collect();
        Ok(Some(IndexFile {
            path: path.to_path_buf(),
            file,
            entries,
            max_entries,
        }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    pub(crate) fn push(&mut self, entry: E) -> Result<(), StorageError> {
        assert!(!self.is_full(), "append to a full index {}", self.path.display());
        let mut buf = Vec::with_capacity(E::LEN);
        entry.encode(&mut buf);
        self.file.write_all(&buf).at(&self.path)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Keeps the first `len` entries.
    pub(crate) fn truncate(&mut self, len: usize) -> Result<(), StorageError> {
        if len >= self.entries.len() {
            return Ok(());
        }
        self.file.set_len((len * E::LEN) as u64).at(&self.path)?;
        self.entries.truncate(len);
        Ok(())
    }

    /// A second handle on the index file, to fsync without borrowing the index.
    pub(crate) fn handle(&self) -> Result<File, StorageError> {
        self.file.try_clone().at(&self.path)
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().at(&self.path)
    }

    /// Replaces the in-memory and on-disk path after a rename.
    pub(crate) fn renamed(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }
}

fn max_entries<E: Entry>(max_bytes: u64) -> usize {
    // Always room for one entry, so a tiny segment.index.bytes cannot wedge the log.
    ((max_bytes / E::LEN as u64).max(1)).min(usize::MAX as u64) as usize
}
