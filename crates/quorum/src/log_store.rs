//! The Raft log on disk, plus the vote and the committed and purged log ids: openraft's
//! [`RaftLogStorage`].
//!
//! Files under `<data_dir>/`:
//!
//! ```text
//! log/00000000000000000000.log   segment: entries 0, 1, 2, ... each a frame (see disk.rs)
//! log/00000000000000004817.log   next segment, named by its first index (20 digits)
//! vote.json                      the last vote, replaced atomically (fsync before return)
//! committed.json                 the last committed log id, replaced atomically
//! purged.json                    the last purged log id, replaced atomically before purging
//! ```
//!
//! Each frame's payload is the serde_json of an openraft `Entry`. Appends go to the last
//! segment, which is fsynced before the flush callback runs; a segment past
//! `log_segment_bytes` is closed and the next append starts a new one.
//!
//! * **purge(upto)** writes `purged.json` first, then deletes every segment whose entries are
//!   all purged. Entries left in a kept segment below the purge point are skipped on open.
//! * **truncate(since)** deletes segments from the newest back while they start at or after
//!   `since`, then cuts the segment holding `since` at that entry's offset: never a hole.
//! * **open** reads every segment in order and checks each frame's checksum and that indexes
//!   run on without a gap. A frame that is cut short or does not check out in the *last*
//!   segment is a torn write from a crash: the segment is truncated there and a warning says so.
//!   The same in an earlier segment means the disk lost acknowledged data: open fails.
//!
//! The live log (entries above the purge point) is also held in memory for reads; it is bounded
//! by the snapshot policy (`snapshot_logs_since_last` + `logs_to_keep_after_snapshot` + what
//! arrives while a snapshot is built).
//!
//! Writes are done synchronously inside the async methods: openraft calls them one at a time
//! from its core task and requires them serialised, and the metadata log is small. A failed write
//! poisons the store (as fjall does): every later write fails and openraft stops the node, which
//! on restart truncates whatever tail the failure left.

// openraft's storage traits return its `StorageError` (224 bytes); the helpers return it too.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Write;
use std::ops::RangeBounds;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;

use openraft::storage::LogFlushed;
use openraft::storage::LogState;
use openraft::storage::RaftLogStorage;
use openraft::RaftLogReader;
use openraft::StorageIOError;

use crate::disk;
use crate::disk::FrameRead;
use crate::error::QuorumError;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::StorageError;
use crate::types::TypeConfig;
use crate::types::Vote;

const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
const PURGED_FILE: &str = "purged.json";
const LOG_DIR: &str = "log";
const SEGMENT_SUFFIX: &str = ".log";

/// The log store; clones share one state (a clone is also the log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

struct Segment {
    first_index: u64,
    path: PathBuf,
    /// Byte offset of each entry in the file: entry `first_index + i` starts at `offsets[i]`.
    offsets: Vec<u64>,
    bytes: u64,
}

impl Segment {
    fn end_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }
}

struct LogInner {
    dir: PathBuf,
    log_dir: PathBuf,
    segment_bytes_max: u64,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    /// Every entry above `purged`, in index order without a gap.
    entries: BTreeMap<u64, Entry>,
    segments: Vec<Segment>,
    /// The last segment, open for appending.
    active: Option<File>,
    /// Set by the first failed write; no write is attempted after it.
    poisoned: Option<String>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> QuorumError {
    QuorumError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, QuorumError> {
    let Some(bytes) =
        disk::read_optional(path).map_err(|e| QuorumError::io(format!("reading {}", path.display()), e))?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(path, e.to_string()))
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, truncating a torn tail.
    pub fn open(dir: &Path, segment_bytes_max: u64) -> Result<LogStore, QuorumError> {
        let log_dir = dir.join(LOG_DIR);
        fs::create_dir_all(&log_dir).map_err(|e| QuorumError::io(format!("creating {}", log_dir.display()), e))?;
        let mut inner = LogInner {
            dir: dir.to_path_buf(),
            log_dir: log_dir.clone(),
            segment_bytes_max,
            vote: read_json(&dir.join(VOTE_FILE))?,
            committed: read_json(&dir.join(COMMITTED_FILE))?,
            purged: read_json(&dir.join(PURGED_FILE))?,
            entries: BTreeMap::new(),
            segments: Vec::new(),
            active: None,
            poisoned: None,
        };
        inner.load_segments()?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        // A panic while holding this lock left the log in an unknown state: stop.
        self.inner.lock().expect("log store lock poisoned by a panic")
    }
}

impl LogInner {
    fn load_segments(&mut self) -> Result<(), QuorumError> {
        let read_dir = |e| QuorumError::io(format!("listing {}", self.log_dir.display()), e);
        let mut firsts = Vec::new();
        for item in fs::read_dir(&self.log_dir).map_err(read_dir)? {
            let name = item.map_err(read_dir)?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
                let first = stem
                    .parse::<u64>()
                    .map_err(|_| corrupt(&self.log_dir, format!("stray file {name}")))?;
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let count = firsts.len();
        for (k, first_index) in firsts.into_iter().enumerate() {
            let path = self.log_dir.join(segment_name(first_index));
            if let Some(previous) = self.segments.last() {
                if previous.end_index() != first_index {
                    return Err(corrupt(
                        &path,
                        format!(
                            "segment starts at {first_index} but the previous one ends at {}",
                            previous.end_index()
                        ),
                    ));
                }
            }
            let segment = self.load_segment(first_index, path, k + 1 == count)?;
            if segment.offsets.is_empty() {
                // Only the last segment can be empty (a crash right after it was created).
                fs::remove_file(&segment.path)
                    .and_then(|()| disk::fsync_dir(&self.log_dir))
                    .map_err(|e| QuorumError::io(format!("removing empty {}", segment.path.display()), e))?;
                continue;
            }
            self.segments.push(segment);
        }
        // With nothing purged the log may start anywhere (openraft's suite starts at 1).
        if let (Some((&first, _)), Some(purged)) = (self.entries.first_key_value(), self.purged) {
            let expected_first = purged.index + 1;
            if first != expected_first {
                return Err(corrupt(
                    &self.log_dir,
                    format!("the log resumes at index {first} but the purged log ends before {expected_first}"),
                ));
            }
        }
        if let Some(last) = self.segments.last() {
            let file = OpenOptions::new()
                .append(true)
                .open(&last.path)
                .map_err(|e| QuorumError::io(format!("opening {}", last.path.display()), e))?;
            self.active = Some(file);
        }
        Ok(())
    }

    fn load_segment(&mut self, first_index: u64, path: PathBuf, is_last: bool) -> Result<Segment, QuorumError> {
        let bytes = fs::read(&path).map_err(|e| QuorumError::io(format!("reading {}", path.display()), e))?;
        let mut offsets = Vec::new();
        let mut offset = 0usize;
        let mut damage = None;
        while offset < bytes.len() {
            let index = first_index + offsets.len() as u64;
            match disk::decode_frame(&bytes[offset..]) {
                FrameRead::Complete { payload, frame_bytes } => match serde_json::from_slice::<Entry>(payload) {
                    Ok(entry) if entry.log_id.index == index => {
                        if self.purged.as_ref().is_none_or(|p| index > p.index) {
                            self.entries.insert(index, entry);
                        }
                        offsets.push(offset as u64);
                        offset += frame_bytes;
                    }
                    Ok(entry) => {
                        damage = Some(format!("entry {} found where {index} belongs", entry.log_id.index));
                        break;
                    }
                    Err(e) => {
                        damage = Some(format!("entry {index} does not decode: {e}"));
                        break;
                    }
                },
                FrameRead::Incomplete => {
                    damage = Some(format!("entry {index} is cut short"));
                    break;
                }
                FrameRead::Corrupt(reason) => {
                    damage = Some(format!("entry {index}: {reason}"));
                    break;
                }
            }
        }
        if let Some(reason) = damage {
            if !is_last {
                return Err(corrupt(
                    &path,
                    format!("{reason} at offset {offset}, in a segment that is not the last"),
                ));
            }
            tracing::warn!(
                segment = %path.display(),
                offset,
                dropped_bytes = bytes.len() - offset,
                "quorum log: truncated a torn or corrupt tail ({reason}); entries before it are kept"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| QuorumError::io(format!("opening {}", path.display()), e))?;
            file.set_len(offset as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| QuorumError::io(format!("truncating {}", path.display()), e))?;
        }
        Ok(Segment {
            first_index,
            path,
            offsets,
            bytes: offset as u64,
        })
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        match &self.poisoned {
            None => Ok(()),
            Some(why) => Err(StorageIOError::write_logs(&io::Error::other(format!(
                "quorum log is poisoned by an earlier failed write: {why}"
            )))
            .into()),
        }
    }

    /// Marks the store failed and returns the error for openraft.
    fn poison(&mut self, what: &str, e: io::Error) -> StorageError {
        let why = format!("{what}: {e}");
        tracing::error!("quorum log write failed, no further writes: {why}");
        self.poisoned = Some(why);
        StorageIOError::write_logs(&e).into()
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.last_key_value().map(|(_, e)| e.log_id).or(self.purged)
    }

    fn next_index(&self) -> u64 {
        self.last_log_id().map_or(0, |id| id.index + 1)
    }

    fn write_small(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_writable()?;
        let dir = self.dir.clone();
        disk::write_atomic(&dir, name, bytes).map_err(|e| self.poison(name, e))
    }

    fn append_entries(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        self.check_writable()?;
        let mut pending = Vec::new();
        let mut created_segment = false;
        for entry in entries {
            let index = entry.log_id.index;
            if self.purged.is_some_and(|p| index <= p.index) {
                // Already covered by the snapshot the purge followed (openraft's suite does this
                // after its start-up purge); keeping it would put it below the purge point.
                tracing::debug!(index, "quorum log: not appending an entry at or below the purge point");
                continue;
            }
            let first_ever = self.entries.is_empty() && self.purged.is_none();
            if index != self.next_index() && !first_ever {
                let e = io::Error::other(format!(
                    "append at index {index} would leave a hole after {}",
                    self.next_index()
                ));
                return Err(self.poison("append", e));
            }
            let payload =
                serde_json::to_vec(&entry).map_err(|e| self.poison("encoding an entry", io::Error::other(e)))?;
            let roll = self.segments.last().is_none_or(|s| s.bytes >= self.segment_bytes_max)
                // A segment must start right after the previous one (purge may have removed all).
                || self.segments.last().is_some_and(|s| s.end_index() != index);
            if roll {
                self.flush_pending(&mut pending).map_err(|e| self.poison("append", e))?;
                let path = self.log_dir.join(segment_name(index));
                let file = OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| self.poison("creating a segment", e))?;
                self.active = Some(file);
                self.segments.push(Segment {
                    first_index: index,
                    path,
                    offsets: Vec::new(),
                    bytes: 0,
                });
                created_segment = true;
            }
            let segment = self.segments.last_mut().expect("a segment to append to");
            segment.offsets.push(segment.bytes);
            let before = pending.len();
            disk::encode_frame(&payload, &mut pending);
            segment.bytes += (pending.len() - before) as u64;
            self.entries.insert(index, entry);
        }
        self.flush_pending(&mut pending).map_err(|e| self.poison("append", e))?;
        if created_segment {
            disk::fsync_dir(&self.log_dir).map_err(|e| self.poison("syncing the log dir", e))?;
        }
        Ok(())
    }

    /// Writes `pending` to the active segment and makes it durable.
    fn flush_pending(&mut self, pending: &mut Vec<u8>) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let file = self.active.as_mut().expect("pending bytes have an active segment");
        file.write_all(pending)?;
        file.sync_data()?;
        pending.clear();
        Ok(())
    }

    fn truncate_since(&mut self, index: u64) -> Result<(), StorageError> {
        self.check_writable()?;
        if self.purged.is_some_and(|p| index <= p.index) {
            let e = io::Error::other(format!("truncating at {index} would cut purged entries"));
            return Err(self.poison("truncate", e));
        }
        let _removed = self.entries.split_off(&index);
        self.active = None;
        let mut removed_files = false;
        while let Some(last) = self.segments.last() {
            if last.first_index >= index {
                let path = last.path.clone();
                fs::remove_file(&path).map_err(|e| self.poison("removing a segment", e))?;
                self.segments.pop();
                removed_files = true;
                continue;
            }
            if last.end_index() > index {
                let offset = last.offsets[(index - last.first_index) as usize];
                let result = OpenOptions::new().write(true).open(&last.path).and_then(|f| {
                    f.set_len(offset)?;
                    f.sync_all()
                });
                result.map_err(|e| self.poison("cutting a segment", e))?;
                let last = self.segments.last_mut().expect("checked above");
                last.offsets.truncate((index - last.first_index) as usize);
                last.bytes = offset;
            }
            break;
        }
        if removed_files {
            disk::fsync_dir(&self.log_dir).map_err(|e| self.poison("syncing the log dir", e))?;
        }
        self.reopen_active()
    }

    fn purge_upto(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if self.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&log_id).expect("a log id encodes");
        self.write_small(PURGED_FILE, &bytes)?;
        self.purged = Some(log_id);
        let kept = self.entries.split_off(&(log_id.index + 1));
        self.entries = kept;
        let mut removed = 0;
        for segment in &self.segments {
            if segment.end_index() > log_id.index + 1 {
                break;
            }
            if let Err(e) = fs::remove_file(&segment.path) {
                return Err(self.poison("removing a purged segment", e));
            }
            removed += 1;
        }
        if removed > 0 {
            let _purged: Vec<Segment> = self.segments.drain(..removed).collect();
            disk::fsync_dir(&self.log_dir).map_err(|e| self.poison("syncing the log dir", e))?;
            if self.segments.is_empty() {
                self.active = None;
            }
        }
        Ok(())
    }

    fn reopen_active(&mut self) -> Result<(), StorageError> {
        self.active = None;
        if let Some(last) = self.segments.last() {
            let path = last.path.clone();
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| self.poison("reopening a segment", e))?;
            self.active = Some(file);
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: inner.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(vote).expect("a vote encodes");
        let mut inner = self.lock();
        inner.write_small(VOTE_FILE, &bytes)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.committed == committed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&committed).expect("a log id encodes");
        inner.write_small(COMMITTED_FILE, &bytes)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.lock().append_entries(entries);
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "quorum log: truncate");
        self.lock().truncate_since(log_id.index)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "quorum log: purge");
        self.lock().purge_upto(log_id)
    }
}
