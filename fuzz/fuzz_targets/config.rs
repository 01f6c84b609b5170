//! The configuration file (`config.toml`), which a user may have edited by hand.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_cli::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
});
