//! Leader election and ISR rules for one partition: given its state, the ISR a change
//! proposes, and which brokers can serve, what the partition becomes.
//!
//! The rules (Kafka's, with KIP-966's eligible leader replicas):
//! - Only a usable broker (registered, unfenced, not in controlled shutdown) leads or is in the
//!   ISR. The leader is always in the ISR.
//! - The high watermark only advances while the ISR has at least `min.insync.replicas`
//!   members. So a replica that leaves the ISR while fewer than that remain holds every record
//!   below the high watermark: it joins the ELR and may still be elected. Once the ISR is back
//!   at `min.insync.replicas` the ELR is cleared (the high watermark moves on without them).
//! - A new leader comes from the ISR (in assignment order, the preferred replica first), then
//!   from the ELR (the ISR becomes that one replica). Only with unclean election enabled may
//!   any other usable replica lead, and then it is `Recovering`: it may lack acknowledged
//!   records, and says so.
//! - When a partition is left with no leader, no ISR and no ELR, the last members are kept in
//!   `last_known_elr` so an operator's unclean election picks the most likely complete replica.

use crate::records::{BrokerId, LeaderRecoveryState, PartitionChange, PartitionState, NO_LEADER};

/// What may be chosen, beyond keeping a usable leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Election {
    /// Keep the current leader if it can serve; otherwise elect from the ISR, then the ELR.
    Clean,
    /// Move leadership to the preferred (first) replica if it is usable and in the ISR.
    Preferred,
    /// As `Clean`, and if that finds nobody, any usable replica (possible data loss).
    Unclean,
}

/// The partition-independent inputs of a decision.
pub struct Context<'a> {
    pub min_insync_replicas: usize,
    /// The topic's `unclean.leader.election.enable`: a leaderless partition may then elect
    /// an out-of-sync replica without an operator's request.
    pub unclean_enabled: bool,
    pub usable: &'a dyn Fn(BrokerId) -> bool,
}

/// The change that takes `state` to the proposed ISR (filtered to usable assigned replicas)
/// and a leader chosen by `election`; `None` if nothing would change.
pub fn settle(
    state: &PartitionState,
    proposed_isr: &[BrokerId],
    election: Election,
    ctx: &Context<'_>,
) -> Option<PartitionChange> {
    let usable = |b: BrokerId| (ctx.usable)(b) && state.replicas.contains(&b);
    let mut isr: Vec<BrokerId> = dedup(proposed_isr.iter().copied().filter(|b| usable(*b)));
    let mut elr = next_elr(state, &isr, ctx.min_insync_replicas);
    let mut recovery = state.leader_recovery_state;

    let keep_current = usable(state.leader) && isr.contains(&state.leader);
    let preferred = state
        .replicas
        .first()
        .copied()
        .filter(|p| usable(*p) && isr.contains(p));
    let leader = match election {
        Election::Preferred if preferred.is_some() => preferred.expect("checked"),
        _ if keep_current => state.leader,
        _ => {
            if let Some(from_isr) = state.replicas.iter().copied().find(|r| isr.contains(r)) {
                from_isr
            } else if let Some(from_elr) = state.replicas.iter().copied().find(|r| elr.contains(r) && usable(*r)) {
                isr = vec![from_elr];
                elr.retain(|r| *r != from_elr);
                from_elr
            } else if let Some(recovered) = balanced_recovery(state, &elr, &usable) {
                isr = vec![recovered];
                elr.clear();
                recovery = LeaderRecoveryState::Recovering;
                recovered
            } else if election == Election::Unclean || ctx.unclean_enabled {
                match unclean_candidate(state, &usable) {
                    Some(candidate) => {
                        isr = vec![candidate];
                        elr.clear();
                        recovery = LeaderRecoveryState::Recovering;
                        candidate
                    }
                    None => NO_LEADER,
                }
            } else {
                NO_LEADER
            }
        }
    };
    // A replica elected from the ELR brings the ISR back to one member, which may now meet
    // min.insync.replicas.
    if isr.len() >= ctx.min_insync_replicas {
        elr.clear();
    }
    let last_known_elr = if leader == NO_LEADER && isr.is_empty() && elr.is_empty() {
        let last: Vec<BrokerId> = dedup(
            state
                .isr
                .iter()
                .chain(state.elr.iter())
                .chain(state.last_known_elr.iter())
                .copied(),
        );
        last
    } else if leader != NO_LEADER {
        Vec::new()
    } else {
        state.last_known_elr.clone()
    };

    let mut change = PartitionChange::default();
    let mut changed = false;
    if leader != state.leader {
        change.leader = Some(leader);
        changed = true;
    }
    if isr != state.isr {
        change.isr = Some(isr);
        changed = true;
    }
    if elr != state.elr {
        change.elr = Some(elr);
        changed = true;
    }
    if last_known_elr != state.last_known_elr {
        change.last_known_elr = Some(last_known_elr);
        changed = true;
    }
    if recovery != state.leader_recovery_state {
        change.leader_recovery_state = Some(recovery);
        changed = true;
    }
    changed.then_some(change)
}

/// The change that takes `old` to `new` (epochs aside: applying a change moves them);
/// `None` if they agree.
pub fn diff(old: &PartitionState, new: &PartitionState) -> Option<PartitionChange> {
    fn field<T: PartialEq + Clone>(old: &T, new: &T) -> Option<T> {
        (old != new).then(|| new.clone())
    }
    let change = PartitionChange {
        leader: field(&old.leader, &new.leader),
        isr: field(&old.isr, &new.isr),
        elr: field(&old.elr, &new.elr),
        last_known_elr: field(&old.last_known_elr, &new.last_known_elr),
        replicas: field(&old.replicas, &new.replicas),
        removing_replicas: field(&old.removing_replicas, &new.removing_replicas),
        adding_replicas: field(&old.adding_replicas, &new.adding_replicas),
        leader_recovery_state: field(&old.leader_recovery_state, &new.leader_recovery_state),
        ..PartitionChange::default()
    };
    (change != PartitionChange::default()).then_some(change)
}

/// KIP-966: replicas leaving the ISR while it is below `min_isr` keep their eligibility;
/// members back in the ISR leave the ELR.
fn next_elr(state: &PartitionState, isr: &[BrokerId], min_isr: usize) -> Vec<BrokerId> {
    if isr.len() >= min_isr {
        return Vec::new();
    }
    let removed = state.isr.iter().copied().filter(|b| !isr.contains(b));
    dedup(
        state
            .elr
            .iter()
            .copied()
            .chain(removed)
            .filter(|b| !isr.contains(b) && state.replicas.contains(b)),
    )
}

/// KIP-966's balanced unclean recovery: with no ISR and no ELR left, once every replica of
/// the last known ELR is back, the first of them leads again, marked `Recovering` (an unclean
/// stop may have cost it records it had not flushed). Without this a partition whose only
/// replica crashed would stay offline for good; with it, no replica that was out of sync
/// when the last ISR member left is ever preferred.
fn balanced_recovery(state: &PartitionState, elr: &[BrokerId], usable: &dyn Fn(BrokerId) -> bool) -> Option<BrokerId> {
    if !elr.is_empty() || state.last_known_elr.is_empty() {
        return None;
    }
    state
        .last_known_elr
        .iter()
        .all(|b| usable(*b))
        .then(|| state.last_known_elr[0])
}

/// The replica an unclean election picks: a usable one from the last known ELR first, then
/// any usable assigned replica in assignment order.
fn unclean_candidate(state: &PartitionState, usable: &dyn Fn(BrokerId) -> bool) -> Option<BrokerId> {
    state
        .last_known_elr
        .iter()
        .chain(state.replicas.iter())
        .copied()
        .find(|b| usable(*b))
}

fn dedup(ids: impl Iterator<Item = BrokerId>) -> Vec<BrokerId> {
    let mut out = Vec::new();
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::apply_partition_change;

    fn ctx<'a>(min_isr: usize, usable: &'a dyn Fn(BrokerId) -> bool) -> Context<'a> {
        Context {
            min_insync_replicas: min_isr,
            unclean_enabled: false,
            usable,
        }
    }

    fn after(state: &PartitionState, change: Option<PartitionChange>) -> PartitionState {
        let mut next = state.clone();
        if let Some(change) = change {
            apply_partition_change(&mut next, &change);
        }
        next
    }

    #[test]
    fn losing_the_leader_elects_the_next_isr_member_in_assignment_order() {
        let state = PartitionState::new(vec![1, 2, 3]);
        let usable = |b| b != 1;
        let next = after(&state, settle(&state, &[2, 3], Election::Clean, &ctx(2, &usable)));
        assert_eq!((next.leader, next.leader_epoch), (2, 1));
        assert_eq!(next.isr, vec![2, 3]);
        assert!(next.elr.is_empty());
    }

    #[test]
    fn replicas_leaving_below_min_isr_stay_eligible_and_one_is_elected() {
        // min.insync.replicas 2: 3 leaves with 2 still in the ISR (not eligible), then 2 leaves
        // with only 1 (eligible), then the leader 1 goes: 2 is elected from the ELR.
        let state = PartitionState::new(vec![1, 2, 3]);
        let all = |_| true;
        let s = after(&state, settle(&state, &[1, 2], Election::Clean, &ctx(2, &all)));
        assert!(s.elr.is_empty());
        let s = after(&s, settle(&s, &[1], Election::Clean, &ctx(2, &all)));
        assert_eq!(s.elr, vec![2]);
        let not_1 = |b| b != 1;
        let s = after(&s, settle(&s, &[], Election::Clean, &ctx(2, &not_1)));
        assert_eq!((s.leader, s.isr.clone(), s.elr.clone()), (2, vec![2], vec![1]));
    }

    #[test]
    fn the_last_replica_standing_is_not_replaced_by_an_out_of_sync_one() {
        let state = PartitionState {
            isr: vec![1],
            ..PartitionState::new(vec![1, 2, 3])
        };
        let only_2 = |b| b == 2;
        let s = after(&state, settle(&state, &[], Election::Clean, &ctx(1, &only_2)));
        assert_eq!(s.leader, NO_LEADER);
        assert!(s.isr.is_empty());
        assert_eq!(s.elr, vec![1], "1 held everything acknowledged: it stays eligible");
        // When 1 returns it is elected; 2 never is, cleanly.
        let only_1 = |b| b == 1;
        let back = after(&s, settle(&s, &[], Election::Clean, &ctx(1, &only_1)));
        assert_eq!((back.leader, back.isr.clone()), (1, vec![1]));
        assert!(back.elr.is_empty());
        assert_eq!(back.leader_recovery_state, LeaderRecoveryState::Recovered);
    }

    #[test]
    fn the_last_known_replicas_recover_the_partition_once_all_are_back() {
        // The only replica stopped uncleanly and lost its eligibility; once it is back it
        // leads again, marked recovering; an out-of-sync replica never does.
        let state = PartitionState {
            isr: vec![],
            elr: vec![],
            last_known_elr: vec![1, 3],
            leader: NO_LEADER,
            ..PartitionState::new(vec![1, 2, 3])
        };
        let only_2_and_3 = |b| b != 1;
        assert!(settle(&state, &[], Election::Clean, &ctx(1, &only_2_and_3)).is_none());
        let all = |_| true;
        let s = after(&state, settle(&state, &[], Election::Clean, &ctx(1, &all)));
        assert_eq!((s.leader, s.isr.clone()), (1, vec![1]));
        assert_eq!(s.leader_recovery_state, LeaderRecoveryState::Recovering);
        assert!(s.last_known_elr.is_empty());
    }

    #[test]
    fn unclean_election_marks_the_leader_recovering() {
        let state = PartitionState {
            isr: vec![],
            elr: vec![],
            last_known_elr: vec![1],
            leader: NO_LEADER,
            ..PartitionState::new(vec![1, 2, 3])
        };
        let not_1 = |b| b != 1;
        assert!(settle(&state, &[], Election::Clean, &ctx(1, &not_1)).is_none());
        let s = after(&state, settle(&state, &[], Election::Unclean, &ctx(1, &not_1)));
        assert_eq!((s.leader, s.isr.clone()), (2, vec![2]));
        assert_eq!(s.leader_recovery_state, LeaderRecoveryState::Recovering);
    }

    #[test]
    fn preferred_election_moves_leadership_back_only_to_an_in_sync_preferred_replica() {
        let state = PartitionState {
            leader: 2,
            leader_epoch: 3,
            ..PartitionState::new(vec![1, 2, 3])
        };
        let all = |_| true;
        let s = after(&state, settle(&state, &state.isr, Election::Preferred, &ctx(1, &all)));
        assert_eq!((s.leader, s.leader_epoch), (1, 4));
        let out_of_sync = PartitionState {
            isr: vec![2, 3],
            ..state.clone()
        };
        assert!(settle(&out_of_sync, &[2, 3], Election::Preferred, &ctx(1, &all)).is_none());
    }
}
