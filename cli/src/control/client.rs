//! Asking the node that runs on a home, over its socket. Every function gives `Ok(None)` when
//! no node runs there (no socket, or a stale one left by a crash): the caller then opens the
//! home itself.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::rpc::Request;
use crate::rpc::event::Event;

/// Calls the node running on `home`, and gives the answer's result.
pub fn call(home: &Path, request: &Request) -> Result<Option<Value>> {
    call_with_progress(home, request, &mut |_, _| {})
}

/// [`call`], handing each `progress` notification (done, total) to `on_progress` until the
/// answer comes. (The request asks for them: `import` with `progress`.)
#[cfg(unix)]
pub fn call_with_progress(
    home: &Path,
    request: &Request,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Value>> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;

    use anyhow::Context;

    use crate::rpc::jsonrpc::{Call, Incoming, line, read_incoming};

    let Ok(mut stream) = UnixStream::connect(super::socket_path(home)) else { return Ok(None) };
    // A node that accepts but never answers must not hang the command; reading or writing a
    // bundle takes as long as the bundle is large.
    let timeout = (!request.may_take_long()).then_some(std::time::Duration::from_secs(60));
    stream.set_read_timeout(timeout).context("setting a timeout")?;
    writeln!(stream, "{}", line(&Call::new(1, request))).context("writing to the running node")?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut text = String::new();
        reader.read_line(&mut text).context("reading the running node's answer")?;
        if text.is_empty() {
            anyhow::bail!("the running node stopped before it answered; run the command again");
        }
        match read_incoming(&text).context("the running node answered with something not JSON")? {
            Incoming::Answer(answer) => return Ok(Some(answer?)),
            Incoming::Progress(p) => on_progress(p.done, p.total),
            Incoming::Event(_) | Incoming::Unknown => {}
        }
    }
}

#[cfg(not(unix))]
pub fn call_with_progress(_: &Path, _: &Request, _: &mut dyn FnMut(usize, usize)) -> Result<Option<Value>> {
    Ok(None)
}

/// The node's events from now on, from a connection that subscribed, as they come; `None`
/// when no node runs on `home`. They end when the node stops.
#[cfg(unix)]
pub fn subscribe(home: &Path) -> Result<Option<impl Iterator<Item = Event> + Send + 'static>> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use anyhow::Context;

    use crate::rpc::Method;
    use crate::rpc::jsonrpc::{Call, Incoming, line, read_incoming};
    use crate::rpc::request::Subscribe;

    let Ok(mut stream) = UnixStream::connect(super::socket_path(home)) else { return Ok(None) };
    writeln!(stream, "{}", line(&Call::new(1, &Subscribe {}.into())))?;
    // A node that accepts but never answers must not hang the caller at start.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    reader.get_ref().set_read_timeout(None)?;
    match read_incoming(&answer).context("the daemon answered with something not JSON")? {
        Incoming::Answer(Ok(result))
            if serde_json::from_value::<<Subscribe as Method>::Answer>(result.clone()).is_ok_and(|s| s.subscribed) => {}
        other => anyhow::bail!("the daemon refused the subscription: {other:?}"),
    }
    // The reader is handed on whole, so nothing it buffered is lost.
    let events = reader.lines().map_while(Result::ok).filter_map(|text| match read_incoming(&text) {
        Ok(Incoming::Event(event)) => Some(event),
        _ => None,
    });
    Ok(Some(events))
}

#[cfg(not(unix))]
pub fn subscribe(_: &Path) -> Result<Option<std::iter::Empty<Event>>> {
    Ok(None)
}
