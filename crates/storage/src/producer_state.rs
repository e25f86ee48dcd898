//! Producer state: per producer id, its epoch, its last [`BATCHES_PER_PRODUCER_MAX`] batches
//! (so a retried batch is answered with its original offsets instead of being written twice,
//! and gaps or zombies are refused), and the first offset of its open transaction in this
//! partition. The smallest open first offset bounds the last stable offset.
//!
//! Snapshots (`<offset>.snapshot`, 20-digit offset) hold the state of everything below that
//! offset; recovery loads the newest snapshot at or below the log end offset and replays batch
//! headers from there. Body (frame kind `ProducerSnapshotV2`): `count u32 | producer*`,
//! producer = `id i64 | epoch i16 | last_timestamp i64 | txn_first_offset i64 (-1: none) |
//! batches u8 | (first_seq i32, last_seq i32, first_offset i64, last_offset i64,
//! timestamp i64) * batches`, inside a checksummed frame. Version 1 snapshots (kind
//! `ProducerSnapshot`, without the two middle fields) are still read.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use strom_record::BatchHeader;

use crate::checkpoint::{self, Kind};
use crate::error::{AppendError, IoContext, StorageError};

/// Kafka keeps the last five batches: a producer has at most five requests in flight.
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMetadata>,
    /// The newest timestamp written by this producer (batches and markers), for expiry.
    pub(crate) last_timestamp_ms: i64,
    /// The first offset of its open transaction here, if one is open.
    pub(crate) txn_first_offset: Option<i64>,
    /// A marker raised the epoch (a coordinator's fencing abort, or transactions v2's bump at
    /// every commit), so the producer's next batch starts its sequence over at 0. Derived
    /// while appending and replaying, not kept in snapshots: a snapshot taken between such a
    /// marker and the next batch leaves the first sequence unchecked, as an empty entry was
    /// before.
    pub(crate) sequence_reset: bool,
}

/// What an incoming idempotent batch is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Write it.
    Fresh,
    /// Already written: answer with these offsets.
    Duplicate(BatchMetadata),
}

/// What a partition knows of one producer, as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// -1 when no batch with a sequence is remembered.
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    /// The first offset of its open transaction here, or -1.
    pub current_txn_start_offset: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every open transaction.
    ongoing: BTreeSet<(i64, i64)>,
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    /// Kafka's rules, checked before anything is written.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, AppendError> {
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            // Unknown producer: only a first batch is acceptable. A non-zero sequence means we
            // lost its state (retention, DeleteRecords); Kafka answers OutOfOrderSequence since
            // KIP-360, which makes the client bump its epoch and start over.
            if header.base_sequence != 0 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    received: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Fresh);
        };
        if header.producer_epoch < entry.epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                received: header.producer_epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    received: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Fresh);
        }
        let last_seq = header.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == header.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        if entry.sequence_reset && header.base_sequence != 0 {
            return Err(AppendError::OutOfOrderSequence {
                producer_id,
                expected: 0,
                received: header.base_sequence,
            });
        }
        if let Some(last) = entry.batches.back() {
            let expected = next_sequence(last.last_seq);
            if header.base_sequence != expected {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id,
                    expected,
                    received: header.base_sequence,
                });
            }
        }
        Ok(SequenceCheck::Fresh)
    }

    /// A write that carries no sequence (a marker, or transactional offsets the group
    /// coordinator writes) is refused only if its epoch is older than the producer's.
    pub(crate) fn check_epoch(&self, producer_id: i64, epoch: i16) -> Result<(), AppendError> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(AppendError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                received: epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Records a written batch; `header` carries its assigned offsets. Also used on replay,
    /// where nothing is checked: the log is the truth. For a marker (control batch) that ended
    /// an open transaction, returns that transaction's first offset.
    pub(crate) fn update(&mut self, header: &BatchHeader) -> Option<i64> {
        if !header.has_producer_id() {
            return None;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER_MAX),
                last_timestamp_ms: header.max_timestamp,
                txn_first_offset: None,
                // A producer first seen through a marker may be one whose earlier batches
                // compaction removed: its sequence is not known to restart.
                sequence_reset: false,
            });
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
        if header.producer_epoch > entry.epoch || (header.producer_epoch != entry.epoch && !header.is_control()) {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
            entry.sequence_reset = header.is_control();
        }
        if header.is_control() {
            let first = entry.txn_first_offset.take()?;
            let _ = self.ongoing.remove(&(first, header.producer_id));
            return Some(first);
        }
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(header.base_offset);
            let _ = self.ongoing.insert((header.base_offset, header.producer_id));
        }
        // Writes without a sequence (the coordinator's) take no part in deduplication.
        if header.base_sequence < 0 {
            return None;
        }
        entry.sequence_reset = false;
        if entry.batches.len() == BATCHES_PER_PRODUCER_MAX {
            let _ = entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp_ms: header.max_timestamp,
        });
        None
    }

    /// The first offset of the oldest open transaction: nothing at or after it is stable.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|(offset, _)| *offset)
    }

    /// The producer's epoch and the first offset of its open transaction here, if any.
    pub(crate) fn open_transaction(&self, producer_id: i64) -> Option<(i16, i64)> {
        let entry = self.producers.get(&producer_id)?;
        Some((entry.epoch, entry.txn_first_offset?))
    }

    /// Every producer known here, by id (DescribeProducers).
    pub(crate) fn describe(&self) -> Vec<ProducerDescription> {
        let mut producers: Vec<ProducerDescription> = self
            .producers
            .iter()
            .map(|(id, entry)| ProducerDescription {
                producer_id: *id,
                producer_epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp_ms: entry.last_timestamp_ms,
                current_txn_start_offset: entry.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        producers
    }

    /// Every open transaction: (producer id, first offset), oldest first.
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.ongoing.iter().map(|(first, pid)| (*pid, *first)).collect()
    }

    /// Forgets producers that have not written for `expiration_ms`
    /// (`producer.id.expiration.ms`), as Kafka does, so the table cannot grow without bound.
    /// A producer with an open transaction is kept: its transaction still bounds the last
    /// stable offset until a marker ends it. Returns how many were forgotten.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        let horizon = now_ms.saturating_sub(expiration_ms);
        self.producers
            .retain(|_, entry| entry.txn_first_offset.is_some() || entry.last_timestamp_ms > horizon);
        before - self.producers.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
            out.extend_from_slice(&entry.txn_first_offset.unwrap_or(-1).to_be_bytes());
            out.push(entry.batches.len() as u8);
            for b in &entry.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.timestamp_ms.to_be_bytes());
            }
        }
        out
    }

    /// Decodes a snapshot body; `v1` is the layout without timestamps and transactions.
    pub(crate) fn decode(body: &[u8], v1: bool) -> Option<ProducerState> {
        let mut r = Reader(body);
        let count = r.u32()?;
        let mut producers = HashMap::new();
        let mut ongoing = BTreeSet::new();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let (last_timestamp, txn_first_offset) = if v1 { (None, -1) } else { (Some(r.i64()?), r.i64()?) };
            let n = r.u8()? as usize;
            if n > BATCHES_PER_PRODUCER_MAX {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp_ms: r.i64()?,
                });
            }
            let txn_first_offset = (txn_first_offset >= 0).then_some(txn_first_offset);
            if let Some(first) = txn_first_offset {
                let _ = ongoing.insert((first, id));
            }
            let last_timestamp_ms =
                last_timestamp.unwrap_or_else(|| batches.iter().map(|b| b.timestamp_ms).max().unwrap_or(-1));
            let entry = ProducerEntry {
                epoch,
                batches,
                last_timestamp_ms,
                txn_first_offset,
                sequence_reset: false,
            };
            let _ = producers.insert(id, entry);
        }
        r.0.is_empty().then_some(ProducerState { producers, ongoing })
    }

    /// Writes `<offset>.snapshot` atomically.
    pub(crate) fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), StorageError> {
        let path = snapshot_path(dir, offset);
        checkpoint::write_atomically(
            &path,
            &checkpoint::encode_frame(Kind::ProducerSnapshotV2, &self.encode()),
        )
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

/// Snapshot offsets present in `dir`, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut offsets = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".snapshot") {
            if let Some(offset) = crate::segment::parse_offset(stem) {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Loads the snapshot at `offset`; `None` if it is unreadable or corrupt.
pub(crate) fn read_snapshot(dir: &Path, offset: i64) -> Option<ProducerState> {
    let path = snapshot_path(dir, offset);
    if let Ok(Some(body)) = checkpoint::read_frame(&path, Kind::ProducerSnapshotV2) {
        return ProducerState::decode(&body, false);
    }
    let body = checkpoint::read_frame(&path, Kind::ProducerSnapshot).ok()??;
    ProducerState::decode(&body, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 7,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_and_fencing() {
        let mut state = ProducerState::default();
        assert!(matches!(
            state.check(&header(1, 0, 3, 1, 0)),
            Err(AppendError::OutOfOrderSequence { .. })
        ));
        assert_eq!(state.check(&header(1, 0, 0, 2, 0)).unwrap(), SequenceCheck::Fresh);
        state.update(&header(1, 0, 0, 2, 0));
        assert!(matches!(
            state.check(&header(1, 0, 0, 2, 99)).unwrap(),
            SequenceCheck::Duplicate(BatchMetadata {
                first_offset: 0,
                last_offset: 1,
                ..
            })
        ));
        assert!(matches!(
            state.check(&header(1, 0, 5, 1, 2)),
            Err(AppendError::OutOfOrderSequence { expected: 2, .. })
        ));
        state.update(&header(1, 2, 0, 1, 2));
        assert!(matches!(
            state.check(&header(1, 1, 1, 1, 3)),
            Err(AppendError::InvalidProducerEpoch { current: 2, .. })
        ));
        assert!(matches!(
            state.check(&header(1, 3, 4, 1, 3)),
            Err(AppendError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn a_marker_that_raises_the_epoch_restarts_the_sequence_at_zero() {
        let mut state = ProducerState::default();
        state.update(&header(1, 0, 0, 3, 0));
        let mut marker = header(1, 1, -1, 1, 3);
        marker.attributes = 0x30; // transactional control batch
        state.update(&marker);
        assert!(matches!(
            state.check(&header(1, 1, 3, 1, 4)),
            Err(AppendError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(state.check(&header(1, 1, 0, 2, 4)).unwrap(), SequenceCheck::Fresh);
        state.update(&header(1, 1, 0, 2, 4));
        assert_eq!(state.check(&header(1, 1, 2, 1, 6)).unwrap(), SequenceCheck::Fresh);
        // A marker of the same epoch (transactions v1) leaves the sequence running.
        let mut same = header(1, 1, -1, 1, 6);
        same.attributes = 0x30;
        state.update(&same);
        assert_eq!(state.check(&header(1, 1, 2, 1, 7)).unwrap(), SequenceCheck::Fresh);
        // A producer first seen through a marker (its batches compacted away, say) is not
        // known to have restarted: its next sequence is taken as it comes.
        let mut first = header(2, 4, -1, 1, 8);
        first.attributes = 0x30;
        state.update(&first);
        assert_eq!(state.check(&header(2, 4, 5, 1, 9)).unwrap(), SequenceCheck::Fresh);
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut state = ProducerState::default();
        state.update(&header(9, 0, i32::MAX - 1, 2, 0));
        assert_eq!(state.check(&header(9, 0, 0, 1, 2)).unwrap(), SequenceCheck::Fresh);
    }

    #[test]
    fn keeps_five_batches_and_round_trips() {
        let mut state = ProducerState::default();
        for i in 0..7 {
            state.update(&header(4, 1, i, 1, i64::from(i)));
        }
        state.update(&header(5, 0, 0, 3, 10));
        assert_eq!(state.producers[&4].batches.len(), BATCHES_PER_PRODUCER_MAX);
        // Batch 0 fell out of the window: it is no longer recognised as a duplicate.
        assert!(state.check(&header(4, 1, 0, 1, 0)).is_err());
        let dir = tempfile::tempdir().unwrap();
        state.write_snapshot(dir.path(), 13).unwrap();
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![13]);
        assert_eq!(read_snapshot(dir.path(), 13).unwrap(), state);
        let body = state.encode();
        for cut in 0..body.len() {
            assert!(ProducerState::decode(&body[..cut], false).is_none());
        }
        std::fs::write(snapshot_path(dir.path(), 13), b"bad").unwrap();
        assert!(read_snapshot(dir.path(), 13).is_none());
    }

    #[test]
    fn open_transactions_round_trip_and_version_1_snapshots_still_load() {
        let mut state = ProducerState::default();
        let mut txn = header(8, 2, 0, 3, 40);
        txn.attributes = 0x10;
        let _ = state.update(&txn);
        assert_eq!(state.first_unstable_offset(), Some(40));
        let decoded = ProducerState::decode(&state.encode(), false).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.open_transaction(8), Some((2, 40)));

        // Version 1: count | id | epoch | batches | batch fields, nothing else.
        let mut v1 = Vec::new();
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&3i16.to_be_bytes());
        v1.push(1);
        for field in [0i32, 1] {
            v1.extend_from_slice(&field.to_be_bytes());
        }
        for field in [10i64, 11, 99] {
            v1.extend_from_slice(&field.to_be_bytes());
        }
        let old = ProducerState::decode(&v1, true).unwrap();
        assert_eq!(old.producers[&5].epoch, 3);
        assert_eq!(old.producers[&5].last_timestamp_ms, 99);
        assert_eq!(old.first_unstable_offset(), None);
        assert!(ProducerState::decode(&v1, false).is_none());
    }
}
