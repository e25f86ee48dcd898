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

#[test]
fn reading_from_the_middle_of_a_compressed_batch_starts_at_the_asked_offset() {
    let broker = start();
    create_topic(&broker, "mid-batch", 1);
    let producer = Producer::new(
        &broker.bootstrap(),
        &[("compression.type", "lz4"), ("linger.ms", "100"), ("acks", "all")],
    );
    producer.send_all_ok("mid-batch", &numbered("m", 100, 0));
    let records = Consumer::new(&broker.bootstrap()).read("mid-batch", 0, Offset::Offset(57), 10);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (57..67).collect::<Vec<i64>>());
    assert_eq!(utf8(&records[0].value), "m-57");
}

#[test]
fn log_append_time_topics_stamp_records_with_broker_time() {
    let broker = start();
    let admin = strom_testkit::Admin::new(&broker.bootstrap());
    admin.create_topic_ok("appended", 1, &[("message.timestamp.type", "LogAppendTime")]);
    admin.create_topic_ok("created", 1, &[]);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let before_ms = now_ms();
    let ancient = |topic: &str| {
        let recs: Vec<Rec> = (0..3)
            .map(|i| Rec::value(format!("{topic}-{i}")).partition(0).timestamp(1_000 + i))
            .collect();
        producer.send_all_ok(topic, &recs);
    };
    ancient("appended");
    ancient("created");
    let after_ms = now_ms();

    let consumer = Consumer::new(&broker.bootstrap());
    for record in consumer.read("appended", 0, Offset::Beginning, 3) {
        let ts = record.timestamp_ms.expect("timestamp");
        assert!(
            (before_ms - 1000..=after_ms + 1000).contains(&ts),
            "LogAppendTime record stamped {ts}, produced between {before_ms} and {after_ms}"
        );
    }
    let created = consumer.read("created", 0, Offset::Beginning, 3);
    let stamps: Vec<Option<i64>> = created.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(stamps, [Some(1000), Some(1001), Some(1002)], "CreateTime kept");
}

#[test]
fn a_record_larger_than_the_fetch_limits_is_still_delivered() {
    let broker = start();
    create_topic(&broker, "oversized-fetch", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let big = vec![b'q'; 20_000];
    producer.send_all_ok(
        "oversized-fetch",
        &[Rec::value(big.clone()).partition(0), Rec::value("small").partition(0)],
    );
    // Limits far below the first batch: the broker must still return it (KIP-74).
    let consumer = Consumer::with(
        &broker.bootstrap(),
        &[
            ("message.max.bytes", "1000"),
            ("fetch.max.bytes", "1024"),
            ("max.partition.fetch.bytes", "1024"),
            // Only the request limits are small; the socket must still take the answer.
            ("receive.message.max.bytes", "1000000"),
        ],
    );
    let records = consumer.read("oversized-fetch", 0, Offset::Beginning, 2);
    assert_eq!(records[0].value.as_deref(), Some(&big[..]));
    assert_eq!(utf8(&records[1].value), "small");
}

#[test]
fn concurrent_producers_to_one_partition_get_distinct_offsets() {
    let broker = start();
    create_topic(&broker, "shared", 1);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let bootstrap = broker.bootstrap();
            std::thread::spawn(move || {
                let producer = Producer::new(&bootstrap, &[("acks", "all")]);
                producer.send_all_ok("shared", &numbered(&format!("w{w}"), 250, 0))
            })
        })
        .collect();
    let mut offsets: Vec<i64> = Vec::new();
    for writer in writers {
        let delivered = writer.join().expect("writer");
        // Each producer's own records keep their order.
        assert!(delivered.windows(2).all(|d| d[0].offset < d[1].offset));
        offsets.extend(delivered.iter().map(|d| d.offset));
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..1000).collect::<Vec<i64>>(), "distinct, no gaps");
    let records = Consumer::new(&broker.bootstrap()).read_to_end("shared", 0, Offset::Beginning);
    assert_eq!(records.len(), 1000);
}

#[test]
fn unknown_topics_are_auto_created_with_the_broker_default_partition_count() {
    let broker = strom_testkit::Broker::builder(strom_testkit::bin!())
        .set("auto.create.topics.enable", "true")
        .set("num.partitions", "3")
        .start();
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let delivered = producer.send_all_ok("auto-made", &[Rec::value("first").partition(2)]);
    assert_eq!((delivered[0].partition, delivered[0].offset), (2, 0));
    let topics = strom_testkit::Admin::new(&broker.bootstrap()).topics().unwrap();
    assert_eq!(topics.get("auto-made"), Some(&3));
}

#[test]
fn without_auto_create_producing_to_an_unknown_topic_fails() {
    let broker = strom_testkit::Broker::builder(strom_testkit::bin!())
        .set("auto.create.topics.enable", "false")
        .start();
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all"), ("message.timeout.ms", "3000")]);
    let result = producer.send("not-there", &Rec::value("lost"));
    assert!(result.is_err(), "delivered to a topic that does not exist: {result:?}");
    let topics = strom_testkit::Admin::new(&broker.bootstrap()).topics().unwrap();
    assert!(!topics.contains_key("not-there"), "{topics:?}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn one_consumer_reads_many_partitions_of_many_topics_in_order() {
    let broker = start();
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all"), ("linger.ms", "20")]);
    let mut assignment = rdkafka::TopicPartitionList::new();
    let mut expected: HashMap<(String, i32), Vec<String>> = HashMap::new();
    for topic in ["many-a", "many-b"] {
        create_topic(&broker, topic, 4);
        for partition in 0..4 {
            let recs = numbered(&format!("{topic}/{partition}"), 400, partition);
            producer.send_all_ok(topic, &recs);
            expected.insert(
                (topic.to_owned(), partition),
                recs.iter().map(|r| utf8(&r.value)).collect(),
            );
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .unwrap();
        }
    }
    let consumer = Consumer::new(&broker.bootstrap());
    rdkafka::consumer::Consumer::assign(consumer.inner(), &assignment).unwrap();
    let mut read: HashMap<(String, i32), Vec<String>> = HashMap::new();
    let total: usize = expected.values().map(Vec::len).sum();
    let mut count = 0;
    strom_testkit::poll_until(std::time::Duration::from_secs(30), "all 3200 records", || {
        while let Some(result) = consumer.inner().poll(std::time::Duration::from_millis(100)) {
            match result {
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {}
                Err(e) => panic!("consume: {e}"),
                Ok(message) => {
                    use rdkafka::Message as _;
                    let key = (message.topic().to_owned(), message.partition());
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                    let list = read.entry(key).or_default();
                    assert_eq!(message.offset(), list.len() as i64, "offsets per partition");
                    list.push(value);
                    count += 1;
                }
            }
        }
        (count >= total).then_some(())
    });
    assert_eq!(read, expected);
}

#[test]
fn fifty_thousand_small_records_round_trip() {
    let broker = start();
    create_topic(&broker, "volume", 1);
    let producer = Producer::new(
        &broker.bootstrap(),
        &[("acks", "1"), ("linger.ms", "20"), ("compression.type", "lz4")],
    );
    let recs = numbered("n", 50_000, 0);
    let delivered = producer.send_all_ok("volume", &recs);
    assert_eq!(delivered.last().unwrap().offset, 49_999);
    let records = Consumer::new(&broker.bootstrap()).read_to_end("volume", 0, Offset::Beginning);
    assert_eq!(records.len(), 50_000);
    for (i, record) in records.iter().enumerate().step_by(997) {
        assert_eq!(record.offset, i as i64);
        assert_eq!(utf8(&record.value), format!("n-{i}"));
    }
    assert!(records.windows(2).all(|w| w[1].offset == w[0].offset + 1));
}
