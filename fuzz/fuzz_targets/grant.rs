//! The grant a new device opens (contacts, conversations, keys, history) once the linking
//! exchange's key opened it: what decodes re-encodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::devices::grant::Grant;

fuzz_target!(|data: &[u8]| {
    if let Ok(grant) = Grant::decode(data) {
        assert_eq!(Grant::decode(&grant.encode()).expect("what we encode decodes").encode(), grant.encode());
    }
});
