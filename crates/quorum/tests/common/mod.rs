//! Shared by the integration tests: a toy state machine and a loopback cluster harness.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;
use std::time::Instant;

use strom_quorum::Quorum;
use strom_quorum::QuorumConfig;
use strom_quorum::StateMachine;

/// Applies commands by appending them (as UTF-8) with their index: order is visible.
#[derive(Debug, Default)]
pub struct Applied {
    pub commands: Vec<(u64, String)>,
    pub undecodable: u64,
}

impl StateMachine for Applied {
    fn apply(&mut self, index: u64, command: &[u8]) {
        match std::str::from_utf8(command) {
            Ok(text) => self.commands.push((index, text.to_string())),
            Err(_) => {
                tracing::warn!(index, "toy state machine: command is not UTF-8, skipped");
                self.undecodable += 1;
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.commands).expect("encodes")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.commands = serde_json::from_slice(snapshot).map_err(|e| e.to_string())?;
        Ok(())
    }
}

pub type Shared = Arc<RwLock<Applied>>;

pub fn texts(sm: &Shared) -> Vec<String> {
    sm.read().unwrap().commands.iter().map(|(_, t)| t.clone()).collect()
}

/// A free loopback port. Port 0 would hand out one from the ephemeral range, which outgoing
/// connections of a parallel test can take before the node binds it; so pick below that range
/// (spread by process id) and check that it binds now.
pub fn free_addr() -> String {
    use std::sync::atomic::AtomicU16;
    use std::sync::atomic::Ordering;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    for _ in 0..1000 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 2_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
    panic!("no free loopback port found");
}

/// Fast timings for loopback tests.
pub fn config(node_id: u64, addr: &str, dir: &Path, voters: &BTreeMap<u64, String>) -> QuorumConfig {
    let mut config = QuorumConfig::new(node_id, "test-cluster", addr, dir, voters.clone());
    config.election_timeout_min = Duration::from_millis(300);
    config.election_timeout_max = Duration::from_millis(600);
    config.heartbeat_interval = Duration::from_millis(50);
    config.rpc_timeout = Duration::from_millis(500);
    config.propose_timeout = Duration::from_secs(5);
    config
}

/// Polls `check` until it is true or `timeout` passes; panics with `what` on timeout.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One node of a test cluster: its config, directory and state machine, running or not.
pub struct TestNode {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    pub sm: Shared,
    pub quorum: Option<Quorum>,
}

impl TestNode {
    pub fn quorum(&self) -> &Quorum {
        self.quorum.as_ref().expect("node is running")
    }
}

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub voters: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, TestNode>,
    pub tweak: fn(&mut QuorumConfig),
}

impl Cluster {
    /// Starts voters `1..=n` on free loopback ports.
    pub async fn start(n: u64, tweak: fn(&mut QuorumConfig)) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let voters: BTreeMap<u64, String> = (1..=n).map(|id| (id, free_addr())).collect();
        let mut cluster = Cluster {
            root,
            voters: voters.clone(),
            nodes: BTreeMap::new(),
            tweak,
        };
        for (&id, addr) in &voters {
            cluster.add_node(id, addr.clone());
        }
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.restart(id).await;
        }
        cluster
    }

    pub fn add_node(&mut self, id: u64, addr: String) {
        let dir = self.root.path().join(format!("node-{id}"));
        self.nodes.insert(
            id,
            TestNode {
                id,
                addr,
                dir,
                sm: Shared::default(),
                quorum: None,
            },
        );
    }

    pub fn config(&self, id: u64) -> QuorumConfig {
        let node = &self.nodes[&id];
        let mut config = config(id, &node.addr, &node.dir, &self.voters);
        (self.tweak)(&mut config);
        config
    }

    /// Starts node `id` from its directory with a fresh (empty) state machine.
    pub async fn restart(&mut self, id: u64) {
        let config = self.config(id);
        let sm = Shared::default();
        let quorum = Quorum::start(config, sm.clone()).await.expect("node starts");
        let node = self.nodes.get_mut(&id).expect("node");
        node.sm = sm;
        node.quorum = Some(quorum);
    }

    pub async fn stop(&mut self, id: u64) {
        let quorum = self.nodes.get_mut(&id).and_then(|n| n.quorum.take()).expect("running");
        quorum.shutdown().await.expect("shutdown");
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[&id]
    }

    pub fn running(&self) -> impl Iterator<Item = &TestNode> {
        self.nodes.values().filter(|n| n.quorum.is_some())
    }

    /// Waits until every running node agrees on one leader; returns it.
    pub async fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<u64>> = self
                .running()
                .map(|n| n.quorum().metrics().borrow().current_leader)
                .collect();
            if let Some(Some(first)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*first))
                    && self.nodes.get(first).is_some_and(|n| n.quorum.is_some())
                {
                    return *first;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running node's state machine holds exactly `expected`.
    pub async fn converged(&self, expected: &[String], timeout: Duration) {
        let what = format!("all running nodes to apply {} commands", expected.len());
        eventually(timeout, &what, || async {
            self.running().all(|n| texts(&n.sm) == expected)
        })
        .await;
    }

    pub async fn shutdown_all(&mut self) {
        let ids: Vec<u64> = self.running().map(|n| n.id).collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}
