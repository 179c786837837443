//! Keeping a folder's ledger true to its store: re-matching known messages after a
//! UIDVALIDITY change, and removing delivered messages from the store exactly.

use std::collections::{HashMap, HashSet};

use crate::failpoint;
use crate::report::Output;
use crate::state::FolderLedger;
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
    let items = Items {
        size: true,
        message_id: true,
        ..Items::default()
    };
    store
        .list(Uids::From(1), items, &mut |m| {
            if let Some(id) = m.message_id
                && let Some(old) = by_key.get_mut(&(id, m.size)).and_then(Vec::pop)
            {
                moves.push((old, m.uid));
            }
        })
        .await?;
    ledger.rebind(uidvalidity, &moves)?;
    out.warn(&format!(
        "{who}: folder {}: UIDVALIDITY changed; re-matched {} of {} known messages by \
         Message-ID and size (those are not fetched again)",
        crate::text::sanitize(folder, 100),
        moves.len(),
        known.len()
    ));
    Ok(())
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
