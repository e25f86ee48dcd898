//! `max.connections`: connections past the limit are closed on accept, and a freed slot is
//! usable again. This bounds the memory a flood of idle connections can hold.

use std::time::Duration;

use strom_testkit::{poll_until, Broker, WireClient};

#[test]
fn connections_beyond_max_connections_are_closed_and_slots_are_reused() {
    let broker = Broker::builder(strom_testkit::bin!())
        .set("max.connections", "2")
        .start();
    // The test kit's readiness probe was a connection too; wait until the broker has seen it go.
    let served = || {
        WireClient::connect(broker.addr())
            .ok()
            .and_then(|mut c| c.api_versions().ok().map(|_| c))
    };
    let first = poll_until(Duration::from_secs(10), "a first connection is served", served);
    let mut second = poll_until(Duration::from_secs(10), "a second connection is served", served);

    let mut third = WireClient::connect(broker.addr()).expect("the TCP handshake itself succeeds");
    assert!(
        third.closed_within(Duration::from_secs(5)),
        "a third connection is closed by the broker"
    );

    drop(first);
    // The broker notices the hang-up asynchronously; a new connection works once it has.
    let _third = poll_until(Duration::from_secs(10), "a freed slot accepts a new connection", served);
    second.api_versions().expect("the surviving connection still works");
}
