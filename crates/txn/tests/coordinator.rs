//! The transaction coordinator driven as pure logic: requests and a fake clock in, plans out.
//! The harness carries plans out as the server would: records are applied once "written",
//! markers are collected, and every record is kept so a replay can be compared with live state.

use std::collections::BTreeSet;

use strom_txn::coordinator::PRODUCER_EPOCH_EXHAUSTED;
use strom_txn::{
    EndPlan, InitPlan, Markers, Plan, Step, TransactionMetadata, TxnConfig, TxnCoordinator, TxnError, TxnListing,
    TxnProtocol, TxnRecord, TxnState,
};

const ID: &str = "txn-a";
const TIMEOUT_MS: i32 = 60_000;

struct Harness {
    coordinator: TxnCoordinator,
    now_ms: i64,
    next_producer_id: i64,
    /// Every record persisted, in order: the transaction log.
    log: Vec<TxnRecord>,
    /// Every marker batch written, in order.
    markers: Vec<Markers>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            coordinator: TxnCoordinator::new(TxnConfig::default()),
            now_ms: 1_000_000,
            next_producer_id: 1000,
            log: Vec::new(),
            markers: Vec::new(),
        }
    }

    fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
    }

    /// Carries a plan out completely: persists and applies records, writes markers.
    fn carry_out(&mut self, plan: Plan) {
        self.carry_out_until_markers_fail(plan, false);
    }

    /// Carries a plan out, stopping at the first marker write if `markers_fail`.
    fn carry_out_until_markers_fail(&mut self, plan: Plan, markers_fail: bool) {
        for step in plan {
            match step {
                Step::Persist(record) => {
                    self.log.push(record.clone());
                    self.coordinator.apply(record);
                }
                Step::WriteMarkers(markers) => {
                    if markers_fail {
                        return;
                    }
                    self.markers.push(markers);
                }
            }
        }
    }

    fn prepare_init(&mut self, id: &str, expected: Option<(i64, i16)>) -> Result<InitPlan, TxnError> {
        let next = &mut self.next_producer_id;
        let mut allocate = || {
            *next += 1;
            Some(*next)
        };
        self.coordinator
            .prepare_init_producer_id(self.now_ms, id, TIMEOUT_MS, expected, &mut allocate)
    }

    fn init(&mut self, id: &str) -> (i64, i16) {
        self.init_expecting(id, None).unwrap()
    }

    /// InitProducerId as the server runs it: the plan, then (for a KIP-360 producer) the note
    /// that lets a retry of the same request get the same answer.
    fn init_expecting(&mut self, id: &str, expected: Option<(i64, i16)>) -> Result<(i64, i16), TxnError> {
        let plan = self.prepare_init(id, expected)?;
        self.carry_out(plan.steps);
        if let Some(expected) = expected {
            self.coordinator.remember_bump(id, expected);
        }
        Ok((plan.producer_id, plan.producer_epoch))
    }

    fn add(
        &mut self,
        id: &str,
        (producer_id, epoch): (i64, i16),
        partitions: &[(&str, i32)],
    ) -> Result<usize, TxnError> {
        let partitions: Vec<(String, i32)> = partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let plan = self.coordinator.prepare_add_partitions(
            self.now_ms,
            id,
            (producer_id, epoch),
            &partitions,
            TxnProtocol::V1,
        )?;
        let steps = plan.len();
        self.carry_out(plan);
        Ok(steps)
    }

    /// A transactions v2 write or offset commit adding its partitions.
    fn add_v2(&mut self, id: &str, producer: (i64, i16), partitions: &[(&str, i32)]) -> Result<usize, TxnError> {
        let partitions: Vec<(String, i32)> = partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let plan = self
            .coordinator
            .prepare_add_partitions(self.now_ms, id, producer, &partitions, TxnProtocol::V2)?;
        let steps = plan.len();
        self.carry_out(plan);
        Ok(steps)
    }

    fn prepare_end_v2(&mut self, id: &str, producer: (i64, i16), commit: bool) -> Result<EndPlan, TxnError> {
        let next = &mut self.next_producer_id;
        let mut allocate = || {
            *next += 1;
            Some(*next)
        };
        self.coordinator
            .prepare_end_txn_v2(self.now_ms, id, producer, commit, &mut allocate)
    }

    /// EndTxn v5 carried out; the answer's producer id and epoch, and the plan.
    fn end_v2(&mut self, id: &str, producer: (i64, i16), commit: bool) -> Result<((i64, i16), Plan), TxnError> {
        let plan = self.prepare_end_v2(id, producer, commit)?;
        self.carry_out(plan.steps.clone());
        Ok(((plan.producer_id, plan.producer_epoch), plan.steps))
    }

    /// Rebuilds a coordinator from the log, through the byte layout, as a restart does.
    fn replayed(&self) -> TxnCoordinator {
        let mut replayed = TxnCoordinator::new(TxnConfig::default());
        for record in &self.log {
            let (key, value) = record.encode();
            replayed.apply(TxnRecord::decode(key, value).unwrap());
        }
        replayed
    }

    fn end(&mut self, id: &str, (producer_id, epoch): (i64, i16), commit: bool) -> Result<Plan, TxnError> {
        let plan = self
            .coordinator
            .prepare_end_txn(self.now_ms, id, producer_id, epoch, commit)?;
        self.carry_out(plan.clone());
        Ok(plan)
    }

    fn state(&self, id: &str) -> &TransactionMetadata {
        self.coordinator.describe(id).expect("known transactional id")
    }
}

/// For plans that must not need a new producer id.
fn no_allocation() -> Option<i64> {
    panic!("no producer id should be needed here")
}

fn partitions(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter()
        .map(|(topic, partition)| (topic.to_string(), *partition))
        .collect()
}

/// A plan's shape: each step as "Persist(state, epoch)" or "Markers(commit|abort, epoch)".
fn shape(plan: &[Step]) -> Vec<String> {
    plan.iter()
        .map(|step| match step {
            Step::Persist(TxnRecord { value: Some(txn), .. }) => {
                format!("Persist({}, {})", txn.state.name(), txn.producer_epoch)
            }
            Step::Persist(TxnRecord { value: None, .. }) => "Tombstone".to_string(),
            Step::WriteMarkers(markers) => format!(
                "Markers({}, {})",
                if markers.commit { "commit" } else { "abort" },
                markers.producer_epoch
            ),
        })
        .collect()
}

fn markers_of(plan: &[Step]) -> Vec<&Markers> {
    plan.iter()
        .filter_map(|step| match step {
            Step::WriteMarkers(markers) => Some(markers),
            Step::Persist(_) => None,
        })
        .collect()
}

#[test]
fn a_new_transactional_id_gets_a_producer_id_at_epoch_0() {
    let mut h = Harness::new();
    let plan = h.prepare_init(ID, None).unwrap();
    assert_eq!((plan.producer_id, plan.producer_epoch), (1001, 0));
    assert_eq!(shape(&plan.steps), ["Persist(Empty, 0)"]);
    assert_eq!(h.coordinator.len(), 0, "prepare changes nothing");

    h.carry_out(plan.steps);
    let txn = h.state(ID);
    assert_eq!((txn.producer_id, txn.producer_epoch), (1001, 0));
    assert_eq!(txn.state, TxnState::Empty);
    assert_eq!(txn.timeout_ms, TIMEOUT_MS);
    assert_eq!((txn.txn_start_ms, txn.last_update_ms), (-1, h.now_ms));
    assert!(txn.partitions.is_empty());
    assert_eq!(h.coordinator.len(), 1);
}

#[test]
fn init_refuses_bad_timeouts_ids_and_failed_allocations() {
    let h = Harness::new();
    let max = h.coordinator.config().max_timeout_ms;
    for timeout_ms in [0, -1, max + 1] {
        let result = h
            .coordinator
            .prepare_init_producer_id(h.now_ms, ID, timeout_ms, None, &mut || Some(1));
        assert_eq!(result, Err(TxnError::InvalidTransactionTimeout), "timeout {timeout_ms}");
    }
    assert!(h
        .coordinator
        .prepare_init_producer_id(h.now_ms, ID, max, None, &mut || Some(1))
        .is_ok());
    assert!(matches!(
        h.coordinator
            .prepare_init_producer_id(h.now_ms, "", TIMEOUT_MS, None, &mut || Some(1)),
        Err(TxnError::InvalidRequest(_))
    ));
    assert!(matches!(
        h.coordinator
            .prepare_init_producer_id(h.now_ms, ID, TIMEOUT_MS, Some((-1, 3)), &mut || Some(1)),
        Err(TxnError::InvalidRequest(_))
    ));
    assert_eq!(
        h.coordinator
            .prepare_init_producer_id(h.now_ms, ID, TIMEOUT_MS, None, &mut || None),
        Err(TxnError::CoordinatorNotAvailable)
    );
}

#[test]
fn reinit_bumps_the_epoch_and_fences_the_old_producer() {
    let mut h = Harness::new();
    let old = h.init(ID);
    h.advance(10);
    let new = h.init(ID);
    assert_eq!(new, (old.0, old.1 + 1));
    assert_eq!(h.state(ID).last_update_ms, h.now_ms);

    assert_eq!(h.add(ID, old, &[("t", 0)]), Err(TxnError::ProducerFenced));
    assert_eq!(h.end(ID, old, true), Err(TxnError::ProducerFenced));
    assert_eq!(
        h.add(ID, (new.0, new.1 + 1), &[("t", 0)]),
        Err(TxnError::InvalidProducerEpoch)
    );
    assert_eq!(
        h.add(ID, (new.0 + 1, new.1), &[("t", 0)]),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add("unknown", new, &[("t", 0)]),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(h.add(ID, new, &[("t", 0)]), Ok(1));
}

#[test]
fn init_after_a_completed_transaction_starts_afresh() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    h.add(ID, producer, &[("t", 0)]).unwrap();
    h.end(ID, producer, true).unwrap();
    let plan = h.prepare_init(ID, None).unwrap();
    assert_eq!(shape(&plan.steps), ["Persist(Empty, 1)"]);
    h.carry_out(plan.steps);
    assert_eq!(h.state(ID).state, TxnState::Empty);
}

#[test]
fn init_while_ongoing_aborts_under_a_fencing_epoch() {
    let mut h = Harness::new();
    let old = h.init(ID);
    h.add(ID, old, &[("b", 1), ("a", 0)]).unwrap();
    h.add(ID, old, &[("a", 2)]).unwrap();

    let plan = h.prepare_init(ID, None).unwrap();
    assert_eq!(
        shape(&plan.steps),
        [
            "Persist(PrepareAbort, 1)",
            "Markers(abort, 1)",
            "Persist(CompleteAbort, 1)",
            "Persist(Empty, 2)"
        ]
    );
    let markers = markers_of(&plan.steps)[0];
    assert_eq!(markers.partitions, partitions(&[("a", 0), ("a", 2), ("b", 1)]));
    assert_eq!((markers.producer_id, markers.transactional_id.as_str()), (old.0, ID));
    assert_eq!((plan.producer_id, plan.producer_epoch), (old.0, 2));

    h.carry_out(plan.steps);
    assert_eq!(h.state(ID).state, TxnState::Empty);
    assert_eq!(h.end(ID, old, false), Err(TxnError::ProducerFenced));
}

#[test]
fn kip_360_expected_producer_must_be_the_current_one() {
    let mut h = Harness::new();
    let current = h.init(ID);

    assert_eq!(
        h.init_expecting(ID, Some((current.0 + 5, current.1))),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        h.init_expecting(ID, Some((current.0, current.1 + 1))),
        Err(TxnError::ProducerFenced)
    );
    let bumped = h.init_expecting(ID, Some(current)).unwrap();
    assert_eq!(bumped, (current.0, current.1 + 1));
    // A retry of that bump (its answer lost) gets the same answer, and nothing is written.
    let log_len = h.log.len();
    assert_eq!(h.init_expecting(ID, Some(current)), Ok(bumped));
    assert_eq!(h.log.len(), log_len);
    // Any other epoch is not this producer's.
    assert_eq!(
        h.init_expecting(ID, Some((current.0, bumped.1 + 1))),
        Err(TxnError::ProducerFenced)
    );
    // (-1, -1) is a fresh producer, always let in; after it, the retry window is gone.
    assert_eq!(
        h.init_expecting(ID, Some((-1, -1))).unwrap(),
        (current.0, current.1 + 2)
    );
    assert_eq!(h.init_expecting(ID, Some(current)), Err(TxnError::ProducerFenced));
}

#[test]
fn only_a_kip_360_bump_can_be_retried_and_only_until_a_transaction_starts() {
    let mut h = Harness::new();
    let zombie = h.init(ID);
    // A fresh producer fences the zombie; the zombie naming its old epoch is not a retry.
    let fresh = h.init(ID);
    assert_eq!(h.init_expecting(ID, Some(zombie)), Err(TxnError::ProducerFenced));

    // A KIP-360 bump while a transaction is open aborts it; its retry gets the same epoch.
    h.add(ID, fresh, &[("t", 0)]).unwrap();
    let bumped = h.init_expecting(ID, Some(fresh)).unwrap();
    assert_eq!(bumped.1, fresh.1 + 2);
    assert_eq!(h.init_expecting(ID, Some(fresh)), Ok(bumped));
    // Once the bumped producer starts a transaction, the old epoch is fenced for good.
    h.add(ID, bumped, &[("t", 1)]).unwrap();
    assert_eq!(h.init_expecting(ID, Some(fresh)), Err(TxnError::ProducerFenced));
}

#[test]
fn kip_360_stale_producer_cannot_abort_the_current_transaction() {
    let mut h = Harness::new();
    let stale = h.init(ID);
    let current = h.init(ID);
    h.add(ID, current, &[("t", 0)]).unwrap();
    assert_eq!(h.init_expecting(ID, Some(stale)), Err(TxnError::ProducerFenced));
    assert_eq!(h.state(ID).state, TxnState::Ongoing);

    // The current producer itself may re-initialise: its transaction is aborted.
    let plan = h.prepare_init(ID, Some(current)).unwrap();
    assert_eq!(shape(&plan.steps)[0], "Persist(PrepareAbort, 2)");
    assert_eq!(plan.producer_epoch, 3);
}

#[test]
fn kip_360_expected_producer_of_an_expired_id_starts_over() {
    let mut h = Harness::new();
    assert_eq!(h.init_expecting(ID, Some((77, 4))).unwrap(), (1001, 0));
}

#[test]
fn epoch_overflow_allocates_a_new_producer_id() {
    let mut h = Harness::new();
    let near_end = PRODUCER_EPOCH_EXHAUSTED - 2;
    h.coordinator.apply(TxnRecord {
        transactional_id: ID.into(),
        value: Some(TransactionMetadata {
            producer_id: 5,
            producer_epoch: near_end,
            timeout_ms: TIMEOUT_MS,
            state: TxnState::CompleteCommit,
            partitions: BTreeSet::new(),
            txn_start_ms: -1,
            last_update_ms: h.now_ms,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        }),
    });
    assert_eq!(h.init(ID), (5, near_end + 1));
    // The next bump would reach the exhausted range: a new producer id instead.
    assert_eq!(h.init(ID), (1001, 0));

    // An open transaction at the last epoch handed out: the fence takes the next epoch, and the
    // new producer needs a new id.
    h.coordinator.apply(TxnRecord {
        transactional_id: ID.into(),
        value: Some(TransactionMetadata {
            producer_id: 6,
            producer_epoch: PRODUCER_EPOCH_EXHAUSTED - 1,
            timeout_ms: TIMEOUT_MS,
            state: TxnState::Ongoing,
            partitions: [("t".to_string(), 0)].into(),
            txn_start_ms: h.now_ms,
            last_update_ms: h.now_ms,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        }),
    });
    let plan = h.prepare_init(ID, None).unwrap();
    let markers = markers_of(&plan.steps)[0];
    assert_eq!(
        (markers.producer_id, markers.producer_epoch),
        (6, PRODUCER_EPOCH_EXHAUSTED)
    );
    assert_eq!((plan.producer_id, plan.producer_epoch), (1002, 0));
}

#[test]
fn init_while_markers_are_pending_must_retry() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    h.add(ID, producer, &[("t", 0)]).unwrap();
    let plan = h
        .coordinator
        .prepare_end_txn(h.now_ms, ID, producer.0, producer.1, true)
        .unwrap();
    h.carry_out_until_markers_fail(plan, true);
    assert_eq!(h.state(ID).state, TxnState::PrepareCommit);
    assert_eq!(h.prepare_init(ID, None), Err(TxnError::ConcurrentTransactions));
    assert_eq!(h.add(ID, producer, &[("t", 1)]), Err(TxnError::ConcurrentTransactions));
}

#[test]
fn adding_partitions_starts_the_transaction_once_and_is_idempotent() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    let started_ms = h.now_ms;
    assert_eq!(h.add(ID, producer, &[("t", 0), ("t", 1)]), Ok(1));
    let txn = h.state(ID);
    assert_eq!(txn.state, TxnState::Ongoing);
    assert_eq!(txn.txn_start_ms, started_ms);

    h.advance(100);
    assert_eq!(
        h.add(ID, producer, &[("t", 1), ("t", 0)]),
        Ok(0),
        "already added: no steps"
    );
    assert_eq!(h.add(ID, producer, &[]), Ok(0));
    assert_eq!(h.add(ID, producer, &[("t", 0), ("u", 3)]), Ok(1));
    let txn = h.state(ID);
    assert_eq!(txn.txn_start_ms, started_ms, "the start is the first add");
    assert_eq!(txn.last_update_ms, h.now_ms);
    assert_eq!(
        txn.partitions.iter().cloned().collect::<Vec<_>>(),
        partitions(&[("t", 0), ("t", 1), ("u", 3)])
    );
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    let plan = h
        .coordinator
        .prepare_add_offsets(h.now_ms, ID, producer.0, producer.1, ("__consumer_offsets".into(), 7))
        .unwrap();
    h.carry_out(plan);
    assert!(h.state(ID).partitions.contains(&("__consumer_offsets".to_string(), 7)));
    assert_eq!(
        h.coordinator
            .verify_partition(ID, producer.0, producer.1, "__consumer_offsets", 7),
        Ok(())
    );
}

#[test]
fn end_txn_persists_prepare_writes_markers_then_persists_complete() {
    for commit in [true, false] {
        let mut h = Harness::new();
        let producer = h.init(ID);
        h.add(ID, producer, &[("b", 0), ("a", 1)]).unwrap();
        let started_ms = h.now_ms;
        h.advance(50);
        let plan = h.end(ID, producer, commit).unwrap();
        let (prepare, outcome, complete) = if commit {
            ("PrepareCommit", "commit", "CompleteCommit")
        } else {
            ("PrepareAbort", "abort", "CompleteAbort")
        };
        assert_eq!(
            shape(&plan),
            [
                format!("Persist({prepare}, 0)"),
                format!("Markers({outcome}, 0)"),
                format!("Persist({complete}, 0)")
            ]
        );
        let Step::Persist(TxnRecord {
            value: Some(prepared), ..
        }) = &plan[0]
        else {
            panic!("first step persists")
        };
        assert_eq!(prepared.partitions.len(), 2);
        assert_eq!(prepared.txn_start_ms, started_ms);
        assert_eq!(markers_of(&plan)[0].partitions, partitions(&[("a", 1), ("b", 0)]));

        let txn = h.state(ID);
        assert!(txn.partitions.is_empty());
        assert_eq!((txn.txn_start_ms, txn.last_update_ms), (-1, h.now_ms));
        assert_eq!(h.markers.len(), 1);
    }
}

#[test]
fn end_txn_retries_and_wrong_ends() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    // Nothing added: Kafka refuses both ends of an Empty transaction.
    assert_eq!(h.end(ID, producer, true), Err(TxnError::InvalidTxnState));
    assert_eq!(h.end(ID, producer, false), Err(TxnError::InvalidTxnState));

    h.add(ID, producer, &[("t", 0)]).unwrap();
    h.end(ID, producer, true).unwrap();
    assert_eq!(h.end(ID, producer, true), Ok(Vec::new()), "a retried commit succeeds");
    assert_eq!(h.end(ID, producer, false), Err(TxnError::InvalidTxnState));

    h.add(ID, producer, &[("t", 1)]).unwrap();
    h.end(ID, producer, false).unwrap();
    assert_eq!(h.end(ID, producer, false), Ok(Vec::new()), "a retried abort succeeds");
    assert_eq!(h.end(ID, producer, true), Err(TxnError::InvalidTxnState));

    // While markers are still pending: the same end retries, the other is wrong.
    h.add(ID, producer, &[("t", 2)]).unwrap();
    let plan = h
        .coordinator
        .prepare_end_txn(h.now_ms, ID, producer.0, producer.1, true)
        .unwrap();
    h.carry_out_until_markers_fail(plan, true);
    assert_eq!(h.end(ID, producer, true), Err(TxnError::ConcurrentTransactions));
    assert_eq!(h.end(ID, producer, false), Err(TxnError::InvalidTxnState));
}

#[test]
fn the_next_transaction_holds_only_its_own_partitions() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    h.add(ID, producer, &[("t", 0)]).unwrap();
    h.end(ID, producer, true).unwrap();
    h.advance(1_000);
    h.add(ID, producer, &[("u", 5)]).unwrap();
    let txn = h.state(ID);
    assert_eq!(
        txn.partitions.iter().cloned().collect::<Vec<_>>(),
        partitions(&[("u", 5)])
    );
    assert_eq!(txn.txn_start_ms, h.now_ms);
}

#[test]
fn verify_partition_accepts_only_added_partitions_of_an_ongoing_transaction() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    let verify = |h: &Harness, (id, epoch): (i64, i16), topic: &str, partition: i32| {
        h.coordinator.verify_partition(ID, id, epoch, topic, partition)
    };
    assert_eq!(
        verify(&h, producer, "t", 0),
        Err(TxnError::InvalidTxnState),
        "no transaction open"
    );
    h.add(ID, producer, &[("t", 0)]).unwrap();
    assert_eq!(verify(&h, producer, "t", 0), Ok(()));
    assert_eq!(verify(&h, producer, "t", 1), Err(TxnError::InvalidTxnState));
    assert_eq!(verify(&h, producer, "u", 0), Err(TxnError::InvalidTxnState));
    assert_eq!(
        verify(&h, (producer.0 + 1, producer.1), "t", 0),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.coordinator
            .verify_partition("unknown", producer.0, producer.1, "t", 0),
        Err(TxnError::InvalidProducerIdMapping)
    );
    h.end(ID, producer, true).unwrap();
    assert_eq!(
        verify(&h, producer, "t", 0),
        Err(TxnError::InvalidTxnState),
        "committed"
    );

    let newer = h.init(ID);
    h.add(ID, newer, &[("t", 0)]).unwrap();
    assert_eq!(verify(&h, producer, "t", 0), Err(TxnError::ProducerFenced));
    assert_eq!(verify(&h, newer, "t", 0), Ok(()));
}

#[test]
fn a_timed_out_transaction_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    assert_eq!(h.coordinator.next_deadline(), None);
    h.add(ID, producer, &[("t", 0), ("t", 1)]).unwrap();
    let deadline = h.now_ms + i64::from(TIMEOUT_MS);
    assert_eq!(h.coordinator.next_deadline(), Some(deadline));

    assert!(h
        .coordinator
        .prepare_timed_out(deadline - 1, &mut no_allocation)
        .is_empty());
    h.now_ms = deadline;
    let plans = h.coordinator.prepare_timed_out(h.now_ms, &mut no_allocation);
    assert_eq!(plans.len(), 1);
    assert_eq!(
        shape(&plans[0]),
        [
            "Persist(PrepareAbort, 1)",
            "Markers(abort, 1)",
            "Persist(CompleteAbort, 1)"
        ]
    );
    assert_eq!(markers_of(&plans[0])[0].partitions, partitions(&[("t", 0), ("t", 1)]));
    for plan in plans {
        h.carry_out(plan);
    }
    assert_eq!(h.coordinator.next_deadline(), None);
    assert!(h
        .coordinator
        .prepare_timed_out(h.now_ms + 1_000_000, &mut no_allocation)
        .is_empty());

    assert_eq!(h.add(ID, producer, &[("t", 0)]), Err(TxnError::ProducerFenced));
    assert_eq!(h.end(ID, producer, true), Err(TxnError::ProducerFenced));
    assert_eq!(h.init(ID), (producer.0, 2));
}

#[test]
fn next_deadline_is_the_earliest_open_transaction() {
    let mut h = Harness::new();
    let a = h.init("a");
    let b = h.init("b");
    let _idle = h.init("idle");
    h.add("a", a, &[("t", 0)]).unwrap();
    let a_deadline = h.now_ms + i64::from(TIMEOUT_MS);
    h.advance(5_000);
    h.add("b", b, &[("t", 1)]).unwrap();
    assert_eq!(h.coordinator.next_deadline(), Some(a_deadline));
    h.end("a", a, true).unwrap();
    assert_eq!(h.coordinator.next_deadline(), Some(a_deadline + 5_000));
}

#[test]
fn pending_completions_finish_a_prepare_found_after_a_crash() {
    let mut live = Harness::new();
    let producer = live.init(ID);
    live.add(ID, producer, &[("t", 0), ("u", 1)]).unwrap();
    let plan = live.end(ID, producer, true).unwrap();
    assert!(live.coordinator.pending_completions(live.now_ms).is_empty());

    // The crash came after the PrepareCommit record, before the markers: the log ends there.
    assert_eq!(shape(&plan)[0], "Persist(PrepareCommit, 0)");
    let complete_at = live.log.len() - 1;
    assert_eq!(
        live.log[complete_at].value.as_ref().unwrap().state,
        TxnState::CompleteCommit
    );
    let mut restarted = Harness::new();
    restarted.now_ms = live.now_ms + 10;
    for record in &live.log[..complete_at] {
        restarted.coordinator.apply(record.clone());
    }
    assert_eq!(restarted.state(ID).state, TxnState::PrepareCommit);

    let plans = restarted.coordinator.pending_completions(restarted.now_ms);
    assert_eq!(plans.len(), 1);
    assert_eq!(shape(&plans[0]), ["Markers(commit, 0)", "Persist(CompleteCommit, 0)"]);
    assert_eq!(markers_of(&plans[0])[0].partitions, partitions(&[("t", 0), ("u", 1)]));
    for plan in plans {
        restarted.carry_out(plan);
    }
    assert_eq!(restarted.state(ID).state, TxnState::CompleteCommit);
    assert!(restarted.coordinator.pending_completions(restarted.now_ms).is_empty());
}

#[test]
fn pending_completions_retry_failed_marker_writes() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    h.add(ID, producer, &[("t", 0)]).unwrap();
    let plan = h
        .coordinator
        .prepare_end_txn(h.now_ms, ID, producer.0, producer.1, false)
        .unwrap();
    h.carry_out_until_markers_fail(plan, true);
    assert_eq!(h.state(ID).state, TxnState::PrepareAbort);
    let plans = h.coordinator.pending_completions(h.now_ms);
    assert_eq!(shape(&plans[0]), ["Markers(abort, 0)", "Persist(CompleteAbort, 0)"]);
    h.carry_out_until_markers_fail(plans[0].clone(), true);
    assert_eq!(h.coordinator.pending_completions(h.now_ms).len(), 1, "still pending");
    h.carry_out(plans[0].clone());
    assert_eq!(h.state(ID).state, TxnState::CompleteAbort);
    assert_eq!(h.end(ID, producer, false), Ok(Vec::new()));
}

#[test]
fn idle_transactional_ids_expire_by_tombstone() {
    let mut h = Harness::new();
    let expiration_ms = h.coordinator.config().id_expiration_ms;
    let _idle = h.init("idle");
    let open = h.init("open");
    h.add("open", open, &[("t", 0)]).unwrap();
    let last_update_ms = h.now_ms;

    assert!(h
        .coordinator
        .prepare_expired_ids(last_update_ms + expiration_ms - 1)
        .is_empty());
    h.now_ms = last_update_ms + expiration_ms;
    let plan = h.coordinator.prepare_expired_ids(h.now_ms);
    assert_eq!(shape(&plan), ["Tombstone"]);
    let Step::Persist(tombstone) = &plan[0] else {
        panic!("a tombstone")
    };
    assert_eq!(tombstone.transactional_id, "idle");
    h.carry_out(plan);
    assert_eq!(h.coordinator.describe("idle"), None);
    assert_eq!(h.coordinator.len(), 1, "an open transaction never expires");

    // The id starts over with a new producer id.
    assert_eq!(h.init("idle"), (1003, 0));
}

#[test]
fn list_and_describe_filter_by_state_producer_and_duration() {
    let mut h = Harness::new();
    let a = h.init("a");
    h.add("a", a, &[("t", 0)]).unwrap();
    h.advance(10_000);
    let b = h.init("b");
    h.add("b", b, &[("t", 1)]).unwrap();
    let c = h.init("c");
    h.add("c", c, &[("t", 2)]).unwrap();
    h.end("c", c, true).unwrap();
    let _d = h.init("d");

    let ids = |listings: Vec<TxnListing>| -> Vec<String> { listings.into_iter().map(|l| l.transactional_id).collect() };
    let now = h.now_ms;
    assert_eq!(ids(h.coordinator.list(now, &[], &[], None)), ["a", "b", "c", "d"]);
    assert_eq!(
        ids(h.coordinator.list(now, &[TxnState::Ongoing], &[], None)),
        ["a", "b"]
    );
    assert_eq!(
        ids(h
            .coordinator
            .list(now, &[TxnState::CompleteCommit, TxnState::Empty], &[], None)),
        ["c", "d"]
    );
    assert_eq!(ids(h.coordinator.list(now, &[], &[b.0, c.0], None)), ["b", "c"]);
    assert_eq!(
        ids(h.coordinator.list(now, &[TxnState::Ongoing], &[c.0], None)),
        Vec::<String>::new()
    );
    // Only "a" has been open for more than 5 s; idle ids have no duration.
    assert_eq!(ids(h.coordinator.list(now, &[], &[], Some(5_000))), ["a"]);
    assert_eq!(ids(h.coordinator.list(now, &[], &[], Some(0))), ["a"]);
    assert_eq!(ids(h.coordinator.list(now + 1, &[], &[], Some(0))), ["a", "b"]);
    assert_eq!(
        h.coordinator.list(now, &[TxnState::Ongoing], &[a.0], None),
        [TxnListing {
            transactional_id: "a".into(),
            producer_id: a.0,
            state: TxnState::Ongoing
        }]
    );

    let described = h.coordinator.describe("b").unwrap();
    assert_eq!((described.producer_id, described.producer_epoch), b);
    assert_eq!(described.timeout_ms, TIMEOUT_MS);
    assert_eq!(described.txn_start_ms, now);
    assert_eq!(described.partitions, [("t".to_string(), 1)].into());
    assert_eq!(h.coordinator.describe("nope"), None);
}

#[test]
fn replaying_the_log_rebuilds_the_live_state() {
    let mut h = Harness::new();
    let a = h.init("a");
    h.add("a", a, &[("t", 0)]).unwrap();
    h.end("a", a, true).unwrap();
    h.add("a", a, &[("t", 1), ("u", 0)]).unwrap();
    let b = h.init("b");
    h.add("b", b, &[("t", 2)]).unwrap();
    h.advance(10);
    let _b2 = h.init("b"); // fences b, aborting its transaction
    let c = h.init("c");
    h.add("c", c, &[("t", 3)]).unwrap();
    h.now_ms += i64::from(TIMEOUT_MS);
    for plan in h.coordinator.prepare_timed_out(h.now_ms, &mut no_allocation) {
        h.carry_out(plan); // times out "a" and "c"
    }
    let d = h.init("d");
    h.add("d", d, &[("t", 4)]).unwrap();
    let plan = h.coordinator.prepare_end_txn(h.now_ms, "d", d.0, d.1, true).unwrap();
    h.carry_out_until_markers_fail(plan, true);
    let _e = h.init("e");
    h.now_ms += h.coordinator.config().id_expiration_ms;
    let expired = h.coordinator.prepare_expired_ids(h.now_ms);
    assert_eq!(expired.len(), 4, "a, b, c and e; d is still completing");
    h.carry_out(expired);
    let _a2 = h.init("a");

    let mut replayed = TxnCoordinator::new(TxnConfig::default());
    for record in &h.log {
        // Through the byte layout, as a restart reads it.
        let (key, value) = record.encode();
        replayed.apply(TxnRecord::decode(key, value).unwrap());
    }
    let live = h.coordinator.list(h.now_ms, &[], &[], None);
    assert_eq!(replayed.list(h.now_ms, &[], &[], None), live);
    assert_eq!(live.len(), 2);
    for listing in &live {
        assert_eq!(
            replayed.describe(&listing.transactional_id),
            h.coordinator.describe(&listing.transactional_id)
        );
    }
    assert_eq!(
        replayed.pending_completions(h.now_ms),
        h.coordinator.pending_completions(h.now_ms)
    );
}

#[test]
fn apply_never_holds_kafkas_in_memory_states() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    h.add(ID, producer, &[("t", 0)]).unwrap();
    let mut fenced = h.state(ID).clone();
    fenced.state = TxnState::PrepareEpochFence;
    h.coordinator.apply(TxnRecord {
        transactional_id: ID.into(),
        value: Some(fenced.clone()),
    });
    assert_eq!(h.state(ID).state, TxnState::PrepareAbort);
    assert_eq!(
        shape(&h.coordinator.pending_completions(h.now_ms)[0])[0],
        "Markers(abort, 0)"
    );

    fenced.state = TxnState::Dead;
    h.coordinator.apply(TxnRecord {
        transactional_id: ID.into(),
        value: Some(fenced),
    });
    assert!(h.coordinator.is_empty());
}

// ------------------------------------------------------------------- transactions v2

/// An id whose transaction is open at `epoch` under producer 6, as a v2 client left it.
fn ongoing_v2_at(h: &mut Harness, epoch: i16) {
    h.coordinator.apply(TxnRecord {
        transactional_id: ID.into(),
        value: Some(TransactionMetadata {
            state: TxnState::Ongoing,
            partitions: [("t".to_string(), 0)].into(),
            txn_start_ms: h.now_ms,
            client_transaction_version: 2,
            ..TransactionMetadata::empty(6, epoch, TIMEOUT_MS, h.now_ms)
        }),
    });
}

#[test]
fn v2_every_end_bumps_the_epoch_and_its_markers_carry_the_new_one() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    assert_eq!(h.add_v2(ID, producer, &[("t", 0), ("t", 1)]), Ok(1));
    assert_eq!(h.add_v2(ID, producer, &[("t", 1)]), Ok(0), "already in the transaction");
    assert_eq!(h.state(ID).client_transaction_version, 2);

    let (next, plan) = h.end_v2(ID, producer, true).unwrap();
    assert_eq!(next, (producer.0, 1));
    assert_eq!(
        shape(&plan),
        [
            "Persist(PrepareCommit, 1)",
            "Markers(commit, 1)",
            "Persist(CompleteCommit, 1)"
        ]
    );
    assert_eq!(markers_of(&plan)[0].partitions, partitions(&[("t", 0), ("t", 1)]));
    // The ended transaction's epoch can no longer start one: a late write is fenced.
    assert_eq!(h.add_v2(ID, producer, &[("t", 0)]), Err(TxnError::ProducerFenced));

    assert_eq!(h.add_v2(ID, next, &[("t", 2)]), Ok(1));
    assert_eq!(h.state(ID).partitions, partitions(&[("t", 2)]).into_iter().collect());
    let (after_abort, plan) = h.end_v2(ID, next, false).unwrap();
    assert_eq!(after_abort, (producer.0, 2));
    assert_eq!(
        shape(&plan),
        [
            "Persist(PrepareAbort, 2)",
            "Markers(abort, 2)",
            "Persist(CompleteAbort, 2)"
        ]
    );
    let replayed = h.replayed();
    assert_eq!(replayed.describe(ID), h.coordinator.describe(ID));
}

#[test]
fn v2_a_retried_end_is_answered_again_and_other_epochs_are_fenced() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    h.add_v2(ID, producer, &[("t", 0)]).unwrap();
    let (next, _) = h.end_v2(ID, producer, true).unwrap();

    // The answer was lost; the client sends the same request again.
    let retried = h.prepare_end_v2(ID, producer, true).unwrap();
    assert!(retried.steps.is_empty());
    assert_eq!((retried.producer_id, retried.producer_epoch), next);
    assert_eq!(h.prepare_end_v2(ID, producer, false), Err(TxnError::InvalidTxnState));
    // At the new epoch nothing is open: a commit is refused, an abort is an empty abort.
    assert_eq!(h.prepare_end_v2(ID, next, true), Err(TxnError::InvalidTxnState));
    assert_eq!(
        h.prepare_end_v2(ID, (next.0, next.1 + 1), true),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        h.prepare_end_v2(ID, (next.0 + 1, next.1), true),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.prepare_end_v2("unknown", next, true),
        Err(TxnError::InvalidProducerIdMapping)
    );

    h.add_v2(ID, next, &[("t", 0)]).unwrap();
    let (third, _) = h.end_v2(ID, next, true).unwrap();
    assert_eq!(third, (producer.0, 2));
    // Two bumps ago is not a retry.
    assert_eq!(h.prepare_end_v2(ID, producer, true), Err(TxnError::ProducerFenced));
}

#[test]
fn v2_an_abort_with_nothing_added_bumps_the_epoch_without_markers() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    assert_eq!(h.prepare_end_v2(ID, producer, true), Err(TxnError::InvalidTxnState));
    let (next, plan) = h.end_v2(ID, producer, false).unwrap();
    assert_eq!(next, (producer.0, 1));
    assert_eq!(shape(&plan), ["Persist(PrepareAbort, 1)", "Persist(CompleteAbort, 1)"]);
    assert_eq!(h.state(ID).state, TxnState::CompleteAbort);
    assert_eq!(h.state(ID).txn_start_ms, -1);
    // ...and again from CompleteAbort at the current epoch.
    let (again, _) = h.end_v2(ID, next, false).unwrap();
    assert_eq!(again, (producer.0, 2));
}

#[test]
fn v2_a_timed_out_transaction_answers_its_clients_abort_with_the_new_epoch() {
    let mut h = Harness::new();
    let producer = h.init(ID);
    h.add_v2(ID, producer, &[("t", 0)]).unwrap();
    h.advance(i64::from(TIMEOUT_MS));
    let plans = h.coordinator.prepare_timed_out(h.now_ms, &mut no_allocation);
    assert_eq!(plans.len(), 1);
    h.carry_out(plans.into_iter().next().unwrap());
    assert_eq!(
        (h.state(ID).state, h.state(ID).producer_epoch),
        (TxnState::CompleteAbort, 1)
    );

    // Its writes are fenced; it learns so, aborts, and carries on at the epoch the abort took.
    assert_eq!(h.add_v2(ID, producer, &[("t", 0)]), Err(TxnError::ProducerFenced));
    assert_eq!(h.prepare_end_v2(ID, producer, true), Err(TxnError::ProducerFenced));
    let answer = h.prepare_end_v2(ID, producer, false).unwrap();
    assert!(answer.steps.is_empty());
    assert_eq!((answer.producer_id, answer.producer_epoch), (producer.0, 1));
    assert_eq!(h.add_v2(ID, (producer.0, 1), &[("t", 0)]), Ok(1));
}

#[test]
fn v2_an_end_that_overflows_the_epoch_moves_to_a_new_producer_id() {
    let mut h = Harness::new();
    ongoing_v2_at(&mut h, PRODUCER_EPOCH_EXHAUSTED);
    let old = (6, PRODUCER_EPOCH_EXHAUSTED);
    let (next, plan) = h.end_v2(ID, old, true).unwrap();
    assert_eq!(next, (1001, 0));
    let markers = markers_of(&plan)[0];
    assert_eq!((markers.producer_id, markers.producer_epoch), (6, i16::MAX));
    let completed = h.state(ID).clone();
    assert_eq!(
        (
            completed.producer_id,
            completed.producer_epoch,
            completed.previous_producer_id
        ),
        (1001, 0, 6)
    );
    // The retry names the old producer id and epoch.
    let retried = h.prepare_end_v2(ID, old, true).unwrap();
    assert!(retried.steps.is_empty());
    assert_eq!((retried.producer_id, retried.producer_epoch), next);
    // A restart keeps what recognises it.
    let replayed = h.replayed();
    assert_eq!(replayed.describe(ID), Some(&completed));
    // So does a KIP-360 InitProducerId naming the old producer.
    assert_eq!(h.init_expecting(ID, Some(old)), Ok((1001, 1)));
}

#[test]
fn v2_markers_still_pending_hold_the_next_transaction_back() {
    let mut h = Harness::new();
    ongoing_v2_at(&mut h, PRODUCER_EPOCH_EXHAUSTED);
    let plan = h.prepare_end_v2(ID, (6, PRODUCER_EPOCH_EXHAUSTED), true).unwrap();
    let next = (plan.producer_id, plan.producer_epoch);
    h.carry_out_until_markers_fail(plan.steps, true);
    let prepared = h.state(ID).clone();
    assert_eq!(
        (prepared.state, prepared.next_producer_id),
        (TxnState::PrepareCommit, 1001)
    );
    // The client already holds the new producer id; it waits rather than being told the id is
    // not its own.
    assert_eq!(h.add_v2(ID, next, &[("t", 0)]), Err(TxnError::ConcurrentTransactions));
    assert_eq!(h.prepare_end_v2(ID, next, false), Err(TxnError::ConcurrentTransactions));
    // A restart finishes the end the same way, under the recorded next producer id.
    let replayed = h.replayed();
    assert_eq!(
        replayed.pending_completions(h.now_ms),
        h.coordinator.pending_completions(h.now_ms)
    );
    for plan in h.coordinator.pending_completions(h.now_ms) {
        h.carry_out(plan);
    }
    assert_eq!((h.state(ID).producer_id, h.state(ID).producer_epoch), next);
    assert_eq!(h.add_v2(ID, next, &[("t", 0)]), Ok(1));
}

#[test]
fn v2_a_timeout_at_the_last_epoch_moves_to_a_new_producer_id() {
    let mut h = Harness::new();
    ongoing_v2_at(&mut h, PRODUCER_EPOCH_EXHAUSTED);
    h.advance(i64::from(TIMEOUT_MS));
    let mut allocate = || Some(77);
    let plans = h.coordinator.prepare_timed_out(h.now_ms, &mut allocate);
    let markers = markers_of(&plans[0])[0];
    assert_eq!((markers.producer_id, markers.producer_epoch), (6, i16::MAX));
    h.carry_out(plans.into_iter().next().unwrap());
    assert_eq!((h.state(ID).producer_id, h.state(ID).producer_epoch), (77, 0));
    let answer = h.prepare_end_v2(ID, (6, PRODUCER_EPOCH_EXHAUSTED), false).unwrap();
    assert_eq!((answer.producer_id, answer.producer_epoch), (77, 0));
}

// ------------------------------------------------------------------- transactions v2, a model

/// What a transactions v2 client and the world around it do next.
#[derive(Debug, Clone)]
enum ClientOp {
    /// Writes to partition `0..4` of "t" (Produce 12 adds it to the transaction).
    Write(i32),
    /// EndTxn 5.
    End { commit: bool },
    /// EndTxn 5 whose markers cannot be written yet; the answer still comes back.
    EndWithMarkersFailing { commit: bool },
    /// The last EndTxn sent again, as after a lost answer.
    RetryLastEnd,
    /// The transaction's timeout passes and the timer runs.
    TimeOut,
    /// The timer finishes markers left pending.
    Tick,
    /// The broker restarts: the coordinator is rebuilt from its log.
    Restart,
}

fn any_client_op() -> impl proptest::strategy::Strategy<Value = ClientOp> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..4i32).prop_map(ClientOp::Write),
        3 => any::<bool>().prop_map(|commit| ClientOp::End { commit }),
        1 => any::<bool>().prop_map(|commit| ClientOp::EndWithMarkersFailing { commit }),
        1 => Just(ClientOp::RetryLastEnd),
        1 => Just(ClientOp::TimeOut),
        1 => Just(ClientOp::Tick),
        1 => Just(ClientOp::Restart),
    ]
}

/// What the client knows, and what it may therefore expect.
struct ClientModel {
    producer: (i64, i16),
    /// Partitions written in its open transaction.
    written: BTreeSet<i32>,
    /// The last EndTxn (producer, commit), and whether a retry of it is still a retry.
    last_end: Option<((i64, i16), bool)>,
    retry_valid: bool,
    /// The coordinator aborted the open transaction since the client last heard from it.
    timed_out: bool,
    /// Markers of an answered end are still to be written.
    markers_pending: bool,
}

/// Runs `ops` against the coordinator as a v2 client would, starting at `start_epoch`, and
/// checks each answer against what the client can know, and the log against the live state.
fn run_v2_model(start_epoch: i16, ops: &[ClientOp]) {
    let mut h = Harness::new();
    let (producer_id, _) = h.init(ID);
    // An id that has already been through many transactions.
    let record = TxnRecord {
        transactional_id: ID.into(),
        value: Some(TransactionMetadata::empty(
            producer_id,
            start_epoch,
            TIMEOUT_MS,
            h.now_ms,
        )),
    };
    h.log.push(record.clone());
    h.coordinator.apply(record);
    let mut client = ClientModel {
        producer: (producer_id, start_epoch),
        written: BTreeSet::new(),
        last_end: None,
        retry_valid: false,
        timed_out: false,
        markers_pending: false,
    };
    for op in ops {
        h.advance(1);
        let log_before = h.log.len();
        match op {
            ClientOp::Write(partition) => {
                let result = h.add_v2(ID, client.producer, &[("t", *partition)]);
                if client.markers_pending {
                    assert_eq!(result, Err(TxnError::ConcurrentTransactions), "{op:?}");
                } else if client.timed_out {
                    // A timeout past the last epoch moved the id to a new producer id, which
                    // Kafka reports as a mapping error rather than a fence.
                    let expected = if client.producer.1 >= PRODUCER_EPOCH_EXHAUSTED {
                        TxnError::InvalidProducerIdMapping
                    } else {
                        TxnError::ProducerFenced
                    };
                    assert_eq!(result, Err(expected), "{op:?}");
                } else {
                    assert!(result.is_ok(), "{op:?}: {result:?}");
                    client.written.insert(*partition);
                    client.retry_valid = false;
                }
            }
            ClientOp::End { commit } | ClientOp::EndWithMarkersFailing { commit } => {
                let markers_fail = matches!(op, ClientOp::EndWithMarkersFailing { .. });
                let sent = client.producer;
                let result = h.prepare_end_v2(ID, sent, *commit);
                if client.markers_pending {
                    assert_eq!(result, Err(TxnError::ConcurrentTransactions), "{op:?}");
                    continue;
                }
                if client.timed_out {
                    if *commit {
                        assert_eq!(result, Err(TxnError::ProducerFenced), "{op:?}");
                        continue;
                    }
                    let answer = result.expect("the abort of a timed-out transaction");
                    assert!(answer.steps.is_empty(), "answered again: {answer:?}");
                    client.producer = (answer.producer_id, answer.producer_epoch);
                    client.timed_out = false;
                    client.last_end = Some((sent, false));
                    client.retry_valid = true;
                    continue;
                }
                if client.written.is_empty() && *commit {
                    assert_eq!(result, Err(TxnError::InvalidTxnState), "{op:?}");
                    continue;
                }
                let plan = result.unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
                let markers: Vec<Markers> = markers_of(&plan.steps).into_iter().cloned().collect();
                let expected_partitions: Vec<(String, i32)> =
                    client.written.iter().map(|p| ("t".to_string(), *p)).collect();
                match &markers[..] {
                    [] => assert!(expected_partitions.is_empty(), "{plan:?}"),
                    [m] => {
                        assert_eq!(m.partitions, expected_partitions);
                        assert_eq!((m.producer_id, m.commit), (sent.0, *commit));
                        assert_eq!(m.producer_epoch, sent.1 + 1, "the markers carry the bumped epoch");
                    }
                    _ => panic!("one marker batch per end: {plan:?}"),
                }
                let next = (plan.producer_id, plan.producer_epoch);
                if sent.1 >= PRODUCER_EPOCH_EXHAUSTED {
                    assert_eq!(next.1, 0, "past the last epoch, a new producer id");
                    assert_ne!(next.0, sent.0);
                } else {
                    assert_eq!(next, (sent.0, sent.1 + 1));
                }
                h.carry_out_until_markers_fail(plan.steps, markers_fail);
                client.markers_pending = markers_fail && !markers.is_empty();
                client.producer = next;
                client.written.clear();
                client.last_end = Some((sent, *commit));
                client.retry_valid = !client.markers_pending;
            }
            ClientOp::RetryLastEnd => {
                let Some((sent, commit)) = client.last_end else {
                    continue;
                };
                let result = h.prepare_end_v2(ID, sent, commit);
                if client.retry_valid {
                    let answer = result.expect("a retry answered again");
                    assert!(answer.steps.is_empty(), "{answer:?}");
                    assert_eq!((answer.producer_id, answer.producer_epoch), client.producer);
                } else if let Ok(answer) = result {
                    // Whatever it is told, a stale retry changes nothing.
                    assert!(answer.steps.is_empty(), "{answer:?}");
                }
            }
            ClientOp::TimeOut => {
                h.advance(i64::from(TIMEOUT_MS));
                let mut next = h.next_producer_id;
                let mut allocate = || {
                    next += 1;
                    Some(next)
                };
                let plans = h.coordinator.prepare_timed_out(h.now_ms, &mut allocate);
                h.next_producer_id = next;
                let open = !client.written.is_empty() && !client.markers_pending && !client.timed_out;
                assert_eq!(plans.len(), usize::from(open), "{op:?}");
                for plan in plans {
                    h.carry_out(plan);
                }
                if open {
                    client.timed_out = true;
                    client.written.clear();
                    client.retry_valid = false;
                }
            }
            ClientOp::Tick => {
                for plan in h.coordinator.pending_completions(h.now_ms) {
                    h.carry_out(plan);
                }
                // The end whose markers were pending is complete now: its retry is one again.
                if client.markers_pending {
                    client.markers_pending = false;
                    client.retry_valid = true;
                }
            }
            ClientOp::Restart => {
                let before = h.coordinator.describe(ID).cloned();
                h.coordinator = h.replayed();
                assert_eq!(h.coordinator.describe(ID).cloned(), before, "a restart changes nothing");
            }
        }
        // The log alone rebuilds what the live coordinator holds.
        let replayed = h.replayed();
        assert_eq!(replayed.describe(ID), h.coordinator.describe(ID), "after {op:?}");
        assert_eq!(
            replayed.pending_completions(h.now_ms),
            h.coordinator.pending_completions(h.now_ms)
        );
        assert!(client.producer.1 < i16::MAX, "a client never holds the last epoch");
        if matches!(op, ClientOp::RetryLastEnd | ClientOp::Restart) {
            assert_eq!(h.log.len(), log_before, "{op:?} writes nothing");
        }
    }
    // Per producer id, markers never go back in epoch.
    let mut last_epoch: std::collections::BTreeMap<i64, i16> = std::collections::BTreeMap::new();
    for markers in &h.markers {
        let last = last_epoch.entry(markers.producer_id).or_insert(markers.producer_epoch);
        assert!(markers.producer_epoch >= *last, "{:?}", h.markers);
        *last = markers.producer_epoch;
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(512))]

    /// Random runs of a transactions v2 client (writes, ends, lost answers, timeouts, failing
    /// markers, restarts), from a fresh id and from ids a few ends from the last epoch.
    #[test]
    fn v2_clients_always_get_answers_they_can_use(
        start_epoch in proptest::prop_oneof![
            proptest::strategy::Just(0i16),
            (PRODUCER_EPOCH_EXHAUSTED - 3)..=PRODUCER_EPOCH_EXHAUSTED,
        ],
        ops in proptest::collection::vec(any_client_op(), 1..40),
    ) {
        run_v2_model(start_epoch, &ops);
    }
}

#[test]
fn unloaded_ids_are_forgotten_and_a_replay_of_their_records_brings_them_back() {
    let mut h = Harness::new();
    let a = h.init("a");
    let b = h.init("b");
    h.add("a", a, &[("t", 0)]).unwrap();
    h.add("b", b, &[("t", 1)]).unwrap();
    let a_deadline = h.coordinator.next_deadline().unwrap();

    assert_eq!(h.coordinator.unload(|id| id == "a"), 1);
    assert!(h.coordinator.describe("a").is_none());
    assert_eq!(h.state("b").state, TxnState::Ongoing);
    // Its timeout left with it: only b's remains (b was added after a, so later).
    assert!(h.coordinator.next_deadline().unwrap() >= a_deadline);
    h.advance(i64::from(TIMEOUT_MS) + 1);
    let timed_out = h.coordinator.prepare_timed_out(h.now_ms, &mut || None);
    assert_eq!(timed_out.len(), 1);
    assert!(timed_out[0].iter().all(|step| step.transactional_id() == "b"));

    // Whoever coordinates "a" next replays its records and finds its transaction open.
    let mut next = TxnCoordinator::new(TxnConfig::default());
    for record in h.log.iter().filter(|r| r.transactional_id == "a") {
        next.apply(record.clone());
    }
    assert_eq!(next.describe("a").unwrap().state, TxnState::Ongoing);
    assert_eq!(next.describe("a").unwrap().producer_id, a.0);
}

#[test]
fn due_names_the_ids_the_timer_must_act_on_and_prepare_due_plans_each() {
    let mut h = Harness::new();
    let a = h.init("a");
    let b = h.init("b");
    h.add("a", a, &[("t", 0)]).unwrap();
    h.add("b", b, &[("t", 1)]).unwrap();
    // b's markers fail: it is left in PrepareCommit.
    let plan = h.coordinator.prepare_end_txn(h.now_ms, "b", b.0, b.1, true).unwrap();
    h.carry_out_until_markers_fail(plan, true);
    assert_eq!(h.coordinator.due(h.now_ms), ["b"]);
    let completion = h.coordinator.prepare_due("b", h.now_ms, &mut || None).unwrap();
    assert_eq!(shape(&completion), ["Markers(commit, 0)", "Persist(CompleteCommit, 0)"]);
    assert!(
        h.coordinator.prepare_due("a", h.now_ms, &mut || None).is_none(),
        "a is within its timeout"
    );

    h.advance(i64::from(TIMEOUT_MS) + 1);
    assert_eq!(h.coordinator.due(h.now_ms), ["a", "b"]);
    let abort = h.coordinator.prepare_due("a", h.now_ms, &mut || None).unwrap();
    assert_eq!(
        abort,
        h.coordinator.prepare_timed_out(h.now_ms, &mut || None)[0],
        "the same abort as the batch form"
    );
    h.carry_out(abort);
    h.carry_out(completion);
    assert!(h.coordinator.due(h.now_ms).is_empty());
    assert!(h.coordinator.prepare_due("a", h.now_ms, &mut || None).is_none());

    // Expiry, one id at a time.
    assert!(h.coordinator.prepare_expiry("a", h.now_ms).is_none());
    h.advance(TxnConfig::default().id_expiration_ms + 1);
    let tombstone = h.coordinator.prepare_expiry("a", h.now_ms).unwrap();
    assert_eq!(
        tombstone,
        vec![Step::Persist(TxnRecord {
            transactional_id: "a".into(),
            value: None
        })]
    );
    assert!(h.coordinator.prepare_expiry("nobody", h.now_ms).is_none());
}
