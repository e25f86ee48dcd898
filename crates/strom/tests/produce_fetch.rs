//! Produce and Fetch through a real client: what goes in comes out, in order, byte for byte.

mod common;

use std::collections::{HashMap, HashSet};

use common::{create_topic, numbered, start, utf8};
use rdkafka::Offset;
use strom_testkit::{Consumer, Producer, Rec};

#[test]
fn records_keep_their_order_within_a_partition() {
    let broker = start();
    create_topic(&broker, "ordered", 3);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let recs = numbered("v", 500, 1);
    let delivered = producer.send_all_ok("ordered", &recs);
    for (i, d) in delivered.iter().enumerate() {
        assert_eq!((d.partition, d.offset), (1, i as i64), "delivery of record {i}");
    }

    let consumer = Consumer::new(&broker.bootstrap());
    let records = consumer.read("ordered", 1, Offset::Beginning, 500);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.partition, 1);
        assert_eq!(record.offset, i as i64);
        assert_eq!(utf8(&record.value), format!("v-{i}"));
    }
    // The other partitions got nothing.
    for partition in [0, 2] {
        assert_eq!(consumer.watermarks("ordered", partition).unwrap(), (0, 0));
    }
    // Fetching from the middle starts exactly there.
    let tail = consumer.read("ordered", 1, Offset::Offset(250), 250);
    assert_eq!(tail[0].offset, 250);
    assert_eq!(utf8(&tail[0].value), "v-250");
    assert_eq!(utf8(&tail[249].value), "v-499");
}

#[test]
fn same_key_always_lands_in_the_same_partition() {
    let broker = start();
    create_topic(&broker, "keyed", 4);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "1")]);
    let mut recs = Vec::new();
    for round in 0..5 {
        for key in 0..20 {
            recs.push(Rec::keyed(format!("key-{key}"), format!("{key}/{round}")));
        }
    }
    let delivered = producer.send_all_ok("keyed", &recs);
    let mut partition_of_key: HashMap<Vec<u8>, i32> = HashMap::new();
    for (rec, d) in recs.iter().zip(&delivered) {
        let key = rec.key.clone().unwrap();
        let first = *partition_of_key.entry(key).or_insert(d.partition);
        assert_eq!(first, d.partition, "key {:?} moved partition", utf8(&rec.key));
    }
    let used: HashSet<i32> = partition_of_key.values().copied().collect();
    assert!(used.len() > 1, "20 keys all hashed to {used:?}");

    // What each partition holds agrees with the delivery reports, in send order per key.
    let consumer = Consumer::new(&broker.bootstrap());
    let mut read = 0;
    for partition in 0..4 {
        let records = consumer.read_to_end("keyed", partition, Offset::Beginning);
        let mut rounds_seen: HashMap<Vec<u8>, usize> = HashMap::new();
        for record in &records {
            let key = record.key.clone().expect("key kept");
            assert_eq!(partition_of_key[&key], partition, "key {:?}", utf8(&record.key));
            let round = rounds_seen.entry(key).or_default();
            let key_number = utf8(&record.key).trim_start_matches("key-").to_owned();
            assert_eq!(utf8(&record.value), format!("{key_number}/{round}"));
            *round += 1;
        }
        read += records.len();
    }
    assert_eq!(read, 100);
}

#[test]
fn headers_round_trip() {
    let broker = start();
    create_topic(&broker, "headers", 1);
    let producer = Producer::new(&broker.bootstrap(), &[]);
    let recs = vec![
        Rec::value("plain"),
        Rec::value("one").header("trace-id", Some(b"abc-123")),
        Rec::keyed("k", "many")
            .header("a", Some(b"1"))
            .header("b", None)
            .header("a", Some(b"2"))
            .header("empty", Some(b""))
            .header("binary", Some(&[0, 255, 1, 254, 0])),
    ];
    let recs: Vec<Rec> = recs.into_iter().map(|r| r.partition(0)).collect();
    producer.send_all_ok("headers", &recs);

    let records = Consumer::new(&broker.bootstrap()).read("headers", 0, Offset::Beginning, 3);
    for (rec, record) in recs.iter().zip(&records) {
        assert_eq!(record.headers, rec.headers, "headers of {:?}", utf8(&rec.value));
        assert_eq!(record.value, rec.value);
        assert_eq!(record.key, rec.key);
    }
}

#[test]
fn null_keys_and_null_values_stay_distinct_from_empty() {
    let broker = start();
    create_topic(&broker, "nulls", 1);
    let producer = Producer::new(&broker.bootstrap(), &[]);
    let recs = vec![
        Rec {
            key: None,
            value: Some(b"no key".to_vec()),
            ..Rec::default()
        },
        Rec {
            key: Some(b"no value".to_vec()),
            value: None,
            ..Rec::default()
        },
        Rec::default(),
        Rec {
            key: Some(Vec::new()),
            value: Some(Vec::new()),
            ..Rec::default()
        },
    ];
    let recs: Vec<Rec> = recs.into_iter().map(|r| r.partition(0)).collect();
    producer.send_all_ok("nulls", &recs);

    let records = Consumer::new(&broker.bootstrap()).read("nulls", 0, Offset::Beginning, 4);
    for (i, (rec, record)) in recs.iter().zip(&records).enumerate() {
        assert_eq!(record.key, rec.key, "key of record {i}");
        assert_eq!(record.value, rec.value, "value of record {i}");
    }
}

#[test]
fn every_compression_codec_round_trips() {
    let broker = start();
    let consumer = Consumer::new(&broker.bootstrap());
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&broker, &topic, 1);
        let producer = Producer::new(
            &broker.bootstrap(),
            &[("compression.type", codec), ("linger.ms", "50"), ("acks", "all")],
        );
        // Compressible values of varying length, keys and a header, so batches hold many
        // records and every record field passes through the codec.
        let recs: Vec<Rec> = (0..300)
            .map(|i| {
                Rec::keyed(format!("k{}", i % 7), format!("{codec} record {i} ").repeat(1 + i % 13))
                    .header("i", Some(format!("{i}").as_bytes()))
                    .partition(0)
            })
            .collect();
        let delivered = producer.send_all_ok(&topic, &recs);
        assert_eq!(delivered.last().unwrap().offset, 299, "{codec}");

        let records = consumer.read(&topic, 0, Offset::Beginning, 300);
        for (i, (rec, record)) in recs.iter().zip(&records).enumerate() {
            assert_eq!(record.offset, i as i64, "{codec} offset");
            assert_eq!(record.key, rec.key, "{codec} key {i}");
            assert_eq!(record.value, rec.value, "{codec} value {i}");
            assert_eq!(record.headers, rec.headers, "{codec} headers {i}");
        }
    }
}

#[test]
fn every_acks_level_delivers() {
    let broker = start();
    let consumer = Consumer::new(&broker.bootstrap());
    for acks in ["0", "1", "all"] {
        let topic = format!("acks-{acks}");
        create_topic(&broker, &topic, 1);
        let producer = Producer::new(&broker.bootstrap(), &[("acks", acks)]);
        let recs = numbered(&format!("acks{acks}"), 200, 0);
        let delivered = producer.send_all_ok(&topic, &recs);
        if acks != "0" {
            let offsets: Vec<i64> = delivered.iter().map(|d| d.offset).collect();
            assert_eq!(offsets, (0..200).collect::<Vec<i64>>(), "acks={acks}");
        }
        // acks=0 has no acknowledgement to wait for: the records must still arrive.
        let records = consumer.read(&topic, 0, Offset::Beginning, 200);
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.offset, i as i64, "acks={acks}");
            assert_eq!(utf8(&record.value), format!("acks{acks}-{i}"));
        }
    }
}

#[test]
fn large_record_round_trips() {
    let broker = start();
    create_topic(&broker, "large", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let value: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let recs = vec![
        Rec::value("before").partition(0),
        Rec::value(value.clone()).partition(0),
        Rec::value("after").partition(0),
    ];
    producer.send_all_ok("large", &recs);
    let records = Consumer::new(&broker.bootstrap()).read("large", 0, Offset::Beginning, 3);
    assert_eq!(records[1].value.as_deref(), Some(&value[..]));
    assert_eq!(utf8(&records[2].value), "after");
}

#[test]
fn fetch_at_the_high_watermark_returns_records_produced_later() {
    let broker = start();
    create_topic(&broker, "live", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    producer.send_all_ok("live", &numbered("old", 20, 0));
    let consumer = Consumer::new(&broker.bootstrap());
    assert_eq!(consumer.watermarks("live", 0).unwrap(), (0, 20));
    // The reader starts fetching at offset 20 (empty for now) while the producer writes.
    let consumer_thread = std::thread::spawn({
        let bootstrap = broker.bootstrap();
        move || {
            let consumer = Consumer::new(&bootstrap);
            consumer.read("live", 0, Offset::Offset(20), 5)
        }
    });
    producer.send_all_ok("live", &numbered("new", 5, 0));
    let records = consumer_thread.join().expect("consumer thread");
    let values: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(values, ["new-0", "new-1", "new-2", "new-3", "new-4"]);
    assert_eq!(records[0].offset, 20);
}
