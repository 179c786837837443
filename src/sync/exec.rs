//! Carrying out a folder's sync plan, in the order that can lose nothing: downloads, uploads,
//! flag changes, deletions, and then the new synced state.

use std::collections::{BTreeMap, HashMap};

use super::{Near, SyncOutcome};
use crate::deliver::Download;
use crate::failpoint;
use crate::failures;
use crate::flags::FlagSet;
use crate::maildir::Folder;
use crate::maildir::keywords::Keywords;
use crate::reconcile::expunge;
use crate::report::Output;
use crate::state::{Deliveries, FolderLedger};
use crate::store::{Change, Mailbox, Search, Store};
use crate::upload::{self, Upload};

use super::plan::Action;

/// Uploads recorded per state commit.
const UPLOAD_BATCH: usize = 32;

/// One folder's execution: both sides, the ledger, and the counts.
pub(super) struct Pass<'a, 'l> {
    pub account: &'a str,
    pub mailbox: &'a Mailbox,
    pub out: &'a Output,
    pub ledger: &'a mut FolderLedger<'l>,
    pub local: &'a Folder,
    pub keywords: &'a mut Keywords,
    pub near: &'a HashMap<&'a str, Near<'a>>,
    /// The lowest UID an upload of this pass can get.
    pub floor: u32,
    pub outcome: &'a mut SyncOutcome,
}

impl Pass<'_, '_> {
    /// Carries out the actions.
    pub async fn execute<S: Store>(
        &mut self,
        store: &mut S,
        actions: &[Action],
    ) -> anyhow::Result<()> {
        // Keyword letters given out while planning are on disk before any file uses them.
        self.keywords.save()?;
        self.downloads(store, actions).await?;
        self.uploads(store, actions).await?;
        self.far_flags(store, actions).await?;
        let mut touched_near = self.near_flags(actions)?;
        let expunged: Vec<u32> = actions
            .iter()
            .filter_map(|a| match a {
                Action::ExpungeFar { uid } => Some(*uid),
                _ => None,
            })
            .collect();
        if !expunged.is_empty() {
            self.outcome.far_deleted += expunge(store, self.ledger, &expunged).await?;
        }
        touched_near |= self.near_deletions(actions)?;
        if touched_near {
            self.local.sync()?;
        }
        self.bases(actions, &expunged)
    }

    /// Step 1: Downloads, durable and recorded.
    async fn downloads<S: Store>(
        &mut self,
        store: &mut S,
        actions: &[Action],
    ) -> anyhow::Result<()> {
        let downloads: Vec<(u32, u64)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Download { uid, .. } => Some((*uid, 0)),
                _ => None,
            })
            .collect();
        let label = format!("{}/{}", self.account, self.mailbox.name);
        let mut progress = self.out.progress(&label, downloads.len() as u64, 0);
        let received = Download {
            local: self.local,
            keywords: self.keywords,
            ledger: self.ledger,
            progress: &mut progress,
        }
        .pipelined(store, &downloads)
        .await?;
        self.outcome.downloaded += received.landed.len() as u64;
        drop(progress);
        self.ledger.settle()?;
        // What did not land and is still there failed; the folder's sync point is then not
        // moved, so that the next run sees those messages again.
        let missing = received.missing(&downloads);
        let still_there = store.search(Search::Present(&missing)).await?;
        let failed = failures::of_messages(&self.mailbox.name, &still_there, &received, |_| None);
        self.outcome.failed.extend(failed);
        Ok(())
    }

    /// Step 2: Uploads: recorded before they are sent, paired by the store's answer or found by
    /// content.
    async fn uploads<S: Store>(&mut self, store: &mut S, actions: &[Action]) -> anyhow::Result<()> {
        let uploads: Vec<&String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Upload { local, .. } => Some(local),
                _ => None,
            })
            .collect();
        for chunk in uploads.chunks(UPLOAD_BATCH) {
            let mut prepared = Vec::with_capacity(chunk.len());
            for name in chunk {
                let Some(Near { entry, .. }) = self.near.get(name.as_str()) else {
                    continue;
                };
                // Followed if a mail reader renamed it; gone, it is not uploaded.
                let Some(stored) = self.local.read(entry)? else {
                    continue;
                };
                prepared.push(Upload::new(
                    entry.unique().to_string(),
                    self.keywords.flags(stored.entry.flags()).to_string(),
                    &stored.data,
                    stored.mtime.map(crate::date::format),
                    self.floor,
                ));
            }
            let done = upload::append_batch(store, self.ledger, self.mailbox, &prepared).await?;
            self.outcome.uploaded += done.len() as u64;
        }
        Ok(())
    }

    /// Step 3: Flags on the server, grouped into as few changes as there are distinct ones.
    async fn far_flags<S: Store>(
        &mut self,
        store: &mut S,
        actions: &[Action],
    ) -> anyhow::Result<()> {
        let mut stores: BTreeMap<(FlagSet, FlagSet), Vec<u32>> = BTreeMap::new();
        for a in actions {
            if let Action::FarFlags { uid, add, remove } = a {
                stores
                    .entry((add.clone(), remove.clone()))
                    .or_default()
                    .push(*uid);
                self.outcome.far_flags += 1;
            }
        }
        for ((add, remove), uids) in stores {
            for (change, flags) in [(Change::Add, add), (Change::Remove, remove)] {
                if !flags.is_empty() {
                    store.set_flags(&uids, change, &flags).await?;
                    failpoint::hit("sync-after-far-flags")?;
                }
            }
        }
        Ok(())
    }

    /// Step 3: Flags in the Maildir. Returns whether any file was renamed.
    fn near_flags(&mut self, actions: &[Action]) -> anyhow::Result<bool> {
        let mut touched = false;
        for a in actions {
            if let Action::NearFlags { local: name, flags } = a
                && let Some(Near {
                    entry,
                    flags: listed,
                }) = self.near.get(name.as_str())
            {
                // The change is applied to the file as it is now: a flag a mail reader set
                // or cleared since the listing is kept.
                let (add, remove) = (flags.minus(listed), listed.minus(flags));
                let keywords = &*self.keywords;
                self.local.update_flags(entry, |current| {
                    let now = keywords.flags(current).union(&add).minus(&remove);
                    keywords.letters(current, &now)
                })?;
                touched = true;
                self.outcome.near_flags += 1;
                failpoint::hit("sync-after-near-flags")?;
            }
        }
        Ok(touched)
    }

    /// Step 4: Deletions in the Maildir, where the channel allows them. Returns whether any file
    /// was looked at.
    fn near_deletions(&mut self, actions: &[Action]) -> anyhow::Result<bool> {
        let mut touched = false;
        for a in actions {
            if let Action::DeleteNear { local: name } = a
                && let Some(Near { entry, .. }) = self.near.get(name.as_str())
            {
                if self.local.remove(entry)? {
                    self.outcome.near_deleted += 1;
                }
                touched = true;
                failpoint::hit("sync-after-near-delete")?;
            }
        }
        Ok(touched)
    }

    /// Step 5: The new synced state. Pairs expunged on the server were forgotten by `expunge`, and
    /// only if really gone.
    fn bases(&mut self, actions: &[Action], expunged: &[u32]) -> anyhow::Result<()> {
        let bases: Vec<(u32, String)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Base { uid, flags } => Some((*uid, flags.to_string())),
                _ => None,
            })
            .collect();
        self.ledger.set_flags(&bases)?;
        failpoint::hit("sync-after-bases")?;
        let forget: Vec<u32> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Forget { uid } if !expunged.contains(uid) => Some(*uid),
                _ => None,
            })
            .collect();
        self.ledger.forget(&forget)?;
        Ok(())
    }
}
