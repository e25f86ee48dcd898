//! Small durable files: a framed, checksummed body written atomically, and the single-offset
//! checkpoints built on it (`log-start-offset`, `recovery-point`, `cleaner-offset`).
//!
//! Frame: `magic "STRM" | kind u8 | version u8 | body length u32 | body | crc32c u32` (big
//! endian; the CRC covers everything before it). A file that fails any check is rejected with
//! [`StorageError::Corrupt`]; callers decide whether to rebuild or fall back.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, StorageError};

const MAGIC: &[u8; 4] = b"STRM";
const FRAME_OVERHEAD: usize = 4 + 1 + 1 + 4 + 4;
/// No checkpoint we write comes close; refuse to allocate for a corrupt length.
pub(crate) const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
pub(crate) const VERSION: u8 = 1;

/// What a framed file holds; a file of one kind is never read as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Offset = 1,
    LeaderEpochs = 2,
    ProducerSnapshot = 3,
    ProducerSnapshotV2 = 4,
    HighWatermarks = 5,
    RecoveryPoints = 6,
}

pub(crate) fn encode_frame(kind: Kind, body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= BODY_BYTES_MAX, "checkpoint body too large");
    let mut out = Vec::with_capacity(body.len() + FRAME_OVERHEAD);
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.push(VERSION);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

pub(crate) fn decode_frame<'a>(path: &Path, kind: Kind, bytes: &'a [u8]) -> Result<&'a [u8], StorageError> {
    let bad = |reason: &str| StorageError::corrupt(path, "checkpoint", reason);
    if bytes.len() < FRAME_OVERHEAD {
        return Err(bad("shorter than a frame"));
    }
    if &bytes[..4] != MAGIC {
        return Err(bad("bad magic"));
    }
    if bytes[4] != kind as u8 {
        return Err(bad("wrong kind"));
    }
    if bytes[5] != VERSION {
        return Err(bad("unknown version"));
    }
    let len = u32::from_be_bytes(bytes[6..10].try_into().expect("4 bytes")) as usize;
    if len != bytes.len() - FRAME_OVERHEAD {
        return Err(bad("length does not match file size"));
    }
    let (data, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(data) != u32::from_be_bytes(crc.try_into().expect("4 bytes")) {
        return Err(bad("CRC mismatch"));
    }
    Ok(&data[10..])
}

/// Writes `bytes` to `path` so that after a crash the file holds either the old or the new
/// content: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    replace_unsynced(path, bytes)?;
    sync_dir(path.parent().expect("checkpoint path has a directory"))
}

/// [`write_atomically`] but for the fsync of the directory, which the caller does before
/// anything may depend on the new content being there after a crash (until then a crash
/// leaves the old content or the new).
pub(crate) fn replace_unsynced(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = path.with_extension(tmp_extension(path));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .at(&tmp)?;
        file.write_all(bytes).at(&tmp)?;
        file.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)
}

fn tmp_extension(path: &Path) -> String {
    match path.extension() {
        Some(ext) => format!("{}.tmp", ext.to_string_lossy()),
        None => "tmp".to_string(),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Reads a framed file; `Ok(None)` if it does not exist.
pub(crate) fn read_frame(path: &Path, kind: Kind) -> Result<Option<Vec<u8>>, StorageError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    if bytes.len() > BODY_BYTES_MAX + FRAME_OVERHEAD {
        return Err(StorageError::corrupt(path, "checkpoint", "too large"));
    }
    decode_frame(path, kind, &bytes).map(|body| Some(body.to_vec()))
}

pub(crate) fn write_offset(path: &Path, offset: i64) -> Result<(), StorageError> {
    write_atomically(path, &encode_frame(Kind::Offset, &offset.to_be_bytes()))
}

/// Reads a single-offset checkpoint; `Ok(None)` if absent.
pub(crate) fn read_offset(path: &Path) -> Result<Option<i64>, StorageError> {
    match read_frame(path, Kind::Offset)? {
        None => Ok(None),
        Some(body) if body.len() == 8 => Ok(Some(i64::from_be_bytes(body[..].try_into().expect("8")))),
        Some(_) => Err(StorageError::corrupt(path, "checkpoint", "offset body is not 8 bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log-start-offset");
        assert_eq!(read_offset(&path).unwrap(), None);
        write_offset(&path, 42).unwrap();
        assert_eq!(read_offset(&path).unwrap(), Some(42));
        write_offset(&path, -7).unwrap();
        assert_eq!(read_offset(&path).unwrap(), Some(-7));
        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&path, &bad).unwrap();
            assert!(read_offset(&path).is_err(), "flip at {i} accepted");
        }
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(read_offset(&path).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn frame_kinds_do_not_mix() {
        let framed = encode_frame(Kind::LeaderEpochs, b"abc");
        let p = Path::new("x");
        assert!(decode_frame(p, Kind::Offset, &framed).is_err());
        assert_eq!(decode_frame(p, Kind::LeaderEpochs, &framed).unwrap(), b"abc");
    }
}
