//! DescribeQuorum (key 55, KIP-595/KIP-853): the metadata quorum's leader, epoch and high
//! watermark, and every voter and observer with how far its log has come, as Kafka's
//! `kafka-metadata-quorum describe` shows them. The answer comes from the quorum's leader (the
//! only node that knows every replica's progress).

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::ResponseError;

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest, QuorumMember};

/// The metadata log's name, as Kafka names it.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub(super) async fn handle(broker: &Broker, request: DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
    let mut response = DescribeQuorumResponse::default();
    let asked = broker
        .cluster
        .call(&ControllerRequest::DescribeQuorum, std::time::Duration::from_secs(10))
        .await;
    let view = match asked {
        Ok(ControllerReply::Quorum(view)) => Ok(view),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e),
    };
    let view = match view {
        Ok(view) => view,
        Err(reason) => {
            response.error_code = code(ResponseError::NotLeaderOrFollower);
            if version >= 2 {
                response.error_message = Some(str_bytes(&format!("no quorum leader answered: {reason}")));
            }
            return response;
        }
    };
    let replica = |m: &QuorumMember| {
        let mut state = ReplicaState::default();
        state.replica_id = BrokerId(m.id as i32);
        state.log_end_offset = m.log_end_offset;
        if version >= 1 {
            state.last_fetch_timestamp = m.last_fetch_ms;
            state.last_caught_up_timestamp = if m.log_end_offset >= view.committed {
                m.last_fetch_ms
            } else {
                -1
            };
        }
        state
    };
    response.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut out = TopicData::default();
            out.topic_name = topic.topic_name.clone();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut partition = PartitionData::default();
                    partition.partition_index = p.partition_index;
                    if topic.topic_name.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        partition.error_code = code(ResponseError::UnknownTopicOrPartition);
                        return partition;
                    }
                    partition.leader_id = BrokerId(view.leader as i32);
                    partition.leader_epoch = view.term as i32;
                    partition.high_watermark = view.committed;
                    partition.current_voters = view.voters.iter().map(replica).collect();
                    partition.observers = view.observers.iter().map(replica).collect();
                    partition
                })
                .collect();
            out
        })
        .collect();
    if version >= 2 {
        response.nodes = view
            .voters
            .iter()
            .filter_map(|m| {
                let (host, port) = m.addr.rsplit_once(':')?;
                let mut listener = Listener::default();
                listener.name = str_bytes("CONTROLLER");
                listener.host = str_bytes(host);
                listener.port = port.parse().ok()?;
                let mut node = Node::default();
                node.node_id = BrokerId(m.id as i32);
                node.listeners = vec![listener];
                Some(node)
            })
            .collect();
    }
    response
}
