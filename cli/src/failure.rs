//! What a Weft error means to whoever ran `weft`: the exit code a script can test, and what to
//! do next where the error itself does not say. The daemon sends both with its errors.

use weft_core::Error;

/// What to do next about an error, where the error itself does not say.
pub fn hint_of(err: &Error) -> Option<String> {
    let hint = match err {
        Error::WrongPassphrase(_) => {
            "check WEFT_PASSPHRASE, or type it again; a passphrase kept in the OS keyring is replaced with \
             `weft passphrase remember`"
        }
        Error::NotFound { what: "contact", .. } => "`weft contact list` shows your contacts' names",
        Error::NotFound { what: "group", .. } => "`weft group list` shows your groups",
        Error::NotFound { what: "member", .. } => "`weft group members GROUP` shows who is in it",
        Error::NotFound { what: "contact or group" | "conversation with", .. } => {
            "`weft contact list` and `weft group list` show the names you can use"
        }
        Error::NoRadio(_) => "run with --no-ble to use the network alone",
        Error::Network(_) => "check the --listen, --bootstrap and --relay addresses (or the config's [network])",
        _ => return None,
    };
    Some(hint.to_owned())
}

/// The exit code that tells scripts what went wrong (see `weft --help`).
pub fn exit_code_of(err: &Error) -> u8 {
    match err {
        Error::WrongPassphrase(_) => 3,
        Error::NoAccount(_) => 4,
        Error::NotFound { .. } => 5,
        Error::HomeBusy(_) => 6,
        _ => 1,
    }
}
