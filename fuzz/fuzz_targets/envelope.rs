//! The envelope's outer form, as it arrives from any peer: what parses re-encodes to the same
//! bytes, and its parts are where the format says.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::envelope::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::parse(data.to_vec()) {
        assert_eq!(envelope.as_bytes(), data);
        assert_eq!(&envelope.topic()[..], &data[1..17]);
    }
});
