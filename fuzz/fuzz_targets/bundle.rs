//! The bundle file, carried by hand from anyone: a damaged file is refused whole; one whose
//! every envelope is well formed re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::bundle::Bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok((bundle, malformed)) = Bundle::decode(data)
        && malformed == 0
    {
        assert_eq!(bundle.encode(), data);
    }
});
