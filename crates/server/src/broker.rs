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
    /// Bumped after every append, so waiting fetches wake as soon as data arrives rather than
    /// when their max wait runs out.
    appended: watch::Sender<u64>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// Held for the process lifetime, one per log directory: two brokers on one directory
    /// would corrupt it.
    _dir_locks: Vec<std::fs::File>,
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
        let producer_ids = ProducerIdAllocator::new(
            producer_id_blocks(cluster.clone(), session.clone(), config.node_id),
            adoption.as_ref().map_or(0, |a| a.producer_id_floor),
        );
        let topics = TopicRegistry::open(&config.log_dirs(), config.topic_defaults.clone(), adoption.is_some())?;
        if let Some(adoption) = &adoption {
            topics.set_adopting(adoption.topics.iter().map(|t| (t.name.clone(), t.id)).collect());
        }
        let groups = crate::groups::Groups::new(
            config.groups.clone(),
            config.offsets_topic_num_partitions,
            config.offsets_topic_segment_bytes,
            config.cluster.offsets_topic_replication_factor,
        );
        let txns = crate::txns::Txns::new(
            config.transactions.clone(),
            config.transaction_state_num_partitions,
            config.transaction_state_segment_bytes,
            config.cluster.transaction_state_replication_factor,
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
            _dir_locks: std::iter::once(dir_lock).chain(extra_locks).collect(),
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

/// Hands out producer ids for idempotent producers, from blocks the controller allocates
/// (AllocateProducerIds), so ids are unique across brokers and restarts.
pub struct ProducerIdAllocator {
    /// The next id and the end of the current block.
    state: Mutex<(i64, i64)>,
    source: BlockSource,
    /// Ids below this are never handed out (a node that adopted a single node's data
    /// directory, whose logs hold producers up to its mark: `crate::adoption`).
    floor: i64,
}

/// Where a broker gets its next block of producer ids: (first id, size).
pub type BlockSource = Box<dyn Fn() -> std::io::Result<(i64, i64)> + Send + Sync>;

impl ProducerIdAllocator {
    fn new(source: BlockSource, floor: i64) -> Self {
        ProducerIdAllocator {
            state: Mutex::new((0, 0)),
            source,
            floor,
        }
    }

    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock().expect("producer id lock");
        let (next, block_end) = &mut *state;
        if *next == *block_end {
            let (first, size) = (self.source)()?;
            *next = first.max(self.floor);
            *block_end = first + size;
            if *next >= *block_end {
                // The controller has not seen the adopted directory's mark yet.
                *next = *block_end;
                return Err(std::io::Error::other(
                    "producer ids below the adopted data directory's are reserved; retry",
                ));
            }
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
    fn producer_ids_come_block_by_block_and_never_below_the_floor() {
        // Blocks of 10 from 0, as a controller would hand them out.
        let handed = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let source = handed.clone();
        let allocator = ProducerIdAllocator::new(
            Box::new(move || Ok((source.fetch_add(10, std::sync::atomic::Ordering::SeqCst), 10))),
            25,
        );
        // The first two blocks lie wholly below the floor: refused, then the third serves.
        assert!(allocator.allocate().is_err());
        assert!(allocator.allocate().is_err());
        let ids: Vec<i64> = (0..7).map(|_| allocator.allocate().unwrap()).collect();
        assert_eq!(ids, [25, 26, 27, 28, 29, 30, 31]);
        assert_eq!(handed.load(std::sync::atomic::Ordering::SeqCst), 40);
    }

    #[test]
    fn cluster_id_is_22_chars_and_kept_once_written() {
        assert_eq!(base64_url(&[0u8; 16]).len(), 22);
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_cluster_id(dir.path(), 1, "first").unwrap();
        assert_eq!(load_or_create_cluster_id(dir.path(), 1, "second").unwrap(), id);
    }
}
