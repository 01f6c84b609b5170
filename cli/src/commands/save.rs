//! `weft save`: writes the file a message carries, once it is whole and checked. A file not
//! here yet is asked for, and fetched: by the node running on the home if there is one, else
//! by going online as `weft sync` does, until it is whole (a bar shows how far) or time runs
//! out. What came stays stored, so a later `weft save` goes on from there.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::run::LocalNode;
use crate::backend::{self, Route};
use crate::control::client;
use crate::output::{Output, human_size};
use crate::progress::Bar;
use crate::rpc::answer::Attachment;
use crate::rpc::request::{SaveAttachment, ShowStatus};

#[derive(clap::Args)]
pub struct SaveArgs {
    /// The message carrying the file (its id, or the start of it, as `weft log --ids` shows it)
    message: String,
    /// Where to write it (a folder: under the file's own name)
    #[arg(long, value_name = "PATH", default_value = ".")]
    out: PathBuf,
    /// Give up fetching after this many seconds
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    timeout: u64,
    #[command(flatten)]
    pub net: super::run::Args,
}

pub fn run(home_dir: &Path, args: SaveArgs, out: &Output) -> Result<()> {
    let path = std::path::absolute(&args.out)?;
    let path = path.to_str().context("the path to save to is not UTF-8")?.to_owned();
    let params = SaveAttachment { message: args.message.clone(), path };
    let timeout = Duration::from_secs(args.timeout);
    let running = || -> Result<bool> { Ok(client::call(home_dir, &ShowStatus {}.into())?.is_some()) };
    if running()? {
        return fetch(&Route::Socket(home_dir), params, timeout, out);
    }
    // Whole already (ours, or fetched before): no network needed.
    let answer = backend::call(home_dir, params.clone())?;
    if answer.saved_to.is_some() {
        return saved(&answer, out);
    }
    let passphrase = crate::passphrase::for_home(home_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (local, _events) = match runtime.block_on(LocalNode::start(home_dir, passphrase, &args.net)) {
        Ok(started) => started,
        Err(e) if crate::backend::is_home_busy(&e) && running()? => {
            return fetch(&Route::Socket(home_dir), params, timeout, out);
        }
        Err(e) => return Err(e),
    };
    let result = fetch(&Route::Local { runtime: &runtime, api: &local.api }, params, timeout, out);
    local.stop();
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// Asks the node for the file until it is written, drawing the bar.
fn fetch(node: &Route, params: SaveAttachment, timeout: Duration, out: &Output) -> Result<()> {
    let started = Instant::now();
    let bar = Bar::new("fetching", "pieces", out.json);
    loop {
        let answer = node.call(params.clone())?;
        if answer.saved_to.is_some() {
            drop(bar);
            return saved(&answer, out);
        }
        bar.set(answer.have as usize, answer.total as usize);
        if started.elapsed() >= timeout {
            drop(bar);
            bail!(
                "{} is not whole after {} s ({} of {} pieces here, kept): run `weft save` again, or keep \
                 `weft daemon` running",
                answer.name,
                timeout.as_secs(),
                answer.have,
                answer.total
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn saved(answer: &Attachment, out: &Output) -> Result<()> {
    out.print(answer, || {
        format!(
            "Saved {} ({}, checked) to {}.",
            answer.name,
            human_size(answer.size),
            answer.saved_to.as_deref().unwrap_or_default()
        )
    });
    Ok(())
}
