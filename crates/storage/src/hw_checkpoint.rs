//! `replication-offset-checkpoint`: the high watermarks of every replicated log in one log
//! directory, in one file (Kafka's name and role). The broker writes it on an interval and at
//! shutdown, one atomic replacement (two fsyncs) per directory however many partitions it
//! holds, and hands each log its entry when it opens it
//! ([`crate::LogOpenOptions::high_watermark`]).
//!
//! Entries are keyed by the log's directory name (`<topic>-<partition>`). The body is
//! `count u32 | (name length u16 | name | high watermark i64)*`, big endian, in the framed,
//! checksummed format of the other checkpoints. A stale file is safe (a high watermark only
//! grows; a restarted replica learns the current one from its leader or followers), so a
//! damaged one is reported and treated as absent.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::{self, Kind};
use crate::error::StorageError;

/// The file's name in a log directory.
pub const FILE: &str = "replication-offset-checkpoint";

/// The high watermarks recorded in `log_dir`, by log directory name; empty if there is no file.
pub fn read(log_dir: &Path) -> Result<BTreeMap<String, i64>, StorageError> {
    let path = log_dir.join(FILE);
    let Some(body) = checkpoint::read_frame(&path, Kind::HighWatermarks)? else {
        return Ok(BTreeMap::new());
    };
    let bad = |reason: &str| StorageError::corrupt(&path, "high watermark checkpoint", reason);
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
        let high_watermark = i64::from_be_bytes(take(8).ok_or_else(truncated)?.try_into().expect("8 bytes"));
        entries.insert(name, high_watermark);
    }
    if at != body.len() {
        return Err(bad("bytes after the last entry"));
    }
    Ok(entries)
}

fn encode(entries: &BTreeMap<String, i64>) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + entries.len() * 32);
    body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (name, high_watermark) in entries {
        let name = name.as_bytes();
        let len = u16::try_from(name.len()).expect("log directory names are short");
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(name);
        body.extend_from_slice(&high_watermark.to_be_bytes());
    }
    body
}

/// Replaces `log_dir`'s checkpoint with `entries`, atomically and durably.
pub fn write(log_dir: &Path, entries: &BTreeMap<String, i64>) -> Result<(), StorageError> {
    checkpoint::write_atomically(
        &log_dir.join(FILE),
        &checkpoint::encode_frame(Kind::HighWatermarks, &encode(entries)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty(), "no file: no entries");
        let entries = BTreeMap::from([("orders-0".to_string(), 42), ("ü.topic-17".to_string(), 0)]);
        write(dir.path(), &entries).unwrap();
        assert_eq!(read(dir.path()).unwrap(), entries);
        write(dir.path(), &BTreeMap::new()).unwrap();
        assert!(read(dir.path()).unwrap().is_empty());

        write(dir.path(), &entries).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(read(dir.path()), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn a_framed_body_that_lies_about_its_entries_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        // Says two entries, holds one; then one entry followed by stray bytes.
        let mut short = encode(&BTreeMap::from([("a-0".to_string(), 1)]));
        short[..4].copy_from_slice(&2u32.to_be_bytes());
        let mut long = encode(&BTreeMap::from([("a-0".to_string(), 1)]));
        long.push(7);
        for body in [short, long] {
            checkpoint::write_atomically(&path, &checkpoint::encode_frame(Kind::HighWatermarks, &body)).unwrap();
            assert!(read(dir.path()).is_err());
        }
    }
}
