//! The openraft type configuration: what a node id, a node, a log entry's data and an apply
//! response are for this crate.
//!
//! Commands are opaque byte strings. In JSON (the log framing and the wire format both use
//! serde_json) they are written as base64 strings, a third larger than the bytes, instead of
//! serde's default array of numbers (up to four times larger).

use std::fmt;
use std::io::Cursor;

use serde::Deserialize;
use serde::Deserializer;
use serde::Serialize;
use serde::Serializer;

/// A node's id in the quorum (Kafka's `node.id` of a controller).
pub type NodeId = u64;

/// What the cluster knows about a node: where its quorum listener is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `host:port` of the node's quorum listener (Raft RPCs and forwarded proposals).
    pub addr: String,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// One application command, opaque to Raft.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Command(pub Vec<u8>);

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        base64::decode(&text).map(Command).map_err(serde::de::Error::custom)
    }
}

openraft::declare_raft_types!(
    /// Strom's quorum: u64 node ids, [`Node`] with an address, [`Command`] entries, and the log
    /// index at which an entry was applied as the response.
    pub TypeConfig:
        D = Command,
        R = u64,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry as openraft sees it.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id: leader term (and node) plus index.
pub type LogId = openraft::LogId<NodeId>;
/// A vote: term, candidate, committed flag.
pub type Vote = openraft::Vote<NodeId>;
/// The metadata of a snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A membership config with the log id of its entry.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// The storage error openraft expects from stores.
pub type StorageError = openraft::StorageError<NodeId>;
/// The Raft handle.
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// Standard base64 (RFC 4648, padded), enough for commands; no dependency for 40 lines.
pub(crate) mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
    }

    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return Err(format!("base64 length {} is not a multiple of 4", bytes.len()));
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let quads = bytes.len() / 4;
        for (q, quad) in bytes.chunks(4).enumerate() {
            let padding = if q + 1 == quads {
                quad.iter().rev().take_while(|&&c| c == b'=').count()
            } else {
                0
            };
            if padding > 2 {
                return Err("base64 has more than two padding characters".to_string());
            }
            let mut n = 0u32;
            for (i, &c) in quad.iter().enumerate() {
                let v = if i >= 4 - padding {
                    0
                } else {
                    value(c).ok_or_else(|| format!("invalid base64 character {:?}", c as char))?
                };
                n = (n << 6) | v;
            }
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&decoded[..3 - padding]);
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips_every_length_and_matches_known_vectors() {
            assert_eq!(encode(b""), "");
            assert_eq!(encode(b"f"), "Zg==");
            assert_eq!(encode(b"fo"), "Zm8=");
            assert_eq!(encode(b"foo"), "Zm9v");
            assert_eq!(encode(b"foobar"), "Zm9vYmFy");
            for len in 0..64usize {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
            }
            assert!(decode("Zm9").is_err());
            assert!(decode("Z!==").is_err());
            assert!(decode("Z===").is_err());
            assert!(decode("Zg==Zg==").is_err(), "padding only at the end");
        }
    }
}
