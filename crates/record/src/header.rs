//! The fixed-size batch header: parse, patch, checksum.

use crate::BatchError;

/// Bytes before the first record of a v2 batch.
pub const HEADER_LEN: usize = 61;
/// `batch_length` counts the bytes after itself: everything but base offset and the length.
pub const LENGTH_FIELD_END: usize = 12;
/// The CRC covers the batch from the attributes to the end.
const CRC_START: usize = 21;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
pub(crate) const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORDS_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// KIP-534: the base timestamp is the time after which the cleaner may drop this batch's
/// tombstones, not a record timestamp.
pub(crate) const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Largest batch we will ever consider: guards allocations driven by a length field.
pub const BATCH_LENGTH_MAX: i32 = i32::MAX - LENGTH_FIELD_END as i32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match (attributes & ATTR_COMPRESSION_MASK) as u8 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A parsed copy of a batch header. Parsing checks only what is needed to find the batch's
/// end (length and magic); [`crate::validate`] checks the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn read_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn read_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`. Fails if fewer than [`HEADER_LEN`] bytes are
    /// given, if the magic is not 2, or if the length field cannot describe a v2 batch.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        let batch_length = read_i32(bytes, OFFSET_BATCH_LENGTH);
        let magic = bytes[OFFSET_MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if batch_length < (HEADER_LEN - LENGTH_FIELD_END) as i32 || batch_length > BATCH_LENGTH_MAX {
            return Err(BatchError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: read_i64(bytes, OFFSET_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: read_i32(bytes, OFFSET_LEADER_EPOCH),
            magic,
            crc: u32::from_be_bytes(bytes[OFFSET_CRC..OFFSET_CRC + 4].try_into().expect("4 bytes")),
            attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
            producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
            producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH),
            base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
            records_count: read_i32(bytes, OFFSET_RECORDS_COUNT),
        })
    }

    /// Size of the whole batch in bytes, header included.
    pub fn total_len(&self) -> usize {
        LENGTH_FIELD_END + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset just after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// When the log cleaner may remove this batch's tombstones (KIP-534), if a cleaner has set it.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
    }

    /// Whether the batch was written by an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence number of the last record, wrapping as Kafka does at `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

/// CRC-32C over the part of the batch the CRC covers.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// After a recompression: the codec bits of the attributes, the batch length, and the CRC.
pub(crate) fn set_codec_length_and_crc(batch: &mut [u8], codec: Compression, batch_length: i32) {
    let code: i16 = match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let attributes = (read_i16(batch, OFFSET_ATTRIBUTES) & !ATTR_COMPRESSION_MASK) | code;
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes the broker-owned base offset into a batch header.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the broker-owned partition leader epoch into a batch header.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps the batch with the broker's clock for `message.timestamp.type=LogAppendTime` and
/// recomputes the CRC, which covers both fields changed here. Needs the whole batch.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = read_i16(batch, OFFSET_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An uncompressed batch of `count` records with 3-byte values and no keys.
    pub(crate) fn sample_batch(count: i32) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let mut body = vec![0u8]; // attributes
            push_varint(&mut body, 0); // timestamp delta
            push_varint(&mut body, i64::from(i)); // offset delta
            push_varint(&mut body, -1); // null key
            push_varint(&mut body, 3);
            body.extend_from_slice(b"abc");
            push_varint(&mut body, 0); // headers
            push_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let mut batch = vec![0u8; HEADER_LEN];
        batch[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
            .copy_from_slice(&((HEADER_LEN - LENGTH_FIELD_END + records.len()) as i32).to_be_bytes());
        batch[OFFSET_MAGIC] = 2;
        batch[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
        batch[OFFSET_BASE_TIMESTAMP..OFFSET_BASE_TIMESTAMP + 8].copy_from_slice(&1000i64.to_be_bytes());
        batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&1000i64.to_be_bytes());
        batch[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
        batch[OFFSET_PRODUCER_EPOCH..OFFSET_PRODUCER_EPOCH + 2].copy_from_slice(&(-1i16).to_be_bytes());
        batch[OFFSET_BASE_SEQUENCE..OFFSET_BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
        batch[OFFSET_RECORDS_COUNT..OFFSET_RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&records);
        let crc = compute_crc(&batch);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    pub(crate) fn push_varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            if v < 0x80 {
                out.push(v as u8);
                return;
            }
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
    }

    #[test]
    fn parses_and_patches_header() {
        let mut batch = sample_batch(3);
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.crc, compute_crc(&batch));
        set_base_offset(&mut batch, 42);
        set_partition_leader_epoch(&mut batch, 7);
        let patched = BatchHeader::parse(&batch).unwrap();
        assert_eq!((patched.base_offset, patched.last_offset()), (42, 44));
        assert_eq!(patched.partition_leader_epoch, 7);
        assert_eq!(
            patched.crc,
            compute_crc(&batch),
            "base offset and epoch are outside the CRC"
        );
        set_log_append_time(&mut batch, 99);
        let stamped = BatchHeader::parse(&batch).unwrap();
        assert_eq!(stamped.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(stamped.max_timestamp, 99);
        assert_eq!(stamped.crc, compute_crc(&batch));
    }

    #[test]
    fn rejects_short_and_bad_magic() {
        let batch = sample_batch(1);
        assert!(matches!(
            BatchHeader::parse(&batch[..10]),
            Err(BatchError::Truncated { .. })
        ));
        let mut bad = batch.clone();
        bad[OFFSET_MAGIC] = 1;
        assert_eq!(BatchHeader::parse(&bad), Err(BatchError::UnsupportedMagic(1)));
        let mut bad = batch;
        bad[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&5i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&bad), Err(BatchError::InvalidLength(5)));
    }

    #[test]
    fn last_sequence_wraps() {
        let mut h = BatchHeader::parse(&sample_batch(3)).unwrap();
        h.base_sequence = i32::MAX - 1;
        assert_eq!(h.last_sequence(), 0);
        h.base_sequence = 5;
        assert_eq!(h.last_sequence(), 7);
    }
}
