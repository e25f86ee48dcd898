//! Replays the `batch_validate` fuzz corpus through validation on every test run, so inputs the
//! fuzzer once found interesting keep being checked without the fuzzer.

use std::path::Path;

use strom_record::{validate_batches, BatchIter, ValidateOptions};

#[test]
fn batch_validate_corpus_is_refused_or_accepted_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/batch_validate");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut replayed = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        for require_keys in [false, true] {
            let options = ValidateOptions {
                max_batch_bytes: 1 << 20,
                require_keys,
            };
            if let Ok(validated) = validate_batches(bytes::Bytes::from(data.clone()), &options) {
                for batch in BatchIter::new(validated.bytes()) {
                    let batch = batch.unwrap_or_else(|e| panic!("{}: accepted but does not walk: {e}", path.display()));
                    let records = strom_record::records::decode_records(batch.bytes)
                        .unwrap_or_else(|e| panic!("{}: accepted but does not decode: {e}", path.display()));
                    assert_eq!(records.len(), batch.header.records_count as usize, "{}", path.display());
                }
            }
        }
        replayed += 1;
    }
    assert!(
        replayed >= 5,
        "the corpus in {} is missing or nearly empty",
        dir.display()
    );
}
