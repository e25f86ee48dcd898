//! Blocking wrappers over `rdkafka` with a timeout on every call.
//!
//! The tests are plain `#[test]` functions; the few `rdkafka` APIs that are futures (admin
//! operations, delivery reports) are driven on a small runtime each wrapper owns, always under
//! [`CALL_TIMEOUT`]. [`Consumer`] reads assigned partitions and never commits; group members
//! are [`crate::group::GroupMember`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Runtime;

/// Bound on any one client call (an admin request, a delivery, a metadata fetch).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on reading a partition, however many records it has in these tests.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// One consumer poll; short so deadlines are checked often.
const POLL_STEP: Duration = Duration::from_millis(100);

/// Settings every client gets: the broker, and timeouts well under the tests' deadlines.
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("log_level", "4");
    config
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A record to produce. Built with [`Rec::value`] / [`Rec::keyed`] and refined with the
/// other methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Rec {
    pub fn value(value: impl Into<Vec<u8>>) -> Rec {
        Rec {
            value: Some(value.into()),
            ..Rec::default()
        }
    }

    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Rec {
        Rec {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Rec::default()
        }
    }

    pub fn partition(mut self, partition: i32) -> Rec {
        self.partition = Some(partition);
        self
    }

    pub fn timestamp(mut self, timestamp_ms: i64) -> Rec {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    pub fn header(mut self, key: &str, value: Option<&[u8]>) -> Rec {
        self.headers.push((key.to_owned(), value.map(<[u8]>::to_vec)));
        self
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A producer whose sends block until the broker acknowledges (or the call times out).
pub struct Producer {
    inner: FutureProducer,
    runtime: Runtime,
}

impl Producer {
    /// A producer with `extra` settings (e.g. `("acks", "all")`, `("compression.type",
    /// "zstd")`, `("enable.idempotence", "true")`) on top of [`base_config`].
    pub fn new(bootstrap: &str, extra: &[(&str, &str)]) -> Producer {
        let mut config = base_config(bootstrap);
        config.set("message.timeout.ms", "20000").set("linger.ms", "5");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        let inner: FutureProducer = config.create().expect("create producer");
        Producer {
            inner,
            runtime: runtime(),
        }
    }

    pub fn inner(&self) -> &FutureProducer {
        &self.inner
    }

    /// Sends one record and waits for its delivery report.
    pub fn send(&self, topic: &str, rec: &Rec) -> Result<Delivered, KafkaError> {
        self.send_all(topic, std::slice::from_ref(rec))
            .pop()
            .expect("one result")
    }

    /// Queues every record (so they go out in batches, in order), then waits for every
    /// delivery report. Results are in the order of `recs`.
    pub fn send_all(&self, topic: &str, recs: &[Rec]) -> Vec<Result<Delivered, KafkaError>> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut pending = Vec::with_capacity(recs.len());
        for rec in recs {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            record.key = rec.key.as_deref();
            record.payload = rec.value.as_deref();
            record.partition = rec.partition;
            record.timestamp = rec.timestamp_ms;
            if !rec.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
                for (key, value) in &rec.headers {
                    headers = headers.insert(Header {
                        key,
                        value: value.as_deref(),
                    });
                }
                record.headers = Some(headers);
            }
            loop {
                match self.inner.send_result(record) {
                    Ok(delivery) => {
                        pending.push(Ok(delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        // Serve delivery callbacks so the queue drains, then retry.
                        self.inner.poll(POLL_STEP);
                        record = back;
                    }
                    Err((error, _)) => {
                        pending.push(Err(error));
                        break;
                    }
                }
            }
        }
        pending
            .into_iter()
            .map(|queued| {
                let delivery = queued?;
                let remaining = deadline.saturating_duration_since(Instant::now());
                let outcome = self
                    .runtime
                    .block_on(async { tokio::time::timeout(remaining, delivery).await });
                match outcome {
                    Err(_elapsed) => Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)),
                    Ok(Err(_canceled)) => Err(KafkaError::Canceled),
                    Ok(Ok(Err((error, _message)))) => Err(error),
                    Ok(Ok(Ok(delivery))) => Ok(Delivered {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    }),
                }
            })
            .collect()
    }

    /// Like [`Producer::send_all`], panicking on the first failed delivery.
    pub fn send_all_ok(&self, topic: &str, recs: &[Rec]) -> Vec<Delivered> {
        self.send_all(topic, recs)
            .into_iter()
            .enumerate()
            .map(|(i, result)| result.unwrap_or_else(|e| panic!("delivery of record {i} to {topic}: {e}")))
            .collect()
    }
}

/// A record as a consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A consumer that reads assigned partitions; it never joins a group or commits.
pub struct Consumer {
    inner: BaseConsumer,
}

impl Consumer {
    pub fn new(bootstrap: &str) -> Consumer {
        Consumer::with(bootstrap, &[])
    }

    pub fn with(bootstrap: &str, extra: &[(&str, &str)]) -> Consumer {
        let mut config = base_config(bootstrap);
        // librdkafka's assign() needs a group id, though nothing here uses the group: no
        // subscribe, no commits.
        config
            .set("group.id", "strom-testkit")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        Consumer {
            inner: config.create().expect("create consumer"),
        }
    }

    pub fn inner(&self) -> &BaseConsumer {
        &self.inner
    }

    /// Every value of `topic`'s partitions `0..partitions`, read from their starts until each
    /// has reported its end (the high watermark, or under `isolation.level=read_committed` the
    /// last stable offset), per partition in offset order. Panics past `timeout`.
    pub fn read_values(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        isolation: &str,
        timeout: Duration,
    ) -> std::collections::BTreeMap<i32, Vec<String>> {
        let consumer = Consumer::with(bootstrap, &[("isolation.level", isolation)]);
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("valid offset");
        }
        consumer.inner().assign(&assignment).expect("assign");
        let deadline = Instant::now() + timeout;
        let mut at_end = std::collections::BTreeSet::new();
        let mut read: std::collections::BTreeMap<i32, Vec<String>> = std::collections::BTreeMap::new();
        while at_end.len() < partitions as usize {
            assert!(
                Instant::now() < deadline,
                "{isolation} read of {topic} reached the end of only {at_end:?} within {timeout:?}"
            );
            match consumer.inner().poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Some(Err(e)) => panic!("{isolation} read of {topic}: {e}"),
                Some(Ok(message)) => {
                    at_end.remove(&message.partition());
                    let value = String::from_utf8_lossy(message.payload().unwrap_or(b"<null>")).into_owned();
                    read.entry(message.partition()).or_default().push(value);
                }
            }
        }
        read
    }

    /// (low, high) watermarks of a partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.inner.fetch_watermarks(topic, partition, CALL_TIMEOUT)
    }

    /// The earliest offset whose timestamp is at or after `timestamp_ms` (ListOffsets by
    /// time); `Offset::End` when there is none.
    pub fn offset_for_time(&self, topic: &str, partition: i32, timestamp_ms: i64) -> Result<Offset, KafkaError> {
        let mut query = TopicPartitionList::new();
        query.add_partition_offset(topic, partition, Offset::Offset(timestamp_ms))?;
        let answer = self.inner.offsets_for_times(query, CALL_TIMEOUT)?;
        let element = answer
            .find_partition(topic, partition)
            .ok_or(KafkaError::OffsetFetch(RDKafkaErrorCode::UnknownPartition))?;
        element.error()?;
        Ok(element.offset())
    }

    /// Reads `count` records of one partition starting at `from`, panicking if they do not
    /// all arrive within [`READ_TIMEOUT`] or the consumer reports an error.
    pub fn read(&self, topic: &str, partition: i32, from: Offset, count: usize) -> Vec<Consumed> {
        self.assign(topic, partition, from);
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut records = Vec::with_capacity(count);
        while records.len() < count {
            assert!(
                Instant::now() < deadline,
                "read {} of {count} records of {topic}/{partition} within {READ_TIMEOUT:?}",
                records.len()
            );
            match self.inner.poll(POLL_STEP) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => panic!("consume {topic}/{partition}: {e}"),
                Some(Ok(message)) => records.push(consumed(&message)),
            }
        }
        records
    }

    /// Reads one partition from `from` up to its high watermark as it is when the call starts.
    pub fn read_to_end(&self, topic: &str, partition: i32, from: Offset) -> Vec<Consumed> {
        let (low, high) = self
            .watermarks(topic, partition)
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}"));
        let start = match from {
            Offset::Beginning => low,
            Offset::Offset(offset) => offset,
            _ => high,
        };
        if start >= high {
            return Vec::new();
        }
        self.assign(topic, partition, from);
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut records = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "reach high watermark {high} of {topic}/{partition} within {READ_TIMEOUT:?}; \
                 read {} records, last offset {:?}",
                records.len(),
                records.last().map(|r: &Consumed| r.offset)
            );
            match self.inner.poll(POLL_STEP) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    let position = self.position(topic, partition);
                    if position.is_none_or(|p| p >= high) {
                        return records;
                    }
                }
                // A connection lost to a broker that stopped: librdkafka reconnects or moves
                // on to the partition's new leader by itself.
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                ))) => {}
                Some(Err(e)) => panic!("consume {topic}/{partition}: {e}"),
                Some(Ok(message)) => {
                    let record = consumed(&message);
                    let done = record.offset + 1 >= high;
                    records.push(record);
                    if done {
                        return records;
                    }
                }
            }
        }
    }

    fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        let positions = self.inner.position().ok()?;
        match positions.find_partition(topic, partition)?.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }

    fn assign(&self, topic: &str, partition: i32, from: Offset) {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, from)
            .expect("valid offset");
        self.inner.assign(&assignment).expect("assign");
    }
}

pub(crate) fn consumed(message: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Consumed {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        timestamp_ms: message.timestamp().to_millis(),
        headers,
    }
}

/// Topic administration, one blocking call per operation.
pub struct Admin {
    inner: AdminClient<DefaultClientContext>,
    runtime: Runtime,
}

impl Admin {
    pub fn new(bootstrap: &str) -> Admin {
        Admin {
            inner: base_config(bootstrap).create().expect("create admin client"),
            runtime: runtime(),
        }
    }

    pub fn inner(&self) -> &AdminClient<DefaultClientContext> {
        &self.inner
    }

    fn options(validate_only: bool) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(CALL_TIMEOUT))
            .operation_timeout(Some(CALL_TIMEOUT))
            .validate_only(validate_only)
    }

    fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime
            .block_on(async {
                // Built inside the runtime: a tokio timer needs its context.
                tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(5), future).await
            })
            .expect("admin call timed out")
    }

    /// Creates a topic with `partitions` partitions and topic `configs`.
    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<(), RDKafkaErrorCode> {
        self.create_topic_with(name, partitions, configs, false)
    }

    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
        validate_only: bool,
    ) -> Result<(), RDKafkaErrorCode> {
        self.create_replicated_topic(name, partitions, 1, configs, validate_only)
    }

    /// Creates a topic with `replication_factor` replicas of each partition.
    pub fn create_replicated_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(&str, &str)],
        validate_only: bool,
    ) -> Result<(), RDKafkaErrorCode> {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication_factor));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let results = self
            .block_on(self.inner.create_topics([&topic], &Admin::options(validate_only)))
            .map_err(request_error)?;
        single(results.into_iter().map(|r| r.map(drop).map_err(|(_, code)| code)))
    }

    /// Creates a topic and panics unless that succeeds.
    pub fn create_topic_ok(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        if let Err(code) = self.create_topic(name, partitions, configs) {
            panic!("create topic {name}: {code:?}");
        }
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), RDKafkaErrorCode> {
        let results = self
            .block_on(self.inner.delete_topics(&[name], &Admin::options(false)))
            .map_err(request_error)?;
        single(results.into_iter().map(|r| r.map(drop).map_err(|(_, code)| code)))
    }

    /// Grows a topic to `total` partitions.
    pub fn create_partitions(&self, name: &str, total: usize) -> Result<(), RDKafkaErrorCode> {
        let request = NewPartitions::new(name, total);
        let results = self
            .block_on(self.inner.create_partitions([&request], &Admin::options(false)))
            .map_err(request_error)?;
        single(results.into_iter().map(|r| r.map(drop).map_err(|(_, code)| code)))
    }

    /// Every config entry of a topic: name -> value.
    ///
    /// rdkafka 0.39 drops the per-resource error code of DescribeConfigs: an unknown topic
    /// comes back as `Ok` with no entries. Check errors with the raw wire client.
    pub fn describe_topic_configs(&self, name: &str) -> Result<HashMap<String, Option<String>>, RDKafkaErrorCode> {
        let resource = ResourceSpecifier::Topic(name);
        let results = self
            .block_on(self.inner.describe_configs([&resource], &Admin::options(false)))
            .map_err(request_error)?;
        let resource = single(results.into_iter())?;
        Ok(resource
            .entries
            .into_iter()
            .map(|entry| (entry.name, entry.value))
            .collect())
    }

    /// AlterConfigs (not incremental): sets exactly `configs` on the topic.
    ///
    /// rdkafka 0.39 drops the per-resource error code of AlterConfigs, so `Ok` only means
    /// the request was answered; describe afterwards, or use the raw wire client for errors.
    pub fn alter_topic_configs(&self, name: &str, configs: &[(&str, &str)]) -> Result<(), RDKafkaErrorCode> {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (key, value) in configs {
            alter = alter.set(key, value);
        }
        let results = self
            .block_on(self.inner.alter_configs([&alter], &Admin::options(false)))
            .map_err(request_error)?;
        single(results.into_iter().map(|r| r.map(drop).map_err(|(_, code)| code)))
    }

    /// DeleteRecords before `offset`; returns the partition's new low watermark.
    pub fn delete_records(&self, topic: &str, partition: i32, offset: i64) -> Result<i64, KafkaError> {
        let mut request = TopicPartitionList::new();
        request.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        let answer = self.block_on(self.inner.delete_records(&request, &Admin::options(false)))?;
        let element = answer
            .find_partition(topic, partition)
            .ok_or(KafkaError::AdminOp(RDKafkaErrorCode::UnknownPartition))?;
        element.error()?;
        match element.offset() {
            Offset::Offset(low) => Ok(low),
            other => panic!("DeleteRecords answered offset {other:?}"),
        }
    }

    /// Topic name -> partition count, from a Metadata request for all topics.
    pub fn topics(&self) -> Result<HashMap<String, usize>, KafkaError> {
        let metadata = self.inner.inner().fetch_metadata(None, CALL_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    }
}

/// A whole-request failure as the error code of its one result.
fn request_error(error: KafkaError) -> RDKafkaErrorCode {
    error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)
}

/// The only result of a one-resource admin call.
fn single<T>(mut results: impl Iterator<Item = Result<T, RDKafkaErrorCode>>) -> Result<T, RDKafkaErrorCode> {
    let first = results.next().expect("one result");
    assert!(results.next().is_none(), "more than one result");
    first
}
