//! POP3 fetch: list, plan, stream into the Maildir in durable batches, record, then delete.
//!
//! Order per batch (DESIGN.md §3, [`crate::deliver`]): bodies written into tmp/ -> state
//! records them as pending -> one data sync for the batch, rename into new/, directory sync ->
//! only then are they marked for deletion. A POP3 server carries deletions out when the session
//! ends well, and they are recorded only after that. A dry run shows the plan and changes
//! nothing (the session ends with nothing marked).

use std::collections::{HashMap, HashSet};

use super::plan::{self, Plan, Policy};
use super::{FetchOptions, FolderPlan, Outcome, Planned};
use crate::adopt::adopt;
use crate::config::{Account, Mode};
use crate::date::now;
use crate::deliver::{self, Download, Received};
use crate::failpoint;
use crate::failures;
use crate::maildir::keywords::Keywords;
use crate::maildir::{Folder, Maildir};
use crate::report::Output;
use crate::state::{Deliveries, Pop3Known, State};
use crate::store::{Access, Connect, Items, Listed, Need, Store, StoreError, Uids};
use crate::text::sanitize;

/// Age after which a tmp/ file is a leftover (the Maildir spec's 36 hours).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(36 * 3600);

/// Fetches one POP3 account (`state` is None for a dry run, which reads what state knows
/// from its file, if any, and writes nothing).
pub async fn run<C: Connect>(
    connect: &C,
    account: &Account,
    opts: &FetchOptions,
    state: Option<&mut State>,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let job = Job {
        account,
        opts,
        out,
        policy: Policy {
            mode: opts.mode,
            delete_after: opts.delete_after,
            max_messages: opts.max_messages,
            max_size: opts.max_size,
            now: now(),
        },
    };
    let mut outcome = Outcome {
        account: account.name.clone(),
        dry_run: opts.dry_run,
        max_size: opts.max_size,
        ..Outcome::default()
    };
    let Some(state) = state else {
        job.dry_run(connect.connect().await?, &mut outcome).await?;
        return Ok(outcome);
    };
    let inbox = Maildir::new(&account.maildir, account.layout).open_folder(&[])?;
    inbox.clean_tmp(STALE_TMP)?;
    deliver::recover(&mut state.pop3(now()), &inbox)?;
    // Sessions: each ends early after `commit_every` deletions so that an interrupted run over
    // a large mailbox keeps what it deleted (the session's end carries the deletions out).
    let mut confirmed_deleted: HashSet<String> = HashSet::new();
    loop {
        let store = connect.connect().await?;
        let complete = job
            .session(store, state, &inbox, &mut confirmed_deleted, &mut outcome)
            .await?;
        if complete {
            return Ok(outcome);
        }
    }
}

/// One account's fetch.
struct Job<'a> {
    account: &'a Account,
    opts: &'a FetchOptions,
    out: &'a Output,
    policy: Policy,
}

impl Job<'_> {
    /// Plans against what state knows and shows the plan; nothing is marked, so ending the
    /// session changes nothing on the server.
    async fn dry_run<S: Store>(&self, mut store: S, outcome: &mut Outcome) -> anyhow::Result<()> {
        let known = match State::open_existing(&self.opts.state_path)? {
            Some(s) => s.pop3_known()?,
            None => Pop3Known::default(),
        };
        let listing = listing(&mut store, self.opts.mode).await?;
        let plan = plan::plan(&listing, &known, &self.policy);
        describe(self.account, &store, &listing, &plan, self.out);
        let folder_plan = folder_plan(&listing, &plan);
        show(&folder_plan, self.opts.mode, self.out);
        outcome.planned(folder_plan, self.opts.mode);
        store.close().await?;
        Ok(())
    }

    /// One session of a real run; returns whether the whole plan was carried out.
    async fn session<S: Store>(
        &self,
        mut store: S,
        state: &mut State,
        inbox: &Folder,
        confirmed_deleted: &mut HashSet<String>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<bool> {
        let listing = listing(&mut store, self.opts.mode).await?;
        // A server that confirmed a deletion (the session ended well) but still lists the
        // message would make the sessions go round for ever; it is lying, so stop.
        if let Some(id) = listing
            .iter()
            .filter_map(|m| m.key.as_deref())
            .find(|id| confirmed_deleted.contains(*id))
        {
            return Err(StoreError::broken(format!(
                "the server still lists message {} after confirming its deletion",
                sanitize(id, 100)
            ))
            .into());
        }
        let mut known = state.pop3_known()?;
        // State knows nothing but the Maildir has mail (lost state, a restored Maildir): what
        // is there already is paired, not fetched again (in delete mode only by content).
        if known.is_empty() && !inbox.list()?.is_empty() {
            let by_content = self.opts.mode == Mode::Delete;
            let mut ledger = state.pop3(now());
            outcome.paired += adopt(&mut store, &mut ledger, inbox, by_content).await?;
            known = state.pop3_known()?;
        }
        let policy = Policy {
            max_messages: self
                .policy
                .max_messages
                .map(|m| m.saturating_sub(outcome.fetched)),
            ..self.policy
        };
        let mut plan = plan::plan(&listing, &known, &policy);
        // A message the server refused in an earlier session of this run is not asked again.
        let refused: HashSet<&str> = outcome
            .failed
            .iter()
            .filter_map(|f| f.id.as_deref())
            .collect();
        plan.fetch.retain(|&i| {
            let key = listing[i].key.as_deref();
            key.is_none_or(|k| !refused.contains(uidl(k)))
        });
        describe(self.account, &store, &listing, &plan, self.out);
        outcome.too_large = plan.too_large.len() as u64;
        outcome.deferred = plan.deferred as u64;
        if plan.is_empty() {
            store.close().await?;
            return Ok(true);
        }
        let round = Round {
            listing: &listing,
            plan: &plan,
            commit_every: self.opts.commit_every,
        };
        let finished = round
            .run(&mut store, state, inbox, self.opts.mode, self.out, outcome)
            .await?;
        failpoint::hit("pop3-before-quit")?;
        store.close().await?;
        failpoint::hit("pop3-after-quit")?;
        // The session ended well: the server has removed what we marked.
        state.pop3(now()).mark_deleted(&finished.deleted_ids)?;
        outcome.deleted += finished.deleted_ids.len() as u64;
        confirmed_deleted.extend(finished.deleted_ids);
        Ok(finished.complete)
    }
}

/// The mailbox's listing: every message with its size and identity. Keep mode needs an
/// identity for each, to tell old mail from new.
pub async fn listing<S: Store>(store: &mut S, mode: Mode) -> anyhow::Result<Vec<Listed>> {
    let inbox = store.mailbox(&["INBOX".to_string()]).await?;
    let selected = store.select(&inbox, Access::ReadWrite, None).await?;
    let mut listing = Vec::with_capacity(selected.exists as usize);
    let items = Items {
        size: true,
        ..Items::default()
    };
    store
        .list(Uids::From(1), items, &mut |m| listing.push(m))
        .await?;
    if mode == Mode::Keep && listing.iter().any(|m| m.key.is_none()) {
        return Err(store
            .missing(
                Need::Identity,
                "keep mode needs to tell old mail from new (mode = \"delete\" works without them)",
            )
            .into());
    }
    Ok(listing)
}

/// A message's identity as the user sees it on the server: its UIDL, where it has one.
fn uidl(key: &str) -> &str {
    key.strip_prefix("uidl:").unwrap_or(key)
}

/// The `-v` lines: where we are connected and what the plan is.
fn describe<S: Store>(account: &Account, store: &S, listing: &[Listed], plan: &Plan, out: &Output) {
    out.detail(&format!(
        "{}: connected to {}:{} ({})",
        account.name,
        account.host,
        account.port,
        store.security()
    ));
    out.detail(&format!(
        "{}: {} messages on the server; {} to fetch, {} due for deletion, {} too large, {} deferred",
        account.name,
        listing.len(),
        plan.fetch.len(),
        plan.delete.len(),
        plan.too_large.len(),
        plan.deferred
    ));
}

/// A plan in the form a dry run shows.
fn folder_plan(listing: &[Listed], plan: &Plan) -> FolderPlan {
    let planned = |indexes: &[usize]| -> Vec<Planned> {
        indexes
            .iter()
            .map(|&i| Planned {
                uid: listing[i].uid,
                id: listing[i].key.as_deref().map(str::to_string),
                size: listing[i].size,
            })
            .collect()
    };
    FolderPlan {
        folder: "INBOX".to_string(),
        fetch: planned(&plan.fetch),
        delete: planned(&plan.delete),
        too_large: planned(&plan.too_large),
        deferred: plan.deferred as u64,
        ..FolderPlan::default()
    }
}

/// The dry-run lines of a plan.
fn show(plan: &FolderPlan, mode: Mode, out: &Output) {
    for m in &plan.fetch {
        out.info(&format!(
            "would fetch message {} ({}, {} bytes)",
            m.uid,
            sanitize(m.id.as_deref().unwrap_or("no identity"), 100),
            m.size
        ));
    }
    for m in plan.deleting(mode) {
        out.info(&format!("would delete message {} on the server", m.uid));
    }
}

struct Round<'a> {
    listing: &'a [Listed],
    plan: &'a Plan,
    commit_every: usize,
}

struct RoundEnd {
    /// Ids the server accepted to delete (carried out at the session's end).
    deleted_ids: Vec<String>,
    /// Whether the whole plan was carried out.
    complete: bool,
}

impl Round<'_> {
    /// Marks messages for deletion; returns their ids (those that have one).
    async fn dele<S: Store>(&self, store: &mut S, msgs: &[usize]) -> anyhow::Result<Vec<String>> {
        let numbers: Vec<u32> = msgs.iter().map(|&i| self.listing[i].uid).collect();
        store.mark_deleted(&numbers).await?;
        Ok(msgs
            .iter()
            .filter_map(|&i| self.listing[i].key.as_deref().map(str::to_string))
            .collect())
    }

    async fn run<S: Store>(
        &self,
        store: &mut S,
        state: &mut State,
        inbox: &Folder,
        mode: Mode,
        out: &Output,
        outcome: &mut Outcome,
    ) -> anyhow::Result<RoundEnd> {
        // Messages fetched before and now due: delete first (nothing to write locally).
        let due: Vec<usize> = self
            .plan
            .delete
            .iter()
            .copied()
            .take(self.commit_every)
            .collect();
        let mut deleted_ids = Vec::new();
        if !due.is_empty() {
            deleted_ids = self.dele(store, &due).await?;
        }
        if due.len() < self.plan.delete.len() {
            return Ok(RoundEnd {
                deleted_ids,
                complete: false,
            });
        }

        let complete = self
            .fetch(store, state, inbox, mode, out, outcome, &mut deleted_ids)
            .await?;
        Ok(RoundEnd {
            deleted_ids,
            complete,
        })
    }

    /// Fetches the plan in durable batches (delete mode: marking each batch once it is safe);
    /// returns whether all of it was done before `commit_every` deletions.
    #[allow(clippy::too_many_arguments)]
    async fn fetch<S: Store>(
        &self,
        store: &mut S,
        state: &mut State,
        inbox: &Folder,
        mode: Mode,
        out: &Output,
        outcome: &mut Outcome,
        deleted_ids: &mut Vec<String>,
    ) -> anyhow::Result<bool> {
        let fetch: Vec<(usize, u64)> = self
            .plan
            .fetch
            .iter()
            .map(|&i| (i, self.listing[i].size))
            .collect();
        let total_bytes = fetch.iter().map(|&(_, size)| size).sum();
        let mut progress = out.progress(&outcome.account, fetch.len() as u64, total_bytes);
        let mut keywords = Keywords::load(inbox.path())?;
        let numbered = |batch: &[(usize, u64)]| -> Vec<(u32, u64)> {
            batch
                .iter()
                .map(|&(i, size)| (self.listing[i].uid, size))
                .collect()
        };
        if mode == Mode::Keep {
            // Nothing is removed after a batch: the next batch's bytes flow while one is
            // made durable.
            let all = numbered(&fetch);
            let received = Download {
                local: inbox,
                keywords: &mut keywords,
                ledger: &mut state.pop3(now()),
                progress: &mut progress,
            }
            .pipelined(store, &all)
            .await?;
            self.count(&fetch, &all, &received, outcome);
        } else {
            for batch in deliver::chunks(
                &fetch,
                deliver::BATCH_MESSAGES,
                deliver::BATCH_BYTES,
                |&(_, size)| size,
            ) {
                if deleted_ids.len() >= self.commit_every {
                    return Ok(false);
                }
                let numbered = numbered(batch);
                let received = Download {
                    local: inbox,
                    keywords: &mut keywords,
                    ledger: &mut state.pop3(now()),
                    progress: &mut progress,
                }
                .batch(store, &numbered)
                .await?;
                self.count(batch, &numbered, &received, outcome);
                let landed: HashSet<u32> = received.landed.iter().map(|l| l.uid).collect();
                let indexes: Vec<usize> = batch
                    .iter()
                    .map(|&(i, _)| i)
                    .filter(|&i| landed.contains(&self.listing[i].uid))
                    .collect();
                deleted_ids.extend(self.dele(store, &indexes).await?);
                failpoint::hit("pop3-after-dele")?;
            }
        }
        drop(progress);
        state.pop3(now()).settle()?;
        Ok(true)
    }

    /// Counts what landed of `asked` (listing index and size; `numbered` by message number)
    /// and names what did not: nothing else removes messages during a POP3 session, so what
    /// did not land, the server would not send.
    fn count(
        &self,
        asked: &[(usize, u64)],
        numbered: &[(u32, u64)],
        received: &Received,
        outcome: &mut Outcome,
    ) {
        let index: HashMap<u32, usize> = asked
            .iter()
            .map(|&(i, _)| (self.listing[i].uid, i))
            .collect();
        // Named by the UIDL, as the user sees it on the server.
        let key = |n: u32| {
            let key = self.listing[*index.get(&n)?].key.as_deref()?;
            Some(uidl(key).to_string())
        };
        let missing = received.missing(numbered);
        let failed = failures::of_messages("INBOX", &missing, received, key);
        outcome.failed.extend(failed);
        outcome.fetched += received.landed.len() as u64;
        outcome.bytes += received.landed.iter().map(|l| l.size).sum::<u64>();
    }
}
