//! The client's side of the wire, for brokers that ask other brokers (a follower fetching
//! from its leader): a request frame out, a response frame in.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::frame::SIZE_PREFIX_LEN;

#[derive(Debug, thiserror::Error)]
pub enum ClientCodecError {
    #[error("could not encode {api:?} v{version}: {reason}")]
    Encode { api: ApiKey, version: i16, reason: String },
    #[error("could not decode the {api:?} v{version} response: {reason}")]
    Decode { api: ApiKey, version: i16, reason: String },
}

/// One whole request frame (size prefix included).
pub fn encode_request<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &T,
) -> Result<Bytes, ClientCodecError> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[0; SIZE_PREFIX_LEN]);
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let result = header
        .encode(&mut out, api.request_header_version(version))
        .and_then(|()| body.encode(&mut out, version));
    if let Err(e) = result {
        return Err(ClientCodecError::Encode {
            api,
            version,
            reason: e.to_string(),
        });
    }
    let size = (out.len() - SIZE_PREFIX_LEN) as i32;
    out[..SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// Decodes a response frame (the bytes after the size prefix): its correlation id and body.
/// The codec's panics on hostile bytes are contained, as for requests.
pub fn decode_response<T: Decodable>(api: ApiKey, version: i16, frame: Bytes) -> Result<(i32, T), ClientCodecError> {
    let decoded = std::panic::catch_unwind(move || {
        let mut buf = frame;
        let header =
            ResponseHeader::decode(&mut buf, api.response_header_version(version)).map_err(|e| e.to_string())?;
        let body = T::decode(&mut buf, version).map_err(|e| e.to_string())?;
        Ok::<_, String>((header.correlation_id, body))
    });
    match decoded {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(reason)) => Err(ClientCodecError::Decode { api, version, reason }),
        Err(_) => Err(ClientCodecError::Decode {
            api,
            version,
            reason: "decoder panicked".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchRequest, FetchResponse, RequestKind, ResponseKind};

    #[test]
    fn a_request_decodes_as_the_server_reads_it_and_a_response_round_trips() {
        let mut fetch = FetchRequest::default();
        fetch.replica_id = kafka_protocol::messages::BrokerId(3);
        fetch.max_wait_ms = 500;
        let frame = encode_request(ApiKey::Fetch, 12, 77, "strom-replica-3", &fetch).unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        let request = crate::request::decode_request(frame.slice(4..)).unwrap();
        assert_eq!(request.correlation_id(), 77);
        assert_eq!(request.client_id(), "strom-replica-3");
        let RequestKind::Fetch(decoded) = request.body else {
            panic!("not a fetch")
        };
        assert_eq!(decoded.replica_id.0, 3);

        let mut response = FetchResponse::default();
        response.throttle_time_ms = 9;
        let mut out = BytesMut::new();
        crate::response::encode_response(&mut out, 77, 12, &ResponseKind::Fetch(response)).unwrap();
        let (correlation_id, decoded): (i32, FetchResponse) =
            decode_response(ApiKey::Fetch, 12, out.freeze().slice(4..)).unwrap();
        assert_eq!((correlation_id, decoded.throttle_time_ms), (77, 9));
        assert!(decode_response::<FetchResponse>(ApiKey::Fetch, 12, Bytes::from_static(&[0, 0])).is_err());
    }
}
