//! The classic group protocol driven as pure logic: requests and a fake clock in, answers out.

use bytes::Bytes;
use strom_group::{
    Coordinator, GroupConfig, GroupError, GroupState, JoinAnswer, JoinRequest, LeavingMember, MemberRef,
    OffsetToCommit, Output, Record, SyncAnswer, SyncRequest, Token,
};

const GROUP: &str = "g";
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

struct Harness {
    coordinator: Coordinator,
    now_ms: i64,
    next_token: Token,
    /// Every record the coordinator asked to persist, in order.
    persisted: Vec<Record>,
}

/// One JoinGroup or SyncGroup in flight: its token, and its answer once given.
struct Call {
    token: Token,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        })
    }

    fn with(config: GroupConfig) -> Harness {
        Harness {
            coordinator: Coordinator::new(config, 42),
            now_ms: 1_000_000,
            next_token: 0,
            persisted: Vec::new(),
        }
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.next_token
    }

    fn join_request(&self, member_id: &str, instance: Option<&str>, topics: &str) -> JoinRequest {
        JoinRequest {
            group_id: GROUP.into(),
            member_id: member_id.into(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: vec![
                ("range".into(), Bytes::from(format!("range:{topics}"))),
                ("roundrobin".into(), Bytes::from(format!("rr:{topics}"))),
            ],
            require_known_member_id: true,
        }
    }

    fn send_join(&mut self, request: JoinRequest) -> Call {
        let token = self.token();
        self.coordinator.join(self.now_ms, token, request);
        Call { token }
    }

    fn send_sync(&mut self, generation_id: i32, member_id: &str, assignments: &[(&str, &str)]) -> Call {
        let token = self.token();
        let request = SyncRequest {
            group_id: GROUP.into(),
            generation_id,
            member_id: member_id.into(),
            assignments: assignments
                .iter()
                .map(|(member, assignment)| (member.to_string(), Bytes::from(assignment.to_string())))
                .collect(),
            ..SyncRequest::default()
        };
        self.coordinator.sync(self.now_ms, token, request);
        Call { token }
    }

    /// Drains the outputs, keeping records; returns the answers.
    fn drain(&mut self) -> Vec<Output> {
        let mut answers = Vec::new();
        for output in self.coordinator.take_outputs() {
            match output {
                Output::Persist(record) => self.persisted.push(record),
                answer => answers.push(answer),
            }
        }
        answers
    }

    fn join_answer(answers: &[Output], call: &Call) -> Option<JoinAnswer> {
        answers.iter().find_map(|output| match output {
            Output::Join { token, answer } if *token == call.token => Some(answer.clone()),
            _ => None,
        })
    }

    fn sync_answer(answers: &[Output], call: &Call) -> Option<Result<SyncAnswer, GroupError>> {
        answers.iter().find_map(|output| match output {
            Output::Sync { token, answer } if *token == call.token => Some(answer.clone()),
            _ => None,
        })
    }

    /// A new dynamic member's two-step join (KIP-394); returns its member id and the call that
    /// waits for the generation.
    fn join_new(&mut self, topics: &str) -> (String, Call) {
        let first = self.send_join(self.join_request("", None, topics));
        let answers = self.drain();
        let answer = Harness::join_answer(&answers, &first).expect("an immediate answer");
        assert_eq!(answer.error, Some(GroupError::MemberIdRequired));
        assert!(answer.member_id.starts_with("client-"), "{}", answer.member_id);
        let member_id = answer.member_id;
        let second = self.send_join(self.join_request(&member_id, None, topics));
        (member_id, second)
    }

    fn heartbeat(&mut self, generation_id: i32, member_id: &str) -> Result<(), GroupError> {
        let request = MemberRef {
            group_id: GROUP.into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
        };
        self.coordinator.heartbeat(self.now_ms, &request)
    }

    fn advance(&mut self, ms: i64) -> Vec<Output> {
        self.now_ms += ms;
        self.coordinator.tick(self.now_ms);
        self.drain()
    }

    fn state(&self) -> GroupState {
        self.coordinator.describe_group(GROUP).expect("group exists").state
    }

    /// Brings a group of `count` fresh members to Stable; returns member ids (leader first) and
    /// the generation.
    fn stable_group(&mut self, count: usize) -> (Vec<String>, i32) {
        let mut calls: Vec<Call> = Vec::new();
        let mut ids = Vec::new();
        let mut answered: Vec<Output> = Vec::new();
        for _ in 0..count {
            let (id, call) = self.join_new("t");
            ids.push(id);
            calls.push(call);
            answered.extend(self.drain());
            // Earlier members that got an answer rejoin, as a client does when told the group
            // is rebalancing.
            for index in 0..ids.len() - 1 {
                if Harness::join_answer(&answered, &calls[index]).is_some() {
                    calls[index] = self.send_join(self.join_request(&ids[index], None, "t"));
                }
            }
            answered.extend(self.drain());
        }
        let joins: Vec<JoinAnswer> = calls
            .iter()
            .map(|call| Harness::join_answer(&answered, call).expect("every member joined"))
            .collect();
        let generation = joins[0].generation_id;
        let leader = joins[0].leader.clone();
        assert!(joins
            .iter()
            .all(|join| join.generation_id == generation && join.leader == leader));
        let mut ordered = vec![leader.clone()];
        ordered.extend(ids.iter().filter(|id| **id != leader).cloned());
        let assignments: Vec<(String, String)> = ordered
            .iter()
            .map(|id| (id.clone(), format!("assigned-to-{id}")))
            .collect();
        let refs: Vec<(&str, &str)> = assignments.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let mut syncs = Vec::new();
        for id in ordered.iter().skip(1) {
            syncs.push(self.send_sync(generation, id, &[]));
        }
        syncs.push(self.send_sync(generation, &leader, &refs));
        let answers = self.drain();
        for (call, id) in syncs.iter().zip(ordered.iter().skip(1).chain(std::iter::once(&leader))) {
            let answer = Harness::sync_answer(&answers, call)
                .expect("sync answered")
                .expect("sync ok");
            assert_eq!(answer.assignment, Bytes::from(format!("assigned-to-{id}")));
        }
        assert_eq!(self.state(), GroupState::Stable);
        (ordered, generation)
    }
}

#[test]
fn one_member_joins_syncs_and_is_stable() {
    let mut h = Harness::new();
    let (member_id, join) = h.join_new("t");
    let answers = h.drain();
    let answer = Harness::join_answer(&answers, &join).expect("completes at once with no delay");
    assert_eq!(answer.error, None);
    assert_eq!(answer.generation_id, 1);
    assert_eq!(answer.leader, member_id);
    assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    assert_eq!(answer.members.len(), 1, "the leader sees every member");
    assert_eq!(answer.members[0].metadata, Bytes::from("range:t"));
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(h.heartbeat(1, &member_id), Ok(()));
    let sync = h.send_sync(1, &member_id, &[(&member_id, "p0")]);
    let answers = h.drain();
    assert_eq!(
        Harness::sync_answer(&answers, &sync).unwrap().unwrap().assignment,
        Bytes::from("p0")
    );
    assert_eq!(h.state(), GroupState::Stable);
    assert!(
        matches!(h.persisted.last(), Some(Record::Group { metadata: Some(m), .. }) if m.generation_id == 1 && m.members.len() == 1),
        "the stable generation is persisted: {:?}",
        h.persisted
    );
}

#[test]
fn a_second_member_triggers_a_rebalance_that_waits_for_the_first() {
    let mut h = Harness::new();
    let (first, _) = h.stable_group(1);
    let first = first[0].clone();
    let (second, second_join) = h.join_new("t");
    assert!(
        Harness::join_answer(&h.drain(), &second_join).is_none(),
        "parked until the first rejoins"
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(1, &first), Err(GroupError::RebalanceInProgress));
    let first_join = h.send_join(h.join_request(&first, None, "t"));
    let answers = h.drain();
    let a = Harness::join_answer(&answers, &first_join).unwrap();
    let b = Harness::join_answer(&answers, &second_join).unwrap();
    assert_eq!((a.generation_id, b.generation_id), (2, 2));
    assert_eq!(a.leader, first, "the leader keeps leading");
    assert_eq!(a.members.len(), 2);
    assert!(b.members.is_empty(), "followers see no member list");
    assert_eq!(b.member_id, second);
}

#[test]
fn a_sync_waits_for_the_leader_and_a_rebalance_interrupts_it() {
    let mut h = Harness::new();
    let (_, first_join) = h.join_new("t");
    let answers = h.drain();
    let leader = Harness::join_answer(&answers, &first_join).unwrap().member_id;
    let (follower, follower_join) = h.join_new("t");
    // The leader rejoins for generation 2.
    let leader_join = h.send_join(h.join_request(&leader, None, "t"));
    let answers = h.drain();
    assert!(Harness::join_answer(&answers, &follower_join).is_some());
    assert!(Harness::join_answer(&answers, &leader_join).is_some());
    let follower_sync = h.send_sync(2, &follower, &[]);
    assert!(
        Harness::sync_answer(&h.drain(), &follower_sync).is_none(),
        "waits for the leader"
    );
    // A third member arrives before the leader's assignment: the waiting sync is told to rejoin.
    let (_, _third) = h.join_new("t");
    let answers = h.drain();
    assert_eq!(
        Harness::sync_answer(&answers, &follower_sync),
        Some(Err(GroupError::RebalanceInProgress))
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn wrong_generation_and_unknown_members_get_kafkas_errors() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group(2);
    assert_eq!(
        h.heartbeat(generation + 1, &members[0]),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(h.heartbeat(generation, "nobody"), Err(GroupError::UnknownMemberId));
    let sync = h.send_sync(generation - 1, &members[1], &[]);
    assert_eq!(
        Harness::sync_answer(&h.drain(), &sync),
        Some(Err(GroupError::IllegalGeneration))
    );
    let join = h.send_join(h.join_request("nobody", None, "t"));
    let answer = Harness::join_answer(&h.drain(), &join).unwrap();
    assert_eq!(answer.error, Some(GroupError::UnknownMemberId));
    // A member speaking another protocol cannot join.
    let mut other = h.join_request("", None, "t");
    other.protocols = vec![("cooperative-sticky".into(), Bytes::new())];
    let join = h.send_join(other);
    let answer = Harness::join_answer(&h.drain(), &join).unwrap();
    assert_eq!(answer.error, Some(GroupError::InconsistentGroupProtocol));
    let mut bad_timeout = h.join_request("", None, "t");
    bad_timeout.session_timeout_ms = 10;
    let join = h.send_join(bad_timeout);
    let answer = Harness::join_answer(&h.drain(), &join).unwrap();
    assert_eq!(answer.error, Some(GroupError::InvalidSessionTimeout));
    assert_eq!(h.heartbeat(generation, &members[0]), Ok(()), "the group is undisturbed");
    assert_eq!(h.state(), GroupState::Stable);
}

#[test]
fn a_member_whose_session_expires_is_removed_and_the_rest_rebalance() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group(2);
    // Only the first member keeps heartbeating.
    for _ in 0..4 {
        h.advance(i64::from(SESSION_MS) / 5);
        assert_eq!(h.heartbeat(generation, &members[0]), Ok(()));
    }
    assert_eq!(h.state(), GroupState::Stable);
    h.advance(i64::from(SESSION_MS) / 5);
    assert_eq!(h.state(), GroupState::PreparingRebalance, "the silent member expired");
    assert_eq!(
        h.heartbeat(generation, &members[0]),
        Err(GroupError::RebalanceInProgress)
    );
    let rejoin = h.send_join(h.join_request(&members[0], None, "t"));
    let answer = Harness::join_answer(&h.drain(), &rejoin).unwrap();
    assert_eq!(answer.generation_id, generation + 1);
    assert_eq!(answer.members.len(), 1);
    assert_eq!(
        h.heartbeat(generation + 1, &members[1]),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_dropped_at_the_rebalance_deadline() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group(2);
    let leave = h
        .coordinator
        .leave(h.now_ms, GROUP, &[])
        .expect("an empty leave is fine");
    assert!(leave.is_empty());
    // A subscription change by the first member starts a rebalance; the second stays silent
    // but keeps heartbeating, so only the rebalance timeout can end the wait.
    let rejoin = h.send_join(h.join_request(&members[0], None, "t,u"));
    assert!(Harness::join_answer(&h.drain(), &rejoin).is_none());
    let mut answer = None;
    for _ in 0..10 {
        let answers = h.advance(i64::from(REBALANCE_MS) / 8);
        let _ = h.heartbeat(generation, &members[1]);
        if let Some(found) = Harness::join_answer(&answers, &rejoin) {
            answer = Some(found);
            break;
        }
    }
    let answer = answer.expect("the rebalance ends at its deadline");
    assert_eq!(answer.generation_id, generation + 1);
    assert_eq!(answer.members.len(), 1, "the member that did not rejoin is gone");
}

#[test]
fn leaving_members_are_removed_and_the_group_ends_empty() {
    let mut h = Harness::new();
    let (members, _) = h.stable_group(2);
    let leaving: Vec<LeavingMember> = members
        .iter()
        .map(|id| LeavingMember {
            member_id: id.clone(),
            group_instance_id: None,
        })
        .chain(std::iter::once(LeavingMember {
            member_id: "nobody".into(),
            group_instance_id: None,
        }))
        .collect();
    let results = h.coordinator.leave(h.now_ms, GROUP, &leaving).unwrap();
    assert_eq!(results, vec![Ok(()), Ok(()), Err(GroupError::UnknownMemberId)]);
    h.drain();
    assert_eq!(h.state(), GroupState::Empty);
    assert!(matches!(h.persisted.last(), Some(Record::Group { metadata: Some(m), .. }) if m.members.is_empty()));
}

#[test]
fn the_initial_delay_waits_for_more_members_and_extends_while_they_come() {
    let mut h = Harness::with(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..GroupConfig::default()
    });
    let (_, first) = h.join_new("t");
    assert!(
        Harness::join_answer(&h.drain(), &first).is_none(),
        "the first member waits"
    );
    assert!(h.advance(2_000).is_empty());
    let (_, second) = h.join_new("t");
    assert!(h.drain().is_empty());
    // The first period ends at 3 s; a member joined during it, so another period follows.
    assert!(h.advance(1_000).is_empty());
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let answers = h.advance(3_000);
    let a = Harness::join_answer(&answers, &first).expect("answered after a quiet period");
    let b = Harness::join_answer(&answers, &second).expect("answered together");
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert_eq!(a.members.len() + b.members.len(), 2);
}

#[test]
fn a_restarted_static_member_gets_its_assignment_back_without_a_rebalance() {
    let mut h = Harness::new();
    let join = h.send_join(h.join_request("", Some("instance-a"), "t"));
    let answer = Harness::join_answer(&h.drain(), &join).expect("static members need no member id round");
    assert_eq!(answer.error, None);
    let old_id = answer.member_id.clone();
    let sync = h.send_sync(answer.generation_id, &old_id, &[(&old_id, "p0,p1")]);
    assert!(Harness::sync_answer(&h.drain(), &sync).unwrap().is_ok());
    let generation = answer.generation_id;
    // The process restarts: same instance id, no member id.
    let rejoin = h.send_join(h.join_request("", Some("instance-a"), "t"));
    let answer = Harness::join_answer(&h.drain(), &rejoin).unwrap();
    assert_eq!(answer.error, None);
    assert_eq!(answer.generation_id, generation, "no new generation");
    assert_ne!(answer.member_id, old_id);
    assert!(answer.skip_assignment, "the leader need not assign again (KIP-814)");
    assert_eq!(h.state(), GroupState::Stable);
    let sync = h.send_sync(generation, &answer.member_id, &[]);
    assert_eq!(
        Harness::sync_answer(&h.drain(), &sync).unwrap().unwrap().assignment,
        Bytes::from("p0,p1")
    );
    // The old incarnation is fenced.
    let old = MemberRef {
        group_id: GROUP.into(),
        generation_id: generation,
        member_id: old_id,
        group_instance_id: Some("instance-a".into()),
    };
    assert_eq!(
        h.coordinator.heartbeat(h.now_ms, &old),
        Err(GroupError::FencedInstanceId)
    );
}

#[test]
fn group_max_size_refuses_the_extra_member() {
    let mut h = Harness::with(GroupConfig {
        initial_rebalance_delay_ms: 0,
        max_size: 1,
        ..GroupConfig::default()
    });
    h.stable_group(1);
    let join = h.send_join(h.join_request("", None, "t"));
    let answer = Harness::join_answer(&h.drain(), &join).unwrap();
    assert_eq!(answer.error, Some(GroupError::GroupMaxSizeReached));
}

/// A member of this generation, as Heartbeat and OffsetCommit name it.
fn member_ref(member_id: impl Into<String>, generation_id: i32) -> MemberRef {
    MemberRef {
        group_id: GROUP.into(),
        generation_id,
        member_id: member_id.into(),
        group_instance_id: None,
    }
}

fn commit(
    h: &mut Harness,
    committer: &MemberRef,
    offset: i64,
    metadata: &str,
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    let offsets = [OffsetToCommit {
        topic: "t".into(),
        partition: 0,
        offset,
        leader_epoch: -1,
        metadata: metadata.into(),
    }];
    let prepared = h.coordinator.prepare_commit(h.now_ms, committer, &offsets)?;
    Ok(prepared
        .into_iter()
        .map(|record| {
            let record = record?;
            h.persisted.push(record.clone());
            h.coordinator.apply(h.now_ms, record);
            Ok(())
        })
        .collect())
}

fn committed(h: &Harness) -> Option<i64> {
    h.coordinator.fetch_offsets(GROUP, Some(&[("t".to_string(), 0)]))[0]
        .2
        .as_ref()
        .map(|commit| commit.offset)
}

#[test]
fn offsets_are_committed_by_members_of_the_current_generation_only() {
    let mut h = Harness::new();
    let standalone = MemberRef {
        group_id: GROUP.into(),
        generation_id: -1,
        ..MemberRef::default()
    };
    assert_eq!(committed(&h), None);
    assert_eq!(
        commit(&mut h, &standalone, 5, ""),
        Ok(vec![Ok(())]),
        "a group-less commit creates the group"
    );
    assert_eq!(committed(&h), Some(5));
    let (members, generation) = h.stable_group(1);
    assert_eq!(
        commit(&mut h, &standalone, 6, ""),
        Err(GroupError::UnknownMemberId),
        "the group has members now"
    );
    let member = member_ref(members[0].clone(), generation);
    assert_eq!(commit(&mut h, &member, 7, "meta"), Ok(vec![Ok(())]));
    assert_eq!(committed(&h), Some(7));
    let stale = MemberRef {
        generation_id: generation - 1,
        ..member.clone()
    };
    assert_eq!(commit(&mut h, &stale, 8, ""), Err(GroupError::IllegalGeneration));
    let too_long = "x".repeat(4097);
    assert_eq!(
        commit(&mut h, &member, 9, &too_long),
        Ok(vec![Err(GroupError::OffsetMetadataTooLarge)])
    );
    assert_eq!(committed(&h), Some(7), "refused commits change nothing");
    let all = h.coordinator.fetch_offsets(GROUP, None);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].2.as_ref().unwrap().metadata, "meta");
}

#[test]
fn a_group_deletes_only_when_empty_and_its_tombstones_forget_everything() {
    let mut h = Harness::new();
    let (members, _) = h.stable_group(1);
    let member = member_ref(members[0].clone(), 1);
    commit(&mut h, &member, 3, "").unwrap();
    assert_eq!(
        h.coordinator.prepare_group_delete(GROUP),
        Err(GroupError::NonEmptyGroup)
    );
    h.coordinator
        .leave(
            h.now_ms,
            GROUP,
            &[LeavingMember {
                member_id: members[0].clone(),
                group_instance_id: None,
            }],
        )
        .unwrap();
    h.drain();
    let tombstones = h.coordinator.prepare_group_delete(GROUP).unwrap();
    assert_eq!(tombstones.len(), 2, "one per offset and one for the group");
    for record in tombstones {
        h.coordinator.apply(h.now_ms, record);
    }
    assert!(h.coordinator.describe_group(GROUP).is_none());
    assert_eq!(committed(&h), None);
    assert_eq!(
        h.coordinator.prepare_group_delete(GROUP),
        Err(GroupError::GroupIdNotFound)
    );
}

#[test]
fn offset_delete_refuses_topics_the_members_subscribe_to() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group(1);
    let member = member_ref(members[0].clone(), generation);
    commit(&mut h, &member, 3, "").unwrap();
    let subscribed = |metadata: &Bytes, topic: &str| {
        std::str::from_utf8(metadata)
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .split(',')
            .any(|t| t == topic)
    };
    let partitions = [("t".to_string(), 0), ("other".to_string(), 0)];
    let results = h
        .coordinator
        .prepare_offset_delete(GROUP, &partitions, subscribed)
        .unwrap();
    assert_eq!(results[0], Err(GroupError::GroupSubscribedToTopic));
    assert_eq!(results[1], Ok(None), "nothing committed there, nothing to delete");
    assert_eq!(
        h.coordinator
            .prepare_offset_delete("nope", &partitions, subscribed)
            .err(),
        Some(GroupError::GroupIdNotFound)
    );
}

/// What was persisted, replayed into a fresh coordinator (as at broker start-up), gives back
/// the same generation, members, assignments and offsets.
#[test]
fn replaying_the_persisted_records_restores_the_group() {
    let mut h = Harness::new();
    let (members, generation) = h.stable_group(2);
    let member = member_ref(members[0].clone(), generation);
    commit(&mut h, &member, 11, "m").unwrap();
    let before = h.coordinator.describe_group(GROUP).unwrap();
    let mut restarted = Coordinator::new(GroupConfig::default(), 7);
    for record in &h.persisted {
        let (key, value) = record.encode();
        restarted.apply(h.now_ms, Record::decode(key, value).unwrap());
    }
    let after = restarted.describe_group(GROUP).unwrap();
    assert_eq!(after, before);
    assert_eq!(
        restarted.fetch_offsets(GROUP, None)[0].2.as_ref().map(|c| c.offset),
        Some(11)
    );
    // The members carry on in the same generation without rejoining.
    let request = member_ref(members[1].clone(), generation);
    assert_eq!(restarted.heartbeat(h.now_ms, &request), Ok(()));
}

#[test]
fn next_deadline_is_the_earliest_session_or_rebalance_end() {
    let mut h = Harness::new();
    assert_eq!(h.coordinator.next_deadline(), None);
    let (members, generation) = h.stable_group(1);
    assert_eq!(h.coordinator.next_deadline(), Some(h.now_ms + i64::from(SESSION_MS)));
    h.advance(1_000);
    assert_eq!(h.heartbeat(generation, &members[0]), Ok(()));
    assert_eq!(h.coordinator.next_deadline(), Some(h.now_ms + i64::from(SESSION_MS)));
}

#[test]
fn offsets_expire_after_the_retention_by_kip_211_rules() {
    const RETENTION_MS: i64 = 60_000;
    let never = |_: &Bytes, _: &str| false;
    let mut h = Harness::new();
    let standalone = MemberRef {
        group_id: GROUP.into(),
        generation_id: -1,
        ..MemberRef::default()
    };
    commit(&mut h, &standalone, 5, "").unwrap();
    assert!(h
        .coordinator
        .expired_records(h.now_ms + RETENTION_MS - 1, RETENTION_MS, never)
        .is_empty());
    let expired = h
        .coordinator
        .expired_records(h.now_ms + RETENTION_MS, RETENTION_MS, never);
    assert_eq!(expired.len(), 1, "the offset, by its commit time: {expired:?}");
    for record in expired {
        h.coordinator.apply(h.now_ms, record);
    }
    assert!(
        h.coordinator.describe_group(GROUP).is_none(),
        "nothing left of the group"
    );

    // A group with a member subscribed to the topic keeps its offsets however old they are.
    let (members, generation) = h.stable_group(1);
    let member = member_ref(members[0].clone(), generation);
    commit(&mut h, &member, 7, "").unwrap();
    let subscribed_to_t = |metadata: &Bytes, topic: &str| metadata.ends_with(topic.as_bytes());
    let later = h.now_ms + 10 * RETENTION_MS;
    assert!(h
        .coordinator
        .expired_records(later, RETENTION_MS, subscribed_to_t)
        .is_empty());
    assert_eq!(
        h.coordinator.expired_records(later, RETENTION_MS, never).len(),
        1,
        "not subscribed: expires"
    );
    // Once the group is empty, the clock starts from the moment it became empty.
    h.coordinator
        .leave(
            h.now_ms,
            GROUP,
            &[LeavingMember {
                member_id: members[0].clone(),
                group_instance_id: None,
            }],
        )
        .unwrap();
    h.drain();
    assert!(h
        .coordinator
        .expired_records(h.now_ms + RETENTION_MS - 1, RETENTION_MS, never)
        .is_empty());
    let expired = h
        .coordinator
        .expired_records(h.now_ms + RETENTION_MS, RETENTION_MS, never);
    assert_eq!(expired.len(), 2, "the offset and the group: {expired:?}");
    for record in expired {
        h.coordinator.apply(h.now_ms, record);
    }
    assert!(h.coordinator.describe_group(GROUP).is_none());
}

/// librdkafka's rapid resubscription (its test 0045 "many updates"): one member replaces its
/// subscription step after step, and every seventh step unsubscribes (LeaveGroup) and comes
/// back as a new member. Coming back, the client may send a JoinGroup without member id whose
/// MEMBER_ID_REQUIRED answer it then discards as outdated, and join again: the first id is
/// never used. As in Kafka 4.4 (checked on the wire):
/// - the group's first generation is ended by the initial delay alone (Kafka's delayed join
///   fires even at 0 ms), so the abandoned id does not hold it up; before, with
///   `group.initial.rebalance.delay.ms=0`, it waited for everyone including that id;
/// - a later rebalance does wait for the abandoned id, but only until it expires (a session
///   timeout after it was handed out); before, it waited for the whole rebalance timeout
///   (librdkafka's: `max.poll.interval.ms`, 300 s).
#[test]
fn resubscribing_again_and_again_is_held_up_by_an_abandoned_member_id_at_most_until_it_expires() {
    for delay_ms in [0, 3_000] {
        let mut h = Harness::with(GroupConfig {
            initial_rebalance_delay_ms: delay_ms,
            ..GroupConfig::default()
        });
        let mut member: Option<String> = None;
        // When the last abandoned member id expires.
        let mut abandoned_expiry_ms = 0;
        for step in 0..20 {
            let topics = format!("t{step}..t{}", step + 4);
            let first_generation = member.is_none();
            let join = match &member {
                // A subscription change: the sole member (and leader) rejoins with new metadata.
                Some(member_id) => {
                    let member_id = member_id.clone();
                    h.send_join(h.join_request(&member_id, None, &topics))
                }
                // Back after an unsubscribe: the first member id handed out is abandoned.
                None => {
                    let abandoned = h.send_join(h.join_request("", None, &topics));
                    let answer = Harness::join_answer(&h.drain(), &abandoned).expect("answered at once");
                    assert_eq!(answer.error, Some(GroupError::MemberIdRequired));
                    abandoned_expiry_ms = h.now_ms + i64::from(SESSION_MS);
                    h.join_new(&topics).1
                }
            };
            let started_ms = h.now_ms;
            let mut answers = h.drain();
            if Harness::join_answer(&answers, &join).is_none() {
                if first_generation {
                    assert!(
                        delay_ms > 0,
                        "step {step}: no initial delay, yet the first generation waits"
                    );
                    answers = h.advance(i64::from(delay_ms));
                } else {
                    assert!(
                        h.now_ms < abandoned_expiry_ms,
                        "step {step}: waits with no member id pending"
                    );
                    answers = h.advance(abandoned_expiry_ms - h.now_ms - 1);
                    assert!(
                        Harness::join_answer(&answers, &join).is_none(),
                        "step {step}: answered before the abandoned id expired"
                    );
                    answers = h.advance(1);
                }
            }
            let answer = Harness::join_answer(&answers, &join).unwrap_or_else(|| {
                panic!(
                    "delay {delay_ms}, step {step}: join not answered after {} ms",
                    h.now_ms - started_ms
                )
            });
            assert_eq!(answer.error, None, "step {step}");
            assert_eq!(answer.leader, answer.member_id, "step {step}: the sole member leads");
            let metadata: Vec<&Bytes> = answer.members.iter().map(|m| &m.metadata).collect();
            assert_eq!(
                metadata,
                [&Bytes::from(format!("range:{topics}"))],
                "step {step}: the leader assigns for the latest subscription"
            );
            let member_id = answer.member_id.clone();
            let sync = h.send_sync(answer.generation_id, &member_id, &[(&member_id, &topics)]);
            let assignment = Harness::sync_answer(&h.drain(), &sync).unwrap().unwrap().assignment;
            assert_eq!(assignment, Bytes::from(topics.clone()), "step {step}");
            assert_eq!(h.state(), GroupState::Stable);
            member = Some(member_id);
            if step % 7 == 0 {
                let member_id = member.take().expect("joined above");
                let left = h.coordinator.leave(
                    h.now_ms,
                    GROUP,
                    &[LeavingMember {
                        member_id,
                        group_instance_id: None,
                    }],
                );
                assert_eq!(left, Ok(vec![Ok(())]));
                h.drain();
                // Without members the rebalance ends at once (its timeout is the members'
                // longest, none) and the group is empty.
                h.advance(0);
                assert_eq!(h.state(), GroupState::Empty, "step {step}");
            }
            h.advance(50);
        }
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED and then given up with LeaveGroup no longer
/// holds up a rebalance (Kafka: removing a pending member completes the join phase).
#[test]
fn leaving_with_a_pending_member_id_lets_the_waiting_rebalance_complete() {
    let mut h = Harness::new();
    let (ids, _) = h.stable_group(1);
    let pending = h.send_join(h.join_request("", None, "t"));
    let pending_id = Harness::join_answer(&h.drain(), &pending).unwrap().member_id;
    let rejoin = h.send_join(h.join_request(&ids[0], None, "t,u"));
    assert!(
        Harness::join_answer(&h.drain(), &rejoin).is_none(),
        "waits for the pending id"
    );
    let left = h.coordinator.leave(
        h.now_ms,
        GROUP,
        &[LeavingMember {
            member_id: pending_id,
            group_instance_id: None,
        }],
    );
    assert_eq!(left, Ok(vec![Ok(())]));
    let answer = Harness::join_answer(&h.drain(), &rejoin).expect("answered once the id is gone");
    assert_eq!(answer.error, None);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
}

#[test]
fn unloading_forgets_the_group_and_hands_back_its_parked_requests() {
    let mut h = Harness::new();
    let (first, generation) = h.stable_group(1);
    commit(&mut h, &member_ref(&first[0], generation), 42, "").expect("commit");
    let (_, parked) = h.join_new("t");
    assert!(Harness::join_answer(&h.drain(), &parked).is_none(), "parked");
    // Another group's partition is unloaded: nothing here changes.
    assert!(h.coordinator.unload(|group| group != GROUP).is_empty());
    assert_eq!(committed(&h), Some(42));
    // This group's partition moves to another broker.
    let tokens = h.coordinator.unload(|group| group == GROUP);
    assert_eq!(tokens, vec![parked.token]);
    assert_eq!(committed(&h), None);
    assert!(h.coordinator.list_groups().is_empty());
    assert_eq!(h.heartbeat(1, &first[0]), Err(GroupError::UnknownMemberId));
}
