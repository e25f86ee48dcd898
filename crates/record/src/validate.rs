//! Validation of the record set in a produce request.
//!
//! Everything here runs before a batch may touch the log, so a batch that passes can be stored
//! byte-for-byte. Uncompressed batches are walked record by record without copying anything;
//! compressed ones are decompressed as a stream and walked the same way, since a payload that does not
//! decompress would otherwise be stored and stop every consumer at its offset.

use std::io::{self, BufRead, Read};

use bytes::Bytes;

use crate::decompress;
use crate::header::{compute_crc, BatchHeader, Compression, HEADER_LEN};
use crate::iter::BatchIter;
use crate::{BatchError, RecordError, RecordErrorReason, TargetCompression};

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

impl ValidatedBatches {
    /// The same batches in `target` (a topic's `compression.type`), as Kafka's broker
    /// recompresses: a batch already in the target codec keeps its bytes, any other is
    /// decompressed and compressed again ([`crate::compress::recompress`]: same offsets,
    /// sequences, producer fields and records; new codec bits, length and CRC). A batch
    /// recompressed past `max.message.bytes` is refused, as in Kafka.
    pub fn recompressed(
        self,
        target: TargetCompression,
        options: &ValidateOptions,
    ) -> Result<ValidatedBatches, BatchError> {
        if self.batches.iter().all(|(_, h)| h.compression() == Ok(target.codec)) {
            return Ok(self);
        }
        let limit = decompress::expansion_limit(options.max_batch_bytes);
        let mut bytes = Vec::with_capacity(self.bytes.len());
        let mut batches = Vec::with_capacity(self.batches.len());
        for (position, header) in &self.batches {
            let batch = &self.bytes[*position..*position + header.total_len()];
            let start = bytes.len();
            if header.compression()? == target.codec {
                bytes.extend_from_slice(batch);
            } else {
                bytes.extend_from_slice(&crate::compress::recompress(batch, target, limit)?);
            }
            let size = bytes.len() - start;
            if size > options.max_batch_bytes {
                return Err(BatchError::TooLarge {
                    size,
                    limit: options.max_batch_bytes,
                });
            }
            batches.push((start, BatchHeader::parse(&bytes[start..])?));
        }
        Ok(ValidatedBatches {
            bytes: Bytes::from(bytes),
            batches,
            record_count: self.record_count,
        })
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
            _ => check_compressed_records(batch.bytes, &header, options)?,
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

/// Walks each record's framing in place: its length, attributes, timestamp delta and offset
/// delta, key, value and headers, and that the lengths add up to the batch. Nothing is copied.
fn check_uncompressed_records(batch: &[u8], header: &BatchHeader, require_keys: bool) -> Result<(), BatchError> {
    let records = &batch[HEADER_LEN..];
    walk_records(
        &mut SliceSource {
            rest: records,
            len: records.len(),
        },
        header,
        require_keys,
    )
}

/// Decompresses a batch as a stream and walks its records as [`check_uncompressed_records`]
/// does. This costs a decompression per produced batch, and it is worth it: a batch whose
/// payload does not decompress would be stored behind a valid CRC and stop every consumer of
/// the partition at that offset. Memory stays bounded; the expansion is capped.
fn check_compressed_records(batch: &[u8], header: &BatchHeader, options: &ValidateOptions) -> Result<(), BatchError> {
    let reader = decompress::reader(header.compression()?, &batch[HEADER_LEN..])?;
    let mut source = StreamSource {
        inner: reader,
        consumed: 0,
        limit: decompress::expansion_limit(options.max_batch_bytes),
    };
    walk_records(&mut source, header, options.require_keys)
}

/// Where a record walk reads from: a slice in place, or a decompressing stream.
trait RecordSource {
    fn at_end(&mut self) -> Result<bool, BatchError>;
    fn byte(&mut self) -> Result<u8, BatchError>;
    fn skip(&mut self, n: u64) -> Result<(), BatchError>;
    /// Bytes read so far.
    fn consumed(&self) -> u64;

    /// A zig-zag varint of at most `max_bytes` bytes, within the next `available` bytes.
    fn varlong(&mut self, max_bytes: usize, available: u64) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            if i as u64 == available {
                return Err(LENGTH_MISMATCH);
            }
            let byte = self.byte()?;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(zigzag(raw));
            }
        }
        Err(VARINT_TOO_LONG)
    }
}

fn zigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

const LENGTH_MISMATCH: BatchError = BatchError::InvalidRecord("record length does not match its fields");
const VARINT_TOO_LONG: BatchError = BatchError::InvalidRecord("varint too long");

struct SliceSource<'a> {
    rest: &'a [u8],
    len: usize,
}

impl RecordSource for SliceSource<'_> {
    fn at_end(&mut self) -> Result<bool, BatchError> {
        Ok(self.rest.is_empty())
    }

    fn byte(&mut self) -> Result<u8, BatchError> {
        let (&byte, rest) = self.rest.split_first().ok_or(TRUNCATED)?;
        self.rest = rest;
        Ok(byte)
    }

    fn skip(&mut self, n: u64) -> Result<(), BatchError> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.rest.len())
            .ok_or(TRUNCATED)?;
        self.rest = &self.rest[n..];
        Ok(())
    }

    fn consumed(&self) -> u64 {
        (self.len - self.rest.len()) as u64
    }

    /// The produce path's hot loop: a tight walk over the slice.
    #[inline]
    fn varlong(&mut self, max_bytes: usize, available: u64) -> Result<i64, BatchError> {
        let window = self.rest.len().min(usize::try_from(available).unwrap_or(usize::MAX));
        let mut raw: u64 = 0;
        for (i, &byte) in self.rest.iter().take(max_bytes.min(window)).enumerate() {
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(zigzag(raw));
            }
        }
        Err(if window >= max_bytes {
            VARINT_TOO_LONG
        } else if window == self.rest.len() {
            TRUNCATED
        } else {
            LENGTH_MISMATCH
        })
    }
}

struct StreamSource<R> {
    inner: R,
    consumed: u64,
    limit: u64,
}

impl<R: BufRead> StreamSource<R> {
    fn advance(&mut self, n: u64) -> Result<(), BatchError> {
        self.consumed += n;
        if self.consumed > self.limit {
            return Err(BatchError::ExpandsTooFar { limit: self.limit });
        }
        Ok(())
    }
}

impl<R: BufRead> RecordSource for StreamSource<R> {
    fn at_end(&mut self) -> Result<bool, BatchError> {
        Ok(self.inner.fill_buf().map_err(decompress::io_error)?.is_empty())
    }

    fn byte(&mut self) -> Result<u8, BatchError> {
        let byte = *self
            .inner
            .fill_buf()
            .map_err(decompress::io_error)?
            .first()
            .ok_or(TRUNCATED)?;
        self.inner.consume(1);
        self.advance(1)?;
        Ok(byte)
    }

    fn skip(&mut self, n: u64) -> Result<(), BatchError> {
        // Checked first so a huge length fails before it costs any decompression.
        if self.consumed.saturating_add(n) > self.limit {
            return Err(BatchError::ExpandsTooFar { limit: self.limit });
        }
        let skipped = io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(decompress::io_error)?;
        if skipped < n {
            return Err(TRUNCATED);
        }
        self.advance(n)
    }

    fn consumed(&self) -> u64 {
        self.consumed
    }
}

const TRUNCATED: BatchError = BatchError::InvalidRecord("record truncated");

/// One record's bytes within a source: reads past its declared length fail.
struct RecordReader<'s, S> {
    source: &'s mut S,
    end: u64,
}

impl<S: RecordSource> RecordReader<'_, S> {
    fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.source.consumed())
    }

    fn byte(&mut self) -> Result<u8, BatchError> {
        if self.remaining() == 0 {
            return Err(LENGTH_MISMATCH);
        }
        self.source.byte()
    }

    fn varlong_bits(&mut self, max_bytes: usize) -> Result<i64, BatchError> {
        let available = self.remaining();
        self.source.varlong(max_bytes, available)
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let value = self.varlong_bits(5)?;
        i32::try_from(value).map_err(|_| BatchError::InvalidRecord("varint out of range"))
    }

    /// Skips a length-prefixed field whose length was just read; -1 means null.
    fn skip_nullable(&mut self, length: i32, what: &'static str) -> Result<(), BatchError> {
        match length {
            -1 => Ok(()),
            n if n >= 0 && n as u64 <= self.remaining() => self.source.skip(n as u64),
            _ => Err(BatchError::InvalidRecord(what)),
        }
    }
}

/// Walks every record of the batch. Framing errors stop the walk; records that are well formed
/// but refused by the topic (a missing key on a compacted topic) are collected, as Kafka does,
/// and refuse the batch at the end with every index.
fn walk_records<S: RecordSource>(source: &mut S, header: &BatchHeader, require_keys: bool) -> Result<(), BatchError> {
    let mut found = 0i32;
    let mut refused = Vec::new();
    while !source.at_end()? {
        if found == header.records_count {
            return Err(BatchError::RecordCountMismatch {
                header: header.records_count,
                found: found.saturating_add(1),
            });
        }
        // The length prefix is read as if it were part of an unbounded record.
        let length = RecordReader {
            end: u64::MAX,
            source: &mut *source,
        }
        .varint()?;
        if length <= 0 {
            return Err(BatchError::InvalidRecord("record length out of range"));
        }
        let end = source.consumed() + length as u64;
        let mut record = RecordReader { source, end };
        let _attributes = record.byte()?;
        let _timestamp_delta = record.varlong_bits(10)?;
        if record.varint()? != found {
            return Err(BatchError::InvalidRecord("offset deltas are not consecutive"));
        }
        let has_key = check_record_body(&mut record)?;
        if record.remaining() != 0 {
            return Err(BatchError::InvalidRecord("record length does not match its fields"));
        }
        if require_keys && !has_key {
            refused.push(RecordError {
                batch_index: found,
                reason: RecordErrorReason::MissingKey,
            });
        }
        found += 1;
    }
    if found != header.records_count {
        return Err(BatchError::RecordCountMismatch {
            header: header.records_count,
            found,
        });
    }
    if !refused.is_empty() {
        return Err(BatchError::RecordErrors(refused));
    }
    Ok(())
}

/// Walks a record's key, value and headers (after its offset delta), checking each length
/// against the record's own; true if the record has a key.
fn check_record_body<S: RecordSource>(record: &mut RecordReader<'_, S>) -> Result<bool, BatchError> {
    let key_length = record.varint()?;
    record.skip_nullable(key_length, "key length out of range")?;
    let value_length = record.varint()?;
    record.skip_nullable(value_length, "value length out of range")?;
    let header_count = record.varint()?;
    // Each header takes at least two bytes, so a count above half the rest is a lie; checking
    // it first keeps a hostile count from driving the loop.
    if header_count < 0 || header_count as u64 > record.remaining() / 2 {
        return Err(BatchError::InvalidRecord("header count out of range"));
    }
    for _ in 0..header_count {
        let key_length = record.varint()?;
        if key_length < 0 {
            return Err(BatchError::InvalidRecord("header key is null"));
        }
        record.skip_nullable(key_length, "header key length out of range")?;
        let value_length = record.varint()?;
        record.skip_nullable(value_length, "header value length out of range")?;
    }
    Ok(key_length >= 0)
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
            BatchError::RecordErrors(vec![
                RecordError {
                    batch_index: 0,
                    reason: RecordErrorReason::MissingKey
                },
                RecordError {
                    batch_index: 1,
                    reason: RecordErrorReason::MissingKey
                }
            ])
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

    fn encoded(codec: crate::records::CodecCompression, records: usize) -> Vec<u8> {
        use crate::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: kafka_protocol::records::TimestampType::Creation,
                offset: i as i64,
                sequence: -1 + i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
                value: (i % 5 != 0).then(|| Bytes::from(format!("value-{i}").repeat(i % 40))),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut out = Vec::new();
        RecordBatchEncoder::encode(
            &mut out,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        out
    }

    const CODECS: [crate::records::CodecCompression; 4] = {
        use crate::records::CodecCompression::*;
        [Gzip, Snappy, Lz4, Zstd]
    };

    /// Every keyless record is named, by its index in the batch, compressed or not (KIP-467).
    #[test]
    fn names_every_keyless_record_of_every_codec() {
        let keyed = ValidateOptions {
            require_keys: true,
            ..ValidateOptions::default()
        };
        for codec in CODECS {
            let batch = Bytes::from(encoded(codec, 50));
            let Err(BatchError::RecordErrors(errors)) = validate_batches(batch, &keyed) else {
                panic!("{codec:?}: keyless records accepted");
            };
            let indexes: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, (0..50).step_by(3).collect::<Vec<i32>>(), "{codec:?}");
            assert!(errors.iter().all(|e| e.reason == RecordErrorReason::MissingKey));
        }
    }

    #[test]
    fn walks_records_of_every_codec() {
        for codec in CODECS {
            let batch = encoded(codec, 200);
            let validated = validate_batches(Bytes::from(batch), &ValidateOptions::default()).unwrap();
            assert_eq!(validated.record_count(), 200, "{codec:?}");
        }
    }

    /// A batch whose compressed payload is `payload`, with a correct CRC.
    fn with_payload(template: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut batch = template[..HEADER_LEN].to_vec();
        batch.extend_from_slice(payload);
        let length = (batch.len() - crate::header::LENGTH_FIELD_END) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    #[test]
    fn refuses_compressed_payloads_that_do_not_hold_the_records() {
        for codec in CODECS {
            let good = encoded(codec, 50);
            let payload = &good[HEADER_LEN..];
            let mut cases = vec![
                ("payload cut in half", payload[..payload.len() / 2].to_vec()),
                ("garbage", vec![0x42; payload.len()]),
                ("empty", Vec::new()),
            ];
            let mut flipped = payload.to_vec();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0xff;
            cases.push(("a flipped byte", flipped));
            for (what, payload) in cases {
                let batch = with_payload(&good, &payload);
                assert!(
                    validate_batches(Bytes::from(batch), &ValidateOptions::default()).is_err(),
                    "{codec:?}: {what} was accepted"
                );
            }
            // A header that claims fewer records than the payload holds.
            let mut fewer = good.clone();
            fewer[57..61].copy_from_slice(&49i32.to_be_bytes());
            fewer[23..27].copy_from_slice(&48i32.to_be_bytes());
            let fewer = with_payload(&fewer, payload);
            assert!(matches!(
                validate_batches(Bytes::from(fewer), &ValidateOptions::default()),
                Err(BatchError::RecordCountMismatch { .. })
            ));
        }
    }

    #[test]
    fn a_compression_bomb_is_refused_without_expanding_in_memory() {
        use std::io::Write;
        // 300 records whose values are 1 MiB of zeros each: a few hundred kilobytes compressed.
        // Each record is within bounds, so only the running total can stop it.
        let value_len: i64 = 1 << 20;
        let records = 300;
        let zeros = vec![0u8; value_len as usize];
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        for delta in 0..records {
            let mut fields = vec![0u8]; // attributes
            for f in [0, delta, -1, value_len] {
                crate::header::tests::push_varint(&mut fields, f);
            }
            let mut prefix = Vec::new();
            crate::header::tests::push_varint(&mut prefix, fields.len() as i64 + value_len + 1);
            encoder.write_all(&prefix).unwrap();
            encoder.write_all(&fields).unwrap();
            encoder.write_all(&zeros).unwrap();
            encoder.write_all(&[0]).unwrap(); // no headers
        }
        let payload = encoder.finish().unwrap();
        assert!(payload.len() < 1 << 20, "bomb is {} bytes", payload.len());
        let mut template = encoded(crate::records::CodecCompression::Zstd, 1);
        template[23..27].copy_from_slice(&(records as i32 - 1).to_be_bytes());
        template[57..61].copy_from_slice(&(records as i32).to_be_bytes());
        let bomb = with_payload(&template, &payload);
        assert_eq!(
            validate_batches(Bytes::from(bomb), &ValidateOptions::default()).unwrap_err(),
            BatchError::ExpandsTooFar {
                limit: decompress::expansion_limit(ValidateOptions::default().max_batch_bytes)
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = validate_batches(Bytes::from(data), &ValidateOptions { max_batch_bytes: 1 << 20, require_keys: true });
        }
    }
}

#[cfg(test)]
mod recompression_tests {
    use super::*;
    use crate::records::{decode_records, CodecCompression};

    fn batch(codec: CodecCompression) -> Bytes {
        use crate::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
        let records: Vec<Record> = (0..40)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 7,
                producer_epoch: 2,
                timestamp_type: kafka_protocol::records::TimestampType::Creation,
                offset: i,
                sequence: 100 + i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: (i % 4 != 0).then(|| Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from("compressible ".repeat(20))),
                headers: Default::default(),
            })
            .collect();
        let mut out = Vec::new();
        RecordBatchEncoder::encode(
            &mut out,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        Bytes::from(out)
    }

    fn target(codec: Compression, level: Option<i32>) -> TargetCompression {
        TargetCompression { codec, level }
    }

    const ALL: [(CodecCompression, Compression); 5] = [
        (CodecCompression::None, Compression::None),
        (CodecCompression::Gzip, Compression::Gzip),
        (CodecCompression::Snappy, Compression::Snappy),
        (CodecCompression::Lz4, Compression::Lz4),
        (CodecCompression::Zstd, Compression::Zstd),
    ];

    /// Every codec into every other: the new batch validates, carries the target's codec bits
    /// and every header field but codec, length and CRC unchanged, and holds the same records;
    /// a batch already in the target codec is kept byte for byte.
    #[test]
    fn every_codec_into_every_other_keeps_records_and_producer_fields() {
        let options = ValidateOptions::default();
        for (from, _) in ALL {
            let original = batch(from);
            let want = decode_records(&original).unwrap();
            for (_, to) in ALL {
                let validated = validate_batches(original.clone(), &options).unwrap();
                let out = validated.recompressed(target(to, None), &options).unwrap();
                let bytes = out.bytes().clone();
                let header = BatchHeader::parse(&bytes).unwrap();
                assert_eq!(header.compression(), Ok(to), "{from:?} -> {to:?}");
                let before = BatchHeader::parse(&original).unwrap();
                assert_eq!(
                    (
                        header.base_sequence,
                        header.producer_id,
                        header.producer_epoch,
                        header.records_count
                    ),
                    (
                        before.base_sequence,
                        before.producer_id,
                        before.producer_epoch,
                        before.records_count
                    )
                );
                assert_eq!(
                    (header.base_timestamp, header.max_timestamp, header.last_offset_delta),
                    (before.base_timestamp, before.max_timestamp, before.last_offset_delta)
                );
                validate_batches(bytes.clone(), &options).unwrap();
                assert_eq!(decode_records(&bytes).unwrap(), want, "{from:?} -> {to:?}");
                if before.compression() == Ok(to) {
                    assert_eq!(bytes, original, "{to:?} kept byte for byte");
                }
            }
        }
    }

    #[test]
    fn levels_change_the_output() {
        let options = ValidateOptions::default();
        let size = |codec, level| {
            let validated = validate_batches(batch(CodecCompression::None), &options).unwrap();
            validated
                .recompressed(target(codec, Some(level)), &options)
                .unwrap()
                .len_bytes()
        };
        assert!(size(Compression::Zstd, 19) < size(Compression::Zstd, 1));
        assert!(size(Compression::Gzip, 9) < size(Compression::Gzip, 1));
        assert!(size(Compression::Lz4, 12) < size(Compression::Lz4, 1));
    }

    #[test]
    fn a_batch_that_grows_past_the_limit_is_refused() {
        let original = batch(CodecCompression::Zstd);
        let options = ValidateOptions {
            max_batch_bytes: original.len() + 10,
            require_keys: false,
        };
        let validated = validate_batches(original, &options).unwrap();
        assert!(matches!(
            validated.recompressed(target(Compression::None, None), &options),
            Err(BatchError::TooLarge { .. })
        ));
    }
}
