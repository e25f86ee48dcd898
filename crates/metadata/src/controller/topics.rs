//! Creating and deleting topics, adding partitions, and dynamic configs.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{Controller, ControllerError, Plan};
use crate::image::MetadataImage;
use crate::placement::{place, Candidate};
use crate::records::{BrokerId, ConfigResource, MetadataRecord, PartitionState};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Names equal up to '.' versus '_' collide (Kafka refuses them: their metric names would).
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreateTopic {
    pub name: String,
    /// Chosen by the caller (random), so planning stays deterministic.
    pub id: Uuid,
    /// -1: `num.partitions`.
    pub num_partitions: i32,
    /// -1: `default.replication.factor`.
    pub replication_factor: i16,
    /// A manual assignment: partition index and its replicas. Excludes the two counts.
    pub assignments: Vec<(i32, Vec<BrokerId>)>,
    /// Config overrides, already validated by the caller.
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreatedTopic {
    pub id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreatePartitions {
    pub name: String,
    /// The new total.
    pub count: i32,
    /// One replica list per added partition, if the client chose them.
    pub assignments: Option<Vec<Vec<BrokerId>>>,
}

/// One config to set (`Some`) or remove (`None`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigOp {
    pub name: String,
    pub value: Option<String>,
}

type Results<T> = Vec<(String, Result<T, ControllerError>)>;

impl Controller {
    pub fn create_topics(
        &mut self,
        image: &MetadataImage,
        topics: Vec<CreateTopic>,
        validate_only: bool,
    ) -> Plan<Results<CreatedTopic>> {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        let mut names_seen = BTreeSet::new();
        let duplicates: BTreeSet<String> = topics
            .iter()
            .filter(|t| !names_seen.insert(t.name.clone()))
            .map(|t| t.name.clone())
            .collect();
        let mut planned_keys: BTreeSet<String> = BTreeSet::new();
        let mut placed_so_far = image.partition_count_total();
        for topic in topics {
            if duplicates.contains(&topic.name) {
                let error = ControllerError::InvalidRequest(format!("topic {} is named more than once", topic.name));
                results.push((topic.name, Err(error)));
                continue;
            }
            match self.plan_topic(image, &topic, &planned_keys, placed_so_far) {
                Ok((partitions, created)) => {
                    placed_so_far += partitions.len();
                    planned_keys.insert(collision_key(&topic.name));
                    if !validate_only {
                        records.push(MetadataRecord::Topic {
                            name: topic.name.clone(),
                            id: topic.id,
                        });
                        records.extend(partitions.into_iter().enumerate().map(|(p, replicas)| {
                            MetadataRecord::Partition {
                                topic_id: topic.id,
                                partition: p as i32,
                                state: new_partition(image, replicas),
                            }
                        }));
                        records.extend(topic.configs.iter().map(|(name, value)| MetadataRecord::Config {
                            resource: ConfigResource::Topic(topic.name.clone()),
                            name: name.clone(),
                            value: Some(value.clone()),
                        }));
                    }
                    results.push((topic.name, Ok(created)));
                }
                Err(e) => results.push((topic.name, Err(e))),
            }
        }
        Plan::new(records, results)
    }

    fn plan_topic(
        &self,
        image: &MetadataImage,
        topic: &CreateTopic,
        planned_keys: &BTreeSet<String>,
        start: usize,
    ) -> Result<(Vec<Vec<BrokerId>>, CreatedTopic), ControllerError> {
        validate_topic_name(&topic.name)
            .map_err(|why| ControllerError::InvalidTopic(topic.name.clone(), why.into()))?;
        if image.topic_by_name(&topic.name).is_some() {
            return Err(ControllerError::TopicAlreadyExists(topic.name.clone()));
        }
        let key = collision_key(&topic.name);
        if planned_keys.contains(&key) || image.topics().any(|t| collision_key(&t.name) == key) {
            return Err(ControllerError::InvalidTopic(
                topic.name.clone(),
                "collides with an existing topic up to '.' and '_'".into(),
            ));
        }
        let partitions = if topic.assignments.is_empty() {
            let count = if topic.num_partitions == -1 {
                self.config.default_num_partitions
            } else {
                topic.num_partitions
            };
            let replication_factor = if topic.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                topic.replication_factor
            };
            self.check_partition_count(count)?;
            self.place_new(image, count as usize, replication_factor, start)?
        } else {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                return Err(ControllerError::InvalidRequest(
                    "a manual replica assignment excludes numPartitions and replicationFactor (set them to -1)".into(),
                ));
            }
            let mut assignments = topic.assignments.clone();
            assignments.sort_by_key(|(p, _)| *p);
            for (expected, (p, _)) in assignments.iter().enumerate() {
                if *p != expected as i32 {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "partitions of a manual assignment must be numbered 0 to {} without gaps or repeats",
                        assignments.len() - 1
                    )));
                }
            }
            self.check_partition_count(assignments.len() as i32)?;
            let lists: Vec<Vec<BrokerId>> = assignments.into_iter().map(|(_, r)| r).collect();
            check_assignment(image, &lists, None)?;
            lists
        };
        let created = CreatedTopic {
            id: topic.id,
            num_partitions: partitions.len() as i32,
            replication_factor: partitions.first().map_or(0, |r| r.len() as i16),
        };
        Ok((partitions, created))
    }

    fn check_partition_count(&self, count: i32) -> Result<(), ControllerError> {
        let max = self.config.partitions_per_topic_max;
        if !(1..=max).contains(&count) {
            return Err(ControllerError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {max}, got {count}"
            )));
        }
        Ok(())
    }

    fn place_new(
        &self,
        image: &MetadataImage,
        count: usize,
        replication_factor: i16,
        start: usize,
    ) -> Result<Vec<Vec<BrokerId>>, ControllerError> {
        if replication_factor < 1 {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor must be at least 1, got {replication_factor}"
            )));
        }
        let candidates: Vec<Candidate> = image
            .brokers()
            .filter(|b| image.is_usable(b.id))
            .map(|b| Candidate {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect();
        if replication_factor as usize > candidates.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} is larger than the {} available broker(s)",
                candidates.len()
            )));
        }
        Ok(place(&candidates, count, replication_factor as usize, start))
    }

    pub fn delete_topics(&mut self, image: &MetadataImage, names: Vec<String>) -> Plan<Results<Uuid>> {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(names.len());
        let mut removed = BTreeSet::new();
        for name in names {
            match image.topic_by_name(&name) {
                Some(topic) if removed.insert(topic.id) => {
                    records.push(MetadataRecord::RemoveTopic { id: topic.id });
                    results.push((name, Ok(topic.id)));
                }
                Some(topic) => results.push((name, Ok(topic.id))),
                None => {
                    let error = ControllerError::UnknownTopicOrPartition(name.clone());
                    results.push((name, Err(error)));
                }
            }
        }
        Plan::new(records, results)
    }

    pub fn create_partitions(
        &mut self,
        image: &MetadataImage,
        requests: Vec<CreatePartitions>,
        validate_only: bool,
    ) -> Plan<Results<()>> {
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(requests.len());
        let mut placed_so_far = image.partition_count_total();
        for request in requests {
            match self.plan_partitions(image, &request, placed_so_far) {
                Ok((topic_id, first, lists)) => {
                    placed_so_far += lists.len();
                    if !validate_only {
                        records.extend(
                            lists
                                .into_iter()
                                .enumerate()
                                .map(|(i, replicas)| MetadataRecord::Partition {
                                    topic_id,
                                    partition: first + i as i32,
                                    state: new_partition(image, replicas),
                                }),
                        );
                    }
                    results.push((request.name, Ok(())));
                }
                Err(e) => results.push((request.name, Err(e))),
            }
        }
        Plan::new(records, results)
    }

    fn plan_partitions(
        &self,
        image: &MetadataImage,
        request: &CreatePartitions,
        start: usize,
    ) -> Result<(Uuid, i32, Vec<Vec<BrokerId>>), ControllerError> {
        let topic = image
            .topic_by_name(&request.name)
            .ok_or_else(|| ControllerError::UnknownTopicOrPartition(request.name.clone()))?;
        let current = topic.partitions.len() as i32;
        if request.count <= current {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic {} has {current} partitions; the new count must be larger, got {}",
                request.name, request.count
            )));
        }
        self.check_partition_count(request.count)?;
        let replication_factor = topic
            .partitions
            .values()
            .next()
            .map_or(1, |s| s.target_replicas().len());
        let added = (request.count - current) as usize;
        let lists = match &request.assignments {
            Some(lists) => {
                if lists.len() != added {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "{added} partition(s) are being added, but the assignment lists {}",
                        lists.len()
                    )));
                }
                check_assignment(image, lists, Some(replication_factor))?;
                lists.clone()
            }
            None => self.place_new(image, added, replication_factor as i16, start)?,
        };
        Ok((topic.id, current, lists))
    }

    /// Sets and removes dynamic configs of one resource. With `replace` (the legacy
    /// AlterConfigs), every config not named is removed. Values are validated by the caller.
    pub fn alter_configs(
        &mut self,
        image: &MetadataImage,
        resource: ConfigResource,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    ) -> Result<Plan<()>, ControllerError> {
        if let ConfigResource::Topic(name) = &resource {
            if image.topic_by_name(name).is_none() {
                return Err(ControllerError::UnknownTopicOrPartition(name.clone()));
            }
        }
        let mut records = Vec::new();
        if replace {
            let named: BTreeSet<&str> = ops.iter().map(|op| op.name.as_str()).collect();
            for existing in image.configs(&resource).into_iter().flat_map(|c| c.keys()) {
                if !named.contains(existing.as_str()) {
                    records.push(MetadataRecord::Config {
                        resource: resource.clone(),
                        name: existing.clone(),
                        value: None,
                    });
                }
            }
        }
        for op in ops {
            if image.config(&resource, &op.name) != op.value.as_deref() {
                records.push(MetadataRecord::Config {
                    resource: resource.clone(),
                    name: op.name,
                    value: op.value,
                });
            }
        }
        if validate_only {
            records.clear();
        }
        Ok(Plan::new(records, ()))
    }
}

/// A new partition: its usable replicas in sync, led by the first of them.
fn new_partition(image: &MetadataImage, replicas: Vec<BrokerId>) -> PartitionState {
    let mut state = PartitionState::new(replicas);
    state.isr.retain(|b| image.is_usable(*b));
    state.leader = state.isr.first().copied().unwrap_or(crate::records::NO_LEADER);
    state
}

/// Kafka's checks of a manual assignment: each list non-empty, without repeats, of registered
/// brokers, at least one of them usable, all lists of one length (the topic's replication
/// factor, when adding partitions).
fn check_assignment(
    image: &MetadataImage,
    lists: &[Vec<BrokerId>],
    replication_factor: Option<usize>,
) -> Result<(), ControllerError> {
    let invalid = |m: String| Err(ControllerError::InvalidReplicaAssignment(m));
    let expected = replication_factor.or_else(|| lists.first().map(Vec::len));
    for (i, replicas) in lists.iter().enumerate() {
        if replicas.is_empty() {
            return invalid(format!("the assignment of partition {i} lists no replicas"));
        }
        let distinct: BTreeSet<_> = replicas.iter().collect();
        if distinct.len() != replicas.len() {
            return invalid(format!(
                "the assignment of partition {i} lists a broker twice: {replicas:?}"
            ));
        }
        if let Some(missing) = replicas.iter().find(|b| image.broker(**b).is_none()) {
            return invalid(format!(
                "the assignment of partition {i} names broker {missing}, which is not registered"
            ));
        }
        if Some(replicas.len()) != expected {
            return invalid(format!(
                "the assignment of partition {i} has {} replica(s), the others {}",
                replicas.len(),
                expected.unwrap_or(0)
            ));
        }
        if !replicas.iter().any(|b| image.is_usable(*b)) {
            return invalid(format!(
                "every broker in the assignment of partition {i} is fenced or shutting down"
            ));
        }
    }
    Ok(())
}
