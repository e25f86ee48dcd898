//! A raw-socket Kafka client for requests a real client library would never send.
//!
//! Requests are built with the `kafka-protocol` crate's encoders; [`WireClient::encode`] gives
//! the frame body (header + request) so a test can corrupt it before [`WireClient::send_body`].
//! Every socket read and write has a timeout ([`IO_TIMEOUT`]), so a broker that never answers
//! fails the test instead of hanging it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FindCoordinatorRequest, InitProducerIdRequest,
    ProduceRequest, ProduceResponse, ProducerId, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// Bound on every socket read and write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame this client accepts; anything larger means the stream is garbage.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The `client_id` on every request.
pub const CLIENT_ID: &str = "strom-testkit-wire";

/// One connection speaking the Kafka wire protocol, one request in flight at a time.
pub struct WireClient {
    stream: TcpStream,
    correlation_id_next: i32,
}

impl WireClient {
    pub fn connect(addr: SocketAddr) -> io::Result<WireClient> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        WireClient::from_stream(stream, IO_TIMEOUT)
    }

    pub fn from_stream(stream: TcpStream, io_timeout: Duration) -> io::Result<WireClient> {
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        stream.set_nodelay(true)?;
        Ok(WireClient {
            stream,
            correlation_id_next: 1,
        })
    }

    /// Sends `request` at `version` and decodes the answer, checking its correlation id.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<R::Response> {
        let (correlation_id, body) = self.encode(request, version)?;
        self.send_body(&body)?;
        let frame = self.read_frame().context("read response")?;
        decode_response::<R>(frame, version, correlation_id)
    }

    /// Encodes header + `request` (the frame body, without the size prefix), returning the
    /// correlation id it carries.
    pub fn encode<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<(i32, BytesMut)> {
        let correlation_id = self.correlation_id_next;
        self.correlation_id_next += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        request.encode(&mut body, version)?;
        Ok((correlation_id, body))
    }

    /// Writes a 4-byte big-endian size prefix and `body`.
    pub fn send_body(&mut self, body: &[u8]) -> io::Result<()> {
        let size = i32::try_from(body.len()).expect("body fits a frame");
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(body);
        self.write_raw(&frame)
    }

    /// Writes `bytes` exactly as given: for malformed size prefixes and garbage.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one size-prefixed response frame, returning its body.
    pub fn read_frame(&mut self) -> io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|&size| size <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("response size {size}")))?;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Whether the peer closes the connection within `timeout`: true on EOF or reset, false if
    /// the connection is still open at the deadline. Bytes the peer sends meanwhile (an error
    /// response, say) are read and discarded.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let remaining = (deadline - now).max(Duration::from_millis(1));
            if self.stream.set_read_timeout(Some(remaining)).is_err() {
                return true;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }

    /// Closes our half of the connection.
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// ApiVersions v3 (flexible; the response header is v0 regardless).
    pub fn api_versions(&mut self) -> anyhow::Result<ApiVersionsResponse> {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("strom-testkit");
        request.client_software_version = StrBytes::from_static_str("0");
        self.call(&request, 3)
    }

    /// FindCoordinator v3 for a group (`key_type` 0) or transactional id (1): the coordinator's
    /// node id. A client asks this before its first request to a coordinator (which, on a new
    /// broker, also has the coordinator's internal topic created).
    pub fn find_coordinator(&mut self, key_type: i8, key: &str) -> anyhow::Result<i32> {
        let mut request = FindCoordinatorRequest::default();
        request.key_type = key_type;
        request.key = StrBytes::from_string(key.to_owned());
        let response = self.call(&request, 3)?;
        anyhow::ensure!(
            response.error_code == 0,
            "FindCoordinator {key:?} error {}: {:?}",
            response.error_code,
            response.error_message
        );
        Ok(response.node_id.0)
    }

    /// InitProducerId v4 for an idempotent (non-transactional) producer: (id, epoch).
    pub fn init_producer_id(&mut self) -> anyhow::Result<(i64, i16)> {
        let mut request = InitProducerIdRequest::default();
        request.transactional_id = None;
        request.transaction_timeout_ms = -1;
        request.producer_id = ProducerId(-1);
        request.producer_epoch = -1;
        let response = self.call(&request, 4)?;
        anyhow::ensure!(response.error_code == 0, "InitProducerId error {}", response.error_code);
        Ok((response.producer_id.0, response.producer_epoch))
    }

    /// Produce v9 of one batch to one partition; returns that partition's response.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: i16,
    ) -> anyhow::Result<PartitionProduceResponse> {
        let request = produce_request(topic, partition, batch, acks);
        let response: ProduceResponse = self.call(&request, PRODUCE_VERSION)?;
        partition_response(response, topic, partition)
    }
}

impl WireClient {
    /// Fetch v12 of one partition from `offset`, without waiting: the record set as stored,
    /// whole batches (up to 32 MiB), for tests that look at the bytes on disk.
    pub fn fetch_records(&mut self, topic: &str, partition: i32, offset: i64) -> anyhow::Result<Bytes> {
        let mut fetch_partition = FetchPartition::default();
        fetch_partition.partition = partition;
        fetch_partition.current_leader_epoch = -1;
        fetch_partition.fetch_offset = offset;
        fetch_partition.last_fetched_epoch = -1;
        fetch_partition.log_start_offset = -1;
        fetch_partition.partition_max_bytes = 32 << 20;
        let mut fetch_topic = FetchTopic::default();
        fetch_topic.topic = topic_name(topic);
        fetch_topic.partitions = vec![fetch_partition];
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_bytes = 32 << 20;
        request.session_epoch = -1;
        request.topics = vec![fetch_topic];
        let response = self.call(&request, 12)?;
        let answer = response
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .with_context(|| format!("no fetch answer for {topic}/{partition}"))?;
        anyhow::ensure!(answer.error_code == 0, "fetch error {}", answer.error_code);
        Ok(answer.records.unwrap_or_default())
    }
}

/// The Produce version the raw tests use (flexible, before topic ids).
pub const PRODUCE_VERSION: i16 = 9;

/// Decodes a response frame body for request type `R`.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16, correlation_id: i32) -> anyhow::Result<R::Response> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).context("response header")?;
    anyhow::ensure!(
        header.correlation_id == correlation_id,
        "correlation id {} answers request {correlation_id}",
        header.correlation_id
    );
    let response = R::Response::decode(&mut frame, version).context("response body")?;
    anyhow::ensure!(
        !frame.has_remaining(),
        "{} bytes left after the response",
        frame.remaining()
    );
    Ok(response)
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A Produce request carrying `batch` for one partition.
pub fn produce_request(topic: &str, partition: i32, batch: Bytes, acks: i16) -> ProduceRequest {
    let mut partition_data = PartitionProduceData::default();
    partition_data.index = partition;
    partition_data.records = Some(batch);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = topic_name(topic);
    topic_data.partition_data = vec![partition_data];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 10_000;
    request.topic_data = vec![topic_data];
    request
}

/// The response for `topic`/`partition` out of a ProduceResponse.
pub fn partition_response(
    response: ProduceResponse,
    topic: &str,
    partition: i32,
) -> anyhow::Result<PartitionProduceResponse> {
    response
        .responses
        .into_iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partition_responses)
        .find(|p| p.index == partition)
        .with_context(|| format!("no response for {topic}/{partition}"))
}

/// Who wrote a batch: a plain producer, or an idempotent one with its sequence numbers.
#[derive(Debug, Clone, Copy)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchProducer {
    pub const NONE: BatchProducer = BatchProducer {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
    };
}

/// Exactly one v2 record batch (base offset 0) of `values` (keys `key-<i>`), timestamps from
/// `timestamp_ms` on.
pub fn record_batch(values: &[&[u8]], producer: BatchProducer, compression: Compression, timestamp_ms: i64) -> Bytes {
    encode_batch(values, producer, false, compression, timestamp_ms)
}

/// As [`record_batch`], uncompressed, with the transactional attribute set: what a
/// transactional producer sends inside a transaction.
pub fn transactional_batch(values: &[&[u8]], producer: BatchProducer, timestamp_ms: i64) -> Bytes {
    encode_batch(values, producer, true, Compression::None, timestamp_ms)
}

/// One v2 batch (base offset 0, no producer) of `(key, value)` records, a key of `None`
/// meaning a record without key.
pub fn batch_of(records: &[(Option<&[u8]>, &[u8])], compression: Compression, timestamp_ms: i64) -> Bytes {
    let values: Vec<&[u8]> = records.iter().map(|(_, value)| *value).collect();
    let keys: Vec<Option<Bytes>> = records.iter().map(|(key, _)| key.map(Bytes::copy_from_slice)).collect();
    encode_records(
        &values,
        Some(&keys),
        BatchProducer::NONE,
        false,
        compression,
        timestamp_ms,
    )
}

fn encode_batch(
    values: &[&[u8]],
    producer: BatchProducer,
    transactional: bool,
    compression: Compression,
    timestamp_ms: i64,
) -> Bytes {
    encode_records(values, None, producer, transactional, compression, timestamp_ms)
}

/// Keys are `key-<i>` unless given.
fn encode_records(
    values: &[&[u8]],
    keys: Option<&[Option<Bytes>]>,
    producer: BatchProducer,
    transactional: bool,
    compression: Compression,
    timestamp_ms: i64,
) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let i32_index = i32::try_from(i).expect("batch index fits i32");
            Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: producer.producer_id,
                producer_epoch: producer.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i32_index),
                // The encoder starts a new batch whenever offset minus sequence changes, so
                // sequences must run on even without a producer id: the batch header then
                // carries the first one (-1, "none").
                sequence: producer.base_sequence.wrapping_add(i32_index),
                timestamp: timestamp_ms + i64::from(i32_index),
                key: match keys {
                    Some(keys) => keys[i].clone(),
                    None => Some(Bytes::from(format!("key-{i}"))),
                },
                value: Some(Bytes::copy_from_slice(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Byte offset of the CRC field in a v2 record batch (after base offset, batch length,
/// partition leader epoch and magic).
pub const BATCH_CRC_OFFSET: usize = 8 + 4 + 4 + 1;

/// Byte offset of the attributes field, the first byte the CRC covers.
pub const BATCH_ATTRIBUTES_OFFSET: usize = BATCH_CRC_OFFSET + 4;
/// Byte offset of the record count, the last header field.
pub const BATCH_RECORD_COUNT_OFFSET: usize = 57;
/// Size of a v2 batch header; records follow.
pub const BATCH_HEADER_LEN: usize = 61;

/// Rewrites the CRC of a v2 batch after a test edited what it covers, so the batch passes the
/// checksum and reaches the broker's structural checks.
pub fn reseal_batch(batch: &mut [u8]) {
    let crc = crc32c(&batch[BATCH_ATTRIBUTES_OFFSET..]);
    batch[BATCH_CRC_OFFSET..BATCH_CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// CRC-32C (Castagnoli), bit by bit: slow, short, and enough for test batches.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const POLYNOMIAL_REVERSED: u32 = 0x82F6_3B78;
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (POLYNOMIAL_REVERSED & mask);
        }
    }
    !crc
}

/// A v2 batch built by hand around `records` (already encoded, possibly malformed), with a
/// correct length and CRC: base offset 0, no producer, timestamps 0.
pub fn raw_batch(attributes: i16, last_offset_delta: i32, record_count: i32, records: &[u8]) -> Vec<u8> {
    let mut batch = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let length = i32::try_from(BATCH_HEADER_LEN - 12 + records.len()).expect("batch length");
    batch.extend_from_slice(&length.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&[0; 4]); // crc, sealed below
    batch.extend_from_slice(&attributes.to_be_bytes());
    batch.extend_from_slice(&last_offset_delta.to_be_bytes());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base timestamp
    batch.extend_from_slice(&0i64.to_be_bytes()); // max timestamp
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&record_count.to_be_bytes());
    debug_assert_eq!(batch.len(), BATCH_HEADER_LEN);
    batch.extend_from_slice(records);
    reseal_batch(&mut batch);
    batch
}

/// A zigzag varint, as record fields are encoded.
pub fn varint(value: i64) -> Vec<u8> {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut bytes = Vec::new();
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            bytes.push(byte);
            return bytes;
        }
        bytes.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn record_batch_is_one_batch_with_or_without_a_producer() {
        for producer in [
            BatchProducer::NONE,
            BatchProducer {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: 3,
            },
        ] {
            let mut batch = record_batch(&[b"a", b"b", b"c"], producer, Compression::None, 5);
            let infos = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).unwrap();
            assert_eq!(infos.len(), 1, "{producer:?}");
            assert_eq!(infos[0].record_count, 3);
            assert_eq!(infos[0].min_offset, 0);
            assert_eq!(infos[0].base_sequence, producer.base_sequence);
            let sets = RecordBatchDecoder::decode_all(&mut batch).unwrap();
            assert_eq!(sets[0].records.len(), 3);
        }
    }

    #[test]
    fn raw_batch_matches_the_encoder() {
        let encoded = record_batch(&[b"v"], BatchProducer::NONE, Compression::None, 0).to_vec();
        let records = &encoded[BATCH_HEADER_LEN..];
        assert_eq!(raw_batch(0, 0, 1, records), encoded);
        assert_eq!(varint(-1), [0x01]);
        assert_eq!(varint(1), [0x02]);
        assert_eq!(varint(300), [0xd8, 0x04]);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn resealing_an_encoded_batch_keeps_its_crc() {
        let batch = record_batch(&[b"a", b"bc"], BatchProducer::NONE, Compression::None, 5);
        let mut copy = batch.to_vec();
        copy[BATCH_CRC_OFFSET] ^= 0xff;
        reseal_batch(&mut copy);
        assert_eq!(copy, batch.to_vec());
        assert_eq!(
            i32::from_be_bytes(copy[8..12].try_into().unwrap()) as usize,
            copy.len() - 12
        );
        assert_eq!(
            i32::from_be_bytes(copy[BATCH_RECORD_COUNT_OFFSET..BATCH_HEADER_LEN].try_into().unwrap()),
            2
        );
    }
}
