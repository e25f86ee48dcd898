//! Response encoding: size prefix, response header, body.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiVersionsResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, HeaderVersion};
use kafka_protocol::ResponseError;

use crate::apis;
use crate::frame::SIZE_PREFIX_LEN;

#[derive(Debug, thiserror::Error)]
#[error("could not encode response: {0}")]
pub struct EncodeError(String);

/// Appends one whole response frame (size prefix included) to `out`.
pub fn encode_response(
    out: &mut BytesMut,
    correlation_id: i32,
    api_version: i16,
    body: &ResponseKind,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let result = header
        .encode(out, body.header_version(api_version))
        .and_then(|()| body.encode(out, api_version));
    if let Err(e) = result {
        out.truncate(start);
        return Err(EncodeError(e.to_string()));
    }
    let size = (out.len() - start - SIZE_PREFIX_LEN) as i32;
    out[start..start + SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// The answer to an ApiVersions request whose version Strom does not know: a v0 response with
/// UNSUPPORTED_VERSION and the full list, so the client can retry with a version it finds there
/// (KIP-511).
pub fn api_versions_fallback(out: &mut BytesMut, correlation_id: i32) -> Result<(), EncodeError> {
    let mut body = ApiVersionsResponse::default();
    body.error_code = ResponseError::UnsupportedVersion.code();
    body.api_keys = apis::api_version_entries();
    encode_response(out, correlation_id, 0, &ResponseKind::ApiVersions(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn fallback_is_a_v0_api_versions_response() {
        let mut out = BytesMut::new();
        api_versions_fallback(&mut out, 42).unwrap();
        let size = out.get_i32() as usize;
        assert_eq!(size, out.len());
        let mut bytes = out.freeze();
        let header = ResponseHeader::decode(&mut bytes, 0).unwrap();
        assert_eq!(header.correlation_id, 42);
        let body = ApiVersionsResponse::decode(&mut bytes, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert_eq!(body.api_keys.len(), apis::SUPPORTED_APIS.len());
        assert!(bytes.is_empty());
    }
}

/// Record sets up to this size can be sent by reference (from a file, by the server) instead of
/// being copied into the response buffer.
pub const RECORDS_BY_REFERENCE_MAX: usize = 64 * 1024 * 1024;

/// Zeroed memory that no record set ever lives in. A record set stands in a response body as a
/// slice of this region while the codec encodes it; [`encode_response_pieces`] recognises the
/// slice by its address and leaves a hole instead of copying. Being zero-initialised, it lives in
/// the binary's zero page mapping and costs no memory until read, and nothing reads it.
static RECORDS_PLACEHOLDER: [u8; RECORDS_BY_REFERENCE_MAX] = [0; RECORDS_BY_REFERENCE_MAX];

/// A stand-in for a record set of `len` bytes that the caller will send itself.
pub fn records_placeholder(len: usize) -> Option<bytes::Bytes> {
    (len > 0 && len <= RECORDS_BY_REFERENCE_MAX).then(|| bytes::Bytes::from_static(&RECORDS_PLACEHOLDER[..len]))
}

fn is_placeholder(slice: &[u8]) -> bool {
    let start = RECORDS_PLACEHOLDER.as_ptr() as usize;
    let ptr = slice.as_ptr() as usize;
    !slice.is_empty() && ptr >= start && ptr < start + RECORDS_BY_REFERENCE_MAX
}

/// One part of an encoded response: bytes to send, or a hole where a record set goes.
#[derive(Debug)]
pub enum Piece {
    Bytes(bytes::Bytes),
    /// The next record set, in encoding order, of this many bytes.
    Records(usize),
}

/// A buffer for the codec that turns placeholder record sets into holes.
struct PiecesBuf {
    pieces: Vec<Piece>,
    current: BytesMut,
}

impl PiecesBuf {
    fn finish(mut self) -> Vec<Piece> {
        if !self.current.is_empty() {
            self.pieces.push(Piece::Bytes(self.current.split().freeze()));
        }
        self.pieces
    }
}

// SAFETY: every method delegates to the inner `BytesMut`, whose `BufMut` implementation upholds
// the trait's contract; `put_slice` only adds bookkeeping around it.
#[allow(unsafe_code)]
unsafe impl BufMut for PiecesBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded with the caller's guarantee that `cnt` bytes were initialised.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if is_placeholder(src) {
            if !self.current.is_empty() {
                self.pieces.push(Piece::Bytes(self.current.split().freeze()));
            }
            self.pieces.push(Piece::Records(src.len()));
        } else {
            self.current.put_slice(src);
        }
    }
}

impl kafka_protocol::protocol::buf::ByteBufMut for PiecesBuf {
    // Message encoding never uses gaps or seeks (only record batch encoding does, which never
    // runs on this buffer); offsets are those of the bytes since the last hole.
    fn offset(&self) -> usize {
        self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        self.current.seek(offset)
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        self.current.range(r)
    }
}

/// Encodes a whole response frame as pieces: the record sets given as
/// [`records_placeholder`]s become [`Piece::Records`] holes, in encoding order.
pub fn encode_response_pieces<T: Encodable + HeaderVersion>(
    correlation_id: i32,
    api_version: i16,
    body: &T,
) -> Result<Vec<Piece>, EncodeError> {
    let mut buf = PiecesBuf {
        pieces: Vec::new(),
        current: BytesMut::with_capacity(256),
    };
    buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, T::header_version(api_version))
        .and_then(|()| body.encode(&mut buf, api_version))
        .map_err(|e| EncodeError(e.to_string()))?;
    let mut pieces = buf.finish();
    let total: usize = pieces
        .iter()
        .map(|p| match p {
            Piece::Bytes(b) => b.len(),
            Piece::Records(n) => *n,
        })
        .sum();
    let size = (total - SIZE_PREFIX_LEN) as i32;
    match pieces.first_mut() {
        Some(Piece::Bytes(first)) if first.len() >= SIZE_PREFIX_LEN => {
            let mut patched = BytesMut::from(&first[..]);
            patched[..SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
            *first = patched.freeze();
        }
        _ => unreachable!("a response starts with its size prefix and header"),
    }
    Ok(pieces)
}

#[cfg(test)]
mod pieces_tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::FetchResponse;

    /// Filling the holes with the real records must give exactly the bytes of a normal encoding.
    #[test]
    fn pieces_with_records_filled_in_equal_the_plain_encoding() {
        let records = [
            bytes::Bytes::from_static(b"first-records"),
            bytes::Bytes::from_static(b"second"),
        ];
        let build = |with: &dyn Fn(usize) -> bytes::Bytes| {
            let mut response = FetchResponse::default();
            let mut topic = FetchableTopicResponse::default();
            for (i, r) in records.iter().enumerate() {
                let mut data = PartitionData::default();
                data.partition_index = i as i32;
                data.records = Some(with(i));
                let _ = r;
                topic.partitions.push(data);
            }
            response.responses.push(topic);
            response
        };
        for version in [4i16, 11, 12] {
            let mut plain = BytesMut::new();
            encode_response(
                &mut plain,
                9,
                version,
                &ResponseKind::Fetch(build(&|i| records[i].clone())),
            )
            .unwrap();
            let pieces =
                encode_response_pieces(9, version, &build(&|i| records_placeholder(records[i].len()).unwrap()))
                    .unwrap();
            let mut next = records.iter();
            let mut joined = Vec::new();
            for piece in pieces {
                match piece {
                    Piece::Bytes(b) => joined.extend_from_slice(&b),
                    Piece::Records(n) => {
                        let r = next.next().unwrap();
                        assert_eq!(r.len(), n);
                        joined.extend_from_slice(r);
                    }
                }
            }
            assert_eq!(joined, plain.to_vec(), "version {version}");
        }
    }
}
