//! The process allocator: the system allocator, except that very large allocations reserve
//! address space lazily.
//!
//! Why: the `kafka-protocol` codec sizes a vector from the element count a request claims
//! (`Vec::with_capacity(n)`) before it reads the elements. A hostile request can claim two
//! billion elements; the system allocator then refuses the request for terabytes and the
//! process aborts, which no `catch_unwind` can contain. Serving allocations of 1 GiB and more
//! with `mmap(MAP_NORESERVE)` turns that into a reservation of address space that costs no
//! memory: the decoder runs out of bytes after a few elements, returns an error, and the
//! reservation is unmapped. Real allocations of that size behave as before: pages are backed
//! when touched. Forking the codec or pre-parsing every request was the alternative; this
//! keeps the guarantee in one small place.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped lazily.
const LAZY_BYTES_MIN: usize = 1 << 30;
/// `mmap` returns page-aligned memory; stricter alignments stay with the system allocator.
const PAGE_BYTES: usize = 4096;

pub(crate) struct StromAllocator;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_BYTES_MIN && layout.align() <= PAGE_BYTES
}

// SAFETY: every path either forwards to `System` with the caller's layout or maps/unmaps a
// private anonymous region of exactly `layout.size()` bytes; `is_lazy` depends only on the
// layout, so `dealloc` always undoes the same kind of allocation `alloc` made.
unsafe impl GlobalAlloc for StromAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_lazy(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            ptr.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            // SAFETY: `ptr` came from the mmap in `alloc` with this same size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `alloc` with a valid layout; the copy stays within both allocations.
        unsafe {
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new_ptr
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_capacity_reserves_address_space_without_memory() {
        // 2^31 elements of 256 bytes: 512 GiB, far beyond this machine's memory.
        let layout = Layout::from_size_align(256 << 31, 8).unwrap();
        let allocator = StromAllocator;
        // SAFETY: a valid, non-zero layout; freed with the same layout.
        unsafe {
            let ptr = allocator.alloc(layout);
            assert!(!ptr.is_null(), "the reservation succeeds");
            // Touching a little of it backs only those pages.
            ptr.write_bytes(7, 4096);
            assert_eq!(*ptr.add(4095), 7);
            allocator.dealloc(ptr, layout);
        }
    }

    #[test]
    fn small_allocations_and_growth_across_the_threshold_keep_their_bytes() {
        let allocator = StromAllocator;
        let small = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: valid layouts; each pointer is freed once with its layout.
        unsafe {
            let ptr = allocator.alloc(small);
            ptr.write_bytes(3, 64);
            let grown = allocator.realloc(ptr, small, LAZY_BYTES_MIN);
            assert!(!grown.is_null());
            assert_eq!(*grown.add(63), 3);
            allocator.dealloc(grown, Layout::from_size_align(LAZY_BYTES_MIN, 8).unwrap());
        }
    }
}
