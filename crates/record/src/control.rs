//! Transaction markers: the control batches a transaction coordinator has the broker write to
//! end a transaction in a partition.
//!
//! A marker is a batch with the transactional and control attributes, the producer's id and
//! epoch, no sequence, and one record: key = version (i16, 0) and type (i16: 0 abort,
//! 1 commit); value = version (i16, 0) and the coordinator epoch (i32). Consumers never see
//! control records as data; read_committed consumers use markers to end transactions.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::TimestampType as CodecTimestampType;

use crate::records::{decode_records, CodecCompression, Record, RecordBatchEncoder, RecordEncodeOptions};
use crate::BatchError;

const CONTROL_KEY_VERSION: i16 = 0;
const CONTROL_VALUE_VERSION: i16 = 0;

/// What a marker does to the transaction it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort,
    Commit,
}

impl Marker {
    fn code(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }
}

/// One marker batch, base offset 0 (the log assigns the real one).
pub fn encode_marker(
    marker: Marker,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Result<Bytes, BatchError> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&CONTROL_VALUE_VERSION.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: CodecTimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::slice::from_ref(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: CodecCompression::None,
        },
    )
    .map_err(|e| BatchError::Decode(e.to_string()))?;
    Ok(buf.freeze())
}

/// The marker a control batch carries; `None` for control records that are not transaction
/// markers (Kafka also has leader-change and snapshot control records) or that do not decode.
pub fn parse_marker(batch: &[u8]) -> Option<Marker> {
    let records = decode_records(batch).ok()?;
    let key = records.first()?.key.as_ref()?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchHeader;

    #[test]
    fn markers_round_trip_with_control_attributes() {
        for marker in [Marker::Abort, Marker::Commit] {
            let batch = encode_marker(marker, 42, 3, 7, 1_000).unwrap();
            let header = BatchHeader::parse(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(
                (header.producer_id, header.producer_epoch, header.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(header.records_count, 1);
            assert_eq!(parse_marker(&batch), Some(marker));
        }
        assert_eq!(parse_marker(b"short"), None);
    }
}
