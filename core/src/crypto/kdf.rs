//! HKDF-SHA256 with explicit salts and labelled `info` strings. Every derived key in Weft has a
//! label of its own under the `weft/v1/` prefix; the labels are listed in docs/PROTOCOL.md.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Builds a label. Kept as a function so that every label in the code reads the same way.
pub const fn label(s: &'static str) -> &'static [u8] {
    s.as_bytes()
}

/// HKDF-SHA256(salt, ikm) expanded with `info` into `out`.
pub fn derive(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    hk.expand_multi_info(info, out).expect("HKDF output length is at most 255 * 32 bytes");
}

/// [`derive`] into a fixed-size array.
pub fn derive_array<const N: usize>(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    derive(salt, ikm, info, &mut out);
    out
}

/// HMAC-SHA256(key, parts...): used where a value must be a keyed function of public input,
/// such as rendezvous points.
pub fn keyed_hash(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}
