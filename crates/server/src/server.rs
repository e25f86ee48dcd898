//! The listener, the background maintenance tasks, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::{now_ms, Broker, StartupError};
use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::connection::{self, Admission};
use crate::log_limit::throttled;

/// How long shutdown waits for in-flight requests before closing connections anyway.
const SHUTDOWN_DRAIN_MS: u64 = 10_000;

/// How long a standalone node waits to lead its partitions before it listens anyway.
const STANDALONE_READY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs a broker until `shutdown` completes: recover logs, listen, serve; then stop accepting,
/// let connections finish the request in hand, and flush and close every log.
pub async fn run(config: BrokerConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let listen_addr = config.listener;
    let dir_lock = crate::broker::lock_data_dir(&config.data_dir)?;
    // The quorum node starts first: the broker's topics come from its metadata.
    let cluster = Cluster::start(&config).await?;
    let (session_tx, session_rx) = watch::channel(None);
    let opening = cluster.clone();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, dir_lock, opening, session_rx))
        .await
        .expect("broker start-up task panicked")?;
    let broker = Arc::new(broker);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    spawn_maintenance(&mut background, &broker, stop_rx.clone());
    // Follow the metadata, run the controller's timer where it is active, and keep this
    // broker registered. The lifecycle task ends with the controlled shutdown.
    let (lifecycle_stop, lifecycle_stop_rx) = watch::channel(false);
    background.spawn(crate::cluster::replicas::follow_metadata(
        broker.clone(),
        cluster.clone(),
        stop_rx.clone(),
    ));
    background.spawn(cluster.clone().run_controller_timer(stop_rx.clone()));
    background.spawn(crate::cluster::isr::run_timer(broker.clone(), stop_rx.clone()));
    background.spawn(crate::cluster::isr::run_sender(broker.clone(), stop_rx.clone()));
    let adoption = broker.adoption.lock().expect("adoption lock").take();
    if let Some(adoption) = adoption {
        background.spawn(crate::adoption::run(broker.clone(), adoption, stop_rx.clone()));
    }
    let registration = crate::cluster::replicas::registration(&broker, &cluster);
    let lifecycle = tokio::spawn(crate::cluster::lifecycle::run(
        cluster.clone(),
        registration,
        session_tx,
        lifecycle_stop_rx,
    ));

    if broker.config.cluster.is_standalone() {
        // Clients find every partition led once they can connect, as they did before the
        // cluster: a standalone node listens once it leads what it holds.
        if !cluster
            .until_serving(broker.session.clone(), STANDALONE_READY_MAX)
            .await
        {
            tracing::warn!(
                waited_ms = STANDALONE_READY_MAX.as_millis() as u64,
                "this node does not lead every partition yet; listening anyway"
            );
        }
        // Transactions a crash left between decision and markers are finished before any
        // client is served (in a cluster of several, by whichever broker comes to coordinate
        // them, on its timer).
        crate::txns::tick(&broker.txns).await;
    }
    let listener = TcpListener::bind(listen_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: listen_addr,
            source,
        })?;
    tracing::info!(
        listener = %listen_addr,
        data_dir = %broker.config.data_dir.display(),
        node_id = broker.node_id(),
        cluster_id = %broker.cluster_id,
        topics = broker.topics.list().len(),
        "strom broker started"
    );
    let admission = Arc::new(Admission::new(
        broker
            .config
            .queued_max_request_bytes
            .max(broker.config.socket_request_max_bytes),
    ));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if at_capacity(&mut connections, broker.config.max_connections) => {
                    // Over the limit: refuse by closing, as Kafka does, so each connection's
                    // buffers stay within the memory budget.
                    tracing::warn!(%peer, max_connections = broker.config.max_connections, "too many connections; closing");
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    connections.spawn(connection::serve(broker.clone(), admission.clone(), stream, peer, stop_rx.clone()));
                }
                Err(e) => {
                    // Typically EMFILE; back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    // Leaderships move to other brokers while this one still answers: clients learn the new
    // leaders from its NOT_LEADER_OR_FOLLOWER answers and from Metadata.
    let _ = lifecycle_stop.send(true);
    let _ = lifecycle.await;
    tracing::info!("shutting down: no longer accepting connections");
    drop(listener);
    broker.begin_shutdown();
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still busy after {SHUTDOWN_DRAIN_MS} ms; closing them");
        connections.abort_all();
    }
    background.abort_all();
    while background.join_next().await.is_some() {}
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || closing.topics.close_all())
        .await
        .expect("close task panicked");
    cluster.shutdown().await;
    tracing::info!("shutdown complete: logs flushed and closed");
    Ok(())
}

/// Whether the connection limit is reached, after reaping connections that have ended.
fn at_capacity(connections: &mut JoinSet<()>, max_connections: usize) -> bool {
    while connections.try_join_next().is_some() {}
    connections.len() >= max_connections
}

/// Periodic flush, retention (with producer id expiry) and compaction. Each pass runs on the
/// blocking pool: these do file I/O and must not stall request handling.
fn spawn_maintenance(tasks: &mut JoinSet<()>, broker: &Arc<Broker>, stop: watch::Receiver<bool>) {
    let config = &broker.config;
    if config.log_flush_interval_ms > 0 {
        tasks.spawn(every(
            config.log_flush_interval_ms,
            broker.clone(),
            stop.clone(),
            flush_pass,
        ));
    }
    tasks.spawn(every(
        config.log_retention_check_interval_ms.max(10),
        broker.clone(),
        stop.clone(),
        retention_pass,
    ));
    tasks.spawn(every(
        config.log_cleaner_backoff_ms.max(10),
        broker.clone(),
        stop.clone(),
        compaction_pass,
    ));
    tasks.spawn(every(
        config.offsets_retention_check_interval_ms.max(10),
        broker.clone(),
        stop.clone(),
        |broker| crate::groups::expire_offsets(&broker.groups),
    ));
    tasks.spawn(crate::txns::run_timers(
        broker.txns.clone(),
        config.transaction_id_expiration_check_interval_ms.max(10),
        stop.clone(),
    ));
    tasks.spawn(crate::groups::run_timers(broker.groups.clone(), stop));
}

async fn every(interval_ms: u64, broker: Arc<Broker>, mut stop: watch::Receiver<bool>, pass: fn(&Broker)) {
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let broker = broker.clone();
        let _ = tokio::task::spawn_blocking(move || pass(&broker)).await;
    }
}

fn flush_pass(broker: &Broker) {
    for partition in broker.topics.all_partitions() {
        // The fsync runs without the partition lock: produce and fetch on this partition
        // continue while the disk catches up.
        let job = match partition.lock().as_mut().map(|log| log.flush_job()) {
            Some(Ok(Some(job))) => job,
            Some(Ok(None)) | None => continue,
            Some(Err(e)) => {
                throttled!(error, topic = %partition.topic, partition = partition.index, error = %e, "flush failed");
                continue;
            }
        };
        let result = job.run();
        if let Some(log) = partition.lock().as_mut() {
            if let Err(e) = log.complete_flush(&job, result) {
                throttled!(error, topic = %partition.topic, partition = partition.index, error = %e, "flush failed");
            }
        }
    }
    // What the pass synced becomes each log's recovery point on disk: one file per directory.
    broker.topics.checkpoint_recovery_points();
}

fn retention_pass(broker: &Broker) {
    let now = now_ms();
    for partition in broker.topics.all_partitions() {
        if let Some(log) = partition.lock().as_mut() {
            let expired = log.expire_producers(now, broker.config.producer_id_expiration_ms);
            if expired > 0 {
                tracing::debug!(topic = %partition.topic, partition = partition.index, expired, "producer ids expired");
            }
            if let Err(e) = log.maybe_roll(now) {
                throttled!(error, topic = %partition.topic, partition = partition.index, error = %e, "segment roll failed");
            }
            match log.enforce_retention(now) {
                Ok(report) => {
                    tracing::debug!(topic = %partition.topic, partition = partition.index, ?report, "retention pass")
                }
                Err(e) => {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "retention failed")
                }
            }
        }
    }
}

fn compaction_pass(broker: &Broker) {
    let now = now_ms();
    for partition in broker.topics.all_partitions() {
        // Take the job under the lock, do the work without it, install under it again: produce
        // and fetch continue while a partition is being cleaned.
        let job = partition.lock().as_ref().and_then(|log| log.compaction_job(now));
        let Some(job) = job else { continue };
        let result = match job.run() {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "compaction failed");
                continue;
            }
        };
        if let Some(log) = partition.lock().as_mut() {
            match log.install_compaction(result) {
                Ok(report) => {
                    tracing::info!(topic = %partition.topic, partition = partition.index, ?report, "compacted")
                }
                Err(e) => {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "installing compaction failed")
                }
            }
        }
    }
}
