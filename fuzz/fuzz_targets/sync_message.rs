//! One sync message of a peer (reconcile, want, have, refuse, since, pages): what decodes
//! re-encodes to bytes that decode the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::sync::{Message, SyncMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = SyncMessage::decode(data) {
        assert_eq!(SyncMessage::decode(&message.encode()).expect("what we encode decodes"), message);
    }
    if let Ok(message) = Message::decode(data) {
        assert_eq!(Message::decode(&message.encode()).expect("what we encode decodes"), message);
    }
});
