use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Result, bail};

use crate::backend;
use crate::output::Output;
use crate::rpc::request::{
    AcceptContact, AddContact, BlockContact, DeleteContact, ListContacts, RejectContact, ShowSafetyNumber,
    UnblockContact, VerifyContact,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Add someone from their contact link
    Add {
        /// Their link, as printed by `weft id`
        link: String,
        /// The name you will call them by [default: the name on their link]
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts with their status and whether you verified them
    List,
    /// Accept a contact request (from a bundle, or over the network)
    Accept {
        /// The name on the request, as `weft contact list` shows it
        name: String,
    },
    /// Compare safety numbers with a contact and mark them verified
    Verify {
        /// The contact's name
        name: String,
        /// Mark as verified without asking (after comparing the numbers)
        #[arg(long)]
        yes: bool,
    },
    /// Decline a contact request: they are forgotten, and the same request is not shown again
    Reject {
        /// The name on the request, or their account id
        name: String,
    },
    /// Block someone: their requests and messages are not shown, and nothing of yours goes to them
    Block {
        /// A contact's name or account id, or any account id (a group member's)
        name: String,
    },
    /// Unblock someone blocked before
    Unblock {
        /// A contact's name or account id
        name: String,
    },
    /// Forget a contact and your 1:1 conversation with them (groups you share stay)
    Delete {
        /// The contact's name or account id
        name: String,
    },
}

pub fn run(home_dir: &Path, cmd: Command, out: &Output) -> Result<()> {
    match cmd {
        Command::Add { link, name } => {
            let c = backend::call(home_dir, AddContact { link, name })?;
            out.print(&c, || {
                format!(
                    "Added {}. Fingerprint: {}\nYour request goes out with your next `weft export` (or over the network).",
                    c.name, c.fingerprint
                )
            });
        }
        Command::List => {
            let contacts = backend::call(home_dir, ListContacts {})?;
            out.print(&contacts, || {
                if contacts.is_empty() {
                    return "No contacts yet. Add one with `weft contact add LINK`.".into();
                }
                contacts
                    .iter()
                    .map(|c| {
                        format!(
                            "{:<20} {:<9} {} {}{}",
                            c.name,
                            c.status,
                            if c.verified { "verified  " } else { "unverified" },
                            c.fingerprint,
                            if c.blocked { "  (blocked)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Accept { name } => {
            let accepted = backend::call(home_dir, AcceptContact { name })?;
            out.print(&accepted, || {
                let name = &accepted.contact.name;
                let mut s = match accepted.was_request {
                    true => format!("Accepted {name}."),
                    false => format!("{name} was already a contact."),
                };
                for g in &accepted.joined_groups {
                    s.push_str(&format!("\nJoined the group {g:?} they had invited you to."));
                }
                s
            });
        }
        Command::Reject { name } => {
            let forgotten = backend::call(home_dir, RejectContact { name })?;
            out.print(&forgotten, || format!("Rejected {}'s request.", forgotten.contact));
        }
        Command::Delete { name } => {
            let forgotten = backend::call(home_dir, DeleteContact { name })?;
            out.print(&forgotten, || {
                format!("Deleted {} and your conversation with them; groups you share stay.", forgotten.contact)
            });
        }
        Command::Block { name } => {
            let blocking = backend::call(home_dir, BlockContact { name })?;
            out.print(&blocking, || {
                format!("Blocked {}: nothing of theirs is shown, nothing of yours goes to them.", blocking.contact)
            });
        }
        Command::Unblock { name } => {
            let blocking = backend::call(home_dir, UnblockContact { name })?;
            out.print(&blocking, || format!("Unblocked {}.", blocking.contact));
        }
        Command::Verify { name, yes } => {
            let before = backend::call(home_dir, ShowSafetyNumber { name: name.clone() })?;
            let number = before.safety_number.clone();
            let already = before.verified;
            let confirmed = if yes {
                true
            } else if out.json || !std::io::stdin().is_terminal() {
                bail!("pass --yes to mark {name} verified after comparing the safety number:\n{number}");
            } else {
                let half = number.len() / 2;
                println!("Safety number with {name}:\n\n  {}\n  {}\n", number[..half].trim(), number[half..].trim());
                print!("Does {name} see the same number? [y/N] ");
                std::io::stdout().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                matches!(line.trim(), "y" | "Y" | "yes")
            };
            let result =
                if confirmed { backend::call(home_dir, VerifyContact { name: name.clone() })? } else { before };
            out.print(&result, || match (confirmed, already) {
                (true, _) => format!("{name} is now verified."),
                (false, true) => format!("{name} stays verified from before."),
                (false, false) => format!("{name} was not marked verified."),
            });
        }
    }
    Ok(())
}
