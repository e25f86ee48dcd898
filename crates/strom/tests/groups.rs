//! Consumer groups through real clients against a real broker process: members share a
//! topic's partitions, rebalance when members come and go, and resume from committed offsets,
//! also across broker restarts. Raw-protocol cases check Kafka's error codes and a join storm.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer as _;
use strom_testkit::wire::decode_response;
use strom_testkit::{poll_until, Broker, GroupMember, Producer, Rec, WireClient};

const TOPIC: &str = "events";
const PARTITIONS: i32 = 4;
/// Bound on a group forming or rebalancing in these tests (sessions are 6 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_STEP: Duration = Duration::from_millis(50);

const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const MEMBER_ID_REQUIRED: i16 = 79;

/// A broker whose groups form without the initial rebalance delay, with topic `events`.
fn start() -> Broker {
    let broker = coordinating(
        Broker::builder(strom_testkit::bin!())
            .set("group.initial.rebalance.delay.ms", "0")
            .start(),
    );
    common::create_topic(&broker, TOPIC, PARTITIONS);
    broker
}

/// `broker` once it coordinates groups: a client's first FindCoordinator has it create
/// `__consumer_offsets`, and the raw requests these tests send skip that step.
fn coordinating(broker: Broker) -> Broker {
    broker.wire().find_coordinator(0, "any").expect("FindCoordinator");
    broker
}

/// Polls every member until `done` holds for their assignments; returns the records read
/// meanwhile, by member.
fn settle(
    members: &[&GroupMember],
    what: &str,
    done: impl Fn(&[BTreeSet<(String, i32)>]) -> bool,
) -> Vec<Vec<(i32, i64, String)>> {
    let mut read = vec![Vec::new(); members.len()];
    poll_until(SETTLE_TIMEOUT, what, || {
        for (index, member) in members.iter().enumerate() {
            if let Some(record) = member.poll(POLL_STEP) {
                read[index].push((record.partition, record.offset, common::utf8(&record.value)));
            }
        }
        let assignments: Vec<_> = members.iter().map(|member| member.assignment()).collect();
        done(&assignments).then_some(())
    });
    read
}

/// Every partition of `events` assigned exactly once across the members, none empty-handed.
fn split_disjointly(assignments: &[BTreeSet<(String, i32)>]) -> bool {
    let total: usize = assignments.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<_> = assignments.iter().flatten().collect();
    assignments.iter().all(|a| !a.is_empty()) && total == PARTITIONS as usize && union.len() == total
}

fn produce(broker: &Broker, prefix: &str, count: usize) -> Vec<String> {
    let producer = Producer::new(&broker.bootstrap(), &[("acks", "all")]);
    let recs: Vec<Rec> = (0..count)
        .map(|i| Rec::value(format!("{prefix}-{i}")).partition(i as i32 % PARTITIONS))
        .collect();
    producer.send_all_ok(TOPIC, &recs);
    recs.iter().map(|rec| common::utf8(&rec.value)).collect()
}

/// Polls the members until `count` records have arrived in total.
fn read_all(members: &[&GroupMember], count: usize) -> Vec<Vec<(i32, i64, String)>> {
    let mut read = vec![Vec::new(); members.len()];
    poll_until(SETTLE_TIMEOUT, &format!("{count} records read"), || {
        for (index, member) in members.iter().enumerate() {
            if let Some(record) = member.poll(POLL_STEP) {
                read[index].push((record.partition, record.offset, common::utf8(&record.value)));
            }
        }
        (read.iter().map(Vec::len).sum::<usize>() >= count).then_some(())
    });
    read
}

#[test]
fn members_split_the_partitions_read_every_record_once_and_resume_from_commits() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let a = GroupMember::join(&bootstrap, "split", &[TOPIC], &[]);
    let b = GroupMember::join(&bootstrap, "split", &[TOPIC], &[]);
    let c = GroupMember::join(&bootstrap, "split", &[TOPIC], &[]);
    settle(&[&a, &b, &c], "three members sharing four partitions", split_disjointly);
    let sent = produce(&broker, "first", 200);
    let read = read_all(&[&a, &b, &c], sent.len());
    let assignments = [a.assignment(), b.assignment(), c.assignment()];
    for (member, records) in read.iter().enumerate() {
        for (partition, _, _) in records {
            assert!(
                assignments[member].contains(&(TOPIC.to_string(), *partition)),
                "member {member} read partition {partition} it does not own: {:?}",
                assignments[member]
            );
        }
    }
    let mut values: Vec<String> = read.iter().flatten().map(|(_, _, value)| value.clone()).collect();
    values.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(values, expected, "every record exactly once");
    for member in [&a, &b, &c] {
        member.commit_positions().expect("commit");
    }
    drop((a, b, c));
    // A new member of the same group starts where the others committed.
    let later = produce(&broker, "second", 20);
    let d = GroupMember::join(&bootstrap, "split", &[TOPIC], &[]);
    let read = read_all(&[&d], later.len());
    let mut values: Vec<String> = read[0].iter().map(|(_, _, value)| value.clone()).collect();
    values.sort();
    let mut expected = later;
    expected.sort();
    assert_eq!(values, expected, "only what came after the commits");
    assert!(d.poll(Duration::from_millis(500)).is_none(), "nothing read twice");
}

#[test]
fn a_member_that_leaves_has_its_partitions_taken_over_quickly() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let a = GroupMember::join(&bootstrap, "takeover", &[TOPIC], &[]);
    let b = GroupMember::join(&bootstrap, "takeover", &[TOPIC], &[]);
    settle(&[&a, &b], "two members sharing the partitions", split_disjointly);
    let left_at = Instant::now();
    drop(b); // close() sends LeaveGroup
    settle(&[&a], "the remaining member owning every partition", |assignments| {
        assignments[0].len() == PARTITIONS as usize
    });
    let took = left_at.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "takeover took {took:?}, more than the session timeout"
    );
    let sent = produce(&broker, "after", 40);
    let read = read_all(&[&a], sent.len());
    assert_eq!(read[0].len(), sent.len());
}

#[test]
fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let a = GroupMember::join(&bootstrap, "static", &[TOPIC], &[("group.instance.id", "a")]);
    let b = GroupMember::join(&bootstrap, "static", &[TOPIC], &[("group.instance.id", "b")]);
    settle(&[&a, &b], "two static members sharing the partitions", split_disjointly);
    // A static member closing does not leave the group (KIP-345); its successor takes its place.
    assert_static_restart_without_rebalance(&bootstrap, "static", a, &b, &[("group.instance.id", "a")]);
}

/// Closes static member `a` and starts its successor with `a_config`: the successor gets `a`'s
/// partitions back, and `b` sees no rebalance (no new assignment, same partitions).
fn assert_static_restart_without_rebalance(
    bootstrap: &str,
    group: &str,
    a: GroupMember,
    b: &GroupMember,
    a_config: &[(&str, &str)],
) {
    let a_partitions = a.assignment();
    let b_assignments = b.assignments_received();
    let b_partitions = b.assignment();
    drop(a);
    let a2 = GroupMember::join(bootstrap, group, &[TOPIC], a_config);
    settle(
        &[&a2, b],
        "the restarted member holding its old partitions",
        |assignments| assignments[0] == a_partitions,
    );
    // Give a rebalance, had one started, the time to reach the other member.
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        let _ = b.poll(POLL_STEP);
        let _ = a2.poll(POLL_STEP);
    }
    assert_eq!(
        b.assignments_received(),
        b_assignments,
        "the other member saw no rebalance"
    );
    assert_eq!((a2.assignment(), b.assignment()), (a_partitions, b_partitions));
}

#[test]
fn committed_offsets_survive_sigterm_and_sigkill_restarts() {
    let mut broker = start();
    let member = GroupMember::join(&broker.bootstrap(), "durable", &[TOPIC], &[]);
    settle(&[&member], "the member owning every partition", |a| {
        a[0].len() == PARTITIONS as usize
    });
    for partition in 0..PARTITIONS {
        member
            .commit_offset(TOPIC, partition, 10 + i64::from(partition))
            .expect("commit");
    }
    drop(member);
    broker.sigterm_and_wait();
    broker.restart();
    let reader = GroupMember::join(&broker.bootstrap(), "durable", &["unrelated"], &[]);
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    assert_eq!(
        reader.committed(TOPIC, &partitions).expect("committed"),
        vec![Some(10), Some(11), Some(12), Some(13)],
        "after SIGTERM"
    );
    reader.commit_offset(TOPIC, 0, 99).expect("commit after restart");
    drop(reader);
    broker.sigkill();
    broker.restart();
    let reader = GroupMember::join(&broker.bootstrap(), "durable", &["unrelated"], &[]);
    assert_eq!(
        reader.committed(TOPIC, &partitions).expect("committed"),
        vec![Some(99), Some(11), Some(12), Some(13)],
        "after SIGKILL"
    );
}

fn join_request(member_id: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = bytes::Bytes::from_static(b"subscription");
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(StrBytes::from_static_str("wire"));
    request.session_timeout_ms = session_timeout_ms;
    request.rebalance_timeout_ms = 10_000;
    request.member_id = StrBytes::from_string(member_id.to_string());
    request.protocol_type = StrBytes::from_static_str("consumer");
    request.protocols = vec![protocol];
    request
}

/// Kafka's error codes for members the group does not know, stale generations and bad
/// timeouts; none of them disturbs a stable group.
#[test]
fn wire_errors_for_unknown_members_stale_generations_and_bad_timeouts() {
    let mut broker = start();
    let mut wire = broker.wire();
    let mut heartbeat = HeartbeatRequest::default();
    heartbeat.group_id = GroupId(StrBytes::from_static_str("no-such-group"));
    heartbeat.member_id = StrBytes::from_static_str("nobody");
    assert_eq!(wire.call(&heartbeat, 4).unwrap().error_code, UNKNOWN_MEMBER_ID);
    let bad = wire.call(&join_request("", 1), 5).unwrap();
    assert_eq!(bad.error_code, INVALID_SESSION_TIMEOUT);
    let first = wire.call(&join_request("", 10_000), 5).unwrap();
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member_id = first.member_id.to_string();
    let joined = wire.call(&join_request(&member_id, 10_000), 5).unwrap();
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member_id);
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("wire"));
    sync.member_id = joined.member_id.clone();
    sync.generation_id = joined.generation_id + 1;
    assert_eq!(wire.call(&sync, 3).unwrap().error_code, ILLEGAL_GENERATION);
    sync.generation_id = joined.generation_id;
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = joined.member_id.clone();
    assignment.assignment = bytes::Bytes::from_static(b"mine");
    sync.assignments = vec![assignment];
    let synced = wire.call(&sync, 3).unwrap();
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"mine"[..]));
    heartbeat.group_id = GroupId(StrBytes::from_static_str("wire"));
    heartbeat.member_id = joined.member_id.clone();
    heartbeat.generation_id = joined.generation_id - 1;
    assert_eq!(wire.call(&heartbeat, 4).unwrap().error_code, ILLEGAL_GENERATION);
    heartbeat.generation_id = joined.generation_id;
    assert_eq!(wire.call(&heartbeat, 4).unwrap().error_code, 0);
    broker.assert_healthy();
}

/// 200 members join one group at once, each on its own connection: all are answered with
/// the same generation, the leader sees all 200, and after the assignment the group is Stable
/// with 200 members.
#[test]
fn a_join_storm_of_200_members_forms_one_generation() {
    const MEMBERS: usize = 200;
    let mut broker = coordinating(
        Broker::builder(strom_testkit::bin!())
            .set("group.initial.rebalance.delay.ms", "1000")
            .start(),
    );
    let mut connections: Vec<WireClient> = (0..MEMBERS).map(|_| broker.wire()).collect();
    let member_ids: Vec<String> = connections
        .iter_mut()
        .map(|wire| {
            let answer = wire.call(&join_request("", 10_000), 5).expect("first join");
            assert_eq!(answer.error_code, MEMBER_ID_REQUIRED);
            answer.member_id.to_string()
        })
        .collect();
    // Every second join parks until the group forms, so all are sent before any is read.
    let mut correlation_ids = Vec::new();
    for (wire, member_id) in connections.iter_mut().zip(&member_ids) {
        let (correlation_id, body) = wire.encode(&join_request(member_id, 10_000), 5).unwrap();
        wire.send_body(&body).unwrap();
        correlation_ids.push(correlation_id);
    }
    let answers: Vec<JoinGroupResponse> = connections
        .iter_mut()
        .zip(correlation_ids)
        .map(|(wire, correlation_id)| {
            let frame = wire.read_frame().expect("join answer");
            decode_response::<JoinGroupRequest>(frame, 5, correlation_id).unwrap()
        })
        .collect();
    assert!(answers.iter().all(|a| a.error_code == 0), "every member joined");
    let generations: BTreeSet<i32> = answers.iter().map(|a| a.generation_id).collect();
    assert_eq!(generations.len(), 1, "one generation: {generations:?}");
    let leaders: Vec<&JoinGroupResponse> = answers.iter().filter(|a| a.leader == a.member_id).collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].members.len(), MEMBERS, "the leader sees everyone");
    let generation = answers[0].generation_id;
    let leader_index = answers.iter().position(|a| a.leader == a.member_id).unwrap();
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("wire"));
    sync.generation_id = generation;
    sync.member_id = StrBytes::from_string(member_ids[leader_index].clone());
    sync.assignments = member_ids
        .iter()
        .map(|id| {
            let mut assignment = SyncGroupRequestAssignment::default();
            assignment.member_id = StrBytes::from_string(id.clone());
            assignment.assignment = bytes::Bytes::from(id.clone());
            assignment
        })
        .collect();
    let synced = connections[leader_index].call(&sync, 3).unwrap();
    assert_eq!(synced.error_code, 0);
    let mut described = DescribeGroupsRequest::default();
    described.groups = vec![GroupId(StrBytes::from_static_str("wire"))];
    let description = broker.wire().call(&described, 5).unwrap();
    let group = &description.groups[0];
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.members.len(), MEMBERS);
    let owned: BTreeMap<String, Vec<u8>> = group
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_assignment.to_vec()))
        .collect();
    assert!(owned
        .iter()
        .all(|(id, assignment)| id.as_bytes() == assignment.as_slice()));
    broker.assert_healthy();
}

/// Deleting a topic forgets every group's offsets for it, durably: a topic re-created under
/// the same name starts with nothing committed, also after a restart.
#[test]
fn deleting_a_topic_forgets_its_committed_offsets() {
    let mut broker = start();
    let admin = strom_testkit::Admin::new(&broker.bootstrap());
    let member = GroupMember::join(&broker.bootstrap(), "forget", &["unrelated"], &[]);
    member.commit_offset(TOPIC, 1, 42).expect("commit");
    assert_eq!(member.committed(TOPIC, &[1]).unwrap(), vec![Some(42)]);
    drop(member);
    admin.delete_topic(TOPIC).expect("delete topic");
    common::create_topic(&broker, TOPIC, PARTITIONS);
    let reader = GroupMember::join(&broker.bootstrap(), "forget", &["unrelated"], &[]);
    assert_eq!(reader.committed(TOPIC, &[1]).unwrap(), vec![None], "forgotten");
    drop(reader);
    broker.sigkill();
    broker.restart();
    let reader = GroupMember::join(&broker.bootstrap(), "forget", &["unrelated"], &[]);
    assert_eq!(
        reader.committed(TOPIC, &[1]).unwrap(),
        vec![None],
        "still forgotten after a restart"
    );
}

/// Only the coordinator writes `__consumer_offsets`; a client's produce is refused as Kafka
/// refuses it, and the coordinator's records are untouched.
#[test]
fn clients_cannot_produce_to_the_offsets_topic() {
    const INVALID_TOPIC_EXCEPTION: i16 = 17;
    let broker = start();
    let member = GroupMember::join(&broker.bootstrap(), "guarded", &["unrelated"], &[]);
    member
        .commit_offset(TOPIC, 0, 7)
        .expect("commit creates the offsets topic");
    let batch = strom_testkit::wire::record_batch(
        &[b"forged"],
        strom_testkit::wire::BatchProducer::NONE,
        kafka_protocol::records::Compression::None,
        0,
    );
    let response = broker
        .wire()
        .produce("__consumer_offsets", 0, batch, -1)
        .expect("an answer");
    assert_eq!(response.error_code, INVALID_TOPIC_EXCEPTION);
    assert_eq!(member.committed(TOPIC, &[0]).unwrap(), vec![Some(7)]);
}

/// With cooperative-sticky (incremental rebalancing, KIP-429), a member joining takes
/// partitions only from others, who keep the rest throughout: no partition an existing member
/// keeps is ever revoked from it (an eager assignor revokes all four first). The assignor runs
/// in the client; the broker passes its rounds through.
#[test]
fn cooperative_sticky_keeps_unaffected_partitions_when_a_member_joins() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let cooperative = [("partition.assignment.strategy", "cooperative-sticky")];
    let a = GroupMember::join(&bootstrap, "coop", &[TOPIC], &cooperative);
    settle(&[&a], "the first member owning every partition", |assignments| {
        assignments[0].len() == PARTITIONS as usize
    });
    let before = a.assignment();
    let b = GroupMember::join(&bootstrap, "coop", &[TOPIC], &cooperative);
    // Poll both until the split completes, checking at every step that what `a` holds is only
    // ever a subset of what it held before (it gives up some, never swaps).
    let mut shrank = false;
    poll_until(SETTLE_TIMEOUT, "a cooperative split", || {
        let _ = a.poll(POLL_STEP);
        let _ = b.poll(POLL_STEP);
        let held = a.assignment();
        assert!(
            held.is_subset(&before),
            "a was given new partitions: {held:?} vs {before:?}"
        );
        shrank |= held.len() < before.len();
        split_disjointly(&[held, b.assignment()]).then_some(())
    });
    assert!(shrank);
    assert_eq!(a.revoked(), b.assignment(), "a lost exactly what b gained");
}

/// The KIP-848 consumer protocol (`group.protocol=consumer`): the broker assigns, members
/// split the partitions, read every record once and resume from commits.
const CONSUMER_PROTOCOL: [(&str, &str); 1] = [("group.protocol", "consumer")];

#[test]
fn kip_848_members_split_read_once_and_resume_from_commits() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let a = GroupMember::join(&bootstrap, "next-gen", &[TOPIC], &CONSUMER_PROTOCOL);
    let b = GroupMember::join(&bootstrap, "next-gen", &[TOPIC], &CONSUMER_PROTOCOL);
    settle(
        &[&a, &b],
        "two KIP-848 members sharing the partitions",
        split_disjointly,
    );
    let sent = produce(&broker, "kip848", 100);
    let read = read_all(&[&a, &b], sent.len());
    let mut values: Vec<String> = read.iter().flatten().map(|(_, _, value)| value.clone()).collect();
    values.sort();
    let mut expected = sent;
    expected.sort();
    assert_eq!(values, expected, "every record exactly once");
    a.commit_positions().expect("commit a");
    b.commit_positions().expect("commit b");
    drop((a, b));
    let later = produce(&broker, "kip848-later", 8);
    let c = GroupMember::join(&bootstrap, "next-gen", &[TOPIC], &CONSUMER_PROTOCOL);
    let read = read_all(&[&c], later.len());
    assert_eq!(read[0].len(), later.len(), "only what came after the commits");
}

/// A KIP-848 member that leaves is replaced on the others' next heartbeats, not after a
/// session timeout (45 s by default).
#[test]
fn kip_848_a_leaving_member_is_replaced_without_waiting_for_a_session() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let a = GroupMember::join(&bootstrap, "next-gen-leave", &[TOPIC], &CONSUMER_PROTOCOL);
    let b = GroupMember::join(&bootstrap, "next-gen-leave", &[TOPIC], &CONSUMER_PROTOCOL);
    settle(
        &[&a, &b],
        "two KIP-848 members sharing the partitions",
        split_disjointly,
    );
    let left_at = Instant::now();
    drop(b);
    settle(&[&a], "the remaining member owning every partition", |assignments| {
        assignments[0].len() == PARTITIONS as usize
    });
    let took = left_at.elapsed();
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");
}

/// A classic group and a KIP-848 group read the same topic side by side on one broker, and a
/// classic member cannot join the consumer group's id.
#[test]
fn classic_and_kip_848_groups_coexist() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let classic = GroupMember::join(&bootstrap, "old-style", &[TOPIC], &[]);
    let modern = GroupMember::join(&bootstrap, "new-style", &[TOPIC], &CONSUMER_PROTOCOL);
    settle(
        &[&classic, &modern],
        "both groups owning every partition",
        |assignments| assignments.iter().all(|a| a.len() == PARTITIONS as usize),
    );
    let sent = produce(&broker, "both", 40);
    let read = read_all(&[&classic, &modern], 2 * sent.len());
    assert_eq!(read[0].len(), sent.len());
    assert_eq!(read[1].len(), sent.len());
    let mut wire = broker.wire();
    let mut join = join_request("", 10_000);
    join.group_id = GroupId(StrBytes::from_static_str("new-style"));
    const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    assert_eq!(wire.call(&join, 5).unwrap().error_code, INCONSISTENT_GROUP_PROTOCOL);
}

fn describe_consumer_group(broker: &Broker, group: &'static str) -> (String, i32, BTreeSet<String>) {
    let mut request = kafka_protocol::messages::ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![GroupId(StrBytes::from_static_str(group))];
    let response = broker.wire().call(&request, 0).expect("ConsumerGroupDescribe");
    let described = &response.groups[0];
    (
        described.group_state.to_string(),
        described.group_epoch,
        described.members.iter().map(|m| m.member_id.to_string()).collect(),
    )
}

/// A KIP-848 group's state is written to `__consumer_offsets`: after a broker SIGKILL the
/// members carry on with the same ids and the group keeps its epoch (no rebalance).
#[test]
fn a_kip_848_group_survives_a_broker_sigkill_without_rebalancing() {
    let mut broker = start();
    let bootstrap = broker.bootstrap();
    let a = GroupMember::join(&bootstrap, "survivor", &[TOPIC], &CONSUMER_PROTOCOL);
    let b = GroupMember::join(&bootstrap, "survivor", &[TOPIC], &CONSUMER_PROTOCOL);
    settle(
        &[&a, &b],
        "two KIP-848 members sharing the partitions",
        split_disjointly,
    );
    let (state, epoch, members) = poll_until(SETTLE_TIMEOUT, "a stable group", || {
        let described = describe_consumer_group(&broker, "survivor");
        (described.0 == "Stable").then_some(described)
    });
    assert_eq!((state.as_str(), members.len()), ("Stable", 2));
    broker.sigkill();
    broker.restart();
    let after = describe_consumer_group(&broker, "survivor");
    assert_eq!((after.1, &after.2), (epoch, &members), "restored from the log");
    // The members reconnect and heartbeat on in the same epoch.
    let sent = produce(&broker, "after-restart", 20);
    let read = read_all(&[&a, &b], sent.len());
    assert_eq!(read.iter().map(Vec::len).sum::<usize>(), sent.len());
    let (state, epoch_now, members_now) = describe_consumer_group(&broker, "survivor");
    assert_eq!((state.as_str(), epoch_now, &members_now), ("Stable", epoch, &members));
}

/// Members with 1 MiB of protocol metadata each: the group forms, and its record (3 MiB,
/// beyond the default max.message.bytes) is still written, so a restarted broker knows the
/// group with all its metadata.
#[test]
fn oversized_member_metadata_is_kept_across_a_restart() {
    const MEMBERS: usize = 3;
    let mut broker = coordinating(
        Broker::builder(strom_testkit::bin!())
            .set("group.initial.rebalance.delay.ms", "1000")
            .start(),
    );
    let mut request = join_request("", 10_000);
    request.group_id = GroupId(StrBytes::from_static_str("big"));
    request.protocols[0].metadata = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let mut connections: Vec<WireClient> = (0..MEMBERS).map(|_| broker.wire()).collect();
    let member_ids: Vec<StrBytes> = connections
        .iter_mut()
        .map(|wire| wire.call(&request, 5).expect("first join").member_id)
        .collect();
    // All second joins go out before any answer is read, so they land in one generation.
    let mut correlation_ids = Vec::new();
    for (wire, member_id) in connections.iter_mut().zip(member_ids) {
        let mut join = request.clone();
        join.member_id = member_id;
        let (correlation_id, body) = wire.encode(&join, 5).unwrap();
        wire.send_body(&body).unwrap();
        correlation_ids.push(correlation_id);
    }
    let answers: Vec<JoinGroupResponse> = connections
        .iter_mut()
        .zip(correlation_ids)
        .map(|(wire, id)| decode_response::<JoinGroupRequest>(wire.read_frame().unwrap(), 5, id).unwrap())
        .collect();
    let leader_index = answers.iter().position(|a| a.leader == a.member_id).expect("a leader");
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("big"));
    sync.generation_id = answers[leader_index].generation_id;
    sync.member_id = answers[leader_index].member_id.clone();
    assert_eq!(
        connections[leader_index].call(&sync, 3).unwrap().error_code,
        0,
        "leader sync"
    );
    let describe = |broker: &Broker| {
        let mut described = DescribeGroupsRequest::default();
        described.groups = vec![GroupId(StrBytes::from_static_str("big"))];
        let response = broker.wire().call(&described, 5).unwrap();
        let group = &response.groups[0];
        let metadata: Vec<usize> = group.members.iter().map(|m| m.member_metadata.len()).collect();
        (group.group_state.to_string(), metadata)
    };
    let before = describe(&broker);
    assert_eq!(before, ("Stable".to_string(), vec![1 << 20; MEMBERS]));
    drop(connections);
    broker.sigkill();
    broker.restart();
    assert_eq!(describe(&broker), before, "the group and its metadata came back");
}

/// A KIP-848 subscription by regular expression is resolved by the broker, including topics
/// created after the member joined.
#[test]
fn kip_848_regex_subscription_follows_new_topics() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    common::create_topic(&broker, "metrics.cpu", 2);
    let member = GroupMember::join(&bootstrap, "by-pattern", &["^metrics\\..*"], &CONSUMER_PROTOCOL);
    settle(&[&member], "the member owning metrics.cpu", |assignments| {
        assignments[0]
            .iter()
            .filter(|(topic, _)| topic == "metrics.cpu")
            .count()
            == 2
    });
    assert!(member
        .assignment()
        .iter()
        .all(|(topic, _)| topic.starts_with("metrics.")));
    let mut request = kafka_protocol::messages::ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![GroupId(StrBytes::from_static_str("by-pattern"))];
    let described = broker.wire().call(&request, 0).expect("ConsumerGroupDescribe");
    let regex = described.groups[0].members[0].subscribed_topic_regex.clone();
    // librdkafka sends the pattern parenthesised; the broker matches it against topic names.
    assert_eq!(regex.as_deref(), Some("(^metrics\\..*)"));
    common::create_topic(&broker, "metrics.disk", 3);
    settle(&[&member], "the member owning the new topic too", |assignments| {
        assignments[0].len() == 5
    });
}

/// KIP-848 static membership through librdkafka: a static member that closes (epoch -2) and
/// comes back gets its partitions again, and the other member sees no rebalance.
#[test]
fn kip_848_static_member_restarts_without_a_rebalance() {
    let broker = start();
    let bootstrap = broker.bootstrap();
    let static_config = [("group.protocol", "consumer"), ("group.instance.id", "instance-a")];
    let a = GroupMember::join(&bootstrap, "static-848", &[TOPIC], &static_config);
    let b = GroupMember::join(&bootstrap, "static-848", &[TOPIC], &CONSUMER_PROTOCOL);
    settle(
        &[&a, &b],
        "two KIP-848 members sharing the partitions",
        split_disjointly,
    );
    assert_static_restart_without_rebalance(&bootstrap, "static-848", a, &b, &static_config);
}

/// A JoinGroup parked for a minute (the initial rebalance delay) does not hold up a graceful
/// shutdown: the controlled shutdown takes the group's partition from this broker, which
/// answers the parked join NOT_COORDINATOR (as Kafka's coordinator does when it unloads a
/// group), so the client looks for a coordinator again, and the broker exits well within its
/// drain time.
#[test]
fn shutdown_answers_parked_joins_instead_of_waiting_for_them() {
    const NOT_COORDINATOR: i16 = 16;
    let mut broker = coordinating(
        Broker::builder(strom_testkit::bin!())
            .set("group.initial.rebalance.delay.ms", "60000")
            .start(),
    );
    let mut wire = broker.wire();
    let mut join = join_request("", 10_000);
    join.rebalance_timeout_ms = 60_000;
    join.member_id = wire.call(&join, 5).expect("first join").member_id;
    let (correlation_id, body) = wire.encode(&join, 5).unwrap();
    wire.send_body(&body).unwrap();
    // The join is parked once the group is waiting out its initial delay.
    poll_until(SETTLE_TIMEOUT, "the group preparing a rebalance", || {
        let mut described = DescribeGroupsRequest::default();
        described.groups = vec![GroupId(StrBytes::from_static_str("wire"))];
        let response = broker.wire().call(&described, 5).ok()?;
        (response.groups[0].group_state.as_str() == "PreparingRebalance").then_some(())
    });
    let stopping = Instant::now();
    broker.sigterm_and_wait();
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let answer = decode_response::<JoinGroupRequest>(wire.read_frame().expect("an answer"), 5, correlation_id).unwrap();
    assert_eq!(answer.error_code, NOT_COORDINATOR);
}

/// offsets.retention.minutes at work in a real broker: an offset committed outside any group
/// membership is kept for the retention and removed after it (here 1 minute, checked every
/// 200 ms), durably.
#[test]
fn committed_offsets_expire_after_the_retention() {
    const RETENTION: Duration = Duration::from_secs(60);
    let mut broker = Broker::builder(strom_testkit::bin!())
        .set("offsets.retention.minutes", "1")
        .set("offsets.retention.check.interval.ms", "200")
        .start();
    common::create_topic(&broker, TOPIC, PARTITIONS);
    let committer = GroupMember::join(&broker.bootstrap(), "expiring", &["unrelated"], &[]);
    let committed_at = Instant::now();
    committer.commit_offset(TOPIC, 0, 9).expect("commit");
    drop(committer);
    let reader = GroupMember::join(&broker.bootstrap(), "expiring", &["unrelated"], &[]);
    assert_eq!(reader.committed(TOPIC, &[0]).unwrap(), vec![Some(9)]);
    poll_until(RETENTION + Duration::from_secs(30), "the offset to expire", || {
        (reader.committed(TOPIC, &[0]).ok()? == vec![None]).then_some(())
    });
    assert!(
        committed_at.elapsed() >= RETENTION,
        "expired early: {:?}",
        committed_at.elapsed()
    );
    drop(reader);
    broker.sigkill();
    broker.restart();
    let reader = GroupMember::join(&broker.bootstrap(), "expiring", &["unrelated"], &[]);
    assert_eq!(
        reader.committed(TOPIC, &[0]).unwrap(),
        vec![None],
        "still gone after a restart"
    );
}

/// librdkafka's `0045-subscribe_update` "many updates": one classic member (range assignor)
/// replaces its subscription step after step (topics i..i+5), unsubscribing right after the
/// subscribe every seventh step, and must reach its latest subscription's partitions each
/// time (librdkafka checks every fifth step, within 10 s). In that race librdkafka sometimes
/// discards a MEMBER_ID_REQUIRED answer as outdated and joins again, leaving a member id that
/// is never used; here a wire client leaves one deterministically before the member starts.
/// Kafka ends a group's first generation by the initial delay alone and waits for such an id
/// only until it expires; Strom waited for it with no delay, and then for the whole rebalance
/// timeout (librdkafka's `max.poll.interval.ms`, 300 s) instead of the id's session.
fn subscription_changes_reach_the_latest_assignment(initial_delay_ms: &str) {
    const STEPS: usize = 20;
    const WINDOW: usize = 5;
    const TOPIC_PARTITIONS: i32 = 2;
    const ABANDONED_SESSION_MS: i32 = 6_000;
    const GROUP: &str = "resubscribe";
    let mut broker = coordinating(
        Broker::builder(strom_testkit::bin!())
            .set("group.initial.rebalance.delay.ms", initial_delay_ms)
            .start(),
    );
    let bootstrap = broker.bootstrap();
    let topics: Vec<String> = (0..STEPS + WINDOW).map(|i| format!("resub-{i}")).collect();
    for topic in &topics {
        common::create_topic(&broker, topic, TOPIC_PARTITIONS);
    }
    let mut abandon = join_request("", ABANDONED_SESSION_MS);
    abandon.group_id = GroupId(StrBytes::from_static_str(GROUP));
    let answer = broker.wire().call(&abandon, 5).expect("join without member id");
    assert_eq!(answer.error_code, MEMBER_ID_REQUIRED);
    let member = GroupMember::join(
        &bootstrap,
        GROUP,
        &[&topics[0]],
        &[
            ("partition.assignment.strategy", "range"),
            ("group.protocol", "classic"),
            // librdkafka's defaults, as in its test: the rebalance timeout is 300 s.
            ("session.timeout.ms", "45000"),
            ("heartbeat.interval.ms", "3000"),
        ],
    );
    let mut step_times = Vec::new();
    for step in 0..STEPS {
        let started = Instant::now();
        let subscription: Vec<&str> = topics[step..step + WINDOW].iter().map(String::as_str).collect();
        member.inner().subscribe(&subscription).expect("subscribe");
        let unsubscribe = step % 7 == 0;
        if unsubscribe {
            member.inner().unsubscribe();
        }
        let expected: BTreeSet<(String, i32)> = if unsubscribe {
            BTreeSet::new()
        } else {
            subscription
                .iter()
                .flat_map(|topic| (0..TOPIC_PARTITIONS).map(move |p| (topic.to_string(), p)))
                .collect()
        };
        poll_until(
            SETTLE_TIMEOUT,
            &format!("step {step}: the assignment of {subscription:?}"),
            || {
                member.poll(POLL_STEP);
                (member.assignment() == expected).then_some(())
            },
        );
        step_times.push(started.elapsed().as_millis());
    }
    eprintln!("group.initial.rebalance.delay.ms={initial_delay_ms}: ms per step {step_times:?}");
    broker.assert_healthy();
}

#[test]
fn repeated_subscription_changes_reach_the_latest_assignment_without_initial_delay() {
    subscription_changes_reach_the_latest_assignment("0");
}

#[test]
fn repeated_subscription_changes_reach_the_latest_assignment_with_initial_delay() {
    subscription_changes_reach_the_latest_assignment("3000");
}
