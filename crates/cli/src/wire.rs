//! A minimal blocking Kafka request/response client for the few APIs librdkafka does not
//! expose: today ConsumerGroupDescribe (KIP-848), found through FindCoordinator.
//!
//! Requests and responses are the `kafka-protocol` crate's types. One request is in flight per
//! connection; every connect, write and read is bounded by the caller's timeout, and a response
//! that is too large, truncated, answers another request or has bytes left over is an error,
//! never a panic. Plaintext only: no TLS, no SASL.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, FindCoordinatorRequest,
    GroupId, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;

/// Largest response frame accepted; anything larger means the stream is not Kafka's.
pub(crate) const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The `client_id` on every request.
const CLIENT_ID: &str = "strom-cli";
/// ApiVersions v3: flexible, answered by every broker since Kafka 2.4.
const API_VERSIONS_VERSION: i16 = 3;
/// FindCoordinator v3: the single-key form, flexible.
const FIND_COORDINATOR_VERSION: i16 = 3;
/// ConsumerGroupDescribe v0.
const CONSUMER_GROUP_DESCRIBE_VERSION: i16 = 0;
/// FindCoordinator's key type for groups.
const KEY_TYPE_GROUP: i8 = 0;

/// One plaintext connection to one broker.
pub(crate) struct Connection {
    stream: TcpStream,
    address: String,
    timeout: Duration,
    correlation_id_next: i32,
}

impl Connection {
    /// Connects to `address` (`host:port`), trying each address it resolves to, each attempt
    /// bounded by `timeout`.
    pub(crate) fn connect(address: &str, timeout: Duration) -> anyhow::Result<Connection> {
        let resolved: Vec<SocketAddr> = address
            .to_socket_addrs()
            .with_context(|| format!("resolve `{address}`"))?
            .collect();
        let mut last_error = None;
        for socket_address in resolved {
            match TcpStream::connect_timeout(&socket_address, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).context("set TCP_NODELAY")?;
                    return Ok(Connection {
                        stream,
                        address: address.to_string(),
                        timeout,
                        correlation_id_next: 1,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) => Err(error).with_context(|| format!("connect to {address}")),
            None => bail!("`{address}` resolves to no address"),
        }
    }

    /// Connects to the first of the comma-separated `bootstrap` addresses that accepts.
    pub(crate) fn connect_any(bootstrap: &str, timeout: Duration) -> anyhow::Result<Connection> {
        let mut errors = Vec::new();
        for address in bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Connection::connect(address, timeout) {
                Ok(connection) => return Ok(connection),
                Err(error) => errors.push(format!("{error:#}")),
            }
        }
        if errors.is_empty() {
            bail!("no bootstrap server in `{bootstrap}`");
        }
        bail!("{}", errors.join("; "))
    }

    /// Sends `request` at `version` and decodes its answer; the whole exchange is bounded by
    /// the connection's timeout.
    pub(crate) fn call<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<R::Response> {
        let deadline = Instant::now() + self.timeout;
        let correlation_id = self.correlation_id_next;
        self.correlation_id_next = self.correlation_id_next.wrapping_add(1);
        let frame = encode_request(request, version, correlation_id)?;
        self.write_all(&frame, deadline)
            .with_context(|| format!("send {} to {}", api_name(R::KEY), self.address))?;
        let body = self
            .read_frame(deadline)
            .with_context(|| format!("read {} response from {}", api_name(R::KEY), self.address))?;
        decode_response::<R>(&body, version, correlation_id)
            .with_context(|| format!("{} response from {}", api_name(R::KEY), self.address))
    }

    fn write_all(&mut self, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            self.stream.set_write_timeout(Some(remaining(deadline)?))?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => bytes = &bytes[written..],
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(timed_out(error, self.timeout)),
            }
        }
        Ok(())
    }

    fn read_exact(&mut self, mut buffer: &mut [u8], deadline: Instant) -> io::Result<()> {
        while !buffer.is_empty() {
            self.stream.set_read_timeout(Some(remaining(deadline)?))?;
            match self.stream.read(buffer) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    ))
                }
                Ok(read) => buffer = &mut buffer[read..],
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(timed_out(error, self.timeout)),
            }
        }
        Ok(())
    }

    /// Reads one size-prefixed frame and returns its body.
    fn read_frame(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut size = [0u8; 4];
        self.read_exact(&mut size, deadline)?;
        let size = frame_size(size).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut body = vec![0u8; size];
        self.read_exact(&mut body, deadline)?;
        Ok(body)
    }
}

/// Time left before `deadline`, or a timeout error once it passed.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    } else {
        Ok(left)
    }
}

/// A read or write timeout reads `WouldBlock` on Unix: name it for what it is.
fn timed_out(error: io::Error, timeout: Duration) -> io::Error {
    if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out after {} ms", timeout.as_millis()),
        )
    } else {
        error
    }
}

/// The body size a frame's 4-byte prefix announces, checked against [`RESPONSE_BYTES_MAX`].
fn frame_size(prefix: [u8; 4]) -> Result<usize, String> {
    let size = i32::from_be_bytes(prefix);
    usize::try_from(size)
        .ok()
        .filter(|&size| size <= RESPONSE_BYTES_MAX)
        .ok_or_else(|| format!("response frame size {size} is out of range"))
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|()| format!("API {key}"), |api| format!("{api:?}"))
}

/// A whole request frame: size prefix, header, body.
fn encode_request<R: Request>(request: &R, version: i16, correlation_id: i32) -> anyhow::Result<Vec<u8>> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let mut frame = vec![0u8; 4];
    header
        .encode(&mut frame, R::header_version(version))
        .context("encode request header")?;
    request.encode(&mut frame, version).context("encode request")?;
    let size = i32::try_from(frame.len() - 4).context("request too large")?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

/// Decodes a response frame body for request type `R`: header (with the correlation id of the
/// request), body, and nothing after it.
pub(crate) fn decode_response<R: Request>(
    mut frame: &[u8],
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<R::Response> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).context("decode response header")?;
    ensure!(
        header.correlation_id == correlation_id,
        "correlation id {} answers request {correlation_id}",
        header.correlation_id
    );
    let response = R::Response::decode(&mut frame, version).context("decode response")?;
    ensure!(frame.is_empty(), "{} bytes left after the response", frame.len());
    Ok(response)
}

/// A Kafka error code's name, or the number when unknown.
pub(crate) fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None | Some(ResponseError::Unknown(_)) => format!("error code {code}"),
        Some(error) => format!("{error:?}"),
    }
}

/// Whether a broker supports `version` of `key`, from its ApiVersions answer.
fn supports(connection: &mut Connection, key: ApiKey, version: i16) -> anyhow::Result<bool> {
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = StrBytes::from_static_str(CLIENT_ID);
    request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
    let response = connection.call(&request, API_VERSIONS_VERSION)?;
    if response.error_code != 0 {
        bail!("ApiVersions: {}", error_name(response.error_code));
    }
    Ok(response
        .api_keys
        .iter()
        .any(|api| api.api_key == key as i16 && (api.min_version..=api.max_version).contains(&version)))
}

/// Describes `group` with ConsumerGroupDescribe at its coordinator. `Ok(None)` means there is
/// no KIP-848 answer to give: the coordinator does not support the API, or does not know the
/// group as a consumer group (it may be a classic group, or none).
pub(crate) fn consumer_group_describe(
    bootstrap: &str,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<Option<kafka_protocol::messages::consumer_group_describe_response::DescribedGroup>> {
    let mut connection = Connection::connect_any(bootstrap, timeout)?;
    if !supports(&mut connection, ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION)? {
        return Ok(None);
    }
    let mut request = FindCoordinatorRequest::default();
    request.key = StrBytes::from_string(group.to_string());
    request.key_type = KEY_TYPE_GROUP;
    let found = connection.call(&request, FIND_COORDINATOR_VERSION)?;
    if found.error_code != 0 {
        let message = found
            .error_message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        bail!("FindCoordinator: {}{message}", error_name(found.error_code));
    }
    let port = u16::try_from(found.port).map_err(|_| anyhow!("FindCoordinator: bad port {}", found.port))?;
    let host = found.host.as_str();
    let address = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut coordinator = Connection::connect(&address, timeout).context("connect to the group coordinator")?;
    if !supports(
        &mut coordinator,
        ApiKey::ConsumerGroupDescribe,
        CONSUMER_GROUP_DESCRIBE_VERSION,
    )? {
        return Ok(None);
    }
    let mut request = ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let response: ConsumerGroupDescribeResponse = coordinator.call(&request, CONSUMER_GROUP_DESCRIBE_VERSION)?;
    described_group(response, group)
}

/// The answer for `group` out of a ConsumerGroupDescribe response; `None` when the group is
/// not a consumer group (or the API is not supported after all).
fn described_group(
    response: ConsumerGroupDescribeResponse,
    group: &str,
) -> anyhow::Result<Option<kafka_protocol::messages::consumer_group_describe_response::DescribedGroup>> {
    let described = response
        .groups
        .into_iter()
        .find(|described| described.group_id.as_str() == group)
        .ok_or_else(|| anyhow!("ConsumerGroupDescribe: no answer for the group"))?;
    match ResponseError::try_from_code(described.error_code) {
        None if described.error_code == 0 => Ok(Some(described)),
        Some(ResponseError::GroupIdNotFound | ResponseError::UnsupportedVersion) => Ok(None),
        _ => {
            let message = described
                .error_message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            bail!("ConsumerGroupDescribe: {}{message}", error_name(described.error_code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
    use kafka_protocol::messages::FindCoordinatorResponse;
    use std::net::TcpListener;

    /// A response frame body (header + body) as a broker would send it.
    fn response_body<R: Request>(response: &R::Response, version: i16, correlation_id: i32) -> Vec<u8> {
        let mut header = ResponseHeader::default();
        header.correlation_id = correlation_id;
        let mut body = Vec::new();
        header
            .encode(&mut body, <R::Response as HeaderVersion>::header_version(version))
            .unwrap();
        response.encode(&mut body, version).unwrap();
        body
    }

    fn describe_response(error_code: i16) -> ConsumerGroupDescribeResponse {
        let mut group = DescribedGroup::default();
        group.group_id = GroupId(StrBytes::from_static_str("g"));
        group.error_code = error_code;
        group.group_state = StrBytes::from_static_str("Stable");
        group.group_epoch = 4;
        let mut response = ConsumerGroupDescribeResponse::default();
        response.groups = vec![group];
        response
    }

    #[test]
    fn a_whole_response_decodes_and_every_truncation_is_an_error() {
        let response = describe_response(0);
        let body = response_body::<ConsumerGroupDescribeRequest>(&response, 0, 7);
        let decoded = decode_response::<ConsumerGroupDescribeRequest>(&body, 0, 7).unwrap();
        assert_eq!(decoded, response);
        for cut in 0..body.len() {
            let result = decode_response::<ConsumerGroupDescribeRequest>(&body[..cut], 0, 7);
            assert!(result.is_err(), "truncated to {cut} bytes decoded: {result:?}");
        }
        let mut longer = body.clone();
        longer.push(0);
        let error = decode_response::<ConsumerGroupDescribeRequest>(&longer, 0, 7).unwrap_err();
        assert!(format!("{error:#}").contains("1 bytes left"), "{error:#}");
        let error = decode_response::<ConsumerGroupDescribeRequest>(&body, 0, 8).unwrap_err();
        assert!(
            format!("{error:#}").contains("correlation id 7 answers request 8"),
            "{error:#}"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for length in 0..64usize {
            for _ in 0..16 {
                let bytes: Vec<u8> = (0..length)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Small values keep array counts small: the decoder preallocates them.
                        (seed % 8) as u8
                    })
                    .collect();
                let _ = decode_response::<ConsumerGroupDescribeRequest>(&bytes, 0, 1);
                let _ = decode_response::<FindCoordinatorRequest>(&bytes, FIND_COORDINATOR_VERSION, 1);
                let _ = decode_response::<ApiVersionsRequest>(&bytes, API_VERSIONS_VERSION, 1);
            }
        }
    }

    #[test]
    fn frame_sizes_are_bounded() {
        assert_eq!(frame_size(10i32.to_be_bytes()), Ok(10));
        assert!(frame_size((-1i32).to_be_bytes()).is_err());
        assert!(frame_size(i32::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn group_errors_decide_between_none_and_an_error() {
        assert!(described_group(describe_response(0), "g").unwrap().is_some());
        let not_found = ResponseError::GroupIdNotFound.code();
        assert!(described_group(describe_response(not_found), "g").unwrap().is_none());
        let unsupported = ResponseError::UnsupportedVersion.code();
        assert!(described_group(describe_response(unsupported), "g").unwrap().is_none());
        let loading = ResponseError::CoordinatorLoadInProgress.code();
        let error = described_group(describe_response(loading), "g").unwrap_err();
        assert_eq!(format!("{error:#}"), "ConsumerGroupDescribe: CoordinatorLoadInProgress");
        let error = described_group(describe_response(0), "other").unwrap_err();
        assert!(format!("{error:#}").contains("no answer"), "{error:#}");
        assert_eq!(error_name(-12345), "error code -12345");
    }

    /// A fake broker that reads one request and answers with `answer` (raw bytes), then
    /// closes; or, with `None`, never answers.
    fn fake_broker(answer: Option<Vec<u8>>) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut size = [0u8; 4];
            stream.read_exact(&mut size).unwrap();
            let mut request = vec![0u8; i32::from_be_bytes(size) as usize];
            stream.read_exact(&mut request).unwrap();
            match answer {
                Some(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                None => std::thread::sleep(Duration::from_millis(800)),
            }
        });
        (address, handle)
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        frame
    }

    fn call_fake(answer: Option<Vec<u8>>) -> anyhow::Result<FindCoordinatorResponse> {
        let (address, handle) = fake_broker(answer);
        let mut connection = Connection::connect(&address, Duration::from_millis(300)).unwrap();
        let result = connection.call(&FindCoordinatorRequest::default(), FIND_COORDINATOR_VERSION);
        handle.join().unwrap();
        result
    }

    #[test]
    fn the_client_reports_bad_answers_as_errors() {
        let mut good = FindCoordinatorResponse::default();
        good.port = 9092;
        let body = response_body::<FindCoordinatorRequest>(&good, FIND_COORDINATOR_VERSION, 1);
        assert_eq!(call_fake(Some(framed(&body))).unwrap(), good);

        let cases: [(Option<Vec<u8>>, &str); 5] = [
            (Some(Vec::new()), "closed the connection"),
            (Some(framed(&body)[..body.len() - 2].to_vec()), "closed the connection"),
            (Some((-5i32).to_be_bytes().to_vec()), "frame size -5"),
            (Some(framed(&[0xff; 9])), "FindCoordinator response from"),
            (None, "timed out after 300 ms"),
        ];
        for (answer, expected) in cases {
            let error = call_fake(answer).unwrap_err();
            assert!(format!("{error:#}").contains(expected), "{expected}: {error:#}");
        }
    }
}
