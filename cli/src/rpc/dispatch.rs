//! The method table: every [`Request`] answered over a [`Node`].
//!
//! The daemon (and `weft run`, and `weft chat`) serve it on the control socket; a command with
//! no daemon to talk to opens the home itself and calls the same table in-process. So each
//! command has exactly one implementation, and the JSON a script gets is the same either way.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use weft_core::account::{ConversationKind, MessageAction};
use weft_core::mesh::driver::MeshHandle;
use weft_core::net::NetHandle;
use weft_core::node::Node;

use super::answer::{self, hex};
use super::error::ApiError;
use super::request::*;

/// Where a long call tells how far it got.
pub type Progress = tokio::sync::watch::Sender<weft_core::account::ImportProgress>;

/// What a method's handler gives: the answer its [`Method`] names.
type Reply<M> = Result<<M as Method>::Answer, ApiError>;

/// A node and whatever transports it runs (none when a command opened the home itself).
pub struct Api {
    pub node: Arc<Node>,
    /// Whether this process runs the node's network (then `net` is set once it started).
    runs_network: bool,
    pub net: OnceLock<Arc<NetHandle>>,
    pub mesh: OnceLock<Arc<MeshHandle>>,
    /// Why there is no Bluetooth mesh, when it was tried and failed.
    pub mesh_off: OnceLock<String>,
}

impl Api {
    /// The methods over a home this process opened for one command: no network.
    pub fn offline(node: Arc<Node>) -> Api {
        Api { node, runs_network: false, net: OnceLock::new(), mesh: OnceLock::new(), mesh_off: OnceLock::new() }
    }

    /// The methods of a node whose network is starting: `net` (and `mesh`) are set once up.
    pub fn networked(node: Arc<Node>) -> Api {
        Api { node, runs_network: true, net: OnceLock::new(), mesh: OnceLock::new(), mesh_off: OnceLock::new() }
    }

    /// Answers one call, as its JSON result. A long one (`import`) publishes how far it got on
    /// `progress`. (`subscribe` and `unsubscribe` are the socket's: they need the connection.)
    pub async fn answer(&self, request: Request, progress: Option<Progress>) -> Result<Value, ApiError> {
        match request {
            Request::ShowIdentity(p) => reply(p, |_| self.identity()).await,
            Request::ReplaceLink(p) => reply(p, |_| self.replace_link()).await,
            Request::AddContact(p) => reply(p, |p| self.add_contact(p)).await,
            Request::ListContacts(p) => reply(p, |_| self.contacts()).await,
            Request::AcceptContact(p) => reply(p, |p| self.accept(p)).await,
            Request::ShowSafetyNumber(p) => reply(p, |p| self.verification(p.name, false)).await,
            Request::VerifyContact(p) => reply(p, |p| self.verification(p.name, true)).await,
            Request::RejectContact(p) => reply(p, |p| self.forget(p.name, true)).await,
            Request::DeleteContact(p) => reply(p, |p| self.forget(p.name, false)).await,
            Request::BlockContact(p) => reply(p, |p| self.blocking(p.name, true)).await,
            Request::UnblockContact(p) => reply(p, |p| self.blocking(p.name, false)).await,
            Request::ListConversations(p) => reply(p, |_| self.conversations()).await,
            Request::CreateGroup(p) => reply(p, |p| self.create_group(p)).await,
            Request::ListGroups(p) => reply(p, |_| self.groups()).await,
            Request::InviteToGroup(p) => reply(p, |p| self.invite(p)).await,
            Request::RemoveFromGroup(p) => reply(p, |p| self.remove(p)).await,
            Request::ListMembers(p) => reply(p, |p| self.members(p)).await,
            Request::LeaveGroup(p) => reply(p, |p| self.leave(p)).await,
            Request::RenameGroup(p) => reply(p, |p| self.rename(p)).await,
            Request::SendMessage(p) => reply(p, |p| self.send(p)).await,
            Request::React(p) => reply(p, |p| self.react(p)).await,
            Request::SendFile(p) => reply(p, |p| self.send_file(p)).await,
            Request::ShowNearby(p) => {
                reply(p, |_| async { Ok(self.node.nearby_recent()?.iter().map(answer::Nearby::from).collect()) }).await
            }
            Request::PostNearby(p) => {
                reply(p, |p| async move { Ok(answer::Nearby::from(&self.node.nearby_post(&p.text)?)) }).await
            }
            Request::NewNearbySession(p) => {
                reply(
                    p,
                    |p| async move { Ok(answer::NearbySession { sender: hex(&self.node.nearby_session(&p.nick)?) }) },
                )
                .await
            }
            Request::MuteNearby(p) => reply(p, |p| self.mute_nearby(p)).await,
            Request::ShowAttachment(p) => reply(p, |p| self.attachment(p)).await,
            Request::SaveAttachment(p) => reply(p, |p| self.save_attachment(p)).await,
            Request::EditMessage(p) => reply(p, |p| self.edit(p)).await,
            Request::DeleteMessage(p) => reply(p, |p| self.delete(p)).await,
            Request::ReadLog(p) => reply(p, |p| self.log(p)).await,
            Request::MarkRead(p) => reply(p, |p| self.mark_read(p)).await,
            Request::Resend(p) => reply(p, |p| self.resend(p)).await,
            Request::ShowSettings(p) => reply(p, |_| self.settings()).await,
            Request::ChangeSettings(p) => reply(p, |p| self.change_settings(p)).await,
            Request::UpdateKeys(p) => reply(p, |p| self.update_keys(p)).await,
            Request::Wipe(p) => reply(p, |_| self.wipe()).await,
            Request::ShowDisappearing(p) => reply(p, |p| self.disappearing(p)).await,
            Request::SetDisappearing(p) => reply(p, |p| self.set_disappearing(p)).await,
            Request::ShowRetention(p) => reply(p, |p| self.retention(p)).await,
            Request::SetRetention(p) => reply(p, |p| self.set_retention(p)).await,
            Request::Export(p) => reply(p, |p| self.export(p)).await,
            Request::Import(p) => reply(p, |p| self.import(p, progress)).await,
            Request::LinkDevice(p) => reply(p, |_| self.link_device()).await,
            Request::ShowLinkRequest(p) => reply(p, |p| self.link_request(p)).await,
            Request::AcceptDevice(p) => reply(p, |p| self.accept_device(p)).await,
            Request::ArrivedLinkRequests(p) => reply(p, |_| self.arrived_link_requests()).await,
            Request::GrantArrived(p) => reply(p, |p| self.grant_arrived(p)).await,
            Request::CancelLink(p) => reply(p, |_| self.cancel_link()).await,
            Request::ListDevices(p) => reply(p, |_| self.devices()).await,
            Request::RevokeDevice(p) => reply(p, |p| self.revoke_device(p)).await,
            Request::ShowStatus(p) => reply(p, |_| self.status()).await,
            Request::Subscribe(_) => Err(ApiError::NeedsConnection(Subscribe::NAME)),
            Request::Unsubscribe(_) => Err(ApiError::NeedsConnection(Unsubscribe::NAME)),
        }
    }

    async fn identity(&self) -> Reply<ShowIdentity> {
        let identity = self.node.call(|a| {
            let card = a.card();
            Ok(answer::Identity {
                name: a.name().map(str::to_owned),
                link: card.to_link(),
                fingerprint: a.fingerprint(),
                account: hex(&a.account_public()),
                qr: card.to_qr_text(),
            })
        });
        Ok(identity.await?)
    }

    async fn replace_link(&self) -> Reply<ReplaceLink> {
        self.node.replace_link().await?;
        self.identity().await
    }

    async fn add_contact(&self, p: AddContact) -> Reply<AddContact> {
        Ok(answer::Contact::from(&self.node.add_contact(p.link, p.name).await?))
    }

    async fn contacts(&self) -> Reply<ListContacts> {
        Ok(self.node.contacts().await?.iter().map(answer::Contact::from).collect())
    }

    async fn accept(&self, p: AcceptContact) -> Reply<AcceptContact> {
        let was_request = self
            .node
            .contacts()
            .await?
            .iter()
            .any(|c| c.name == p.name && c.status == weft_core::store::ContactStatus::Incoming);
        let (contact, joined_groups) = self.node.accept_contact_and_join(p.name).await?;
        Ok(answer::Accepted { contact: answer::Contact::from(&contact), joined_groups, was_request })
    }

    /// A contact's safety number, marking them verified first when `mark`.
    async fn verification(&self, name: String, mark: bool) -> Result<answer::Verification, ApiError> {
        let verification = self.node.call(move |a| {
            let safety_number = a.safety_number(&name)?;
            let verified = match mark {
                true => a.mark_verified(&name)?.verified,
                false => a.contacts()?.iter().any(|c| c.name == name && c.verified),
            };
            Ok(answer::Verification { contact: name, safety_number, verified })
        });
        Ok(verification.await?)
    }

    /// The account id a contact's name or id stands for (an id of someone who is no contact
    /// stands for itself).
    async fn account_of(&self, name: &str) -> Result<String, ApiError> {
        let contacts = self.node.contacts().await?;
        let hexed = |c: &weft_core::account::ContactInfo| hex(&c.account);
        if let Some(c) = contacts.iter().find(|c| hexed(c) == name).or_else(|| contacts.iter().find(|c| c.name == name))
        {
            return Ok(hexed(c));
        }
        match name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => Ok(name.to_ascii_lowercase()),
            false => Err(weft_core::Error::NotFound { what: "contact", name: name.to_owned() }.into()),
        }
    }

    /// Rejects a waiting request (`only_request`) or deletes a contact.
    async fn forget(&self, name: String, only_request: bool) -> Result<answer::Forgotten, ApiError> {
        let account = self.account_of(&name).await?;
        match only_request {
            true => self.node.reject_contact(name.clone()).await?,
            false => self.node.delete_contact(name.clone()).await?,
        }
        Ok(answer::Forgotten { contact: name, account })
    }

    async fn blocking(&self, name: String, blocked: bool) -> Result<answer::Blocking, ApiError> {
        let account = self.account_of(&name).await?;
        match blocked {
            true => self.node.block(account.clone()).await?,
            false => self.node.unblock(account.clone()).await?,
        }
        Ok(answer::Blocking { contact: name, account, blocked })
    }

    async fn leave(&self, p: LeaveGroup) -> Reply<LeaveGroup> {
        let group = p.group.clone();
        let group_id = self.node.call(move |a| Ok(hex(&a.resolve(&group)?.id))).await?;
        self.node.leave_group(group_id.clone()).await?;
        Ok(answer::Left { group: p.group, group_id })
    }

    async fn rename(&self, p: RenameGroup) -> Reply<RenameGroup> {
        let group = p.group.clone();
        let group_id = self.node.call(move |a| Ok(hex(&a.resolve(&group)?.id))).await?;
        self.node.rename_group(group_id.clone(), p.name.clone()).await?;
        Ok(answer::Renamed { group_id, name: p.name })
    }

    async fn conversations(&self) -> Reply<ListConversations> {
        let conversations = self.node.call(|a| {
            let contacts = a.contacts()?;
            a.conversations()?
                .into_iter()
                .map(|c| {
                    let contact = contacts.iter().find(|k| k.conversation == c.id);
                    Ok(answer::Conversation {
                        unread: a.unread_count(&c.id)?,
                        verified: contact.map(|k| k.verified),
                        group: c.kind == ConversationKind::Group,
                        id: hex(&c.id),
                        name: c.name,
                        members: c.members,
                        active: c.active,
                    })
                })
                .collect::<weft_core::Result<Vec<_>>>()
        });
        Ok(conversations.await?)
    }

    async fn create_group(&self, p: CreateGroup) -> Reply<CreateGroup> {
        Ok(answer::Group::from(&self.node.create_group(p.name).await?))
    }

    async fn groups(&self) -> Reply<ListGroups> {
        let conversations = self.node.conversations().await?;
        Ok(conversations.iter().filter(|c| c.kind == ConversationKind::Group).map(answer::Group::from).collect())
    }

    async fn invite(&self, p: InviteToGroup) -> Reply<InviteToGroup> {
        self.node.invite(p.group.clone(), p.contact.clone()).await?;
        let (group, contact) = (p.group.clone(), p.contact.clone());
        let (group_id, account) = self
            .node
            .call(move |a| {
                let id = hex(&a.resolve(&group)?.id);
                let who = a.contacts()?.into_iter().find(|c| c.name == contact).map(|c| hex(&c.account));
                Ok((id, who))
            })
            .await?;
        Ok(answer::Invited { group: p.group, group_id, invited: p.contact, account })
    }

    async fn remove(&self, p: RemoveFromGroup) -> Reply<RemoveFromGroup> {
        let members = self.node.members(p.group.clone()).await?;
        let account = members.into_iter().find(|m| m.name == p.member).map(|m| hex(&m.account));
        self.node.remove_member(p.group.clone(), p.member.clone()).await?;
        let group = p.group.clone();
        let group_id = self.node.call(move |a| Ok(hex(&a.resolve(&group)?.id))).await?;
        Ok(answer::Removed { group: p.group, group_id, removed: p.member, account })
    }

    async fn members(&self, p: ListMembers) -> Reply<ListMembers> {
        Ok(self.node.members(p.group).await?.iter().map(answer::Member::from).collect())
    }

    async fn send(&self, p: SendMessage) -> Reply<SendMessage> {
        let sent = match p.reply_to {
            None => self.node.send(p.conversation, p.text).await?,
            Some(to) => {
                let to = message_id(&to)?;
                self.node.act(p.conversation, MessageAction::Reply { to, text: p.text }).await?
            }
        };
        Ok(answer::Message::from(&sent))
    }

    /// The panic wipe. A running node (daemon, `weft run`, the chat) answers, then its process
    /// ends at once: its memory holds the keys.
    async fn wipe(&self) -> Reply<Wipe> {
        // The exit is set first: an account thread busy with a long import must not keep the
        // keys in memory while the wipe waits its turn (`weft panic` erased the files already).
        if self.runs_network {
            std::thread::spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(300));
                std::process::exit(0);
            });
        }
        Ok(answer::Wiped::from(&self.node.wipe().await?))
    }

    async fn disappearing(&self, p: ShowDisappearing) -> Reply<ShowDisappearing> {
        let keep_ms = self.node.disappearing(p.conversation.clone()).await?;
        Ok(answer::Disappearing { conversation: p.conversation, keep_ms })
    }

    async fn set_disappearing(&self, p: SetDisappearing) -> Reply<SetDisappearing> {
        Ok(answer::Message::from(&self.node.set_disappearing(p.conversation, p.keep_ms).await?))
    }

    async fn mute_nearby(&self, p: MuteNearby) -> Reply<MuteNearby> {
        let sender = weft_core::nearby::sender_from_hex(&p.sender).ok_or_else(|| {
            ApiError::InvalidParams(format!(
                "{:?} is not a nearby sender (64 hex digits, as `nearby` gives it)",
                p.sender
            ))
        })?;
        if p.block {
            self.node.nearby_block(sender)?;
        } else {
            self.node.nearby_mute(sender)?;
        }
        Ok(answer::NearbyMuted { sender: p.sender, blocked: p.block })
    }

    async fn send_file(&self, p: SendFile) -> Reply<SendFile> {
        let path = Path::new(&p.path);
        let io = |e: std::io::Error| {
            ApiError::Weft(weft_core::Error::Io { context: format!("reading {}", path.display()), source: e })
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > weft_core::attachment::MAX_ATTACHMENT_LEN {
            return Err(ApiError::InvalidParams(format!(
                "{} is {} MiB; a file may be at most {} MiB",
                path.display(),
                len >> 20,
                weft_core::attachment::MAX_ATTACHMENT_LEN >> 20
            )));
        }
        let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned).ok_or_else(|| {
            ApiError::InvalidParams(format!("{} has no file name Weft can send (UTF-8, not a folder)", path.display()))
        })?;
        let bytes = std::fs::read(path).map_err(io)?;
        let mime = p.mime.unwrap_or_else(|| crate::mime::guess(&name).to_owned());
        let sent = self.node.send_file(p.conversation, bytes, name, mime, p.caption.unwrap_or_default()).await?;
        Ok(answer::Message::from(&sent))
    }

    async fn attachment(&self, p: ShowAttachment) -> Reply<ShowAttachment> {
        let id = self.node.attachment_message(p.message).await?;
        let info = self.node.fetch_attachment(id).await?;
        Ok(answer::Attachment::new(Some(id.to_hex()), &info))
    }

    async fn save_attachment(&self, p: SaveAttachment) -> Reply<SaveAttachment> {
        let id = self.node.attachment_message(p.message).await?;
        let Some((info, bytes)) = self.node.attachment_bytes(id).await? else {
            let info = self.node.fetch_attachment(id).await?;
            return Ok(answer::Attachment::new(Some(id.to_hex()), &info));
        };
        let given = Path::new(&p.path);
        let path = if given.is_dir() {
            // A folder: the file goes in it under the name its sender gave (checked: no folders,
            // no hidden extension), never over a file already there, and never as a dotfile
            // (`.bashrc` from a stranger's message would replace the user's own).
            save_new_in(given, &info.name, &bytes)?
        } else {
            // A path the user named: theirs to replace.
            write_atomically(given, &bytes)?;
            given.to_path_buf()
        };
        let mut answer = answer::Attachment::new(Some(id.to_hex()), &info);
        answer.saved_to = Some(path.display().to_string());
        Ok(answer)
    }

    async fn react(&self, p: React) -> Reply<React> {
        let to = message_id(&p.message)?;
        Ok(answer::Message::from(&self.node.act(p.conversation, MessageAction::React { to, emoji: p.emoji }).await?))
    }

    async fn edit(&self, p: EditMessage) -> Reply<EditMessage> {
        let of = message_id(&p.message)?;
        Ok(answer::Message::from(&self.node.act(p.conversation, MessageAction::Edit { of, text: p.text }).await?))
    }

    async fn delete(&self, p: DeleteMessage) -> Reply<DeleteMessage> {
        let of = message_id(&p.message)?;
        Ok(answer::Message::from(&self.node.act(p.conversation, MessageAction::Delete { of }).await?))
    }

    async fn log(&self, p: ReadLog) -> Reply<ReadLog> {
        let limit = p.limit.unwrap_or(ReadLog::DEFAULT_LIMIT).min(ReadLog::MAX_LIMIT) as usize;
        let messages = self.node.history_before(p.conversation, p.before, limit).await?;
        Ok(messages.iter().map(answer::Message::from).collect())
    }

    async fn mark_read(&self, p: MarkRead) -> Reply<MarkRead> {
        let marked = self.node.mark_read(p.conversation.clone()).await?;
        Ok(answer::Marked { conversation: p.conversation, marked })
    }

    async fn resend(&self, p: Resend) -> Reply<Resend> {
        Ok(answer::Message::from(&self.node.resend(p.message).await?))
    }

    async fn settings(&self) -> Reply<ShowSettings> {
        Ok(answer::Settings { read_receipts: self.node.read_receipts().await? })
    }

    async fn change_settings(&self, p: ChangeSettings) -> Reply<ChangeSettings> {
        if let Some(on) = p.read_receipts {
            self.node.set_read_receipts(on).await?;
        }
        self.settings().await
    }

    async fn update_keys(&self, p: UpdateKeys) -> Reply<UpdateKeys> {
        Ok(answer::KeysUpdated { updated: self.node.update_keys(p.conversation).await? })
    }

    async fn retention(&self, p: ShowRetention) -> Reply<ShowRetention> {
        let keep_ms = self.node.retention(p.conversation.clone()).await?;
        Ok(answer::Retention { conversation: p.conversation, keep_ms, deleted: None })
    }

    async fn set_retention(&self, p: SetRetention) -> Reply<SetRetention> {
        let deleted = self.node.set_retention(p.conversation.clone(), p.keep_ms).await?;
        Ok(answer::Retention { conversation: p.conversation, keep_ms: p.keep_ms, deleted: Some(deleted) })
    }

    async fn export(&self, p: Export) -> Reply<Export> {
        let bytes = self.node.export_bundle().await?;
        write_atomically(p.path.as_path(), &bytes)?;
        Ok(answer::Exported { file: p.path.as_path().display().to_string(), bytes: bytes.len() })
    }

    async fn import(&self, p: Import, progress: Option<Progress>) -> Reply<Import> {
        let bytes = read_bundle(p.path.as_path())?;
        Ok(answer::Imported::from(&self.node.import_bundle_watched(bytes, progress).await?))
    }

    async fn link_device(&self) -> Reply<LinkDevice> {
        let link = self.node.link_offer().await?;
        let qr = weft_core::devices::linking::Ticket::from_link(&link)?.to_qr_text();
        Ok(answer::DeviceLink { link, qr })
    }

    async fn link_request(&self, p: ShowLinkRequest) -> Reply<ShowLinkRequest> {
        let request = read_bundle(p.request.as_path())?;
        let (applicant, code) = self.node.open_link_request(request).await?;
        Ok(answer::LinkRequest {
            name: applicant.name,
            device: hex(&applicant.device),
            code: code.to_string(),
            granted: false,
        })
    }

    async fn accept_device(&self, p: AcceptDevice) -> Reply<AcceptDevice> {
        let request = read_bundle(p.request.as_path())?;
        let (applicant, grant) = self.node.grant_link(request, p.code, history_choice(p.history)).await?;
        write_atomically(p.grant.as_path(), &grant)?;
        Ok(answer::LinkRequest {
            name: applicant.name,
            device: hex(&applicant.device),
            code: weft_core::devices::linking::ShortCode(p.code).to_string(),
            granted: true,
        })
    }

    async fn arrived_link_requests(&self) -> Reply<ArrivedLinkRequests> {
        let arrived = self.node.arrived_link_requests().await?;
        Ok(arrived
            .into_iter()
            .map(|a| answer::LinkRequest {
                name: a.applicant.name,
                device: hex(&a.applicant.device),
                code: a.code.to_string(),
                granted: false,
            })
            .collect())
    }

    async fn grant_arrived(&self, p: GrantArrived) -> Reply<GrantArrived> {
        let applicant = self.node.grant_arrived(p.code, history_choice(p.history)).await?;
        Ok(answer::LinkRequest {
            name: applicant.name,
            device: hex(&applicant.device),
            code: weft_core::devices::linking::ShortCode(p.code).to_string(),
            granted: true,
        })
    }

    async fn cancel_link(&self) -> Reply<CancelLink> {
        self.node.cancel_link().await?;
        Ok(answer::LinkCancelled { cancelled: true })
    }

    async fn devices(&self) -> Reply<ListDevices> {
        Ok(self.node.devices().await?.iter().map(answer::Device::from).collect())
    }

    async fn revoke_device(&self, p: RevokeDevice) -> Reply<RevokeDevice> {
        Ok(answer::Device::from(&self.node.revoke_device(p.device).await?))
    }

    async fn status(&self) -> Reply<ShowStatus> {
        let outbox = self.node.call(|a| a.outbox_len()).await?;
        let Some(net) = self.net.get() else {
            return Ok(answer::Status {
                running: self.runs_network,
                starting: self.runs_network,
                network: None,
                outbox,
            });
        };
        let mesh = self.mesh.get().map(|m| {
            let stats = m.stats();
            answer::Mesh {
                radio: m.radio().to_owned(),
                roles: answer::MeshRole::list(m.radio_report()),
                links: stats.links,
                carried_envelopes: stats.carried_envelopes,
                carried_bytes: stats.carried_bytes,
            }
        });
        let mut network = answer::Network::new(&net.status().await?, mesh);
        network.mesh_off = self.mesh_off.get().cloned();
        Ok(answer::Status { running: true, starting: false, network: Some(network), outbox })
    }
}

/// Runs a method's handler on its params and serialises the answer. The handler must give the
/// answer that the params' [`Method`] names, so a method cannot answer in another's shape.
async fn reply<M: Method, F: Future<Output = Reply<M>>>(
    params: M,
    handler: impl FnOnce(M) -> F,
) -> Result<Value, ApiError> {
    let answer = handler(params).await?;
    Ok(serde_json::to_value(answer).expect("plain data serialises"))
}

/// A message id as `log` gives it (64 hex digits).
fn message_id(hex: &str) -> Result<weft_core::envelope::EnvelopeId, ApiError> {
    weft_core::envelope::EnvelopeId::from_hex(hex).ok_or_else(|| {
        ApiError::InvalidParams(format!("{hex:?} is not a message id (64 hex digits, as `log` gives them)"))
    })
}

/// Writes a received file into `folder` under `name` (a leading dot made an underscore), or
/// `name (1)`, `name (2)`… when that is taken: never over an existing file. Where it went.
fn save_new_in(folder: &Path, name: &str, bytes: &[u8]) -> Result<std::path::PathBuf, ApiError> {
    let name = match name.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => name.to_owned(),
    };
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem.to_owned(), format!(".{extension}")),
        _ => (name.clone(), String::new()),
    };
    let tmp = partial_beside(&folder.join(&name));
    let io = |e: std::io::Error, what: &str, path: &Path| {
        ApiError::Weft(weft_core::Error::Io { context: format!("{what} {}", path.display()), source: e })
    };
    std::fs::write(&tmp, bytes).map_err(|e| io(e, "writing", &tmp))?;
    for n in 0..1000 {
        let candidate = match n {
            0 => folder.join(&name),
            n => folder.join(format!("{stem} ({n}){extension}")),
        };
        // A hard link is made only where nothing is: no race with a file made meanwhile.
        match std::fs::hard_link(&tmp, &candidate) {
            Ok(()) => {
                let _ = std::fs::remove_file(&tmp);
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // A file system without hard links (FAT, some network shares): made where nothing
            // is, by `create_new`, and written.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied) => {
                let made = std::fs::OpenOptions::new().write(true).create_new(true).open(&candidate);
                match made {
                    Ok(mut file) => {
                        let _ = std::fs::remove_file(&tmp);
                        std::io::Write::write_all(&mut file, bytes)
                            .and_then(|()| file.sync_all())
                            .map_err(|e| io(e, "saving to", &candidate))?;
                        return Ok(candidate);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(io(e, "saving to", &candidate));
                    }
                }
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(e, "saving to", &candidate));
            }
        }
    }
    let _ = std::fs::remove_file(&tmp);
    Err(ApiError::InvalidParams(format!(
        "{} holds a thousand files named {name}: give another folder",
        folder.display()
    )))
}

/// A temporary name beside `path`, its own to each call (two saves at once never share one).
fn partial_beside(path: &Path) -> std::path::PathBuf {
    use weft_core::crypto::Entropy;
    let mut unique = [0u8; 8];
    let _ = weft_core::crypto::OsEntropy.fill(&mut unique);
    let unique: String = unique.iter().map(|b| format!("{b:02x}")).collect();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{unique}.partial"))
}

/// Writes beside the target and renames, so a crash never leaves half a bundle under its name.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ApiError> {
    let tmp = partial_beside(path);
    let io = |e: std::io::Error, what: &str| {
        ApiError::Weft(weft_core::Error::Io { context: format!("{what} {}", path.display()), source: e })
    };
    std::fs::write(&tmp, bytes).map_err(|e| io(e, "writing"))?;
    std::fs::rename(&tmp, path).map_err(|e| io(e, "moving the file to"))
}

fn read_bundle(path: &Path) -> Result<Vec<u8>, ApiError> {
    let io = |e: std::io::Error| {
        ApiError::Weft(weft_core::Error::Io { context: format!("reading {}", path.display()), source: e })
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > weft_core::bundle::MAX_BUNDLE_LEN as u64 {
        return Err(ApiError::InvalidParams(format!(
            "{} is {len} bytes; bundles are at most {} bytes",
            path.display(),
            weft_core::bundle::MAX_BUNDLE_LEN
        )));
    }
    std::fs::read(path).map_err(io)
}

/// Whether a grant carries the history, as the params say.
fn history_choice(history: bool) -> weft_core::account::HistoryChoice {
    match history {
        true => weft_core::account::HistoryChoice::Include,
        false => weft_core::account::HistoryChoice::Leave,
    }
}
