//! Request decoding: the header first, cheaply, then the body.
//!
//! The first eight bytes of a frame (API key, version, correlation id) decide whether the
//! request is one Strom answers at all. Only then is the body decoded, so an unsupported version
//! costs no allocation. A decode failure of a well-framed request closes the connection, as
//! Kafka does: the protocol has no way to answer a request it cannot read.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::apis;
use crate::produce_shape::{self, PRODUCE_EMPTY_ENTRIES_MAX};

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub body: RequestKind,
}

impl Request {
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    pub fn client_id(&self) -> &str {
        self.header.client_id.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request frame of {len} bytes is shorter than a request header")]
    TooShort { len: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("{api_key:?} v{api_version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("could not decode {api_key:?} v{api_version}: {reason}")]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        reason: String,
    },
}

/// The fixed start of every request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads API key, version and correlation id without decoding anything else.
pub fn peek_header(frame: &[u8]) -> Result<HeaderPrefix, RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort { len: frame.len() });
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes one request frame (the bytes after the size prefix). Fields such as produce record
/// sets come out as slices of `frame`, not copies.
pub fn decode_request(frame: Bytes) -> Result<Request, RequestError> {
    let prefix = peek_header(&frame)?;
    let api_key = ApiKey::try_from(prefix.api_key).map_err(|()| RequestError::UnknownApiKey {
        api_key: prefix.api_key,
        correlation_id: prefix.correlation_id,
    })?;
    if !apis::is_supported(api_key, prefix.api_version) {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            api_version: prefix.api_version,
            correlation_id: prefix.correlation_id,
        });
    }
    let api_version = prefix.api_version;
    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        api_version,
        reason,
    };
    // The codec crate reports bad input as errors; a panic inside it on hostile bytes would be
    // its bug, but it must not become ours, so it is contained and treated as malformed input.
    let decoded = std::panic::catch_unwind(move || {
        let mut buf = frame;
        let header_version = api_key.request_header_version(api_version);
        let header = RequestHeader::decode(&mut buf, header_version).map_err(|e| e.to_string())?;
        if api_key == ApiKey::Produce && produce_shape::has_too_many_empty_entries(&buf, api_version) {
            return Err(format!(
                "more than {PRODUCE_EMPTY_ENTRIES_MAX} produce entries without a record batch"
            ));
        }
        let body = RequestKind::decode(api_key, &mut buf, api_version).map_err(|e| e.to_string())?;
        Ok::<_, String>((header, body))
    });
    match decoded {
        Ok(Ok((header, body))) => Ok(Request {
            header,
            api_key,
            api_version,
            body,
        }),
        Ok(Err(reason)) => Err(malformed(reason)),
        Err(_) => Err(malformed("decoder panicked".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::Encodable;

    fn frame<T: Encodable>(api_key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = 7;
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_supported_requests() {
        let request = decode_request(frame(ApiKey::Metadata, 12, &MetadataRequest::default())).unwrap();
        assert_eq!(request.api_key, ApiKey::Metadata);
        assert_eq!(request.correlation_id(), 7);
        assert!(matches!(request.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn classifies_bad_requests() {
        let mut bytes = BytesMut::from(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())[..]);
        bytes[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(bytes.freeze()),
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                api_version: 99,
                correlation_id: 7
            })
        ));
        let mut bytes = BytesMut::from(&frame(ApiKey::Metadata, 12, &MetadataRequest::default())[..]);
        bytes[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode_request(bytes.freeze()),
            Err(RequestError::UnknownApiKey { api_key: 999, .. })
        ));
        let whole = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(matches!(
            decode_request(whole.slice(..9)),
            Err(RequestError::Malformed { .. })
        ));
        assert!(matches!(
            decode_request(whole.slice(..3)),
            Err(RequestError::TooShort { len: 3 })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_frames_never_panic(api_key in 0i16..80, version in 0i16..14, tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut bytes = BytesMut::new();
            bytes.extend_from_slice(&api_key.to_be_bytes());
            bytes.extend_from_slice(&version.to_be_bytes());
            bytes.extend_from_slice(&1i32.to_be_bytes());
            bytes.extend_from_slice(&tail);
            let _ = decode_request(bytes.freeze());
        }
    }
}
