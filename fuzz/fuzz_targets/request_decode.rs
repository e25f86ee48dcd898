//! Any bytes as a request frame body (the size prefix already stripped): decoding must return
//! a request or an error, never panic, abort or hang.
//!
//! Runs under the broker's own allocator (the same source file), because the codec sizes
//! vectors from counts claimed on the wire and only that allocator makes such claims harmless.
//! Build without AddressSanitizer (`-s none`): its allocator would replace ours.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/strom/src/alloc.rs"]
mod alloc;

#[global_allocator]
static ALLOCATOR: alloc::StromAllocator = alloc::StromAllocator;

fuzz_target!(|data: &[u8]| {
    let _ = strom_protocol::request::decode_request(bytes::Bytes::copy_from_slice(data));
});
