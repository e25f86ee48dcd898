//! Small durable-file helpers shared by the log and the state machine: the checksummed frame
//! (writer and reader side by side) and the atomic replace of a small file.
//!
//! Frame layout (big-endian):
//!
//! ```text
//! +-----------+-------------------+------------------------+
//! | len: u32  | crc32c(payload):u32 | payload: len bytes   |
//! +-----------+-------------------+------------------------+
//! ```

use std::fs;
use std::fs::File;
use std::io;
use std::io::Write;
use std::path::Path;

use crate::config::FRAME_BYTES_MAX;

/// Bytes before a frame's payload.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;

/// Appends one frame holding `payload` to `out`.
pub(crate) fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= FRAME_BYTES_MAX as usize,
        "frame payload of {} bytes over the maximum",
        payload.len()
    );
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// What is at the start of a buffer that should begin with a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameRead<'a> {
    /// A whole frame whose checksum matches; `frame_bytes` is header plus payload.
    Complete { payload: &'a [u8], frame_bytes: usize },
    /// The buffer ends inside the frame: a torn write, or more bytes still to come.
    Incomplete,
    /// The header or checksum cannot be right.
    Corrupt(String),
}

/// Reads the frame at the start of `buf`.
pub(crate) fn decode_frame(buf: &[u8]) -> FrameRead<'_> {
    if buf.len() < FRAME_HEADER_BYTES {
        return FrameRead::Incomplete;
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len > FRAME_BYTES_MAX {
        return FrameRead::Corrupt(format!("frame length {len} over the maximum {FRAME_BYTES_MAX}"));
    }
    let end = FRAME_HEADER_BYTES + len as usize;
    if buf.len() < end {
        return FrameRead::Incomplete;
    }
    let payload = &buf[FRAME_HEADER_BYTES..end];
    let actual = crc32c::crc32c(payload);
    if actual != crc {
        return FrameRead::Corrupt(format!("checksum {actual:#010x} does not match the stored {crc:#010x}"));
    }
    FrameRead::Complete {
        payload,
        frame_bytes: end,
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `bytes` so that after a crash the file holds either the old or the
/// new contents: write a temporary file, fsync it, rename it over, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// The contents of `path`, or `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_damage() {
        let mut buf = Vec::new();
        encode_frame(b"hello", &mut buf);
        encode_frame(b"", &mut buf);
        let FrameRead::Complete { payload, frame_bytes } = decode_frame(&buf) else {
            panic!("first frame")
        };
        assert_eq!((payload, frame_bytes), (&b"hello"[..], 13));
        assert_eq!(
            decode_frame(&buf[13..]),
            FrameRead::Complete {
                payload: b"",
                frame_bytes: 8
            }
        );
        for cut in 0..13 {
            assert_eq!(decode_frame(&buf[..cut]), FrameRead::Incomplete, "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[10] ^= 1;
        assert!(matches!(decode_frame(&flipped), FrameRead::Corrupt(_)));
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(decode_frame(&huge), FrameRead::Corrupt(_)));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"one").unwrap();
        write_atomic(dir.path(), "f", b"two").unwrap();
        assert_eq!(read_optional(&dir.path().join("f")).unwrap().unwrap(), b"two");
        assert!(read_optional(&dir.path().join("f.tmp")).unwrap().is_none());
        assert!(read_optional(&dir.path().join("missing")).unwrap().is_none());
    }
}
