//! What a Bluetooth neighbour writes: fragments, reassembled into frames (bounded, checksum
//! verified), and the mesh message each frame holds, which re-encodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::mesh::fragment::{Reassembled, Reassembler};
use weft_core::mesh::message::MeshMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = MeshMessage::decode(data) {
        assert_eq!(MeshMessage::decode(&message.encode()).expect("what we encode decodes"), message);
    }
    // Fragments, each preceded by its length (one byte), 100 ms apart.
    let mut reassembler = Reassembler::default();
    let mut rest = data;
    let mut now = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let (fragment, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        now += 100;
        if let Reassembled::Frame(frame) = reassembler.push(fragment, now)
            && let Ok(message) = MeshMessage::decode(&frame)
        {
            assert_eq!(MeshMessage::decode(&message.encode()).expect("what we encode decodes"), message);
        }
    }
});
