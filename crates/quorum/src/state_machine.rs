//! The application's state machine as openraft sees it, and the snapshot file.
//!
//! The application implements [`StateMachine`] and keeps it behind an `Arc<RwLock<S>>` it
//! shares with [`Quorum::start`](crate::Quorum::start): Raft takes the write lock to apply a
//! batch of committed commands or to restore a snapshot, and the read lock to take a snapshot;
//! the application reads its state through its own clone of the `Arc` whenever it likes.
//!
//! The state machine itself is not persisted: `<data_dir>/snapshot.bin` holds the latest
//! snapshot (written atomically), and at start the state machine is restored from it, so
//! openraft replays only the log after it (up to the saved committed index).
//!
//! `snapshot.bin` (big-endian):
//!
//! ```text
//! "STQSNAP1"                                 magic, 8 bytes
//! meta_len: u32, crc32c(meta): u32, meta     serde_json of openraft's SnapshotMeta
//! data_len: u64, crc32c(data): u32, data     StateMachine::snapshot() bytes
//! ```

// openraft's storage traits return its `StorageError` (224 bytes); the helpers return it too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::SystemTime;

use openraft::storage::RaftStateMachine;
use openraft::EntryPayload;
use openraft::RaftSnapshotBuilder;
use openraft::Snapshot;
use openraft::StorageIOError;

use crate::disk;
use crate::error::QuorumError;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::SnapshotMeta;
use crate::types::StorageError;
use crate::types::StoredMembership;
use crate::types::TypeConfig;

/// The application's replicated state. Raft calls these with the lock described in the module
/// docs held; none of them may block on the quorum.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies the command committed at log `index`. Indexes only grow (with gaps where Raft
    /// applied its own entries). A command the application cannot decode must not panic: log it
    /// and carry on, since every replica will see the same bytes.
    fn apply(&mut self, index: u64, command: &[u8]);

    /// A full image of the state, from which [`StateMachine::restore`] rebuilds it.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot's. An error stops this Raft node (it could not
    /// follow the cluster any more).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_MAGIC: &[u8; 8] = b"STQSNAP1";

/// openraft's state machine: the application's, plus what Raft needs to know about it.
pub struct StateMachineStore<S: StateMachine> {
    app: Arc<RwLock<S>>,
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// Metadata of the snapshot in `snapshot.bin`; its lock also serialises writing that file.
    current: Arc<Mutex<Option<SnapshotMeta>>>,
}

fn encode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let meta_json = serde_json::to_vec(meta).expect("snapshot meta encodes");
    let mut out = Vec::with_capacity(8 + 8 + meta_json.len() + 12 + data.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(meta_json.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&meta_json).to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn decode_snapshot(bytes: &[u8]) -> Result<(SnapshotMeta, &[u8]), String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err(format!("file ends {} bytes early", n - bytes.len()));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    let mut rest = bytes;
    if take(&mut rest, 8)? != SNAPSHOT_MAGIC {
        return Err("not a snapshot file (bad magic)".to_string());
    }
    let meta_len = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    let meta_crc = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
    let meta_json = take(&mut rest, meta_len)?;
    if crc32c::crc32c(meta_json) != meta_crc {
        return Err("snapshot metadata checksum mismatch".to_string());
    }
    let meta: SnapshotMeta = serde_json::from_slice(meta_json).map_err(|e| format!("snapshot metadata: {e}"))?;
    let data_len = u64::from_be_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
    let data_crc = u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
    let data_len = usize::try_from(data_len).map_err(|_| "snapshot data length overflows".to_string())?;
    let data = take(&mut rest, data_len)?;
    if crc32c::crc32c(data) != data_crc {
        return Err("snapshot data checksum mismatch".to_string());
    }
    if !rest.is_empty() {
        return Err(format!("{} unexpected bytes after the snapshot data", rest.len()));
    }
    Ok((meta, data))
}

fn read_snapshot_file(dir: &Path) -> Result<Option<(SnapshotMeta, Vec<u8>)>, QuorumError> {
    let path = dir.join(SNAPSHOT_FILE);
    let Some(bytes) =
        disk::read_optional(&path).map_err(|e| QuorumError::io(format!("reading {}", path.display()), e))?
    else {
        return Ok(None);
    };
    let (meta, data) = decode_snapshot(&bytes).map_err(|reason| QuorumError::Corrupt { path, reason })?;
    Ok(Some((meta, data.to_vec())))
}

fn snapshot_io_error(meta: Option<&SnapshotMeta>, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(meta.map(|m| m.signature()), &std::io::Error::other(e.to_string())).into()
}

impl<S: StateMachine> StateMachineStore<S> {
    /// Wraps the application's (empty) state machine and restores it from the latest snapshot
    /// under `dir`, if any.
    pub fn open(dir: &Path, app: Arc<RwLock<S>>) -> Result<Self, QuorumError> {
        let mut store = StateMachineStore {
            app,
            dir: dir.to_path_buf(),
            last_applied: None,
            membership: StoredMembership::default(),
            current: Arc::new(Mutex::new(None)),
        };
        if let Some((meta, data)) = read_snapshot_file(dir)? {
            store
                .app_write()
                .restore(&data)
                .map_err(|reason| QuorumError::Corrupt {
                    path: dir.join(SNAPSHOT_FILE),
                    reason: format!("the state machine refused the snapshot: {reason}"),
                })?;
            tracing::info!(snapshot = %meta, "quorum: state machine restored from the snapshot file");
            store.last_applied = meta.last_log_id;
            store.membership = meta.last_membership.clone();
            *store.current.lock().expect("snapshot lock") = Some(meta);
        }
        Ok(store)
    }

    fn app_write(&self) -> std::sync::RwLockWriteGuard<'_, S> {
        // A panic inside the application's apply left its state unknown: stop rather than go on.
        self.app
            .write()
            .expect("application state machine lock poisoned by a panic")
    }
}

/// Writes `snapshot.bin` unless a newer snapshot is already there.
fn persist_snapshot(
    dir: &Path,
    current: &Mutex<Option<SnapshotMeta>>,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    let mut current = current.lock().expect("snapshot lock");
    if current.as_ref().is_some_and(|c| c.last_log_id > meta.last_log_id) {
        return Ok(());
    }
    disk::write_atomic(dir, SNAPSHOT_FILE, &encode_snapshot(meta, data))
        .map_err(|e| snapshot_io_error(Some(meta), e))?;
    *current = Some(meta.clone());
    Ok(())
}

/// A consistent image taken when openraft asked for a builder; written out by `build_snapshot`
/// while later entries are applied.
pub struct SnapshotBuilder {
    dir: PathBuf,
    current: Arc<Mutex<Option<SnapshotMeta>>>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{nanos}", id.leader_id, id.index),
            None => format!("none-{nanos}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let data = std::mem::take(&mut self.data);
        persist_snapshot(&self.dir, &self.current, &meta, &data)?;
        tracing::info!(snapshot = %meta, bytes = data.len(), "quorum: snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<u64>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut app = self
            .app
            .write()
            .expect("application state machine lock poisoned by a panic");
        for entry in entries {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => app.apply(index, &command.0),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            self.last_applied = Some(entry.log_id);
            responses.push(index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let data = self
            .app
            .read()
            .expect("application state machine lock poisoned by a panic")
            .snapshot();
        SnapshotBuilder {
            dir: self.dir.clone(),
            current: self.current.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            data,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        persist_snapshot(&self.dir, &self.current, meta, &data)?;
        self.app_write().restore(&data).map_err(|e| {
            tracing::error!(snapshot = %meta, "quorum: the state machine refused a snapshot: {e}");
            snapshot_io_error(Some(meta), format!("the state machine refused the snapshot: {e}"))
        })?;
        tracing::info!(snapshot = %meta, bytes = data.len(), "quorum: snapshot installed");
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        if self.current.lock().expect("snapshot lock").is_none() {
            return Ok(None);
        }
        let read = read_snapshot_file(&self.dir).map_err(|e| snapshot_io_error(None, e))?;
        Ok(read.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_file_round_trip_and_damage() {
        let meta = SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "x".into(),
        };
        let bytes = encode_snapshot(&meta, b"state");
        let (decoded, data) = decode_snapshot(&bytes).unwrap();
        assert_eq!((decoded, data), (meta, &b"state"[..]));
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_snapshot(&flipped).is_err());
    }
}
