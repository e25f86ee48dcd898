//! What the coordinator writes to `__consumer_offsets`, byte for byte.
//!
//! The layouts are Kafka's non-flexible key and value versions, so a tool that decodes Kafka's
//! offsets topic decodes Strom's too: every key and value starts with a big-endian `i16`
//! version; strings are an `i16` length and UTF-8 (length -1 for null), byte arrays an `i32`
//! length. A record with a null value is a tombstone: the compacted topic then forgets the key.
//!
//! | key version | key fields | value version written |
//! | --- | --- | --- |
//! | 1 (0 read too) | group, topic, partition | 3: offset, leader epoch, metadata, commit time (1 read too) |
//! | 2 | group | 3: protocol type, generation, protocol, leader, state time, members |
//! | 0x5354 ("ST", Strom's own) | group | 0: a KIP-848 consumer group's whole state |
//!
//! Kafka spreads a KIP-848 group over six record types written as they change; Strom writes
//! one snapshot of the group whenever its epochs or assignments change, which for the group
//! sizes a single coordinator serves is small, and is replayed the same way.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_KEY_VERSION: i16 = 1;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_KEY_VERSION: i16 = 2;
const GROUP_VALUE_VERSION: i16 = 3;
const CONSUMER_GROUP_KEY_VERSION: i16 = 0x5354;
const CONSUMER_GROUP_VALUE_VERSION: i16 = 0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record ends early")]
    Truncated,
    #[error("record string is not UTF-8")]
    NotUtf8,
    #[error("negative length {0}")]
    NegativeLength(i32),
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown value version {version} for key version {key_version}")]
    UnknownValueVersion { key_version: i16, version: i16 },
}

/// The partition of `__consumer_offsets` that holds a group's records: Java's `String.hashCode`
/// of the group id, made non-negative as Kafka does, modulo the partition count. Matching
/// Kafka keeps a group's records where Kafka tooling would look for them.
pub fn partition_for(group_id: &str, partition_count: i32) -> i32 {
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
    let non_negative = if hash == i32::MIN { 0 } else { hash.abs() };
    non_negative % partition_count.max(1)
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A group's membership as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMetadata {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol (for consumers, its subscription).
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Partitions by topic, as stored.
pub type StoredAssignment = Vec<(String, Vec<i32>)>;

/// A KIP-848 consumer group as stored: everything but session timers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupSnapshot {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    /// When the group last lost its last member (for offset retention); -1 if it has members.
    pub emptied_at_ms: i64,
    pub subscribed_metadata: Vec<(String, i32)>,
    pub members: Vec<ConsumerMemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assigned: StoredAssignment,
    pub revoking: StoredAssignment,
    pub target: StoredAssignment,
}

/// One record of the offsets topic, decoded. `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Offset {
        group_id: String,
        topic: String,
        partition: i32,
        commit: Option<OffsetCommit>,
    },
    Group {
        group_id: String,
        metadata: Option<GroupMetadata>,
    },
    ConsumerGroup {
        group_id: String,
        snapshot: Option<ConsumerGroupSnapshot>,
    },
}

impl Record {
    pub fn group_id(&self) -> &str {
        match self {
            Record::Offset { group_id, .. }
            | Record::Group { group_id, .. }
            | Record::ConsumerGroup { group_id, .. } => group_id,
        }
    }

    /// The record's key and value (`None` for a tombstone).
    pub fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            Record::Offset {
                group_id,
                topic,
                partition,
                commit,
            } => {
                key.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut key, group_id);
                put_string(&mut key, topic);
                key.put_i32(*partition);
                let value = commit.as_ref().map(|commit| {
                    let mut value = BytesMut::new();
                    value.put_i16(OFFSET_VALUE_VERSION);
                    value.put_i64(commit.offset);
                    value.put_i32(commit.leader_epoch);
                    put_string(&mut value, &commit.metadata);
                    value.put_i64(commit.commit_timestamp_ms);
                    value.freeze()
                });
                (key.freeze(), value)
            }
            Record::Group { group_id, metadata } => {
                key.put_i16(GROUP_KEY_VERSION);
                put_string(&mut key, group_id);
                let value = metadata.as_ref().map(|group| {
                    let mut value = BytesMut::new();
                    value.put_i16(GROUP_VALUE_VERSION);
                    put_string(&mut value, &group.protocol_type);
                    value.put_i32(group.generation_id);
                    put_nullable_string(&mut value, group.protocol_name.as_deref());
                    put_nullable_string(&mut value, group.leader.as_deref());
                    value.put_i64(group.state_timestamp_ms);
                    value.put_i32(group.members.len() as i32);
                    for member in &group.members {
                        put_string(&mut value, &member.member_id);
                        put_nullable_string(&mut value, member.group_instance_id.as_deref());
                        put_string(&mut value, &member.client_id);
                        put_string(&mut value, &member.client_host);
                        value.put_i32(member.rebalance_timeout_ms);
                        value.put_i32(member.session_timeout_ms);
                        put_bytes(&mut value, &member.subscription);
                        put_bytes(&mut value, &member.assignment);
                    }
                    value.freeze()
                });
                (key.freeze(), value)
            }
            Record::ConsumerGroup { group_id, snapshot } => {
                key.put_i16(CONSUMER_GROUP_KEY_VERSION);
                put_string(&mut key, group_id);
                let value = snapshot.as_ref().map(|group| {
                    let mut value = BytesMut::new();
                    value.put_i16(CONSUMER_GROUP_VALUE_VERSION);
                    value.put_i32(group.group_epoch);
                    value.put_i32(group.assignment_epoch);
                    put_string(&mut value, &group.assignor);
                    value.put_i64(group.emptied_at_ms);
                    value.put_i32(group.subscribed_metadata.len() as i32);
                    for (topic, partitions) in &group.subscribed_metadata {
                        put_string(&mut value, topic);
                        value.put_i32(*partitions);
                    }
                    value.put_i32(group.members.len() as i32);
                    for member in &group.members {
                        put_string(&mut value, &member.member_id);
                        put_nullable_string(&mut value, member.instance_id.as_deref());
                        put_nullable_string(&mut value, member.rack_id.as_deref());
                        put_string(&mut value, &member.client_id);
                        put_string(&mut value, &member.client_host);
                        value.put_i32(member.member_epoch);
                        value.put_i32(member.previous_member_epoch);
                        value.put_i32(member.rebalance_timeout_ms);
                        value.put_i32(member.subscribed_topic_names.len() as i32);
                        for topic in &member.subscribed_topic_names {
                            put_string(&mut value, topic);
                        }
                        put_nullable_string(&mut value, member.subscribed_topic_regex.as_deref());
                        for assignment in [&member.assigned, &member.revoking, &member.target] {
                            put_assignment(&mut value, assignment);
                        }
                    }
                    value.freeze()
                });
                (key.freeze(), value)
            }
        }
    }

    pub fn decode(mut key: Bytes, value: Option<Bytes>) -> Result<Record, RecordError> {
        let key_version = get_i16(&mut key)?;
        match key_version {
            0 | 1 => {
                let group_id = get_string(&mut key)?;
                let topic = get_string(&mut key)?;
                let partition = get_i32(&mut key)?;
                let commit = value.map(|value| decode_offset_value(key_version, value)).transpose()?;
                Ok(Record::Offset {
                    group_id,
                    topic,
                    partition,
                    commit,
                })
            }
            2 => {
                let group_id = get_string(&mut key)?;
                let metadata = value.map(decode_group_value).transpose()?;
                Ok(Record::Group { group_id, metadata })
            }
            CONSUMER_GROUP_KEY_VERSION => {
                let group_id = get_string(&mut key)?;
                let snapshot = value.map(decode_consumer_group_value).transpose()?;
                Ok(Record::ConsumerGroup { group_id, snapshot })
            }
            other => Err(RecordError::UnknownKeyVersion(other)),
        }
    }
}

fn put_assignment(buf: &mut BytesMut, assignment: &StoredAssignment) {
    buf.put_i32(assignment.len() as i32);
    for (topic, partitions) in assignment {
        put_string(buf, topic);
        buf.put_i32(partitions.len() as i32);
        for partition in partitions {
            buf.put_i32(*partition);
        }
    }
}

/// An array count, refused when the bytes left could not hold that many elements of at least
/// `element_bytes_min` each: a corrupt count must not become a huge allocation.
fn get_count(buf: &mut Bytes, element_bytes_min: usize) -> Result<usize, RecordError> {
    let count = get_i32(buf)?;
    if count < 0 {
        return Err(RecordError::NegativeLength(count));
    }
    if count as usize > buf.remaining() / element_bytes_min {
        return Err(RecordError::Truncated);
    }
    Ok(count as usize)
}

fn get_assignment(buf: &mut Bytes) -> Result<StoredAssignment, RecordError> {
    let topics = get_count(buf, 6)?;
    let mut assignment = Vec::with_capacity(topics);
    for _ in 0..topics {
        let topic = get_string(buf)?;
        let count = get_count(buf, 4)?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            partitions.push(get_i32(buf)?);
        }
        assignment.push((topic, partitions));
    }
    Ok(assignment)
}

fn decode_consumer_group_value(mut value: Bytes) -> Result<ConsumerGroupSnapshot, RecordError> {
    expect_version(&mut value, CONSUMER_GROUP_KEY_VERSION, CONSUMER_GROUP_VALUE_VERSION)?;
    let group_epoch = get_i32(&mut value)?;
    let assignment_epoch = get_i32(&mut value)?;
    let assignor = get_string(&mut value)?;
    let emptied_at_ms = get_i64(&mut value)?;
    let topics = get_count(&mut value, 6)?;
    let mut subscribed_metadata = Vec::with_capacity(topics);
    for _ in 0..topics {
        subscribed_metadata.push((get_string(&mut value)?, get_i32(&mut value)?));
    }
    let count = get_count(&mut value, 40)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = get_string(&mut value)?;
        let instance_id = get_nullable_string(&mut value)?;
        let rack_id = get_nullable_string(&mut value)?;
        let client_id = get_string(&mut value)?;
        let client_host = get_string(&mut value)?;
        let member_epoch = get_i32(&mut value)?;
        let previous_member_epoch = get_i32(&mut value)?;
        let rebalance_timeout_ms = get_i32(&mut value)?;
        let names = get_count(&mut value, 2)?;
        let mut subscribed_topic_names = Vec::with_capacity(names);
        for _ in 0..names {
            subscribed_topic_names.push(get_string(&mut value)?);
        }
        let subscribed_topic_regex = get_nullable_string(&mut value)?;
        members.push(ConsumerMemberSnapshot {
            member_id,
            instance_id,
            rack_id,
            client_id,
            client_host,
            member_epoch,
            previous_member_epoch,
            rebalance_timeout_ms,
            subscribed_topic_names,
            subscribed_topic_regex,
            assigned: get_assignment(&mut value)?,
            revoking: get_assignment(&mut value)?,
            target: get_assignment(&mut value)?,
        });
    }
    Ok(ConsumerGroupSnapshot {
        group_epoch,
        assignment_epoch,
        assignor,
        emptied_at_ms,
        subscribed_metadata,
        members,
    })
}

fn decode_offset_value(key_version: i16, mut value: Bytes) -> Result<OffsetCommit, RecordError> {
    let version = get_i16(&mut value)?;
    match version {
        // v1 carried an expire timestamp after the commit time; it is read and dropped.
        1 => {
            let offset = get_i64(&mut value)?;
            let metadata = get_string(&mut value)?;
            let commit_timestamp_ms = get_i64(&mut value)?;
            Ok(OffsetCommit {
                offset,
                leader_epoch: -1,
                metadata,
                commit_timestamp_ms,
            })
        }
        3 => Ok(OffsetCommit {
            offset: get_i64(&mut value)?,
            leader_epoch: get_i32(&mut value)?,
            metadata: get_string(&mut value)?,
            commit_timestamp_ms: get_i64(&mut value)?,
        }),
        version => Err(RecordError::UnknownValueVersion { key_version, version }),
    }
}

/// Reads a value's version, which must be the one this key version is written with.
fn expect_version(value: &mut Bytes, key_version: i16, expected: i16) -> Result<(), RecordError> {
    match get_i16(value)? {
        version if version == expected => Ok(()),
        version => Err(RecordError::UnknownValueVersion { key_version, version }),
    }
}

fn decode_group_value(mut value: Bytes) -> Result<GroupMetadata, RecordError> {
    expect_version(&mut value, GROUP_KEY_VERSION, GROUP_VALUE_VERSION)?;
    let protocol_type = get_string(&mut value)?;
    let generation_id = get_i32(&mut value)?;
    let protocol_name = get_nullable_string(&mut value)?;
    let leader = get_nullable_string(&mut value)?;
    let state_timestamp_ms = get_i64(&mut value)?;
    // Each member takes at least 20 bytes.
    let count = get_count(&mut value, 20)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(MemberMetadata {
            member_id: get_string(&mut value)?,
            group_instance_id: get_nullable_string(&mut value)?,
            client_id: get_string(&mut value)?,
            client_host: get_string(&mut value)?,
            rebalance_timeout_ms: get_i32(&mut value)?,
            session_timeout_ms: get_i32(&mut value)?,
            subscription: get_bytes(&mut value)?,
            assignment: get_bytes(&mut value)?,
        });
    }
    Ok(GroupMetadata {
        protocol_type,
        generation_id,
        protocol_name,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}

fn get_i16(buf: &mut Bytes) -> Result<i16, RecordError> {
    buf.try_get_i16().map_err(|_| RecordError::Truncated)
}

fn get_i32(buf: &mut Bytes) -> Result<i32, RecordError> {
    buf.try_get_i32().map_err(|_| RecordError::Truncated)
}

fn get_i64(buf: &mut Bytes) -> Result<i64, RecordError> {
    buf.try_get_i64().map_err(|_| RecordError::Truncated)
}

fn take(buf: &mut Bytes, len: usize) -> Result<Bytes, RecordError> {
    if buf.remaining() < len {
        return Err(RecordError::Truncated);
    }
    Ok(buf.split_to(len))
}

fn get_nullable_string(buf: &mut Bytes) -> Result<Option<String>, RecordError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let bytes = take(buf, len as usize)?;
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| RecordError::NotUtf8)
}

fn get_string(buf: &mut Bytes) -> Result<String, RecordError> {
    Ok(get_nullable_string(buf)?.unwrap_or_default())
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, RecordError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Err(RecordError::NegativeLength(len));
    }
    take(buf, len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_matches_java_string_hash_code() {
        // "hello".hashCode() == 99162322; "Aa" and "BB" collide in Java.
        assert_eq!(partition_for("hello", 1_000_000_000), 99_162_322);
        assert_eq!(partition_for("Aa", 50), partition_for("BB", 50));
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which Kafka maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert!((0..50).contains(&partition_for("ünïcode-group", 50)));
    }

    #[test]
    fn offset_commit_key_and_value_bytes() {
        let record = Record::Offset {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 2,
            commit: Some(OffsetCommit {
                offset: 5,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 7,
            }),
        };
        let (key, value) = record.encode();
        assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]);
        let value = value.unwrap();
        assert_eq!(
            &value[..],
            &[0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        assert_eq!(Record::decode(key, Some(value)).unwrap(), record);
    }

    fn string() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._ü-]{0,20}"
    }

    fn bytes() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
    }

    fn member() -> impl Strategy<Value = MemberMetadata> {
        (
            string(),
            prop::option::of(string()),
            string(),
            string(),
            any::<i32>(),
            any::<i32>(),
            bytes(),
            bytes(),
        )
            .prop_map(
                |(
                    member_id,
                    group_instance_id,
                    client_id,
                    client_host,
                    rebalance,
                    session,
                    subscription,
                    assignment,
                )| {
                    MemberMetadata {
                        member_id,
                        group_instance_id,
                        client_id,
                        client_host,
                        rebalance_timeout_ms: rebalance,
                        session_timeout_ms: session,
                        subscription,
                        assignment,
                    }
                },
            )
    }

    fn record() -> impl Strategy<Value = Record> {
        let offset = (
            string(),
            string(),
            any::<i32>(),
            prop::option::of((any::<i64>(), any::<i32>(), string(), any::<i64>())),
        )
            .prop_map(|(group_id, topic, partition, commit)| Record::Offset {
                group_id,
                topic,
                partition,
                commit: commit.map(|(offset, leader_epoch, metadata, commit_timestamp_ms)| OffsetCommit {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp_ms,
                }),
            });
        let group = (
            string(),
            prop::option::of((
                string(),
                any::<i32>(),
                prop::option::of(string()),
                prop::option::of(string()),
                any::<i64>(),
                prop::collection::vec(member(), 0..4),
            )),
        )
            .prop_map(|(group_id, metadata)| Record::Group {
                group_id,
                metadata: metadata.map(
                    |(protocol_type, generation_id, protocol_name, leader, state_timestamp_ms, members)| {
                        GroupMetadata {
                            protocol_type,
                            generation_id,
                            protocol_name,
                            leader,
                            state_timestamp_ms,
                            members,
                        }
                    },
                ),
            });
        let assignment = || prop::collection::vec((string(), prop::collection::vec(any::<i32>(), 0..4)), 0..3);
        let consumer_member = (
            (
                string(),
                prop::option::of(string()),
                prop::option::of(string()),
                string(),
                string(),
            ),
            (any::<i32>(), any::<i32>(), any::<i32>()),
            (prop::collection::vec(string(), 0..3), prop::option::of(string())),
            (assignment(), assignment(), assignment()),
        )
            .prop_map(
                |(
                    (member_id, instance_id, rack_id, client_id, client_host),
                    (member_epoch, previous_member_epoch, rebalance_timeout_ms),
                    (subscribed_topic_names, subscribed_topic_regex),
                    (assigned, revoking, target),
                )| ConsumerMemberSnapshot {
                    member_id,
                    instance_id,
                    rack_id,
                    client_id,
                    client_host,
                    member_epoch,
                    previous_member_epoch,
                    rebalance_timeout_ms,
                    subscribed_topic_names,
                    subscribed_topic_regex,
                    assigned,
                    revoking,
                    target,
                },
            );
        let consumer_group = (
            string(),
            prop::option::of((
                any::<i32>(),
                any::<i32>(),
                string(),
                any::<i64>(),
                prop::collection::vec((string(), any::<i32>()), 0..3),
                prop::collection::vec(consumer_member, 0..3),
            )),
        )
            .prop_map(|(group_id, snapshot)| Record::ConsumerGroup {
                group_id,
                snapshot: snapshot.map(
                    |(group_epoch, assignment_epoch, assignor, emptied_at_ms, subscribed_metadata, members)| {
                        ConsumerGroupSnapshot {
                            group_epoch,
                            assignment_epoch,
                            assignor,
                            emptied_at_ms,
                            subscribed_metadata,
                            members,
                        }
                    },
                ),
            });
        prop_oneof![offset, group, consumer_group]
    }

    proptest! {
        #[test]
        fn records_round_trip(record in record()) {
            let (key, value) = record.encode();
            prop_assert_eq!(Record::decode(key, value).unwrap(), record);
        }

        #[test]
        fn arbitrary_bytes_never_panic(key in bytes(), value in prop::option::of(bytes())) {
            let _ = Record::decode(key, value);
        }
    }
}
