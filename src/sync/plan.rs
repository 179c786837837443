//! The sync planner, pure: the last synced state, the server ("far") and the Maildir ("near")
//! listings of one folder, and the channel's policy -> the actions that bring both sides
//! together. No I/O: tested here as truth tables over every case.
//!
//! Rules (the README's "Sync semantics" section says the same):
//! - A message only on one side and unknown to state is new: it is copied to the other side
//!   when the direction allows.
//! - A message state knows that is gone from one side was deleted there: the deletion is
//!   carried to the other side only where `expunge` allows; otherwise the copy left there is
//!   marked deleted (\Deleted / Maildir T) and stays.
//! - Flags (system flags and keywords, in the written form of [`crate::flags`]) merge one by
//!   one against the last synced flags: a flag changed on one side takes that side's value; a
//!   flag changed on both sides has necessarily changed the same way. With no synced flags (a
//!   first pairing), the union of both sides' flags is taken.
//! - A side that is empty while state knows messages on it is refused (an error), never taken
//!   as "everything was deleted".
//!
//! Inputs borrow what the caller read (a folder of 50,000 messages is planned without a copy
//! of its names), and flags are in the written form of [`crate::flags`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::flags::{Flag, FlagSet};

/// What state knows of one message: the pairing and the flags last synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair<'a> {
    /// Server UID.
    pub uid: u32,
    /// Maildir unique name (None: seen on the server but never fetched).
    pub local: Option<&'a str>,
    /// Flags last synced; None when never synced (first pairing).
    pub base: Option<&'a str>,
}

/// Which ways changes flow and where deletions may be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Server to Maildir.
    pub pull: bool,
    /// Maildir to server.
    pub push: bool,
    /// Messages deleted in the Maildir may be expunged on the server.
    pub expunge_far: bool,
    /// Messages deleted on the server may be removed from the Maildir.
    pub expunge_near: bool,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Copy a server message into the Maildir with these flags.
    Download {
        /// UID.
        uid: u32,
        /// Flags (letters).
        flags: String,
    },
    /// Copy a Maildir message to the server with these flags.
    Upload {
        /// Unique name.
        local: String,
        /// Flags (letters).
        flags: String,
    },
    /// Change flags on the server.
    FarFlags {
        /// UID.
        uid: u32,
        /// Letters to add.
        add: String,
        /// Letters to remove.
        remove: String,
    },
    /// Change flags in the Maildir: what the file's flags should say (letters of the file
    /// that stand for nothing synced, such as `P`, are kept by the executor).
    NearFlags {
        /// Unique name.
        local: String,
        /// The new flags.
        flags: String,
    },
    /// Expunge a message on the server (mark it deleted, then remove exactly it).
    ExpungeFar {
        /// UID.
        uid: u32,
    },
    /// Remove a message file from the Maildir.
    DeleteNear {
        /// Unique name.
        local: String,
    },
    /// Record the pair's new synced flags.
    Base {
        /// UID.
        uid: u32,
        /// Letters.
        flags: String,
    },
    /// Forget the pair (both copies are gone).
    Forget {
        /// UID.
        uid: u32,
    },
}

/// A refusal to plan: a side is empty while state knows messages there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The Maildir folder is empty.
    #[error(
        "the Maildir folder is empty but state knows {0} messages in it; refusing to take that as \
         {0} deletions (restore the folder, or remove the account's state to start over)"
    )]
    NearEmpty(usize),
    /// The server folder is empty.
    #[error(
        "the server folder is empty but state knows {0} messages in it; refusing to take that as \
         {0} deletions (if that is right, remove the account's state to start over)"
    )]
    FarEmpty(usize),
}

/// Merges flag by flag (see the module rules).
pub fn merge(base: Option<&str>, far: &str, near: &str) -> String {
    let base = base.map(FlagSet::parse);
    let (far, near) = (FlagSet::parse(far), FlagSet::parse(near));
    let every: BTreeSet<&Flag> = far
        .iter()
        .chain(near.iter())
        .chain(base.iter().flat_map(FlagSet::iter))
        .collect();
    every
        .into_iter()
        .filter(|&flag| {
            let (f, n) = (far.contains(flag), near.contains(flag));
            match &base {
                Some(b) if f == b.contains(flag) => n,
                Some(_) => f,
                None => f || n,
            }
        })
        .cloned()
        .collect::<FlagSet>()
        .to_string()
}

/// The written form, normalised.
fn synced(flags: &str) -> String {
    FlagSet::parse(flags).to_string()
}

fn has(flags: &str, letter: char) -> bool {
    FlagSet::parse(flags).has(letter)
}

/// `flags` with one more system flag.
fn with(flags: &str, letter: char) -> String {
    let mut set = FlagSet::parse(flags);
    set.insert(Flag::System(letter));
    set.to_string()
}

/// (flags to add, flags to remove) to go from `from` to `to`.
fn diff(from: &str, to: &str) -> (String, String) {
    let (from, to) = (FlagSet::parse(from), FlagSet::parse(to));
    let add: FlagSet = to.iter().filter(|f| !from.contains(f)).cloned().collect();
    let remove: FlagSet = from.iter().filter(|f| !to.contains(f)).cloned().collect();
    (add.to_string(), remove.to_string())
}

/// Whether `flags` is already in the written form with system flags only (what almost every
/// message has): then equal texts are equal flags and need no parsing.
pub fn plain(flags: &str) -> bool {
    let b = flags.as_bytes();
    b.iter().all(|&c| is_system_byte(c)) && b.windows(2).all(|w| w[0] < w[1])
}

fn is_system_byte(c: u8) -> bool {
    crate::flags::SYSTEM
        .iter()
        .any(|&(_, l)| l == char::from(c))
}

/// Plans one folder. `far`: UID -> flags; `near`: unique name -> flags; `pairs` name each UID
/// and each local name at most once (the state database's keys).
pub fn plan<F: AsRef<str>, N: AsRef<str>>(
    pairs: &[Pair<'_>],
    far: &BTreeMap<u32, F>,
    near: &HashMap<&str, N>,
    policy: Policy,
) -> Result<Vec<Action>, Refusal> {
    let known_near = pairs.iter().filter(|p| p.local.is_some()).count();
    let known_far = pairs.len();
    if near.is_empty() && known_near > 0 {
        return Err(Refusal::NearEmpty(known_near));
    }
    if far.is_empty() && known_far > 0 {
        return Err(Refusal::FarEmpty(known_far));
    }
    let mut actions = Vec::new();
    // How many messages of each side state pairs: when that is all of them (a no-op), no
    // set of the paired ones is built to find the new ones.
    let (mut paired_far, mut paired_near) = (0, 0);
    for p in pairs {
        let f = far.get(&p.uid).map(AsRef::as_ref);
        let n = p
            .local
            .and_then(|l| near.get(l).map(|flags| (l, flags.as_ref())));
        paired_far += usize::from(f.is_some());
        paired_near += usize::from(n.is_some());
        match (f, n) {
            // Unchanged on both sides since the last sync: the no-op case, kept cheap.
            (Some(f), Some((_, n))) if f == n && p.base == Some(f) && plain(f) => {}
            (Some(f), Some((local, n))) => both_sides(p, f, local, n, policy, &mut actions),
            (Some(f), None) if p.local.is_some() => near_gone(p, f, policy, &mut actions),
            // Seen on the server but never fetched (too large for a fetch): fetch it now.
            (Some(f), None) if policy.pull => actions.push(Action::Download {
                uid: p.uid,
                flags: synced(f),
            }),
            (Some(_), None) => {}
            (None, Some((local, n))) => far_gone(p, local, n, policy, &mut actions),
            (None, None) => actions.push(Action::Forget { uid: p.uid }),
        }
    }
    if policy.pull && paired_far < far.len() {
        new_far(pairs, far, &mut actions);
    }
    if policy.push && paired_near < near.len() {
        new_near(pairs, near, &mut actions);
    }
    Ok(actions)
}

/// A pair on both sides: flags merged, carried where the direction allows.
fn both_sides(p: &Pair, f: &str, local: &str, n: &str, policy: Policy, actions: &mut Vec<Action>) {
    let merged = merge(p.base, &synced(f), &synced(n));
    let far_target = if policy.push {
        merged.clone()
    } else {
        synced(f)
    };
    let near_target = if policy.pull { merged } else { synced(n) };
    if far_target != synced(f) {
        let (add, remove) = diff(f, &far_target);
        actions.push(Action::FarFlags {
            uid: p.uid,
            add,
            remove,
        });
    }
    if near_target != synced(n) {
        actions.push(Action::NearFlags {
            local: local.to_string(),
            flags: near_target.clone(),
        });
    }
    // The synced state is what the side this pass does not write holds, so that a change
    // there that was not carried stays a change (one-way passes do not undo it next time);
    // both ways, both sides hold the same.
    let base = if policy.pull { far_target } else { near_target };
    if p.base != Some(base.as_str()) {
        actions.push(Action::Base {
            uid: p.uid,
            flags: base,
        });
    }
}

/// A pair whose local copy was deleted: expunged on the server where allowed, else marked.
fn near_gone(p: &Pair, f: &str, policy: Policy, actions: &mut Vec<Action>) {
    if policy.push && policy.expunge_far {
        actions.push(Action::ExpungeFar { uid: p.uid });
        actions.push(Action::Forget { uid: p.uid });
    } else if policy.push && !has(f, 'T') {
        actions.push(Action::FarFlags {
            uid: p.uid,
            add: with("", 'T'),
            remove: String::new(),
        });
    }
}

/// A pair expunged on the server: removed locally where allowed, else marked deleted.
fn far_gone(p: &Pair, local: &str, n: &str, policy: Policy, actions: &mut Vec<Action>) {
    if policy.pull && policy.expunge_near {
        actions.push(Action::DeleteNear {
            local: local.to_string(),
        });
        actions.push(Action::Forget { uid: p.uid });
    } else if policy.pull && !has(n, 'T') {
        let flags = with(n, 'T');
        actions.push(Action::NearFlags {
            local: local.to_string(),
            flags: flags.clone(),
        });
        // The pair stays with the local copy's flags as synced: a pass that rebuilds the
        // server side from state (QRESYNC) must not take the new T for a local change to
        // carry to a message that is gone.
        actions.push(Action::Base { uid: p.uid, flags });
    }
}

/// Server messages state does not know: downloaded.
fn new_far<F: AsRef<str>>(pairs: &[Pair], far: &BTreeMap<u32, F>, actions: &mut Vec<Action>) {
    let mut paired_uids: Vec<u32> = pairs.iter().map(|p| p.uid).collect();
    paired_uids.sort_unstable();
    for (uid, flags) in far
        .iter()
        .filter(|(u, _)| paired_uids.binary_search(u).is_err())
    {
        actions.push(Action::Download {
            uid: *uid,
            flags: synced(flags.as_ref()),
        });
    }
}

/// Maildir messages state does not know: uploaded, in name order (Maildir names start with
/// their delivery time, so the server numbers new messages in the order they arrived).
fn new_near<N: AsRef<str>>(pairs: &[Pair], near: &HashMap<&str, N>, actions: &mut Vec<Action>) {
    let paired_locals: HashSet<&str> = pairs.iter().filter_map(|p| p.local).collect();
    let mut new: Vec<(&str, &str)> = near
        .iter()
        .filter(|(l, _)| !paired_locals.contains(*l))
        .map(|(l, f)| (*l, f.as_ref()))
        .collect();
    new.sort_unstable();
    for (local, flags) in new {
        actions.push(Action::Upload {
            local: local.to_string(),
            flags: synced(flags),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Policy = Policy {
        pull: true,
        push: true,
        expunge_far: false,
        expunge_near: false,
    };
    const BOTH_EXPUNGE: Policy = Policy {
        expunge_far: true,
        expunge_near: true,
        ..BOTH
    };
    const PULL: Policy = Policy {
        push: false,
        ..BOTH_EXPUNGE
    };
    const PUSH: Policy = Policy {
        pull: false,
        ..BOTH_EXPUNGE
    };

    fn pair<'a>(uid: u32, local: &'a str, base: &'a str) -> Pair<'a> {
        Pair {
            uid,
            local: Some(local),
            base: Some(base),
        }
    }

    fn far<'a>(v: &[(u32, &'a str)]) -> BTreeMap<u32, &'a str> {
        v.iter().copied().collect()
    }

    fn near<'a>(v: &[(&'a str, &'a str)]) -> HashMap<&'a str, &'a str> {
        v.iter().copied().collect()
    }

    /// A second message present on both sides and unchanged, so no side is ever empty.
    fn with_anchor(
        pairs: &[Pair],
        f: &[(u32, &str)],
        n: &[(&str, &str)],
        policy: Policy,
    ) -> Vec<Action> {
        let mut pairs = pairs.to_vec();
        pairs.push(pair(999, "anchor", ""));
        let mut f = far(f);
        f.insert(999, "");
        let mut n = near(n);
        n.insert("anchor", "");
        let mut actions = plan(&pairs, &f, &n, policy).unwrap();
        actions.sort();
        actions
    }

    #[test]
    fn per_flag_merge_truth_table() {
        // Every (base, far, near) combination of one flag: a change on one side wins, both
        // sides can only have changed the same way, no base takes the union.
        for (b, f, n, want) in [
            (Some(false), false, false, false),
            (Some(false), true, false, true),
            (Some(false), false, true, true),
            (Some(false), true, true, true),
            (Some(true), true, true, true),
            (Some(true), false, true, false),
            (Some(true), true, false, false),
            (Some(true), false, false, false),
            (None, false, false, false),
            (None, true, false, true),
            (None, false, true, true),
            (None, true, true, true),
        ] {
            let s = |x: bool| if x { "S" } else { "" };
            let base = b.map(s);
            assert_eq!(
                merge(base, s(f), s(n)),
                s(want),
                "base {b:?} far {f} near {n}"
            );
        }
        // Independent flags merge independently: far flagged it, near read it.
        assert_eq!(merge(Some(""), "F", "S"), "FS");
        assert_eq!(merge(Some("FS"), "S", "FRS"), "RS");
        // Keywords follow the same table.
        assert_eq!(merge(Some(" a"), " a b", ""), " b");
        assert_eq!(merge(None, " a", "S b"), "S a b");
    }

    #[test]
    fn presence_truth_table() {
        // (in state, on far, on near) for each policy.
        let p = pair(1, "m1", "S");
        // state, far, near: nothing to do.
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[(1, "S")], &[("m1", "S")], BOTH),
            vec![]
        );
        // state, far, no near: deleted locally.
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[(1, "S")], &[], BOTH),
            vec![Action::FarFlags {
                uid: 1,
                add: "T".into(),
                remove: "".into()
            }]
        );
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[(1, "S")], &[], BOTH_EXPUNGE),
            vec![Action::ExpungeFar { uid: 1 }, Action::Forget { uid: 1 }]
        );
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[(1, "S")], &[], PULL),
            vec![]
        );
        // state, no far, near: expunged on the server (marked deleted here, and recorded so).
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[], &[("m1", "S")], BOTH),
            vec![
                Action::NearFlags {
                    local: "m1".into(),
                    flags: "ST".into()
                },
                Action::Base {
                    uid: 1,
                    flags: "ST".into()
                }
            ]
        );
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[], &[("m1", "S")], BOTH_EXPUNGE),
            vec![
                Action::DeleteNear { local: "m1".into() },
                Action::Forget { uid: 1 }
            ]
        );
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[], &[("m1", "S")], PUSH),
            vec![]
        );
        // state, neither: forget.
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[], &[], BOTH),
            vec![Action::Forget { uid: 1 }]
        );
        // no state, far only: new on the server.
        assert_eq!(
            with_anchor(&[], &[(7, "FS")], &[], BOTH),
            vec![Action::Download {
                uid: 7,
                flags: "FS".into()
            }]
        );
        assert_eq!(with_anchor(&[], &[(7, "FS")], &[], PUSH), vec![]);
        // no state, near only: new in the Maildir.
        assert_eq!(
            with_anchor(&[], &[], &[("new1", "RS")], BOTH),
            vec![Action::Upload {
                local: "new1".into(),
                flags: "RS".into()
            }]
        );
        assert_eq!(with_anchor(&[], &[], &[("new1", "RS")], PULL), vec![]);
        // seen on the server but never fetched: fetch it now.
        let skipped = Pair {
            uid: 3,
            local: None,
            base: None,
        };
        assert_eq!(
            with_anchor(&[skipped], &[(3, "")], &[], BOTH),
            vec![Action::Download {
                uid: 3,
                flags: "".into()
            }]
        );
    }

    #[test]
    fn flag_changes_flow_by_direction() {
        let p = pair(1, "m1", "");
        // Far read it, near flagged it: both get both.
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[(1, "S")], &[("m1", "F")], BOTH),
            vec![
                Action::FarFlags {
                    uid: 1,
                    add: "F".into(),
                    remove: "".into()
                },
                Action::NearFlags {
                    local: "m1".into(),
                    flags: "FS".into()
                },
                Action::Base {
                    uid: 1,
                    flags: "FS".into()
                },
            ]
        );
        // Pull only: the near change stays local, the far change comes down.
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[(1, "S")], &[("m1", "F")], PULL),
            vec![
                Action::NearFlags {
                    local: "m1".into(),
                    flags: "FS".into()
                },
                Action::Base {
                    uid: 1,
                    flags: "S".into()
                },
            ]
        );
        // Push only: the far change stays there, and stays a change (the synced state is
        // the near side's, so the next push-only pass does not take S away on the server).
        assert_eq!(
            with_anchor(std::slice::from_ref(&p), &[(1, "S")], &[("m1", "F")], PUSH),
            vec![
                Action::FarFlags {
                    uid: 1,
                    add: "F".into(),
                    remove: "".into()
                },
                Action::Base {
                    uid: 1,
                    flags: "F".into()
                },
            ]
        );
        // Keywords merge like system flags: near tagged it, far read it.
        assert_eq!(
            with_anchor(
                std::slice::from_ref(&p),
                &[(1, "S $Junk")],
                &[("m1", " work")],
                BOTH
            ),
            vec![
                Action::FarFlags {
                    uid: 1,
                    add: " work".into(),
                    remove: "".into()
                },
                Action::NearFlags {
                    local: "m1".into(),
                    flags: "S $Junk work".into()
                },
                Action::Base {
                    uid: 1,
                    flags: "S $Junk work".into()
                },
            ]
        );
        // A keyword removed on one side goes on the other.
        assert_eq!(
            with_anchor(
                &[pair(1, "m1", "S $Junk")],
                &[(1, "S")],
                &[("m1", "S $Junk")],
                BOTH
            ),
            vec![
                Action::NearFlags {
                    local: "m1".into(),
                    flags: "S".into()
                },
                Action::Base {
                    uid: 1,
                    flags: "S".into()
                },
            ]
        );
        // Removal on one side wins over the unchanged other side.
        assert_eq!(
            with_anchor(&[pair(1, "m1", "FS")], &[(1, "S")], &[("m1", "FS")], BOTH),
            vec![
                Action::NearFlags {
                    local: "m1".into(),
                    flags: "S".into()
                },
                Action::Base {
                    uid: 1,
                    flags: "S".into()
                },
            ]
        );
    }

    #[test]
    fn unchanged_messages_plan_nothing_and_odd_text_is_still_normalised() {
        for flags in ["", "S", "DFRST", "FS $Junk", " work"] {
            let p = pair(1, "m1", flags);
            assert_eq!(
                with_anchor(&[p], &[(1, flags)], &[("m1", flags)], BOTH),
                vec![],
                "{flags:?}"
            );
        }
        // The same text on every side, but not in the written form: recorded normalised.
        assert_eq!(
            with_anchor(&[pair(1, "m1", "SF")], &[(1, "SF")], &[("m1", "SF")], BOTH),
            vec![Action::Base {
                uid: 1,
                flags: "FS".into()
            }]
        );
    }

    #[test]
    fn an_empty_side_is_refused_not_taken_as_deletions() {
        let pairs = vec![pair(1, "m1", ""), pair(2, "m2", "")];
        let f = far(&[(1, ""), (2, "")]);
        assert_eq!(
            plan(&pairs, &f, &near(&[]), BOTH_EXPUNGE),
            Err(Refusal::NearEmpty(2))
        );
        let n = near(&[("m1", ""), ("m2", "")]);
        assert_eq!(
            plan(&pairs, &far(&[]), &n, BOTH_EXPUNGE),
            Err(Refusal::FarEmpty(2))
        );
        // Empty and unknown to state is simply empty.
        assert_eq!(plan(&[], &far(&[]), &near(&[]), BOTH_EXPUNGE), Ok(vec![]));
    }

    proptest::proptest! {
        /// Whatever the inputs, nothing is deleted where the policy forbids it, and every
        /// message present on one side ends up handled (paired, copied, or left by policy).
        #[test]
        fn deletions_only_where_allowed(
            states in proptest::collection::vec((0u8..4, 0u8..32, 0u8..32, 0u8..32), 1..12),
            pull: bool, push: bool, xf: bool, xn: bool,
        ) {
            let letters = |mask: u8| -> String { crate::flags::SYSTEM.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, (_, c))| *c).collect() };
            let policy = Policy { pull, push, expunge_far: xf, expunge_near: xn };
            let locals: Vec<String> = (1..=states.len()).map(|uid| format!("m{uid}")).collect();
            let bases: Vec<String> = states.iter().map(|s| letters(s.1)).collect();
            let fars: Vec<String> = states.iter().map(|s| letters(s.2)).collect();
            let nears: Vec<String> = states.iter().map(|s| letters(s.3)).collect();
            let mut pairs = Vec::new();
            let mut f = BTreeMap::new();
            let mut n = HashMap::new();
            for (i, (presence, ..)) in states.iter().enumerate() {
                let uid = i as u32 + 1;
                pairs.push(Pair { uid, local: Some(locals[i].as_str()), base: Some(bases[i].as_str()) });
                if presence & 1 != 0 { f.insert(uid, fars[i].as_str()); }
                if presence & 2 != 0 { n.insert(locals[i].as_str(), nears[i].as_str()); }
            }
            if let Ok(actions) = plan(&pairs, &f, &n, policy) {
                for a in &actions {
                    match a {
                        Action::ExpungeFar { uid } => {
                            proptest::prop_assert!(xf && push);
                            proptest::prop_assert!(!n.contains_key(format!("m{uid}").as_str()), "expunged a message still in the Maildir");
                        }
                        Action::DeleteNear { local } => {
                            proptest::prop_assert!(xn && pull);
                            proptest::prop_assert!(!f.contains_key(&local[1..].parse::<u32>().unwrap()), "deleted a message still on the server");
                        }
                        Action::FarFlags { .. } | Action::Upload { .. } => proptest::prop_assert!(push),
                        Action::NearFlags { .. } | Action::Download { .. } => proptest::prop_assert!(pull),
                        _ => {}
                    }
                }
            }
        }
    }
}
