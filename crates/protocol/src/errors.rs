//! Kafka error codes, and which one each record batch error becomes.

use kafka_protocol::ResponseError;
use strom_record::BatchError;

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
        BatchError::InvalidRecord(_) | BatchError::MissingKey => ResponseError::InvalidRecord,
    }
}
