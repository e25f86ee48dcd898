//! Walking a buffer of concatenated batches.

use crate::header::{BatchHeader, HEADER_LEN};
use crate::BatchError;

/// One batch inside a larger buffer.
#[derive(Debug, Clone, Copy)]
pub struct BatchRef<'a> {
    pub header: BatchHeader,
    /// Where the batch starts in the buffer being walked.
    pub position: usize,
    /// The whole batch, header included.
    pub bytes: &'a [u8],
}

impl BatchRef<'_> {
    /// Whether the stored CRC matches the batch's bytes.
    pub fn crc_ok(&self) -> bool {
        crate::header::compute_crc(self.bytes) == self.header.crc
    }
}

/// Yields each complete batch in order. A partial batch at the end (as in a fetch response cut
/// at max_bytes, or a torn log tail) ends the walk with `Some(Err(Truncated))`; a bad header ends
/// it with that error. After an error the iterator yields nothing more, and
/// [`BatchIter::position`] is where the last good batch ended.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    done: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            position: 0,
            done: false,
        }
    }

    /// Bytes consumed by the complete batches yielded so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchRef<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.position == self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.position..];
        let header = match BatchHeader::parse(rest) {
            Ok(header) => header,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let len = header.total_len();
        if rest.len() < len {
            self.done = true;
            return Some(Err(BatchError::Truncated {
                needed: len,
                available: rest.len(),
            }));
        }
        debug_assert!(len >= HEADER_LEN);
        let batch = BatchRef {
            header,
            position: self.position,
            bytes: &rest[..len],
        };
        self.position += len;
        Some(Ok(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::tests::sample_batch;

    #[test]
    fn walks_batches_and_stops_at_torn_tail() {
        let mut buf = sample_batch(2);
        let first_len = buf.len();
        buf.extend_from_slice(&sample_batch(3));
        let whole = buf.len();
        buf.extend_from_slice(&sample_batch(1)[..20]);
        let mut iter = BatchIter::new(&buf);
        let a = iter.next().unwrap().unwrap();
        assert_eq!((a.position, a.header.records_count), (0, 2));
        assert!(a.crc_ok());
        let b = iter.next().unwrap().unwrap();
        assert_eq!((b.position, b.header.records_count), (first_len, 3));
        assert!(matches!(iter.next(), Some(Err(BatchError::Truncated { .. }))));
        assert!(iter.next().is_none());
        assert_eq!(iter.position(), whole);
    }
}
