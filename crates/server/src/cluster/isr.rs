//! The leader's ISR changes on their way to the controller (AlterPartition, KIP-497; all of a
//! broker's pending changes in one request), and the replication timer: lagging followers leave the ISR, lost answers are asked again, high
//! watermarks are checkpointed.
//!
//! The ISR itself changes only when the committed metadata says so (the partition's
//! [`strom_replication::Leader`] learns it from the image); an answer here only tells whether
//! to try again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::controller::{AlterPartition, IsrMember};
use strom_metadata::{ControllerError, LeaderRecoveryState};
use strom_replication::IsrProposal;
use tokio::sync::watch;

use super::protocol::{ControllerReply, ControllerRequest};
use crate::broker::Broker;
use crate::clock::steady_ms;
use crate::partition::Partition;

/// How long an AlterPartition may wait for the controller before the timer sends it again
/// (on a fresh connection: one cut by a network fault recovers only at TCP's pace).
const ALTER_PARTITION_TIMEOUT: Duration = Duration::from_secs(3);
/// `replica.high.watermark.checkpoint.interval.ms`.
const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: i64 = 5_000;

/// ISR changes waiting to go to the controller. They leave together, one request at a time
/// per broker ([`run_sender`]): a broker that takes a thousand partitions back into sync after
/// a restart sends one request, not a thousand.
#[derive(Default)]
pub(crate) struct IsrChanges {
    queue: std::sync::Mutex<Vec<(Arc<Partition>, AlterPartition)>>,
    queued: tokio::sync::Notify,
}

/// Queues `proposal` for `partition` unless a change for it is already on its way.
pub(crate) fn propose(broker: &Arc<Broker>, partition: Arc<Partition>, topic_id: uuid::Uuid, proposal: IsrProposal) {
    let cluster = broker.cluster.clone();
    if partition.isr_change_in_flight.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(session) = *broker.session.borrow() else {
        partition.isr_change_in_flight.store(false, Ordering::Release);
        return;
    };
    let change = AlterPartition {
        broker_id: broker.node_id(),
        broker_epoch: session.epoch,
        topic_id,
        partition: partition.index,
        leader_epoch: proposal.leader_epoch,
        partition_epoch: proposal.partition_epoch,
        new_isr: proposal
            .isr
            .iter()
            .map(|&(id, broker_epoch)| IsrMember { id, broker_epoch })
            .collect(),
        // The leader holds everything it has: a partition recovering from an unclean election
        // is recovered once its leader changes the ISR.
        leader_recovery_state: LeaderRecoveryState::Recovered,
    };
    tracing::debug!(
        topic = %partition.topic,
        partition = partition.index,
        isr = ?proposal.isr.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        partition_epoch = proposal.partition_epoch,
        "proposing an ISR change"
    );
    cluster
        .isr_changes
        .queue
        .lock()
        .expect("ISR queue lock")
        .push((partition, change));
    cluster.isr_changes.queued.notify_one();
}

/// Sends the queued ISR changes, all at once, whenever there are some; runs until `stop`.
pub(crate) async fn run_sender(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let cluster = broker.cluster.clone();
    loop {
        tokio::select! {
            _ = cluster.isr_changes.queued.notified() => {}
            _ = stop.changed() => return,
        }
        let batch = std::mem::take(&mut *cluster.isr_changes.queue.lock().expect("ISR queue lock"));
        if batch.is_empty() {
            continue;
        }
        let (partitions, changes): (Vec<Arc<Partition>>, Vec<AlterPartition>) = batch.into_iter().unzip();
        let count = changes.len();
        let request = ControllerRequest::AlterPartitions(changes.clone());
        let answers: Vec<Result<(), String>> = match cluster.call(&request, ALTER_PARTITION_TIMEOUT).await {
            Ok(ControllerReply::AlterPartitions(replies)) if replies.len() == count => replies
                .into_iter()
                .zip(&partitions)
                .zip(&changes)
                .map(|((reply, partition), change)| match reply {
                    Ok(_) => Ok(()),
                    // Refused at the current partition epoch: nothing was committed, propose
                    // afresh.
                    Err(error @ (ControllerError::IneligibleReplica(_) | ControllerError::InvalidRequest(_))) => {
                        tracing::info!(topic = %partition.topic, partition = partition.index, %error, "ISR change refused");
                        if let Some(leader) = partition.leadership().as_mut() {
                            if leader.leader_epoch() == change.leader_epoch {
                                leader.on_proposal_refused();
                            }
                        }
                        Ok(())
                    }
                    // The leadership or the partition epoch moved: the metadata saying so is
                    // coming.
                    Err(error) => {
                        tracing::debug!(topic = %partition.topic, partition = partition.index, %error, "ISR change not applied");
                        Ok(())
                    }
                })
                .collect(),
            Ok(other) => vec![Err(format!("unexpected answer: {other:?}")); count],
            Err(e) => vec![Err(e); count],
        };
        let unanswered = answers.iter().filter(|a| a.is_err()).count();
        if let Some(Err(e)) = answers.into_iter().find(Result::is_err) {
            // The timer sends them again.
            tracing::warn!(changes = unanswered, error = %e, "ISR changes unanswered");
        }
        for partition in partitions {
            partition.isr_change_in_flight.store(false, Ordering::Release);
        }
    }
}

/// Every half `replica.lag.time.max.ms` (at most every second): followers that stopped
/// catching up are proposed out of the ISR, changes whose answers were lost are sent again,
/// and, every few seconds, high watermarks are checkpointed. Runs until `stop`.
pub(crate) async fn run_timer(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let cluster = broker.cluster.clone();
    let period = Duration::from_millis((cluster.config.replica_lag_time_max_ms / 2).clamp(100, 1_000) as u64);
    let mut last_checkpoint = steady_ms();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        // Followers' lag is measured on the steady clock (`clock.rs`), as their fetches are.
        let now = steady_ms();
        for topic in broker.topics.list() {
            for partition in topic.partitions() {
                let proposal = {
                    let mut leadership = partition.leadership();
                    let Some(leader) = leadership.as_mut() else { continue };
                    leader.tick(now).or_else(|| leader.pending_proposal())
                };
                if let Some(proposal) = proposal {
                    propose(&broker, partition.clone(), topic.id, proposal);
                }
            }
        }
        if now - last_checkpoint >= HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS {
            last_checkpoint = now;
            let checkpointing = broker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                checkpointing.topics.checkpoint_high_watermarks();
                // Also here for flushes outside the flush pass (`flush.messages`, or with
                // `log.flush.interval.ms=0` no pass at all); nothing is written if nothing moved.
                checkpointing.topics.checkpoint_recovery_points();
            })
            .await;
        }
    }
}
