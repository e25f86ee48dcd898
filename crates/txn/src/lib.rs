//! Kafka's transaction coordinator as pure logic: which producer owns a transactional id, at
//! which epoch, and where its current transaction stands.
//!
//! No sockets, no files, no clock. Every operation is split in two so the log stays the single
//! source of truth:
//!
//! 1. **prepare**: a `prepare_*` method checks the request against the current state and
//!    returns a [`Plan`], an ordered list of [`Step`]s, without changing anything.
//! 2. **carry out**: the server performs the steps in order. [`Step::Persist`] appends a record
//!    to `__transaction_state`; [`Step::WriteMarkers`] writes a COMMIT or ABORT control batch
//!    into every partition of the transaction.
//! 3. **apply**: after each record is durable, the server hands it to
//!    [`TxnCoordinator::apply`], the same call that replays the log at start-up. What clients
//!    see is therefore always what the log holds, and a restart rebuilds exactly the state the
//!    live coordinator had.
//!
//! Because the server holds one lock around all three, a plan may assume nothing changed
//! between prepare and apply. A plan cut short (a failed append or marker write) leaves a state
//! the coordinator already knows how to finish: [`TxnCoordinator::pending_completions`] writes
//! the markers of every transaction left in a Prepare state, and the client's retry sees a
//! consistent state.
//!
//! # Layout
//! - [`coordinator`]: the operations (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//!   EndTxn in both protocols, the KIP-890 partition check, timeouts, id expiration, admin)
//!   and their plans.
//! - [`state`]: a transactional id's metadata and the transaction states, with Kafka's codes
//!   and names.
//! - [`records`]: the `__transaction_state` key and value layouts (Kafka's), and which
//!   partition holds a transactional id.

pub mod coordinator;
pub mod records;
pub mod state;

pub use coordinator::{
    EndPlan, InitPlan, Markers, Plan, Step, TxnConfig, TxnCoordinator, TxnError, TxnListing, TxnProtocol,
};
pub use records::{partition_for, TxnRecord, TxnRecordError};
pub use state::{TransactionMetadata, TxnState};
