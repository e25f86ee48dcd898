//! Each anomaly in a small history that has exactly it, the near misses that must stay clean,
//! and one larger clean history of every kind of client.

use super::{check, AnomalyKind, Report};
use crate::history::Outcome;
use crate::testing::{History, RC, RU};

mod clean;

const Q0: (&str, i32) = ("q", 0);
const Q1: (&str, i32) = ("q", 1);
const IN0: (&str, i32) = ("in", 0);
const OUT0: (&str, i32) = ("out", 0);

/// The report has exactly one anomaly, of this kind, and its message names every one of
/// `names`.
#[track_caller]
fn assert_only(history: &History, kind: AnomalyKind, names: &[&str]) -> Report {
    let report = check(history.events());
    let kinds: Vec<_> = report.anomalies.iter().map(|anomaly| anomaly.to_string()).collect();
    assert_eq!(report.anomalies.len(), 1, "expected one {kind}, got {kinds:#?}");
    assert_eq!(report.count(kind), 1, "expected one {kind}, got {kinds:#?}");
    let message = &report.anomalies[0].message;
    for name in names {
        assert!(message.contains(name), "{message:?} does not name {name:?}");
    }
    report
}

#[track_caller]
fn assert_clean(history: &History) -> Report {
    let report = check(history.events());
    let anomalies: Vec<_> = report.anomalies.iter().map(|anomaly| anomaly.to_string()).collect();
    assert!(report.is_clean(), "expected a clean report, got {anomalies:#?}");
    report
}

#[test]
fn kinds_serialise_as_their_names() {
    for kind in AnomalyKind::ALL {
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.as_str()));
    }
    assert_eq!(
        AnomalyKind::CommittedOffsetBackwards.as_str(),
        "committed_offset_backwards"
    );
    let mut h = History::new();
    h.assigned("member-0", "g", 1, &[Q0])
        .assigned("member-1", "g", 1, &[Q0]);
    let json = serde_json::to_string(&check(h.events())).unwrap();
    assert!(
        json.contains(r#""anomalies":[{"kind":"double_ownership","message":"group g"#),
        "{json}"
    );
}

// Lost writes.

#[test]
fn an_acknowledged_record_beyond_the_final_log_end_is_lost() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a").produce("producer-0", Q0, 1, "b");
    h.final_both(Q0, (0, 1), &[(0, "a")]);
    let report = assert_only(
        &h,
        AnomalyKind::LostWrite,
        &["producer-0", "b", "q/0", "offset 1", "ends at 1"],
    );
    assert_eq!(report.stats.acks_checked, 2);
}

#[test]
fn an_acknowledged_record_overwritten_by_another_is_lost_naming_both() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a").produce("producer-0", Q0, 1, "b");
    h.send("producer-1", Q0, "c").failed("producer-1", Q0, "c");
    h.final_both(Q0, (0, 2), &[(0, "a"), (1, "c")]);
    assert_only(
        &h,
        AnomalyKind::LostWrite,
        &["producer-0's b", "offset 1 holds c", "producer-1"],
    );
}

#[test]
fn a_non_transactional_record_missing_from_read_committed_is_lost() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a");
    h.final_read(RU, Q0, (0, 1), &[(0, "a")])
        .final_read(RC, Q0, (0, 1), &[]);
    assert_only(&h, AnomalyKind::LostWrite, &["a", "read_committed"]);
}

#[test]
fn a_committed_transaction_that_left_nothing_is_lost() {
    let mut h = History::new();
    h.txn_begin("txn-0", "t1")
        .send_in("txn-0", "t1", Q0, "t1-x")
        .send_in("txn-0", "t1", Q0, "t1-y");
    h.ack_in("txn-0", "t1", Q0, 0, "t1-x")
        .ack_in("txn-0", "t1", Q0, 1, "t1-y")
        .txn_end("txn-0", "t1", Outcome::Committed);
    // Offset 2 is the commit marker.
    h.final_read(RU, Q0, (0, 3), &[(0, "t1-x"), (1, "t1-y")])
        .final_read(RC, Q0, (0, 3), &[]);
    assert_only(&h, AnomalyKind::LostWrite, &["t1", "committed", "t1-x", "t1-y"]);
}

/// One input `i0` read by a drained group whose only transaction aborted.
fn input_processed_by_an_aborted_transaction() -> History {
    let mut h = History::new();
    h.produce("producer-0", IN0, 0, "i0");
    h.txn_begin("etl-0", "e1")
        .send_from("etl-0", "e1", OUT0, "e1-i0", "i0")
        .ack_in("etl-0", "e1", OUT0, 0, "e1-i0");
    h.txn_offsets("etl-0", "e1", "etl", &[("in", 0, 1)])
        .txn_end("etl-0", "e1", Outcome::Aborted);
    h.final_both(IN0, (0, 1), &[(0, "i0")]);
    h.final_read(RU, OUT0, (0, 2), &[(0, "e1-i0")])
        .final_read(RC, OUT0, (0, 2), &[]);
    h
}

#[test]
fn an_input_of_a_drained_group_with_no_committed_output_is_lost() {
    let mut h = input_processed_by_an_aborted_transaction();
    h.drained("etl", true);
    let report = assert_only(
        &h,
        AnomalyKind::LostWrite,
        &["input i0", "in/0 offset 0", "e1-i0", "aborted"],
    );
    assert_eq!(report.stats.inputs_checked, 1);
}

#[test]
fn an_input_without_output_is_not_lost_when_the_drain_timed_out() {
    let mut h = input_processed_by_an_aborted_transaction();
    h.drained("etl", false);
    assert_clean(&h);
}

#[test]
fn records_below_the_log_start_were_deleted_by_retention_not_lost() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a")
        .produce("producer-0", Q0, 1, "b")
        .produce("producer-0", Q0, 2, "c");
    h.final_both(Q0, (2, 3), &[(2, "c")]);
    let report = assert_clean(&h);
    assert_eq!((report.stats.acks_below_log_start, report.stats.acks_checked), (2, 1));
}

#[test]
fn a_failed_send_may_be_absent_or_present_once() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a");
    h.send("producer-0", Q0, "b").failed("producer-0", Q0, "b");
    h.send("producer-0", Q0, "c").failed("producer-0", Q0, "c");
    h.produce("producer-0", Q0, 2, "d");
    h.final_both(Q0, (0, 3), &[(0, "a"), (1, "c"), (2, "d")]);
    h.read("member-0", RU, Q0, 1, "c");
    let report = assert_clean(&h);
    assert_eq!(
        (report.stats.sends, report.stats.send_failures, report.stats.acks),
        (4, 2, 2)
    );
}

#[test]
fn nothing_is_concluded_without_a_complete_final_read() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a").produce("producer-0", Q1, 0, "b");
    // q/1's final read found a stranger's record but never completed: no FinalEnd.
    let _ = h.push(
        "final",
        crate::history::Op::FinalRead {
            topic: "q".into(),
            partition: 1,
            offset: 0,
            value: "x".into(),
            isolation: RU,
        },
    );
    let report = assert_clean(&h);
    assert_eq!(
        (report.stats.acks_without_final_read, report.stats.acks_checked),
        (2, 0)
    );
}

// Duplicates.

#[test]
fn one_value_at_two_offsets_of_the_final_read_is_a_duplicate() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a");
    h.final_both(Q0, (0, 2), &[(0, "a"), (1, "a")]);
    assert_only(
        &h,
        AnomalyKind::Duplicate,
        &["producer-0's a", "q/0 offset 0", "q/0 offset 1"],
    );
}

#[test]
fn one_value_read_at_two_offsets_by_two_clients_is_a_duplicate() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a");
    h.read("member-0", RU, Q0, 0, "a").read("member-1", RU, Q0, 3, "a");
    assert_only(
        &h,
        AnomalyKind::Duplicate,
        &["a", "offset 0 (read by member-0)", "offset 3 (read by member-1)"],
    );
}

#[test]
fn one_value_at_one_offset_read_by_many_is_no_duplicate() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a").produce("producer-0", Q0, 1, "b");
    h.read("member-0", RU, Q0, 0, "a").read("member-0", RU, Q0, 1, "b");
    h.read("member-1", RC, Q0, 0, "a").read("member-1", RC, Q0, 1, "b");
    h.final_both(Q0, (0, 2), &[(0, "a"), (1, "b")]);
    assert_clean(&h);
}

#[test]
fn an_input_processed_by_two_committed_transactions_is_a_duplicate() {
    let mut h = History::new();
    h.produce("producer-0", IN0, 0, "i0");
    for (txn, output, offset) in [("e1", "e1-i0", 0), ("e2", "e2-i0", 2)] {
        h.txn_begin("etl-0", txn)
            .send_from("etl-0", txn, OUT0, output, "i0")
            .ack_in("etl-0", txn, OUT0, offset, output);
        h.txn_offsets("etl-0", txn, "etl", &[("in", 0, 1)])
            .txn_end("etl-0", txn, Outcome::Committed);
    }
    h.drained("etl", true);
    h.final_both(IN0, (0, 1), &[(0, "i0")]);
    h.final_both(OUT0, (0, 4), &[(0, "e1-i0"), (2, "e2-i0")]);
    assert_only(
        &h,
        AnomalyKind::Duplicate,
        &["input i0", "e1-i0", "e2-i0", "transaction e1", "transaction e2"],
    );
}

// Reorders.

#[test]
fn acknowledgements_out_of_send_order_are_a_reorder() {
    let mut h = History::new();
    h.send("producer-0", Q0, "a").send("producer-0", Q0, "b");
    h.ack("producer-0", Q0, 0, "b").ack("producer-0", Q0, 1, "a");
    assert_only(
        &h,
        AnomalyKind::Reorder,
        &["producer-0", "sent a then b", "q/0", "offsets 1 then 0"],
    );
}

#[test]
fn a_final_read_out_of_send_order_is_a_reorder() {
    let mut h = History::new();
    h.send("producer-0", Q0, "a").send("producer-0", Q0, "b");
    h.failed("producer-0", Q0, "a").failed("producer-0", Q0, "b");
    h.final_both(Q0, (0, 2), &[(0, "b"), (1, "a")]);
    assert_only(
        &h,
        AnomalyKind::Reorder,
        &["producer-0's b at offset 0", "a at offset 1"],
    );
}

#[test]
fn two_producers_interleaving_is_no_reorder() {
    let mut h = History::new();
    h.send("producer-0", Q0, "a0")
        .send("producer-1", Q0, "b0")
        .send("producer-0", Q0, "a1");
    h.ack("producer-1", Q0, 0, "b0")
        .ack("producer-0", Q0, 1, "a0")
        .ack("producer-0", Q0, 2, "a1");
    h.final_both(Q0, (0, 3), &[(0, "b0"), (1, "a0"), (2, "a1")]);
    assert_clean(&h);
}

// Polls.

#[test]
fn a_poll_going_back_without_a_seek_is_non_monotonic() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a").produce("producer-0", Q0, 1, "b");
    h.read("member-0", RU, Q0, 0, "a")
        .read("member-0", RU, Q0, 1, "b")
        .read("member-0", RU, Q0, 1, "b");
    assert_only(
        &h,
        AnomalyKind::NonMonotonicPoll,
        &["member-0", "q/0 offset 1 (b) then offset 1 (b)"],
    );
}

#[test]
fn a_re_read_after_a_seek_or_an_assignment_is_monotonic() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a").produce("producer-0", Q0, 1, "b");
    h.read("member-0", RU, Q0, 0, "a").read("member-0", RU, Q0, 1, "b");
    h.seek("member-0", Q0, 0)
        .read("member-0", RU, Q0, 0, "a")
        .read("member-0", RU, Q0, 1, "b");
    h.assigned("member-0", "g", 2, &[Q0]).read("member-0", RU, Q0, 0, "a");
    h.final_both(Q0, (0, 2), &[(0, "a"), (1, "b")]);
    assert_clean(&h);
}

#[test]
fn a_seek_in_another_partition_excuses_nothing() {
    let mut h = History::new();
    h.read("member-0", RU, Q0, 4, "e")
        .seek("member-0", Q1, 0)
        .read("member-0", RU, Q0, 3, "d");
    assert_only(
        &h,
        AnomalyKind::NonMonotonicPoll,
        &["q/0 offset 4 (e) then offset 3 (d)"],
    );
}

#[test]
fn a_poll_skipping_an_existing_record_is_an_unexplained_gap() {
    let mut h = History::new();
    for (offset, value) in [(0, "a"), (1, "b"), (2, "c")] {
        h.produce("producer-0", Q0, offset, value);
    }
    h.read("member-0", RU, Q0, 0, "a").read("member-0", RU, Q0, 2, "c");
    h.final_both(Q0, (0, 3), &[(0, "a"), (1, "b"), (2, "c")]);
    assert_only(
        &h,
        AnomalyKind::UnexplainedGap,
        &["member-0", "offset 0 (a) then offset 2 (c)", "offset 1 (b)"],
    );
}

#[test]
fn a_hole_in_a_partition_without_transactions_is_an_unexplained_gap() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a").produce("producer-0", Q0, 3, "d");
    h.final_both(Q0, (0, 5), &[(0, "a"), (3, "d")]);
    let report = check(h.events());
    assert_eq!(report.count(AnomalyKind::UnexplainedGap), 2, "{:#?}", report.anomalies);
    assert!(report.anomalies[0]
        .message
        .contains("q/0 has no record at offsets [1, 3) (2 of them)"));
    assert!(report.anomalies[1].message.contains("[4, 5)"));
}

#[test]
fn read_committed_skipping_an_aborted_transaction_and_markers_is_no_gap() {
    let mut h = History::new();
    h.produce("producer-0", Q0, 0, "a");
    h.txn_begin("txn-0", "t1")
        .send_in("txn-0", "t1", Q0, "t1-x")
        .ack_in("txn-0", "t1", Q0, 1, "t1-x");
    h.txn_end("txn-0", "t1", Outcome::Aborted);
    h.produce("producer-0", Q0, 3, "d");
    h.read("member-0", RC, Q0, 0, "a").read("member-0", RC, Q0, 3, "d");
    h.read("member-1", RU, Q0, 0, "a")
        .read("member-1", RU, Q0, 1, "t1-x")
        .read("member-1", RU, Q0, 3, "d");
    h.final_read(RU, Q0, (0, 4), &[(0, "a"), (1, "t1-x"), (3, "d")]);
    h.final_read(RC, Q0, (0, 4), &[(0, "a"), (3, "d")]);
    assert_clean(&h);
}

// Transactions.

/// Transaction `t1` wrote `t1-x` at q/0 offset 0 and `t1-y` at q/1 offset 0, each followed by
/// its marker.
fn two_partition_transaction(outcome: Option<Outcome>) -> History {
    let mut h = History::new();
    h.txn_begin("txn-0", "t1")
        .send_in("txn-0", "t1", Q0, "t1-x")
        .send_in("txn-0", "t1", Q1, "t1-y");
    h.ack_in("txn-0", "t1", Q0, 0, "t1-x")
        .ack_in("txn-0", "t1", Q1, 0, "t1-y");
    if let Some(outcome) = outcome {
        h.txn_end("txn-0", "t1", outcome);
    }
    h.final_read(RU, Q0, (0, 2), &[(0, "t1-x")])
        .final_read(RU, Q1, (0, 2), &[(0, "t1-y")]);
    h
}

#[test]
fn a_read_committed_read_of_an_aborted_record_is_an_aborted_read() {
    let mut h = two_partition_transaction(Some(Outcome::Aborted));
    h.final_read(RC, Q0, (0, 2), &[]).final_read(RC, Q1, (0, 2), &[]);
    h.read("member-0", RU, Q1, 0, "t1-y"); // read_uncommitted may see it
    h.read("member-1", RC, Q0, 0, "t1-x")
        .read("member-2", RC, Q0, 0, "t1-x");
    assert_only(
        &h,
        AnomalyKind::AbortedRead,
        &["t1-x", "q/0 offset 0", "t1 (aborted)", "member-1, member-2"],
    );
}

#[test]
fn an_aborted_record_in_the_final_read_committed_read_is_an_aborted_read() {
    let mut h = two_partition_transaction(Some(Outcome::Aborted));
    h.final_read(RC, Q0, (0, 2), &[])
        .final_read(RC, Q1, (0, 2), &[(0, "t1-y")]);
    assert_only(&h, AnomalyKind::AbortedRead, &["t1-y", "the final read"]);
}

#[test]
fn a_read_of_an_unknown_transaction_that_came_to_nothing_is_an_aborted_read() {
    let mut h = two_partition_transaction(None);
    h.final_read(RC, Q0, (0, 2), &[]).final_read(RC, Q1, (0, 2), &[]);
    h.read("member-0", RC, Q1, 0, "t1-y");
    let report = assert_only(
        &h,
        AnomalyKind::AbortedRead,
        &["t1-y", "resolved as aborted", "member-0"],
    );
    assert_eq!(report.stats.txns_unknown, 1);
}

#[test]
fn an_unknown_transaction_visible_whole_or_not_at_all_is_clean() {
    let mut h = two_partition_transaction(Some(Outcome::Unknown));
    h.final_read(RC, Q0, (0, 2), &[(0, "t1-x")])
        .final_read(RC, Q1, (0, 2), &[(0, "t1-y")]);
    h.read("member-0", RC, Q1, 0, "t1-y");
    assert_clean(&h);

    let mut h = two_partition_transaction(Some(Outcome::Unknown));
    h.final_read(RC, Q0, (0, 2), &[]).final_read(RC, Q1, (0, 2), &[]);
    h.read("member-0", RU, Q1, 0, "t1-y");
    assert_clean(&h);
}

#[test]
fn a_committed_transaction_visible_in_part_is_torn() {
    let mut h = two_partition_transaction(Some(Outcome::Committed));
    h.final_read(RC, Q0, (0, 2), &[(0, "t1-x")])
        .final_read(RC, Q1, (0, 2), &[]);
    assert_only(
        &h,
        AnomalyKind::TornTransaction,
        &["txn-0's transaction t1 (committed)", "t1-x (q/0", "t1-y (q/1"],
    );
}

#[test]
fn an_unknown_transaction_visible_in_part_is_torn() {
    let mut h = two_partition_transaction(None);
    h.final_read(RC, Q0, (0, 2), &[])
        .final_read(RC, Q1, (0, 2), &[(0, "t1-y")]);
    assert_only(
        &h,
        AnomalyKind::TornTransaction,
        &["t1 (outcome unknown)", "t1-y (q/1 offset 0) visible"],
    );
}

#[test]
fn a_transaction_is_judged_only_where_the_final_read_covers_it() {
    // q/1 was never read back, and q/0's last stable offset stayed below the record.
    let mut h = two_partition_transaction(Some(Outcome::Committed));
    h.final_read(RC, Q0, (0, 0), &[]);
    assert_clean(&h);
}

// Groups.

#[test]
fn a_commit_below_an_earlier_one_goes_backwards() {
    let mut h = History::new();
    h.commit("member-0", "g", 1, &[("q", 0, 10)], None);
    h.commit("member-1", "g", 2, &[("q", 0, 5)], None);
    let report = assert_only(
        &h,
        AnomalyKind::CommittedOffsetBackwards,
        &["group g", "q/0 offset 5", "member-1", "offset 10"],
    );
    assert_eq!(report.stats.offset_commits, 2);
}

#[test]
fn a_committed_transaction_s_offsets_count_from_its_end() {
    let mut h = History::new();
    // The transaction adds offset 5 before the plain commit of 10 but commits after it.
    h.txn_begin("etl-0", "e1")
        .txn_offsets("etl-0", "e1", "g", &[("q", 0, 5)]);
    h.commit("member-0", "g", 1, &[("q", 0, 10)], None);
    h.txn_end("etl-0", "e1", Outcome::Committed);
    assert_only(
        &h,
        AnomalyKind::CommittedOffsetBackwards,
        &["etl-0's transaction e1", "offset 5", "offset 10"],
    );
}

#[test]
fn failed_commits_and_aborted_transactions_commit_nothing() {
    let mut h = History::new();
    h.commit("member-0", "g", 1, &[("q", 0, 10), ("q", 1, 3)], None);
    h.commit("member-1", "g", 1, &[("q", 0, 4)], Some("ILLEGAL_GENERATION"));
    h.txn_begin("etl-0", "e1")
        .txn_offsets("etl-0", "e1", "g", &[("q", 0, 2)])
        .txn_end("etl-0", "e1", Outcome::Aborted);
    h.commit("member-0", "g", 1, &[("q", 0, 10)], None); // the same offset again
    h.commit("member-0", "other", 1, &[("q", 0, 1)], None); // another group
    let report = assert_clean(&h);
    assert_eq!(report.stats.offset_commits, 4);
}

#[test]
fn one_partition_given_to_two_members_of_a_generation_is_double_ownership() {
    let mut h = History::new();
    h.assigned("member-0", "g", 3, &[Q0, Q1])
        .assigned("member-1", "g", 3, &[Q0]);
    assert_only(
        &h,
        AnomalyKind::DoubleOwnership,
        &["group g generation 3", "q/0", "member-0-id", "member-1-id"],
    );
}

#[test]
fn one_partition_moving_between_generations_is_single_ownership() {
    let mut h = History::new();
    h.assigned("member-0", "g", 3, &[Q0, Q1])
        .assigned("member-1", "g", 3, &[]);
    h.assigned("member-0", "g", 4, &[Q1])
        .assigned("member-1", "g", 4, &[Q0]);
    h.assigned("member-0", "g", 4, &[Q1]); // told twice
    assert_clean(&h);
}
