//! Kafka's consumer protocol assignment (`ConsumerProtocolAssignment`): the bytes a group's
//! leader hands each member through SyncGroup, and which DescribeGroups returns as the
//! member's assignment. `strom group describe` decodes them to show who owns which partition.
//!
//! Layout, the same in versions 0 to 3 (none is a flexible version), big-endian:
//!
//! ```text
//! version          i16
//! topic count      i32, then per topic:
//!   name           i16 length + UTF-8 bytes
//!   partition count i32, then that many i32 partition ids
//! user data        i32 length (-1: null) + bytes   (not decoded)
//! ```
//!
//! The bytes come from a broker, and so from whichever client led the group: the decoder
//! checks every length against the bytes left before reserving anything, and never panics.

use anyhow::{bail, Context};

/// Size of the smallest encoded topic entry: an empty name and no partitions.
const TOPIC_ENTRY_BYTES_MIN: usize = 2 + 4;
/// Size of one encoded partition id.
const PARTITION_BYTES: usize = 4;

/// The (topic, partition) pairs of an encoded assignment, in the order they were encoded.
///
/// Empty input is an empty assignment: that is what members hold during a rebalance. The user
/// data and anything after it (fields of a future version) are ignored.
pub(crate) fn decode_assignment(bytes: &[u8]) -> anyhow::Result<Vec<(String, i32)>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = Reader { bytes, position: 0 };
    let version = reader.i16().context("version")?;
    if version < 0 {
        bail!("negative version {version}");
    }
    let topic_count = reader.count(TOPIC_ENTRY_BYTES_MIN).context("topic count")?;
    let mut partitions = Vec::new();
    for _ in 0..topic_count {
        let name_length = reader.i16().context("topic name length")?;
        let name_length = usize::try_from(name_length).map_err(|_| anyhow::anyhow!("null topic name"))?;
        let name = reader.take(name_length).context("topic name")?;
        let name = std::str::from_utf8(name).context("topic name is not UTF-8")?;
        let partition_count = reader.count(PARTITION_BYTES).context("partition count")?;
        partitions.reserve(partition_count);
        for _ in 0..partition_count {
            let partition = reader.i32().context("partition id")?;
            partitions.push((name.to_string(), partition));
        }
    }
    Ok(partitions)
}

/// A cursor over the input; every read checks the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> anyhow::Result<&'a [u8]> {
        let left = self.bytes.len() - self.position;
        if length > left {
            bail!("needs {length} byte(s), {left} left");
        }
        let taken = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(taken)
    }

    fn i16(&mut self) -> anyhow::Result<i16> {
        let mut array = [0u8; 2];
        array.copy_from_slice(self.take(2)?);
        Ok(i16::from_be_bytes(array))
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        let mut array = [0u8; 4];
        array.copy_from_slice(self.take(4)?);
        Ok(i32::from_be_bytes(array))
    }

    /// An array length, refused when negative or when that many entries of at least
    /// `entry_bytes_min` bytes cannot fit in what is left: a claimed count never makes the
    /// decoder reserve more than the input could hold.
    fn count(&mut self, entry_bytes_min: usize) -> anyhow::Result<usize> {
        let count = self.i32()?;
        let count = usize::try_from(count).map_err(|_| anyhow::anyhow!("negative count {count}"))?;
        let left = self.bytes.len() - self.position;
        if count > left / entry_bytes_min {
            bail!("count {count} does not fit in the {left} byte(s) left");
        }
        Ok(count)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes an assignment the way Kafka's clients do (with null user data).
    pub(crate) fn encode_assignment(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            out.extend_from_slice(&(name.len() as i16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
            for partition in *partitions {
                out.extend_from_slice(&partition.to_be_bytes());
            }
        }
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out
    }

    fn pairs(list: &[(&str, i32)]) -> Vec<(String, i32)> {
        list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn decodes_every_version() {
        for version in 0..=3 {
            let bytes = encode_assignment(version, &[("orders", &[0, 2]), ("audit", &[1])]);
            assert_eq!(
                decode_assignment(&bytes).unwrap(),
                pairs(&[("orders", 0), ("orders", 2), ("audit", 1)]),
                "version {version}"
            );
        }
    }

    #[test]
    fn empty_input_and_empty_lists_are_no_partitions() {
        assert!(decode_assignment(&[]).unwrap().is_empty());
        assert!(decode_assignment(&encode_assignment(0, &[])).unwrap().is_empty());
        assert_eq!(
            decode_assignment(&encode_assignment(1, &[("t", &[])])).unwrap(),
            pairs(&[])
        );
    }

    #[test]
    fn user_data_and_trailing_fields_are_ignored() {
        let mut bytes = encode_assignment(3, &[("t", &[4])]);
        let _ = bytes.split_off(bytes.len() - 4);
        bytes.extend_from_slice(&3i32.to_be_bytes());
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(b"future fields");
        assert_eq!(decode_assignment(&bytes).unwrap(), pairs(&[("t", 4)]));
        // Without the user data at all (some clients stop after the partitions).
        let mut bytes = encode_assignment(0, &[("t", &[4])]);
        bytes.truncate(bytes.len() - 4);
        assert_eq!(decode_assignment(&bytes).unwrap(), pairs(&[("t", 4)]));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let good = encode_assignment(0, &[("orders", &[0, 1, 2])]);
        // Every truncation inside the partition list fails (the last 4 bytes are user data).
        for length in 1..good.len() - 4 {
            assert!(
                decode_assignment(&good[..length]).is_err(),
                "truncated to {length} bytes decoded"
            );
        }
        let huge_topic_count = [0, 0, 0x7f, 0xff, 0xff, 0xff];
        let error = decode_assignment(&huge_topic_count).unwrap_err();
        assert!(format!("{error:#}").contains("does not fit"), "{error:#}");
        let negative_count = [0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_assignment(&negative_count).is_err());
        let negative_version = encode_assignment(-1, &[]);
        assert!(decode_assignment(&negative_version).is_err());
        let mut null_name = vec![0, 0, 0, 0, 0, 1];
        null_name.extend_from_slice(&(-1i16).to_be_bytes());
        assert!(decode_assignment(&null_name).is_err());
        let mut bad_utf8 = vec![0, 0, 0, 0, 0, 1, 0, 1, 0xff];
        bad_utf8.extend_from_slice(&0i32.to_be_bytes());
        assert!(decode_assignment(&bad_utf8).is_err());
        // A partition count claiming more than the bytes left.
        let mut huge_partition_count = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
        huge_partition_count.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_assignment(&huge_partition_count).is_err());
    }

    /// Pseudo-random bytes, and random corruptions of a valid assignment, never panic.
    #[test]
    fn garbage_never_panics() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            // xorshift64: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let good = encode_assignment(1, &[("orders", &[0, 1, 2]), ("audit", &[7])]);
        for _ in 0..20_000 {
            let length = (next() % 64) as usize;
            let random: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            let _ = decode_assignment(&random);
            let mut corrupted = good.clone();
            for _ in 0..1 + next() % 4 {
                let index = (next() as usize) % corrupted.len();
                corrupted[index] = next() as u8;
            }
            let _ = decode_assignment(&corrupted);
        }
    }
}
