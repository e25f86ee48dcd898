//! The settings of a node in a cluster, by Kafka's names: its roles, the controller quorum's
//! voters, its controller listener, and the replication and controller properties.
//!
//! A node started without `process.roles` is standalone: a one-node cluster, its own only
//! voter, needing none of these. With it, the node joins the cluster the voters describe.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::config::ConfigError;

/// Kafka's `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

impl Roles {
    fn parse(key: &str, value: &str) -> Result<Roles, ConfigError> {
        let mut roles = Roles {
            broker: false,
            controller: false,
        };
        for role in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                other => {
                    return Err(invalid(
                        key,
                        format!("unknown role {other:?}: expected broker, controller or both"),
                    ))
                }
            }
        }
        if !roles.broker && !roles.controller {
            return Err(invalid(key, "name at least one of broker, controller".into()));
        }
        Ok(roles)
    }
}

/// One voter of `controller.quorum.voters`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

impl Voter {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Parses `1@127.0.0.1:9093,2@127.0.0.1:19093`.
pub fn parse_voters(key: &str, value: &str) -> Result<BTreeMap<i32, Voter>, ConfigError> {
    let mut voters = BTreeMap::new();
    for item in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let (id, address) = item
            .split_once('@')
            .ok_or_else(|| invalid(key, format!("{item:?}: expected id@host:port")))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| invalid(key, format!("{item:?}: the node id must be a number")))?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, format!("{item:?}: expected id@host:port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, format!("{item:?}: the port must be a number")))?;
        let host = host.trim_matches(|c| c == '[' || c == ']').to_string();
        if host.is_empty() || id < 0 {
            return Err(invalid(key, format!("{item:?}: expected id@host:port")));
        }
        let voter = Voter { id, host, port };
        if voters.insert(id, voter).is_some() {
            return Err(invalid(key, format!("node id {id} is listed twice")));
        }
    }
    if voters.is_empty() {
        return Err(invalid(key, "lists no voter".into()));
    }
    Ok(voters)
}

fn invalid(key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason,
    }
}

/// A node's cluster settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `process.roles`; `None` makes a standalone node ([`ClusterConfig::is_standalone`]).
    pub roles: Option<Roles>,
    /// `controller.quorum.voters`.
    pub voters: BTreeMap<i32, Voter>,
    /// The controller listener (`listeners` entry named by `controller.listener.names`):
    /// where the metadata quorum and the controller listen.
    pub controller_listener: Option<SocketAddr>,
    /// `broker.session.timeout.ms`
    pub broker_session_timeout_ms: i64,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: i64,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor` (capped at the live broker count on creation)
    pub offsets_topic_replication_factor: i16,
    /// `transaction.state.log.replication.factor` (likewise)
    pub transaction_state_replication_factor: i16,
    /// `unclean.leader.election.enable`
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms
    pub leader_imbalance_check_interval_ms: i64,
    /// `replica.lag.time.max.ms`
    pub replica_lag_time_max_ms: i64,
    /// `broker.rack`
    pub rack: Option<String>,
    /// `replica.selector.class` is Kafka's `RackAwareReplicaSelector`: consumers that name
    /// their rack (`client.rack`) are sent to an in-sync replica in it (KIP-392).
    pub rack_aware_replica_selector: bool,
    /// `metadata.log.max.snapshot.interval.records`: records between metadata snapshots.
    pub metadata_snapshot_interval_records: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            roles: None,
            voters: BTreeMap::new(),
            controller_listener: None,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 500,
            default_replication_factor: 1,
            offsets_topic_replication_factor: 3,
            transaction_state_replication_factor: 3,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: 300_000,
            replica_lag_time_max_ms: 30_000,
            rack: None,
            rack_aware_replica_selector: false,
            metadata_snapshot_interval_records: 10_000,
        }
    }
}

/// The properties this module owns.
pub(crate) const CLUSTER_KEYS: &[&str] = &[
    "process.roles",
    "controller.quorum.voters",
    "controller.listener",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "default.replication.factor",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "replica.lag.time.max.ms",
    "broker.rack",
    "replica.selector.class",
    "metadata.log.max.snapshot.interval.records",
];

impl ClusterConfig {
    /// Applies one of [`CLUSTER_KEYS`].
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let number = |min: i64| -> Result<i64, ConfigError> {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(key, format!("{value:?} is not a number")))?;
            if n < min {
                return Err(invalid(key, format!("must be at least {min}")));
            }
            Ok(n)
        };
        let flag = || -> Result<bool, ConfigError> {
            value
                .trim()
                .parse()
                .map_err(|_| invalid(key, format!("{value:?} is not true or false")))
        };
        match key {
            "process.roles" => self.roles = Some(Roles::parse(key, value)?),
            "controller.quorum.voters" => self.voters = parse_voters(key, value)?,
            "controller.listener" => {
                let address = value.split_once("://").map_or(value, |(_, rest)| rest).trim();
                self.controller_listener = Some(
                    address
                        .parse()
                        .map_err(|_| invalid(key, format!("{value:?}: expected host:port")))?,
                );
            }
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = number(1)?,
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms = number(1)?,
            "default.replication.factor" => self.default_replication_factor = number(1)?.min(i16::MAX as i64) as i16,
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = number(1)?.min(i16::MAX as i64) as i16;
            }
            "transaction.state.log.replication.factor" => {
                self.transaction_state_replication_factor = number(1)?.min(i16::MAX as i64) as i16;
            }
            "unclean.leader.election.enable" => self.unclean_leader_election_enable = flag()?,
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable = flag()?,
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_ms = number(1)?.saturating_mul(1000);
            }
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = number(1)?,
            "broker.rack" => self.rack = Some(value.trim().to_string()).filter(|r| !r.is_empty()),
            "replica.selector.class" => {
                self.rack_aware_replica_selector = match value.trim() {
                    "org.apache.kafka.common.replica.RackAwareReplicaSelector" | "RackAwareReplicaSelector" => true,
                    "" | "org.apache.kafka.common.replica.LeaderSelector" | "LeaderSelector" => false,
                    other => {
                        return Err(ConfigError::Invalid {
                            key: key.into(),
                            reason: format!(
                            "{other} is not a replica selector Strom has (RackAwareReplicaSelector or LeaderSelector)"
                        ),
                        })
                    }
                }
            }
            "metadata.log.max.snapshot.interval.records" => {
                self.metadata_snapshot_interval_records = number(1)? as u64;
            }
            _ => unreachable!("{key} is not a cluster property"),
        }
        Ok(())
    }

    /// Started without `process.roles`: a one-node cluster, broker and controller, the only
    /// voter of its own metadata quorum (`strom server` with no flags).
    pub fn is_standalone(&self) -> bool {
        self.roles.is_none()
    }

    /// Checks the settings together once all are applied; `node_id` is this node's.
    pub(crate) fn validate(&self, node_id: i32) -> Result<(), ConfigError> {
        let Some(roles) = self.roles else {
            if !self.voters.is_empty() {
                return Err(invalid(
                    "process.roles",
                    "controller.quorum.voters is set, so process.roles must say this node's roles".into(),
                ));
            }
            for (key, factor) in [
                ("default.replication.factor", self.default_replication_factor),
                ("offsets.topic.replication.factor", 1),
                ("transaction.state.log.replication.factor", 1),
            ] {
                if factor != 1 {
                    return Err(invalid(
                        key,
                        "a standalone node (no process.roles) is the only broker of its cluster: replication factor 1"
                            .into(),
                    ));
                }
            }
            return Ok(());
        };
        if self.voters.is_empty() {
            return Err(invalid(
                "controller.quorum.voters",
                "a cluster node needs the controller voters (id@host:port,...)".into(),
            ));
        }
        if roles.controller {
            let Some(listener) = self.controller_listener else {
                return Err(invalid(
                    "controller.listener",
                    "a controller needs a controller listener (--controller-listener host:port)".into(),
                ));
            };
            let Some(me) = self.voters.get(&node_id) else {
                return Err(invalid(
                    "controller.quorum.voters",
                    format!("this node (node.id {node_id}) has the controller role but is not among the voters"),
                ));
            };
            if me.port != listener.port() {
                return Err(invalid(
                    "controller.quorum.voters",
                    format!(
                        "the voter entry for node {node_id} ({}) does not match this node's controller listener ({listener})",
                        me.address()
                    ),
                ));
            }
        } else if self.voters.contains_key(&node_id) {
            return Err(invalid(
                "process.roles",
                format!("node {node_id} is a voter, so it needs the controller role"),
            ));
        }
        if roles.broker && !roles.controller && self.controller_listener.is_none() {
            return Err(invalid(
                "controller.listener",
                "a broker-only node needs a listener for the metadata it replicates (--controller-listener host:port)"
                    .into(),
            ));
        }
        if self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms {
            return Err(invalid(
                "broker.heartbeat.interval.ms",
                "must be shorter than broker.session.timeout.ms".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(settings: &[(&str, &str)]) -> ClusterConfig {
        let mut config = ClusterConfig::default();
        for (key, value) in settings {
            config.set(key, value).unwrap();
        }
        config
    }

    #[test]
    fn voters_parse_and_bad_ones_are_named() {
        let voters = parse_voters("v", "1@127.0.0.1:9093, 2@127.0.0.1:19093,3@[::1]:29093").unwrap();
        assert_eq!(voters[&2].address(), "127.0.0.1:19093");
        assert_eq!(voters[&3].host, "::1");
        for bad in ["", "1@", "x@h:1", "1@h", "1@h:port", "1@h:1,1@h:2"] {
            assert!(parse_voters("v", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_combined_node_must_be_a_voter_at_its_controller_listener() {
        let voters = "1@127.0.0.1:9093,2@127.0.0.1:19093,3@127.0.0.1:29093";
        let good = cluster(&[
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", voters),
            ("controller.listener", "127.0.0.1:19093"),
        ]);
        assert!(good.validate(2).is_ok());
        let err = good.validate(4).unwrap_err().to_string();
        assert!(err.contains("not among the voters"), "{err}");
        let elsewhere = cluster(&[
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", voters),
            ("controller.listener", "127.0.0.1:39093"),
        ]);
        assert!(elsewhere
            .validate(2)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        let no_listener = cluster(&[("process.roles", "controller"), ("controller.quorum.voters", voters)]);
        assert!(no_listener.validate(1).is_err());
        assert!(
            ClusterConfig::default().validate(1).is_ok(),
            "a standalone node needs nothing"
        );
        let replicated_single = cluster(&[("default.replication.factor", "3")]);
        assert!(replicated_single.validate(1).is_err());
        assert!(Roles::parse("r", "broker,observer").is_err());
    }
}
