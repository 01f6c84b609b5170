//! Where a command's work is done: by the daemon (or `weft run`) serving this home, when one
//! is running, or else by this process on the home opened here. Either way through the same
//! method table ([`crate::rpc::Api`]), so the answer is the same JSON.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;
use weft_core::node::Node;

use crate::control::client;
use crate::rpc::request::Import;
use crate::rpc::{Api, ApiError, Method, Request};

/// Who answered a call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The node running on this home (the daemon, `weft run` or `weft chat`).
    ByRunningNode,
    /// This process, on the home it opened.
    Here,
}

/// Calls a method on this home.
pub fn call<M: Method>(home_dir: &Path, params: M) -> Result<M::Answer> {
    Ok(call_reporting(home_dir, params)?.0)
}

/// Calls a method, and says who answered.
pub fn call_reporting<M: Method>(home_dir: &Path, params: M) -> Result<(M::Answer, Answered)> {
    let (result, answered) = call_inner(home_dir, params.into(), None)?;
    Ok((decode::<M>(result)?, answered))
}

/// Imports a bundle, handing `on_progress` (done, total) as it goes.
pub fn import(
    home_dir: &Path,
    params: Import,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<<Import as Method>::Answer> {
    let request = Import { progress: true, ..params };
    decode::<Import>(call_inner(home_dir, request.into(), Some(on_progress))?.0)
}

/// Reads a method's result into its answer.
pub fn decode<M: Method>(result: Value) -> Result<M::Answer> {
    serde_json::from_value(result).with_context(|| format!("an answer to {} of unexpected shape", M::NAME))
}

fn call_inner(
    home_dir: &Path,
    request: Request,
    mut on_progress: Option<&mut dyn FnMut(usize, usize)>,
) -> Result<(Value, Answered)> {
    if let Some(result) = call_running(home_dir, &request, on_progress.as_deref_mut())? {
        return Ok((result, Answered::ByRunningNode));
    }
    match call_here(home_dir, request.clone(), on_progress.as_deref_mut()) {
        // A node started on the home meanwhile, and holds it: it answers now (nothing was done
        // here, so asking it is safe).
        Err(e) if is_home_busy(&e) => match call_running(home_dir, &request, on_progress)? {
            Some(result) => Ok((result, Answered::ByRunningNode)),
            None => Err(e),
        },
        other => other,
    }
}

/// Asks the node running on the home, if one does.
fn call_running(
    home_dir: &Path,
    request: &Request,
    on_progress: Option<&mut (dyn FnMut(usize, usize) + '_)>,
) -> Result<Option<Value>> {
    match on_progress {
        Some(report) => client::call_with_progress(home_dir, request, report),
        None => client::call(home_dir, request),
    }
}

pub fn is_home_busy(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<weft_core::Error>(), Some(weft_core::Error::HomeBusy(_)))
}

/// A failed call in-process as the command's error: a Weft error stays one (for its exit
/// code and hint).
fn in_process(e: ApiError) -> anyhow::Error {
    match e {
        ApiError::Weft(e) => anyhow::Error::from(e),
        other => anyhow::Error::msg(other.to_string()),
    }
}

/// Opens the home in this process for one call.
fn call_here(
    home_dir: &Path,
    request: Request,
    on_progress: Option<&mut (dyn FnMut(usize, usize) + '_)>,
) -> Result<(Value, Answered)> {
    let passphrase = crate::passphrase::for_home(home_dir)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let node = Arc::new(Node::open(home_dir.to_path_buf(), passphrase).await?);
        let api = Api::offline(node);
        let result = match on_progress {
            None => api.answer(request, None).await,
            Some(report) => {
                let (tx, mut rx) = tokio::sync::watch::channel(Default::default());
                let watch = async {
                    // Ends when the call lets go of the sender.
                    while rx.changed().await.is_ok() {
                        let p: weft_core::account::ImportProgress = *rx.borrow_and_update();
                        report(p.done, p.total);
                    }
                };
                let (result, ()) = tokio::join!(api.answer(request, Some(tx)), watch);
                result
            }
        };
        // Closing checkpoints the database and releases the home at once.
        if let Ok(node) = Arc::try_unwrap(api.node) {
            node.close().await;
        }
        Ok((result.map_err(in_process)?, Answered::Here))
    })
}

/// A node a long-running command talks to for a while (`weft chat`, `weft sync`): the one
/// running on the home, through its socket, or one this process runs.
pub enum Route<'a> {
    Socket(&'a Path),
    Local { runtime: &'a tokio::runtime::Runtime, api: &'a Api },
}

impl Route<'_> {
    pub fn call<M: Method>(&self, params: M) -> Result<M::Answer> {
        let result = match self {
            Route::Socket(home) => {
                client::call(home, &params.into())?.context("the node on this home stopped; run the command again")?
            }
            Route::Local { runtime, api } => runtime.block_on(api.answer(params.into(), None)).map_err(in_process)?,
        };
        decode::<M>(result)
    }
}
