//! Which partitions of a coordinator topic (`__consumer_offsets`, `__transaction_state`) this
//! broker's coordinator answers for: those whose partition it leads, once their records are
//! loaded. Both coordinators follow leadership the same way: gained partitions are loading
//! (COORDINATOR_LOAD_IN_PROGRESS), then loaded; lost ones are dropped at once
//! (NOT_COORDINATOR).

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub(crate) struct Ownership {
    owned: BTreeMap<i32, Load>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Loading,
    Loaded,
}

/// Why a coordinator does not answer for a key now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotOwned {
    /// Its partition is led by another broker (or by none).
    NotCoordinator,
    /// Its partition is led here and its records are being read.
    LoadInProgress,
}

impl Ownership {
    pub(crate) fn check(&self, partition: i32) -> Result<(), NotOwned> {
        match self.owned.get(&partition) {
            Some(Load::Loaded) => Ok(()),
            Some(Load::Loading) => Err(NotOwned::LoadInProgress),
            None => Err(NotOwned::NotCoordinator),
        }
    }

    /// Follows leadership to `led`: returns the partitions gained (now loading) and lost (now
    /// dropped).
    pub(crate) fn lead(&mut self, led: &BTreeSet<i32>) -> (Vec<i32>, Vec<i32>) {
        let gained: Vec<i32> = led.iter().copied().filter(|p| !self.owned.contains_key(p)).collect();
        let lost: Vec<i32> = self.owned.keys().copied().filter(|p| !led.contains(p)).collect();
        for partition in &gained {
            self.owned.insert(*partition, Load::Loading);
        }
        for partition in &lost {
            self.owned.remove(partition);
        }
        (gained, lost)
    }

    /// Marks a gained partition loaded; false if it was lost again meanwhile (its records
    /// must then not be installed).
    pub(crate) fn loaded(&mut self, partition: i32) -> bool {
        match self.owned.get_mut(&partition) {
            Some(load @ Load::Loading) => {
                *load = Load::Loaded;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_gained_loads_then_answers_and_leadership_lost_refuses_at_once() {
        let mut ownership = Ownership::default();
        assert_eq!(ownership.check(3), Err(NotOwned::NotCoordinator));
        let (gained, lost) = ownership.lead(&BTreeSet::from([3, 5]));
        assert_eq!((gained, lost), (vec![3, 5], vec![]));
        assert_eq!(ownership.check(3), Err(NotOwned::LoadInProgress));
        assert!(ownership.loaded(3));
        assert_eq!(ownership.check(3), Ok(()));
        let (gained, lost) = ownership.lead(&BTreeSet::from([3]));
        assert_eq!((gained, lost), (vec![], vec![5]));
        assert!(!ownership.loaded(5), "lost while loading: not installed");
        assert_eq!(ownership.check(5), Err(NotOwned::NotCoordinator));
    }
}
