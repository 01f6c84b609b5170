//! The libp2p request-response codec of the sync protocol: a request stream from a stranger is
//! read under the shared budget (which holds no more than the frame once it is dropped, and
//! nothing after a refusal), then decoded as a batch of sync messages that re-encodes the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;
use weft_core::net::{Budget, SYNC_PROTOCOL, SyncCodec, decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    let budget = Budget::new(1 << 20);
    let mut codec = SyncCodec::new(budget.clone());
    let read = futures::executor::block_on(codec.read_request(&SYNC_PROTOCOL, &mut futures::io::Cursor::new(data)));
    match read {
        Ok(frame) => {
            assert_eq!(budget.held(), data.len());
            if let Ok(batch) = decode_batch(&frame.bytes) {
                assert_eq!(decode_batch(&encode_batch(&batch)).expect("what we encode decodes"), batch);
            }
            drop(frame);
        }
        Err(_) => assert!(data.len() > 1 << 20, "a request within the budget and the frame size is read"),
    }
    assert_eq!(budget.held(), 0, "every byte held is given back");
});
