//! Deterministic simulation of a replicated partition set: three brokers running the
//! replication logic of this crate under the controller of `strom-metadata`, over a simulated
//! network and clock, with faults. One seed is one run; a failing seed reproduces from its
//! number (`STROM_SIM_SEED=<n> cargo test -p strom-replication --test simulation`).
//!
//! Fault model:
//! - network: messages lost, duplicated, delayed (so reordered); a node cut off from
//!   everyone (controller included) for a while; one direction between two nodes cut;
//! - nodes: crash and restart, losing the unflushed tail of every log (no fsync per write, as
//!   Kafka's default) or, for a clean stop, nothing;
//! - the controller is one reliable process (the metadata quorum's own faults are openraft's
//!   and are tested there); brokers reach it only when not cut off, and apply its committed
//!   records late, each at its own pace.
//!
//! Checked at every step:
//! - records below a high watermark a leader ever reached are never lost or changed: every
//!   acting leader holds them, at their offsets;
//! - a leader's high watermark never goes back;
//! - at most one broker ever leads a partition in a given leader epoch;
//! - the logs of a leader and its in-sync followers agree below the high watermark;
//! - an acknowledged acks=all record is one of those records, and acknowledged records of a
//!   partition keep their send order.
//!
//! After the faults stop, every node restarts and the cluster runs fault-free for a while; the
//! checks hold there too, and every replica of a partition with a leader converges.

use std::collections::BTreeMap;

use strom_metadata::controller::{
    AlterPartition, BrokerHeartbeat, BrokerRegistrationRequest, ControllerError, CreateTopic, IsrMember,
};
use strom_metadata::{
    Controller, ControllerConfig, Endpoint, LeaderRecoveryState, MetadataImage, MetadataRecord, Plan, NO_LEADER,
};
use strom_replication::{diverging_epoch, truncation, AcksAll, Assignment, EpochEndOffset, Leader, ReplicaConfig};
use uuid::Uuid;

type BrokerId = i32;

const BROKERS: i32 = 3;
const PARTITIONS: i32 = 2;
const TOPIC: Uuid = Uuid::from_u128(7);
const CLIENT: i32 = -1;
const CONTROLLER: i32 = 0;

const SESSION_MS: i64 = 3_000;
const HEARTBEAT_MS: i64 = 400;
const LAG_MS: i64 = 2_000;
const FETCH_TIMEOUT_MS: i64 = 500;
const PROPOSAL_RESEND_MS: i64 = 1_000;
const PRODUCE_TIMEOUT_MS: i64 = 4_000;
const FETCH_MAX_RECORDS: usize = 8;

/// splitmix64: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    epoch: i32,
    value: u64,
}

#[derive(Debug, Clone)]
enum FetchResult {
    Records {
        entries: Vec<Entry>,
        high_watermark: i64,
    },
    Diverging(EpochEndOffset),
    /// FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER: wait for metadata.
    Refused,
}

#[derive(Debug, Clone)]
enum Payload {
    Fetch {
        partition: i32,
        broker_epoch: i64,
        leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    },
    FetchReply {
        partition: i32,
        leader_epoch: i32,
        fetch_offset: i64,
        result: FetchResult,
    },
    AlterPartition(AlterPartition),
    AlterPartitionReply {
        partition: i32,
        leader_epoch: i32,
        refused: bool,
    },
    Produce {
        partition: i32,
        value: u64,
    },
    ProduceReply {
        partition: i32,
        value: u64,
        offset: Option<i64>,
    },
}

#[derive(Debug, Clone)]
struct Message {
    from: i32,
    to: i32,
    deliver_at: i64,
    payload: Payload,
}

enum Role {
    None,
    Leader {
        leader: Leader,
        proposal_sent_ms: Option<i64>,
    },
    Follower {
        leader: BrokerId,
        leader_epoch: i32,
        /// (fetch offset, deadline) of the fetch in flight.
        in_flight: Option<(i64, i64)>,
    },
}

struct Replica {
    log: Vec<Entry>,
    flushed: usize,
    high_watermark: i64,
    role: Role,
}

impl Replica {
    fn new() -> Replica {
        Replica {
            log: Vec::new(),
            flushed: 0,
            high_watermark: 0,
            role: Role::None,
        }
    }
    fn end(&self) -> i64 {
        self.log.len() as i64
    }
    fn last_epoch(&self) -> i32 {
        self.log.last().map_or(-1, |e| e.epoch)
    }
    /// OffsetForLeaderEpoch on this log: (largest epoch <= `epoch`, where the next began).
    fn end_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let first = self.log.first()?;
        if epoch < first.epoch {
            return Some((epoch, 0));
        }
        let floor = self.log.iter().rev().find(|e| e.epoch <= epoch)?.epoch;
        let next = self
            .log
            .iter()
            .position(|e| e.epoch > floor)
            .map_or(self.end(), |i| i as i64);
        Some((floor, next))
    }
    fn truncate(&mut self, offset: i64) {
        self.log.truncate(offset.max(0) as usize);
        self.flushed = self.flushed.min(self.log.len());
        self.high_watermark = self.high_watermark.min(self.end());
    }
}

struct Waiter {
    partition: i32,
    offset: i64,
    value: u64,
    leader_epoch: i32,
}

struct Broker {
    id: BrokerId,
    alive: bool,
    incarnation: u128,
    /// The epoch of our registration once committed.
    epoch: Option<i64>,
    last_clean_epoch: i64,
    image: MetadataImage,
    applied: usize,
    replicas: BTreeMap<i32, Replica>,
    waiters: Vec<Waiter>,
    next_heartbeat_ms: i64,
}

struct Produced {
    value: u64,
    sent_ms: i64,
    to: BrokerId,
}

struct World {
    rng: Rng,
    now: i64,
    faults: bool,
    producing: bool,
    controller: Controller,
    controller_image: MetadataImage,
    metadata_log: Vec<Vec<MetadataRecord>>,
    brokers: Vec<Broker>,
    network: Vec<Message>,
    /// Nodes cut off from everyone until the time given.
    isolated: BTreeMap<i32, i64>,
    /// One direction cut (from, to) until the time given.
    one_way: BTreeMap<(i32, i32), i64>,
    // The client.
    next_value: Vec<u64>,
    in_flight: Vec<Option<Produced>>,
    acked: Vec<Vec<(i64, u64)>>,
    // The checks' memory.
    committed: Vec<BTreeMap<i64, Entry>>,
    leaders_by_epoch: BTreeMap<(i32, i32), BrokerId>,
    incarnations: u128,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    acked: usize,
    crashes: usize,
    elections: usize,
    truncations: usize,
    recoveries: usize,
}

fn loss_free(payload: &Payload) -> bool {
    matches!(payload, Payload::Produce { .. } | Payload::ProduceReply { .. })
}

impl World {
    fn new(seed: u64, min_isr: i32) -> World {
        let controller_image = MetadataImage::new();
        let controller = Controller::new(
            ControllerConfig {
                broker_session_timeout_ms: SESSION_MS,
                min_insync_replicas: min_isr,
                leader_imbalance_check_interval_ms: 5_000,
                ..ControllerConfig::default()
            },
            &controller_image,
            0,
        );
        let mut world = World {
            rng: Rng(seed),
            now: 0,
            faults: true,
            producing: true,
            controller,
            controller_image,
            metadata_log: Vec::new(),
            brokers: (1..=BROKERS)
                .map(|id| Broker {
                    id,
                    alive: false,
                    incarnation: 0,
                    epoch: None,
                    last_clean_epoch: -1,
                    image: MetadataImage::new(),
                    applied: 0,
                    replicas: BTreeMap::new(),
                    waiters: Vec::new(),
                    next_heartbeat_ms: 0,
                })
                .collect(),
            network: Vec::new(),
            isolated: BTreeMap::new(),
            one_way: BTreeMap::new(),
            next_value: vec![1; PARTITIONS as usize],
            in_flight: (0..PARTITIONS).map(|_| None).collect(),
            acked: vec![Vec::new(); PARTITIONS as usize],
            committed: vec![BTreeMap::new(); PARTITIONS as usize],
            leaders_by_epoch: BTreeMap::new(),
            incarnations: 0,
            stats: Stats::default(),
        };
        for id in 1..=BROKERS {
            world.start(id);
        }
        // Let every broker register and unfence before the topic is created.
        for _ in 0..2_000 {
            world.step_brokers();
            world.now += 1;
            if (1..=BROKERS).all(|b| world.controller_image.is_usable(b)) {
                break;
            }
        }
        assert!(
            (1..=BROKERS).all(|b| world.controller_image.is_usable(b)),
            "brokers never unfenced"
        );
        let plan = world.controller.create_topics(
            &world.controller_image,
            vec![CreateTopic {
                name: "t".into(),
                id: TOPIC,
                num_partitions: PARTITIONS,
                replication_factor: BROKERS as i16,
                assignments: Vec::new(),
                configs: Vec::new(),
            }],
            false,
        );
        world.commit(&plan);
        world
    }

    fn commit<R>(&mut self, plan: &Plan<R>) -> u64 {
        if plan.records.is_empty() {
            return self.controller_image.offset;
        }
        self.metadata_log.push(plan.records.clone());
        let offset = self.metadata_log.len() as u64;
        let (_, errors) = self.controller_image.apply_batch(offset, &plan.records);
        assert!(errors.is_empty(), "controller plan did not apply: {errors:?}");
        offset
    }

    fn reaches(&self, from: i32, to: i32) -> bool {
        let cut = |node: i32| self.isolated.get(&node).is_some_and(|until| *until > self.now);
        !cut(from) && !cut(to) && self.one_way.get(&(from, to)).is_none_or(|until| *until <= self.now)
    }

    fn send(&mut self, from: i32, to: i32, payload: Payload) {
        let reliable = loss_free(&payload);
        if self.faults && !reliable && self.rng.chance(20_000) {
            return; // lost
        }
        let copies = if self.faults && !reliable && self.rng.chance(10_000) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(if self.faults { 30 } else { 5 }) as i64;
            self.network.push(Message {
                from,
                to,
                deliver_at: self.now + delay,
                payload: payload.clone(),
            });
        }
    }

    fn broker(&mut self, id: BrokerId) -> &mut Broker {
        &mut self.brokers[(id - 1) as usize]
    }

    // ---- broker life ----

    fn start(&mut self, id: BrokerId) {
        self.incarnations += 1;
        let incarnation = self.incarnations;
        let b = self.broker(id);
        b.alive = true;
        b.incarnation = incarnation;
        b.epoch = None;
        b.image = MetadataImage::new();
        b.applied = 0;
        b.next_heartbeat_ms = 0;
        for replica in b.replicas.values_mut() {
            replica.role = Role::None;
            replica.high_watermark = replica.high_watermark.min(replica.end());
        }
    }

    fn crash(&mut self, id: BrokerId, clean: bool) {
        let now = self.now;
        let b = self.broker(id);
        if !b.alive {
            return;
        }
        b.alive = false;
        b.last_clean_epoch = if clean { b.epoch.unwrap_or(-1) } else { -1 };
        for replica in b.replicas.values_mut() {
            if clean {
                replica.flushed = replica.log.len();
            } else {
                let keep = replica.flushed as i64;
                replica.truncate(keep);
            }
            replica.role = Role::None;
        }
        b.waiters.clear();
        self.network.retain(|m| m.to != id && m.from != id);
        self.stats.crashes += 1;
        let _ = now;
    }

    fn step_brokers(&mut self) {
        for id in 1..=BROKERS {
            if !self.brokers[(id - 1) as usize].alive {
                continue;
            }
            self.registration_and_heartbeat(id);
            self.apply_metadata(id);
            self.follower_fetches(id);
            self.leader_ticks(id);
            if self.rng.chance(2_000) {
                for replica in self.broker(id).replicas.values_mut() {
                    replica.flushed = replica.log.len();
                }
            }
        }
    }

    fn registration_and_heartbeat(&mut self, id: BrokerId) {
        let now = self.now;
        if now < self.brokers[(id - 1) as usize].next_heartbeat_ms || !self.reaches(id, CONTROLLER) {
            return;
        }
        self.broker(id).next_heartbeat_ms = now + HEARTBEAT_MS;
        let b = &self.brokers[(id - 1) as usize];
        match b.epoch {
            None => {
                let request = BrokerRegistrationRequest {
                    id,
                    incarnation_id: Uuid::from_u128(b.incarnation),
                    endpoints: vec![Endpoint {
                        name: "PLAINTEXT".into(),
                        host: "127.0.0.1".into(),
                        port: 9092,
                        security_protocol: 0,
                    }],
                    rack: None,
                    previous_broker_epoch: b.last_clean_epoch,
                };
                if let Ok(plan) = self.controller.register_broker(&self.controller_image, now, request) {
                    let epoch = match plan.reply {
                        strom_metadata::controller::Registered::AtCommitIndex => self.commit(&plan) as i64,
                        strom_metadata::controller::Registered::Existing { epoch } => epoch,
                    };
                    self.broker(id).epoch = Some(epoch);
                }
            }
            Some(epoch) => {
                let request = BrokerHeartbeat {
                    id,
                    epoch,
                    metadata_offset: b.image.offset,
                    want_fence: false,
                    want_shutdown: false,
                };
                match self.controller.heartbeat(&self.controller_image, now, &request) {
                    Ok(plan) => {
                        self.commit(&plan);
                    }
                    Err(ControllerError::StaleBrokerEpoch { .. } | ControllerError::BrokerNotRegistered(_)) => {
                        // Our session was replaced: start over as a new process would.
                        self.crash(id, false);
                        self.start(id);
                    }
                    Err(e) => panic!("unexpected heartbeat error {e}"),
                }
            }
        }
    }

    fn apply_metadata(&mut self, id: BrokerId) {
        if !self.reaches(id, CONTROLLER) {
            return;
        }
        let batches = if self.faults { self.rng.below(3) as usize } else { 2 };
        let mut changed = false;
        for _ in 0..batches {
            let applied = self.brokers[(id - 1) as usize].applied;
            if applied >= self.metadata_log.len() {
                break;
            }
            let records = self.metadata_log[applied].clone();
            let b = self.broker(id);
            let (_, errors) = b.image.apply_batch(applied as u64 + 1, &records);
            assert!(errors.is_empty());
            b.applied += 1;
            changed = true;
        }
        if changed {
            self.reconcile(id);
        }
    }

    /// Takes the roles the broker's image gives it.
    fn reconcile(&mut self, id: BrokerId) {
        let now = self.now;
        let b = &self.brokers[(id - 1) as usize];
        let Some(epoch) = b.epoch else { return };
        if b.image.broker(id).is_none_or(|r| r.epoch != epoch) {
            return; // our registration is not applied yet
        }
        let min_isr = self.controller.config().min_insync_replicas as usize;
        let states: Vec<(i32, strom_metadata::PartitionState)> = b
            .image
            .topic(&TOPIC)
            .map(|t| t.partitions.iter().map(|(p, s)| (*p, s.clone())).collect())
            .unwrap_or_default();
        for (partition, state) in states {
            let assignment = Assignment {
                replicas: state.replicas.clone(),
                isr: state.isr.clone(),
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch,
            };
            let b = self.broker(id);
            let replica = b.replicas.entry(partition).or_insert_with(Replica::new);
            let lost_waiters;
            if state.leader == id {
                match &mut replica.role {
                    Role::Leader { leader, .. } if leader.leader_epoch() == state.leader_epoch => {
                        if let Some(hw) = leader.update_assignment(assignment, now) {
                            replica.high_watermark = hw;
                        }
                        lost_waiters = false;
                    }
                    _ => {
                        let leader = Leader::new(
                            id,
                            ReplicaConfig {
                                replica_lag_time_max_ms: LAG_MS,
                                min_insync_replicas: min_isr,
                            },
                            assignment,
                            replica.end(),
                            replica.high_watermark,
                            now,
                        );
                        replica.high_watermark = leader.high_watermark();
                        replica.role = Role::Leader {
                            leader,
                            proposal_sent_ms: None,
                        };
                        lost_waiters = true;
                        if state.leader_recovery_state == LeaderRecoveryState::Recovering {
                            // Every replica stopped uncleanly and KIP-966's recovery brought the
                            // last known one back: what the replicas lost with their unflushed
                            // tails is lost (Kafka's contract without fsync per write). Checks
                            // start over from this leader's log.
                            self.committed[partition as usize].clear();
                            self.acked[partition as usize].clear();
                            self.stats.recoveries += 1;
                        }
                        let key = (partition, state.leader_epoch);
                        let previous = self.leaders_by_epoch.insert(key, id);
                        assert!(
                            previous.is_none_or(|p| p == id),
                            "two leaders of partition {partition} in epoch {}: {previous:?} and {id}",
                            state.leader_epoch
                        );
                        self.stats.elections += 1;
                    }
                }
            } else if state.replicas.contains(&id) && state.leader != NO_LEADER {
                match &replica.role {
                    Role::Follower { leader_epoch, .. } if *leader_epoch == state.leader_epoch => lost_waiters = false,
                    _ => {
                        replica.role = Role::Follower {
                            leader: state.leader,
                            leader_epoch: state.leader_epoch,
                            in_flight: None,
                        };
                        lost_waiters = true;
                    }
                }
            } else {
                lost_waiters = !matches!(replica.role, Role::None);
                replica.role = Role::None;
            }
            if lost_waiters {
                self.fail_waiters(id, partition);
            }
            self.answer_waiters(id, partition);
        }
    }

    fn fail_waiters(&mut self, id: BrokerId, partition: i32) {
        let b = self.broker(id);
        let (failed, kept): (Vec<Waiter>, Vec<Waiter>) = b.waiters.drain(..).partition(|w| w.partition == partition);
        b.waiters = kept;
        for w in failed {
            self.send(
                id,
                CLIENT,
                Payload::ProduceReply {
                    partition,
                    value: w.value,
                    offset: None,
                },
            );
        }
    }

    /// Answers acks=all produces the high watermark has passed, and records what it passed.
    fn answer_waiters(&mut self, id: BrokerId, partition: i32) {
        let b = &self.brokers[(id - 1) as usize];
        let Some(replica) = b.replicas.get(&partition) else {
            return;
        };
        let Role::Leader { leader, .. } = &replica.role else {
            return;
        };
        // Everything below the leader's high watermark is committed from now on.
        let committed = &mut self.committed[partition as usize];
        for offset in 0..replica.high_watermark {
            let entry = replica.log[offset as usize];
            match committed.get(&offset) {
                Some(known) => assert_eq!(
                    *known, entry,
                    "partition {partition} offset {offset}: committed {known:?}, leader {id} has {entry:?}"
                ),
                None => {
                    committed.insert(offset, entry);
                }
            }
        }
        let mut answers = Vec::new();
        let mut kept = Vec::new();
        let epoch = leader.leader_epoch();
        let b = self.broker(id);
        let Role::Leader { leader, .. } = &b.replicas[&partition].role else {
            unreachable!()
        };
        for w in b.waiters.drain(..) {
            if w.partition != partition {
                kept.push(w);
                continue;
            }
            assert_eq!(w.leader_epoch, epoch);
            match leader.acks_all(w.offset) {
                AcksAll::Waiting => kept.push(w),
                AcksAll::Acknowledged => answers.push((w.value, Some(w.offset))),
                AcksAll::NotEnoughReplicasAfterAppend => answers.push((w.value, None)),
            }
        }
        b.waiters = kept;
        for (value, offset) in answers {
            self.send(
                id,
                CLIENT,
                Payload::ProduceReply {
                    partition,
                    value,
                    offset,
                },
            );
        }
    }

    fn follower_fetches(&mut self, id: BrokerId) {
        let now = self.now;
        let epoch = self.brokers[(id - 1) as usize].epoch.unwrap_or(-1);
        let mut sends = Vec::new();
        for (partition, replica) in self.broker(id).replicas.iter_mut() {
            let end = replica.end();
            let last_fetched_epoch = replica.last_epoch();
            if let Role::Follower {
                leader,
                leader_epoch,
                in_flight,
            } = &mut replica.role
            {
                if in_flight.is_none_or(|(_, deadline)| deadline <= now) {
                    *in_flight = Some((end, now + FETCH_TIMEOUT_MS));
                    sends.push((
                        *leader,
                        Payload::Fetch {
                            partition: *partition,
                            broker_epoch: epoch,
                            leader_epoch: *leader_epoch,
                            fetch_offset: end,
                            last_fetched_epoch,
                        },
                    ));
                }
            }
        }
        for (to, payload) in sends {
            self.send(id, to, payload);
        }
    }

    fn leader_ticks(&mut self, id: BrokerId) {
        let now = self.now;
        let broker_epoch = self.brokers[(id - 1) as usize].epoch.unwrap_or(-1);
        let mut proposals = Vec::new();
        for (partition, replica) in self.broker(id).replicas.iter_mut() {
            if let Role::Leader {
                leader,
                proposal_sent_ms,
            } = &mut replica.role
            {
                let proposal = match leader.tick(now) {
                    Some(p) => Some(p),
                    None if proposal_sent_ms.is_some_and(|t| now - t > PROPOSAL_RESEND_MS) => leader.pending_proposal(),
                    None => None,
                };
                if let Some(p) = proposal {
                    *proposal_sent_ms = Some(now);
                    proposals.push((*partition, p));
                }
            }
        }
        for (partition, p) in proposals {
            self.send_proposal(id, broker_epoch, partition, p);
        }
    }

    fn send_proposal(&mut self, id: BrokerId, broker_epoch: i64, partition: i32, p: strom_replication::IsrProposal) {
        let request = AlterPartition {
            broker_id: id,
            broker_epoch,
            topic_id: TOPIC,
            partition,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: p
                .isr
                .iter()
                .map(|(b, e)| IsrMember {
                    id: *b,
                    broker_epoch: *e,
                })
                .collect(),
            leader_recovery_state: LeaderRecoveryState::Recovered,
        };
        self.send(id, CONTROLLER, Payload::AlterPartition(request));
    }

    // ---- message handling ----

    fn deliver(&mut self, message: Message) {
        let Message { from, to, payload, .. } = message;
        if !self.reaches(from, to) {
            return;
        }
        if to >= 1 && !self.brokers[(to - 1) as usize].alive {
            return;
        }
        match payload {
            Payload::Fetch {
                partition,
                broker_epoch,
                leader_epoch,
                fetch_offset,
                last_fetched_epoch,
            } => self.on_fetch(
                to,
                from,
                partition,
                broker_epoch,
                leader_epoch,
                fetch_offset,
                last_fetched_epoch,
            ),
            Payload::FetchReply {
                partition,
                leader_epoch,
                fetch_offset,
                result,
            } => self.on_fetch_reply(to, partition, leader_epoch, fetch_offset, result),
            Payload::AlterPartition(request) => {
                let partition = request.partition;
                let leader_epoch = request.leader_epoch;
                let refused = match self.controller.alter_partition(&self.controller_image, &request) {
                    Ok(plan) => {
                        self.commit(&plan);
                        false
                    }
                    Err(ControllerError::IneligibleReplica(_) | ControllerError::InvalidRequest(_)) => true,
                    Err(_) => false,
                };
                self.send(
                    CONTROLLER,
                    from,
                    Payload::AlterPartitionReply {
                        partition,
                        leader_epoch,
                        refused,
                    },
                );
            }
            Payload::AlterPartitionReply {
                partition,
                leader_epoch,
                refused,
            } => {
                if let Some(Replica {
                    role:
                        Role::Leader {
                            leader,
                            proposal_sent_ms,
                        },
                    ..
                }) = self.broker(to).replicas.get_mut(&partition)
                {
                    if refused && leader.leader_epoch() == leader_epoch {
                        leader.on_proposal_refused();
                        *proposal_sent_ms = None;
                    }
                }
            }
            Payload::Produce { partition, value } => self.on_produce(to, partition, value),
            Payload::ProduceReply {
                partition,
                value,
                offset,
            } => {
                let slot = &mut self.in_flight[partition as usize];
                if slot.as_ref().is_some_and(|p| p.value == value) {
                    *slot = None;
                    if let Some(offset) = offset {
                        self.acked[partition as usize].push((offset, value));
                        self.stats.acked += 1;
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_fetch(
        &mut self,
        id: BrokerId,
        follower: BrokerId,
        partition: i32,
        broker_epoch: i64,
        leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    ) {
        let now = self.now;
        let eligible = self.brokers[(id - 1) as usize].image.is_usable(follower);
        let broker_epoch_here = self.brokers[(id - 1) as usize].epoch.unwrap_or(-1);
        let Some(replica) = self.broker(id).replicas.get_mut(&partition) else {
            return;
        };
        let end_for = replica.end_for_epoch(last_fetched_epoch);
        let log_end = replica.end();
        let mut proposal = None;
        let result = match &mut replica.role {
            Role::Leader {
                leader,
                proposal_sent_ms,
            } if leader.leader_epoch() == leader_epoch => {
                match diverging_epoch(last_fetched_epoch, fetch_offset, end_for) {
                    Some(d) => FetchResult::Diverging(d),
                    None => {
                        let outcome = leader.on_follower_fetch(follower, broker_epoch, fetch_offset, eligible, now);
                        if let Some(hw) = outcome.high_watermark {
                            replica.high_watermark = hw;
                        }
                        if outcome.proposal.is_some() {
                            *proposal_sent_ms = Some(now);
                            proposal = outcome.proposal;
                        }
                        let from = fetch_offset.min(log_end) as usize;
                        let to = (from + FETCH_MAX_RECORDS).min(replica.log.len());
                        FetchResult::Records {
                            entries: replica.log[from..to].to_vec(),
                            high_watermark: replica.high_watermark,
                        }
                    }
                }
            }
            _ => FetchResult::Refused,
        };
        if let Some(p) = proposal {
            self.send_proposal(id, broker_epoch_here, partition, p);
        }
        if matches!(result, FetchResult::Records { .. }) {
            self.answer_waiters(id, partition);
        }
        self.send(
            id,
            follower,
            Payload::FetchReply {
                partition,
                leader_epoch,
                fetch_offset,
                result,
            },
        );
    }

    fn on_fetch_reply(
        &mut self,
        id: BrokerId,
        partition: i32,
        leader_epoch: i32,
        fetch_offset: i64,
        result: FetchResult,
    ) {
        let Some(replica) = self.broker(id).replicas.get_mut(&partition) else {
            return;
        };
        let end = replica.end();
        let hw = replica.high_watermark;
        let Role::Follower {
            leader_epoch: current,
            in_flight,
            ..
        } = &mut replica.role
        else {
            return;
        };
        if *current != leader_epoch || in_flight.is_none_or(|(offset, _)| offset != fetch_offset) || fetch_offset != end
        {
            return; // an answer to an older fetch
        }
        *in_flight = None;
        match result {
            FetchResult::Records {
                entries,
                high_watermark,
            } => {
                replica.log.extend(entries);
                replica.high_watermark = replica.high_watermark.max(high_watermark.min(replica.end()));
            }
            FetchResult::Diverging(d) => {
                let local = replica.end_for_epoch(d.epoch);
                let t = truncation(d, local, end, hw);
                replica.truncate(t.offset);
                self.stats.truncations += 1;
            }
            FetchResult::Refused => {}
        }
    }

    fn on_produce(&mut self, id: BrokerId, partition: i32, value: u64) {
        let Some(replica) = self.broker(id).replicas.get_mut(&partition) else {
            self.send(
                id,
                CLIENT,
                Payload::ProduceReply {
                    partition,
                    value,
                    offset: None,
                },
            );
            return;
        };
        let Role::Leader { leader, .. } = &mut replica.role else {
            self.send(
                id,
                CLIENT,
                Payload::ProduceReply {
                    partition,
                    value,
                    offset: None,
                },
            );
            return;
        };
        if leader.check_acks_all().is_err() {
            self.send(
                id,
                CLIENT,
                Payload::ProduceReply {
                    partition,
                    value,
                    offset: None,
                },
            );
            return;
        }
        let epoch = leader.leader_epoch();
        replica.log.push(Entry { epoch, value });
        let offset = replica.log.len() as i64 - 1;
        if let Some(hw) = leader.on_append(offset + 1) {
            replica.high_watermark = hw;
        }
        self.broker(id).waiters.push(Waiter {
            partition,
            offset,
            value,
            leader_epoch: epoch,
        });
        self.answer_waiters(id, partition);
    }

    // ---- the client ----

    fn client(&mut self) {
        for partition in 0..PARTITIONS {
            let p = partition as usize;
            if let Some(produced) = &self.in_flight[p] {
                if self.now - produced.sent_ms < PRODUCE_TIMEOUT_MS {
                    continue;
                }
                // Timed out: its fate is unknown; move on to the next value.
                let _ = produced.to;
                self.in_flight[p] = None;
            }
            if !self.producing || !self.rng.chance(300_000) {
                continue;
            }
            let Some(state) = self.controller_image.partition(&TOPIC, partition) else {
                continue;
            };
            if state.leader == NO_LEADER {
                continue;
            }
            let value = self.next_value[p];
            self.next_value[p] += 1;
            self.in_flight[p] = Some(Produced {
                value,
                sent_ms: self.now,
                to: state.leader,
            });
            let leader = state.leader;
            self.send(CLIENT, leader, Payload::Produce { partition, value });
        }
    }

    // ---- faults ----

    fn faults(&mut self) {
        if !self.faults {
            return;
        }
        let node = 1 + self.rng.below(BROKERS as u64) as i32;
        if self.rng.chance(300) {
            let clean = self.rng.chance(300_000);
            self.crash(node, clean);
        }
        if !self.brokers[(node - 1) as usize].alive && self.rng.chance(1_500) {
            self.start(node);
        }
        if self.rng.chance(150) {
            let until = self.now + 500 + self.rng.below(6_000) as i64;
            self.isolated.insert(node, until);
        }
        if self.rng.chance(150) {
            let other = 1 + self.rng.below(BROKERS as u64) as i32;
            let target = if other == node { CONTROLLER } else { other };
            let until = self.now + 500 + self.rng.below(6_000) as i64;
            self.one_way.insert((node, target), until);
        }
    }

    // ---- the run ----

    fn step(&mut self) {
        self.now += 1;
        self.faults();
        let plan = self.controller.tick(&self.controller_image, self.now);
        self.commit(&plan);
        self.step_brokers();
        self.client();
        let now = self.now;
        let mut due: Vec<Message> = Vec::new();
        let mut later = Vec::new();
        for m in self.network.drain(..) {
            if m.deliver_at <= now {
                due.push(m);
            } else {
                later.push(m);
            }
        }
        self.network = later;
        // Equal delivery times in a random order.
        for i in (1..due.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            due.swap(i, j);
        }
        for m in due {
            self.deliver(m);
        }
        self.check();
    }

    fn check(&self) {
        for partition in 0..PARTITIONS {
            let p = partition as usize;
            let committed = &self.committed[p];
            for b in self.brokers.iter().filter(|b| b.alive) {
                let Some(replica) = b.replicas.get(&partition) else {
                    continue;
                };
                let Role::Leader { leader, .. } = &replica.role else {
                    continue;
                };
                assert!(replica.high_watermark <= replica.end());
                assert_eq!(replica.high_watermark, leader.high_watermark());
                // A leader of an older epoch that has not heard of its successor (cut off, or
                // slow to apply metadata) may lack what was committed since; it cannot commit
                // anything of its own (its ISR includes the new leader, which no longer fetches
                // from it), and a conflicting commit would fail in `answer_waiters`.
                let newest_epoch = self
                    .leaders_by_epoch
                    .range((partition, i32::MIN)..=(partition, i32::MAX))
                    .map(|((_, epoch), _)| *epoch)
                    .max();
                if newest_epoch != Some(leader.leader_epoch()) {
                    continue;
                }
                for (offset, entry) in committed {
                    assert_eq!(
                        replica.log.get(*offset as usize),
                        Some(entry),
                        "partition {partition}: leader {} (epoch {}) lacks committed offset {offset}",
                        b.id,
                        leader.leader_epoch()
                    );
                }
                // In-sync followers of this leadership agree below the high watermark.
                for follower in self
                    .brokers
                    .iter()
                    .filter(|f| f.alive && f.id != b.id && leader.isr().contains(&f.id))
                {
                    let Some(fr) = follower.replicas.get(&partition) else {
                        continue;
                    };
                    let following =
                        matches!(fr.role, Role::Follower { leader_epoch, .. } if leader_epoch == leader.leader_epoch());
                    if !following {
                        continue;
                    }
                    let upto = replica.high_watermark.min(fr.end()) as usize;
                    assert_eq!(
                        &fr.log[..upto],
                        &replica.log[..upto],
                        "partition {partition}: follower {} disagrees with leader {} below the high watermark",
                        follower.id,
                        b.id
                    );
                }
            }
            let mut last = (-1i64, 0u64);
            for (offset, value) in &self.acked[p] {
                assert_eq!(
                    committed.get(offset).map(|e| e.value),
                    Some(*value),
                    "partition {partition}: acknowledged value {value} at {offset} is not committed there"
                );
                assert!(*offset > last.0 && *value > last.1, "acknowledged records out of order");
                last = (*offset, *value);
            }
        }
    }
}

fn run(seed: u64, steps: u64) -> Stats {
    let min_isr = 1 + (seed % 2) as i32;
    let mut world = World::new(seed, min_isr);
    for _ in 0..steps {
        world.step();
    }
    // Heal: no more faults, every node up, time to settle.
    world.faults = false;
    world.isolated.clear();
    world.one_way.clear();
    for id in 1..=BROKERS {
        if !world.brokers[(id - 1) as usize].alive {
            world.start(id);
        }
    }
    for _ in 0..10_000 {
        world.step();
    }
    // Quiet: nothing new, so every in-sync replica can catch up.
    world.producing = false;
    for _ in 0..5_000 {
        world.step();
    }
    // Every replica of a partition that has a leader has converged to the leader's log.
    for partition in 0..PARTITIONS {
        let Some(state) = world.controller_image.partition(&TOPIC, partition).cloned() else {
            continue;
        };
        if state.leader == NO_LEADER {
            continue;
        }
        let leader_log = world.brokers[(state.leader - 1) as usize].replicas[&partition]
            .log
            .clone();
        for follower in &state.isr {
            let log = &world.brokers[(follower - 1) as usize].replicas[&partition].log;
            let first_difference = log.iter().zip(&leader_log).position(|(a, b)| a != b);
            assert!(
                log == &leader_log,
                "seed {seed}: partition {partition}: ISR member {follower} did not converge: {} records against the \
                 leader's {}, first difference at {first_difference:?}",
                log.len(),
                leader_log.len()
            );
        }
    }
    world.stats
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("STROM_SIM_SEED") {
        return vec![seed.parse().expect("STROM_SIM_SEED is a number")];
    }
    let count: u64 = std::env::var("STROM_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let first: u64 = std::env::var("STROM_SIM_FIRST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    (first..first + count).collect()
}

#[test]
fn replication_under_faults_loses_no_committed_record() {
    let steps: u64 = std::env::var("STROM_SIM_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let mut total = Stats::default();
    for seed in seeds() {
        let result = std::panic::catch_unwind(|| run(seed, steps));
        match result {
            Ok(stats) => {
                total.acked += stats.acked;
                total.crashes += stats.crashes;
                total.elections += stats.elections;
                total.truncations += stats.truncations;
                total.recoveries += stats.recoveries;
            }
            Err(e) => {
                eprintln!("simulation seed {seed} failed; reproduce with STROM_SIM_SEED={seed}");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!("simulation: {total:?}");
    assert!(
        total.acked > 0 && total.crashes > 0 && total.elections > 0,
        "the faults and the load did not happen: {total:?}"
    );
}
