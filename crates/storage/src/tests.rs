//! Log-level tests: append/read, rolling, recovery from damage, retention, timestamps,
//! epochs, idempotent producers, compaction, and a proptest model of the whole log.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::{
    Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as RecordTimestampType,
};
use strom_record::header::{set_base_offset, set_partition_leader_epoch};
use strom_record::{validate_batches, BatchHeader, BatchIter, TimestampType, ValidateOptions, ValidatedBatches};

use crate::{AppendError, Log, LogConfig, ReadError, StorageError};

pub(crate) struct Spec<'a> {
    pub(crate) records: Vec<(Option<&'a str>, Option<&'a str>)>,
    pub(crate) timestamp_ms: i64,
    pub(crate) codec: Codec,
    pub(crate) producer: Option<(i64, i16, i32)>,
    /// A transactional producer's batch (needs `producer`).
    pub(crate) transactional: bool,
}

pub(crate) fn encode(spec: &Spec<'_>) -> Vec<u8> {
    let (producer_id, producer_epoch, base_sequence) = spec.producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = spec
        .records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: spec.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: RecordTimestampType::Creation,
            offset: i as i64,
            // The encoder groups records whose offset - sequence is constant.
            sequence: base_sequence + i as i32,
            timestamp: spec.timestamp_ms + i as i64,
            key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut out = Vec::new();
    RecordBatchEncoder::encode(
        &mut out,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: spec.codec,
        },
    )
    .unwrap();
    out
}

pub(crate) fn validated(bytes: Vec<u8>) -> ValidatedBatches {
    validate_batches(
        Bytes::from(bytes),
        &ValidateOptions {
            max_batch_bytes: 1 << 20,
            require_keys: false,
        },
    )
    .unwrap()
}

/// One uncompressed batch of `n` keyed records.
pub(crate) fn simple(n: usize, timestamp_ms: i64) -> ValidatedBatches {
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    validated(encode(&Spec {
        records: keys.iter().map(|k| (Some(k.as_str()), Some("value"))).collect(),
        timestamp_ms,
        codec: Codec::None,
        producer: None,
        transactional: false,
    }))
}

pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// Every batch readable from `from`, as (header, bytes).
pub(crate) fn read_batches(log: &Log, from: i64) -> Vec<(BatchHeader, Vec<u8>)> {
    let slice = log.read(from, usize::MAX, i64::MAX, true).unwrap();
    let bytes = slice.read_to_bytes().unwrap();
    let batches: Vec<_> = BatchIter::new(&bytes)
        .map(|b| b.unwrap())
        .map(|b| (b.header, b.bytes.to_vec()))
        .collect();
    for (_, b) in &batches {
        assert_eq!(strom_record::header::compute_crc(b), BatchHeader::parse(b).unwrap().crc);
    }
    batches
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, 0).unwrap().0
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn active_log_path(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn append_assigns_offsets_and_reads_follow_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let a = log.append(&simple(3, 1000), 7, 5000).unwrap();
    assert_eq!(
        (a.base_offset, a.last_offset, a.log_append_time, a.duplicate),
        (0, 2, -1, false)
    );
    let b = log.append(&simple(2, 1100), 7, 5000).unwrap();
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);
    log.set_high_watermark(5);

    let all = read_batches(&log, 0);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0.partition_leader_epoch, 7);
    assert_eq!(all[1].0.base_offset, 3);
    // A read inside a batch returns the whole batch.
    assert_eq!(read_batches(&log, 4)[0].0.base_offset, 3);
    // At the log end: empty, not an error.
    assert!(log.read(5, 1000, 5, false).unwrap().is_empty());
    assert!(matches!(
        log.read(6, 1000, 6, false),
        Err(ReadError::OffsetOutOfRange { requested: 6, .. })
    ));
    assert!(matches!(
        log.read(-1, 1000, 6, false),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    // max_bytes smaller than a batch: nothing, unless min_one_batch (KIP-74).
    assert!(log.read(0, 10, 5, false).unwrap().is_empty());
    let one = log.read(0, 10, 5, true).unwrap();
    assert_eq!(one.total_len, all[0].1.len());
    // max_offset (the high watermark) excludes batches that reach it.
    let below_hw = log.read(0, usize::MAX, 3, false).unwrap();
    assert_eq!(below_hw.total_len, all[0].1.len());
    // Stored bytes are the producer's, with only broker fields patched.
    let mut expected = simple(3, 1000).bytes().to_vec();
    set_base_offset(&mut expected, 0);
    set_partition_leader_epoch(&mut expected, 7);
    assert_eq!(all[0].1, expected);
}

#[test]
fn rolls_by_size_and_reopens_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..20 {
        let _ = log.append(&simple(2, 1000 + i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 3);
    assert!(dir.path().join("00000000000000000000.log").exists());
    let bases = log.segment_base_offsets();
    let before = read_batches(&log, 0);
    // Reads starting in every segment.
    for base in &bases {
        assert_eq!(read_batches(&log, *base)[0].0.base_offset, *base);
    }
    log.close().unwrap();
    let (log, report) = Log::open(dir.path(), small_config(), 0).unwrap();
    assert!(report.clean_shutdown, "{report}");
    assert!(report.repairs.is_empty(), "{report}");
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(read_batches(&log, 0), before);
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(log.high_watermark(), 40);
}

#[test]
fn rolls_by_time_and_full_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 100,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let _ = log.append(&simple(1, 1000), 0, 1000).unwrap();
    log.maybe_roll(1050).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.maybe_roll(1101).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1]);
    // An empty active segment is never rolled.
    log.maybe_roll(999_999).unwrap();
    assert_eq!(log.segment_count(), 2);
    // Old producer timestamps do not make every append roll: the clock starts at the append.
    let now_ms = 10 * crate::DAY_MS;
    for _ in 0..3 {
        let _ = log.append(&simple(1, 0), 0, now_ms).unwrap();
    }
    assert_eq!(log.segment_count(), 2);

    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_index_bytes: 16,
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for _ in 0..6 {
        let _ = log.append(&simple(1, 1000), 0, 0).unwrap();
    }
    assert!(
        log.segment_count() >= 3,
        "full indexes roll: {:?}",
        log.segment_base_offsets()
    );
}

#[test]
fn log_append_time_stamps_batches() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let outcome = log.append(&simple(2, 1000), 0, 777_000).unwrap();
    assert_eq!(outcome.log_append_time, 777_000);
    let (header, _) = &read_batches(&log, 0)[0];
    assert_eq!(header.max_timestamp, 777_000);
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(log.max_timestamp().unwrap().timestamp, 777_000);
}

#[test]
fn timestamps_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..10 {
        // Batch i holds records at 1000*i, 1000*i + 1, 1000*i + 2.
        let _ = log.append(&simple(3, 1000 * i), i as i32, 0).unwrap();
    }
    let found = log.offset_for_timestamp(4001).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp, found.leader_epoch), (13, 4001, 4));
    let found = log.offset_for_timestamp(4003).unwrap().unwrap();
    assert_eq!(found.offset, 15);
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
    assert!(log.offset_for_timestamp(10_000).unwrap().is_none());
    let max = log.max_timestamp().unwrap();
    assert_eq!((max.offset, max.timestamp), (29, 9002));
}

#[test]
fn leader_epochs_answer_offset_for_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(log.end_offset_for_epoch(0), None);
    let _ = log.append(&simple(2, 0), 1, 0).unwrap();
    let _ = log.append(&simple(2, 0), 1, 0).unwrap();
    let _ = log.append(&simple(2, 0), 3, 0).unwrap();
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 6)));
    assert_eq!(log.end_offset_for_epoch(4), None);
    drop(log); // crash
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    log.truncate_to(4).unwrap();
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(3), None, "newer than any known epoch");
    // A missing checkpoint (a log's epochs reach it with its first flush) is rebuilt from
    // batch headers, as a normal open; a damaged one is rebuilt and reported.
    log.close().unwrap();
    fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert!(report.repairs.is_empty(), "{report}");
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    log.close().unwrap();
    fs::write(dir.path().join("leader-epoch-checkpoint"), b"junk").unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert!(report.to_string().contains("leader epoch"), "{report}");
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
}

/// Damage applied to the log directory after a crash.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Garbage,
    TornBatch,
    FlippedTail,
    DeletedIndexes,
    JunkIndex,
}

#[test]
fn recovers_from_damage_repeatedly() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let mut expected: Vec<(BatchHeader, Vec<u8>)> = Vec::new();
    let damages = [
        Damage::Garbage,
        Damage::TornBatch,
        Damage::FlippedTail,
        Damage::DeletedIndexes,
        Damage::JunkIndex,
    ];
    for round in 0..15 {
        let mut log = open(dir.path(), config.clone());
        assert_eq!(read_batches(&log, 0), expected, "round {round}");
        for i in 0..3 {
            let _ = log.append(&simple(1 + i, round * 10), 0, 0).unwrap();
        }
        expected = read_batches(&log, 0);
        drop(log); // crash: no close, no snapshot, no clean-shutdown marker
        let damage = damages[round as usize % damages.len()];
        let path = active_log_path(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last_len = expected.last().unwrap().1.len();
        match damage {
            Damage::Garbage => bytes.extend_from_slice(&[0xab; 37]),
            Damage::TornBatch => {
                bytes.truncate(bytes.len() - last_len / 2);
                let _ = expected.pop();
            }
            Damage::FlippedTail => {
                let at = bytes.len() - 3;
                bytes[at] ^= 0xff;
                let _ = expected.pop();
            }
            Damage::DeletedIndexes => {
                fs::remove_file(path.with_extension("index")).unwrap();
                fs::remove_file(path.with_extension("timeindex")).unwrap();
            }
            Damage::JunkIndex => fs::write(path.with_extension("index"), [0xff; 13]).unwrap(),
        }
        fs::write(&path, &bytes).unwrap();
        let (log, report) = Log::open(dir.path(), config.clone(), 0).unwrap();
        match damage {
            Damage::Garbage => assert_eq!(report.truncated_bytes, 37, "{report}"),
            Damage::TornBatch => assert_eq!(report.truncated_bytes as usize, last_len - last_len / 2, "{report}"),
            Damage::FlippedTail => {
                assert_eq!(report.truncated_bytes as usize, last_len, "{report}")
            }
            Damage::DeletedIndexes | Damage::JunkIndex => assert_eq!(report.truncated_bytes, 0),
        }
        assert_eq!(
            read_batches(&log, 0),
            expected,
            "round {round} after {damage:?}: {report}"
        );
        assert_eq!(
            log.log_end_offset(),
            expected.last().map_or(0, |(h, _)| h.next_offset())
        );
        drop(log);
    }
}

#[test]
fn clean_shutdown_still_repairs_indexes_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..10 {
        let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    }
    let expected = read_batches(&log, 0);
    log.close().unwrap();
    // Index of an older segment points past its log; garbage after the active tail; a stray
    // compaction file.
    fs::write(
        dir.path().join("00000000000000000000.index"),
        [0, 0, 0, 1, 0xff, 0xff, 0, 0],
    )
    .unwrap();
    let path = active_log_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[1, 2, 3]);
    fs::write(&path, bytes).unwrap();
    fs::write(dir.path().join("00000000000000000000.log.cleaned"), b"partial").unwrap();
    let (log, report) = Log::open(dir.path(), small_config(), 0).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(report.truncated_bytes, 3, "{report}");
    assert!(report.repairs.iter().any(|r| r.contains("indexes")), "{report}");
    assert!(report.repairs.iter().any(|r| r.contains("stray")), "{report}");
    assert!(!dir.path().join("00000000000000000000.log.cleaned").exists());
    assert_eq!(read_batches(&log, 0), expected);
    for (h, _) in &expected {
        assert_eq!(read_batches(&log, h.base_offset)[0].0.base_offset, h.base_offset);
    }
}

#[test]
fn corrupt_middle_segment_cuts_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..12 {
        let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3);
    drop(log);
    fs::write(dir.path().join("recovery-point"), b"junk").unwrap(); // forces a full scan
    let second = dir.path().join(format!("{:020}.log", bases[1]));
    let mut bytes = fs::read(&second).unwrap();
    let at = bytes.len() - 2;
    bytes[at] ^= 1;
    fs::write(&second, bytes).unwrap();
    let (log, report) = Log::open(dir.path(), small_config(), 0).unwrap();
    assert!(report.deleted_segments >= 1, "{report}");
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert!(log.log_end_offset() < bases[2]);
}

#[test]
fn retention_by_time_and_size_and_delete_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    let mut log = open(dir.path(), config.clone());
    for i in 0..20 {
        let _ = log.append(&simple(2, i * 100), 0, 0).unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let segments = log.segment_count();
    // Nothing is old enough.
    config.retention_ms = 10_000;
    log.set_config(config.clone());
    assert_eq!(log.enforce_retention(5_000).unwrap().deleted_segments, 0);
    // Segments whose newest record is older than 1000 ms before now go.
    let report = log.enforce_retention(11_000 + 500).unwrap();
    assert!(report.deleted_segments > 0 && report.deleted_segments < segments);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    // Size: keep at most ~2 segments' worth.
    config.retention_ms = -1;
    config.retention_bytes = 800;
    log.set_config(config.clone());
    let _ = log.enforce_retention(0).unwrap();
    assert!(log.size_bytes() <= 800 + 400, "{}", log.size_bytes());
    // Everything expired: the active segment is rolled and deleted, the log end stays.
    let end = log.log_end_offset();
    config.retention_bytes = -1;
    config.retention_ms = 0;
    log.set_config(config.clone());
    let _ = log.enforce_retention(1_000_000).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset(), log.segment_count()),
        (end, end, 1)
    );
    let next = log.append(&simple(1, 0), 0, 0).unwrap();
    assert_eq!(next.base_offset, end);

    // DeleteRecords inside a segment, persisted across reopen.
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..10 {
        let _ = log.append(&simple(3, 0), 0, 0).unwrap();
    }
    log.set_high_watermark(20);
    assert!(matches!(
        log.delete_records_before(25),
        Err(StorageError::OffsetAboveHighWatermark { .. })
    ));
    assert_eq!(log.delete_records_before(7).unwrap(), 7);
    assert_eq!(read_batches(&log, 7)[0].0.base_offset, 6);
    assert!(log.read(6, 100, 30, true).is_err());
    assert_eq!(log.delete_records_before(-1).unwrap(), 20);
    assert_eq!(log.delete_records_before(3).unwrap(), 20);
    log.close().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), 20);
    assert_eq!(read_batches(&log, 20)[0].0.base_offset, 18);
}

#[test]
fn truncate_to_removes_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..12 {
        let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    }
    log.set_high_watermark(24);
    log.truncate_to(10).unwrap();
    assert_eq!((log.log_end_offset(), log.high_watermark()), (10, 10));
    assert_eq!(read_batches(&log, 0).len(), 5);
    // Inside a batch: the whole batch goes.
    log.truncate_to(5).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    let next = log.append(&simple(1, 0), 0, 0).unwrap();
    assert_eq!(next.base_offset, 4);
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_end_offset(), log.segment_count()), (0, 1));
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn poisoned_log_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let _ = log.append(&simple(1, 0), 0, 0).unwrap();
    log.poison(&StorageError::Poisoned {
        path: dir.path().to_path_buf(),
    });
    assert!(matches!(
        log.append(&simple(1, 0), 0, 0),
        Err(AppendError::Storage(StorageError::Poisoned { .. }))
    ));
    assert!(log.flush().is_err());
    // Reads still work.
    assert_eq!(read_batches(&log, 0).len(), 1);
}

#[test]
fn flush_messages_moves_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 3,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    assert_eq!(log.recovery_point, 0);
    let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    assert_eq!(log.recovery_point, 4);
}

#[test]
fn flush_jobs_run_off_the_lock_and_tolerate_appends_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    assert!(log.flush_job().unwrap().is_none(), "nothing to flush in an empty log");
    let _ = log.append(&simple(3, 0), 0, 0).unwrap();
    let job = log.flush_job().unwrap().expect("dirty log");
    // Appends continue while the job runs; they stay unflushed.
    let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    let result = job.run();
    log.complete_flush(&job, result).unwrap();
    assert_eq!(log.recovery_point, 3);
    let job = log.flush_job().unwrap().expect("the later append is still dirty");
    let result = job.run();
    log.complete_flush(&job, result).unwrap();
    assert_eq!(log.recovery_point, 5);
    assert!(log.flush_job().unwrap().is_none());
    drop(log);
    let (reopened, _) = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(reopened.log_end_offset(), 5);
}

fn with_recovery_point(recovery_point: Option<i64>) -> crate::LogOpenOptions {
    crate::LogOpenOptions {
        recovery_point,
        ..crate::LogOpenOptions::default()
    }
}

#[test]
fn a_new_log_is_a_directory_and_one_file() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("orders-0");
    let (mut log, report) = Log::open(&dir, small_config(), 0).unwrap();
    assert_eq!((report.segments, report.repairs.len()), (1, 0));
    assert_eq!(file_names(&dir), ["00000000000000000000.log"]);
    // It works as any log, and a reopen finds what was written.
    let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    log.flush().unwrap();
    drop(log);
    let log = open(&dir, small_config());
    assert_eq!(log.log_end_offset(), 2);
    assert!(
        !file_names(&dir).contains(&"recovery-point".to_string()),
        "the broker records it for the directory"
    );
}

#[test]
fn recovery_trusts_the_segments_below_the_recorded_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..12 {
        let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    }
    assert!(log.segment_count() >= 3);
    log.flush().unwrap();
    let recovery_point = log.recovery_point();
    assert_eq!(recovery_point, 24);
    drop(log); // crash
    let reopen = |recovery_point| {
        let (log, report) = Log::open_with(dir.path(), small_config(), with_recovery_point(recovery_point), 0).unwrap();
        assert_eq!(log.log_end_offset(), 24);
        report.segments_scanned
    };
    // With the checkpoint's entry only the last segment is scanned; without, all of them.
    assert_eq!(reopen(Some(recovery_point)), 1);
    let all = reopen(None);
    assert!(all >= 3, "{all}");
}

#[test]
fn a_truncation_below_the_recovery_point_outranks_the_directory_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for _ in 0..12 {
        let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    }
    log.flush().unwrap();
    let recorded = log.recovery_point(); // what the broker's checkpoint holds
    log.truncate_to(4).unwrap();
    assert_eq!(log.recovery_point(), 4);
    // Appends after the truncation, never flushed, fill segments again past the old point.
    for _ in 0..12 {
        let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    }
    // The segment a stale recovery point would trust: the one before the segment holding it.
    let bases = log.segment_base_offsets();
    let holding = bases.iter().rposition(|b| *b <= recorded).unwrap();
    assert!(holding > 0, "{bases:?}");
    let damaged = dir.path().join(format!("{:020}.log", bases[holding - 1]));
    drop(log); // crash
    let mut bytes = fs::read(&damaged).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&damaged, &bytes).unwrap();
    // The stale, higher entry would trust the damaged segment; the log's own file wins.
    let (log, report) = Log::open_with(dir.path(), small_config(), with_recovery_point(Some(recorded)), 0).unwrap();
    assert!(report.truncated_bytes > 0, "{report}");
    assert!(log.log_end_offset() < 28);
    drop(log);
    // Recovery synced what it kept; the file holds nothing above the log end.
    let (log, _) = Log::open_with(dir.path(), small_config(), with_recovery_point(Some(recorded)), 0).unwrap();
    assert!(log.recovery_point() <= log.log_end_offset());
}

#[test]
fn a_stale_entry_for_a_new_log_is_outranked() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("orders-0");
    // The checkpoint still names a deleted log of this name.
    let (mut log, _) = Log::open_with(&dir, small_config(), with_recovery_point(Some(500)), 0).unwrap();
    for _ in 0..12 {
        let _ = log.append(&simple(2, 0), 0, 0).unwrap();
    }
    drop(log); // crash before any flush
    let (_, report) = Log::open_with(&dir, small_config(), with_recovery_point(Some(500)), 0).unwrap();
    assert!(report.segments_scanned >= 3, "every segment is scanned: {report}");
}

fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize) -> ValidatedBatches {
    validated(encode(&Spec {
        records: (0..n).map(|_| (Some("k"), Some("v"))).collect(),
        timestamp_ms: 0,
        codec: Codec::None,
        producer: Some((pid, epoch, seq)),
        transactional: false,
    }))
}

#[test]
fn idempotent_producers_expire_after_their_last_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    // Batches are stamped at 0 ms (idempotent() above).
    let _ = log.append(&idempotent(1, 0, 0, 2), 0, 0).unwrap();
    let _ = log.append(&idempotent(2, 0, 0, 1), 0, 0).unwrap();
    assert_eq!(log.expire_producers(999, 1_000), 0, "younger than the expiration");
    let _ = log.append(&idempotent(1, 0, 2, 1), 0, 0).unwrap();
    assert_eq!(log.expire_producers(1_001, 1_000), 2);
    // Forgotten: its next sequence is now a gap, as from an unknown producer.
    assert!(matches!(
        log.append(&idempotent(1, 0, 3, 1), 0, 0),
        Err(AppendError::OutOfOrderSequence { expected: 0, .. })
    ));
    let _ = log.append(&idempotent(1, 0, 0, 1), 0, 0).unwrap();
}

#[test]
fn idempotent_producers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let first = log.append(&idempotent(1, 0, 0, 2), 0, 0).unwrap();
    let _ = log.append(&simple(1, 0), 0, 0).unwrap();
    let second = log.append(&idempotent(1, 0, 2, 3), 0, 0).unwrap();
    // A retry of either is answered with its original offsets and not written.
    let retry = log.append(&idempotent(1, 0, 0, 2), 0, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!(
        log.append(&idempotent(1, 0, 2, 3), 0, 0).unwrap().base_offset,
        second.base_offset
    );
    assert_eq!(log.log_end_offset(), 6);
    // A gap.
    assert!(matches!(
        log.append(&idempotent(1, 0, 9, 1), 0, 0),
        Err(AppendError::OutOfOrderSequence {
            expected: 5,
            received: 9,
            ..
        })
    ));
    // Unknown producer must start at 0.
    assert!(matches!(
        log.append(&idempotent(2, 0, 4, 1), 0, 0),
        Err(AppendError::OutOfOrderSequence { .. })
    ));
    // Fencing: a newer epoch starts at 0; the old epoch is then refused.
    assert!(matches!(
        log.append(&idempotent(1, 1, 5, 1), 0, 0),
        Err(AppendError::OutOfOrderSequence { .. })
    ));
    let _ = log.append(&idempotent(1, 1, 0, 1), 0, 0).unwrap();
    assert!(matches!(
        log.append(&idempotent(1, 0, 5, 1), 0, 0),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
    let end = log.log_end_offset();

    // Restart with a snapshot.
    log.close().unwrap();
    let (mut log, report) = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(report.producer_snapshot_offset, Some(end));
    assert!(log.append(&idempotent(1, 1, 0, 1), 0, 0).unwrap().duplicate);
    assert!(matches!(
        log.append(&idempotent(1, 0, 5, 1), 0, 0),
        Err(AppendError::InvalidProducerEpoch { .. })
    ));
    let _ = log.append(&idempotent(1, 1, 1, 1), 0, 0).unwrap();

    // Crash without any snapshot: state is replayed from the log.
    drop(log);
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(path).unwrap();
        }
    }
    let (mut log, report) = Log::open(dir.path(), small_config(), 0).unwrap();
    assert_eq!(report.producer_snapshot_offset, None);
    assert!(log.append(&idempotent(1, 1, 1, 1), 0, 0).unwrap().duplicate);
    assert!(!log.append(&idempotent(1, 1, 2, 1), 0, 0).unwrap().duplicate);

    // A corrupt snapshot is ignored and replaced by replay.
    log.close().unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            fs::write(path, b"garbage").unwrap();
        }
    }
    let mut log = open(dir.path(), small_config());
    assert!(log.append(&idempotent(1, 1, 2, 1), 0, 0).unwrap().duplicate);
}

// ---------------------------------------------------------------------------------------------
// Compaction

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        retention_ms: -1,
        cleanup_policy: crate::CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

fn keyed(records: &[(&str, Option<&str>)], timestamp_ms: i64, codec: Codec) -> ValidatedBatches {
    validated(encode(&Spec {
        records: records.iter().map(|(k, v)| (Some(*k), *v)).collect(),
        timestamp_ms,
        codec,
        producer: None,
        transactional: false,
    }))
}

/// (offset, key, value) of every record readable from the log start.
fn records_of(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    for (_, batch) in read_batches(log, log.log_start_offset()) {
        for r in strom_record::records::decode_records(&batch).unwrap() {
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            out.push((r.offset, key, r.value.map(|v| String::from_utf8(v.to_vec()).unwrap())));
        }
    }
    out
}

fn compact(log: &mut Log, now_ms: i64) -> crate::CompactionReport {
    let job = log.compaction_job(now_ms).expect("something to clean");
    let result = job.run().unwrap();
    log.install_compaction(result).unwrap()
}

#[test]
fn compaction_keeps_latest_per_key_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config());
    let mut written = Vec::new();
    for round in 0..12 {
        let value = format!("v{round}");
        let batch = [
            ("a", Some(value.as_str())),
            ("b", Some(value.as_str())),
            (["c", "d", "e"][round % 3], Some("x")),
        ];
        let outcome = log.append(&keyed(&batch, 0, Codec::None), 0, 0).unwrap();
        for (i, (k, v)) in batch.iter().enumerate() {
            written.push((outcome.base_offset + i as i64, k.to_string(), v.map(str::to_string)));
        }
    }
    log.set_high_watermark(log.log_end_offset());
    let active_base = *log.segment_base_offsets().last().unwrap();
    let last_offsets_before: Vec<i64> = read_batches(&log, 0).iter().map(|(h, _)| h.last_offset()).collect();
    let report = compact(&mut log, 10);
    assert!(report.installed && report.records_removed > 0, "{report:?}");
    assert_eq!(report.cleaner_offset, active_base);

    let latest = |key: &str| {
        written
            .iter()
            .filter(|(o, k, _)| k == key && *o < active_base)
            .map(|(o, _, _)| *o)
            .max()
    };
    let expected: Vec<_> = written
        .iter()
        .filter(|(o, k, _)| *o >= active_base || latest(k) == Some(*o))
        .cloned()
        .collect();
    assert_eq!(records_of(&log), expected);
    // Batches keep their last offsets; the log end does not move.
    for (h, _) in read_batches(&log, 0) {
        assert!(last_offsets_before.contains(&h.last_offset()));
    }
    assert_eq!(log.log_end_offset(), 36);
    // Reads at offsets that were compacted away land on the next surviving batch.
    assert!(read_batches(&log, 1)[0].0.last_offset() >= 1);
    // The cleaned segments survive a crash and reopen, indexes and all.
    drop(log);
    let (log, report) = Log::open(dir.path(), compact_config(), 0).unwrap();
    assert_eq!(report.truncated_bytes, 0, "{report}");
    assert_eq!(records_of(&log), expected);
    // Nothing new is dirty.
    assert!(log.compaction_job(10).is_none());
}

#[test]
fn tombstones_expire_delete_retention_after_their_first_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config());
    let _ = log
        .append(&keyed(&[("a", Some("1")), ("b", Some("1"))], 100, Codec::None), 0, 0)
        .unwrap();
    let _ = log.append(&keyed(&[("a", None)], 200, Codec::None), 0, 0).unwrap();
    let mut filler = 0;
    let mut dirty = |log: &mut Log| {
        for _ in 0..6 {
            filler += 1;
            let _ = log
                .append(
                    &keyed(&[("filler", Some(&format!("{filler:0>100}")))], 300, Codec::None),
                    0,
                    0,
                )
                .unwrap();
        }
        log.set_high_watermark(log.log_end_offset());
    };
    let tombstone = |log: &Log| {
        let (header, _) = read_batches(log, 0).into_iter().find(|(h, _)| h.base_offset == 2)?;
        Some(header)
    };
    dirty(&mut log);
    // First clean, long after the tombstone's own timestamp (200) + delete.retention.ms
    // (1000): it is kept, since consumers must get delete.retention.ms to see it, and its
    // batch is stamped with the horizon. The old "a" goes.
    let _ = compact(&mut log, 5_000);
    let keys: Vec<_> = records_of(&log)
        .into_iter()
        .map(|(o, k, v)| (o, k, v.is_some()))
        .collect();
    assert!(keys.contains(&(2, "a".to_string(), false)), "{keys:?}");
    assert!(!keys.iter().any(|(o, _, _)| *o == 0));
    let stamped = tombstone(&log).expect("tombstone batch");
    assert_eq!(stamped.delete_horizon_ms(), Some(6_000));
    // Before the horizon it stays; from the horizon on, the next clean removes it.
    dirty(&mut log);
    let _ = compact(&mut log, 5_999);
    assert!(tombstone(&log).is_some(), "removed before its horizon");
    dirty(&mut log);
    let _ = compact(&mut log, 6_000);
    let keys: Vec<_> = records_of(&log).into_iter().map(|(o, k, _)| (o, k)).collect();
    assert!(!keys.contains(&(2, "a".to_string())), "{keys:?}");
    assert!(keys.contains(&(1, "b".to_string())));
}

#[test]
fn compressed_batches_are_reencoded_with_their_codec() {
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), compact_config());
        let _ = log
            .append(
                &keyed(
                    &[("a", Some("1")), ("b", Some("1")), ("a", Some("2")), ("c", Some("1"))],
                    0,
                    codec,
                ),
                0,
                0,
            )
            .unwrap();
        let _ = log.append(&keyed(&[("c", Some("2"))], 0, Codec::None), 0, 0).unwrap();
        for _ in 0..4 {
            let _ = log
                .append(&keyed(&[("z", Some(&"y".repeat(150)))], 0, Codec::None), 0, 0)
                .unwrap();
        }
        log.set_high_watermark(log.log_end_offset());
        let _ = compact(&mut log, 100);
        let (header, bytes) = read_batches(&log, 0).remove(0);
        assert_eq!(header.compression().unwrap() as u8, codec as u8, "{codec:?}");
        assert_eq!(
            (header.base_offset, header.last_offset()),
            (0, 3),
            "{codec:?}: base and last offsets kept"
        );
        assert_eq!(header.records_count, 2);
        assert_eq!(header.base_sequence, -1);
        let records = strom_record::records::decode_records(&bytes).unwrap();
        let got: Vec<_> = records.iter().map(|r| (r.offset, r.key.clone().unwrap())).collect();
        assert_eq!(
            got,
            vec![(1, Bytes::from_static(b"b")), (2, Bytes::from_static(b"a"))],
            "{codec:?}"
        );
        assert_eq!(records_of(&log)[2].0, 4, "offset of c=2 unchanged");
    }
}

#[test]
fn compaction_runs_beside_appends_and_discards_stale_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config());
    for i in 0..10 {
        let _ = log
            .append(&keyed(&[("k", Some(&format!("{i:0>80}")))], 0, Codec::None), 0, 0)
            .unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let job = log.compaction_job(0).unwrap();
    // Appends (and rolls) while the job would run on another thread.
    let reader_before = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    for _ in 0..5 {
        let _ = log
            .append(&keyed(&[("k", Some("late"))], 0, Codec::None), 0, 0)
            .unwrap();
    }
    let result = job.run().unwrap();
    let report = log.install_compaction(result).unwrap();
    assert!(report.installed);
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(records_of(&log).last().unwrap().0, 14);
    // A reader that grabbed file handles before the swap still reads the old bytes.
    assert_eq!(reader_before.read_to_bytes().unwrap().len(), reader_before.total_len);

    // A segment deleted meanwhile: the result is thrown away and its files removed.
    let mut config = compact_config();
    log.set_high_watermark(log.log_end_offset());
    for _ in 0..5 {
        let _ = log
            .append(&keyed(&[("k", Some(&"q".repeat(120)))], 0, Codec::None), 0, 0)
            .unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let job = log.compaction_job(0).unwrap();
    let result = job.run().unwrap();
    config.cleanup_policy.delete = true;
    config.retention_bytes = 0;
    log.set_config(config);
    assert!(log.enforce_retention(0).unwrap().deleted_segments > 0);
    let report = log.install_compaction(result).unwrap();
    assert!(!report.installed);
    let leftovers = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().to_string_lossy().ends_with(".cleaned"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn compaction_keeps_each_producers_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config());
    let _ = log.append(&idempotent(5, 0, 0, 1), 0, 0).unwrap();
    let _ = log.append(&idempotent(5, 0, 1, 1), 0, 0).unwrap();
    let _ = log.append(&idempotent(6, 0, 0, 1), 0, 0).unwrap();
    for _ in 0..4 {
        let _ = log
            .append(&keyed(&[("k", Some(&"y".repeat(150)))], 0, Codec::None), 0, 0)
            .unwrap();
    }
    log.set_high_watermark(log.log_end_offset());
    let _ = compact(&mut log, 0);
    let offsets: Vec<i64> = records_of(&log).iter().map(|(o, _, _)| *o).collect();
    // Producer 5's first batch (superseded key "k") goes; its last batch and producer 6's stay.
    assert!(!offsets.contains(&0));
    assert!(offsets.contains(&1) && offsets.contains(&2), "{offsets:?}");
    drop(log);
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(path).unwrap();
        }
    }
    let mut log = open(dir.path(), compact_config());
    assert!(log.append(&idempotent(5, 0, 1, 1), 0, 0).unwrap().duplicate);
    assert!(!log.append(&idempotent(5, 0, 2, 1), 0, 0).unwrap().duplicate);
}

#[test]
fn key_map_cap_cleans_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), compact_config());
    for round in 0..4 {
        for key in ["a", "b", "c", "d"] {
            let _ = log
                .append(
                    &keyed(&[(key, Some(&format!("{round}{}", "p".repeat(60))))], 0, Codec::None),
                    0,
                    0,
                )
                .unwrap();
        }
    }
    log.set_high_watermark(log.log_end_offset());
    let active_base = *log.segment_base_offsets().last().unwrap();
    let mut job = log.compaction_job(0).unwrap();
    job.set_key_map_bytes_max(200);
    let first = log.install_compaction(job.run().unwrap()).unwrap();
    assert!(first.installed && first.cleaner_offset < active_base, "{first:?}");
    let mut passes = 1;
    while let Some(mut job) = log.compaction_job(0) {
        job.set_key_map_bytes_max(200);
        let _ = log.install_compaction(job.run().unwrap()).unwrap();
        passes += 1;
        assert!(passes < 50);
    }
    // Each key survives once below the active segment.
    let mut cleaned: Vec<_> = records_of(&log)
        .into_iter()
        .filter(|(o, _, _)| *o < active_base)
        .map(|(_, k, _)| k)
        .collect();
    let total = cleaned.len();
    cleaned.dedup();
    assert_eq!(cleaned.len(), total);
}

// ---------------------------------------------------------------------------------------------
// Model test: random operations against a `Vec` of the batches the log must hold.

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append { batches: Vec<usize> },
        TruncateTo(u8),
        Retention { retention_bytes: i64 },
        DeleteRecords(u8),
        ReopenClean,
        ReopenCrash,
        TornTail(u16),
        Garbage(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => proptest::collection::vec(1usize..5, 1..4).prop_map(|batches| Op::Append { batches }),
            1 => any::<u8>().prop_map(Op::TruncateTo),
            1 => (0i64..1500).prop_map(|retention_bytes| Op::Retention { retention_bytes }),
            1 => any::<u8>().prop_map(Op::DeleteRecords),
            1 => Just(Op::ReopenClean),
            1 => Just(Op::ReopenCrash),
            1 => any::<u16>().prop_map(Op::TornTail),
            1 => any::<u8>().prop_map(Op::Garbage),
        ]
    }

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 300,
            segment_index_bytes: 64,
            index_interval_bytes: 64,
            retention_ms: -1,
            ..LogConfig::default()
        }
    }

    struct Model {
        batches: Vec<Vec<u8>>,
        log_start_offset: i64,
        log_end_offset: i64,
    }

    fn header(bytes: &[u8]) -> BatchHeader {
        BatchHeader::parse(bytes).unwrap()
    }

    fn check(log: &Log, model: &Model, step: usize) {
        assert_eq!(log.log_end_offset(), model.log_end_offset, "log end at step {step}");
        assert_eq!(
            log.log_start_offset(),
            model.log_start_offset,
            "log start at step {step}"
        );
        let expected: Vec<&Vec<u8>> = model
            .batches
            .iter()
            .filter(|b| header(b).last_offset() >= model.log_start_offset)
            .collect();
        let got = read_batches(log, model.log_start_offset);
        assert_eq!(got.len(), expected.len(), "batch count at step {step}");
        for ((_, g), e) in got.iter().zip(expected) {
            assert_eq!(g, e, "batch bytes at step {step}");
        }
        assert!(log
            .read(model.log_end_offset, 1 << 20, i64::MAX, true)
            .unwrap()
            .is_empty());
        // Every stored batch can be found from its own offsets.
        for b in model
            .batches
            .iter()
            .filter(|b| header(b).base_offset >= model.log_start_offset)
        {
            let h = header(b);
            assert_eq!(read_batches(log, h.last_offset())[0].1, *b, "lookup at step {step}");
        }
    }

    fn run(ops: Vec<Op>) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Some(Log::open(dir.path(), config(), 0).unwrap().0);
        let mut model = Model {
            batches: Vec::new(),
            log_start_offset: 0,
            log_end_offset: 0,
        };
        let mut counter = 0u64;
        for (step, op) in ops.into_iter().enumerate() {
            let current = log.as_mut().unwrap();
            match op {
                Op::Append { batches } => {
                    let mut bytes = Vec::new();
                    for records in &batches {
                        counter += 1;
                        let values: Vec<String> = (0..*records).map(|i| format!("value-{counter}-{i}")).collect();
                        bytes.extend(encode(&Spec {
                            records: values.iter().map(|v| (Some("key"), Some(v.as_str()))).collect(),
                            timestamp_ms: counter as i64,
                            codec: Codec::None,
                            producer: None,
                            transactional: false,
                        }));
                    }
                    let outcome = current.append(&validated(bytes.clone()), 3, 0).unwrap();
                    assert_eq!(outcome.base_offset, model.log_end_offset);
                    let mut offset = model.log_end_offset;
                    for batch in BatchIter::new(&bytes) {
                        let mut b = batch.unwrap().bytes.to_vec();
                        set_base_offset(&mut b, offset);
                        set_partition_leader_epoch(&mut b, 3);
                        offset = header(&b).next_offset();
                        model.batches.push(b);
                    }
                    model.log_end_offset = offset;
                    current.set_high_watermark(offset);
                }
                Op::TruncateTo(pick) => {
                    let mut candidates: Vec<i64> = model
                        .batches
                        .iter()
                        .map(|b| header(b).base_offset)
                        .filter(|o| *o >= model.log_start_offset)
                        .collect();
                    candidates.push(model.log_end_offset);
                    let target = candidates[pick as usize % candidates.len()];
                    current.truncate_to(target).unwrap();
                    model.batches.retain(|b| header(b).base_offset < target);
                    model.log_end_offset = target;
                }
                Op::Retention { retention_bytes } => {
                    let mut c = config();
                    c.retention_bytes = retention_bytes;
                    current.set_config(c);
                    let report = current.enforce_retention(0).unwrap();
                    current.set_config(config());
                    assert!(report.log_start_offset >= model.log_start_offset);
                    assert!(current.size_bytes() as i64 <= retention_bytes.max(current.size_bytes() as i64));
                    model.log_start_offset = report.log_start_offset;
                }
                Op::DeleteRecords(fraction) => {
                    let span = model.log_end_offset - model.log_start_offset;
                    let target = model.log_start_offset + span * i64::from(fraction) / 255;
                    let start = current.delete_records_before(target).unwrap();
                    assert_eq!(start, target.max(model.log_start_offset));
                    model.log_start_offset = start;
                }
                Op::ReopenClean => {
                    log.take().unwrap().close().unwrap();
                    let (reopened, report) = Log::open(dir.path(), config(), 0).unwrap();
                    assert!(report.clean_shutdown && report.truncated_bytes == 0, "{report}");
                    log = Some(reopened);
                }
                Op::ReopenCrash => {
                    drop(log.take());
                    let (reopened, report) = Log::open(dir.path(), config(), 0).unwrap();
                    assert_eq!(report.truncated_bytes, 0, "{report}");
                    log = Some(reopened);
                }
                Op::TornTail(cut) => {
                    drop(log.take());
                    let path = active_log_path(dir.path());
                    let len = fs::metadata(&path).unwrap().len();
                    if len > 0 {
                        let cut = 1 + u64::from(cut) % len;
                        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
                        file.set_len(len - cut).unwrap();
                        let mut removed = 0u64;
                        while removed < cut {
                            let b = model.batches.pop().unwrap();
                            removed += b.len() as u64;
                            model.log_end_offset = header(&b).base_offset;
                        }
                        model.log_start_offset = model.log_start_offset.min(model.log_end_offset);
                    }
                    log = Some(Log::open(dir.path(), config(), 0).unwrap().0);
                }
                Op::Garbage(n) => {
                    drop(log.take());
                    let path = active_log_path(dir.path());
                    let mut bytes = fs::read(&path).unwrap();
                    bytes.extend(std::iter::repeat_n(0xab, 1 + n as usize));
                    fs::write(&path, bytes).unwrap();
                    let (reopened, report) = Log::open(dir.path(), config(), 0).unwrap();
                    assert_eq!(report.truncated_bytes, 1 + u64::from(n), "{report}");
                    log = Some(reopened);
                }
            }
            check(log.as_ref().unwrap(), &model, step);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
            run(ops);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary file content never panics: it is repaired or rejected.

mod hostile_files {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn open_survives_random_files(
            valid_batches in 0usize..4,
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            index in proptest::collection::vec(any::<u8>(), 0..40),
            time_index in proptest::collection::vec(any::<u8>(), 0..40),
            checkpoint in proptest::collection::vec(any::<u8>(), 0..40),
            clean in any::<bool>(),
            flip in any::<(u16, u8)>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut log = open(dir.path(), small_config());
                for i in 0..valid_batches {
                    let _ = log.append(&simple(1 + i, 0), 0, 0).unwrap();
                }
                if clean { log.close().unwrap() } else { drop(log) }
            }
            let path = active_log_path(dir.path());
            let mut bytes = fs::read(&path).unwrap();
            // A flipped bit is what a crash can leave only in unflushed data; after a clean
            // shutdown recovery trusts the files (as Kafka does) and does not CRC-check them.
            if !clean && !bytes.is_empty() {
                let at = flip.0 as usize % bytes.len();
                bytes[at] ^= flip.1;
            }
            bytes.extend_from_slice(&tail);
            fs::write(&path, &bytes).unwrap();
            fs::write(path.with_extension("index"), &index).unwrap();
            fs::write(path.with_extension("timeindex"), &time_index).unwrap();
            for name in ["leader-epoch-checkpoint", "log-start-offset", "recovery-point", "00000000000000000001.snapshot"] {
                fs::write(dir.path().join(name), &checkpoint).unwrap();
            }
            let (mut log, _report) = Log::open(dir.path(), small_config(), 0).unwrap();
            let end = log.log_end_offset();
            let _ = read_batches(&log, log.log_start_offset());
            let _ = log.offset_for_timestamp(0).unwrap();
            let _ = log.max_timestamp();
            let outcome = log.append(&simple(1, 0), 0, 0).unwrap();
            prop_assert_eq!(outcome.base_offset, end);
            drop(log);
            let log = open(dir.path(), small_config());
            prop_assert_eq!(log.log_end_offset(), end + 1);
        }
    }
}

#[test]
fn index_files_appear_with_their_first_entry_and_a_small_segment_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 100_000,
        index_interval_bytes: 1_000,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config.clone());
    assert_eq!(
        file_names(dir.path()),
        ["00000000000000000000.log"],
        "a new log is one file"
    );
    let _ = log.append(&simple(1, 10), 0, 0).unwrap();
    // A crash with a segment below the index interval: nothing to repair.
    drop(log);
    let (mut log, report) = Log::open(dir.path(), config.clone(), 0).unwrap();
    assert!(report.repairs.is_empty(), "{report}");
    for i in 0..20 {
        let _ = log.append(&simple(5, 20 + i), 0, 0).unwrap();
    }
    let now = file_names(dir.path());
    assert!(now.contains(&"00000000000000000000.index".to_string()), "{now:?}");
    assert!(now.contains(&"00000000000000000000.timeindex".to_string()), "{now:?}");
    // Lookups still find every offset, through the index.
    let first = read_batches(&log, 50)[0].0.base_offset;
    assert!(first <= 50 && 50 <= read_batches(&log, 50)[0].0.last_offset());
    log.close().unwrap();
    let (log, report) = Log::open(dir.path(), config, 0).unwrap();
    assert!(report.repairs.is_empty(), "{report}");
    assert_eq!(read_batches(&log, 0).len(), 21);
}
