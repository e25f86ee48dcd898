//! The clocks, in the unit Kafka's protocol and records use.
//!
//! [`now_ms`] is the wall clock: timestamps that leave the process or are kept (records,
//! commits, transactions). [`steady_ms`] is for deciding how long something has been silent
//! (broker sessions at the controller, a follower's lag at its leader): a wall clock that
//! jumps (the campaign's clock-jump fault moved one node's by minutes) must not fence every
//! broker or empty every ISR, so it counts on the monotonic clock from the wall time at
//! start, and stays near the wall clock in value.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds on the monotonic clock, counted from the wall time at its first use: immune to
/// wall-clock jumps, close to [`now_ms`] in value.
pub(crate) fn steady_ms() -> i64 {
    static START: OnceLock<(Instant, i64)> = OnceLock::new();
    let (instant, wall) = START.get_or_init(|| (Instant::now(), now_ms()));
    wall + i64::try_from(instant.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
}
