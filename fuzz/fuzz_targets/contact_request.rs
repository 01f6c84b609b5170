//! A contact request, as anyone holding our link can send it: the sealed form (length, version,
//! decryption), and the decoder of what opens (card, device certificate, prekey, chain key,
//! signature), which the fuzzer reaches directly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::crypto::SeededEntropy;
use weft_core::handshake::ContactRequest;
use weft_core::identity::InviteKeys;

fuzz_target!(|data: &[u8]| {
    let keys = InviteKeys::generate(&mut SeededEntropy::new(7)).expect("seeded keys");
    let _ = ContactRequest::open(data, &keys);
    let _ = ContactRequest::from_opened(data, &keys.request_public());
});
