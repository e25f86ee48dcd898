//! CreatePartitions (key 37): grow a topic, optionally with a manual assignment of the new
//! partitions, checked as Kafka checks it.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::create_topics::check_assignments;
use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::topics::TopicError;

/// Every partition of a single-node broker has one replica.
const REPLICATION_FACTOR: usize = 1;

pub(super) fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        let outcome = broker.topics.add_partitions(
            &topic.name,
            topic.count,
            |current| check_new_assignments(broker, topic.assignments.as_deref(), current, topic.count),
            request.validate_only,
            now_ms(),
        );
        if let Err(e) = outcome {
            result.error_code = e.code();
            result.error_message = Some(str_bytes(&e.to_string()));
        }
        result.name = topic.name;
        response.results.push(result);
    }
    response
}

/// A manual assignment (null means none) holds exactly one replica list per new partition,
/// each valid for the topic (see [`check_assignments`]).
fn check_new_assignments(
    broker: &Broker,
    assignments: Option<&[CreatePartitionsAssignment]>,
    current: i32,
    count: i32,
) -> Result<(), TopicError> {
    let Some(assignments) = assignments else {
        return Ok(());
    };
    let additional = count - current;
    if assignments.len() != additional as usize {
        return Err(TopicError::InvalidReplicaAssignment(format!(
            "adding {additional} partition(s) needs one replica list per new partition, but the assignment has {}",
            assignments.len()
        )));
    }
    let lists = (current..).zip(assignments.iter().map(|a| &a.broker_ids[..]));
    check_assignments(broker, lists, Some(REPLICATION_FACTOR))
}
