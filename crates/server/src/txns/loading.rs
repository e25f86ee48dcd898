//! Which transactional ids this broker coordinates, and loading them as leadership of their
//! `__transaction_state` partitions comes and goes ([`lead_partitions`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use strom_txn::{TxnConfig, TxnCoordinator, TxnRecord};

use super::{state_partition_count, IdLocks, State, StateTopic, Txns, TXN_STATE_TOPIC};
use crate::groups::Groups;
use crate::internal_topic::{self, CoordinatorLogs, InternalTopic};
use crate::ownership::Ownership;
use crate::producer_ids::ProducerIdAllocator;

impl Txns {
    /// An empty coordinator: it takes on the ids of each `__transaction_state` partition when
    /// it comes to lead it ([`lead_partitions`]).
    pub fn new(
        config: TxnConfig,
        topic: StateTopic,
        logs: CoordinatorLogs,
        groups: Arc<Groups>,
        producer_ids: Arc<ProducerIdAllocator>,
    ) -> Txns {
        let coordinator = TxnCoordinator::new(config);
        Txns {
            state: Mutex::new(State {
                coordinator,
                ownership: Ownership::default(),
            }),
            ids: IdLocks::default(),
            state_topic: InternalTopic {
                name: TXN_STATE_TOPIC,
                partitions: topic.partitions,
                segment_bytes: topic.segment_bytes,
                replication_factor: topic.replication_factor,
            },
            logs,
            groups,
            producer_ids,
        }
    }
}

/// The transaction state records of one partition, in order.
fn read_partition(log: &strom_storage::Log, partition: i32) -> Vec<TxnRecord> {
    let mut out = Vec::new();
    internal_topic::for_each_batch(log, TXN_STATE_TOPIC, partition, &mut |header, bytes| {
        if header.is_control() {
            return;
        }
        let Ok(records) = strom_record::records::decode_records(bytes) else {
            tracing::warn!(partition, "undecodable transaction state batch skipped");
            return;
        };
        for record in records {
            let Some(key) = record.key else { continue };
            match TxnRecord::decode(key, record.value) {
                Ok(record) => out.push(record),
                Err(e) => tracing::warn!(partition, error = %e, "undecodable transaction state record skipped"),
            }
        }
    });
    out
}

/// In a cluster, after the metadata moved: the coordinator takes on the ids of the
/// `__transaction_state` partitions this broker now leads (reading them from its copy:
/// meanwhile their requests get COORDINATOR_LOAD_IN_PROGRESS) and forgets those of the
/// partitions it no longer leads (their requests get NOT_COORDINATOR, so clients find the new
/// coordinator). Transactions found between decision and markers are finished by the timer.
pub fn lead_partitions(txns: &Txns, led: &BTreeSet<i32>) {
    let count = state_partition_count(txns);
    let (gained, lost) = txns.lock().ownership.lead(led);
    if !lost.is_empty() {
        let forgotten = txns
            .lock()
            .coordinator
            .unload(|id| lost.contains(&strom_txn::partition_for(id, count)));
        tracing::info!(
            partitions = ?lost,
            transactional_ids = forgotten,
            "no longer coordinating the transactional ids of these __transaction_state partitions"
        );
    }
    let Some(topic) = txns.logs.topics.get(TXN_STATE_TOPIC) else {
        return;
    };
    for partition in gained {
        // Read outside the coordinator's lock: other ids carry on meanwhile.
        let records = topic
            .partition(partition)
            .and_then(|p| p.lock().as_ref().map(|log| read_partition(log, partition)))
            .unwrap_or_default();
        let mut state = txns.lock();
        if !state.ownership.loaded(partition) {
            continue; // lost again meanwhile
        }
        let applied = records.len();
        for record in records {
            state.coordinator.apply(record);
        }
        tracing::info!(
            partition,
            records = applied,
            "coordinating the transactional ids of this __transaction_state partition"
        );
    }
}
