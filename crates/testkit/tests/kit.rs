//! The kit's own behaviour, without a real broker: waits time out, a binary that cannot start
//! is reported, and the wire client frames requests and checks correlation ids.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use strom_testkit::wait::try_poll_until;
use strom_testkit::{poll_until, Broker, WireClient};

#[test]
fn poll_until_returns_the_first_some() {
    let mut calls = 0;
    let value = poll_until(Duration::from_secs(5), "third call", || {
        calls += 1;
        (calls == 3).then_some(calls)
    });
    assert_eq!(value, 3);
}

#[test]
fn try_poll_until_gives_up_at_the_deadline() {
    let started = Instant::now();
    let result: Option<()> = try_poll_until(Duration::from_millis(200), || None);
    assert_eq!(result, None);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
#[should_panic(expected = "timed out after")]
fn poll_until_panics_naming_what_it_waited_for() {
    poll_until(Duration::from_millis(50), "nothing", || None::<()>);
}

#[test]
#[should_panic(expected = "broker did not start")]
fn a_binary_that_exits_at_once_is_reported() {
    Broker::start(Path::new("/bin/false"));
}

/// A one-connection fake broker answering one ApiVersions request with `correlation_shift`
/// added to the correlation id it received.
fn fake_broker(correlation_shift: i32) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        stream.read_exact(&mut body).unwrap();
        let mut body = bytes::Bytes::from(body);
        let header = RequestHeader::decode(&mut body, 2).unwrap();
        assert_eq!(header.request_api_key, 18);
        let mut response = BytesMut::new();
        let mut response_header = ResponseHeader::default();
        response_header.correlation_id = header.correlation_id + correlation_shift;
        response_header.encode(&mut response, 0).unwrap();
        ApiVersionsResponse::default()
            .encode(&mut response, header.request_api_version)
            .unwrap();
        stream.write_all(&(response.len() as i32).to_be_bytes()).unwrap();
        stream.write_all(&response).unwrap();
    });
    addr
}

#[test]
fn wire_client_round_trips_a_request() {
    let mut wire = WireClient::connect(fake_broker(0)).unwrap();
    let response = wire.api_versions().unwrap();
    assert_eq!(response.error_code, 0);
}

#[test]
fn wire_client_rejects_a_mismatched_correlation_id() {
    let mut wire = WireClient::connect(fake_broker(1)).unwrap();
    let error = wire.api_versions().unwrap_err();
    assert!(format!("{error:#}").contains("correlation id"), "{error:#}");
}
