//! Adopting what is already there: a folder whose state knows nothing (a first run, lost or
//! reset state, a Maildir restored from backup, or one another tool made) pairs the messages
//! both sides already hold before anything is copied, so that nothing is copied twice.
//!
//! Pairs are made by Message-ID and size (sizes with CRLF line ends, as the server counts),
//! then, for messages without a Message-ID, by a SHA-256 of the content with CRLF line ends
//! (the server's bodies of those alone are fetched to hash). Each message pairs at most once.

use std::collections::HashMap;

use crate::maildir::{Entry, Folder};
use crate::message::{header, message_id, sha256_hex, to_crlf};
use crate::state::{Deliveries, Delivery};
use crate::store::{Items, Store, Uids};
use crate::upload::content_hashes;

/// A Maildir message as pairing sees it.
struct Local {
    unique: String,
    size: u64,
    message_id: Option<String>,
    hash: Option<String>,
}

/// The size of `data` with CRLF line ends.
fn crlf_size(data: &[u8]) -> u64 {
    let bare = data
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
        .count();
    (data.len() + bare) as u64
}

/// The folder's messages with their sizes, Message-IDs, and content hashes (of those without
/// a Message-ID, or of all).
fn locals(local: &Folder, entries: &[Entry], hash_all: bool) -> anyhow::Result<Vec<Local>> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(mut stored) = local.read(e)? else {
            continue;
        };
        without_tuid(&mut stored.data);
        let message_id = message_id(header(&stored.data));
        let hash = (hash_all || message_id.is_none()).then(|| sha256_hex(&to_crlf(&stored.data)));
        out.push(Local {
            unique: e.unique().to_string(),
            size: crlf_size(&stored.data),
            message_id,
            hash,
        });
    }
    Ok(out)
}

/// Pairs the open mailbox's messages with the Maildir folder's and records the pairs (their
/// synced flags empty: the first pass then takes the union of both sides' flags; a POP3 pair
/// is recorded by the message's identity). With
/// `by_content_only` (what may be deleted on the server because of a pair) a Message-ID is
/// not enough: every pair is made by content. Call only when the ledger knows no message of
/// the folder. Returns how many were paired.
pub async fn adopt<S: Store, L: Deliveries>(
    store: &mut S,
    ledger: &mut L,
    local: &Folder,
    by_content_only: bool,
) -> anyhow::Result<u64> {
    let entries = local.list()?;
    if entries.is_empty() {
        return Ok(0);
    }
    let mut far: Vec<Far> = Vec::new();
    let items = Items {
        size: true,
        message_id: true,
        ..Items::default()
    };
    store
        .list(Uids::From(1), items, &mut |m| {
            far.push(Far {
                uid: m.uid,
                size: m.size,
                message_id: m.message_id,
                key: m.key,
            })
        })
        .await?;
    if far.is_empty() {
        return Ok(0);
    }
    let locals = locals(local, &entries, by_content_only)?;
    let mut pairs = if by_content_only {
        Vec::new()
    } else {
        by_message_id(&far, &locals)
    };
    pairs.extend(by_content(store, &far, &locals, &pairs).await?);
    let keys: HashMap<u32, Option<Box<str>>> = far.into_iter().map(|f| (f.uid, f.key)).collect();
    let records: Vec<Delivery> = pairs
        .iter()
        .map(|&(uid, i)| Delivery {
            uid,
            key: keys.get(&uid).cloned().flatten(),
            local: Some(locals[i].unique.clone()),
            flags: String::new(),
            size: locals[i].size,
            message_id: locals[i].message_id.clone(),
        })
        .collect();
    if !records.is_empty() {
        ledger.record(&records)?;
        ledger.settle()?;
    }
    Ok(records.len() as u64)
}

/// Takes out the `X-TUID:` header line mbsync adds to the messages it stores (it pairs by
/// it), so that a Maildir mbsync made compares with the server's copies.
fn without_tuid(data: &mut Vec<u8>) {
    let head = header(data).len();
    let mut start = 0;
    while start < head {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i + 1);
        if data[start..end].starts_with(b"X-TUID: ") {
            data.drain(start..end);
            return;
        }
        start = end;
    }
}

/// A server message as pairing sees it.
struct Far {
    uid: u32,
    size: u64,
    message_id: Option<String>,
    key: Option<Box<str>>,
}

/// Pairs by (Message-ID, size), one to one: (UID, index into `locals`).
fn by_message_id(far: &[Far], locals: &[Local]) -> Vec<(u32, usize)> {
    let mut by_key: HashMap<(&str, u64), Vec<usize>> = HashMap::new();
    for (i, l) in locals.iter().enumerate().rev() {
        if let Some(id) = &l.message_id {
            by_key.entry((id.as_str(), l.size)).or_default().push(i);
        }
    }
    far.iter()
        .filter_map(|f| {
            let i = by_key.get_mut(&(f.message_id.as_deref()?, f.size))?.pop()?;
            Some((f.uid, i))
        })
        .collect()
}

/// Pairs messages by their content: the server's candidates (not paired yet, with the size
/// of a local one that has a hash) are fetched and hashed.
async fn by_content<S: Store>(
    store: &mut S,
    far: &[Far],
    locals: &[Local],
    paired: &[(u32, usize)],
) -> anyhow::Result<Vec<(u32, usize)>> {
    let sizes: Vec<u64> = locals
        .iter()
        .filter(|l| l.hash.is_some())
        .map(|l| l.size)
        .collect();
    let candidates: Vec<u32> = far
        .iter()
        .filter(|f| sizes.contains(&f.size) && !paired.iter().any(|&(u, _)| u == f.uid))
        .map(|f| f.uid)
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_hash: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, l) in locals.iter().enumerate().rev() {
        if let Some(h) = &l.hash {
            by_hash.entry(h.as_str()).or_default().push(i);
        }
    }
    let taken: std::collections::HashSet<usize> = paired.iter().map(|&(_, i)| i).collect();
    for list in by_hash.values_mut() {
        list.retain(|i| !taken.contains(i));
    }
    Ok(content_hashes(store, &candidates)
        .await?
        .into_iter()
        .filter_map(|(uid, hash)| Some((uid, by_hash.get_mut(hash.as_str())?.pop()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbsyncs_tuid_line_is_not_part_of_the_message() {
        let mut m = b"From: a\nX-TUID: CjX8BOs4jfgb\nSubject: s\n\nX-TUID: in the body\n".to_vec();
        without_tuid(&mut m);
        assert_eq!(m, b"From: a\nSubject: s\n\nX-TUID: in the body\n");
        let mut plain = b"From: a\n\nbody\n".to_vec();
        without_tuid(&mut plain);
        assert_eq!(plain, b"From: a\n\nbody\n");
    }

    #[test]
    fn sizes_count_crlf_line_ends() {
        assert_eq!(crlf_size(b"a\nb\r\nc\n"), 9);
        assert_eq!(crlf_size(b"\n"), 2);
        assert_eq!(crlf_size(b""), 0);
    }
}
