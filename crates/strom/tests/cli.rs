//! The `strom` binary's client commands (`topic`, `group`, `produce`, `consume`, `bench`) run
//! as child processes against a real broker, the way a user runs them: arguments, stdin,
//! stdout, stderr and exit status. What a command did to the broker is cross-checked with the
//! test kit's rdkafka clients, so a command that prints the right thing but does the wrong one
//! fails. Groups are made by real members (`GroupMember`), and committed offsets are read back
//! by a consumer that has the group's id but never joins.
//!
//! Every child runs under a deadline and is killed (and the test fails, showing what the child
//! printed) if it has not exited by then: a command that hangs fails its test instead of
//! stalling the run. Nothing waits by sleeping a fixed time; conditions are polled.

mod common;

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{create_topic, start, utf8};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use strom_testkit::client::{base_config, CALL_TIMEOUT};
use strom_testkit::wait::try_poll_until;
use strom_testkit::{poll_until, Admin, Broker, Consumed, Consumer, GroupMember, Producer, Rec};

/// How long one CLI invocation may run before it is killed and its test fails.
const CHILD_DEADLINE: Duration = Duration::from_secs(30);
/// The `--timeout-ms` given to commands run against an unreachable broker.
const DEAD_BROKER_TIMEOUT_MS: &str = "1000";
/// How long a command against an unreachable broker may take to give up, given
/// [`DEAD_BROKER_TIMEOUT_MS`]: the timeout plus generous slack for a loaded machine.
const DEAD_BROKER_DEADLINE: Duration = Duration::from_secs(10);
/// The idle timeout given to `strom consume` when a test expects it to stop on its own: long
/// enough that a loaded machine does not leave a partition's first fetch that far behind
/// another's (500 ms once did, with every test suite running).
const IDLE_TIMEOUT_MS: u64 = 2_000;
/// Payload size of `strom bench` records (its default).
const BENCH_RECORD_SIZE: u64 = 100;
/// How long a group member may take to join and receive its assignment, or to leave.
const GROUP_DEADLINE: Duration = Duration::from_secs(20);
/// How long one `strom bench group` run with a handful of members may take.
const BENCH_GROUP_DEADLINE: Duration = Duration::from_secs(120);
/// A fixed record timestamp (2023-11-14T22:13:20Z) for the `--to-datetime` tests, so the
/// test can spell the same instants in RFC 3339; retention is off in those brokers.
const FIXED_BASE_MS: i64 = 1_700_000_000_000;
/// Text that would mean the CLI panicked instead of reporting an error.
const PANIC_MARKERS: [&str; 3] = ["panicked", "stack backtrace", "RUST_BACKTRACE"];

/// A running `strom` process; stdout and stderr are drained on threads so a chatty child never
/// blocks on a full pipe. Dropping it kills the process if it still runs.
struct Cli {
    what: String,
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

/// What a finished `strom` process did.
struct Output {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Cli {
    /// Starts `strom ARGS...`, feeding `stdin` (then end of input) if given.
    fn spawn(args: &[&str], stdin: Option<&[u8]>) -> Cli {
        let mut command = Command::new(strom_testkit::bin!());
        let _ = command
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A panic would print a backtrace, which the error-path tests look for.
            .env("RUST_BACKTRACE", "1");
        // STROM_BOOTSTRAP_SERVER and friends must not redirect a command: only its flags count.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STROM_") {
                let _ = command.env_remove(key);
            }
        }
        let what = format!("strom {}", args.join(" "));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            let input = input.to_vec();
            // A child that stops reading early (a bad line) closes the pipe: not an error here.
            let _ = thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        Cli {
            stdout: Some(drain(child.stdout.take().expect("piped stdout"))),
            stderr: Some(drain(child.stderr.take().expect("piped stderr"))),
            what,
            child: Some(child),
            started: Instant::now(),
        }
    }

    /// Whether the process has exited.
    fn exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("child not yet waited for");
        matches!(child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `deadline` (from the start) for the process to exit; kills it and panics,
    /// showing what it printed, if it does not.
    fn wait(mut self, deadline: Duration) -> Output {
        let mut child = self.child.take().expect("child not yet waited for");
        let remaining = deadline.saturating_sub(self.started.elapsed());
        let status = try_poll_until(remaining, || child.try_wait().ok().flatten());
        let elapsed = self.started.elapsed();
        let killed = status.is_none();
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            child.wait().expect("reap killed child")
        });
        let output = Output {
            what: std::mem::take(&mut self.what),
            status,
            stdout: join_text(self.stdout.take()),
            stderr: join_text(self.stderr.take()),
            elapsed,
        };
        assert!(!killed, "did not exit within {deadline:?}, killed\n{output}");
        output
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn join_text(reader: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = reader
        .map(|r| r.join().expect("pipe reader thread"))
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {} after {:?}\n---- stdout ----\n{}\n---- stderr ----\n{}\n---- end ----",
            self.what, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

impl Output {
    fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }

    fn last_stderr_line(&self) -> &str {
        self.stderr_lines().last().copied().unwrap_or("")
    }

    /// Panics unless the command exited with status 0.
    fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "expected success\n{self}");
        self
    }

    /// Panics unless the command failed cleanly: a non-zero status, a last stderr line that
    /// starts with `prefix` (the binary's `strom: ...` line), and no panic output.
    fn assert_failure(&self, prefix: &str) -> &Self {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "expected a non-zero exit status (not a signal)\n{self}"
        );
        assert!(
            self.last_stderr_line().starts_with(prefix),
            "last stderr line should start with {prefix:?}\n{self}"
        );
        for marker in PANIC_MARKERS {
            assert!(
                !self.stderr.contains(marker),
                "stderr shows a panic ({marker:?})\n{self}"
            );
        }
        self
    }

    /// The last stdout line parsed as JSON (the `--json` summary of `strom bench`).
    fn json_summary(&self) -> serde_json::Value {
        let line = self.stdout_lines().last().copied().unwrap_or("");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("last stdout line is not JSON ({e})\n{self}"))
    }
}

/// Runs `strom ARGS... --bootstrap-server <broker>` to completion under [`CHILD_DEADLINE`].
fn strom(broker: &Broker, args: &[&str]) -> Output {
    strom_with_input(broker, args, None)
}

fn strom_with_input(broker: &Broker, args: &[&str], stdin: Option<&[u8]>) -> Output {
    Cli::spawn(&with_bootstrap(args, &broker.bootstrap()), stdin).wait(CHILD_DEADLINE)
}

fn with_bootstrap<'a>(args: &[&'a str], bootstrap: &'a str) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--bootstrap-server", bootstrap]);
    all
}

/// `127.0.0.1:PORT` where nothing listens: a port that was free a moment ago, released.
fn closed_port_address() -> String {
    format!("127.0.0.1:{}", strom_testkit::cluster::free_ports(1)[0])
}

/// Every record of every partition in `0..partitions`, read to the high watermark.
fn read_all(broker: &Broker, topic: &str, partitions: i32) -> Vec<Consumed> {
    (0..partitions)
        .flat_map(|p| Consumer::new(&broker.bootstrap()).read_to_end(topic, p, Offset::Beginning))
        .collect()
}

/// Sum over `0..partitions` of the high watermarks (every partition's low watermark is 0).
fn records_in(broker: &Broker, topic: &str, partitions: i32) -> i64 {
    let consumer = Consumer::new(&broker.bootstrap());
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .watermarks(topic, p)
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
            assert_eq!(low, 0, "low watermark of {topic}/{p}");
            high
        })
        .sum()
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit i64")
}

fn parse_json_lines(output: &Output) -> Vec<serde_json::Value> {
    output
        .stdout_lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("line {line:?} is not JSON ({e})\n{output}")))
        .collect()
}

/// A topic's full lifecycle through the CLI: create with partitions and configs, list,
/// describe, alter a config (keeping the other overrides), add partitions, delete; each step
/// checked in the CLI's own output and with the test kit's admin client.
#[test]
fn topic_create_list_describe_alter_delete() {
    let broker = start();
    let admin = Admin::new(&broker.bootstrap());

    let created = strom(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=86400000",
            "--config",
            "cleanup.policy=compact",
        ],
    );
    created.assert_success();
    assert_eq!(created.stdout_lines(), ["created topic orders"], "{created}");
    assert_eq!(
        admin.topics().unwrap().get("orders"),
        Some(&3),
        "partitions of the created topic"
    );
    let configs = admin.describe_topic_configs("orders").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("86400000"), "{configs:?}");
    assert_eq!(configs["cleanup.policy"].as_deref(), Some("compact"), "{configs:?}");

    strom(&broker, &["topic", "create", "audit", "--partitions", "1"]).assert_success();
    let listed = strom(&broker, &["topic", "list"]);
    listed.assert_success();
    assert_eq!(
        listed.stdout_lines(),
        ["audit", "orders"],
        "list: every topic, sorted\n{listed}"
    );

    let described = strom(&broker, &["topic", "describe", "orders"]);
    described.assert_success();
    let lines = described.stdout_lines();
    assert_eq!(lines[..2], ["topic: orders", "partitions: 3"], "{described}");
    for partition in 0..3 {
        let expected = format!("  partition {partition} leader 1 replicas [1] isr [1]");
        assert_eq!(lines[2 + partition], expected, "{described}");
    }
    assert_eq!(lines[5], "configs:", "{described}");
    for override_line in [
        "  retention.ms=86400000 (topic override)",
        "  cleanup.policy=compact (topic override)",
    ] {
        assert!(
            lines.contains(&override_line),
            "describe lacks {override_line:?}\n{described}"
        );
    }
    let segment_bytes = lines.iter().find(|l| l.starts_with("  segment.bytes="));
    assert!(
        segment_bytes.is_some_and(|l| !l.ends_with("(topic override)")),
        "describe should show the broker default segment.bytes, not as an override\n{described}"
    );

    let altered = strom(&broker, &["topic", "alter", "orders", "--config", "retention.ms=60000"]);
    altered.assert_success();
    assert_eq!(
        altered.stdout_lines(),
        ["updated 1 config(s) of topic orders"],
        "{altered}"
    );
    let described = strom(&broker, &["topic", "describe", "orders"]);
    described.assert_success();
    let lines = described.stdout_lines();
    assert!(
        lines.contains(&"  retention.ms=60000 (topic override)"),
        "describe after alter should show the new retention.ms\n{described}"
    );
    assert!(
        lines.contains(&"  cleanup.policy=compact (topic override)"),
        "altering retention.ms must keep the other override (AlterConfigs replaces all)\n{described}"
    );
    let configs = admin.describe_topic_configs("orders").unwrap();
    assert_eq!(configs["retention.ms"].as_deref(), Some("60000"), "{configs:?}");
    assert_eq!(configs["cleanup.policy"].as_deref(), Some("compact"), "{configs:?}");

    let grown = strom(&broker, &["topic", "alter", "orders", "--partitions", "5"]);
    grown.assert_success();
    assert_eq!(grown.stdout_lines(), ["topic orders now has 5 partitions"], "{grown}");
    assert_eq!(
        admin.topics().unwrap().get("orders"),
        Some(&5),
        "partitions after alter"
    );

    let deleted = strom(&broker, &["topic", "delete", "orders"]);
    deleted.assert_success();
    assert_eq!(deleted.stdout_lines(), ["deleted topic orders"], "{deleted}");
    let listed = strom(&broker, &["topic", "list"]);
    listed.assert_success();
    assert_eq!(listed.stdout_lines(), ["audit"], "list after delete\n{listed}");
    assert!(
        !admin.topics().unwrap().contains_key("orders"),
        "orders still in metadata"
    );
}

/// Describing a topic that does not exist fails with one `strom: ...` line naming it, and
/// does not create it, although the broker auto-creates topics on metadata requests.
#[test]
fn describing_a_missing_topic_fails_with_one_line_and_creates_nothing() {
    let broker = start();
    let described = strom(&broker, &["topic", "describe", "ghost"]);
    described.assert_failure("strom: describe topic `ghost`: ");
    assert_eq!(described.stderr_lines().len(), 1, "exactly one error line\n{described}");
    assert!(
        described.last_stderr_line().contains("UnknownTopicOrPartition"),
        "the error should say the topic is unknown\n{described}"
    );
    assert!(described.stdout.is_empty(), "nothing on stdout\n{described}");
    let topics = Admin::new(&broker.bootstrap()).topics().unwrap();
    assert!(!topics.contains_key("ghost"), "describe created the topic: {topics:?}");
}

/// Creating a topic that exists fails, unless `--if-not-exists`; an invalid config value
/// fails with the broker's reason and creates nothing.
#[test]
fn topic_create_errors_are_reported() {
    let broker = start();
    create_topic(&broker, "taken", 1);

    let again = strom(&broker, &["topic", "create", "taken"]);
    again.assert_failure("strom: create topic `taken`: topic already exists");
    let tolerated = strom(&broker, &["topic", "create", "taken", "--if-not-exists"]);
    tolerated.assert_success();
    assert_eq!(tolerated.stdout_lines(), ["topic taken already exists"], "{tolerated}");

    let invalid = strom(&broker, &["topic", "create", "bad", "--config", "retention.ms=soon"]);
    invalid.assert_failure("strom: create topic `bad`: ");
    assert!(
        invalid.last_stderr_line().contains("InvalidConfig"),
        "the error should name the broker's reason\n{invalid}"
    );
    let topics = Admin::new(&broker.bootstrap()).topics().unwrap();
    assert!(
        !topics.contains_key("bad"),
        "a rejected create left a topic: {topics:?}"
    );
}

/// `strom produce --key-separator` splits each stdin line at the first separator (a
/// multi-byte one here, with `\r\n` line ends trimmed) and `--header` adds headers to every
/// record; the test kit's consumer sees exactly those keys, values and headers, each key's
/// records in one partition and in input order.
#[test]
fn produce_splits_keys_and_values_and_adds_headers() {
    let broker = start();
    create_topic(&broker, "kv", 3);
    let input = "user-1::login\nuser-2::view::home\nuser-1::logout\r\n::anonymous\nuser-3::\n";
    let produced = strom_with_input(
        &broker,
        &[
            "produce",
            "kv",
            "--key-separator",
            "::",
            "--header",
            "source=cli",
            "--header",
            "empty=",
        ],
        Some(input.as_bytes()),
    );
    produced.assert_success();
    assert_eq!(produced.last_stderr_line(), "produced 5 message(s) to kv", "{produced}");

    let records = read_all(&broker, "kv", 3);
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut partition_of_key: HashMap<String, i32> = HashMap::new();
    for record in &records {
        let key = utf8(&record.key);
        let value = utf8(&record.value);
        assert_eq!(
            record.headers,
            [
                ("source".to_string(), Some(b"cli".to_vec())),
                ("empty".to_string(), Some(Vec::new()))
            ],
            "headers of {key}={value}"
        );
        let partition = *partition_of_key.entry(key.clone()).or_insert(record.partition);
        assert_eq!(partition, record.partition, "records of key {key:?} in two partitions");
        seen.push((key, value));
    }
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        pairs(&[
            ("", "anonymous"),
            ("user-1", "login"),
            ("user-1", "logout"),
            ("user-2", "view::home"),
            ("user-3", "")
        ]),
        "keys and values as split by the CLI"
    );
    let user_1: Vec<&str> = seen
        .iter()
        .filter(|(k, _)| k == "user-1")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(user_1, ["login", "logout"], "one key's records keep input order");
}

/// Without `--key-separator` a line is the whole value (separators included, no key), and
/// `--partition` puts every record in that partition, in input order.
#[test]
fn produce_to_a_chosen_partition_keeps_lines_whole() {
    let broker = start();
    create_topic(&broker, "lines", 3);
    let produced = strom_with_input(
        &broker,
        &["produce", "lines", "--partition", "2"],
        Some(b"first\nkey:value\n\nlast"),
    );
    produced.assert_success();
    assert_eq!(
        produced.last_stderr_line(),
        "produced 4 message(s) to lines",
        "{produced}"
    );
    let consumer = Consumer::new(&broker.bootstrap());
    for partition in [0, 1] {
        assert_eq!(
            consumer.watermarks("lines", partition).unwrap(),
            (0, 0),
            "partition {partition}"
        );
    }
    let records = consumer.read_to_end("lines", 2, Offset::Beginning);
    let values: Vec<String> = records.iter().map(|r| utf8(&r.value)).collect();
    assert_eq!(values, ["first", "key:value", "", "last"], "values in partition 2");
    assert!(
        records.iter().all(|r| r.key.is_none()),
        "no keys without --key-separator: {records:?}"
    );
}

/// A line without the key separator stops `strom produce` with an error naming the line, but
/// only after the lines before it were flushed: they are in the topic and counted; the lines
/// after it are not sent.
#[test]
fn a_line_without_the_separator_fails_after_flushing_the_lines_before_it() {
    let broker = start();
    create_topic(&broker, "strict", 1);
    let produced = strom_with_input(
        &broker,
        &["produce", "strict", "--key-separator", ":"],
        Some(b"a:1\nb:2\nno separator here\nc:3\n"),
    );
    produced.assert_failure("strom: line 3: no key separator `:` in line");
    assert!(
        produced.stderr_lines().contains(&"produced 2 message(s) to strict"),
        "the records before the bad line should be flushed and counted\n{produced}"
    );
    let records = Consumer::new(&broker.bootstrap()).read_to_end("strict", 0, Offset::Beginning);
    let pairs: Vec<(String, String)> = records.iter().map(|r| (utf8(&r.key), utf8(&r.value))).collect();
    assert_eq!(
        pairs,
        [("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())],
        "only the lines before the bad one are in the topic"
    );
}

/// `--from-beginning` reads every partition, `--print-key` prefixes key and tab, and
/// `--timeout-ms` ends the command (status 0) once no record came for that long.
#[test]
fn consume_from_beginning_reads_every_partition_and_stops_when_idle() {
    let broker = start();
    create_topic(&broker, "all", 2);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let _ = producer.send_all_ok(
        "all",
        &[
            Rec::keyed("k0", "p0-a").partition(0),
            Rec::keyed("k1", "p0-b").partition(0),
            Rec::value("p1-a").partition(1),
        ],
    );
    let timeout = IDLE_TIMEOUT_MS.to_string();
    let consumed = strom(
        &broker,
        &[
            "consume",
            "all",
            "--from-beginning",
            "--print-key",
            "--timeout-ms",
            &timeout,
        ],
    );
    consumed.assert_success();
    let mut lines = consumed.stdout_lines();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["\tp1-a", "k0\tp0-a", "k1\tp0-b"],
        "records of both partitions\n{consumed}"
    );
    assert_eq!(consumed.last_stderr_line(), "consumed 3 message(s)", "{consumed}");
    assert!(
        consumed.elapsed >= Duration::from_millis(IDLE_TIMEOUT_MS),
        "exited after {:?}, before the idle timeout of {IDLE_TIMEOUT_MS} ms\n{consumed}",
        consumed.elapsed
    );
}

/// `--offset N` starts every consumed partition at N; with `--partition` only that one.
#[test]
fn consume_from_an_offset_in_one_or_every_partition() {
    let broker = start();
    create_topic(&broker, "offsets", 2);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let mut recs = common::numbered("p0", 4, 0);
    recs.extend(common::numbered("p1", 5, 1));
    let _ = producer.send_all_ok("offsets", &recs);
    let timeout = IDLE_TIMEOUT_MS.to_string();

    let one = strom(
        &broker,
        &[
            "consume",
            "offsets",
            "--partition",
            "1",
            "--offset",
            "2",
            "--timeout-ms",
            &timeout,
        ],
    );
    one.assert_success();
    assert_eq!(
        one.stdout_lines(),
        ["p1-2", "p1-3", "p1-4"],
        "partition 1 from offset 2\n{one}"
    );

    let every = strom(
        &broker,
        &["consume", "offsets", "--offset", "3", "--timeout-ms", &timeout],
    );
    every.assert_success();
    let mut lines = every.stdout_lines();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["p0-3", "p1-3", "p1-4"],
        "every partition from offset 3\n{every}"
    );

    let missing = strom(
        &broker,
        &["consume", "offsets", "--partition", "7", "--timeout-ms", &timeout],
    );
    missing.assert_failure("strom: topic `offsets` has no partition 7 (it has 2)");
}

/// `--max-messages N` prints the first N records and exits with status 0, with no idle
/// timeout to end it otherwise.
#[test]
fn consume_max_messages_exits_after_that_many() {
    let broker = start();
    create_topic(&broker, "many", 1);
    let _ = common::produce_numbered(&broker, "many", "m", 10);
    let consumed = strom(&broker, &["consume", "many", "--from-beginning", "--max-messages", "4"]);
    consumed.assert_success();
    assert_eq!(consumed.stdout_lines(), ["m-0", "m-1", "m-2", "m-3"], "{consumed}");
    assert_eq!(consumed.last_stderr_line(), "consumed 4 message(s)", "{consumed}");
}

/// `--timestamp MS` starts at the first record whose timestamp is at or after MS; a time
/// after every record reads nothing.
#[test]
fn consume_from_a_timestamp() {
    let broker = start();
    create_topic(&broker, "timed", 1);
    let base = now_ms() - 60_000;
    let recs: Vec<Rec> = (0..4)
        .map(|i| Rec::value(format!("t{i}")).partition(0).timestamp(base + i * 1000))
        .collect();
    let _ = Producer::new(&broker.bootstrap(), &[("acks", "all")]).send_all_ok("timed", &recs);
    let timeout = IDLE_TIMEOUT_MS.to_string();
    let from = |ms: i64| {
        let ms = ms.to_string();
        let output = strom(
            &broker,
            &[
                "consume",
                "timed",
                "--timestamp",
                &ms,
                "--format",
                "json",
                "--timeout-ms",
                &timeout,
            ],
        );
        output.assert_success();
        parse_json_lines(&output)
            .iter()
            .map(|r| (r["offset"].as_i64().unwrap(), r["timestamp"].as_i64().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        from(base + 1500),
        [(2, base + 2000), (3, base + 3000)],
        "between two records"
    );
    assert_eq!(
        from(base + 1000),
        [(1, base + 1000), (2, base + 2000), (3, base + 3000)],
        "exactly a record's timestamp"
    );
    assert_eq!(from(base + 10_000), [], "after every record");
}

/// `--format json` prints one object per record with topic, partition, offset, timestamp,
/// key, value and headers; a missing key and a header without a value are `null`.
#[test]
fn consume_json_lines_carry_every_field() {
    let broker = start();
    create_topic(&broker, "js", 2);
    let base = now_ms() - 10_000;
    let recs = [
        Rec::keyed("k", "v")
            .partition(1)
            .timestamp(base)
            .header("h", Some(b"x"))
            .header("nil", None),
        Rec::value("plain").partition(1).timestamp(base + 1),
    ];
    let _ = Producer::new(&broker.bootstrap(), &[("acks", "all")]).send_all_ok("js", &recs);
    let timeout = IDLE_TIMEOUT_MS.to_string();
    let consumed = strom(
        &broker,
        &[
            "consume",
            "js",
            "--from-beginning",
            "--format",
            "json",
            "--timeout-ms",
            &timeout,
        ],
    );
    consumed.assert_success();
    let records = parse_json_lines(&consumed);
    assert_eq!(
        records,
        [
            serde_json::json!({
                "topic": "js", "partition": 1, "offset": 0, "timestamp": base,
                "key": "k", "value": "v",
                "headers": [{"key": "h", "value": "x"}, {"key": "nil", "value": null}],
            }),
            serde_json::json!({
                "topic": "js", "partition": 1, "offset": 1, "timestamp": base + 1,
                "key": null, "value": "plain", "headers": [],
            }),
        ],
        "JSON records\n{consumed}"
    );
}

/// With no start position `strom consume` reads only records produced after it started:
/// records are produced one at a time while it runs, and the first it prints is a new one.
#[test]
fn consume_without_a_start_position_reads_only_new_records() {
    let broker = start();
    create_topic(&broker, "live", 1);
    let _ = common::produce_numbered(&broker, "live", "old", 3);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let bootstrap = broker.bootstrap();
    let mut cli = Cli::spawn(
        &with_bootstrap(&["consume", "live", "--max-messages", "1"], &bootstrap),
        None,
    );
    let mut sent = 0;
    // The consumer starts at the end it sees when it assigns; keep producing until it has
    // picked one up, whenever that is.
    poll_until(Duration::from_secs(20), "strom consume to print a new record", || {
        if cli.exited() {
            return Some(());
        }
        let _ = producer.send_all_ok("live", &[Rec::value(format!("new-{sent}")).partition(0)]);
        sent += 1;
        None
    });
    let consumed = cli.wait(CHILD_DEADLINE);
    consumed.assert_success();
    let lines = consumed.stdout_lines();
    assert_eq!(lines.len(), 1, "--max-messages 1\n{consumed}");
    assert!(
        lines[0].starts_with("new-"),
        "printed a record from before it started\n{consumed}"
    );
}

/// `strom bench produce --json` ends with a JSON summary whose message count is what was
/// asked, and that many records are really in the topic's partitions.
#[test]
fn bench_produce_summary_matches_the_records_in_the_topic() {
    let broker = start();
    let bench = strom(
        &broker,
        &[
            "bench",
            "produce",
            "bp",
            "--messages",
            "2000",
            "--partitions",
            "2",
            "--json",
        ],
    );
    bench.assert_success();
    let summary = bench.json_summary();
    assert_eq!(summary["mode"], "produce", "{bench}");
    assert_eq!(summary["messages"], 2000, "{bench}");
    assert_eq!(summary["errors"], 0, "{bench}");
    assert_eq!(summary["bytes"], 2000 * BENCH_RECORD_SIZE, "{bench}");
    for rate in ["msgs_per_s", "mb_per_s"] {
        assert!(
            summary[rate].as_f64().is_some_and(|r| r > 0.0),
            "{rate} should be positive\n{bench}"
        );
    }
    assert!(summary["latency_ms"]["p50"].is_number(), "send-to-ack latency\n{bench}");
    assert_eq!(
        records_in(&broker, "bp", 2),
        2000,
        "records in the topic after bench produce"
    );
}

/// `strom bench produce --transaction-records` commits every full transaction and the last,
/// shorter one: the summary counts the committed records and transactions with their commit
/// latency, and the partition holds exactly those records plus one commit marker per
/// transaction, every record visible to a read_committed consumer.
#[test]
fn bench_produce_in_transactions_commits_every_record() {
    let broker = start();
    let bench = strom(
        &broker,
        &[
            "bench",
            "produce",
            "bt",
            "--messages",
            "2500",
            "--transaction-records",
            "1000",
            "--json",
        ],
    );
    bench.assert_success();
    let summary = bench.json_summary();
    assert_eq!(summary["mode"], "produce", "{bench}");
    assert_eq!(summary["messages"], 2500, "{bench}");
    assert_eq!(summary["errors"], 0, "{bench}");
    assert_eq!(summary["bytes"], 2500 * BENCH_RECORD_SIZE, "{bench}");
    assert!(
        summary["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "msgs_per_s should be positive\n{bench}"
    );
    let transactions = &summary["transactions"];
    assert_eq!(transactions["records"], 1000, "{bench}");
    assert_eq!(transactions["committed"], 3, "{bench}");
    assert_eq!(transactions["aborted"], 0, "{bench}");
    for latency in ["commit_ms", "transaction_ms"] {
        let (p50, max) = (
            transactions[latency]["p50"].as_f64(),
            transactions[latency]["max"].as_f64(),
        );
        assert!(
            p50.is_some_and(|p50| p50 > 0.0) && max >= p50,
            "{latency}: positive p50, max at least p50\n{bench}"
        );
    }
    assert!(
        transactions["commit_ms"]["max"].as_f64() <= transactions["transaction_ms"]["max"].as_f64(),
        "a commit is part of its transaction\n{bench}"
    );
    // 2500 records and a commit marker after each of the 3 transactions.
    assert_eq!(records_in(&broker, "bt", 1), 2503, "offsets used in the topic");
    let read_committed = Consumer::with(&broker.bootstrap(), &[("isolation.level", "read_committed")]);
    let committed = read_committed.read_to_end("bt", 0, Offset::Beginning);
    assert_eq!(committed.len(), 2500, "records a read_committed consumer sees");
}

/// `strom bench produce --producers 2 --partitions 2 --transaction-records 2` runs two
/// transactional producers, each writing its own partition in two transactions: the summary
/// adds up both producers' records and transactions, and every record is committed exactly
/// once (each partition holds its producer's 4 records and 2 commit markers, and a
/// read_committed consumer sees the 4 records).
#[test]
fn bench_produce_with_several_transactional_producers_commits_every_record_once() {
    let broker = start();
    let bench = strom(
        &broker,
        &[
            "bench",
            "produce",
            "btp",
            "--messages",
            "8",
            "--producers",
            "2",
            "--partitions",
            "2",
            "--transaction-records",
            "2",
            "--json",
        ],
    );
    bench.assert_success();
    let summary = bench.json_summary();
    assert_eq!(summary["producers"], 2, "{bench}");
    assert_eq!(summary["messages"], 8, "{bench}");
    assert_eq!(summary["errors"], 0, "{bench}");
    let transactions = &summary["transactions"];
    assert_eq!(transactions["committed"], 4, "{bench}");
    assert_eq!(transactions["aborted"], 0, "{bench}");
    assert!(
        transactions["commit_ms"]["p50"].as_f64().is_some_and(|p50| p50 > 0.0),
        "merged commit latency\n{bench}"
    );
    let read_committed = Consumer::with(&broker.bootstrap(), &[("isolation.level", "read_committed")]);
    let consumer = Consumer::new(&broker.bootstrap());
    for partition in 0..2 {
        let (_, high) = consumer
            .watermarks("btp", partition)
            .unwrap_or_else(|e| panic!("watermarks of btp/{partition}: {e}"));
        assert_eq!(high, 4 + 2, "partition {partition}: 4 records and 2 commit markers");
        let committed = read_committed.read_to_end("btp", partition, Offset::Beginning);
        assert_eq!(committed.len(), 4, "partition {partition}: read_committed records");
    }
}

/// `strom bench produce --idempotent`, the baseline transactions are compared with, gets its
/// producer id before it starts the clock and writes every record once.
#[test]
fn bench_produce_idempotent_writes_every_record() {
    let broker = start();
    let bench = strom(
        &broker,
        &["bench", "produce", "bi", "--messages", "2500", "--idempotent", "--json"],
    );
    bench.assert_success();
    let summary = bench.json_summary();
    assert_eq!(summary["messages"], 2500, "{bench}");
    assert_eq!(summary["errors"], 0, "{bench}");
    assert!(summary["transactions"].is_null(), "{bench}");
    assert_eq!(records_in(&broker, "bi", 1), 2500, "records in the topic");
}

/// `strom bench consume --prefill N` fills the topic and reads it all back; asking for more
/// records than the topic holds fails after the idle timeout, still printing the summary.
#[test]
fn bench_consume_reads_back_what_it_prefilled() {
    let broker = start();
    let bench = strom(&broker, &["bench", "consume", "bc", "--prefill", "2000", "--json"]);
    bench.assert_success();
    let summary = bench.json_summary();
    assert_eq!(summary["mode"], "consume", "{bench}");
    assert_eq!(summary["messages"], 2000, "{bench}");
    assert_eq!(summary["bytes"], 2000 * BENCH_RECORD_SIZE, "{bench}");
    for rate in ["msgs_per_s", "mb_per_s"] {
        assert!(
            summary[rate].as_f64().is_some_and(|r| r > 0.0),
            "{rate} should be positive\n{bench}"
        );
    }
    assert_eq!(
        records_in(&broker, "bc", 1),
        2000,
        "records in the topic after the prefill"
    );

    let timeout = IDLE_TIMEOUT_MS.to_string();
    let short = strom(
        &broker,
        &[
            "bench",
            "consume",
            "bc",
            "--messages",
            "3000",
            "--timeout-ms",
            &timeout,
            "--json",
        ],
    );
    short.assert_failure("strom: received 2000 of 3000 record(s)");
    let summary = short.json_summary();
    assert_eq!(summary["messages"], 2000, "{short}");
    assert!(
        summary["shortfall"].is_string(),
        "the summary should say why it fell short\n{short}"
    );
}

/// `strom bench e2e` at a low rate for one second receives every record it sent: its count
/// is the topic's high watermark, and at most one second's worth at that rate.
#[test]
fn bench_e2e_receives_every_record_it_sends() {
    let broker = start();
    let bench = strom(
        &broker,
        &["bench", "e2e", "be", "--duration-s", "1", "--rate", "200", "--json"],
    );
    bench.assert_success();
    let summary = bench.json_summary();
    assert_eq!(summary["mode"], "e2e", "{bench}");
    assert_eq!(summary["errors"], 0, "{bench}");
    let messages = summary["messages"]
        .as_i64()
        .unwrap_or_else(|| panic!("messages\n{bench}"));
    // Records are paced at 200/s from t = 0 and none is sent after 1 s: at most 201.
    assert!((1..=201).contains(&messages), "received {messages} records\n{bench}");
    assert_eq!(records_in(&broker, "be", 1), messages, "every record sent was received");
    for rate in ["msgs_per_s", "mb_per_s"] {
        assert!(
            summary[rate].as_f64().is_some_and(|r| r > 0.0),
            "{rate} should be positive\n{bench}"
        );
    }
    assert!(
        summary["latency_ms"]["p50"].is_number(),
        "send-to-receive latency\n{bench}"
    );
}

/// `strom bench group --json`, with each group protocol, on a broker without the initial
/// rebalance delay: every phase reports a positive time within the wait bound, the commit
/// phase's commits of every partition were acknowledged without errors, and the summary
/// describes the group asked for; the prefill is in the topic the bench created.
#[test]
fn bench_group_reports_every_phase_with_both_protocols() {
    let broker = start_for_groups();
    for protocol in ["classic", "consumer"] {
        let topic = format!("bg-{protocol}");
        let args = [
            "bench",
            "group",
            topic.as_str(),
            "--members",
            "3",
            "--partitions",
            "6",
            "--group-protocol",
            protocol,
            "--prefill",
            "100",
            "--commit-rate",
            "20",
            "--duration-s",
            "1",
            "--timeout-ms",
            "30000",
            "--json",
        ];
        let bench = Cli::spawn(&with_bootstrap(&args, &broker.bootstrap()), None).wait(BENCH_GROUP_DEADLINE);
        bench.assert_success();
        let summary = bench.json_summary();
        assert_eq!(summary["mode"], "group", "{bench}");
        assert_eq!(summary["group_protocol"], protocol, "{bench}");
        assert_eq!(summary["members"], 3, "{bench}");
        assert_eq!(summary["partitions"], 6, "{bench}");
        assert_eq!(summary["prefilled"], 100, "{bench}");
        for key in ["first_record_ms", "join_stable_ms", "leave_stable_ms", "leave_close_ms"] {
            assert!(
                summary[key].as_f64().is_some_and(|ms| ms > 0.0 && ms < 30_000.0),
                "{key} should be a positive time within the wait bound\n{bench}"
            );
        }
        let commit = &summary["commit"];
        assert_eq!(commit["partitions"], 6, "{bench}");
        assert_eq!(commit["errors"], 0, "{bench}");
        let commits = commit["commits"].as_u64().unwrap_or(0);
        // Paced at 20/s from t = 0 for 1 s: 20 sent, every one acknowledged.
        assert_eq!((commits, commit["sent"].as_u64()), (20, Some(20)), "{bench}");
        assert!(
            commit["commits_per_s"].as_f64().is_some_and(|r| r > 0.0),
            "commit rate\n{bench}"
        );
        let (p50, p99) = (
            commit["latency_ms"]["p50"].as_f64(),
            commit["latency_ms"]["p99"].as_f64(),
        );
        assert!(
            p50.is_some_and(|p50| p50 > 0.0) && p99 >= p50,
            "commit latency percentiles\n{bench}"
        );
        assert!(
            bench.stderr_lines().contains(&"commit phase: start")
                && bench.stderr_lines().contains(&"commit phase: end"),
            "commit phase bounds on stderr\n{bench}"
        );
        assert_eq!(records_in(&broker, &topic, 6), 100, "the prefill is in {topic}");
    }
}

/// `strom topic list` against a closed port fails within its `--timeout-ms` (plus slack)
/// with a final `strom: list topics: ...` line and no panic.
#[test]
fn topic_list_without_a_broker_fails_with_one_error_line() {
    let address = closed_port_address();
    let args = [
        "topic",
        "list",
        "--timeout-ms",
        DEAD_BROKER_TIMEOUT_MS,
        "--bootstrap-server",
        &address,
    ];
    let output = Cli::spawn(&args, None).wait(DEAD_BROKER_DEADLINE);
    output.assert_failure("strom: list topics: ");
    assert!(output.stdout.is_empty(), "nothing on stdout\n{output}");
}

/// `strom consume` against a closed port fails (not idles out with status 0) within its
/// `--timeout-ms` (plus slack), with a final `strom: ...` line and no panic.
#[test]
fn consume_without_a_broker_fails_with_one_error_line() {
    let address = closed_port_address();
    let args = [
        "consume",
        "events",
        "--from-beginning",
        "--timeout-ms",
        DEAD_BROKER_TIMEOUT_MS,
        "--bootstrap-server",
        &address,
    ];
    let output = Cli::spawn(&args, None).wait(DEAD_BROKER_DEADLINE);
    output.assert_failure("strom: fetch metadata of `events`: ");
    assert!(output.stdout.is_empty(), "nothing on stdout\n{output}");
}

/// `strom produce` against a closed port fails within its `--timeout-ms` (plus slack),
/// counting zero records produced, with a final `strom: ...` line and no panic.
#[test]
fn produce_without_a_broker_fails_with_one_error_line() {
    let address = closed_port_address();
    let args = [
        "produce",
        "events",
        "--timeout-ms",
        DEAD_BROKER_TIMEOUT_MS,
        "--bootstrap-server",
        &address,
    ];
    let output = Cli::spawn(&args, Some(b"a\nb\n")).wait(DEAD_BROKER_DEADLINE);
    output.assert_failure("strom: 2 of 2 message(s) failed");
    assert!(
        output.stderr_lines().contains(&"produced 0 message(s) to events"),
        "{output}"
    );
}

/// A broker for group tests: the first member's join completes at once instead of after
/// Kafka's 3 s initial rebalance delay, and retention never deletes the fixed-timestamp
/// records of the `--to-datetime` tests.
fn start_for_groups() -> Broker {
    Broker::builder(strom_testkit::bin!())
        .set("group.initial.rebalance.delay.ms", "0")
        .set("log.retention.ms", "-1")
        .start()
}

/// Joins `group` as a member subscribed to `topics` with client id `client_id`, and polls until
/// it owns `partitions` partitions.
fn join_group(broker: &Broker, group: &str, topics: &[&str], client_id: &str, partitions: usize) -> GroupMember {
    let member = GroupMember::join(&broker.bootstrap(), group, topics, &[("client.id", client_id)]);
    poll_until(
        GROUP_DEADLINE,
        &format!("{client_id} to own {partitions} partition(s)"),
        || {
            let _ = member.poll(Duration::from_millis(100));
            (member.assignment().len() == partitions).then_some(())
        },
    );
    member
}

/// The committed offsets of `group` for `topic`'s `partitions`, `None` where nothing is
/// committed; read by a consumer with the group's id that never subscribes, so reading does
/// not make the group non-empty (as a `GroupMember` would).
fn committed(broker: &Broker, group: &str, topic: &str, partitions: &[i32]) -> Vec<Option<i64>> {
    let mut config = base_config(&broker.bootstrap());
    let _ = config.set("group.id", group).set("enable.auto.commit", "false");
    let reader: BaseConsumer = config.create().expect("create offset reader");
    let mut list = TopicPartitionList::new();
    for partition in partitions {
        list.add_partition(topic, *partition);
    }
    let answer = reader
        .committed_offsets(list, CALL_TIMEOUT)
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
    partitions
        .iter()
        .map(|p| match answer.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        })
        .collect()
}

/// Polls `strom group list --state` until it shows `group` in `state`.
fn wait_for_group_state(broker: &Broker, group: &str, state: &str) {
    let wanted = format!("{group} {state}");
    poll_until(GROUP_DEADLINE, &format!("group list to show `{wanted}`"), || {
        let listed = strom(broker, &["group", "list", "--state"]);
        listed.assert_success();
        listed.stdout_lines().contains(&wanted.as_str()).then_some(())
    });
}

/// `strom group list`, `describe` and `delete` on a group with one real member: list shows
/// it (with `--state`, Stable); describe shows the member (its id as the broker knows it, its
/// client id and partitions) and per partition the committed offset, log end and lag that
/// match what was produced and committed, including a committed partition of a topic the
/// member does not own; delete refuses while the member is there and succeeds once it left,
/// after which the group and its offsets are gone.
#[test]
fn group_list_describe_and_delete() {
    let broker = start_for_groups();
    create_topic(&broker, "orders", 2);
    create_topic(&broker, "audit", 1);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let mut recs = common::numbered("o0", 5, 0);
    recs.extend(common::numbered("o1", 3, 1));
    let _ = producer.send_all_ok("orders", &recs);
    let _ = producer.send_all_ok("audit", &common::numbered("a", 2, 0));

    let member = join_group(&broker, "billing", &["orders"], "billing-app", 2);
    member.commit_offset("orders", 0, 2).expect("commit orders/0");
    member.commit_offset("audit", 0, 1).expect("commit audit/0");
    let described_by_client = member
        .inner()
        .fetch_group_list(Some("billing"), CALL_TIMEOUT)
        .expect("describe with rdkafka");
    let member_ids: Vec<&str> = described_by_client.groups()[0]
        .members()
        .iter()
        .map(|m| m.id())
        .collect();
    assert_eq!(member_ids.len(), 1, "one member: {member_ids:?}");
    let member_id = member_ids[0].to_string();

    let listed = strom(&broker, &["group", "list"]);
    listed.assert_success();
    assert_eq!(listed.stdout_lines(), ["billing"], "{listed}");
    let listed = strom(&broker, &["group", "list", "--state"]);
    listed.assert_success();
    assert_eq!(listed.stdout_lines(), ["billing Stable"], "{listed}");

    let described = strom(&broker, &["group", "describe", "billing"]);
    described.assert_success();
    let expected = [
        "group: billing".to_string(),
        "state: Stable".to_string(),
        "protocol-type: consumer".to_string(),
        "protocol: range".to_string(),
        "members: 1".to_string(),
        format!("  member {member_id} client billing-app host /127.0.0.1 partitions orders:0,1"),
        "offsets: 3".to_string(),
        "  topic audit partition 0 committed 1 log-end 2 lag 1 member -".to_string(),
        format!("  topic orders partition 0 committed 2 log-end 5 lag 3 member {member_id}"),
        format!("  topic orders partition 1 committed - log-end 3 lag - member {member_id}"),
    ];
    assert_eq!(described.stdout_lines(), expected, "{described}");

    let json = strom(&broker, &["group", "describe", "billing", "--format", "json"]);
    json.assert_success();
    let value = json.json_summary();
    assert_eq!(value["state"], "Stable", "{json}");
    assert_eq!(value["members"][0]["member_id"], member_id.as_str(), "{json}");
    assert_eq!(
        value["members"][0]["partitions"],
        serde_json::json!([{"topic": "orders", "partition": 0}, {"topic": "orders", "partition": 1}]),
        "{json}"
    );
    assert_eq!(
        value["offsets"][1],
        serde_json::json!({"topic": "orders", "partition": 0, "committed": 2, "log_end": 5, "lag": 3, "member": member_id}),
        "{json}"
    );
    assert!(value["offsets"][2]["lag"].is_null(), "{json}");

    let refused = strom(&broker, &["group", "delete", "billing"]);
    refused.assert_failure("strom: delete group `billing`: NonEmptyGroup");
    assert!(refused.stdout.is_empty(), "{refused}");
    assert_eq!(
        committed(&broker, "billing", "orders", &[0]),
        [Some(2)],
        "refused delete kept offsets"
    );

    drop(member);
    wait_for_group_state(&broker, "billing", "Empty");
    let described = strom(&broker, &["group", "describe", "billing"]);
    described.assert_success();
    let lines = described.stdout_lines();
    assert_eq!(lines[1], "state: Empty", "{described}");
    assert_eq!(lines[4], "members: 0", "{described}");
    assert_eq!(
        lines[5..],
        [
            "offsets: 2",
            "  topic audit partition 0 committed 1 log-end 2 lag 1 member -",
            "  topic orders partition 0 committed 2 log-end 5 lag 3 member -",
        ]
        .map(String::from),
        "an empty group keeps its offsets; only partitions with a commit or an owner are shown\n{described}"
    );

    let deleted = strom(&broker, &["group", "delete", "billing"]);
    deleted.assert_success();
    assert_eq!(deleted.stdout_lines(), ["deleted group billing"], "{deleted}");
    let listed = strom(&broker, &["group", "list"]);
    listed.assert_success();
    assert!(listed.stdout.is_empty(), "list after delete\n{listed}");
    assert_eq!(
        committed(&broker, "billing", "orders", &[0, 1]),
        [None, None],
        "delete removed the offsets"
    );
    assert_eq!(committed(&broker, "billing", "audit", &[0]), [None]);
    let missing = strom(&broker, &["group", "describe", "billing"]);
    missing.assert_failure("strom: describe group `billing`: no such group (GroupIdNotFound");
    let again = strom(&broker, &["group", "delete", "billing"]);
    again.assert_failure("strom: delete group `billing`: GroupIdNotFound");
}

/// `strom group reset-offsets`: a dry run prints the plan and changes nothing; `--execute`
/// with each target (earliest, latest, an offset, a shift, a date-time in RFC 3339 and in
/// epoch milliseconds) commits exactly the planned offsets, clamped to the log, for the
/// partitions `--topic TOPIC[:PARTITIONS]` or `--all-topics` chose.
#[test]
fn group_reset_offsets_dry_run_and_every_target() {
    let broker = start_for_groups();
    create_topic(&broker, "r", 2);
    let stamped = |partition: i32, count: i64| -> Vec<Rec> {
        (0..count)
            .map(|i| {
                Rec::value(format!("p{partition}-{i}"))
                    .partition(partition)
                    .timestamp(FIXED_BASE_MS + i * 1000)
            })
            .collect()
    };
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let _ = producer.send_all_ok("r", &stamped(0, 10));
    let _ = producer.send_all_ok("r", &stamped(1, 4));
    let member = join_group(&broker, "resets", &["r"], "reset-app", 2);
    member.commit_offset("r", 0, 5).expect("commit r/0");
    member.commit_offset("r", 1, 2).expect("commit r/1");
    drop(member);
    wait_for_group_state(&broker, "resets", "Empty");

    let dry = strom(
        &broker,
        &["group", "reset-offsets", "resets", "--topic", "r", "--to-earliest"],
    );
    dry.assert_success();
    assert_eq!(
        dry.stdout_lines(),
        [
            "topic r partition 0 committed 5 new 0",
            "topic r partition 1 committed 2 new 0"
        ],
        "{dry}"
    );
    assert_eq!(
        dry.last_stderr_line(),
        "dry run: nothing committed; add --execute to commit these offsets",
        "{dry}"
    );
    assert_eq!(
        committed(&broker, "resets", "r", &[0, 1]),
        [Some(5), Some(2)],
        "a dry run changed offsets"
    );

    // (arguments, offsets of partitions 0 and 1 afterwards, partitions the command touched)
    let steps: [(&[&str], [i64; 2], &[i32]); 10] = [
        (&["--topic", "r", "--to-earliest"], [0, 0], &[0, 1]),
        (&["--topic", "r", "--to-latest"], [10, 4], &[0, 1]),
        (&["--topic", "r:0", "--to-offset", "3"], [3, 4], &[0]),
        (&["--topic", "r:1", "--to-offset", "1"], [3, 1], &[1]),
        (&["--topic", "r:0", "--to-offset", "100"], [10, 1], &[0]),
        (&["--all-topics", "--shift-by", "-2"], [8, 0], &[0, 1]),
        (&["--all-topics", "--shift-by", "3"], [10, 3], &[0, 1]),
        (
            &["--topic", "r", "--to-datetime", "2023-11-14T22:13:22.500Z"],
            [3, 3],
            &[0, 1],
        ),
        // Partition 1 has no record that late: its log end.
        (&["--topic", "r:0,1", "--to-datetime", "1700000005000"], [5, 4], &[0, 1]),
        (
            &["--topic", "r", "--to-datetime", "2023-11-14T23:13:20+01:00"],
            [0, 0],
            &[0, 1],
        ),
    ];
    let mut offsets = [5, 2];
    for (args, after, touched) in steps {
        let mut all = vec!["group", "reset-offsets", "resets"];
        all.extend_from_slice(args);
        all.push("--execute");
        let reset = strom(&broker, &all);
        reset.assert_success();
        let expected: Vec<String> = touched
            .iter()
            .map(|&p| {
                let index = p as usize;
                format!(
                    "topic r partition {p} committed {} new {}",
                    offsets[index], after[index]
                )
            })
            .collect();
        assert_eq!(reset.stdout_lines(), expected, "{reset}");
        assert_eq!(
            reset.last_stderr_line(),
            format!(
                "committed new offsets of {} partition(s) for group resets",
                touched.len()
            ),
            "{reset}"
        );
        assert_eq!(
            committed(&broker, "resets", "r", &[0, 1]),
            after.map(Some),
            "offsets after {args:?}"
        );
        offsets = after;
    }

    let json = strom(
        &broker,
        &[
            "group",
            "reset-offsets",
            "resets",
            "--topic",
            "r:1",
            "--to-latest",
            "--format",
            "json",
        ],
    );
    json.assert_success();
    assert_eq!(
        parse_json_lines(&json),
        [serde_json::json!({"topic": "r", "partition": 1, "committed": 0, "new": 4})],
        "{json}"
    );
    assert_eq!(
        committed(&broker, "resets", "r", &[0, 1]),
        [Some(0), Some(0)],
        "a JSON dry run changed offsets"
    );
}

/// `reset-offsets --execute` is refused while the group has a member, and changes nothing
/// (a dry run still prints the plan, with a note); an unknown partition and a shift with
/// nothing committed are refused with one line naming the problem.
#[test]
fn group_reset_offsets_refuses_an_active_group_and_bad_partitions() {
    let broker = start_for_groups();
    create_topic(&broker, "busy", 1);
    let _ = common::produce_numbered(&broker, "busy", "b", 3);
    let member = join_group(&broker, "active", &["busy"], "busy-app", 1);
    member.commit_offset("busy", 0, 2).expect("commit busy/0");

    let refused = strom(
        &broker,
        &[
            "group",
            "reset-offsets",
            "active",
            "--topic",
            "busy",
            "--to-earliest",
            "--execute",
        ],
    );
    refused.assert_failure("strom: reset offsets of group `active`: the group is Stable with 1 member(s)");
    assert!(refused.stdout.is_empty(), "{refused}");
    assert_eq!(
        member.committed("busy", &[0]).unwrap(),
        [Some(2)],
        "a refused reset changed offsets"
    );

    let dry = strom(
        &broker,
        &["group", "reset-offsets", "active", "--topic", "busy", "--to-earliest"],
    );
    dry.assert_success();
    assert_eq!(
        dry.stdout_lines(),
        ["topic busy partition 0 committed 2 new 0"],
        "{dry}"
    );
    assert!(
        dry.stderr_lines()
            .contains(&"note: the group is Stable with 1 member(s); --execute will be refused until it has none"),
        "{dry}"
    );
    assert_eq!(
        member.committed("busy", &[0]).unwrap(),
        [Some(2)],
        "a dry run changed offsets"
    );
    drop(member);

    let missing = strom(
        &broker,
        &["group", "reset-offsets", "fresh", "--topic", "busy:5", "--to-earliest"],
    );
    missing.assert_failure("strom: reset offsets of group `fresh`: topic `busy` has no partition 5 (it has 1)");
    let unshiftable = strom(
        &broker,
        &[
            "group",
            "reset-offsets",
            "fresh",
            "--topic",
            "busy",
            "--shift-by",
            "1",
            "--execute",
        ],
    );
    unshiftable.assert_failure("strom: reset offsets of group `fresh`: busy:0: no committed offset to shift");
    assert_eq!(committed(&broker, "fresh", "busy", &[0]), [None]);
}

/// A KIP-848 group (`group.protocol=consumer`), which DescribeGroups calls Dead: `strom group
/// describe` shows it as ConsumerGroupDescribe does (state, epochs, assignor, both members with
/// their ids, member epochs, subscriptions and partitions, exactly as the broker reports them)
/// with the committed offsets and lag; `list --state` shows its live state; `reset-offsets
/// --execute` is refused while it has members and goes through once they left (Empty).
#[test]
fn group_commands_see_a_kip_848_group() {
    let broker = start_for_groups();
    let bootstrap = broker.bootstrap();
    create_topic(&broker, "events", 4);
    let producer = Producer::new(&bootstrap, &[("acks", "all")]);
    let log_ends: [i64; 4] = [5, 3, 2, 1];
    for (partition, count) in log_ends.iter().enumerate() {
        let partition = i32::try_from(partition).expect("partition");
        let count = usize::try_from(*count).expect("count");
        let _ = producer.send_all_ok("events", &common::numbered("e", count, partition));
    }
    let join = |client_id: &str| {
        GroupMember::join(
            &bootstrap,
            "modern",
            &["events"],
            &[("group.protocol", "consumer"), ("client.id", client_id)],
        )
    };
    let (a, b) = (join("modern-a"), join("modern-b"));
    // Both members own partitions, the broker's view is Stable with every member at the group
    // epoch, and the members' own assignments match it.
    let described = poll_until(GROUP_DEADLINE, "a stable two-member KIP-848 group", || {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        let (owned_a, owned_b) = (a.assignment(), b.assignment());
        if owned_a.is_empty() || owned_b.is_empty() || owned_a.len() + owned_b.len() != 4 {
            return None;
        }
        let group = consumer_group_describe(&broker, "modern");
        let settled = group.group_state.as_str() == "Stable"
            && group.members.len() == 2
            && group.members.iter().all(|m| m.member_epoch == group.group_epoch);
        settled.then_some(group)
    });
    let first = |member: &GroupMember| member.assignment().into_iter().next().expect("a partition");
    let (committed_a, committed_b) = (first(&a), first(&b));
    a.commit_offset("events", committed_a.1, 1).expect("commit by a");
    b.commit_offset("events", committed_b.1, 0).expect("commit by b");

    let mut members: Vec<_> = described.members.iter().collect();
    members.sort_by(|x, y| x.member_id.as_str().cmp(y.member_id.as_str()));
    let mut owner = HashMap::new();
    let mut member_lines = Vec::new();
    for member in &members {
        let mut partitions: Vec<i32> = member
            .assignment
            .topic_partitions
            .iter()
            .inspect(|entry| assert_eq!(entry.topic_name.as_str(), "events"))
            .flat_map(|entry| entry.partitions.iter().copied())
            .collect();
        partitions.sort_unstable();
        for partition in &partitions {
            let _ = owner.insert(*partition, member.member_id.to_string());
        }
        let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
        member_lines.push(format!(
            "  member {} client {} host {} member-epoch {} subscribed events partitions events:{}",
            member.member_id.as_str(),
            member.client_id.as_str(),
            member.client_host.as_str(),
            member.member_epoch,
            list.join(",")
        ));
    }
    assert_eq!(owner.len(), 4, "every partition assigned: {owner:?}");
    let mut expected = vec![
        "group: modern".to_string(),
        "state: Stable".to_string(),
        "protocol-type: consumer".to_string(),
        "protocol: -".to_string(),
        format!("group-epoch: {}", described.group_epoch),
        format!("assignment-epoch: {}", described.assignment_epoch),
        format!("assignor: {}", described.assignor_name.as_str()),
        "members: 2".to_string(),
    ];
    expected.extend(member_lines);
    expected.push("offsets: 4".to_string());
    for (partition, log_end) in (0..4).zip(log_ends) {
        let committed = if partition == committed_a.1 {
            Some(1)
        } else if partition == committed_b.1 {
            Some(0)
        } else {
            None
        };
        let text = |value: Option<i64>| value.map_or_else(|| "-".to_string(), |v| v.to_string());
        expected.push(format!(
            "  topic events partition {partition} committed {} log-end {log_end} lag {} member {}",
            text(committed),
            text(committed.map(|c| log_end - c)),
            owner[&partition]
        ));
    }
    let shown = strom(&broker, &["group", "describe", "modern"]);
    shown.assert_success();
    assert_eq!(shown.stdout_lines(), expected, "{shown}");

    let json = strom(&broker, &["group", "describe", "modern", "--format", "json"]);
    json.assert_success();
    let value = json.json_summary();
    assert_eq!(value["state"], "Stable", "{json}");
    assert_eq!(value["group_epoch"], described.group_epoch, "{json}");
    assert_eq!(value["assignment_epoch"], described.assignment_epoch, "{json}");
    assert_eq!(value["assignor"], described.assignor_name.as_str(), "{json}");
    for (index, member) in members.iter().enumerate() {
        let shown = &value["members"][index];
        assert_eq!(shown["member_id"], member.member_id.as_str(), "{json}");
        assert_eq!(shown["member_epoch"], member.member_epoch, "{json}");
        assert_eq!(shown["subscribed_topics"], serde_json::json!(["events"]), "{json}");
        assert!(shown["subscribed_topic_regex"].is_null(), "{json}");
    }
    assert_eq!(value["offsets"][committed_a.1 as usize]["committed"], 1, "{json}");

    let listed = strom(&broker, &["group", "list", "--state"]);
    listed.assert_success();
    assert_eq!(listed.stdout_lines(), ["modern Stable"], "{listed}");

    let reset = [
        "group",
        "reset-offsets",
        "modern",
        "--topic",
        "events",
        "--to-earliest",
        "--execute",
    ];
    let refused = strom(&broker, &reset);
    refused.assert_failure("strom: reset offsets of group `modern`: the group is Stable with 2 member(s)");
    assert_eq!(
        committed(&broker, "modern", "events", &[committed_a.1, committed_b.1]),
        [Some(1), Some(0)],
        "a refused reset changed offsets"
    );

    drop((a, b));
    wait_for_group_state(&broker, "modern", "Empty");
    let emptied = strom(&broker, &["group", "describe", "modern"]);
    emptied.assert_success();
    let lines = emptied.stdout_lines();
    assert_eq!(lines[1], "state: Empty", "{emptied}");
    assert_eq!(lines[2], "protocol-type: consumer", "{emptied}");
    assert!(lines[4].starts_with("group-epoch: "), "{emptied}");
    assert_eq!(lines[7], "members: 0", "{emptied}");
    let done = strom(&broker, &reset);
    done.assert_success();
    assert_eq!(
        committed(&broker, "modern", "events", &[0, 1, 2, 3]),
        [Some(0); 4],
        "reset of the empty KIP-848 group"
    );
}

/// ConsumerGroupDescribe v0 of `group`, straight from the broker.
fn consumer_group_describe(
    broker: &Broker,
    group: &'static str,
) -> kafka_protocol::messages::consumer_group_describe_response::DescribedGroup {
    let mut request = kafka_protocol::messages::ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![kafka_protocol::messages::GroupId(
        kafka_protocol::protocol::StrBytes::from_static_str(group),
    )];
    let mut response = broker.wire().call(&request, 0).expect("ConsumerGroupDescribe");
    assert_eq!(response.groups.len(), 1, "{response:?}");
    let described = response.groups.remove(0);
    assert_eq!(described.error_code, 0, "{described:?}");
    described
}

/// `strom consume --group` commits what it printed and no more, and the next run with the
/// same group resumes there: a first run stopped by `--max-messages` commits exactly the
/// records it printed per partition (not the ones librdkafka fetched meanwhile), a second
/// run prints exactly the rest, and after new records are produced a third prints only them.
#[test]
fn consume_with_a_group_resumes_from_committed_offsets() {
    let broker = start_for_groups();
    create_topic(&broker, "resume", 2);
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let mut recs = common::numbered("p0", 3, 0);
    recs.extend(common::numbered("p1", 2, 1));
    let _ = producer.send_all_ok("resume", &recs);
    let run = |count: usize| -> Vec<String> {
        let count = count.to_string();
        let output = strom(
            &broker,
            &[
                "consume",
                "resume",
                "--group",
                "readers",
                "--from-beginning",
                "--max-messages",
                &count,
            ],
        );
        output.assert_success();
        let mut lines: Vec<String> = output.stdout_lines().iter().map(|l| l.to_string()).collect();
        lines.sort();
        lines
    };
    let printed_in = |lines: &[String], partition: i32| {
        let prefix = format!("p{partition}-");
        i64::try_from(lines.iter().filter(|l| l.starts_with(&prefix)).count()).unwrap()
    };

    let first = run(3);
    assert_eq!(first.len(), 3, "{first:?}");
    let expected: Vec<Option<i64>> = [0, 1]
        .iter()
        .map(|&p| Some(printed_in(&first, p)).filter(|&n| n > 0))
        .collect();
    assert_eq!(
        committed(&broker, "readers", "resume", &[0, 1]),
        expected,
        "committed offsets after printing {first:?}"
    );

    let second = run(2);
    let mut both: Vec<String> = first.iter().chain(&second).cloned().collect();
    both.sort();
    assert_eq!(
        both,
        ["p0-0", "p0-1", "p0-2", "p1-0", "p1-1"],
        "the second run prints exactly what the first did not"
    );
    assert_eq!(committed(&broker, "readers", "resume", &[0, 1]), [Some(3), Some(2)]);

    let mut new = common::numbered("n0", 2, 0);
    new.extend(common::numbered("n1", 1, 1));
    let _ = producer.send_all_ok("resume", &new);
    assert_eq!(run(3), ["n0-0", "n0-1", "n1-0"], "only the new records");
    assert_eq!(committed(&broker, "readers", "resume", &[0, 1]), [Some(5), Some(3)]);
}

/// `strom group` against a closed port fails within its `--timeout-ms` (plus slack) with one
/// `strom: ...` line naming the subcommand, and no panic.
#[test]
fn group_commands_without_a_broker_fail_with_one_error_line() {
    let address = closed_port_address();
    let cases: [(&[&str], &str); 3] = [
        (&["list"], "strom: list groups: "),
        (&["describe", "g"], "strom: describe group `g`: "),
        (
            &["reset-offsets", "g", "--topic", "t", "--to-earliest"],
            "strom: reset offsets of group `g`: ",
        ),
    ];
    for (command, prefix) in cases {
        let mut args = vec!["group"];
        args.extend_from_slice(command);
        args.extend(["--timeout-ms", DEAD_BROKER_TIMEOUT_MS, "--bootstrap-server", &address]);
        let output = Cli::spawn(&args, None).wait(DEAD_BROKER_DEADLINE);
        output.assert_failure(prefix);
        assert!(output.stdout.is_empty(), "nothing on stdout\n{output}");
    }
}
