//! IMAP fetch: every selected folder into the Maildir, one way, incremental by UID.
//!
//! Per folder: the mailbox is opened (read-only in keep mode); after recovery of an interrupted
//! run and re-matching after a UIDVALIDITY change, a plan names what to fetch (UIDs above the
//! highest one fetched before) and, in delete mode, what to remove; a dry run shows the plan,
//! a real run carries it out: bodies (never marked read) in batches that are made durable,
//! recorded, renamed into place, and only then (delete mode) removed from the server.

use std::cell::Cell;
use std::collections::HashSet;

use anyhow::Context;

use super::{FetchOptions, FolderPlan, Outcome, Planned};
use crate::adopt::adopt;
use crate::config::{Account, Mode};
use crate::deliver::{self, Download, Received};
use crate::failures::{self, Failure};
use crate::join;
use crate::maildir::keywords::Keywords;
use crate::maildir::{Folder, Maildir, account_maildir};
use crate::reconcile::{self, expunge};
use crate::report::Output;
use crate::state::{Deliveries, DryRunDir, FolderLedger, State};
use crate::store::{
    Access, Connect, Deletes, Items, Mailbox, Need, Search, Selected, Store, Uids, selected_by,
};
use crate::text::sanitize;

/// Fetches every selected folder of one IMAP account.
pub async fn run<C: Connect>(
    connect: &C,
    account: &Account,
    opts: &FetchOptions,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let maildir = account_maildir(account);
    let mut store = connect.connect().await?;
    let (folders, unusable) = selected_folders(&mut store, account, opts, out).await?;
    // max_messages counts over the whole run, so it is kept on one connection.
    let connections = if opts.max_messages.is_some() {
        1
    } else {
        account.connections
    };
    // A dry run plans against a private copy of the state.
    let open_state = || -> anyhow::Result<(State, Option<DryRunDir>)> {
        Ok(if opts.dry_run {
            let (copy, dir) = State::dry_run_copy(&opts.state_path)?;
            (copy, Some(dir))
        } else {
            (State::open(&opts.state_path)?, None)
        })
    };
    let mut first_state = open_state()?;
    // Keep mode: a folder whose UIDVALIDITY and UIDNEXT are as the last pass left them is not
    // opened at all, nor is a connection made for it (a no-op is one round trip of STATUS).
    let (folders, left_before) = if opts.mode == Mode::Keep && !opts.dry_run {
        changed(
            &mut store,
            &mut first_state.0,
            folders,
            &maildir,
            opts.max_size,
        )
        .await?
    } else {
        (folders, 0)
    };
    let fetched = Cell::new(0u64);
    let outcomes = join::work_queue(
        (store, first_state),
        folders,
        connections,
        async || Ok((connect.connect().await?, open_state()?)),
        async |(store, (state, _)): &mut (C::Store, (State, Option<DryRunDir>)),
               mailbox: Mailbox| {
            let job = FolderJob {
                account,
                opts,
                out,
                mailbox: &mailbox,
                maildir: &maildir,
                fetched_before: fetched.get(),
            };
            let done = job
                .run(store, state)
                .await
                .with_context(|| format!("folder {}", sanitize(&mailbox.name, 100)));
            let done = failures::of_folder(&mailbox.name, done)?;
            if let Ok(outcome) = &done {
                fetched.set(fetched.get() + outcome.fetched);
            }
            Ok(done)
        },
        async |(store, _): (C::Store, (State, Option<DryRunDir>))| Ok(store.close().await?),
    )
    .await?;
    let mut total = Outcome {
        account: account.name.clone(),
        dry_run: opts.dry_run,
        max_size: opts.max_size,
        failed: unusable,
        too_large: left_before,
        ..Outcome::default()
    };
    for o in outcomes {
        match o {
            Ok(o) => total.add(&o),
            Err(failure) => total.failed.push(failure),
        }
    }
    Ok(total)
}

/// The folders that may have new mail: all but those the store's STATUS shows as the last
/// complete pass left them (same UIDVALIDITY and UIDNEXT), with nothing pending from an
/// interrupted run and no message left as too large that `max_size` now admits. Also how
/// many messages the others hold that are still too large (said in every summary).
async fn changed<S: Store>(
    store: &mut S,
    state: &mut State,
    folders: Vec<Mailbox>,
    maildir: &Maildir,
    max_size: Option<u64>,
) -> anyhow::Result<(Vec<Mailbox>, u64)> {
    let statuses = store.status_of(&folders).await?;
    let mut out = Vec::with_capacity(folders.len());
    let mut too_large = 0;
    for (mailbox, status) in folders.into_iter().zip(statuses) {
        let Some((uidvalidity, uidnext)) = status else {
            out.push(mailbox);
            continue;
        };
        let ledger = state.folder(&mailbox.name, &local_path(maildir, &mailbox)?)?;
        let same = ledger.folder.uidvalidity == Some(uidvalidity)
            && ledger.folder.uidnext == Some(uidnext);
        let fits = |&(_, size): &(u32, u64)| max_size.is_none_or(|max| size <= max);
        let skipped = ledger.skipped()?;
        if same && !ledger.has_pending()? && !skipped.iter().any(fits) {
            too_large += skipped.len() as u64;
        } else {
            out.push(mailbox);
        }
    }
    Ok((out, too_large))
}

/// Where a server folder's messages are kept, relative to the Maildir's root (as state
/// records it).
fn local_path(maildir: &Maildir, mailbox: &Mailbox) -> anyhow::Result<String> {
    let components: Vec<&str> = mailbox.components.iter().map(String::as_str).collect();
    Ok(maildir
        .folder_path(&components)?
        .strip_prefix(maildir.root())
        .map(|p| p.display().to_string())
        .unwrap_or_default())
}

/// The account's folders its patterns select (after checking that the store can do what
/// the mode needs).
async fn selected_folders<S: Store>(
    store: &mut S,
    account: &Account,
    opts: &FetchOptions,
    out: &Output,
) -> anyhow::Result<(Vec<Mailbox>, Vec<Failure>)> {
    if opts.mode == Mode::Delete && store.caps().deletes != Deletes::Marked {
        return Err(store
            .missing(
                Need::ExactDelete,
                "delete mode needs to remove only what it fetched",
            )
            .into());
    }
    let listing = store.mailboxes().await?;
    // A server folder that cannot be used is a failure of that folder: its mail is not copied.
    let unusable = listing
        .skipped
        .into_iter()
        .filter(|s| selected_by(&s.folder, &account.folders));
    let unusable: Vec<Failure> = unusable.map(Failure::from).collect();
    let folders: Vec<Mailbox> = listing
        .mailboxes
        .into_iter()
        .filter(|f| selected_by(&f.name, &account.folders))
        .collect();
    out.detail(&format!(
        "{}: connected to {}:{} ({}); {} folders selected",
        account.name,
        account.host,
        account.port,
        store.security(),
        folders.len()
    ));
    Ok((folders, unusable))
}

struct FolderJob<'a> {
    account: &'a Account,
    opts: &'a FetchOptions,
    out: &'a Output,
    mailbox: &'a Mailbox,
    maildir: &'a Maildir,
    /// Messages fetched in this run before this folder (max_messages counts them all).
    fetched_before: u64,
}

impl FolderJob<'_> {
    /// Plans the folder, then shows the plan (dry run) or carries it out.
    async fn run<S: Store>(&self, store: &mut S, state: &mut State) -> anyhow::Result<Outcome> {
        let components: Vec<&str> = self.mailbox.components.iter().map(String::as_str).collect();
        let read_only = self.opts.mode == Mode::Keep || self.opts.dry_run;
        let access = if read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let selected = store.select(self.mailbox, access, None).await?;
        let local = match self.opts.dry_run {
            true => None,
            false => Some(self.maildir.open_folder(&components)?),
        };
        let local_path = local_path(self.maildir, self.mailbox)?;
        let mut ledger = state.folder(&self.mailbox.name, &local_path)?;
        let mut paired = 0;
        if let Some(local) = &local {
            deliver::recover(&mut ledger, local)?;
            // After a UIDVALIDITY change, known messages get their new UIDs by Message-ID
            // and size instead of being fetched again.
            if reconcile::renumbered(&ledger, selected.uidvalidity)? {
                let who = (self.account.name.as_str(), self.mailbox.name.as_str());
                reconcile::rematch(
                    store,
                    &mut ledger,
                    selected.uidvalidity,
                    Some(local),
                    self.out,
                    who,
                )
                .await?;
            }
            // State knows nothing of the folder but the Maildir has mail: what is there
            // already is paired, not fetched again (in delete mode only by content, since
            // a pair allows the deletion on the server).
            if ledger.folder.uidvalidity.is_none() && ledger.highest_uid()? == 0 {
                let by_content = self.opts.mode == Mode::Delete;
                paired = adopt(store, &mut ledger, local, by_content).await?;
            }
        }
        let plan = self.plan(store, &ledger, &selected).await?;
        let mut outcome = Outcome {
            paired,
            ..Outcome::default()
        };
        match local {
            None => {
                self.show(&plan);
                outcome.planned(plan, self.opts.mode);
            }
            Some(local) => {
                self.execute(store, &mut ledger, &local, &selected, &plan, &mut outcome)
                    .await?
            }
        }
        Ok(outcome)
    }

    /// What to remove (delete mode: fetched before and safely on disk) and what to fetch:
    /// messages above the highest UID state knows, within max_size and max_messages.
    async fn plan<S: Store>(
        &self,
        store: &mut S,
        ledger: &FolderLedger<'_>,
        selected: &Selected,
    ) -> anyhow::Result<FolderPlan> {
        let mut plan = FolderPlan {
            folder: self.mailbox.name.clone(),
            ..FolderPlan::default()
        };
        // A dry run after a UIDVALIDITY change has not re-matched: everything is new to it.
        let renumbered = ledger
            .folder
            .uidvalidity
            .is_some_and(|v| v != selected.uidvalidity);
        if self.opts.mode == Mode::Delete && !renumbered {
            plan.delete = ledger
                .fetched()?
                .into_iter()
                .map(|(uid, size)| Planned {
                    uid,
                    id: None,
                    size,
                })
                .collect();
        }
        // Everything below the UIDNEXT of the last complete pass was fetched or skipped then;
        // above it, what the ledger does not know is new, whatever a crash or a dropped link
        // left between. The known messages themselves are not read (a folder may hold 50,000).
        let floor = match ledger.folder.uidnext {
            Some(n) if !renumbered => n,
            _ => 1,
        };
        let known: HashSet<u32> = if renumbered {
            HashSet::new()
        } else {
            ledger.known_from(floor)?.into_iter().collect()
        };
        let (fetch, next) = candidates(store, selected, floor, &known).await?;
        plan.fetch = fetch;
        plan.next_floor = next;
        if !renumbered {
            self.refit(store, ledger, &mut plan).await?;
        }
        Ok(self.limit(plan))
    }

    /// Messages left before as too large that the size limit now admits are fetched too
    /// (those no longer on the server are forgotten); the others are counted again.
    async fn refit<S: Store>(
        &self,
        store: &mut S,
        ledger: &FolderLedger<'_>,
        plan: &mut FolderPlan,
    ) -> anyhow::Result<()> {
        let skipped = ledger.skipped()?;
        let fitting = |&(_, size): &(u32, u64)| self.opts.max_size.is_none_or(|max| size <= max);
        let fits: Vec<(u32, u64)> = skipped.iter().copied().filter(fitting).collect();
        plan.too_large_before = (skipped.len() - fits.len()) as u64;
        if fits.is_empty() {
            return Ok(());
        }
        let uids: Vec<u32> = fits.iter().map(|&(uid, _)| uid).collect();
        let items = Items {
            size: true,
            ..Items::default()
        };
        let mut present = Vec::new();
        store
            .list(Uids::Set(&uids), items, &mut |m| {
                present.push(Planned {
                    uid: m.uid,
                    id: None,
                    size: m.size,
                })
            })
            .await?;
        plan.gone = uids
            .into_iter()
            .filter(|u| !present.iter().any(|p| p.uid == *u))
            .collect();
        plan.fetch.extend(present);
        plan.fetch.sort_by_key(|c| c.uid);
        plan.fetch.dedup_by_key(|c| c.uid);
        Ok(())
    }

    /// Applies max_size and max_messages (counted over the whole run) to the candidates.
    fn limit(&self, mut plan: FolderPlan) -> FolderPlan {
        let mut budget = self
            .opts
            .max_messages
            .map(|m| m.saturating_sub(self.fetched_before));
        let mut fetch = Vec::with_capacity(plan.fetch.len());
        for c in std::mem::take(&mut plan.fetch) {
            if self.opts.max_size.is_some_and(|max| c.size > max) {
                plan.too_large.push(c);
            } else if budget == Some(0) {
                plan.deferred += 1;
            } else {
                budget = budget.map(|b| b - 1);
                fetch.push(c);
            }
        }
        plan.fetch = fetch;
        plan
    }

    /// The `-v`/dry-run lines of a plan.
    fn show(&self, plan: &FolderPlan) {
        let folder = sanitize(&self.mailbox.name, 100);
        for m in &plan.fetch {
            self.out.info(&format!(
                "would fetch {folder} UID {} ({} bytes)",
                m.uid, m.size
            ));
        }
        for m in plan.deleting(self.opts.mode) {
            self.out.info(&format!(
                "would delete {folder} UID {} on the server",
                m.uid
            ));
        }
    }

    async fn execute<S: Store>(
        &self,
        store: &mut S,
        ledger: &mut FolderLedger<'_>,
        local: &Folder,
        selected: &Selected,
        plan: &FolderPlan,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        if !plan.delete.is_empty() {
            let due: Vec<u32> = plan.delete.iter().map(|m| m.uid).collect();
            outcome.deleted += expunge(store, ledger, &due).await?;
        }
        outcome.too_large += plan.too_large.len() as u64 + plan.too_large_before;
        outcome.deferred += plan.deferred;
        record_too_large(ledger, plan)?;
        ledger.forget(&plan.gone)?;
        let total = plan.fetch.iter().map(|c| c.size).sum();
        let label = format!("{}/{}", self.account.name, self.mailbox.name);
        let mut progress = self.out.progress(&label, plan.fetch.len() as u64, total);
        let mut keywords = Keywords::load(local.path())?;
        let pairs: Vec<(u32, u64)> = plan.fetch.iter().map(|c| (c.uid, c.size)).collect();
        let mut received = Received::default();
        if self.opts.mode == Mode::Delete {
            // Each batch is removed once durable, so batches are not pipelined.
            for batch in deliver::batches(&pairs) {
                let got = Download {
                    local,
                    keywords: &mut keywords,
                    ledger,
                    progress: &mut progress,
                }
                .batch(store, batch)
                .await?;
                ledger.settle()?;
                let uids: Vec<u32> = got.landed.iter().map(|l| l.uid).collect();
                outcome.deleted += expunge(store, ledger, &uids).await?;
                received.add(got);
            }
        } else {
            received = Download {
                local,
                keywords: &mut keywords,
                ledger,
                progress: &mut progress,
            }
            .pipelined(store, &pairs)
            .await?;
        }
        outcome.fetched += received.landed.len() as u64;
        outcome.bytes += received.landed.iter().map(|l| l.size).sum::<u64>();
        drop(progress);
        ledger.settle()?;
        ledger.folder.uidvalidity = Some(selected.uidvalidity);
        // What did not land and is still there failed (the next run asks again); what did not
        // land and is gone was removed meanwhile. The pass is complete, and its UIDNEXT the
        // next run's floor, only when nothing failed and nothing was left for later.
        let missing = received.missing(&pairs);
        let still_there = store.search(Search::Present(&missing)).await?;
        let failed = failures::of_messages(&self.mailbox.name, &still_there, &received, |_| None);
        if failed.is_empty() && plan.deferred == 0 {
            ledger.folder.uidnext = selected.uidnext.or(plan.next_floor);
        }
        outcome.failed.extend(failed);
        // A fetch does not follow flag changes, so it must not claim a mod-sequence that sync
        // would take as "everything before this is known".
        ledger.folder.highestmodseq = None;
        ledger.passed()?;
        Ok(())
    }
}

/// Too large: recorded as seen, so that later runs do not ask again.
fn record_too_large(ledger: &mut FolderLedger<'_>, plan: &FolderPlan) -> anyhow::Result<()> {
    let skipped: Vec<crate::state::Delivery> = plan
        .too_large
        .iter()
        .map(|c| crate::state::Delivery {
            uid: c.uid,
            key: None,
            local: None,
            flags: String::new(),
            size: c.size,
            message_id: None,
        })
        .collect();
    if !skipped.is_empty() {
        ledger.record(&skipped)?;
    }
    Ok(())
}

/// The open mailbox's messages from `floor` on that the ledger does not know (one round
/// trip; none at all when UIDNEXT says nothing arrived since), by UID, and the floor for the
/// next run where the server sends no UIDNEXT.
async fn candidates<S: Store>(
    store: &mut S,
    selected: &Selected,
    floor: u32,
    known: &HashSet<u32>,
) -> anyhow::Result<(Vec<Planned>, Option<u32>)> {
    if selected.exists == 0 || selected.uidnext.is_some_and(|n| n <= floor) {
        return Ok((Vec::new(), None));
    }
    let mut out: Vec<Planned> = Vec::new();
    let mut highest = None;
    let items = Items {
        size: true,
        ..Items::default()
    };
    store
        .list(Uids::From(floor), items, &mut |m| {
            highest = highest.max(Some(m.uid));
            if !known.contains(&m.uid) {
                out.push(Planned {
                    uid: m.uid,
                    id: None,
                    size: m.size,
                })
            }
        })
        .await?;
    out.sort_by_key(|c| c.uid);
    out.dedup_by_key(|c| c.uid);
    Ok((out, highest.map(|h| h.saturating_add(1))))
}
