//! A real `strom server` process on a free loopback port.
//!
//! The broker's stderr (and stdout) go to `broker.log` in a scratch directory the [`Broker`]
//! owns, next to (not inside) the data directory so the broker never sees a file it did not
//! write. When a test panics while a [`Broker`] is alive, dropping it prints the log's tail,
//! which the test harness shows with the failure.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::wait::try_poll_until;
use crate::wire::WireClient;

/// Set this environment variable to keep a failed test's scratch directory (data and log).
pub const KEEP_SCRATCH_VAR: &str = "TESTKIT_KEEP_SCRATCH";
/// How long a starting broker has to answer ApiVersions.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a broker has to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times a start is tried before giving up; a retry happens when the chosen port was
/// taken between choosing it and the broker binding it.
pub const START_ATTEMPTS_MAX: u32 = 5;
/// How many lines of the broker's log a failure report shows.
pub const LOG_TAIL_LINES: usize = 80;
/// Bound on the bytes of log read for a tail, so a runaway log cannot stall a failing test.
const LOG_TAIL_BYTES_MAX: u64 = 64 * 1024;

/// Configures a broker before its first start.
#[derive(Debug, Clone)]
pub struct BrokerBuilder {
    bin: PathBuf,
    settings: Vec<(String, String)>,
    env: Vec<(String, Option<String>)>,
    data_dir: Option<PathBuf>,
    extra_log_dirs: usize,
}

impl BrokerBuilder {
    /// Adds `--set key=value` (a Kafka broker property name) to the command line.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets an environment variable for the broker process (`Some`), or removes one it would
    /// inherit (`None`). `STROM_*` variables given here reach it; inherited ones never do.
    pub fn env(mut self, key: &str, value: Option<&str>) -> Self {
        self.env.push((key.to_owned(), value.map(str::to_owned)));
        self
    }

    /// Uses `path` as the data directory instead of a fresh one inside the scratch directory;
    /// the caller keeps it (it is not deleted when the broker is dropped).
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// Gives the broker `count` more log directories (`log.dirs` after the data directory),
    /// fresh ones in the scratch directory: see [`Broker::log_dirs`].
    pub fn extra_log_dirs(mut self, count: usize) -> Self {
        self.extra_log_dirs = count;
        self
    }

    /// Starts the broker and waits until it answers ApiVersions. Panics (with the log's tail)
    /// if it does not within [`READY_TIMEOUT`] on any of [`START_ATTEMPTS_MAX`] ports.
    pub fn start(self) -> Broker {
        self.try_start().unwrap_or_else(|report| panic!("{report}"))
    }

    /// Like [`BrokerBuilder::start`], but a broker that will not start is an `Err` with the
    /// attempts' failures and the log's tail: for tests where refusing to start is right.
    pub fn try_start(self) -> Result<Broker, String> {
        let scratch = tempfile::Builder::new()
            .prefix("strom-test-")
            .tempdir()
            .expect("create scratch dir");
        let data_dir = self.data_dir.unwrap_or_else(|| scratch.path().join("data"));
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let log_path = scratch.path().join("broker.log");
        let extra_log_dirs = (1..=self.extra_log_dirs)
            .map(|i| scratch.path().join(format!("logs-{i}")))
            .collect();
        let mut broker = Broker {
            bin: self.bin,
            settings: self.settings,
            env: self.env,
            data_dir,
            extra_log_dirs,
            log_path,
            scratch,
            port: 0,
            child: None,
            starts: 0,
        };
        broker.spawn_until_ready(PortChoice::Fresh)?;
        Ok(broker)
    }
}

/// A running (or stopped, between a stop and a restart) `strom server` process.
///
/// The process is tied to the thread that (re)started it: when that thread ends, the kernel
/// kills the broker (so a killed test run leaves none behind). Start and restart a broker on
/// the thread that owns it; dropping it kills it too.
pub struct Broker {
    bin: PathBuf,
    settings: Vec<(String, String)>,
    env: Vec<(String, Option<String>)>,
    data_dir: PathBuf,
    extra_log_dirs: Vec<PathBuf>,
    log_path: PathBuf,
    /// Deleted on drop, unless a test panicked with [`KEEP_SCRATCH_VAR`] set.
    scratch: TempDir,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PortChoice {
    /// Pick a new free port on each attempt.
    Fresh,
    /// Keep `self.port` (a restart: clients and tests know the address).
    Same,
}

impl Broker {
    /// Starts a broker with default settings.
    pub fn start(bin: &Path) -> Broker {
        Broker::builder(bin).start()
    }

    pub fn builder(bin: &Path) -> BrokerBuilder {
        BrokerBuilder {
            bin: bin.to_owned(),
            settings: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            extra_log_dirs: 0,
        }
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Every log directory (`log.dirs`): the data directory, then the extra ones.
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.data_dir.clone())
            .chain(self.extra_log_dirs.iter().cloned())
            .collect()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process id of the running broker, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive (it has not exited, or has not been reaped).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// The broker process's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.pid().expect("a running broker");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("broker /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    /// Opens a raw-protocol connection to the broker.
    pub fn wire(&self) -> WireClient {
        WireClient::connect(self.addr())
            .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.addr(), self.log_tail()))
    }

    /// Panics unless the process is alive and a new connection gets an ApiVersions answer.
    /// Used after feeding the broker bad input.
    pub fn assert_healthy(&mut self) {
        assert!(
            self.is_running(),
            "broker exited: {:?}\n{}",
            self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()),
            self.log_tail()
        );
        if let Err(e) = probe_api_versions(self.addr()) {
            panic!("broker does not answer ApiVersions: {e:#}\n{}", self.log_tail());
        }
    }

    /// Sends SIGTERM and waits up to [`STOP_TIMEOUT`] for the process to exit.
    /// Panics (after SIGKILL) if it does not, or if no broker runs.
    pub fn sigterm_and_wait(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// Like [`Broker::sigterm_and_wait`] with SIGINT (Ctrl-C).
    pub fn sigint_and_wait(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGINT)
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) -> ExitStatus {
        let pid = self.pid().expect("signal_and_wait: broker not running");
        send_signal(pid, signal);
        let child = self.child.as_mut().expect("child");
        let status = try_poll_until(STOP_TIMEOUT, || child.try_wait().ok().flatten());
        match status {
            Some(status) => {
                self.child = None;
                status
            }
            None => {
                self.sigkill();
                panic!(
                    "broker did not exit within {STOP_TIMEOUT:?} of signal {signal}\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// Pauses the process (SIGSTOP): it keeps its sockets but answers nothing until
    /// [`Broker::sigcont`].
    pub fn sigstop(&self) {
        send_signal(self.pid().expect("sigstop: broker not running"), libc::SIGSTOP);
    }

    /// Resumes a paused process (SIGCONT).
    pub fn sigcont(&self) {
        send_signal(self.pid().expect("sigcont: broker not running"), libc::SIGCONT);
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed by the broker) and reaps it.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL; an error means it already exited, which is fine.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and data directory, first stopping it with
    /// SIGTERM if it still runs.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.sigterm_and_wait();
            assert!(
                status.success(),
                "broker exited with {status} on SIGTERM\n{}",
                self.log_tail()
            );
        }
        if let Err(report) = self.spawn_until_ready(PortChoice::Same) {
            panic!("{report}");
        }
    }

    /// The last [`LOG_TAIL_LINES`] lines the broker wrote, across all its starts.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES_MAX)));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "---- tail of {} ----\n{}\n---- end of broker log ----",
            self.log_path.display(),
            tail.join("\n")
        )
    }

    fn spawn_until_ready(&mut self, ports: PortChoice) -> Result<(), String> {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS_MAX {
            if ports == PortChoice::Fresh {
                self.port = free_port();
            }
            match self.spawn_once() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    failures.push(format!("port {}: {e:#}", self.port));
                    self.sigkill();
                }
            }
        }
        Err(format!(
            "broker did not start after {START_ATTEMPTS_MAX} attempts:\n{}\n{}",
            failures.join("\n"),
            self.log_tail()
        ))
    }

    fn spawn_once(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log_path)?;
        writeln!(log, "==== testkit: start #{} on port {} ====", self.starts, self.port)?;
        let mut command = Command::new(&self.bin);
        command
            .arg("server")
            .arg("--listeners")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(
                self.log_dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        for (key, value) in &self.settings {
            command.arg("--set").arg(format!("{key}={value}"));
        }
        // The broker reads STROM_* variables as settings; only `--set` may configure it here.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STROM_") {
                command.env_remove(key);
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        die_with_this_thread(&mut command);
        self.child = Some(command.spawn()?);

        let addr = self.addr();
        let child = self.child.as_mut().expect("just spawned");
        let mut last_error = String::from("no probe yet");
        let ready = try_poll_until(READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(anyhow::anyhow!("exited with {status} before ready")));
            }
            match probe_api_versions(addr) {
                Ok(()) => Some(Ok(())),
                Err(e) => {
                    last_error = format!("{e:#}");
                    None
                }
            }
        });
        match ready {
            None => anyhow::bail!("not ready within {READY_TIMEOUT:?}: {last_error}"),
            Some(Err(e)) => Err(e),
            // Another test's broker could own this port if ours failed to bind it; ours
            // would have exited then, so check it still runs.
            Some(Ok(())) => match child.try_wait()? {
                None => Ok(()),
                Some(status) => anyhow::bail!("exited with {status} right after answering"),
            },
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
            if std::env::var_os(KEEP_SCRATCH_VAR).is_some() {
                self.scratch.disable_cleanup(true);
                eprintln!("kept broker scratch dir {}", self.scratch.path().display());
            }
        }
        self.sigkill();
    }
}

/// A port that was free a moment ago ([`crate::cluster::free_ports`]).
fn free_port() -> u16 {
    crate::cluster::free_ports(1)[0]
}

/// One short ApiVersions exchange on a new connection.
fn probe_api_versions(addr: SocketAddr) -> anyhow::Result<()> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    let mut client = WireClient::from_stream(stream, Duration::from_secs(5))?;
    let started = Instant::now();
    let response = client.api_versions()?;
    anyhow::ensure!(
        response.error_code == 0,
        "ApiVersions error {} after {:?}",
        response.error_code,
        started.elapsed()
    );
    Ok(())
}

/// Has the kernel SIGKILL the broker when the thread that spawns it ends, so a test process
/// killed from outside (a CI timeout, Ctrl-C) leaves no broker behind. The parent is the
/// spawning *thread*: start a broker on the thread that keeps it (every test here does).
#[allow(unsafe_code)]
fn die_with_this_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to `pid`.
#[allow(unsafe_code)]
fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The pid is our own
    // unreaped child, so it cannot have been recycled for another process.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}
