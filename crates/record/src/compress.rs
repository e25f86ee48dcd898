//! Recompression of a produced batch into a topic's `compression.type` (Kafka's broker-side
//! compression, with KIP-390's levels).
//!
//! A v2 batch's payload is its records one after another; the codec wraps that byte string as
//! a whole, and nothing inside a record depends on it. So a batch changes codec by
//! decompressing its payload and compressing it again: offsets, sequences, timestamps, keys,
//! values and headers stay as the producer wrote them, and the header keeps every field but
//! the codec bits, the length and the CRC.

use std::io::{self, Read, Write};

use crate::decompress;
use crate::header::{self, Compression, HEADER_LEN, LENGTH_FIELD_END};
use crate::BatchError;

/// What a topic stores: a codec and its level (`None`: the codec's default, as Kafka's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetCompression {
    pub codec: Compression,
    pub level: Option<i32>,
}

/// Kafka's defaults and ranges for `compression.<codec>.level` (KIP-390).
pub const GZIP_LEVELS: std::ops::RangeInclusive<i32> = 1..=9;
pub const GZIP_LEVEL_DEFAULT: i32 = -1;
pub const LZ4_LEVELS: std::ops::RangeInclusive<i32> = 1..=17;
pub const LZ4_LEVEL_DEFAULT: i32 = 9;
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -131_072..=22;
pub const ZSTD_LEVEL_DEFAULT: i32 = 3;

/// snappy-java's stream header and block size: what Kafka's broker writes for snappy (and
/// what [`decompress`] reads).
const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const SNAPPY_BLOCK: usize = 32 * 1024;

/// `batch` (one whole, validated batch) in the target codec: a new batch with the same header
/// fields but codec, length and CRC. `limit` caps the decompressed size (it was checked by
/// validation already).
pub fn recompress(batch: &[u8], target: TargetCompression, limit: u64) -> Result<Vec<u8>, BatchError> {
    let header = header::BatchHeader::parse(batch)?;
    let mut records = Vec::with_capacity(batch.len() * 2);
    decompress::reader(header.compression()?, &batch[HEADER_LEN..])?
        .take(limit + 1)
        .read_to_end(&mut records)
        .map_err(decompress::io_error)?;
    if records.len() as u64 > limit {
        return Err(BatchError::ExpandsTooFar { limit });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + records.len() / 2);
    out.extend_from_slice(&batch[..HEADER_LEN]);
    compress_into(&mut out, &records, target).map_err(decompress::io_error)?;
    let length = i32::try_from(out.len() - LENGTH_FIELD_END).map_err(|_| BatchError::InvalidLength(i32::MAX))?;
    header::set_codec_length_and_crc(&mut out, target.codec, length);
    Ok(out)
}

fn compress_into(out: &mut Vec<u8>, records: &[u8], target: TargetCompression) -> io::Result<()> {
    match target.codec {
        Compression::None => out.extend_from_slice(records),
        Compression::Gzip => {
            let level = match target.level.unwrap_or(GZIP_LEVEL_DEFAULT) {
                GZIP_LEVEL_DEFAULT => flate2::Compression::default(),
                level => flate2::Compression::new(level.clamp(0, 9) as u32),
            };
            let mut encoder = flate2::write::GzEncoder::new(out, level);
            encoder.write_all(records)?;
            encoder.finish()?;
        }
        Compression::Snappy => {
            out.extend_from_slice(XERIAL_HEADER);
            let mut encoder = snap::raw::Encoder::new();
            for block in records.chunks(SNAPPY_BLOCK) {
                let compressed = encoder.compress_vec(block).map_err(io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
        }
        Compression::Lz4 => {
            // Kafka's LZ4 frames: 64 KiB independent blocks, no checksums but the frame's.
            let level = target.level.unwrap_or(LZ4_LEVEL_DEFAULT).clamp(0, 16) as u32;
            let mut encoder = lz4::EncoderBuilder::new()
                .level(level)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(out)?;
            encoder.write_all(records)?;
            let (_, result) = encoder.finish();
            result?;
        }
        Compression::Zstd => {
            let level = target.level.unwrap_or(ZSTD_LEVEL_DEFAULT);
            let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
            encoder.write_all(records)?;
            encoder.finish()?;
        }
    }
    Ok(())
}
