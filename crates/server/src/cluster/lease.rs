//! This broker's word that what it coordinates is still its own.
//!
//! The controller fences a broker whose heartbeats stop for `broker.session.timeout.ms` and
//! moves its leaderships away. A broker cut off from the controller cannot know when that
//! happened, and its metadata image keeps showing it as the leader: a coordinator answering
//! from memory would then hand out what the new coordinator has since replaced (the fault
//! campaign saw a cut-off group coordinator answer OffsetFetch with committed offsets that
//! transactions had moved on elsewhere; its consumers went back and processed inputs twice).
//!
//! The lease is the window in which the controller cannot have fenced it yet: from a
//! heartbeat's *sending* (the controller received it later, so its session timer started
//! later) for `broker.session.timeout.ms`, renewed by each heartbeat the controller answered
//! "not fenced" (which it only says once this broker's metadata shows its last fencing).
//! Answers that come from the coordinators' memory rather than a replicated write are given
//! only while it holds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::steady_ms;

pub(crate) struct Lease {
    /// The steady clock's milliseconds until which the lease holds; 0: it does not.
    until_ms: AtomicI64,
}

impl Lease {
    pub(crate) fn new() -> Self {
        Lease {
            until_ms: AtomicI64::new(0),
        }
    }

    /// A heartbeat sent at `sent_ms` (the steady clock) was answered "not fenced".
    pub(crate) fn renew(&self, sent_ms: i64, session: Duration) {
        let until = sent_ms.saturating_add(i64::try_from(session.as_millis()).unwrap_or(i64::MAX));
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// The controller says this broker is fenced, or its session ended.
    pub(crate) fn revoke(&self) {
        self.until_ms.store(0, Ordering::Relaxed);
    }

    pub(crate) fn holds(&self) -> bool {
        steady_ms() < self.until_ms.load(Ordering::Relaxed)
    }

    /// Milliseconds since the lease ended (`None` while it holds, or if it never held).
    pub(crate) fn lapsed_ms(&self) -> Option<i64> {
        let until = self.until_ms.load(Ordering::Relaxed);
        let now = steady_ms();
        (until != 0 && now >= until).then(|| now - until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_for_a_session_from_the_heartbeats_sending_until_revoked() {
        let lease = Lease::new();
        assert!(!lease.holds(), "no heartbeat answered yet");
        let sent = steady_ms();
        lease.renew(sent, Duration::from_secs(60));
        assert!(lease.holds());
        // An answer to an older heartbeat does not shorten it.
        lease.renew(sent - 30_000, Duration::from_secs(1));
        assert!(lease.holds());
        lease.revoke();
        assert!(!lease.holds());
        // A heartbeat sent longer than a session ago gives nothing.
        lease.renew(steady_ms(), Duration::ZERO);
        assert!(!lease.holds());
    }
}
