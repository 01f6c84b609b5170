//! Where a command's work is done: by the daemon (or `weft run`) serving this home, when one
//! is running, or else by this process on the home opened here. Either way through the same
//! method table ([`crate::api`]), so the answer is the same JSON.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;
use weft_core::node::Node;

use crate::api::{Api, ApiError};

/// Who answered a call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The node running on this home (the daemon, `weft run` or `weft chat`).
    ByRunningNode,
    /// This process, on the home it opened.
    Here,
}

/// Calls `method` with `params` on this home.
pub fn call(home_dir: &Path, method: &str, params: Value) -> Result<Value> {
    Ok(call_reporting(home_dir, method, params)?.0)
}

/// Calls `method`, and says who answered.
pub fn call_reporting(home_dir: &Path, method: &str, params: Value) -> Result<(Value, Answered)> {
    call_inner(home_dir, method, params, None)
}

/// Calls a long method (`import`), handing `on_progress` (done, total) as it goes.
pub fn call_with_progress(
    home_dir: &Path,
    method: &str,
    params: Value,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Value> {
    Ok(call_inner(home_dir, method, params, Some(on_progress))?.0)
}

fn call_inner(
    home_dir: &Path,
    method: &str,
    params: Value,
    mut on_progress: Option<&mut dyn FnMut(usize, usize)>,
) -> Result<(Value, Answered)> {
    if let Some(result) = call_running(home_dir, method, &params, on_progress.as_deref_mut())? {
        return Ok((result, Answered::ByRunningNode));
    }
    match call_here(home_dir, method, &params, on_progress.as_deref_mut()) {
        // A node started on the home meanwhile, and holds it: it answers now (nothing was done
        // here, so asking it is safe).
        Err(e) if is_home_busy(&e) => match call_running(home_dir, method, &params, on_progress)? {
            Some(result) => Ok((result, Answered::ByRunningNode)),
            None => Err(e),
        },
        other => other,
    }
}

/// Asks the node running on the home, if one does.
fn call_running(
    home_dir: &Path,
    method: &str,
    params: &Value,
    on_progress: Option<&mut (dyn FnMut(usize, usize) + '_)>,
) -> Result<Option<Value>> {
    match on_progress {
        Some(report) => crate::control::call_with_progress(home_dir, method, params.clone(), report),
        None => crate::control::call(home_dir, method, params.clone()),
    }
}

pub fn is_home_busy(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<weft_core::Error>(), Some(weft_core::Error::HomeBusy(_)))
}

/// Opens the home in this process for one call.
fn call_here(
    home_dir: &Path,
    method: &str,
    params: &Value,
    on_progress: Option<&mut (dyn FnMut(usize, usize) + '_)>,
) -> Result<(Value, Answered)> {
    let passphrase = crate::passphrase::for_home(home_dir)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let node = Arc::new(Node::open(home_dir.to_path_buf(), passphrase).await?);
        let api = Api::offline(node);
        let result = match on_progress {
            None => api.call(method, params).await,
            Some(report) => {
                let (tx, mut rx) = tokio::sync::watch::channel(Default::default());
                let watch = async {
                    // Ends when the call lets go of the sender.
                    while rx.changed().await.is_ok() {
                        let p: weft_core::account::ImportProgress = *rx.borrow_and_update();
                        report(p.done, p.total);
                    }
                };
                let (result, ()) = tokio::join!(api.call_watched(method, params, Some(tx)), watch);
                result
            }
        };
        // Closing checkpoints the database and releases the home at once.
        if let Ok(node) = Arc::try_unwrap(api.node) {
            node.close().await;
        }
        let result = result.map_err(|e| match e {
            ApiError::Weft(e) => anyhow::Error::from(e),
            other => anyhow::Error::msg(other.to_string()),
        })?;
        Ok((result, Answered::Here))
    })
}
