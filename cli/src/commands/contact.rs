use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::home;
use weft_core::store::ContactStatus;

use crate::output::{Contact, Output};

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
    /// Accept a contact request that arrived in a bundle
    Accept { name: String },
    /// Compare safety numbers with a contact and mark them verified
    Verify {
        name: String,
        /// Mark as verified without asking (after comparing the numbers)
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Serialize)]
struct Verification {
    contact: String,
    safety_number: String,
    verified: bool,
}

pub fn run(home_dir: &Path, cmd: Command, out: &Output) -> Result<()> {
    let mut account = home::open(home_dir)?;
    match cmd {
        Command::Add { link, name } => {
            let c = account.add_contact(&link, name.as_deref())?;
            out.print(&Contact::from(&c), || {
                format!(
                    "Added {}. Fingerprint: {}\nYour request goes out with your next `weft export` (or over the network).",
                    c.name, c.fingerprint
                )
            });
        }
        Command::List => {
            let contacts: Vec<Contact> = account.contacts()?.iter().map(Contact::from).collect();
            out.print(&contacts, || {
                if contacts.is_empty() {
                    return "No contacts yet. Add one with `weft contact add LINK`.".into();
                }
                contacts
                    .iter()
                    .map(|c| {
                        format!(
                            "{:<20} {:<9} {} {}",
                            c.name,
                            c.status,
                            if c.verified { "verified  " } else { "unverified" },
                            c.fingerprint
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Accept { name } => {
            let was_incoming =
                account.contacts()?.iter().any(|c| c.name == name && c.status == ContactStatus::Incoming);
            let (c, joined) = account.accept_contact(&name)?;
            let json = serde_json::json!({ "contact": Contact::from(&c), "joined_groups": joined });
            out.print(&json, || {
                let mut s = if was_incoming {
                    format!("Accepted {}.", c.name)
                } else {
                    format!("{} was already a contact.", c.name)
                };
                for g in &joined {
                    s.push_str(&format!("\nJoined the group {g:?} they had invited you to."));
                }
                s
            });
        }
        Command::Verify { name, yes } => {
            let number = account.safety_number(&name)?;
            let confirmed = if yes {
                true
            } else if out.json || !std::io::stdin().is_terminal() {
                bail!("pass --yes to mark {name} verified after comparing the safety number:\n{number}");
            } else {
                println!("Safety number with {name}:\n\n  {}\n  {}\n", &number[..35], &number[36..]);
                print!("Does {name} see the same number? [y/N] ");
                std::io::stdout().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                matches!(line.trim(), "y" | "Y" | "yes")
            };
            let already = account.contacts()?.iter().any(|c| c.name == name && c.verified);
            if confirmed {
                account.mark_verified(&name)?;
            }
            let v = Verification { contact: name.clone(), safety_number: number, verified: confirmed || already };
            out.print(&v, || match (confirmed, already) {
                (true, _) => format!("{name} is now verified."),
                (false, true) => format!("{name} stays verified from before."),
                (false, false) => format!("{name} was not marked verified."),
            });
        }
    }
    Ok(())
}
