//! Validation of the record set in a produce request.
//!
//! Everything here runs before a batch may touch the log, so a batch that passes can be stored
//! byte-for-byte. Uncompressed batches are walked record by record without copying anything;
//! compressed ones are decompressed and their records decoded, since a payload that does not
//! decompress would otherwise be stored and stop every consumer at its offset.

use bytes::Bytes;

use crate::header::{compute_crc, BatchHeader, Compression, HEADER_LEN};
use crate::iter::BatchIter;
use crate::records::{decode_records, read_varint, read_varlong};
use crate::BatchError;

#[derive(Debug, Clone, Copy)]
pub struct ValidateOptions {
    /// `max.message.bytes`: the largest batch a topic accepts.
    pub max_batch_bytes: usize,
    /// Compacted topics need a key on every record.
    pub require_keys: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            max_batch_bytes: 1024 * 1024 + 12,
            require_keys: false,
        }
    }
}

/// A record set that passed validation. Only [`validate_batches`] makes one, so holding one is
/// proof that every batch in it is whole, v2, checksummed and internally consistent.
#[derive(Debug, Clone)]
pub struct ValidatedBatches {
    bytes: Bytes,
    batches: Vec<(usize, BatchHeader)>,
    record_count: i64,
}

impl ValidatedBatches {
    /// The record set exactly as received.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Each batch's position in [`Self::bytes`] and its header as received.
    pub fn batches(&self) -> &[(usize, BatchHeader)] {
        &self.batches
    }

    /// How many offsets the record set occupies.
    pub fn offset_count(&self) -> i64 {
        self.batches
            .iter()
            .map(|(_, h)| i64::from(h.last_offset_delta) + 1)
            .sum()
    }

    pub fn record_count(&self) -> i64 {
        self.record_count
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// Checks a produce request's record set.
pub fn validate_batches(bytes: Bytes, options: &ValidateOptions) -> Result<ValidatedBatches, BatchError> {
    if bytes.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut batches = Vec::with_capacity(1);
    let mut record_count = 0i64;
    let mut iter = BatchIter::new(&bytes);
    for batch in iter.by_ref() {
        let batch = batch?;
        let header = batch.header;
        if batch.bytes.len() > options.max_batch_bytes {
            return Err(BatchError::TooLarge {
                size: batch.bytes.len(),
                limit: options.max_batch_bytes,
            });
        }
        let computed = compute_crc(batch.bytes);
        if computed != header.crc {
            return Err(BatchError::CorruptCrc {
                stored: header.crc,
                computed,
            });
        }
        if header.is_control() {
            return Err(BatchError::InvalidRecord("clients may not write control batches"));
        }
        if header.records_count <= 0 {
            return Err(BatchError::InvalidRecord("batch has no records"));
        }
        if header.last_offset_delta != header.records_count - 1 {
            return Err(BatchError::InvalidRecord(
                "last offset delta does not match record count",
            ));
        }
        match header.compression()? {
            Compression::None => check_uncompressed_records(batch.bytes, &header, options.require_keys)?,
            _ => check_compressed_records(batch.bytes, &header, options.require_keys)?,
        }
        record_count += i64::from(header.records_count);
        batches.push((batch.position, header));
    }
    if iter.position() != bytes.len() {
        // The iterator stopped on an error it already returned; unreachable in practice, but a
        // silent partial accept would lose data, so refuse.
        return Err(BatchError::Truncated {
            needed: bytes.len(),
            available: iter.position(),
        });
    }
    if batches.len() > 1 && batches.iter().any(|(_, h)| h.has_producer_id()) {
        return Err(BatchError::InvalidRecord(
            "an idempotent or transactional produce carries exactly one batch per partition",
        ));
    }
    Ok(ValidatedBatches {
        bytes,
        batches,
        record_count,
    })
}

/// Walks each record's framing: its length, attributes, timestamp delta and offset delta, and
/// that the lengths add up to the batch. Values are not copied or decoded.
fn check_uncompressed_records(batch: &[u8], header: &BatchHeader, require_keys: bool) -> Result<(), BatchError> {
    let mut rest = &batch[HEADER_LEN..];
    let mut found = 0i32;
    while !rest.is_empty() {
        let length = read_varint(&mut rest)?;
        if length <= 0 || length as usize > rest.len() {
            return Err(BatchError::InvalidRecord("record length out of range"));
        }
        let (mut record, tail) = rest.split_at(length as usize);
        rest = tail;
        let _attributes = record.first().ok_or(BatchError::InvalidRecord("empty record"))?;
        record = &record[1..];
        let _timestamp_delta = read_varlong(&mut record)?;
        let offset_delta = read_varint(&mut record)?;
        if offset_delta != found {
            return Err(BatchError::InvalidRecord("offset deltas are not consecutive"));
        }
        check_record_body(&mut record, require_keys)?;
        if !record.is_empty() {
            return Err(BatchError::InvalidRecord("record length does not match its fields"));
        }
        found = found
            .checked_add(1)
            .ok_or(BatchError::InvalidRecord("too many records"))?;
    }
    if found != header.records_count {
        return Err(BatchError::RecordCountMismatch {
            header: header.records_count,
            found,
        });
    }
    Ok(())
}

/// Walks a record's key, value and headers (after its offset delta), checking each length
/// against the bytes present. Nothing is copied or decoded.
fn check_record_body(record: &mut &[u8], require_keys: bool) -> Result<(), BatchError> {
    let key_length = read_varint(record)?;
    if key_length < 0 && require_keys {
        return Err(BatchError::MissingKey);
    }
    skip_nullable(record, key_length, "key length out of range")?;
    let value_length = read_varint(record)?;
    skip_nullable(record, value_length, "value length out of range")?;
    let header_count = read_varint(record)?;
    // Each header takes at least two bytes, so a count above half the rest is a lie; checking
    // it first keeps a hostile count from driving the loop.
    if header_count < 0 || header_count as usize > record.len() / 2 {
        return Err(BatchError::InvalidRecord("header count out of range"));
    }
    for _ in 0..header_count {
        let key_length = read_varint(record)?;
        if key_length < 0 {
            return Err(BatchError::InvalidRecord("header key is null"));
        }
        skip_nullable(record, key_length, "header key length out of range")?;
        let value_length = read_varint(record)?;
        skip_nullable(record, value_length, "header value length out of range")?;
    }
    Ok(())
}

/// Skips a length-prefixed field whose length was just read; -1 means null.
fn skip_nullable(record: &mut &[u8], length: i32, what: &'static str) -> Result<(), BatchError> {
    match length {
        -1 => Ok(()),
        n if n >= 0 && n as usize <= record.len() => {
            *record = &record[n as usize..];
            Ok(())
        }
        _ => Err(BatchError::InvalidRecord(what)),
    }
}

/// Decompresses a batch and checks its records as Kafka does. This costs a decompression per
/// produced batch, and it is worth it: a batch whose payload does not decompress would be
/// stored behind a valid CRC and stop every consumer of the partition at that offset.
fn check_compressed_records(batch: &[u8], header: &BatchHeader, require_keys: bool) -> Result<(), BatchError> {
    let records = decode_records(batch)?;
    if records.len() != header.records_count as usize {
        return Err(BatchError::RecordCountMismatch {
            header: header.records_count,
            found: records.len() as i32,
        });
    }
    for (delta, record) in records.iter().enumerate() {
        if record.offset != header.base_offset + delta as i64 {
            return Err(BatchError::InvalidRecord("offset deltas are not consecutive"));
        }
        if require_keys && record.key.is_none() {
            return Err(BatchError::MissingKey);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::sample_batch;

    #[test]
    fn accepts_well_formed_batches() {
        let mut buf = sample_batch(3);
        buf.extend_from_slice(&sample_batch(2));
        let validated = validate_batches(Bytes::from(buf), &ValidateOptions::default()).unwrap();
        assert_eq!(validated.batches().len(), 2);
        assert_eq!(validated.record_count(), 5);
        assert_eq!(validated.offset_count(), 5);
    }

    #[test]
    fn rejects_corruption_anywhere() {
        let good = sample_batch(4);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            // Flipping base offset or leader epoch bits is legal (those belong to the broker).
            if i < 8 || (12..16).contains(&i) {
                continue;
            }
            assert!(
                validate_batches(Bytes::from(bad), &ValidateOptions::default()).is_err(),
                "flip at byte {i} was accepted"
            );
        }
    }

    #[test]
    fn rejects_truncation_and_trailing_garbage() {
        let good = sample_batch(2);
        for cut in 1..good.len() {
            assert!(validate_batches(Bytes::copy_from_slice(&good[..cut]), &ValidateOptions::default()).is_err());
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(validate_batches(Bytes::from(extra), &ValidateOptions::default()).is_err());
    }

    #[test]
    fn enforces_size_and_keys() {
        let batch = sample_batch(2);
        let small = ValidateOptions {
            max_batch_bytes: 10,
            require_keys: false,
        };
        assert!(matches!(
            validate_batches(Bytes::from(batch.clone()), &small),
            Err(BatchError::TooLarge { .. })
        ));
        let keyed = ValidateOptions {
            require_keys: true,
            ..ValidateOptions::default()
        };
        assert_eq!(
            validate_batches(Bytes::from(batch), &keyed).unwrap_err(),
            BatchError::MissingKey
        );
    }

    /// A one-record batch whose record body (after the offset delta) is `body`.
    fn batch_with_body(body: &[u8]) -> Vec<u8> {
        use crate::header::tests::push_varint;
        let mut record = vec![0u8]; // attributes
        push_varint(&mut record, 0); // timestamp delta
        push_varint(&mut record, 0); // offset delta
        record.extend_from_slice(body);
        let mut framed = Vec::new();
        push_varint(&mut framed, record.len() as i64);
        framed.extend_from_slice(&record);
        let mut batch = sample_batch(1);
        batch.truncate(HEADER_LEN);
        batch.extend_from_slice(&framed);
        let length = (batch.len() - crate::header::LENGTH_FIELD_END) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn body(fields: &[i64], tail: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            crate::header::tests::push_varint(&mut out, *f);
        }
        out.extend_from_slice(tail);
        out
    }

    #[test]
    fn walks_every_field_of_uncompressed_records() {
        let options = ValidateOptions::default();
        // key "k", value "v", no headers: fine.
        let good = batch_with_body(&[body(&[1], b"k"), body(&[1], b"v"), body(&[0], b"")].concat());
        validate_batches(Bytes::from(good), &options).unwrap();
        let cases: [(&str, Vec<u8>); 5] = [
            ("key length -5", body(&[-5, 1], b"v")),
            (
                "value longer than the record",
                [body(&[-1, 50], b"v"), body(&[0], b"")].concat(),
            ),
            (
                "header count 2^31-1",
                [body(&[-1, -1, i64::from(i32::MAX)], b"")].concat(),
            ),
            ("header with a null key", [body(&[-1, -1, 1, -1, -1], b"")].concat()),
            ("trailing bytes after the headers", [body(&[-1, -1, 0], b"xx")].concat()),
        ];
        for (what, bad) in cases {
            assert!(
                validate_batches(Bytes::from(batch_with_body(&bad)), &options).is_err(),
                "{what} was accepted"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = validate_batches(Bytes::from(data), &ValidateOptions { max_batch_bytes: 1 << 20, require_keys: true });
        }
    }
}
