//! Keeping a folder's ledger true to its store: re-matching known messages after a
//! UIDVALIDITY change, and removing delivered messages from the store exactly.

use std::collections::{HashMap, HashSet};

use crate::failpoint;
use crate::maildir::Folder;
use crate::report::Output;
use crate::state::{FolderLedger, ImapRecord};
use crate::store::{Items, Search, Store, Uids};

/// Whether the folder's UIDVALIDITY is no longer the one state knows messages under.
pub fn renumbered(ledger: &FolderLedger<'_>, uidvalidity: u32) -> anyhow::Result<bool> {
    Ok(ledger.folder.uidvalidity.is_some_and(|v| v != uidvalidity) && ledger.highest_uid()? > 0)
}

/// After a UIDVALIDITY change to `uidvalidity`: matches the open mailbox's messages to the
/// known ones by Message-ID and size, gives the matches their new UIDs and forgets the rest
/// (their local copies stay), and says so (`who`: the account, for the warning).
pub async fn rematch<S: Store>(
    store: &mut S,
    ledger: &mut FolderLedger<'_>,
    uidvalidity: u32,
    local: Option<&Folder>,
    out: &Output,
    (who, folder): (&str, &str),
) -> anyhow::Result<()> {
    let known = ledger.messages()?;
    let mut by_key: HashMap<(String, u64), Vec<u32>> = HashMap::new();
    for r in &known {
        if let Some(id) = &r.message_id {
            by_key.entry((id.clone(), r.size)).or_default().push(r.uid);
        }
    }
    let mut moves = Vec::new();
    let mut anonymous = Vec::new();
    let items = Items {
        size: true,
        message_id: true,
        ..Items::default()
    };
    store
        .list(Uids::From(1), items, &mut |m| match m.message_id {
            Some(id) => {
                if let Some(old) = by_key.get_mut(&(id, m.size)).and_then(Vec::pop) {
                    moves.push((old, m.uid));
                }
            }
            None => anonymous.push((m.uid, m.size)),
        })
        .await?;
    if let Some(local) = local {
        let without_id: Vec<&ImapRecord> = known
            .iter()
            .filter(|r| r.message_id.is_none() && r.local_name.is_some())
            .collect();
        moves.extend(by_content(store, local, &without_id, &anonymous).await?);
    }
    ledger.rebind(uidvalidity, &moves)?;
    out.warn(&format!(
        "{who}: folder {}: UIDVALIDITY changed; re-matched {} of {} known messages by \
         Message-ID and size, or content (those are not fetched again)",
        crate::text::sanitize(folder, 100),
        moves.len(),
        known.len()
    ));
    Ok(())
}

/// Known messages without a Message-ID matched to the server's by content: the local copy's
/// bytes against the server's (of the same size only). Returns (old UID, new UID) pairs.
async fn by_content<S: Store>(
    store: &mut S,
    local: &Folder,
    known: &[&ImapRecord],
    anonymous: &[(u32, u64)],
) -> anyhow::Result<Vec<(u32, u32)>> {
    let sizes: HashSet<u64> = known.iter().map(|r| r.size).collect();
    let candidates: Vec<u32> = anonymous
        .iter()
        .filter(|(_, size)| sizes.contains(size))
        .map(|&(uid, _)| uid)
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let entries: HashMap<String, crate::maildir::Entry> = local
        .list()?
        .into_iter()
        .map(|e| (e.unique().to_string(), e))
        .collect();
    let mut by_hash: HashMap<String, Vec<u32>> = HashMap::new();
    for r in known {
        let entry = r.local_name.as_deref().and_then(|n| entries.get(n));
        if let Some(stored) = entry.map(|e| local.read(e)).transpose()?.flatten() {
            let hash = crate::message::sha256_hex(&crate::message::to_crlf(&stored.data));
            by_hash.entry(hash).or_default().push(r.uid);
        }
    }
    Ok(crate::upload::content_hashes(store, &candidates)
        .await?
        .into_iter()
        .filter_map(|(uid, hash)| Some((by_hash.get_mut(&hash)?.pop()?, uid)))
        .collect())
}

/// Marks messages deleted and removes exactly them, then forgets them in the ledger. Only
/// ever called for messages whose local copy is durable and recorded. Returns how many are
/// gone from the store afterwards.
pub async fn expunge<S: Store>(
    store: &mut S,
    ledger: &mut FolderLedger<'_>,
    uids: &[u32],
) -> anyhow::Result<u64> {
    store.mark_deleted(uids).await?;
    failpoint::hit("imap-after-store")?;
    store.expunge(uids).await?;
    failpoint::hit("imap-after-expunge")?;
    // Forget only what the store no longer has: were a message left (a removal refused in
    // part), forgetting it would make the next run fetch it again.
    let remaining: HashSet<u32> = store
        .search(Search::Present(uids))
        .await?
        .into_iter()
        .collect();
    let gone: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| !remaining.contains(u))
        .collect();
    ledger.forget(&gone)?;
    Ok(gone.len() as u64)
}
