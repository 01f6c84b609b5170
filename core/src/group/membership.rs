//! The membership log: signed operations that say who is in a group. Operations name their
//! parents, so the log is a DAG; every device replays it in the same deterministic topological
//! order (ties broken by operation hash) and so reaches the same membership, whatever order the
//! operations arrived in.
//!
//! Only operations that their author had the right to make, in the operation's own causal
//! past, enter the log ([`Membership::admits`]); each author has a quota of them. Validity in
//! the whole log is judged at replay: an operation concurrent with an effective removal of its
//! author loses ("remove wins"), and of two admins who remove each other concurrently the
//! senior one (made an admin earlier in the order) wins. A removed admin who backdates a
//! removal of the admin who removed him makes exactly such a concurrent pair, so he can undo
//! his removal only if he outranks his remover (docs/DECISIONS.md, "Membership v2").

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::label;
use crate::error::{Error, Result};
use crate::identity::{AccountPublic, DeviceCert, DeviceId, DeviceKeys, MAX_NAME_LEN};
use crate::wire::{Reader, Writer};

use super::GroupId;

const OP_CONTEXT: &[u8] = label("weft/v1/membership-op");
pub const MAX_OP_PARENTS: usize = 8;
/// Devices of one account a group knows.
pub const MAX_DEVICES_PER_ACCOUNT: usize = 4;
/// Member accounts in one group: 4,000 devices, whose shares take ten envelopes.
pub const MAX_MEMBERS: usize = 1_000;
/// Membership operations an invitation can carry (it travels in up to 64 parts, 3.8 MB).
/// Compacting the log into a signed snapshot would lift this; see docs/PROTOCOL.md.
pub const MAX_OPS: usize = 16_384;
/// Operations of one author account a change may have in its causal past: a hostile or stolen
/// admin fills its own quota, never the others' (a removed admin can still sign backdated
/// ones, up to it).
pub const MAX_OPS_PER_AUTHOR: usize = 2048;
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
    /// Renames the group (an admin's; a new epoch like any change).
    Rename { name: String },
}

impl Action {
    fn tag(&self) -> u8 {
        match self {
            Action::Create { .. } => 1,
            Action::Add { .. } => 2,
            Action::Remove { .. } => 3,
            Action::Rekey => 4,
            Action::Rename { .. } => 5,
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
            Action::Rename { name } => {
                w.string(name);
            }
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
            5 => Action::Rename { name: r.string(MAX_GROUP_NAME_LEN)? },
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

/// Which operations lie in each operation's causal past, as one bit per position in the
/// replay order: a few hundred kilobytes for thousands of operations, where sets of hashes took
/// hundreds of megabytes.
struct CausalPast {
    words: usize,
    bits: Vec<u64>,
}

impl CausalPast {
    fn of(order: &[OpHash], position: &BTreeMap<OpHash, usize>, ops: &BTreeMap<OpHash, SignedOp>) -> Self {
        let words = order.len().div_ceil(64);
        let mut bits = vec![0u64; words * order.len()];
        for (at, hash) in order.iter().enumerate() {
            for parent in &ops[hash].parents {
                // Parents come before their children in the order.
                let p = position[parent];
                let (row, parent_row) = (at * words, p * words);
                for w in 0..words {
                    bits[row + w] |= bits[parent_row + w];
                }
                bits[row + p / 64] |= 1 << (p % 64);
            }
        }
        CausalPast { words, bits }
    }

    /// Whether the operation at `earlier` is in the causal past of the one at `at`.
    fn contains(&self, at: usize, earlier: usize) -> bool {
        self.bits[at * self.words + earlier / 64] & (1 << (earlier % 64)) != 0
    }
}

/// Which removals take effect in a log, decided the same way on every device (see
/// [`Membership::replay`]).
struct Settlement<'a> {
    group: &'a GroupId,
    ops: &'a BTreeMap<OpHash, SignedOp>,
    order: &'a [OpHash],
    position: &'a BTreeMap<OpHash, usize>,
    past: CausalPast,
    /// The membership each operation's author saw (its causal past, applied in order), by
    /// position; computed when first needed.
    views: std::cell::RefCell<BTreeMap<usize, std::rc::Rc<Membership>>>,
}

/// A removal decided to take effect: its position and its target.
type Effective = (usize, AccountPublic);

impl<'a> Settlement<'a> {
    fn new(
        group: &'a GroupId,
        ops: &'a BTreeMap<OpHash, SignedOp>,
        order: &'a [OpHash],
        position: &'a BTreeMap<OpHash, usize>,
    ) -> Self {
        let past = CausalPast::of(order, position, ops);
        Settlement { group, ops, order, position, past, views: Default::default() }
    }

    fn op(&self, at: usize) -> &SignedOp {
        &self.ops[&self.order[at]]
    }

    /// The membership as the author of the operation at `at` saw it.
    fn view(&self, at: usize) -> std::rc::Rc<Membership> {
        if let Some(v) = self.views.borrow().get(&at) {
            return v.clone();
        }
        let seen: Vec<OpHash> = (0..at).filter(|i| self.past.contains(at, *i)).map(|i| self.order[i]).collect();
        let view = std::rc::Rc::new(Membership::apply_all(self.group, self.ops, &seen));
        self.views.borrow_mut().insert(at, view.clone());
        view
    }

    /// Whether `account` was an admin at the operation at `at`, through a chain of promotions
    /// back to the founder that no removal in `effective` undoes: a promotion made by someone an
    /// effective removal removed, concurrently or before, confers nothing (a removed admin who
    /// backdates the promotion of an account of his own gains no stand-in).
    fn authority_holds(&self, account: &AccountPublic, at: usize, effective: &[Effective]) -> bool {
        let view = self.view(at);
        let Some(since) = view.admin_since.get(account) else { return false };
        let promoted_at = self.position[since];
        let promotion = self.op(promoted_at);
        if matches!(promotion.action, Action::Create { .. }) {
            return true;
        }
        let promoter = promotion.author.account;
        if effective.iter().any(|(r, t)| *t == promoter && *r != promoted_at && !self.past.contains(*r, promoted_at)) {
            return false;
        }
        self.authority_holds(&promoter, promoted_at, effective)
    }

    /// The effective removals. Candidates are removals whose author was an admin in their own
    /// causal past, decided most senior author first (seniority: the position of the operation
    /// that made them an admin). A removal by X takes effect unless an effective removal of X is
    /// concurrent with it, X's authority rests on a promotion that an effective removal undoes,
    /// or someone removes X concurrently whom this removal (with those decided before) leaves
    /// standing and who is not X's own target: remove wins, and of two admins who remove each
    /// other, the senior one.
    fn removals(&self) -> Vec<Effective> {
        let mut candidates: Vec<(usize, usize, AccountPublic, AccountPublic)> = (0..self.order.len())
            .filter_map(|at| match &self.op(at).action {
                Action::Remove { member } => {
                    let author = self.op(at).author.account;
                    let since = *self.view(at).admin_since.get(&author)?;
                    Some((self.position[&since], at, author, *member))
                }
                _ => None,
            })
            .collect();
        candidates.sort_unstable();
        let concurrent = |a: usize, b: usize| a != b && !self.past.contains(a, b) && !self.past.contains(b, a);
        let removed = |who: &AccountPublic, at: usize, effective: &[Effective]| {
            effective.iter().any(|(r, t)| t == who && *r != at && !self.past.contains(*r, at))
        };
        let mut effective: Vec<Effective> = Vec::new();
        // One author at a time, all of their removals together: what an author's removals
        // leave standing is judged with all of them in (an admin who removes two others
        // concurrently is challenged by neither).
        for by_author in candidates.chunk_by(|a, b| a.0 == b.0) {
            let standing: Vec<(usize, AccountPublic, AccountPublic)> = by_author
                .iter()
                .filter(|&&(_, at, remover, _)| {
                    !removed(&remover, at, &effective) && self.authority_holds(&remover, at, &effective)
                })
                .map(|&(_, at, remover, target)| (at, remover, target))
                .collect();
            let mut with_these = effective.clone();
            with_these.extend(standing.iter().map(|&(at, _, target)| (at, target)));
            for &(at, remover, target) in &standing {
                let challenged = candidates.iter().any(|&(_, other, challenger, challenged)| {
                    challenged == remover
                        && challenger != target
                        && concurrent(at, other)
                        && !removed(&challenger, other, &with_these)
                        && self.authority_holds(&challenger, other, &with_these)
                });
                if !challenged {
                    effective.push((at, target));
                }
            }
        }
        effective
    }
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
    /// For each admin, the operation that made them one: who is senior to whom.
    pub admin_since: BTreeMap<AccountPublic, OpHash>,
}

impl Membership {
    /// Replays every operation in a deterministic topological order (Kahn's algorithm, ties
    /// broken by hash). Removals are settled first, most senior author first: a removal is
    /// effective when its author was an admin in its own causal past and no effective removal
    /// of its author is concurrent with it. Then an operation applies when it is an effective
    /// removal, or when its author is an admin at its position and no effective removal of its
    /// author is concurrent with it ("remove wins": a removed admin cannot act with backdated
    /// parents).
    pub fn replay(group: &GroupId, ops: &BTreeMap<OpHash, SignedOp>) -> Membership {
        let (order, waiting) = topological_order(group, ops);
        let position: BTreeMap<OpHash, usize> = order.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let settle = Settlement::new(group, ops, &order, &position);
        let effective = settle.removals();
        let blocked = |at: usize| {
            let author = ops[&order[at]].author.account;
            effective.iter().any(|(r, t)| *t == author && *r != at && !settle.past.contains(*r, at))
        };
        let mut state = Membership::default();
        for (at, hash) in order.iter().enumerate() {
            let op = &ops[hash];
            // A removal applies exactly when it was settled as effective.
            let applies = match &op.action {
                Action::Remove { member } => effective.iter().any(|(r, _)| *r == at) && state.remove(member),
                _ => !blocked(at) && state.apply(group, op),
            };
            if applies {
                state.record(op, *hash);
            }
        }
        state.waiting = waiting;
        state
    }

    /// A log built from `ops` (an invitation's) as if they had arrived one by one, parents
    /// first: an inviter cannot hand a newcomer a change that the members refused, which would
    /// make the newcomer's membership differ from theirs.
    pub fn admit_all(group: &GroupId, ops: &[SignedOp]) -> Result<BTreeMap<OpHash, SignedOp>> {
        let mut log = BTreeMap::new();
        let mut left: Vec<&SignedOp> = ops.iter().collect();
        while !left.is_empty() {
            let before = left.len();
            let mut waiting = Vec::new();
            for op in left {
                match Membership::admits(group, &log, op) {
                    Ok(()) => {
                        log.insert(op.hash(), op.clone());
                    }
                    Err(Error::MissingParent) => waiting.push(op),
                    Err(e) => return Err(e),
                }
            }
            if waiting.len() == before {
                return Err(Error::Malformed { what: "invitation", why: "a change names one it does not carry" });
            }
            left = waiting;
        }
        Ok(log)
    }

    /// Whether `op` may enter a log holding `ops`: its parents are known, its author had the
    /// right to make it in its own causal past, and its author's quota has room. Whether it
    /// applies in the whole log is for [`Membership::replay`] to say.
    pub fn admits(group: &GroupId, ops: &BTreeMap<OpHash, SignedOp>, op: &SignedOp) -> Result<()> {
        if op.group != *group && !matches!(op.action, Action::Create { .. }) {
            return Err(Error::Malformed { what: "membership operation", why: "names another group" });
        }
        if op.parents.iter().any(|p| !ops.contains_key(p)) {
            return Err(Error::MissingParent);
        }
        let mut past = BTreeMap::new();
        let mut stack: Vec<OpHash> = op.parents.clone();
        while let Some(hash) = stack.pop() {
            if let Some(parent) = ops.get(&hash)
                && past.insert(hash, parent.clone()).is_none()
            {
                stack.extend(parent.parents.iter().copied());
            }
        }
        let mut before = Membership::replay(group, &past);
        if !before.apply(group, op) {
            return Err(Error::VoidOperation("its author could not make it at the point it names"));
        }
        // Counted in the change's own causal past, so that every device judges it the same
        // whatever else it holds; per account, since an account can certify new devices.
        let authored = past.values().filter(|o| o.author.account == op.author.account).count();
        if authored >= MAX_OPS_PER_AUTHOR {
            return Err(Error::Limit("an account has made as many membership changes as a group keeps"));
        }
        Ok(())
    }

    /// (A removed member's devices left with it, in `remove`: nothing to sweep here, which
    /// made replaying a log of a thousand members quadratic in its devices.)
    fn record(&mut self, op: &SignedOp, hash: OpHash) {
        self.applied.push(hash);
        for p in &op.parents {
            self.heads.remove(p);
        }
        self.heads.insert(hash);
    }

    /// Applies `order` one operation after the other, with no removal settled beforehand: the
    /// view of someone who saw exactly these operations.
    fn apply_all(group: &GroupId, ops: &BTreeMap<OpHash, SignedOp>, order: &[OpHash]) -> Membership {
        let mut state = Membership::default();
        for hash in order {
            let op = &ops[hash];
            if state.apply(group, op) {
                state.record(op, *hash);
            }
        }
        state
    }

    /// Removes a member and their devices; says whether they were one.
    fn remove(&mut self, member: &AccountPublic) -> bool {
        self.admin_since.remove(member);
        self.devices.retain(|_, d| d.account != *member);
        self.members.remove(member).is_some()
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
                self.admin_since.insert(author, op.hash());
            }
            Action::Add { member, name, devices, admin } => {
                if !self.is_admin(&author) || self.members.len() >= MAX_MEMBERS {
                    return false;
                }
                let existing_admin = self.members.get(member).is_some_and(|m| m.admin);
                self.members.insert(*member, Member { name: name.clone(), admin: *admin || existing_admin });
                if *admin && !existing_admin {
                    self.admin_since.insert(*member, op.hash());
                }
                for d in devices {
                    self.devices.insert(d.device, d.clone());
                }
            }
            Action::Remove { member } => {
                if !self.is_admin(&author) || !self.remove(member) {
                    return false;
                }
            }
            Action::Rekey => {
                if !self.is_admin(&author) {
                    return false;
                }
            }
            Action::Rename { name } => {
                if !self.is_admin(&author) {
                    return false;
                }
                self.name = name.clone();
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

    /// Two admins remove each other concurrently (or one of them backdates his answer to his
    /// removal, which looks the same): the senior one wins, whatever order the changes came in,
    /// and the loser's other concurrent changes fall with him.
    #[test]
    fn of_two_admins_removing_each_other_the_senior_wins() {
        let (a, b, c, m) = (person(1), person(2), person(3), person(4));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, true);
        let add_c = add(&a, g, add_b.hash(), &c, true);
        // b was made an admin before c: b outranks c.
        let b_removes_c = op(&b, g, vec![add_c.hash()], Action::Remove { member: c.account.public() });
        let c_removes_b = op(&c, g, vec![add_c.hash()], Action::Remove { member: b.account.public() });
        let c_adds_m = add(&c, g, add_c.hash(), &m, false);
        let all = [&create, &add_b, &add_c, &c_removes_b, &b_removes_c, &c_adds_m];
        let state = replay(&g, &all);
        let reversed: Vec<&SignedOp> = all.iter().rev().copied().collect();
        assert_eq!(replay(&g, &reversed), state);
        let members: BTreeSet<AccountPublic> = state.members.keys().copied().collect();
        assert_eq!(members, [a.account.public(), b.account.public()].into_iter().collect());
        // The founder outranks everyone.
        let a_removes_b = op(&a, g, vec![add_c.hash()], Action::Remove { member: b.account.public() });
        let b_removes_a = op(&b, g, vec![add_c.hash()], Action::Remove { member: a.account.public() });
        let state = replay(&g, &[&create, &add_b, &add_c, &b_removes_a, &a_removes_b]);
        assert!(state.is_admin(&a.account.public()));
        assert!(!state.members.contains_key(&b.account.public()));
    }

    /// a removes b. b, with parents from before his removal, makes an account of his own (c) an
    /// admin, and c removes a and d. c's authority rests on b's promotion, which a's removal
    /// undoes: nobody is removed but b, whatever the order.
    #[test]
    fn a_removed_admin_gains_nothing_through_an_admin_he_promoted() {
        let (a, b, c, d) = (person(1), person(2), person(3), person(4));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, true);
        let add_d = add(&a, g, add_b.hash(), &d, true);
        let a_removes_b = op(&a, g, vec![add_d.hash()], Action::Remove { member: b.account.public() });
        let b_adds_c = add(&b, g, add_d.hash(), &c, true);
        let c_removes_a = op(&c, g, vec![b_adds_c.hash()], Action::Remove { member: a.account.public() });
        let c_removes_d = op(&c, g, vec![c_removes_a.hash()], Action::Remove { member: d.account.public() });
        let all = [&create, &add_b, &add_d, &a_removes_b, &b_adds_c, &c_removes_a, &c_removes_d];
        let state = replay(&g, &all);
        let reversed: Vec<&SignedOp> = all.iter().rev().copied().collect();
        assert_eq!(replay(&g, &reversed), state);
        let members: BTreeSet<AccountPublic> = state.members.keys().copied().collect();
        assert_eq!(members, [a.account.public(), d.account.public()].into_iter().collect());
        assert_eq!(state.applied.last(), Some(&a_removes_b.hash()), "the current epoch is a's");
    }

    /// b, a junior admin, removes a; a, with parents from before, removes d. Nobody contested
    /// b's removal of a, so it stands, and a's concurrent removal of d falls with a.
    #[test]
    fn an_admin_removed_by_a_junior_cannot_remove_others_with_backdated_parents() {
        let (a, b, d) = (person(1), person(2), person(4));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, true);
        let add_d = add(&a, g, add_b.hash(), &d, false);
        let b_removes_a = op(&b, g, vec![add_d.hash()], Action::Remove { member: a.account.public() });
        let a_removes_d = op(&a, g, vec![add_d.hash()], Action::Remove { member: d.account.public() });
        let all = [&create, &add_b, &add_d, &a_removes_d, &b_removes_a];
        let state = replay(&g, &all);
        let reversed: Vec<&SignedOp> = all.iter().rev().copied().collect();
        assert_eq!(replay(&g, &reversed), state);
        let members: BTreeSet<AccountPublic> = state.members.keys().copied().collect();
        assert_eq!(members, [b.account.public(), d.account.public()].into_iter().collect());
    }

    /// An admin's quota is counted in a change's causal past, per account: the 2,049th change
    /// an account makes is refused on every device, whatever else each holds, and a new device
    /// of the same account does not start a fresh count.
    #[test]
    fn an_accounts_quota_is_counted_in_the_changes_past() {
        let (a, m) = (person(1), person(4));
        let (g, create) = create(&a);
        let mut log: BTreeMap<OpHash, SignedOp> = BTreeMap::new();
        log.insert(create.hash(), create.clone());
        let mut last = create.hash();
        for i in 1..MAX_OPS_PER_AUTHOR as u64 {
            let rekey = SignedOp::new(g, vec![last], a.cert.clone(), &a.device, i, Action::Rekey);
            last = rekey.hash();
            log.insert(last, rekey);
        }
        let full = add(&a, g, last, &m, false);
        assert!(matches!(Membership::admits(&g, &log, &full), Err(Error::Limit(_))));
        let device = DeviceKeys::generate(&mut crate::crypto::SeededEntropy::new(9)).unwrap();
        let other_device = SignedOp::new(g, vec![last], a.account.certify(&device, 0), &device, 0, Action::Rekey);
        assert!(matches!(Membership::admits(&g, &log, &other_device), Err(Error::Limit(_))));
        // One change earlier in the past, there was room.
        let early = add(&a, g, log[&last].parents[0], &m, false);
        Membership::admits(&g, &log, &early).unwrap();
    }

    /// What may enter the log at all: parents known, and the author had the right to make the
    /// change where it says it was made.
    #[test]
    fn only_changes_their_author_could_make_are_admitted() {
        let (a, b, m) = (person(1), person(2), person(4));
        let (g, create) = create(&a);
        let add_b = add(&a, g, create.hash(), &b, false);
        let log: BTreeMap<OpHash, SignedOp> = [&create, &add_b].iter().map(|o| (o.hash(), (*o).clone())).collect();
        let by_member = add(&b, g, add_b.hash(), &m, true);
        assert!(matches!(Membership::admits(&g, &log, &by_member), Err(Error::VoidOperation(_))));
        let orphan = add(&a, g, [7; 32], &m, false);
        assert!(matches!(Membership::admits(&g, &log, &orphan), Err(Error::MissingParent)));
        let fine = add(&a, g, add_b.hash(), &m, false);
        Membership::admits(&g, &log, &fine).unwrap();
        let elsewhere = add(&a, [1; 32], add_b.hash(), &m, false);
        assert!(matches!(Membership::admits(&g, &log, &elsewhere), Err(Error::Malformed { .. })));
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
