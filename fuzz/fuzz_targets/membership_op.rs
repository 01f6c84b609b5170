//! A signed membership operation from a member (add, remove, update, leave): decoding checks
//! the signature and the author's certificate; what passes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::group::SignedOp;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = SignedOp::from_bytes(data) {
        assert_eq!(op.to_bytes(), data);
    }
});
