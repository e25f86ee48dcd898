//! The queue workload's clients, and the two kinds the txn workload borrows: the idempotent
//! producer (its feeder) and the reader without a group (its observers).
//!
//! - [`produce`]: unique values `{client}-{seq}` round-robin over a topic's partitions at the
//!   run's rate, `send` recorded before librdkafka has the record, `ack`/`send_failed` from
//!   its delivery report. A fatal error (an idempotent producer's sequence broken beyond
//!   repair) ends that client: a new one takes over under the name `{client}.{n}`.
//! - [`member`]: a consumer group member with eager range assignment and manual synchronous
//!   commits of what it read, every [`COMMIT_INTERVAL`].
//! - [`reader`]: every partition assigned from the beginning, no group; a seeker jumps back
//!   in one partition every [`SEEK_INTERVAL`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom_verify::history::{Isolation, Op, TpOffset};

use super::clients::{
    abandon_producer, close_member, group_generation, member_config, position_list, producer_config, reader_config,
    sleep_while, value_of, DeliveryContext, ErrorLog, LogContext, MemberContext, Random, Sent,
};
use super::history_writer::Recorder;
use super::runner::{Shared, Topic};

/// Records a producer may have handed to librdkafka without an answer yet; sending pauses
/// at this many (an unavailable partition then costs memory and history lines in proportion).
const IN_FLIGHT_MAX: usize = 1000;
/// How far behind its schedule a producer may fall before it stops catching up: after a
/// stall it resumes at its rate rather than in a burst.
const CATCH_UP_MAX: Duration = Duration::from_secs(1);
/// Between a member's commits of what it read.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Between a seeker's jumps back.
const SEEK_INTERVAL: Duration = Duration::from_secs(2);
/// Farthest a seeker jumps back, in offsets.
const SEEK_BACK_MAX: i64 = 500;
/// Bound on a seek, a commit's wait aside (librdkafka bounds that one itself).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest single poll: how soon a client notices the end of its phase.
pub(super) const POLL_SLICE: Duration = Duration::from_millis(100);
/// Pause before a client that could not be created or started is tried again.
pub(super) const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// The name of a client's `n`th incarnation: `producer-0`, then `producer-0.1`, ...
pub(super) fn incarnation_name(base: &str, incarnation: u32) -> String {
    match incarnation {
        0 => base.to_string(),
        n => format!("{base}.{n}"),
    }
}

/// Runs one producer (and its successors after fatal errors) until the run stops producing,
/// then waits for its last answers until the drain deadline.
pub(super) fn produce(shared: &Shared, recorder: Recorder, topic: &Topic) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(shared.rate));
    let mut next_due = Instant::now();
    let mut incarnation = 0;
    while shared.producing() {
        let client = incarnation_name(recorder.client(), incarnation);
        incarnation += 1;
        let context = DeliveryContext::new(recorder.named(&client));
        let producer: BaseProducer<DeliveryContext> =
            match producer_config(&shared.connection, &client, None, shared.producer_debug.as_deref())
                .create_with_context(context)
            {
                Ok(producer) => producer,
                Err(error) => {
                    ErrorLog::new(&client).error(format_args!("create producer: {error}"));
                    let _ = sleep_while(RESTART_PAUSE, || shared.producing());
                    continue;
                }
            };
        if send_until_stopped(shared, &producer, topic, &mut next_due, interval) {
            // Stopped for the drain: the last answers, then whatever is left fails.
            let deadline = Instant::now() + shared.drain_timeout;
            while producer.context().in_flight() > 0 && Instant::now() < deadline {
                producer.poll(POLL_SLICE);
            }
            abandon_producer(producer, Duration::from_secs(5));
            return;
        }
        abandon_producer(producer, Duration::from_secs(1));
    }
}

/// Sends at the rate until the run stops producing (true) or the client has a fatal error
/// (false).
fn send_until_stopped(
    shared: &Shared,
    producer: &BaseProducer<DeliveryContext>,
    topic: &Topic,
    next_due: &mut Instant,
    interval: Duration,
) -> bool {
    let context = producer.context();
    let client = context.recorder().client().to_string();
    let mut seq = 0u64;
    loop {
        if !shared.producing() {
            return true;
        }
        if let Some((code, reason)) = producer.client().fatal_error() {
            context
                .log()
                .error(format_args!("fatal error, replacing the producer: {code}: {reason}"));
            return false;
        }
        let now = Instant::now();
        if now < *next_due {
            producer.poll((*next_due - now).min(POLL_SLICE));
            continue;
        }
        if context.in_flight() >= IN_FLIGHT_MAX {
            producer.poll(Duration::from_millis(10));
            continue;
        }
        *next_due = (*next_due + interval).max(now.checked_sub(CATCH_UP_MAX).unwrap_or(now));
        let value = format!("{client}-{seq}");
        let partition = i32::try_from(seq % topic.partitions as u64).expect("a partition id is an i32");
        seq += 1;
        context.recorder().record(Op::Send {
            topic: topic.name.clone(),
            partition,
            value: value.clone(),
            txn: None,
            source: None,
        });
        let sent = Box::new(Sent {
            topic: topic.name.clone(),
            partition,
            value: value.clone(),
            txn: None,
        });
        let record = BaseRecord::<(), str, Box<Sent>>::with_opaque_to(&topic.name, sent)
            .partition(partition)
            .payload(value.as_str());
        match producer.send(record) {
            Ok(()) => context.handed_over(),
            Err((error, record)) => context.failed(&record.delivery_opaque, format!("enqueue: {error}")),
        }
        producer.poll(Duration::ZERO);
    }
}

/// Runs one member of the queue group until the run stops consuming.
pub(super) fn member(shared: &Shared, recorder: Recorder) {
    let client = recorder.client().to_string();
    let group = shared.names.queue_group.clone();
    let config = member_config(&shared.connection, &client, &group, Isolation::ReadUncommitted);
    let consumer: BaseConsumer<MemberContext> = match config.create_with_context(MemberContext::new(recorder, &group)) {
        Ok(consumer) => consumer,
        Err(error) => {
            ErrorLog::new(&client).error(format_args!("create group member: {error}"));
            return;
        }
    };
    let context = consumer.context();
    if let Err(error) = consumer.subscribe(&[&shared.names.queue.name]) {
        context.log().error(format_args!("subscribe: {error}"));
        close_member(consumer, &ErrorLog::new(&client));
        return;
    }
    // Next offset per partition read in the current assignment, not yet committed.
    let mut read: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    while shared.consuming() {
        let rebalances = context.rebalances();
        let polled = consumer.poll(POLL_SLICE);
        if context.rebalances() != rebalances {
            // What was read before the rebalance may belong to someone else now.
            read.clear();
        }
        match polled {
            Some(Ok(message)) => {
                context.recorder().record(Op::Read {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                    value: value_of(&message),
                    isolation: Isolation::ReadUncommitted,
                });
                let _ = read.insert((message.topic().to_string(), message.partition()), message.offset() + 1);
            }
            Some(Err(error)) => context.log().error(format_args!("poll: {error}")),
            None => {}
        }
        if !read.is_empty() && last_commit.elapsed() >= COMMIT_INTERVAL {
            if commit(&consumer, &read) {
                read.clear();
            }
            last_commit = Instant::now();
        }
    }
    close_member(consumer, &ErrorLog::new(&client));
}

/// Commits the next offsets of what was read, synchronously, and records the answer; true
/// when the broker accepted them.
fn commit(consumer: &BaseConsumer<MemberContext>, read: &BTreeMap<(String, i32), i64>) -> bool {
    let context = consumer.context();
    let offsets: Vec<TpOffset> = read
        .iter()
        .map(|((topic, partition), offset)| TpOffset {
            topic: topic.clone(),
            partition: *partition,
            offset: *offset,
        })
        .collect();
    // The generation librdkafka holds now is the one the commit carries.
    let generation = group_generation(consumer).map_or_else(|| context.assigned_generation(), |(g, _)| g);
    let result = position_list(&offsets).and_then(|list| consumer.commit(&list, CommitMode::Sync));
    if let Err(error) = &result {
        context.log().error(format_args!("commit: {error}"));
    }
    let accepted = result.is_ok();
    context.recorder().record(Op::Commit {
        group: context.group().to_string(),
        generation,
        offsets,
        error: result.err().map(|e| e.to_string()),
    });
    accepted
}

/// Reads every partition of `topic` from the beginning, without a group, until the run
/// stops consuming; with `seeks`, jumps back a random distance in one random partition every
/// [`SEEK_INTERVAL`].
pub(super) fn reader(shared: &Shared, recorder: Recorder, topic: &Topic, isolation: Isolation, seeks: bool) {
    let client = recorder.client().to_string();
    let log = LogContext(ErrorLog::new(&client));
    let consumer: BaseConsumer<LogContext> =
        match reader_config(&shared.connection, &client, isolation, false).create_with_context(log) {
            Ok(consumer) => consumer,
            Err(error) => {
                ErrorLog::new(&client).error(format_args!("create reader: {error}"));
                return;
            }
        };
    let log = &consumer.context().0;
    let mut assignment = TopicPartitionList::with_capacity(topic.partitions as usize);
    let assigned = (0..topic.partitions)
        .try_for_each(|partition| assignment.add_partition_offset(&topic.name, partition, Offset::Beginning))
        .and_then(|()| consumer.assign(&assignment));
    if let Err(error) = assigned {
        log.error(format_args!("assign: {error}"));
        close_member(consumer, &ErrorLog::new(&client));
        return;
    }
    let mut random = Random::new(&client);
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_seek = Instant::now();
    while shared.consuming() {
        match consumer.poll(POLL_SLICE) {
            Some(Ok(message)) => {
                recorder.record(Op::Read {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                    value: value_of(&message),
                    isolation,
                });
                let _ = positions.insert(message.partition(), message.offset() + 1);
            }
            Some(Err(error)) => log.error(format_args!("poll: {error}")),
            None => {}
        }
        if seeks && last_seek.elapsed() >= SEEK_INTERVAL {
            last_seek = Instant::now();
            seek_back(&consumer, &recorder, &topic.name, &mut positions, &mut random);
        }
    }
    close_member(consumer, &ErrorLog::new(&client));
}

/// Moves the position of a random partition that has been read back by a random distance.
fn seek_back(
    consumer: &BaseConsumer<LogContext>,
    recorder: &Recorder,
    topic: &str,
    positions: &mut BTreeMap<i32, i64>,
    random: &mut Random,
) {
    let candidates: Vec<(i32, i64)> = positions
        .iter()
        .filter(|(_, p)| **p > 0)
        .map(|(k, v)| (*k, *v))
        .collect();
    if candidates.is_empty() {
        return;
    }
    let (partition, position) = candidates[random.below(candidates.len() as u64) as usize];
    let back = 1 + random.below(position.min(SEEK_BACK_MAX) as u64) as i64;
    let offset = position - back;
    // Recorded first: any read after this line may come from the new position.
    recorder.record(Op::Seek {
        topic: topic.to_string(),
        partition,
        offset,
    });
    match consumer.seek(topic, partition, Offset::Offset(offset), CALL_TIMEOUT) {
        Ok(()) => {
            let _ = positions.insert(partition, offset);
        }
        Err(error) => consumer.context().0.error(format_args!("seek: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_are_named_after_the_first() {
        assert_eq!(incarnation_name("producer-0", 0), "producer-0");
        assert_eq!(incarnation_name("producer-0", 2), "producer-0.2");
    }
}
