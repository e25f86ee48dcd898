//! The shared machinery of the two sparse indexes: fixed-size entries kept in memory and
//! appended to a file. Each index module owns its entry format and its validity rules.
//!
//! Files are not preallocated, so a file's length is always a whole number of entries; any
//! other length means a torn write and the index is rebuilt. A file is created with its first
//! entry: a segment smaller than `index.interval.bytes` has none, so a new partition costs
//! two fewer files (which matters when a broker takes on a thousand at once).

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
    /// `None` until the first entry is written.
    file: Option<File>,
    pub(crate) entries: Vec<E>,
    max_entries: usize,
}

impl<E: Entry> IndexFile<E> {
    /// An empty index, replacing any file at `path`; its file is created with the first entry.
    pub(crate) fn create(path: &Path, max_bytes: u64) -> Result<Self, StorageError> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(path, e)),
        }
        Ok(IndexFile {
            path: path.to_path_buf(),
            file: None,
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
            file: Some(file),
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
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .truncate(false)
                    .open(&self.path)
                    .at(&self.path)?;
                file.set_len(0).at(&self.path)?;
                self.file.insert(file)
            }
        };
        file.write_all(&buf).at(&self.path)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Keeps the first `len` entries.
    pub(crate) fn truncate(&mut self, len: usize) -> Result<(), StorageError> {
        if len >= self.entries.len() {
            return Ok(());
        }
        if len == 0 {
            // No entries, no file: as a new segment has.
            self.file = None;
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(&self.path, e)),
            }
        } else if let Some(file) = &self.file {
            file.set_len((len * E::LEN) as u64).at(&self.path)?;
        }
        self.entries.truncate(len);
        Ok(())
    }

    /// A second handle on the index file, to fsync without borrowing the index (`None` while
    /// it has no file).
    pub(crate) fn handle(&self) -> Result<Option<File>, StorageError> {
        self.file.as_ref().map(|f| f.try_clone().at(&self.path)).transpose()
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        match &self.file {
            Some(file) => file.sync_data().at(&self.path),
            None => Ok(()),
        }
    }

    /// Moves the file (if it has one) to `path`.
    pub(crate) fn rename(&mut self, path: &Path) -> Result<(), StorageError> {
        if self.file.is_some() {
            std::fs::rename(&self.path, path).at(path)?;
        }
        self.path = path.to_path_buf();
        Ok(())
    }
}

fn max_entries<E: Entry>(max_bytes: u64) -> usize {
    // Always room for one entry, so a tiny segment.index.bytes cannot wedge the log.
    ((max_bytes / E::LEN as u64).max(1)).min(usize::MAX as u64) as usize
}
