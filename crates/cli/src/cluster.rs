//! `strom cluster describe|brokers|quorum|elect-leaders|reassign|decommission`: looking at and
//! changing a cluster through the Kafka APIs Kafka's own tools use (DescribeCluster,
//! DescribeQuorum, Metadata, ElectLeaders, AlterPartitionReassignments,
//! ListPartitionReassignments), so it works against Apache Kafka too. librdkafka exposes none
//! of these, so they go through the small wire client (`wire.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DescribeClusterRequest, DescribeQuorumRequest, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::connection::AdminConnectionArgs;
use crate::wire::Connection;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub connection: AdminConnectionArgs,
    /// Bound on each request, in milliseconds.
    #[arg(long, default_value_t = 30_000, global = true)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, controller, brokers, the metadata quorum, and partitions not fully in sync.
    Describe,
    /// The brokers, one per line: id, address, rack.
    Brokers,
    /// The metadata quorum: leader, epoch, and each voter's and observer's progress.
    Quorum,
    /// Move leadership back to each partition's preferred replica (or, with `--unclean`, elect
    /// any live replica of a partition without a leader).
    ElectLeaders {
        /// `TOPIC` or `TOPIC:PARTITION`, repeatable; every partition when none is given.
        #[arg(long = "partition", value_name = "TOPIC[:PARTITION]")]
        partitions: Vec<String>,
        /// Unclean election: may lose acknowledged records.
        #[arg(long)]
        unclean: bool,
    },
    /// Move a partition's replicas (`--move TOPIC:PARTITION=1,2,3`, repeatable; the first
    /// replica is the preferred leader), cancel a move (`--cancel TOPIC:PARTITION`), or list the
    /// moves in progress (no arguments).
    Reassign {
        #[arg(long = "move", value_name = "TOPIC:PARTITION=BROKERS")]
        moves: Vec<String>,
        #[arg(long = "cancel", value_name = "TOPIC:PARTITION")]
        cancels: Vec<String>,
    },
    /// Add a voter to the metadata quorum, or remove one (KIP-853). A new voter must already
    /// run as a member of the quorum (a broker-only node does).
    Controllers {
        #[command(subcommand)]
        action: ControllersAction,
    },
    /// Move every replica off a broker (to the least loaded other brokers, keeping each
    /// partition's replica count) and wait until it holds none: then it may be stopped.
    Decommission {
        /// The broker to empty.
        #[arg(long)]
        broker: i32,
        /// Only print the moves.
        #[arg(long)]
        dry_run: bool,
        /// How long to wait for the moves, in seconds.
        #[arg(long, default_value_t = 600)]
        wait_s: u64,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ControllersAction {
    /// Make node `--id`, listening for the quorum at `--address`, a voter.
    Add {
        #[arg(long)]
        id: i32,
        /// host:port of the node's controller listener.
        #[arg(long)]
        address: String,
    },
    /// Take voter `--id` out of the quorum.
    Remove {
        #[arg(long)]
        id: i32,
    },
}

pub(crate) fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut connection = Connection::connect_any(&args.connection.bootstrap_server, timeout)?;
    let out = match args.command {
        ClusterCommand::Describe => describe(&mut connection)?,
        ClusterCommand::Brokers => brokers(&mut connection)?,
        ClusterCommand::Quorum => quorum(&mut connection)?,
        ClusterCommand::ElectLeaders { partitions, unclean } => elect(&mut connection, &partitions, unclean, timeout)?,
        ClusterCommand::Reassign { moves, cancels } => reassign(&mut connection, &moves, &cancels, timeout)?,
        ClusterCommand::Controllers { action } => controllers(&mut connection, action, timeout)?,
        ClusterCommand::Decommission {
            broker,
            dry_run,
            wait_s,
        } => decommission(&mut connection, broker, dry_run, Duration::from_secs(wait_s), timeout)?,
    };
    print!("{out}");
    Ok(())
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
}

fn metadata(connection: &mut Connection) -> anyhow::Result<MetadataResponse> {
    let mut request = MetadataRequest::default();
    request.topics = None;
    connection.call(&request, 12).context("Metadata")
}

/// Per partition (topic, index): (leader, replicas, ISR).
type Placement = BTreeMap<(String, i32), (i32, Vec<i32>, Vec<i32>)>;
/// A partition's new replicas (`None`: cancel its reassignment).
type Change = ((String, i32), Option<Vec<i32>>);
/// Reassignments in progress: (replicas, adding, removing) per partition.
type Ongoing = BTreeMap<(String, i32), (Vec<i32>, Vec<i32>, Vec<i32>)>;

fn placement(metadata: &MetadataResponse) -> Placement {
    let mut placement = BTreeMap::new();
    for topic in &metadata.topics {
        let Some(name) = topic.name.as_ref() else { continue };
        for p in &topic.partitions {
            placement.insert(
                (name.to_string(), p.partition_index),
                (
                    p.leader_id.0,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                    p.isr_nodes.iter().map(|b| b.0).collect(),
                ),
            );
        }
    }
    placement
}

fn controllers(connection: &mut Connection, action: ControllersAction, timeout: Duration) -> anyhow::Result<String> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let (code, message, done) = match action {
        ControllersAction::Add { id, address } => {
            let (host, port) = address
                .rsplit_once(':')
                .with_context(|| format!("expected host:port, got `{address}`"))?;
            let port: u16 = port
                .parse()
                .with_context(|| format!("`{address}`: the port must be a number"))?;
            let mut listener = kafka_protocol::messages::add_raft_voter_request::Listener::default();
            listener.name = StrBytes::from_static_str("CONTROLLER");
            listener.host = StrBytes::from_string(host.to_string());
            listener.port = port;
            let mut request = kafka_protocol::messages::AddRaftVoterRequest::default();
            request.timeout_ms = timeout_ms;
            request.voter_id = id;
            request.listeners = vec![listener];
            let response = connection.call(&request, 0).context("AddRaftVoter")?;
            (
                response.error_code,
                response.error_message,
                format!("node {id} is a voter"),
            )
        }
        ControllersAction::Remove { id } => {
            let mut request = kafka_protocol::messages::RemoveRaftVoterRequest::default();
            request.voter_id = id;
            let response = connection.call(&request, 0).context("RemoveRaftVoter")?;
            (
                response.error_code,
                response.error_message,
                format!("node {id} is no longer a voter"),
            )
        }
    };
    if code != 0 {
        bail!("{} {}", error_name(code), message.as_ref().map_or("", |m| m.as_str()));
    }
    Ok(format!("{done}\n"))
}

fn brokers(connection: &mut Connection) -> anyhow::Result<String> {
    let response = connection
        .call(&DescribeClusterRequest::default(), 0)
        .context("DescribeCluster")?;
    if response.error_code != 0 {
        bail!("DescribeCluster: {}", error_name(response.error_code));
    }
    let mut out = String::new();
    for broker in &response.brokers {
        let controller = if broker.broker_id == response.controller_id {
            " (controller)"
        } else {
            ""
        };
        let rack = broker.rack.as_ref().map_or(String::new(), |r| format!(" rack {r}"));
        let _ = writeln!(
            out,
            "{} {}:{}{rack}{controller}",
            broker.broker_id.0, broker.host, broker.port
        );
    }
    Ok(out)
}

fn describe(connection: &mut Connection) -> anyhow::Result<String> {
    let cluster = connection
        .call(&DescribeClusterRequest::default(), 0)
        .context("DescribeCluster")?;
    if cluster.error_code != 0 {
        bail!("DescribeCluster: {}", error_name(cluster.error_code));
    }
    let mut out = String::new();
    let _ = writeln!(out, "cluster id: {}", cluster.cluster_id);
    let _ = writeln!(out, "controller: {}", cluster.controller_id.0);
    let _ = writeln!(out, "brokers: {}", cluster.brokers.len());
    out.push_str(&indent(&brokers(connection)?));
    match quorum(connection) {
        Ok(text) => {
            let _ = writeln!(out, "metadata quorum:");
            out.push_str(&indent(&text));
        }
        Err(e) => {
            let _ = writeln!(out, "metadata quorum: not available ({e:#})");
        }
    }
    let placement = placement(&metadata(connection)?);
    let under: Vec<String> = placement
        .iter()
        .filter(|(_, (leader, replicas, isr))| *leader < 0 || isr.len() < replicas.len())
        .map(|((topic, p), (leader, replicas, isr))| {
            format!("{topic}-{p} leader {leader} replicas {replicas:?} isr {isr:?}")
        })
        .collect();
    let _ = writeln!(
        out,
        "partitions: {}, under-replicated or offline: {}",
        placement.len(),
        under.len()
    );
    for line in under {
        let _ = writeln!(out, "  {line}");
    }
    Ok(out)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn quorum(connection: &mut Connection) -> anyhow::Result<String> {
    let mut partition = PartitionData::default();
    partition.partition_index = 0;
    let mut topic = TopicData::default();
    topic.topic_name = TopicName(StrBytes::from_static_str("__cluster_metadata"));
    topic.partitions = vec![partition];
    let mut request = DescribeQuorumRequest::default();
    request.topics = vec![topic];
    let response = connection.call(&request, 1).context("DescribeQuorum")?;
    if response.error_code != 0 {
        bail!("DescribeQuorum: {}", error_name(response.error_code));
    }
    let p = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("DescribeQuorum: empty answer")?;
    if p.error_code != 0 {
        bail!("DescribeQuorum: {}", error_name(p.error_code));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "leader {} epoch {} high watermark {}",
        p.leader_id.0, p.leader_epoch, p.high_watermark
    );
    for (kind, replicas) in [("voter", &p.current_voters), ("observer", &p.observers)] {
        for r in replicas.iter() {
            let lag = (p.high_watermark - r.log_end_offset).max(0);
            let _ = writeln!(out, "{kind} {} log end {} lag {lag}", r.replica_id.0, r.log_end_offset);
        }
    }
    Ok(out)
}

/// `TOPIC:PARTITION` (or, where `whole_topic` allows, `TOPIC` for every partition: `None`).
fn parse_partition(text: &str, whole_topic: bool) -> anyhow::Result<(String, Option<i32>)> {
    match text.rsplit_once(':') {
        Some((topic, partition)) if !topic.is_empty() => {
            let partition = partition
                .parse()
                .with_context(|| format!("`{text}`: the partition must be a number"))?;
            Ok((topic.to_string(), Some(partition)))
        }
        None if whole_topic && !text.is_empty() => Ok((text.to_string(), None)),
        _ => bail!("expected TOPIC:PARTITION, got `{text}`"),
    }
}

fn elect(connection: &mut Connection, wanted: &[String], unclean: bool, timeout: Duration) -> anyhow::Result<String> {
    let topic_partitions = if wanted.is_empty() {
        None
    } else {
        let placement = placement(&metadata(connection)?);
        let mut by_topic: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for text in wanted {
            let (topic, partition) = parse_partition(text, true)?;
            let partitions: Vec<i32> = match partition {
                Some(p) => vec![p],
                None => placement.keys().filter(|(t, _)| *t == topic).map(|(_, p)| *p).collect(),
            };
            if partitions.is_empty() {
                bail!("topic {topic} has no partitions in the metadata");
            }
            by_topic.entry(topic).or_default().extend(partitions);
        }
        Some(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut entry = TopicPartitions::default();
                    entry.topic = TopicName(StrBytes::from_string(topic));
                    entry.partitions = partitions.into_iter().collect();
                    entry
                })
                .collect(),
        )
    };
    let mut request = ElectLeadersRequest::default();
    request.election_type = i8::from(unclean);
    request.topic_partitions = topic_partitions;
    request.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let response = connection.call(&request, 1).context("ElectLeaders")?;
    if response.error_code != 0 {
        bail!("ElectLeaders: {}", error_name(response.error_code));
    }
    let mut out = String::new();
    let mut elected = 0;
    for topic in &response.replica_election_results {
        for p in &topic.partition_result {
            if p.error_code == 0 {
                elected += 1;
                let _ = writeln!(out, "{}-{}: elected", topic.topic.as_str(), p.partition_id);
            } else {
                let _ = writeln!(
                    out,
                    "{}-{}: {}",
                    topic.topic.as_str(),
                    p.partition_id,
                    error_name(p.error_code)
                );
            }
        }
    }
    let _ = writeln!(out, "{elected} leader(s) elected");
    Ok(out)
}

/// Sends the moves (`Some(replicas)`) and cancellations (`None`); returns one line per
/// partition, and whether all were accepted.
fn alter(connection: &mut Connection, changes: &[Change], timeout: Duration) -> anyhow::Result<(String, bool)> {
    let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for ((topic, partition), replicas) in changes {
        let mut entry = ReassignablePartition::default();
        entry.partition_index = *partition;
        entry.replicas = replicas.as_ref().map(|r| r.iter().map(|id| BrokerId(*id)).collect());
        by_topic.entry(topic).or_default().push(entry);
    }
    let mut request = AlterPartitionReassignmentsRequest::default();
    request.timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    request.topics = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut entry = ReassignableTopic::default();
            entry.name = TopicName(StrBytes::from_string(topic.to_string()));
            entry.partitions = partitions;
            entry
        })
        .collect();
    let response = connection.call(&request, 0).context("AlterPartitionReassignments")?;
    if response.error_code != 0 {
        let message = response.error_message.as_ref().map_or("", |m| m.as_str());
        bail!(
            "AlterPartitionReassignments: {} {message}",
            error_name(response.error_code)
        );
    }
    let mut out = String::new();
    let mut all = true;
    for topic in &response.responses {
        for p in &topic.partitions {
            if p.error_code == 0 {
                let _ = writeln!(out, "{}-{}: accepted", topic.name.as_str(), p.partition_index);
            } else {
                all = false;
                let message = p.error_message.as_ref().map_or("", |m| m.as_str());
                let _ = writeln!(
                    out,
                    "{}-{}: {} {message}",
                    topic.name.as_str(),
                    p.partition_index,
                    error_name(p.error_code)
                );
            }
        }
    }
    Ok((out, all))
}

/// The reassignments in progress: (topic, partition) → (replicas, adding, removing).
fn in_progress(connection: &mut Connection) -> anyhow::Result<Ongoing> {
    let mut request = ListPartitionReassignmentsRequest::default();
    request.timeout_ms = 30_000;
    request.topics = None;
    let response = connection.call(&request, 0).context("ListPartitionReassignments")?;
    if response.error_code != 0 {
        bail!("ListPartitionReassignments: {}", error_name(response.error_code));
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
    Ok(response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    (t.name.to_string(), p.partition_index),
                    (ids(&p.replicas), ids(&p.adding_replicas), ids(&p.removing_replicas)),
                )
            })
        })
        .collect())
}

fn reassign(
    connection: &mut Connection,
    moves: &[String],
    cancels: &[String],
    timeout: Duration,
) -> anyhow::Result<String> {
    if moves.is_empty() && cancels.is_empty() {
        let mut out = String::new();
        let ongoing = in_progress(connection)?;
        for ((topic, partition), (replicas, adding, removing)) in &ongoing {
            let _ = writeln!(
                out,
                "{topic}-{partition} replicas {replicas:?} adding {adding:?} removing {removing:?}"
            );
        }
        let _ = writeln!(out, "{} reassignment(s) in progress", ongoing.len());
        return Ok(out);
    }
    let mut changes = Vec::new();
    for text in moves {
        let (partition, brokers) = text
            .split_once('=')
            .with_context(|| format!("expected TOPIC:PARTITION=BROKERS, got `{text}`"))?;
        let (topic, partition) = parse_partition(partition, false)?;
        let replicas: Vec<i32> = brokers
            .split(',')
            .map(|b| {
                b.trim()
                    .parse()
                    .with_context(|| format!("`{text}`: broker ids are numbers"))
            })
            .collect::<anyhow::Result<_>>()?;
        changes.push(((topic, partition.expect("checked")), Some(replicas)));
    }
    for text in cancels {
        let (topic, partition) = parse_partition(text, false)?;
        changes.push(((topic, partition.expect("checked")), None));
    }
    let (out, all) = alter(connection, &changes, timeout)?;
    if !all {
        bail!("{}", out.trim_end().replace('\n', "; "));
    }
    Ok(out)
}

/// For every partition with a replica on `broker`: the same replicas with `broker` replaced by
/// the live broker holding the fewest replicas among those not already in the set.
fn decommission_moves(placement: &Placement, live: &[i32], broker: i32) -> anyhow::Result<Vec<Change>> {
    let mut load: BTreeMap<i32, usize> = live.iter().map(|id| (*id, 0)).collect();
    for (_, replicas, _) in placement.values() {
        for id in replicas {
            if let Some(count) = load.get_mut(id) {
                *count += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for (key, (_, replicas, _)) in placement {
        if !replicas.contains(&broker) {
            continue;
        }
        let replacement = load
            .iter()
            .filter(|(id, _)| **id != broker && !replicas.contains(id))
            .min_by_key(|(id, count)| (**count, **id))
            .map(|(id, _)| *id)
            .with_context(|| {
                format!(
                    "{}-{}: no live broker left to take its replica from broker {broker}",
                    key.0, key.1
                )
            })?;
        *load.get_mut(&replacement).expect("from the map") += 1;
        let next: Vec<i32> = replicas
            .iter()
            .map(|id| if *id == broker { replacement } else { *id })
            .collect();
        moves.push((key.clone(), Some(next)));
    }
    Ok(moves)
}

fn decommission(
    connection: &mut Connection,
    broker: i32,
    dry_run: bool,
    wait: Duration,
    timeout: Duration,
) -> anyhow::Result<String> {
    let metadata = metadata(connection)?;
    let live: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    let placement = placement(&metadata);
    let moves = decommission_moves(&placement, &live, broker)?;
    let mut out = String::new();
    for ((topic, partition), replicas) in &moves {
        let _ = writeln!(
            out,
            "{topic}-{partition} -> {:?}",
            replicas.as_deref().unwrap_or_default()
        );
    }
    if dry_run {
        let _ = writeln!(out, "{} partition(s) would move off broker {broker}", moves.len());
        return Ok(out);
    }
    if !moves.is_empty() {
        let (accepted, all) = alter(connection, &moves, timeout)?;
        if !all {
            bail!("{}", accepted.trim_end().replace('\n', "; "));
        }
    }
    let deadline = Instant::now() + wait;
    // Bounded by the deadline: one Metadata and one listing per round.
    loop {
        let now = placement_of(connection)?;
        let left = now
            .values()
            .filter(|(_, replicas, _)| replicas.contains(&broker))
            .count();
        if left == 0 && in_progress(connection)?.is_empty() {
            let _ = writeln!(
                out,
                "broker {broker} holds no replica any more ({} moved): it may be stopped",
                moves.len()
            );
            return Ok(out);
        }
        if Instant::now() >= deadline {
            bail!("after {wait:?}, broker {broker} still holds {left} replica(s); the moves go on");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn placement_of(connection: &mut Connection) -> anyhow::Result<Placement> {
    Ok(placement(&metadata(connection)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_with_or_without_an_index() {
        assert_eq!(parse_partition("t:3", false).unwrap(), ("t".to_string(), Some(3)));
        assert_eq!(parse_partition("a:b:1", false).unwrap(), ("a:b".to_string(), Some(1)));
        assert_eq!(parse_partition("t", true).unwrap(), ("t".to_string(), None));
        assert!(parse_partition("t", false).is_err());
        assert!(parse_partition("t:x", false).is_err());
    }

    #[test]
    fn decommission_replaces_the_broker_with_the_least_loaded_others() {
        let mut placement = Placement::new();
        placement.insert(("a".into(), 0), (1, vec![1, 2], vec![1, 2]));
        placement.insert(("a".into(), 1), (2, vec![2, 3], vec![2, 3]));
        placement.insert(("b".into(), 0), (3, vec![3, 1], vec![3, 1]));
        let moves = decommission_moves(&placement, &[1, 2, 3, 4], 1).unwrap();
        assert_eq!(
            moves,
            vec![
                (("a".to_string(), 0), Some(vec![4, 2])),
                (("b".to_string(), 0), Some(vec![3, 4])),
            ]
        );
        // No broker left to take a replica: refused.
        assert!(decommission_moves(&placement, &[1, 2], 2).is_err());
    }
}
