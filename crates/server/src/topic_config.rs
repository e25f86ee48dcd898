//! Topic-level configuration by Kafka's names, its validation, and its translation into the
//! storage engine's [`LogConfig`].

use std::collections::BTreeMap;

use strom_storage::{CleanupPolicy, LogConfig};

/// DescribeConfigs `config_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// DescribeConfigs `config_source` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

pub struct TopicConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

const fn key(name: &'static str, default: &'static str, config_type: ConfigType, doc: &'static str) -> TopicConfigKey {
    TopicConfigKey {
        name,
        default,
        config_type,
        doc,
    }
}

/// Every topic config Strom accepts, with Kafka's defaults. A name not here is rejected.
pub const TOPIC_CONFIG_KEYS: &[TopicConfigKey] = &[
    key("cleanup.policy", "delete", ConfigType::List, "delete, compact, or both"),
    key(
        "compression.gzip.level",
        "-1",
        ConfigType::Int,
        "the gzip level batches are recompressed with when compression.type is gzip: 1-9, or -1 for the codec's default",
    ),
    key(
        "compression.lz4.level",
        "9",
        ConfigType::Int,
        "the lz4 level batches are recompressed with when compression.type is lz4: 1-17",
    ),
    key(
        "compression.type",
        "producer",
        ConfigType::String,
        "the codec batches are stored in: gzip, snappy, lz4, zstd, uncompressed (no codec), or producer (as the producer compressed them); a batch in another codec is recompressed",
    ),
    key(
        "compression.zstd.level",
        "3",
        ConfigType::Int,
        "the zstd level batches are recompressed with when compression.type is zstd: -131072 to 22",
    ),
    key(
        "delete.retention.ms",
        "86400000",
        ConfigType::Long,
        "how long tombstones survive after compaction",
    ),
    key(
        "flush.messages",
        "9223372036854775807",
        ConfigType::Long,
        "fsync after this many messages",
    ),
    key(
        "follower.replication.throttled.replicas",
        "",
        ConfigType::List,
        "replicas whose fetching is throttled during a reassignment (accepted for Kafka's tools; Strom does not throttle)",
    ),
    key(
        "index.interval.bytes",
        "4096",
        ConfigType::Int,
        "bytes between offset index entries",
    ),
    key(
        "leader.replication.throttled.replicas",
        "",
        ConfigType::List,
        "replicas whose replication from the leader is throttled during a reassignment (accepted for Kafka's tools; Strom does not throttle)",
    ),
    key(
        "max.message.bytes",
        "1048588",
        ConfigType::Int,
        "largest record batch accepted",
    ),
    key(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        "CreateTime or LogAppendTime",
    ),
    key(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigType::Double,
        "dirty share of the log that triggers compaction",
    ),
    key(
        "min.compaction.lag.ms",
        "0",
        ConfigType::Long,
        "minimum age before a record may be compacted",
    ),
    key(
        "min.insync.replicas",
        "1",
        ConfigType::Int,
        "replicas that must acknowledge acks=all",
    ),
    key(
        "retention.bytes",
        "-1",
        ConfigType::Long,
        "largest partition size before old segments are deleted",
    ),
    key(
        "retention.ms",
        "604800000",
        ConfigType::Long,
        "how long segments are kept",
    ),
    key(
        "segment.bytes",
        "1073741824",
        ConfigType::Int,
        "segment file size before rolling",
    ),
    key(
        "segment.index.bytes",
        "10485760",
        ConfigType::Int,
        "offset index size before rolling",
    ),
    key(
        "segment.ms",
        "604800000",
        ConfigType::Long,
        "segment age before rolling",
    ),
    key(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
        "always false in Strom",
    ),
];

pub fn lookup(name: &str) -> Option<&'static TopicConfigKey> {
    TOPIC_CONFIG_KEYS.iter().find(|k| k.name == name)
}

/// Checks one topic config value; the error is a message for the client.
pub fn validate_value(name: &str, value: &str) -> Result<(), String> {
    let key = lookup(name).ok_or_else(|| format!("unknown topic config {name}"))?;
    let value = value.trim();
    let bad = |what: &str| Err(format!("invalid value {value:?} for {name}: {what}"));
    // KIP-390's levels take negative values, unlike other ints.
    let level = |range: std::ops::RangeInclusive<i32>, extra: Option<i32>| match value.parse::<i32>() {
        Ok(v) if range.contains(&v) || Some(v) == extra => Ok(()),
        _ => bad(&format!(
            "expected an integer in [{}, {}]{}",
            range.start(),
            range.end(),
            extra.map_or(String::new(), |v| format!(" or {v}"))
        )),
    };
    use strom_record::compress::{GZIP_LEVELS, GZIP_LEVEL_DEFAULT, LZ4_LEVELS, ZSTD_LEVELS};
    match name {
        "compression.gzip.level" => return level(GZIP_LEVELS, Some(GZIP_LEVEL_DEFAULT)),
        "compression.lz4.level" => return level(LZ4_LEVELS, None),
        "compression.zstd.level" => return level(ZSTD_LEVELS, None),
        _ => {}
    }
    match key.config_type {
        ConfigType::Long => match value.parse::<i64>() {
            Ok(v) if v >= -1 => {}
            _ => return bad("expected an integer >= -1"),
        },
        ConfigType::Int => match value.parse::<i32>() {
            Ok(v) if v >= 0 => {}
            _ => return bad("expected a non-negative integer"),
        },
        ConfigType::Double => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => {}
            _ => return bad("expected a number between 0 and 1"),
        },
        ConfigType::Boolean => {
            if value != "true" && value != "false" {
                return bad("expected true or false");
            }
        }
        ConfigType::String | ConfigType::List => {}
    }
    match name {
        "cleanup.policy" => {
            parse_cleanup_policy(value)
                .map(|_| ())
                .map_err(|e| format!("invalid value for {name}: {e}"))?;
        }
        "message.timestamp.type" if value != "CreateTime" && value != "LogAppendTime" => {
            return bad("expected CreateTime or LogAppendTime")
        }
        "compression.type" if target_compression(value).is_none() && value != "producer" => {
            return bad("expected uncompressed, zstd, lz4, snappy, gzip or producer")
        }
        "segment.bytes" if value.parse::<i64>().unwrap_or(0) < 1024 => return bad("must be at least 1024"),
        "unclean.leader.election.enable" if value == "true" => return bad("unclean leader election is not supported"),
        _ => {}
    }
    Ok(())
}

/// The codec a `compression.type` stores batches in; `None` for `producer` (as produced).
fn target_compression(value: &str) -> Option<strom_record::Compression> {
    use strom_record::Compression;
    Some(match value {
        "uncompressed" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return None,
    })
}

/// What the produce path recompresses batches into (`compression.type` and the codec's
/// level), or `None` to store them as produced.
pub fn produce_compression(
    broker_defaults: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Option<strom_record::TargetCompression> {
    use strom_record::Compression;
    let get = |name: &str| {
        overrides
            .get(name)
            .or_else(|| broker_defaults.get(name))
            .map(|v| v.trim())
    };
    let codec = target_compression(get("compression.type")?)?;
    let level_key = match codec {
        Compression::Gzip => Some("compression.gzip.level"),
        Compression::Lz4 => Some("compression.lz4.level"),
        Compression::Zstd => Some("compression.zstd.level"),
        Compression::None | Compression::Snappy => None,
    };
    let level = level_key.and_then(get).and_then(|v| v.parse().ok());
    Some(strom_record::TargetCompression { codec, level })
}

fn parse_cleanup_policy(value: &str) -> Result<CleanupPolicy, String> {
    let mut policy = CleanupPolicy {
        delete: false,
        compact: false,
    };
    for part in value.split(',').map(str::trim) {
        match part {
            "delete" => policy.delete = true,
            "compact" => policy.compact = true,
            other => return Err(format!("unknown cleanup policy {other:?}")),
        }
    }
    if !policy.delete && !policy.compact {
        return Err("empty cleanup policy".to_string());
    }
    Ok(policy)
}

/// One resolved config entry, for DescribeConfigs and CreateTopics responses.
pub struct ResolvedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

/// A topic's effective configuration: per-topic overrides over broker defaults over Kafka's
/// defaults.
pub fn resolve(
    broker_defaults: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Vec<ResolvedConfig> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|key| {
            let (value, source) = if let Some(v) = overrides.get(key.name) {
                (v.clone(), ConfigSource::TopicOverride)
            } else if let Some(v) = broker_defaults.get(key.name) {
                (v.clone(), ConfigSource::StaticBroker)
            } else {
                (key.default.to_string(), ConfigSource::Default)
            };
            ResolvedConfig {
                name: key.name,
                value,
                source,
                config_type: key.config_type,
                doc: key.doc,
            }
        })
        .collect()
}

/// Translates the effective configuration into what the storage engine needs. Values were
/// validated on the way in, so a parse failure here falls back to Kafka's default.
pub fn log_config(broker_defaults: &BTreeMap<String, String>, overrides: &BTreeMap<String, String>) -> LogConfig {
    let resolved = resolve(broker_defaults, overrides);
    let get = |name: &str| -> &str {
        resolved
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.value.as_str())
            .expect("every key resolves")
    };
    let num = |name: &str| -> i64 {
        get(name)
            .trim()
            .parse()
            .unwrap_or_else(|_| lookup(name).and_then(|k| k.default.parse().ok()).unwrap_or(0))
    };
    let flush = num("flush.messages");
    LogConfig {
        segment_bytes: num("segment.bytes").max(1024) as u64,
        segment_ms: num("segment.ms"),
        segment_index_bytes: num("segment.index.bytes").max(4096) as u64,
        index_interval_bytes: num("index.interval.bytes").max(1) as u64,
        retention_ms: num("retention.ms"),
        retention_bytes: num("retention.bytes"),
        cleanup_policy: parse_cleanup_policy(get("cleanup.policy")).unwrap_or(CleanupPolicy {
            delete: true,
            compact: false,
        }),
        delete_retention_ms: num("delete.retention.ms"),
        min_compaction_lag_ms: num("min.compaction.lag.ms"),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
        message_timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
            strom_record::TimestampType::LogAppendTime
        } else {
            strom_record::TimestampType::CreateTime
        },
        flush_messages: if flush <= 0 { u64::MAX } else { flush as u64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_values() {
        assert!(validate_value("retention.ms", "1000").is_ok());
        assert!(validate_value("retention.ms", "-1").is_ok());
        assert!(validate_value("retention.ms", "abc").is_err());
        assert!(validate_value("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_value("cleanup.policy", "shred").is_err());
        assert!(validate_value("no.such.config", "1").is_err());
        assert!(validate_value("compression.type", "gzip").is_ok());
        assert!(validate_value("compression.type", "uncompressed").is_ok());
        assert!(validate_value("compression.type", "brotli").is_err());
        assert!(validate_value("compression.gzip.level", "-1").is_ok());
        assert!(validate_value("compression.gzip.level", "0").is_err());
        assert!(validate_value("compression.zstd.level", "-5").is_ok());
        assert!(validate_value("compression.zstd.level", "23").is_err());
        assert!(validate_value("compression.lz4.level", "17").is_ok());
        assert!(validate_value("compression.lz4.level", "18").is_err());
    }

    #[test]
    fn overrides_beat_broker_defaults_beat_kafka_defaults() {
        let mut broker = BTreeMap::new();
        broker.insert("retention.ms".to_string(), "5000".to_string());
        broker.insert("segment.bytes".to_string(), "4096".to_string());
        let mut topic = BTreeMap::new();
        topic.insert("segment.bytes".to_string(), "8192".to_string());
        topic.insert("cleanup.policy".to_string(), "compact".to_string());
        let config = log_config(&broker, &topic);
        assert_eq!(config.retention_ms, 5000);
        assert_eq!(config.segment_bytes, 8192);
        assert!(config.cleanup_policy.compact && !config.cleanup_policy.delete);
        assert_eq!(config.delete_retention_ms, 86_400_000);
    }
}
