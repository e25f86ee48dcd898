//! openraft's storage conformance suite against the on-disk log and state machine stores.

mod common;

use std::sync::Arc;

use openraft::testing::StoreBuilder;
use openraft::testing::Suite;
use strom_quorum::types::StorageError;
use strom_quorum::LogStore;
use strom_quorum::StateMachineStore;
use strom_quorum::TypeConfig;

struct DiskStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<common::Applied>, tempfile::TempDir> for DiskStores {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore<common::Applied>), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        // Tiny segments so the suite's truncates and purges cross segment boundaries.
        let log = LogStore::open(dir.path(), 200).expect("open log");
        let sm = StateMachineStore::open(dir.path(), Arc::default()).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(DiskStores).expect("storage suite");
}
