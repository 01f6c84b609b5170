//! The membership log: signed operations that say who is in a group. Operations name their
//! parents, so the log is a DAG; every device replays it in the same deterministic topological
//! order (ties broken by operation hash) and so reaches the same membership, whatever order the
//! operations arrived in. Validity is judged at the position an operation takes in that order:
//! an operation whose author was removed before it loses ("remove wins").

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::label;
use crate::error::{Error, Result};
use crate::identity::{AccountPublic, DeviceCert, DeviceId, DeviceKeys, MAX_NAME_LEN};
use crate::wire::{Reader, Writer};

use super::GroupId;

const OP_CONTEXT: &[u8] = label("weft/v1/membership-op");
pub const MAX_OP_PARENTS: usize = 8;
/// Devices of one account a group knows; keeps every share list inside one envelope.
pub const MAX_DEVICES_PER_ACCOUNT: usize = 4;
/// Member accounts in one group. Keeps every key share inside one envelope.
pub const MAX_MEMBERS: usize = 100;
/// Membership operations one group can hold, so that a whole log fits in one invitation.
/// Compacting the log into a signed snapshot would lift this; see docs/PROTOCOL.md.
pub const MAX_OPS: usize = 180;
pub const MAX_GROUP_NAME_LEN: usize = 128;

pub type OpHash = [u8; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Founds the group; the author's account becomes its first member and admin. The salt
    /// makes every group's id unique.
    Create { name: String, salt: [u8; 16] },
    /// Adds an account, with the devices of it the author knows.
    Add { member: AccountPublic, name: Option<String>, devices: Vec<DeviceCert>, admin: bool },
    /// Removes an account and all its devices.
    Remove { member: AccountPublic },
    /// Starts a new epoch with no change of members (heals concurrent changes).
    Rekey,
}

impl Action {
    fn tag(&self) -> u8 {
        match self {
            Action::Create { .. } => 1,
            Action::Add { .. } => 2,
            Action::Remove { .. } => 3,
            Action::Rekey => 4,
        }
    }
}

/// One signed change to a group's membership. Every operation starts a new epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedOp {
    pub group: GroupId,
    pub parents: Vec<OpHash>,
    pub author: DeviceCert,
    pub created_ms: u64,
    pub action: Action,
    pub signature: [u8; 64],
}

impl SignedOp {
    pub fn new(
        group: GroupId,
        parents: Vec<OpHash>,
        author: DeviceCert,
        device: &DeviceKeys,
        created_ms: u64,
        action: Action,
    ) -> Self {
        let mut op = SignedOp { group, parents, author, created_ms, action, signature: [0; 64] };
        let mut signed = OP_CONTEXT.to_vec();
        signed.extend_from_slice(&op.unsigned_bytes());
        op.signature = device.sign(&signed);
        op
    }

    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.raw(&self.group).u8(self.parents.len() as u8);
        for p in &self.parents {
            w.raw(p);
        }
        self.author.encode(&mut w);
        w.u64(self.created_ms).u8(self.action.tag());
        match &self.action {
            Action::Create { name, salt } => {
                w.string(name).raw(salt);
            }
            Action::Add { member, name, devices, admin } => {
                w.raw(member).string(name.as_deref().unwrap_or("")).u8(devices.len() as u8);
                for d in devices {
                    d.encode(&mut w);
                }
                w.bool(*admin);
            }
            Action::Remove { member } => {
                w.raw(member);
            }
            Action::Rekey => {}
        }
        w.into_bytes()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.unsigned_bytes();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    pub fn hash(&self) -> OpHash {
        *blake3::hash(&self.to_bytes()).as_bytes()
    }

    /// Decodes an operation and checks its signature and its author's certificate.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "membership operation");
        let group = r.array()?;
        let n_parents = r.u8()? as usize;
        if n_parents > MAX_OP_PARENTS {
            return Err(Error::TooLong { what: "operation parents", len: n_parents, max: MAX_OP_PARENTS });
        }
        let parents = (0..n_parents).map(|_| r.array()).collect::<Result<Vec<_>>>()?;
        let author = DeviceCert::decode(&mut r)?;
        let created_ms = r.u64()?;
        let action = match r.u8()? {
            1 => Action::Create { name: r.string(MAX_GROUP_NAME_LEN)?, salt: r.array()? },
            2 => {
                let member = r.array()?;
                let name = r.string(MAX_NAME_LEN)?;
                let n = r.u8()? as usize;
                if n > MAX_DEVICES_PER_ACCOUNT {
                    return Err(Error::TooLong { what: "devices in an add", len: n, max: MAX_DEVICES_PER_ACCOUNT });
                }
                let devices = (0..n).map(|_| DeviceCert::decode(&mut r)).collect::<Result<Vec<_>>>()?;
                if devices.iter().any(|d| d.account != member) {
                    return Err(Error::Malformed {
                        what: "membership operation",
                        why: "added device of another account",
                    });
                }
                let admin = r.bool()?;
                Action::Add { member, name: (!name.is_empty()).then_some(name), devices, admin }
            }
            3 => Action::Remove { member: r.array()? },
            4 => Action::Rekey,
            _ => {
                return Err(Error::Malformed { what: "membership operation", why: "unknown action" });
            }
        };
        let signature = r.array()?;
        r.finish()?;
        let op = SignedOp { group, parents, author, created_ms, action, signature };
        let mut signed = OP_CONTEXT.to_vec();
        signed.extend_from_slice(&op.unsigned_bytes());
        crate::identity::verify_signature(&op.author.device, &signed, &op.signature, "membership operation")?;
        Ok(op)
    }
}

/// A group's id: the hash of the operation that founded it. Nobody can found a second group
/// with the same id, nor pick an id to collide with another conversation.
pub fn group_id_of(create: &SignedOp) -> GroupId {
    blake3::derive_key("weft/v1/group-id", &create.to_bytes())
}

/// The operations whose whole ancestry is known, parents first, ties broken by hash; and how
/// many wait for a parent we have not seen.
fn topological_order(group: &GroupId, ops: &BTreeMap<OpHash, SignedOp>) -> (Vec<OpHash>, usize) {
    let belongs = |op: &SignedOp| match op.action {
        Action::Create { .. } => op.group == [0; 32],
        _ => op.group == *group,
    };
    let mut children: BTreeMap<OpHash, Vec<OpHash>> = BTreeMap::new();
    let mut missing: BTreeMap<OpHash, usize> = BTreeMap::new();
    let mut ready = BTreeSet::new();
    for (hash, op) in ops {
        if !belongs(op) || op.parents.iter().any(|p| !ops.contains_key(p)) {
            continue;
        }
        let distinct: BTreeSet<&OpHash> = op.parents.iter().collect();
        missing.insert(*hash, distinct.len());
        for p in distinct {
            children.entry(*p).or_default().push(*hash);
        }
        if op.parents.is_empty() {
            ready.insert(*hash);
        }
    }
    let mut order = Vec::with_capacity(missing.len());
    while let Some(hash) = ready.pop_first() {
        order.push(hash);
        for child in children.get(&hash).into_iter().flatten() {
            if let Some(left) = missing.get_mut(child) {
                *left -= 1;
                if *left == 0 {
                    ready.insert(*child);
                }
            }
        }
    }
    let waiting = ops.len() - order.len();
    (order, waiting)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: Option<String>,
    pub admin: bool,
}

/// The result of replaying a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub name: String,
    pub members: BTreeMap<AccountPublic, Member>,
    /// Device certificates learned from the log.
    pub devices: BTreeMap<DeviceId, DeviceCert>,
    /// Valid operations in replay order; each starts an epoch named by its hash.
    pub applied: Vec<OpHash>,
    /// Operations no other operation names as parent.
    pub heads: BTreeSet<OpHash>,
    /// Operations waiting for a parent we have not seen.
    pub waiting: usize,
}

impl Membership {
    /// Replays every operation in a deterministic topological order (Kahn's algorithm, ties
    /// broken by hash). An operation applies when its author is an admin at its position and
    /// no credible removal of its author is concurrent with it ("remove wins": an admin who was
    /// removed cannot act with backdated parents). Two admins who remove each other
    /// concurrently are both removed.
    pub fn replay(group: &GroupId, ops: &BTreeMap<OpHash, SignedOp>) -> Membership {
        let (order, waiting) = topological_order(group, ops);
        let mut ancestors: BTreeMap<OpHash, BTreeSet<OpHash>> = BTreeMap::new();
        for hash in &order {
            let mut set = BTreeSet::new();
            for p in &ops[hash].parents {
                set.insert(*p);
                set.extend(ancestors[p].iter().copied());
            }
            ancestors.insert(*hash, set);
        }
        // Removals whose author was an admin in the removal's own causal past.
        let credible: Vec<(OpHash, AccountPublic, AccountPublic)> = order
            .iter()
            .filter_map(|hash| match &ops[hash].action {
                Action::Remove { member } => {
                    let past: Vec<OpHash> = order.iter().filter(|h| ancestors[hash].contains(*h)).copied().collect();
                    let before = Membership::apply_all(group, ops, &past, |_| false);
                    before.is_admin(&ops[hash].author.account).then_some((*hash, ops[hash].author.account, *member))
                }
                _ => None,
            })
            .collect();
        let blocked = |hash: &OpHash| {
            let op = &ops[hash];
            credible.iter().any(|(removal, remover, target)| {
                *target == op.author.account
                    && removal != hash
                    && !ancestors[removal].contains(hash)
                    && !matches!(op.action, Action::Remove { member } if member == *remover)
            })
        };
        // A credible removal of someone who concurrently removed its author applies even though
        // its author is gone by the time it comes up in the order: both are removed.
        let mutual = |hash: &OpHash| {
            let op = &ops[hash];
            credible.iter().any(|(x, ..)| x == hash)
                && credible.iter().any(|(removal, remover, target)| {
                    *target == op.author.account
                        && matches!(op.action, Action::Remove { member } if member == *remover)
                        && !ancestors[removal].contains(hash)
                        && !ancestors[hash].contains(removal)
                })
        };
        let mut state = Membership::default();
        for hash in &order {
            let op = &ops[hash];
            let applies = if mutual(hash) {
                match &op.action {
                    Action::Remove { member } => state.members.remove(member).is_some(),
                    _ => false,
                }
            } else {
                !blocked(hash) && state.apply(group, op)
            };
            if applies {
                state.devices.retain(|_, d| state.members.contains_key(&d.account));
                state.record(op, *hash);
            }
        }
        state.waiting = waiting;
        state
    }

    fn record(&mut self, op: &SignedOp, hash: OpHash) {
        self.applied.push(hash);
        for p in &op.parents {
            self.heads.remove(p);
        }
        self.heads.insert(hash);
    }

    fn apply_all(
        group: &GroupId,
        ops: &BTreeMap<OpHash, SignedOp>,
        order: &[OpHash],
        blocked: impl Fn(&OpHash) -> bool,
    ) -> Membership {
        let mut state = Membership::default();
        for hash in order {
            let op = &ops[hash];
            if !blocked(hash) && state.apply(group, op) {
                state.record(op, *hash);
            }
        }
        state
    }

    fn is_admin(&self, account: &AccountPublic) -> bool {
        self.members.get(account).is_some_and(|m| m.admin)
    }

    /// Applies one operation if it is valid here; says whether it was.
    fn apply(&mut self, group: &GroupId, op: &SignedOp) -> bool {
        let author = op.author.account;
        match &op.action {
            Action::Create { name, .. } => {
                let founds_this_group = op.group == [0; 32] && group_id_of(op) == *group;
                if !self.applied.is_empty() || !op.parents.is_empty() || !founds_this_group {
                    return false;
                }
                self.name = name.clone();
                self.members.insert(author, Member { name: None, admin: true });
            }
            Action::Add { member, name, devices, admin } => {
                if !self.is_admin(&author) || self.members.len() >= MAX_MEMBERS {
                    return false;
                }
                let existing_admin = self.members.get(member).is_some_and(|m| m.admin);
                self.members.insert(*member, Member { name: name.clone(), admin: *admin || existing_admin });
                for d in devices {
                    self.devices.insert(d.device, d.clone());
                }
            }
            Action::Remove { member } => {
                if !self.is_admin(&author) || !self.members.contains_key(member) {
                    return false;
                }
                self.members.remove(member);
                self.devices.retain(|_, d| d.account != *member);
            }
            Action::Rekey => {
                if !self.is_admin(&author) {
                    return false;
                }
            }
        }
        self.devices.insert(op.author.device, op.author.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;
    use crate::identity::AccountKey;

    struct Person {
        account: AccountKey,
        device: DeviceKeys,
        cert: DeviceCert,
    }

    fn person(seed: u64) -> Person {
        let mut rng = SeededEntropy::new(seed);
        let account = AccountKey::generate(&mut rng).unwrap();
        let device = DeviceKeys::generate(&mut rng).unwrap();
        let cert = account.certify(&device, 0);
        Person { account, device, cert }
    }

    fn create(p: &Person) -> (GroupId, SignedOp) {
        let op = SignedOp::new(
            [0; 32],
            vec![],
            p.cert.clone(),
            &p.device,
            1,
            Action::Create { name: "g".into(), salt: [0; 16] },
        );
        (group_id_of(&op), op)
    }

    fn op(p: &Person, group: GroupId, parents: Vec<OpHash>, action: Action) -> SignedOp {
        SignedOp::new(group, parents, p.cert.clone(), &p.device, 1, action)
    }

    fn add(p: &Person, g: GroupId, parent: OpHash, member: &Person, admin: bool) -> SignedOp {
        op(p, g, vec![parent], Action::Add { member: member.account.public(), name: None, devices: vec![], admin })
    }

    fn replay(g: &GroupId, ops: &[&SignedOp]) -> Membership {
        Membership::replay(g, &ops.iter().map(|o| (o.hash(), (*o).clone())).collect())
    }

    #[test]
    fn replay_is_order_independent_and_remove_wins() {
        let (a, b, c) = (person(1), person(2), person(3));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, true);
        let add_c = add(&a, g, add_b.hash(), &c, false);
        // Concurrently: a removes b, while b (still an admin in its view) removes c.
        let a_removes_b = op(&a, g, vec![add_c.hash()], Action::Remove { member: b.account.public() });
        let b_removes_c = op(&b, g, vec![add_c.hash()], Action::Remove { member: c.account.public() });
        let all = [&create, &add_b, &add_c, &a_removes_b, &b_removes_c];
        let state = replay(&g, &all);
        let decoded: Vec<SignedOp> = all.iter().rev().map(|o| SignedOp::from_bytes(&o.to_bytes()).unwrap()).collect();
        assert_eq!(replay(&g, &decoded.iter().collect::<Vec<_>>()), state);
        assert!(state.members.contains_key(&a.account.public()));
        assert!(!state.members.contains_key(&b.account.public()), "b was removed");
        assert!(state.members.contains_key(&c.account.public()), "b's concurrent removal of c loses");
    }

    #[test]
    fn mutual_concurrent_removal_removes_both() {
        let (a, b, c) = (person(1), person(2), person(3));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, true);
        let add_c = add(&a, g, add_b.hash(), &c, true);
        let a_removes_b = op(&a, g, vec![add_c.hash()], Action::Remove { member: b.account.public() });
        let b_removes_a = op(&b, g, vec![add_c.hash()], Action::Remove { member: a.account.public() });
        let state = replay(&g, &[&create, &add_b, &add_c, &a_removes_b, &b_removes_a]);
        assert_eq!(state.members.keys().copied().collect::<Vec<_>>(), vec![c.account.public()]);
    }

    #[test]
    fn a_removed_admin_cannot_act_with_backdated_parents() {
        let (a, b, m) = (person(1), person(2), person(4));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, true);
        let a_removes_b = op(&a, g, vec![add_b.hash()], Action::Remove { member: b.account.public() });
        // Later, b signs an Add whose parents pretend it predates the removal.
        let backdated = add(&b, g, add_b.hash(), &m, true);
        let state = replay(&g, &[&create, &add_b, &a_removes_b, &backdated]);
        assert!(!state.members.contains_key(&m.account.public()));
        assert!(!state.members.contains_key(&b.account.public()));
    }

    #[test]
    fn a_second_founding_operation_is_ignored() {
        let (a, b) = (person(1), person(2));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, false);
        // b founds "the same group" with a Create of its own: it names another id.
        let mut fake = SignedOp::new(
            [0; 32],
            vec![],
            b.cert.clone(),
            &b.device,
            0,
            Action::Create { name: "g".into(), salt: [0; 16] },
        );
        for t in 0..50 {
            if fake.hash() < create.hash() {
                break;
            }
            fake = SignedOp::new(
                [0; 32],
                vec![],
                b.cert.clone(),
                &b.device,
                t,
                Action::Create { name: "g".into(), salt: [0; 16] },
            );
        }
        let b_removes_a = op(&b, g, vec![fake.hash()], Action::Remove { member: a.account.public() });
        let state = replay(&g, &[&create, &add_b, &fake, &b_removes_a]);
        assert!(state.is_admin(&a.account.public()));
        assert_eq!(state.applied, vec![create.hash(), add_b.hash()]);
    }

    #[test]
    fn non_admin_cannot_remove_and_tampering_is_caught() {
        let (a, b) = (person(1), person(2));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, false);
        let b_removes_a = op(&b, g, vec![add_b.hash()], Action::Remove { member: a.account.public() });
        let state = replay(&g, &[&create, &add_b, &b_removes_a]);
        assert_eq!(state.members.len(), 2);
        assert_eq!(state.applied.len(), 2);
        let bytes = b_removes_a.to_bytes();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(SignedOp::from_bytes(&bad).is_err(), "byte {i}");
        }
    }
}
