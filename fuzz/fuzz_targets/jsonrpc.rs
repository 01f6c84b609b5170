//! A line from a JSON-RPC client of the daemon: its envelope checked, then its params read as
//! the typed request of its method; nothing panics, and a refusal is an error answer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_cli::rpc::jsonrpc::parse_envelope;
use weft_cli::rpc::request::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = parse_envelope(data) {
        let _ = Request::read(&envelope.method, envelope.params);
    }
});
