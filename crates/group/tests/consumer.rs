//! KIP-848 consumer groups as pure logic: heartbeats and a fake clock in, assignments out.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strom_group::{
    Assignment, ConsumerHeartbeat, ConsumerHeartbeatAnswer, Coordinator, GroupConfig, GroupError, JoinRequest,
    MemberRef, OffsetToCommit, Output,
};

const GROUP: &str = "cg";

fn topics(partitions: i32) -> BTreeMap<String, i32> {
    BTreeMap::from([("t".to_string(), partitions), ("other".to_string(), 2)])
}

fn join(topics_subscribed: &[&str]) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        group_id: GROUP.into(),
        member_id: String::new(),
        member_epoch: 0,
        instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 30_000,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        subscribed_topic_names: Some(topics_subscribed.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: None,
        server_assignor: None,
        owned: None,
    }
}

/// A member as a client sees it: the assignment it acts on, its epoch.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    epoch: i32,
    owned: Assignment,
}

struct Harness {
    coordinator: Coordinator,
    now_ms: i64,
    topics: BTreeMap<String, i32>,
}

impl Harness {
    fn new(partitions: i32) -> Harness {
        Harness {
            coordinator: Coordinator::new(GroupConfig::default(), 3),
            now_ms: 1_000_000,
            topics: topics(partitions),
        }
    }

    fn send(&mut self, request: ConsumerHeartbeat) -> Result<ConsumerHeartbeatAnswer, GroupError> {
        self.coordinator.consumer_heartbeat(self.now_ms, request, &self.topics)
    }

    fn join(&mut self, subscribed: &[&str]) -> Client {
        let answer = self.send(join(subscribed)).expect("join");
        Client {
            member_id: answer.member_id,
            epoch: answer.member_epoch,
            owned: answer.assignment.expect("a joining member gets its assignment"),
        }
    }

    /// One heartbeat reporting what the client owns; the client then acts on the answer.
    fn heartbeat(&mut self, client: &mut Client) -> Result<(), GroupError> {
        let request = ConsumerHeartbeat {
            member_id: client.member_id.clone(),
            member_epoch: client.epoch,
            subscribed_topic_names: None,
            owned: Some(client.owned.clone()),
            ..join(&[])
        };
        let answer = self.send(request)?;
        client.epoch = answer.member_epoch;
        if let Some(assignment) = answer.assignment {
            client.owned = assignment;
        }
        Ok(())
    }

    /// Heartbeats every client round-robin until nothing changes for a full round.
    fn settle(&mut self, clients: &mut [Client]) {
        for _ in 0..20 {
            let before: Vec<(i32, Assignment)> = clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            for client in clients.iter_mut() {
                self.heartbeat(client).expect("heartbeat");
                assert_disjoint(clients_view(&self.coordinator));
            }
            let after: Vec<(i32, Assignment)> = clients.iter().map(|c| (c.epoch, c.owned.clone())).collect();
            if before == after {
                return;
            }
        }
        panic!("the group did not settle in 20 rounds");
    }
}

/// Every member's current assignment as the coordinator describes it.
fn clients_view(coordinator: &Coordinator) -> Vec<Assignment> {
    coordinator
        .describe_consumer_group(GROUP)
        .map(|group| group.members.into_iter().map(|m| m.assignment).collect())
        .unwrap_or_default()
}

fn assert_disjoint(assignments: Vec<Assignment>) {
    let mut seen = BTreeSet::new();
    for assignment in assignments {
        for (topic, partitions) in assignment {
            for partition in partitions {
                assert!(
                    seen.insert((topic.clone(), partition)),
                    "{topic}/{partition} held twice"
                );
            }
        }
    }
}

fn count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

#[test]
fn a_first_member_gets_every_subscribed_partition_at_once() {
    let mut h = Harness::new(4);
    let a = h.join(&["t"]);
    assert!(a.member_id.starts_with("client-"));
    assert_eq!(a.epoch, 1);
    assert_eq!(
        a.owned,
        BTreeMap::from([("t".to_string(), BTreeSet::from([0, 1, 2, 3]))])
    );
    let group = h.coordinator.describe_consumer_group(GROUP).unwrap();
    assert_eq!(
        (group.state, group.group_epoch, group.assignor.as_str()),
        ("Stable", 1, "uniform")
    );
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let mut h = Harness::new(4);
    let mut a = h.join(&["t"]);
    let mut b = h.join(&["t"]);
    assert_eq!(count(&b.owned), 0, "nothing free yet: a holds all four");
    // a is told to give up two partitions and keeps its epoch until it reports them gone.
    let old_epoch = a.epoch;
    h.heartbeat(&mut a).unwrap();
    assert_eq!(count(&a.owned), 2);
    assert_eq!(a.epoch, old_epoch, "revoking first, epoch later");
    assert_eq!(
        h.coordinator.describe_consumer_group(GROUP).unwrap().state,
        "Reconciling"
    );
    h.heartbeat(&mut a).unwrap();
    assert_eq!(a.epoch, 2, "revocation reported: a moves to the new epoch");
    h.heartbeat(&mut b).unwrap();
    assert_eq!(count(&b.owned), 2);
    assert_eq!(b.epoch, 2);
    assert_disjoint(vec![a.owned.clone(), b.owned.clone()]);
    assert_eq!(h.coordinator.describe_consumer_group(GROUP).unwrap().state, "Stable");
}

#[test]
fn a_leaving_member_hands_its_partitions_to_the_rest() {
    let mut h = Harness::new(4);
    let mut clients = vec![h.join(&["t"]), h.join(&["t"])];
    h.settle(&mut clients);
    let leaving = clients.pop().unwrap();
    let answer = h
        .send(ConsumerHeartbeat {
            member_id: leaving.member_id.clone(),
            member_epoch: -1,
            ..join(&[])
        })
        .unwrap();
    assert_eq!(answer.member_epoch, -1);
    h.settle(&mut clients);
    assert_eq!(count(&clients[0].owned), 4);
}

#[test]
fn a_silent_member_is_removed_when_its_session_ends() {
    let mut h = Harness::new(4);
    let mut clients = vec![h.join(&["t"]), h.join(&["t"])];
    h.settle(&mut clients);
    let deadline = h.coordinator.next_deadline().expect("sessions run");
    h.now_ms = deadline - 1;
    h.heartbeat(&mut clients[0]).unwrap();
    h.now_ms = deadline;
    h.coordinator.tick(h.now_ms);
    let mut survivor = vec![clients[0].clone()];
    h.settle(&mut survivor);
    assert_eq!(count(&survivor[0].owned), 4);
    let silent = &clients[1];
    let stale = ConsumerHeartbeat {
        member_id: silent.member_id.clone(),
        member_epoch: silent.epoch,
        ..join(&[])
    };
    assert_eq!(h.send(stale), Err(GroupError::UnknownMemberId));
}

#[test]
fn stale_epochs_are_fenced_and_unknown_members_refused() {
    let mut h = Harness::new(4);
    let mut clients = vec![h.join(&["t"]), h.join(&["t"])];
    h.settle(&mut clients);
    let zombie = ConsumerHeartbeat {
        member_id: clients[0].member_id.clone(),
        member_epoch: clients[0].epoch + 5,
        ..join(&[])
    };
    assert_eq!(h.send(zombie), Err(GroupError::FencedMemberEpoch));
    let stranger = ConsumerHeartbeat {
        member_id: "nobody".into(),
        member_epoch: 3,
        ..join(&[])
    };
    assert_eq!(h.send(stranger), Err(GroupError::UnknownMemberId));
    let mut bad_assignor = join(&["t"]);
    bad_assignor.server_assignor = Some("magic".into());
    assert_eq!(h.send(bad_assignor), Err(GroupError::UnsupportedAssignor));
}

#[test]
fn regex_subscriptions_and_the_range_assignor() {
    let mut h = Harness::new(3);
    let mut first = join(&[]);
    first.subscribed_topic_names = None;
    first.subscribed_topic_regex = Some("t|oth.*".into());
    first.server_assignor = Some("range".into());
    let a = h.send(first.clone()).unwrap();
    let everything = a.assignment.unwrap();
    assert_eq!(count(&everything), 5, "three of t and two of other");
    let b = h.send(first).unwrap();
    let mut clients = vec![
        Client {
            member_id: a.member_id,
            epoch: a.member_epoch,
            owned: everything,
        },
        Client {
            member_id: b.member_id,
            epoch: b.member_epoch,
            owned: b.assignment.unwrap(),
        },
    ];
    h.settle(&mut clients);
    // Range: per topic, contiguous ranges in member id order; the first gets the extra one.
    let group = h.coordinator.describe_consumer_group(GROUP).unwrap();
    assert_eq!(group.assignor, "range");
    let totals: Vec<usize> = group.members.iter().map(|m| count(&m.assignment)).collect();
    assert_eq!(totals, vec![3, 2]);
    let mut bad = join(&[]);
    bad.subscribed_topic_regex = Some("(".into());
    assert_eq!(h.send(bad), Err(GroupError::InvalidRegularExpression));
}

#[test]
fn classic_and_consumer_groups_keep_to_their_own_ids() {
    let mut h = Harness::new(2);
    let a = h.join(&["t"]);
    let mut classic = JoinRequest {
        group_id: GROUP.into(),
        client_id: "c".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::new())],
        ..JoinRequest::default()
    };
    h.coordinator.join(h.now_ms, 1, classic.clone());
    let answers: Vec<Output> = h
        .coordinator
        .take_outputs()
        .into_iter()
        .filter(|output| matches!(output, Output::Join { .. }))
        .collect();
    assert!(
        matches!(&answers[..], [Output::Join { answer, .. }] if answer.error == Some(GroupError::InconsistentGroupProtocol))
    );
    // Commits carry the member epoch in the generation field.
    let offsets = [OffsetToCommit {
        topic: "t".into(),
        partition: 0,
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
    }];
    let member = MemberRef {
        group_id: GROUP.into(),
        generation_id: a.epoch,
        member_id: a.member_id.clone(),
        group_instance_id: None,
    };
    assert!(h.coordinator.prepare_commit(h.now_ms, &member, &offsets).is_ok());
    let stale = MemberRef {
        generation_id: a.epoch - 1,
        ..member
    };
    assert_eq!(
        h.coordinator.prepare_commit(h.now_ms, &stale, &offsets).err(),
        Some(GroupError::StaleMemberEpoch)
    );
    // A classic group with members is not a consumer group.
    classic.group_id = "classic".into();
    classic.require_known_member_id = false;
    h.coordinator.join(h.now_ms, 2, classic);
    h.coordinator.take_outputs();
    let mut heartbeat = join(&["t"]);
    heartbeat.group_id = "classic".into();
    assert_eq!(h.send(heartbeat), Err(GroupError::GroupIdNotFound));
    let listed: Vec<(String, &str)> = h
        .coordinator
        .list_groups()
        .into_iter()
        .map(|g| (g.group_id, g.group_type))
        .collect();
    assert_eq!(
        listed,
        vec![("cg".to_string(), "consumer"), ("classic".to_string(), "classic")]
    );
}

/// What the coordinator wrote, replayed into a fresh one (a broker restart), gives back the
/// group: members keep their epochs and assignments and carry on heartbeating.
#[test]
fn replaying_the_snapshots_restores_the_group() {
    let mut h = Harness::new(4);
    let mut clients = vec![h.join(&["t"]), h.join(&["t"])];
    h.settle(&mut clients);
    let records: Vec<strom_group::Record> = h
        .coordinator
        .take_outputs()
        .into_iter()
        .filter_map(|output| match output {
            Output::Persist(record) => Some(record),
            _ => None,
        })
        .collect();
    assert!(!records.is_empty(), "changes were written");
    let before = h.coordinator.describe_consumer_group(GROUP).unwrap();
    let mut restarted = Coordinator::new(GroupConfig::default(), 9);
    for record in records {
        let (key, value) = record.encode();
        restarted.apply(h.now_ms, strom_group::Record::decode(key, value).unwrap());
    }
    assert_eq!(restarted.describe_consumer_group(GROUP).unwrap(), before);
    h.coordinator = restarted;
    let epochs: Vec<i32> = clients.iter().map(|c| c.epoch).collect();
    h.settle(&mut clients);
    assert_eq!(
        clients.iter().map(|c| c.epoch).collect::<Vec<_>>(),
        epochs,
        "no new epoch"
    );
    assert_eq!(clients.iter().map(|c| count(&c.owned)).sum::<usize>(), 4);
}

/// KIP-848 static membership: a member with an instance id that leaves with epoch -2 keeps
/// its partitions reserved; its next incarnation gets them back, and the group epoch and the
/// other member are untouched.
#[test]
fn a_static_member_returns_to_its_partitions_without_a_new_epoch() {
    let mut h = Harness::new(4);
    let mut static_join = join(&["t"]);
    static_join.instance_id = Some("instance-a".into());
    let answer = h.send(static_join.clone()).unwrap();
    let mut clients = vec![
        Client {
            member_id: answer.member_id,
            epoch: answer.member_epoch,
            owned: answer.assignment.unwrap(),
        },
        h.join(&["t"]),
    ];
    h.settle(&mut clients);
    let group_epoch = h.coordinator.describe_consumer_group(GROUP).unwrap().group_epoch;
    let kept = clients[0].owned.clone();
    let leave = ConsumerHeartbeat {
        member_id: clients[0].member_id.clone(),
        member_epoch: -2,
        instance_id: Some("instance-a".into()),
        ..join(&[])
    };
    assert_eq!(h.send(leave).unwrap().member_epoch, -2);
    // The other member keeps its share; nothing moves while the instance is away.
    let mut other = vec![clients[1].clone()];
    h.settle(&mut other);
    assert_eq!(count(&other[0].owned), 2);
    // Back with a new member id: the same partitions at once.
    let back = h.send(static_join.clone()).unwrap();
    assert_ne!(back.member_id, clients[0].member_id);
    assert_eq!(back.assignment.as_ref(), Some(&kept));
    assert_eq!(
        h.coordinator.describe_consumer_group(GROUP).unwrap().group_epoch,
        group_epoch
    );
    // While the instance is held by a live member, another claim is refused.
    assert_eq!(h.send(static_join), Err(GroupError::UnreleasedInstanceId));
}

proptest! {
    /// Whatever members join, leave and heartbeat, no partition is ever held by two members,
    /// and once everyone heartbeats enough the group is balanced and owns every partition.
    #[test]
    fn members_never_share_a_partition_and_converge(
        partitions in 1i32..12,
        steps in prop::collection::vec((0u8..4, 0usize..8), 1..40),
    ) {
        let mut h = Harness::new(partitions);
        let mut clients: Vec<Client> = Vec::new();
        for (action, index) in steps {
            match action {
                0 if clients.len() < 6 => clients.push(h.join(&["t"])),
                1 if !clients.is_empty() => {
                    let leaving = clients.remove(index % clients.len());
                    let request = ConsumerHeartbeat { member_id: leaving.member_id, member_epoch: -1, ..join(&[]) };
                    h.send(request).unwrap();
                }
                _ if !clients.is_empty() => {
                    let at = index % clients.len();
                    let mut client = clients[at].clone();
                    h.heartbeat(&mut client).unwrap();
                    clients[at] = client;
                }
                _ => {}
            }
            assert_disjoint(clients_view(&h.coordinator));
        }
        if !clients.is_empty() {
            h.settle(&mut clients);
            let counts: Vec<usize> = clients.iter().map(|c| count(&c.owned)).collect();
            prop_assert_eq!(counts.iter().sum::<usize>(), partitions as usize, "every partition owned");
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            prop_assert!(max - min <= 1, "balanced: {:?}", counts);
        }
    }
}
