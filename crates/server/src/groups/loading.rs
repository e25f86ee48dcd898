//! Which groups this broker coordinates, and loading them as leadership of their
//! `__consumer_offsets` partitions comes and goes ([`lead_partitions`]).

use std::collections::{BTreeSet, HashMap};

use strom_group::{GroupError, JoinAnswer, Record};
use strom_record::control::{parse_marker, Marker};

use super::{hold_pending, offsets_partition_count, Groups, State, Waiter, OFFSETS_TOPIC};
use crate::clock::now_ms;
use crate::internal_topic;
use crate::ownership::NotOwned;

/// The records of one `__consumer_offsets` partition that take effect, in order (a
/// transaction's once its commit marker is read), and those of transactions still open at the
/// end, by producer id.
fn read_partition(log: &strom_storage::Log, partition: i32) -> (Vec<Record>, HashMap<i64, Vec<Record>>) {
    let mut effective = Vec::new();
    let mut open: HashMap<i64, Vec<Record>> = HashMap::new();
    internal_topic::for_each_batch(log, OFFSETS_TOPIC, partition, &mut |header, bytes| {
        if header.is_control() {
            let records = open.remove(&header.producer_id).unwrap_or_default();
            if parse_marker(bytes) == Some(Marker::Commit) {
                effective.extend(records);
            }
            return;
        }
        let records = match strom_record::records::decode_records(bytes) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(partition, error = %e, "undecodable offsets batch skipped");
                return;
            }
        };
        for record in records {
            let Some(key) = record.key else { continue };
            match Record::decode(key, record.value) {
                Ok(record) if header.is_transactional() => {
                    open.entry(header.producer_id).or_default().push(record);
                }
                Ok(record) => effective.push(record),
                Err(e) => tracing::warn!(partition, error = %e, "undecodable offsets record skipped"),
            }
        }
    });
    (effective, open)
}

/// Whether this broker coordinates `group_id` now, for the requests that change a group
/// (joins, heartbeats, commits, deletions): NOT_COORDINATOR if its partition is led elsewhere
/// or this broker holds no lease (`cluster/lease.rs`: the controller may have fenced it, or a
/// restarted broker has not registered yet and leads only in its old image), so no member is
/// ever handed an assignment by a coordinator that may not be one;
/// COORDINATOR_LOAD_IN_PROGRESS while the partition is being loaded.
pub(super) fn owns(groups: &Groups, state: &State, partition_count: i32, group_id: &str) -> Result<(), GroupError> {
    if !holds_lease(groups) {
        return Err(GroupError::NotCoordinator);
    }
    ownership(state, partition_count, group_id)
}

fn ownership(state: &State, partition_count: i32, group_id: &str) -> Result<(), GroupError> {
    let partition = strom_group::partition_for(group_id, partition_count);
    state.ownership.check(partition).map_err(|refusal| match refusal {
        NotOwned::LoadInProgress => GroupError::CoordinatorLoadInProgress,
        NotOwned::NotCoordinator => GroupError::NotCoordinator,
    })
}

fn holds_lease(groups: &Groups) -> bool {
    let lease = &groups.logs.cluster.lease;
    if lease.holds() {
        return true;
    }
    crate::log_limit::throttled!(
        warn,
        lapsed_ms = ?lease.lapsed_ms(),
        "group requests refused: the controller has not confirmed this broker's session (no lease)"
    );
    false
}

/// Whether this broker coordinates `group_id` now, for the handlers that answer from the
/// coordinator's memory (OffsetFetch, TxnOffsetCommit's check, describing): as [`owns`], except
/// that without a lease the answer is COORDINATOR_LOAD_IN_PROGRESS, which clients retry where
/// they are. librdkafka never asks again for the committed offsets of an assignment whose
/// OffsetFetch was refused NOT_COORDINATOR as a whole (librdkafka issue 5586: the partitions
/// are never fetched until the next rebalance); a lease that comes back (the heal of a cut)
/// then lets the retry through.
pub fn check_coordinator(groups: &Groups, group_id: &str) -> Result<(), GroupError> {
    if !holds_lease(groups) {
        return Err(GroupError::CoordinatorLoadInProgress);
    }
    let count = offsets_partition_count(groups);
    ownership(&groups.lock(), count, group_id)
}

/// In a cluster, after the metadata moved: this broker's coordinator takes on the groups of
/// the `__consumer_offsets` partitions it now leads (loading their records: meanwhile their
/// requests get COORDINATOR_LOAD_IN_PROGRESS) and lets go of those it no longer leads (their
/// parked requests get NOT_COORDINATOR, so clients look for the new coordinator).
pub fn lead_partitions(groups: &Groups, led: &BTreeSet<i32>) {
    let count = offsets_partition_count(groups);
    let (gained, lost) = groups.lock().ownership.lead(led);
    if !lost.is_empty() {
        let mut state = groups.lock();
        let tokens = state
            .coordinator
            .unload(|group_id| lost.contains(&strom_group::partition_for(group_id, count)));
        for pending in state.pending_txn.values_mut() {
            pending.retain(|(group_id, _, _), _| !lost.contains(&strom_group::partition_for(group_id, count)));
        }
        state.pending_txn.retain(|_, pending| !pending.is_empty());
        for token in tokens {
            match state.waiters.remove(&token) {
                Some(Waiter::Join(sender)) => {
                    let _ = sender.send(JoinAnswer {
                        error: Some(GroupError::NotCoordinator),
                        generation_id: -1,
                        ..JoinAnswer::default()
                    });
                }
                Some(Waiter::Sync(sender)) => {
                    let _ = sender.send(Err(GroupError::NotCoordinator));
                }
                None => {}
            }
        }
        tracing::info!(partitions = ?lost, "no longer coordinating the groups of these __consumer_offsets partitions");
    }
    let Some(topic) = groups.logs.topics.get(OFFSETS_TOPIC) else {
        return;
    };
    for partition in gained {
        // Read outside the coordinator's lock: other groups carry on meanwhile.
        let read = topic
            .partition(partition)
            .and_then(|p| p.lock().as_ref().map(|log| read_partition(log, partition)));
        let mut state = groups.lock();
        if !state.ownership.loaded(partition) {
            continue; // lost again meanwhile
        }
        let (records, open) = read.unwrap_or_default();
        let count = records.len();
        let now = now_ms();
        for record in records {
            state.coordinator.apply(now, record);
        }
        for (producer_id, records) in open {
            hold_pending(state.pending_txn.entry(producer_id).or_default(), records);
        }
        tracing::info!(
            partition,
            records = count,
            "coordinating the groups of a __consumer_offsets partition"
        );
    }
    groups.deadline_changed.notify_one();
}
