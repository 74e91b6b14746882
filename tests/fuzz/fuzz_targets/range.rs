//! The Range header grammar (spec 5): any text parses without panicking, and a range that resolves
//! lies inside the file.
#![no_main]

use broker_protocol::range::ByteRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &str| {
    let Some(range) = ByteRange::parse(header) else {
        return;
    };
    for size in [0, 1, 10, 1 << 40, i64::MAX as u64, u64::MAX] {
        if let Ok((start, end)) = range.resolve(size) {
            assert!(start <= end && end < size, "{header:?} on {size}: {start}-{end}");
        }
    }
});
