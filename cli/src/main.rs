//! `weft`: the Weft messenger for the command line.

mod backend;
mod chat;
mod commands;
mod control;
mod home;
mod output;
mod passphrase;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use weft_cli::{config, failure, rpc};

use clap::{CommandFactory, Parser, Subcommand};

/// Weft: an offline-first, end-to-end encrypted messenger.
///
/// Start with `weft init --name NAME`, share the link `weft id` prints, and add others with
/// `weft contact add LINK`. Then `weft chat` to talk; `weft daemon` (or `weft sync` now and
/// then) to stay in touch over the network; `weft export` / `weft import` to carry messages by
/// hand when there is no network at all. `weft demo` shows the whole story in one go.
#[derive(Parser)]
#[command(name = "weft", version, propagate_version = true, after_help = AFTER_HELP)]
struct Cli {
    /// Account home directory [default: the platform's data dir, e.g. ~/.local/share/weft]
    #[arg(long, global = true, env = "WEFT_HOME", value_name = "DIR", help_heading = "Global options")]
    home: Option<PathBuf>,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,

    /// The config file [default: the platform's config dir, e.g. ~/.config/weft/config.toml]
    #[arg(long, global = true, env = config::CONFIG_ENV, value_name = "FILE", help_heading = "Global options")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = "\
The passphrase that encrypts the account's database is read from WEFT_PASSPHRASE, else from the
OS keyring if you ran `weft passphrase remember`, else asked for.
Settings for this machine (home, network) can live in a config file: see `weft config`.

Exit codes: 0 success, 1 error, 2 bad usage, 3 wrong passphrase, 4 no account in the home,
5 not found (contact, group, member), 6 the home is in use by another weft process.";

#[derive(Subcommand)]
enum Command {
    /// Create a new account in the home directory
    Init(commands::init::Args),
    /// Show your contact link, fingerprint and QR code
    Id(commands::id::Args),
    /// Add, list, accept and verify contacts
    #[command(subcommand)]
    Contact(commands::contact::Command),
    /// Create groups, invite and remove members
    #[command(subcommand)]
    Group(commands::group::Command),
    /// This account on several devices: link a new one, list them, revoke a lost one
    #[command(subcommand)]
    Device(commands::device::Command),
    /// Send a message to a contact or group (durable when this returns)
    Send(commands::message::SendArgs),
    /// The public channel of everyone within a few Bluetooth hops: show, post, new session, mute
    ///
    /// Readable without being a contact; what you post is signed by a key of this session,
    /// never your account's. Needs the node that drives the radio (`weft daemon`, `weft run`).
    Nearby {
        #[command(subcommand)]
        command: Option<commands::nearby::Command>,
    },
    /// Save the file a message carries (fetching it first if it is not here yet)
    Save(commands::save::SaveArgs),
    /// React to a message with an emoji (one reaction each; a new one replaces yours)
    React(commands::message::ReactArgs),
    /// Edit a message of yours: every member shows the new text, marked edited
    Edit(commands::message::EditArgs),
    /// Delete a message of yours for everyone: its text leaves every member's device
    Delete(commands::message::DeleteArgs),
    /// Chat in a full-screen terminal: conversations, history, live messages
    ///
    /// Keys: ↑↓ (or Tab) pick a conversation, Enter sends, PgUp/PgDn/End read back through the
    /// history, Ctrl-A accepts a contact request, Esc (or Ctrl-C) quits. With a daemon running
    /// on the home the chat is its client; without one it runs the node itself (network
    /// included, and other weft commands go through it while it is open).
    Chat(commands::chat::ChatArgs),
    /// Show a conversation's history, with the state of your messages (sent, delivered, read)
    Log(commands::message::LogArgs),
    /// Mark a conversation read (and tell its members, unless read receipts are off)
    Read(commands::message::ReadArgs),
    /// Send again a message of yours that expired (you were out of its conversation when it
    /// would have gone; a message that merely waited past its day goes again by itself)
    Resend(commands::message::ResendArgs),
    /// Go online, catch up with peers and relays, say what came, and exit
    ///
    /// For a laptop that does not keep `weft daemon` running. A bar shows envelopes fetched
    /// against those still wanted; it is done when a peer is connected and nothing has been
    /// open or wanted for a few seconds. With a node already running on the home, it follows
    /// that node's catch-up instead. Exits 1 when no peer was reached, or when time ran out.
    Sync(commands::sync::SyncArgs),
    /// Write everything others may lack into a bundle file, for carrying by hand
    Export(commands::bundle::ExportArgs),
    /// Read a bundle file that someone else exported
    Import(commands::bundle::ImportArgs),
    /// Run the node in the foreground, printing what happens, until Ctrl-C
    Run(commands::run::Args),
    /// Run the node in the background, serving other commands and scripts over JSON-RPC
    ///
    /// Serves every account command as JSON-RPC 2.0 on <home>/weft.sock (owner-only), with
    /// events by subscription: see docs/JSONRPC.md. Other weft commands use it while it runs.
    /// Logs go to stderr with tracing (info by default; RUST_LOG=debug for more). SIGTERM and
    /// Ctrl-C stop it cleanly.
    Daemon(commands::run::Args),
    /// Show the running node's peers, relays, catch-up and outbox
    Status,
    /// Run a relay: a headless node that holds ciphertext for others and relays connections
    Relay(commands::relay::Args),
    /// Show or change the account's settings (read receipts)
    Settings(commands::settings::Args),
    /// Send fresh keys now (they also go out daily), after this device was out of your hands
    ///
    /// Whoever copied the device before reads nothing written after the other members process
    /// them: each member starts keys that only this device's new ones open.
    UpdateKeys(commands::keys::UpdateArgs),
    /// Show or set how long a conversation's messages stay on this device
    ///
    /// Older messages are deleted (their text, receipts and unsent drafts) within ten minutes
    /// of passing it, and the database's log is folded back in so their text leaves the file.
    Retention(commands::keys::RetentionArgs),
    /// Show or set a conversation's disappearing messages, for every member
    ///
    /// Any member may set it, and every member is shown who did. Texts written from then on
    /// are deleted from each member's devices that long after they arrived there (their text
    /// leaves the database file); what was written before keeps the timer it was written under.
    Disappear(commands::keys::DisappearArgs),
    /// Erase this account at once: keys, database and the keyring's passphrase (`--now`)
    ///
    /// Asks no passphrase. The keys go first, so that within milliseconds nothing left opens;
    /// a node running on this home erases it too, and exits. There is no way back.
    Panic(commands::panic::Args),
    /// Keep the passphrase in the OS keyring so weft stops asking for it, or take it out
    #[command(subcommand)]
    Passphrase(commands::passphrase::Command),
    /// Show the machine's config file, or write one to start from
    #[command(subcommand)]
    Config(commands::config::Command),
    /// Print shell completions
    ///
    /// e.g. `weft completions bash > ~/.local/share/bash-completion/completions/weft`, or
    /// `weft completions zsh > "${fpath[1]}/_weft"`.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Run a scripted story in temporary homes and narrate it
    Demo(commands::demo::Args),
    /// Simulate the Bluetooth mesh: seeded scenarios, our routing against the baselines
    Sim(commands::sim::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, as `RUST_LOG` asks (e.g. `RUST_LOG=weft_core=debug`); warnings by default.
    // (Not in the chat: log lines would be drawn over its screen.)
    if !matches!(cli.command, Command::Chat(_)) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_level(&cli.command)));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    let out = output::Output { json: cli.json };
    let location = config::Location::resolve(cli.config);
    // `weft config` must work to mend a broken config; every other command reads it first.
    let settings = match &cli.command {
        Command::Config(_) | Command::Completions { .. } => config::Config::default(),
        _ => match config::Config::load(&location) {
            Ok(settings) => settings,
            Err(err) => {
                out.error(&err);
                return ExitCode::from(2);
            }
        },
    };
    let home = home::resolve(cli.home.or(settings.home));
    let result = match cli.command {
        Command::Init(args) => commands::init::run(&home, args, &settings.network, &out),
        Command::Id(args) => commands::id::run(&home, args, &out),
        Command::Contact(cmd) => commands::contact::run(&home, cmd, &out),
        Command::Group(cmd) => commands::group::run(&home, cmd, &out),
        Command::Device(cmd) => commands::device::run(&home, cmd, &out),
        Command::Send(args) => commands::message::send(&home, args, &out),
        Command::Panic(args) => commands::panic::panic(&home, args, &out),
        Command::Disappear(args) => commands::keys::disappear(&home, args, &out),
        Command::React(args) => commands::message::react(&home, args, &out),
        Command::Save(mut args) => {
            args.net = args.net.over(&settings.network);
            commands::save::run(&home, args, &out)
        }
        Command::Edit(args) => commands::message::edit(&home, args, &out),
        Command::Delete(args) => commands::message::delete(&home, args, &out),
        Command::Log(args) => commands::message::log(&home, args, &out),
        Command::Read(args) => commands::message::read(&home, args, &out),
        Command::Resend(args) => commands::message::resend(&home, args, &out),
        Command::Passphrase(cmd) => commands::passphrase::run(&home, cmd, &out),
        Command::Settings(args) => commands::settings::run(&home, args, &out),
        Command::UpdateKeys(args) => commands::keys::update(&home, args, &out),
        Command::Retention(args) => commands::keys::retention(&home, args, &out),
        Command::Nearby { command } => commands::nearby::run(&home, command, &out),
        Command::Export(args) => commands::bundle::export(&home, args, &out),
        Command::Import(args) => commands::bundle::import(&home, args, &out),
        Command::Demo(args) => commands::demo::run(args, &out),
        Command::Run(args) => commands::run::run(&home, args.over(&settings.network), &out),
        Command::Sync(mut args) => {
            args.net = args.net.over(&settings.network);
            commands::sync::run(&home, args, &out)
        }
        Command::Daemon(args) => commands::run::daemon(&home, args.over(&settings.network), &out),
        Command::Status => commands::status::run(&home, &out),
        Command::Relay(args) => commands::relay::run(&home, args.over(&settings.relay), &out),
        Command::Sim(args) => commands::sim::run(args, &out),
        Command::Chat(mut args) => {
            args.net = args.net.over(&settings.network);
            commands::chat::run(&home, args)
        }
        Command::Config(cmd) => commands::config::run(&location, cmd, &out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "weft", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            out.error(&err);
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Services say what they do; one-shot commands speak only of what went wrong.
fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Daemon(_) | Command::Relay(_) => "info",
        _ => "warn",
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(remote) = err.downcast_ref::<rpc::jsonrpc::RemoteError>() {
        return remote.exit_code;
    }
    err.downcast_ref::<weft_core::Error>().map_or(1, failure::exit_code_of)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks the whole command tree (unique names, valid defaults) only when asked.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
