//! Producer ids for idempotent and transactional producers.

use std::sync::Mutex;

/// Hands out producer ids for idempotent producers, from blocks the controller allocates
/// (AllocateProducerIds), so ids are unique across brokers and restarts.
pub struct ProducerIdAllocator {
    /// The next id and the end of the current block.
    state: Mutex<(i64, i64)>,
    source: BlockSource,
    /// Ids below this are never handed out (a node that adopted a single node's data
    /// directory, whose logs hold producers up to its mark: `crate::adoption`).
    floor: i64,
}

/// Where a broker gets its next block of producer ids: (first id, size).
pub type BlockSource = Box<dyn Fn() -> std::io::Result<(i64, i64)> + Send + Sync>;

impl ProducerIdAllocator {
    pub fn new(source: BlockSource, floor: i64) -> Self {
        ProducerIdAllocator {
            state: Mutex::new((0, 0)),
            source,
            floor,
        }
    }

    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock().expect("producer id lock");
        let (next, block_end) = &mut *state;
        if *next == *block_end {
            let (first, size) = (self.source)()?;
            *next = first.max(self.floor);
            *block_end = first + size;
            if *next >= *block_end {
                // The controller has not seen the adopted directory's mark yet.
                *next = *block_end;
                return Err(std::io::Error::other(
                    "producer ids below the adopted data directory's are reserved; retry",
                ));
            }
        }
        let id = *next;
        *next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_come_block_by_block_and_never_below_the_floor() {
        // Blocks of 10 from 0, as a controller would hand them out.
        let handed = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let source = handed.clone();
        let allocator = ProducerIdAllocator::new(
            Box::new(move || Ok((source.fetch_add(10, std::sync::atomic::Ordering::SeqCst), 10))),
            25,
        );
        // The first two blocks lie wholly below the floor: refused, then the third serves.
        assert!(allocator.allocate().is_err());
        assert!(allocator.allocate().is_err());
        let ids: Vec<i64> = (0..7).map(|_| allocator.allocate().unwrap()).collect();
        assert_eq!(ids, [25, 26, 27, 28, 29, 30, 31]);
        assert_eq!(handed.load(std::sync::atomic::Ordering::SeqCst), 40);
    }
}
