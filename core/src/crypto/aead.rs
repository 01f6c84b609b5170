//! XChaCha20-Poly1305. The 24-byte nonce is large enough to be drawn at random for every
//! message; no nonce in Weft is fixed or counted.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

pub const NONCE_LEN: usize = 24;
pub const AEAD_TAG_LEN: usize = 16;

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

/// Encrypts `buf` in place and appends the tag.
pub fn seal_in_place(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
    let nonce = XNonce::from(*nonce);
    let tag = cipher(key)
        .encrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into())
        .expect("XChaCha20-Poly1305 accepts messages of any length Weft produces");
    buf.extend_from_slice(&tag);
}

/// Encrypts `buf` in place and returns the tag.
pub fn seal_detached(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; AEAD_TAG_LEN] {
    let tag = cipher(key)
        .encrypt_inout_detached(&XNonce::from(*nonce), aad, buf.into())
        .expect("XChaCha20-Poly1305 accepts messages of any length Weft produces");
    tag.into()
}

/// Decrypts `buf` (ciphertext followed by tag) in place and removes the tag.
pub fn open_in_place(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    let body_len = buf.len().checked_sub(AEAD_TAG_LEN).ok_or(Error::DecryptionFailed)?;
    let tag = Tag::try_from(&buf[body_len..]).map_err(|_| Error::DecryptionFailed)?;
    let nonce = XNonce::from(*nonce);
    cipher(key)
        .decrypt_inout_detached(&nonce, aad, (&mut buf[..body_len]).into(), &tag)
        .map_err(|_| Error::DecryptionFailed)?;
    buf.truncate(body_len);
    Ok(())
}

/// Decrypts `ciphertext` (followed by its tag) into a new buffer, without copying it first.
pub fn open_into(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
    let body_len = ciphertext.len().checked_sub(AEAD_TAG_LEN).ok_or(Error::DecryptionFailed)?;
    let tag = Tag::try_from(&ciphertext[body_len..]).map_err(|_| Error::DecryptionFailed)?;
    let mut out = vec![0u8; body_len];
    let buf = chacha20poly1305::aead::inout::InOutBuf::new(&ciphertext[..body_len], &mut out)
        .map_err(|_| Error::DecryptionFailed)?;
    cipher(key).decrypt_inout_detached(&XNonce::from(*nonce), aad, buf, &tag).map_err(|_| Error::DecryptionFailed)?;
    Ok(out)
}

/// Encrypts a copy of `plaintext`.
pub fn seal(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(plaintext.len() + AEAD_TAG_LEN);
    buf.extend_from_slice(plaintext);
    seal_in_place(key, nonce, aad, &mut buf);
    buf
}

/// Decrypts a copy of `ciphertext`.
pub fn open(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
    let mut buf = ciphertext.to_vec();
    open_in_place(key, nonce, aad, &mut buf)?;
    Ok(buf)
}
