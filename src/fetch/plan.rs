//! The POP3 fetch plan, pure: the server listing + what state knows + the policy -> actions.

use std::time::Duration;

use crate::config::Mode;
use crate::state::Pop3Known;
use crate::store::Listed;

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
        match m.key.as_deref().and_then(|id| known.get(id)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ids: &[Option<&str>]) -> Vec<Listed> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Listed {
                uid: i as u32 + 1,
                key: id.map(Into::into),
                size: 100 * (i as u64 + 1),
                ..Listed::default()
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
}
