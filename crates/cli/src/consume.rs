//! `strom consume TOPIC`: records to stdout, from an explicit position with `assign()`
//! (no group coordinator needed), or through a consumer group with `--group`.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::connection::{ConnectionArgs, StderrContext};

/// Bound on metadata and offset lookups before consuming starts.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Least time the lookups get when `--timeout-ms` shortens them, so a tiny idle timeout still
/// leaves room to connect to a live broker.
const LOOKUP_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// Longest single wait for a record; bounds how late the idle timeout is noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// With `--group`, printed records are marked consumed (their offsets stored for the next
/// commit) at least this often, besides whenever the consumer is idle and at the end.
const STORE_EVERY_RECORDS: u64 = 1000;

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The value, one per line (the key first, tab-separated, with `--print-key`).
    Plain,
    /// One JSON object per line: topic, partition, offset, timestamp, key, value, headers.
    Json,
}

/// `strom consume TOPIC`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to consume from.
    pub topic: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Start at the log start offset (default: the end, new records only).
    #[arg(long = "from-beginning", conflicts_with_all = ["offset", "timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset in every consumed partition.
    #[arg(long, conflicts_with = "timestamp")]
    pub offset: Option<i64>,
    /// Start at the first record with timestamp >= MS (epoch milliseconds; ListOffsets).
    #[arg(long, value_name = "MS")]
    pub timestamp: Option<i64>,
    /// Consume only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Exit after this many records.
    #[arg(long = "max-messages")]
    pub max_messages: Option<u64>,
    /// Exit after this long without a record, in milliseconds (default: never). Also bounds
    /// the lookups before the first record (to at least 1 s): an unreachable broker fails the
    /// command about as soon.
    #[arg(long = "timeout-ms")]
    pub timeout_ms: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Plain)]
    pub format: OutputFormat,
    /// In plain format, print the key and a tab before the value.
    #[arg(long = "print-key")]
    pub print_key: bool,
    /// Consume as a member of this group with subscribe() and committed offsets.
    #[arg(long, conflicts_with_all = ["offset", "timestamp", "partition"])]
    pub group: Option<String>,
}

pub(crate) fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut defaults = vec![
        ("enable.partition.eof", "false".to_string()),
        ("fetch.max.bytes", "52428800".to_string()),
    ];
    match &args.group {
        Some(group) => {
            defaults.push(("group.id", group.clone()));
            let reset = if args.from_beginning { "earliest" } else { "latest" };
            defaults.push(("auto.offset.reset", reset.to_string()));
            // Offsets are stored by hand, after the records are on stdout (see
            // `flush_and_store`). librdkafka's automatic store would also count records
            // fetched while the consumer closes, which nobody printed, and commit them.
            defaults.push(("enable.auto.offset.store", "false".to_string()));
        }
        None => {
            // librdkafka needs a group.id for assign(); nothing is committed under it.
            defaults.push(("group.id", format!("strom-cli-{}", std::process::id())));
            defaults.push(("enable.auto.commit", "false".to_string()));
            defaults.push(("enable.auto.offset.store", "false".to_string()));
        }
    }
    let consumer: BaseConsumer<StderrContext> = args
        .connection
        .client_config(&defaults)
        .create_with_context(StderrContext::default())
        .context("create consumer")?;

    if args.group.is_some() {
        consumer
            .subscribe(&[&args.topic])
            .with_context(|| format!("subscribe to `{}`", args.topic))?;
    } else {
        let start = if args.from_beginning {
            Start::Beginning
        } else if let Some(offset) = args.offset {
            Start::Offset(offset)
        } else if let Some(ms) = args.timestamp {
            Start::Timestamp(ms)
        } else {
            Start::End
        };
        let assignment = start_positions(&consumer, &args.topic, args.partition, start, lookup_timeout(&args))?;
        consumer
            .assign(&assignment)
            .with_context(|| format!("assign partitions of `{}`", args.topic))?;
    }

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut printed = 0u64;
    // With --group: partition -> offset of the last record printed but not yet stored.
    let mut unstored: BTreeMap<i32, i64> = BTreeMap::new();
    let mut unstored_records = 0u64;
    let in_group = args.group.is_some();
    while args.max_messages.is_none_or(|max| printed < max) {
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(message)) => {
                let written = match args.format {
                    OutputFormat::Plain => write_plain(&mut out, &message, args.print_key),
                    OutputFormat::Json => write_json(&mut out, &message),
                };
                if !keep_writing(written)? {
                    return Ok(());
                }
                printed += 1;
                last_record = Instant::now();
                if in_group {
                    let _ = unstored.insert(message.partition(), message.offset());
                    unstored_records += 1;
                    if unstored_records >= STORE_EVERY_RECORDS {
                        unstored_records = 0;
                        if !flush_and_store(&mut out, &consumer, &args.topic, &mut unstored)? {
                            return Ok(());
                        }
                    }
                }
            }
            Some(Err(error)) => return Err(anyhow!(error)).with_context(|| format!("consume `{}`", args.topic)),
            None => {
                // Idle: show what we have so `strom consume` is usable as a live tail.
                if !flush_and_store(&mut out, &consumer, &args.topic, &mut unstored)? {
                    return Ok(());
                }
                if idle_limit.is_some_and(|limit| last_record.elapsed() >= limit) {
                    break;
                }
            }
        }
    }
    // Dropping the consumer then closes it, which commits the stored offsets (auto-commit).
    if !flush_and_store(&mut out, &consumer, &args.topic, &mut unstored)? {
        return Ok(());
    }
    eprintln!("consumed {printed} message(s)");
    Ok(())
}

/// Bound on the start-up lookups: [`LOOKUP_TIMEOUT`], or less when the user asked to stop
/// after a shorter idle time: an unreachable broker is idleness too.
fn lookup_timeout(args: &ConsumeArgs) -> Duration {
    match args.timeout_ms {
        Some(ms) => Duration::from_millis(ms).clamp(LOOKUP_TIMEOUT_MIN, LOOKUP_TIMEOUT),
        None => LOOKUP_TIMEOUT,
    }
}

/// Flushes stdout, then stores the offsets of the records it held, so the group's next commit
/// covers them: a committed offset never covers a record still in the buffer. `Ok(false)`
/// when stdout was closed by the reader (nothing is stored then).
fn flush_and_store(
    out: &mut impl Write,
    consumer: &BaseConsumer<StderrContext>,
    topic: &str,
    unstored: &mut BTreeMap<i32, i64>,
) -> anyhow::Result<bool> {
    if !keep_writing(out.flush())? {
        return Ok(false);
    }
    for (partition, offset) in std::mem::take(unstored) {
        match consumer.store_offset(topic, partition, offset) {
            Ok(()) => {}
            // The partition was revoked by a rebalance since; its new owner reads it again.
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {}
            Err(error) => {
                return Err(anyhow!(error)).with_context(|| format!("store offset {offset} of {topic}:{partition}"))
            }
        }
    }
    Ok(true)
}

/// `Ok(false)` when stdout was closed by the reader (`| head`): a normal way to stop.
fn keep_writing(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("write stdout"),
    }
}

/// Where to start reading each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

/// The partitions to read (all, or `only`) and their start offsets.
pub(crate) fn start_positions(
    consumer: &BaseConsumer<StderrContext>,
    topic: &str,
    only: Option<i32>,
    start: Start,
    timeout: Duration,
) -> anyhow::Result<TopicPartitionList> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("fetch metadata of `{topic}`"))?;
    let topic_metadata = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic `{topic}` not in metadata response"))?;
    if let Some(code) = topic_metadata.error() {
        bail!("topic `{topic}`: {}", rdkafka::error::RDKafkaErrorCode::from(code));
    }
    let mut partitions: Vec<i32> = topic_metadata.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    if let Some(partition) = only {
        if !partitions.contains(&partition) {
            bail!(
                "topic `{topic}` has no partition {partition} (it has {})",
                partitions.len()
            );
        }
        partitions = vec![partition];
    }
    if partitions.is_empty() {
        bail!("topic `{topic}` has no partitions");
    }
    let offset = match start {
        Start::Beginning => Offset::Beginning,
        Start::End => Offset::End,
        Start::Offset(offset) if offset >= 0 => Offset::Offset(offset),
        Start::Offset(offset) => bail!("offset must be >= 0, got {offset}"),
        Start::Timestamp(ms) => Offset::Offset(ms),
    };
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for &partition in &partitions {
        list.add_partition_offset(topic, partition, offset)
            .context("build partition list")?;
    }
    if let Start::Timestamp(ms) = start {
        // offsets_for_times takes the timestamp in the offset field and returns offsets;
        // partitions with no record that late come back as the end offset.
        list = consumer
            .offsets_for_times(list, timeout)
            .with_context(|| format!("look up offsets for timestamp {ms}"))?;
        for element in list.elements() {
            element
                .error()
                .with_context(|| format!("offset for timestamp, partition {}", element.partition()))?;
        }
    }
    Ok(list)
}

fn write_plain(out: &mut impl Write, message: &BorrowedMessage<'_>, print_key: bool) -> std::io::Result<()> {
    if print_key {
        out.write_all(message.key().unwrap_or_default())?;
        out.write_all(b"\t")?;
    }
    out.write_all(message.payload().unwrap_or_default())?;
    out.write_all(b"\n")
}

fn write_json(out: &mut impl Write, message: &BorrowedMessage<'_>) -> std::io::Result<()> {
    let headers: Vec<serde_json::Value> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    serde_json::json!({
                        "key": h.key,
                        "value": h.value.map(|v| String::from_utf8_lossy(v)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let record = record_json(
        message.topic(),
        message.partition(),
        message.offset(),
        message.timestamp().to_millis(),
        message.key(),
        message.payload(),
        headers,
    );
    serde_json::to_writer(&mut *out, &record)?;
    out.write_all(b"\n")
}

/// One record as JSON; bytes become strings with invalid UTF-8 replaced (U+FFFD).
fn record_json(
    topic: &str,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp_ms,
        "key": key.map(String::from_utf8_lossy),
        "value": value.map(String::from_utf8_lossy),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{parse, parse_error};
    use crate::ClientCommand;

    fn consume(args: &[&str]) -> ConsumeArgs {
        match parse(args) {
            ClientCommand::Consume(args) => args,
            other => panic!("expected consume, got {other:?}"),
        }
    }

    #[test]
    fn parse_consume_flags() {
        let args = consume(&[
            "consume",
            "t",
            "--timestamp",
            "1700000000000",
            "--partition",
            "1",
            "--max-messages",
            "10",
            "--timeout-ms",
            "2000",
            "--format",
            "json",
            "-b",
            "h:1",
        ]);
        assert_eq!(args.timestamp, Some(1_700_000_000_000));
        assert_eq!(args.partition, Some(1));
        assert_eq!(args.max_messages, Some(10));
        assert_eq!(args.timeout_ms, Some(2000));
        assert_eq!(args.format, OutputFormat::Json);
        assert_eq!(args.connection.bootstrap_server, "h:1");
        assert_eq!(lookup_timeout(&args), Duration::from_secs(2));
        let args = consume(&["consume", "t"]);
        assert_eq!(args.format, OutputFormat::Plain);
        assert_eq!(lookup_timeout(&args), LOOKUP_TIMEOUT);
        assert!(!args.from_beginning && args.offset.is_none() && args.group.is_none());
        let args = consume(&["consume", "t", "--timeout-ms", "0"]);
        assert_eq!(lookup_timeout(&args), LOOKUP_TIMEOUT_MIN);
    }

    #[test]
    fn start_positions_are_exclusive() {
        let _ = parse_error(&["consume", "t", "--from-beginning", "--offset", "3"]);
        let _ = parse_error(&["consume", "t", "--offset", "3", "--timestamp", "5"]);
        let _ = parse_error(&["consume", "t", "--group", "g", "--partition", "0"]);
        let _ = parse_error(&["consume", "t", "--format", "xml"]);
        let args = consume(&["consume", "t", "--group", "g", "--from-beginning"]);
        assert_eq!(args.group.as_deref(), Some("g"));
    }

    #[test]
    fn json_record_is_lossy_utf8() {
        let value = record_json(
            "t",
            2,
            7,
            Some(1000),
            None,
            Some(b"ok\xff"),
            vec![serde_json::json!({"key": "h", "value": "v"})],
        );
        assert_eq!(
            value.to_string(),
            r#"{"headers":[{"key":"h","value":"v"}],"key":null,"offset":7,"partition":2,"timestamp":1000,"topic":"t","value":"ok\ufffd"}"#
                .replace("\\ufffd", "\u{fffd}")
        );
    }
}
