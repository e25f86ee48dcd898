//! `strom produce TOPIC`: one record per stdin line, flushed at end of input.

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::connection::{parse_key_value, ConnectionArgs, StderrContext};

/// How long a record may wait for its acknowledgement (librdkafka `message.timeout.ms`);
/// shorter than librdkafka's five minutes so an unreachable broker fails the command soon.
const MESSAGE_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// How long a full local queue may block reading more input before it is polled again.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(10);

/// `strom produce TOPIC`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Split each line into key and value at the first SEP; lines without SEP are an error.
    #[arg(long = "key-separator", value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Record header `key=value` added to every record, repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub header: Vec<(String, String)>,
    /// Partition to write to; the key hash (or sticky partitioning) when omitted.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Acknowledgements required: 0, 1 or all (`-1`).
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Compression codec: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// How long to wait for the last acknowledgements at end of input, in milliseconds.
    #[arg(long = "timeout-ms", default_value_t = MESSAGE_TIMEOUT_MS_DEFAULT)]
    pub timeout_ms: u64,
}

/// Counts acknowledgements and keeps the first failure.
#[derive(Debug, Default)]
struct DeliveryCounter {
    printer: StderrContext,
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {
    fn error(&self, error: KafkaError, reason: &str) {
        self.printer.error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.printer.log(level, fac, message);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                let _ = self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                let _ = self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(error.to_string());
                }
            }
        }
    }
}

pub(crate) fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let producer: BaseProducer<DeliveryCounter> = args
        .connection
        .client_config(&[
            ("acks", args.acks.clone()),
            ("compression.type", args.compression.clone()),
            ("message.timeout.ms", args.timeout_ms.to_string()),
            ("linger.ms", "5".to_string()),
        ])
        .create_with_context(DeliveryCounter::default())
        .context("create producer")?;

    let mut sent = 0u64;
    // A bad line stops reading, but what was sent before it is still flushed and counted.
    let input_result = send_lines(&args, &producer, &mut sent);
    let flushed = producer.flush(Duration::from_millis(args.timeout_ms) + Duration::from_secs(5));
    let context = producer.context();
    let acked = context.acked.load(Ordering::Relaxed);
    let failed = context.failed.load(Ordering::Relaxed);
    eprintln!("produced {acked} message(s) to {}", args.topic);
    input_result?;
    if failed > 0 {
        let first = context
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        bail!("{failed} of {sent} message(s) failed, first error: {first}");
    }
    flushed.with_context(|| format!("flush: {} of {sent} message(s) unacknowledged", sent - acked - failed))?;
    Ok(())
}

/// Sends one record per stdin line, counting them in `sent`.
fn send_lines(args: &ProduceArgs, producer: &BaseProducer<DeliveryCounter>, sent: &mut u64) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    let mut line_number = 0u64;
    loop {
        line.clear();
        let read = input.read_until(b'\n', &mut line).context("read stdin")?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        let record_bytes = trim_line_end(&line);
        let (key, value) =
            split_key(record_bytes, args.key_separator.as_deref()).with_context(|| format!("line {line_number}"))?;
        let mut record = BaseRecord::to(&args.topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        if !args.header.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(args.header.len());
            for (key, value) in &args.header {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            record = record.headers(headers);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(QUEUE_FULL_POLL);
                }
                Err((error, _)) => {
                    return Err(anyhow!(error))
                        .with_context(|| format!("produce line {line_number} to `{}`", args.topic))
                }
            }
        }
        *sent += 1;
        producer.poll(Duration::ZERO);
    }
}

/// Drops the line terminator: `\n`, or `\r\n` from Windows-edited files.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits a line into key and value at the first `separator`, or returns it all as value.
fn split_key<'a>(line: &'a [u8], separator: Option<&str>) -> anyhow::Result<(Option<&'a [u8]>, &'a [u8])> {
    let Some(separator) = separator else {
        return Ok((None, line));
    };
    let separator = separator.as_bytes();
    if separator.is_empty() {
        bail!("empty key separator");
    }
    let at = line
        .windows(separator.len())
        .position(|w| w == separator)
        .ok_or_else(|| anyhow!("no key separator `{}` in line", String::from_utf8_lossy(separator)))?;
    Ok((Some(&line[..at]), &line[at + separator.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::parse;
    use crate::ClientCommand;

    #[test]
    fn parse_produce_flags() {
        let ClientCommand::Produce(args) = parse(&[
            "produce",
            "t",
            "--key-separator",
            "::",
            "--header",
            "a=1",
            "--header",
            "b=",
            "--partition",
            "2",
            "--acks",
            "1",
            "--compression",
            "zstd",
            "--config",
            "linger.ms=0",
        ]) else {
            panic!("expected produce");
        };
        assert_eq!(args.topic, "t");
        assert_eq!(args.key_separator.as_deref(), Some("::"));
        assert_eq!(args.header[1], ("b".to_string(), String::new()));
        assert_eq!(args.partition, Some(2));
        assert_eq!((args.acks.as_str(), args.compression.as_str()), ("1", "zstd"));
        assert_eq!(args.connection.config, vec![("linger.ms".to_string(), "0".to_string())]);
        assert_eq!(args.connection.bootstrap_server, "127.0.0.1:9092");
    }

    #[test]
    fn key_split_at_first_separator() {
        let (key, value) = split_key(b"k:v:w", Some(":")).unwrap();
        assert_eq!((key, value), (Some(&b"k"[..]), &b"v:w"[..]));
        let (key, value) = split_key(b"k::v", Some("::")).unwrap();
        assert_eq!((key, value), (Some(&b"k"[..]), &b"v"[..]));
        let (key, value) = split_key(b":v", Some(":")).unwrap();
        assert_eq!((key, value), (Some(&b""[..]), &b"v"[..]));
        assert!(split_key(b"novalue", Some(":")).is_err());
        assert_eq!(split_key(b"a:b", None).unwrap(), (None, &b"a:b"[..]));
    }

    #[test]
    fn line_ends_are_trimmed() {
        assert_eq!(trim_line_end(b"a\r\n"), b"a");
        assert_eq!(trim_line_end(b"a\n"), b"a");
        assert_eq!(trim_line_end(b"a"), b"a");
        assert_eq!(trim_line_end(b"\n"), b"");
    }
}
