//! A look at a Produce body's shape before the codec decodes it.
//!
//! The codec turns every partition entry into a structure of about 64 bytes, however small the
//! entry on the wire: an entry without a record batch is 6 to 8 bytes, so a request made of
//! them decodes to about 8 times its size (and a topic entry without partitions to 13 times)
//! before any handler sees it. Clients never send such requests: every entry carries a batch of
//! at least 61 bytes. This scan counts the entries without one, skipping over record bytes
//! without reading them, so that a request of millions of empty entries is refused at the cost
//! of one pass over its lengths.
//!
//! This is not a codec: it reads only the lengths and counts of the Produce request layout
//! (v3 to v12, compact encodings from v9) and decides nothing else. Anything it cannot follow
//! is left to the codec, which stays the one judge of well-formedness.

/// Produce entries without a record batch cost the broker an answer each (about a hundred
/// bytes, more than the entry itself), and no client sends them; beyond this many, the request
/// is treated as malformed instead of decoded.
pub const PRODUCE_EMPTY_ENTRIES_MAX: usize = 1000;

/// The first version whose request uses compact lengths and tagged fields.
const FIRST_FLEXIBLE_VERSION: i16 = 9;

/// Whether a Produce body (the bytes after the request header) holds more than
/// [`PRODUCE_EMPTY_ENTRIES_MAX`] entries without a record batch: partition entries whose
/// records are null or shorter than a batch header, and topic entries without partitions.
/// `false` also when the body cannot be followed to its end; the codec then says why.
pub fn has_too_many_empty_entries(body: &[u8], version: i16) -> bool {
    let mut cursor = Cursor {
        bytes: body,
        flexible: version >= FIRST_FLEXIBLE_VERSION,
    };
    count_empty_entries(&mut cursor).is_some_and(|empty| empty > PRODUCE_EMPTY_ENTRIES_MAX)
}

/// Counts empty entries, stopping as soon as there are more than the maximum. `None` when the
/// body ends early or a length is out of range.
fn count_empty_entries(cursor: &mut Cursor<'_>) -> Option<usize> {
    cursor.skip_string()?; // transactional_id
    cursor.skip(2 + 4)?; // acks, timeout_ms
    let mut empty = 0usize;
    for _ in 0..cursor.array_len()? {
        cursor.skip_string()?; // topic name
        let partitions = cursor.array_len()?;
        if partitions == 0 {
            empty += 1;
        }
        for _ in 0..partitions {
            cursor.skip(4)?; // partition index
            let records = cursor.bytes_field_len()?;
            cursor.skip(records.unwrap_or(0))?;
            if records.is_none_or(|len| len < strom_record::HEADER_LEN) {
                empty += 1;
            }
            cursor.skip_tagged_fields()?;
            if empty > PRODUCE_EMPTY_ENTRIES_MAX {
                return Some(empty);
            }
        }
        cursor.skip_tagged_fields()?;
        if empty > PRODUCE_EMPTY_ENTRIES_MAX {
            return Some(empty);
        }
    }
    Some(empty)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    flexible: bool,
}

impl Cursor<'_> {
    fn skip(&mut self, len: usize) -> Option<()> {
        self.bytes = self.bytes.get(len..)?;
        Some(())
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn unsigned_varint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let [byte] = self.take::<1>()?;
            value |= u32::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// An array's element count; a null array counts as empty.
    fn array_len(&mut self) -> Option<usize> {
        if self.flexible {
            Some((self.unsigned_varint()? as usize).saturating_sub(1))
        } else {
            let len = i32::from_be_bytes(self.take::<4>()?);
            usize::try_from(len.max(0)).ok()
        }
    }

    /// The length of a nullable bytes field; `None` inside for null.
    fn bytes_field_len(&mut self) -> Option<Option<usize>> {
        if self.flexible {
            let len = self.unsigned_varint()? as usize;
            Some(len.checked_sub(1))
        } else {
            let len = i32::from_be_bytes(self.take::<4>()?);
            Some(usize::try_from(len).ok())
        }
    }

    /// Skips a nullable string: a 2-byte length in the classic encoding, compact otherwise.
    fn skip_string(&mut self) -> Option<()> {
        let len = if self.flexible {
            (self.unsigned_varint()? as usize).saturating_sub(1)
        } else {
            usize::try_from(i16::from_be_bytes(self.take::<2>()?).max(0)).ok()?
        };
        self.skip(len)
    }

    fn skip_tagged_fields(&mut self) -> Option<()> {
        if !self.flexible {
            return Some(());
        }
        for _ in 0..self.unsigned_varint()? {
            self.unsigned_varint()?; // tag
            let size = self.unsigned_varint()? as usize;
            self.skip(size)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    /// A topic entry: its name and, per partition, the length of its records (`None`: null).
    type TopicShape = (String, Vec<Option<usize>>);

    fn encode(topics: &[TopicShape], transactional_id: Option<&str>, tagged: bool, version: i16) -> Vec<u8> {
        let mut request = ProduceRequest::default();
        request.transactional_id = transactional_id.map(|id| StrBytes::from_string(id.to_string()).into());
        request.acks = -1;
        request.timeout_ms = 30_000;
        request.topic_data = topics
            .iter()
            .map(|(name, partitions)| {
                let mut topic = TopicProduceData::default();
                topic.name = TopicName(StrBytes::from_string(name.clone()));
                topic.partition_data = partitions
                    .iter()
                    .enumerate()
                    .map(|(index, records)| {
                        let mut partition = PartitionProduceData::default();
                        partition.index = index as i32;
                        partition.records = records.map(|len| Bytes::from(vec![7u8; len]));
                        if tagged && version >= FIRST_FLEXIBLE_VERSION {
                            partition.unknown_tagged_fields.insert(99, Bytes::from_static(b"tag"));
                        }
                        partition
                    })
                    .collect();
                if tagged && version >= FIRST_FLEXIBLE_VERSION {
                    topic.unknown_tagged_fields.insert(200, Bytes::from(vec![1u8; 130]));
                }
                topic
            })
            .collect();
        let mut buf = BytesMut::new();
        request.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    fn expected_empty(topics: &[TopicShape]) -> usize {
        topics
            .iter()
            .map(|(_, partitions)| {
                let empty_partitions = partitions
                    .iter()
                    .filter(|records| records.is_none_or(|len| len < strom_record::HEADER_LEN))
                    .count();
                empty_partitions + usize::from(partitions.is_empty())
            })
            .sum()
    }

    fn count(body: &[u8], version: i16) -> Option<usize> {
        count_empty_entries(&mut Cursor {
            bytes: body,
            flexible: version >= FIRST_FLEXIBLE_VERSION,
        })
    }

    fn records_len() -> impl Strategy<Value = Option<usize>> {
        prop_oneof![Just(None), (0usize..70).prop_map(Some), (61usize..300).prop_map(Some)]
    }

    proptest! {
        #[test]
        fn counts_what_the_codec_encoded(
            topics in prop::collection::vec(("[a-z.]{0,12}", prop::collection::vec(records_len(), 0..6)), 0..6),
            transactional_id in prop::option::of("[a-z]{0,10}"),
            tagged in any::<bool>(),
            version in 3i16..=12,
        ) {
            let body = encode(&topics, transactional_id.as_deref(), tagged, version);
            prop_assert_eq!(count(&body, version), Some(expected_empty(&topics)));
        }

        #[test]
        fn a_cut_body_is_left_to_the_codec(
            topics in prop::collection::vec(("[a-z]{0,4}", prop::collection::vec(records_len(), 0..4)), 1..4),
            version in 3i16..=12,
            cut in any::<prop::sample::Index>(),
        ) {
            let body = encode(&topics, None, true, version);
            let cut = cut.index(body.len());
            prop_assert!(!has_too_many_empty_entries(&body[..cut], version));
        }
    }

    #[test]
    fn refuses_only_beyond_the_maximum() {
        for version in [3, 8, 9, 11, 12] {
            let at_most = vec![("t".to_string(), vec![None; PRODUCE_EMPTY_ENTRIES_MAX])];
            assert!(!has_too_many_empty_entries(
                &encode(&at_most, None, false, version),
                version
            ));
            let over = vec![("t".to_string(), vec![Some(0); PRODUCE_EMPTY_ENTRIES_MAX + 1])];
            assert!(has_too_many_empty_entries(
                &encode(&over, None, false, version),
                version
            ));
            let empty_topics = vec![(String::new(), Vec::new()); PRODUCE_EMPTY_ENTRIES_MAX + 1];
            assert!(has_too_many_empty_entries(
                &encode(&empty_topics, None, false, version),
                version
            ));
            let full = vec![("t".to_string(), vec![Some(strom_record::HEADER_LEN); 5000])];
            assert!(!has_too_many_empty_entries(
                &encode(&full, None, false, version),
                version
            ));
        }
    }
}
