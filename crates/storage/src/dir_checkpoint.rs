//! Checkpoints of a whole log directory: one file holding an offset for every log in it, so
//! the broker keeps them with one atomic replacement (two fsyncs) per directory however many
//! partitions it holds, and hands each log its entry when it opens it. Kafka keeps the same
//! two, under the same names:
//!
//! - [`HIGH_WATERMARKS`] (`replication-offset-checkpoint`): each replicated log's high
//!   watermark ([`crate::LogOpenOptions::high_watermark`]). The broker writes it on an interval
//!   and at shutdown. A stale file is safe: a high watermark only grows, and a restarted
//!   replica learns the current one from its leader or followers.
//! - [`RECOVERY_POINTS`] (`recovery-point-offset-checkpoint`): each log's recovery point,
//!   below which everything was fsynced ([`crate::LogOpenOptions::recovery_point`]). The broker
//!   writes it after each flush pass, from the logs' recovery points once their fsyncs have
//!   returned. A stale (lower) entry is safe: recovery only scans more.
//!
//! Entries are keyed by the log's directory name (`<topic>-<partition>`). The body is
//! `count u32 | (name length u16 | name | offset i64)*`, big endian, in the framed,
//! checksummed format of the other checkpoints; the two files are framed as different kinds,
//! so one is never read as the other. A damaged file is reported and treated as absent by the
//! broker.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::{self, Kind};
use crate::error::StorageError;

/// One of a log directory's checkpoint files.
#[derive(Debug, Clone, Copy)]
pub struct DirCheckpoint {
    /// The file's name in the log directory.
    pub file: &'static str,
    kind: Kind,
    what: &'static str,
}

/// `replication-offset-checkpoint`: the high watermark of every replicated log.
pub const HIGH_WATERMARKS: DirCheckpoint = DirCheckpoint {
    file: "replication-offset-checkpoint",
    kind: Kind::HighWatermarks,
    what: "high watermark checkpoint",
};

/// `recovery-point-offset-checkpoint`: the recovery point of every log.
pub const RECOVERY_POINTS: DirCheckpoint = DirCheckpoint {
    file: "recovery-point-offset-checkpoint",
    kind: Kind::RecoveryPoints,
    what: "recovery point checkpoint",
};

impl DirCheckpoint {
    /// The offsets recorded in `log_dir`, by log directory name; empty if there is no file.
    pub fn read(&self, log_dir: &Path) -> Result<BTreeMap<String, i64>, StorageError> {
        let path = log_dir.join(self.file);
        let Some(body) = checkpoint::read_frame(&path, self.kind)? else {
            return Ok(BTreeMap::new());
        };
        let bad = |reason: &str| StorageError::corrupt(&path, self.what, reason);
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let taken = body.get(at..at + n)?;
            at += n;
            Some(taken)
        };
        let truncated = || bad("truncated entry");
        let count = u32::from_be_bytes(take(4).ok_or_else(truncated)?.try_into().expect("4 bytes"));
        let mut entries = BTreeMap::new();
        for _ in 0..count {
            let len = u16::from_be_bytes(take(2).ok_or_else(truncated)?.try_into().expect("2 bytes")) as usize;
            let name = std::str::from_utf8(take(len).ok_or_else(truncated)?)
                .map_err(|_| bad("a name is not UTF-8"))?
                .to_string();
            let offset = i64::from_be_bytes(take(8).ok_or_else(truncated)?.try_into().expect("8 bytes"));
            entries.insert(name, offset);
        }
        if at != body.len() {
            return Err(bad("bytes after the last entry"));
        }
        Ok(entries)
    }

    /// Replaces `log_dir`'s file with `entries`, atomically and durably.
    pub fn write(&self, log_dir: &Path, entries: &BTreeMap<String, i64>) -> Result<(), StorageError> {
        checkpoint::write_atomically(
            &log_dir.join(self.file),
            &checkpoint::encode_frame(self.kind, &encode(entries)),
        )
    }
}

fn encode(entries: &BTreeMap<String, i64>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + entries.len() * 32);
    body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (name, offset) in entries {
        let name = name.as_bytes();
        let len = u16::try_from(name.len()).expect("log directory names are short");
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(name);
        body.extend_from_slice(&offset.to_be_bytes());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HIGH_WATERMARKS;
        assert!(hw.read(dir.path()).unwrap().is_empty(), "no file: no entries");
        let entries = BTreeMap::from([("orders-0".to_string(), 42), ("ü.topic-17".to_string(), 0)]);
        hw.write(dir.path(), &entries).unwrap();
        assert_eq!(hw.read(dir.path()).unwrap(), entries);
        hw.write(dir.path(), &BTreeMap::new()).unwrap();
        assert!(hw.read(dir.path()).unwrap().is_empty());

        hw.write(dir.path(), &entries).unwrap();
        let path = dir.path().join(HIGH_WATERMARKS.file);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(hw.read(dir.path()), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn a_framed_body_that_lies_about_its_entries_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HIGH_WATERMARKS.file);
        // Says two entries, holds one; then one entry followed by stray bytes.
        let mut short = encode(&BTreeMap::from([("a-0".to_string(), 1)]));
        short[..4].copy_from_slice(&2u32.to_be_bytes());
        let mut long = encode(&BTreeMap::from([("a-0".to_string(), 1)]));
        long.push(7);
        for body in [short, long] {
            checkpoint::write_atomically(&path, &checkpoint::encode_frame(Kind::HighWatermarks, &body)).unwrap();
            assert!(HIGH_WATERMARKS.read(dir.path()).is_err());
        }
    }

    #[test]
    fn the_two_files_are_apart() {
        let dir = tempfile::tempdir().unwrap();
        let entries = BTreeMap::from([("orders-0".to_string(), 42)]);
        RECOVERY_POINTS.write(dir.path(), &entries).unwrap();
        assert_eq!(RECOVERY_POINTS.read(dir.path()).unwrap(), entries);
        assert!(HIGH_WATERMARKS.read(dir.path()).unwrap().is_empty(), "a different file");
        // A file of one kind under the other's name is refused, not misread.
        std::fs::copy(
            dir.path().join(RECOVERY_POINTS.file),
            dir.path().join(HIGH_WATERMARKS.file),
        )
        .unwrap();
        assert!(matches!(
            HIGH_WATERMARKS.read(dir.path()),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
