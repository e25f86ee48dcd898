//! Length-prefixed framing: a 4-byte big-endian size, then that many bytes.

use bytes::{Buf, Bytes, BytesMut};

/// Why a connection must be closed: the stream can no longer be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("request size {size} is not positive")]
    NonPositiveSize { size: i32 },
    #[error("request size {size} exceeds socket.request.max.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("request size {size} exceeds {limit}, the most any request but Produce may be (API key {api_key})")]
    TooLargeForApi { api_key: i16, size: usize, limit: usize },
}

/// Produce may use all of `socket.request.max.bytes`: it carries record batches. Every other
/// request is small in practice (a fetch of 50,000 partitions is about 1.7 MB), and many tiny
/// elements decode into far larger structures, so they get this much at most.
pub const OTHER_REQUEST_BYTES_MAX: usize = 2 * 1024 * 1024;

const PRODUCE_API_KEY: i16 = 0;

/// How much memory a request of each API may take once decoded and answered, as a multiple of
/// its frame, for admission control. Measured worst cases, with requests made of the smallest
/// elements each API accepts: a Produce frame of 1.4 million partition entries with 61-byte
/// batches peaks at 4 times its size (entries without a batch are refused before decoding, see
/// [`crate::produce_shape`]); a Metadata frame of empty topic names costs about 87 times its
/// size, decoded and answered.
pub fn memory_weight(api_key: i16) -> usize {
    if api_key == PRODUCE_API_KEY {
        5
    } else {
        96
    }
}

/// Cuts whole frames out of a read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    /// `socket.request.max.bytes`: checked on the size prefix, before any body is buffered.
    pub request_bytes_max: usize,
}

pub const SIZE_PREFIX_LEN: usize = 4;

impl FrameDecoder {
    pub fn new(request_bytes_max: usize) -> Self {
        FrameDecoder { request_bytes_max }
    }

    /// Checks a size prefix: positive and within `socket.request.max.bytes`.
    pub fn check_size(&self, size: i32) -> Result<(), FrameError> {
        if size <= 0 {
            return Err(FrameError::NonPositiveSize { size });
        }
        if size as usize > self.request_bytes_max {
            return Err(FrameError::TooLarge {
                size: size as usize,
                limit: self.request_bytes_max,
            });
        }
        Ok(())
    }

    /// Checks a frame's size against its API's limit, once its API key is known.
    pub fn check_api(&self, api_key: i16, size: usize) -> Result<(), FrameError> {
        if api_key != PRODUCE_API_KEY && size > OTHER_REQUEST_BYTES_MAX {
            return Err(FrameError::TooLargeForApi {
                api_key,
                size,
                limit: OTHER_REQUEST_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// Returns the next whole frame (without its size prefix) if one is buffered. When the prefix
    /// is buffered but not the body, reserves room for the body so the next read can fill it.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < SIZE_PREFIX_LEN {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size <= 0 {
            return Err(FrameError::NonPositiveSize { size });
        }
        let size = size as usize;
        if size > self.request_bytes_max {
            return Err(FrameError::TooLarge {
                size,
                limit: self.request_bytes_max,
            });
        }
        if buf.len() < SIZE_PREFIX_LEN + size {
            buf.reserve(SIZE_PREFIX_LEN + size - buf.len());
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX_LEN);
        Ok(Some(buf.split_to(size).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_frames_and_waits_for_partial_ones() {
        let decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&3i32.to_be_bytes());
        buf.extend_from_slice(b"abc");
        buf.extend_from_slice(&2i32.to_be_bytes());
        buf.extend_from_slice(b"d");
        assert_eq!(decoder.decode(&mut buf).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"e");
        assert_eq!(decoder.decode(&mut buf).unwrap().as_deref(), Some(&b"de"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_sizes_before_buffering() {
        let decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert!(decoder.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&0i32.to_be_bytes()[..]);
        assert!(decoder.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&101i32.to_be_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge { size: 101, limit: 100 })
        );
    }
}
