//! Streaming decompression of a batch's records, with a ceiling on what it may expand to.
//!
//! Validation reads a compressed batch's records from a stream, so memory stays at a buffer or
//! a codec window whatever the payload expands to, and the ceiling bounds the CPU a small
//! hostile batch (a "zip bomb") can cost. The codec crates are the ones `kafka-protocol`
//! already depends on; its own decompressors expand a whole payload into one buffer.

use std::io::{self, BufRead, BufReader, Read};

use crate::header::Compression;
use crate::BatchError;

/// How far one batch may expand: 256 MiB, or 8 times `max.message.bytes` when that is larger.
pub fn expansion_limit(max_batch_bytes: usize) -> u64 {
    (256u64 << 20).max(max_batch_bytes as u64 * 8)
}

/// zstd frames may ask for a window of up to 2 GiB; batches are small, so 16 MiB is plenty and
/// keeps a hostile frame from claiming a huge decoder allocation.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The decompressed bytes of a batch's records section (`payload` is everything after the
/// 61-byte header).
pub fn reader<'a>(compression: Compression, payload: &'a [u8]) -> Result<Box<dyn BufRead + 'a>, BatchError> {
    Ok(match compression {
        Compression::None => Box::new(payload),
        Compression::Gzip => Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(payload))),
        Compression::Snappy => Box::new(BufReader::new(SnappyReader::new(payload)?)),
        Compression::Lz4 => Box::new(BufReader::new(lz4::Decoder::new(payload).map_err(io_error)?)),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(payload).map_err(io_error)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(io_error)?;
            Box::new(BufReader::new(decoder))
        }
    })
}

pub(crate) fn io_error(e: io::Error) -> BatchError {
    BatchError::Decode(e.to_string())
}

/// Kafka's Java client frames snappy the way xerial's snappy-java does (a magic header, then
/// length-prefixed raw blocks); librdkafka writes one raw block. Both are read one block at a
/// time.
struct SnappyReader<'a> {
    blocks: &'a [u8],
    block: Vec<u8>,
    position: usize,
}

/// The magic, then version 1 and compatible version 1, as snappy-java writes them. Only this
/// exact header selects the framed form (as in kafka-protocol, which compaction decodes with);
/// anything else is read as one raw block.
const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Snappy's densest encoding turns 3 bytes into 64, so a block claiming more than this per
/// compressed byte is lying about its length.
const SNAPPY_RATIO_MAX: usize = 22;

impl<'a> SnappyReader<'a> {
    fn new(payload: &'a [u8]) -> Result<Self, BatchError> {
        let mut reader = SnappyReader {
            blocks: &[],
            block: Vec::new(),
            position: 0,
        };
        if let Some(blocks) = payload.strip_prefix(XERIAL_HEADER) {
            reader.blocks = blocks;
        } else {
            reader.decompress_block(payload)?;
        }
        Ok(reader)
    }

    fn decompress_block(&mut self, raw: &[u8]) -> Result<(), BatchError> {
        let claimed = snap::raw::decompress_len(raw).map_err(|e| BatchError::Decode(e.to_string()))?;
        if claimed > raw.len().saturating_mul(SNAPPY_RATIO_MAX) + 64 {
            return Err(BatchError::InvalidRecord("snappy block claims an impossible length"));
        }
        self.block.resize(claimed, 0);
        let written = snap::raw::Decoder::new()
            .decompress(raw, &mut self.block)
            .map_err(|e| BatchError::Decode(e.to_string()))?;
        self.block.truncate(written);
        self.position = 0;
        Ok(())
    }

    fn next_block(&mut self) -> Result<bool, BatchError> {
        if self.blocks.is_empty() {
            return Ok(false);
        }
        let (length, rest) = self
            .blocks
            .split_first_chunk::<4>()
            .ok_or(BatchError::InvalidRecord("truncated snappy block length"))?;
        let length = u32::from_be_bytes(*length) as usize;
        if length > rest.len() {
            return Err(BatchError::InvalidRecord("truncated snappy block"));
        }
        let (raw, rest) = rest.split_at(length);
        self.blocks = rest;
        self.decompress_block(raw)?;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.position == self.block.len() {
            match self.next_block() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        let n = out.len().min(self.block.len() - self.position);
        out[..n].copy_from_slice(&self.block[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}
