//! The chunks of a device-linking exchange, from whoever saw the link: sealed here under the
//! link's key so that the chunk decoder and the reassembly behind the decryption are reached.
//! A message handed out is one the chunks made; memory stays bounded (the inbox's own limits).
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::crypto::seal;
use weft_core::devices::carrier::{Inbox, Leg};
use weft_core::envelope::{ENVELOPE_VERSION, MAX_ENVELOPE_LEN};

const TOKEN: [u8; 16] = [9; 16];
const KEY: [u8; 32] = [5; 32];

fuzz_target!(|data: &[u8]| {
    let leg = match data.first() {
        Some(b) if b % 3 == 0 => Leg::Request,
        Some(b) if b % 3 == 1 => Leg::Grant,
        _ => Leg::Nonce,
    };
    let mut inbox = Inbox::with_key(&TOKEN, leg, KEY);
    // Chunk plaintexts, each preceded by a two-byte length, each sealed as the link seals them.
    let mut rest = data.get(1..).unwrap_or_default();
    let mut n = 0u8;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (plain, tail) = rest[2..].split_at(len);
        rest = tail;
        n = n.wrapping_add(1);
        let mut envelope = vec![ENVELOPE_VERSION];
        envelope.extend_from_slice(&inbox.topic());
        let nonce = [n; 24];
        envelope.extend_from_slice(&nonce);
        let sealed = seal(&KEY, &nonce, &envelope, plain);
        envelope.extend_from_slice(&sealed);
        if envelope.len() <= MAX_ENVELOPE_LEN {
            let _ = inbox.take(&envelope);
        }
    }
});
