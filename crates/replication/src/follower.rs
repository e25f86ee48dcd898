//! Where a follower's log stops agreeing with its leader's, so no divergent suffix survives a
//! change of leader (KIP-101, KIP-279; found through Fetch's diverging epoch, KIP-595).
//!
//! Every batch carries the leader epoch it was written in, and every log keeps, per epoch, the
//! offset where that epoch began. Two logs agree up to the end of the last epoch they share:
//!
//! ```text
//!   leader    epochs 3:[0..40)  5:[40..90)        log end 90
//!   follower  epochs 3:[0..40)  4:[40..55)        log end 55  (written by a leader that lost)
//!   the follower fetches at 55 naming epoch 4; the leader's last epoch <= 4 is 3, ending
//!   at 40: diverging (3, 40). The follower's own epoch 3 ends at 40 too: it truncates to 40
//!   and fetches again from there.
//! ```

/// A leader epoch and the offset where it ended (Kafka's `EpochEndOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: i32,
    pub end_offset: i64,
}

/// The leader's check of a follower's fetch: `last_fetched_epoch` is the epoch of the
/// follower's last batch, `fetch_offset` its log end. `leader_end_for_epoch` is the leader's
/// (largest epoch <= `last_fetched_epoch`, its end offset), `None` if it has none. Returns
/// the diverging epoch to send back, or `None` if the follower may append what it is sent.
pub fn diverging_epoch(
    last_fetched_epoch: i32,
    fetch_offset: i64,
    leader_end_for_epoch: Option<(i32, i64)>,
) -> Option<EpochEndOffset> {
    if last_fetched_epoch < 0 {
        return None;
    }
    match leader_end_for_epoch {
        None => Some(EpochEndOffset {
            epoch: -1,
            end_offset: -1,
        }),
        Some((epoch, end_offset)) if epoch < last_fetched_epoch || end_offset < fetch_offset => {
            Some(EpochEndOffset { epoch, end_offset })
        }
        Some(_) => None,
    }
}

/// Where a follower truncates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    pub offset: i64,
    /// `false`: the leader named an epoch this follower does not have, so the logs may
    /// diverge earlier still; fetch again from `offset` (with the follower's new last epoch)
    /// and let the leader check once more.
    pub complete: bool,
}

/// The follower's answer to a diverging epoch. `local_end_for_epoch` is the follower's own
/// (largest epoch <= `diverging.epoch`, its end offset); `high_watermark` is where it
/// truncates when the leader has no epoch to compare (its log start moved past them).
pub fn truncation(
    diverging: EpochEndOffset,
    local_end_for_epoch: Option<(i32, i64)>,
    log_end_offset: i64,
    high_watermark: i64,
) -> Truncation {
    if diverging.epoch < 0 || diverging.end_offset < 0 {
        return Truncation {
            offset: high_watermark.min(log_end_offset),
            complete: true,
        };
    }
    match local_end_for_epoch {
        Some((epoch, end_offset)) if epoch == diverging.epoch => Truncation {
            offset: end_offset.min(diverging.end_offset).min(log_end_offset),
            complete: true,
        },
        Some((_, end_offset)) => Truncation {
            offset: end_offset.min(diverging.end_offset).min(log_end_offset),
            complete: false,
        },
        None => Truncation {
            offset: diverging.end_offset.min(log_end_offset).min(high_watermark),
            complete: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suffix_of_a_lost_leadership_is_found_and_cut() {
        // The picture in the module docs.
        let diverging = diverging_epoch(4, 55, Some((3, 40))).expect("diverges");
        assert_eq!(
            diverging,
            EpochEndOffset {
                epoch: 3,
                end_offset: 40
            }
        );
        assert_eq!(
            truncation(diverging, Some((3, 40)), 55, 30),
            Truncation {
                offset: 40,
                complete: true
            }
        );
    }

    #[test]
    fn agreeing_logs_are_left_alone() {
        assert_eq!(diverging_epoch(5, 70, Some((5, 90))), None);
        assert_eq!(diverging_epoch(-1, 0, None), None, "an empty follower");
    }

    #[test]
    fn a_follower_ahead_within_the_same_epoch_is_cut_to_the_leaders_end() {
        // The follower got records of epoch 5 that the leader (which was the follower then)
        // never wrote.
        let diverging = diverging_epoch(5, 95, Some((5, 90))).expect("diverges");
        assert_eq!(truncation(diverging, Some((5, 95)), 95, 80).offset, 90);
    }

    #[test]
    fn an_epoch_the_follower_lacks_takes_another_round() {
        // Leader: 2:[0..10) 6:[10..). Follower: 1:[0..5) 4:[5..12).
        let diverging = diverging_epoch(4, 12, Some((2, 10))).expect("diverges");
        let first = truncation(diverging, Some((1, 5)), 12, 0);
        assert_eq!(
            first,
            Truncation {
                offset: 5,
                complete: false
            }
        );
        // Next fetch names epoch 1 at offset 5: the leader has no epoch <= 1, so it answers
        // (1, the start of its first epoch) as OffsetForLeaderEpoch does.
        let again = diverging_epoch(1, 5, Some((1, 0))).expect("diverges");
        assert_eq!(truncation(again, Some((1, 5)), 5, 0).offset, 0);
    }
}
