//! The group coordinator inside the broker: [`strom_group::Coordinator`] behind one lock, its
//! records written to `__consumer_offsets`, its parked JoinGroup and SyncGroup answers
//! delivered to the connections waiting for them, and its clock ticked by a background task.
//!
//! Records are appended under the coordinator lock and before the answers that follow them
//! are delivered, so the order in the log is the order of decisions, and a committed offset is
//! visible to OffsetFetch only once it is in the log. `__consumer_offsets` is an ordinary
//! compacted topic, created on first use with `offsets.topic.num.partitions` partitions; at
//! start-up its records are replayed into the coordinator.
//!
//! Offsets committed inside a transaction (TxnOffsetCommit) are written at once, as a
//! transactional batch under the producer's id, and held pending; the transaction's marker in
//! the same partition makes them take effect (commit) or drops them (abort). Replay follows
//! the same rule, and transactions still open at start-up stay pending until the transaction
//! coordinator ends them.
//!
//! `loading` decides which groups this broker coordinates (those of the `__consumer_offsets`
//! partitions it leads) and reads them in.
//!
//! The coordinator reaches the broker's partitions through [`CoordinatorLogs`]; it knows
//! nothing of the broker that holds it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use strom_group::{
    ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatAnswer, Coordinator, GroupConfig, GroupDescription,
    GroupError, GroupListing, JoinAnswer, JoinRequest, LeavingMember, MemberRef, OffsetCommit, OffsetToCommit, Output,
    Record, SyncAnswer, SyncRequest, Token,
};
use tokio::sync::{oneshot, watch, Notify};

use crate::clock::now_ms;

mod loading;
pub use crate::internal_topic::OFFSETS_TOPIC;
use crate::internal_topic::{CoordinatorLogs, InternalTopic, PersistError};
use crate::ownership::Ownership;
use loading::owns;
pub use loading::{check_coordinator, lead_partitions};

/// The timer task wakes at least this often, so a missed notification costs at most this.
const TICK_INTERVAL_MAX_MS: i64 = 1000;
/// How long a commit waits for the in-sync replicas before it is answered as failed.
const COMMIT_REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

/// One open transaction's offsets, keyed by (group, topic, partition): a later commit of a
/// partition replaces the earlier, as it would on commit, so they stay bounded by the
/// partitions a transaction commits, not by how often it commits them.
type PendingOffsets = HashMap<(String, String, i32), Record>;

fn hold_pending(pending: &mut PendingOffsets, records: Vec<Record>) {
    for record in records {
        if let Record::Offset {
            group_id,
            topic,
            partition,
            ..
        } = &record
        {
            let key = (group_id.clone(), topic.clone(), *partition);
            let _ = pending.insert(key, record);
        }
    }
}

enum Waiter {
    Join(oneshot::Sender<JoinAnswer>),
    Sync(oneshot::Sender<Result<SyncAnswer, GroupError>>),
}

struct State {
    coordinator: Coordinator,
    /// Which groups this broker coordinates: the groups of the `__consumer_offsets`
    /// partitions it owns.
    ownership: Ownership,
    waiters: HashMap<Token, Waiter>,
    next_token: Token,
    /// Offsets written in open transactions, by producer id; the latest per partition.
    pending_txn: HashMap<i64, PendingOffsets>,
}

pub struct Groups {
    state: Mutex<State>,
    /// Woken when a request may have brought the next deadline closer.
    deadline_changed: Notify,
    offsets: OffsetsTopic,
    logs: CoordinatorLogs,
}

/// `__consumer_offsets` as the broker's configuration describes it.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsTopic {
    /// `offsets.topic.num.partitions`, until the topic exists.
    pub partitions: i32,
    /// `offsets.topic.segment.bytes`.
    pub segment_bytes: u64,
    /// `offsets.topic.replication.factor`, for creating the topic.
    pub replication_factor: i16,
    /// `offsets.retention.minutes`, in ms.
    pub retention_ms: i64,
}

/// What an offset commit did for one partition.
pub type CommitResult = Result<(), CommitError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitError {
    Group(GroupError),
    UnknownTopicOrPartition,
    Storage,
    /// A transactional commit from an epoch the partition has already seen superseded.
    ProducerFenced,
}

impl Groups {
    /// An empty coordinator: it loads each `__consumer_offsets` partition when it comes to
    /// lead it ([`lead_partitions`]).
    pub fn new(config: GroupConfig, offsets: OffsetsTopic, logs: CoordinatorLogs) -> Groups {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        let coordinator = Coordinator::new(config, seed);
        Groups {
            state: Mutex::new(State {
                coordinator,
                ownership: Ownership::default(),
                waiters: HashMap::new(),
                next_token: 0,
                pending_txn: HashMap::new(),
            }),
            deadline_changed: Notify::new(),
            offsets,
            logs,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("group coordinator lock")
    }
}

/// At shutdown, answers every parked JoinGroup and SyncGroup with COORDINATOR_NOT_AVAILABLE,
/// as Kafka does when a coordinator unloads its groups: the clients look for a coordinator
/// again instead of holding the shutdown for up to a rebalance timeout.
pub fn release_waiters(groups: &Groups) {
    let mut state = groups.lock();
    for (_, waiter) in state.waiters.drain() {
        match waiter {
            Waiter::Join(sender) => {
                let _ = sender.send(JoinAnswer {
                    error: Some(GroupError::CoordinatorNotAvailable),
                    generation_id: -1,
                    ..JoinAnswer::default()
                });
            }
            Waiter::Sync(sender) => {
                let _ = sender.send(Err(GroupError::CoordinatorNotAvailable));
            }
        }
    }
}

/// JoinGroup: waits, if the group is rebalancing, until the new generation forms (bounded by
/// the rebalance timeout) or the member is answered otherwise.
pub async fn join(groups: &Groups, request: JoinRequest) -> JoinAnswer {
    let (sender, receiver) = oneshot::channel();
    {
        let count = offsets_partition_count(groups);
        let mut state = groups.lock();
        // Checked under the lock `release_waiters` takes, so no request parks after it ran.
        let refused = if groups.logs.signals.is_shutting_down() {
            Some(GroupError::CoordinatorNotAvailable)
        } else {
            owns(groups, &state, count, &request.group_id).err()
        };
        if let Some(error) = refused {
            return JoinAnswer {
                error: Some(error),
                generation_id: -1,
                member_id: request.member_id,
                ..JoinAnswer::default()
            };
        }
        let token = register(&mut state, Waiter::Join(sender));
        state.coordinator.join(now_ms(), token, request);
        carry_out(groups, &mut state);
    }
    groups.deadline_changed.notify_one();
    receiver.await.unwrap_or_else(|_| JoinAnswer {
        error: Some(GroupError::CoordinatorNotAvailable),
        generation_id: -1,
        ..JoinAnswer::default()
    })
}

/// SyncGroup: a follower waits for the leader's assignment.
pub async fn sync(groups: &Groups, request: SyncRequest) -> Result<SyncAnswer, GroupError> {
    let (sender, receiver) = oneshot::channel();
    {
        let count = offsets_partition_count(groups);
        let mut state = groups.lock();
        if groups.logs.signals.is_shutting_down() {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        owns(groups, &state, count, &request.group_id)?;
        let token = register(&mut state, Waiter::Sync(sender));
        state.coordinator.sync(now_ms(), token, request);
        carry_out(groups, &mut state);
    }
    groups.deadline_changed.notify_one();
    receiver.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable))
}

pub fn heartbeat(groups: &Groups, request: &MemberRef) -> Result<(), GroupError> {
    let count = offsets_partition_count(groups);
    let mut state = groups.lock();
    owns(groups, &state, count, &request.group_id)?;
    state.coordinator.heartbeat(now_ms(), request)
}

pub fn leave(
    groups: &Groups,
    group_id: &str,
    members: &[LeavingMember],
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    let count = offsets_partition_count(groups);
    let result = {
        let mut state = groups.lock();
        owns(groups, &state, count, group_id)?;
        let result = state.coordinator.leave(now_ms(), group_id, members);
        carry_out(groups, &mut state);
        result
    };
    groups.deadline_changed.notify_one();
    result
}

/// OffsetCommit: offsets of partitions that exist are written, then take effect.
pub fn commit(
    groups: &Groups,
    committer: &MemberRef,
    offsets: &[OffsetToCommit],
) -> Result<Vec<CommitResult>, GroupError> {
    commit_with(groups, committer, offsets, None)
}

/// TxnOffsetCommit: offsets are written now as part of the producer's transaction and take
/// effect when its commit marker reaches the group's partition. The caller has had the
/// transaction coordinator check the partition is in the transaction (`crate::txns`).
pub fn txn_commit(
    groups: &Groups,
    committer: &MemberRef,
    producer: (i64, i16),
    offsets: &[OffsetToCommit],
) -> Result<Vec<CommitResult>, GroupError> {
    commit_with(groups, committer, offsets, Some(producer))
}

/// Both commits: offsets of unknown partitions are refused, the coordinator checks the rest,
/// those it accepts are written as one batch (transactional under `producer`), and only then
/// take effect (plain) or are held until the transaction ends (transactional).
fn commit_with(
    groups: &Groups,
    committer: &MemberRef,
    offsets: &[OffsetToCommit],
    producer: Option<(i64, i16)>,
) -> Result<Vec<CommitResult>, GroupError> {
    let mut results: Vec<CommitResult> = vec![Ok(()); offsets.len()];
    let mut known = Vec::with_capacity(offsets.len());
    let mut known_at = Vec::with_capacity(offsets.len());
    for (index, offset) in offsets.iter().enumerate() {
        if groups.logs.topics.partition(&offset.topic, offset.partition).is_some() {
            known.push(offset.clone());
            known_at.push(index);
        } else {
            results[index] = Err(CommitError::UnknownTopicOrPartition);
        }
    }
    let count = offsets_partition_count(groups);
    let mut state = groups.lock();
    owns(groups, &state, count, &committer.group_id)?;
    let prepared = match producer {
        None => state.coordinator.prepare_commit(now_ms(), committer, &known)?,
        Some(_) => state.coordinator.prepare_txn_commit(now_ms(), committer, &known)?,
    };
    let mut to_write = Vec::new();
    let mut written_at = Vec::new();
    for (record, index) in prepared.into_iter().zip(known_at) {
        match record {
            Ok(record) => {
                to_write.push(record);
                written_at.push(index);
            }
            Err(error) => results[index] = Err(CommitError::Group(error)),
        }
    }
    if to_write.is_empty() {
        return Ok(results);
    }
    match (
        persist_batch(groups, &committer.group_id, &to_write, producer),
        producer,
    ) {
        (Ok(()), None) => {
            let now = now_ms();
            for record in to_write {
                state.coordinator.apply(now, record);
            }
        }
        (Ok(()), Some((producer_id, _))) => {
            hold_pending(state.pending_txn.entry(producer_id).or_default(), to_write);
        }
        (Err(e), _) => {
            let error = if matches!(e, PersistError::Fenced) {
                CommitError::ProducerFenced
            } else if matches!(e, PersistError::NotLeader(_)) {
                CommitError::Group(GroupError::NotCoordinator)
            } else {
                tracing::error!(group = committer.group_id, error = %e, "offset commit not written");
                CommitError::Storage
            };
            for index in written_at {
                results[index] = Err(error);
            }
        }
    }
    Ok(results)
}

/// After a marker for `producer_id` was written to `__consumer_offsets` partition
/// `partition`: the producer's pending offsets of groups in that partition take effect
/// (commit) or are dropped (abort).
pub fn end_txn(groups: &Groups, partition: i32, producer_id: i64, commit: bool) {
    let partition_count = offsets_partition_count(groups);
    let mut state = groups.lock();
    let Some(pending) = state.pending_txn.remove(&producer_id) else {
        return;
    };
    let (ours, others): (PendingOffsets, PendingOffsets) = pending
        .into_iter()
        .partition(|((group_id, _, _), _)| strom_group::partition_for(group_id, partition_count) == partition);
    if !others.is_empty() {
        let _ = state.pending_txn.insert(producer_id, others);
    }
    if commit {
        let now = now_ms();
        for record in ours.into_values() {
            state.coordinator.apply(now, record);
        }
    }
}

/// Partitions of a group with offsets pending in an open transaction.
pub fn pending_txn_offsets(groups: &Groups, group_id: &str) -> HashSet<(String, i32)> {
    let state = groups.lock();
    state
        .pending_txn
        .values()
        .flat_map(HashMap::keys)
        .filter(|(group, _, _)| group == group_id)
        .map(|(_, topic, partition)| (topic.clone(), *partition))
        .collect()
}

pub fn fetch_offsets(
    groups: &Groups,
    group_id: &str,
    partitions: Option<&[(String, i32)]>,
) -> Vec<(String, i32, Option<OffsetCommit>)> {
    groups.lock().coordinator.fetch_offsets(group_id, partitions)
}

/// ConsumerGroupHeartbeat, given the broker's current topics.
pub fn consumer_heartbeat(groups: &Groups, request: ConsumerHeartbeat) -> Result<ConsumerHeartbeatAnswer, GroupError> {
    let topics: BTreeMap<String, i32> = groups
        .logs
        .topics
        .list()
        .iter()
        .filter(|topic| !topic.is_internal())
        .map(|topic| (topic.name.clone(), topic.partition_count()))
        .collect();
    let count = offsets_partition_count(groups);
    let answer = {
        let mut state = groups.lock();
        owns(groups, &state, count, &request.group_id)?;
        let answer = state.coordinator.consumer_heartbeat(now_ms(), request, &topics);
        // The group's new snapshot is written before the member hears of its new state.
        carry_out(groups, &mut state);
        answer
    };
    // A join or leave moves the next session deadline.
    groups.deadline_changed.notify_one();
    answer
}

pub fn describe_consumer_group(groups: &Groups, group_id: &str) -> Option<ConsumerGroupDescription> {
    groups.lock().coordinator.describe_consumer_group(group_id)
}

pub fn topic_names_by_id(groups: &Groups) -> HashMap<uuid::Uuid, String> {
    groups
        .logs
        .topics
        .list()
        .iter()
        .map(|topic| (topic.id, topic.name.clone()))
        .collect()
}

pub fn topic_ids_by_name(groups: &Groups) -> HashMap<String, uuid::Uuid> {
    groups
        .logs
        .topics
        .list()
        .iter()
        .map(|topic| (topic.name.clone(), topic.id))
        .collect()
}

pub fn list(groups: &Groups) -> Vec<GroupListing> {
    groups.lock().coordinator.list_groups()
}

pub fn describe(groups: &Groups, group_id: &str) -> Option<GroupDescription> {
    groups.lock().coordinator.describe_group(group_id)
}

/// DeleteGroups for one group: its offsets and metadata are tombstoned, then forgotten.
pub fn delete_group(groups: &Groups, group_id: &str) -> Result<(), CommitError> {
    let count = offsets_partition_count(groups);
    let mut state = groups.lock();
    owns(groups, &state, count, group_id).map_err(CommitError::Group)?;
    let tombstones = state
        .coordinator
        .prepare_group_delete(group_id)
        .map_err(CommitError::Group)?;
    persist(groups, group_id, &tombstones).map_err(|e| {
        tracing::error!(group = group_id, error = %e, "group deletion not written");
        CommitError::Storage
    })?;
    let now = now_ms();
    for record in tombstones {
        state.coordinator.apply(now, record);
    }
    Ok(())
}

/// OffsetDelete: per partition, whether its committed offset is gone.
pub fn delete_offsets(
    groups: &Groups,
    group_id: &str,
    partitions: &[(String, i32)],
    subscribed: impl Fn(&Bytes, &str) -> bool,
) -> Result<Vec<CommitResult>, GroupError> {
    let count = offsets_partition_count(groups);
    let mut state = groups.lock();
    owns(groups, &state, count, group_id)?;
    let prepared = state
        .coordinator
        .prepare_offset_delete(group_id, partitions, subscribed)?;
    let mut results = Vec::with_capacity(prepared.len());
    let mut tombstones = Vec::new();
    for (index, outcome) in prepared.into_iter().enumerate() {
        match outcome {
            Ok(Some(record)) => {
                tombstones.push((index, record));
                results.push(Ok(()));
            }
            Ok(None) => results.push(Ok(())),
            Err(error) => results.push(Err(CommitError::Group(error))),
        }
    }
    let records: Vec<Record> = tombstones.iter().map(|(_, record)| record.clone()).collect();
    if records.is_empty() {
        return Ok(results);
    }
    if let Err(e) = persist(groups, group_id, &records) {
        tracing::error!(group = group_id, error = %e, "offset deletion not written");
        for (index, _) in &tombstones {
            results[*index] = Err(CommitError::Storage);
        }
        return Ok(results);
    }
    let now = now_ms();
    for record in records {
        state.coordinator.apply(now, record);
    }
    Ok(results)
}

/// Whether a consumer's subscription metadata (a version, then the subscription) lists the
/// topic. Metadata that does not decode subscribes to nothing.
pub fn subscribes_to(metadata: &Bytes, topic: &str) -> bool {
    let mut buf = metadata.clone();
    let Ok(version) = buf.try_get_i16() else {
        return false;
    };
    // Versions beyond what the codec knows keep the v0 fields first, so they decode as its newest.
    let version = version.clamp(0, 3);
    ConsumerProtocolSubscription::decode(&mut buf, version)
        .is_ok_and(|subscription| subscription.topics.iter().any(|name| name.as_str() == topic))
}

/// Writes tombstones for committed offsets past `offsets.retention.minutes`, then forgets them.
pub fn expire_offsets(groups: &Groups) {
    let mut state = groups.lock();
    let records = state
        .coordinator
        .expired_records(now_ms(), groups.offsets.retention_ms, subscribes_to);
    if !records.is_empty() {
        tracing::info!(records = records.len(), "expiring committed offsets");
    }
    write_and_apply(groups, &mut state, records);
}

/// Forgets every group's committed offsets of a deleted topic.
pub fn forget_topic(groups: &Groups, topic: &str) {
    let mut state = groups.lock();
    let records = state.coordinator.offsets_of_topic(topic);
    write_and_apply(groups, &mut state, records);
}

/// Writes records, one batch per group, and applies those that were written.
fn write_and_apply(groups: &Groups, state: &mut State, records: Vec<Record>) {
    let mut by_group: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for record in records {
        by_group.entry(record.group_id().to_string()).or_default().push(record);
    }
    let now = now_ms();
    for (group_id, records) in by_group {
        match persist(groups, &group_id, &records) {
            Ok(()) => {
                for record in records {
                    state.coordinator.apply(now, record);
                }
            }
            Err(e) => tracing::error!(group = group_id, error = %e, "offset tombstones not written"),
        }
    }
}

/// Ticks the coordinator whenever its next deadline comes, until `stop` changes.
pub async fn run_timers(groups: Arc<Groups>, mut stop: watch::Receiver<bool>) {
    loop {
        let wait_ms = {
            let state = groups.lock();
            let now = now_ms();
            state
                .coordinator
                .next_deadline()
                .map_or(TICK_INTERVAL_MAX_MS, |at| (at - now).clamp(0, TICK_INTERVAL_MAX_MS))
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = groups.deadline_changed.notified() => continue,
            _ = stop.changed() => return,
        }
        let mut state = groups.lock();
        state.coordinator.tick(now_ms());
        carry_out(&groups, &mut state);
    }
}

fn register(state: &mut State, waiter: Waiter) -> Token {
    state.next_token += 1;
    let token = state.next_token;
    state.waiters.insert(token, waiter);
    token
}

/// Carries out the coordinator's outputs in order: records are written before the answers
/// that follow them are released. A group metadata record that cannot be written costs a
/// rebalance after a restart, not correctness, so the answers still go out.
fn carry_out(groups: &Groups, state: &mut State) {
    for output in state.coordinator.take_outputs() {
        match output {
            Output::Persist(record) => {
                let group_id = record.group_id().to_string();
                if let Err(e) = persist(groups, &group_id, std::slice::from_ref(&record)) {
                    tracing::error!(group = group_id, error = %e, "group metadata not written");
                }
            }
            Output::Join { token, answer } => {
                if let Some(Waiter::Join(sender)) = state.waiters.remove(&token) {
                    let _ = sender.send(answer);
                }
            }
            Output::Sync { token, answer } => {
                if let Some(Waiter::Sync(sender)) = state.waiters.remove(&token) {
                    let _ = sender.send(answer);
                }
            }
        }
    }
}

/// Appends records of one group as one batch to the group's offsets partition.
fn persist(groups: &Groups, group_id: &str, records: &[Record]) -> Result<(), PersistError> {
    persist_batch(groups, group_id, records, None)
}

/// Appends records as one batch, transactional under `producer` (id, epoch) if given.
fn persist_batch(
    groups: &Groups,
    group_id: &str,
    records: &[Record],
    producer: Option<(i64, i16)>,
) -> Result<(), PersistError> {
    let offsets = offsets_topic(groups);
    let index = strom_group::partition_for(group_id, offsets.get_or_create(&groups.logs)?.partition_count());
    let encoded: Vec<(Bytes, Option<Bytes>)> = records.iter().map(Record::encode).collect();
    offsets.append(&groups.logs, index, &encoded, producer).map(|_| ())
}

/// The `__consumer_offsets` partition that holds a group (AddOffsetsToTxn adds it to a
/// transaction).
pub fn offsets_partition_of(groups: &Groups, group_id: &str) -> i32 {
    strom_group::partition_for(group_id, offsets_partition_count(groups))
}

fn offsets_partition_count(groups: &Groups) -> i32 {
    groups
        .logs
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(groups.offsets.partitions, |topic| topic.partition_count())
}

fn offsets_topic(groups: &Groups) -> InternalTopic {
    InternalTopic {
        name: OFFSETS_TOPIC,
        partitions: groups.offsets.partitions,
        segment_bytes: groups.offsets.segment_bytes,
        replication_factor: groups.offsets.replication_factor,
    }
}

/// Waits until everything written so far to the group's `__consumer_offsets` partition is on
/// every in-sync replica (at once in an ISR of one): a commit is answered only once it would
/// survive a failover. NOT_COORDINATOR if leadership moved meanwhile.
pub async fn until_commits_replicated(groups: &Groups, group_id: &str) -> Result<(), CommitError> {
    let Some((partition, epoch, last)) = written_position(groups, group_id) else {
        return Ok(());
    };
    let mut changes = groups.logs.signals.subscribe_appends();
    let deadline = tokio::time::Instant::now() + COMMIT_REPLICATION_TIMEOUT;
    match partition.until_replicated(&mut changes, epoch, last, deadline).await {
        crate::partition::AcksAllState::Acknowledged => Ok(()),
        crate::partition::AcksAllState::NotLeader => Err(CommitError::Group(GroupError::NotCoordinator)),
        _ => Err(CommitError::Storage),
    }
}

pub fn written_position(groups: &Groups, group_id: &str) -> Option<(Arc<crate::partition::Partition>, i32, i64)> {
    let topic = groups.logs.topics.get(OFFSETS_TOPIC)?;
    let partition = topic.partition(strom_group::partition_for(group_id, topic.partition_count()))?;
    let end = partition.lock().as_ref()?.log_end_offset();
    let epoch = partition.leader_epoch();
    Some((partition, epoch, end - 1))
}

/// Asks for the cluster's `__consumer_offsets` if it does not exist yet (FindCoordinator);
/// true once it does.
pub fn ensure_offsets_topic(groups: &Groups) -> bool {
    offsets_topic(groups).get_or_create(&groups.logs).is_ok()
}
