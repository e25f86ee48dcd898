//! Recovery from damaged data directories, and the data directory's exclusivity.
//!
//! SIGKILL alone cannot tear a write (the page cache keeps it); a machine crash can. These
//! tests damage segment and index files by hand between a stop and a start, the way a crash
//! mid-write would, and check the broker recovers: it keeps every intact record, drops only
//! the damaged tail, never serves garbage, and continues the log at the right offset.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{assert_partition_holds, create_topic, numbered, produce_numbered, start, utf8};
use rdkafka::Offset;
use strom_testkit::{poll_until, Broker, Consumer, Producer};

/// Files of `<data dir>/<topic>-<partition>` ending in `suffix`, sorted by name (so by base
/// offset).
fn partition_files(broker: &Broker, topic: &str, partition: i32, suffix: &str) -> Vec<PathBuf> {
    let dir = broker.data_dir().join(format!("{topic}-{partition}"));
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn active_segment(broker: &Broker, topic: &str) -> PathBuf {
    partition_files(broker, topic, 0, ".log").pop().expect("a segment file")
}

/// Reads the whole partition and checks it is a prefix of `written` of at least `at_least`
/// records; returns its length.
fn assert_prefix(broker: &Broker, topic: &str, written: &[String], at_least: usize) -> usize {
    let records = Consumer::new(&broker.bootstrap()).read_to_end(topic, 0, Offset::Beginning);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert!(
        read.len() >= at_least,
        "kept {} records, expected at least {at_least}",
        read.len()
    );
    assert_eq!(
        read[..],
        written[..read.len()],
        "recovered log is not a prefix of what was written"
    );
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.offset, i as i64);
    }
    read.len()
}

/// After recovery the log takes new writes at the next offset.
fn assert_continues_at(broker: &Broker, topic: &str, next_offset: usize) {
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let delivered = producer.send_all_ok(topic, &numbered("after", 2, 0));
    assert_eq!(delivered[0].offset, next_offset as i64, "log continues at");
}

#[test]
fn garbage_after_the_last_batch_is_truncated_on_restart() {
    let mut broker = start();
    create_topic(&broker, "torn", 1);
    let written = produce_numbered(&broker, "torn", "w", 200);
    broker.sigkill();
    let segment = active_segment(&broker, "torn");
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    // Something that starts like a batch header (offset 200, a plausible length) then noise.
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&200i64.to_be_bytes());
    garbage.extend_from_slice(&500i32.to_be_bytes());
    garbage.extend((0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    file.write_all(&garbage).unwrap();
    drop(file);

    broker.restart();
    let kept = assert_prefix(&broker, "torn", &written, 200);
    assert_eq!(kept, 200);
    assert_continues_at(&broker, "torn", 200);
}

#[test]
fn a_torn_last_batch_is_dropped_and_the_rest_kept() {
    let mut broker = start();
    create_topic(&broker, "cut", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "0")]);
    let mut written = Vec::new();
    // Several requests, so the segment holds several batches.
    for round in 0..10 {
        let recs = numbered(&format!("r{round}"), 10, 0);
        producer.send_all_ok("cut", &recs);
        written.extend(recs.iter().map(|r| utf8(&r.value)));
    }
    drop(producer);
    broker.sigkill();
    let segment = active_segment(&broker, "cut");
    let length = fs::metadata(&segment).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(length - 7)
        .unwrap();

    broker.restart();
    // Only the torn batch (at most one request's worth) may go.
    let kept = assert_prefix(&broker, "cut", &written, 90);
    assert!(kept < 100, "a torn batch cannot be served whole");
    assert_continues_at(&broker, "cut", kept);
}

#[test]
fn damaged_index_files_are_rebuilt() {
    let mut broker = start();
    let admin = strom_testkit::Admin::new(&broker.bootstrap());
    admin.create_topic_ok(
        "indexed",
        1,
        &[("segment.bytes", "8192"), ("index.interval.bytes", "128")],
    );
    drop(admin);
    let producer = Producer::new(
        &broker.bootstrap(),
        &[("acks", "all"), ("batch.size", "1024"), ("linger.ms", "1")],
    );
    let base_ms = 1_700_000_000_000i64;
    let recs: Vec<strom_testkit::Rec> = (0..600)
        .map(|i| {
            strom_testkit::Rec::value(format!("i{i:04}-{}", "p".repeat(40)))
                .partition(0)
                .timestamp(base_ms + i * 10)
        })
        .collect();
    producer.send_all_ok("indexed", &recs);
    drop(producer);
    let written: Vec<String> = recs.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(broker.sigterm_and_wait().code(), Some(0));

    let indexes: Vec<PathBuf> = partition_files(&broker, "indexed", 0, ".index")
        .into_iter()
        .chain(partition_files(&broker, "indexed", 0, ".timeindex"))
        .collect();
    assert!(indexes.len() >= 2, "{indexes:?}");
    for (i, index) in indexes.iter().enumerate() {
        if i % 2 == 0 {
            fs::write(index, vec![0xA5; 4096]).unwrap();
        } else {
            fs::remove_file(index).unwrap();
        }
    }

    broker.restart();
    assert_partition_holds(&broker, "indexed", 0, &written);
    let consumer = Consumer::new(&broker.bootstrap());
    for i in [0usize, 123, 377, 599] {
        let records = consumer.read("indexed", 0, Offset::Offset(i as i64), 1);
        assert_eq!(utf8(&records[0].value), written[i], "seek to {i}");
        let by_time = consumer.offset_for_time("indexed", 0, base_ms + i as i64 * 10).unwrap();
        assert_eq!(by_time, Offset::Offset(i as i64), "time lookup of record {i}");
    }
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let mut first = start();
    create_topic(&first, "owned", 1);
    let written = produce_numbered(&first, "owned", "o", 30);
    let second = Broker::builder(strom_testkit::bin!())
        .data_dir(first.data_dir())
        .try_start();
    assert!(second.is_err(), "a second broker started on a data dir in use");
    first.assert_healthy();
    assert_partition_holds(&first, "owned", 0, &written);
}

#[test]
fn sigterm_under_load_exits_cleanly_and_keeps_acknowledged_records() {
    let mut broker = start();
    create_topic(&broker, "loaded", 1);
    let acked: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = thread::spawn({
        let bootstrap = broker.bootstrap();
        let acked = Arc::clone(&acked);
        let stop = Arc::clone(&stop);
        move || {
            let producer = Producer::new(
                &bootstrap,
                &[("acks", "all"), ("message.timeout.ms", "3000"), ("linger.ms", "1")],
            );
            for batch in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let recs = numbered(&format!("l{batch}"), 25, 0);
                for (rec, result) in recs.iter().zip(producer.send_all("loaded", &recs)) {
                    if let Ok(delivered) = result {
                        acked.lock().unwrap().push((delivered.offset, utf8(&rec.value)));
                    }
                }
            }
        }
    });
    poll_until(Duration::from_secs(30), "300 acknowledged records", || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    });
    let status = broker.sigterm_and_wait();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(status.success(), "exit status under load: {status}");

    broker.restart();
    let records = Consumer::new(&broker.bootstrap()).read_to_end("loaded", 0, Offset::Beginning);
    let by_offset: std::collections::HashMap<i64, String> =
        records.iter().map(|r| (r.offset, utf8(&r.value))).collect();
    for (offset, value) in acked.lock().unwrap().iter() {
        assert_eq!(by_offset.get(offset), Some(value), "acknowledged offset {offset}");
    }
}
