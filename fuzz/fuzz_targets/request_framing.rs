//! Fuzzes the edge's request-framing guard: any bytes, cut into reads anywhere, must never
//! panic, and must give the same verdict (which head is refused, and where it ends) as the
//! same bytes in one read.
#![no_main]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use grove_edge::framing::{Refusal, Scanner};
use libfuzzer_sys::fuzz_target;

fn run(stream: &[u8], stride: usize) -> Option<(Refusal, usize)> {
    let mut s = Scanner::new(usize::MAX, Arc::new(AtomicBool::new(false)));
    let mut from = 0;
    while from < stream.len() {
        let to = from.saturating_add(stride).min(stream.len());
        if let Some((r, end)) = s.scan(&stream[from..to]) {
            assert!(end >= 1 && end <= to - from);
            return Some((r.why, from + end));
        }
        from = to;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    // Lines over the scanner's 4 KiB line limit may switch it off in one case and not the
    // other; keep inputs under it.
    if stream.len() > 4000 {
        return;
    }
    let whole = run(stream, usize::MAX);
    let split = run(stream, usize::from(first % 16).max(1));
    assert_eq!(whole, split);
});
