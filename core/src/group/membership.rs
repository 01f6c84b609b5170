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
pub const MAX_DEVICES_PER_ADD: usize = 16;
/// Member accounts in one group. Keeps every key share inside one envelope.
pub const MAX_MEMBERS: usize = 128;
pub const MAX_GROUP_NAME_LEN: usize = 128;

pub type OpHash = [u8; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Founds the group; the author's account becomes its first member and admin.
    Create { name: String },
    /// Adds an account, with the devices of it the author knows.
    Add {
        member: AccountPublic,
        name: Option<String>,
        devices: Vec<DeviceCert>,
        admin: bool,
    },
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
        let mut op = SignedOp {
            group,
            parents,
            author,
            created_ms,
            action,
            signature: [0; 64],
        };
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
            Action::Create { name } => {
                w.string(name);
            }
            Action::Add {
                member,
                name,
                devices,
                admin,
            } => {
                w.raw(member)
                    .string(name.as_deref().unwrap_or(""))
                    .u8(devices.len() as u8);
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
            return Err(Error::TooLong {
                what: "operation parents",
                len: n_parents,
                max: MAX_OP_PARENTS,
            });
        }
        let parents = (0..n_parents).map(|_| r.array()).collect::<Result<Vec<_>>>()?;
        let author = DeviceCert::decode(&mut r)?;
        let created_ms = r.u64()?;
        let action = match r.u8()? {
            1 => Action::Create {
                name: r.string(MAX_GROUP_NAME_LEN)?,
            },
            2 => {
                let member = r.array()?;
                let name = r.string(MAX_NAME_LEN)?;
                let n = r.u8()? as usize;
                if n > MAX_DEVICES_PER_ADD {
                    return Err(Error::TooLong {
                        what: "devices in an add",
                        len: n,
                        max: MAX_DEVICES_PER_ADD,
                    });
                }
                let devices = (0..n).map(|_| DeviceCert::decode(&mut r)).collect::<Result<Vec<_>>>()?;
                if devices.iter().any(|d| d.account != member) {
                    return Err(Error::Malformed {
                        what: "membership operation",
                        why: "added device of another account",
                    });
                }
                let admin = r.bool()?;
                Action::Add {
                    member,
                    name: (!name.is_empty()).then_some(name),
                    devices,
                    admin,
                }
            }
            3 => Action::Remove { member: r.array()? },
            4 => Action::Rekey,
            _ => {
                return Err(Error::Malformed {
                    what: "membership operation",
                    why: "unknown action",
                });
            }
        };
        let signature = r.array()?;
        r.finish()?;
        let op = SignedOp {
            group,
            parents,
            author,
            created_ms,
            action,
            signature,
        };
        let mut signed = OP_CONTEXT.to_vec();
        signed.extend_from_slice(&op.unsigned_bytes());
        crate::identity::verify_signature(&op.author.device, &signed, &op.signature, "membership operation")?;
        Ok(op)
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
}

impl Membership {
    /// Replays every operation in a deterministic topological order.
    pub fn replay(group: &GroupId, ops: &BTreeMap<OpHash, SignedOp>) -> Membership {
        let mut state = Membership::default();
        let mut children: BTreeMap<OpHash, Vec<OpHash>> = BTreeMap::new();
        let mut missing: BTreeMap<OpHash, usize> = BTreeMap::new();
        let mut ready = BTreeSet::new();
        for (hash, op) in ops {
            let unknown = op.parents.iter().filter(|p| !ops.contains_key(*p)).count();
            if unknown > 0 || op.group != *group {
                state.waiting += 1;
                continue;
            }
            missing.insert(*hash, op.parents.len());
            for p in &op.parents {
                children.entry(*p).or_default().push(*hash);
            }
            if op.parents.is_empty() {
                ready.insert(*hash);
            }
        }
        let mut reached = BTreeSet::new();
        while let Some(hash) = ready.pop_first() {
            reached.insert(hash);
            let op = &ops[&hash];
            if state.apply(op) {
                state.applied.push(hash);
                for p in &op.parents {
                    state.heads.remove(p);
                }
                state.heads.insert(hash);
            }
            for child in children.get(&hash).into_iter().flatten() {
                let left = missing.get_mut(child).expect("every child was counted");
                *left -= 1;
                if *left == 0 {
                    ready.insert(*child);
                }
            }
        }
        state.waiting += missing.len() - reached.len();
        state
    }

    fn is_admin(&self, account: &AccountPublic) -> bool {
        self.members.get(account).is_some_and(|m| m.admin)
    }

    /// Applies one operation if it is valid here; says whether it was.
    fn apply(&mut self, op: &SignedOp) -> bool {
        let author = op.author.account;
        match &op.action {
            Action::Create { name } => {
                if !self.applied.is_empty() || !op.parents.is_empty() {
                    return false;
                }
                self.name = name.clone();
                self.members.insert(
                    author,
                    Member {
                        name: None,
                        admin: true,
                    },
                );
            }
            Action::Add {
                member,
                name,
                devices,
                admin,
            } => {
                if !self.is_admin(&author) || self.members.len() >= MAX_MEMBERS {
                    return false;
                }
                let existing_admin = self.members.get(member).is_some_and(|m| m.admin);
                self.members.insert(
                    *member,
                    Member {
                        name: name.clone(),
                        admin: *admin || existing_admin,
                    },
                );
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

    fn op(p: &Person, parents: Vec<OpHash>, action: Action) -> SignedOp {
        SignedOp::new([7; 32], parents, p.cert.clone(), &p.device, 1, action)
    }

    #[test]
    fn replay_is_order_independent_and_remove_wins() {
        let (a, b, c) = (person(1), person(2), person(3));
        let create = op(&a, vec![], Action::Create { name: "g".into() });
        let add_b = op(
            &a,
            vec![create.hash()],
            Action::Add {
                member: b.account.public(),
                name: None,
                devices: vec![],
                admin: true,
            },
        );
        let add_c = op(
            &a,
            vec![add_b.hash()],
            Action::Add {
                member: c.account.public(),
                name: None,
                devices: vec![],
                admin: false,
            },
        );
        // Concurrently: a removes b, while b (still an admin in its view) removes c.
        let a_removes_b = op(
            &a,
            vec![add_c.hash()],
            Action::Remove {
                member: b.account.public(),
            },
        );
        let b_removes_c = op(
            &b,
            vec![add_c.hash()],
            Action::Remove {
                member: c.account.public(),
            },
        );
        let all = [create, add_b, add_c, a_removes_b.clone(), b_removes_c.clone()];
        let map: BTreeMap<_, _> = all.iter().map(|o| (o.hash(), o.clone())).collect();
        let state = Membership::replay(&[7; 32], &map);
        // Round trip through bytes, in reverse insertion, gives the same state.
        let map2: BTreeMap<_, _> = all
            .iter()
            .rev()
            .map(|o| SignedOp::from_bytes(&o.to_bytes()).unwrap())
            .map(|o| (o.hash(), o))
            .collect();
        assert_eq!(Membership::replay(&[7; 32], &map2), state);
        assert!(state.members.contains_key(&a.account.public()));
        assert!(!state.members.contains_key(&b.account.public()));
        assert_eq!(state.heads.len(), if state.applied.len() == 5 { 2 } else { 1 });
    }

    #[test]
    fn non_admin_cannot_remove_and_tampering_is_caught() {
        let (a, b) = (person(1), person(2));
        let create = op(&a, vec![], Action::Create { name: "g".into() });
        let add_b = op(
            &a,
            vec![create.hash()],
            Action::Add {
                member: b.account.public(),
                name: None,
                devices: vec![],
                admin: false,
            },
        );
        let b_removes_a = op(
            &b,
            vec![add_b.hash()],
            Action::Remove {
                member: a.account.public(),
            },
        );
        let map: BTreeMap<_, _> = [create, add_b, b_removes_a.clone()]
            .into_iter()
            .map(|o| (o.hash(), o))
            .collect();
        let state = Membership::replay(&[7; 32], &map);
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
