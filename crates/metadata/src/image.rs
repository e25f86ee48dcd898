//! The metadata image: the committed metadata log folded into the state every broker answers
//! from (Metadata, DescribeCluster, DescribeTopicPartitions, DescribeConfigs) and acts on
//! (which partitions it leads or follows).
//!
//! Every node applies the same records in the same order, so every image at the same offset
//! is the same. Applying a record returns what it changed, so a broker reacts to a change in
//! leadership without comparing whole images. A record that does not fit the image (a change to
//! a partition that does not exist) changes nothing and is reported, never a panic: the log is
//! shared by every node and one bad record must not stop them all.
//!
//! The image is also the snapshot: [`MetadataImage::to_snapshot`] and
//! [`MetadataImage::from_snapshot`] carry it whole to a node that is far behind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{BrokerId, BrokerRegistration, ConfigResource, MetadataRecord, PartitionChange, PartitionState};

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionState>,
}

/// What applying one record changed, for the nodes that act on metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Broker {
        id: BrokerId,
        old: Option<BrokerRegistration>,
        new: Option<BrokerRegistration>,
    },
    TopicCreated {
        id: Uuid,
        name: String,
    },
    TopicRemoved {
        id: Uuid,
        name: String,
        partitions: BTreeMap<i32, PartitionState>,
    },
    Partition {
        topic_id: Uuid,
        topic: String,
        partition: i32,
        old: Option<PartitionState>,
        new: PartitionState,
    },
    Config {
        resource: ConfigResource,
        name: String,
    },
    ProducerIds,
    Feature {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("record for unknown topic id {0}")]
    UnknownTopic(Uuid),
    #[error("record for unknown partition {1} of topic id {0}")]
    UnknownPartition(Uuid, i32),
    #[error("topic {name} is already registered under id {existing}")]
    DuplicateTopic { name: String, existing: Uuid },
    #[error("record for unknown broker {0}")]
    UnknownBroker(BrokerId),
    #[error("record for broker {id} names epoch {epoch}, but its registration has epoch {current}")]
    StaleBrokerEpoch { id: BrokerId, epoch: i64, current: i64 },
    #[error("producer id block ending at {0} does not move past the last one ({1})")]
    ProducerIdsBackwards(i64, i64),
}

#[derive(Debug, thiserror::Error)]
#[error("metadata snapshot does not decode: {0}")]
pub struct SnapshotError(String);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The metadata log index of the last batch applied (0: nothing yet).
    pub offset: u64,
    brokers: BTreeMap<BrokerId, BrokerRegistration>,
    topics: BTreeMap<Uuid, TopicImage>,
    topic_ids: BTreeMap<String, Uuid>,
    /// JSON maps need string keys, so the snapshot holds the configs as a list of pairs.
    #[serde(with = "pairs")]
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    /// The first producer id not yet handed out in a block.
    next_producer_id: i64,
    features: BTreeMap<String, i16>,
}

impl MetadataImage {
    pub fn new() -> MetadataImage {
        MetadataImage::default()
    }

    /// Applies one committed batch at log index `offset`. Records that do not fit are skipped
    /// and returned with the reason, for the caller to log.
    pub fn apply_batch(&mut self, offset: u64, records: &[MetadataRecord]) -> (Vec<Change>, Vec<ApplyError>) {
        let mut changes = Vec::with_capacity(records.len());
        let mut errors = Vec::new();
        for record in records {
            match self.apply(offset, record) {
                Ok(change) => changes.push(change),
                Err(e) => errors.push(e),
            }
        }
        self.offset = self.offset.max(offset);
        (changes, errors)
    }

    /// Applies one record at log index `offset` (the epoch of a broker it registers).
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) -> Result<Change, ApplyError> {
        match record {
            MetadataRecord::RegisterBroker(registration) => {
                let mut new = registration.clone();
                new.epoch = offset as i64;
                let old = self.brokers.insert(new.id, new.clone());
                Ok(Change::Broker {
                    id: new.id,
                    old,
                    new: Some(new),
                })
            }
            MetadataRecord::UnregisterBroker { id, epoch } => {
                self.check_broker_epoch(*id, *epoch)?;
                let old = self.brokers.remove(id);
                self.configs.remove(&ConfigResource::Broker(*id));
                Ok(Change::Broker {
                    id: *id,
                    old,
                    new: None,
                })
            }
            MetadataRecord::BrokerRegistrationChange {
                id,
                epoch,
                fenced,
                in_controlled_shutdown,
            } => {
                self.check_broker_epoch(*id, *epoch)?;
                let broker = self.brokers.get_mut(id).ok_or(ApplyError::UnknownBroker(*id))?;
                let old = broker.clone();
                if let Some(fenced) = fenced {
                    if *fenced && !broker.fenced {
                        broker.fenced_at = offset;
                    }
                    broker.fenced = *fenced;
                }
                if let Some(shutdown) = in_controlled_shutdown {
                    broker.in_controlled_shutdown = *shutdown;
                }
                Ok(Change::Broker {
                    id: *id,
                    old: Some(old),
                    new: Some(broker.clone()),
                })
            }
            MetadataRecord::Topic { name, id } => {
                if let Some(existing) = self.topic_ids.get(name) {
                    if existing != id {
                        return Err(ApplyError::DuplicateTopic {
                            name: name.clone(),
                            existing: *existing,
                        });
                    }
                }
                self.topic_ids.insert(name.clone(), *id);
                self.topics.entry(*id).or_insert_with(|| TopicImage {
                    name: name.clone(),
                    id: *id,
                    partitions: BTreeMap::new(),
                });
                Ok(Change::TopicCreated {
                    id: *id,
                    name: name.clone(),
                })
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                state,
            } => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or(ApplyError::UnknownTopic(*topic_id))?;
                let old = topic.partitions.insert(*partition, state.clone());
                Ok(Change::Partition {
                    topic_id: *topic_id,
                    topic: topic.name.clone(),
                    partition: *partition,
                    old,
                    new: state.clone(),
                })
            }
            MetadataRecord::PartitionChange(change) => {
                let topic = self
                    .topics
                    .get_mut(&change.topic_id)
                    .ok_or(ApplyError::UnknownTopic(change.topic_id))?;
                let state = topic
                    .partitions
                    .get_mut(&change.partition)
                    .ok_or(ApplyError::UnknownPartition(change.topic_id, change.partition))?;
                let old = state.clone();
                apply_partition_change(state, change);
                Ok(Change::Partition {
                    topic_id: change.topic_id,
                    topic: topic.name.clone(),
                    partition: change.partition,
                    old: Some(old),
                    new: state.clone(),
                })
            }
            MetadataRecord::RemoveTopic { id } => {
                let topic = self.topics.remove(id).ok_or(ApplyError::UnknownTopic(*id))?;
                self.topic_ids.remove(&topic.name);
                self.configs.remove(&ConfigResource::Topic(topic.name.clone()));
                Ok(Change::TopicRemoved {
                    id: *id,
                    name: topic.name,
                    partitions: topic.partitions,
                })
            }
            MetadataRecord::Config { resource, name, value } => {
                match value {
                    Some(value) => {
                        self.configs
                            .entry(resource.clone())
                            .or_default()
                            .insert(name.clone(), value.clone());
                    }
                    None => {
                        if let Some(configs) = self.configs.get_mut(resource) {
                            configs.remove(name);
                            if configs.is_empty() {
                                self.configs.remove(resource);
                            }
                        }
                    }
                }
                Ok(Change::Config {
                    resource: resource.clone(),
                    name: name.clone(),
                })
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                if *next_producer_id <= self.next_producer_id {
                    return Err(ApplyError::ProducerIdsBackwards(
                        *next_producer_id,
                        self.next_producer_id,
                    ));
                }
                self.next_producer_id = *next_producer_id;
                Ok(Change::ProducerIds)
            }
            MetadataRecord::FeatureLevel { name, level } => {
                self.features.insert(name.clone(), *level);
                Ok(Change::Feature { name: name.clone() })
            }
        }
    }

    fn check_broker_epoch(&self, id: BrokerId, epoch: i64) -> Result<(), ApplyError> {
        let broker = self.brokers.get(&id).ok_or(ApplyError::UnknownBroker(id))?;
        if broker.epoch != epoch {
            return Err(ApplyError::StaleBrokerEpoch {
                id,
                epoch,
                current: broker.epoch,
            });
        }
        Ok(())
    }

    pub fn to_snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the image always encodes")
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<MetadataImage, SnapshotError> {
        serde_json::from_slice(bytes).map_err(|e| SnapshotError(e.to_string()))
    }

    // ---- queries ----

    pub fn broker(&self, id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    /// Brokers that may lead and be in ISRs: registered, unfenced, not shutting down.
    pub fn is_usable(&self, id: BrokerId) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    }

    pub fn topic(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topics.values()
    }

    pub fn partition(&self, topic_id: &Uuid, partition: i32) -> Option<&PartitionState> {
        self.topics.get(topic_id).and_then(|t| t.partitions.get(&partition))
    }

    /// Every partition with its topic, in topic id then partition order.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicImage, i32, &PartitionState)> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |(p, s)| (t, *p, s)))
    }

    pub fn partition_count_total(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    /// A resource's dynamic configs (empty if none).
    pub fn configs(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.configs.get(resource)
    }

    pub fn config(&self, resource: &ConfigResource, name: &str) -> Option<&str> {
        self.configs.get(resource).and_then(|c| c.get(name)).map(String::as_str)
    }

    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    pub fn feature(&self, name: &str) -> Option<i16> {
        self.features.get(name).copied()
    }

    pub fn features(&self) -> &BTreeMap<String, i16> {
        &self.features
    }
}

mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?.into_iter().collect())
    }
}

/// Applies a partition change: absent fields stay, the partition epoch always moves, the
/// leader epoch moves with the leader.
pub fn apply_partition_change(state: &mut PartitionState, change: &PartitionChange) {
    if let Some(leader) = change.leader {
        if leader != state.leader {
            state.leader = leader;
            state.leader_epoch += 1;
        }
    }
    if let Some(isr) = &change.isr {
        state.isr = isr.clone();
    }
    if let Some(elr) = &change.elr {
        state.elr = elr.clone();
    }
    if let Some(last_known_elr) = &change.last_known_elr {
        state.last_known_elr = last_known_elr.clone();
    }
    if let Some(replicas) = &change.replicas {
        state.replicas = replicas.clone();
    }
    if let Some(removing) = &change.removing_replicas {
        state.removing_replicas = removing.clone();
    }
    if let Some(adding) = &change.adding_replicas {
        state.adding_replicas = adding.clone();
    }
    if let Some(recovery) = change.leader_recovery_state {
        state.leader_recovery_state = recovery;
    }
    state.partition_epoch += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Endpoint, NO_LEADER};

    fn registration(id: BrokerId) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation_id: Uuid::from_u128(id as u128),
            epoch: 0,
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: 0,
            }],
            rack: None,
            fenced: true,
            fenced_at: 0,
            in_controlled_shutdown: false,
        }
    }

    #[test]
    fn a_registration_takes_its_log_index_as_epoch_and_stale_changes_are_refused() {
        let mut image = MetadataImage::new();
        image
            .apply(5, &MetadataRecord::RegisterBroker(registration(1)))
            .unwrap();
        assert_eq!(image.broker(1).unwrap().epoch, 5);
        let stale = MetadataRecord::BrokerRegistrationChange {
            id: 1,
            epoch: 4,
            fenced: Some(false),
            in_controlled_shutdown: None,
        };
        assert!(matches!(
            image.apply(6, &stale),
            Err(ApplyError::StaleBrokerEpoch { .. })
        ));
        assert!(image.broker(1).unwrap().fenced);
        let unfence = MetadataRecord::BrokerRegistrationChange {
            id: 1,
            epoch: 5,
            fenced: Some(false),
            in_controlled_shutdown: None,
        };
        image.apply(7, &unfence).unwrap();
        assert!(image.is_usable(1));
    }

    #[test]
    fn partition_changes_move_epochs_and_report_old_and_new() {
        let mut image = MetadataImage::new();
        let id = Uuid::from_u128(1);
        image.apply(1, &MetadataRecord::Topic { name: "t".into(), id }).unwrap();
        image
            .apply(
                1,
                &MetadataRecord::Partition {
                    topic_id: id,
                    partition: 0,
                    state: PartitionState::new(vec![1, 2, 3]),
                },
            )
            .unwrap();
        let shrink = PartitionChange {
            topic_id: id,
            partition: 0,
            isr: Some(vec![1, 2]),
            ..Default::default()
        };
        image.apply(2, &MetadataRecord::PartitionChange(shrink)).unwrap();
        let state = image.partition(&id, 0).unwrap();
        assert_eq!((state.leader_epoch, state.partition_epoch), (0, 1));
        let offline = PartitionChange {
            topic_id: id,
            partition: 0,
            leader: Some(NO_LEADER),
            ..Default::default()
        };
        let change = image.apply(3, &MetadataRecord::PartitionChange(offline)).unwrap();
        let Change::Partition { old, new, .. } = change else {
            panic!("expected a partition change, got {change:?}");
        };
        assert_eq!(old.unwrap().leader, 1);
        assert_eq!((new.leader, new.leader_epoch, new.partition_epoch), (NO_LEADER, 1, 2));
    }

    #[test]
    fn records_that_do_not_fit_change_nothing() {
        let mut image = MetadataImage::new();
        let before = image.clone();
        let change = PartitionChange {
            topic_id: Uuid::from_u128(9),
            partition: 0,
            ..Default::default()
        };
        let (changes, errors) = image.apply_batch(
            1,
            &[
                MetadataRecord::PartitionChange(change),
                MetadataRecord::RemoveTopic { id: Uuid::from_u128(9) },
                MetadataRecord::UnregisterBroker { id: 3, epoch: 1 },
            ],
        );
        assert!(changes.is_empty());
        assert_eq!(errors.len(), 3);
        assert_eq!(MetadataImage { offset: 0, ..image }, before);
    }

    #[test]
    fn the_snapshot_is_the_image() {
        let mut image = MetadataImage::new();
        image
            .apply(3, &MetadataRecord::RegisterBroker(registration(2)))
            .unwrap();
        image
            .apply(
                4,
                &MetadataRecord::Config {
                    resource: ConfigResource::Broker(2),
                    name: "log.flush.interval.messages".into(),
                    value: Some("10".into()),
                },
            )
            .unwrap();
        image.offset = 4;
        let restored = MetadataImage::from_snapshot(&image.to_snapshot()).unwrap();
        assert_eq!(restored, image);
    }
}
