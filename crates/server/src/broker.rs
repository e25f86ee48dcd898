//! The state one broker process shares between its connections and background tasks.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::config::BrokerConfig;
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
    pub topics: TopicRegistry,
    pub producer_ids: ProducerIdAllocator,
    pub groups: crate::groups::Groups,
    pub txns: crate::txns::Txns,
    /// In a cluster: the metadata quorum, the image and the way to the controller.
    pub cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
    /// In a cluster: this broker's session with the controller, once registered.
    pub session: watch::Receiver<Option<crate::cluster::lifecycle::Session>>,
    /// A single node's data directory this cluster node hands to the cluster once registered.
    pub(crate) adoption: Mutex<Option<crate::adoption::Adoption>>,
    /// When this broker process started (ms since the epoch): the epoch of the feature levels
    /// ApiVersions finalizes. Clients keep the levels of the highest epoch they have seen, so
    /// it must grow when a restart may have changed them.
    pub started_ms: i64,
    /// Bumped after every append, so waiting fetches wake as soon as data arrives rather than
    /// when their max wait runs out.
    appended: watch::Sender<u64>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// Held for the process lifetime: two brokers on one data directory would corrupt it.
    _dir_lock: std::fs::File,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn dir_error(path: &Path, e: impl std::fmt::Display) -> StartupError {
    StartupError::DataDir {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Broker {
    /// Opens the data directory (creating it on first start) and recovers every log.
    pub fn open(config: BrokerConfig) -> Result<Broker, StartupError> {
        let dir_lock = lock_data_dir(&config.data_dir)?;
        let (_, session) = watch::channel(None);
        Broker::open_locked(config, dir_lock, None, session)
    }

    /// [`Broker::open`] with the data directory already locked ([`lock_data_dir`]) and, in a
    /// cluster, the node's quorum started.
    pub fn open_locked(
        config: BrokerConfig,
        dir_lock: std::fs::File,
        cluster: Option<std::sync::Arc<crate::cluster::Cluster>>,
        session: watch::Receiver<Option<crate::cluster::lifecycle::Session>>,
    ) -> Result<Broker, StartupError> {
        let data_dir = config.data_dir.clone();
        let cluster_id = match &cluster {
            None => load_or_create_cluster_id(&data_dir, config.node_id)?,
            Some(cluster) => {
                if cluster.adopting {
                    // A single node's directory takes the cluster's id (`crate::adoption`).
                    let path = data_dir.join("meta.properties");
                    let text = format!(
                        "version=1\ncluster.id={}\nnode.id={}\n",
                        cluster.cluster_id, config.node_id
                    );
                    std::fs::write(&path, text).map_err(|e| dir_error(&path, e))?;
                }
                let found = load_or_create_cluster_id_as(&data_dir, config.node_id, &cluster.cluster_id)?;
                if found != cluster.cluster_id {
                    return Err(StartupError::OtherCluster {
                        path: data_dir.display().to_string(),
                        found,
                        expected: cluster.cluster_id.clone(),
                    });
                }
                found
            }
        };
        let adoption = match &cluster {
            Some(cluster) if cluster.adopting => {
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
            _ => None,
        };
        let producer_ids = match &cluster {
            None => ProducerIdAllocator::open(&data_dir.join("__strom"))?,
            Some(cluster) => ProducerIdAllocator::from_controller(
                producer_id_blocks(cluster.clone(), session.clone(), config.node_id),
                adoption.as_ref().map_or(0, |a| a.producer_id_floor),
            ),
        };
        let topics = TopicRegistry::open(
            &data_dir,
            config.topic_defaults.clone(),
            now_ms(),
            true,
            adoption.is_some(),
        )?;
        if let Some(adoption) = &adoption {
            topics.set_adopting(adoption.topics.iter().map(|t| (t.name.clone(), t.id)).collect());
        }
        let groups = crate::groups::Groups::load(
            &topics,
            config.groups.clone(),
            config.offsets_topic_num_partitions,
            config.offsets_topic_segment_bytes,
            Some(crate::internal_topic::ClusterLayout {
                replication_factor: config.cluster.offsets_topic_replication_factor,
            }),
        );
        let txns = crate::txns::Txns::load(
            &topics,
            config.transactions.clone(),
            config.transaction_state_num_partitions,
            config.transaction_state_segment_bytes,
            Some(crate::internal_topic::ClusterLayout {
                replication_factor: config.cluster.transaction_state_replication_factor,
            }),
        );
        let (appended, _) = watch::channel(0);
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
            appended,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            _dir_lock: dir_lock,
        })
    }

    /// Ends every waiting fetch now (they answer with what they have) and makes new ones
    /// answer without waiting, and does the same for parked JoinGroup and SyncGroup requests,
    /// so a graceful shutdown is not held up by long polls.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify_appended();
        crate::groups::release_waiters(self);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn notify_appended(&self) {
        self.appended
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
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

/// `meta.properties` holds the cluster id (a random id made on first start) as Kafka's does.
fn load_or_create_cluster_id(data_dir: &Path, node_id: i32) -> Result<String, StartupError> {
    load_or_create_cluster_id_as(data_dir, node_id, &base64_url(uuid::Uuid::new_v4().as_bytes()))
}

/// The cluster id in `meta.properties`, written as `new_id` if there is none yet.
fn load_or_create_cluster_id_as(data_dir: &Path, node_id: i32, new_id: &str) -> Result<String, StartupError> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id=")) {
            return Ok(id.trim().to_string());
        }
    }
    let id = new_id.to_string();
    let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    std::fs::write(&path, text).map_err(|e| dir_error(&path, e))?;
    Ok(id)
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

/// Hands out producer ids for idempotent producers. Ids are reserved in blocks whose end is
/// persisted before any id of the block is used, so a restart never reuses an id.
pub struct ProducerIdAllocator {
    path: std::path::PathBuf,
    state: Mutex<(i64, i64)>,
    /// In a cluster, blocks come from the controller (AllocateProducerIds), so ids are unique
    /// across brokers; a single node reserves them in its own file.
    remote: Option<BlockSource>,
    /// Ids below this are never handed out (a cluster node that adopted a single node's data
    /// directory, whose logs hold producers up to its mark: `crate::adoption`).
    floor: i64,
}

/// Where a cluster node gets its next block of producer ids: (first id, size).
pub type BlockSource = Box<dyn Fn() -> std::io::Result<(i64, i64)> + Send + Sync>;

const PRODUCER_ID_BLOCK: i64 = 1000;

impl ProducerIdAllocator {
    fn open(dir: &Path) -> Result<Self, StartupError> {
        std::fs::create_dir_all(dir).map_err(|e| dir_error(dir, e))?;
        let path = dir.join("producer-id-block");
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|e| dir_error(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(dir_error(&path, e)),
        };
        Ok(ProducerIdAllocator {
            path,
            state: Mutex::new((next, next)),
            remote: None,
            floor: 0,
        })
    }

    fn from_controller(remote: BlockSource, floor: i64) -> Self {
        ProducerIdAllocator {
            path: std::path::PathBuf::new(),
            state: Mutex::new((0, 0)),
            remote: Some(remote),
            floor,
        }
    }

    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock().expect("producer id lock");
        let (next, block_end) = &mut *state;
        if *next == *block_end {
            if let Some(remote) = &self.remote {
                let (first, size) = remote()?;
                *next = first.max(self.floor);
                *block_end = first + size;
                if *next >= *block_end {
                    // The controller has not seen the adopted directory's mark yet.
                    *next = *block_end;
                    return Err(std::io::Error::other(
                        "producer ids below the adopted data directory's are reserved; retry",
                    ));
                }
                let id = *next;
                *next += 1;
                return Ok(id);
            }
            let new_end = *block_end + PRODUCER_ID_BLOCK;
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, new_end.to_string())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            *block_end = new_end;
        }
        let id = *next;
        *next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIdAllocator::open(dir.path()).unwrap();
        let a = first.allocate().unwrap();
        let b = first.allocate().unwrap();
        assert_eq!(b, a + 1);
        drop(first);
        let second = ProducerIdAllocator::open(dir.path()).unwrap();
        assert!(second.allocate().unwrap() > b);
    }

    #[test]
    fn cluster_id_is_22_chars_and_stable() {
        assert_eq!(base64_url(&[0u8; 16]).len(), 22);
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_cluster_id(dir.path(), 1).unwrap();
        assert_eq!(load_or_create_cluster_id(dir.path(), 1).unwrap(), id);
    }
}
