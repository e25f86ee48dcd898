//! The Kafka record batch format, magic v2, as bytes.
//!
//! Strom stores batches exactly as producers sent them. This crate is the one place that knows
//! the layout of a batch: it reads headers, validates batches arriving from the network, and
//! patches the few header fields a broker owns (base offset, partition leader epoch, and the
//! timestamp for `LogAppendTime` topics). It knows neither files nor sockets.
//!
//! # Layout
//! - [`header`]: the fixed 61-byte batch header, parsed and patched in place.
//! - [`validate`]: checks a produce request's record set and yields [`ValidatedBatches`].
//! - [`iter`]: walks a buffer of concatenated batches (log segments, fetch responses).
//! - [`decompress`]: streams a compressed batch's records, with a ceiling on expansion.
//! - [`compress`]: rewrites a batch in a topic's `compression.type` (the one exception to
//!   storing batches as produced).
//! - [`records`]: decodes individual records (needs decompression; used by compaction).
//! - [`control`]: transaction markers (commit/abort control batches).
//!
//! ```text
//!  offset  size  field                   owner
//!  0       8     base_offset             broker
//!  8       4     batch_length            producer (bytes after this field)
//!  12      4     partition_leader_epoch  broker
//!  16      1     magic (= 2)             producer
//!  17      4     crc (CRC-32C of 21..)   producer (broker for LogAppendTime)
//!  21      2     attributes              producer (broker sets the timestamp-type bit)
//!  23      4     last_offset_delta       producer
//!  27      8     base_timestamp          producer
//!  35      8     max_timestamp           producer (broker for LogAppendTime)
//!  43      8     producer_id             producer
//!  51      2     producer_epoch          producer
//!  53      4     base_sequence           producer
//!  57      4     records_count           producer
//!  61      ..    records
//! ```

pub mod compress;
pub mod control;
pub mod decompress;
pub mod header;
pub mod iter;
pub mod records;
pub mod validate;

pub use compress::TargetCompression;
pub use header::{BatchHeader, Compression, TimestampType, HEADER_LEN};
pub use iter::{BatchIter, BatchRef};
pub use validate::{validate_batches, ValidateOptions, ValidatedBatches};

/// What is wrong with a record batch. Each maps to a Kafka error code in the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set is empty")]
    Empty,
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("batch length {0} is out of range")]
    InvalidLength(i32),
    #[error("unsupported record batch magic {0}; only v2 is accepted")]
    UnsupportedMagic(i8),
    #[error("CRC mismatch: header says {stored:#010x}, data gives {computed:#010x}")]
    CorruptCrc { stored: u32, computed: u32 },
    #[error("batch says {header} records but holds {found}")]
    RecordCountMismatch { header: i32, found: i32 },
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    #[error("batch of {size} bytes exceeds max.message.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
    /// Records the batch is well formed around but that the topic refuses (KIP-467): each
    /// with its index in the batch. The whole batch is refused; the client may send the others
    /// again.
    #[error("{} of the batch's records rejected, the first at index {}: {}", .0.len(), .0[0].batch_index, .0[0].reason)]
    RecordErrors(Vec<RecordError>),
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    #[error("batch decompresses to more than {limit} bytes")]
    ExpandsTooFar { limit: u64 },
    #[error("could not decode records: {0}")]
    Decode(String),
}

/// One record a topic refuses, by its index within its batch (KIP-467's `batch_index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub reason: RecordErrorReason,
}

/// Why a well-formed record is refused; Kafka reports these per record. (Kafka's other
/// per-record check, timestamps outside `message.timestamp.before.max.ms` /
/// `after.max.ms`, needs configs Strom does not have.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordErrorReason {
    /// A compacted topic needs a key on every record.
    #[error("compacted topic cannot accept a record without key")]
    MissingKey,
}
