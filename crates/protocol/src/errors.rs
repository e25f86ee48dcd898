//! Kafka error codes, and which one each record batch error becomes.

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use strom_record::{BatchError, RecordError, RecordErrorReason};

/// The code a producer sees when its record set fails validation.
pub fn batch_error_code(error: &BatchError) -> ResponseError {
    match error {
        BatchError::TooLarge { .. } | BatchError::ExpandsTooFar { .. } => ResponseError::MessageTooLarge,
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::Empty
        | BatchError::Truncated { .. }
        | BatchError::InvalidLength(_)
        | BatchError::CorruptCrc { .. }
        | BatchError::RecordCountMismatch { .. }
        | BatchError::UnknownCompression(_)
        | BatchError::Decode(_) => ResponseError::CorruptMessage,
        BatchError::InvalidRecord(_) | BatchError::RecordErrors(_) => ResponseError::InvalidRecord,
    }
}

/// The per-record errors of a Produce answer (v8+, KIP-467): Kafka's text for each record
/// (`topic-partition` as Kafka prints it), and the partition's `error_message`.
pub struct RecordErrorsAnswer {
    /// (batch index, message) for each refused record listed, in batch order. Records refused
    /// for the same reason share one message buffer.
    pub records: Vec<(i32, StrBytes)>,
    pub error_message: String,
}

/// How many record errors a Produce answer lists at most for one batch of `batch_len` bytes:
/// each costs about 150 bytes (its entry in the response and its encoding), and a request may
/// cost at most 5 times its size (`frame::memory_weight`), so a batch of tiny (or very
/// compressible) records mostly refused does not list them all. A client sends the unlisted
/// ones again and learns of them then.
pub fn record_errors_limit(batch_len: usize) -> usize {
    (batch_len / 32).max(1)
}

/// Kafka's answer for records refused one by one, or `None` for errors of the whole batch.
pub fn record_errors(error: &BatchError, topic: &str, partition: i32, limit: usize) -> Option<RecordErrorsAnswer> {
    let BatchError::RecordErrors(errors) = error else {
        return None;
    };
    let missing_key = StrBytes::from_string(format!(
        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}"
    ));
    let message = |error: &RecordError| match error.reason {
        RecordErrorReason::MissingKey => missing_key.clone(),
    };
    let records: Vec<(i32, StrBytes)> = errors.iter().take(limit).map(|e| (e.batch_index, message(e))).collect();
    let error_message = {
        let shown: Vec<String> = records
            .iter()
            .take(3)
            .map(|(index, message)| format!("RecordError(batchIndex={index}, message='{}')", message.as_str()))
            .collect();
        format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
            errors.len(),
            shown.join(", ")
        )
    };
    Some(RecordErrorsAnswer { records, error_message })
}
