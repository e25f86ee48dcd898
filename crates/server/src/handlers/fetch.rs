//! Fetch (key 1): read whole batches from each requested partition, up to the high watermark
//! (read_uncommitted) or the last stable offset (read_committed, which also gets the aborted
//! transactions overlapping what it reads, so the consumer can drop their records).
//!
//! A fetch that finds fewer than `min_bytes` waits, up to `max_wait_ms`, for the broker's
//! append signal and reads again, so a consumer sees a record as soon as it is appended.
//! Record bytes are not read here: each partition's records are a placeholder in the response
//! and a file slice beside it, which the connection sends with `sendfile`.
//! Fetch sessions (KIP-227) are declined: every response carries session id 0, which tells
//! clients to keep sending full fetch requests.
//!
//! In a cluster, three more kinds of read: a follower's fetch (a replica id) is checked for
//! divergence, counts as the follower's progress and reads up to the log end
//! (`read_for_replica`); a consumer's fetch to a follower is answered up to that follower's
//! high watermark (KIP-392); and with the rack-aware selector a leader sends
//! a consumer from another rack to an in-sync replica in its rack (`preferred_read_replica`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::ResponseError;
use strom_protocol::response::records_placeholder;
use strom_storage::{ReadError, ReadSlice};

use super::code;
use crate::broker::Broker;
use crate::partition::{Partition, Role};

/// Bound on how long any fetch may park, whatever the client asks for.
const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// FetchRequest.isolation_level (KIP-98).
const READ_COMMITTED: i8 = 1;

/// Returns the response and, in placeholder order, the file slices behind its record sets.
pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
) -> (FetchResponse, Vec<ReadSlice>) {
    if version >= 7 && request.session_id != 0 {
        return (session_error(ResponseError::FetchSessionIdNotFound), Vec::new());
    }
    if version >= 7 && request.session_epoch > 0 {
        return (session_error(ResponseError::InvalidFetchSessionEpoch), Vec::new());
    }
    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let replica = replica_of(broker, &request, version);
    // A fetch naming no partition has nothing to wait for and is answered at once, as in
    // Kafka: the Java consumer closes its fetch session with one (epoch -1, no partitions)
    // and waits for the answer as it closes.
    let nothing_asked = request.topics.iter().all(|topic| topic.partitions.is_empty());
    let mut appended = broker.subscribe_appends();
    loop {
        // Mark the current append generation seen before reading, so an append that lands
        // between this read and the wait below still wakes us.
        appended.borrow_and_update();
        let pass = read_partitions(broker, &request, version, replica);
        if pass.record_bytes >= min_bytes
            || nothing_asked
            || pass.any_error
            || broker.is_shutting_down()
            || tokio::time::Instant::now() >= deadline
        {
            return (pass.response, pass.slices);
        }
        tokio::select! {
            changed = appended.changed() => if changed.is_err() { return (pass.response, pass.slices) },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// A follower's fetch, as the leader sees the follower.
#[derive(Clone, Copy)]
struct Replica {
    id: i32,
    /// Its broker epoch as the metadata has it (sent with ISR changes).
    broker_epoch: i64,
    /// Registered, unfenced and not shutting down: it may join the ISR.
    eligible: bool,
}

/// A fetch from another broker of the cluster (a replica id of 0 or more; Fetch 15 and later
/// carry it in `replica_state`, which Strom does not offer yet).
fn replica_of(broker: &Broker, request: &FetchRequest, version: i16) -> Option<Replica> {
    let id = request.replica_id.0;
    if version >= 15 || id < 0 {
        return None;
    }
    let image = broker.cluster.image();
    let registration = image.broker(id);
    Some(Replica {
        id,
        broker_epoch: registration.map_or(-1, |b| b.epoch),
        eligible: image.is_usable(id),
    })
}

fn session_error(error: ResponseError) -> FetchResponse {
    let mut response = FetchResponse::default();
    response.error_code = code(error);
    response
}

struct FetchPass {
    response: FetchResponse,
    slices: Vec<ReadSlice>,
    record_bytes: usize,
    /// Any partition error ends the wait, as in Kafka.
    any_error: bool,
}

fn read_partitions(broker: &Arc<Broker>, request: &FetchRequest, version: i16, replica: Option<Replica>) -> FetchPass {
    let mut budget = if version >= 3 && request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        i32::MAX as usize
    };
    let mut pass = FetchPass {
        response: FetchResponse::default(),
        slices: Vec::new(),
        record_bytes: 0,
        any_error: false,
    };
    let read_committed = request.isolation_level == READ_COMMITTED;
    let client_rack = closer_rack(broker, request, version);
    for topic in &request.topics {
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = topic.topic.clone();
        let known = broker.topics.get(&topic.topic);
        for fetch in &topic.partitions {
            let partition = known.as_ref().and_then(|t| t.partition(fetch.partition));
            let (mut data, len) = match partition {
                None => (error_data(fetch.partition, ResponseError::UnknownTopicOrPartition), 0),
                Some(partition) => {
                    let limit = (fetch.partition_max_bytes.max(0) as usize).min(budget);
                    // KIP-74: the first batch of the response is returned whole even if it
                    // exceeds the limits, so a large batch can never stall a consumer.
                    let read = PartitionRead {
                        followers_serve: version >= 11,
                        client_rack: client_rack.as_deref(),
                        limit,
                        min_one_batch: pass.record_bytes == 0,
                        read_committed,
                    };
                    match (replica, known.as_ref()) {
                        (Some(replica), Some(topic)) => {
                            read_for_replica(broker, topic, &partition, fetch, replica, read, &mut pass.slices)
                        }
                        _ => read_partition(broker, &partition, fetch, read, &mut pass.slices),
                    }
                }
            };
            pass.any_error |= data.error_code != 0;
            pass.record_bytes += len;
            budget = budget.saturating_sub(len);
            if version < 5 {
                data.log_start_offset = -1;
            }
            if version < 12 {
                data.current_leader = Default::default();
            }
            if version < 11 {
                data.preferred_read_replica = BrokerId(-1);
            }
            topic_response.partitions.push(data);
        }
        pass.response.responses.push(topic_response);
    }
    pass
}

fn error_data(index: i32, error: ResponseError) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = index;
    data.error_code = code(error);
    data.high_watermark = -1;
    data.last_stable_offset = -1;
    data.log_start_offset = -1;
    data
}

/// How one partition is read.
#[derive(Clone, Copy)]
struct PartitionRead<'a> {
    /// Fetch 11+ from a consumer: a follower may answer it (KIP-392).
    followers_serve: bool,
    /// The client's rack, when the rack-aware replica selector may send it to a closer replica.
    client_rack: Option<&'a str>,
    limit: usize,
    min_one_batch: bool,
    read_committed: bool,
}

/// Reads one partition's position and limits under its lock; returns its response entry and
/// the number of record bytes it carries.
fn read_partition(
    broker: &Broker,
    partition: &Partition,
    fetch: &FetchPartition,
    PartitionRead {
        followers_serve,
        client_rack,
        limit,
        min_one_batch,
        read_committed,
    }: PartitionRead<'_>,
    slices: &mut Vec<ReadSlice>,
) -> (PartitionData, usize) {
    // KIP-392: a follower answers a consumer sent to it, up to its own high watermark (what
    // its leader told it every in-sync replica holds); anything else is for the leader.
    let served_by_follower =
        followers_serve && matches!(partition.role(), Role::Follower { .. }) && partition.lock().is_some();
    if !served_by_follower {
        if let Some(refused) = refuse_unless_leader(partition, fetch) {
            return (refused, 0);
        }
    }
    if let Some(refused) = refuse_other_epoch(partition, fetch) {
        return (refused, 0);
    }
    let preferred = client_rack
        .filter(|_| !served_by_follower)
        .and_then(|rack| closer_replica(broker, partition, rack));
    let guard = partition.lock();
    let Some(log) = guard.as_ref() else {
        return (error_data(fetch.partition, ResponseError::UnknownTopicOrPartition), 0);
    };
    if let Some(preferred) = preferred {
        // KIP-392: an in-sync replica in the client's rack serves it; say which, send nothing.
        let mut data = positions_only(fetch, log);
        data.preferred_read_replica = BrokerId(preferred);
        return (data, 0);
    }
    let bound = if read_committed {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    };
    read_log(
        partition,
        guard,
        fetch,
        bound,
        limit,
        min_one_batch,
        read_committed,
        slices,
    )
}

/// An answer with no records: the partition's high watermark, last stable offset and log
/// start offset, for the caller to add why (a preferred replica, a diverging epoch).
fn positions_only(fetch: &FetchPartition, log: &strom_storage::Log) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = fetch.partition;
    data.high_watermark = log.high_watermark();
    data.last_stable_offset = log.last_stable_offset();
    data.log_start_offset = log.log_start_offset();
    data.records = Some(Bytes::new());
    data
}

/// NOT_LEADER_OR_FOLLOWER for a partition not led here, naming the leader as this broker knows
/// it (KIP-951; Fetch 12+ carries it).
fn refuse_unless_leader(partition: &Partition, fetch: &FetchPartition) -> Option<PartitionData> {
    if partition.is_leader() {
        return None;
    }
    let mut data = error_data(fetch.partition, ResponseError::NotLeaderOrFollower);
    if let Role::Follower { leader, leader_epoch } | Role::None { leader, leader_epoch } = partition.role() {
        data.current_leader.leader_id = BrokerId(leader);
        data.current_leader.leader_epoch = leader_epoch;
    }
    Some(data)
}

/// The answer to a fetch naming another leader epoch than this broker's: UNKNOWN_LEADER_EPOCH
/// if it is newer (this broker has not caught up), FENCED_LEADER_EPOCH if older.
fn refuse_other_epoch(partition: &Partition, fetch: &FetchPartition) -> Option<PartitionData> {
    let current = partition.leader_epoch();
    if fetch.current_leader_epoch < 0 || fetch.current_leader_epoch == current {
        return None;
    }
    let error = if fetch.current_leader_epoch > current {
        ResponseError::UnknownLeaderEpoch
    } else {
        ResponseError::FencedLeaderEpoch
    };
    Some(error_data(fetch.partition, error))
}

/// The client's rack, when the rack-aware replica selector is on (`replica.selector.class`),
/// the request can carry a preferred read replica (Fetch 11+), and this broker is in another
/// rack: then a replica in the client's rack may serve it.
fn closer_rack(broker: &Broker, request: &FetchRequest, version: i16) -> Option<String> {
    let cluster = &broker.cluster;
    if version < 11 || !cluster.config.rack_aware_replica_selector || request.rack_id.is_empty() {
        return None;
    }
    let rack = request.rack_id.to_string();
    (cluster.config.rack.as_deref() != Some(rack.as_str())).then_some(rack)
}

/// An in-sync follower of `partition` (led here) in `rack`, if there is one.
fn closer_replica(broker: &Broker, partition: &Partition, rack: &str) -> Option<i32> {
    let isr: Vec<i32> = partition.leadership().as_ref()?.isr().to_vec();
    let image = broker.cluster.image();
    isr.into_iter()
        .filter(|id| *id != broker.node_id())
        .find(|id| image.broker(*id).and_then(|b| b.rack.as_deref()) == Some(rack))
}

/// A follower's fetch: checked against the leader's log for divergence, recorded as the
/// follower's progress (which may move the high watermark and propose it into the ISR), and
/// read up to the log end rather than the high watermark.
fn read_for_replica(
    broker: &Arc<Broker>,
    topic: &crate::topics::Topic,
    partition: &Arc<Partition>,
    fetch: &FetchPartition,
    replica: Replica,
    PartitionRead {
        limit, min_one_batch, ..
    }: PartitionRead<'_>,
    slices: &mut Vec<ReadSlice>,
) -> (PartitionData, usize) {
    if let Some(refused) = refuse_unless_leader(partition, fetch) {
        return (refused, 0);
    }
    if let Some(refused) = refuse_other_epoch(partition, fetch) {
        return (refused, 0);
    }
    let mut guard = partition.lock();
    let Some(log) = guard.as_mut() else {
        return (error_data(fetch.partition, ResponseError::UnknownTopicOrPartition), 0);
    };
    let log_end_offset = log.log_end_offset();
    // Where the follower's log parts from this one (KIP-595's diverging epoch): it truncates
    // there and fetches again. A follower ahead of this log end without epochs to compare is
    // sent to its high watermark.
    let leader_end = (fetch.last_fetched_epoch >= 0)
        .then(|| log.end_offset_for_epoch(fetch.last_fetched_epoch))
        .flatten();
    let diverging =
        strom_replication::diverging_epoch(fetch.last_fetched_epoch, fetch.fetch_offset, leader_end).or((fetch
            .fetch_offset
            > log_end_offset)
            .then_some(strom_replication::EpochEndOffset {
                epoch: -1,
                end_offset: -1,
            }));
    if let Some(diverging) = diverging {
        tracing::info!(
            topic = %partition.topic,
            partition = partition.index,
            replica = replica.id,
            fetch_offset = fetch.fetch_offset,
            last_fetched_epoch = fetch.last_fetched_epoch,
            diverging_epoch = diverging.epoch,
            diverging_end_offset = diverging.end_offset,
            "a follower's log diverges from this leader's"
        );
        let mut data = positions_only(fetch, log);
        data.diverging_epoch.epoch = diverging.epoch;
        // An epoch of -1 (nothing to compare) still has to read as present on the wire.
        data.diverging_epoch.end_offset = if diverging.epoch < 0 {
            log.log_start_offset()
        } else {
            diverging.end_offset
        };
        return (data, 0);
    }
    if fetch.fetch_offset < log.log_start_offset() {
        let mut data = error_data(fetch.partition, ResponseError::OffsetOutOfRange);
        data.log_start_offset = log.log_start_offset();
        data.high_watermark = log.high_watermark();
        return (data, 0);
    }
    let before = log.high_watermark();
    let outcome = partition.leadership().as_mut().map(|leader| {
        leader.on_follower_fetch(
            replica.id,
            replica.broker_epoch,
            fetch.fetch_offset,
            replica.eligible,
            crate::clock::steady_ms(),
        )
    });
    let mut moved = false;
    if let Some(outcome) = &outcome {
        if let Some(high_watermark) = outcome.high_watermark {
            log.set_high_watermark(high_watermark);
            moved = log.high_watermark() != before;
        }
    }
    let answer = read_log(
        partition,
        guard,
        fetch,
        log_end_offset,
        limit,
        min_one_batch,
        false,
        slices,
    );
    if moved {
        // Consumers waiting for the high watermark, and acks=all produces, may go on.
        broker.notify_appended();
    }
    if let Some(proposal) = outcome.and_then(|o| o.proposal) {
        crate::cluster::isr::propose(broker, partition.clone(), topic.id, proposal);
    }
    answer
}

/// Reads from `fetch.fetch_offset` up to `bound` with the log locked (the guard is released
/// before any record byte is read), filling the partition's response entry.
#[allow(clippy::too_many_arguments)]
fn read_log(
    partition: &Partition,
    guard: std::sync::MutexGuard<'_, Option<strom_storage::Log>>,
    fetch: &FetchPartition,
    bound: i64,
    limit: usize,
    min_one_batch: bool,
    read_committed: bool,
    slices: &mut Vec<ReadSlice>,
) -> (PartitionData, usize) {
    let Some(log) = guard.as_ref() else {
        return (error_data(fetch.partition, ResponseError::UnknownTopicOrPartition), 0);
    };
    let high_watermark = log.high_watermark();
    let last_stable_offset = log.last_stable_offset();
    let log_start_offset = log.log_start_offset();
    let read = log.read(fetch.fetch_offset, limit, bound, min_one_batch);
    let aborted = match &read {
        // The consumer needs the aborts overlapping what it gets; listing up to the bound
        // rather than exactly to the last batch returned is a superset it filters itself.
        Ok(slice) if read_committed && !slice.is_empty() => Some(log.aborted_transactions(fetch.fetch_offset, bound)),
        _ => None,
    };
    drop(guard);
    let mut data = PartitionData::default();
    data.partition_index = fetch.partition;
    data.high_watermark = high_watermark;
    data.last_stable_offset = last_stable_offset;
    data.log_start_offset = log_start_offset;
    if read_committed {
        data.aborted_transactions = Some(
            aborted
                .unwrap_or_default()
                .into_iter()
                .map(|a| {
                    let mut entry = AbortedTransaction::default();
                    entry.producer_id = ProducerId(a.producer_id);
                    entry.first_offset = a.first_offset;
                    entry
                })
                .collect(),
        );
    }
    let storage_error = |e: &dyn std::fmt::Display| {
        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "reading log failed");
        code(ResponseError::KafkaStorageError)
    };
    let slice = match read {
        Ok(slice) => slice,
        Err(ReadError::OffsetOutOfRange { .. }) => {
            data.error_code = code(ResponseError::OffsetOutOfRange);
            return (data, 0);
        }
        Err(ReadError::Storage(e)) => {
            data.error_code = storage_error(&e);
            return (data, 0);
        }
    };
    let len = slice.total_len;
    if len == 0 {
        data.records = Some(Bytes::new());
    } else if let Some(placeholder) = records_placeholder(len) {
        data.records = Some(placeholder);
        slices.push(slice);
    } else {
        // Too large to send by reference: copy it (only a huge first batch gets here).
        match slice.read_to_bytes() {
            Ok(bytes) => data.records = Some(bytes),
            Err(e) => {
                data.error_code = storage_error(&e);
                return (data, 0);
            }
        }
    }
    (data, len)
}
