//! Crash recovery of the on-disk log: what survives a reopen, and how a torn or corrupt tail is
//! handled. Garbage and cuts are made to the files directly, as a crash or a bad disk would.

use std::fs;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use openraft::storage::RaftLogStorage;
use openraft::storage::RaftLogStorageExt;
use openraft::CommittedLeaderId;
use openraft::RaftLogReader;
use strom_quorum::types::Entry;
use strom_quorum::types::LogId;
use strom_quorum::types::Vote;
use strom_quorum::Command;
use strom_quorum::LogStore;
use strom_quorum::QuorumError;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: openraft::EntryPayload::Normal(Command(format!("cmd-{index}").into_bytes())),
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

async fn indexes(store: &mut LogStore) -> Vec<u64> {
    store
        .try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

async fn write_log(dir: &Path, count: u64) -> LogStore {
    // ~80-byte frames, 300-byte segments: a handful of segments.
    let mut store = LogStore::open(dir, 300).unwrap();
    for index in 0..count {
        store.blocking_append([entry(1, index)]).await.unwrap();
    }
    store
}

#[tokio::test]
async fn reopen_keeps_entries_vote_committed_purge_and_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = write_log(dir.path(), 30).await;
    assert!(
        segments(dir.path()).len() > 3,
        "several segments: {:?}",
        segments(dir.path())
    );
    let vote = Vote::new_committed(1, 2);
    store.save_vote(&vote).await.unwrap();
    store.save_committed(Some(log_id(1, 20))).await.unwrap();
    store.purge(log_id(1, 9)).await.unwrap();
    store.truncate(log_id(1, 25)).await.unwrap();
    store.blocking_append([entry(2, 25), entry(2, 26)]).await.unwrap();
    let before_segments = segments(dir.path());
    drop(store);

    let mut store = LogStore::open(dir.path(), 300).unwrap();
    assert_eq!(indexes(&mut store).await, (10..=26).collect::<Vec<_>>());
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 9)));
    assert_eq!(state.last_log_id, Some(log_id(2, 26)));
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 20)));
    assert_eq!(segments(dir.path()), before_segments);
    assert!(
        segments(dir.path())[0].file_name().unwrap().to_str().unwrap() > "00000000000000000000.log",
        "whole purged segments are deleted"
    );
}

#[tokio::test]
async fn purge_past_the_end_then_append_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = write_log(dir.path(), 5).await;
    // As after installing a snapshot that is ahead of the local log.
    store.purge(log_id(3, 40)).await.unwrap();
    assert!(indexes(&mut store).await.is_empty());
    store.blocking_append([entry(3, 41)]).await.unwrap();
    drop(store);
    let mut store = LogStore::open(dir.path(), 300).unwrap();
    assert_eq!(indexes(&mut store).await, vec![41]);
    assert_eq!(
        store.get_log_state().await.unwrap().last_purged_log_id,
        Some(log_id(3, 40))
    );
}

#[tokio::test]
async fn garbage_after_the_last_frame_is_truncated_repeatedly() {
    let dir = tempfile::tempdir().unwrap();
    drop(write_log(dir.path(), 12).await);
    let last = segments(dir.path()).pop().unwrap();
    let clean_len = fs::metadata(&last).unwrap().len();
    for round in 0..3u8 {
        let mut file = OpenOptions::new().append(true).open(&last).unwrap();
        file.write_all(&[0xA5 ^ round; 37]).unwrap();
        drop(file);
        let mut store = LogStore::open(dir.path(), 300).unwrap();
        assert_eq!(indexes(&mut store).await, (0..12).collect::<Vec<_>>(), "round {round}");
        assert_eq!(fs::metadata(&last).unwrap().len(), clean_len, "garbage cut off");
    }
    // The log goes on where it stopped.
    let mut store = LogStore::open(dir.path(), 300).unwrap();
    store.blocking_append([entry(1, 12)]).await.unwrap();
    drop(store);
    let mut store = LogStore::open(dir.path(), 300).unwrap();
    assert_eq!(indexes(&mut store).await, (0..13).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_torn_last_frame_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    drop(write_log(dir.path(), 12).await);
    let last = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let mut store = LogStore::open(dir.path(), 300).unwrap();
    assert_eq!(indexes(&mut store).await, (0..11).collect::<Vec<_>>());
    store.blocking_append([entry(1, 11)]).await.unwrap();
    assert_eq!(indexes(&mut store).await, (0..12).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_flipped_byte_in_an_earlier_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(write_log(dir.path(), 20).await);
    let first = segments(dir.path()).remove(0);
    let mut bytes = fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&first, bytes).unwrap();
    match LogStore::open(dir.path(), 300) {
        Err(QuorumError::Corrupt { path, reason }) => {
            assert_eq!(path, first);
            assert!(reason.contains("not the last"), "{reason}");
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened a log whose middle is corrupt"),
    }
}
