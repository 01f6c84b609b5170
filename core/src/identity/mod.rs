//! Who someone is: account keys, device keys certified by them, the contact card that is shared
//! by link or QR code, and the safety numbers two people compare.

mod card;
mod device;
mod fingerprint;
mod prekey;

pub use card::{CARD_VERSION, ContactCard, MAX_NAME_LEN, QrCode, qr_text, rendezvous_point};
pub use device::{AccountKey, AccountPublic, DeviceCert, DeviceId, DeviceKeys, InviteKeys, verify_signature};
pub use fingerprint::{fingerprint, safety_number};
pub use prekey::{PREKEY_GRACE_MS, PREKEY_ROTATE_MS, PrekeyRing, SignedPrekey};
