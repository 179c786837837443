//! The POP3 fetch plan, pure: the server listing + what state knows + the policy -> actions.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Mode;
use crate::state::Pop3Known;

/// One message of the server listing, with the identity mailferry gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Message number in this session.
    pub msg: u32,
    /// Stable identity (see [`identities`]); `None` when the server offers no way to make one.
    pub id: Option<String>,
    /// Size as the server reports it (octets, CRLF line ends).
    pub size: u64,
}

/// What the user asked for.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Keep or delete.
    pub mode: Mode,
    /// In keep mode: delete a message this long after it was first fetched.
    pub delete_after: Option<Duration>,
    /// Fetch at most this many messages.
    pub max_messages: Option<u64>,
    /// Skip messages larger than this.
    pub max_size: Option<u64>,
    /// The current time (unix seconds).
    pub now: i64,
}

/// What a run will do, as indexes into the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Messages to fetch (in listing order); in delete mode each is deleted once it is safe.
    pub fetch: Vec<usize>,
    /// Messages fetched before and now due for deletion.
    pub delete: Vec<usize>,
    /// New messages over `max_size`, left on the server.
    pub too_large: Vec<usize>,
    /// New messages left for a later run by `max_messages`.
    pub deferred: usize,
}

impl Plan {
    /// Whether the run has nothing to do on the server.
    pub fn is_empty(&self) -> bool {
        self.fetch.is_empty() && self.delete.is_empty()
    }
}

/// Plans a run. A message is "known" when state recorded it as fetched; `known` gives the time
/// it was first fetched by id.
pub fn plan(listing: &[Listed], known: &Pop3Known, policy: &Policy) -> Plan {
    let mut plan = Plan::default();
    let limit = policy.max_messages.unwrap_or(u64::MAX);
    for (i, m) in listing.iter().enumerate() {
        match m.id.as_deref().and_then(|id| known.get(id)) {
            Some(first_seen) => {
                let due = match (policy.mode, policy.delete_after) {
                    (Mode::Delete, _) => true,
                    (Mode::Keep, Some(age)) => {
                        policy.now.saturating_sub(first_seen) >= age.as_secs() as i64
                    }
                    (Mode::Keep, None) => false,
                };
                if due {
                    plan.delete.push(i);
                }
            }
            None => {
                if policy.max_size.is_some_and(|max| m.size > max) {
                    plan.too_large.push(i);
                } else if (plan.fetch.len() as u64) < limit {
                    plan.fetch.push(i);
                } else {
                    plan.deferred += 1;
                }
            }
        }
    }
    plan
}

/// Each listed message's UIDL (in listing order), and which of them another message shares.
#[derive(Debug)]
pub struct Uidls {
    per_msg: Vec<Option<Box<str>>>,
    shared: Vec<bool>,
}

impl Uidls {
    /// Matches the UIDL listing to the LIST order `msgs` (`listed` is `None` when the server
    /// has no UIDL). Sorting instead of hashing: a large mailbox costs no map per message.
    pub fn new(msgs: &[u32], listed: Option<Vec<(u32, Box<str>)>>) -> Uidls {
        let mut per_msg: Vec<Option<Box<str>>> = vec![None; msgs.len()];
        if let Some(listed) = listed {
            let mut listed: Vec<(u32, Option<Box<str>>)> =
                listed.into_iter().map(|(m, u)| (m, Some(u))).collect();
            listed.sort_unstable_by_key(|&(m, _)| m);
            for (slot, msg) in per_msg.iter_mut().zip(msgs) {
                if let Ok(i) = listed.binary_search_by_key(msg, |&(m, _)| m) {
                    *slot = listed[i].1.take();
                }
            }
        }
        let mut order: Vec<usize> = (0..msgs.len()).filter(|&i| per_msg[i].is_some()).collect();
        order.sort_unstable_by(|&a, &b| per_msg[a].cmp(&per_msg[b]));
        let mut shared = vec![false; msgs.len()];
        for pair in order.windows(2) {
            if per_msg[pair[0]] == per_msg[pair[1]] {
                shared[pair[0]] = true;
                shared[pair[1]] = true;
            }
        }
        Uidls { per_msg, shared }
    }

    /// The messages (as listing indexes) whose identity needs a header hash: those with no
    /// UIDL, or one that another message shares (see [`Uidls::identities`]).
    pub fn need_header(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.per_msg.len()).filter(|&i| self.per_msg[i].is_none() || self.shared[i])
    }

    /// Gives each message an identity: `uidl:X` from a unique UIDL. Messages whose UIDL is
    /// shared with another (a broken server), or with no UIDL at all, get their header hash
    /// (`hdr:H`, from TOP n 0) so that they are neither merged nor lost; `header` (by listing
    /// index) is called only for those. Identical headers among them are told apart by their
    /// order (`#2`, `#3`, ...).
    pub fn identities<F>(self, mut header: F) -> Vec<Option<String>>
    where
        F: FnMut(usize) -> Option<String>,
    {
        let mut seen: HashMap<String, usize> = HashMap::new();
        self.per_msg
            .into_iter()
            .zip(self.shared)
            .enumerate()
            .map(|(i, (uidl, shared))| {
                let base = match uidl {
                    Some(u) if !shared => return Some(format!("uidl:{u}")),
                    Some(u) => format!("uidl:{u}#hdr:{}", header(i)?),
                    None => format!("hdr:{}", header(i)?),
                };
                let n = seen.entry(base.clone()).or_default();
                *n += 1;
                Some(if *n == 1 { base } else { format!("{base}#{n}") })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ids: &[Option<&str>]) -> Vec<Listed> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Listed {
                msg: i as u32 + 1,
                id: id.map(str::to_string),
                size: 100 * (i as u64 + 1),
            })
            .collect()
    }

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            delete_after: None,
            max_messages: None,
            max_size: None,
            now: 1_000_000,
        }
    }

    #[test]
    fn truth_table() {
        let listing = listed(&[Some("a"), Some("b"), None]);
        let known: Pop3Known = [("a", 0)].into_iter().collect();
        // keep: fetch the unknown (including the one without identity), delete nothing.
        let p = plan(&listing, &known, &policy(Mode::Keep));
        assert_eq!((p.fetch, p.delete), (vec![1, 2], vec![]));
        // delete: fetch the unknown, delete the known now.
        let p = plan(&listing, &known, &policy(Mode::Delete));
        assert_eq!((p.fetch, p.delete), (vec![1, 2], vec![0]));
    }

    #[test]
    fn delete_after_is_exact() {
        let day = 86_400;
        let listing = listed(&[Some("old"), Some("edge"), Some("young"), Some("new")]);
        let now = 100 * day;
        let known: Pop3Known = [
            ("old", now - 31 * day),
            ("edge", now - 30 * day),
            ("young", now - 30 * day + 1),
        ]
        .into_iter()
        .collect();
        let p = plan(
            &listing,
            &known,
            &Policy {
                delete_after: Some(Duration::from_secs(30 * day as u64)),
                now,
                ..policy(Mode::Keep)
            },
        );
        assert_eq!(p.delete, vec![0, 1]);
        assert_eq!(p.fetch, vec![3]);
    }

    #[test]
    fn limits() {
        let listing = listed(&[Some("a"), Some("b"), Some("c"), Some("d")]);
        let p = plan(
            &listing,
            &Pop3Known::default(),
            &Policy {
                max_messages: Some(2),
                max_size: Some(250),
                ..policy(Mode::Keep)
            },
        );
        assert_eq!(p.fetch, vec![0, 1]);
        assert_eq!(p.too_large, vec![2, 3]);
        assert_eq!(p.deferred, 0);
        let p = plan(
            &listing,
            &Pop3Known::default(),
            &Policy {
                max_messages: Some(1),
                ..policy(Mode::Keep)
            },
        );
        assert_eq!((p.fetch, p.deferred), (vec![0], 3));
    }

    fn uidls(listed: &[(u32, &str)]) -> Option<Vec<(u32, Box<str>)>> {
        Some(listed.iter().map(|&(m, u)| (m, u.into())).collect())
    }

    #[test]
    fn identities_for_unique_duplicate_and_missing_uidls() {
        // UIDL in another order than LIST: matched by message number.
        let u = Uidls::new(
            &[1, 2, 3, 4],
            uidls(&[(4, "u4"), (2, "dup"), (1, "u1"), (3, "dup")]),
        );
        assert_eq!(u.need_header().collect::<Vec<_>>(), vec![1, 2]);
        let mut asked = Vec::new();
        let ids = u.identities(|i| {
            asked.push(i);
            Some(if i == 1 { "h2".into() } else { "h3".into() })
        });
        assert_eq!(asked, vec![1, 2]);
        assert_eq!(
            ids,
            vec![
                Some("uidl:u1".into()),
                Some("uidl:dup#hdr:h2".into()),
                Some("uidl:dup#hdr:h3".into()),
                Some("uidl:u4".into())
            ]
        );
        // A message UIDL does not list gets a header hash; one UIDL lists beyond LIST is
        // ignored.
        let u = Uidls::new(&[1, 2], uidls(&[(1, "a"), (9, "z")]));
        assert_eq!(u.need_header().collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            u.identities(|_| Some("h".into())),
            vec![Some("uidl:a".into()), Some("hdr:h".into())]
        );
        // No UIDL: header hashes, with identical headers told apart by order.
        let u = Uidls::new(&[1, 2, 3], None);
        assert_eq!(u.need_header().collect::<Vec<_>>(), vec![0, 1, 2]);
        let ids = u.identities(|i| Some(if i == 2 { "b".into() } else { "a".into() }));
        assert_eq!(
            ids,
            vec![
                Some("hdr:a".into()),
                Some("hdr:a#2".into()),
                Some("hdr:b".into())
            ]
        );
        // Neither UIDL nor TOP: no identity.
        assert_eq!(Uidls::new(&[1], None).identities(|_| None), vec![None]);
    }
}
