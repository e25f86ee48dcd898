//! Dynamic broker configs: broker properties changed at run time with AlterConfigs or
//! IncrementalAlterConfigs on a broker resource (one broker by id, or the cluster-wide default,
//! Kafka's empty name), taking effect without a restart.
//!
//! Precedence, as Kafka's: this broker's dynamic value, then the dynamic cluster default, then
//! the static value (file, environment, flags), then Kafka's default. The topic defaults
//! (`log.retention.ms`, `log.flush.interval.messages`, `message.max.bytes`, `compression.type`,
//! `min.insync.replicas`, ...) apply at once to every topic without its own override. The
//! replication throttles are accepted and reported so Kafka's tools can set and clear them, but
//! Strom does not throttle replication (yet).
//!
//! Where they live: in the metadata log (the controller commits them for every broker). The
//! single-node broker of before kept them in `<data-dir>/__strom/broker-configs.toml`, which
//! `crate::adoption` hands to the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::TOPIC_DEFAULT_PROPERTIES;
use crate::topic_config::ConfigSource;

/// Accepted and reported, without effect: Strom does not throttle replication.
const THROTTLES: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

/// The dynamic values, by broker property name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicBrokerConfigs {
    /// This broker's own (resource name = its node id).
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
    /// The cluster-wide default (resource name "").
    #[serde(default)]
    pub default: BTreeMap<String, String>,
}

/// The topic config a broker property sets the default of, if it is one.
pub fn topic_key(broker_key: &str) -> Option<&'static str> {
    TOPIC_DEFAULT_PROPERTIES
        .iter()
        .find(|(broker, _)| *broker == broker_key)
        .map(|(_, topic)| *topic)
}

/// Whether `name` may be changed at run time.
pub fn is_dynamic(name: &str) -> bool {
    topic_key(name).is_some() || THROTTLES.contains(&name)
}

/// Checks one dynamic value: a property Strom can change at run time, with a valid value.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    if let Some(topic) = topic_key(name) {
        return crate::topic_config::validate_value(topic, value);
    }
    if THROTTLES.contains(&name) {
        return match value.trim().parse::<i64>() {
            Ok(rate) if rate >= 0 => Ok(()),
            _ => Err(format!("{name} must be a non-negative number of bytes per second")),
        };
    }
    Err(format!(
        "{name} cannot be changed at run time in Strom (the dynamic broker configs are the \
         topic defaults such as log.retention.ms and the replication throttles)"
    ))
}

impl DynamicBrokerConfigs {
    /// The topic defaults with the dynamic values over the static ones (`static_defaults` is
    /// keyed by topic config names, as `BrokerConfig::topic_defaults`).
    pub fn topic_defaults(&self, static_defaults: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut defaults = static_defaults.clone();
        for layer in [&self.default, &self.broker] {
            for (name, value) in layer {
                if let Some(topic) = topic_key(name) {
                    defaults.insert(topic.to_string(), value.clone());
                }
            }
        }
        defaults
    }

    /// Where a broker property's value comes from, if a dynamic layer sets it.
    pub fn source(&self, name: &str) -> Option<(ConfigSource, &str)> {
        if let Some(value) = self.broker.get(name) {
            return Some((ConfigSource::DynamicBroker, value));
        }
        self.default
            .get(name)
            .map(|value| (ConfigSource::DynamicDefaultBroker, value.as_str()))
    }

    /// The dynamic source of a topic config's broker default, if any (for DescribeConfigs on
    /// a topic).
    pub fn topic_default_source(&self, topic_config: &str) -> Option<(ConfigSource, &str)> {
        let broker_key = TOPIC_DEFAULT_PROPERTIES
            .iter()
            .find(|(_, topic)| *topic == topic_config)
            .map(|(broker, _)| *broker)?;
        self.source(broker_key)
    }
}

/// The dynamic configs file of a single-node data directory (`crate::adoption` reads it).
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("__strom").join("broker-configs.toml")
}

pub fn load(data_dir: &Path) -> Result<DynamicBrokerConfigs, String> {
    let path = file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DynamicBrokerConfigs::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_broker_beats_the_cluster_default_beats_the_static_value() {
        let static_defaults = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let mut dynamic = DynamicBrokerConfigs::default();
        assert_eq!(dynamic.topic_defaults(&static_defaults)["retention.ms"], "1000");
        dynamic.default.insert("log.retention.ms".into(), "2000".into());
        assert_eq!(dynamic.topic_defaults(&static_defaults)["retention.ms"], "2000");
        assert_eq!(
            dynamic.source("log.retention.ms"),
            Some((ConfigSource::DynamicDefaultBroker, "2000"))
        );
        dynamic.broker.insert("log.retention.ms".into(), "3000".into());
        assert_eq!(dynamic.topic_defaults(&static_defaults)["retention.ms"], "3000");
        assert_eq!(
            dynamic.topic_default_source("retention.ms"),
            Some((ConfigSource::DynamicBroker, "3000"))
        );
        dynamic
            .broker
            .insert("follower.replication.throttled.rate".into(), "100".into());
        assert!(!dynamic
            .topic_defaults(&static_defaults)
            .contains_key("follower.replication.throttled.rate"));
    }

    #[test]
    fn only_run_time_properties_with_valid_values_are_accepted() {
        assert!(validate("log.flush.interval.messages", "1").is_ok());
        assert!(validate("log.flush.interval.messages", "many").is_err());
        assert!(validate("leader.replication.throttled.rate", "1048576").is_ok());
        assert!(validate("leader.replication.throttled.rate", "-1").is_err());
        assert!(validate("listeners", "PLAINTEXT://x:1").is_err());
        assert!(is_dynamic("min.insync.replicas"));
        assert!(!is_dynamic("node.id"));
    }
}
