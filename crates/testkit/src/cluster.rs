//! A cluster of `strom server` processes on loopback: every node a broker and a controller
//! voter (`process.roles=broker,controller`), each with its own client port, controller port
//! and data directory.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use crate::broker::{Broker, BrokerBuilder};
use crate::wait::try_poll_until;

/// A running cluster; node `i` (from 1) is `nodes[i - 1]`.
pub struct Cluster {
    pub nodes: Vec<Broker>,
    pub controller_ports: Vec<u16>,
}

/// One node's Metadata answer for every topic, if it answers.
pub fn metadata(node: &Broker) -> Option<MetadataResponse> {
    let mut wire = crate::wire::WireClient::connect(node.addr()).ok()?;
    let mut request = MetadataRequest::default();
    request.topics = None;
    wire.call(&request, 12).ok()
}

/// Where [`free_ports`] looks: below the kernel's ephemeral range (32768 and up), which
/// connections and port-0 listeners draw from (a standalone node's quorum listener among
/// them), so a port chosen here stays free until the broker binds it. The Python suite's
/// clusters use 20000-30000.
const PORT_RANGE: std::ops::Range<u16> = 10_000..20_000;
/// Candidates tried before giving up.
const PORT_ATTEMPTS_MAX: usize = 10_000;

/// Ports free a moment ago, all distinct, from [`PORT_RANGE`].
pub fn free_ports(count: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, RandomState};
    // Hold them all while choosing, so none is picked twice.
    let mut listeners: Vec<TcpListener> = Vec::with_capacity(count);
    let random = RandomState::new();
    for attempt in 0..PORT_ATTEMPTS_MAX {
        if listeners.len() == count {
            break;
        }
        let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
        let port = PORT_RANGE.start + (random.hash_one(attempt) % span) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
        }
    }
    assert_eq!(listeners.len(), count, "no {count} free ports in {PORT_RANGE:?}");
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl Cluster {
    /// The voters string for these controller ports.
    pub fn voters(controller_ports: &[u16]) -> String {
        controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A builder for node `id` of a cluster with these controller ports.
    pub fn node_builder(bin: &Path, id: usize, controller_ports: &[u16]) -> BrokerBuilder {
        Broker::builder(bin)
            .set("node.id", &id.to_string())
            .set("process.roles", "broker,controller")
            .set(
                "controller.listener",
                &format!("127.0.0.1:{}", controller_ports[id - 1]),
            )
            .set("controller.quorum.voters", &Cluster::voters(controller_ports))
    }

    /// Starts `size` nodes with `settings` (Kafka property names) on each, and waits until every
    /// one is registered and unfenced.
    pub fn start(bin: &Path, size: usize, settings: &[(&str, &str)]) -> Cluster {
        Cluster::start_each(bin, size, |_| {
            settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        })
    }

    /// As [`Cluster::start`], with each node's settings from `settings(node id)` (a rack per
    /// node, say).
    pub fn start_each(bin: &Path, size: usize, settings: impl Fn(usize) -> Vec<(String, String)>) -> Cluster {
        let controller_ports = free_ports(size);
        let nodes = (1..=size)
            .map(|id| {
                let mut builder = Cluster::node_builder(bin, id, &controller_ports);
                for (key, value) in settings(id) {
                    builder = builder.set(&key, &value);
                }
                builder.start()
            })
            .collect();
        let cluster = Cluster {
            nodes,
            controller_ports,
        };
        cluster.wait_for_live_brokers(size, Duration::from_secs(30));
        cluster
    }

    pub fn node(&mut self, id: usize) -> &mut Broker {
        &mut self.nodes[id - 1]
    }

    /// Every running node's client address, for `bootstrap.servers`.
    pub fn bootstrap(&mut self) -> String {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then(|| n.bootstrap()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until some running node's Metadata lists `count` live brokers; panics with every
    /// node's log tail if it does not within `timeout`.
    pub fn wait_for_live_brokers(&self, count: usize, timeout: Duration) {
        let seen = try_poll_until(timeout, || {
            self.nodes.iter().find_map(|node| {
                let metadata = metadata(node)?;
                (metadata.brokers.len() == count).then_some(())
            })
        });
        if seen.is_none() {
            let tails: Vec<String> = self.nodes.iter().map(Broker::log_tail).collect();
            panic!(
                "the cluster did not show {count} live brokers within {timeout:?}\n{}",
                tails.join("\n")
            );
        }
    }

    /// The node the cluster names as its controller (the metadata quorum's leader).
    pub fn controller(&self, timeout: Duration) -> usize {
        let found = try_poll_until(timeout, || {
            self.nodes.iter().find_map(|node| {
                let metadata = metadata(node)?;
                usize::try_from(metadata.controller_id.0).ok().filter(|id| *id >= 1)
            })
        });
        found.unwrap_or_else(|| panic!("no controller known within {timeout:?}"))
    }
}
