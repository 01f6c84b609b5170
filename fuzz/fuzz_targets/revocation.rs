//! A revocation of a device and a replaced contact link, as a contact or another device reads
//! them: what decodes (signatures checked) re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::devices::revocation::Revocation;
use weft_core::devices::rotation::RotatedLink;

fuzz_target!(|data: &[u8]| {
    if let Ok(revocation) = Revocation::from_bytes(data) {
        assert_eq!(revocation.to_bytes(), data);
    }
    if let Ok(link) = RotatedLink::from_bytes(data) {
        assert_eq!(link.to_bytes(), data);
    }
});
