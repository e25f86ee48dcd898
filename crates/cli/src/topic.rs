//! `strom topic`: create, list, describe, alter and delete topics with Kafka's admin APIs
//! (CreateTopics, Metadata, DescribeConfigs, CreatePartitions, AlterConfigs, DeleteTopics).

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, GroupResult, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::error::RDKafkaErrorCode;

use crate::connection::{parse_key_value, AdminConnectionArgs, ConnectionArgs, StderrContext};

/// Default bound on every admin call.
pub(crate) const ADMIN_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// `strom topic <command>`.
#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub connection: AdminConnectionArgs,
    /// Bound on each admin request, in milliseconds.
    #[arg(long = "timeout-ms", default_value_t = ADMIN_TIMEOUT_MS_DEFAULT, global = true)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// The topic subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partition count; the broker's `num.partitions` when omitted.
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor; the broker's `default.replication.factor` when omitted.
        #[arg(long = "replication-factor")]
        replication_factor: Option<i32>,
        /// Topic property `key=value` (e.g. `cleanup.policy=compact`), repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Succeed when the topic already exists.
        #[arg(long = "if-not-exists")]
        if_not_exists: bool,
    },
    /// List topic names, one per line.
    List,
    /// Show partitions (leader, replicas, isr) and configs of a topic.
    Describe { name: String },
    /// Add partitions and/or change topic properties.
    Alter {
        name: String,
        /// New total partition count (can only grow).
        #[arg(long)]
        partitions: Option<i32>,
        /// Topic property `key=value` to set, repeatable; other overrides are kept.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// Delete a topic.
    Delete { name: String },
}

pub(crate) fn run(args: TopicArgs) -> anyhow::Result<()> {
    let connection = ConnectionArgs::from(&args.connection);
    let admin = Admin::connect(&connection, Duration::from_millis(args.timeout_ms))?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            config,
            if_not_exists,
        } => {
            let created = admin
                .create_topic(
                    &name,
                    partitions.unwrap_or(-1),
                    replication_factor.unwrap_or(-1),
                    &config,
                )
                .with_context(|| format!("create topic `{name}`"));
            match created {
                Ok(true) => println!("created topic {name}"),
                Ok(false) if if_not_exists => println!("topic {name} already exists"),
                Ok(false) => bail!("create topic `{name}`: topic already exists"),
                Err(e) => return Err(e),
            }
        }
        TopicCommand::List => {
            let mut names = admin.topic_names().context("list topics")?;
            names.sort();
            for name in names {
                println!("{name}");
            }
        }
        TopicCommand::Describe { name } => {
            let text = admin
                .describe(&name)
                .with_context(|| format!("describe topic `{name}`"))?;
            print!("{text}");
        }
        TopicCommand::Alter {
            name,
            partitions,
            config,
        } => {
            if partitions.is_none() && config.is_empty() {
                bail!("alter topic `{name}`: nothing to change, give --partitions and/or --config");
            }
            if let Some(count) = partitions {
                admin
                    .create_partitions(&name, count)
                    .with_context(|| format!("alter topic `{name}`: set partitions to {count}"))?;
                println!("topic {name} now has {count} partitions");
            }
            if !config.is_empty() {
                admin
                    .alter_configs(&name, &config)
                    .with_context(|| format!("alter topic `{name}`: set configs"))?;
                println!("updated {} config(s) of topic {name}", config.len());
            }
        }
        TopicCommand::Delete { name } => {
            admin
                .delete_topic(&name)
                .with_context(|| format!("delete topic `{name}`"))?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

/// An admin client with a bound on every call, and the runtime that drives its futures.
pub(crate) struct Admin {
    client: AdminClient<StderrContext>,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl Admin {
    pub(crate) fn connect(connection: &ConnectionArgs, timeout: Duration) -> anyhow::Result<Self> {
        let client = connection
            // Describing a topic must not create it (librdkafka lets producer-type
            // clients, which the admin client is, ask for auto-creation in Metadata).
            .client_config(&[("allow.auto.create.topics", "false".to_string())])
            .create_with_context(StderrContext::default())
            .context("create admin client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("start tokio runtime")?;
        Ok(Admin {
            client,
            runtime,
            timeout,
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Waits for an admin future, bounded by the timeout (plus slack, since librdkafka
    /// enforces the same bound itself and its own error is more precise).
    fn wait<T>(&self, future: impl Future<Output = rdkafka::error::KafkaResult<T>>) -> anyhow::Result<T> {
        let bound = self.timeout + Duration::from_secs(1);
        self.runtime.block_on(async {
            match tokio::time::timeout(bound, future).await {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow!("timed out after {} ms", bound.as_millis())),
            }
        })
    }

    /// Creates a topic; `Ok(false)` when it already exists. `-1` means the broker default.
    pub(crate) fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        config: &[(String, String)],
    ) -> anyhow::Result<bool> {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication_factor));
        for (key, value) in config {
            topic = topic.set(key, value);
        }
        let results = self.wait(self.client.create_topics([&topic], &self.options()))?;
        match one_result(results)? {
            Ok(_) => Ok(true),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => Ok(false),
            Err((_, code)) => Err(anyhow!("{code}")),
        }
    }

    pub(crate) fn topic_names(&self) -> anyhow::Result<Vec<String>> {
        let metadata = self
            .client
            .inner()
            .fetch_metadata(None, self.timeout)
            .context("fetch metadata")?;
        Ok(metadata.topics().iter().map(|t| t.name().to_string()).collect())
    }

    fn describe(&self, name: &str) -> anyhow::Result<String> {
        use std::fmt::Write;
        let metadata = self
            .client
            .inner()
            .fetch_metadata(Some(name), self.timeout)
            .context("fetch metadata")?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| anyhow!("topic not in metadata response"))?;
        if let Some(code) = topic.error() {
            bail!("{}", RDKafkaErrorCode::from(code));
        }
        let mut partitions: Vec<_> = topic.partitions().iter().collect();
        partitions.sort_by_key(|p| p.id());
        let mut out = String::new();
        let _ = writeln!(out, "topic: {name}");
        let _ = writeln!(out, "partitions: {}", partitions.len());
        let mut under_replicated = Vec::new();
        for partition in partitions {
            let _ = write!(
                out,
                "  partition {} leader {} replicas {:?} isr {:?}",
                partition.id(),
                partition.leader(),
                partition.replicas(),
                partition.isr()
            );
            if let Some(code) = partition.error() {
                let _ = write!(out, " error {}", RDKafkaErrorCode::from(code));
            }
            out.push('\n');
            if partition.leader() < 0 || partition.isr().len() < partition.replicas().len() {
                under_replicated.push(partition.id());
            }
        }
        if !under_replicated.is_empty() {
            let _ = writeln!(out, "under-replicated or offline partitions: {under_replicated:?}");
        }
        let resource = ResourceSpecifier::Topic(name);
        let results = self
            .wait(self.client.describe_configs([&resource], &self.options()))
            .context("describe configs")?;
        let resource = one_result(results)?.map_err(|code| anyhow!("describe configs: {code}"))?;
        let mut entries: Vec<_> = resource.entries.iter().collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let _ = writeln!(out, "configs:");
        for entry in entries {
            let value = if entry.is_sensitive {
                "(sensitive)"
            } else {
                entry.value.as_deref().unwrap_or("(null)")
            };
            let source = if entry.source == ConfigSource::DynamicTopic {
                " (topic override)"
            } else {
                ""
            };
            let _ = writeln!(out, "  {}={value}{source}", entry.name);
        }
        Ok(out)
    }

    fn create_partitions(&self, name: &str, count: i32) -> anyhow::Result<()> {
        let count = usize::try_from(count).map_err(|_| anyhow!("partition count must be >= 1"))?;
        let partitions = NewPartitions::new(name, count);
        let results = self.wait(self.client.create_partitions([&partitions], &self.options()))?;
        one_result(results)?.map_err(|(_, code)| anyhow!("{code}"))?;
        Ok(())
    }

    /// Sets topic properties with AlterConfigs, which replaces the whole set of overrides:
    /// the current overrides are read first and sent along, so only `changes` change.
    fn alter_configs(&self, name: &str, changes: &[(String, String)]) -> anyhow::Result<()> {
        let resource = ResourceSpecifier::Topic(name);
        let results = self
            .wait(self.client.describe_configs([&resource], &self.options()))
            .context("read current configs")?;
        let current = one_result(results)?.map_err(|code| anyhow!("read current configs: {code}"))?;
        let mut merged: Vec<(String, String)> = current
            .entries
            .iter()
            .filter(|e| e.source == ConfigSource::DynamicTopic && !e.is_sensitive)
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .filter(|(key, _)| !changes.iter().any(|(k, _)| k == key))
            .collect();
        merged.extend(changes.iter().cloned());
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (key, value) in &merged {
            alter = alter.set(key, value);
        }
        let results = self.wait(self.client.alter_configs([&alter], &self.options()))?;
        one_result(results)?.map_err(|(_, code)| anyhow!("{code}"))?;
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> anyhow::Result<()> {
        let results = self.wait(self.client.delete_topics(&[name], &self.options()))?;
        one_result(results)?.map_err(|(_, code)| anyhow!("{code}"))?;
        Ok(())
    }

    /// Deletes consumer groups (DeleteGroups): one result per group the broker answered for.
    pub(crate) fn delete_groups(&self, groups: &[&str]) -> anyhow::Result<Vec<GroupResult>> {
        self.wait(self.client.delete_groups(groups, &self.options()))
    }
}

/// Unwraps the single per-resource result of a one-resource admin request.
fn one_result<T>(results: Vec<T>) -> anyhow::Result<T> {
    let count = results.len();
    let mut results = results.into_iter();
    match (results.next(), count) {
        (Some(result), 1) => Ok(result),
        _ => bail!("broker returned {count} results for one resource"),
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{parse, parse_error};
    use crate::ClientCommand;

    use super::*;

    fn topic(args: &[&str]) -> TopicArgs {
        match parse(args) {
            ClientCommand::Topic(args) => args,
            other => panic!("expected topic, got {other:?}"),
        }
    }

    #[test]
    fn create_with_configs_and_connection_after_subcommand() {
        let args = topic(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "retention.ms=1000",
            "--if-not-exists",
            "-b",
            "k:9093",
            "-X",
            "client.id=me",
        ]);
        assert_eq!(args.connection.bootstrap_server, "k:9093");
        assert_eq!(
            args.connection.client_config,
            vec![("client.id".to_string(), "me".to_string())]
        );
        assert_eq!(args.timeout_ms, ADMIN_TIMEOUT_MS_DEFAULT);
        match args.command {
            TopicCommand::Create {
                name,
                partitions,
                replication_factor,
                config,
                if_not_exists,
            } => {
                assert_eq!(name, "orders");
                assert_eq!(partitions, Some(6));
                assert_eq!(replication_factor, Some(3));
                assert_eq!(config.len(), 2);
                assert_eq!(config[0], ("cleanup.policy".to_string(), "compact".to_string()));
                assert!(if_not_exists);
            }
            other => panic!("expected create, got {other:?}"),
        }
    }

    #[test]
    fn create_defaults_to_broker_settings() {
        match topic(&["topic", "create", "t"]).command {
            TopicCommand::Create {
                partitions,
                replication_factor,
                if_not_exists,
                ..
            } => {
                assert_eq!((partitions, replication_factor), (None, None));
                assert!(!if_not_exists);
            }
            other => panic!("expected create, got {other:?}"),
        }
    }

    #[test]
    fn alter_and_timeout() {
        let args = topic(&["topic", "--timeout-ms", "500", "alter", "t", "--partitions", "4"]);
        assert_eq!(args.timeout_ms, 500);
        assert!(matches!(
            args.command,
            TopicCommand::Alter { partitions: Some(4), ref config, .. } if config.is_empty()
        ));
    }

    #[test]
    fn bad_topic_config_is_rejected() {
        let error = parse_error(&["topic", "create", "t", "--config", "nope"]);
        assert!(error.contains("KEY=VALUE"), "{error}");
        let _ = parse_error(&["topic", "describe"]);
    }
}
