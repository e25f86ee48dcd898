//! Individual records inside a batch.
//!
//! The produce and fetch paths never come here: they move whole batches. Compaction and
//! key checks on compacted topics do, and they decode (and decompress) with the
//! `kafka-protocol` crate's record codec.

use bytes::{BufMut, Bytes};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
pub use kafka_protocol::records::{Compression as CodecCompression, Record, RecordBatchEncoder, RecordEncodeOptions};

use crate::header::{
    compute_crc, BatchHeader, Compression, TimestampType, ATTR_DELETE_HORIZON, HEADER_LEN, OFFSET_CRC,
};
use crate::BatchError;

/// Decoding allocates per record; a header claiming more than this is refused rather than
/// trusted with an allocation.
pub const RECORDS_PER_BATCH_MAX: i32 = 1_000_000;

/// Decodes every record of one batch, decompressing if needed. Offsets in the returned records
/// are absolute (base offset plus delta).
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.records_count < 0 || header.records_count > RECORDS_PER_BATCH_MAX {
        return Err(BatchError::InvalidRecord("record count out of range"));
    }
    let mut buf = Bytes::copy_from_slice(&batch[..header.total_len().min(batch.len())]);
    let set =
        kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).map_err(|e| BatchError::Decode(e.to_string()))?;
    Ok(set.records)
}

/// Encodes `retained`, some of the records of the batch `original` in offset order, as one batch
/// in place of it, as Kafka's log cleaner does: the base offset, last offset, base timestamp,
/// producer fields, base sequence, leader epoch and codec stay the original's, so every
/// surviving record keeps its offset, timestamp and sequence. Only the record count, the
/// maximum timestamp (for `CreateTime`) and the CRC are new, and, with `delete_horizon_ms`,
/// the KIP-534 delete horizon: the flag is set and the base timestamp becomes the horizon
/// (record timestamps are re-based on it, so they read back unchanged).
pub fn encode_retained(
    original: &BatchHeader,
    retained: &[Record],
    delete_horizon_ms: Option<i64>,
) -> Result<Vec<u8>, BatchError> {
    if retained.is_empty() {
        return Err(BatchError::Empty);
    }
    let (attributes, base_timestamp) = match delete_horizon_ms {
        Some(horizon) => (original.attributes | ATTR_DELETE_HORIZON, horizon),
        None => (original.attributes, original.base_timestamp),
    };
    let mut records = Vec::new();
    let mut previous_offset = original.base_offset - 1;
    for record in retained {
        if record.offset <= previous_offset || record.offset > original.last_offset() {
            return Err(BatchError::InvalidRecord(
                "retained records are not a subset of the batch",
            ));
        }
        previous_offset = record.offset;
        put_record(&mut records, original.base_offset, base_timestamp, record)?;
    }
    let mut batch = vec![0u8; HEADER_LEN];
    match original.compression()? {
        Compression::None => batch.extend_from_slice(&records),
        Compression::Gzip => compress_into::<Gzip>(&mut batch, &records)?,
        Compression::Snappy => compress_into::<Snappy>(&mut batch, &records)?,
        Compression::Lz4 => compress_into::<Lz4>(&mut batch, &records)?,
        Compression::Zstd => compress_into::<Zstd>(&mut batch, &records)?,
    }
    let batch_length = i32::try_from(batch.len() - crate::header::LENGTH_FIELD_END)
        .map_err(|_| BatchError::InvalidRecord("batch too long"))?;
    let max_timestamp = match original.timestamp_type() {
        TimestampType::LogAppendTime => original.max_timestamp,
        TimestampType::CreateTime => retained
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(original.max_timestamp),
    };
    let count = i32::try_from(retained.len()).map_err(|_| BatchError::InvalidRecord("too many records"))?;
    let mut header = &mut batch[..HEADER_LEN];
    header.put_i64(original.base_offset);
    header.put_i32(batch_length);
    header.put_i32(original.partition_leader_epoch);
    header.put_i8(2);
    header.put_u32(0); // CRC, below
    header.put_i16(attributes);
    header.put_i32(original.last_offset_delta);
    header.put_i64(base_timestamp);
    header.put_i64(max_timestamp);
    header.put_i64(original.producer_id);
    header.put_i16(original.producer_epoch);
    header.put_i32(original.base_sequence);
    header.put_i32(count);
    let crc = compute_crc(&batch);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(batch)
}

/// Appends the compressed form of `records`, with one of kafka-protocol's compressors.
fn compress_into<C: Compressor<Vec<u8>>>(batch: &mut Vec<u8>, records: &[u8]) -> Result<(), BatchError> {
    C::compress(batch, |out| {
        out.put_slice(records);
        Ok(())
    })
    .map_err(|e| BatchError::Decode(e.to_string()))
}

fn put_record(out: &mut Vec<u8>, base_offset: i64, base_timestamp: i64, record: &Record) -> Result<(), BatchError> {
    let mut body = vec![0u8]; // attributes: unused in v2
    put_varlong(&mut body, record.timestamp.wrapping_sub(base_timestamp));
    put_varlong(&mut body, record.offset - base_offset);
    put_nullable(&mut body, record.key.as_deref())?;
    put_nullable(&mut body, record.value.as_deref())?;
    put_varlong(&mut body, record.headers.len() as i64);
    for (key, value) in &record.headers {
        put_nullable(&mut body, Some(key.as_bytes()))?;
        put_nullable(&mut body, value.as_deref())?;
    }
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
    Ok(())
}

fn put_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) -> Result<(), BatchError> {
    match field {
        None => put_varlong(out, -1),
        Some(bytes) => {
            let len = i32::try_from(bytes.len()).map_err(|_| BatchError::InvalidRecord("field too long"))?;
            put_varlong(out, i64::from(len));
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

/// Writes a zig-zag varlong (Kafka's record field encoding).
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a zig-zag varint (Kafka's record field encoding) of at most 32 bits.
pub fn read_varint(buf: &mut &[u8]) -> Result<i32, BatchError> {
    let value = read_varlong_bits(buf, 5)?;
    i32::try_from(value).map_err(|_| BatchError::InvalidRecord("varint out of range"))
}

/// Reads a zig-zag varlong of at most 64 bits.
pub fn read_varlong(buf: &mut &[u8]) -> Result<i64, BatchError> {
    read_varlong_bits(buf, 10)
}

fn read_varlong_bits(buf: &mut &[u8], max_bytes: usize) -> Result<i64, BatchError> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let (&byte, rest) = buf.split_first().ok_or(BatchError::InvalidRecord("truncated varint"))?;
        *buf = rest;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(BatchError::InvalidRecord("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::{push_varint, sample_batch};

    #[test]
    fn varints_round_trip() {
        for value in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i32::MIN as i64] {
            let mut out = Vec::new();
            push_varint(&mut out, value);
            let mut slice = out.as_slice();
            assert_eq!(read_varint(&mut slice).unwrap() as i64, value);
            assert!(slice.is_empty());
        }
        let mut slice: &[u8] = &[0x80, 0x80];
        assert!(read_varint(&mut slice).is_err());
    }

    #[test]
    fn retained_records_keep_offsets_sequences_and_codec() {
        for codec in [
            CodecCompression::None,
            CodecCompression::Gzip,
            CodecCompression::Snappy,
            CodecCompression::Lz4,
            CodecCompression::Zstd,
        ] {
            let records: Vec<Record> = (0..5)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 7,
                    producer_id: 42,
                    producer_epoch: 3,
                    timestamp_type: kafka_protocol::records::TimestampType::Creation,
                    offset: 100 + i,
                    sequence: 10 + i as i32,
                    timestamp: 1_000 + i,
                    key: Some(Bytes::from(format!("k{i}"))),
                    value: (i != 4).then(|| Bytes::from(format!("v{i}"))),
                    headers: Default::default(),
                })
                .collect();
            let mut original = Vec::new();
            RecordBatchEncoder::encode(
                &mut original,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: codec,
                },
            )
            .unwrap();
            let original_header = BatchHeader::parse(&original).unwrap();
            let kept = [records[2].clone(), records[4].clone()];
            let batch = encode_retained(&original_header, &kept, None).unwrap();
            let header = BatchHeader::parse(&batch).unwrap();
            assert_eq!(header.total_len(), batch.len());
            assert_eq!(header.crc, compute_crc(&batch), "{codec:?}");
            assert_eq!(
                (header.base_offset, header.last_offset(), header.records_count),
                (100, 104, 2)
            );
            assert_eq!(
                (header.producer_id, header.producer_epoch, header.base_sequence),
                (42, 3, 10)
            );
            assert_eq!(
                (header.attributes, header.max_timestamp),
                (original_header.attributes, 1_004)
            );
            let decoded = decode_records(&batch).unwrap();
            let got: Vec<_> = decoded
                .iter()
                .map(|r| (r.offset, r.sequence, r.timestamp, r.key.clone(), r.value.clone()))
                .collect();
            let want: Vec<_> = kept
                .iter()
                .map(|r| (r.offset, r.sequence, r.timestamp, r.key.clone(), r.value.clone()))
                .collect();
            assert_eq!(got, want, "{codec:?}");

            // With a delete horizon: flagged, base timestamp is the horizon, and record
            // timestamps read back unchanged.
            let batch = encode_retained(&original_header, &kept, Some(9_000)).unwrap();
            let header = BatchHeader::parse(&batch).unwrap();
            assert_eq!(header.delete_horizon_ms(), Some(9_000));
            assert_eq!(original_header.delete_horizon_ms(), None);
            assert_eq!(header.compression().unwrap(), original_header.compression().unwrap());
            let timestamps: Vec<i64> = decode_records(&batch).unwrap().iter().map(|r| r.timestamp).collect();
            assert_eq!(timestamps, [1_002, 1_004], "{codec:?}");
        }
    }

    #[test]
    fn decodes_records_of_a_batch() {
        let mut batch = sample_batch(3);
        crate::header::set_base_offset(&mut batch, 10);
        let records = decode_records(&batch).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].offset, 12);
        assert_eq!(records[0].value.as_deref(), Some(&b"abc"[..]));
        assert!(records[0].key.is_none());
    }
}
