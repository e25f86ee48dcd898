//! The bench payload: a header that lets the end-to-end bench measure latency, then filler.
//!
//! ```text
//! bytes 0..8    send time, ns since the bench's clock epoch, u64 little-endian
//! bytes 8..16   run id, u64 little-endian: records of another run are not measured
//! bytes 16..    filler (b'x'), up to --record-size
//! ```
//!
//! The send time comes from a monotonic clock (`Instant`) and is only meaningful inside the
//! process that wrote it; the end-to-end bench produces and consumes in one process.

use std::time::Instant;

/// Bytes taken by the header; the smallest allowed `--record-size`.
pub(crate) const HEADER_SIZE: usize = 16;

/// Filler byte after the header; compressible, like most real payloads are not: use
/// `--compression` numbers with that in mind.
const FILLER: u8 = b'x';

/// A monotonic clock counting nanoseconds from its creation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { epoch: Instant::now() }
    }

    /// Nanoseconds since the epoch; u64 lasts 584 years.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A reusable payload buffer: the header is rewritten in place for every record, so the
/// send loop allocates nothing.
#[derive(Debug)]
pub(crate) struct Payload {
    bytes: Vec<u8>,
}

impl Payload {
    /// A payload of `record_size` bytes; panics below [`HEADER_SIZE`] (checked at parse time).
    pub(crate) fn new(record_size: usize, run_id: u64) -> Self {
        assert!(record_size >= HEADER_SIZE, "record size below header size");
        let mut bytes = vec![FILLER; record_size];
        bytes[8..16].copy_from_slice(&run_id.to_le_bytes());
        Payload { bytes }
    }

    /// Stamps the send time and returns the bytes to send.
    pub(crate) fn stamp(&mut self, send_ns: u64) -> &[u8] {
        self.bytes[0..8].copy_from_slice(&send_ns.to_le_bytes());
        &self.bytes
    }
}

/// Reads the send time from a payload of run `run_id`; `None` for foreign or short payloads.
pub(crate) fn decode_send_ns(payload: &[u8], run_id: u64) -> Option<u64> {
    let header = payload.get(..HEADER_SIZE)?;
    let (send, run) = header.split_at(8);
    if u64::from_le_bytes(run.try_into().ok()?) != run_id {
        return None;
    }
    Some(u64::from_le_bytes(send.try_into().ok()?))
}

/// Latency from send to now; zero when the clock reads earlier than the send time (cannot
/// happen with one monotonic clock, but a corrupt payload must not wrap around).
pub(crate) fn latency_ns(send_ns: u64, now_ns: u64) -> u64 {
    now_ns.saturating_sub(send_ns)
}

/// A run id that differs between runs: the clock's wall time mixed with the process id.
pub(crate) fn new_run_id() -> u64 {
    let wall_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    wall_ns ^ (u64::from(std::process::id()) << 48)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_then_decode_round_trips() {
        let mut payload = Payload::new(100, 42);
        let bytes = payload.stamp(123_456_789).to_vec();
        assert_eq!(bytes.len(), 100);
        assert_eq!(decode_send_ns(&bytes, 42), Some(123_456_789));
        assert!(bytes[HEADER_SIZE..].iter().all(|&b| b == FILLER));
        // Restamping reuses the buffer and only changes the send time.
        let again = payload.stamp(u64::MAX).to_vec();
        assert_eq!(decode_send_ns(&again, 42), Some(u64::MAX));
        assert_eq!(again[8..], bytes[8..]);
    }

    #[test]
    fn foreign_and_short_payloads_are_not_measured() {
        let mut payload = Payload::new(HEADER_SIZE, 1);
        let bytes = payload.stamp(5).to_vec();
        assert_eq!(decode_send_ns(&bytes, 2), None);
        assert_eq!(decode_send_ns(&bytes[..HEADER_SIZE - 1], 1), None);
        assert_eq!(decode_send_ns(b"", 1), None);
        assert_eq!(decode_send_ns(&bytes, 1), Some(5));
    }

    #[test]
    fn latency_never_wraps() {
        assert_eq!(latency_ns(100, 350), 250);
        assert_eq!(latency_ns(350, 100), 0);
    }

    #[test]
    fn clock_is_monotonic() {
        let clock = Clock::new();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
    }

    #[test]
    #[should_panic(expected = "record size below header size")]
    fn payload_smaller_than_header_is_a_bug() {
        let _ = Payload::new(HEADER_SIZE - 1, 0);
    }
}
