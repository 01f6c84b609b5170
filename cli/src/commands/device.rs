//! `weft device`: this account on several devices. The first device makes a one-time link
//! (`link`), the new device answers it (`weft init --join LINK`: over the network, and as a
//! request file for when there is none), and the first device grants it once both screens
//! show the same code (`accept`). `list` and `revoke` (a lost or stolen device) follow.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::backend;
use crate::output::Output;
use crate::rpc::request::{
    AbsolutePath, AcceptDevice, ArrivedLinkRequests, CancelLink, GrantArrived, LinkDevice, ListDevices, RevokeDevice,
    ShowLinkRequest,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show a one-time link (and QR code) for a new device; valid ten minutes
    Link,
    /// Grant the new device once both screens show the same code: its request came over the
    /// network (to `weft run` or `weft daemon`), or as a file
    Accept {
        /// The request file the new device wrote (`weft init --join`); without it, the request
        /// that came over the network
        #[arg(requires = "out")]
        request: Option<PathBuf>,
        /// Where to write the grant to carry back to the new device (with a request file)
        #[arg(long, requires = "request")]
        out: Option<PathBuf>,
        /// The code the new device shows (instead of being asked)
        #[arg(long)]
        code: Option<String>,
        /// Hand the conversations' history over too (the newest messages that fit 48 MiB)
        #[arg(long)]
        history: bool,
    },
    /// List this account's devices
    List,
    /// Revoke a lost or stolen device: it reads nothing written after, and what it sends is refused
    Revoke {
        /// The device's name (as `weft device list` shows it) or id
        device: String,
    },
}

/// Grants the request that came over the network (to the daemon or `weft run` of this home).
fn accept_arrived(home_dir: &Path, code: Option<String>, history: bool, out: &Output) -> Result<()> {
    let arrived = backend::call(home_dir, ArrivedLinkRequests {})?;
    if arrived.is_empty() {
        bail!(
            "no request came over the network: keep `weft run` or `weft daemon` running while the new \
             device joins (or carry its request file: `weft device accept FILE --out GRANT`)"
        );
    }
    let confirmed = match code {
        Some(typed) => parse_code(&typed)?,
        None if out.json || !std::io::stdin().is_terminal() => {
            bail!("pass --code with the code the new device shows")
        }
        None => {
            for r in &arrived {
                println!("{:?} asks to join this account; its screen should show {}", r.name, r.code);
            }
            print!("Type the code the new device shows (nothing cancels the link): ");
            std::io::stdout().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            if line.trim().is_empty() {
                backend::call(home_dir, CancelLink {})?;
                bail!("not granted; the link is cancelled (make a new one with `weft device link`)");
            }
            parse_code(&line)?
        }
    };
    let granted = backend::call(home_dir, GrantArrived { code: confirmed, history })?;
    out.print(&granted, || {
        format!(
            "Granted {:?}: the grant goes to it over the network; it becomes one of this account's devices.",
            granted.name
        )
    });
    Ok(())
}

fn absolute(path: &Path) -> Result<AbsolutePath> {
    let full = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    AbsolutePath::new(full.display().to_string()).context("not an absolute path")
}

/// A code as typed ("123 456", "123456") as a number.
pub fn parse_code(code: &str) -> Result<u32> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        bail!("a code is six digits, as the new device shows it (\"123 456\")");
    }
    Ok(digits.parse()?)
}

pub fn run(home_dir: &Path, cmd: Command, out: &Output) -> Result<()> {
    match cmd {
        Command::Link => {
            let link = backend::call(home_dir, LinkDevice {})?;
            out.print(&link, || {
                format!(
                    "{}\n{}\n\nOn the new device: weft init --name DEVICE_NAME --join '{}'\n\
                     Over the network (this account running `weft run` or `weft daemon`), its request \
                     arrives here: grant it with `weft device accept --code CODE`.\n\
                     With no network, it writes a request file; bring it here and run \
                     `weft device accept FILE --out GRANT`.\n\
                     The link works once, for ten minutes.",
                    link.qr, link.link, link.link
                )
            });
        }
        Command::Accept { request: None, code, history, .. } => accept_arrived(home_dir, code, history, out)?,
        Command::Accept { request: Some(request), out: grant, code, history } => {
            let grant = grant.expect("clap requires --out with a request file");
            let request = absolute(&request)?;
            let asked = backend::call(home_dir, ShowLinkRequest { request: request.clone() })?;
            let confirmed = match code {
                Some(typed) => parse_code(&typed)?,
                None if out.json || !std::io::stdin().is_terminal() => {
                    bail!("pass --code with the code the new device shows (this one shows {})", asked.code)
                }
                None => {
                    print!("{:?} asks to join this account. Does it show the code {}? [y/N] ", asked.name, asked.code);
                    std::io::stdout().flush()?;
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    if !matches!(line.trim(), "y" | "Y" | "yes") {
                        backend::call(home_dir, CancelLink {})?;
                        bail!("not granted; the link is cancelled (make a new one with `weft device link`)");
                    }
                    parse_code(&asked.code)?
                }
            };
            let granted =
                backend::call(home_dir, AcceptDevice { request, grant: absolute(&grant)?, code: confirmed, history })?;
            out.print(&granted, || {
                format!(
                    "Granted {:?}. Carry {} to it: it becomes one of this account's devices.",
                    granted.name,
                    grant.display()
                )
            });
        }
        Command::List => {
            let devices = backend::call(home_dir, ListDevices {})?;
            out.print(&devices, || {
                devices
                    .iter()
                    .map(|d| {
                        let seen = d.last_seen_ms.map(|ms| format!(", last seen {}", crate::output::format_time(ms)));
                        format!(
                            "{:<20} {} linked {}{}{}{}",
                            d.name,
                            &d.device[..12],
                            crate::output::format_time(d.linked_ms),
                            seen.unwrap_or_default(),
                            if d.primary { "  (holds the account key)" } else { "" },
                            if d.this_device { "  (this device)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Revoke { device } => {
            let revoked = backend::call(home_dir, RevokeDevice { device })?;
            out.print(&revoked, || {
                format!(
                    "Revoked {:?}: it reads nothing written after your contacts and groups process this, \
                     and what it sends is refused.\nYour contact link changed (the device held the old one): \
                     your contacts get the new one; share it with anyone new from `weft id`.",
                    revoked.name
                )
            });
        }
    }
    Ok(())
}
