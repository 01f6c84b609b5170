//! The contact link (`weft://contact/…`, typed or scanned) and the card inside it: what
//! decodes re-encodes to the same card.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::identity::ContactCard;

fuzz_target!(|data: &[u8]| {
    if let Ok(card) = ContactCard::from_bytes(data) {
        assert_eq!(ContactCard::from_bytes(&card.to_bytes()).expect("what we encode decodes"), card);
        assert_eq!(ContactCard::from_link(&card.to_link()).expect("our link reads back"), card);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(card) = ContactCard::from_link(text)
    {
        assert_eq!(ContactCard::from_link(&card.to_link()).expect("our link reads back"), card);
    }
});
