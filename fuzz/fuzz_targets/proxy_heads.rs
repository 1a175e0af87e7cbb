//! Fuzzes the edge's fast path on its input: any bytes parsed as a request head and as an
//! upstream response head must never panic, and what the edge writes on for each (the
//! upstream request, the client's response head) must parse back the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    grove_edge::fuzz_heads(data);
});
