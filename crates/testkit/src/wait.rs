//! Polling with deadlines: the only way these tests wait.

use std::thread;
use std::time::{Duration, Instant};

/// How long between two probes of a condition. Short enough not to slow tests down, long
/// enough not to spin a core that four other processes share.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Probes `probe` until it returns `Some`, or panics naming `what` once `timeout` has passed.
pub fn poll_until<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    match try_poll_until(timeout, probe) {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Probes `probe` until it returns `Some`; `None` once `timeout` has passed. The probe runs at
/// least once, and once more after the deadline, so a slow probe still gets its last chance.
pub fn try_poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}
