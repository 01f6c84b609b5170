//! `weft panic`: erase this account now. No passphrase is asked (someone may be at the door): a
//! node running on the home erases it and exits, then this process erases whatever is left,
//! and takes the passphrase out of the OS keyring.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::output::Output;
use crate::passphrase;
use crate::rpc::Request;
use crate::rpc::answer::Wiped;
use crate::rpc::request::Wipe;

#[cfg(unix)]
type Connection = std::os::unix::net::UnixStream;
#[cfg(not(unix))]
type Connection = ();

/// A connection to the node running on the home, if one runs.
#[cfg(unix)]
fn running_node(home: &Path) -> Option<Connection> {
    Connection::connect(crate::control::socket_path(home)).ok()
}

#[cfg(not(unix))]
fn running_node(_: &Path) -> Option<Connection> {
    None
}

/// Asks the node to wipe (and so to exit); waits a second at most for its word.
#[cfg(unix)]
fn tell_to_wipe(mut stream: Connection) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let call = crate::rpc::jsonrpc::line(&crate::rpc::jsonrpc::Call::new(1, &Request::Wipe(Wipe {})));
    if writeln!(stream, "{call}").is_err() {
        return false;
    }
    let mut answer = String::new();
    // The node may exit before it answers: it was told all the same.
    let _ = BufReader::new(stream).read_line(&mut answer);
    true
}

#[cfg(not(unix))]
fn tell_to_wipe(_: Connection) -> bool {
    false
}

#[derive(clap::Args)]
pub struct Args {
    /// Erase now (required: `weft panic` alone only says what it would do)
    #[arg(long)]
    now: bool,
}

pub fn panic(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    if !args.now {
        bail!(
            "`weft panic --now` erases this account's keys and database in {} at once, with no way back \
             (contacts, groups and every message); nothing was erased",
            home_dir.display()
        );
    }
    let started = Instant::now();
    let remembered = passphrase::is_remembered(home_dir);
    // The running node's socket is opened before the files go (the wipe unlinks it), then the
    // files are erased here at once, whatever the node is busy with; then the node is told to
    // erase too and exit, since its memory holds the keys.
    let node = running_node(home_dir);
    let here = weft_core::wipe::wipe_home(home_dir);
    let by_node = node.is_some_and(tell_to_wipe);
    let keyring =
        if remembered { passphrase::erase_from_keyring(home_dir).map_err(|e| e.to_string()) } else { Ok(false) };
    let here = here?;
    let report = Wiped {
        files: here.files,
        overwritten: here.overwritten,
        held: here.held,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    out.print(&report, || {
        let mut said = format!(
            "Erased in {} ms: the keys first, then the database ({} files{}). Nothing left here opens.",
            report.elapsed_ms,
            report.files,
            if by_node { ", and the running node, which exited" } else { "" }
        );
        match &keyring {
            Ok(true) => said.push_str(" The passphrase is out of the OS keyring."),
            Ok(false) => {}
            Err(e) => said.push_str(&format!(" The OS keyring may still hold the passphrase: {e}")),
        }
        said
    });
    Ok(())
}
