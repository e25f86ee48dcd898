//! The transactional APIs (KIP-98): AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn
//! (26), TxnOffsetCommit (28), DescribeProducers (61), DescribeTransactions (65),
//! ListTransactions (66). The work is in `crate::txns` and the partitions' logs; this module
//! maps requests and answers. DescribeProducers and ListTransactions together find a hanging
//! transaction (KIP-664): a producer whose transaction is open in a partition but that the
//! coordinator does not list as Ongoing.
//!
//! A request's version says which transaction protocol its client runs: EndTxn 5 and
//! TxnOffsetCommit 5 (with Produce 12) are transactions v2 (KIP-890 part 2), in which the
//! commit adds its offsets partition and every end bumps the epoch, the new one (or a new
//! producer id) going back in EndTxn's answer. AddPartitionsToTxn stops at 3: 4 and later are
//! the brokers' batched verification form, which a partition leader or group coordinator
//! sends a transaction coordinator on another broker (`crate::txns::check_for_broker`).
//! WriteTxnMarkers (27) is a coordinator asking a partition's leader to end a transaction
//! there, or an admin ending a hanging one whose producer is gone (KIP-664).

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState as DescribedProducer, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;
use strom_group::{MemberRef, OffsetToCommit};
use strom_txn::{TxnError, TxnProtocol, TxnState};

use super::{code, commit_error_code, offset_to_commit, str_bytes, topic_name};
use crate::broker::Broker;
use crate::groups::CommitError;
use crate::txns;

pub(crate) fn txn_error_code(error: TxnError) -> i16 {
    code(txn_response_error(error))
}

/// The first version of each API that may answer PRODUCER_FENCED (KIP-588). Kafka answers
/// older versions INVALID_PRODUCER_EPOCH instead, the code their clients know and treat as
/// fenced (KafkaJS, which sends EndTxn 1, knows no code 90 at all).
pub(crate) const INIT_PRODUCER_ID_FENCED_SINCE: i16 = 4;
const ADD_PARTITIONS_FENCED_SINCE: i16 = 2;
const ADD_OFFSETS_FENCED_SINCE: i16 = 2;
const END_TXN_FENCED_SINCE: i16 = 2;
/// AddPartitionsToTxn from here on is the brokers' batched form (KIP-890), which clients do
/// not send.
const BROKER_FORM_SINCE: i16 = 4;

/// The error code for a refusal answered at `version` of an API that may answer
/// PRODUCER_FENCED from `fenced_since` on.
pub(crate) fn versioned_txn_error_code(error: TxnError, version: i16, fenced_since: i16) -> i16 {
    match error {
        TxnError::ProducerFenced if version < fenced_since => code(ResponseError::InvalidProducerEpoch),
        error => txn_error_code(error),
    }
}

/// The Kafka error for each of the transaction coordinator's refusals.
pub(crate) fn txn_response_error(error: TxnError) -> ResponseError {
    match error {
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
        TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        TxnError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        TxnError::InvalidRequest(_) => ResponseError::InvalidRequest,
    }
}

pub(super) async fn add_partitions(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version >= BROKER_FORM_SINCE {
        return check_for_broker(broker, request, version).await;
    }
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|topic| {
            let name = topic.name.to_string();
            topic.partitions.iter().map(move |index| (name.clone(), *index))
        })
        .collect();
    // Kafka refuses the whole request when any partition is unknown, naming it; the others
    // get OPERATION_NOT_ATTEMPTED.
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|(topic, index)| {
            broker.topics.partition(topic, *index).is_none() || crate::internal_topic::is_coordinator_topic(topic)
        })
        .collect();
    let result = if unknown.iter().any(|u| *u) {
        Err(None)
    } else {
        txns::add_partitions(
            &broker.txns,
            &request.v3_and_below_transactional_id,
            (request.v3_and_below_producer_id.0, request.v3_and_below_producer_epoch),
            &partitions,
        )
        .await
        .map_err(Some)
    };
    let mut unknown = unknown.into_iter();
    let mut response = AddPartitionsToTxnResponse::default();
    response.results_by_topic_v3_and_below = partition_results(request.v3_and_below_topics, |_, _| {
        let this_unknown = unknown.next().unwrap_or(false);
        match result {
            Ok(()) => 0,
            Err(Some(error)) => versioned_txn_error_code(error, version, ADD_PARTITIONS_FENCED_SINCE),
            Err(None) if this_unknown => code(ResponseError::UnknownTopicOrPartition),
            Err(None) => code(ResponseError::OperationNotAttempted),
        }
    });
    response
}

/// AddPartitionsToTxn v4+: another broker checking transactional writes with this
/// coordinator (KIP-890), one transaction at a time.
async fn check_for_broker(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let mut response = AddPartitionsToTxnResponse::default();
    for transaction in request.transactions {
        let partitions: Vec<(String, i32)> = transaction
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
            .collect();
        let verdicts = txns::check_for_broker(
            &broker.txns,
            &transaction.transactional_id,
            (transaction.producer_id.0, transaction.producer_epoch),
            &partitions,
            transaction.verify_only,
        )
        .await;
        let mut result = AddPartitionsToTxnResult::default();
        result.transactional_id = transaction.transactional_id;
        result.topic_results = partition_results(transaction.topics, |topic, index| {
            match verdicts.get(&(topic.to_string(), index)).copied().unwrap_or(Ok(())) {
                Ok(()) => 0,
                Err(error) => versioned_txn_error_code(error, version, ADD_PARTITIONS_FENCED_SINCE),
            }
        });
        response.results_by_transaction.push(result);
    }
    response
}

/// One result per partition of `topics`, in their order, with `code_of(topic, partition)`.
fn partition_results(
    topics: Vec<AddPartitionsToTxnTopic>,
    mut code_of: impl FnMut(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .into_iter()
        .map(|topic| {
            let mut out = AddPartitionsToTxnTopicResult::default();
            out.results_by_partition = topic
                .partitions
                .iter()
                .map(|index| {
                    let mut partition = AddPartitionsToTxnPartitionResult::default();
                    partition.partition_index = *index;
                    partition.partition_error_code = code_of(topic.name.as_str(), *index);
                    partition
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect()
}

pub(super) async fn add_offsets(
    broker: &Broker,
    request: &AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let mut response = AddOffsetsToTxnResponse::default();
    if request.group_id.is_empty() {
        response.error_code = code(ResponseError::InvalidGroupId);
        return response;
    }
    if let Err(error) = txns::add_offsets(
        &broker.txns,
        &request.transactional_id,
        (request.producer_id.0, request.producer_epoch),
        &request.group_id,
    )
    .await
    {
        response.error_code = versioned_txn_error_code(error, version, ADD_OFFSETS_FENCED_SINCE);
    }
    response
}

pub(super) async fn end(broker: &Broker, request: &EndTxnRequest, version: i16) -> EndTxnResponse {
    let mut response = EndTxnResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let producer = (request.producer_id.0, request.producer_epoch);
    let ended = if txn_protocol(version, 5) == TxnProtocol::V2 {
        txns::end_txn_v2(&broker.txns, &request.transactional_id, producer, request.committed).await
    } else {
        txns::end_txn(&broker.txns, &request.transactional_id, producer, request.committed)
            .await
            .map(|()| (-1, -1))
    };
    match ended {
        Ok((producer_id, producer_epoch)) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = producer_epoch;
        }
        Err(error) => response.error_code = versioned_txn_error_code(error, version, END_TXN_FENCED_SINCE),
    }
    response
}

/// Which transaction protocol a request of `version` belongs to, given the first version of
/// its API that is transactions v2 (Produce 12, TxnOffsetCommit 5, EndTxn 5).
pub(super) fn txn_protocol(version: i16, first_v2_version: i16) -> TxnProtocol {
    if version >= first_v2_version {
        TxnProtocol::V2
    } else {
        TxnProtocol::V1
    }
}

pub(super) async fn offset_commit(
    broker: &Broker,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let committer = MemberRef {
        group_id: request.group_id.to_string(),
        generation_id: if version >= 3 { request.generation_id } else { -1 },
        member_id: if version >= 3 {
            request.member_id.to_string()
        } else {
            String::new()
        },
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
    };
    let offsets: Vec<OffsetToCommit> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                let leader_epoch = if version >= 2 {
                    partition.committed_leader_epoch
                } else {
                    -1
                };
                offset_to_commit(
                    &topic.name,
                    partition.partition_index,
                    partition.committed_offset,
                    leader_epoch,
                    partition.committed_metadata.as_ref(),
                )
            })
        })
        .collect();
    let protocol = txn_protocol(version, 5);
    // A fenced producer's TxnOffsetCommit is refused by Kafka's write verification (and, past
    // it, by the offsets log's epoch check), both of which answer INVALID_PRODUCER_EPOCH at
    // every version: TxnOffsetCommit never answers PRODUCER_FENCED.
    let fenced = code(ResponseError::InvalidProducerEpoch);
    let codes: Vec<i16> = match txns::txn_offset_commit(
        &broker.txns,
        &request.transactional_id,
        (request.producer_id.0, request.producer_epoch),
        &committer,
        &offsets,
        protocol,
    )
    .await
    {
        Ok(Ok(results)) => results
            .into_iter()
            .map(|result| match result {
                Ok(_) => 0,
                Err(CommitError::ProducerFenced) => fenced,
                Err(error) => commit_error_code(error),
            })
            .collect(),
        Ok(Err(error)) => vec![commit_error_code(CommitError::Group(error)); offsets.len()],
        Err(TxnError::ProducerFenced) => vec![fenced; offsets.len()],
        Err(error) => vec![txn_error_code(error); offsets.len()],
    };
    let mut codes = codes.into_iter();
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut out = TxnOffsetCommitResponseTopic::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut answer = TxnOffsetCommitResponsePartition::default();
                    answer.partition_index = partition.partition_index;
                    answer.error_code = codes.next().unwrap_or(0);
                    answer
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}

/// WriteTxnMarkers from a transaction coordinator on another broker, or from an admin aborting
/// a hanging transaction (`kafka-transactions abort`): each marker written into the partitions
/// led here, and replicated, before the answer.
pub(super) async fn write_markers(broker: &Broker, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut response = WriteTxnMarkersResponse::default();
    for marker in request.markers {
        let partitions: Vec<(String, i32)> = marker
            .topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(move |p| (t.name.to_string(), *p)))
            .collect();
        let results = txns::write_markers_here(
            &broker.txns,
            marker.producer_id.0,
            marker.producer_epoch,
            marker.transaction_result,
            &partitions,
        )
        .await;
        let mut results = results.into_iter();
        let mut out = WritableTxnMarkerResult::default();
        out.producer_id = marker.producer_id;
        out.topics = marker
            .topics
            .into_iter()
            .map(|topic| {
                let mut topic_result = WritableTxnMarkerTopicResult::default();
                topic_result.partitions = topic
                    .partition_indexes
                    .iter()
                    .map(|index| {
                        let mut partition = WritableTxnMarkerPartitionResult::default();
                        partition.partition_index = *index;
                        partition.error_code = match results.next() {
                            Some(Ok(())) => 0,
                            Some(Err(error)) => code(error),
                            None => code(ResponseError::UnknownServerError),
                        };
                        partition
                    })
                    .collect();
                topic_result.name = topic.name;
                topic_result
            })
            .collect();
        response.markers.push(out);
    }
    response
}

pub(super) fn describe(broker: &Broker, request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    response.transaction_states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let mut state = TransactionState::default();
            match txns::describe(&broker.txns, &id) {
                Err(error) => {
                    state.error_code = txn_error_code(error);
                    state.producer_id = ProducerId(-1);
                    state.producer_epoch = -1;
                    state.transaction_start_time_ms = -1;
                }
                Ok(txn) => {
                    state.transaction_state = str_bytes(txn.state.name());
                    state.transaction_timeout_ms = txn.timeout_ms;
                    state.transaction_start_time_ms = txn.txn_start_ms;
                    state.producer_id = ProducerId(txn.producer_id);
                    state.producer_epoch = txn.producer_epoch;
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, partition) in txn.partitions {
                        match topics.last_mut() {
                            Some(last) if last.topic.as_str() == topic => last.partitions.push(partition),
                            _ => {
                                let mut data = TopicData::default();
                                data.topic = topic_name(&topic);
                                data.partitions = vec![partition];
                                topics.push(data);
                            }
                        }
                    }
                    state.topics = topics;
                }
            }
            state.transactional_id = id;
            state
        })
        .collect();
    response
}

pub(super) fn list(broker: &Broker, request: ListTransactionsRequest, version: i16) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(state) => states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    // Filtering only by unknown states matches nothing.
    if !request.state_filters.is_empty() && states.is_empty() {
        return response;
    }
    let producer_ids: Vec<i64> = request.producer_id_filters.iter().map(|id| id.0).collect();
    let duration = (version >= 1 && request.duration_filter >= 0).then_some(request.duration_filter);
    let pattern = match request
        .transactional_id_pattern
        .as_deref()
        .filter(|p| version >= 2 && !p.is_empty())
    {
        None => None,
        Some(pattern) => match regex::Regex::new(pattern) {
            Ok(regex) => Some(regex),
            Err(_) => {
                response.error_code = code(ResponseError::InvalidRegularExpression);
                return response;
            }
        },
    };
    response.transaction_states = txns::list(&broker.txns, &states, &producer_ids, duration)
        .into_iter()
        .filter(|listing| {
            pattern
                .as_ref()
                .is_none_or(|regex| regex.is_match(&listing.transactional_id))
        })
        .map(|listing| {
            let mut out = ListedTransaction::default();
            out.transactional_id = TransactionalId(str_bytes(&listing.transactional_id));
            out.producer_id = ProducerId(listing.producer_id);
            out.transaction_state = str_bytes(listing.state.name());
            out
        })
        .collect();
    response
}

pub(super) fn describe_producers(broker: &Broker, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut out = TopicResponse::default();
            out.partitions = topic
                .partition_indexes
                .iter()
                .map(|index| {
                    let mut partition = PartitionResponse::default();
                    partition.partition_index = *index;
                    let producers = broker
                        .topics
                        .partition(&topic.name, *index)
                        .and_then(|p| p.lock().as_ref().map(strom_storage::Log::producers));
                    match producers {
                        None => partition.error_code = code(ResponseError::UnknownTopicOrPartition),
                        Some(producers) => {
                            partition.active_producers = producers
                                .into_iter()
                                .map(|p| {
                                    let mut described = DescribedProducer::default();
                                    described.producer_id = ProducerId(p.producer_id);
                                    described.producer_epoch = i32::from(p.producer_epoch);
                                    described.last_sequence = p.last_sequence;
                                    described.last_timestamp = p.last_timestamp_ms;
                                    // The coordinator epoch of the last marker is not kept.
                                    described.coordinator_epoch = -1;
                                    described.current_txn_start_offset = p.current_txn_start_offset;
                                    described
                                })
                                .collect();
                        }
                    }
                    partition
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}
