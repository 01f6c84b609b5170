//! Where the account lives.

use std::path::PathBuf;

pub fn resolve(home: Option<PathBuf>) -> PathBuf {
    home.unwrap_or_else(|| dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("weft"))
}
