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
//! - Flags (system flags and keywords, [`FlagSet`]) merge one by one against the last synced
//!   flags: a flag changed on one side takes that side's value; a
//!   flag changed on both sides has necessarily changed the same way. With no synced flags (a
//!   first pairing), the union of both sides' flags is taken.
//! - A side that is empty while state knows messages on it is refused (an error), never taken
//!   as "everything was deleted".
//!
//! Inputs borrow what the caller read (a folder of 50,000 messages is planned without a copy
//! of its names); flags are typed sets, compared and merged as bits where they hold no
//! keyword (almost every message).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::flags::{Flag, FlagSet};

/// What state knows of one message: the pairing and the flags last synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair<'a> {
    /// Server UID.
    pub uid: u32,
    /// Maildir unique name (None: seen on the server but never fetched).
    pub local: Option<&'a str>,
    /// Flags last synced; None when never synced (first pairing).
    pub base: Option<FlagSet>,
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
    /// A side emptied while state knows more than [`FEW`] messages there is taken as that
    /// many deletions (the user said so, or they are explained by moves).
    pub allow_empty: bool,
}

/// At most this many messages known on a side that is now empty are taken as deleted without
/// asking (the last draft, inbox zero); more look like a folder that vanished or was emptied
/// wholesale, and are refused.
pub const FEW: usize = 3;

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Copy a server message into the Maildir with these flags.
    Download {
        /// UID.
        uid: u32,
        /// Flags.
        flags: FlagSet,
    },
    /// Copy a Maildir message to the server with these flags.
    Upload {
        /// Unique name.
        local: String,
        /// Flags.
        flags: FlagSet,
    },
    /// Change flags on the server.
    FarFlags {
        /// UID.
        uid: u32,
        /// Flags to add.
        add: FlagSet,
        /// Flags to remove.
        remove: FlagSet,
    },
    /// Change flags in the Maildir: what the file's flags should say (letters of the file
    /// that stand for nothing synced, such as `P`, are kept by the executor).
    NearFlags {
        /// Unique name.
        local: String,
        /// The new flags.
        flags: FlagSet,
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
        /// The flags.
        flags: FlagSet,
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
         {0} deletions"
    )]
    NearEmpty(usize),
    /// The server folder is empty.
    #[error(
        "the server folder is empty but state knows {0} messages in it; refusing to take that as \
         {0} deletions"
    )]
    FarEmpty(usize),
}

/// `flags` with one more system flag.
fn with(flags: &FlagSet, letter: char) -> FlagSet {
    let mut set = flags.clone();
    set.insert(Flag::System(letter));
    set
}

/// Plans one folder. `far`: UID -> flags; `near`: unique name -> flags; `pairs` name each UID
/// and each local name at most once (the state database's keys).
pub fn plan<F: AsRef<FlagSet>, N: AsRef<FlagSet>>(
    pairs: &[Pair<'_>],
    far: &BTreeMap<u32, F>,
    near: &HashMap<&str, N>,
    policy: Policy,
) -> Result<Vec<Action>, Refusal> {
    let known_near = pairs.iter().filter(|p| p.local.is_some()).count();
    let known_far = pairs.len();
    // Both sides empty: nothing is left to delete anywhere, the pairs are only forgotten.
    let refuse =
        |known: usize| known > FEW && !policy.allow_empty && !(near.is_empty() && far.is_empty());
    if near.is_empty() && refuse(known_near) {
        return Err(Refusal::NearEmpty(known_near));
    }
    if far.is_empty() && refuse(known_far) {
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
            (Some(f), Some((_, n))) if f == n && p.base.as_ref() == Some(f) => {}
            (Some(f), Some((local, n))) => both_sides(p, f, local, n, policy, &mut actions),
            (Some(f), None) if p.local.is_some() => near_gone(p, f, policy, &mut actions),
            // Seen on the server but never fetched (too large for a fetch): fetch it now.
            (Some(f), None) if policy.pull => actions.push(Action::Download {
                uid: p.uid,
                flags: f.clone(),
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
fn both_sides(
    p: &Pair,
    f: &FlagSet,
    local: &str,
    n: &FlagSet,
    policy: Policy,
    actions: &mut Vec<Action>,
) {
    let merged = crate::flags::merge(p.base.as_ref(), f, n);
    let far_target = if policy.push {
        merged.clone()
    } else {
        f.clone()
    };
    let near_target = if policy.pull { merged } else { n.clone() };
    if far_target != *f {
        actions.push(Action::FarFlags {
            uid: p.uid,
            add: far_target.minus(f),
            remove: f.minus(&far_target),
        });
    }
    if near_target != *n {
        actions.push(Action::NearFlags {
            local: local.to_string(),
            flags: near_target.clone(),
        });
    }
    // The synced state is what the side this pass does not write holds, so that a change
    // there that was not carried stays a change (one-way passes do not undo it next time);
    // both ways, both sides hold the same.
    let base = if policy.pull { far_target } else { near_target };
    if p.base.as_ref() != Some(&base) {
        actions.push(Action::Base {
            uid: p.uid,
            flags: base,
        });
    }
}

/// A pair whose local copy was deleted: expunged on the server where allowed, else marked.
fn near_gone(p: &Pair, f: &FlagSet, policy: Policy, actions: &mut Vec<Action>) {
    if policy.push && policy.expunge_far {
        actions.push(Action::ExpungeFar { uid: p.uid });
        actions.push(Action::Forget { uid: p.uid });
    } else if policy.push && !f.has('T') {
        actions.push(Action::FarFlags {
            uid: p.uid,
            add: with(&FlagSet::default(), 'T'),
            remove: FlagSet::default(),
        });
    }
}

/// A pair expunged on the server: removed locally where allowed, else marked deleted.
fn far_gone(p: &Pair, local: &str, n: &FlagSet, policy: Policy, actions: &mut Vec<Action>) {
    if policy.pull && policy.expunge_near {
        actions.push(Action::DeleteNear {
            local: local.to_string(),
        });
        actions.push(Action::Forget { uid: p.uid });
    } else if policy.pull && !n.has('T') {
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
fn new_far<F: AsRef<FlagSet>>(pairs: &[Pair], far: &BTreeMap<u32, F>, actions: &mut Vec<Action>) {
    let mut paired_uids: Vec<u32> = pairs.iter().map(|p| p.uid).collect();
    paired_uids.sort_unstable();
    for (uid, flags) in far
        .iter()
        .filter(|(u, _)| paired_uids.binary_search(u).is_err())
    {
        actions.push(Action::Download {
            uid: *uid,
            flags: flags.as_ref().clone(),
        });
    }
}

/// Maildir messages state does not know: uploaded, in name order (Maildir names start with
/// their delivery time, so the server numbers new messages in the order they arrived).
fn new_near<N: AsRef<FlagSet>>(pairs: &[Pair], near: &HashMap<&str, N>, actions: &mut Vec<Action>) {
    let paired_locals: HashSet<&str> = pairs.iter().filter_map(|p| p.local).collect();
    let mut new: Vec<(&str, &FlagSet)> = near
        .iter()
        .filter(|(l, _)| !paired_locals.contains(*l))
        .map(|(l, f)| (*l, f.as_ref()))
        .collect();
    new.sort_unstable();
    for (local, flags) in new {
        actions.push(Action::Upload {
            local: local.to_string(),
            flags: flags.clone(),
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
        allow_empty: false,
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

    fn pair<'a>(uid: u32, local: &'a str, base: &str) -> Pair<'a> {
        Pair {
            uid,
            local: Some(local),
            base: Some(base.into()),
        }
    }

    fn far(v: &[(u32, &str)]) -> BTreeMap<u32, FlagSet> {
        v.iter().map(|&(u, f)| (u, f.into())).collect()
    }

    fn near<'a>(v: &[(&'a str, &str)]) -> HashMap<&'a str, FlagSet> {
        v.iter().map(|&(l, f)| (l, f.into())).collect()
    }

    /// The merge, in the written form.
    fn merge(base: Option<&str>, far: &str, near: &str) -> String {
        let base = base.map(FlagSet::parse);
        crate::flags::merge(base.as_ref(), &far.into(), &near.into()).to_string()
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
        f.insert(999, FlagSet::default());
        let mut n = near(n);
        n.insert("anchor", FlagSet::default());
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
    fn unchanged_messages_plan_nothing_and_odd_text_reads_the_same() {
        for flags in ["", "S", "DFRST", "FS $Junk", " work"] {
            let p = pair(1, "m1", flags);
            assert_eq!(
                with_anchor(&[p], &[(1, flags)], &[("m1", flags)], BOTH),
                vec![],
                "{flags:?}"
            );
        }
        // Text not in the written form reads as the same set: nothing to do, nothing to record.
        assert_eq!(
            with_anchor(&[pair(1, "m1", "SF")], &[(1, "SF")], &[("m1", "SF")], BOTH),
            vec![]
        );
    }

    #[test]
    fn an_emptied_side_is_refused_unless_few_both_or_allowed() {
        let uids: Vec<u32> = (1..=FEW as u32 + 1).collect();
        let names: Vec<String> = uids.iter().map(|u| format!("m{u}")).collect();
        let pairs: Vec<Pair> = uids
            .iter()
            .zip(&names)
            .map(|(&u, n)| pair(u, n, ""))
            .collect();
        let all_far: Vec<(u32, &str)> = uids.iter().map(|&u| (u, "")).collect();
        let all_near: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
        let many = FEW + 1;
        assert_eq!(
            plan(&pairs, &far(&all_far), &near(&[]), BOTH_EXPUNGE),
            Err(Refusal::NearEmpty(many))
        );
        assert_eq!(
            plan(&pairs, &far(&[]), &near(&all_near), BOTH_EXPUNGE),
            Err(Refusal::FarEmpty(many))
        );
        // Said to be right: carried out as the policy says.
        let allowed = Policy {
            allow_empty: true,
            ..BOTH_EXPUNGE
        };
        let actions = plan(&pairs, &far(&all_far), &near(&[]), allowed).unwrap();
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::ExpungeFar { .. }))
                .count(),
            many
        );
        // A few (the last draft, inbox zero) need no word.
        let few = &pairs[..FEW];
        let actions = plan(few, &far(&all_far[..FEW]), &near(&[]), BOTH_EXPUNGE).unwrap();
        assert_eq!(actions.len(), 2 * FEW, "{actions:?}");
        // Both sides empty: only forgotten.
        let actions = plan(&pairs, &far(&[]), &near(&[]), BOTH_EXPUNGE).unwrap();
        assert!(
            actions.iter().all(|a| matches!(a, Action::Forget { .. })),
            "{actions:?}"
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
            let policy = Policy { pull, push, expunge_far: xf, expunge_near: xn, allow_empty: false };
            let locals: Vec<String> = (1..=states.len()).map(|uid| format!("m{uid}")).collect();
            let bases: Vec<String> = states.iter().map(|s| letters(s.1)).collect();
            let fars: Vec<String> = states.iter().map(|s| letters(s.2)).collect();
            let nears: Vec<String> = states.iter().map(|s| letters(s.3)).collect();
            let mut pairs = Vec::new();
            let mut f = BTreeMap::new();
            let mut n = HashMap::new();
            for (i, (presence, ..)) in states.iter().enumerate() {
                let uid = i as u32 + 1;
                pairs.push(Pair { uid, local: Some(locals[i].as_str()), base: Some(bases[i].as_str().into()) });
                if presence & 1 != 0 { f.insert(uid, FlagSet::from(fars[i].as_str())); }
                if presence & 2 != 0 { n.insert(locals[i].as_str(), FlagSet::from(nears[i].as_str())); }
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
