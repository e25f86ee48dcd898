//! `strom dev-cluster`: a local cluster on loopback for trying Strom out. It starts `--nodes`
//! combined nodes (broker and controller) of this same binary, each with its own ports and
//! data directory, prints the bootstrap servers, and on Ctrl-C (or SIGTERM) stops every node
//! with SIGTERM, so each shuts down under the controller's control.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;

/// How long the nodes have to exit after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many nodes: ports are spaced 10 apart from the base.
const NODES_MAX: u16 = 9;

#[derive(Args)]
pub(crate) struct DevClusterArgs {
    /// Number of nodes (1 to 9).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Node i listens for clients on base + 10 * (i - 1) and for the quorum one port above.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Each node keeps its data in <dir>/node-<i>.
    #[arg(long, default_value = "./strom-dev-cluster")]
    data_dir: PathBuf,
}

struct Node {
    id: u16,
    child: Child,
}

pub(crate) fn run(args: DevClusterArgs) -> anyhow::Result<()> {
    if !(1..=NODES_MAX).contains(&args.nodes) {
        bail!("--nodes must be between 1 and {NODES_MAX}");
    }
    let last = u32::from(args.base_port) + 10 * u32::from(args.nodes - 1) + 1;
    if last > u32::from(u16::MAX) {
        bail!("--base-port {} leaves no room for {} nodes", args.base_port, args.nodes);
    }
    let client_port = |id: u16| args.base_port + 10 * (id - 1);
    let voters = (1..=args.nodes)
        .map(|id| format!("{id}@127.0.0.1:{}", client_port(id) + 1))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().context("locating the strom binary")?;
    let mut nodes = Vec::new();
    for id in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = std::fs::File::create(dir.join("node.log")).context("creating the node's log")?;
        let child = Command::new(&exe)
            .arg("server")
            .args(["--node-id", &id.to_string()])
            .args(["--process-roles", "broker,controller"])
            .args(["--listeners", &format!("127.0.0.1:{}", client_port(id))])
            .args(["--controller-listener", &format!("127.0.0.1:{}", client_port(id) + 1)])
            .args(["--controller-quorum-voters", &voters])
            .arg("--data-dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        nodes.push(Node { id, child });
    }
    let bootstrap = (1..=args.nodes)
        .map(|id| format!("127.0.0.1:{}", client_port(id)))
        .collect::<Vec<_>>()
        .join(",");
    println!("{bootstrap}");
    eprintln!(
        "strom dev-cluster: {} nodes (logs in {}/node-*/node.log); Ctrl-C stops them",
        args.nodes,
        args.data_dir.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    runtime.block_on(crate::shutdown_signal());
    stop(&mut nodes);
    Ok(())
}

fn stop(nodes: &mut [Node]) {
    for node in nodes.iter() {
        // SIGTERM: each node moves its leaderships away before it exits.
        terminate(node.child.id());
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for node in nodes.iter_mut() {
        loop {
            match node.child.try_wait() {
                Ok(Some(status)) => {
                    eprintln!("node {} stopped ({status})", node.id);
                    break;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    eprintln!("node {} did not stop within {STOP_TIMEOUT:?}; killing it", node.id);
                    let _ = node.child.kill();
                    let _ = node.child.wait();
                    break;
                }
            }
        }
    }
}

/// Sends SIGTERM to `pid`, our own unreaped child.
#[allow(unsafe_code)]
fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is a child we
    // have not reaped, so it cannot name another process.
    let _ = unsafe { libc::kill(pid, libc::SIGTERM) };
}
