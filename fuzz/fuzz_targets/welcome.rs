//! An invitation to a group (the welcome a new member opens): decoded, it re-encodes to the
//! same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::group::Welcome;

fuzz_target!(|data: &[u8]| {
    if let Ok(welcome) = Welcome::from_bytes(data) {
        let (bytes, _) = welcome.to_bytes();
        assert_eq!(Welcome::from_bytes(&bytes).expect("what we encode decodes"), welcome);
    }
});
