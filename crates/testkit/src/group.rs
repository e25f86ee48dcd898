//! A consumer group member over `rdkafka`: subscribes, polls, commits explicitly, and counts
//! the rebalances it goes through, so tests can assert on who reads what and when.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::client::{base_config, consumed, Consumed, CALL_TIMEOUT};

/// Counts assignments this member received (one per completed rebalance it took part in) and
/// records every partition revoked from it.
#[derive(Default)]
pub struct RebalanceCounter {
    assigned: Arc<AtomicUsize>,
    revoked: Arc<Mutex<BTreeSet<(String, i32)>>>,
}

impl ClientContext for RebalanceCounter {}

impl ConsumerContext for RebalanceCounter {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => {
                self.assigned.fetch_add(1, Ordering::SeqCst);
            }
            Rebalance::Revoke(partitions) => {
                let mut revoked = self.revoked.lock().expect("revoked set");
                for element in partitions.elements() {
                    revoked.insert((element.topic().to_string(), element.partition()));
                }
            }
            Rebalance::Error(_) => {}
        }
    }
}

pub struct GroupMember {
    inner: BaseConsumer<RebalanceCounter>,
    assigned: Arc<AtomicUsize>,
    revoked: Arc<Mutex<BTreeSet<(String, i32)>>>,
}

impl GroupMember {
    /// A member of `group` subscribed to `topics`: manual commits, reading from the earliest
    /// offset where nothing is committed, short session so tests see expiry quickly (classic
    /// protocol; with `("group.protocol", "consumer")` in `extra` the broker decides). `extra`
    /// overrides any of it.
    pub fn join(bootstrap: &str, group: &str, topics: &[&str], extra: &[(&str, &str)]) -> GroupMember {
        let mut config = base_config(bootstrap);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100");
        // With the KIP-848 protocol the broker sets session and heartbeat timing.
        let consumer_protocol = extra.contains(&("group.protocol", "consumer"));
        if !consumer_protocol {
            config
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500");
        }
        for (key, value) in extra {
            config.set(*key, *value);
        }
        let context = RebalanceCounter::default();
        let assigned = context.assigned.clone();
        let revoked = context.revoked.clone();
        let inner: BaseConsumer<RebalanceCounter> = config.create_with_context(context).expect("create group member");
        inner.subscribe(topics).expect("subscribe");
        GroupMember {
            inner,
            assigned,
            revoked,
        }
    }

    /// One poll: a record, or `None` (nothing yet, end of partition, or the broker briefly
    /// unreachable, as while a test restarts it).
    pub fn poll(&self, timeout: Duration) -> Option<Consumed> {
        match self.inner.poll(timeout) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => None,
            Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
            ))) => None,
            Some(Err(e)) => panic!("group member poll: {e}"),
            Some(Ok(message)) => Some(consumed(&message)),
        }
    }

    /// The next `count` records, polling until `timeout` (then panics).
    pub fn take(&self, count: usize, timeout: Duration) -> Vec<Consumed> {
        let deadline = std::time::Instant::now() + timeout;
        let mut batch = Vec::with_capacity(count);
        while batch.len() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {count} records within {timeout:?}",
                batch.len()
            );
            if let Some(record) = self.poll(Duration::from_millis(100)) {
                batch.push(record);
            }
        }
        batch
    }

    /// The partitions assigned to this member, as (topic, partition).
    pub fn assignment(&self) -> BTreeSet<(String, i32)> {
        self.inner
            .assignment()
            .expect("assignment")
            .elements()
            .iter()
            .map(|element| (element.topic().to_string(), element.partition()))
            .collect()
    }

    /// How many assignments this member has received so far.
    pub fn assignments_received(&self) -> usize {
        self.assigned.load(Ordering::SeqCst)
    }

    /// Every partition ever revoked from this member.
    pub fn revoked(&self) -> BTreeSet<(String, i32)> {
        self.revoked.lock().expect("revoked set").clone()
    }

    /// Commits the positions reached (the next offset to read) of every assigned partition.
    pub fn commit_positions(&self) -> Result<(), KafkaError> {
        self.inner.commit_consumer_state(CommitMode::Sync)
    }

    /// Commits an explicit offset.
    pub fn commit_offset(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        self.inner.commit(&list, CommitMode::Sync)
    }

    /// Committed offsets of these partitions, `None` where nothing is committed.
    pub fn committed(&self, topic: &str, partitions: &[i32]) -> Result<Vec<Option<i64>>, KafkaError> {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(topic, *partition);
        }
        let answer = self.inner.committed_offsets(list, CALL_TIMEOUT)?;
        Ok(partitions
            .iter()
            .map(
                |partition| match answer.find_partition(topic, *partition).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                },
            )
            .collect())
    }

    pub fn inner(&self) -> &BaseConsumer<RebalanceCounter> {
        &self.inner
    }
}
