//! Replicated topics on clusters of `strom server` processes on loopback, driven by rdkafka and
//! the raw wire client: followers copy their leaders' logs, the high watermark waits for the
//! ISR, acks=all holds `min.insync.replicas`, and no acknowledged record is lost when a leader
//! dies, stops or comes back, or while a broker is decommissioned under load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Offset;
use strom_testkit::cluster::metadata;
use strom_testkit::wire::{record_batch, BatchProducer};
use strom_testkit::{poll_until, Admin, Broker, Cluster, Consumer, Producer, Rec};

const WAIT: Duration = Duration::from_secs(40);

fn cluster(size: usize) -> Cluster {
    Cluster::start(
        strom_testkit::bin!(),
        size,
        &[
            ("broker.session.timeout.ms", "3000"),
            ("broker.heartbeat.interval.ms", "500"),
            ("replica.lag.time.max.ms", "3000"),
        ],
    )
}

/// Per partition of `topic`, as `node` answers Metadata: (leader, replicas, ISR).
type Layout = BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)>;

fn layout(node: &Broker, topic: &str) -> Option<Layout> {
    let metadata = metadata(node)?;
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))?;
    Some(
        found
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    (
                        p.leader_id.0,
                        p.replica_nodes.iter().map(|b| b.0).collect(),
                        p.isr_nodes.iter().map(|b| b.0).collect(),
                    ),
                )
            })
            .collect(),
    )
}

/// Waits until, as `node` sees it, every partition has a leader and an ISR of `isr_size`.
fn wait_for_isr(node: &Broker, topic: &str, isr_size: usize) -> Layout {
    poll_until(
        WAIT,
        &format!("every partition of {topic} with an ISR of {isr_size}"),
        || {
            layout(node, topic)
                .filter(|l| !l.is_empty() && l.values().all(|(leader, _, isr)| *leader > 0 && isr.len() == isr_size))
        },
    )
}

/// A batch of one uncompressed record, as a plain producer sends it.
fn one_record(value: &str) -> bytes::Bytes {
    record_batch(
        &[value.as_bytes()],
        BatchProducer::NONE,
        kafka_protocol::records::Compression::None,
        1_000,
    )
}

/// Reads every partition to its end and returns the values, in offset order, per partition.
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<String>> {
    let consumer = Consumer::new(bootstrap);
    (0..partitions)
        .map(|p| {
            let values = consumer
                .read_to_end(topic, p, Offset::Beginning)
                .iter()
                .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
                .collect();
            (p, values)
        })
        .collect()
}

/// Every acknowledged value is there exactly once, in the order it was acknowledged within
/// its partition; nothing is there twice.
fn assert_acknowledged_read_once(acked: &BTreeMap<i32, Vec<String>>, read: &BTreeMap<i32, Vec<String>>) {
    for (partition, values) in read {
        let distinct: BTreeSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), values.len(), "duplicates in partition {partition}");
    }
    for (partition, acknowledged) in acked {
        let stored = read.get(partition).cloned().unwrap_or_default();
        let position: BTreeMap<&String, usize> = stored.iter().enumerate().map(|(i, v)| (v, i)).collect();
        let mut last = None;
        for value in acknowledged {
            let at = *position
                .get(value)
                .unwrap_or_else(|| panic!("acknowledged {value} lost from partition {partition}"));
            assert!(
                last.is_none_or(|l| l < at),
                "{value} out of order in partition {partition}"
            );
            last = Some(at);
        }
    }
}

/// A partition's stored batches on one broker: its segment files' bytes, in offset order.
fn stored_bytes(node: &Broker, partition_dir: &str) -> Option<Vec<u8>> {
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(node.data_dir().join(partition_dir))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let mut bytes = Vec::new();
    for segment in segments {
        bytes.extend(std::fs::read(segment).ok()?);
    }
    Some(bytes)
}

/// A producer writing acks=all, idempotent, in the background until stopped; it keeps what
/// was acknowledged, per partition, in acknowledgement order.
struct BackgroundProducer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<i32, Vec<String>>>>,
    count: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl BackgroundProducer {
    fn start(bootstrap: &str, topic: &str, partitions: i32) -> BackgroundProducer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::<i32, Vec<String>>::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
        let thread = {
            let (stop, acked, count) = (stop.clone(), acked.clone(), count.clone());
            std::thread::spawn(move || {
                let producer = Producer::new(
                    &bootstrap,
                    &[
                        ("acks", "all"),
                        ("enable.idempotence", "true"),
                        ("message.timeout.ms", "30000"),
                    ],
                );
                let mut failed = 0;
                // Bounded: at most this many rounds of 30 records.
                for round in 0..2_000 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let recs: Vec<Rec> = (0..30)
                        .map(|i| Rec::value(format!("v-{round}-{i}")).partition(i % partitions))
                        .collect();
                    for (rec, result) in recs.iter().zip(producer.send_all(&topic, &recs)) {
                        match result {
                            Ok(delivered) => {
                                let value = String::from_utf8(rec.value.clone().unwrap_or_default()).unwrap();
                                acked
                                    .lock()
                                    .unwrap()
                                    .entry(delivered.partition)
                                    .or_default()
                                    .push(value);
                                count.fetch_add(1, Ordering::AcqRel);
                            }
                            Err(_) => failed += 1,
                        }
                    }
                }
                failed
            })
        };
        BackgroundProducer {
            stop,
            acked,
            count,
            thread: Some(thread),
        }
    }

    fn wait_for(&self, count: usize, what: &str) {
        poll_until(WAIT, what, || {
            (self.count.load(Ordering::Acquire) >= count).then_some(())
        });
    }

    /// Stops and returns what was acknowledged, and how many sends failed.
    fn finish(mut self) -> (BTreeMap<i32, Vec<String>>, usize) {
        self.stop.store(true, Ordering::Release);
        let failed = self.thread.take().unwrap().join().expect("producer thread");
        (self.acked.lock().unwrap().clone(), failed)
    }
}

#[test]
fn acknowledged_records_survive_a_leaders_sigkill_and_the_restarted_broker_catches_up() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("r", 3, 3, &[("min.insync.replicas", "2")], false)
        .expect("create a topic with three replicas");
    let before = wait_for_isr(&cluster.nodes[0], "r", 3);
    for (leader, replicas, _) in before.values() {
        assert_eq!(replicas.len(), 3);
        assert!(replicas.contains(leader));
    }
    // Every broker holds a copy of every partition.
    for node in &cluster.nodes {
        for partition in 0..3 {
            assert!(node.data_dir().join(format!("r-{partition}")).exists());
        }
    }

    let producer = BackgroundProducer::start(&bootstrap, "r", 3);
    producer.wait_for(300, "records acknowledged before the crash");
    let victim = before[&0].0 as usize;
    cluster.node(victim).sigkill();
    let at_crash = producer.count.load(Ordering::Acquire);
    producer.wait_for(at_crash + 600, "records acknowledged after the crash");
    let (acked, _failed) = producer.finish();

    // Leadership moved off the dead broker, which left the ISR.
    let survivor = if victim == 1 { 2 } else { 1 };
    let after = wait_for_isr(&cluster.nodes[survivor - 1], "r", 2);
    assert!(
        after
            .values()
            .all(|(leader, _, isr)| *leader as usize != victim && !isr.contains(&(victim as i32))),
        "{after:?}"
    );
    let live = cluster.nodes[survivor - 1].bootstrap();
    assert_acknowledged_read_once(&acked, &read_all(&live, "r", 3));

    // The dead broker returns, catches up and rejoins every ISR.
    cluster.node(victim).restart();
    wait_for_isr(&cluster.nodes[survivor - 1], "r", 3);
    // Another broker dies: what is read now comes from the logs the restarted broker copied
    // too (two of the three hold everything, and it is one of the two left).
    let other = (1..=3).find(|n| *n != victim && *n != survivor).unwrap();
    cluster.node(other).sigkill();
    wait_for_isr(&cluster.nodes[victim - 1], "r", 2);
    let read = read_all(&cluster.nodes[victim - 1].bootstrap(), "r", 3);
    assert_acknowledged_read_once(&acked, &read);
    // The restarted broker's own copy is whole: it leads some partitions now and follows the
    // others with nothing missing (its log ends where the leader's does).
    let total: usize = read.values().map(Vec::len).sum();
    assert!(total >= acked.values().map(Vec::len).sum::<usize>());
}

#[test]
fn acks_all_holds_min_insync_replicas_and_acks_one_does_not_wait() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("strict", 1, 3, &[("min.insync.replicas", "3")], false)
        .expect("create");
    let before = wait_for_isr(&cluster.nodes[0], "strict", 3);
    let leader = before[&0].0 as usize;
    let mut wire = cluster.nodes[leader - 1].wire();
    let batch = one_record;
    // All three in sync: acks=all is answered once both followers have the batch.
    let answer = wire.produce("strict", 0, batch("a"), -1).expect("produce");
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));

    // A follower dies; once it is out of the ISR, acks=all is refused before the append...
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    cluster.node(follower).sigkill();
    wait_for_isr(&cluster.nodes[leader - 1], "strict", 2);
    let answer = wire.produce("strict", 0, batch("b"), -1).expect("produce");
    assert_eq!(answer.error_code, 19, "NOT_ENOUGH_REPLICAS: {answer:?}");
    // ... while acks=1 is answered by the leader alone.
    let answer = wire.produce("strict", 0, batch("c"), 1).expect("produce");
    assert_eq!((answer.error_code, answer.base_offset), (0, 1));
    // A consumer sees only what every ISR member holds; the high watermark waits at 1 here
    // (KIP-966: it does not move while the ISR is below min.insync.replicas).
    let consumer = Consumer::new(&cluster.nodes[leader - 1].bootstrap());
    assert_eq!(consumer.watermarks("strict", 0).expect("watermarks"), (0, 1));

    // The follower returns: it catches up, rejoins, and the high watermark passes "c".
    cluster.node(follower).restart();
    wait_for_isr(&cluster.nodes[leader - 1], "strict", 3);
    poll_until(WAIT, "the high watermark to pass the acks=1 record", || {
        (consumer.watermarks("strict", 0).ok()? == (0, 2)).then_some(())
    });
    let answer = wire.produce("strict", 0, batch("d"), -1).expect("produce");
    assert_eq!((answer.error_code, answer.base_offset), (0, 2));
}

#[test]
fn a_controlled_shutdown_of_a_leader_loses_nothing_acknowledged() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("calm", 2, 3, &[("min.insync.replicas", "2")], false)
        .expect("create");
    let before = wait_for_isr(&cluster.nodes[0], "calm", 3);
    let producer = BackgroundProducer::start(&bootstrap, "calm", 2);
    producer.wait_for(200, "records acknowledged before the shutdown");
    let leader = before[&0].0 as usize;
    let status = cluster.node(leader).sigterm_and_wait();
    assert!(status.success(), "SIGTERM exit status {status}");
    let at_stop = producer.count.load(Ordering::Acquire);
    producer.wait_for(at_stop + 400, "records acknowledged after the shutdown");
    let (acked, failed) = producer.finish();
    assert_eq!(failed, 0, "a controlled shutdown fails no send");
    let survivor = if leader == 1 { 2 } else { 1 };
    assert_acknowledged_read_once(&acked, &read_all(&cluster.nodes[survivor - 1].bootstrap(), "calm", 2));
}

#[test]
fn a_paused_leader_replaced_meanwhile_acknowledges_nothing_and_rejoins_with_the_new_leaders_log() {
    use strom_testkit::wire::{decode_response, partition_response, produce_request, WireClient, PRODUCE_VERSION};
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("paused", 1, 3, &[("min.insync.replicas", "2")], false)
        .expect("create");
    let before = wait_for_isr(&cluster.nodes[0], "paused", 3);
    let old = before[&0].0 as usize;
    let batch = one_record;
    let answer = cluster.nodes[old - 1]
        .wire()
        .produce("paused", 0, batch("a"), -1)
        .expect("produce");
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));

    // The leader pauses past the session timeout with an acks=all write waiting in its socket.
    let stream = std::net::TcpStream::connect(cluster.nodes[old - 1].addr()).expect("connect");
    let mut stale = WireClient::from_stream(stream, Duration::from_secs(30)).expect("client");
    cluster.nodes[old - 1].sigstop();
    let mut request = produce_request("paused", 0, batch("stale"), -1);
    request.timeout_ms = 5_000;
    let (correlation_id, body) = stale.encode(&request, PRODUCE_VERSION).expect("encode");
    stale.send_body(&body).expect("send");

    // Another replica takes over and acknowledges new writes.
    let other = (1..=3).find(|n| *n != old).unwrap();
    let moved = poll_until(WAIT, "a new leader", || {
        layout(&cluster.nodes[other - 1], "paused").filter(|l| l[&0].0 > 0 && l[&0].0 as usize != old)
    });
    let new = moved[&0].0 as usize;
    let mut fresh = cluster.nodes[new - 1].wire();
    for (value, offset) in [("b", 1), ("c", 2)] {
        let answer = fresh.produce("paused", 0, batch(value), -1).expect("produce");
        assert_eq!((answer.error_code, answer.base_offset), (0, offset), "{value}");
    }

    // The old leader resumes: the write it held is not acknowledged (it can no longer reach
    // the ISR it knew), whether it appended it before learning it was replaced or not.
    cluster.nodes[old - 1].sigcont();
    let frame = stale.read_frame().expect("an answer from the resumed broker");
    let response = decode_response::<kafka_protocol::messages::ProduceRequest>(frame, PRODUCE_VERSION, correlation_id)
        .expect("decode");
    let answer = partition_response(response, "paused", 0).expect("partition");
    assert!(
        [6, 7].contains(&answer.error_code),
        "NOT_LEADER_OR_FOLLOWER or REQUEST_TIMED_OUT, got {answer:?}"
    );

    // It rejoins as a follower, and its log becomes the new leader's, byte for byte: any copy
    // of the write it took while deposed is truncated away.
    wait_for_isr(&cluster.nodes[new - 1], "paused", 3);
    let log_bytes = |node: usize| stored_bytes(&cluster.nodes[node - 1], "paused-0");
    let compared = strom_testkit::wait::try_poll_until(WAIT, || {
        let (deposed, leading) = (log_bytes(old)?, log_bytes(new)?);
        (deposed == leading).then_some(())
    });
    if compared.is_none() {
        panic!(
            "the old leader's log never equalled the new leader's:\n{:?}\n{:?}",
            log_bytes(old),
            log_bytes(new)
        );
    }
    let read = read_all(&cluster.nodes[new - 1].bootstrap(), "paused", 1);
    assert_eq!(read[&0], ["a", "b", "c"]);
}

#[test]
fn pipelined_produces_on_one_connection_are_appended_and_answered_in_request_order() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ProduceRequest};
    use strom_testkit::wire::{decode_response, partition_response, produce_request, topic_name, PRODUCE_VERSION};

    enum Sent {
        Produce {
            partition: i32,
            correlation_id: i32,
        },
        /// A ListOffsets (latest) and, per partition, the end of its last acks=all write before it.
        Offsets {
            correlation_id: i32,
            acked: BTreeMap<i32, i64>,
        },
    }
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("pipelined", 6, 3, &[], false)
        .expect("create");
    let layout = wait_for_isr(&cluster.nodes[0], "pipelined", 3);
    let leader = (1..=3)
        .max_by_key(|n| layout.values().filter(|(l, _, _)| l == n).count())
        .unwrap();
    let led: Vec<i32> = layout
        .iter()
        .filter(|(_, (l, _, _))| *l == leader)
        .map(|(p, _)| *p)
        .collect();
    let mut wire = cluster.nodes[leader as usize - 1].wire();

    // 60 writes to the partitions it leads, acks=all but every seventh acks=1, with a ListOffsets
    // in the middle, all sent at once: the writes wait for their replicas together.
    let mut frames = Vec::new();
    let mut sent = Vec::new();
    let mut values: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut acked: BTreeMap<i32, i64> = BTreeMap::new();
    let mut frame = |body: &[u8]| {
        frames.extend_from_slice(&(body.len() as i32).to_be_bytes());
        frames.extend_from_slice(body);
    };
    for i in 0..60 {
        if i == 30 {
            let mut topic = ListOffsetsTopic::default();
            topic.name = topic_name("pipelined");
            topic.partitions = led
                .iter()
                .map(|p| {
                    let mut partition = ListOffsetsPartition::default();
                    partition.partition_index = *p;
                    partition.current_leader_epoch = -1;
                    partition.timestamp = -1; // latest
                    partition
                })
                .collect();
            let mut request = ListOffsetsRequest::default();
            request.replica_id = BrokerId(-1);
            request.topics = vec![topic];
            let (correlation_id, body) = wire.encode(&request, 7).expect("encode");
            frame(&body);
            sent.push(Sent::Offsets {
                correlation_id,
                acked: acked.clone(),
            });
        }
        let partition = led[i % led.len()];
        let value = format!("v{i}");
        let acks = if i % 7 == 0 { 1 } else { -1 };
        let request = produce_request("pipelined", partition, one_record(&value), acks);
        let (correlation_id, body) = wire.encode(&request, PRODUCE_VERSION).expect("encode");
        frame(&body);
        let written = values.entry(partition).or_default();
        written.push(value);
        if acks == -1 {
            acked.insert(partition, written.len() as i64);
        }
        sent.push(Sent::Produce {
            partition,
            correlation_id,
        });
    }
    wire.write_raw(&frames).expect("send");

    // Answers come in request order (each carries the next correlation id); the writes were
    // appended in request order; the ListOffsets saw every earlier acks=all write acknowledged.
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for request in sent {
        let frame = wire.read_frame().expect("an answer");
        match request {
            Sent::Produce {
                partition,
                correlation_id,
            } => {
                let response =
                    decode_response::<ProduceRequest>(frame, PRODUCE_VERSION, correlation_id).expect("in order");
                let answer = partition_response(response, "pipelined", partition).expect("partition");
                let expected = next_offset.entry(partition).or_insert(0);
                assert_eq!(
                    (answer.error_code, answer.base_offset),
                    (0, *expected),
                    "partition {partition}"
                );
                *expected += 1;
            }
            Sent::Offsets { correlation_id, acked } => {
                let response = decode_response::<ListOffsetsRequest>(frame, 7, correlation_id).expect("in order");
                for answer in &response.topics[0].partitions {
                    let at_least = acked.get(&answer.partition_index).copied().unwrap_or(0);
                    assert_eq!(answer.error_code, 0, "{answer:?}");
                    assert!(answer.offset >= at_least, "{answer:?} is below {at_least}");
                }
            }
        }
    }
    let read = read_all(&bootstrap, "pipelined", 6);
    for (partition, written) in values {
        assert_eq!(read[&partition], written, "partition {partition}");
    }
}

#[test]
fn a_rolling_restart_under_load_loses_nothing_acknowledged() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("rolling", 3, 3, &[("min.insync.replicas", "2")], false)
        .expect("create");
    wait_for_isr(&cluster.nodes[0], "rolling", 3);
    let producer = BackgroundProducer::start(&bootstrap, "rolling", 3);
    producer.wait_for(150, "records acknowledged before the restarts");
    for node in 1..=3 {
        // Each node stops under the controller's control and comes back; the next one goes
        // only once every partition is fully in sync again.
        cluster.node(node).restart();
        let other = if node == 1 { 2 } else { 1 };
        wait_for_isr(&cluster.nodes[other - 1], "rolling", 3);
        let now = producer.count.load(Ordering::Acquire);
        producer.wait_for(now + 60, "records acknowledged after a restart");
    }
    let (acked, _failed) = producer.finish();
    assert_acknowledged_read_once(&acked, &read_all(&bootstrap, "rolling", 3));
}

#[test]
fn a_consumer_is_sent_to_an_in_sync_replica_in_its_rack_which_serves_it() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest};
    let cluster = Cluster::start_each(strom_testkit::bin!(), 3, |id| {
        vec![
            ("broker.rack".to_string(), format!("rack-{id}")),
            (
                "replica.selector.class".to_string(),
                "org.apache.kafka.common.replica.RackAwareReplicaSelector".to_string(),
            ),
        ]
    });
    let bootstrap = cluster.nodes[0].bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("racked", 1, 3, &[], false)
        .expect("create");
    let placement = wait_for_isr(&cluster.nodes[0], "racked", 3);
    let leader = placement[&0].0;
    let mut wire = cluster.nodes[leader as usize - 1].wire();
    for value in ["a", "b", "c"] {
        assert_eq!(
            wire.produce("racked", 0, one_record(value), -1)
                .expect("produce")
                .error_code,
            0
        );
    }
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let fetch = |node: &Broker, rack: &str, version: i16| {
        let mut partition = FetchPartition::default();
        partition.partition = 0;
        partition.current_leader_epoch = -1;
        partition.fetch_offset = 0;
        partition.last_fetched_epoch = -1;
        partition.log_start_offset = -1;
        partition.partition_max_bytes = 1 << 20;
        let mut topic = FetchTopic::default();
        topic.topic = strom_testkit::wire::topic_name("racked");
        topic.partitions = vec![partition];
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_bytes = 1 << 20;
        request.session_epoch = -1;
        request.rack_id = kafka_protocol::protocol::StrBytes::from_string(rack.to_string());
        request.topics = vec![topic];
        let response = node.wire().call(&request, version).expect("fetch");
        response.responses[0].partitions[0].clone()
    };
    // The leader points a consumer in the follower's rack at the follower, sending nothing.
    let answer = fetch(&cluster.nodes[leader as usize - 1], &format!("rack-{follower}"), 12);
    assert_eq!((answer.error_code, answer.preferred_read_replica.0), (0, follower));
    assert!(answer.records.unwrap_or_default().is_empty());
    // In the leader's own rack, or without one, it serves the consumer itself.
    let answer = fetch(&cluster.nodes[leader as usize - 1], &format!("rack-{leader}"), 12);
    assert_eq!(answer.preferred_read_replica.0, -1);
    assert!(!answer.records.unwrap_or_default().is_empty());
    // The follower serves it, up to the high watermark its leader told it.
    let follower_node = &cluster.nodes[follower as usize - 1];
    poll_until(WAIT, "the follower serving all three records", || {
        let answer = fetch(follower_node, &format!("rack-{follower}"), 12);
        (answer.error_code == 0 && answer.high_watermark == 3 && !answer.records.unwrap_or_default().is_empty())
            .then_some(())
    });
    // A consumer too old to be sent elsewhere (Fetch 10) is still served by leaders only.
    assert_eq!(fetch(follower_node, "", 10).error_code, 6, "NOT_LEADER_OR_FOLLOWER");
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_again_there_and_rejoins() {
    let mut cluster = cluster(3);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("trimmed", 1, 2, &[], false)
        .expect("create");
    let placement = wait_for_isr(&cluster.nodes[0], "trimmed", 2);
    let (leader, replicas, _) = placement[&0].clone();
    let follower = *replicas.iter().find(|id| **id != leader).unwrap();
    let send = |tag: &str, count: usize| {
        let recs: Vec<Rec> = (0..count)
            .map(|i| Rec::value(format!("{tag}-{i}")).partition(0))
            .collect();
        Producer::new(&bootstrap, &[("acks", "all")]).send_all_ok("trimmed", &recs);
    };
    send("early", 20);
    // The follower goes away; the leader takes more and deletes what the follower lacks.
    cluster.node(follower as usize).sigkill();
    let watcher = (1..=3).find(|id| *id != follower).unwrap() as usize;
    wait_for_isr(&cluster.nodes[watcher - 1], "trimmed", 1);
    send("late", 80);
    let low = Admin::new(&cluster.nodes[leader as usize - 1].bootstrap())
        .delete_records("trimmed", 0, 90)
        .expect("delete records");
    assert_eq!(low, 90);
    // It comes back at offset 20, below the leader's log start: it starts again at 90.
    cluster.node(follower as usize).restart();
    wait_for_isr(&cluster.nodes[watcher - 1], "trimmed", 2);
    // Its copy is whole from 90: with the leader gone, it serves 90..100 as the new leader.
    cluster.node(leader as usize).sigkill();
    let survivor = (1..=3).find(|id| *id != leader as usize).unwrap();
    poll_until(WAIT, "the follower leading", || {
        layout(&cluster.nodes[survivor - 1], "trimmed").filter(|l| l[&0].0 == follower)
    });
    let consumer = Consumer::new(&cluster.nodes[follower as usize - 1].bootstrap());
    let records = consumer.read_to_end("trimmed", 0, Offset::Beginning);
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (90..100).collect::<Vec<i64>>());
    assert_eq!(records[0].value.as_deref(), Some(&b"late-70"[..]));
}

#[test]
fn a_broker_decommissioned_under_load_hands_its_replicas_over_and_loses_nothing() {
    let mut cluster = cluster(4);
    let bootstrap = cluster.bootstrap();
    Admin::new(&bootstrap)
        .create_replicated_topic("moving", 4, 3, &[("min.insync.replicas", "2")], false)
        .expect("create");
    wait_for_isr(&cluster.nodes[0], "moving", 3);
    let producer = BackgroundProducer::start(&bootstrap, "moving", 4);
    producer.wait_for(150, "records acknowledged before the decommission");

    // Every replica on broker 4 moves to the others while the producer writes: the new
    // replicas catch up from the leaders before the old ones leave.
    let decommission = std::process::Command::new(strom_testkit::bin!())
        .args(["cluster", "decommission", "--broker", "4", "--wait-s", "60"])
        .args(["--bootstrap-server", &bootstrap, "--timeout-ms", "20000"])
        .output()
        .expect("run strom cluster decommission");
    let said = String::from_utf8_lossy(&decommission.stdout);
    assert!(
        decommission.status.success() && said.contains("broker 4 holds no replica any more"),
        "{said}\n{}",
        String::from_utf8_lossy(&decommission.stderr)
    );
    let after = wait_for_isr(&cluster.nodes[0], "moving", 3);
    assert!(
        after.values().all(|(_, replicas, _)| !replicas.contains(&4)),
        "broker 4 still holds replicas: {after:?}"
    );
    let now = producer.count.load(Ordering::Acquire);
    producer.wait_for(now + 60, "records acknowledged after the moves");

    // Broker 4 goes; the writes carry on without it.
    assert!(cluster.node(4).sigterm_and_wait().success());
    let now = producer.count.load(Ordering::Acquire);
    producer.wait_for(now + 60, "records acknowledged after broker 4 stopped");
    let (acked, _failed) = producer.finish();
    let live = format!(
        "{},{},{}",
        cluster.nodes[0].bootstrap(),
        cluster.nodes[1].bootstrap(),
        cluster.nodes[2].bootstrap()
    );
    assert_acknowledged_read_once(&acked, &read_all(&live, "moving", 4));
}
