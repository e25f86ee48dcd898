//! One partition of a topic on this broker: its log, guarded for concurrent handlers, and this
//! broker's role for it.

use std::sync::{Mutex, MutexGuard, RwLock};

use strom_storage::Log;

/// Leader epoch of every partition on a single-node broker: leadership never moves, so it
/// never changes.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

/// What this broker is for the partition, from the committed metadata (always the leader on a
/// single node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader {
        leader_epoch: i32,
    },
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
    /// Not a replica here (or no leader anywhere): requests go elsewhere.
    None {
        leader: i32,
        leader_epoch: i32,
    },
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// `None` once the partition has been deleted or closed, or if this broker holds no replica
    /// of it: late requests holding this partition get UNKNOWN_TOPIC_OR_PARTITION instead of
    /// writing into a removed directory.
    log: Mutex<Option<Log>>,
    role: RwLock<Role>,
}

impl Partition {
    /// A partition this broker leads (a single node leads everything).
    pub fn new(topic: String, index: i32, log: Log) -> Self {
        Partition {
            topic,
            index,
            log: Mutex::new(Some(log)),
            role: RwLock::new(Role::Leader {
                leader_epoch: SINGLE_NODE_LEADER_EPOCH,
            }),
        }
    }

    /// A partition of the cluster with no replica on this broker.
    pub fn elsewhere(topic: String, index: i32, leader: i32, leader_epoch: i32) -> Self {
        Partition {
            topic,
            index,
            log: Mutex::new(None),
            role: RwLock::new(Role::None { leader, leader_epoch }),
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

    /// Puts a log (newly hosted here) into service.
    pub fn install_log(&self, log: Log) {
        *self.lock() = Some(log);
    }

    pub fn role(&self) -> Role {
        *self.role.read().expect("role lock")
    }

    pub fn set_role(&self, role: Role) {
        *self.role.write().expect("role lock") = role;
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role(), Role::Leader { .. })
    }

    /// The current leader epoch as this broker knows it.
    pub fn leader_epoch(&self) -> i32 {
        match self.role() {
            Role::Leader { leader_epoch } | Role::Follower { leader_epoch, .. } | Role::None { leader_epoch, .. } => {
                leader_epoch
            }
        }
    }
}
