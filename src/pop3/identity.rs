//! POP3 message identities, pure: a UIDL where it is unique, a header hash (TOP n 0) where it
//! is shared or missing, so that messages are neither merged nor lost.

use std::collections::HashMap;

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
