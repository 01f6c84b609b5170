//! Where time comes from: milliseconds since the Unix epoch. The engine reads no clock of its
//! own; whoever runs it hands one in, so that tests and simulations can move days ahead.

use std::sync::{Arc, OnceLock};

/// A clock for one owner (an account's thread).
pub type Clock = Box<dyn Fn() -> u64 + Send>;
/// A clock shared between tasks (a relay, a mesh driver).
pub type SharedClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The variable that moves this process's clock: `7d`, `36h`, `-2d`, `90m`, or milliseconds.
/// For tests that run the real binary days ahead (what libfaketime would do, without it); the
/// same as setting the machine's clock, so it grants nothing.
pub const OFFSET_VAR: &str = "WEFT_CLOCK_OFFSET";

/// The system's time now (moved by [`OFFSET_VAR`], if set).
pub fn system_ms() -> u64 {
    let real = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    real.saturating_add_signed(offset_ms())
}

fn offset_ms() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| std::env::var(OFFSET_VAR).ok().and_then(|v| parse_offset(&v)).unwrap_or(0))
}

/// `7d`, `36h`, `-2d`, `90m`, `30s` or plain milliseconds; `None` if it is none of these.
pub fn parse_offset(text: &str) -> Option<i64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last()? {
        (i, 'd') => (&text[..i], 86_400_000),
        (i, 'h') => (&text[..i], 3_600_000),
        (i, 'm') => (&text[..i], 60_000),
        (i, 's') => (&text[..i], 1_000),
        _ => (text, 1),
    };
    number.parse::<i64>().ok()?.checked_mul(unit)
}

/// The system clock, for one owner.
pub fn system_clock() -> Clock {
    Box::new(system_ms)
}

/// The system clock, to share.
pub fn shared_system_clock() -> SharedClock {
    Arc::new(system_ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn offsets_read_as_people_write_them() {
        use super::parse_offset;
        assert_eq!(parse_offset("7d"), Some(7 * 86_400_000));
        assert_eq!(parse_offset("-2d"), Some(-2 * 86_400_000));
        assert_eq!(parse_offset("36h"), Some(36 * 3_600_000));
        assert_eq!(parse_offset("1500"), Some(1500));
        assert_eq!(parse_offset("d"), None);
        assert_eq!(parse_offset("soon"), None);
        assert_eq!(parse_offset("99999999999999999d"), None);
    }
}
