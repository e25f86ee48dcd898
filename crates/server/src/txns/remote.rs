//! KIP-890's check before a transactional write: a partition leader (for a Produce) or a group
//! coordinator (for a TxnOffsetCommit) asks the transactional id's coordinator whether the
//! partition is in the producer's open transaction (transactions v1), or has it added
//! (transactions v2), before the first write of the transaction there.
//!
//! When the id is coordinated here the answer comes from this broker's coordinator, and the
//! id's lock is held until the caller has written ([`WriteChecks`]), so none of the
//! transaction's markers can come in between. When it is coordinated elsewhere the question
//! goes as AddPartitionsToTxn v4 (the brokers' batched form, `verify_only` for v1) to that
//! broker, whose handler answers it through [`check_for_broker`].

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use strom_txn::{TxnError, TxnProtocol};

use super::{add_locked, state_partition_count, IdGuard, Txns, TXN_STATE_TOPIC};

/// The brokers' form of AddPartitionsToTxn.
const BROKER_ADD_PARTITIONS_VERSION: i16 = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The coordinator's word on each partition a write needs it for, and, when the id is
/// coordinated here, the id's lock, held until the caller has written.
pub(crate) struct WriteChecks<'a> {
    verdicts: HashMap<(String, i32), Result<(), TxnError>>,
    _held: Option<IdGuard<'a>>,
}

impl WriteChecks<'_> {
    /// The verdict on a partition; one nobody asked about needs none.
    pub(crate) fn verdict(&self, partition: &(String, i32)) -> Result<(), TxnError> {
        self.verdicts.get(partition).copied().unwrap_or(Ok(()))
    }
}

/// Which broker coordinates `transactional_id`: the leader of its `__transaction_state`
/// partition (`None` while it has none, or the topic does not exist yet).
fn coordinator_of(txns: &Txns, transactional_id: &str) -> Option<i32> {
    let image = txns.logs.cluster.image();
    let topic = image.topic_by_name(TXN_STATE_TOPIC)?;
    let partition = strom_txn::partition_for(transactional_id, state_partition_count(txns));
    topic
        .partitions
        .get(&partition)
        .map(|p| p.leader)
        .filter(|leader| *leader >= 0)
}

/// Asks the id's coordinator about `partitions` (all of one write); see the module's notes.
pub(crate) async fn check_writes<'a>(
    txns: &'a Txns,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    protocol: TxnProtocol,
) -> WriteChecks<'a> {
    if partitions.is_empty() {
        return WriteChecks {
            verdicts: HashMap::new(),
            _held: None,
        };
    }
    let all = |result: Result<(), TxnError>| partitions.iter().map(|p| (p.clone(), result)).collect();
    match coordinator_of(txns, transactional_id) {
        Some(coordinator) if coordinator == txns.logs.cluster.node_id => {
            let held = txns.ids.lock(transactional_id).await;
            let verdicts = check_here(txns, transactional_id, producer, partitions, protocol).await;
            WriteChecks {
                verdicts,
                _held: Some(held),
            }
        }
        Some(coordinator) => {
            let verdicts = match ask(txns, coordinator, transactional_id, producer, partitions, protocol).await {
                Ok(verdicts) => verdicts,
                Err(e) => {
                    tracing::warn!(coordinator, transactional_id, error = %e, "could not ask the transaction coordinator");
                    all(Err(TxnError::CoordinatorNotAvailable))
                }
            };
            WriteChecks { verdicts, _held: None }
        }
        None => WriteChecks {
            verdicts: all(Err(TxnError::CoordinatorNotAvailable)),
            _held: None,
        },
    }
}

/// The answer of this broker's coordinator; the caller holds the id's lock.
async fn check_here(
    txns: &Txns,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    protocol: TxnProtocol,
) -> HashMap<(String, i32), Result<(), TxnError>> {
    match protocol {
        TxnProtocol::V1 => {
            let count = state_partition_count(txns);
            let state = txns.lock();
            let owned = state.owns(transactional_id, count);
            partitions
                .iter()
                .map(|(topic, index)| {
                    let verdict = owned.and_then(|()| {
                        state
                            .coordinator
                            .verify_partition(transactional_id, producer.0, producer.1, topic, *index)
                    });
                    ((topic.clone(), *index), verdict)
                })
                .collect()
        }
        TxnProtocol::V2 => {
            let added = add_locked(txns, transactional_id, producer, partitions, protocol).await;
            partitions.iter().map(|p| (p.clone(), added)).collect()
        }
    }
}

async fn ask(
    txns: &Txns,
    coordinator: i32,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    protocol: TxnProtocol,
) -> Result<HashMap<(String, i32), Result<(), TxnError>>, String> {
    let cluster = &txns.logs.cluster;
    let by_topic: Vec<AddPartitionsToTxnTopic> = super::by_topic(partitions)
        .into_iter()
        .map(|(name, indexes)| {
            let mut entry = AddPartitionsToTxnTopic::default();
            entry.name = TopicName(StrBytes::from_string(name.to_string()));
            entry.partitions = indexes;
            entry
        })
        .collect();
    let mut transaction = AddPartitionsToTxnTransaction::default();
    transaction.transactional_id = TransactionalId(StrBytes::from_string(transactional_id.to_string()));
    transaction.producer_id = ProducerId(producer.0);
    transaction.producer_epoch = producer.1;
    transaction.verify_only = protocol == TxnProtocol::V1;
    transaction.topics = by_topic;
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![transaction];
    let response: AddPartitionsToTxnResponse = cluster
        .peers
        .call(
            cluster,
            coordinator,
            ApiKey::AddPartitionsToTxn,
            BROKER_ADD_PARTITIONS_VERSION,
            &request,
            CALL_TIMEOUT,
        )
        .await?;
    let mut verdicts: HashMap<(String, i32), Result<(), TxnError>> = HashMap::new();
    if response.error_code != 0 {
        let error = txn_error_of(response.error_code);
        return Ok(partitions.iter().map(|p| (p.clone(), Err(error))).collect());
    }
    for result in &response.results_by_transaction {
        for topic in &result.topic_results {
            for partition in &topic.results_by_partition {
                let verdict = match partition.partition_error_code {
                    0 => Ok(()),
                    code => Err(txn_error_of(code)),
                };
                verdicts.insert((topic.name.to_string(), partition.partition_index), verdict);
            }
        }
    }
    // A partition the answer left out was not vouched for.
    for partition in partitions {
        verdicts
            .entry(partition.clone())
            .or_insert(Err(TxnError::CoordinatorNotAvailable));
    }
    Ok(verdicts)
}

/// The coordinator's refusal behind a Kafka error code.
fn txn_error_of(code: i16) -> TxnError {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch) => TxnError::ProducerFenced,
        Some(ResponseError::InvalidProducerIdMapping) => TxnError::InvalidProducerIdMapping,
        Some(ResponseError::InvalidTxnState) => TxnError::InvalidTxnState,
        Some(ResponseError::ConcurrentTransactions) => TxnError::ConcurrentTransactions,
        Some(ResponseError::NotCoordinator) => TxnError::NotCoordinator,
        Some(ResponseError::CoordinatorLoadInProgress) => TxnError::CoordinatorLoadInProgress,
        _ => TxnError::CoordinatorNotAvailable,
    }
}

/// Answers another broker's check (AddPartitionsToTxn v4+, one transaction of it):
/// `verify_only` checks the partitions are in the transaction (v1 clients), otherwise adds
/// them (v2 clients). The verdict of each partition.
pub(crate) async fn check_for_broker(
    txns: &Txns,
    transactional_id: &str,
    producer: (i64, i16),
    partitions: &[(String, i32)],
    verify_only: bool,
) -> HashMap<(String, i32), Result<(), TxnError>> {
    let protocol = match verify_only {
        true => TxnProtocol::V1,
        false => TxnProtocol::V2,
    };
    let _id = txns.ids.lock(transactional_id).await;
    check_here(txns, transactional_id, producer, partitions, protocol).await
}
