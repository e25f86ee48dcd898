//! Individual records inside a batch.
//!
//! The produce and fetch paths never come here: they move whole batches. Compaction and
//! key checks on compacted topics do, and they decode (and decompress) with the
//! `kafka-protocol` crate's record codec.

use bytes::Bytes;
pub use kafka_protocol::records::{Compression as CodecCompression, Record, RecordBatchEncoder, RecordEncodeOptions};

use crate::header::BatchHeader;
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
