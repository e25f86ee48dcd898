//! What the coordinator writes to `__transaction_state`, byte for byte.
//!
//! The layouts are Kafka's, so Kafka's tooling can read Strom's transaction log and a log
//! Kafka wrote can be replayed here. Every key and value starts with a big-endian `i16`
//! version; the topic is compacted by key, and a null value is a tombstone that removes the
//! transactional id.
//!
//! | part | version | fields |
//! | --- | --- | --- |
//! | key | 0 | transactional id (STRING: `i16` length, UTF-8) |
//! | value | 0 | producer id `i64`, producer epoch `i16`, timeout ms `i32`, state `i8`, partitions (nullable ARRAY of topic STRING and ARRAY of `i32` partition ids), last update ms `i64`, start ms `i64` |
//! | value | 1 | the same fields, flexible (compact strings and arrays), then tagged fields: 0 previous producer id `i64`, 1 next producer id `i64`, 2 client transaction version `i16` |
//!
//! Strom writes the oldest version that holds the record: version 0 for transactions v1, whose
//! tagged fields would all be defaults, version 1 once a client used transactions v2 (KIP-890
//! part 2) or an epoch overflow left a previous or next producer id. Kafka itself writes only
//! tag 2; tags 0 and 1 are in its schema, so its readers accept them, and keeping them lets a
//! restarted Strom finish an overflowing end, and recognise its retry, as the live one would.
//!
//! Decoding never trusts a count: an array longer than the bytes left could hold is refused
//! before anything is allocated, so a corrupt record is an error, not an abort.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::state::{TransactionMetadata, TxnState};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;
const VALUE_VERSION_FLEXIBLE: i16 = 1;

/// Why a `__transaction_state` record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnRecordError {
    #[error("record ends early")]
    Truncated,
    #[error("record string is not UTF-8")]
    NotUtf8,
    #[error("null or negative length {0} where a value is required")]
    NegativeLength(i64),
    #[error("unsigned varint longer than 5 bytes")]
    VarintTooLong,
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown value version {0}")]
    UnknownValueVersion(i16),
    #[error("unknown transaction state code {0}")]
    UnknownState(i8),
}

/// The partition of `__transaction_state` that holds a transactional id's records: Java's
/// `String.hashCode` of the id, made non-negative as Kafka does, modulo the partition count.
/// Matching Kafka keeps an id's records where Kafka tooling would look for them.
pub fn partition_for(transactional_id: &str, partition_count: i32) -> i32 {
    let hash = transactional_id
        .encode_utf16()
        .fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
    // Kafka's `Utils.abs` maps i32::MIN to 0 rather than overflowing.
    let non_negative = if hash == i32::MIN { 0 } else { hash.abs() };
    non_negative % partition_count.max(1)
}

/// One record of `__transaction_state`. A `None` value is a tombstone: the id is forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    pub value: Option<TransactionMetadata>,
}

impl TxnRecord {
    /// The record's key and value (`None` for a tombstone).
    ///
    /// The coordinator only makes records whose strings fit Kafka's `i16` lengths (it refuses
    /// longer transactional ids and topic names), so a longer one here is a broken invariant.
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::with_capacity(4 + self.transactional_id.len());
        key.put_i16(KEY_VERSION);
        put_string(&mut key, &self.transactional_id);
        let value = self.value.as_ref().map(encode_value);
        (key.freeze(), value)
    }

    pub fn decode(mut key: Bytes, value: Option<Bytes>) -> Result<TxnRecord, TxnRecordError> {
        match get_i16(&mut key)? {
            KEY_VERSION => {}
            other => return Err(TxnRecordError::UnknownKeyVersion(other)),
        }
        let transactional_id = get_string(&mut key)?;
        let value = value.map(decode_value).transpose()?;
        Ok(TxnRecord {
            transactional_id,
            value,
        })
    }
}

/// The longest string Kafka's `i16`-length STRING can hold.
pub(crate) const STRING_BYTES_MAX: usize = i16::MAX as usize;

/// Tagged fields of value version 1.
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

fn encode_value(txn: &TransactionMetadata) -> Bytes {
    let flexible = txn.client_transaction_version != 0 || txn.previous_producer_id >= 0 || txn.next_producer_id >= 0;
    let mut value = BytesMut::with_capacity(80 + txn.partitions.len() * 8);
    value.put_i16(if flexible {
        VALUE_VERSION_FLEXIBLE
    } else {
        VALUE_VERSION
    });
    value.put_i64(txn.producer_id);
    value.put_i16(txn.producer_epoch);
    value.put_i32(txn.timeout_ms);
    value.put_i8(txn.state.code());
    // Kafka writes a null partition list for an Empty transaction, and only then.
    if txn.state == TxnState::Empty && txn.partitions.is_empty() {
        if flexible {
            put_unsigned_varint(&mut value, 0);
        } else {
            value.put_i32(-1);
        }
    } else {
        let topics = partitions_by_topic(&txn.partitions);
        put_array_length(&mut value, topics.len(), flexible);
        for (topic, partitions) in topics {
            if flexible {
                put_compact_length(&mut value, topic.len());
                value.put_slice(topic.as_bytes());
            } else {
                put_string(&mut value, topic);
            }
            put_array_length(&mut value, partitions.len(), flexible);
            for partition in partitions {
                value.put_i32(partition);
            }
            if flexible {
                put_unsigned_varint(&mut value, 0);
            }
        }
    }
    value.put_i64(txn.last_update_ms);
    value.put_i64(txn.txn_start_ms);
    if flexible {
        put_tagged_fields(&mut value, txn);
    }
    value.freeze()
}

fn put_array_length(buf: &mut BytesMut, n: usize, flexible: bool) {
    if flexible {
        put_compact_length(buf, n);
    } else {
        buf.put_i32(i32::try_from(n).expect("array length fits an i32"));
    }
}

/// Version 1's tagged fields, each only when it differs from its default.
fn put_tagged_fields(value: &mut BytesMut, txn: &TransactionMetadata) {
    let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
    if txn.previous_producer_id >= 0 {
        tagged.push((
            TAG_PREVIOUS_PRODUCER_ID,
            txn.previous_producer_id.to_be_bytes().to_vec(),
        ));
    }
    if txn.next_producer_id >= 0 {
        tagged.push((TAG_NEXT_PRODUCER_ID, txn.next_producer_id.to_be_bytes().to_vec()));
    }
    if txn.client_transaction_version != 0 {
        tagged.push((
            TAG_CLIENT_TRANSACTION_VERSION,
            txn.client_transaction_version.to_be_bytes().to_vec(),
        ));
    }
    put_unsigned_varint(value, tagged.len() as u32);
    for (tag, bytes) in tagged {
        put_unsigned_varint(value, tag);
        put_unsigned_varint(value, bytes.len() as u32);
        value.put_slice(&bytes);
    }
}

/// A compact length: `n + 1` as an unsigned varint (0 is null). The coordinator's strings and
/// lists are far below `u32::MAX`.
fn put_compact_length(buf: &mut BytesMut, n: usize) {
    put_unsigned_varint(buf, u32::try_from(n + 1).expect("length fits a u32"));
}

fn put_unsigned_varint(buf: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

/// Groups a sorted set of partitions by topic, as the value stores them.
fn partitions_by_topic(partitions: &BTreeSet<(String, i32)>) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in partitions {
        match topics.last_mut() {
            Some((last, ids)) if *last == topic.as_str() => ids.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    topics
}

fn decode_value(mut value: Bytes) -> Result<TransactionMetadata, TxnRecordError> {
    let version = get_i16(&mut value)?;
    let flexible = match version {
        VALUE_VERSION => false,
        VALUE_VERSION_FLEXIBLE => true,
        other => return Err(TxnRecordError::UnknownValueVersion(other)),
    };
    let producer_id = get_i64(&mut value)?;
    let producer_epoch = get_i16(&mut value)?;
    let timeout_ms = get_i32(&mut value)?;
    let code = get_i8(&mut value)?;
    let state = TxnState::from_code(code).ok_or(TxnRecordError::UnknownState(code))?;
    let partitions = if flexible {
        get_partitions_flexible(&mut value)?
    } else {
        get_partitions(&mut value)?
    };
    let last_update_ms = get_i64(&mut value)?;
    let txn_start_ms = get_i64(&mut value)?;
    let mut txn = TransactionMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        txn_start_ms,
        last_update_ms,
        previous_producer_id: -1,
        next_producer_id: -1,
        client_transaction_version: 0,
    };
    if flexible {
        for_each_tagged_field(&mut value, &mut |tag, mut field| {
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => txn.previous_producer_id = get_i64(&mut field)?,
                TAG_NEXT_PRODUCER_ID => txn.next_producer_id = get_i64(&mut field)?,
                TAG_CLIENT_TRANSACTION_VERSION => txn.client_transaction_version = get_i16(&mut field)?,
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(txn)
}

/// Version 0's nullable ARRAY of { topic STRING, partition ids ARRAY of `i32` }; null reads as
/// no partitions.
fn get_partitions(value: &mut Bytes) -> Result<BTreeSet<(String, i32)>, TxnRecordError> {
    let mut partitions = BTreeSet::new();
    let count = get_i32(value)?;
    if count < 0 {
        return Ok(partitions);
    }
    // A topic entry takes at least a string length and an array count.
    let topics = bounded_count(i64::from(count), value, 6)?;
    for _ in 0..topics {
        let topic = get_string(value)?;
        let count = get_i32(value)?;
        let ids = bounded_count(i64::from(count), value, 4)?;
        for _ in 0..ids {
            partitions.insert((topic.clone(), get_i32(value)?));
        }
    }
    Ok(partitions)
}

/// Version 1's COMPACT_NULLABLE_ARRAY of { topic COMPACT_STRING, partition ids COMPACT_ARRAY of
/// `i32`, tagged fields }.
fn get_partitions_flexible(value: &mut Bytes) -> Result<BTreeSet<(String, i32)>, TxnRecordError> {
    let mut partitions = BTreeSet::new();
    let Some(count) = get_compact_length(value)? else {
        return Ok(partitions);
    };
    // A topic entry takes at least a string length, an array length and a tagged field count.
    let topics = bounded_count(count, value, 3)?;
    for _ in 0..topics {
        let length = get_compact_length(value)?.ok_or(TxnRecordError::NegativeLength(-1))?;
        let topic = get_utf8(value, length)?;
        let count = get_compact_length(value)?.ok_or(TxnRecordError::NegativeLength(-1))?;
        let ids = bounded_count(count, value, 4)?;
        for _ in 0..ids {
            partitions.insert((topic.clone(), get_i32(value)?));
        }
        skip_tagged_fields(value)?;
    }
    Ok(partitions)
}

/// An array count, refused when the bytes left could not hold that many elements of at least
/// `element_bytes_min` each: a corrupt count must not become a huge allocation or loop.
fn bounded_count(count: i64, buf: &Bytes, element_bytes_min: usize) -> Result<usize, TxnRecordError> {
    let count = usize::try_from(count).map_err(|_| TxnRecordError::NegativeLength(count))?;
    if count > buf.remaining() / element_bytes_min {
        return Err(TxnRecordError::Truncated);
    }
    Ok(count)
}

/// A compact length: an unsigned varint holding length + 1, where 0 means null.
fn get_compact_length(buf: &mut Bytes) -> Result<Option<i64>, TxnRecordError> {
    let encoded = get_unsigned_varint(buf)?;
    Ok(encoded.checked_sub(1).map(i64::from))
}

fn get_unsigned_varint(buf: &mut Bytes) -> Result<u32, TxnRecordError> {
    let mut result = 0u32;
    for index in 0..5 {
        let byte = get_i8(buf)? as u8;
        let bits = u32::from(byte & 0x7f);
        // The fifth byte may carry only the top 4 bits of a u32.
        if index == 4 && bits > 0x0f {
            return Err(TxnRecordError::VarintTooLong);
        }
        result |= bits << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(result);
        }
    }
    Err(TxnRecordError::VarintTooLong)
}

/// Skips a flexible version's tagged fields (of a nested structure, none of which Strom keeps).
fn skip_tagged_fields(buf: &mut Bytes) -> Result<(), TxnRecordError> {
    for_each_tagged_field(buf, &mut |_, _| Ok(()))
}

/// Reads a flexible version's tagged fields: a count, then per field its tag, size and bytes,
/// each handed to `f`.
fn for_each_tagged_field(
    buf: &mut Bytes,
    f: &mut dyn FnMut(u32, Bytes) -> Result<(), TxnRecordError>,
) -> Result<(), TxnRecordError> {
    let count = get_unsigned_varint(buf)?;
    // Each field takes at least a tag and a size byte; refusing larger counts bounds the loop.
    let count = bounded_count(i64::from(count), buf, 2)?;
    for _ in 0..count {
        let tag = get_unsigned_varint(buf)?;
        let size = get_unsigned_varint(buf)? as usize;
        f(tag, take(buf, size)?)?;
    }
    Ok(())
}

fn put_string(buf: &mut BytesMut, s: &str) {
    assert!(
        s.len() <= STRING_BYTES_MAX,
        "string of {} bytes does not fit a Kafka STRING",
        s.len()
    );
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

/// A non-nullable STRING: `i16` length, UTF-8.
fn get_string(buf: &mut Bytes) -> Result<String, TxnRecordError> {
    let length = get_i16(buf)?;
    get_utf8(buf, i64::from(length))
}

fn get_utf8(buf: &mut Bytes, length: i64) -> Result<String, TxnRecordError> {
    let length = usize::try_from(length).map_err(|_| TxnRecordError::NegativeLength(length))?;
    let bytes = take(buf, length)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| TxnRecordError::NotUtf8)
}

fn take(buf: &mut Bytes, length: usize) -> Result<Bytes, TxnRecordError> {
    if buf.remaining() < length {
        return Err(TxnRecordError::Truncated);
    }
    Ok(buf.split_to(length))
}

fn get_i8(buf: &mut Bytes) -> Result<i8, TxnRecordError> {
    buf.try_get_i8().map_err(|_| TxnRecordError::Truncated)
}

fn get_i16(buf: &mut Bytes) -> Result<i16, TxnRecordError> {
    buf.try_get_i16().map_err(|_| TxnRecordError::Truncated)
}

fn get_i32(buf: &mut Bytes) -> Result<i32, TxnRecordError> {
    buf.try_get_i32().map_err(|_| TxnRecordError::Truncated)
}

fn get_i64(buf: &mut Bytes) -> Result<i64, TxnRecordError> {
    buf.try_get_i64().map_err(|_| TxnRecordError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn metadata(state: TxnState, partitions: &[(&str, i32)]) -> TransactionMetadata {
        TransactionMetadata {
            producer_id: 7,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(topic, partition)| (topic.to_string(), *partition))
                .collect(),
            txn_start_ms: 100,
            last_update_ms: 200,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn partition_matches_java_string_hash_code() {
        // "hello".hashCode() == 99162322; "Aa" and "BB" collide in Java.
        assert_eq!(partition_for("hello", 1_000_000_000), 99_162_322);
        assert_eq!(partition_for("Aa", 50), partition_for("BB", 50));
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which Kafka maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert!((0..50).contains(&partition_for("ünïcode-txn", 50)));
    }

    #[test]
    fn key_and_value_bytes() {
        let record = TxnRecord {
            transactional_id: "t".into(),
            value: Some(metadata(TxnState::Ongoing, &[("a", 1), ("a", 0), ("b", 2)])),
        };
        let (key, value) = record.encode();
        assert_eq!(&key[..], &[0, 0, 0, 1, b't']);
        let value = value.unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 0,                         // version
            0, 0, 0, 0, 0, 0, 0, 7,       // producer id
            0, 3,                         // producer epoch
            0, 0, 0xea, 0x60,             // timeout 60000
            1,                            // Ongoing
            0, 0, 0, 2,                   // two topics
            0, 1, b'a', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1,
            0, 1, b'b', 0, 0, 0, 1, 0, 0, 0, 2,
            0, 0, 0, 0, 0, 0, 0, 200,     // last update
            0, 0, 0, 0, 0, 0, 0, 100,     // start
        ];
        assert_eq!(&value[..], expected);
        assert_eq!(TxnRecord::decode(key, Some(value)).unwrap(), record);
    }

    #[test]
    fn empty_state_has_null_partitions_and_tombstones_have_no_value() {
        let mut empty = metadata(TxnState::Empty, &[]);
        empty.txn_start_ms = -1;
        let (_, value) = TxnRecord {
            transactional_id: "t".into(),
            value: Some(empty),
        }
        .encode();
        assert_eq!(&value.unwrap()[17..21], &[0xff, 0xff, 0xff, 0xff]);

        let tombstone = TxnRecord {
            transactional_id: "t".into(),
            value: None,
        };
        let (key, value) = tombstone.encode();
        assert_eq!(value, None);
        assert_eq!(TxnRecord::decode(key, None).unwrap(), tombstone);
    }

    /// Version 1 as a newer Kafka writes it: compact strings and arrays, and tagged fields
    /// (here the previous producer id, tag 0, and an unknown tag 9) that are skipped.
    #[test]
    fn flexible_value_version_1_decodes() {
        let mut value = BytesMut::new();
        value.put_i16(1);
        value.put_i64(7);
        value.put_i16(3);
        value.put_i32(60_000);
        value.put_i8(TxnState::PrepareCommit.code());
        value.put_u8(3); // two topics
        for (topic, ids) in [("a", &[0, 1][..]), ("b", &[2][..])] {
            value.put_u8(topic.len() as u8 + 1);
            value.put_slice(topic.as_bytes());
            value.put_u8(ids.len() as u8 + 1);
            for id in ids {
                value.put_i32(*id);
            }
            value.put_u8(0); // no tagged fields
        }
        value.put_i64(200);
        value.put_i64(100);
        value.put_u8(2); // two tagged fields
        value.put_slice(&[0, 8, 0, 0, 0, 0, 0, 0, 0, 5]);
        value.put_slice(&[9, 0x81, 0x01]); // tag 9, size 129 (a two-byte varint)
        value.put_slice(&[0xaa; 129]);
        let record = TxnRecord::decode(Bytes::from_static(&[0, 0, 0, 1, b't']), Some(value.freeze())).unwrap();
        assert_eq!(
            record.value.unwrap(),
            TransactionMetadata {
                previous_producer_id: 5,
                ..metadata(TxnState::PrepareCommit, &[("a", 0), ("a", 1), ("b", 2)])
            }
        );
    }

    #[test]
    fn transactions_v2_fields_are_written_as_version_1_tags() {
        let txn = TransactionMetadata {
            next_producer_id: 9,
            client_transaction_version: 2,
            ..metadata(TxnState::PrepareAbort, &[("a", 0)])
        };
        let (_, value) = TxnRecord {
            transactional_id: "t".into(),
            value: Some(txn.clone()),
        }
        .encode();
        let value = value.unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 1, // version 1
            0, 0, 0, 0, 0, 0, 0, 7, 0, 3, 0, 0, 0xea, 0x60, 3, // producer, epoch, timeout, state
            2, 2, b'a', 2, 0, 0, 0, 0, 0, // one topic "a", partition 0, no tags
            0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 100, // last update, start
            2, 1, 8, 0, 0, 0, 0, 0, 0, 0, 9, 2, 2, 0, 2, // tag 1: next id 9; tag 2: version 2
        ];
        assert_eq!(&value[..], expected);
        let decoded = TxnRecord::decode(Bytes::from_static(&[0, 0, 0, 1, b't']), Some(value)).unwrap();
        assert_eq!(decoded.value, Some(txn));
        // Transactions v1 records stay version 0, byte for byte what Kafka writes.
        let (_, v0) = TxnRecord {
            transactional_id: "t".into(),
            value: Some(metadata(TxnState::PrepareAbort, &[("a", 0)])),
        }
        .encode();
        assert_eq!(&v0.unwrap()[..2], &[0, 0]);
    }

    #[test]
    fn unknown_versions_and_states_are_errors() {
        let key = Bytes::from_static(&[0, 0, 0, 1, b't']);
        assert_eq!(
            TxnRecord::decode(Bytes::from_static(&[0, 1, 0, 0]), None),
            Err(TxnRecordError::UnknownKeyVersion(1))
        );
        assert_eq!(
            TxnRecord::decode(key.clone(), Some(Bytes::from_static(&[0, 2]))),
            Err(TxnRecordError::UnknownValueVersion(2))
        );
        let (_, value) = TxnRecord {
            transactional_id: "t".into(),
            value: Some(metadata(TxnState::Ongoing, &[])),
        }
        .encode();
        let mut value = value.unwrap().to_vec();
        value[16] = 8;
        assert_eq!(
            TxnRecord::decode(key, Some(Bytes::from(value))),
            Err(TxnRecordError::UnknownState(8))
        );
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let mut value = BytesMut::new();
        value.put_i16(0);
        value.put_i64(7);
        value.put_i16(3);
        value.put_i32(60_000);
        value.put_i8(1);
        value.put_i32(i32::MAX);
        assert_eq!(
            TxnRecord::decode(Bytes::from_static(&[0, 0, 0, 0]), Some(value.freeze())),
            Err(TxnRecordError::Truncated)
        );
    }

    fn any_metadata() -> impl Strategy<Value = TransactionMetadata> {
        (
            (any::<i64>(), any::<i16>(), any::<i32>()),
            prop::sample::select(TxnState::ALL.to_vec()),
            prop::collection::btree_set(("[a-zA-Z0-9._ü-]{0,12}", any::<i32>()), 0..8),
            (any::<i64>(), any::<i64>()),
            (-1..i64::MAX, -1..i64::MAX, 0..3i16),
        )
            .prop_map(
                |(
                    (producer_id, producer_epoch, timeout_ms),
                    state,
                    partitions,
                    (txn_start_ms, last_update_ms),
                    (previous_producer_id, next_producer_id, client_transaction_version),
                )| {
                    TransactionMetadata {
                        producer_id,
                        producer_epoch,
                        timeout_ms,
                        state,
                        partitions,
                        txn_start_ms,
                        last_update_ms,
                        previous_producer_id,
                        next_producer_id,
                        client_transaction_version,
                    }
                },
            )
    }

    fn any_record() -> impl Strategy<Value = TxnRecord> {
        ("[a-zA-Z0-9._ü-]{0,20}", prop::option::of(any_metadata())).prop_map(|(transactional_id, value)| TxnRecord {
            transactional_id,
            value,
        })
    }

    fn any_bytes() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Bytes::from)
    }

    proptest! {
        #[test]
        fn records_round_trip(record in any_record()) {
            let (key, value) = record.encode();
            prop_assert_eq!(TxnRecord::decode(key, value).unwrap(), record);
        }

        #[test]
        fn arbitrary_bytes_never_panic(key in any_bytes(), value in prop::option::of(any_bytes())) {
            let _ = TxnRecord::decode(key, value);
        }

        /// Arbitrary bytes after a valid version-1 header exercise the varint and tagged-field
        /// paths, which random bytes rarely reach.
        #[test]
        fn arbitrary_flexible_bodies_never_panic(body in any_bytes()) {
            let mut value = BytesMut::new();
            value.put_i16(1);
            value.put_slice(&[0; 15]);
            value.put_slice(&body);
            let _ = TxnRecord::decode(Bytes::from_static(&[0, 0, 0, 0]), Some(value.freeze()));
        }

        #[test]
        fn truncated_records_fail(record in any_record(), cut in any::<prop::sample::Index>()) {
            let (key, value) = record.encode();
            let key_cut = cut.index(key.len());
            prop_assert!(TxnRecord::decode(key.slice(..key_cut), value.clone()).is_err());
            if let Some(value) = value {
                let value_cut = cut.index(value.len());
                prop_assert!(TxnRecord::decode(key, Some(value.slice(..value_cut))).is_err());
            }
        }
    }
}
