//! `strom group`: list, describe and delete consumer groups, and reset their committed
//! offsets, like Kafka's `kafka-consumer-groups.sh`.
//!
//! Only Kafka APIs are used (ListGroups, DescribeGroups, OffsetFetch, ListOffsets, Metadata,
//! OffsetCommit, DeleteGroups through librdkafka; ApiVersions, FindCoordinator and
//! ConsumerGroupDescribe directly, see below), so the command works against any Kafka broker.
//! Lookups go through a consumer that carries the group's id but never subscribes: it reads
//! and commits the group's offsets without ever joining the group.
//!
//! # KIP-848 groups
//!
//! DescribeGroups only speaks of classic groups: a group of the KIP-848 protocol
//! (`group.protocol=consumer`) comes back `Dead` with no members, and rdkafka 0.39 has no
//! ConsumerGroupDescribe. So when DescribeGroups reports a group as `Dead` or not at all (and,
//! for `describe` and `reset-offsets`, as `Empty` with no members, as an empty KIP-848 group
//! may be), `describe`, `list` and `reset-offsets` ask again over the Kafka protocol directly
//! (`wire.rs`): FindCoordinator at a bootstrap server, then ConsumerGroupDescribe (API 69) at
//! the coordinator, if its ApiVersions lists it. A group the coordinator knows as a consumer
//! group is then shown with its state, group and assignment epochs, assignor and members (each
//! with its member epoch, subscription and assigned partitions); `reset-offsets --execute`
//! sees those members. A broker without the API, or a group it does not know as a consumer
//! group, keeps the DescribeGroups answer. That second path speaks plaintext only: with a
//! `security.protocol` other than `plaintext` in `-X`, KIP-848 groups still show as `Dead`
//! (the broker still refuses a commit from outside a group that has members).
//!
//! # Output
//!
//! Plain text is line-oriented, `key value` pairs after a two-space indent for list items,
//! `-` where there is no value; `--format json` prints JSON lines instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::connection::{AdminConnectionArgs, ConnectionArgs, StderrContext};
use crate::consume::OutputFormat;
use crate::consumer_protocol::decode_assignment;
use crate::datetime::parse_epoch_ms;
use crate::topic::{Admin, ADMIN_TIMEOUT_MS_DEFAULT};
use crate::wire;

/// The protocol type of groups whose members use Kafka's consumer protocol, and so whose
/// assignments [`decode_assignment`] understands (Kafka Connect's groups use another).
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The state DescribeGroups reports for a group the coordinator does not know.
const STATE_DEAD: &str = "Dead";
/// The state of a group with no members (it may still hold committed offsets).
const STATE_EMPTY: &str = "Empty";
/// What plain output prints where there is no value.
const NONE_TEXT: &str = "-";

/// `strom group <command>`.
#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub connection: AdminConnectionArgs,
    /// Bound on each request to the broker, in milliseconds.
    #[arg(long = "timeout-ms", default_value_t = ADMIN_TIMEOUT_MS_DEFAULT, global = true)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// The group subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List group ids, one per line, sorted.
    List {
        /// Print each group's state after its id: `<group> <state>`.
        #[arg(long)]
        state: bool,
        /// Output format: `plain`, or `json` for one `{"group", "state"}` object per line.
        #[arg(long, value_enum, default_value_t = OutputFormat::Plain, hide_possible_values = true)]
        format: OutputFormat,
    },
    /// Show a group's state, members and their partitions, and per partition the committed
    /// offset, log end offset and lag (partitions of every topic with a committed offset, and
    /// every assigned partition).
    Describe {
        /// The group id.
        group: String,
        /// Output format: `plain`, or `json` for the description as one JSON object.
        #[arg(long, value_enum, default_value_t = OutputFormat::Plain, hide_possible_values = true)]
        format: OutputFormat,
    },
    /// Delete groups that have no members, with their committed offsets.
    Delete {
        /// The group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Print new committed offsets for a group (a dry run); commit them with --execute, which
    /// is refused while the group has members.
    ResetOffsets(ResetOffsetsArgs),
}

/// `strom group reset-offsets`.
#[derive(Debug, clap::Args)]
pub struct ResetOffsetsArgs {
    /// The group id.
    pub group: String,
    #[command(flatten)]
    pub scope: ResetScope,
    #[command(flatten)]
    pub target: ResetTarget,
    /// Commit the new offsets; without it nothing is changed.
    #[arg(long)]
    pub execute: bool,
    /// Output format: `plain`, or `json` for one `{"topic", "partition", "committed", "new"}`
    /// object per line.
    #[arg(long, value_enum, default_value_t = OutputFormat::Plain, hide_possible_values = true)]
    pub format: OutputFormat,
}

/// Which partitions `reset-offsets` moves.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ResetScope {
    /// `TOPIC` (every partition) or `TOPIC:P,P,...`; repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", value_parser = parse_topic_partitions)]
    pub topics: Vec<TopicPartitions>,
    /// Every partition the group has a committed offset for.
    #[arg(long = "all-topics")]
    pub all_topics: bool,
}

/// Where `reset-offsets` moves them; exactly one is given.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ResetTarget {
    /// The log start offset.
    #[arg(long = "to-earliest")]
    pub to_earliest: bool,
    /// The log end offset.
    #[arg(long = "to-latest")]
    pub to_latest: bool,
    /// This offset, clamped to [log start, log end].
    #[arg(long = "to-offset", value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(0..))]
    pub to_offset: Option<i64>,
    /// The first record at or after this time: epoch milliseconds or RFC 3339 with a zone
    /// (`2024-05-01T12:00:00Z`); the log end where no record is that late.
    #[arg(long = "to-datetime", value_name = "TIME", value_parser = parse_epoch_ms)]
    pub to_datetime: Option<i64>,
    /// The committed offset plus N (negative: back), clamped to [log start, log end].
    #[arg(long = "shift-by", value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
}

/// A `--topic` value: a topic, and some of its partitions or (`None`) all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Option<Vec<i32>>,
}

/// A reset target, once the command line has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    Datetime { epoch_ms: i64 },
    ShiftBy(i64),
}

impl ResetTarget {
    fn reset_to(&self) -> anyhow::Result<ResetTo> {
        Ok(
            match (
                self.to_earliest,
                self.to_latest,
                self.to_offset,
                self.to_datetime,
                self.shift_by,
            ) {
                (true, false, None, None, None) => ResetTo::Earliest,
                (false, true, None, None, None) => ResetTo::Latest,
                (false, false, Some(offset), None, None) => ResetTo::Offset(offset),
                (false, false, None, Some(epoch_ms), None) => ResetTo::Datetime { epoch_ms },
                (false, false, None, None, Some(shift)) => ResetTo::ShiftBy(shift),
                // clap's argument group already refuses this; kept as an error, not a panic.
                _ => bail!("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by"),
            },
        )
    }
}

/// Parses `TOPIC` or `TOPIC:P,P,...` (topic names cannot contain `:`).
fn parse_topic_partitions(text: &str) -> anyhow::Result<TopicPartitions> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, None),
        Some((topic, list)) => {
            let mut partitions = list
                .split(',')
                .map(|item| {
                    item.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| anyhow!("`{item}` is not a partition number"))
                })
                .collect::<anyhow::Result<Vec<i32>>>()?;
            partitions.sort_unstable();
            partitions.dedup();
            (topic, Some(partitions))
        }
    };
    if topic.is_empty() {
        bail!("empty topic name in `{text}`");
    }
    Ok(TopicPartitions {
        topic: topic.to_string(),
        partitions,
    })
}

pub(crate) fn run(args: GroupArgs) -> anyhow::Result<()> {
    let connection = ConnectionArgs::from(&args.connection);
    let timeout = Duration::from_millis(args.timeout_ms);
    match args.command {
        GroupCommand::List { state, format } => list(&connection, timeout, state, format).context("list groups"),
        GroupCommand::Describe { group, format } => {
            describe(&connection, timeout, &group, format).with_context(|| format!("describe group `{group}`"))
        }
        GroupCommand::Delete { groups } => delete(&connection, timeout, &groups),
        GroupCommand::ResetOffsets(reset) => {
            let group = reset.group.clone();
            reset_offsets(&connection, timeout, reset).with_context(|| format!("reset offsets of group `{group}`"))
        }
    }
}

fn list(connection: &ConnectionArgs, timeout: Duration, with_state: bool, format: OutputFormat) -> anyhow::Result<()> {
    let client = GroupClient::connect(connection, None, timeout)?;
    let mut groups = client.all_groups()?;
    if with_state || format == OutputFormat::Json {
        for (group, state) in &mut groups {
            if state.is_empty() || state == STATE_DEAD {
                if let Some(described) = describe_consumer_group(connection, group, timeout)? {
                    *state = described.state;
                }
            }
        }
    }
    let mut out = String::new();
    for (group, state) in &groups {
        match format {
            OutputFormat::Plain if with_state => out.push_str(&format!("{group} {state}\n")),
            OutputFormat::Plain => out.push_str(&format!("{group}\n")),
            OutputFormat::Json => {
                out.push_str(&serde_json::json!({"group": group, "state": state}).to_string());
                out.push('\n');
            }
        }
    }
    print!("{out}");
    Ok(())
}

fn describe(connection: &ConnectionArgs, timeout: Duration, group: &str, format: OutputFormat) -> anyhow::Result<()> {
    let client = GroupClient::connect(connection, Some(group), timeout)?;
    let description = describe_any_group(&client, connection, group, timeout)?;
    let mut owners: HashMap<(String, i32), &str> = HashMap::new();
    for member in &description.members {
        for partition in member.partitions.iter().flatten() {
            let _ = owners.insert(partition.clone(), &member.member_id);
        }
    }
    // Offsets may be committed for any topic, and OffsetFetch through librdkafka needs the
    // partitions named: ask for every partition in the cluster, and every assigned one.
    let mut asked: BTreeSet<(String, i32)> = client.all_partitions()?.into_iter().collect();
    asked.extend(owners.keys().cloned());
    let committed = client.committed(&asked.into_iter().collect::<Vec<_>>())?;
    if description.state == STATE_DEAD && committed.is_empty() {
        bail!("no such group ({})", RDKafkaErrorCode::GroupIdNotFound);
    }
    let mut shown: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    shown.extend(owners.keys().cloned());
    let mut offsets = Vec::with_capacity(shown.len());
    for (topic, partition) in shown {
        let (_, log_end) = client.watermarks(&topic, partition)?;
        let key = (topic, partition);
        offsets.push(PartitionOffsets {
            committed: committed.get(&key).copied(),
            log_end,
            member: owners.get(&key).map(|m| m.to_string()),
            topic: key.0,
            partition: key.1,
        });
    }
    let text = match format {
        OutputFormat::Plain => describe_plain(group, &description, &offsets),
        OutputFormat::Json => format!("{}\n", describe_json(group, &description, &offsets)),
    };
    print!("{text}");
    Ok(())
}

fn delete(connection: &ConnectionArgs, timeout: Duration, groups: &[String]) -> anyhow::Result<()> {
    let admin = Admin::connect(connection, timeout)?;
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let results = admin.delete_groups(&names).with_context(|| {
        let quoted: Vec<String> = groups.iter().map(|g| format!("`{g}`")).collect();
        format!("delete group {}", quoted.join(", "))
    })?;
    let mut answered: BTreeMap<String, Result<(), RDKafkaErrorCode>> = BTreeMap::new();
    for result in results {
        let _ = match result {
            Ok(group) => answered.insert(group, Ok(())),
            Err((group, code)) => answered.insert(group, Err(code)),
        };
    }
    let mut failures = Vec::new();
    for group in groups {
        match answered.get(group) {
            Some(Ok(())) => println!("deleted group {group}"),
            Some(Err(code)) => failures.push(format!("delete group `{group}`: {code}")),
            None => failures.push(format!("delete group `{group}`: no answer for it from the broker")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("; "))
    }
}

fn reset_offsets(connection: &ConnectionArgs, timeout: Duration, args: ResetOffsetsArgs) -> anyhow::Result<()> {
    let target = args.target.reset_to()?;
    let client = GroupClient::connect(connection, Some(&args.group), timeout)?;
    let description = describe_any_group(&client, connection, &args.group, timeout)?;
    // Kafka's rule: a group's offsets are only rewritten while nobody consumes with them.
    // The broker enforces it too (a commit from outside a non-empty group is refused).
    let active = !description.members.is_empty() || !matches!(description.state.as_str(), STATE_EMPTY | STATE_DEAD);
    let active_text = format!(
        "the group is {} with {} member(s)",
        description.state,
        description.members.len()
    );
    if active && args.execute {
        bail!("{active_text}: offsets can only be reset while the group has no members; stop its consumers first");
    }
    let partitions = if args.scope.all_topics {
        let every = client.all_partitions()?;
        let with_commits: Vec<(String, i32)> = client.committed(&every)?.into_keys().collect();
        if with_commits.is_empty() {
            bail!("--all-topics: the group has no committed offsets");
        }
        with_commits
    } else {
        client.chosen_partitions(&args.scope.topics)?
    };
    let committed = client.committed(&partitions)?;
    let at_time = match target {
        ResetTo::Datetime { epoch_ms } => client.offsets_for_time(&partitions, epoch_ms)?,
        _ => BTreeMap::new(),
    };
    let mut plan = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let (log_start, log_end) = client.watermarks(&topic, partition)?;
        let key = (topic, partition);
        let current = committed.get(&key).copied();
        let new = new_offset(
            target,
            current,
            log_start,
            log_end,
            at_time.get(&key).copied().flatten(),
        )
        .with_context(|| format!("{}:{}", key.0, key.1))?;
        plan.push(PlannedReset {
            topic: key.0,
            partition: key.1,
            current,
            new,
        });
    }
    print!("{}", reset_text(&plan, args.format));
    if args.execute {
        client.commit(&plan)?;
        eprintln!(
            "committed new offsets of {} partition(s) for group {}",
            plan.len(),
            args.group
        );
    } else {
        if active {
            eprintln!("note: {active_text}; --execute will be refused until it has none");
        }
        eprintln!("dry run: nothing committed; add --execute to commit these offsets");
    }
    Ok(())
}

/// The group as DescribeGroups shows it, or, where that shows no members and says `Dead` (as
/// it does of KIP-848 groups) or `Empty`, as ConsumerGroupDescribe does if the coordinator
/// knows it as a consumer group.
fn describe_any_group(
    client: &GroupClient,
    connection: &ConnectionArgs,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<GroupDescription> {
    let classic = client.describe_group(group)?;
    // An empty KIP-848 group may also be described as Empty (Strom does): ask then too, the
    // coordinator answers GROUP_ID_NOT_FOUND for an empty classic group.
    let maybe_consumer_group =
        classic.members.is_empty() && matches!(classic.state.as_str(), "" | STATE_DEAD | STATE_EMPTY);
    if !maybe_consumer_group {
        return Ok(classic);
    }
    Ok(describe_consumer_group(connection, group, timeout)?.unwrap_or(classic))
}

/// ConsumerGroupDescribe of `group` at its coordinator (see the module doc); `None` where the
/// broker has no such API, the group is not a consumer group, or the connection is not
/// plaintext (the direct client speaks neither TLS nor SASL).
fn describe_consumer_group(
    connection: &ConnectionArgs,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<Option<GroupDescription>> {
    let plaintext = connection
        .config
        .iter()
        .filter(|(key, _)| key == "security.protocol")
        .all(|(_, value)| value.eq_ignore_ascii_case("plaintext"));
    if !plaintext {
        return Ok(None);
    }
    let described = wire::consumer_group_describe(&connection.bootstrap_server, group, timeout)
        .context("ConsumerGroupDescribe (KIP-848 groups)")?;
    Ok(described.map(consumer_group_description))
}

/// A ConsumerGroupDescribe answer as a [`GroupDescription`]; members sorted by id, each one's
/// partitions those assigned to it now (not its target assignment). A member with an
/// assignment entry without a topic name has partitions `None` (unknown).
fn consumer_group_description(described: DescribedGroup) -> GroupDescription {
    let mut members: Vec<MemberDescription> = described
        .members
        .into_iter()
        .map(|member| {
            let mut partitions = Some(Vec::new());
            for entry in &member.assignment.topic_partitions {
                let topic = entry.topic_name.as_str();
                match partitions.as_mut() {
                    Some(list) if !topic.is_empty() => {
                        list.extend(entry.partitions.iter().map(|p| (topic.to_string(), *p)));
                    }
                    _ => partitions = None,
                }
            }
            MemberDescription {
                member_id: member.member_id.to_string(),
                client_id: member.client_id.to_string(),
                host: member.client_host.to_string(),
                partitions,
                consumer: Some(ConsumerMember {
                    member_epoch: member.member_epoch,
                    subscribed_topics: member.subscribed_topic_names.iter().map(|t| t.to_string()).collect(),
                    subscribed_regex: member.subscribed_topic_regex.map(|r| r.to_string()),
                }),
            }
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    GroupDescription {
        state: described.group_state.to_string(),
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
        protocol: String::new(),
        members,
        consumer: Some(ConsumerGroup {
            group_epoch: described.group_epoch,
            assignment_epoch: described.assignment_epoch,
            assignor: described.assignor_name.to_string(),
        }),
    }
}

/// The offset a partition is reset to. `at_time` is the ListOffsets answer for
/// [`ResetTo::Datetime`], `None` when no record is that late. The result is always within
/// [log start, log end], as Kafka's tool does: a committed offset outside the log would only
/// be reset again by the consumer's `auto.offset.reset`.
fn new_offset(
    target: ResetTo,
    current: Option<i64>,
    log_start: i64,
    log_end: i64,
    at_time: Option<i64>,
) -> anyhow::Result<i64> {
    if log_start > log_end {
        bail!("log start offset {log_start} is past the log end offset {log_end}");
    }
    let wanted = match target {
        ResetTo::Earliest => log_start,
        ResetTo::Latest => log_end,
        ResetTo::Offset(offset) => offset,
        ResetTo::Datetime { .. } => at_time.unwrap_or(log_end),
        ResetTo::ShiftBy(shift) => current
            .ok_or_else(|| anyhow!("no committed offset to shift"))?
            .saturating_add(shift),
    };
    Ok(wanted.clamp(log_start, log_end))
}

/// What a group looks like, from DescribeGroups or (KIP-848 groups) ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupDescription {
    state: String,
    protocol_type: String,
    /// The classic protocol (assignment strategy); empty for KIP-848 groups.
    protocol: String,
    members: Vec<MemberDescription>,
    /// What only KIP-848 groups have; `None` for classic groups.
    consumer: Option<ConsumerGroup>,
}

/// A KIP-848 group's epochs and server-side assignor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConsumerGroup {
    group_epoch: i32,
    assignment_epoch: i32,
    assignor: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberDescription {
    member_id: String,
    client_id: String,
    host: String,
    /// `None` when the assignment is not in the consumer protocol or does not decode.
    partitions: Option<Vec<(String, i32)>>,
    /// What only KIP-848 members have; `None` for classic groups.
    consumer: Option<ConsumerMember>,
}

/// A KIP-848 member's epoch and subscription (topic names, or a regex, or both).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConsumerMember {
    member_epoch: i32,
    subscribed_topics: Vec<String>,
    subscribed_regex: Option<String>,
}

/// One row of `describe`'s offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionOffsets {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: i64,
    member: Option<String>,
}

impl PartitionOffsets {
    /// Records between the committed offset and the log end; unknown with nothing committed.
    fn lag(&self) -> Option<i64> {
        self.committed.map(|committed| self.log_end - committed)
    }
}

/// One row of `reset-offsets`' plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedReset {
    topic: String,
    partition: i32,
    current: Option<i64>,
    new: i64,
}

fn or_none<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| NONE_TEXT.to_string(), |v| v.to_string())
}

/// `topic:p,p other:p`, or `-` for no partitions, `(unknown)` when undecodable.
fn partitions_text(partitions: Option<&[(String, i32)]>) -> String {
    let Some(partitions) = partitions else {
        return "(unknown)".to_string();
    };
    if partitions.is_empty() {
        return NONE_TEXT.to_string();
    }
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, mut list)| {
            list.sort_unstable();
            let list: Vec<String> = list.iter().map(i32::to_string).collect();
            format!("{topic}:{}", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_plain(group: &str, description: &GroupDescription, offsets: &[PartitionOffsets]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "group: {group}");
    let _ = writeln!(out, "state: {}", description.state);
    let _ = writeln!(out, "protocol-type: {}", or_empty(&description.protocol_type));
    let _ = writeln!(out, "protocol: {}", or_empty(&description.protocol));
    if let Some(consumer) = &description.consumer {
        let _ = writeln!(out, "group-epoch: {}", consumer.group_epoch);
        let _ = writeln!(out, "assignment-epoch: {}", consumer.assignment_epoch);
        let _ = writeln!(out, "assignor: {}", or_empty(&consumer.assignor));
    }
    let _ = writeln!(out, "members: {}", description.members.len());
    for member in &description.members {
        let _ = write!(
            out,
            "  member {} client {} host {}",
            member.member_id,
            or_empty(&member.client_id),
            or_empty(&member.host),
        );
        if let Some(consumer) = &member.consumer {
            let _ = write!(
                out,
                " member-epoch {} subscribed {}",
                consumer.member_epoch,
                or_empty(&consumer.subscribed_topics.join(","))
            );
            if let Some(regex) = &consumer.subscribed_regex {
                let _ = write!(out, " subscribed-regex {regex}");
            }
        }
        let _ = writeln!(out, " partitions {}", partitions_text(member.partitions.as_deref()));
    }
    let _ = writeln!(out, "offsets: {}", offsets.len());
    for row in offsets {
        let _ = writeln!(
            out,
            "  topic {} partition {} committed {} log-end {} lag {} member {}",
            row.topic,
            row.partition,
            or_none(row.committed),
            row.log_end,
            or_none(row.lag()),
            or_none(row.member.as_deref())
        );
    }
    out
}

fn or_empty(text: &str) -> &str {
    if text.is_empty() {
        NONE_TEXT
    } else {
        text
    }
}

fn describe_json(group: &str, description: &GroupDescription, offsets: &[PartitionOffsets]) -> serde_json::Value {
    let members: Vec<serde_json::Value> = description
        .members
        .iter()
        .map(|member| {
            let partitions = member.partitions.as_ref().map(|list| {
                list.iter()
                    .map(|(topic, partition)| serde_json::json!({"topic": topic, "partition": partition}))
                    .collect::<Vec<_>>()
            });
            let mut value = serde_json::json!({
                "member_id": member.member_id,
                "client_id": member.client_id,
                "host": member.host,
                "partitions": partitions,
            });
            if let (Some(consumer), Some(object)) = (&member.consumer, value.as_object_mut()) {
                let _ = object.insert("member_epoch".to_string(), consumer.member_epoch.into());
                let _ = object.insert(
                    "subscribed_topics".to_string(),
                    serde_json::json!(consumer.subscribed_topics),
                );
                let _ = object.insert(
                    "subscribed_topic_regex".to_string(),
                    serde_json::json!(consumer.subscribed_regex),
                );
            }
            value
        })
        .collect();
    let offsets: Vec<serde_json::Value> = offsets
        .iter()
        .map(|row| {
            serde_json::json!({
                "topic": row.topic,
                "partition": row.partition,
                "committed": row.committed,
                "log_end": row.log_end,
                "lag": row.lag(),
                "member": row.member,
            })
        })
        .collect();
    let mut value = serde_json::json!({
        "group": group,
        "state": description.state,
        "protocol_type": description.protocol_type,
        "protocol": description.protocol,
        "members": members,
        "offsets": offsets,
    });
    if let (Some(consumer), Some(object)) = (&description.consumer, value.as_object_mut()) {
        let _ = object.insert("group_epoch".to_string(), consumer.group_epoch.into());
        let _ = object.insert("assignment_epoch".to_string(), consumer.assignment_epoch.into());
        let _ = object.insert("assignor".to_string(), consumer.assignor.clone().into());
    }
    value
}

fn reset_text(plan: &[PlannedReset], format: OutputFormat) -> String {
    let mut out = String::new();
    for row in plan {
        match format {
            OutputFormat::Plain => out.push_str(&format!(
                "topic {} partition {} committed {} new {}\n",
                row.topic,
                row.partition,
                or_none(row.current),
                row.new
            )),
            OutputFormat::Json => {
                let line = serde_json::json!({
                    "topic": row.topic,
                    "partition": row.partition,
                    "committed": row.current,
                    "new": row.new,
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
        }
    }
    out
}

/// A consumer for lookups and commits on behalf of a group: it has the group's id, so
/// OffsetFetch and OffsetCommit speak for the group, but never subscribes, so it never joins.
/// Every call is bounded by `timeout`.
struct GroupClient {
    /// Shared with the thread that bounds a commit (see [`GroupClient::commit`]).
    consumer: Arc<BaseConsumer<StderrContext>>,
    timeout: Duration,
}

impl GroupClient {
    /// `group` is `None` for lookups that are about no group in particular (list).
    fn connect(connection: &ConnectionArgs, group: Option<&str>, timeout: Duration) -> anyhow::Result<Self> {
        let mut defaults = vec![
            ("enable.auto.commit", "false".to_string()),
            ("enable.auto.offset.store", "false".to_string()),
            ("allow.auto.create.topics", "false".to_string()),
        ];
        if let Some(group) = group {
            defaults.push(("group.id", group.to_string()));
        }
        let consumer = connection
            .client_config(&defaults)
            .create_with_context(StderrContext::default())
            .context("create consumer")?;
        Ok(GroupClient {
            consumer: Arc::new(consumer),
            timeout,
        })
    }

    /// Every group the brokers know, with its state, sorted by id.
    fn all_groups(&self) -> anyhow::Result<Vec<(String, String)>> {
        let list = self
            .consumer
            .fetch_group_list(None, self.timeout)
            .context("ListGroups")?;
        let mut groups: BTreeMap<String, String> = BTreeMap::new();
        for group in list.groups() {
            let _ = groups.insert(group.name().to_string(), group.state().to_string());
        }
        Ok(groups.into_iter().collect())
    }

    /// DescribeGroups of one group; a group the broker does not know is Dead with no members.
    fn describe_group(&self, group: &str) -> anyhow::Result<GroupDescription> {
        let list = self
            .consumer
            .fetch_group_list(Some(group), self.timeout)
            .context("DescribeGroups")?;
        // librdkafka may ask several brokers; only the coordinator knows the group.
        let found = list
            .groups()
            .iter()
            .filter(|info| info.name() == group)
            .max_by_key(|info| info.state() != STATE_DEAD);
        let Some(info) = found else {
            return Ok(GroupDescription {
                state: STATE_DEAD.to_string(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
                consumer: None,
            });
        };
        let consumer_protocol = info.protocol_type() == CONSUMER_PROTOCOL_TYPE;
        let mut members: Vec<MemberDescription> = info
            .members()
            .iter()
            .map(|member| MemberDescription {
                member_id: member.id().to_string(),
                client_id: member.client_id().to_string(),
                host: member.client_host().to_string(),
                partitions: consumer_protocol
                    .then(|| decode_assignment(member.assignment().unwrap_or_default()).ok())
                    .flatten(),
                consumer: None,
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Ok(GroupDescription {
            state: info.state().to_string(),
            protocol_type: info.protocol_type().to_string(),
            protocol: info.protocol().to_string(),
            members,
            consumer: None,
        })
    }

    /// The partition ids of every topic, from metadata.
    fn partitions_by_topic(&self, topic: Option<&str>) -> anyhow::Result<BTreeMap<String, Vec<i32>>> {
        let metadata = self
            .consumer
            .fetch_metadata(topic, self.timeout)
            .context("fetch metadata")?;
        let mut topics = BTreeMap::new();
        for topic_metadata in metadata.topics() {
            if let Some(code) = topic_metadata.error() {
                if topic.is_some() {
                    bail!("topic `{}`: {}", topic_metadata.name(), RDKafkaErrorCode::from(code));
                }
                continue;
            }
            let mut partitions: Vec<i32> = topic_metadata.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            let _ = topics.insert(topic_metadata.name().to_string(), partitions);
        }
        Ok(topics)
    }

    /// Every partition of every topic in the cluster.
    fn all_partitions(&self) -> anyhow::Result<Vec<(String, i32)>> {
        Ok(self
            .partitions_by_topic(None)?
            .into_iter()
            .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| (topic.clone(), p)))
            .collect())
    }

    /// The partitions `--topic` names, checked against metadata.
    fn chosen_partitions(&self, chosen: &[TopicPartitions]) -> anyhow::Result<Vec<(String, i32)>> {
        let mut partitions = BTreeSet::new();
        for TopicPartitions {
            topic,
            partitions: only,
        } in chosen
        {
            let existing = self
                .partitions_by_topic(Some(topic))?
                .remove(topic)
                .ok_or_else(|| anyhow!("topic `{topic}` not in metadata response"))?;
            let wanted = match only {
                None => existing.clone(),
                Some(list) => list.clone(),
            };
            for partition in wanted {
                if !existing.contains(&partition) {
                    bail!(
                        "topic `{topic}` has no partition {partition} (it has {})",
                        existing.len()
                    );
                }
                let _ = partitions.insert((topic.clone(), partition));
            }
        }
        Ok(partitions.into_iter().collect())
    }

    /// The group's committed offsets of `partitions` (OffsetFetch); partitions with nothing
    /// committed are absent.
    fn committed(&self, partitions: &[(String, i32)]) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        let mut committed = BTreeMap::new();
        if partitions.is_empty() {
            return Ok(committed);
        }
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        let answer = self
            .consumer
            .committed_offsets(list, self.timeout)
            .context("fetch committed offsets")?;
        for element in answer.elements() {
            element
                .error()
                .with_context(|| format!("committed offset of {}:{}", element.topic(), element.partition()))?;
            if let Offset::Offset(offset) = element.offset() {
                let _ = committed.insert((element.topic().to_string(), element.partition()), offset);
            }
        }
        Ok(committed)
    }

    /// (log start offset, log end offset) of a partition; the log end is the high watermark,
    /// the last offset a consumer can read plus one.
    fn watermarks(&self, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .with_context(|| format!("watermarks of {topic}:{partition}"))
    }

    /// Per partition, the offset of the first record with a timestamp at or after `epoch_ms`
    /// (ListOffsets), `None` where there is none.
    fn offsets_for_time(
        &self,
        partitions: &[(String, i32)],
        epoch_ms: i64,
    ) -> anyhow::Result<BTreeMap<(String, i32), Option<i64>>> {
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            list.add_partition_offset(topic, *partition, Offset::Offset(epoch_ms))
                .context("build partition list")?;
        }
        let answer = self
            .consumer
            .offsets_for_times(list, self.timeout)
            .with_context(|| format!("look up offsets for time {epoch_ms}"))?;
        let mut offsets = BTreeMap::new();
        for element in answer.elements() {
            element
                .error()
                .with_context(|| format!("offset for time, {}:{}", element.topic(), element.partition()))?;
            let offset = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            let _ = offsets.insert((element.topic().to_string(), element.partition()), offset);
        }
        Ok(offsets)
    }

    /// Commits the plan's new offsets (OffsetCommit, as a client outside the group), then reads
    /// them back: the command only reports success for offsets the broker returns.
    ///
    /// librdkafka's synchronous commit has no timeout of its own (it waits for a coordinator
    /// as long as it takes), so it runs on a thread and is abandoned after the timeout; the
    /// process exits soon after.
    fn commit(&self, plan: &[PlannedReset]) -> anyhow::Result<()> {
        let mut list = TopicPartitionList::with_capacity(plan.len());
        for row in plan {
            list.add_partition_offset(&row.topic, row.partition, Offset::Offset(row.new))
                .context("build partition list")?;
        }
        let consumer = Arc::clone(&self.consumer);
        let (sender, receiver) = mpsc::channel();
        let _ = std::thread::Builder::new()
            .name("group-commit".to_string())
            .spawn(move || {
                let _ = sender.send(consumer.commit(&list, CommitMode::Sync));
            })
            .context("start commit thread")?;
        match receiver.recv_timeout(self.timeout) {
            Ok(result) => result.context("commit offsets")?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("commit offsets: timed out after {} ms", self.timeout.as_millis())
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("commit offsets: the commit thread ended unanswered"),
        }
        let partitions: Vec<(String, i32)> = plan.iter().map(|row| (row.topic.clone(), row.partition)).collect();
        let committed = self.committed(&partitions).context("read back committed offsets")?;
        for row in plan {
            let now = committed.get(&(row.topic.clone(), row.partition)).copied();
            if now != Some(row.new) {
                bail!(
                    "after the commit {}:{} has committed offset {}, not {}",
                    row.topic,
                    row.partition,
                    or_none(now),
                    row.new
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, parse_error};
    use crate::ClientCommand;

    fn group(args: &[&str]) -> GroupArgs {
        match parse(args) {
            ClientCommand::Group(args) => args,
            other => panic!("expected group, got {other:?}"),
        }
    }

    fn reset(args: &[&str]) -> ResetOffsetsArgs {
        match group(args).command {
            GroupCommand::ResetOffsets(args) => args,
            other => panic!("expected reset-offsets, got {other:?}"),
        }
    }

    #[test]
    fn list_describe_delete_parse() {
        let args = group(&["group", "list", "--state", "-b", "h:1", "--timeout-ms", "500"]);
        assert_eq!(args.connection.bootstrap_server, "h:1");
        assert_eq!(args.timeout_ms, 500);
        assert!(matches!(
            args.command,
            GroupCommand::List {
                state: true,
                format: OutputFormat::Plain
            }
        ));
        let args = group(&["group", "describe", "g", "--format", "json", "-X", "client.id=me"]);
        assert_eq!(args.timeout_ms, ADMIN_TIMEOUT_MS_DEFAULT);
        assert_eq!(
            args.connection.client_config,
            [("client.id".to_string(), "me".to_string())]
        );
        assert!(matches!(
            args.command,
            GroupCommand::Describe { ref group, format: OutputFormat::Json } if group == "g"
        ));
        match group(&["group", "delete", "a", "b"]).command {
            GroupCommand::Delete { groups } => assert_eq!(groups, ["a", "b"]),
            other => panic!("expected delete, got {other:?}"),
        }
        let _ = parse_error(&["group", "delete"]);
        let _ = parse_error(&["group", "describe"]);
        let _ = parse_error(&["group", "list", "--format", "xml"]);
    }

    #[test]
    fn reset_offsets_parse_every_target() {
        let args = reset(&["group", "reset-offsets", "g", "--topic", "t", "--to-earliest"]);
        assert_eq!(args.group, "g");
        assert!(!args.execute && !args.scope.all_topics);
        assert_eq!(
            args.scope.topics,
            [TopicPartitions {
                topic: "t".to_string(),
                partitions: None
            }]
        );
        assert_eq!(args.target.reset_to().unwrap(), ResetTo::Earliest);
        let cases: [(&[&str], ResetTo); 6] = [
            (&["--to-latest"], ResetTo::Latest),
            (&["--to-offset", "7"], ResetTo::Offset(7)),
            (&["--shift-by", "-3"], ResetTo::ShiftBy(-3)),
            (&["--shift-by", "4"], ResetTo::ShiftBy(4)),
            (
                &["--to-datetime", "1700000000000"],
                ResetTo::Datetime {
                    epoch_ms: 1_700_000_000_000,
                },
            ),
            (
                &["--to-datetime", "2023-11-14T22:13:20Z"],
                ResetTo::Datetime {
                    epoch_ms: 1_700_000_000_000,
                },
            ),
        ];
        for (target, expected) in cases {
            let mut all = vec!["group", "reset-offsets", "g", "--all-topics", "--execute"];
            all.extend_from_slice(target);
            let args = reset(&all);
            assert!(args.execute && args.scope.all_topics, "{target:?}");
            assert_eq!(args.target.reset_to().unwrap(), expected, "{target:?}");
        }
        let args = reset(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "a:2,0,2",
            "--topic",
            "b",
            "--to-latest",
        ]);
        assert_eq!(
            args.scope.topics,
            [
                TopicPartitions {
                    topic: "a".to_string(),
                    partitions: Some(vec![0, 2])
                },
                TopicPartitions {
                    topic: "b".to_string(),
                    partitions: None
                }
            ]
        );
    }

    #[test]
    fn reset_offsets_refuses_ambiguous_or_missing_choices() {
        let base = ["group", "reset-offsets", "g"];
        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            parse_error(&all)
        };
        // No target, two targets, no scope, two scopes.
        let _ = with(&["--topic", "t"]);
        let _ = with(&["--topic", "t", "--to-earliest", "--to-latest"]);
        let _ = with(&["--topic", "t", "--to-offset", "1", "--shift-by", "1"]);
        let _ = with(&["--to-earliest"]);
        let _ = with(&["--topic", "t", "--all-topics", "--to-earliest"]);
        // Bad values.
        let _ = with(&["--topic", "t", "--to-offset", "-1"]);
        let _ = with(&["--topic", "t:x", "--to-earliest"]);
        let _ = with(&["--topic", "t:", "--to-earliest"]);
        let _ = with(&["--topic", ":1", "--to-earliest"]);
        let _ = with(&["--topic", "t:-1", "--to-earliest"]);
        let error = with(&["--topic", "t", "--to-datetime", "2023-11-14T22:13:20"]);
        assert!(error.contains("no zone"), "{error}");
    }

    #[test]
    fn new_offsets_are_clamped_to_the_log() {
        let (start, end) = (10, 50);
        let plan = |target, current| new_offset(target, current, start, end, None).unwrap();
        assert_eq!(plan(ResetTo::Earliest, Some(30)), 10);
        assert_eq!(plan(ResetTo::Latest, None), 50);
        assert_eq!(plan(ResetTo::Offset(20), None), 20);
        assert_eq!(plan(ResetTo::Offset(5), None), 10);
        assert_eq!(plan(ResetTo::Offset(500), None), 50);
        assert_eq!(plan(ResetTo::ShiftBy(-5), Some(30)), 25);
        assert_eq!(plan(ResetTo::ShiftBy(-100), Some(30)), 10);
        assert_eq!(plan(ResetTo::ShiftBy(100), Some(30)), 50);
        assert_eq!(plan(ResetTo::ShiftBy(i64::MAX), Some(30)), 50);
        assert_eq!(plan(ResetTo::ShiftBy(i64::MIN), Some(30)), 10);
        let datetime = ResetTo::Datetime { epoch_ms: 0 };
        assert_eq!(new_offset(datetime, None, start, end, Some(42)).unwrap(), 42);
        assert_eq!(
            new_offset(datetime, None, start, end, None).unwrap(),
            50,
            "no record that late"
        );
        assert!(new_offset(ResetTo::ShiftBy(1), None, start, end, None).is_err());
        assert!(new_offset(ResetTo::Earliest, None, 5, 4, None).is_err());
    }

    #[test]
    fn describe_renders_plain_and_json() {
        let description = GroupDescription {
            state: "Stable".to_string(),
            protocol_type: "consumer".to_string(),
            protocol: "range".to_string(),
            members: vec![
                MemberDescription {
                    member_id: "m-1".to_string(),
                    client_id: "app".to_string(),
                    host: "/127.0.0.1".to_string(),
                    partitions: Some(vec![("t".to_string(), 1), ("t".to_string(), 0), ("u".to_string(), 3)]),
                    consumer: None,
                },
                MemberDescription {
                    member_id: "m-2".to_string(),
                    client_id: String::new(),
                    host: "/127.0.0.1".to_string(),
                    partitions: None,
                    consumer: None,
                },
            ],
            consumer: None,
        };
        let offsets = [
            PartitionOffsets {
                topic: "t".to_string(),
                partition: 0,
                committed: Some(3),
                log_end: 5,
                member: Some("m-1".to_string()),
            },
            PartitionOffsets {
                topic: "t".to_string(),
                partition: 1,
                committed: None,
                log_end: 2,
                member: None,
            },
        ];
        assert_eq!(
            describe_plain("g", &description, &offsets),
            "group: g\nstate: Stable\nprotocol-type: consumer\nprotocol: range\nmembers: 2\n\
             \x20 member m-1 client app host /127.0.0.1 partitions t:0,1 u:3\n\
             \x20 member m-2 client - host /127.0.0.1 partitions (unknown)\n\
             offsets: 2\n\
             \x20 topic t partition 0 committed 3 log-end 5 lag 2 member m-1\n\
             \x20 topic t partition 1 committed - log-end 2 lag - member -\n"
        );
        let json = describe_json("g", &description, &offsets);
        assert_eq!(json["offsets"][0]["lag"], 2);
        assert!(json["offsets"][1]["lag"].is_null());
        assert!(json["offsets"][1]["committed"].is_null());
        assert_eq!(json["members"][0]["partitions"][2]["topic"], "u");
        assert!(json["members"][1]["partitions"].is_null());
        let plan = [PlannedReset {
            topic: "t".to_string(),
            partition: 0,
            current: None,
            new: 4,
        }];
        assert_eq!(
            reset_text(&plan, OutputFormat::Plain),
            "topic t partition 0 committed - new 4\n"
        );
        assert_eq!(
            reset_text(&plan, OutputFormat::Json),
            "{\"committed\":null,\"new\":4,\"partition\":0,\"topic\":\"t\"}\n"
        );
    }

    #[test]
    fn consumer_group_describe_renders_epochs_subscriptions_and_partitions() {
        use kafka_protocol::messages::consumer_group_describe_response::{Assignment, Member, TopicPartitions};
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::protocol::StrBytes;
        let text = |s: &str| StrBytes::from_string(s.to_string());
        let assignment = |entries: &[(&str, &[i32])]| {
            let mut out = Assignment::default();
            out.topic_partitions = entries
                .iter()
                .map(|(topic, partitions)| {
                    let mut entry = TopicPartitions::default();
                    entry.topic_name = TopicName(text(topic));
                    entry.partitions = partitions.to_vec();
                    entry
                })
                .collect();
            out
        };
        let mut b = Member::default();
        b.member_id = text("m-b");
        b.client_id = text("app");
        b.client_host = text("/10.0.0.2");
        b.member_epoch = 6;
        b.subscribed_topic_names = vec![TopicName(text("t")), TopicName(text("u"))];
        b.assignment = assignment(&[("u", &[0]), ("t", &[2, 0])]);
        let mut a = Member::default();
        a.member_id = text("m-a");
        a.member_epoch = 5;
        a.subscribed_topic_regex = Some(text("^t.*"));
        a.assignment = assignment(&[("", &[1])]);
        let mut described = DescribedGroup::default();
        described.group_state = text("Reconciling");
        described.group_epoch = 6;
        described.assignment_epoch = 6;
        described.assignor_name = text("uniform");
        described.members = vec![b, a];
        let description = consumer_group_description(described);
        let offsets = [PartitionOffsets {
            topic: "t".to_string(),
            partition: 0,
            committed: Some(1),
            log_end: 4,
            member: Some("m-b".to_string()),
        }];
        assert_eq!(
            describe_plain("g", &description, &offsets),
            "group: g\nstate: Reconciling\nprotocol-type: consumer\nprotocol: -\n\
             group-epoch: 6\nassignment-epoch: 6\nassignor: uniform\nmembers: 2\n\
             \x20 member m-a client - host - member-epoch 5 subscribed - subscribed-regex ^t.* \
             partitions (unknown)\n\
             \x20 member m-b client app host /10.0.0.2 member-epoch 6 subscribed t,u partitions t:0,2 u:0\n\
             offsets: 1\n\
             \x20 topic t partition 0 committed 1 log-end 4 lag 3 member m-b\n"
        );
        let json = describe_json("g", &description, &offsets);
        assert_eq!(json["group_epoch"], 6);
        assert_eq!(json["assignment_epoch"], 6);
        assert_eq!(json["assignor"], "uniform");
        assert_eq!(json["protocol"], "");
        assert_eq!(json["members"][0]["member_epoch"], 5);
        assert_eq!(json["members"][0]["subscribed_topic_regex"], "^t.*");
        assert_eq!(json["members"][0]["subscribed_topics"], serde_json::json!([]));
        assert!(json["members"][0]["partitions"].is_null());
        assert_eq!(json["members"][1]["subscribed_topics"], serde_json::json!(["t", "u"]));
        assert!(json["members"][1]["subscribed_topic_regex"].is_null());
        assert_eq!(
            json["members"][1]["partitions"],
            serde_json::json!([
                {"topic": "u", "partition": 0},
                {"topic": "t", "partition": 2},
                {"topic": "t", "partition": 0}
            ])
        );
        assert_eq!(json["offsets"][0]["member"], "m-b");
    }

    #[test]
    fn classic_descriptions_have_no_kip_848_fields() {
        let description = GroupDescription {
            state: "Empty".to_string(),
            protocol_type: "consumer".to_string(),
            protocol: String::new(),
            members: Vec::new(),
            consumer: None,
        };
        let json = describe_json("g", &description, &[]);
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["group", "members", "offsets", "protocol", "protocol_type", "state"]
        );
    }
}
