//! POP3 fetch: list, plan, stream into the Maildir in durable batches, record, then delete.
//!
//! Order per batch (DESIGN.md §3): bodies written into tmp/ -> state records them as pending ->
//! one data sync for the batch, rename into new/, directory sync -> only then DELE. The next
//! batch's state commit (or the final settle) confirms the previous one; after a crash, pending
//! records are checked against the Maildir, so a message is neither lost nor fetched twice. DELE takes effect at QUIT, and
//! deletions are recorded only after QUIT's +OK.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::plan::{self, Listed, Plan, Policy};
use super::{FetchOptions, now};
use crate::config::{Account, Mode};
use crate::maildir::{Folder, Maildir, TmpMessage, Written};
use crate::pop3::{self, Client, Pop3Error, RetrSink};
use crate::report::{Outcome, Output, Progress};
use crate::state::{Pop3Known, State};
use crate::text::sanitize;
use crate::{credentials, failpoint};

/// Messages per durable batch (one state commit and one directory sync each).
const BATCH_MESSAGES: usize = 64;
/// Bytes per durable batch.
const BATCH_BYTES: u64 = 16 << 20;
/// Age after which a tmp/ file is a leftover (the Maildir spec's 36 hours).
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(36 * 3600);
/// RETR/DELE commands in flight with PIPELINING.
const WINDOW: usize = 16;

/// Fetches one POP3 account.
pub async fn run(
    account: &Account,
    opts: &FetchOptions,
    state: Option<&mut State>,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let maildir = Maildir::new(&account.maildir, account.layout);
    let login = credentials::Credentials::new(account)?;
    let policy = Policy {
        mode: opts.mode,
        delete_after: opts.delete_after,
        max_messages: opts.max_messages,
        max_size: opts.max_size,
        now: now(),
    };
    let mut outcome = Outcome {
        account: account.name.clone(),
        dry_run: opts.dry_run,
        ..Outcome::default()
    };

    let Some(state) = state else {
        // Dry run: plan against what state knows (if anything) and change nothing.
        let known = match State::open_existing(&opts.state_path)? {
            Some(s) => s.pop3_known()?,
            None => Pop3Known::default(),
        };
        let mut session = pop3::open(account, &login.secret()?).await?;
        let listing = listing(&mut session.client, &session.caps, opts.mode).await?;
        let plan = plan::plan(&listing, &known, &policy);
        describe(account, &session, &listing, &plan, out);
        for &i in &plan.fetch {
            let m = &listing[i];
            out.info(&format!(
                "would fetch message {} ({}, {} bytes)",
                m.msg,
                sanitize(m.id.as_deref().unwrap_or("no identity"), 100),
                m.size
            ));
        }
        let deleting: Vec<usize> = match opts.mode {
            Mode::Delete => plan.delete.iter().chain(&plan.fetch).copied().collect(),
            Mode::Keep => plan.delete.clone(),
        };
        for &i in &deleting {
            out.info(&format!(
                "would delete message {} on the server",
                listing[i].msg
            ));
        }
        outcome.fetched = plan.fetch.len() as u64;
        outcome.bytes = plan.fetch.iter().map(|&i| listing[i].size).sum();
        outcome.deleted = deleting.len() as u64;
        outcome.too_large = plan.too_large.len() as u64;
        outcome.deferred = plan.deferred as u64;
        // QUIT without DELE changes nothing on the server.
        session.client.quit().await?;
        return Ok(outcome);
    };

    let inbox = maildir.open_folder(&[])?;
    inbox.clean_tmp(STALE_TMP)?;
    recover(state, &inbox)?;

    // Rounds: each is one session; a round ends early after `commit_every` deletions so that
    // an interrupted run over a large mailbox keeps what it deleted (QUIT commits DELE).
    let mut confirmed_deleted: HashSet<String> = HashSet::new();
    loop {
        let mut session = pop3::open(account, &login.secret()?).await?;
        let listing = listing(&mut session.client, &session.caps, opts.mode).await?;
        // A server that confirmed a deletion (QUIT +OK) but still lists the message would make
        // this loop go round for ever; it is lying, so stop.
        if let Some(id) = listing
            .iter()
            .filter_map(|m| m.id.as_ref())
            .find(|id| confirmed_deleted.contains(*id))
        {
            return Err(Pop3Error::Protocol(format!(
                "the server still lists message {} after confirming its deletion",
                sanitize(id, 100)
            ))
            .into());
        }
        let known = state.pop3_known()?;
        let policy = Policy {
            max_messages: policy
                .max_messages
                .map(|m| m.saturating_sub(outcome.fetched)),
            ..policy
        };
        let plan = plan::plan(&listing, &known, &policy);
        describe(account, &session, &listing, &plan, out);
        outcome.too_large = plan.too_large.len() as u64;
        outcome.deferred = plan.deferred as u64;
        if plan.is_empty() {
            session.client.quit().await?;
            break;
        }
        let window = if session.caps.pipelining { WINDOW } else { 1 };
        let round = Round {
            listing: &listing,
            plan: &plan,
            window,
            commit_every: opts.commit_every,
        };
        let finished = round
            .run(
                &mut session.client,
                state,
                &inbox,
                opts.mode,
                out,
                &mut outcome,
            )
            .await?;
        let deleted = finished.deleted_ids;
        failpoint::hit("pop3-before-quit");
        session.client.quit().await?;
        failpoint::hit("pop3-after-quit");
        // QUIT's +OK: the server has removed what we marked.
        state.pop3_mark_deleted(&deleted, now())?;
        outcome.deleted += deleted.len() as u64;
        confirmed_deleted.extend(deleted);
        if finished.complete {
            break;
        }
    }
    Ok(outcome)
}

/// The `-v` lines: where we are connected and what the plan is.
fn describe(
    account: &Account,
    session: &pop3::Session,
    listing: &[Listed],
    plan: &Plan,
    out: &Output,
) {
    let tls = match session.fingerprint {
        Some(fp) => format!("TLS, certificate {fp}"),
        None => "no TLS".to_string(),
    };
    out.detail(&format!(
        "{}: connected to {}:{} ({tls})",
        account.name, account.host, account.port
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

/// Settles records of a batch that was interrupted: keeps those whose file is in the Maildir,
/// forgets the others (and their tmp/ leftovers) so that they are fetched again.
fn recover(state: &mut State, inbox: &Folder) -> anyhow::Result<()> {
    if !state.pop3_has_pending()? {
        return Ok(());
    }
    let present: HashSet<String> = inbox
        .list()?
        .iter()
        .map(|e| e.unique().to_string())
        .collect();
    let forgotten = state.pop3_recover(|name| present.contains(name))?;
    for name in forgotten {
        // The tmp/ name is the unique name without its ",S=" size suffix.
        let base = name.split(",S=").next().unwrap_or(&name);
        let _ = std::fs::remove_file(inbox.path().join("tmp").join(base));
    }
    Ok(())
}

/// Builds the listing: UIDL (once per session) and LIST, with header hashes where needed.
pub async fn listing(
    client: &mut Client,
    caps: &pop3::Capabilities,
    mode: Mode,
) -> anyhow::Result<Vec<Listed>> {
    let uidls = if caps.uidl || !caps.known {
        client.uidl().await?
    } else {
        None
    };
    let sizes = client.list().await?;
    let msgs: Vec<u32> = sizes.iter().map(|&(m, _)| m).collect();
    let uidls = plan::Uidls::new(&msgs, uidls);
    let mut headers = HashMap::new();
    for i in uidls.need_header() {
        match client.top_header(msgs[i]).await {
            Ok(header) => {
                headers.insert(i, crate::text::hex(&Sha256::digest(&header)[..16]));
            }
            Err(Pop3Error::Refused { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    drop(msgs);
    let ids = uidls.identities(|i| headers.remove(&i));
    if mode == Mode::Keep && ids.iter().any(Option::is_none) {
        return Err(Pop3Error::Missing(
            "UIDL or TOP, which keep mode needs to tell old mail from new (mode = \"delete\" works without them)",
        )
        .into());
    }
    Ok(sizes
        .into_iter()
        .zip(ids)
        .map(|((msg, size), id)| Listed { msg, id, size })
        .collect())
}

struct Round<'a> {
    listing: &'a [Listed],
    plan: &'a Plan,
    window: usize,
    commit_every: usize,
}

struct RoundEnd {
    /// Ids whose DELE the server accepted (effective at QUIT).
    deleted_ids: Vec<String>,
    /// Whether the whole plan was carried out.
    complete: bool,
}

impl Round<'_> {
    async fn run(
        &self,
        client: &mut Client,
        state: &mut State,
        inbox: &Folder,
        mode: Mode,
        out: &Output,
        outcome: &mut Outcome,
    ) -> anyhow::Result<RoundEnd> {
        let mut deleted_ids = Vec::new();
        let dele = |ids: &mut Vec<String>, msgs: &[usize]| -> Vec<u32> {
            let mut numbers = Vec::new();
            for &i in msgs {
                if let Some(id) = &self.listing[i].id {
                    ids.push(id.clone());
                }
                numbers.push(self.listing[i].msg);
            }
            numbers
        };

        // Messages fetched before and now due: delete first (nothing to write locally).
        let due: Vec<usize> = self
            .plan
            .delete
            .iter()
            .copied()
            .take(self.commit_every)
            .collect();
        if !due.is_empty() {
            let numbers = dele(&mut deleted_ids, &due);
            client.dele_pipelined(&numbers, self.window).await?;
        }
        if due.len() < self.plan.delete.len() {
            return Ok(RoundEnd {
                deleted_ids,
                complete: false,
            });
        }

        let total_bytes = self.plan.fetch.iter().map(|&i| self.listing[i].size).sum();
        let mut progress =
            out.progress(&outcome.account, self.plan.fetch.len() as u64, total_bytes);
        let mut rest = &self.plan.fetch[..];
        while !rest.is_empty() {
            if mode == Mode::Delete && deleted_ids.len() >= self.commit_every {
                return Ok(RoundEnd {
                    deleted_ids,
                    complete: false,
                });
            }
            let mut take = 0;
            let mut bytes = 0;
            while take < rest.len() && take < BATCH_MESSAGES && (take == 0 || bytes < BATCH_BYTES) {
                bytes += self.listing[rest[take]].size;
                take += 1;
            }
            let (batch, tail) = rest.split_at(take);
            rest = tail;

            let numbers: Vec<u32> = batch.iter().map(|&i| self.listing[i].msg).collect();
            let mut sink = BatchSink {
                folder: inbox,
                current: None,
                done: Vec::with_capacity(batch.len()),
                progress: &mut progress,
            };
            client
                .retr_pipelined(&numbers, self.window, &mut sink)
                .await?;
            let written = sink.done;

            // Record before the rename, so that a crash after it cannot cause a duplicate.
            let records: Vec<(String, String, u64)> = batch
                .iter()
                .zip(&written)
                .filter_map(|(&i, d)| {
                    let id = self.listing[i].id.clone()?;
                    Some((id, d.unique(), self.listing[i].size))
                })
                .collect();
            state.pop3_record(&records, now())?;
            failpoint::hit("pop3-after-record");
            let landed = inbox.commit(written.into_iter().map(|d| (d, String::new())).collect())?;
            failpoint::hit("pop3-after-rename");
            outcome.fetched += landed.len() as u64;
            outcome.bytes += batch.iter().map(|&i| self.listing[i].size).sum::<u64>();

            if mode == Mode::Delete {
                let numbers = dele(&mut deleted_ids, batch);
                client.dele_pipelined(&numbers, self.window).await?;
                failpoint::hit("pop3-after-dele");
            }
        }
        drop(progress);
        state.pop3_settle()?;
        Ok(RoundEnd {
            deleted_ids,
            complete: true,
        })
    }
}

/// Streams RETR bodies into tmp/ files (made durable with their batch by `Folder::commit`).
struct BatchSink<'a> {
    folder: &'a Folder,
    current: Option<TmpMessage>,
    done: Vec<Written>,
    progress: &'a mut Progress,
}

impl RetrSink for BatchSink<'_> {
    fn begin(&mut self, _msg: u32) -> anyhow::Result<()> {
        self.current = Some(self.folder.create_tmp()?);
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        let tmp = self
            .current
            .as_mut()
            .context("message data before its start")?;
        tmp.write_crlf(chunk)?;
        self.progress.bytes(chunk.len() as u64);
        Ok(())
    }

    fn end(&mut self, _msg: u32) -> anyhow::Result<()> {
        let tmp = self
            .current
            .take()
            .context("message end before its start")?;
        self.done.push(tmp.finish(None)?);
        failpoint::hit("pop3-after-tmp");
        self.progress.message();
        Ok(())
    }
}
