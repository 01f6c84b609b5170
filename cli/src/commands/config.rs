//! `weft config`: where the machine's config file is, what it says, and a commented one to
//! start from.

use anyhow::{Context, Result, bail};

use crate::config::{Config, Location, TEMPLATE};
use crate::output::Output;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print where the config file is read from
    Path,
    /// Print the settings the config file holds (after checking it)
    Show,
    /// Write a commented config file to start from (refuses to overwrite one)
    Init,
}

pub fn run(location: &Location, command: Command, out: &Output) -> Result<()> {
    let path = &location.path;
    match command {
        Command::Path => {
            let exists = path.exists();
            out.print(&serde_json::json!({ "path": path, "exists": exists }), || {
                if exists {
                    path.display().to_string()
                } else {
                    format!("{} (not there yet: `weft config init` writes one)", path.display())
                }
            });
        }
        Command::Show => {
            let config = Config::load(location)?;
            out.print(&config, || toml::to_string_pretty(&config).expect("plain data"));
        }
        Command::Init => {
            if path.exists() {
                bail!("{} already exists; edit it, or remove it first", path.display());
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(path, TEMPLATE).with_context(|| format!("writing {}", path.display()))?;
            out.print(&serde_json::json!({ "path": path }), || {
                format!("Wrote {}; uncomment what you want to set.", path.display())
            });
        }
    }
    Ok(())
}
