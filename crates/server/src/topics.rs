//! The topics this broker hosts: their ids, partition counts and config overrides, persisted
//! under `<data-dir>/__strom/topics/`, and the open partition logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use strom_record::ValidateOptions;
use strom_storage::dir_checkpoint::{self, DirCheckpoint};
use strom_storage::Log;
use uuid::Uuid;

use crate::dynamic_config::DynamicBrokerConfigs;
use crate::log_dirs::LogDirs;
use crate::log_limit::throttled;
use crate::partition::Partition;
use crate::topic_config;

/// Threads that bring a topic's partitions up together when the cluster metadata changes.
const PARTITION_APPLY_THREADS: usize = 8;
/// Topics with at most this many partitions are applied on the calling thread.
const PARTITIONS_APPLIED_INLINE: usize = 16;

/// An upper bound on partitions per topic, so a request cannot make a broker create millions of
/// directories.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    #[error("invalid topic name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("unknown topic {0}")]
    Unknown(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("storage error: {0}")]
    Storage(String),
}

impl TopicError {
    pub fn code(&self) -> i16 {
        use kafka_protocol::ResponseError as E;
        match self {
            TopicError::AlreadyExists(_) => E::TopicAlreadyExists,
            TopicError::InvalidName(..) => E::InvalidTopicException,
            TopicError::Unknown(_) => E::UnknownTopicOrPartition,
            TopicError::InvalidPartitions(_) => E::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
            TopicError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
            TopicError::InvalidRequest(_) => E::InvalidRequest,
            TopicError::InvalidConfig(_) => E::InvalidConfig,
            TopicError::Storage(_) => E::KafkaStorageError,
        }
        .code()
    }
}

/// Kafka's rule for topic names (one definition, the controller's).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    strom_metadata::controller::validate_topic_name(name).map_err(|why| TopicError::InvalidName(name.to_string(), why))
}

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    partitions: RwLock<Vec<Arc<Partition>>>,
    overrides: RwLock<BTreeMap<String, String>>,
    /// Derived from the overrides whenever they change, so the produce path reads a copy
    /// instead of resolving configs per request.
    produce_options: RwLock<ProduceOptions>,
}

/// What the produce path needs from a topic's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ProduceOptions {
    pub validate: ValidateOptions,
    /// `min.insync.replicas`: acks=all is refused while the ISR is smaller.
    pub min_insync_replicas: i32,
    /// `compression.type` (and its level) when not `producer`: batches in another codec are
    /// recompressed before they are appended.
    pub compression: Option<strom_record::TargetCompression>,
}

impl Topic {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().expect("topic lock").clone()
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.read().expect("topic lock").get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.read().expect("topic lock").len() as i32
    }

    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.overrides.read().expect("topic lock").clone()
    }

    /// How produce requests to this topic are checked.
    pub fn produce_options(&self) -> ProduceOptions {
        *self.produce_options.read().expect("topic lock")
    }

    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }

    /// Whether clients may write to it: every topic but the coordinators' own.
    pub fn is_coordinator_topic(&self) -> bool {
        crate::internal_topic::is_coordinator_topic(&self.name)
    }
}

pub struct TopicRegistry {
    /// Where the partition logs live (`log.dirs`).
    pub log_dirs: LogDirs,
    /// Each log directory's `replication-offset-checkpoint`.
    high_watermarks: DirOffsets,
    /// Each log directory's `recovery-point-offset-checkpoint`.
    recovery_points: DirOffsets,
    /// The topic defaults from the broker's static configuration.
    static_defaults: BTreeMap<String, String>,
    /// Dynamic broker configs ([`crate::dynamic_config`]).
    dynamic: RwLock<DynamicBrokerConfigs>,
    /// The topic defaults in effect: the dynamic values over the static ones.
    broker_defaults: RwLock<BTreeMap<String, String>>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises changes to the topics and configs (the metadata follower makes them).
    changing: std::sync::Mutex<()>,
    /// Topics of a single-node data directory this cluster node is adopting
    /// (`crate::adoption`), by name: the metadata's topic of that name is followed only if it
    /// is the adopted one (same id), so a different topic never opens their logs.
    adopting: RwLock<BTreeMap<String, Uuid>>,
}

fn io_error(context: &str, e: impl std::fmt::Display) -> TopicError {
    TopicError::Storage(format!("{context}: {e}"))
}

impl TopicRegistry {
    /// An empty registry: topics come from the cluster's metadata
    /// ([`TopicRegistry::apply_metadata`]). Unless `adopting`, a topic description a
    /// single-node broker left in `<data-dir>/__strom/topics` means the directory was already
    /// opened as a cluster node without adopting it (which happens only on the first start), and
    /// is refused rather than ignored.
    pub fn open(
        log_dirs: &[PathBuf],
        broker_defaults: BTreeMap<String, String>,
        adopting: bool,
    ) -> Result<Self, TopicError> {
        let data_dir = &log_dirs[0];
        let meta_dir = data_dir.join("__strom").join("topics");
        if !adopting {
            let entries = match std::fs::read_dir(&meta_dir) {
                Ok(entries) => entries.collect::<Result<Vec<_>, _>>(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            }
            .map_err(|e| io_error(&meta_dir.display().to_string(), e))?;
            let single_node_topic = entries.iter().map(|e| e.path()).find(|path| {
                path.extension().and_then(|e| e.to_str()) == Some("toml")
                    && path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .is_some_and(|name| !name.starts_with("__"))
            });
            if let Some(path) = single_node_topic {
                return Err(TopicError::Storage(format!(
                    "{} describes a topic of a single-node broker, but the directory was already used by a cluster node; \
                     a single-node data directory is adopted only on its first start as a cluster node",
                    path.display()
                )));
            }
        }
        Ok(TopicRegistry {
            log_dirs: LogDirs::open(log_dirs).map_err(TopicError::Storage)?,
            // Absent or damaged, either is safe: leaders and followers bring high watermarks
            // up, and recovery scans the logs with no recovery point.
            high_watermarks: DirOffsets::read(dir_checkpoint::HIGH_WATERMARKS, log_dirs),
            recovery_points: DirOffsets::read(dir_checkpoint::RECOVERY_POINTS, log_dirs),
            broker_defaults: RwLock::new(broker_defaults.clone()),
            static_defaults: broker_defaults,
            dynamic: RwLock::new(DynamicBrokerConfigs::default()),
            topics: RwLock::new(BTreeMap::new()),
            changing: std::sync::Mutex::new(()),
            adopting: RwLock::new(BTreeMap::new()),
        })
    }

    /// Holds back the metadata's topics named like these adopted ones unless they have these
    /// ids; an empty map ends the adoption.
    pub fn set_adopting(&self, topics: BTreeMap<String, Uuid>) {
        *self.adopting.write().expect("registry lock") = topics;
    }

    /// Opens (recovering, or creating empty) this broker's log of a partition.
    fn open_log(
        &self,
        topic: &str,
        index: i32,
        overrides: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Log, TopicError> {
        let dir = self.log_dirs.place(&format!("{topic}-{index}"));
        let config = topic_config::log_config(&self.broker_defaults(), overrides);
        // A replicated partition is committed only up to its high watermark, which survives a
        // restart in its log directory's checkpoint, as does its recovery point.
        let options = strom_storage::LogOpenOptions {
            high_watermark_from_checkpoint: true,
            high_watermark: self.high_watermarks.entry(&dir),
            recovery_point: self.recovery_points.entry(&dir),
        };
        let (log, report) =
            Log::open_with(&dir, config, options, now_ms).map_err(|e| io_error(&dir.display().to_string(), e))?;
        tracing::debug!(topic, partition = index, %report, "opened partition");
        Ok(log)
    }

    fn produce_options_for(&self, overrides: &BTreeMap<String, String>) -> ProduceOptions {
        let defaults = self.broker_defaults();
        let number = |name: &str| -> Option<i64> {
            overrides
                .get(name)
                .or_else(|| defaults.get(name))
                .and_then(|v| v.parse().ok())
        };
        ProduceOptions {
            validate: ValidateOptions {
                max_batch_bytes: number("max.message.bytes").map_or(1_048_588, |n| n.max(0) as usize),
                require_keys: topic_config::log_config(&defaults, overrides).cleanup_policy.compact,
            },
            min_insync_replicas: number("min.insync.replicas").map_or(1, |n| n.clamp(1, i64::from(i32::MAX)) as i32),
            compression: topic_config::produce_compression(&defaults, overrides),
        }
    }

    /// The topic defaults in effect (static, under the dynamic broker configs).
    pub fn broker_defaults(&self) -> BTreeMap<String, String> {
        self.broker_defaults.read().expect("defaults lock").clone()
    }

    pub fn dynamic_configs(&self) -> DynamicBrokerConfigs {
        self.dynamic.read().expect("dynamic configs lock").clone()
    }

    /// Replaces the dynamic broker configs and applies the new topic defaults to every topic
    /// (its produce checks and its logs' settings) at once.
    pub fn set_dynamic_configs(&self, dynamic: DynamicBrokerConfigs) -> Result<(), TopicError> {
        let _changing = self.changing.lock().expect("registry changes lock");
        if *self.dynamic.read().expect("dynamic configs lock") == dynamic {
            return Ok(());
        }
        *self.broker_defaults.write().expect("defaults lock") = dynamic.topic_defaults(&self.static_defaults);
        *self.dynamic.write().expect("dynamic configs lock") = dynamic;
        let defaults = self.broker_defaults();
        for topic in self.list() {
            let overrides = topic.overrides();
            *topic.produce_options.write().expect("topic lock") = self.produce_options_for(&overrides);
            let config = topic_config::log_config(&defaults, &overrides);
            for partition in topic.partitions() {
                if let Some(log) = partition.lock().as_mut() {
                    log.set_config(config.clone());
                }
            }
        }
        tracing::info!("dynamic broker configs applied");
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("registry lock").get(name).cloned()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.get(topic).and_then(|t| t.partition(index))
    }

    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.topics.read().expect("registry lock").values().cloned().collect()
    }

    /// Every open partition, for background tasks (flush, retention, compaction).
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.list().iter().flat_map(|t| t.partitions()).collect()
    }

    pub fn validate_overrides(overrides: &BTreeMap<String, String>) -> Result<(), TopicError> {
        for (name, value) in overrides {
            topic_config::validate_value(name, value).map_err(TopicError::InvalidConfig)?;
        }
        Ok(())
    }

    /// Makes this node's topics and logs match the committed metadata. Partitions with a
    /// replica here get a log (opened, or created empty); the others are known but hold
    /// nothing; each partition's role follows its leader, and the partitions led here get the
    /// replication leader's state ([`Partition::apply_state`]). Topics gone from the metadata
    /// are deleted here. Returns whether a high watermark moved.
    pub fn apply_metadata(
        &self,
        image: &strom_metadata::MetadataImage,
        node_id: i32,
        replica_lag_time_max_ms: i64,
        now_ms: i64,
    ) -> Result<bool, TopicError> {
        let _changing = self.changing.lock().expect("registry changes lock");
        let mut hw_moved = false;
        let adopting = self.adopting.read().expect("registry lock").clone();
        for topic_image in image.topics() {
            let name = &topic_image.name;
            if adopting.get(name).is_some_and(|id| *id != topic_image.id) {
                // Another topic of the same name: the adopted logs are not its replicas.
                continue;
            }
            let overrides: BTreeMap<String, String> = image
                .configs(&strom_metadata::ConfigResource::Topic(name.clone()))
                .cloned()
                .unwrap_or_default();
            let existing = self.get(name).filter(|t| t.id == topic_image.id);
            if existing.is_none() && self.get(name).is_some() {
                // Deleted and created again under a new id: the old data goes.
                self.remove_local(name)?;
            }
            let topic = match existing {
                Some(topic) => topic,
                None => {
                    let topic = Arc::new(Topic {
                        name: name.clone(),
                        id: topic_image.id,
                        partitions: RwLock::new(Vec::new()),
                        produce_options: RwLock::new(self.produce_options_for(&overrides)),
                        overrides: RwLock::new(overrides.clone()),
                    });
                    self.topics
                        .write()
                        .expect("registry lock")
                        .insert(name.clone(), topic.clone());
                    tracing::info!(topic = %name, partitions = topic_image.partitions.len(), "topic from the cluster metadata");
                    topic
                }
            };
            if topic.overrides() != overrides {
                *topic.produce_options.write().expect("topic lock") = self.produce_options_for(&overrides);
                *topic.overrides.write().expect("topic lock") = overrides.clone();
                let config = topic_config::log_config(&self.broker_defaults(), &overrides);
                for partition in topic.partitions() {
                    if let Some(log) = partition.lock().as_mut() {
                        log.set_config(config.clone());
                    }
                }
            }
            let min_insync_replicas = topic.produce_options().min_insync_replicas.max(1) as usize;
            let config = strom_replication::ReplicaConfig {
                replica_lag_time_max_ms,
                min_insync_replicas,
            };
            let mut work = Vec::with_capacity(topic_image.partitions.len());
            for (&index, state) in &topic_image.partitions {
                let partition = match topic.partition(index) {
                    Some(partition) => partition,
                    None => {
                        let mut partitions = topic.partitions.write().expect("topic lock");
                        while partitions.len() as i32 <= index {
                            let next = partitions.len() as i32;
                            partitions.push(Arc::new(Partition::elsewhere(name.clone(), next, -1, -1)));
                        }
                        partitions[index as usize].clone()
                    }
                };
                work.push((partition, state));
            }
            // Creating a log and taking a leadership each fsync a few files: a new topic's
            // partitions are brought up by several threads at once, so a thousand of them
            // are served in about a second rather than one after another.
            if work.len() <= PARTITIONS_APPLIED_INLINE {
                for (partition, state) in &work {
                    hw_moved |= self.follow_partition(name, partition, state, &overrides, node_id, config, now_ms)?;
                }
                continue;
            }
            let outcomes: Vec<Result<bool, TopicError>> = std::thread::scope(|scope| {
                let chunk = work.len().div_ceil(PARTITION_APPLY_THREADS).max(1);
                let handles: Vec<_> = work
                    .chunks(chunk)
                    .map(|chunk| {
                        let overrides = &overrides;
                        scope.spawn(move || {
                            let mut moved = false;
                            for (partition, state) in chunk {
                                moved |=
                                    self.follow_partition(name, partition, state, overrides, node_id, config, now_ms)?;
                            }
                            Ok(moved)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("partition apply thread panicked"))
                    .collect()
            });
            for outcome in outcomes {
                hw_moved |= outcome?;
            }
        }
        let gone: Vec<String> = self
            .list()
            .iter()
            .filter(|t| image.topic_by_name(&t.name).is_none_or(|i| i.id != t.id))
            .map(|t| t.name.clone())
            .collect();
        for name in gone {
            self.remove_local(&name)?;
            tracing::info!(topic = %name, "topic deleted by the cluster metadata");
        }
        Ok(hw_moved)
    }

    /// One partition of [`TopicRegistry::apply_metadata`]: its log exists here exactly when
    /// this broker holds a replica, and its role and leadership follow `state`.
    #[allow(clippy::too_many_arguments)]
    fn follow_partition(
        &self,
        name: &str,
        partition: &Partition,
        state: &strom_metadata::PartitionState,
        overrides: &BTreeMap<String, String>,
        node_id: i32,
        config: strom_replication::ReplicaConfig,
        now_ms: i64,
    ) -> Result<bool, TopicError> {
        let index = partition.index;
        let hosted = state.replicas.contains(&node_id);
        let has_log = partition.lock().is_some();
        if hosted && !has_log {
            partition.install_log(self.open_log(name, index, overrides, now_ms)?);
        } else if !hosted && has_log {
            if let Some(log) = partition.take_log() {
                self.log_dirs.removed(log.dir());
                log.delete()
                    .map_err(|e| io_error(&format!("deleting {name}-{index}"), e))?;
            }
        }
        partition
            .apply_state(node_id, state, config, now_ms)
            .map_err(|e| io_error(&format!("leading {name}-{index}"), e))
    }

    /// Forgets a topic here and deletes its local data (its metadata is elsewhere).
    fn remove_local(&self, name: &str) -> Result<(), TopicError> {
        let Some(topic) = self.topics.write().expect("registry lock").remove(name) else {
            return Ok(());
        };
        for partition in topic.partitions() {
            if let Some(log) = partition.take_log() {
                self.log_dirs.removed(log.dir());
                log.delete()
                    .map_err(|e| io_error(&format!("deleting {name}-{}", partition.index), e))?;
            }
        }
        Ok(())
    }

    /// Moves a hosted partition's log into log directory `to` (AlterReplicaLogDirs): closed,
    /// moved ([`LogDirs::move_log`]) and opened again there, with the metadata follower held
    /// off meanwhile. Requests that reach the partition during the move find no log and are
    /// answered as for a partition not hosted here, which clients retry. If the move fails, the
    /// log opens again where it was.
    pub fn move_log(&self, partition: &Partition, to: &Path, now_ms: i64) -> Result<(), TopicError> {
        let _changing = self.changing.lock().expect("registry changes lock");
        let Some(log) = partition.take_log() else {
            return Err(TopicError::Unknown(format!("{}-{}", partition.topic, partition.index)));
        };
        let from = log.dir().to_path_buf();
        if from.parent() == Some(to) {
            partition.install_log(log);
            return Ok(());
        }
        let config = log.config().clone();
        let high_watermark = log.high_watermark();
        let reopen = |dir: &Path| -> Result<Log, TopicError> {
            let options = strom_storage::LogOpenOptions {
                high_watermark_from_checkpoint: true,
                high_watermark: Some(high_watermark),
                recovery_point: self.recovery_points.entry(dir),
            };
            Log::open_with(dir, config.clone(), options, now_ms)
                .map(|(log, _)| log)
                .map_err(|e| io_error(&dir.display().to_string(), e))
        };
        if let Err(e) = log.close() {
            // Closing flushes and checkpoints; the data on disk is as a crash would leave it,
            // which opening recovers.
            tracing::error!(log = %from.display(), error = %e, "closing a log to move it failed");
            partition.install_log(reopen(&from)?);
            return Err(io_error(&from.display().to_string(), e));
        }
        match self.log_dirs.move_log(&from, to) {
            Ok(moved) => {
                partition.install_log(reopen(&moved)?);
                tracing::info!(topic = %partition.topic, partition = partition.index, from = %from.display(), to = %moved.display(), "moved a log to another log directory");
                Ok(())
            }
            Err(e) => {
                partition.install_log(reopen(&from)?);
                Err(io_error(&format!("moving {} to {}", from.display(), to.display()), e))
            }
        }
    }

    /// Writes each log directory's `replication-offset-checkpoint` with the high watermark of
    /// every log in it.
    pub fn checkpoint_high_watermarks(&self) {
        self.high_watermarks
            .write(&self.log_dirs, self.all_partitions(), Log::high_watermark);
    }

    /// Writes each log directory's `recovery-point-offset-checkpoint` with the recovery point of
    /// every log in it: after a flush pass, so what it records is on disk.
    pub fn checkpoint_recovery_points(&self) {
        self.recovery_points
            .write(&self.log_dirs, self.all_partitions(), Log::recovery_point);
    }

    /// Checkpoints the high watermarks, then flushes and closes every log: the last step of a
    /// graceful shutdown.
    pub fn close_all(&self) {
        self.checkpoint_high_watermarks();
        self.checkpoint_recovery_points();
        for partition in self.all_partitions() {
            if let Some(log) = partition.take_log() {
                if let Err(e) = log.close() {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "closing log failed");
                }
            }
        }
    }
}

/// One of the log directories' checkpoints ([`dir_checkpoint`]), as last read or written per
/// directory: entries of logs not opened yet are kept until their log is gone from the
/// directory.
struct DirOffsets {
    file: DirCheckpoint,
    written: std::sync::Mutex<BTreeMap<PathBuf, BTreeMap<String, i64>>>,
}

impl DirOffsets {
    fn read(file: DirCheckpoint, log_dirs: &[PathBuf]) -> Self {
        let mut written = BTreeMap::new();
        for dir in log_dirs {
            let entries = file.read(dir).unwrap_or_else(|e| {
                tracing::warn!(dir = %dir.display(), error = %e, "{} ignored", file.file);
                BTreeMap::new()
            });
            written.insert(dir.clone(), entries);
        }
        DirOffsets {
            file,
            written: std::sync::Mutex::new(written),
        }
    }

    /// The entry of the log at `path` (a directory in a log directory), if any.
    fn entry(&self, path: &Path) -> Option<i64> {
        let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
        self.written
            .lock()
            .expect("checkpoint lock")
            .get(dir)?
            .get(name)
            .copied()
    }

    /// Writes each directory's file with `offset` of every open log in it (one atomic
    /// replacement per directory, and none where nothing changed).
    fn write(&self, log_dirs: &LogDirs, partitions: Vec<Arc<Partition>>, offset: fn(&Log) -> i64) {
        let mut current: BTreeMap<PathBuf, BTreeMap<String, i64>> = BTreeMap::new();
        for partition in partitions {
            if let Some(log) = partition.lock().as_ref() {
                let path = log.dir();
                if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) {
                    current
                        .entry(dir.to_path_buf())
                        .or_default()
                        .insert(name.to_string(), offset(log));
                }
            }
        }
        let mut written = self.written.lock().expect("checkpoint lock");
        for dir in log_dirs.dirs() {
            let last = written.entry(dir.clone()).or_default();
            let mut next = current.remove(dir).unwrap_or_default();
            for (name, value) in last.iter() {
                if !next.contains_key(name) && dir.join(name).is_dir() {
                    next.insert(name.clone(), *value);
                }
            }
            if next == *last {
                continue;
            }
            match self.file.write(dir, &next) {
                Ok(()) => *last = next,
                Err(e) => throttled!(warn, dir = %dir.display(), error = %e, "writing {} failed", self.file.file),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "ü", "x/y", &"a".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
