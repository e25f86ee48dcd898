//! The follower's side of replication: one fetcher per leader broker, carrying every
//! partition this broker follows there in one Fetch (with this broker's id as the replica id),
//! appending what comes back exactly as the leader wrote it.
//!
//! ```text
//!   image ──► reconcile ──► fetcher for broker 2 ── Fetch(replica 1, [t-0 @ 120/e5, u-3 @ 7/e4]) ──► leader 2
//!                           fetcher for broker 3        ◄── records, high watermark, diverging epoch
//!                              │ append_replicated / truncate_to / set_high_watermark
//!                              ▼
//!                           local logs
//! ```
//!
//! Each round names, per partition, the log end offset as the fetch offset and the epoch of
//! the last batch stored; the leader answers a follower whose log diverged with the epoch and
//! end offset where they part (KIP-595's diverging epoch), and the follower truncates there
//! (strom-replication's [`truncation`]) before fetching again. The follower's high watermark
//! is the leader's, capped at its own log end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use strom_replication::{truncation, EpochEndOffset};
use strom_storage::ReplicatedBatches;
use tokio::sync::{watch, Notify};

use super::peers::PeerConnection;
use crate::broker::{now_ms, Broker};
use crate::log_limit::throttled;
use crate::partition::{Partition, Role};

/// The Fetch version followers send: the last with topic names (Strom's ceiling).
const FETCH_VERSION: i16 = 12;
/// How long the leader may hold a fetch with nothing new (Kafka's `replica.fetch.wait.max.ms`).
const FETCH_WAIT_MS: i32 = 500;
/// Per partition (`replica.fetch.max.bytes`) and per request (`replica.fetch.response.max.bytes`).
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;
const RESPONSE_MAX_BYTES: i32 = 10 * 1024 * 1024;
/// A response larger than this is refused and the connection dropped: a leader never sends one.
const RESPONSE_FRAME_MAX: usize = 2 * RESPONSE_MAX_BYTES as usize + 1024 * 1024;
/// Beyond the leader's wait, how long a fetch may take before the connection is given up. A
/// fetch whose answer a network cut swallowed is otherwise resent only by TCP, whose
/// retransmissions double (3 s, 6 s, 12 s after the cut): a follower would stay silent for
/// seconds after the network healed, holding every acks=all write it is in sync for. A new
/// connection gets through at once.
const FETCH_TIMEOUT_SLACK: Duration = Duration::from_secs(2);
/// Between attempts after a failed connection or request (`replica.fetch.backoff.ms`).
const BACKOFF: Duration = Duration::from_millis(200);
/// A partition the leader refused (not leader yet, epoch ahead) waits this long, so the
/// metadata that settles it can arrive.
const PARTITION_BACKOFF: Duration = Duration::from_millis(50);

/// One partition followed from a leader.
#[derive(Clone)]
struct Followed {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Fetch's `last_fetched_epoch`: the epoch of the last batch stored (-1: none), read from
    /// the log when following starts and after a truncation, kept as batches are appended.
    last_fetched_epoch: Option<i32>,
    retry_at: Option<Instant>,
}

struct Fetcher {
    partitions: Arc<Mutex<BTreeMap<(String, i32), Followed>>>,
    changed: Arc<Notify>,
    stop: watch::Sender<bool>,
}

/// Every fetcher of this broker, by leader.
#[derive(Default)]
pub(crate) struct ReplicaFetchers {
    fetchers: Mutex<BTreeMap<i32, Fetcher>>,
}

impl ReplicaFetchers {
    /// Makes the fetchers match the partitions this broker follows now: each followed
    /// partition goes to its leader's fetcher, fetchers left with nothing stop.
    pub(crate) fn reconcile(&self, broker: &Arc<Broker>) {
        let mut wanted: BTreeMap<i32, Vec<(Arc<Partition>, i32)>> = BTreeMap::new();
        for topic in broker.topics.list() {
            for partition in topic.partitions() {
                if let Role::Follower { leader, leader_epoch } = partition.role() {
                    if leader >= 0 && partition.lock().is_some() {
                        wanted
                            .entry(leader)
                            .or_default()
                            .push((partition.clone(), leader_epoch));
                    }
                }
            }
        }
        let mut fetchers = self.fetchers.lock().expect("fetchers lock");
        fetchers.retain(|leader, fetcher| {
            let keep = wanted.contains_key(leader);
            if !keep {
                let _ = fetcher.stop.send(true);
            }
            keep
        });
        for (leader, partitions) in wanted {
            let fetcher = fetchers.entry(leader).or_insert_with(|| {
                let fetcher = Fetcher {
                    partitions: Arc::default(),
                    changed: Arc::default(),
                    stop: watch::channel(false).0,
                };
                tokio::spawn(run(
                    broker.clone(),
                    leader,
                    fetcher.partitions.clone(),
                    fetcher.changed.clone(),
                    fetcher.stop.subscribe(),
                ));
                tracing::info!(leader, "replica fetcher started");
                fetcher
            });
            let mut followed = fetcher.partitions.lock().expect("fetcher lock");
            let mut next = BTreeMap::new();
            for (partition, leader_epoch) in partitions {
                let key = (partition.topic.clone(), partition.index);
                let entry = match followed.remove(&key) {
                    Some(old) if Arc::ptr_eq(&old.partition, &partition) => Followed { leader_epoch, ..old },
                    _ => Followed {
                        partition,
                        leader_epoch,
                        last_fetched_epoch: None,
                        retry_at: None,
                    },
                };
                next.insert(key, entry);
            }
            *followed = next;
            drop(followed);
            fetcher.changed.notify_one();
        }
    }

    /// Stops every fetcher (shutdown).
    pub(crate) fn stop_all(&self) {
        let mut fetchers = self.fetchers.lock().expect("fetchers lock");
        for fetcher in fetchers.values() {
            let _ = fetcher.stop.send(true);
        }
        fetchers.clear();
    }
}

async fn run(
    broker: Arc<Broker>,
    leader: i32,
    partitions: Arc<Mutex<BTreeMap<(String, i32), Followed>>>,
    changed: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connection: Option<PeerConnection> = None;
    let mut last_error = String::new();
    loop {
        if *stop.borrow() || broker.is_shutting_down() {
            return;
        }
        let request = build_request(&broker, &partitions);
        let Some(request) = request else {
            // Nothing to fetch now (no partitions, or all waiting out a refusal).
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep(PARTITION_BACKOFF) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        if connection.is_none() {
            match PeerConnection::connect(&broker.cluster, leader).await {
                Ok(connected) => connection = Some(connected),
                Err(e) => {
                    if e != last_error {
                        tracing::warn!(leader, error = %e, "replica fetcher cannot reach the leader");
                        last_error = e;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(BACKOFF) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            }
        }
        let timeout = Duration::from_millis(request.max_wait_ms.max(0) as u64) + FETCH_TIMEOUT_SLACK;
        let exchange = connection
            .as_mut()
            .expect("connected above")
            .exchange::<_, FetchResponse>(ApiKey::Fetch, FETCH_VERSION, &request, timeout, RESPONSE_FRAME_MAX);
        let result = tokio::select! {
            result = exchange => result,
            _ = stop.changed() => return,
        };
        match result {
            Ok(response) => {
                last_error.clear();
                if response.error_code != 0 {
                    tracing::warn!(leader, error_code = response.error_code, "replica fetch refused");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
                let appended = apply_response(&partitions, response);
                if appended {
                    broker.notify_appended();
                }
            }
            Err(e) => {
                connection = None;
                if e != last_error {
                    tracing::warn!(leader, error = %e, "replica fetch failed; reconnecting");
                    last_error = e;
                }
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// One Fetch for every followed partition not waiting out a refusal; `None` if there is none.
fn build_request(broker: &Broker, partitions: &Mutex<BTreeMap<(String, i32), Followed>>) -> Option<FetchRequest> {
    let now = Instant::now();
    let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
    let mut followed = partitions.lock().expect("fetcher lock");
    for ((topic, index), state) in followed.iter_mut() {
        if state.retry_at.is_some_and(|at| at > now) {
            continue;
        }
        state.retry_at = None;
        let guard = state.partition.lock();
        let Some(log) = guard.as_ref() else { continue };
        let last_fetched_epoch = match state.last_fetched_epoch {
            Some(epoch) => epoch,
            None => match log.last_batch_epoch() {
                Ok(epoch) => {
                    let epoch = epoch.unwrap_or(-1);
                    state.last_fetched_epoch = Some(epoch);
                    epoch
                }
                Err(e) => {
                    tracing::error!(topic, partition = index, error = %e, "reading the last batch's epoch failed");
                    continue;
                }
            },
        };
        let mut fetch = FetchPartition::default();
        fetch.partition = *index;
        fetch.current_leader_epoch = state.leader_epoch;
        fetch.fetch_offset = log.log_end_offset();
        fetch.last_fetched_epoch = last_fetched_epoch;
        fetch.log_start_offset = log.log_start_offset();
        fetch.partition_max_bytes = PARTITION_MAX_BYTES;
        topics.entry(topic.clone()).or_default().push(fetch);
    }
    drop(followed);
    if topics.is_empty() {
        return None;
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(broker.node_id());
    request.max_wait_ms = FETCH_WAIT_MS;
    request.min_bytes = 1;
    request.max_bytes = RESPONSE_MAX_BYTES;
    request.isolation_level = 0;
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = FetchTopic::default();
            topic.topic = TopicName(StrBytes::from_string(name));
            topic.partitions = partitions;
            topic
        })
        .collect();
    Some(request)
}

/// Applies a leader's answer to the local logs. Returns whether anything was appended (or a
/// high watermark moved), so waiting readers wake.
fn apply_response(partitions: &Mutex<BTreeMap<(String, i32), Followed>>, response: FetchResponse) -> bool {
    let mut changed = false;
    let now = now_ms();
    for topic in response.responses {
        let name = topic.topic.to_string();
        for data in topic.partitions {
            let key = (name.clone(), data.partition_index);
            let Some(state) = partitions.lock().expect("fetcher lock").get(&key).cloned() else {
                continue;
            };
            // Leadership may have moved while the fetch was out: only the epoch it was for.
            let current = matches!(
                state.partition.role(),
                Role::Follower { leader_epoch, .. } if leader_epoch == state.leader_epoch
            );
            if !current {
                continue;
            }
            let outcome = apply_partition(&state, data, now);
            let mut followed = partitions.lock().expect("fetcher lock");
            if let Some(entry) = followed.get_mut(&key) {
                if !Arc::ptr_eq(&entry.partition, &state.partition) {
                    continue;
                }
                match outcome {
                    PartitionOutcome::Progress { last_fetched_epoch } => {
                        changed = true;
                        if last_fetched_epoch.is_some() {
                            entry.last_fetched_epoch = last_fetched_epoch;
                        }
                    }
                    PartitionOutcome::Truncated => {
                        changed = true;
                        entry.last_fetched_epoch = None;
                    }
                    PartitionOutcome::Nothing => {}
                    PartitionOutcome::Backoff => entry.retry_at = Some(Instant::now() + PARTITION_BACKOFF),
                }
            }
        }
    }
    changed
}

enum PartitionOutcome {
    /// Appended or moved the high watermark; the epoch of the last batch appended, if any.
    Progress {
        last_fetched_epoch: Option<i32>,
    },
    /// Truncated to where the logs agree: read the last epoch from the log again.
    Truncated,
    Nothing,
    /// Refused or failed: wait before asking again.
    Backoff,
}

fn apply_partition(state: &Followed, data: PartitionData, now: i64) -> PartitionOutcome {
    let partition = &state.partition;
    if data.error_code != 0 {
        let error = ResponseError::try_from_code(data.error_code);
        if error == Some(ResponseError::OffsetOutOfRange) {
            // The leader deleted what this follower needs next (retention, DeleteRecords while
            // it was away): start again, empty, at the leader's log start.
            let mut guard = partition.lock();
            if let Some(log) = guard.as_mut() {
                if data.log_start_offset > log.log_end_offset() {
                    return match log.truncate_fully_and_start_at(data.log_start_offset) {
                        Ok(()) => PartitionOutcome::Truncated,
                        Err(e) => {
                            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "could not start the log again at the leader's log start");
                            PartitionOutcome::Backoff
                        }
                    };
                }
            }
        }
        tracing::debug!(
            topic = %partition.topic,
            partition = partition.index,
            ?error,
            "replica fetch refused for the partition"
        );
        return PartitionOutcome::Backoff;
    }
    let mut guard = partition.lock();
    let Some(log) = guard.as_mut() else {
        return PartitionOutcome::Nothing;
    };
    let diverging = data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0;
    if diverging {
        let wanted = EpochEndOffset {
            epoch: data.diverging_epoch.epoch,
            end_offset: data.diverging_epoch.end_offset,
        };
        let local = if wanted.epoch >= 0 {
            log.end_offset_for_epoch(wanted.epoch)
        } else {
            None
        };
        let cut = truncation(wanted, local, log.log_end_offset(), log.high_watermark());
        let before = log.log_end_offset();
        if let Err(e) = log.truncate_to(cut.offset.max(log.log_start_offset())) {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "truncating the diverged tail failed");
            return PartitionOutcome::Backoff;
        }
        tracing::info!(
            topic = %partition.topic,
            partition = partition.index,
            from = before,
            to = log.log_end_offset(),
            diverging_epoch = wanted.epoch,
            diverging_end_offset = wanted.end_offset,
            last_fetched_epoch = ?state.last_fetched_epoch,
            "truncated to where the log agrees with the leader's"
        );
        return PartitionOutcome::Truncated;
    }
    let mut last_fetched_epoch = None;
    let mut progress = false;
    if let Some(records) = data.records.filter(|r| !r.is_empty()) {
        let batches = match ReplicatedBatches::parse(records) {
            Ok(batches) => batches,
            Err(e) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "refused the leader's records; fetching again");
                return PartitionOutcome::Backoff;
            }
        };
        last_fetched_epoch = batches.batches().last().map(|(_, h)| h.partition_leader_epoch);
        let empty = log.log_start_offset() == log.log_end_offset();
        match log.append_replicated(&batches, now) {
            Ok(appended) => progress |= appended.batch_count > 0,
            // An empty log (just started again at the leader's log start) and a first batch
            // that holds that offset but begins below it: start at the batch instead.
            Err(strom_storage::ReplicatedAppendError::UnexpectedBaseOffset { base_offset, .. })
                if empty
                    && batches
                        .batches()
                        .last()
                        .is_some_and(|(_, h)| h.last_offset() >= log.log_end_offset()) =>
            {
                let appended = log
                    .truncate_fully_and_start_at(base_offset)
                    .map_err(strom_storage::ReplicatedAppendError::from)
                    .and_then(|()| log.append_replicated(&batches, now));
                if let Err(e) = appended {
                    throttled!(warn, topic = %partition.topic, partition = partition.index, error = %e, "replicated append failed");
                    return PartitionOutcome::Backoff;
                }
                progress = true;
            }
            Err(e) => {
                throttled!(warn, topic = %partition.topic, partition = partition.index, error = %e, "replicated append failed");
                return PartitionOutcome::Backoff;
            }
        }
    }
    let high_watermark = data.high_watermark.min(log.log_end_offset());
    if high_watermark > log.high_watermark() {
        log.set_high_watermark(high_watermark);
        progress = true;
    }
    // The leader's log start moved (retention, DeleteRecords): follow it, within what is
    // committed here.
    let log_start = data.log_start_offset.min(log.high_watermark());
    if log_start > log.log_start_offset() {
        if let Err(e) = log.delete_records_before(log_start) {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "could not follow the leader's log start offset");
        }
    }
    if progress {
        PartitionOutcome::Progress { last_fetched_epoch }
    } else {
        PartitionOutcome::Nothing
    }
}
