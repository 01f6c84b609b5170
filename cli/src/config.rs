//! The machine's settings for `weft`: a TOML file in the platform's config dir
//! (`~/.config/weft/config.toml` on Linux), or the file `--config` / `WEFT_CONFIG` names.
//!
//! It holds what belongs to this machine rather than to the account: where the home is and how
//! this laptop joins the network. (The account's own settings, such as read receipts, live in its
//! encrypted database and travel with it: `weft settings`.) Command-line flags and environment
//! variables win over the file; the file wins over the defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const CONFIG_ENV: &str = "WEFT_CONFIG";

/// Files larger than this are not a config someone wrote by hand.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The account's home directory; `~/` is the user's home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<PathBuf>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub relay: Relay,
}

/// How `weft run`, `weft daemon`, `weft sync` and `weft chat` join the network.
#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Addresses to listen on; empty: every interface, TCP and QUIC, any free port.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Peers dialled at start and whenever lost.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Relays (with their /p2p/ID) that hold our envelopes while we are away.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Discover peers on the local network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdns: Option<bool>,
    /// Connect directly to members behind NATs, punching holes through a relay (they learn
    /// our IP address); off, everything goes through the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hole_punching: Option<bool>,
    /// Join the Bluetooth mesh when the machine has a radio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bluetooth: Option<bool>,
}

/// How `weft relay` runs.
#[derive(Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

/// Where the config is read from, and whether it was asked for by name (then it must exist).
#[derive(Debug, Clone)]
pub struct Location {
    pub path: PathBuf,
    pub named: bool,
}

impl Location {
    pub fn resolve(flag: Option<PathBuf>) -> Location {
        match flag {
            Some(path) => Location { path, named: true },
            None => Location {
                path: dirs::config_dir().unwrap_or_else(|| PathBuf::from(".")).join("weft").join("config.toml"),
                named: false,
            },
        }
    }
}

/// A commented starting point, written by `weft config init`.
pub const TEMPLATE: &str = r#"# weft's settings for this machine. Flags and environment variables win over this file.
# The account's own settings (read receipts) live in its database: `weft settings`.

# Where the account lives (WEFT_HOME, --home). `~/` is your home directory.
# home = "~/.local/share/weft"

[network]
# Addresses to listen on. Empty: every interface, TCP and QUIC, a free port.
# listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# Peers to dial at start and whenever the connection is lost.
# bootstrap = ["/ip4/192.0.2.7/tcp/4001"]
# Relays that hold your envelopes while you are away, with their /p2p/ID.
# relays = ["/ip4/198.51.100.2/tcp/4001/p2p/12D3KooW..."]
# Find peers on the local network (mDNS).
# mdns = true
# Connect directly to the members of your conversations when both are behind NATs, by
# punching a hole through your relay. They learn your IP address; off, the relay carries
# everything and only it sees your address.
# hole_punching = true
# Carry messages over the Bluetooth mesh when the machine has a radio.
# bluetooth = true

[relay]
# What `weft relay` listens on and dials.
# listen = ["/ip4/0.0.0.0/tcp/4001"]
# bootstrap = []
"#;

impl Config {
    /// Reads the config at `location`; no file at the default place is an empty config.
    pub fn load(location: &Location) -> Result<Config> {
        let path = &location.path;
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !location.named => return Ok(Config::default()),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("reading the config {} (create one with `weft config init`)", path.display())
                });
            }
        };
        if meta.len() > MAX_CONFIG_BYTES {
            bail!("the config {} is {} bytes; a config is at most {MAX_CONFIG_BYTES}", path.display(), meta.len());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in the config {}", path.display()))
    }

    /// Parses config text; errors name the line and what was wrong.
    pub fn parse(text: &str) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        config.home = config.home.map(|h| expand_tilde(&h));
        Ok(config)
    }
}

/// `~/x` is `x` in the user's home directory, as a shell would read it.
fn expand_tilde(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_to_the_defaults() {
        assert_eq!(Config::parse(TEMPLATE).unwrap(), Config::default());
    }

    #[test]
    fn settings_are_read() {
        let config =
            Config::parse("home = \"/srv/weft\"\n[network]\nbootstrap = [\"/ip4/192.0.2.7/tcp/4001\"]\nmdns = false\n")
                .unwrap();
        assert_eq!(config.home, Some(PathBuf::from("/srv/weft")));
        assert_eq!(config.network.bootstrap, vec!["/ip4/192.0.2.7/tcp/4001"]);
        assert_eq!(config.network.mdns, Some(false));
        assert_eq!(config.network.bluetooth, None);
    }

    #[test]
    fn a_tilde_means_the_users_home() {
        let config = Config::parse("home = \"~/chats\"").unwrap();
        assert_eq!(config.home, Some(dirs::home_dir().unwrap().join("chats")));
    }

    #[test]
    fn mistakes_name_their_line() {
        let err = Config::parse("[network]\nmdns = \"yes\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = Config::parse("[network]\nbootstrapp = []\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `bootstrapp`"), "{err}");
        assert!(Config::parse("[[[").is_err());
    }

    #[test]
    fn a_missing_file_is_an_empty_config_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.toml");
        assert_eq!(Config::load(&Location { path: path.clone(), named: false }).unwrap(), Config::default());
        let err = Config::load(&Location { path, named: true }).unwrap_err();
        assert!(format!("{err:#}").contains("weft config init"), "{err:#}");
    }

    #[test]
    fn a_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, vec![b'#'; 100_000]).unwrap();
        let err = Config::load(&Location { path, named: true }).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }
}
