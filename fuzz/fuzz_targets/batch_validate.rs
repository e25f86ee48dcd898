//! Any bytes as a produced record set: validation must accept or refuse, never panic; what it
//! accepts must walk and decode cleanly, to the same records, with kafka-protocol's decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_record::{validate_batches, BatchIter, ValidateOptions};

fuzz_target!(|data: &[u8]| {
    for require_keys in [false, true] {
        let options = ValidateOptions {
            max_batch_bytes: 1 << 20,
            require_keys,
        };
        if let Ok(validated) = validate_batches(bytes::Bytes::copy_from_slice(data), &options) {
            for batch in BatchIter::new(validated.bytes()) {
                let batch = batch.expect("an accepted record set walks cleanly");
                // A second, independent decoder (kafka-protocol's) must agree with what the
                // streaming walk accepted.
                let records = strom_record::records::decode_records(batch.bytes).expect("an accepted batch decodes");
                assert_eq!(records.len(), batch.header.records_count as usize, "record count");
                assert!(!require_keys || records.iter().all(|r| r.key.is_some()), "keys required");
            }
        }
    }
});
