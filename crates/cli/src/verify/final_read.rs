//! The final read: after the drain, every partition of the run's topics is read whole, from
//! its log start offset to its end, once read_uncommitted (to the high watermark) and once
//! read_committed (to the last stable offset).
//!
//! The end is where librdkafka reports the partition's end (`enable.partition.eof`), which it
//! does when its fetch position reaches the high watermark, or for read_committed the last
//! stable offset, of a fetch answer. That offset does not come with the report, so the end is
//! asked before (ListOffsets at the reader's isolation: the high watermark or the last stable
//! offset) and again after: equal, the read covered exactly up to it; different (a
//! transaction ended meanwhile), the partition is read again. A partition's events are
//! recorded only once its read is complete, so a retried read leaves no half copy; one that
//! never completes within [`PARTITION_DEADLINE`] (or [`WHOLE_DEADLINE`] of the whole read)
//! has no `final_end`, and the checker knows it was not covered.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use strom_verify::history::{Isolation, Op};

use super::clients::{close_member, isolation_name, reader_config, value_of, ErrorLog, LogContext};
use super::history_writer::{now_ms, Recorder};
use super::queue::POLL_SLICE;
use super::runner::Topic;
use crate::connection::ConnectionArgs;

/// How long one partition's read at one isolation is tried.
const PARTITION_DEADLINE: Duration = Duration::from_secs(60);
/// Bound on the whole final read: a cluster that does not serve is not waited for partition
/// after partition (the campaign gives a run's drain and final read ten minutes).
const WHOLE_DEADLINE: Duration = Duration::from_secs(240);
/// Bound on each ListOffsets.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// `fetch.wait.max.ms` of the final readers.
const FETCH_WAIT_MS: u32 = 20;
/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Reads every partition of `topics` at both isolations, recording as `recorder`.
pub(super) fn run(connection: &ConnectionArgs, topics: &[Topic], recorder: &Recorder) {
    let whole_deadline = Instant::now() + WHOLE_DEADLINE;
    for topic in topics {
        for isolation in [Isolation::ReadUncommitted, Isolation::ReadCommitted] {
            let mut reader = Reader {
                connection,
                client: format!("{}-{}-{}", recorder.client(), topic.name, isolation_name(isolation)),
                isolation,
                consumer: None,
            };
            for partition in 0..topic.partitions {
                let what = format!("{}/{partition} ({})", topic.name, isolation_name(isolation));
                let deadline = (Instant::now() + PARTITION_DEADLINE).min(whole_deadline);
                if Instant::now() >= deadline {
                    eprintln!("verify: final read of {what} skipped: out of time");
                    continue;
                }
                match reader.read(&topic.name, partition, deadline, &what) {
                    Ok(events) => {
                        for (t, op) in events {
                            recorder.record_at(t, op);
                        }
                    }
                    Err(error) => eprintln!("verify: final read of {what} failed: {error}"),
                }
            }
            reader.close();
        }
    }
}

/// The final reader of one topic at one isolation, kept from partition to partition while
/// its reads succeed.
struct Reader<'a> {
    connection: &'a ConnectionArgs,
    client: String,
    isolation: Isolation,
    consumer: Option<BaseConsumer<LogContext>>,
}

impl Reader<'_> {
    /// Reads the partition whole, trying again until `deadline`.
    fn read(&mut self, topic: &str, partition: i32, deadline: Instant, what: &str) -> Result<Vec<(f64, Op)>, String> {
        loop {
            let consumer = match self.consumer.take() {
                Some(consumer) => consumer,
                None => final_reader_config(self.connection, &self.client, self.isolation)
                    .create_with_context(LogContext(ErrorLog::new(&self.client)))
                    .map_err(|e| format!("create reader: {e}"))?,
            };
            match read_partition(&consumer, topic, partition, self.isolation, deadline) {
                Ok(events) => {
                    self.consumer = Some(consumer);
                    return Ok(events);
                }
                Err(error) => {
                    // A fresh client for the next attempt: nothing of this one's state (its
                    // partition end reports above all) carries over.
                    close_member(consumer, &ErrorLog::new(&self.client));
                    if Instant::now() + RETRY_PAUSE >= deadline {
                        return Err(error);
                    }
                    eprintln!("verify: final read of {what}: {error}; retrying");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    fn close(self) {
        if let Some(consumer) = self.consumer {
            close_member(consumer, &ErrorLog::new(&self.client));
        }
    }
}

/// A reader that reports the end of a partition, and soon: at the end a fetch answer waits
/// for new records up to `fetch.wait.max.ms` (librdkafka's default is 500 ms), and none are
/// coming.
fn final_reader_config(connection: &ConnectionArgs, client: &str, isolation: Isolation) -> ClientConfig {
    let mut config = reader_config(connection, client, isolation, true);
    if !connection.config.iter().any(|(key, _)| key == "fetch.wait.max.ms") {
        let _ = config.set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string());
    }
    config
}

/// One attempt at one partition: its `final_read` events and its `final_end`, each with the
/// time it was seen.
fn read_partition(
    consumer: &BaseConsumer<LogContext>,
    topic: &str,
    partition: i32,
    isolation: Isolation,
    deadline: Instant,
) -> Result<Vec<(f64, Op)>, String> {
    let (start, end) = consumer
        .fetch_watermarks(topic, partition, CALL_TIMEOUT)
        .map_err(|e| format!("list offsets: {e}"))?;
    let mut assignment = TopicPartitionList::with_capacity(1);
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(start))
        .and_then(|()| consumer.assign(&assignment))
        .map_err(|e| format!("assign: {e}"))?;
    let mut events = Vec::new();
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "not at the end ({end}) within {} s",
                PARTITION_DEADLINE.as_secs()
            ));
        }
        match consumer.poll(POLL_SLICE) {
            Some(Ok(message)) if message.partition() == partition && message.topic() == topic => {
                events.push((
                    now_ms(),
                    Op::FinalRead {
                        topic: topic.to_string(),
                        partition,
                        offset: message.offset(),
                        value: value_of(&message),
                        isolation,
                    },
                ));
            }
            // A record of the partition read before (the assignment changed under it).
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(eof))) if eof == partition => {
                let (_, end_now) = consumer
                    .fetch_watermarks(topic, partition, CALL_TIMEOUT)
                    .map_err(|e| format!("list offsets: {e}"))?;
                if end_now != end {
                    return Err(format!("the end moved from {end} to {end_now} during the read"));
                }
                events.push((
                    now_ms(),
                    Op::FinalEnd {
                        topic: topic.to_string(),
                        partition,
                        isolation,
                        start_offset: start,
                        end_offset: end,
                    },
                ));
                return Ok(events);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => return Err(format!("poll: {error}")),
            None => {}
        }
    }
}
