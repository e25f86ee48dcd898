//! What an acknowledgement promises across process restarts.
//!
//! The promise under test: a record acknowledged with acks=all survives the broker process
//! ending, whether by SIGTERM (graceful: the broker flushes and exits 0) or by SIGKILL (a
//! crash: the data is in the page cache, which outlives the process). Machine crashes, which
//! would need fsync, are not simulated here.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{assert_partition_holds, create_topic, numbered, produce_numbered, start, utf8};
use rdkafka::Offset;
use strom_testkit::client::Delivered;
use strom_testkit::{poll_until, Admin, Consumer, Producer};

#[test]
fn acknowledged_records_survive_sigterm_and_restart() {
    let mut broker = start();
    create_topic(&broker, "durable", 2);
    let values = produce_numbered(&broker, "durable", "v", 1000);
    let status = broker.sigterm_and_wait();
    assert!(status.success(), "SIGTERM exit status {status}");

    broker.restart();
    assert_partition_holds(&broker, "durable", 0, &values);
    // Topic metadata survived too, and new records follow the old ones.
    assert_eq!(
        Admin::new(&broker.bootstrap()).topics().unwrap().get("durable"),
        Some(&2)
    );
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let delivered = producer.send_all_ok("durable", &numbered("after", 3, 0));
    assert_eq!(delivered[0].offset, 1000);
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let mut broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("crash", 1, &[("retention.ms", "86400000")]);
    let values = produce_numbered(&broker, "crash", "v", 1000);
    broker.sigkill();

    broker.restart();
    assert_partition_holds(&broker, "crash", 0, &values);
    let configs = Admin::new(&broker.bootstrap()).describe_topic_configs("crash").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("86400000"));
}

#[test]
fn repeated_crashes_lose_no_acknowledged_record() {
    let mut broker = start();
    create_topic(&broker, "crashes", 1);
    let mut expected = Vec::new();
    for round in 0..3 {
        expected.extend(produce_numbered(&broker, "crashes", &format!("r{round}"), 150));
        broker.sigkill();
        broker.restart();
        assert_partition_holds(&broker, "crashes", 0, &expected);
    }
}

#[test]
fn sigkill_during_produce_keeps_every_acknowledged_record() {
    let mut broker = start();
    create_topic(&broker, "busy", 1);
    let acked: Arc<Mutex<Vec<(Delivered, String)>>> = Arc::default();
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
                let recs = numbered(&format!("b{batch}"), 20, 0);
                for (rec, result) in recs.iter().zip(producer.send_all("busy", &recs)) {
                    if let Ok(delivered) = result {
                        acked.lock().unwrap().push((delivered, utf8(&rec.value)));
                    }
                }
            }
        }
    });

    // Kill while the writer is mid-stream, after a good number of acknowledgements.
    poll_until(Duration::from_secs(30), "500 acknowledged records", || {
        (acked.lock().unwrap().len() >= 500).then_some(())
    });
    broker.sigkill();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");

    broker.restart();
    let acked = acked.lock().unwrap().clone();
    let records = Consumer::new(&broker.bootstrap()).read_to_end("busy", 0, Offset::Beginning);
    let by_offset: std::collections::HashMap<i64, String> =
        records.iter().map(|r| (r.offset, utf8(&r.value))).collect();
    for (delivered, value) in &acked {
        assert_eq!(
            by_offset.get(&delivered.offset),
            Some(value),
            "acknowledged record at offset {} after restart",
            delivered.offset
        );
    }
    // The log has no holes: offsets run 0.. without gaps.
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.offset, i as i64, "offset gap after crash recovery");
    }
}

#[test]
fn admin_state_survives_a_crash() {
    let mut broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("grown", 1, &[]);
    admin.create_partitions("grown", 3).unwrap();
    admin.create_topic_ok("configured", 1, &[("cleanup.policy", "compact")]);
    admin
        .alter_topic_configs("configured", &[("retention.ms", "123456")])
        .unwrap();
    admin.create_topic_ok("deleted", 1, &[]);
    produce_numbered(&broker, "deleted", "gone", 5);
    admin.delete_topic("deleted").unwrap();
    admin.create_topic_ok("trimmed", 1, &[]);
    let values = produce_numbered(&broker, "trimmed", "t", 50);
    assert_eq!(admin.delete_records("trimmed", 0, 30).unwrap(), 30);
    drop(admin);
    broker.sigkill();

    broker.restart();
    let admin = Admin::new(&broker.bootstrap());
    let topics = admin.topics().unwrap();
    assert_eq!(topics.get("grown"), Some(&3), "{topics:?}");
    assert!(!topics.contains_key("deleted"), "deleted topic came back: {topics:?}");
    let configs = admin.describe_topic_configs("configured").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("123456"));
    assert_eq!(
        configs["cleanup.policy"].as_deref(),
        Some("delete"),
        "AlterConfigs reset it"
    );
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(
        consumer.watermarks("trimmed", 0).unwrap(),
        (30, 50),
        "DeleteRecords' low watermark after a crash"
    );
    let records = consumer.read_to_end("trimmed", 0, Offset::Beginning);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(read, values[30..]);
}

#[test]
fn many_segments_recover_after_a_crash() {
    let mut broker = start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("segmented", 2, &[("segment.bytes", "4096")]);
    let producer = Producer::new(
        &broker.bootstrap(),
        &[("acks", "all"), ("batch.size", "1024"), ("linger.ms", "1")],
    );
    let mut expected = [Vec::new(), Vec::new()];
    for partition in 0..2 {
        let recs = numbered(&format!("s{partition}-{}", "z".repeat(40)), 800, partition);
        producer.send_all_ok("segmented", &recs);
        expected[partition as usize] = recs.iter().map(|r| utf8(&r.value)).collect();
    }
    drop(producer);
    let segment_files = count_files(broker.data_dir(), ".log");
    assert!(segment_files > 10, "expected many segments, found {segment_files}");
    broker.sigkill();

    broker.restart();
    for partition in 0..2 {
        assert_partition_holds(&broker, "segmented", partition, &expected[partition as usize]);
    }
    // Offsets for time still work across segments after recovery.
    let consumer = Consumer::new(&broker.bootstrap());
    let records = consumer.read("segmented", 0, Offset::Offset(555), 1);
    assert_eq!(utf8(&records[0].value), expected[0][555]);
}

/// Files under `dir` (recursively) whose name ends with `suffix`.
fn count_files(dir: &std::path::Path, suffix: &str) -> usize {
    let mut count = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                count += 1;
            }
        }
    }
    count
}
