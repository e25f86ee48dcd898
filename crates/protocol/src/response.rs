//! Response encoding: size prefix, response header, body.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiVersionsResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
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
