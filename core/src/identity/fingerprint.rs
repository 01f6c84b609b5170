//! Fingerprints and safety numbers: digits people read to each other to confirm that the keys
//! their devices hold are the right ones.

use super::device::AccountPublic;

/// Six groups of five digits derived from one account key.
pub fn fingerprint(account: &AccountPublic) -> String {
    groups(account).join(" ")
}

/// The safety number of two accounts: both fingerprints, lower key first, so both people see
/// the same twelve groups.
pub fn safety_number(a: &AccountPublic, b: &AccountPublic) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let mut all = groups(first);
    all.extend(groups(second));
    all.join(" ")
}

fn groups(account: &AccountPublic) -> Vec<String> {
    // Iterated hashing makes finding a key with a chosen fingerprint costlier (as Signal does).
    let mut hash = *blake3::hash(account).as_bytes();
    let keyed = blake3::Hasher::new_derive_key("weft/v1/fingerprint");
    for _ in 0..1024 {
        let mut h = keyed.clone();
        h.update(&hash).update(account);
        hash = *h.finalize().as_bytes();
    }
    hash.chunks(5)
        .take(6)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_number_is_symmetric_and_distinct() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_eq!(safety_number(&a, &b), safety_number(&b, &a));
        assert_eq!(safety_number(&a, &b).split(' ').count(), 12);
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
