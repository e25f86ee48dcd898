//! Log lines whose cause repeats: a full disk fails every append, on every partition, many
//! times a second, and an operator needs one clear line, not thousands. `throttled!(level,
//! fields..., "message")` is `tracing::level!` from a call site that writes at most one line
//! every 10 s, with a `held_back` field counting the lines it left out since the last.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::steady_ms;

/// `tracing::$level!(...)`, at most once every 10 s from this call site.
macro_rules! throttled {
    ($level:ident, $($arg:tt)+) => {{
        static THROTTLE: $crate::log_limit::Throttle =
            $crate::log_limit::Throttle::new($crate::log_limit::EVERY_10_S);
        if let Some(held_back) = THROTTLE.pass() {
            tracing::$level!(held_back, $($arg)+);
        }
    }};
}
pub(crate) use throttled;

/// At most one line per interval from one call site.
pub(crate) struct Throttle {
    interval_ms: u64,
    /// The steady clock's milliseconds at which the next line may pass.
    next_ms: AtomicU64,
    held_back: AtomicU64,
}

/// How often a throttled call site may write a line.
pub(crate) const EVERY_10_S: u64 = 10_000;

impl Throttle {
    pub(crate) const fn new(interval_ms: u64) -> Self {
        Throttle {
            interval_ms,
            next_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    pub(crate) fn pass(&self) -> Option<u64> {
        self.pass_at(u64::try_from(steady_ms()).unwrap_or(0))
    }

    fn pass_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(next, now_ms + self.interval_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_counts_those_held_back() {
        let throttle = Throttle::new(1_000);
        assert_eq!(throttle.pass_at(5), Some(0));
        assert_eq!(throttle.pass_at(6), None);
        assert_eq!(throttle.pass_at(1_004), None);
        assert_eq!(throttle.pass_at(1_005), Some(2));
        assert_eq!(throttle.pass_at(1_006), None);
        assert_eq!(throttle.pass_at(9_000), Some(1));
    }
}
