//! The controller's operations against images built record by record, as the quorum would.

use uuid::Uuid;

use super::test_support::{cluster, commit};
use super::*;
use crate::records::{Endpoint, LeaderRecoveryState, NO_LEADER};

const SESSION_MS: i64 = 9_000;

fn controller(image: &MetadataImage) -> Controller {
    Controller::new(
        ControllerConfig {
            auto_leader_rebalance_enable: false,
            ..ControllerConfig::default()
        },
        image,
        0,
    )
}

fn topic(name: &str, partitions: i32, replication_factor: i16) -> CreateTopic {
    CreateTopic {
        name: name.into(),
        id: Uuid::from_u128(name.len() as u128 * 1000 + partitions as u128),
        num_partitions: partitions,
        replication_factor,
        assignments: Vec::new(),
        configs: Vec::new(),
    }
}

fn create(controller: &mut Controller, image: &mut MetadataImage, topic: CreateTopic) -> Uuid {
    let plan = controller.create_topics(image, vec![topic], false);
    let (_, result) = &plan.reply[0];
    let id = result.as_ref().expect("topic created").id;
    commit(image, &plan);
    id
}

fn registration(id: BrokerId, incarnation: u128, previous_broker_epoch: i64) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest {
        id,
        incarnation_id: Uuid::from_u128(incarnation),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092,
            security_protocol: 0,
        }],
        rack: None,
        previous_broker_epoch,
    }
}

fn heartbeat(image: &MetadataImage, id: BrokerId) -> BrokerHeartbeat {
    BrokerHeartbeat {
        id,
        epoch: image.broker(id).unwrap().epoch,
        metadata_offset: image.offset,
        want_fence: false,
        want_shutdown: false,
    }
}

/// Heartbeats from every listed broker at `now`, committing what they change.
fn heartbeat_all(controller: &mut Controller, image: &mut MetadataImage, ids: &[BrokerId], now: i64) {
    for id in ids {
        let plan = controller.heartbeat(image, now, &heartbeat(image, *id)).unwrap();
        commit(image, &plan);
    }
}

fn partition(image: &MetadataImage, topic: Uuid, p: i32) -> PartitionState {
    image.partition(&topic, p).unwrap().clone()
}

#[test]
fn a_fenced_broker_is_unfenced_only_once_its_metadata_shows_the_fencing() {
    // Found by the fault campaign: a leader cut off from the cluster for longer than its
    // session was fenced (its leaderships moved); when the network healed, its first heartbeat
    // carried its old image's offset, which was past its registration, so it was unfenced at
    // once and went on coordinating a group from that old image (stale committed offsets).
    let mut image = MetadataImage::new();
    let mut c = controller(&image);
    for id in [1, 2] {
        let plan = c
            .register_broker(&image, 0, registration(id, 10 + id as u128, -1))
            .unwrap();
        commit(&mut image, &plan);
    }
    heartbeat_all(&mut c, &mut image, &[1, 2], 0);
    assert!(image.is_usable(1) && image.is_usable(2));
    let before_fencing = image.offset;

    let plan = c.fence_down(&image, 2);
    let fenced_at = commit(&mut image, &plan);
    assert!(!image.is_usable(2));
    assert_eq!(image.broker(2).unwrap().fenced_at, fenced_at);

    let stale = BrokerHeartbeat {
        metadata_offset: before_fencing,
        ..heartbeat(&image, 2)
    };
    let plan = c.heartbeat(&image, 10, &stale).unwrap();
    assert!(plan.records.is_empty(), "{:?}", plan.records);
    assert!(!plan.reply.is_caught_up && plan.reply.is_fenced);

    let plan = c.heartbeat(&image, 20, &heartbeat(&image, 2)).unwrap();
    assert!(plan.reply.is_caught_up && !plan.reply.is_fenced);
    commit(&mut image, &plan);
    assert!(image.is_usable(2));
}

#[test]
fn a_broker_registers_fenced_and_is_unfenced_once_caught_up() {
    let mut image = MetadataImage::new();
    let mut c = controller(&image);
    let plan = c.register_broker(&image, 0, registration(1, 11, -1)).unwrap();
    assert_eq!(plan.reply, Registered::AtCommitIndex);
    let epoch = commit(&mut image, &plan) as i64;
    assert!(image.broker(1).unwrap().fenced);

    // Behind its own registration: still fenced.
    let behind = BrokerHeartbeat {
        metadata_offset: epoch as u64 - 1,
        ..heartbeat(&image, 1)
    };
    let plan = c.heartbeat(&image, 10, &behind).unwrap();
    assert!(plan.records.is_empty());
    assert!(!plan.reply.is_caught_up && plan.reply.is_fenced);

    let plan = c.heartbeat(&image, 20, &heartbeat(&image, 1)).unwrap();
    assert!(plan.reply.is_caught_up && !plan.reply.is_fenced);
    commit(&mut image, &plan);
    assert!(image.is_usable(1));

    // A retried registration of the same incarnation changes nothing.
    let retry = c.register_broker(&image, 30, registration(1, 11, -1)).unwrap();
    assert!(retry.records.is_empty());
    assert_eq!(retry.reply, Registered::Existing { epoch });

    // An older session's heartbeat is refused.
    let stale = BrokerHeartbeat {
        epoch: epoch - 1,
        ..heartbeat(&image, 1)
    };
    assert!(matches!(
        c.heartbeat(&image, 40, &stale),
        Err(ControllerError::StaleBrokerEpoch { .. })
    ));
}

#[test]
fn a_node_id_in_use_by_a_live_broker_is_refused_until_its_session_ends() {
    let mut image = cluster(1, 0);
    let mut c = controller(&image);
    heartbeat_all(&mut c, &mut image, &[1], 1_000);
    assert_eq!(
        c.register_broker(&image, 2_000, registration(1, 99, -1)),
        Err(ControllerError::DuplicateBrokerRegistration(1))
    );
    let plan = c.tick(&image, 1_000 + SESSION_MS);
    commit(&mut image, &plan);
    assert!(image.broker(1).unwrap().fenced);
    assert!(c.register_broker(&image, 11_000, registration(1, 99, -1)).is_ok());
}

#[test]
fn topics_are_placed_across_brokers_and_checked_as_kafka_checks_them() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let id = create(&mut c, &mut image, topic("orders", 6, 3));
    let leaders: Vec<BrokerId> = (0..6).map(|p| partition(&image, id, p).leader).collect();
    for b in 1..=3 {
        assert_eq!(leaders.iter().filter(|l| **l == b).count(), 2, "{leaders:?}");
    }
    assert!((0..6).all(|p| partition(&image, id, p).isr.len() == 3));

    let plan = c.create_topics(
        &image,
        vec![
            topic("orders", 1, 1),
            topic("too-wide", 1, 4),
            topic("zero", 0, 1),
            topic("bad name", 1, 1),
            topic("twice", 1, 1),
            topic("twice", 1, 1),
            topic("orders_x", 1, 1),
            topic("orders.x", 1, 1),
        ],
        false,
    );
    let codes: Vec<_> = plan.reply.iter().map(|(n, r)| (n.as_str(), r.clone().err())).collect();
    assert!(matches!(codes[0].1, Some(ControllerError::TopicAlreadyExists(_))));
    assert!(matches!(codes[1].1, Some(ControllerError::InvalidReplicationFactor(_))));
    assert!(matches!(codes[2].1, Some(ControllerError::InvalidPartitions(_))));
    assert!(matches!(codes[3].1, Some(ControllerError::InvalidTopic(..))));
    assert!(matches!(codes[4].1, Some(ControllerError::InvalidRequest(_))));
    assert!(matches!(codes[5].1, Some(ControllerError::InvalidRequest(_))));
    assert_eq!(codes[6].1, None);
    assert!(
        matches!(codes[7].1, Some(ControllerError::InvalidTopic(..))),
        "collides with orders_x"
    );

    let validate_only = c.create_topics(&image, vec![topic("fresh", 3, 2)], true);
    assert!(validate_only.records.is_empty());
    assert!(validate_only.reply[0].1.is_ok());
}

#[test]
fn manual_assignments_are_checked() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let manual = |assignments: Vec<(i32, Vec<BrokerId>)>| CreateTopic {
        num_partitions: -1,
        replication_factor: -1,
        assignments,
        ..topic("manual", 1, 1)
    };
    let cases = [
        vec![(0, vec![1, 1])],
        vec![(0, vec![1, 7])],
        vec![(0, vec![])],
        vec![(0, vec![1, 2]), (1, vec![3])],
        vec![(0, vec![1]), (2, vec![2])],
    ];
    for case in cases {
        let plan = c.create_topics(&image, vec![manual(case.clone())], false);
        assert!(
            matches!(plan.reply[0].1, Err(ControllerError::InvalidReplicaAssignment(_))),
            "{case:?}: {:?}",
            plan.reply
        );
    }
    let both = CreateTopic {
        assignments: vec![(0, vec![1])],
        ..topic("manual", 1, 1)
    };
    let plan = c.create_topics(&image, vec![both], false);
    assert!(matches!(plan.reply[0].1, Err(ControllerError::InvalidRequest(_))));

    let id = create(&mut c, &mut image, manual(vec![(1, vec![3, 1]), (0, vec![2, 3])]));
    assert_eq!(partition(&image, id, 0).replicas, vec![2, 3]);
    assert_eq!(partition(&image, id, 1).leader, 3);

    // CreatePartitions: one list per added partition, of the topic's replication factor.
    let add = |count, assignments| CreatePartitions {
        name: "manual".into(),
        count,
        assignments,
    };
    for bad in [
        add(3, Some(vec![vec![1, 2], vec![2, 3]])),
        add(3, Some(vec![vec![1]])),
        add(3, Some(vec![vec![1, 9]])),
        add(3, Some(vec![vec![2, 2]])),
    ] {
        let plan = c.create_partitions(&image, vec![bad.clone()], false);
        assert!(
            matches!(plan.reply[0].1, Err(ControllerError::InvalidReplicaAssignment(_))),
            "{bad:?}"
        );
    }
    let plan = c.create_partitions(&image, vec![add(2, None)], false);
    assert!(matches!(plan.reply[0].1, Err(ControllerError::InvalidPartitions(_))));
    let plan = c.create_partitions(&image, vec![add(4, Some(vec![vec![1, 2], vec![3, 1]]))], true);
    assert!(plan.records.is_empty() && plan.reply[0].1.is_ok());
    let plan = c.create_partitions(&image, vec![add(4, None)], false);
    commit(&mut image, &plan);
    assert_eq!(image.topic(&id).unwrap().partitions.len(), 4);
    assert_eq!(partition(&image, id, 3).replicas.len(), 2);
}

#[test]
fn a_silent_broker_is_fenced_and_its_leaderships_move() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let id = create(&mut c, &mut image, topic("t", 3, 3));
    heartbeat_all(&mut c, &mut image, &[2, 3], 5_000);
    assert!(c.tick(&image, 5_000).records.is_empty());
    let plan = c.tick(&image, SESSION_MS);
    commit(&mut image, &plan);
    assert!(image.broker(1).unwrap().fenced);
    for p in 0..3 {
        let state = partition(&image, id, p);
        assert_ne!(state.leader, 1);
        assert!(!state.isr.contains(&1));
        assert!(state.elr.is_empty(), "two in sync remain (min.insync.replicas 1)");
    }
    let moved = partition(&image, id, 0);
    assert_eq!((moved.leader, moved.leader_epoch), (2, 1));
    assert!(c.tick(&image, SESSION_MS + 1).records.is_empty(), "fenced once");
    assert!(c.next_deadline_ms(&image) > SESSION_MS);
}

#[test]
fn a_broker_found_down_is_fenced_before_its_session_runs_out() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let id = create(&mut c, &mut image, topic("t", 3, 3));
    heartbeat_all(&mut c, &mut image, &[1, 2, 3], 1_000);
    assert!(c.overdue(&image, 1_500, 1_000).is_empty(), "heartbeats are recent");
    heartbeat_all(&mut c, &mut image, &[2, 3], 2_500);
    assert_eq!(
        c.overdue(&image, 2_500, 1_000),
        vec![1],
        "broker 1 missed its heartbeats"
    );
    // The server's probe finds no process behind broker 1's listener.
    let plan = c.fence_down(&image, 1);
    commit(&mut image, &plan);
    assert!(image.broker(1).unwrap().fenced);
    for p in 0..3 {
        let state = partition(&image, id, p);
        assert_ne!(state.leader, 1);
        assert!(!state.isr.contains(&1));
    }
    assert!(c.fence_down(&image, 1).records.is_empty(), "fenced once");
    assert!(
        c.overdue(&image, 3_000, 1_000).is_empty(),
        "a fenced broker is no suspect"
    );
}

#[test]
fn a_returning_broker_rejoins_through_its_leader_and_gets_preferred_leadership_back() {
    let mut image = cluster(3, 0);
    let mut c = Controller::new(
        ControllerConfig {
            leader_imbalance_check_interval_ms: 1_000,
            ..ControllerConfig::default()
        },
        &image,
        0,
    );
    let id = create(&mut c, &mut image, topic("t", 1, 3));
    heartbeat_all(&mut c, &mut image, &[2, 3], 5_000);
    let plan = c.tick(&image, SESSION_MS);
    commit(&mut image, &plan);
    assert_eq!(partition(&image, id, 0).leader, 2);

    // Broker 1 restarts (cleanly: it names its last epoch) and catches up.
    let epoch_before = image.broker(1).unwrap().epoch;
    let plan = c
        .register_broker(&image, 10_000, registration(1, 77, epoch_before))
        .unwrap();
    commit(&mut image, &plan);
    heartbeat_all(&mut c, &mut image, &[1, 2, 3], 10_000);
    assert!(image.is_usable(1));
    let state = partition(&image, id, 0);
    assert!(!state.isr.contains(&1), "only its leader takes it back in sync");

    let rejoin = AlterPartition {
        broker_id: 2,
        broker_epoch: image.broker(2).unwrap().epoch,
        topic_id: id,
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: [2, 3, 1]
            .iter()
            .map(|b| IsrMember {
                id: *b,
                broker_epoch: image.broker(*b).unwrap().epoch,
            })
            .collect(),
        leader_recovery_state: LeaderRecoveryState::Recovered,
    };
    let plan = c.alter_partition(&image, &rejoin).unwrap();
    commit(&mut image, &plan);
    assert_eq!(
        partition(&image, id, 0),
        plan.reply,
        "the answer is the committed state"
    );
    assert_eq!(plan.reply.isr, vec![2, 3, 1]);

    heartbeat_all(&mut c, &mut image, &[1, 2, 3], 11_000);
    let plan = c.tick(&image, 11_000);
    commit(&mut image, &plan);
    assert_eq!(partition(&image, id, 0).leader, 1, "the preferred replica leads again");
}

#[test]
fn alter_partitions_decides_each_change_on_its_own() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let id = create(&mut c, &mut image, topic("t", 2, 3));
    let member = |b: BrokerId, image: &MetadataImage| IsrMember {
        id: b,
        broker_epoch: image.broker(b).unwrap().epoch,
    };
    let shrink = |p: i32, image: &MetadataImage| {
        let state = partition(image, id, p);
        AlterPartition {
            broker_id: state.leader,
            broker_epoch: image.broker(state.leader).unwrap().epoch,
            topic_id: id,
            partition: p,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: state.isr.iter().take(2).map(|b| member(*b, image)).collect(),
            leader_recovery_state: LeaderRecoveryState::Recovered,
        }
    };
    let mut stale = shrink(1, &image);
    stale.partition_epoch += 7;
    let batch = [shrink(0, &image), stale, shrink(0, &image)];
    let plan = c.alter_partitions(&image, &batch);
    assert_eq!(plan.reply.len(), 3);
    assert!(plan.reply[0].is_ok(), "{:?}", plan.reply[0]);
    assert!(plan.reply[1].is_err(), "a stale change is refused alone");
    assert!(
        matches!(plan.reply[2], Err(ControllerError::InvalidRequest(_))),
        "named twice"
    );
    commit(&mut image, &plan);
    assert_eq!(partition(&image, id, 0).isr.len(), 2);
    assert_eq!(partition(&image, id, 1).isr.len(), 3);
}

#[test]
fn alter_partition_refuses_stale_and_ineligible_changes() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let id = create(&mut c, &mut image, topic("t", 1, 3));
    let state = partition(&image, id, 0);
    let member = |b: BrokerId, image: &MetadataImage| IsrMember {
        id: b,
        broker_epoch: image.broker(b).unwrap().epoch,
    };
    let request = AlterPartition {
        broker_id: 1,
        broker_epoch: image.broker(1).unwrap().epoch,
        topic_id: id,
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: vec![member(1, &image), member(2, &image)],
        leader_recovery_state: LeaderRecoveryState::Recovered,
    };
    let stale_version = AlterPartition {
        partition_epoch: state.partition_epoch - 1,
        ..request.clone()
    };
    assert!(matches!(
        c.alter_partition(&image, &stale_version),
        Err(ControllerError::InvalidUpdateVersion { .. })
    ));
    let stale_leader = AlterPartition {
        leader_epoch: state.leader_epoch + 1,
        ..request.clone()
    };
    assert!(matches!(
        c.alter_partition(&image, &stale_leader),
        Err(ControllerError::FencedLeaderEpoch { .. })
    ));
    let not_leader = AlterPartition {
        broker_id: 2,
        broker_epoch: image.broker(2).unwrap().epoch,
        ..request.clone()
    };
    assert_eq!(
        c.alter_partition(&image, &not_leader),
        Err(ControllerError::NotLeader(2))
    );
    let without_leader = AlterPartition {
        new_isr: vec![member(2, &image)],
        ..request.clone()
    };
    assert!(matches!(
        c.alter_partition(&image, &without_leader),
        Err(ControllerError::InvalidRequest(_))
    ));

    let plan = c.alter_partition(&image, &request).unwrap();
    commit(&mut image, &plan);
    assert_eq!(partition(&image, id, 0).isr, vec![1, 2]);

    // Broker 3 is fenced: it cannot be taken back.
    heartbeat_all(&mut c, &mut image, &[1, 2], 5_000);
    let plan = c.tick(&image, SESSION_MS);
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    let expand = AlterPartition {
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: vec![member(1, &image), member(2, &image), member(3, &image)],
        ..request
    };
    assert!(matches!(
        c.alter_partition(&image, &expand),
        Err(ControllerError::IneligibleReplica(_))
    ));
}

#[test]
fn with_min_isr_two_the_last_in_sync_replicas_stay_eligible_across_a_full_outage() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let mut t = topic("t", 1, 3);
    t.configs = vec![("min.insync.replicas".into(), "2".into())];
    let id = create(&mut c, &mut image, t);

    // 3 goes first (two remain in sync), then 2 (one remains: 2 stays eligible), then 1.
    heartbeat_all(&mut c, &mut image, &[1, 2], 5_000);
    let plan = c.tick(&image, SESSION_MS);
    commit(&mut image, &plan);
    heartbeat_all(&mut c, &mut image, &[1], 10_000);
    let plan = c.tick(&image, 5_000 + SESSION_MS);
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!((state.isr.clone(), state.elr.clone()), (vec![1], vec![2]));
    let plan = c.tick(&image, 10_000 + SESSION_MS);
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!(state.leader, NO_LEADER);
    assert_eq!(state.elr, vec![2, 1]);

    // 3 comes back (cleanly): it is not eligible, so the partition stays offline.
    let now = 30_000;
    let epoch3 = image.broker(3).unwrap().epoch;
    let plan = c.register_broker(&image, now, registration(3, 33, epoch3)).unwrap();
    commit(&mut image, &plan);
    heartbeat_all(&mut c, &mut image, &[3], now);
    assert!(image.is_usable(3));
    assert_eq!(partition(&image, id, 0).leader, NO_LEADER);

    // 2 comes back after an unclean shutdown: it loses its eligibility.
    let plan = c.register_broker(&image, now, registration(2, 22, -1)).unwrap();
    commit(&mut image, &plan);
    heartbeat_all(&mut c, &mut image, &[2], now);
    let state = partition(&image, id, 0);
    assert_eq!((state.leader, state.elr.clone()), (NO_LEADER, vec![1]));

    // 1 comes back cleanly and is elected.
    let epoch1 = image.broker(1).unwrap().epoch;
    let plan = c.register_broker(&image, now, registration(1, 11, epoch1)).unwrap();
    commit(&mut image, &plan);
    heartbeat_all(&mut c, &mut image, &[1], now);
    let state = partition(&image, id, 0);
    assert_eq!((state.leader, state.isr.clone()), (1, vec![1]));
    assert_eq!(state.leader_recovery_state, LeaderRecoveryState::Recovered);

    // An operator's unclean election is not needed any more.
    let plan = c.elect_leaders(&image, Election::Unclean, Some(vec![("t".into(), 0)]));
    assert_eq!(plan.reply[0].1, Err(ControllerError::ElectionNotNeeded));
}

#[test]
fn controlled_shutdown_moves_leadership_before_the_broker_may_stop() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let id = create(&mut c, &mut image, topic("t", 3, 3));
    let solo = create(&mut c, &mut image, topic("solo", 1, 1));
    let solo_leader = partition(&image, solo, 0).leader;
    let request = BrokerHeartbeat {
        want_shutdown: true,
        ..heartbeat(&image, solo_leader)
    };
    let plan = c.heartbeat(&image, 100, &request).unwrap();
    assert!(!plan.reply.should_shut_down);
    commit(&mut image, &plan);
    for p in 0..3 {
        let state = partition(&image, id, p);
        assert_ne!(state.leader, solo_leader);
        assert!(!state.isr.contains(&solo_leader));
    }
    assert_eq!(
        partition(&image, solo, 0).leader,
        NO_LEADER,
        "no other replica: offline"
    );
    let lagging = BrokerHeartbeat {
        metadata_offset: image.offset - 1,
        ..request.clone()
    };
    let plan = c.heartbeat(&image, 200, &lagging).unwrap();
    assert!(!plan.reply.should_shut_down, "it has not seen its leaderships go");
    let caught_up = BrokerHeartbeat {
        metadata_offset: image.offset,
        ..request
    };
    assert!(c.heartbeat(&image, 300, &caught_up).unwrap().reply.should_shut_down);
    // Its next process registers at once, without waiting for the old session to time out.
    assert!(c
        .register_broker(&image, 400, registration(solo_leader, 999, -1))
        .is_ok());
}

#[test]
fn a_reassignment_adds_replicas_first_and_removes_the_old_ones_once_in_sync() {
    let mut image = cluster(6, 0);
    let mut c = controller(&image);
    let assignment = CreateTopic {
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, vec![1, 2, 3])],
        ..topic("t", 1, 1)
    };
    let id = create(&mut c, &mut image, assignment);
    let move_to = PartitionReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![4, 5, 6]),
    };
    let plan = c.alter_reassignments(&image, vec![move_to]);
    assert!(plan.reply[0].1.is_ok());
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!(state.replicas, vec![4, 5, 6, 1, 2, 3]);
    assert_eq!(state.adding_replicas, vec![4, 5, 6]);
    assert_eq!(state.removing_replicas, vec![1, 2, 3]);
    assert_eq!(state.leader, 1, "the old leader serves until the new replicas catch up");
    assert_eq!(Controller::list_reassignments(&image).len(), 1);

    let members = |ids: &[BrokerId], image: &MetadataImage| {
        ids.iter()
            .map(|b| IsrMember {
                id: *b,
                broker_epoch: image.broker(*b).unwrap().epoch,
            })
            .collect::<Vec<_>>()
    };
    let catch_up = AlterPartition {
        broker_id: 1,
        broker_epoch: image.broker(1).unwrap().epoch,
        topic_id: id,
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: members(&[1, 2, 3, 4, 5], &image),
        leader_recovery_state: LeaderRecoveryState::Recovered,
    };
    let plan = c.alter_partition(&image, &catch_up).unwrap();
    commit(&mut image, &plan);
    assert!(partition(&image, id, 0).is_reassigning(), "6 is not in sync yet");
    let state = partition(&image, id, 0);
    let done = AlterPartition {
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: members(&[1, 2, 3, 4, 5, 6], &image),
        ..catch_up
    };
    let plan = c.alter_partition(&image, &done).unwrap();
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!(state.replicas, vec![4, 5, 6]);
    assert_eq!(state.isr, vec![4, 5, 6]);
    assert_eq!(state.leader, 4);
    assert!(!state.is_reassigning());
    assert!(Controller::list_reassignments(&image).is_empty());

    // Cancelling: back to the original replicas.
    let again = PartitionReassignment {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![4, 5, 1]),
    };
    let plan = c.alter_reassignments(&image, vec![again]);
    commit(&mut image, &plan);
    let cancel = PartitionReassignment {
        topic: "t".into(),
        partition: 0,
        target: None,
    };
    let plan = c.alter_reassignments(&image, vec![cancel.clone()]);
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!(state.replicas, vec![4, 5, 6]);
    assert!(!state.is_reassigning());
    let plan = c.alter_reassignments(&image, vec![cancel]);
    assert_eq!(plan.reply[0].1, Err(ControllerError::NoReassignmentInProgress));
}

#[test]
fn preferred_and_unclean_elections_answer_as_kafka_does() {
    let mut image = cluster(3, 0);
    let mut c = controller(&image);
    let id = create(&mut c, &mut image, topic("t", 1, 2));
    let state = partition(&image, id, 0);
    let plan = c.elect_leaders(
        &image,
        Election::Preferred,
        Some(vec![("t".into(), 0), ("nope".into(), 0)]),
    );
    assert_eq!(plan.reply[0].1, Err(ControllerError::ElectionNotNeeded));
    assert!(matches!(
        plan.reply[1].1,
        Err(ControllerError::UnknownTopicOrPartition(_))
    ));

    // Both replicas fenced, the first one last: it alone is eligible. It never comes back;
    // the other does, and only an unclean election brings the partition online.
    let (first, second) = (state.replicas[0], state.replicas[1]);
    let third = (1..=3).find(|b| !state.replicas.contains(b)).unwrap();
    heartbeat_all(&mut c, &mut image, &[first, third], 5_000);
    let plan = c.tick(&image, SESSION_MS);
    commit(&mut image, &plan);
    heartbeat_all(&mut c, &mut image, &[third], 10_000);
    let plan = c.tick(&image, 5_000 + SESSION_MS);
    commit(&mut image, &plan);
    assert_eq!(partition(&image, id, 0).leader, NO_LEADER);
    let epoch = image.broker(second).unwrap().epoch;
    let plan = c
        .register_broker(&image, 20_000, registration(second, 5, epoch))
        .unwrap();
    commit(&mut image, &plan);
    heartbeat_all(&mut c, &mut image, &[second], 20_000);
    assert_eq!(partition(&image, id, 0).leader, NO_LEADER);
    let plan = c.elect_leaders(&image, Election::Preferred, Some(vec![("t".into(), 0)]));
    assert_eq!(plan.reply[0].1, Err(ControllerError::PreferredLeaderNotAvailable));
    let plan = c.elect_leaders(&image, Election::Unclean, Some(vec![("t".into(), 0)]));
    assert_eq!(plan.reply[0].1, Ok(()));
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!(state.leader, second);
    assert_eq!(state.leader_recovery_state, LeaderRecoveryState::Recovering);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut image = cluster(2, 0);
    let mut c = controller(&image);
    let mut blocks = Vec::new();
    for id in [1, 2, 1] {
        let epoch = image.broker(id).unwrap().epoch;
        let plan = c.allocate_producer_ids(&image, id, epoch).unwrap();
        blocks.push(plan.reply);
        commit(&mut image, &plan);
    }
    assert_eq!(
        blocks.iter().map(|b| b.first_producer_id).collect::<Vec<_>>(),
        vec![0, 1000, 2000]
    );
    assert!(matches!(
        c.allocate_producer_ids(&image, 1, 999),
        Err(ControllerError::StaleBrokerEpoch { .. })
    ));
}

#[test]
fn reserved_producer_ids_are_never_handed_out() {
    let mut image = cluster(2, 0);
    let mut c = controller(&image);
    let epoch = image.broker(1).unwrap().epoch;
    let plan = c.reserve_producer_ids(&image, 1, epoch, 4_321).unwrap();
    commit(&mut image, &plan);
    let block = c
        .allocate_producer_ids(&image, 2, image.broker(2).unwrap().epoch)
        .unwrap();
    assert_eq!(block.reply.first_producer_id, 4_321);
    commit(&mut image, &block);
    // Below where the cluster already is: nothing to write.
    let plan = c.reserve_producer_ids(&image, 1, epoch, 10).unwrap();
    assert!(plan.records.is_empty());
}

#[test]
fn configs_are_set_removed_and_replaced() {
    let mut image = cluster(1, 0);
    let mut c = controller(&image);
    create(&mut c, &mut image, topic("t", 1, 1));
    let resource = ConfigResource::Topic("t".into());
    let set = |name: &str, value: Option<&str>| ConfigOp {
        name: name.into(),
        value: value.map(str::to_string),
    };
    let plan = c
        .alter_configs(
            &image,
            resource.clone(),
            vec![
                set("retention.ms", Some("1000")),
                set("cleanup.policy", Some("compact")),
            ],
            false,
            false,
        )
        .unwrap();
    commit(&mut image, &plan);
    assert_eq!(image.config(&resource, "retention.ms"), Some("1000"));
    let plan = c
        .alter_configs(
            &image,
            resource.clone(),
            vec![set("retention.ms", Some("1000"))],
            true,
            false,
        )
        .unwrap();
    assert_eq!(plan.records.len(), 1, "only the removal: retention.ms is unchanged");
    commit(&mut image, &plan);
    assert_eq!(image.config(&resource, "cleanup.policy"), None);
    assert!(matches!(
        c.alter_configs(&image, ConfigResource::Topic("nope".into()), vec![], false, false),
        Err(ControllerError::UnknownTopicOrPartition(_))
    ));
    let plan = c
        .alter_configs(
            &image,
            ConfigResource::BrokerDefault,
            vec![set("log.flush.interval.messages", Some("1"))],
            false,
            true,
        )
        .unwrap();
    assert!(plan.records.is_empty(), "validate only");
}

#[test]
fn deleting_topics_removes_them_and_their_configs() {
    let mut image = cluster(1, 0);
    let mut c = controller(&image);
    let mut t = topic("t", 2, 1);
    t.configs = vec![("retention.ms".into(), "5".into())];
    create(&mut c, &mut image, t);
    let plan = c.delete_topics(&image, vec!["t".into(), "t".into(), "nope".into()]);
    assert_eq!(plan.records.len(), 1);
    assert!(plan.reply[0].1.is_ok() && plan.reply[1].1.is_ok());
    assert!(matches!(
        plan.reply[2].1,
        Err(ControllerError::UnknownTopicOrPartition(_))
    ));
    commit(&mut image, &plan);
    assert!(image.topic_by_name("t").is_none());
    assert!(image.configs(&ConfigResource::Topic("t".into())).is_none());
}

#[test]
fn a_single_replica_partition_comes_back_after_its_broker_crashed() {
    let mut image = cluster(2, 0);
    let mut c = controller(&image);
    let assignment = CreateTopic {
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, vec![1])],
        ..topic("solo", 1, 1)
    };
    let id = create(&mut c, &mut image, assignment);
    heartbeat_all(&mut c, &mut image, &[2], 5_000);
    let plan = c.tick(&image, SESSION_MS);
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!((state.leader, state.elr.clone()), (NO_LEADER, vec![1]));

    // It restarts after a crash (no clean shutdown epoch): not eligible any more, but the
    // last known replica; once it is back it leads again, recovering.
    let plan = c.register_broker(&image, 20_000, registration(1, 111, -1)).unwrap();
    commit(&mut image, &plan);
    let state = partition(&image, id, 0);
    assert_eq!(
        (state.leader, state.elr.clone(), state.last_known_elr.clone()),
        (NO_LEADER, vec![], vec![1])
    );
    heartbeat_all(&mut c, &mut image, &[1], 20_000);
    let state = partition(&image, id, 0);
    assert_eq!(state.leader, 1);
    assert_eq!(state.leader_recovery_state, LeaderRecoveryState::Recovering);
}
