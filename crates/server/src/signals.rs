//! The broker's wake-up signals, shared by everything that waits on its logs rather than
//! polling them: something was appended (parked fetches, acks=all produces, coordinators
//! waiting for their records to replicate), and the broker is shutting down.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

pub struct Signals {
    /// Bumped after every append, so waiting fetches wake as soon as data arrives rather than
    /// when their max wait runs out.
    appended: watch::Sender<u64>,
    shutting_down: AtomicBool,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            appended: watch::channel(0).0,
            shutting_down: AtomicBool::new(false),
        }
    }
}

impl Signals {
    pub fn notify_appended(&self) {
        self.appended
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// From now on waits end at once; wakes every waiter so it notices.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.notify_appended();
    }
}
