use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use serde_json::json;

use crate::backend;
use crate::output::{Output, parse};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a group with you as its admin
    Create {
        /// The group's name (members may call it something else)
        name: String,
    },
    /// List groups
    List,
    /// Add a contact to a group (they join when your next bundle or the network reaches them)
    Invite {
        /// The group's name
        group: String,
        /// The contact to add
        contact: String,
    },
    /// Remove a member: the group moves to new keys they cannot read
    Remove {
        /// The group's name
        group: String,
        /// The member to remove
        member: String,
    },
    /// List a group's members
    Members {
        /// The group's name
        group: String,
    },
}

#[derive(Deserialize)]
struct Group {
    name: String,
    id: String,
    members: usize,
    active: bool,
}

#[derive(Deserialize)]
struct Member {
    name: String,
    admin: bool,
    me: bool,
}

pub fn run(home_dir: &Path, cmd: Command, out: &Output) -> Result<()> {
    match cmd {
        Command::Create { name } => {
            let result = backend::call(home_dir, "group.create", json!({ "name": name }))?;
            let g: Group = parse(&result)?;
            out.print(&result, || {
                format!("Created the group {:?}. Invite people with `weft group invite {} CONTACT`.", g.name, g.name)
            });
        }
        Command::List => {
            let result = backend::call(home_dir, "group.list", json!({}))?;
            let groups: Vec<Group> = parse(&result)?;
            out.print(&result, || {
                if groups.is_empty() {
                    return "No groups yet. Create one with `weft group create NAME`.".into();
                }
                groups
                    .iter()
                    .map(|g| {
                        format!(
                            "{:<24} {} {:>3} members{}",
                            g.name,
                            &g.id[..12.min(g.id.len())],
                            g.members,
                            if g.active { "" } else { "  (you were removed)" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Invite { group, contact } => {
            let result = backend::call(home_dir, "group.invite", json!({ "group": group, "contact": contact }))?;
            out.print(&result, || {
                format!(
                    "Invited {contact} to {group}. The invitation goes out over the network or with your next export."
                )
            });
        }
        Command::Remove { group, member } => {
            let result = backend::call(home_dir, "group.remove", json!({ "group": group, "member": member }))?;
            out.print(&result, || {
                format!("Removed {member} from {group}. Messages from now on use keys {member} does not have.")
            });
        }
        Command::Members { group } => {
            let result = backend::call(home_dir, "group.members", json!({ "group": group }))?;
            let members: Vec<Member> = parse(&result)?;
            out.print(&result, || {
                members
                    .iter()
                    .map(|m| {
                        format!(
                            "{}{}{}",
                            m.name,
                            if m.admin { " (admin)" } else { "" },
                            if m.me { " (you)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}
