use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use weft_core::account::ConversationKind;

use crate::home;
use crate::output::{Output, hex};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a group with you as its admin
    Create { name: String },
    /// List groups
    List,
    /// Add a contact to a group (they join when they import your next bundle)
    Invite { group: String, contact: String },
    /// Remove a member: the group moves to new keys they cannot read
    Remove { group: String, member: String },
    /// List a group's members
    Members { group: String },
}

#[derive(Serialize)]
struct Group {
    name: String,
    id: String,
    members: usize,
    active: bool,
}

#[derive(Serialize)]
struct Member {
    name: String,
    account: String,
    admin: bool,
    me: bool,
}

pub fn run(home_dir: &Path, cmd: Command, out: &Output) -> Result<()> {
    let mut account = home::open(home_dir)?;
    match cmd {
        Command::Create { name } => {
            let g = account.create_group(&name)?;
            let g = Group { name: g.name, id: hex(&g.id), members: g.members, active: true };
            out.print(&g, || {
                format!("Created the group {:?}. Invite people with `weft group invite {} CONTACT`.", g.name, g.name)
            });
        }
        Command::List => {
            let groups: Vec<Group> = account
                .conversations()?
                .into_iter()
                .filter(|c| c.kind == ConversationKind::Group)
                .map(|c| Group { name: c.name, id: hex(&c.id), members: c.members, active: c.active })
                .collect();
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
                            &g.id[..12],
                            g.members,
                            if g.active { "" } else { "  (you were removed)" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Invite { group, contact } => {
            account.invite(&group, &contact)?;
            let id = hex(&account.resolve(&group)?.id);
            let who = account.contacts()?.into_iter().find(|c| c.name == contact).map(|c| hex(&c.account));
            out.print(
                &serde_json::json!({ "group": group, "group_id": id, "invited": contact, "account": who }),
                || format!("Invited {contact} to {group}. The invitation goes out with your next export."),
            );
        }
        Command::Remove { group, member } => {
            let who = account.members(&group)?.into_iter().find(|m| m.name == member).map(|m| hex(&m.account));
            account.remove_member(&group, &member)?;
            let id = hex(&account.resolve(&group)?.id);
            out.print(
                &serde_json::json!({ "group": group, "group_id": id, "removed": member, "account": who }),
                || format!("Removed {member} from {group}. Messages from now on use keys {member} does not have."),
            );
        }
        Command::Members { group } => {
            let members: Vec<Member> = account
                .members(&group)?
                .into_iter()
                .map(|m| Member { name: m.name, account: hex(&m.account), admin: m.admin, me: m.is_me })
                .collect();
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
