//! `weft settings`: the account's settings, which travel with the account (they live in its
//! encrypted database), not with the machine.

use std::path::Path;

use anyhow::Result;

use crate::backend;
use crate::output::Output;
use crate::rpc::request::{ChangeSettings, ShowSettings};

#[derive(clap::Args)]
pub struct Args {
    /// Tell others when you read their messages (delivery is always acknowledged)
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    read_receipts: Option<String>,
}

pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    let result = match args.read_receipts {
        Some(v) => backend::call(home_dir, ChangeSettings { read_receipts: Some(v == "on") })?,
        None => backend::call(home_dir, ShowSettings {})?,
    };
    out.print(&result, || {
        let on = result.read_receipts;
        format!("read receipts: {}", if on { "on (others see when you read their messages)" } else { "off" })
    });
    Ok(())
}
