//! Replication in storage: a follower log fed the leader's batches with `append_replicated`
//! holds the same files and answers the same (offsets, epochs, producers, transactions);
//! refusals write nothing; divergence repair by truncation survives a crash; the high
//! watermark checkpoint; and a proptest of random leader histories replicated in random
//! fetch sizes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::Compression as Codec;
use strom_record::control::Marker;
use strom_record::header::{set_base_offset, set_partition_leader_epoch};
use strom_record::{BatchError, ValidatedBatches};

use crate::checkpoint;
use crate::tests::{encode, read_batches, validated, Spec};
use crate::{CleanupPolicy, Log, LogConfig, LogOpenOptions, ReplicatedAppendError, ReplicatedBatches};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 100,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, config(), 0).unwrap().0
}

fn batch(keys: &[&str], timestamp_ms: i64, producer: Option<(i64, i16, i32)>, transactional: bool) -> ValidatedBatches {
    validated(encode(&Spec {
        records: keys.iter().map(|k| (Some(*k), Some(*k))).collect(),
        timestamp_ms,
        codec: Codec::None,
        producer,
        transactional,
    }))
}

fn plain(keys: &[&str], timestamp_ms: i64) -> ValidatedBatches {
    batch(keys, timestamp_ms, None, false)
}

/// A batch as a leader stored it: `n` records at `base_offset`, written in `epoch`.
fn stored_batch(base_offset: i64, epoch: i32, n: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut bytes = plain(&keys, 100).bytes().to_vec();
    set_base_offset(&mut bytes, base_offset);
    set_partition_leader_epoch(&mut bytes, epoch);
    bytes
}

fn parse(bytes: Vec<u8>) -> Result<ReplicatedBatches, ReplicatedAppendError> {
    ReplicatedBatches::parse(Bytes::from(bytes))
}

/// Every file in a log directory, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The files that hold the log's data: segments, their transaction indexes, the epoch cache.
fn data_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".log") || name.ends_with(".txnindex") || name == "leader-epoch-checkpoint")
        .collect()
}

/// Fetches as a follower would, from its log end, at most `batches_per_fetch` batches at a
/// time, until it has everything the leader has. The caller then sets the high watermark
/// from the leader's.
fn replicate(leader: &Log, follower: &mut Log, batches_per_fetch: usize) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let fetched: Vec<u8> = read_batches(leader, follower.log_end_offset())
            .into_iter()
            .take(batches_per_fetch)
            .flat_map(|(_, bytes)| bytes)
            .collect();
        let appended = follower.append_replicated(&parse(fetched).unwrap(), 0).unwrap();
        assert_eq!(appended.log_end_offset, follower.log_end_offset());
    }
    follower.set_high_watermark(leader.high_watermark());
}

/// What a fetch, OffsetForLeaderEpoch, ListOffsets and a new leader would see.
fn assert_same_answers(leader: &Log, follower: &Log) {
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(follower.log_start_offset(), leader.log_start_offset());
    assert_eq!(follower.high_watermark(), leader.high_watermark());
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    for epoch in -1..8 {
        assert_eq!(
            follower.end_offset_for_epoch(epoch),
            leader.end_offset_for_epoch(epoch),
            "epoch {epoch}"
        );
        assert_eq!(follower.epoch_start_offset(epoch), leader.epoch_start_offset(epoch));
    }
    assert_eq!(follower.latest_epoch(), leader.latest_epoch());
    assert_eq!(follower.last_batch_epoch().unwrap(), leader.last_batch_epoch().unwrap());
    assert_eq!(follower.producers(), leader.producers());
    assert_eq!(follower.open_transactions(), leader.open_transactions());
    assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
    assert_eq!(
        follower.aborted_transactions(0, i64::MAX),
        leader.aborted_transactions(0, i64::MAX)
    );
    for offset in leader.log_start_offset()..leader.log_end_offset() {
        assert_eq!(
            read_batches(follower, offset),
            read_batches(leader, offset),
            "read at {offset}"
        );
    }
    for timestamp in [0, 100, 103, 250, 10_000] {
        assert_eq!(
            follower.offset_for_timestamp(timestamp).unwrap(),
            leader.offset_for_timestamp(timestamp).unwrap()
        );
    }
    assert_eq!(follower.max_timestamp(), leader.max_timestamp());
}

/// A leader history with epochs, idempotent and transactional producers, a commit and an
/// abort, and a transaction left open; one batch per request, as producers send.
fn write_leader_history(leader: &mut Log) {
    assert!(leader.assign_leader_epoch(1).unwrap());
    let mut ts = 100;
    let mut next_ts = || {
        ts += 1;
        ts
    };
    for keys in [&["a", "b"][..], &["c"], &["d", "e", "f"]] {
        let _ = leader.append(&plain(keys, next_ts()), 1, 0).unwrap();
    }
    let _ = leader
        .append(&batch(&["i1", "i2", "i3"], next_ts(), Some((10, 0, 0)), false), 1, 0)
        .unwrap();
    let _ = leader
        .append(&batch(&["i4", "i5"], next_ts(), Some((10, 0, 3)), false), 1, 0)
        .unwrap();
    let _ = leader
        .append(&batch(&["t1", "t2"], next_ts(), Some((20, 0, 0)), true), 1, 0)
        .unwrap();
    let _ = leader.append(&plain(&["g"], next_ts()), 1, 0).unwrap();
    let _ = leader
        .append(&batch(&["u1"], next_ts(), Some((21, 0, 0)), true), 1, 0)
        .unwrap();
    // A new leader at epoch 3 (epoch 2's leader wrote nothing).
    assert!(leader.assign_leader_epoch(3).unwrap());
    assert!(!leader.assign_leader_epoch(2).unwrap(), "older epochs are ignored");
    let _ = leader.append_marker(Marker::Commit, 20, 0, 0, 3, next_ts()).unwrap();
    let _ = leader.append_marker(Marker::Abort, 21, 0, 0, 3, next_ts()).unwrap();
    let _ = leader
        .append(&batch(&["t3"], next_ts(), Some((20, 0, 2)), true), 3, 0)
        .unwrap();
    assert!(leader.assign_leader_epoch(4).unwrap());
    for i in 0..6 {
        let _ = leader.append(&plain(&["h", "j"], next_ts() + i), 4, 0).unwrap();
    }
    let _ = leader
        .append(&batch(&["i6"], next_ts(), Some((10, 0, 5)), false), 4, 0)
        .unwrap();
    let end = leader.log_end_offset();
    leader.set_high_watermark(end);
}

#[test]
fn follower_holds_the_leaders_bytes_and_answers_the_same() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path());
    write_leader_history(&mut leader);
    assert!(leader.segment_count() > 2, "the history spans segments");
    let mut follower = open(follower_dir.path());
    assert_eq!(follower.last_batch_epoch().unwrap(), None);
    replicate(&leader, &mut follower, 2);

    // Once both are flushed, every file is the same: segments, indexes, producer snapshots,
    // epochs, checkpoints. (A new leader's epoch reaches its file with the next flush.)
    leader.flush().unwrap();
    follower.flush().unwrap();
    assert_eq!(files(follower_dir.path()), files(leader_dir.path()));
    assert_same_answers(&leader, &follower);
    assert_eq!(
        follower.open_transactions(),
        vec![(20, leader.open_transaction(20).unwrap().1)]
    );
    assert_eq!(follower.aborted_transactions(0, i64::MAX).len(), 1);
    assert_eq!(follower.last_batch_epoch().unwrap(), Some(4));
    assert_eq!(follower.epoch_start_offset(3), Some(15));
    assert_eq!(follower.epoch_start_offset(2), None);

    // A crash of the follower changes none of it.
    drop(follower);
    let mut follower = open(follower_dir.path());
    follower.set_high_watermark(leader.high_watermark());
    assert_eq!(data_files(follower_dir.path()), data_files(leader_dir.path()));
    assert_same_answers(&leader, &follower);

    // The follower becomes leader: its producers continue where they were.
    assert!(follower.assign_leader_epoch(5).unwrap());
    assert_eq!(follower.end_offset_for_epoch(4), Some((4, follower.log_end_offset())));
    let retry = follower
        .append(&batch(&["i6"], 999, Some((10, 0, 5)), false), 5, 0)
        .unwrap();
    assert!(retry.duplicate, "a retry of the old leader's last batch is recognised");
    let next = follower
        .append(&batch(&["i7"], 999, Some((10, 0, 6)), false), 5, 0)
        .unwrap();
    assert_eq!(next.base_offset, leader.log_end_offset());
    let _ = follower.append_marker(Marker::Abort, 20, 0, 0, 5, 999).unwrap();
    assert!(follower.open_transactions().is_empty());
    assert_eq!(follower.epoch_start_offset(5), Some(leader.log_end_offset()));
}

#[test]
fn compaction_gaps_replicate_and_read_back() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let compact = LogConfig {
        segment_bytes: 300,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        ..config()
    };
    let mut leader = Log::open(leader_dir.path(), compact.clone(), 0).unwrap().0;
    // One key per batch, so whole batches disappear and leave offset gaps. The first batch
    // stays, so both logs' epoch caches start at offset 0.
    let _ = leader.append(&plain(&["first"], 100), 0, 0).unwrap();
    for round in 0..30 {
        let key = ["a", "b", "c", "d"][round % 4];
        let _ = leader.append(&plain(&[key], 100 + round as i64), 0, 0).unwrap();
    }
    let end = leader.log_end_offset();
    leader.set_high_watermark(end);
    let job = leader.compaction_job(10_000).expect("something to clean");
    let result = job.run().unwrap();
    let _ = leader.install_compaction(result).unwrap();
    let bases: Vec<i64> = read_batches(&leader, 0).iter().map(|(h, _)| h.base_offset).collect();
    assert!(
        bases.windows(2).any(|w| w[1] > w[0] + 1),
        "compaction left gaps: {bases:?}"
    );

    let mut follower = Log::open(follower_dir.path(), compact.clone(), 0).unwrap().0;
    // One batch per fetch: a fetch from the follower's log end often starts above it.
    replicate(&leader, &mut follower, 1);
    assert_eq!(read_batches(&follower, 0), read_batches(&leader, 0));
    assert_same_answers(&leader, &follower);

    drop(follower);
    let mut follower = Log::open(follower_dir.path(), compact, 0).unwrap().0;
    follower.set_high_watermark(leader.high_watermark());
    assert_same_answers(&leader, &follower);
}

#[test]
fn refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path());
    let mut first = stored_batch(0, 3, 2);
    first.extend(stored_batch(2, 3, 1));
    let _ = follower.append_replicated(&parse(first.clone()).unwrap(), 0).unwrap();
    let before = files(dir.path());
    let unchanged = |follower: &Log| {
        assert_eq!(files(dir.path()), before);
        assert_eq!(follower.log_end_offset(), 3);
        assert_eq!(follower.leader_epochs(), vec![(3, 0)]);
    };

    // Below the log end offset: the caller truncates or fetches from its log end.
    assert!(matches!(
        follower.append_replicated(&parse(first.clone()).unwrap(), 0),
        Err(ReplicatedAppendError::UnexpectedBaseOffset {
            base_offset: 0,
            log_end_offset: 3
        })
    ));
    unchanged(&follower);

    // A flipped bit anywhere under the CRC, in any batch of the set.
    let mut set = stored_batch(3, 3, 2);
    let first_len = set.len();
    set.extend(stored_batch(5, 3, 2));
    for at in [30, first_len - 1, first_len + 21, set.len() - 1] {
        let mut damaged = set.clone();
        damaged[at] ^= 0x04;
        assert!(
            matches!(
                parse(damaged),
                Err(ReplicatedAppendError::InvalidBatch {
                    source: BatchError::CorruptCrc { .. },
                    ..
                })
            ),
            "flip at {at}"
        );
    }
    // A torn batch, bad magic.
    assert!(matches!(
        parse(set[..set.len() - 3].to_vec()),
        Err(ReplicatedAppendError::InvalidBatch {
            position,
            source: BatchError::Truncated { .. }
        }) if position == first_len
    ));
    let mut bad_magic = set.clone();
    bad_magic[16] = 1;
    assert!(parse(bad_magic).is_err());
    // Offsets that do not move forward, epochs that go back, a missing epoch.
    let mut overlapping = stored_batch(3, 3, 2);
    overlapping.extend(stored_batch(4, 3, 1));
    assert!(matches!(
        parse(overlapping),
        Err(ReplicatedAppendError::OffsetsOutOfOrder {
            previous_last_offset: 4,
            base_offset: 4
        })
    ));
    let mut backwards = stored_batch(3, 4, 1);
    backwards.extend(stored_batch(4, 3, 1));
    assert!(matches!(
        parse(backwards),
        Err(ReplicatedAppendError::EpochRegression {
            received: 3,
            latest: 4,
            ..
        })
    ));
    assert!(matches!(
        parse(stored_batch(3, -1, 1)),
        Err(ReplicatedAppendError::InvalidHeader { .. })
    ));
    // An epoch below the one the log holds data of.
    assert!(matches!(
        follower.append_replicated(&parse(stored_batch(3, 2, 1)).unwrap(), 0),
        Err(ReplicatedAppendError::EpochRegression {
            base_offset: 3,
            received: 2,
            latest: 3
        })
    ));
    unchanged(&follower);
    // Nothing fetched: nothing to do.
    let empty = follower.append_replicated(&parse(Vec::new()).unwrap(), 0).unwrap();
    assert_eq!((empty.batch_count, empty.log_end_offset), (0, 3));
    unchanged(&follower);

    // An epoch this replica assigned as leader but never wrote in gives way to the new
    // leader's older one, as in Kafka.
    assert!(follower.assign_leader_epoch(7).unwrap());
    let appended = follower
        .append_replicated(&parse(stored_batch(3, 4, 1)).unwrap(), 0)
        .unwrap();
    assert_eq!((appended.base_offset, appended.last_offset), (3, 3));
    assert_eq!(follower.leader_epochs(), vec![(3, 0), (4, 3)]);
    assert_eq!(follower.latest_epoch(), Some(4));
    drop(follower);
    let follower = open(dir.path());
    assert_eq!(follower.leader_epochs(), vec![(3, 0), (4, 3)]);
}

#[test]
fn a_failed_append_is_undone_across_rolls_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path());
    let _ = follower
        .append_replicated(&parse(stored_batch(0, 1, 2)).unwrap(), 0)
        .unwrap();
    let before = files(dir.path());
    let epochs_before = follower.epoch_cache.clone();
    // Enough bytes to roll at least once, starting above the log end (a compaction gap).
    let mut set = Vec::new();
    for i in 0..8 {
        set.extend(stored_batch(10 + 3 * i, 2, 3));
    }
    let set = parse(set).unwrap();
    // Stands in for a write that fails partway: the part written is taken back.
    follower.write_replicated(&set, 0).unwrap();
    assert!(follower.segment_count() > 1);
    follower.undo_replicated(2, epochs_before);
    assert!(!follower.is_poisoned());
    assert_eq!((follower.log_end_offset(), follower.segment_count()), (2, 1));
    let mut after = files(dir.path());
    // The roll's producer snapshots are gone with their segments; the recovery point may
    // have been rewritten with the same value.
    after.retain(|name, _| !name.ends_with(".snapshot"));
    let mut expected = before.clone();
    expected.retain(|name, _| !name.ends_with(".snapshot"));
    assert_eq!(after, expected);
    let appended = follower.append_replicated(&set, 0).unwrap();
    assert_eq!((appended.base_offset, appended.log_end_offset), (10, 34));
    assert_eq!(follower.leader_epochs(), vec![(1, 0), (2, 10)]);
    // The gap reads as Kafka's: a fetch inside it starts at the next batch.
    assert_eq!(read_batches(&follower, 5)[0].0.base_offset, 10);
}

#[test]
fn divergent_tail_is_truncated_and_replaced_across_a_crash() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    // B leads in epoch 1; A follows.
    let mut b = open(b_dir.path());
    let mut a = open(a_dir.path());
    let _ = b.assign_leader_epoch(1).unwrap();
    for i in 0..5 {
        let _ = b.append(&plain(&["x", "y"], 100 + i), 1, 0).unwrap();
    }
    let _ = b.append(&batch(&["t"], 110, Some((30, 0, 0)), true), 1, 0).unwrap();
    replicate(&b, &mut a, 3);
    let committed = a.log_end_offset();
    // B writes more that never reaches A: a plain batch, an aborted transaction, one left open.
    let _ = b.append(&plain(&["lost"], 120), 1, 0).unwrap();
    let _ = b.append_marker(Marker::Abort, 30, 0, 0, 1, 121).unwrap();
    let _ = b.append(&batch(&["t2"], 122, Some((31, 0, 0)), true), 1, 0).unwrap();
    assert_eq!(b.aborted_transactions(0, i64::MAX).len(), 1);

    // A leads in epoch 2 and writes its own history.
    assert!(a.assign_leader_epoch(2).unwrap());
    let _ = a.append_marker(Marker::Commit, 30, 0, 0, 2, 130).unwrap();
    for i in 0..4 {
        let _ = a.append(&plain(&["new"], 140 + i), 2, 0).unwrap();
    }
    let end = a.log_end_offset();
    a.set_high_watermark(end);

    // B follows: OffsetForLeaderEpoch for its latest epoch tells it where it diverged.
    let (epoch, diverged_at) = a.end_offset_for_epoch(b.latest_epoch().unwrap()).unwrap();
    assert_eq!((epoch, diverged_at), (1, committed));
    b.truncate_to(diverged_at.min(b.log_end_offset())).unwrap();
    assert_eq!(b.open_transactions(), vec![(30, committed - 1)]);
    assert!(b.aborted_transactions(0, i64::MAX).is_empty());
    replicate(&a, &mut b, 2);
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(data_files(b_dir.path()), data_files(a_dir.path()));
    assert_same_answers(&a, &b);

    // A crash right after: recovery finds the same log.
    drop(b);
    let (mut b, report) = Log::open(b_dir.path(), config(), 0).unwrap();
    assert!(!report.clean_shutdown);
    b.set_high_watermark(a.high_watermark());
    assert_eq!(data_files(b_dir.path()), data_files(a_dir.path()));
    assert_same_answers(&a, &b);
    assert!(b.open_transactions().is_empty());
}

#[test]
fn a_replicated_log_starts_at_the_checkpointed_high_watermark_clamped_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let replicated = |high_watermark: Option<i64>| LogOpenOptions {
        high_watermark_from_checkpoint: true,
        high_watermark,
        ..LogOpenOptions::default()
    };
    let open = |high_watermark| Log::open_with(dir.path(), config(), replicated(high_watermark), 0).unwrap();
    let (mut log, _) = open(None);
    // No checkpoint yet: nothing is known to be committed.
    assert_eq!(log.high_watermark(), 0);
    for i in 0..10 {
        let _ = log.append(&plain(&["k"], i), 0, 0).unwrap();
    }
    log.close().unwrap();
    let (log, report) = open(Some(6));
    assert!(report.repairs.is_empty(), "{report}");
    assert_eq!(log.high_watermark(), 6, "the broker's checkpoint");
    assert_eq!(log.last_stable_offset(), 6);
    drop(log);
    // Without the option, the rule for a single node's log: everything in it is committed.
    let (mut log, _) = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(log.high_watermark(), 10);

    // A checkpoint above what the log holds (a crash took an unflushed tail; here a
    // truncation after the checkpoint) is clamped to the log end.
    log.truncate_to(7).unwrap();
    log.close().unwrap();
    let (log, report) = open(Some(10));
    assert_eq!(log.high_watermark(), 7);
    assert!(report.to_string().contains("high watermark"), "{report}");
    drop(log);

    // Without an entry, the `high-watermark` file of earlier versions, if any; a damaged one
    // is reported and ignored.
    checkpoint::write_offset(&dir.path().join("high-watermark"), 5).unwrap();
    assert_eq!(open(None).0.high_watermark(), 5);
    assert_eq!(open(Some(3)).0.high_watermark(), 3, "the broker's checkpoint wins");
    fs::write(dir.path().join("high-watermark"), b"junk").unwrap();
    let (log, report) = open(None);
    assert_eq!(log.high_watermark(), 0);
    assert!(report.to_string().contains("damaged checkpoint"), "{report}");
}

#[test]
fn flush_messages_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 3,
        ..config()
    };
    let mut follower = Log::open(dir.path(), config, 0).unwrap().0;
    let _ = follower
        .append_replicated(&parse(stored_batch(0, 0, 2)).unwrap(), 0)
        .unwrap();
    assert_eq!(follower.recovery_point, 0);
    let _ = follower
        .append_replicated(&parse(stored_batch(2, 0, 2)).unwrap(), 0)
        .unwrap();
    assert_eq!(follower.recovery_point, 4);
}

// ---------------------------------------------------------------------------------------------
// Random leader histories, replicated in random fetch sizes: the follower's files are the
// leader's.

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Plain(usize),
        Idempotent(usize),
        Transactional { producer: usize, records: usize },
        Marker { producer: usize, abort: bool },
        NewEpoch,
        Fetch(usize),
        FollowerCrash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..4).prop_map(Op::Plain),
            2 => (1usize..4).prop_map(Op::Idempotent),
            2 => (0usize..2, 1usize..3).prop_map(|(producer, records)| Op::Transactional { producer, records }),
            1 => (0usize..2, any::<bool>()).prop_map(|(producer, abort)| Op::Marker { producer, abort }),
            1 => Just(Op::NewEpoch),
            2 => (1usize..5).prop_map(Op::Fetch),
            1 => Just(Op::FollowerCrash),
        ]
    }

    fn run(ops: Vec<Op>) {
        let leader_dir = tempfile::tempdir().unwrap();
        let follower_dir = tempfile::tempdir().unwrap();
        let mut leader = open(leader_dir.path());
        let mut follower = Some(open(follower_dir.path()));
        let mut epoch = 0;
        let mut sequences = [0i32; 3];
        let mut ts = 0i64;
        for op in ops {
            ts += 1;
            let keys: Vec<String> = (0..4).map(|i| format!("key-{ts}-{i}")).collect();
            let keys = |n: usize| keys[..n].iter().map(String::as_str).collect::<Vec<_>>();
            match op {
                Op::Plain(n) => {
                    let _ = leader.append(&plain(&keys(n), ts), epoch, 0).unwrap();
                }
                Op::Idempotent(n) => {
                    let producer = Some((50, 0, sequences[2]));
                    let _ = leader.append(&batch(&keys(n), ts, producer, false), epoch, 0).unwrap();
                    sequences[2] += n as i32;
                }
                Op::Transactional { producer, records } => {
                    let id = Some((60 + producer as i64, 0, sequences[producer]));
                    let _ = leader.append(&batch(&keys(records), ts, id, true), epoch, 0).unwrap();
                    sequences[producer] += records as i32;
                }
                Op::Marker { producer, abort } => {
                    let marker = if abort { Marker::Abort } else { Marker::Commit };
                    let _ = leader
                        .append_marker(marker, 60 + producer as i64, 0, 0, epoch, ts)
                        .unwrap();
                }
                Op::NewEpoch => {
                    epoch += 1;
                    let _ = leader.assign_leader_epoch(epoch).unwrap();
                    let _ = leader.append(&plain(&keys(1), ts), epoch, 0).unwrap();
                }
                Op::Fetch(batches) => {
                    let follower = follower.as_mut().unwrap();
                    let fetched: Vec<u8> = read_batches(&leader, follower.log_end_offset())
                        .into_iter()
                        .take(batches)
                        .flat_map(|(_, bytes)| bytes)
                        .collect();
                    let _ = follower.append_replicated(&parse(fetched).unwrap(), 0).unwrap();
                }
                Op::FollowerCrash => {
                    drop(follower.take());
                    follower = Some(open(follower_dir.path()));
                }
            }
        }
        let end = leader.log_end_offset();
        leader.set_high_watermark(end);
        let mut follower = follower.unwrap();
        replicate(&leader, &mut follower, 3);
        leader.flush().unwrap();
        follower.flush().unwrap();
        assert_eq!(data_files(follower_dir.path()), data_files(leader_dir.path()));
        assert_same_answers(&leader, &follower);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn follower_matches_leader(ops in proptest::collection::vec(op(), 1..40)) {
            run(ops);
        }
    }
}

#[test]
fn a_full_truncation_starts_the_log_again_at_the_leaders_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path());
    for base in [0, 3, 6] {
        follower
            .append_replicated(&parse(stored_batch(base, 2, 3)).unwrap(), 0)
            .unwrap();
    }
    follower.set_high_watermark(6);
    assert_eq!(follower.log_end_offset(), 9);
    // The leader's log now starts at 40: nothing here can be continued.
    follower.truncate_fully_and_start_at(40).unwrap();
    assert_eq!(
        (
            follower.log_start_offset(),
            follower.log_end_offset(),
            follower.high_watermark()
        ),
        (40, 40, 40)
    );
    assert_eq!(follower.leader_epochs(), Vec::<(i32, i64)>::new());
    assert!(follower.producers().is_empty());
    assert!(matches!(
        follower.read(0, 1 << 20, 100, true),
        Err(crate::ReadError::OffsetOutOfRange { .. })
    ));
    // The leader's batches from 40 on follow, and all of it survives a reopen.
    follower
        .append_replicated(&parse(stored_batch(40, 3, 2)).unwrap(), 0)
        .unwrap();
    assert_eq!(follower.log_end_offset(), 42);
    follower.close().unwrap();
    let reopened = open(dir.path());
    assert_eq!((reopened.log_start_offset(), reopened.log_end_offset()), (40, 42));
    assert_eq!(reopened.leader_epochs(), vec![(3, 40)]);
    let names: Vec<String> = data_files(dir.path()).into_keys().collect();
    assert!(
        names.iter().all(|n| !n.starts_with("00000000000000000000")),
        "{names:?}"
    );
}

#[test]
fn a_new_leaders_epoch_reaches_the_checkpoint_before_the_recovery_point_passes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    // A new log is opened without writing any checkpoint: nothing in it needs to survive.
    assert!(!dir.path().join(crate::log::RECOVERY_POINT_FILE).exists());
    for i in 0..3 {
        let _ = log.append(&plain(&["k"], i), 0, 0).unwrap();
    }
    log.flush().unwrap();
    assert!(log.assign_leader_epoch(4).unwrap());
    assert_eq!(log.epoch_start_offset(4), Some(3), "answered at once");
    let _ = log.append(&plain(&["k"], 9), 4, 0).unwrap();
    // A crash before any flush: recovery finds epoch 4 in the batches it scans.
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(log.epoch_start_offset(4), Some(3));
    assert!(log.assign_leader_epoch(6).unwrap());
    let _ = log.append(&plain(&["k"], 10), 6, 0).unwrap();
    log.flush().unwrap();
    // A crash after the flush: recovery scans nothing past the recovery point, so the epoch
    // comes from the file the flush wrote before the recovery point.
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.latest_epoch(), Some(6));
    assert_eq!(log.epoch_start_offset(6), Some(4));
    assert_eq!(log.epoch_start_offset(4), Some(3));
}
