//! The POP3 fetch plan, pure: the server listing + what state knows + the policy -> actions.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::Mode;

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
pub fn plan(listing: &[Listed], known: &HashMap<Box<str>, i64>, policy: &Policy) -> Plan {
    let mut plan = Plan::default();
    let limit = policy.max_messages.unwrap_or(u64::MAX);
    for (i, m) in listing.iter().enumerate() {
        match m.id.as_deref().and_then(|id| known.get(id)) {
            Some(&first_seen) => {
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

fn uidl_counts(uidls: Option<&HashMap<u32, Vec<u8>>>) -> HashMap<&[u8], usize> {
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for u in uidls.into_iter().flat_map(|u| u.values()) {
        *counts.entry(u.as_slice()).or_default() += 1;
    }
    counts
}

/// The messages that need a header hash for their identity (see [`identities`]).
pub fn needs_header(msgs: &[u32], uidls: Option<&HashMap<u32, Vec<u8>>>) -> Vec<u32> {
    let uidl_count = uidl_counts(uidls);
    msgs.iter()
        .copied()
        .filter(|m| match uidls.and_then(|u| u.get(m)) {
            Some(u) => uidl_count.get(u.as_slice()) != Some(&1),
            None => true,
        })
        .collect()
}

/// Gives each message an identity: `uidl:X` from a unique UIDL. Messages whose UIDL is shared
/// with another (a broken server), or with no UIDL at all, get their header hash (`hdr:H`, from
/// TOP n 0) so that they are neither merged nor lost; `header` is called only for those.
/// Identical headers among them are told apart by their order (`#2`, `#3`, ...).
pub fn identities<F>(
    msgs: &[u32],
    uidls: Option<&HashMap<u32, Vec<u8>>>,
    mut header: F,
) -> Vec<Option<String>>
where
    F: FnMut(u32) -> Option<String>,
{
    let uidl_count = uidl_counts(uidls);
    let mut seen: HashMap<String, usize> = HashMap::new();
    msgs.iter()
        .map(|&msg| {
            let uidl = uidls.and_then(|u| u.get(&msg));
            let base = match uidl {
                Some(u) if uidl_count.get(u.as_slice()) == Some(&1) => {
                    return Some(format!("uidl:{}", String::from_utf8_lossy(u)));
                }
                Some(u) => format!("uidl:{}#hdr:{}", String::from_utf8_lossy(u), header(msg)?),
                None => format!("hdr:{}", header(msg)?),
            };
            let n = seen.entry(base.clone()).or_default();
            *n += 1;
            Some(if *n == 1 { base } else { format!("{base}#{n}") })
        })
        .collect()
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
        let known: HashMap<Box<str>, i64> = [("a".into(), 0)].into();
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
        let known: HashMap<Box<str>, i64> = [
            ("old".into(), now - 31 * day),
            ("edge".into(), now - 30 * day),
            ("young".into(), now - 30 * day + 1),
        ]
        .into();
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
            &HashMap::new(),
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
            &HashMap::new(),
            &Policy {
                max_messages: Some(1),
                ..policy(Mode::Keep)
            },
        );
        assert_eq!((p.fetch, p.deferred), (vec![0], 3));
    }

    #[test]
    fn identities_for_unique_duplicate_and_missing_uidls() {
        let uidls: HashMap<u32, Vec<u8>> = [
            (1, b"u1".to_vec()),
            (2, b"dup".to_vec()),
            (3, b"dup".to_vec()),
            (4, b"u4".to_vec()),
        ]
        .into();
        let mut asked = Vec::new();
        let ids = identities(&[1, 2, 3, 4], Some(&uidls), |m| {
            asked.push(m);
            Some(if m == 2 { "h2".into() } else { "h3".into() })
        });
        assert_eq!(asked, vec![2, 3]);
        assert_eq!(needs_header(&[1, 2, 3, 4], Some(&uidls)), vec![2, 3]);
        assert_eq!(needs_header(&[1, 2], None), vec![1, 2]);
        assert_eq!(
            ids,
            vec![
                Some("uidl:u1".into()),
                Some("uidl:dup#hdr:h2".into()),
                Some("uidl:dup#hdr:h3".into()),
                Some("uidl:u4".into())
            ]
        );
        // No UIDL: header hashes, with identical headers told apart by order.
        let ids = identities(&[1, 2, 3], None, |m| {
            Some(if m == 3 { "b".into() } else { "a".into() })
        });
        assert_eq!(
            ids,
            vec![
                Some("hdr:a".into()),
                Some("hdr:a#2".into()),
                Some("hdr:b".into())
            ]
        );
        // Neither UIDL nor TOP: no identity.
        assert_eq!(identities(&[1], None, |_| None), vec![None]);
    }
}
