//! Brokers joining, staying alive, leaving: registration, heartbeats, fencing, controlled
//! shutdown, unregistration, producer id blocks, and the timer (session timeouts, moving
//! leadership back to preferred replicas).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{Controller, ControllerError, Plan};
use crate::election::{diff, Election};
use crate::image::{apply_partition_change, MetadataImage};
use crate::records::{BrokerId, BrokerRegistration, Endpoint, MetadataRecord, PartitionChange};

/// Kafka's `leader.imbalance.per.broker.percentage`: leadership moves back to a broker's
/// preferred partitions once more than this share of them is led elsewhere.
const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerRegistrationRequest {
    pub id: BrokerId,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The epoch of the session this broker closed cleanly (-1 if it did not, or never had
    /// one): after an unclean shutdown its log may have lost records it had acknowledged as a
    /// follower, so it loses its KIP-966 eligibility.
    pub previous_broker_epoch: i64,
}

/// The answer to a registration: the broker epoch is the log index its record commits at,
/// known only then, unless the registration was already there (a retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Registered {
    AtCommitIndex,
    Existing { epoch: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerHeartbeat {
    pub id: BrokerId,
    pub epoch: i64,
    /// The metadata log index the broker has applied.
    pub metadata_offset: u64,
    pub want_fence: bool,
    pub want_shutdown: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerIdBlock {
    pub first_producer_id: i64,
    pub size: i64,
}

impl Controller {
    pub fn register_broker(
        &mut self,
        image: &MetadataImage,
        now_ms: i64,
        request: BrokerRegistrationRequest,
    ) -> Result<Plan<Registered>, ControllerError> {
        let id = request.id;
        let existing = image.broker(id);
        if let Some(existing) = existing {
            if existing.incarnation_id == request.incarnation_id {
                // A retry whose answer was lost: the registration is already committed.
                self.last_heartbeat_ms.insert(id, now_ms);
                return Ok(Plan::new(Vec::new(), Registered::Existing { epoch: existing.epoch }));
            }
            // A session that shut down under the controller's control has ended: its successor
            // need not wait for it to time out.
            if !existing.fenced && !existing.in_controlled_shutdown && self.is_alive(id, now_ms) {
                return Err(ControllerError::DuplicateBrokerRegistration(id));
            }
        }
        let clean_restart = existing.is_some_and(|b| b.epoch == request.previous_broker_epoch);
        let mut records = vec![MetadataRecord::RegisterBroker(BrokerRegistration {
            id,
            incarnation_id: request.incarnation_id,
            epoch: 0,
            endpoints: request.endpoints,
            rack: request.rack,
            fenced: true,
            fenced_at: 0,
            in_controlled_shutdown: false,
        })];
        // The new session starts fenced: the old one's leaderships and ISR places go, and after
        // an unclean shutdown its eligibility too.
        let gone = BTreeSet::from([id]);
        for (topic, partition, state) in image.partitions() {
            if !state.replicas.contains(&id) {
                continue;
            }
            let mut next = state.clone();
            if !clean_restart && next.elr.contains(&id) {
                next.elr.retain(|b| *b != id);
                // It was among the last to hold everything: if nobody else is eligible, only
                // a recovery of the last known replicas (or an operator's unclean election) can
                // bring the partition back, and it should prefer this one.
                if next.elr.is_empty() && next.isr.is_empty() && !next.last_known_elr.contains(&id) {
                    next.last_known_elr.push(id);
                }
            }
            let usable = |b: BrokerId| image.is_usable(b) && !gone.contains(&b);
            let isr: Vec<BrokerId> = next.isr.iter().copied().filter(|b| *b != id).collect();
            if let Some(change) = self.decide(image, &topic.name, &next, &isr, Election::Clean, &usable) {
                apply_partition_change(&mut next, &change);
            }
            if let Some(change) = diff(state, &next) {
                records.push(MetadataRecord::PartitionChange(PartitionChange {
                    topic_id: topic.id,
                    partition,
                    ..change
                }));
            }
        }
        self.last_heartbeat_ms.insert(id, now_ms);
        Ok(Plan::new(records, Registered::AtCommitIndex))
    }

    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        now_ms: i64,
        request: &BrokerHeartbeat,
    ) -> Result<Plan<HeartbeatReply>, ControllerError> {
        let broker = current_registration(image, request.id, request.epoch)?;
        self.last_heartbeat_ms.insert(request.id, now_ms);
        // Caught up: it has applied its registration, and the batch that last fenced it (which
        // moved what it led): an image older than that would have it lead what it lost.
        let is_caught_up = request.metadata_offset >= (broker.epoch as u64).max(broker.fenced_at);
        let mut records = Vec::new();
        let mut is_fenced = broker.fenced;
        let mut should_shut_down = false;
        if request.want_shutdown {
            if broker.fenced {
                should_shut_down = true;
            } else if broker.in_controlled_shutdown {
                // Once nothing is led here any more (the controlled shutdown's records moved it
                // all) and the broker has applied those records, so it knows, it may stop.
                let seen_at = *self.shutdown_seen_at.entry(request.id).or_insert(image.offset);
                should_shut_down = !leads_anything(image, request.id) && request.metadata_offset >= seen_at;
            } else {
                records.push(MetadataRecord::BrokerRegistrationChange {
                    id: request.id,
                    epoch: broker.epoch,
                    fenced: None,
                    in_controlled_shutdown: Some(true),
                });
                records.extend(self.departure_changes(image, &BTreeSet::from([request.id])));
            }
        } else if request.want_fence && !broker.fenced {
            records.extend(self.fence(image, &BTreeSet::from([request.id])));
            is_fenced = true;
        } else if broker.fenced && !request.want_fence && is_caught_up {
            records.push(MetadataRecord::BrokerRegistrationChange {
                id: request.id,
                epoch: broker.epoch,
                fenced: Some(false),
                in_controlled_shutdown: None,
            });
            records.extend(self.arrival_changes(image, request.id));
            is_fenced = false;
        }
        Ok(Plan::new(
            records,
            HeartbeatReply {
                is_caught_up,
                is_fenced,
                should_shut_down,
            },
        ))
    }

    /// Removes a broker from the cluster (after it was decommissioned and stopped). Any
    /// replica it still holds leaves the ISRs and leaderships as if it were fenced.
    pub fn unregister_broker(&mut self, image: &MetadataImage, id: BrokerId) -> Result<Plan<()>, ControllerError> {
        let broker = image.broker(id).ok_or(ControllerError::BrokerNotRegistered(id))?;
        let mut records = self.departure_changes(image, &BTreeSet::from([id]));
        records.push(MetadataRecord::UnregisterBroker {
            id,
            epoch: broker.epoch,
        });
        self.last_heartbeat_ms.remove(&id);
        Ok(Plan::new(records, ()))
    }

    pub fn allocate_producer_ids(
        &mut self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
    ) -> Result<Plan<ProducerIdBlock>, ControllerError> {
        current_registration(image, broker_id, broker_epoch)?;
        let first = image.next_producer_id();
        let size = self.config.producer_id_block_size;
        let next = first.checked_add(size).ok_or(ControllerError::ProducerIdsExhausted)?;
        Ok(Plan::new(
            vec![MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id: next,
            }],
            ProducerIdBlock {
                first_producer_id: first,
                size,
            },
        ))
    }

    /// Makes sure no producer id below `floor` is ever handed out: a broker adopting a
    /// single-node data directory has producers below its old allocator's mark in its logs.
    /// Nothing is written if the cluster is past it already.
    pub fn reserve_producer_ids(
        &mut self,
        image: &MetadataImage,
        broker_id: BrokerId,
        broker_epoch: i64,
        floor: i64,
    ) -> Result<Plan<()>, ControllerError> {
        current_registration(image, broker_id, broker_epoch)?;
        let records = if image.next_producer_id() < floor {
            vec![MetadataRecord::ProducerIds {
                broker_id,
                broker_epoch,
                next_producer_id: floor,
            }]
        } else {
            Vec::new()
        };
        Ok(Plan::new(records, ()))
    }

    /// Fences brokers whose session ran out and, every leader imbalance check interval, moves
    /// leadership back to preferred replicas.
    pub fn tick(&mut self, image: &MetadataImage, now_ms: i64) -> Plan<()> {
        let expired: BTreeSet<BrokerId> = image
            .brokers()
            .filter(|b| !b.fenced && !self.is_alive(b.id, now_ms))
            .map(|b| b.id)
            .collect();
        let mut records = self.fence(image, &expired);
        self.last_heartbeat_ms.retain(|id, _| image.broker(*id).is_some());
        self.shutdown_seen_at
            .retain(|id, _| image.broker(*id).is_some_and(|b| b.in_controlled_shutdown));
        if self.config.auto_leader_rebalance_enable && now_ms >= self.next_rebalance_check_ms && records.is_empty() {
            self.next_rebalance_check_ms = now_ms + self.config.leader_imbalance_check_interval_ms;
            records.extend(self.rebalance_leaders(image));
        }
        Plan::new(records, ())
    }

    /// Unfenced brokers whose last heartbeat is more than `overdue_ms` old while their session
    /// still runs: worth a liveness probe, so a broker whose process is gone can be fenced
    /// before its session runs out ([`Controller::fence_down`]).
    pub fn overdue(&self, image: &MetadataImage, now_ms: i64, overdue_ms: i64) -> Vec<BrokerId> {
        image
            .brokers()
            .filter(|b| !b.fenced && !b.in_controlled_shutdown)
            .filter(|b| {
                self.last_heartbeat_ms
                    .get(&b.id)
                    .is_some_and(|t| now_ms - t > overdue_ms && now_ms < t + self.config.broker_session_timeout_ms)
            })
            .map(|b| b.id)
            .collect()
    }

    /// Fences a broker found down before its session ran out (its listener refuses
    /// connections: no process is there). As a session expiry: it leaves the ISRs, its
    /// leaderships move, and it comes back by registering (or heartbeating) again.
    pub fn fence_down(&mut self, image: &MetadataImage, id: BrokerId) -> Plan<()> {
        if image.broker(id).is_none_or(|b| b.fenced) {
            return Plan::new(Vec::new(), ());
        }
        self.last_heartbeat_ms.remove(&id);
        Plan::new(self.fence(image, &BTreeSet::from([id])), ())
    }

    fn is_alive(&self, id: BrokerId, now_ms: i64) -> bool {
        self.last_heartbeat_ms
            .get(&id)
            .is_some_and(|t| now_ms < t + self.config.broker_session_timeout_ms)
    }

    /// Fences `brokers`: their registrations, then every partition they led or were in sync for.
    fn fence(&self, image: &MetadataImage, brokers: &BTreeSet<BrokerId>) -> Vec<MetadataRecord> {
        let mut records: Vec<MetadataRecord> = brokers
            .iter()
            .filter_map(|id| image.broker(*id))
            .map(|b| MetadataRecord::BrokerRegistrationChange {
                id: b.id,
                epoch: b.epoch,
                fenced: Some(true),
                in_controlled_shutdown: None,
            })
            .collect();
        records.extend(self.departure_changes(image, brokers));
        records
    }

    /// The partition changes when `gone` can no longer lead or be in sync: they leave the ISRs
    /// (keeping KIP-966 eligibility where too few replicas remain) and new leaders are elected.
    fn departure_changes(&self, image: &MetadataImage, gone: &BTreeSet<BrokerId>) -> Vec<MetadataRecord> {
        if gone.is_empty() {
            return Vec::new();
        }
        let usable = |b: BrokerId| image.is_usable(b) && !gone.contains(&b);
        image
            .partitions()
            .filter(|(_, _, s)| s.isr.iter().any(|b| gone.contains(b)) || gone.contains(&s.leader))
            .filter_map(|(topic, partition, state)| {
                let isr: Vec<BrokerId> = state.isr.iter().copied().filter(|b| !gone.contains(b)).collect();
                self.settle(
                    image,
                    (&topic.name, topic.id),
                    partition,
                    state,
                    &isr,
                    Election::Clean,
                    &usable,
                )
            })
            .collect()
    }

    /// The partition changes when `arriving` is unfenced: leaderless partitions it may lead
    /// (from their ELR, or unclean where the topic allows it) elect it.
    fn arrival_changes(&self, image: &MetadataImage, arriving: BrokerId) -> Vec<MetadataRecord> {
        let usable = |b: BrokerId| b == arriving || image.is_usable(b);
        image
            .partitions()
            .filter(|(_, _, s)| !s.has_leader() && s.replicas.contains(&arriving))
            .filter_map(|(topic, partition, state)| {
                self.settle(
                    image,
                    (&topic.name, topic.id),
                    partition,
                    state,
                    &state.isr,
                    Election::Clean,
                    &usable,
                )
            })
            .collect()
    }

    /// Preferred leader elections for brokers leading fewer than their share.
    fn rebalance_leaders(&self, image: &MetadataImage) -> Vec<MetadataRecord> {
        let usable = |b: BrokerId| image.is_usable(b);
        let mut preferred: BTreeMap<BrokerId, (usize, usize)> = BTreeMap::new();
        for (_, _, state) in image.partitions() {
            if let Some(first) = state.replicas.first() {
                let entry = preferred.entry(*first).or_default();
                entry.0 += 1;
                if state.leader != *first {
                    entry.1 += 1;
                }
            }
        }
        let imbalanced: BTreeSet<BrokerId> = preferred
            .into_iter()
            .filter(|(_, (total, elsewhere))| elsewhere * 100 > total * LEADER_IMBALANCE_PER_BROKER_PERCENTAGE)
            .map(|(id, _)| id)
            .collect();
        image
            .partitions()
            .filter(|(_, _, s)| s.replicas.first().is_some_and(|p| imbalanced.contains(p)))
            .filter_map(|(topic, partition, state)| {
                self.settle(
                    image,
                    (&topic.name, topic.id),
                    partition,
                    state,
                    &state.isr,
                    Election::Preferred,
                    &usable,
                )
            })
            .collect()
    }
}

/// The broker's registration if `epoch` is its current one.
fn current_registration(
    image: &MetadataImage,
    id: BrokerId,
    epoch: i64,
) -> Result<&BrokerRegistration, ControllerError> {
    let broker = image.broker(id).ok_or(ControllerError::BrokerNotRegistered(id))?;
    if broker.epoch != epoch {
        return Err(ControllerError::StaleBrokerEpoch {
            id,
            epoch,
            current: broker.epoch,
        });
    }
    Ok(broker)
}

fn leads_anything(image: &MetadataImage, id: BrokerId) -> bool {
    image.partitions().any(|(_, _, s)| s.leader == id)
}
