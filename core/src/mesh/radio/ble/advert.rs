//! What a desktop advertises, and who opens the link when two Weft radios see each other.
//!
//! Phones decide by tokens (`mobile/android/.../LinkTable.kt`): an Android phone's token is its
//! scan response's service data, a foreground iPhone's its local name `weft-<16 hex>`, and a
//! peer without a token (an iPhone in the background, seen only by iPhones) is always
//! connected to. A desktop advertises without a token that phones read, so every phone, in
//! every state (a backgrounded iPhone included, which only connects to tokenless peers and is
//! invisible to a desktop's scan), connects to the desktop, and the desktop never connects to a
//! phone while it advertises: one link per pair. Between desktops the token is in the local
//! name under a prefix phones do not parse (`weftd-<16 hex>`), and the lower token connects.
//!
//! A desktop that cannot advertise (no BlueZ peripheral) connects to every phone, as before.

/// Bytes of a desktop's advertising token. A new token comes with each re-advertisement
/// ([`TOKEN_LIFETIME_SECS`]), so it does not tie sightings together across address rotations.
pub type Token = [u8; 8];
/// How long one token is advertised (about as long as an Android address lasts).
pub const TOKEN_LIFETIME_SECS: u64 = 15 * 60;
const NAME_PREFIX: &str = "weftd-";

/// The local name a desktop advertises.
pub fn advertised_name(token: &Token) -> String {
    let mut name = String::from(NAME_PREFIX);
    for b in token {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// What a desktop's scan saw of a peer advertising the Weft service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Another desktop, with its token.
    Desktop(Token),
    /// Another desktop whose name came shortened (a scanner may get the name cut short): its
    /// token is unknown, so we connect (two links at worst, which the mesh tolerates; none at
    /// all if each took the other for a phone).
    DesktopWithoutToken,
    /// A phone (or anything without a desktop's token).
    Phone,
}

/// Reads a peer's local name.
pub fn seen(local_name: Option<&str>) -> Seen {
    let Some(hex) = local_name.and_then(|n| n.strip_prefix(NAME_PREFIX)) else { return Seen::Phone };
    if hex.len() != 16 || !hex.is_ascii() {
        return Seen::DesktopWithoutToken;
    }
    let mut token = [0u8; 8];
    for (i, b) in token.iter_mut().enumerate() {
        match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
            Ok(v) => *b = v,
            Err(_) => return Seen::DesktopWithoutToken,
        }
    }
    Seen::Desktop(token)
}

/// Whether we open the link. `own` is our token while we advertise, `None` when we do not.
pub fn should_connect(own: Option<&Token>, peer: Seen) -> bool {
    match (own, peer) {
        // Nobody can connect to us: we connect to everyone.
        (None, _) => true,
        // The phone connects to our tokenless service.
        (Some(_), Seen::Phone) => false,
        (Some(ours), Seen::Desktop(theirs)) => ours < &theirs,
        (Some(_), Seen::DesktopWithoutToken) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_side_of_each_pair_connects() {
        let (a, b) = ([1u8; 8], [2u8; 8]);
        let (seen_a, seen_b) = (seen(Some(&advertised_name(&a))), seen(Some(&advertised_name(&b))));
        assert_eq!(seen_a, Seen::Desktop(a));
        assert!(should_connect(Some(&a), seen_b) && !should_connect(Some(&b), seen_a), "laptop to laptop: the lower");
        assert!(!should_connect(Some(&a), seen(Some("weft-0102030405060708"))), "a phone connects to us");
        assert!(!should_connect(Some(&a), seen(None)));
        assert!(should_connect(None, seen(None)), "not advertising: we connect to phones");
        assert!(should_connect(None, seen_b), "not advertising: nobody connects to us");
    }

    #[test]
    fn a_shortened_or_malformed_name_is_a_desktop_we_connect_to_and_never_panics() {
        for name in
            ["weftd-", "weftd-0102", "weftd-zz02030405060708", "weftd-0102030405060708aa", "weftd-01020304050607é"]
        {
            assert_eq!(seen(Some(name)), Seen::DesktopWithoutToken, "{name}");
            assert!(should_connect(Some(&[0; 8]), seen(Some(name))));
        }
        for name in ["weft-0102030405060708", "Pixel 8", "wef"] {
            assert_eq!(seen(Some(name)), Seen::Phone, "{name}");
        }
    }
}
