use std::path::Path;

use anyhow::Result;

use crate::backend;
use crate::output::Output;
use crate::rpc::request::{
    CreateGroup, InviteToGroup, LeaveGroup, ListGroups, ListMembers, RemoveFromGroup, RenameGroup,
};

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
    /// Leave a group: an admin removes you when your request reaches them; you send nothing more there
    Leave {
        /// The group's name or id
        group: String,
    },
    /// Rename a group for every member (admins only)
    Rename {
        /// The group's name or id
        group: String,
        /// Its new name
        name: String,
    },
}

pub fn run(home_dir: &Path, cmd: Command, out: &Output) -> Result<()> {
    match cmd {
        Command::Create { name } => {
            let g = backend::call(home_dir, CreateGroup { name })?;
            out.print(&g, || {
                format!("Created the group {:?}. Invite people with `weft group invite {} CONTACT`.", g.name, g.name)
            });
        }
        Command::List => {
            let groups = backend::call(home_dir, ListGroups {})?;
            out.print(&groups, || {
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
                            if g.active { "" } else { "  (you left or were removed)" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Invite { group, contact } => {
            let invited = backend::call(home_dir, InviteToGroup { group: group.clone(), contact: contact.clone() })?;
            out.print(&invited, || {
                format!(
                    "Invited {contact} to {group}. The invitation goes out over the network or with your next export."
                )
            });
        }
        Command::Remove { group, member } => {
            let removed = backend::call(home_dir, RemoveFromGroup { group: group.clone(), member: member.clone() })?;
            out.print(&removed, || {
                format!("Removed {member} from {group}. Messages from now on use keys {member} does not have.")
            });
        }
        Command::Leave { group } => {
            let left = backend::call(home_dir, LeaveGroup { group: group.clone() })?;
            out.print(&left, || {
                format!("You asked to leave {group}; an admin removes you when your request reaches them.")
            });
        }
        Command::Rename { group, name } => {
            let renamed = backend::call(home_dir, RenameGroup { group: group.clone(), name })?;
            out.print(&renamed, || format!("Renamed {group} to {:?} for every member.", renamed.name))
        }
        Command::Members { group } => {
            let members = backend::call(home_dir, ListMembers { group })?;
            out.print(&members, || {
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
