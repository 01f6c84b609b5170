//! The device link a new device is given (`weft://device/…`, typed or scanned): what reads
//! writes back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::devices::linking::Ticket;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(ticket) = Ticket::from_link(text)
    {
        assert_eq!(Ticket::from_link(&ticket.to_link()).expect("our link reads back").to_link(), ticket.to_link());
    }
});
