//! One partition of a topic on this broker: its log, guarded for concurrent handlers, this
//! broker's role for it and, while it leads the partition in a cluster, the replication
//! leader's state (strom-replication's [`Leader`]: followers' progress, high watermark, ISR
//! changes).
//!
//! Lock order: the log, then the leadership. Nothing takes the log while holding the
//! leadership.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use strom_replication::{AcksAll, Assignment, Leader, ReplicaConfig};
use strom_storage::Log;

/// What this broker is for the partition, from the committed metadata.
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
    /// `Some` while this broker leads the partition (and holds its log).
    leadership: Mutex<Option<Leader>>,
    /// An AlterPartition for this partition is on its way to the controller.
    pub(crate) isr_change_in_flight: AtomicBool,
}

/// Where an acks=all produce stands, as the partition's leader sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAllState {
    Waiting,
    Acknowledged,
    NotEnoughReplicasAfterAppend,
    /// Leadership moved (or the epoch changed) since the append: the client retries elsewhere.
    NotLeader,
}

impl Partition {
    /// A partition of the cluster with no replica on this broker.
    pub fn elsewhere(topic: String, index: i32, leader: i32, leader_epoch: i32) -> Self {
        Partition {
            topic,
            index,
            log: Mutex::new(None),
            role: RwLock::new(Role::None { leader, leader_epoch }),
            leadership: Mutex::new(None),
            isr_change_in_flight: AtomicBool::new(false),
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

    /// The replication leader's state, if this broker leads the partition in a cluster. Taken
    /// after the log's lock when both are needed.
    pub fn leadership(&self) -> MutexGuard<'_, Option<Leader>> {
        self.leadership.lock().expect("leadership lock poisoned")
    }

    /// Becomes (or stops being) the replication leader.
    pub fn set_leadership(&self, leader: Option<Leader>) {
        *self.leadership() = leader;
        self.isr_change_in_flight.store(false, Ordering::Release);
    }

    /// After a local append (a produce, a marker, a coordinator's write), with the log still
    /// locked: moves the high watermark as far as the replicas allow (a leader alone in its
    /// ISR commits at once). Returns whether the high watermark moved.
    pub fn after_local_append(&self, log: &mut Log) -> bool {
        let log_end_offset = log.log_end_offset();
        let before = log.high_watermark();
        if let Some(leader) = self.leadership().as_mut() {
            if let Some(high_watermark) = leader.on_append(log_end_offset) {
                log.set_high_watermark(high_watermark);
            }
        }
        log.high_watermark() != before
    }

    /// Checked before an acks=all append: `Err((isr, min_isr))` when the ISR is too small.
    /// (Without leadership the append is refused as not led here.)
    ///
    /// `committed_isr`: the ISR's size in the newest committed metadata, which this broker may
    /// not have applied to the partition yet. A shrink committed there already counts: a
    /// client that saw the smaller ISR in Metadata gets NOT_ENOUGH_REPLICAS, not an append
    /// that waits for a replica the ISR no longer holds and times out.
    pub fn check_acks_all(&self, committed_isr: Option<usize>) -> Result<(), (usize, usize)> {
        match self.leadership().as_ref() {
            Some(leader) => {
                leader.check_acks_all().map_err(|e| (e.isr, e.min_insync_replicas))?;
                match committed_isr {
                    Some(isr) if isr < leader.min_insync_replicas() => Err((isr, leader.min_insync_replicas())),
                    _ => Ok(()),
                }
            }
            None => Ok(()),
        }
    }

    /// Where an acks=all produce appended at `leader_epoch` whose last record is at
    /// `last_offset` stands.
    pub fn acks_all(&self, leader_epoch: i32, last_offset: i64) -> AcksAllState {
        match self.leadership().as_ref() {
            Some(leader) if leader.leader_epoch() == leader_epoch => match leader.acks_all(last_offset) {
                AcksAll::Waiting => AcksAllState::Waiting,
                AcksAll::Acknowledged => AcksAllState::Acknowledged,
                AcksAll::NotEnoughReplicasAfterAppend => AcksAllState::NotEnoughReplicasAfterAppend,
            },
            Some(_) | None => AcksAllState::NotLeader,
        }
    }

    /// Follows the committed metadata for this partition: the role, and, when this broker
    /// leads, the replication leader's state (a new one when the leader epoch moves, written
    /// into the log's epoch cache first, as Kafka's `makeLeader` does). Returns whether the
    /// high watermark moved.
    pub fn apply_state(
        &self,
        node_id: i32,
        state: &strom_metadata::PartitionState,
        config: ReplicaConfig,
        now_ms: i64,
    ) -> Result<bool, strom_storage::StorageError> {
        let role = if state.leader == node_id {
            Role::Leader {
                leader_epoch: state.leader_epoch,
            }
        } else if state.replicas.contains(&node_id) {
            Role::Follower {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
            }
        } else {
            Role::None {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
            }
        };
        if !matches!(role, Role::Leader { .. }) {
            self.set_role(role);
            self.set_leadership(None);
            return Ok(false);
        }
        let assignment = Assignment {
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
        };
        let mut guard = self.lock();
        let Some(log) = guard.as_mut() else {
            self.set_role(role);
            self.set_leadership(None);
            return Ok(false);
        };
        let before = log.high_watermark();
        let mut leadership = self.leadership();
        match leadership.as_mut() {
            Some(leader) if leader.leader_epoch() == state.leader_epoch => {
                let _ = leader.set_config(config);
                let _ = leader.update_assignment(assignment, now_ms);
            }
            _ => {
                log.assign_leader_epoch(state.leader_epoch)?;
                let leader = Leader::new(
                    node_id,
                    config,
                    assignment,
                    log.log_end_offset(),
                    log.high_watermark(),
                    now_ms,
                );
                tracing::info!(
                    topic = %self.topic,
                    partition = self.index,
                    leader_epoch = state.leader_epoch,
                    isr = ?state.isr,
                    log_end_offset = log.log_end_offset(),
                    "leading the partition"
                );
                *leadership = Some(leader);
                self.isr_change_in_flight.store(false, Ordering::Release);
            }
        }
        let high_watermark = leadership.as_ref().map_or(before, Leader::high_watermark);
        drop(leadership);
        if high_watermark > log.high_watermark() {
            log.set_high_watermark(high_watermark);
        }
        let moved = log.high_watermark() != before;
        drop(guard);
        self.set_role(role);
        Ok(moved)
    }

    /// Waits until an append at `leader_epoch` whose last record is at `last_offset` is on
    /// every in-sync replica (or something else settles it), or `deadline`. `changes` is the
    /// broker's append signal, which every high watermark move and metadata change bumps.
    pub async fn until_replicated(
        &self,
        changes: &mut tokio::sync::watch::Receiver<u64>,
        leader_epoch: i32,
        last_offset: i64,
        deadline: tokio::time::Instant,
    ) -> AcksAllState {
        loop {
            changes.borrow_and_update();
            let state = self.acks_all(leader_epoch, last_offset);
            if state != AcksAllState::Waiting {
                return state;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return state },
                _ = tokio::time::sleep_until(deadline) => return AcksAllState::Waiting,
            }
        }
    }
}
