//! `strom`: the broker and its client commands in one binary.

mod alloc;
mod dev_cluster;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use strom_server::BrokerConfig;

#[global_allocator]
static ALLOCATOR: alloc::StromAllocator = alloc::StromAllocator;

#[derive(Parser)]
#[command(
    name = "strom",
    version,
    about = "Strom: a Kafka-compatible event streaming platform"
)]
struct Cli {
    /// How log lines are written to stderr: `text` for people (coloured only on a terminal),
    /// `json` for log shippers (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STROM_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start a broker (with no flags: 127.0.0.1:9092, data in ./strom-data).
    Server(ServerArgs),
    /// Start a local cluster of combined nodes on loopback for trying Strom out; prints the
    /// bootstrap servers and stops every node on Ctrl-C.
    DevCluster(dev_cluster::DevClusterArgs),
    #[command(flatten)]
    Client(strom_cli::ClientCommand),
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on, host:port or PLAINTEXT://host:port (Kafka's `listeners`).
    #[arg(long)]
    listeners: Option<String>,
    /// Address clients are told to connect to (Kafka's `advertised.listeners`).
    #[arg(long)]
    advertised_listeners: Option<String>,
    /// Data directory (Kafka's `log.dirs`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Node id (Kafka's `node.id`).
    #[arg(long)]
    node_id: Option<i32>,
    /// This node's roles in a cluster: broker, controller, or both (Kafka's `process.roles`).
    /// Without it the node is standalone: a one-node cluster, its own only voter.
    #[arg(long)]
    process_roles: Option<String>,
    /// Where the metadata quorum and the controller listen, host:port.
    #[arg(long)]
    controller_listener: Option<String>,
    /// The controller quorum's voters, id@host:port,... (Kafka's `controller.quorum.voters`).
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// TOML file of broker properties by Kafka name, e.g. `"log.retention.ms" = 60000`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Any broker property by Kafka name, e.g. `--set num.partitions=3`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// Defaults, then the file, then `STROM_*` variables, then flags: the last word wins.
fn broker_config(args: &ServerArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.apply_toml_file(path)?;
    }
    for name in config.apply_env(std::env::vars())? {
        tracing::warn!("ignoring environment variable {name}: it names no broker property");
    }
    for item in &args.overrides {
        let (key, value) = item
            .split_once('=')
            .with_context(|| format!("--set {item}: expected KEY=VALUE"))?;
        config.set(key.trim(), value.trim())?;
    }
    let flags = [
        ("listeners", args.listeners.clone()),
        ("advertised.listeners", args.advertised_listeners.clone()),
        ("log.dirs", args.data_dir.as_ref().map(|p| p.display().to_string())),
        ("node.id", args.node_id.map(|n| n.to_string())),
        ("process.roles", args.process_roles.clone()),
        ("controller.listener", args.controller_listener.clone()),
        ("controller.quorum.voters", args.controller_quorum_voters.clone()),
    ];
    for (key, value) in flags {
        if let Some(value) = value {
            config.set(key, &value)?;
        }
    }
    config.validate()?;
    Ok(config)
}

fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let config = broker_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(strom_server::run(config, shutdown_signal()))?;
    Ok(())
}

/// Log lines go to stderr, filtered by `STROM_LOG` (default `info`).
///
/// openraft logs an error for every failed attempt to reach a quorum member (several a second
/// while one is down); the controller says it once instead ("node N does not answer the
/// leader"), so openraft is off by default: `STROM_LOG=info,openraft=warn` shows its lines.
/// Colour codes only reach a terminal, and never with `NO_COLOR` set.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STROM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(ansi).init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; use SIGINT to stop");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Server(args) => run_server(args),
        Command::DevCluster(args) => dev_cluster::run(args),
        Command::Client(command) => strom_cli::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strom: {e:#}");
            ExitCode::FAILURE
        }
    }
}
