//! The contact card: what a person hands to another by link or QR code. It carries the account
//! key, the key that contact requests are sealed to, the rendezvous seed and an optional name,
//! with a version byte and a checksum that catches copy mistakes. Its authenticity comes from
//! the channel it was handed over (in person, a trusted chat); safety numbers confirm it.

use data_encoding::BASE32_NOPAD;

use super::device::AccountPublic;
use crate::crypto::{keyed_hash, label};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

pub const CARD_VERSION: u8 = 1;
/// Longest display name on a card, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
const CHECKSUM_LEN: usize = 4;
const LINK_PREFIX: &str = "weft://contact/";
/// Longest link we try to decode; anything longer is not a contact link.
const MAX_LINK_LEN: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactCard {
    pub account: AccountPublic,
    /// X25519 key that contact requests to this person are sealed to.
    pub request_key: [u8; 32],
    /// Seed of the rotating rendezvous point where requests are published.
    pub rendezvous_seed: [u8; 32],
    pub name: Option<String>,
}

impl ContactCard {
    /// The binary form: `version | account | request key | seed | name length | name | checksum`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let name = self.name.as_deref().unwrap_or("");
        assert!(name.len() <= MAX_NAME_LEN, "names are checked on the way in");
        let mut w = Writer::with_capacity(102 + name.len());
        w.u8(CARD_VERSION).raw(&self.account).raw(&self.request_key).raw(&self.rendezvous_seed);
        w.u8(name.len() as u8).raw(name.as_bytes());
        let mut bytes = w.into_bytes();
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 1 + CHECKSUM_LEN {
            return Err(Error::Truncated { what: "contact card", needed: 1 + CHECKSUM_LEN - bytes.len() });
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if body[0] != CARD_VERSION {
            return Err(Error::UnsupportedVersion { what: "contact card", found: body[0], supported: CARD_VERSION });
        }
        if checksum(body) != sum {
            return Err(Error::BadChecksum);
        }
        let mut r = Reader::new(&body[1..], "contact card");
        let account = r.array()?;
        let request_key = r.array()?;
        let rendezvous_seed = r.array()?;
        let name_len = r.u8()? as usize;
        if name_len > MAX_NAME_LEN {
            return Err(Error::TooLong { what: "contact name", len: name_len, max: MAX_NAME_LEN });
        }
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| Error::Malformed { what: "contact card", why: "name is not UTF-8" })?;
        r.finish()?;
        ed25519_dalek::VerifyingKey::from_bytes(&account)
            .map_err(|_| Error::Malformed { what: "contact card", why: "account key is not a valid Ed25519 point" })?;
        Ok(ContactCard { account, request_key, rendezvous_seed, name: (!name.is_empty()).then(|| name.to_owned()) })
    }

    /// `weft://contact/` followed by the card in lowercase base32.
    pub fn to_link(&self) -> String {
        format!("{LINK_PREFIX}{}", BASE32_NOPAD.encode(&self.to_bytes()).to_ascii_lowercase())
    }

    /// Parses a link in any letter case, ignoring surrounding white space.
    pub fn from_link(link: &str) -> Result<Self> {
        let link = link.trim();
        if link.len() > MAX_LINK_LEN {
            return Err(Error::TooLong { what: "contact link", len: link.len(), max: MAX_LINK_LEN });
        }
        let body = link
            .get(..LINK_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(LINK_PREFIX))
            .map(|_| &link[LINK_PREFIX.len()..])
            .ok_or(Error::NotALink { expected: "contact", prefix: LINK_PREFIX })?;
        let bytes = BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::Malformed { what: "contact link", why: "not base32 (letters a-z and digits 2-7)" })?;
        Self::from_bytes(&bytes)
    }

    /// The link as a QR code for a terminal. The link is upper-cased first so that the QR code
    /// can use its denser alphanumeric mode; [`from_link`](Self::from_link) ignores case.
    pub fn to_qr_text(&self) -> String {
        qr_text(&self.to_link())
    }

    /// The link as a QR code for an app to draw: its modules and an SVG (see [`QrCode`]).
    pub fn to_qr(&self) -> Option<QrCode> {
        let payload = self.to_link().to_ascii_uppercase();
        let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::L).ok()?;
        let width = code.width();
        let dark = code.to_colors().into_iter().map(|c| c == qrcode::Color::Dark).collect();
        let svg = code.render::<qrcode::render::svg::Color<'_>>().quiet_zone(true).min_dimensions(200, 200).build();
        Some(QrCode { payload, width, dark, svg })
    }

    /// The rendezvous point for a period: where requests to this person are published. Only
    /// holders of the card can compute it, and points of different periods are unlinkable.
    pub fn rendezvous_point(&self, period: u64) -> [u8; 32] {
        rendezvous_point(&self.rendezvous_seed, period)
    }
}

/// A link as a QR code for a terminal, upper-cased for the denser alphanumeric mode (Weft's
/// links ignore case).
pub fn qr_text(link: &str) -> String {
    let upper = link.to_ascii_uppercase();
    match qrcode::QrCode::with_error_correction_level(upper.as_bytes(), qrcode::EcLevel::L) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(_) => String::from("(link too long for a QR code)"),
    }
}

/// A QR code as data: what it says, its modules (row by row, `width` × `width`, true for dark,
/// no quiet zone: leave four modules of light around it), and the same as an SVG document.
/// The payload is the link upper-cased, so that the code can use its denser alphanumeric mode
/// ([`ContactCard::from_link`] ignores case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrCode {
    pub payload: String,
    pub width: usize,
    pub dark: Vec<bool>,
    pub svg: String,
}

/// HMAC-SHA256(seed, label | period).
pub fn rendezvous_point(seed: &[u8; 32], period: u64) -> [u8; 32] {
    keyed_hash(seed, &[label("weft/v1/rendezvous"), &period.to_be_bytes()])
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let hash = blake3::derive_key("weft/v1/card-checksum", body);
    hash[..CHECKSUM_LEN].try_into().expect("hash is longer than the checksum")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn card(name: Option<&str>) -> ContactCard {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        ContactCard {
            account: key.verifying_key().to_bytes(),
            request_key: [4u8; 32],
            rendezvous_seed: [5u8; 32],
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn link_round_trip_in_any_case() {
        let c = card(Some("alice"));
        let link = c.to_link();
        assert!(link.starts_with("weft://contact/"));
        assert_eq!(ContactCard::from_link(&link).unwrap(), c);
        assert_eq!(ContactCard::from_link(&link.to_uppercase()).unwrap(), c);
        assert_eq!(ContactCard::from_link(&format!("  {link}\n")).unwrap(), c);
        assert_eq!(ContactCard::from_link(&card(None).to_link()).unwrap(), card(None));
    }

    #[test]
    fn bad_links_give_typed_errors() {
        let link = card(Some("bob")).to_link();
        assert!(matches!(ContactCard::from_link("https://x"), Err(Error::NotALink { .. })));
        assert!(ContactCard::from_link(&link[..link.len() - 8]).is_err());
        assert!(matches!(ContactCard::from_link("weft://contact/!!!"), Err(Error::Malformed { .. })));
        assert!(matches!(ContactCard::from_link("weft://contact/"), Err(Error::Truncated { .. })));
        let mut bytes = card(Some("bob")).to_bytes();
        bytes[10] ^= 1;
        assert!(matches!(ContactCard::from_bytes(&bytes), Err(Error::BadChecksum)));
        let mut bytes = card(Some("bob")).to_bytes();
        bytes[0] = 9;
        assert!(matches!(ContactCard::from_bytes(&bytes), Err(Error::UnsupportedVersion { found: 9, .. })));
        assert!(ContactCard::from_link(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn qr_renders() {
        let qr = card(Some("alice")).to_qr_text();
        assert!(qr.lines().count() > 20);
    }

    #[test]
    fn rendezvous_rotates() {
        let c = card(None);
        assert_ne!(c.rendezvous_point(1), c.rendezvous_point(2));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ContactCard::from_bytes(&bytes);
        }

        #[test]
        fn any_single_bit_flip_is_rejected(bit in 0usize..(110 * 8)) {
            let bytes = card(Some("alice")).to_bytes();
            prop_assume!(bit < bytes.len() * 8);
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(ContactCard::from_bytes(&bad).is_err());
        }
    }
}
