//! Broker configuration: Kafka's property names, from defaults, a TOML file, `STROM_*`
//! environment variables and `--set key=value` flags, in that order of precedence (last wins).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("unknown broker property {0:?}")]
    Unknown(String),
    #[error("could not read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Everything a broker process needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `listeners`: where to accept connections.
    pub listener: SocketAddr,
    /// `advertised.listeners`: the host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Whether `advertised.listeners` was set; if not, it follows `listeners`.
    advertised_set: bool,
    /// The first of `log.dirs`: the data directory, which also holds `meta.properties`, the
    /// metadata quorum's log and `__strom`.
    pub data_dir: PathBuf,
    /// The rest of `log.dirs`: more directories for partition logs (Kafka's JBOD), each
    /// with its own `meta.properties` and lock.
    pub extra_log_dirs: Vec<PathBuf>,
    /// `node.id`
    pub node_id: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub num_partitions: i32,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes`: memory for requests being read or handled, across all
    /// connections. Must be at least `socket.request.max.bytes`.
    pub queued_max_request_bytes: usize,
    /// `max.connections`: connections beyond this are closed on accept.
    pub max_connections: usize,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: how often the compaction task looks for work.
    pub log_cleaner_backoff_ms: u64,
    /// `log.flush.interval.ms`: how often every log is fsynced. 0 means never (left to the OS).
    pub log_flush_interval_ms: u64,
    /// `producer.id.expiration.ms`: an idempotent producer that has not written to a partition
    /// for this long is forgotten there (checked with retention).
    pub producer_id_expiration_ms: i64,
    /// Consumer group settings: `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
    /// `group.initial.rebalance.delay.ms`, `group.max.size`, `offset.metadata.max.bytes`, and
    /// for KIP-848 groups `group.consumer.session.timeout.ms` and
    /// `group.consumer.heartbeat.interval.ms`.
    pub groups: strom_group::GroupConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`, fixed when it is
    /// first created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.retention.minutes`, in ms: how long committed offsets outlive their group's
    /// last member, or their last commit (KIP-211).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: u64,
    /// Transaction coordinator settings: `transaction.max.timeout.ms`,
    /// `transactional.id.expiration.ms`.
    pub transactions: strom_txn::TxnConfig,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`, fixed when
    /// it is first created.
    pub transaction_state_num_partitions: i32,
    /// `transaction.state.log.segment.bytes`
    pub transaction_state_segment_bytes: u64,
    /// `transactional.id.expiration.ms` is checked this often
    /// (`transaction.remove.expired.transaction.cleanup.interval.ms`).
    pub transaction_id_expiration_check_interval_ms: u64,
    /// `transaction.version`: the level of Kafka's feature of that name that ApiVersions
    /// finalizes (in Kafka it is set with `kafka-features`). At 2, clients that know
    /// transactions v2 (KIP-890 part 2; the Java client from 4.0) use it; at 0 or 1 they keep
    /// to v1. Either way the broker answers each request by its version.
    pub transaction_version: i16,
    /// Broker-wide defaults for topic configs, by topic config name (`retention.ms`, ...),
    /// taken from the `log.*` broker properties.
    pub topic_defaults: BTreeMap<String, String>,
    /// This node's roles and the cluster it belongs to; without `process.roles` the node is a
    /// standalone one-node cluster.
    pub cluster: crate::cluster_config::ClusterConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listener: "127.0.0.1:9092".parse().expect("literal address"),
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            advertised_set: false,
            data_dir: PathBuf::from("./strom-data"),
            extra_log_dirs: Vec::new(),
            node_id: 1,
            auto_create_topics_enable: true,
            num_partitions: 1,
            socket_request_max_bytes: 100 * 1024 * 1024,
            queued_max_request_bytes: 256 * 1024 * 1024,
            max_connections: 4096,
            log_retention_check_interval_ms: 5 * 60 * 1000,
            log_cleaner_backoff_ms: 15 * 1000,
            log_flush_interval_ms: 1000,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            groups: strom_group::GroupConfig::default(),
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 10 * 60 * 1000,
            transactions: strom_txn::TxnConfig::default(),
            transaction_state_num_partitions: 50,
            transaction_state_segment_bytes: 100 * 1024 * 1024,
            transaction_id_expiration_check_interval_ms: 60 * 60 * 1000,
            transaction_version: TRANSACTION_VERSION_MAX,
            topic_defaults: BTreeMap::new(),
            cluster: crate::cluster_config::ClusterConfig::default(),
        }
    }
}

/// The highest `transaction.version` Strom implements (transactions v2, KIP-890 part 2).
pub const TRANSACTION_VERSION_MAX: i16 = 2;

/// `STROM_*` variables that belong to the client commands, the tests or logging, not to the
/// broker: `STROM_BOOTSTRAP_SERVER`, `STROM_BIN`, `STROM_LOG`, `STROM_LOG_FORMAT`.
const NON_BROKER_ENV_KEYS: &[&str] = &["bootstrap.server", "bin", "log", "log.format"];

/// Broker properties that set a topic config default, as (broker name, topic name).
pub const TOPIC_DEFAULT_PROPERTIES: &[(&str, &str)] = &[
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("log.flush.interval.messages", "flush.messages"),
    ("message.max.bytes", "max.message.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("compression.type", "compression.type"),
    ("compression.gzip.level", "compression.gzip.level"),
    ("compression.lz4.level", "compression.lz4.level"),
    ("compression.zstd.level", "compression.zstd.level"),
];

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn positive(key: &str, value: &str) -> Result<i32, ConfigError> {
    let parsed: i32 = parse(key, value)?;
    if parsed < 1 {
        return Err(ConfigError::Invalid {
            key: key.to_string(),
            reason: "must be at least 1".to_string(),
        });
    }
    Ok(parsed)
}

/// Accepts `host:port` and Kafka's `PLAINTEXT://host:port`.
fn strip_listener_scheme(value: &str) -> &str {
    let first = value.split(',').next().unwrap_or(value).trim();
    first.split_once("://").map_or(first, |(_, rest)| rest)
}

impl BrokerConfig {
    /// Every directory of `log.dirs`, the data directory first.
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.data_dir.clone())
            .chain(self.extra_log_dirs.iter().cloned())
            .collect()
    }

    /// Applies one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "listeners" => {
                let addr: SocketAddr = parse(key, strip_listener_scheme(value))?;
                self.listener = addr;
                if !self.advertised_set {
                    self.advertised_host = addr.ip().to_string();
                    self.advertised_port = addr.port();
                }
            }
            "advertised.listeners" => {
                let hostport = strip_listener_scheme(value);
                let (host, port) = hostport.rsplit_once(':').ok_or_else(|| ConfigError::Invalid {
                    key: key.to_string(),
                    reason: "expected host:port".to_string(),
                })?;
                self.advertised_host = host.trim_matches(|c| c == '[' || c == ']').to_string();
                self.advertised_port = parse(key, port)?;
                self.advertised_set = true;
            }
            "log.dirs" | "log.dir" | "data.dir" => {
                let dirs: Vec<PathBuf> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect();
                let Some((first, rest)) = dirs.split_first() else {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        reason: "names no directory".into(),
                    });
                };
                if let Some(twice) = dirs.iter().enumerate().find(|(i, d)| dirs[..*i].contains(d)) {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        reason: format!("{} is listed twice", twice.1.display()),
                    });
                }
                self.data_dir = first.clone();
                self.extra_log_dirs = rest.to_vec();
            }
            "node.id" | "broker.id" => self.node_id = parse(key, value)?,
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse(key, value)?,
            "num.partitions" => {
                self.num_partitions = parse(key, value)?;
                if self.num_partitions < 1 {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        reason: "must be at least 1".into(),
                    });
                }
            }
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse(key, value)?,
            "queued.max.request.bytes" => self.queued_max_request_bytes = parse(key, value)?,
            "max.connections" => self.max_connections = parse(key, value)?,
            "log.retention.check.interval.ms" => self.log_retention_check_interval_ms = parse(key, value)?,
            "log.cleaner.backoff.ms" => self.log_cleaner_backoff_ms = parse(key, value)?,
            "log.flush.interval.ms" => self.log_flush_interval_ms = parse(key, value)?,
            "producer.id.expiration.ms" => {
                self.producer_id_expiration_ms = parse(key, value)?;
                if self.producer_id_expiration_ms < 1 {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        reason: "must be at least 1".into(),
                    });
                }
            }
            "group.min.session.timeout.ms" => self.groups.min_session_timeout_ms = positive(key, value)?,
            "group.max.session.timeout.ms" => self.groups.max_session_timeout_ms = positive(key, value)?,
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms = parse(key, value)?;
                if self.groups.initial_rebalance_delay_ms < 0 {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        reason: "must not be negative".into(),
                    });
                }
            }
            "group.consumer.session.timeout.ms" => self.groups.consumer.session_timeout_ms = positive(key, value)?,
            "group.consumer.heartbeat.interval.ms" => {
                self.groups.consumer.heartbeat_interval_ms = positive(key, value)?;
            }
            "group.max.size" => self.groups.max_size = positive(key, value)? as usize,
            "offset.metadata.max.bytes" => self.groups.offset_metadata_max_bytes = parse(key, value)?,
            "offsets.topic.num.partitions" => self.offsets_topic_num_partitions = positive(key, value)?,
            "offsets.retention.minutes" => {
                self.offsets_retention_ms = i64::from(positive(key, value)?) * 60_000;
            }
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms = positive(key, value)? as u64;
            }
            "offsets.topic.segment.bytes" => self.offsets_topic_segment_bytes = positive(key, value)? as u64,
            "transaction.max.timeout.ms" => self.transactions.max_timeout_ms = positive(key, value)?,
            "transactional.id.expiration.ms" => self.transactions.id_expiration_ms = i64::from(positive(key, value)?),
            "transaction.state.log.num.partitions" => self.transaction_state_num_partitions = positive(key, value)?,
            "transaction.state.log.segment.bytes" => {
                self.transaction_state_segment_bytes = positive(key, value)? as u64;
            }
            "transaction.version" => {
                let level: i16 = parse(key, value)?;
                if !(0..=TRANSACTION_VERSION_MAX).contains(&level) {
                    return Err(ConfigError::Invalid {
                        key: key.into(),
                        reason: format!("must be between 0 and {TRANSACTION_VERSION_MAX}"),
                    });
                }
                self.transaction_version = level;
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.transaction_id_expiration_check_interval_ms = positive(key, value)? as u64;
            }
            "log.retention.hours" => {
                let hours: i64 = parse(key, value)?;
                self.set_topic_default(key, "retention.ms", &(hours * 3_600_000).to_string())?;
            }
            "log.retention.minutes" => {
                let minutes: i64 = parse(key, value)?;
                self.set_topic_default(key, "retention.ms", &(minutes * 60_000).to_string())?;
            }
            _ if crate::cluster_config::CLUSTER_KEYS.contains(&key) => self.cluster.set(key, value)?,
            _ => {
                let topic_key = TOPIC_DEFAULT_PROPERTIES
                    .iter()
                    .find(|(broker, _)| *broker == key)
                    .map(|(_, topic)| *topic)
                    .ok_or_else(|| ConfigError::Unknown(key.to_string()))?;
                self.set_topic_default(key, topic_key, value)?;
            }
        }
        Ok(())
    }

    /// Checks the settings together, once every source is applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate(self.node_id)
    }

    fn set_topic_default(&mut self, broker_key: &str, topic_key: &str, value: &str) -> Result<(), ConfigError> {
        crate::topic_config::validate_value(topic_key, value).map_err(|reason| ConfigError::Invalid {
            key: broker_key.to_string(),
            reason,
        })?;
        self.topic_defaults.insert(topic_key.to_string(), value.to_string());
        Ok(())
    }

    /// Applies a TOML file of `key = value` pairs with Kafka property names.
    pub fn apply_toml_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.to_string()))?;
        for (key, value) in flatten_toml("", &table) {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// Applies `STROM_*` variables: `STROM_LOG_RETENTION_MS=5` sets `log.retention.ms`.
    ///
    /// A variable that names no broker property may have been set for something else (a
    /// script's `STROM_DIR`), so unlike a misspelt key in the file or a flag it does not stop
    /// the broker: its name is returned for the caller to warn about. A known property with a
    /// bad value is still an error.
    pub fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) -> Result<Vec<String>, ConfigError> {
        let mut ignored = Vec::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("STROM_") else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace('_', ".");
            // Variables meant for the client commands share the prefix; skip what is not ours.
            if NON_BROKER_ENV_KEYS.contains(&key.as_str()) {
                continue;
            }
            match self.set(&key, &value) {
                Err(ConfigError::Unknown(_)) => ignored.push(name),
                other => other?,
            }
        }
        Ok(ignored)
    }
}

/// `[log] retention.ms = 5` and `"log.retention.ms" = 5` both become `log.retention.ms`.
fn flatten_toml(prefix: &str, table: &toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in table {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => out.extend(flatten_toml(&full, inner)),
            toml::Value::String(s) => out.push((full, s.clone())),
            other => out.push((full, other.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_kafka_properties() {
        let mut config = BrokerConfig::default();
        config.set("listeners", "PLAINTEXT://127.0.0.1:19092").unwrap();
        assert_eq!(config.listener.port(), 19092);
        assert_eq!(config.advertised_port, 19092);
        config.set("advertised.listeners", "PLAINTEXT://broker1:9093").unwrap();
        assert_eq!(
            (config.advertised_host.as_str(), config.advertised_port),
            ("broker1", 9093)
        );
        config.set("listeners", "127.0.0.1:19093").unwrap();
        assert_eq!(config.advertised_port, 9093, "an explicit advertised listener stays");
        config.set("log.retention.ms", "1000").unwrap();
        assert_eq!(config.topic_defaults["retention.ms"], "1000");
        assert!(config.set("log.retention.ms", "soon").is_err());
        assert!(matches!(config.set("no.such.thing", "1"), Err(ConfigError::Unknown(_))));
    }

    #[test]
    fn log_dirs_are_a_list_whose_first_is_the_data_directory() {
        let mut config = BrokerConfig::default();
        config.set("log.dirs", "/d/one, /d/two,/d/three").unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/d/one"));
        assert_eq!(config.log_dirs(), ["/d/one", "/d/two", "/d/three"].map(PathBuf::from));
        config.set("log.dir", "/d/only").unwrap();
        assert_eq!(config.log_dirs(), [PathBuf::from("/d/only")]);
        assert!(config.set("log.dirs", "/d/a,/d/a").is_err(), "a directory twice");
        assert!(config.set("log.dirs", " , ").is_err(), "no directory");
    }

    #[test]
    fn group_properties() {
        let mut config = BrokerConfig::default();
        config.set("group.initial.rebalance.delay.ms", "0").unwrap();
        config.set("group.consumer.heartbeat.interval.ms", "250").unwrap();
        config.set("group.consumer.session.timeout.ms", "10000").unwrap();
        config.set("offsets.retention.minutes", "2").unwrap();
        config.set("offsets.topic.num.partitions", "3").unwrap();
        assert_eq!(config.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(config.groups.consumer.heartbeat_interval_ms, 250);
        assert_eq!(config.groups.consumer.session_timeout_ms, 10_000);
        assert_eq!(config.offsets_retention_ms, 120_000);
        assert_eq!(config.offsets_topic_num_partitions, 3);
        for (key, bad) in [
            ("group.initial.rebalance.delay.ms", "-1"),
            ("group.consumer.heartbeat.interval.ms", "0"),
            ("offsets.topic.num.partitions", "0"),
            ("group.max.size", "none"),
        ] {
            assert!(config.set(key, bad).is_err(), "{key}={bad}");
        }
    }

    #[test]
    fn env_and_toml_use_the_same_names() {
        let mut config = BrokerConfig::default();
        let ignored = config
            .apply_env(
                [
                    ("STROM_NUM_PARTITIONS".to_string(), "3".to_string()),
                    ("PATH".into(), "/bin".into()),
                    ("STROM_DIR".into(), "/somewhere".into()),
                    ("STROM_LOG_FORMAT".into(), "json".into()),
                ]
                .into_iter(),
            )
            .unwrap();
        assert_eq!(config.num_partitions, 3);
        // Not a broker property: named back for a warning, not an error. Logging's own
        // variables are neither.
        assert_eq!(ignored, ["STROM_DIR"]);
        let bad = config.apply_env([("STROM_NUM_PARTITIONS".to_string(), "several".to_string())].into_iter());
        assert!(bad.is_err(), "a known property with a bad value still stops the broker");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(&path, "listeners = \"127.0.0.1:1234\"\n[log]\n\"retention.ms\" = 77\n").unwrap();
        config.apply_toml_file(&path).unwrap();
        assert_eq!(config.listener.port(), 1234);
        assert_eq!(config.topic_defaults["retention.ms"], "77");
    }
}
