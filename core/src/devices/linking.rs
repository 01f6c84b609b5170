//! Linking a new device to an account: a pure exchange of three messages, whatever carries them
//! (libp2p, the mesh, two bundle files carried by hand).
//!
//! 1. The account's device makes an [`Offer`] and shows its [`Ticket`] as a one-time link (QR
//!    code): an ephemeral X25519 key, a random token and an expiry, ten minutes on.
//! 2. The new device, given the link, starts [`Joining`]: it makes its own ephemeral key and sends
//!    a [`request`](Joining::request) naming its device keys, sealed under a key only the two
//!    ephemeral keys and the token give. Both sides now show the same six-digit [`ShortCode`],
//!    computed over everything said so far: someone else who saw the link and answered first (or
//!    instead) makes the two screens differ.
//! 3. Once the user saw the codes match, the account's device [`grants`](Offer::grant): a
//!    payload (the new device's certificate and what it needs of the account) sealed under a key
//!    bound to the whole transcript, which only this requester can open. The offer is consumed:
//!    a second request, a replayed one or one after expiry opens nothing.
//!
//! Nothing here touches a store or a socket: callers keep the offer (the account's device) and
//! the joining state (the new device) wherever their flow lives, and carry the bytes.

use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::{Entropy, Secret32, derive_array, keyed_hash, label};
use crate::error::{Error, Result};
use crate::identity::{DeviceCert, DeviceId, DeviceKeys, MAX_NAME_LEN};
use crate::wire::{Reader, Writer};

pub const LINK_VERSION: u8 = 1;
/// How long a link may be used after it was made.
pub const LINK_LIFETIME_MS: u64 = 10 * 60 * 1000;
const LINK_PREFIX: &str = "weft://link/";
const MAX_LINK_LEN: usize = 256;
const CHECKSUM_LEN: usize = 4;
/// The largest grant a joining device takes: an account's contacts, groups and their keys.
pub const MAX_GRANT_LEN: usize = 64 * 1024 * 1024;

const TRANSCRIPT: &[u8] = label("weft/v1/link/transcript");
const REQUEST_KEY: &[u8] = label("weft/v1/link/request");
const GRANT_KEY: &[u8] = label("weft/v1/link/grant");
const CODE: &[u8] = label("weft/v1/link/code");
const CHECKSUM: &[u8] = label("weft/v1/link/checksum");
const GRANT_CHUNKS: &[u8] = label("weft/v1/link/grant-chunks");
const NONCE_CHUNKS: &[u8] = label("weft/v1/link/nonce-chunks");
const NONCE_KEY: &[u8] = label("weft/v1/link/nonce-key");

/// What the link says: where to answer and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub ephemeral: [u8; 32],
    pub token: [u8; 16],
    pub expires_ms: u64,
}

impl Ticket {
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(57);
        w.u8(LINK_VERSION).raw(&self.ephemeral).raw(&self.token).u64(self.expires_ms);
        w.into_bytes()
    }

    /// `weft://link/` and the ticket with its checksum, in lowercase base32.
    pub fn to_link(&self) -> String {
        let mut bytes = self.body();
        let sum = keyed_hash(CHECKSUM, &[&bytes]);
        bytes.extend_from_slice(&sum[..CHECKSUM_LEN]);
        format!("{LINK_PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
    }

    /// The link as a QR code for a terminal.
    pub fn to_qr_text(&self) -> String {
        crate::identity::qr_text(&self.to_link())
    }

    /// Parses a link in any letter case, ignoring surrounding white space.
    pub fn from_link(link: &str) -> Result<Ticket> {
        let link = link.trim();
        if link.len() > MAX_LINK_LEN {
            return Err(Error::TooLong { what: "device link", len: link.len(), max: MAX_LINK_LEN });
        }
        let body = link
            .get(..LINK_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(LINK_PREFIX))
            .map(|_| &link[LINK_PREFIX.len()..])
            .ok_or(Error::NotALink { expected: "device", prefix: LINK_PREFIX })?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::Malformed { what: "device link", why: "not base32 (letters a-z and digits 2-7)" })?;
        if bytes.len() < 1 + CHECKSUM_LEN {
            return Err(Error::Truncated { what: "device link", needed: 1 + CHECKSUM_LEN - bytes.len() });
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if body[0] != LINK_VERSION {
            return Err(Error::UnsupportedVersion { what: "device link", found: body[0], supported: LINK_VERSION });
        }
        if keyed_hash(CHECKSUM, &[body])[..CHECKSUM_LEN] != *sum {
            return Err(Error::BadChecksum);
        }
        let mut r = Reader::new(&body[1..], "device link");
        let ticket = Ticket { ephemeral: r.array()?, token: r.array()?, expires_ms: r.u64()? };
        r.finish()?;
        if crate::crypto::is_low_order(&ticket.ephemeral) {
            return Err(Error::Malformed { what: "device link", why: "its key is a low-order point" });
        }
        Ok(ticket)
    }
}

/// Six digits both screens show, to be compared by the user before anything is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortCode(pub u32);

impl std::fmt::Display for ShortCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// The new device's keys as its request names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applicant {
    pub device: DeviceId,
    pub dh: [u8; 32],
    /// What the user called the new device ("laptop"), for the device list.
    pub name: String,
}

/// The keys and code of one exchange, as both sides derive them.
#[derive(Clone)]
struct Session {
    grant_key: Secret32,
    code: ShortCode,
    /// Seals the primary's nonce to this requester (the network path).
    nonce_key: [u8; 32],
}

impl Session {
    /// The session of one request; with the primary's `nonce` (the network path, where the
    /// primary answers each request with one before anything is shown), the code and the
    /// grant key cover it too: a request made after seeing a code cannot be ground to show it.
    fn derive(
        shared: &[u8; 32],
        ticket: &Ticket,
        joiner: &[u8; 32],
        applicant: &Applicant,
        nonce: Option<&[u8; 32]>,
    ) -> Session {
        let body = ticket.body();
        let mut parts: Vec<&[u8]> = vec![&body, joiner, &applicant.device, &applicant.dh, applicant.name.as_bytes()];
        if let Some(nonce) = nonce {
            parts.push(nonce);
        }
        let transcript = keyed_hash(TRANSCRIPT, &parts);
        let nonce_key = keyed_hash(NONCE_CHUNKS, &[&request_key(shared, ticket, joiner)[..]]);
        let code_bytes: [u8; 8] = derive_array(&ticket.token, shared, &[CODE, &transcript]);
        Session {
            grant_key: derive_array::<32>(&ticket.token, shared, &[GRANT_KEY, &transcript]).into(),
            code: ShortCode((u64::from_be_bytes(code_bytes) % 1_000_000) as u32),
            nonce_key,
        }
    }
}

fn request_key(shared: &[u8; 32], ticket: &Ticket, joiner: &[u8; 32]) -> Secret32 {
    derive_array::<32>(&ticket.token, shared, &[REQUEST_KEY, &ticket.ephemeral, joiner]).into()
}

fn agree(secret: &StaticSecret, public: &[u8; 32]) -> Result<Secret32> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(Error::Malformed { what: "device link exchange", why: "a key is a low-order point" });
    }
    Ok((*shared.as_bytes()).into())
}

/// The account's device while its link is out.
pub struct Offer {
    secret: Secret32,
    ticket: Ticket,
}

/// A request the account's device opened: who asks, and the code to compare.
pub struct Opened {
    pub applicant: Applicant,
    pub code: ShortCode,
    session: Session,
}

impl Session {
    /// The key the grant's chunks are sealed under when the network carries them: only the
    /// two ends of this exchange hold it, so chunks from anyone else who saw the link are
    /// refused one by one.
    fn grant_chunk_key(&self) -> [u8; 32] {
        keyed_hash(GRANT_CHUNKS, &[&self.grant_key[..]])
    }
}

impl Opened {
    /// See `Session::grant_chunk_key`.
    pub fn grant_chunk_key(&self) -> [u8; 32] {
        self.session.grant_chunk_key()
    }

    /// The key the primary's nonce for this request is sealed under (only the requester holds
    /// it besides the primary).
    pub fn nonce_chunk_key(&self) -> [u8; 32] {
        self.session.nonce_key
    }
}

impl Offer {
    pub fn new(now_ms: u64, entropy: &mut dyn Entropy) -> Result<Offer> {
        let secret: Secret32 = entropy.bytes32()?.into();
        let ephemeral = PublicKey::from(&StaticSecret::from(*secret)).to_bytes();
        let mut token = [0u8; 16];
        token.copy_from_slice(&entropy.bytes32()?[..16]);
        Ok(Offer { secret, ticket: Ticket { ephemeral, token, expires_ms: now_ms.saturating_add(LINK_LIFETIME_MS) } })
    }

    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// The offer as stored until a request comes (the bundle path spans two runs of the CLI).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(89);
        w.raw(&self.secret[..]).raw(&self.ticket.body());
        w.into_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Offer> {
        let mut r = Reader::new(bytes, "stored device link");
        let secret: Secret32 = r.array::<32>()?.into();
        let version = r.u8()?;
        if version != LINK_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "stored device link",
                found: version,
                supported: LINK_VERSION,
            });
        }
        let ticket = Ticket { ephemeral: r.array()?, token: r.array()?, expires_ms: r.u64()? };
        r.finish()?;
        if PublicKey::from(&StaticSecret::from(*secret)).to_bytes() != ticket.ephemeral {
            return Err(Error::Malformed { what: "stored device link", why: "its key does not match its link" });
        }
        Ok(Offer { secret, ticket })
    }

    /// The nonce the primary answers `request` with on the network path: unpredictable to
    /// whoever made the request (it is keyed by the offer's secret), and the same for the same
    /// request, so a primary that restarted before the grant answers as it did before and the
    /// code the new device shows still grants.
    pub fn nonce_for(&self, request: &[u8]) -> [u8; 32] {
        let key: [u8; 32] = crate::crypto::derive_array(&self.ticket.token, &self.secret[..], &[NONCE_KEY]);
        crate::crypto::keyed_hash(&key, &[request])
    }

    /// Opens a request for this offer, if it is still valid at `now_ms` (the file path: no
    /// nonce).
    pub fn open(&self, request: &[u8], now_ms: u64) -> Result<Opened> {
        self.open_with_nonce(request, now_ms, None)
    }

    /// Opens a request whose session covers the primary's `nonce` (the network path).
    pub fn open_with_nonce(&self, request: &[u8], now_ms: u64, nonce: Option<&[u8; 32]>) -> Result<Opened> {
        if now_ms >= self.ticket.expires_ms {
            return Err(Error::Expired { what: "device link" });
        }
        let mut r = Reader::new(request, "device link request");
        let version = r.u8()?;
        if version != LINK_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "device link request",
                found: version,
                supported: LINK_VERSION,
            });
        }
        let joiner: [u8; 32] = r.array()?;
        let sealed = r.take(r.remaining())?;
        let shared = agree(&StaticSecret::from(*self.secret), &joiner)?;
        let key = request_key(&shared, &self.ticket, &joiner);
        let plain = crate::crypto::open(&key, &[0; crate::crypto::NONCE_LEN], &joiner, sealed)?;
        let mut r = Reader::new(&plain, "device link request");
        let device = r.array()?;
        let dh = r.array()?;
        let name = r.string(MAX_NAME_LEN)?;
        r.finish()?;
        ed25519_dalek::VerifyingKey::from_bytes(&device)
            .map_err(|_| Error::Malformed { what: "device link request", why: "device key is not an Ed25519 point" })?;
        let applicant = Applicant { device, dh, name };
        let session = Session::derive(&shared, &self.ticket, &joiner, &applicant, nonce);
        Ok(Opened { code: session.code, applicant, session })
    }

    /// Seals `payload` for the device whose request was `opened`, after the user confirmed the
    /// codes match. Consumes the offer: it opens nothing more.
    pub fn grant(self, opened: Opened, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![LINK_VERSION];
        out.extend(crate::crypto::seal(
            &opened.session.grant_key,
            &[0; crate::crypto::NONCE_LEN],
            &[LINK_VERSION],
            payload,
        ));
        out
    }
}

/// The new device between its request and the grant.
#[derive(Clone)]
pub struct Joining {
    ticket: Ticket,
    session: Session,
    request: Vec<u8>,
    /// Kept to derive the session again with the primary's nonce.
    shared: Secret32,
    joiner: [u8; 32],
    applicant: Applicant,
}

impl Joining {
    /// Answers the link with this device's keys; `name` is what the user calls the device.
    pub fn start(
        ticket: Ticket,
        device: &DeviceKeys,
        name: &str,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Joining> {
        if now_ms >= ticket.expires_ms {
            return Err(Error::Expired { what: "device link" });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Error::TooLong { what: "device name", len: name.len(), max: MAX_NAME_LEN });
        }
        let own = StaticSecret::from(entropy.bytes32()?);
        let joiner = PublicKey::from(&own).to_bytes();
        let shared = agree(&own, &ticket.ephemeral)?;
        let applicant = Applicant { device: device.id(), dh: device.dh_public(), name: name.to_owned() };
        let mut plain = Writer::with_capacity(72 + name.len());
        plain.raw(&applicant.device).raw(&applicant.dh).string(name);
        let key = request_key(&shared, &ticket, &joiner);
        let mut request = vec![LINK_VERSION];
        request.extend_from_slice(&joiner);
        request.extend(crate::crypto::seal(&key, &[0; crate::crypto::NONCE_LEN], &joiner, &plain.into_bytes()));
        let session = Session::derive(&shared, &ticket, &joiner, &applicant, None);
        Ok(Joining { ticket, session, request, shared, joiner, applicant })
    }

    /// This exchange once the primary's nonce came (the network path): its code and grant key
    /// cover the nonce.
    pub fn with_nonce(&self, nonce: &[u8; 32]) -> Joining {
        let session = Session::derive(&self.shared, &self.ticket, &self.joiner, &self.applicant, Some(nonce));
        Joining { session, ..self.clone() }
    }

    /// The key the primary's nonce comes sealed under over the network.
    pub fn nonce_chunk_key(&self) -> [u8; 32] {
        self.session.nonce_key
    }

    /// The bytes to carry to the account's device.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    pub fn code(&self) -> ShortCode {
        self.session.code
    }

    /// The key the grant's chunks come sealed under over the network.
    pub fn grant_chunk_key(&self) -> [u8; 32] {
        self.session.grant_chunk_key()
    }

    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// Opens the grant the account's device sealed for this request.
    pub fn open_grant(&self, grant: &[u8]) -> Result<Vec<u8>> {
        if grant.len() > MAX_GRANT_LEN {
            return Err(Error::TooLong { what: "device grant", len: grant.len(), max: MAX_GRANT_LEN });
        }
        let (&version, sealed) = grant.split_first().ok_or(Error::Truncated { what: "device grant", needed: 1 })?;
        if version != LINK_VERSION {
            return Err(Error::UnsupportedVersion { what: "device grant", found: version, supported: LINK_VERSION });
        }
        crate::crypto::open(&self.session.grant_key, &[0; crate::crypto::NONCE_LEN], &[LINK_VERSION], sealed)
    }
}

/// Checks that a granted certificate is for the device that asked.
pub fn check_certificate(cert: &DeviceCert, device: &DeviceKeys) -> Result<()> {
    cert.verify()?;
    if cert.device != device.id() || cert.dh != device.dh_public() {
        return Err(Error::Malformed { what: "device grant", why: "its certificate is for another device" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    const NOW: u64 = 1_700_000_000_000;

    fn exchange(seed: u64) -> (Offer, Joining, DeviceKeys, SeededEntropy) {
        let mut rng = SeededEntropy::new(seed);
        let offer = Offer::new(NOW, &mut rng).unwrap();
        let laptop = DeviceKeys::generate(&mut rng).unwrap();
        let ticket = Ticket::from_link(&offer.ticket().to_link()).unwrap();
        let joining = Joining::start(ticket, &laptop, "laptop", NOW + 1, &mut rng).unwrap();
        (offer, joining, laptop, rng)
    }

    #[test]
    fn both_sides_show_the_same_code_and_only_the_requester_opens_the_grant() {
        let (offer, joining, laptop, mut rng) = exchange(1);
        let opened = offer.open(joining.request(), NOW + 2).unwrap();
        assert_eq!(opened.code, joining.code());
        assert_eq!(opened.applicant, Applicant { device: laptop.id(), dh: laptop.dh_public(), name: "laptop".into() });
        // Another device that answers the same link (it saw the QR code) cannot open the grant.
        let other = DeviceKeys::generate(&mut rng).unwrap();
        let eavesdropper = Joining::start(offer.ticket().clone(), &other, "laptop", NOW + 1, &mut rng).unwrap();
        let grant = offer.grant(opened, b"the account");
        assert_eq!(joining.open_grant(&grant).unwrap(), b"the account");
        assert!(matches!(eavesdropper.open_grant(&grant), Err(Error::DecryptionFailed)));
    }

    /// Over the network the primary answers each request with a nonce, and the code and the
    /// grant key cover it: what a request shows cannot be chosen by whoever made it (grinding
    /// requests until one shows the code seen on the laptop's screen), since the nonce comes
    /// after the request.
    #[test]
    fn the_primary_s_nonce_decides_the_code_and_the_grant_key() {
        let (offer, joining, _, _) = exchange(5);
        let (first, second) = ([1u8; 32], [2u8; 32]);
        let opened = offer.open_with_nonce(joining.request(), NOW + 2, Some(&first)).unwrap();
        let bound = joining.with_nonce(&first);
        assert_eq!(opened.code, bound.code(), "both sides show the same code with the nonce");
        assert_eq!(opened.nonce_chunk_key(), joining.nonce_chunk_key(), "the nonce's key needs no nonce");
        let other = offer.open_with_nonce(joining.request(), NOW + 2, Some(&second)).unwrap();
        assert_ne!(other.code, opened.code, "another nonce, another code");
        assert_ne!(opened.code, joining.code(), "the file path's code is not the network's");
        let grant = offer.grant(opened, b"the account");
        assert_eq!(bound.open_grant(&grant).unwrap(), b"the account");
        assert!(joining.open_grant(&grant).is_err(), "the grant key covers the nonce");
        assert!(joining.with_nonce(&second).open_grant(&grant).is_err());
    }

    /// The primary's nonce is the same for the same request (a restart answers as before), and
    /// another for any other request or offer.
    #[test]
    fn the_nonce_is_the_offer_s_for_each_request() {
        let (offer, joining, _, mut rng) = exchange(6);
        let again = Offer::from_bytes(&offer.to_bytes()).unwrap();
        assert_eq!(offer.nonce_for(joining.request()), again.nonce_for(joining.request()));
        let thief = DeviceKeys::generate(&mut rng).unwrap();
        let other = Joining::start(offer.ticket().clone(), &thief, "laptop", NOW + 1, &mut rng).unwrap();
        assert_ne!(offer.nonce_for(joining.request()), offer.nonce_for(other.request()));
        let (second_offer, _, _, _) = exchange(7);
        assert_ne!(offer.nonce_for(joining.request()), second_offer.nonce_for(joining.request()));
    }

    /// Someone who saw the link answers instead of the user's laptop: the account's device shows
    /// a code that is not the laptop's, so the user does not confirm.
    #[test]
    fn a_request_from_whoever_else_saw_the_link_shows_another_code() {
        let (offer, joining, _, mut rng) = exchange(2);
        let thief = DeviceKeys::generate(&mut rng).unwrap();
        let stolen = Joining::start(offer.ticket().clone(), &thief, "laptop", NOW + 1, &mut rng).unwrap();
        let opened = offer.open(stolen.request(), NOW + 2).unwrap();
        assert_ne!(opened.code, joining.code());
    }

    #[test]
    fn an_expired_link_opens_nothing_on_either_side() {
        let (offer, joining, laptop, mut rng) = exchange(3);
        assert!(matches!(offer.open(joining.request(), NOW + LINK_LIFETIME_MS), Err(Error::Expired { .. })));
        let late = Joining::start(offer.ticket().clone(), &laptop, "laptop", NOW + LINK_LIFETIME_MS, &mut rng);
        assert!(matches!(late, Err(Error::Expired { .. })));
    }

    #[test]
    fn any_change_to_a_request_or_a_grant_is_refused() {
        let (offer, joining, _, _) = exchange(4);
        let request = joining.request().to_vec();
        for i in 0..request.len() {
            let mut bad = request.clone();
            bad[i] ^= 1;
            assert!(offer.open(&bad, NOW + 2).is_err(), "byte {i} of the request");
        }
        let opened = offer.open(&request, NOW + 2).unwrap();
        let grant = offer.grant(opened, b"payload");
        for i in 0..grant.len() {
            let mut bad = grant.clone();
            bad[i] ^= 1;
            assert!(joining.open_grant(&bad).is_err(), "byte {i} of the grant");
        }
    }

    #[test]
    fn links_with_typos_are_refused() {
        let (offer, _, _, _) = exchange(5);
        let link = offer.ticket().to_link();
        assert_eq!(Ticket::from_link(&link.to_ascii_uppercase()).unwrap(), *offer.ticket());
        let mut typo = link.clone().into_bytes();
        let at = typo.len() - 10;
        typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
        assert!(matches!(Ticket::from_link(std::str::from_utf8(&typo).unwrap()), Err(Error::BadChecksum)));
        assert!(Ticket::from_link(&link[..link.len() - 3]).is_err());
        assert!(matches!(Ticket::from_link("weft://contact/abc"), Err(Error::NotALink { .. })));
    }

    /// The bundle path spans two runs of the CLI: the offer is stored between them.
    #[test]
    fn a_stored_offer_opens_the_request_as_the_first_did() {
        let (offer, joining, _, _) = exchange(6);
        let stored = Offer::from_bytes(&offer.to_bytes()).unwrap();
        assert_eq!(stored.open(joining.request(), NOW + 2).unwrap().code, joining.code());
        let mut other = offer.to_bytes();
        other[1] ^= 1;
        assert!(Offer::from_bytes(&other).is_err(), "a key that does not match its link");
    }

    #[test]
    fn codes_are_six_digits() {
        assert_eq!(ShortCode(42).to_string(), "000 042");
        assert_eq!(ShortCode(987_654).to_string(), "987 654");
    }
}
