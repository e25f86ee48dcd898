//! The state one broker process shares between its connections and background tasks.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::internal_topic::CoordinatorLogs;
use crate::producer_ids::{BlockSource, ProducerIdAllocator};
use crate::signals::Signals;
use crate::topics::TopicRegistry;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("data directory {0} is in use by another strom process")]
    Locked(String),
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicError),
    #[error("data directory {path} belongs to cluster {found}, but the controller voters make this cluster {expected}; refusing to start")]
    OtherCluster {
        path: String,
        found: String,
        expected: String,
    },
}

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub topics: Arc<TopicRegistry>,
    pub producer_ids: Arc<ProducerIdAllocator>,
    pub groups: Arc<crate::groups::Groups>,
    pub txns: Arc<crate::txns::Txns>,
    /// The metadata quorum, the image and the way to the controller.
    pub cluster: std::sync::Arc<crate::cluster::Cluster>,
    /// This broker's session with the controller, once registered.
    pub session: watch::Receiver<Option<crate::cluster::lifecycle::Session>>,
    /// A single node's data directory this cluster node hands to the cluster once registered.
    pub(crate) adoption: Mutex<Option<crate::adoption::Adoption>>,
    /// When this broker process started (ms since the epoch): the epoch of the feature levels
    /// ApiVersions finalizes. Clients keep the levels of the highest epoch they have seen, so
    /// it must grow when a restart may have changed them.
    pub started_ms: i64,
    /// Appends and shutdown, for everything that waits on them.
    pub signals: Arc<Signals>,
    /// Held for the process lifetime, one per log directory: two brokers on one directory
    /// would corrupt it.
    _dir_locks: Vec<std::fs::File>,
}

pub use crate::clock::now_ms;

fn dir_error(path: &Path, e: impl std::fmt::Display) -> StartupError {
    StartupError::DataDir {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Broker {
    /// Opens the data directory (locked by [`lock_data_dir`]) and recovers every log, once
    /// the node's quorum node has started.
    pub fn open(
        config: BrokerConfig,
        dir_lock: std::fs::File,
        cluster: std::sync::Arc<crate::cluster::Cluster>,
        session: watch::Receiver<Option<crate::cluster::lifecycle::Session>>,
    ) -> Result<Broker, StartupError> {
        let data_dir = config.data_dir.clone();
        if cluster.adopting {
            // A single node's directory takes the cluster's id (`crate::adoption`).
            let path = data_dir.join("meta.properties");
            let text = format!(
                "version=1\ncluster.id={}\nnode.id={}\n",
                cluster.cluster_id, config.node_id
            );
            std::fs::write(&path, text).map_err(|e| dir_error(&path, e))?;
        }
        // Every log directory says which cluster and node it belongs to (Kafka's
        // meta.properties in each of `log.dirs`): a directory of another one is refused.
        let mut extra_locks = Vec::new();
        for dir in config.log_dirs() {
            if dir != data_dir {
                extra_locks.push(lock_data_dir(&dir)?);
            }
            let found = load_or_create_cluster_id(&dir, config.node_id, &cluster.cluster_id)?;
            if found != cluster.cluster_id {
                return Err(StartupError::OtherCluster {
                    path: dir.display().to_string(),
                    found,
                    expected: cluster.cluster_id.clone(),
                });
            }
        }
        let cluster_id = cluster.cluster_id.clone();
        let adoption = match cluster.adopting {
            true => {
                let adoption =
                    crate::adoption::prepare(&data_dir, now_ms()).map_err(|reason| StartupError::DataDir {
                        path: data_dir.display().to_string(),
                        reason,
                    })?;
                tracing::info!(
                    topics = adoption.topics.len(),
                    cluster_id = %cluster.cluster_id,
                    "adopting a single-node data directory into the cluster"
                );
                Some(adoption)
            }
            false => None,
        };
        let producer_ids = Arc::new(ProducerIdAllocator::new(
            producer_id_blocks(cluster.clone(), session.clone(), config.node_id),
            adoption.as_ref().map_or(0, |a| a.producer_id_floor),
        ));
        let topics = Arc::new(TopicRegistry::open(
            &config.log_dirs(),
            config.topic_defaults.clone(),
            adoption.is_some(),
        )?);
        if let Some(adoption) = &adoption {
            topics.set_adopting(adoption.topics.iter().map(|t| (t.name.clone(), t.id)).collect());
        }
        let signals = Arc::new(Signals::default());
        // The coordinators get the logs, the cluster and the signals; not the broker.
        let logs = CoordinatorLogs {
            topics: topics.clone(),
            cluster: cluster.clone(),
            signals: signals.clone(),
        };
        let groups = Arc::new(crate::groups::Groups::new(
            config.groups.clone(),
            crate::groups::OffsetsTopic {
                partitions: config.offsets_topic_num_partitions,
                segment_bytes: config.offsets_topic_segment_bytes,
                replication_factor: config.cluster.offsets_topic_replication_factor,
                retention_ms: config.offsets_retention_ms,
            },
            logs.clone(),
        ));
        let txns = Arc::new(crate::txns::Txns::new(
            config.transactions.clone(),
            crate::txns::StateTopic {
                partitions: config.transaction_state_num_partitions,
                segment_bytes: config.transaction_state_segment_bytes,
                replication_factor: config.cluster.transaction_state_replication_factor,
            },
            logs,
            groups.clone(),
            producer_ids.clone(),
        ));
        Ok(Broker {
            config,
            cluster_id,
            adoption: Mutex::new(adoption),
            topics,
            producer_ids,
            groups,
            txns,
            cluster,
            session,
            started_ms: now_ms(),
            signals,
            _dir_locks: std::iter::once(dir_lock).chain(extra_locks).collect(),
        })
    }

    /// Ends every waiting fetch now (they answer with what they have) and makes new ones
    /// answer without waiting, and does the same for parked JoinGroup and SyncGroup requests,
    /// so a graceful shutdown is not held up by long polls.
    pub fn begin_shutdown(&self) {
        self.signals.shut_down();
        crate::groups::release_waiters(&self.groups);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.signals.is_shutting_down()
    }

    pub fn notify_appended(&self) {
        self.signals.notify_appended();
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.signals.subscribe_appends()
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }
}

/// Asks the active controller for the next block (blocking this thread: a block lasts a
/// thousand producers).
fn producer_id_blocks(
    cluster: std::sync::Arc<crate::cluster::Cluster>,
    session: watch::Receiver<Option<crate::cluster::lifecycle::Session>>,
    broker_id: i32,
) -> BlockSource {
    use crate::cluster::protocol::{ControllerReply, ControllerRequest};
    Box::new(move || {
        let Some(current) = *session.borrow() else {
            return Err(std::io::Error::other(
                "this broker is not registered with the controller yet",
            ));
        };
        let request = ControllerRequest::AllocateProducerIds {
            broker_id,
            broker_epoch: current.epoch,
        };
        let handle = tokio::runtime::Handle::current();
        let reply =
            tokio::task::block_in_place(|| handle.block_on(cluster.call(&request, std::time::Duration::from_secs(10))));
        match reply {
            Ok(ControllerReply::ProducerIds(block)) => Ok((block.first_producer_id, block.size)),
            Ok(other) => Err(std::io::Error::other(format!(
                "the controller gave no producer ids: {other:?}"
            ))),
            Err(e) => Err(std::io::Error::other(e)),
        }
    })
}

/// Creates the data directory if needed and locks it for this process: two brokers on one
/// data directory would corrupt it.
pub fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, StartupError> {
    std::fs::create_dir_all(data_dir).map_err(|e| dir_error(data_dir, e))?;
    let lock_path = data_dir.join(".lock");
    let dir_lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| dir_error(&lock_path, e))?;
    dir_lock
        .try_lock()
        .map_err(|_| StartupError::Locked(data_dir.display().to_string()))?;
    Ok(dir_lock)
}

/// The cluster id in `meta.properties` (as Kafka keeps it), written as `new_id` if there is
/// none yet.
fn load_or_create_cluster_id(data_dir: &Path, node_id: i32, new_id: &str) -> Result<String, StartupError> {
    let path = data_dir.join("meta.properties");
    if let Ok(Some(id)) = read_cluster_id(data_dir) {
        return Ok(id);
    }
    let id = new_id.to_string();
    let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    std::fs::write(&path, text).map_err(|e| dir_error(&path, e))?;
    Ok(id)
}

/// The cluster id `meta.properties` in `data_dir` holds, if it exists and names one.
pub(crate) fn read_cluster_id(data_dir: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(data_dir.join("meta.properties")) {
        Ok(text) => Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("cluster.id="))
            .map(|id| id.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Kafka prints cluster ids as URL-safe base64 of a UUID without padding.
pub(crate) fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_22_chars_and_kept_once_written() {
        assert_eq!(base64_url(&[0u8; 16]).len(), 22);
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_cluster_id(dir.path(), 1, "first").unwrap();
        assert_eq!(load_or_create_cluster_id(dir.path(), 1, "second").unwrap(), id);
    }
}
