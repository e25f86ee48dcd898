//! The leader epoch cache and its `leader-epoch-checkpoint` file: for each leader epoch, the
//! first offset written in it. OffsetForLeaderEpoch answers from here, and replication will
//! use it to find where a follower diverged.
//!
//! Body: `count u32 | (epoch i32, start_offset i64) * count`, inside a checksummed frame.

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Kind};
use crate::error::StorageError;

pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: i32,
    pub(crate) start_offset: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    /// Epochs and start offsets both strictly increase.
    entries: Vec<EpochEntry>,
    /// An entry was assigned but not yet written to the file ([`LeaderEpochCache::assign_deferred`]).
    unpersisted: bool,
}

impl LeaderEpochCache {
    /// Loads the checkpoint; a missing or corrupt file gives an empty cache (the caller rebuilds
    /// it from batch headers during recovery) and `false`.
    /// The cache of a log just created: no entries, no file yet.
    pub(crate) fn empty(dir: &Path) -> Self {
        LeaderEpochCache {
            path: dir.join(FILE_NAME),
            entries: Vec::new(),
            unpersisted: false,
        }
    }

    pub(crate) fn load(dir: &Path) -> (Self, bool) {
        let path = dir.join(FILE_NAME);
        let entries = match checkpoint::read_frame(&path, Kind::LeaderEpochs) {
            Ok(Some(body)) => decode(&body),
            _ => None,
        };
        let ok = entries.is_some();
        (
            LeaderEpochCache {
                path,
                entries: entries.unwrap_or_default(),
                unpersisted: false,
            },
            ok,
        )
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The first offset written in `epoch`, if the cache knows that exact epoch.
    pub(crate) fn start_offset_of(&self, epoch: i32) -> Option<i64> {
        self.entries.iter().find(|e| e.epoch == epoch).map(|e| e.start_offset)
    }

    /// The latest epoch that began below `offset`: the newest epoch that owns data in a log
    /// ending at `offset` (an epoch starting at the log end was assigned but wrote nothing).
    pub(crate) fn latest_epoch_below(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset < offset)
            .map(|e| e.epoch)
    }

    pub(crate) fn latest_start_offset(&self) -> Option<i64> {
        self.entries.last().map(|e| e.start_offset)
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Notes that `epoch` wrote from `offset` on. Returns whether anything changed. Epochs below
    /// the latest are ignored: only a newer leader starts a new entry.
    pub(crate) fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        if let Some(last) = self.entries.last() {
            assert!(offset >= last.start_offset, "epoch start offsets must not decrease");
            if offset == last.start_offset {
                // The previous epoch wrote nothing; the newer one owns this offset.
                let _ = self.entries.pop();
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset: offset,
        });
        true
    }

    /// Forgets epochs starting at or after `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self.entries.partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// The log now starts at `start_offset`: earlier epochs go, the one covering it starts there.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if covering == 0 {
            return false;
        }
        let mut changed = covering > 1;
        let _ = self.entries.drain(..covering - 1);
        if self.entries[0].start_offset < start_offset {
            self.entries[0].start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` and the offset where the
    /// next epoch began (or the log end offset for the latest epoch). `None` means undefined.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let latest = self.entries.last()?;
        if epoch == latest.epoch {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].epoch, next.start_offset)),
            None => Some((epoch, next.start_offset)),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn persist(&mut self) -> Result<(), StorageError> {
        checkpoint::write_atomically(
            &self.path,
            &checkpoint::encode_frame(Kind::LeaderEpochs, &encode(&self.entries)),
        )?;
        self.unpersisted = false;
        Ok(())
    }

    /// [`LeaderEpochCache::assign`] without writing the file yet: a new leader's epoch starts
    /// at the log end, so nothing of it is in the log until its first append, and until a
    /// flush moves the recovery point past that append, recovery finds the epoch again in the
    /// batches it scans. So the file is written before the next recovery point is
    /// ([`LeaderEpochCache::persist_deferred`]). A broker taking on many leaderships at once
    /// saves an fsync pair and a file creation each.
    pub(crate) fn assign_deferred(&mut self, epoch: i32, offset: i64) -> bool {
        let assigned = self.assign(epoch, offset);
        self.unpersisted |= assigned;
        assigned
    }

    /// Writes the file if an entry was assigned without it, all but the fsync of the log's
    /// directory, which the caller (a flush) does before it moves the recovery point. Returns
    /// whether it replaced the file.
    pub(crate) fn persist_deferred(&mut self) -> Result<bool, StorageError> {
        if !self.unpersisted {
            return Ok(false);
        }
        checkpoint::replace_unsynced(
            &self.path,
            &checkpoint::encode_frame(Kind::LeaderEpochs, &encode(&self.entries)),
        )?;
        self.unpersisted = false;
        Ok(true)
    }
}

fn encode(entries: &[EpochEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * 12);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.start_offset.to_be_bytes());
    }
    out
}

fn decode(body: &[u8]) -> Option<Vec<EpochEntry>> {
    let count = u32::from_be_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let rest = &body[4..];
    if rest.len() != count.checked_mul(12)? {
        return None;
    }
    let entries: Vec<EpochEntry> = rest
        .chunks_exact(12)
        .map(|c| EpochEntry {
            epoch: i32::from_be_bytes(c[..4].try_into().expect("4")),
            start_offset: i64::from_be_bytes(c[4..].try_into().expect("8")),
        })
        .collect();
    let increasing = entries
        .windows(2)
        .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
    increasing.then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cache, _) = LeaderEpochCache::load(dir.path());
        assert!(cache.assign(1, 0));
        assert!(!cache.assign(1, 5));
        assert!(cache.assign(3, 10));
        cache.persist().unwrap();
        let (loaded, ok) = LeaderEpochCache::load(dir.path());
        assert!(ok);
        assert_eq!(loaded.entries(), cache.entries());
        std::fs::write(dir.path().join(FILE_NAME), b"junk").unwrap();
        let (loaded, ok) = LeaderEpochCache::load(dir.path());
        assert!(!ok);
        assert!(loaded.entries().is_empty());
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cache, _) = LeaderEpochCache::load(dir.path());
        assert_eq!(cache.end_offset_for(0, 0), None);
        cache.assign(1, 0);
        cache.assign(3, 10);
        cache.assign(5, 20);
        assert_eq!(cache.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(cache.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(cache.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(cache.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(cache.end_offset_for(6, 30), None);
        cache.truncate_from_end(20);
        assert_eq!(cache.latest_epoch(), Some(3));
        cache.truncate_from_start(12);
        assert_eq!(
            cache.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 12
            }]
        );
    }
}
