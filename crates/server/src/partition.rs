//! One partition of a topic on this broker: its log, guarded for concurrent handlers.

use std::sync::{Mutex, MutexGuard};

use strom_storage::Log;

/// Leader epoch of every partition on a single-node broker: leadership never moves, so it
/// never changes. Replication will make this per partition and persistent.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// `None` once the partition has been deleted or closed: late requests holding this
    /// partition get UNKNOWN_TOPIC_OR_PARTITION instead of writing into a removed directory.
    log: Mutex<Option<Log>>,
}

impl Partition {
    pub fn new(topic: String, index: i32, log: Log) -> Self {
        Partition {
            topic,
            index,
            log: Mutex::new(Some(log)),
        }
    }

    /// Locks the log. Critical sections are short (an append's write into the page cache, an
    /// index lookup); bytes for fetches are read after the lock is released.
    pub fn lock(&self) -> MutexGuard<'_, Option<Log>> {
        // A panic while holding the lock means a broken invariant in storage; carrying on with
        // the log in an unknown state could corrupt it, so the poison propagates.
        self.log.lock().expect("partition lock poisoned")
    }

    /// Removes the log from service and hands it to the caller (to close or delete).
    pub fn take_log(&self) -> Option<Log> {
        self.lock().take()
    }

    pub fn leader_epoch(&self) -> i32 {
        SINGLE_NODE_LEADER_EPOCH
    }
}
