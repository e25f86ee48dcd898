//! The broker side of the metadata: as committed metadata arrives, this node's topics, logs
//! and partition roles follow it ([`crate::topics::TopicRegistry::apply_metadata`]), and the
//! replica fetchers follow the partitions' leaders.

use std::sync::Arc;

use strom_metadata::controller::BrokerRegistrationRequest;
use strom_metadata::{ConfigResource, Endpoint};
use tokio::sync::watch;

use super::Cluster;
use crate::broker::Broker;
use crate::dynamic_config::DynamicBrokerConfigs;

/// Applies each new image to the broker's topics and replica fetchers until `stop`.
pub(crate) async fn follow_metadata(broker: Arc<Broker>, cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut images = cluster.subscribe();
    let mut applied = 0u64;
    let mut previous = cluster.applied.borrow().clone();
    let lag_max_ms = cluster.config.replica_lag_time_max_ms;
    loop {
        let image = images.borrow_and_update().clone();
        if image.offset != applied {
            let followed = image.clone();
            // Topics gone since the last image (a topic re-created under its name is a new one).
            let deleted: Vec<String> = previous
                .topics()
                .filter(|t| image.topic_by_name(&t.name).is_none_or(|now| now.id != t.id))
                .map(|t| t.name.clone())
                .collect();
            previous = image.clone();
            applied = image.offset;
            let applying = broker.clone();
            let node_id = broker.node_id();
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                // Dynamic broker configs first: they are topic defaults the logs then open with.
                let dynamic = DynamicBrokerConfigs {
                    broker: image
                        .configs(&ConfigResource::Broker(node_id))
                        .cloned()
                        .unwrap_or_default(),
                    default: image
                        .configs(&ConfigResource::BrokerDefault)
                        .cloned()
                        .unwrap_or_default(),
                };
                applying.topics.set_dynamic_configs(dynamic)?;
                // The steady clock (`clock.rs`): the time a new leader gives its followers to catch up.
                let moved = applying
                    .topics
                    .apply_metadata(&image, node_id, lag_max_ms, crate::clock::steady_ms());
                // The coordinators follow the leadership of their topics.
                let led = |topic: &str| -> std::collections::BTreeSet<i32> {
                    applying
                        .topics
                        .get(topic)
                        .map(|t| {
                            t.partitions()
                                .iter()
                                .filter(|p| p.is_leader())
                                .map(|p| p.index)
                                .collect()
                        })
                        .unwrap_or_default()
                };
                crate::groups::lead_partitions(&applying.groups, &led(crate::groups::OFFSETS_TOPIC));
                crate::txns::lead_partitions(&applying.txns, &led(crate::txns::TXN_STATE_TOPIC));
                // Groups coordinated here forget their offsets of deleted topics, as Kafka's do.
                for name in &deleted {
                    crate::groups::forget_topic(&applying.groups, name);
                }
                moved
            })
            .await
            .expect("metadata task panicked");
            tracing::debug!(
                offset = applied,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "applied the metadata to local logs"
            );
            if let Err(e) = result {
                tracing::error!(error = %e, offset = applied, "could not apply the cluster metadata to local logs");
            }
            cluster.fetchers.reconcile(&broker);
            broker.notify_appended();
            cluster.applied.send_replace(followed);
        }
        tokio::select! {
            changed = images.changed() => if changed.is_err() { break },
            _ = cluster.refollow.notified() => applied = u64::MAX,
            _ = stop.changed() => break,
        }
    }
    cluster.fetchers.stop_all();
}

/// What this broker tells the controller about itself.
pub(crate) fn registration(broker: &Broker, cluster: &Cluster) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest {
        id: broker.node_id(),
        incarnation_id: uuid::Uuid::new_v4(),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".to_string(),
            host: broker.config.advertised_host.clone(),
            port: broker.config.advertised_port,
            security_protocol: 0,
        }],
        rack: cluster.config.rack.clone(),
        previous_broker_epoch: super::lifecycle::take_clean_shutdown_epoch(&cluster.dir),
    }
}
