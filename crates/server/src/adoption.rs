//! A single-node data directory opened as a cluster node: its topics (with their ids,
//! partition counts and configs), committed offsets (`__consumer_offsets`), transactions
//! (`__transaction_state`), producer ids and dynamic broker configs become the cluster's,
//! with this node as the only replica of each partition. Reassigning them later adds replicas.
//!
//! 1. At start-up ([`detect`]): a data directory holding `meta.properties` but no
//!    `__cluster_metadata` was a single node's. It is marked (`__strom/adopting`) and takes
//!    the cluster's id; the mark stays until the adoption is done, so a restart carries on.
//! 2. [`prepare`] reads what the single node kept (`__strom/topics/*.toml`, its producer id
//!    mark, its dynamic configs) and checkpoints each log's high watermark at its end (on a
//!    single node everything written is committed), so the logs reopen as replicated ones
//!    with nothing hidden.
//! 3. Once registered, [`run`] asks the controller: producer ids below the single node's mark
//!    are reserved, each topic is created with its own id and this node as its replicas, the
//!    dynamic configs are set. The broker then follows those topics from the metadata like any
//!    other, opening the same partition directories, and its coordinators load groups and
//!    transactions as they lead their partitions.
//! 4. When the metadata holds every topic, the topic files move to `__strom/adopted/` and the
//!    mark goes. A topic of the same name and another id already in the cluster is not
//!    adopted (its logs are left untouched and never opened as the other topic's replicas),
//!    and the broker says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::controller::{ConfigOp, CreateTopic};
use strom_metadata::{ConfigResource, ControllerError};
use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::protocol::{ControllerReply, ControllerRequest};
use crate::dynamic_config::DynamicBrokerConfigs;

const MARK: &str = "adopting";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(1);

/// What a single node kept, to hand to the cluster.
#[derive(Debug)]
pub struct Adoption {
    pub topics: Vec<AdoptedTopic>,
    /// No producer id below this was handed out by the single node.
    pub producer_id_floor: i64,
    pub configs: DynamicBrokerConfigs,
}

#[derive(Debug, Clone)]
pub struct AdoptedTopic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct TopicFile {
    id: String,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

fn mark(data_dir: &Path) -> PathBuf {
    data_dir.join("__strom").join(MARK)
}

/// Whether `data_dir` is a single node's about to be opened by a cluster node for the first
/// time (called before the quorum creates `__cluster_metadata`); marks it if so.
pub fn detect(data_dir: &Path) -> std::io::Result<bool> {
    let single_node = data_dir.join("meta.properties").exists() && !data_dir.join("__cluster_metadata").exists();
    if single_node {
        std::fs::create_dir_all(data_dir.join("__strom"))?;
        std::fs::write(
            mark(data_dir),
            b"a single-node data directory being adopted into a cluster\n",
        )?;
    }
    Ok(mark(data_dir).exists())
}

/// Reads what the single node kept and checkpoints its logs' high watermarks at their ends
/// (in the data directory's `replication-offset-checkpoint`).
pub fn prepare(data_dir: &Path, now_ms: i64) -> Result<Adoption, String> {
    let topics_dir = data_dir.join("__strom").join("topics");
    let mut topics = Vec::new();
    let mut high_watermarks = strom_storage::dir_checkpoint::HIGH_WATERMARKS
        .read(data_dir)
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(&topics_dir) {
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", topics_dir.display()))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let file: TopicFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let id = Uuid::parse_str(&file.id).map_err(|e| format!("{}: {e}", path.display()))?;
            for index in 0..file.partitions {
                let log = format!("{name}-{index}");
                if let Some(end) = log_end(&data_dir.join(&log), now_ms)? {
                    high_watermarks.insert(log, end);
                }
            }
            topics.push(AdoptedTopic {
                name,
                id,
                partitions: file.partitions,
                configs: file.configs,
            });
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    strom_storage::dir_checkpoint::HIGH_WATERMARKS
        .write(data_dir, &high_watermarks)
        .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let floor_path = data_dir.join("__strom").join("producer-id-block");
    let producer_id_floor = match std::fs::read_to_string(&floor_path) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|e| format!("{}: {e}", floor_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("{}: {e}", floor_path.display())),
    };
    let configs = crate::dynamic_config::load(data_dir)?;
    Ok(Adoption {
        topics,
        producer_id_floor,
        configs,
    })
}

/// A single node's log is committed to its end: the end, for its high watermark checkpoint
/// (`None` if the single node never created the log).
fn log_end(dir: &Path, now_ms: i64) -> Result<Option<i64>, String> {
    if !dir.exists() {
        return Ok(None);
    }
    let (log, _) = strom_storage::Log::open_with(
        dir,
        strom_storage::LogConfig::default(),
        strom_storage::LogOpenOptions::default(),
        now_ms,
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    let end = log.log_end_offset();
    log.close().map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Some(end))
}

/// Hands the adopted topics, producer ids and configs to the cluster once this broker is
/// registered; retries until done or `stop`.
pub async fn run(broker: Arc<Broker>, adoption: Adoption, mut stop: watch::Receiver<bool>) {
    let cluster = broker.cluster.clone();
    let node_id = broker.node_id();
    let mut said = String::new();
    loop {
        match adopt_once(&broker, &cluster, &adoption).await {
            Ok(()) => break,
            Err(e) => {
                if e != said {
                    tracing::warn!(error = %e, "adopting the single-node data directory: not done yet");
                    said = e;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => return,
        }
    }
    // Done: the metadata names every adopted topic, with its id or (said already) another
    // topic's. Logs of a topic that lost to another of its name move aside, so they are
    // never opened as that topic's replicas; then nothing needs holding back.
    let data_dir = broker.config.data_dir.clone();
    let adopted_dir = data_dir.join("__strom").join("adopted");
    let image = cluster.image();
    let moved = std::fs::create_dir_all(&adopted_dir).and_then(|()| {
        for topic in &adoption.topics {
            if image
                .topic_by_name(&topic.name)
                .is_some_and(|found| found.id != topic.id)
            {
                for index in 0..topic.partitions {
                    let dir = data_dir.join(format!("{}-{index}", topic.name));
                    if dir.exists() {
                        std::fs::rename(
                            &dir,
                            data_dir.join(format!("{}-{index}.not-adopted-{}", topic.name, topic.id)),
                        )?;
                    }
                }
            }
            let from = data_dir
                .join("__strom")
                .join("topics")
                .join(format!("{}.toml", topic.name));
            if from.exists() {
                std::fs::rename(&from, adopted_dir.join(format!("{}.toml", topic.name)))?;
            }
        }
        std::fs::remove_file(mark(&data_dir))
    });
    match moved {
        Ok(()) => {
            broker.topics.set_adopting(BTreeMap::new());
            // A cluster topic of an adopted topic's name, held back until now, is followed at
            // once rather than at the next metadata change.
            cluster.refollow.notify_one();
        }
        Err(e) => tracing::error!(error = %e, "the adopted topics' files could not be moved aside"),
    }
    tracing::info!(
        node_id,
        topics = adoption.topics.len(),
        "adopted the single-node data directory into the cluster"
    );
}

async fn adopt_once(broker: &Broker, cluster: &crate::cluster::Cluster, adoption: &Adoption) -> Result<(), String> {
    let node_id = broker.node_id();
    let Some(session) = *broker.session.borrow() else {
        return Err("not registered with the controller yet".into());
    };
    let reserve = ControllerRequest::ReserveProducerIds {
        broker_id: node_id,
        broker_epoch: session.epoch,
        floor: adoption.producer_id_floor,
    };
    expect_done(cluster.call(&reserve, CALL_TIMEOUT).await?)?;

    let image = cluster.image();
    let wanted: Vec<CreateTopic> = adoption
        .topics
        .iter()
        .filter(|t| image.topic_by_name(&t.name).is_none())
        .map(|t| CreateTopic {
            name: t.name.clone(),
            id: t.id,
            num_partitions: -1,
            replication_factor: -1,
            assignments: (0..t.partitions).map(|p| (p, vec![node_id])).collect(),
            configs: t.configs.clone().into_iter().collect(),
        })
        .collect();
    if !wanted.is_empty() {
        let request = ControllerRequest::CreateTopics {
            topics: wanted,
            validate_only: false,
        };
        match cluster.call(&request, CALL_TIMEOUT).await? {
            ControllerReply::CreateTopics(results) => {
                for (name, result) in results {
                    match result {
                        Ok(_) | Err(ControllerError::TopicAlreadyExists(_)) => {}
                        Err(e) => return Err(format!("topic {name}: {e}")),
                    }
                }
            }
            other => return Err(format!("unexpected answer to CreateTopics: {other:?}")),
        }
    }
    for (resource, configs) in [
        (ConfigResource::Broker(node_id), &adoption.configs.broker),
        (ConfigResource::BrokerDefault, &adoption.configs.default),
    ] {
        if configs.is_empty() {
            continue;
        }
        let request = ControllerRequest::AlterConfigs {
            resource,
            ops: configs
                .iter()
                .map(|(name, value)| ConfigOp {
                    name: name.clone(),
                    value: Some(value.clone()),
                })
                .collect(),
            replace: false,
            validate_only: false,
        };
        expect_done(cluster.call(&request, CALL_TIMEOUT).await?)?;
    }
    // The metadata this node applies must hold them before the files move aside.
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let mut images = cluster.subscribe();
    loop {
        let image = images.borrow_and_update().clone();
        let missing: Vec<&str> = adoption
            .topics
            .iter()
            .filter(|t| image.topic_by_name(&t.name).is_none())
            .map(|t| t.name.as_str())
            .collect();
        if missing.is_empty() {
            for topic in &adoption.topics {
                if let Some(found) = image.topic_by_name(&topic.name).filter(|found| found.id != topic.id) {
                    tracing::error!(
                        topic = topic.name,
                        adopted_id = %topic.id,
                        cluster_id = %found.id,
                        "the cluster has another topic of this name; the single node's logs of it are \
                         not adopted and left as they are"
                    );
                }
            }
            return Ok(());
        }
        tokio::select! {
            changed = images.changed() => if changed.is_err() { return Err("the metadata stopped".into()) },
            _ = tokio::time::sleep_until(deadline) => return Err(format!("topics not in the metadata yet: {missing:?}")),
        }
    }
}

fn expect_done(reply: ControllerReply) -> Result<(), String> {
    match reply {
        ControllerReply::Done => Ok(()),
        ControllerReply::Refused(e) => Err(e.to_string()),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}
