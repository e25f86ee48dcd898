//! Transactions in one log: open transactions and the last stable offset, markers, the
//! aborted-transaction index across restarts, crashes and truncation, and compaction of
//! aborted data and old markers.

use std::fs;

use kafka_protocol::records::Compression as Codec;
use strom_record::control::Marker;
use strom_record::ValidatedBatches;

use crate::tests::{read_batches, validated};
use crate::{AbortedTxn, AppendError, CleanupPolicy, Log, LogConfig};

/// A transactional batch of `keys` (value = key) from producer `pid`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, keys: &[&str], timestamp_ms: i64) -> ValidatedBatches {
    batch_of(keys, timestamp_ms, Some((pid, epoch, seq)))
}

/// A plain batch of `keys` (value = key).
fn plain(keys: &[&str], timestamp_ms: i64) -> ValidatedBatches {
    batch_of(keys, timestamp_ms, None)
}

fn batch_of(keys: &[&str], timestamp_ms: i64, producer: Option<(i64, i16, i32)>) -> ValidatedBatches {
    validated(crate::tests::encode(&crate::tests::Spec {
        records: keys.iter().map(|k| (Some(*k), Some(*k))).collect(),
        timestamp_ms,
        codec: Codec::None,
        producer,
        transactional: producer.is_some(),
    }))
}

fn config(compact: bool) -> LogConfig {
    LogConfig {
        segment_bytes: if compact { 250 } else { 600 },
        index_interval_bytes: 100,
        retention_ms: -1,
        cleanup_policy: CleanupPolicy {
            delete: !compact,
            compact,
        },
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

fn append(log: &mut Log, batches: &ValidatedBatches, now: i64) -> i64 {
    let outcome = log.append(batches, 0, now).unwrap();
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    outcome.base_offset
}

fn marker(log: &mut Log, marker: Marker, pid: i64, epoch: i16, now: i64) -> i64 {
    let offset = log.append_marker(marker, pid, epoch, 0, 0, now).unwrap().base_offset;
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    offset
}

fn aborted(pid: i64, first: i64, last: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
    }
}

/// (offset, key) of every data record in the log, control records left out.
fn data_records(log: &Log) -> Vec<(i64, String)> {
    read_batches(log, log.log_start_offset())
        .into_iter()
        .filter(|(header, _)| !header.is_control())
        .flat_map(|(_, bytes)| strom_record::records::decode_records(&bytes).unwrap())
        .map(|r| (r.offset, String::from_utf8(r.key.unwrap().to_vec()).unwrap()))
        .collect()
}

#[test]
fn last_stable_offset_follows_the_oldest_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(false), 0).unwrap().0;
    append(&mut log, &plain(&["a"], 1), 1);
    assert_eq!(log.last_stable_offset(), 1);
    let first_a = append(&mut log, &txn_batch(7, 0, 0, &["t1", "t2"], 2), 2);
    append(&mut log, &plain(&["b"], 3), 3);
    let first_b = append(&mut log, &txn_batch(8, 0, 0, &["u1"], 4), 4);
    append(&mut log, &txn_batch(7, 0, 2, &["t3"], 5), 5);
    assert_eq!((first_a, first_b), (1, 4));
    assert_eq!(log.last_stable_offset(), 1);
    assert_eq!(log.open_transaction(7), Some((0, 1)));
    assert_eq!(log.open_transactions(), vec![(7, 1), (8, 4)]);

    let commit_at = marker(&mut log, Marker::Commit, 7, 0, 6);
    assert_eq!(log.last_stable_offset(), 4);
    assert_eq!(log.open_transaction(7), None);
    let abort_at = marker(&mut log, Marker::Abort, 8, 0, 7);
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
    assert_eq!((commit_at, abort_at), (6, 7));
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![aborted(8, 4, 7)]);
    // Only transactions overlapping the range are listed.
    assert!(log.aborted_transactions(8, i64::MAX).is_empty());
    assert!(log.aborted_transactions(0, 4).is_empty());
    assert_eq!(log.aborted_transactions(7, 8), vec![aborted(8, 4, 7)]);

    // The same producer continues its sequence in its next transaction.
    append(&mut log, &txn_batch(7, 0, 3, &["t4"], 8), 8);
    assert_eq!(log.last_stable_offset(), 8);
    // A marker with an older epoch is refused; a newer one fences the producer.
    assert!(matches!(
        log.append_marker(Marker::Abort, 7, -1, 0, 0, 9),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
    marker(&mut log, Marker::Abort, 7, 1, 9);
    assert!(matches!(
        log.append(&txn_batch(7, 0, 4, &["zombie"], 10), 0, 10),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        log.aborted_transactions(0, i64::MAX),
        vec![aborted(8, 4, 7), aborted(7, 8, 9)]
    );
}

#[test]
fn open_transactions_and_aborts_survive_restarts_and_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(false), 0).unwrap().0;
    // Several segments: 600-byte segments hold a few batches each.
    for i in 0..6 {
        let pid = 100 + i;
        let first = append(&mut log, &txn_batch(pid, 0, 0, &["x", "y"], i), i);
        append(&mut log, &plain(&["p"], i), i);
        let end = if i % 2 == 0 { Marker::Abort } else { Marker::Commit };
        let last = marker(&mut log, end, pid, 0, i);
        assert!(last > first);
    }
    let open_first = append(&mut log, &txn_batch(999, 3, 0, &["open"], 50), 50);
    let expected = log.aborted_transactions(0, i64::MAX);
    assert_eq!(expected.len(), 3);
    assert!(log.segment_count() > 2, "the test needs several segments");

    log.close().unwrap();
    let log = Log::open(dir.path(), config(false), 0).unwrap().0;
    assert_eq!(log.aborted_transactions(0, i64::MAX), expected);
    assert_eq!(log.last_stable_offset(), open_first);
    assert_eq!(log.open_transaction(999), Some((3, open_first)));

    // A crash without snapshots or index files: everything is rebuilt from the log.
    drop(log);
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".snapshot") || name.ends_with(".txnindex") || name == "clean-shutdown" {
            fs::remove_file(&path).unwrap();
        }
    }
    let (mut log, report) = Log::open(dir.path(), config(false), 0).unwrap();
    assert!(!report.clean_shutdown);
    assert_eq!(log.aborted_transactions(0, i64::MAX), expected);
    assert_eq!(log.last_stable_offset(), open_first);

    // Ending the open transaction after the restart stabilises the log.
    marker(&mut log, Marker::Abort, 999, 3, 60);
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
    assert_eq!(
        log.aborted_transactions(open_first, i64::MAX)
            .last()
            .unwrap()
            .producer_id,
        999
    );

    // Truncation below a marker forgets its abort and reopens the transaction.
    let last_abort = *log.aborted_transactions(0, i64::MAX).last().unwrap();
    log.truncate_to(last_abort.last_offset).unwrap();
    assert_eq!(log.aborted_transactions(0, i64::MAX), expected);
    assert_eq!(log.last_stable_offset(), open_first);
}

#[test]
fn compaction_removes_aborted_data_and_then_old_markers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(true), 0).unwrap().0;
    append(&mut log, &plain(&["k1", "k2"], 0), 0);
    // An aborted transaction rewriting k1 must not supersede the committed k1.
    append(&mut log, &txn_batch(5, 0, 0, &["k1", "k3"], 0), 0);
    let abort_at = marker(&mut log, Marker::Abort, 5, 0, 0);
    append(&mut log, &txn_batch(6, 0, 0, &["k2"], 0), 0);
    let commit_at = marker(&mut log, Marker::Commit, 6, 0, 0);
    // The producers' last batches are their markers; another write from each makes the
    // markers ordinary so they can go once empty.
    for (pid, seq) in [(5, 2), (6, 1)] {
        append(&mut log, &txn_batch(pid, 0, seq, &["later"], 0), 0);
        marker(&mut log, Marker::Commit, pid, 0, 0);
    }
    // An open transaction: nothing from its first offset on may be cleaned.
    let open_first = append(&mut log, &txn_batch(7, 0, 0, &["k1"], 0), 0);
    for i in 0..8 {
        append(&mut log, &plain(&[&format!("filler-{i}")], 0), 0);
    }
    assert!(log.segment_count() > 3);

    let report = log.compaction_job(10).unwrap().run().unwrap();
    let report = log.install_compaction(report).unwrap();
    assert!(report.installed);
    assert!(
        report.cleaner_offset <= open_first,
        "cleaned past the last stable offset"
    );
    let records = data_records(&log);
    assert!(
        records.contains(&(0, "k1".to_string())),
        "committed k1 lost: {records:?}"
    );
    assert!(
        !records.iter().any(|(_, k)| k == "k3"),
        "aborted data kept: {records:?}"
    );
    assert!(records.contains(&(open_first, "k1".to_string())));
    // k2 was superseded by the committed transaction.
    assert!(!records.contains(&(1, "k2".to_string())));
    let markers = |log: &Log| -> Vec<i64> {
        read_batches(log, 0)
            .iter()
            .filter(|(h, _)| h.is_control())
            .map(|(h, _)| h.base_offset)
            .collect()
    };
    // Within delete.retention.ms of being written, markers stay.
    assert!(markers(&log).contains(&abort_at) && markers(&log).contains(&commit_at));
    // The abort stays listed for read_committed consumers.
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![aborted(5, 2, abort_at)]);

    // After delete.retention.ms the abort marker (its data gone) is removed; the commit
    // marker stays while its record k2 survives.
    append(&mut log, &plain(&["dirty"], 0), 0);
    marker(&mut log, Marker::Commit, 7, 0, 0);
    for i in 0..8 {
        append(&mut log, &plain(&[&format!("more-{i}")], 0), 0);
    }
    let result = log.compaction_job(5_000).unwrap().run().unwrap();
    assert!(log.install_compaction(result).unwrap().installed);
    let left = markers(&log);
    assert!(!left.contains(&abort_at), "abort marker kept: {left:?}");
    assert!(
        left.contains(&commit_at),
        "commit marker removed while its data lives: {left:?}"
    );
    assert!(data_records(&log).contains(&(open_first, "k1".to_string())));
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
}

#[test]
fn last_stable_offset_never_falls_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(false), 0).unwrap().0;
    let first = append(&mut log, &txn_batch(3, 0, 0, &["open"], 1), 1);
    for i in 0..5 {
        append(&mut log, &plain(&[&format!("p{i}")], 1), 1);
    }
    assert_eq!(log.last_stable_offset(), first);
    // DeleteRecords (or retention) removes the open transaction's first record.
    log.delete_records_before(4).unwrap();
    assert_eq!(log.last_stable_offset(), 4);
    marker(&mut log, Marker::Abort, 3, 0, 2);
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
}

/// Appends plain batches until the log rolls to a new segment.
fn append_until_roll(log: &mut Log, tag: &str) {
    let segments = log.segment_count();
    for i in 0..100 {
        if log.segment_count() > segments {
            return;
        }
        append(log, &plain(&[&format!("{tag}-{i}")], 0), 0);
    }
    panic!("no roll after 100 batches");
}

/// Recovery from a producer snapshot taken while a transaction was open, after compaction
/// removed that transaction's records and its abort marker: the snapshot reopens it, but it
/// must not stay open (holding the LSO back for good). A marker is only removed when it is
/// not the producer's last batch, so a later marker of the same producer is still in the log
/// and closes it on replay.
#[test]
fn removing_a_marker_does_not_leave_a_snapshot_that_reopens_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    // Segments large enough that the marker and the producer's next transaction share one.
    let config = || LogConfig {
        segment_bytes: 1000,
        ..config(true)
    };
    let mut log = Log::open(dir.path(), config(), 0).unwrap().0;
    append(&mut log, &txn_batch(9, 0, 0, &["k"], 0), 0);
    // The roll snapshots producer state with the transaction open.
    append_until_roll(&mut log, "open");
    let abort_at = marker(&mut log, Marker::Abort, 9, 0, 0);
    // A later write from the producer, so the marker is not its last batch.
    append(&mut log, &txn_batch(9, 0, 1, &["other"], 0), 0);
    marker(&mut log, Marker::Commit, 9, 0, 0);
    append_until_roll(&mut log, "after");
    let result = log.compaction_job(5_000).unwrap().run().unwrap();
    assert!(log.install_compaction(result).unwrap().installed);
    let markers: Vec<i64> = read_batches(&log, 0)
        .iter()
        .filter(|(h, _)| h.is_control())
        .map(|(h, _)| h.base_offset)
        .collect();
    assert!(
        !markers.contains(&abort_at),
        "the abort marker should be gone: {markers:?}"
    );
    assert_eq!(log.last_stable_offset(), log.log_end_offset());

    // A crash that also damaged the newest snapshot: producer state comes from whatever
    // snapshot is left, plus replay.
    drop(log);
    let mut snapshots: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    snapshots.sort();
    fs::write(snapshots.last().expect("a snapshot"), b"damaged").unwrap();
    let (log, report) = Log::open(dir.path(), config(), 0).unwrap();
    assert!(
        report.producer_snapshot_offset.is_some_and(|at| at < abort_at),
        "{report}"
    );
    assert_eq!(log.open_transactions(), Vec::<(i64, i64)>::new());
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
}

/// Found by the fault campaign (a full disk): an abort marker reached the log but its entry in
/// the aborted-transaction index did not, while the transaction was already taken as ended, so
/// read_committed consumers read the aborted records as committed. Now a failed index write
/// undoes the marker: the transaction stays open (the last stable offset holds before it), the
/// log still takes writes, and the marker written again later ends it with its entry.
#[test]
fn an_abort_whose_index_entry_cannot_be_written_leaves_the_transaction_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(false), 0).unwrap().0;
    append(&mut log, &plain(&["a"], 1), 1);
    let first = append(&mut log, &txn_batch(7, 0, 0, &["t1", "t2"], 2), 2);
    let end = log.log_end_offset();
    // A directory where the index file goes: its write fails as on a full disk.
    let index = dir.path().join(format!("{:020}.txnindex", 0));
    fs::create_dir(&index).unwrap();

    assert!(log.append_marker(Marker::Abort, 7, 0, 0, 0, 3).is_err());
    assert_eq!(log.log_end_offset(), end, "the marker is undone");
    assert_eq!(log.open_transaction(7), Some((0, first)));
    assert_eq!(log.last_stable_offset(), first);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    assert!(!log.is_poisoned());

    fs::remove_dir(&index).unwrap();
    let at = marker(&mut log, Marker::Abort, 7, 0, 4);
    assert_eq!(at, end);
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![aborted(7, first, at)]);
    assert_eq!(log.last_stable_offset(), log.log_end_offset());
    // And it survives a restart.
    drop(log);
    let log = Log::open(dir.path(), config(false), 0).unwrap().0;
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![aborted(7, first, at)]);
}
