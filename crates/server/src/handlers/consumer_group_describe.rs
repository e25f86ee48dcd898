//! ConsumerGroupDescribe (key 69, KIP-848): epochs, assignor and members of consumer groups,
//! with each member's current and target assignment.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as WireAssignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use kafka_protocol::ResponseError;
use strom_group::Assignment;

use super::authorized_operations::{self, Resource};
use super::{code, str_bytes, topic_name};
use crate::broker::Broker;
use crate::groups;

/// `member_type` (v1): this member speaks the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

pub(super) fn handle(
    broker: &Broker,
    request: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let ids = groups::topic_ids_by_name(&broker.groups);
    let wire = |assignment: Assignment| {
        let mut out = WireAssignment::default();
        out.topic_partitions = assignment
            .into_iter()
            .filter_map(|(topic, partitions)| {
                let mut entry = TopicPartitions::default();
                entry.topic_id = *ids.get(&topic)?;
                entry.topic_name = topic_name(&topic);
                entry.partitions = partitions.into_iter().collect();
                Some(entry)
            })
            .collect();
        out
    };
    let include_authorized_operations = request.include_authorized_operations;
    let mut response = ConsumerGroupDescribeResponse::default();
    response.groups = request
        .group_ids
        .into_iter()
        .map(|group_id| {
            let mut out = DescribedGroup::default();
            if let Err(error) = groups::check_coordinator(&broker.groups, &group_id) {
                out.error_code = super::group_error_code(error);
                out.group_id = group_id;
                return out;
            }
            match groups::describe_consumer_group(&broker.groups, &group_id) {
                None => {
                    out.error_code = code(ResponseError::GroupIdNotFound);
                    out.error_message = Some(str_bytes(&format!("{} is not a consumer group", group_id.as_str())));
                }
                Some(group) => {
                    // As Kafka: only groups described without an error carry them.
                    out.authorized_operations =
                        authorized_operations::answer(include_authorized_operations, Resource::Group);
                    out.group_state = str_bytes(group.state);
                    out.group_epoch = group.group_epoch;
                    out.assignment_epoch = group.assignment_epoch;
                    out.assignor_name = str_bytes(&group.assignor);
                    out.members = group
                        .members
                        .into_iter()
                        .map(|member| {
                            let mut described = Member::default();
                            described.member_id = str_bytes(&member.member_id);
                            described.instance_id = member.instance_id.as_deref().map(str_bytes);
                            described.rack_id = member.rack_id.as_deref().map(str_bytes);
                            described.member_epoch = member.member_epoch;
                            described.client_id = str_bytes(&member.client_id);
                            described.client_host = str_bytes(&member.client_host);
                            described.subscribed_topic_names =
                                member.subscribed_topic_names.iter().map(|t| topic_name(t)).collect();
                            described.subscribed_topic_regex = member.subscribed_topic_regex.as_deref().map(str_bytes);
                            described.assignment = wire(member.assignment);
                            described.target_assignment = wire(member.target_assignment);
                            if version >= 1 {
                                described.member_type = MEMBER_TYPE_CONSUMER;
                            }
                            described
                        })
                        .collect();
                }
            }
            out.group_id = group_id;
            out
        })
        .collect();
    response
}
