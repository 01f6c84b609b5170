//! Schema migrations, in one ordered list (as Delta Chat keeps them). `PRAGMA user_version`
//! records how many have run; a database from a newer build is refused, never rewritten.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{Error, Result};

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT,
        account_secret BLOB NOT NULL,
        device_sign_secret BLOB NOT NULL,
        device_dh_secret BLOB NOT NULL,
        device_cert BLOB NOT NULL,
        request_secret BLOB NOT NULL,
        rendezvous_seed BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE contacts (
        account BLOB PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        card BLOB NOT NULL,
        status TEXT NOT NULL,
        verified INTEGER NOT NULL DEFAULT 0,
        group_id BLOB NOT NULL,
        request BLOB,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE groups (
        id BLOB PRIMARY KEY,
        state BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE peer_chains (
        group_id BLOB NOT NULL REFERENCES groups(id),
        device BLOB NOT NULL,
        generation INTEGER NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (group_id, device, generation)
    );
    CREATE TABLE envelopes (
        id BLOB PRIMARY KEY,
        group_id BLOB,
        bytes BLOB NOT NULL,
        status TEXT NOT NULL,
        received_ms INTEGER NOT NULL
    );
    CREATE INDEX envelopes_waiting ON envelopes(status, group_id);
    CREATE TABLE messages (
        envelope_id BLOB PRIMARY KEY,
        group_id BLOB NOT NULL,
        sender BLOB NOT NULL,
        lamport INTEGER NOT NULL,
        sent_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        outgoing INTEGER NOT NULL
    );
    CREATE INDEX messages_in_order ON messages(group_id, lamport, envelope_id);
    CREATE TABLE seen_requests (
        hash BLOB PRIMARY KEY
    );
    ",
    // 2: invitations from contacts not yet accepted, joined on acceptance.
    "
    CREATE TABLE held_invites (
        envelope_id BLOB PRIMARY KEY,
        from_account BLOB NOT NULL,
        from_cert BLOB NOT NULL,
        inner BLOB NOT NULL
    );
    ",
    // 3: envelopes indexed by topic, for reconciliation with peers.
    "
    ALTER TABLE envelopes ADD COLUMN topic BLOB;
    UPDATE envelopes SET topic = substr(bytes, 2, 16);
    CREATE INDEX envelopes_by_topic ON envelopes(topic);
    ",
    // 4: the outbox (our envelopes no peer has taken yet) and the addresses of peers we reached,
    // so a restart reconnects without help. Waiting envelopes get a partial index: every
    // envelope stored no longer touches an index that only the few waiting ones need.
    "
    CREATE TABLE outbox (
        envelope_id BLOB PRIMARY KEY
    ) WITHOUT ROWID;
    DROP INDEX envelopes_waiting;
    CREATE INDEX envelopes_waiting ON envelopes(group_id) WHERE status = 'waiting';
    INSERT INTO outbox SELECT id FROM envelopes WHERE status = 'sent';
    CREATE TABLE peer_addrs (
        addr TEXT PRIMARY KEY,
        last_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 5: receipts. What each member acknowledged of our messages (1 delivered, 2 read); how far
    // we read each conversation; account settings (whether we send read receipts).
    "
    CREATE TABLE receipts (
        envelope_id BLOB NOT NULL,
        member BLOB NOT NULL,
        state INTEGER NOT NULL,
        PRIMARY KEY (envelope_id, member)
    ) WITHOUT ROWID;
    CREATE TABLE read_marks (
        group_id BLOB PRIMARY KEY,
        lamport INTEGER NOT NULL,
        envelope_id BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 6: how each received message came (libp2p, mesh, bundle), for history to show.
    "
    ALTER TABLE messages ADD COLUMN via TEXT;
    ",
    // 7: time away. Per conversation, the last period (UTC day) through which this device holds
    // what relays and members held, so that coming back asks from there. Per outbox envelope,
    // what it says (its inner payload, none for key shares), so that one whose day or epoch
    // passed before any peer took it is sealed again rather than stranded. Messages that cannot
    // be delivered at all, with why.
    "
    CREATE TABLE synced_through (
        group_id BLOB PRIMARY KEY,
        period INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE outbox ADD COLUMN inner BLOB;
    CREATE TABLE expired (
        envelope_id BLOB PRIMARY KEY,
        reason TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 8: a parked envelope's place in its sender's chains (device, generation, index), so that
    // what waits is read back a page at a time in chain order and counted per sender device;
    // and whether that device was known to the group when it parked (others share one quota).
    "
    ALTER TABLE envelopes ADD COLUMN parked_at BLOB;
    ALTER TABLE envelopes ADD COLUMN parked_known INTEGER;
    UPDATE envelopes SET parked_at = zeroblob(40), parked_known = 0 WHERE status = 'waiting';
    DROP INDEX envelopes_waiting;
    CREATE INDEX envelopes_parked ON envelopes(group_id, parked_at, id) WHERE status = 'waiting';
    ",
    // 9: per conversation, how long messages are kept (none: for ever).
    "
    CREATE TABLE retention (
        group_id BLOB PRIMARY KEY,
        keep_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 10: group protocol v2. The device's signed prekeys (current and retired within their
    // grace), made at the first open that finds none.
    "
    ALTER TABLE identity ADD COLUMN prekeys BLOB;
    ",
    // 11: messages sealed again. The envelope a message went out in first may still reach
    // members after its new one: each is recorded here (with its sender, so nobody replaces
    // someone else's message) and shown once, under the newer id.
    "
    CREATE TABLE replaced (
        original BLOB NOT NULL,
        sender BLOB NOT NULL,
        replacement BLOB NOT NULL,
        PRIMARY KEY (original, sender)
    ) WITHOUT ROWID;
    ",
    // 12: contacts the user blocked (their requests and messages are not shown, and nothing of
    // ours goes to them), and groups the user asked to leave (an admin removes them).
    "
    CREATE TABLE blocked (
        account BLOB PRIMARY KEY,
        since_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE left_groups (
        group_id BLOB PRIMARY KEY,
        since_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 13: one account on several devices. A linked device holds no account key (the primary
    // keeps it: `account_secret` is then zeros and `holds_account_key` 0); the account's
    // devices as this device knows them, and the primary's pending link offer.
    "
    ALTER TABLE identity ADD COLUMN holds_account_key INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE devices (
        device BLOB PRIMARY KEY,
        cert BLOB NOT NULL,
        name TEXT NOT NULL,
        linked_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        last_seen_ms INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE link_offer (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        offer BLOB NOT NULL
    );
    CREATE TABLE revocations (
        account BLOB NOT NULL,
        device BLOB NOT NULL,
        revocation BLOB NOT NULL,
        PRIMARY KEY (account, device)
    ) WITHOUT ROWID;
    ",
    // 14: links replaced by their account (ours at a revocation, and contacts'): the latest
    // signed one of each account, so an older one is never taken again.
    "
    CREATE TABLE link_rotations (
        account BLOB PRIMARY KEY,
        link BLOB NOT NULL,
        issued_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // 15: replies (the message a text quotes), and reactions, edits and deletes: each change
    // under its own envelope's id, naming its target, since it may arrive before its message.
    // An edit or delete counts only from the target's sender (checked on reading, when both
    // are known); a delete empties its target's text and its edits' as soon as both are here.
    "
    ALTER TABLE messages ADD COLUMN reply_to BLOB;
    CREATE TABLE message_changes (
        envelope_id BLOB PRIMARY KEY,
        group_id BLOB NOT NULL,
        target BLOB NOT NULL,
        sender BLOB NOT NULL,
        lamport INTEGER NOT NULL,
        kind TEXT NOT NULL,
        body TEXT
    ) WITHOUT ROWID;
    CREATE INDEX message_changes_by_target ON message_changes (target);
    ",
    // 16: disappearing messages. Each timer a member set in a conversation, by the Lamport
    // clock of the message that set it (`keep_ms` NULL: off). A text's expiry is fixed when it
    // is stored, by the timer set last before it among those already here, so a timer never
    // reaches back to what this device held before it came (a hostile member's backdated one
    // included).
    "
    CREATE TABLE timers (
        envelope_id BLOB PRIMARY KEY,
        group_id BLOB NOT NULL,
        lamport INTEGER NOT NULL,
        keep_ms INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX timers_by_group ON timers (group_id, lamport);
    ALTER TABLE messages ADD COLUMN expires_ms INTEGER;
    CREATE INDEX messages_expiring ON messages (expires_ms) WHERE expires_ms IS NOT NULL;
    ",
    // 17: attachments. The manifest of each file a message carries, by the message's id; its
    // envelopes are kept in `envelopes` under the attachment's own topic (served to peers as
    // any envelope is), and go when the message goes. `wanted`: being fetched.
    "
    CREATE TABLE attachments (
        message BLOB PRIMARY KEY,
        group_id BLOB NOT NULL,
        topic BLOB NOT NULL,
        manifest BLOB NOT NULL,
        size INTEGER NOT NULL,
        have INTEGER NOT NULL,
        total INTEGER NOT NULL,
        wanted INTEGER NOT NULL,
        added_ms INTEGER NOT NULL,
        ours INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX attachments_by_topic ON attachments (topic);
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
    }
    Ok(())
}
