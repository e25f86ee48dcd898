//! Real quorum nodes on loopback, in one process: replication order, failover, restart and
//! catch-up (from the log and through a snapshot), run-time membership changes, and refusals.
//! Every wait polls a condition under a deadline; every test is bounded by `TEST_TIMEOUT`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use common::eventually;
use common::texts;
use common::Cluster;
use strom_quorum::Quorum;
use strom_quorum::QuorumConfig;
use strom_quorum::QuorumError;
use strom_quorum::Role;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

const TEST_TIMEOUT: Duration = Duration::from_secs(28);
const WAIT: Duration = Duration::from_secs(10);

fn no_tweak(_: &mut QuorumConfig) {}

async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    let started = Instant::now();
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("test finished within its time bound");
    eprintln!("measure: test body took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_apply_the_same_commands_in_the_same_order() {
    bounded(async {
        let started = Instant::now();
        let mut cluster = Cluster::start(3, no_tweak).await;
        let leader = cluster.leader(WAIT).await;
        eprintln!("measure: first leader elected {:?} after start", started.elapsed());
        let follower = *cluster.nodes.keys().find(|&&id| id != leader).unwrap();

        let mut expected = Vec::new();
        let mut indexes = Vec::new();
        let mut leader_latency = Duration::ZERO;
        let mut follower_latency = Duration::ZERO;
        for i in 0..20 {
            let (from, text) = if i % 2 == 0 {
                (leader, format!("L{i}"))
            } else {
                (follower, format!("F{i}"))
            };
            let sent = Instant::now();
            let index = cluster
                .node(from)
                .quorum()
                .propose(text.clone().into_bytes())
                .await
                .expect("propose");
            if from == leader {
                leader_latency += sent.elapsed()
            } else {
                follower_latency += sent.elapsed()
            }
            // Returned after apply on the proposer too (read-your-writes).
            assert!(
                texts(&cluster.node(from).sm).contains(&text),
                "{text} applied on node {from} at return"
            );
            indexes.push(index);
            expected.push(text);
        }
        eprintln!(
            "measure: propose latency, mean of 10: on the leader {:?}, forwarded from a follower {:?}",
            leader_latency / 10,
            follower_latency / 10
        );
        assert!(indexes.windows(2).all(|w| w[0] < w[1]), "indexes grow: {indexes:?}");
        cluster.converged(&expected, WAIT).await;
        for node in cluster.running() {
            let applied: Vec<u64> = node.sm.read().unwrap().commands.iter().map(|(i, _)| *i).collect();
            assert_eq!(
                applied, indexes,
                "node {} applied at the indexes propose returned",
                node.id
            );
        }

        let status = cluster.node(leader).quorum().status().await.unwrap();
        assert_eq!((status.role, status.leader), (Role::Leader, Some(leader)));
        assert_eq!(status.voters.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(status.learners.is_empty());
        let last = *indexes.last().unwrap();
        assert!(
            status.committed >= Some(last) && status.applied >= Some(last),
            "{status:?}"
        );
        eventually(WAIT, "every voter's matched index on the leader", || async {
            let status = cluster.node(leader).quorum().status().await.unwrap();
            status
                .voters
                .iter()
                .all(|r| r.matched_index >= Some(last) && r.last_contact_ms_ago.is_some())
        })
        .await;
        let follower_status = cluster.node(follower).quorum().status().await.unwrap();
        assert_eq!(
            (follower_status.role, follower_status.leader),
            (Role::Follower, Some(leader))
        );
        cluster.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_and_the_old_one_catches_up_after_restart() {
    bounded(async {
        let mut cluster = Cluster::start(3, no_tweak).await;
        let old_leader = cluster.leader(WAIT).await;
        let mut expected = Vec::new();
        for i in 0..5 {
            let text = format!("before-{i}");
            cluster
                .node(old_leader)
                .quorum()
                .propose(text.clone().into_bytes())
                .await
                .unwrap();
            expected.push(text);
        }
        cluster.converged(&expected, WAIT).await;

        cluster.stop(old_leader).await;
        let stopped = Instant::now();
        let new_leader = cluster.leader(WAIT).await;
        eprintln!(
            "measure: new leader {new_leader} agreed {:?} after leader {old_leader} stopped",
            stopped.elapsed()
        );
        assert_ne!(new_leader, old_leader);
        let other = *cluster.running().map(|n| &n.id).find(|&&id| id != new_leader).unwrap();
        for i in 0..5 {
            let text = format!("after-{i}");
            // From the follower: forwarded to the new leader.
            cluster
                .node(other)
                .quorum()
                .propose(text.clone().into_bytes())
                .await
                .unwrap();
            expected.push(text);
        }

        cluster.restart(old_leader).await;
        cluster.converged(&expected, WAIT).await;
        assert_eq!(cluster.leader(WAIT).await, new_leader, "the restarted node follows");
        cluster.shutdown_all().await;
    })
    .await;
}

fn snapshot_often(config: &mut QuorumConfig) {
    config.snapshot_logs_since_last = 10;
    config.logs_to_keep_after_snapshot = 2;
    config.log_segment_bytes = 512;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_catches_up_through_a_snapshot_and_nodes_restart_from_their_own() {
    bounded(async {
        let mut cluster = Cluster::start(3, snapshot_often).await;
        let leader = cluster.leader(WAIT).await;
        let mut expected = Vec::new();
        for i in 0..60 {
            let text = format!("c{i}");
            cluster.node(leader).quorum().propose(text.clone().into_bytes()).await.unwrap();
            expected.push(text);
        }
        eventually(WAIT, "the leader to snapshot and purge its log", || async {
            cluster.node(leader).quorum().metrics().borrow().purged.is_some_and(|p| p.index > 20)
        })
        .await;
        let log_files = std::fs::read_dir(cluster.node(leader).dir.join("log")).unwrap().count();
        assert!(log_files <= 8, "purged segments are deleted on the leader ({log_files} left)");

        // A new node can only get the purged prefix through install_snapshot.
        cluster.add_node(4, common::free_addr());
        cluster.restart(4).await;
        let addr4 = cluster.node(4).addr.clone();
        cluster.node(leader).quorum().add_learner(4, addr4).await.unwrap();
        cluster.converged(&expected, WAIT).await;
        let snapshot = cluster.node(4).quorum().status().await.unwrap().snapshot;
        assert!(snapshot.is_some_and(|s| s > 20), "node 4 caught up through a snapshot: {snapshot:?}");

        // A voter that was down catches up when it comes back.
        let follower = *cluster.nodes.keys().find(|&&id| id != leader && id != 4).unwrap();
        cluster.stop(follower).await;
        let purged_before = cluster.node(leader).quorum().metrics().borrow().purged.map(|p| p.index);
        for i in 60..90 {
            let text = format!("c{i}");
            cluster.node(leader).quorum().propose(text.clone().into_bytes()).await.unwrap();
            expected.push(text);
        }
        let purged_after = cluster.node(leader).quorum().metrics().borrow().purged.map(|p| p.index);
        eprintln!("measure: leader purged up to {purged_before:?} before and {purged_after:?} after 30 commands with voter {follower} down");
        cluster.restart(follower).await;
        cluster.converged(&expected, WAIT).await;

        // Restart from a node's own snapshot file plus its log: same state, then more commands
        // (from the learner: forwarded).
        cluster.stop(4).await;
        cluster.restart(4).await;
        eventually(WAIT, "the restarted node's state from snapshot + log", || async {
            texts(&cluster.node(4).sm) == expected
        })
        .await;
        let text = "after-restart".to_string();
        cluster.node(4).quorum().propose(text.clone().into_bytes()).await.unwrap();
        expected.push(text);
        cluster.converged(&expected, WAIT).await;
        cluster.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_as_learner_then_voter_and_a_voter_is_removed() {
    bounded(async {
        let mut cluster = Cluster::start(3, no_tweak).await;
        let leader = cluster.leader(WAIT).await;
        let mut expected = vec!["one".to_string()];
        cluster.node(leader).quorum().propose(b"one".to_vec()).await.unwrap();

        // Node 4 is not an initial voter: it starts as a learner and waits.
        cluster.add_node(4, common::free_addr());
        cluster.restart(4).await;
        let addr4 = cluster.node(4).addr.clone();
        let leader_quorum = cluster.node(leader).quorum();
        leader_quorum.add_learner(4, addr4.clone()).await.unwrap();
        let status = leader_quorum.status().await.unwrap();
        assert_eq!(
            status
                .learners
                .iter()
                .map(|r| (r.id, r.addr.clone()))
                .collect::<Vec<_>>(),
            vec![(4, addr4.clone())]
        );
        cluster.converged(&expected, WAIT).await;

        leader_quorum.add_voter(4, addr4.clone()).await.unwrap();
        let membership = leader_quorum.membership();
        assert_eq!(membership.voters.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert!(membership.learners.is_empty());
        expected.push("two".to_string());
        cluster.node(4).quorum().propose(b"two".to_vec()).await.unwrap();
        cluster.converged(&expected, WAIT).await;

        let removed = *cluster.nodes.keys().find(|&&id| id != leader && id != 4).unwrap();
        leader_quorum.remove_voter(removed).await.unwrap();
        let voters: Vec<u64> = leader_quorum.membership().voters.keys().copied().collect();
        assert_eq!(voters.len(), 3);
        assert!(!voters.contains(&removed));
        cluster.stop(removed).await;
        // Three voters left, one of them new: still a quorum.
        expected.push("three".to_string());
        cluster.node(leader).quorum().propose(b"three".to_vec()).await.unwrap();
        cluster.converged(&expected, WAIT).await;
        cluster.shutdown_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_node_or_cluster_is_refused() {
    bounded(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let addr = common::free_addr();
        let voters = BTreeMap::from([(1, addr.clone())]);
        let quorum = Quorum::start(common::config(1, &addr, &dir, &voters), common::Shared::default())
            .await
            .unwrap();
        quorum.wait_for_leader(WAIT).await.unwrap();
        quorum.shutdown().await.unwrap();

        let voters2 = BTreeMap::from([(2, addr.clone())]);
        let err = Quorum::start(common::config(2, &addr, &dir, &voters2), common::Shared::default())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                QuorumError::DataDirMismatch {
                    found_node_id: 1,
                    node_id: 2,
                    ..
                }
            ),
            "{err}"
        );
        eprintln!("error: {err}");
        assert!(
            err.to_string()
                .contains("belongs to node 1 of cluster \"test-cluster\""),
            "{err}"
        );

        let mut other_cluster = common::config(1, &addr, &dir, &voters);
        other_cluster.cluster_id = "other".to_string();
        let err = Quorum::start(other_cluster, common::Shared::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, QuorumError::DataDirMismatch { .. }), "{err}");

        // The right node still starts from it.
        let quorum = Quorum::start(common::config(1, &addr, &dir, &voters), common::Shared::default())
            .await
            .unwrap();
        quorum.wait_for_leader(WAIT).await.unwrap();
        quorum.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_listener_closes_only_that_connection() {
    bounded(async {
        let mut cluster = Cluster::start(1, no_tweak).await;
        cluster.leader(WAIT).await;
        let addr = cluster.node(1).addr.clone();
        let oversize = (strom_quorum::FRAME_BYTES_MAX + 1).to_be_bytes().to_vec();
        let mut not_json = 5u32.to_be_bytes().to_vec();
        not_json.extend_from_slice(b"hello");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("random bytes", (0..200u32).map(|i| (i * 7919 % 251) as u8).collect()),
            ("oversized length", oversize),
            ("frame that is not a request", not_json),
            ("half a header", vec![0, 0]),
        ];
        for (what, bytes) in cases {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            // The node closes the connection (or answers nothing) instead of crashing.
            let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "{what}: connection closed");
            assert!(rest.is_empty(), "{what}: no answer to bad input");
        }
        let index = cluster.node(1).quorum().propose(b"still alive".to_vec()).await.unwrap();
        assert!(index > 0);
        assert_eq!(texts(&cluster.node(1).sm), vec!["still alive".to_string()]);
        cluster.shutdown_all().await;
    })
    .await;
}

fn short_propose_timeout(config: &mut QuorumConfig) {
    config.propose_timeout = Duration::from_millis(1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_proposals_time_out_with_a_clear_error() {
    bounded(async {
        let mut cluster = Cluster::start(3, short_propose_timeout).await;
        let leader = cluster.leader(WAIT).await;
        let others: Vec<u64> = cluster.nodes.keys().copied().filter(|&id| id != leader).collect();
        for id in others {
            cluster.stop(id).await;
        }
        let started = Instant::now();
        let err = cluster
            .node(leader)
            .quorum()
            .propose(b"lost".to_vec())
            .await
            .unwrap_err();
        eprintln!("error: {err}");
        assert!(matches!(err, QuorumError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("majority of voters"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        cluster.shutdown_all().await;
        let err = cluster
            .node(leader)
            .quorum
            .as_ref()
            .map(|_| ())
            .ok_or(QuorumError::ShuttingDown)
            .unwrap_err();
        assert!(matches!(err, QuorumError::ShuttingDown));
    })
    .await;
}

/// Answers with the node it ran on.
struct Echo(u64);

impl strom_quorum::CallHandler for Echo {
    fn call(&self, request: String) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> {
        let id = self.0;
        Box::pin(async move { format!("{id}:{request}") })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_calls_reach_the_leader_from_any_node() {
    bounded(async {
        let mut cluster = Cluster::start(3, no_tweak).await;
        let leader = cluster.leader(WAIT).await;
        for node in cluster.running() {
            let id = node.quorum().node_id();
            node.quorum().set_call_handler(std::sync::Arc::new(Echo(id)));
        }
        for node in cluster.running() {
            let answer = node.quorum().call_leader("hello".into(), WAIT).await.expect("call");
            assert_eq!(answer, format!("{leader}:hello"));
        }
        // The leader goes: calls reach the next one.
        cluster.stop(leader).await;
        let next = cluster.leader(WAIT).await;
        assert_ne!(next, leader);
        let follower = cluster
            .running()
            .map(|n| n.quorum().node_id())
            .find(|id| *id != next)
            .unwrap();
        let answer = cluster
            .node(follower)
            .quorum()
            .call_leader("again".into(), WAIT)
            .await
            .expect("call");
        assert_eq!(answer, format!("{next}:again"));
    })
    .await;
}
