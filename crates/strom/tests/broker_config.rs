//! Broker-level settings (`--set`), start-up refusals, signals and identity across restarts.

mod common;

use std::time::Duration;

use common::{create_topic, produce_numbered, start, utf8};
use kafka_protocol::messages::DescribeClusterRequest;
use rdkafka::Offset;
use strom_testkit::{poll_until, Admin, Broker, Consumer, Producer, Rec};

#[test]
fn an_unknown_property_is_refused_at_start_up() {
    let refused = Broker::builder(strom_testkit::bin!())
        .set("log.segment.bytez", "4096")
        .try_start();
    let report = refused.err().expect("a broker started with a misspelt property");
    assert!(
        report.contains("log.segment.bytez"),
        "the error names the property:\n{report}"
    );
}

#[test]
fn an_invalid_value_is_refused_at_start_up() {
    let refused = Broker::builder(strom_testkit::bin!())
        .set("num.partitions", "several")
        .try_start();
    let report = refused.err().expect("a broker started with num.partitions=several");
    assert!(
        report.contains("num.partitions"),
        "the error names the property:\n{report}"
    );
}

/// The broker's own lines in its log: what it wrote, without the testkit's start banners.
fn broker_lines(broker: &Broker) -> Vec<String> {
    std::fs::read_to_string(broker.log_path())
        .expect("read the broker's log")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with("==== testkit"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_log_written_to_a_file_carries_no_colour_codes() {
    // Without NO_COLOR the broker itself must notice that stderr is a file, not a terminal.
    let broker = Broker::builder(strom_testkit::bin!()).env("NO_COLOR", None).start();
    let lines = broker_lines(&broker);
    assert!(
        lines.iter().any(|line| line.contains("INFO")),
        "the broker logged its start:\n{lines:#?}"
    );
    let coloured: Vec<_> = lines.iter().filter(|line| line.contains('\u{1b}')).collect();
    assert!(
        coloured.is_empty(),
        "terminal escape codes in a log file:\n{coloured:#?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_a_stray_strom_variable_only_warns() {
    // STROM_DIR names no broker property: set for some other purpose, it must not stop the
    // broker (a misspelt --set still does: an_unknown_property_is_refused_at_start_up).
    let broker = Broker::builder(strom_testkit::bin!())
        .env("STROM_LOG_FORMAT", Some("json"))
        .env("STROM_DIR", Some("/somewhere/else"))
        .env("NO_COLOR", None)
        .start();
    let lines = broker_lines(&broker);
    assert!(!lines.is_empty(), "the broker logged nothing");
    let mut warnings = Vec::new();
    for line in &lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
        let level = object["level"].as_str().unwrap_or_else(|| panic!("no level: {line}"));
        let message = object["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {line}"));
        if level == "WARN" {
            warnings.push(message.to_owned());
        }
    }
    assert!(
        warnings.iter().any(|w| w.contains("STROM_DIR")),
        "a warning names the stray variable; warnings: {warnings:#?}"
    );
}

#[test]
fn broker_defaults_apply_to_new_topics() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("log.segment.bytes", "4096")
        .set("num.partitions", "4")
        .start();
    let admin = Admin::new(&broker.bootstrap());
    // -1 partitions (rdkafka cannot send it): use the wire for a default-count topic.
    let mut wire = broker.wire();
    let mut topic = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
    topic.name = strom_testkit::wire::topic_name("defaulted");
    topic.num_partitions = -1;
    topic.replication_factor = -1;
    let mut request = kafka_protocol::messages::CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = 10_000;
    let response = wire.call(&request, 7).expect("CreateTopics");
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(admin.topics().unwrap().get("defaulted"), Some(&4));
    let configs = admin.describe_topic_configs("defaulted").unwrap();
    assert_eq!(configs["segment.bytes"].as_deref(), Some("4096"));

    // The default is really in force: 4 KiB segments roll.
    let producer = Producer::new(
        &broker.bootstrap(),
        &[("acks", "all"), ("batch.size", "1024"), ("linger.ms", "1")],
    );
    let recs: Vec<Rec> = (0..200)
        .map(|i| Rec::value(format!("{i:04}-{}", "d".repeat(80))).partition(0))
        .collect();
    producer.send_all_ok("defaulted", &recs);
    let segments = std::fs::read_dir(broker.data_dir().join("defaulted-0"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count();
    assert!(segments >= 4, "{segments} segments for ~20 KiB at 4 KiB each");
}

#[test]
fn time_rolled_segments_expire_under_retention_ms() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("log.retention.check.interval.ms", "200")
        .start();
    let admin = Admin::new(&broker.bootstrap());
    admin.create_topic_ok("rolling", 1, &[("segment.ms", "300"), ("retention.ms", "1000")]);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let consumer = Consumer::new(&broker.bootstrap());
    // Small writes that never fill a segment: only segment.ms can roll them.
    let mut sent = 0;
    let low = poll_until(Duration::from_secs(45), "time-rolled segments to expire", || {
        producer
            .send("rolling", &Rec::value(format!("r{sent}")).partition(0))
            .unwrap();
        sent += 1;
        let (low, _) = consumer.watermarks("rolling", 0).unwrap();
        (low > 0).then_some(low)
    });
    let (_, high) = consumer.watermarks("rolling", 0).unwrap();
    assert!(
        low <= high && high == sent as i64,
        "low {low}, high {high}, sent {sent}"
    );
}

#[test]
fn sigint_shuts_down_gracefully_too() {
    let mut broker = start();
    create_topic(&broker, "interrupted", 1);
    let values = produce_numbered(&broker, "interrupted", "i", 50);
    let status = broker.sigint_and_wait();
    assert!(status.success(), "SIGINT exit status {status}");
    broker.restart();
    let records = Consumer::new(&broker.bootstrap()).read_to_end("interrupted", 0, Offset::Beginning);
    let read: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(read, values);
}

#[test]
fn cluster_identity_survives_restarts() {
    let mut broker = start();
    let describe = |broker: &Broker| {
        let response = broker
            .wire()
            .call(&DescribeClusterRequest::default(), 1)
            .expect("DescribeCluster");
        (response.cluster_id.as_str().to_owned(), response.controller_id.0)
    };
    let before = describe(&broker);
    broker.restart();
    assert_eq!(describe(&broker), before, "after SIGTERM + restart");
    broker.sigkill();
    broker.restart();
    assert_eq!(describe(&broker), before, "after SIGKILL + restart");
    // A fresh data directory is a new cluster.
    let other = start();
    assert_ne!(describe(&other).0, before.0);
}

#[test]
fn flushing_every_message_still_works() {
    let mut broker = Broker::builder(strom_testkit::bin!())
        .set("log.flush.interval.messages", "1")
        .set("log.flush.interval.ms", "10")
        .start();
    create_topic(&broker, "flushed", 1);
    let values = produce_numbered(&broker, "flushed", "f", 100);
    broker.sigkill();
    broker.restart();
    common::assert_partition_holds(&broker, "flushed", 0, &values);
}
