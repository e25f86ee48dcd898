//! The controller under random crashes, restarts, writes and ISR changes: a model of which
//! replicas hold every committed record checks that no committed record can be lost.
//!
//! The model: a write commits (the high watermark passes it) only when the leader and every
//! ISR member are alive and the ISR has at least `min.insync.replicas` members (KIP-966); the
//! replicas holding every committed record ("complete") are then exactly the ISR. A replica
//! taken back into the ISR has caught up with its leader, so it is complete. A broker that
//! crashes uncleanly loses its unflushed tail and is no longer complete; one that stops
//! cleanly keeps everything.
//!
//! After every committed plan: the leader is in the ISR, ISR and ELR are disjoint subsets of
//! the replicas, epochs only move forward, and every live broker that leads, is in the ISR or
//! is eligible holds every committed record. A failing case prints its operations; proptest
//! replays it from its seed.

use std::collections::BTreeSet;

use proptest::prelude::*;
use strom_metadata::controller::{
    AlterPartition, BrokerHeartbeat, BrokerRegistrationRequest, CreateTopic, IsrMember, Registered,
};
use strom_metadata::election::Election;
use strom_metadata::{
    BrokerId, Controller, ControllerConfig, Endpoint, LeaderRecoveryState, MetadataImage, Plan, NO_LEADER,
};
use uuid::Uuid;

const BROKERS: i32 = 4;
const PARTITIONS: i32 = 3;
const SESSION_MS: i64 = 9_000;
const TOPIC: Uuid = Uuid::from_u128(42);

#[derive(Debug, Clone)]
enum Op {
    Crash { broker: BrokerId, clean: bool },
    Restart { broker: BrokerId },
    Write { partition: i32 },
    Shrink { partition: i32, pick: usize },
    Expand { partition: i32, pick: usize },
    PassTime { ms: i64 },
    PreferredElection,
    ControlledShutdown { broker: BrokerId },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1..=BROKERS, any::<bool>()).prop_map(|(broker, clean)| Op::Crash { broker, clean }),
        3 => (1..=BROKERS).prop_map(|broker| Op::Restart { broker }),
        4 => (0..PARTITIONS).prop_map(|partition| Op::Write { partition }),
        2 => (0..PARTITIONS, 0..4usize).prop_map(|(partition, pick)| Op::Shrink { partition, pick }),
        3 => (0..PARTITIONS, 0..4usize).prop_map(|(partition, pick)| Op::Expand { partition, pick }),
        2 => (1_000..12_000i64).prop_map(|ms| Op::PassTime { ms }),
        1 => Just(Op::PreferredElection),
        1 => (1..=BROKERS).prop_map(|broker| Op::ControlledShutdown { broker }),
    ]
}

struct Sim {
    image: MetadataImage,
    controller: Controller,
    now: i64,
    alive: BTreeSet<BrokerId>,
    /// Per partition: the brokers holding every committed record.
    complete: Vec<BTreeSet<BrokerId>>,
    /// A broker's last cleanly closed session, named when it registers again.
    clean_epoch: [i64; BROKERS as usize + 1],
    incarnation: u128,
}

impl Sim {
    fn new(min_isr: i32) -> Sim {
        let image = MetadataImage::new();
        let controller = Controller::new(
            ControllerConfig {
                broker_session_timeout_ms: SESSION_MS,
                min_insync_replicas: min_isr,
                leader_imbalance_check_interval_ms: 5_000,
                ..ControllerConfig::default()
            },
            &image,
            0,
        );
        let mut sim = Sim {
            image,
            controller,
            now: 0,
            alive: BTreeSet::new(),
            complete: vec![(1..=BROKERS).collect(); PARTITIONS as usize],
            clean_epoch: [-1; BROKERS as usize + 1],
            incarnation: 0,
        };
        for b in 1..=BROKERS {
            sim.start(b);
        }
        let plan = sim.controller.create_topics(
            &sim.image,
            vec![CreateTopic {
                name: "t".into(),
                id: TOPIC,
                num_partitions: PARTITIONS,
                replication_factor: 3,
                assignments: Vec::new(),
                configs: Vec::new(),
            }],
            false,
        );
        sim.commit(&plan);
        sim
    }

    fn commit<R>(&mut self, plan: &Plan<R>) {
        let before = self.image.clone();
        let offset = self.image.offset + 1;
        let (_, errors) = self.image.apply_batch(offset, &plan.records);
        assert!(errors.is_empty(), "plan did not apply: {errors:?}");
        self.check(&before);
        for (_, partition, state) in self.image.partitions() {
            if state.leader_recovery_state == LeaderRecoveryState::Recovering {
                self.complete[partition as usize] = BTreeSet::from([state.leader]);
            }
        }
    }

    fn start(&mut self, broker: BrokerId) {
        self.incarnation += 1;
        let request = BrokerRegistrationRequest {
            id: broker,
            incarnation_id: Uuid::from_u128(self.incarnation),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: 0,
            }],
            rack: None,
            previous_broker_epoch: self.clean_epoch[broker as usize],
        };
        match self.controller.register_broker(&self.image, self.now, request) {
            Ok(plan) => {
                assert_eq!(plan.reply, Registered::AtCommitIndex);
                self.commit(&plan);
                self.alive.insert(broker);
                self.heartbeat(broker, false);
            }
            // Its old session is still alive in the controller's eyes: try again later.
            Err(e) => assert!(
                matches!(e, strom_metadata::ControllerError::DuplicateBrokerRegistration(_)),
                "{e}"
            ),
        }
    }

    fn heartbeat(&mut self, broker: BrokerId, want_shutdown: bool) {
        let Some(registration) = self.image.broker(broker) else {
            return;
        };
        let request = BrokerHeartbeat {
            id: broker,
            epoch: registration.epoch,
            metadata_offset: self.image.offset,
            want_fence: false,
            want_shutdown,
        };
        let plan = self
            .controller
            .heartbeat(&self.image, self.now, &request)
            .expect("current session");
        self.commit(&plan);
    }

    fn leader_request(&self, partition: i32, isr: Vec<BrokerId>) -> Option<AlterPartition> {
        let state = self.image.partition(&TOPIC, partition)?;
        if !self.alive.contains(&state.leader) {
            return None;
        }
        Some(AlterPartition {
            broker_id: state.leader,
            broker_epoch: self.image.broker(state.leader)?.epoch,
            topic_id: TOPIC,
            partition,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: isr
                .iter()
                .map(|b| IsrMember {
                    id: *b,
                    broker_epoch: self.image.broker(*b).map_or(-1, |r| r.epoch),
                })
                .collect(),
            leader_recovery_state: LeaderRecoveryState::Recovered,
        })
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Crash { broker, clean } => {
                if self.alive.remove(&broker) {
                    if clean {
                        self.clean_epoch[broker as usize] = self.image.broker(broker).map_or(-1, |b| b.epoch);
                    } else {
                        self.clean_epoch[broker as usize] = -1;
                        for complete in &mut self.complete {
                            complete.remove(&broker);
                        }
                    }
                }
            }
            Op::Restart { broker } => {
                if !self.alive.contains(&broker) {
                    self.start(broker);
                }
            }
            Op::Write { partition } => {
                let state = self.image.partition(&TOPIC, partition).expect("partition").clone();
                let min_isr = self.controller.config().min_insync_replicas as usize;
                let all_up = state.isr.iter().all(|b| self.alive.contains(b));
                if state.leader != NO_LEADER && all_up && state.isr.len() >= min_isr {
                    self.complete[partition as usize] = state.isr.iter().copied().collect();
                }
            }
            Op::Shrink { partition, pick } => {
                let state = self.image.partition(&TOPIC, partition).expect("partition").clone();
                let followers: Vec<BrokerId> = state.isr.iter().copied().filter(|b| *b != state.leader).collect();
                if followers.is_empty() {
                    return;
                }
                let gone = followers[pick % followers.len()];
                let isr = state.isr.iter().copied().filter(|b| *b != gone).collect();
                if let Some(request) = self.leader_request(partition, isr) {
                    if let Ok(plan) = self.controller.alter_partition(&self.image, &request) {
                        self.commit(&plan);
                    }
                }
            }
            Op::Expand { partition, pick } => {
                let state = self.image.partition(&TOPIC, partition).expect("partition").clone();
                let outside: Vec<BrokerId> = state
                    .replicas
                    .iter()
                    .copied()
                    .filter(|b| !state.isr.contains(b) && self.alive.contains(b))
                    .collect();
                if outside.is_empty() {
                    return;
                }
                let joining = outside[pick % outside.len()];
                let mut isr = state.isr.clone();
                isr.push(joining);
                if let Some(request) = self.leader_request(partition, isr) {
                    if let Ok(plan) = self.controller.alter_partition(&self.image, &request) {
                        // It fetched everything its leader has before being taken back in.
                        if self.complete[partition as usize].contains(&state.leader) {
                            self.complete[partition as usize].insert(joining);
                        }
                        self.commit(&plan);
                    }
                }
            }
            Op::PassTime { ms } => {
                self.now += ms;
                let alive: Vec<BrokerId> = self.alive.iter().copied().collect();
                for b in alive {
                    self.heartbeat(b, false);
                }
                let plan = self.controller.tick(&self.image, self.now);
                self.commit(&plan);
            }
            Op::PreferredElection => {
                let plan = self.controller.elect_leaders(&self.image, Election::Preferred, None);
                self.commit(&plan);
            }
            Op::ControlledShutdown { broker } => {
                if self.alive.contains(&broker) && self.image.is_usable(broker) {
                    self.heartbeat(broker, true);
                    self.heartbeat(broker, true);
                    self.run(&Op::Crash { broker, clean: true });
                }
            }
        }
    }

    fn check(&self, before: &MetadataImage) {
        for (topic, partition, state) in self.image.partitions() {
            let p = partition as usize;
            if state.leader != NO_LEADER {
                assert!(state.isr.contains(&state.leader), "leader outside the ISR: {state:?}");
            }
            assert!(state.isr.iter().all(|b| state.replicas.contains(b)), "{state:?}");
            assert!(state.elr.iter().all(|b| state.replicas.contains(b)), "{state:?}");
            assert!(
                state.isr.iter().all(|b| !state.elr.contains(b)),
                "ISR and ELR overlap: {state:?}"
            );
            assert!(
                state.isr.iter().all(|b| self.image.is_usable(*b)),
                "unusable broker in the ISR: {state:?}"
            );
            if let Some(old) = before.partition(&topic.id, partition) {
                assert!(state.leader_epoch >= old.leader_epoch && state.partition_epoch >= old.partition_epoch);
                if state.leader != old.leader {
                    assert!(
                        state.leader_epoch > old.leader_epoch,
                        "leader changed without a new epoch"
                    );
                }
            }
            if state.leader_recovery_state == LeaderRecoveryState::Recovering {
                // KIP-966's recovery of the last known replicas after they all stopped
                // uncleanly: the only way back, and one that may have lost what they had not
                // flushed. What it holds is the partition's truth from here on.
                assert!(
                    before
                        .partition(&topic.id, partition)
                        .is_some_and(|old| old.leader == NO_LEADER
                            || old.leader_recovery_state == LeaderRecoveryState::Recovering),
                    "a recovering leader replaced a live one: {state:?}"
                );
                continue;
            }
            let complete = &self.complete[p];
            for b in state.isr.iter().chain(state.elr.iter()).chain([state.leader].iter()) {
                if *b != NO_LEADER && self.alive.contains(b) && self.image.is_usable(*b) {
                    assert!(
                        complete.contains(b),
                        "partition {partition}: live broker {b} may lead without every committed record \
                         (complete: {complete:?}, state: {state:?})"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("STROM_SAFETY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_committed_record_is_lost_by_a_controller_decision(
        min_isr in 1..=2i32,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut sim = Sim::new(min_isr);
        for op in &ops {
            sim.run(op);
        }
    }
}
