//! Key hygiene over time: the device's prekeys are replaced weekly and deleted after their
//! grace, and every conversation gets a daily update (a fresh chain handed through fresh
//! channel keys, see `Group::update`), so that a copy of this device's state stops reading once
//! the members have processed it. The app can ask for one at once (after a phone was out of
//! its owner's hands, say).

use super::Account;
use super::conversations::put_sent;
use crate::error::{Error, Result};
use crate::group::GroupId;
use crate::store::Rows;

/// Conversations get an update when their last one is this old, checked as the day turns.
pub const UPDATE_EVERY_MS: u64 = 24 * 60 * 60 * 1000;
/// Slack on the schedule, so that an update made late yesterday does not skip today's.
const UPDATE_SLACK_MS: u64 = 2 * 60 * 60 * 1000;

impl Account {
    /// Replaces the prekey when it is due and deletes retired ones past their grace.
    pub(super) fn rotate_prekeys(&mut self) -> Result<bool> {
        let now = self.now();
        let changed = self.me.prekeys.rotate_if_due(&self.me.keys, now, self.entropy.as_mut())?;
        if changed {
            let encoded = self.me.prekeys.encode();
            self.store.write(|tx| tx.set_prekeys(&encoded))?;
        }
        Ok(changed)
    }

    /// Deletes the secrets of epochs past their grace in every conversation, storing the
    /// groups that changed; the topic index then stops following them.
    pub(super) fn forget_old_epochs(&mut self) -> Result<usize> {
        let now = self.now();
        let mut changed: Vec<GroupId> = Vec::new();
        for group in self.groups.values_mut() {
            if group.forget_old_epochs(now) {
                changed.push(group.id);
            }
        }
        if changed.is_empty() {
            return Ok(0);
        }
        let groups = &mut self.groups;
        self.store.write(|tx| {
            for id in &changed {
                if let Some(group) = groups.get_mut(id) {
                    tx.save_group(group)?;
                }
            }
            Ok(())
        })?;
        self.rebuild_topics();
        Ok(changed.len())
    }

    /// Sends an update in one conversation, or in every one when `conversation` is `None`.
    /// Returns in how many conversations one was sent.
    /// The prekey is replaced first: a copy of this device holds the old one, and the update
    /// carries the new one to everyone.
    pub fn update_keys(&mut self, conversation: Option<&str>) -> Result<usize> {
        let targets: Vec<GroupId> = match conversation {
            Some(name) => vec![self.resolve(name)?.id],
            None => self.groups.keys().copied().collect(),
        };
        let now = self.now();
        self.me.prekeys.rotate(&self.me.keys, now, self.entropy.as_mut())?;
        let encoded = self.me.prekeys.encode();
        self.store.write(|tx| tx.set_prekeys(&encoded))?;
        let mut sent = 0;
        for gid in targets {
            if self.update_one(&gid)? {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Sends the updates the schedule asks for.
    pub(super) fn send_due_updates(&mut self) -> Result<usize> {
        let now = self.now();
        let due: Vec<GroupId> = self
            .groups
            .values()
            .filter(|g| g.last_update_ms().is_none_or(|t| now.saturating_sub(t) + UPDATE_SLACK_MS >= UPDATE_EVERY_MS))
            .map(|g| g.id)
            .collect();
        // One conversation that fails (its state, or a hostile member's keys) must not stop
        // the others' updates.
        let mut sent = 0;
        for gid in due {
            match self.update_one(&gid) {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "a scheduled key update failed"),
            }
        }
        Ok(sent)
    }

    /// An update in one group, stored and queued in one transaction; `false` when there is
    /// nobody to send it to (we left, or no other device is known yet).
    fn update_one(&mut self, gid: &GroupId) -> Result<bool> {
        let me = self.account_public();
        let Some(group) = self.groups.get(gid) else {
            return Err(Error::NotFound { what: "group", name: data_encoding::HEXLOWER.encode(gid) });
        };
        if !group.is_member(&me)
            || group.current_epoch().is_none()
            || !group.has_other_devices(&self.me.id())
            || self.has_left(gid)?
        {
            return Ok(false);
        }
        let now = self.now();
        let mut group = self.groups.remove(gid).expect("checked above");
        let result = group.update(&self.me, now, self.entropy.as_mut()).and_then(|sealed| {
            self.store.write(|tx| {
                put_sent(tx, &group.id, &sealed, now)?;
                tx.save_group(&mut group)
            })
        });
        self.settle([group], result)?;
        Ok(true)
    }
}
