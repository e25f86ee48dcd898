//! Where a new partition's replicas go.
//!
//! Brokers are laid out rack by rack in turn (the first broker of each rack, then the second
//! of each, ...), so any `replication_factor` consecutive brokers of that ring span as many
//! racks as there are. Partition `p` takes the `replication_factor` brokers starting at ring
//! position `start + p`: leaders (first replicas) go round the ring, and `start` (the number
//! of partitions the cluster already has) keeps successive topics from all starting on the
//! same broker.

use std::collections::BTreeMap;

use crate::records::BrokerId;

/// A broker a replica may be placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: BrokerId,
    pub rack: Option<String>,
}

/// Places `partitions` partitions of `replication_factor` replicas each. The caller checks
/// that there are at least `replication_factor` candidates.
pub fn place(
    candidates: &[Candidate],
    partitions: usize,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<BrokerId>> {
    let (ring, racks) = rack_interleaved(candidates);
    assert!(
        replication_factor <= ring.len() && replication_factor > 0,
        "placement needs 1..={} replicas per partition, got {replication_factor}",
        ring.len()
    );
    (0..partitions)
        .map(|p| {
            // From the second lap of the ring on, shift the followers by the lap number, so a
            // broker's partitions are not all followed by the same brokers. Not with racks:
            // consecutive ring positions are what spreads replicas across them.
            let first = (start + p) % ring.len();
            let lap = (start + p) / ring.len();
            let step_extra = if racks == 1 && ring.len() > replication_factor {
                lap % (ring.len() - replication_factor + 1)
            } else {
                0
            };
            let mut replicas = vec![ring[first]];
            let mut position = first + step_extra;
            while replicas.len() < replication_factor {
                position += 1;
                let broker = ring[position % ring.len()];
                if !replicas.contains(&broker) {
                    replicas.push(broker);
                }
            }
            replicas
        })
        .collect()
}

/// The ring of brokers, and how many racks it spans.
fn rack_interleaved(candidates: &[Candidate]) -> (Vec<BrokerId>, usize) {
    let mut by_rack: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for c in candidates {
        by_rack.entry(c.rack.as_deref()).or_default().push(c.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    let rounds = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut ring = Vec::with_capacity(candidates.len());
    for round in 0..rounds {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                ring.push(*id);
            }
        }
    }
    (ring, by_rack.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn candidates(spec: &[(BrokerId, Option<&str>)]) -> Vec<Candidate> {
        spec.iter()
            .map(|(id, rack)| Candidate {
                id: *id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn leaders_spread_evenly_and_replicas_are_distinct() {
        let brokers = candidates(&[(1, None), (2, None), (3, None)]);
        let placed = place(&brokers, 30, 3, 0);
        let mut leaders = BTreeMap::new();
        for replicas in &placed {
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![10, 10, 10]);
    }

    #[test]
    fn replicas_span_racks() {
        let brokers = candidates(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack = |id: BrokerId| brokers.iter().find(|c| c.id == id).unwrap().rack.clone();
        for (p, replicas) in place(&brokers, 12, 3, 5).iter().enumerate() {
            let racks: BTreeSet<_> = replicas.iter().map(|r| rack(*r)).collect();
            assert_eq!(racks.len(), 3, "partition {p}: {replicas:?}");
        }
    }

    #[test]
    fn followers_vary_between_laps_without_racks() {
        let brokers = candidates(&[(1, None), (2, None), (3, None), (4, None)]);
        let placed = place(&brokers, 8, 2, 0);
        assert_eq!(placed[0], vec![1, 2]);
        assert_eq!(placed[4], vec![1, 3], "second lap: followers shifted");
    }

    #[test]
    fn the_start_rotates_leaders_between_topics() {
        let brokers = candidates(&[(1, None), (2, None), (3, None)]);
        assert_eq!(place(&brokers, 1, 1, 0), vec![vec![1]]);
        assert_eq!(place(&brokers, 1, 1, 1), vec![vec![2]]);
        assert_eq!(place(&brokers, 1, 2, 2), vec![vec![3, 1]]);
    }
}
