//! The payload inside an envelope once opened (what any member of a conversation can make):
//! a decoded payload re-encodes to bytes that decode to the same payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::group::Inner;

fuzz_target!(|data: &[u8]| {
    if let Ok(inner) = Inner::decode(data) {
        let again = Inner::decode(&inner.encode()).expect("what we encode decodes");
        assert_eq!(again, inner);
    }
});
