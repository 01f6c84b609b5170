//! What members and their relay say to meet (`/weft/meet/1`): a request of meet tokens from any
//! peer of a relay, an answer of peer ids from a relay. What decodes re-encodes to the same
//! bytes (an answer, the same peers); the relay's register, fed what decodes, stays within its bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::net::PeerId;
use weft_core::net::meet::{MAX_MET, MAX_TOKENS, MeetAnswer, MeetRequest, MeetingPoint};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = MeetRequest::decode(data) {
        assert_eq!(request.encode(), data, "a request reads back to its bytes");
        let mut point = MeetingPoint::default();
        for reachable in [true, false, true] {
            let met = point.meet(PeerId::random(), &request.tokens, reachable);
            assert!(met.len() <= MAX_MET);
        }
        assert!(point.registrations() <= 2 * MAX_TOKENS);
    }
    if let Ok(answer) = MeetAnswer::decode(data) {
        // Peer ids are multihashes, which may have more than one encoding: compared decoded.
        assert_eq!(MeetAnswer::decode(&answer.encode()).expect("what we encode decodes"), answer);
    }
});
