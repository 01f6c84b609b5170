use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use weft_core::account::Account;

use crate::output::Output;

#[derive(clap::Args)]
pub struct Args {
    /// The name others see on your contact link (with --join: this device's name, e.g. laptop)
    #[arg(long)]
    name: String,
    /// Join an existing account as one of its devices, from the link `weft device link` shows
    /// on its first device
    #[arg(long, value_name = "LINK")]
    join: Option<String>,
    /// With --join: where to write this device's request, to carry to the first device
    #[arg(long, requires = "join", value_name = "PATH", default_value = "link-request.weft")]
    request: PathBuf,
    /// With --join: the grant the first device writes (`weft device accept`); waited for until
    /// the link expires
    #[arg(long, requires = "join", value_name = "PATH", default_value = "link-grant.weft")]
    grant: PathBuf,
    /// With --join: files only, no network and no Bluetooth
    #[arg(long, requires = "join")]
    offline: bool,
    /// With --join: do not offer the request over Bluetooth (the mesh, for when there is no
    /// network)
    #[arg(long, requires = "join")]
    no_ble: bool,
    /// With --join: how to reach the first device over the network (defaults from the config's
    /// [network]; the LAN by mDNS unless --no-mdns)
    #[command(flatten)]
    network: super::run::NetworkArgs,
}

#[derive(Serialize)]
struct Created {
    home: String,
    name: String,
    link: String,
    fingerprint: String,
}

pub fn run(home_dir: &Path, args: Args, network: &crate::config::Network, out: &Output) -> Result<()> {
    if let Some(link) = &args.join {
        return join(home_dir, link, &args, network, out);
    }
    let passphrase = crate::passphrase::typed(true)?;
    let account = Account::create(home_dir, &passphrase, Some(&args.name))?;
    // A keyring entry left by an account that lived here before does not open this one.
    crate::passphrase::forget_stale(home_dir);
    let created = Created {
        home: home_dir.display().to_string(),
        name: args.name,
        link: account.card().to_link(),
        fingerprint: account.fingerprint(),
    };
    out.print(&created, || {
        format!(
            "Created the account {:?} in {}\n\nYour contact link (share it with people you trust):\n{}\n\nFingerprint: {}\n\nNext: `weft contact add LINK` with someone else's link; `weft passphrase remember` keeps the\npassphrase in the OS keyring.",
            created.name, created.home, created.link, created.fingerprint
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct Joined {
    home: String,
    device: String,
    account: String,
    fingerprint: String,
}

/// Answers a device link: offers the request over the network and writes it to a file, shows
/// the code, and waits for the grant whichever way it comes.
fn join(home_dir: &Path, link: &str, args: &Args, network: &crate::config::Network, out: &Output) -> Result<()> {
    use weft_core::devices::linking::{Joining, Ticket};
    let ticket = Ticket::from_link(link)?;
    if home_dir.join(weft_core::store::DB_FILE).exists() {
        anyhow::bail!("{} already holds an account; join into another home (--home)", home_dir.display());
    }
    let passphrase = crate::passphrase::typed(true)?;
    let mut entropy = weft_core::crypto::OsEntropy;
    let device = weft_core::identity::DeviceKeys::generate(&mut entropy)?;
    let now = weft_core::clock::system_clock()();
    let joining = Joining::start(ticket, &device, &args.name, now, &mut entropy)?;
    let _ = std::fs::remove_file(&args.grant);
    std::fs::write(&args.request, joining.request())
        .with_context(|| format!("writing the request to {}", args.request.display()))?;
    // The network carries the request to the first device if it runs (`weft run`, the
    // daemon, an app) where this machine reaches it; the files are there for when it does not.
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // And over Bluetooth, where there is no network: the first device's mesh carries it.
    let over_network = match args.offline {
        true => None,
        false => {
            let _inside = runtime.enter();
            let mut join = weft_core::net::JoinOverNetwork::new(&joining, &mut entropy)?;
            let config = super::run::net_config(&args.network.clone().over(network))?;
            let on_libp2p = match runtime.block_on(join.start_libp2p(config)) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("(not on the network: {e}; the request file still works)");
                    false
                }
            };
            let on_bluetooth = !(args.no_ble || network.bluetooth == Some(false))
                && match runtime.block_on(weft_core::mesh::radio::ble::open()) {
                    Ok(radio) => {
                        join.attach_radio(radio, weft_core::mesh::RouterConfig::default());
                        true
                    }
                    Err(e) => {
                        eprintln!("(no Bluetooth: {e}; use --no-ble to skip this check)");
                        false
                    }
                };
            (on_libp2p || on_bluetooth).then_some(join)
        }
    };
    let by_network = match over_network {
        Some(_) => {
            "If the account's first device runs on this network, it answers the request: this screen then \
             shows the code to grant it with there.\nWith no network, c"
        }
        None => "C",
    };
    let waiting = format!(
        "Wrote {}.\n{by_network}arry it to the account's first device and run there:\n  weft device accept {} --out {}\n\
         With the file, both screens must show the same code: {}\nWaiting for the grant…",
        args.request.display(),
        args.request.display(),
        args.grant.display(),
        joining.code(),
    );
    if out.json {
        eprintln!("{}", serde_json::json!({ "request": args.request, "code": joining.code().to_string() }));
    } else {
        eprintln!("{waiting}");
    }
    let expires = joining.ticket().expires_ms;
    // A grant copied in by hand may be read while the copy is under way: one that does not
    // open yet is read again until it does or the link expires (nothing is written before it
    // opens).
    let mut last_error = None;
    // A grant with the history comes in many parts: a bar shows how far.
    let bar = crate::progress::Bar::new("receiving the grant", "parts", out.json);
    let mut code_shown = false;
    let account = loop {
        // Over the network the code covers the first device's answer: it shows once that came.
        if let Some(code) = over_network.as_ref().and_then(|j| j.code()).filter(|_| !code_shown) {
            code_shown = true;
            if out.json {
                eprintln!("{}", serde_json::json!({ "network_code": code.to_string() }));
            } else {
                eprintln!(
                    "The first device received the request over the network. Its screen must show the same \
                     network code: {code}\nGrant it there with:\n  weft device accept --code {}",
                    code.to_string().replace(' ', "")
                );
            }
        }
        if let Some((have, all)) = over_network.as_ref().and_then(|j| j.progress()).filter(|(_, all)| *all > 1) {
            bar.set(have, all);
        }
        if let Some(granted) = over_network.as_ref().and_then(|j| j.try_grant()) {
            break Account::create_linked_with_passphrase(
                home_dir,
                &passphrase,
                &device,
                &args.name,
                &granted.joining,
                &granted.grant,
            )?;
        }
        if let Ok(meta) = std::fs::metadata(&args.grant) {
            // Outside bytes: a file larger than any grant is not read into memory.
            let max = weft_core::devices::linking::MAX_GRANT_LEN as u64;
            if meta.len() > max {
                anyhow::bail!("{} is {} bytes, more than a grant can be ({max})", args.grant.display(), meta.len());
            }
            let grant = std::fs::read(&args.grant).with_context(|| format!("reading {}", args.grant.display()))?;
            match Account::create_linked_with_passphrase(home_dir, &passphrase, &device, &args.name, &joining, &grant) {
                Ok(account) => break account,
                Err(e @ (weft_core::Error::DecryptionFailed | weft_core::Error::Truncated { .. })) => {
                    last_error = Some(e)
                }
                Err(e) => return Err(e.into()),
            }
        }
        if weft_core::clock::system_clock()() >= expires {
            match last_error {
                Some(e) => anyhow::bail!("{} does not open as this device's grant ({e})", args.grant.display()),
                None => anyhow::bail!("the link expired before the grant came; make a new one with `weft device link`"),
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    drop(bar);
    if let Some(join) = over_network {
        join.stop();
    }
    drop(runtime);
    crate::passphrase::forget_stale(home_dir);
    let joined = Joined {
        home: home_dir.display().to_string(),
        device: args.name.clone(),
        account: account.name().unwrap_or("").to_owned(),
        fingerprint: account.fingerprint(),
    };
    out.print(&joined, || {
        format!(
            "This device ({:?}) is now one of {:?}'s devices, in {}.\nFingerprint: {} (the same on every device)",
            joined.device, joined.account, joined.home, joined.fingerprint
        )
    });
    Ok(())
}
