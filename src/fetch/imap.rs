//! IMAP fetch: every selected folder into the Maildir, one way, incremental by UID.
//!
//! Per folder: EXAMINE (SELECT in delete mode), UIDs above the highest one fetched before are
//! new; bodies are fetched with BODY.PEEK[] (nothing is marked read) in batches that are made
//! durable, recorded in state, renamed into place, and only then (delete mode) marked
//! \Deleted and removed with UID EXPUNGE. A changed UIDVALIDITY is recovered by matching
//! Message-ID and size instead of fetching everything again.

use std::cell::Cell;

use anyhow::Context;

use super::FetchOptions;
use crate::config::{Account, Mode};
use crate::imap::{self, ImapError, RemoteFolder, Session};
use crate::maildir::keywords::Keywords;
use crate::maildir::{Maildir, account_maildir};
use crate::report::{Outcome, Output};
use crate::state::{DryRunDir, ImapRecord, State};
use crate::text::sanitize;
use crate::transfer::{self, expunge, recover};
use crate::{credentials, join};

/// Fetches every selected folder of one IMAP account.
pub async fn run(account: &Account, opts: &FetchOptions, out: &Output) -> anyhow::Result<Outcome> {
    let login = credentials::Credentials::new(account)?;
    let maildir = account_maildir(account);
    let mut session = imap::open(account, &login.secret()?).await?;
    if opts.mode == Mode::Delete && !session.client.has("UIDPLUS") {
        // Plain EXPUNGE would also remove what other clients marked \Deleted.
        return Err(ImapError::Missing(
            "UIDPLUS (UID EXPUNGE), which delete mode needs to remove only what it fetched",
        )
        .into());
    }
    let (folders, skipped) = imap::list_folders(&mut session.client).await?;
    for warning in skipped {
        out.warn(&format!("{}: {warning}", account.name));
    }
    let folders: Vec<RemoteFolder> = folders
        .into_iter()
        .filter(|f| imap::folder_selected(&f.name, &account.folders))
        .collect();
    out.detail(&format!(
        "{}: connected to {}:{} ({}); {} folders selected",
        account.name,
        account.host,
        account.port,
        session
            .fingerprint
            .map(|f| format!("TLS, certificate {f}"))
            .unwrap_or_else(|| "no TLS".into()),
        folders.len()
    ));
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
    let fetched = Cell::new(0u64);
    let outcomes = join::work_queue(
        (session, open_state()?),
        folders,
        connections,
        async || Ok((imap::open(account, &login.secret()?).await?, open_state()?)),
        async |(session, (state, _)): &mut (Session, (State, Option<DryRunDir>)),
               folder: RemoteFolder| {
            let mut outcome = Outcome::default();
            let mut job = FolderJob {
                account,
                opts,
                out,
                folder: &folder,
                maildir: &maildir,
                fetched_before: fetched.get(),
            };
            job.run(session, state, &mut outcome)
                .await
                .with_context(|| format!("folder {}", sanitize(&folder.name, 100)))?;
            fetched.set(fetched.get() + outcome.fetched);
            Ok(outcome)
        },
        async |(session, _): (Session, (State, Option<DryRunDir>))| {
            Ok(session.client.logout().await?)
        },
    )
    .await?;
    let mut total = Outcome {
        account: account.name.clone(),
        dry_run: opts.dry_run,
        ..Outcome::default()
    };
    for o in outcomes {
        total.add(&o);
    }
    Ok(total)
}

struct FolderJob<'a> {
    account: &'a Account,
    opts: &'a FetchOptions,
    out: &'a Output,
    folder: &'a RemoteFolder,
    maildir: &'a Maildir,
    /// Messages fetched in this run before this folder (max_messages counts them all).
    fetched_before: u64,
}

/// A server message not fetched yet.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    uid: u32,
    size: u64,
}

impl FolderJob<'_> {
    async fn run(
        &mut self,
        session: &mut Session,
        state: &mut State,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let components: Vec<&str> = self.folder.components.iter().map(String::as_str).collect();
        let read_only = self.opts.mode == Mode::Keep || self.opts.dry_run;
        let selected = imap::select(session, self.folder, read_only, None).await?;

        if self.opts.dry_run {
            // A dry run plans against its copy of the state and changes nothing.
            let folder_state = state.imap_folder(&self.folder.name, "")?;
            let highest = if folder_state.uidvalidity == Some(selected.uidvalidity) {
                state.imap_highest_uid(folder_state.id)?
            } else {
                0
            };
            let candidates = self.candidates(session, &selected, highest).await?;
            let (fetch, too_large) = self.plan(&candidates, self.fetched_before);
            for c in &fetch {
                self.out.info(&format!(
                    "would fetch {} UID {} ({} bytes)",
                    sanitize(&self.folder.name, 100),
                    c.uid,
                    c.size
                ));
            }
            outcome.fetched += fetch.len() as u64;
            outcome.bytes += fetch.iter().map(|c| c.size).sum::<u64>();
            outcome.too_large += too_large.len() as u64;
            if self.opts.mode == Mode::Delete {
                outcome.deleted += fetch.len() as u64;
            }
            return Ok(());
        };

        let local = self.maildir.open_folder(&components)?;
        let local_path = local
            .path()
            .strip_prefix(self.maildir.root())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut folder_state = state.imap_folder(&self.folder.name, &local_path)?;
        recover(state, &folder_state, &local)?;
        // The known messages themselves are read only to re-match them after a UIDVALIDITY
        // change: a run needs no more than the highest UID (a folder may hold 50,000).
        if folder_state
            .uidvalidity
            .is_some_and(|v| v != selected.uidvalidity)
        {
            let known = state.imap_messages(folder_state.id)?;
            let matched = transfer::rematch(
                session,
                state,
                &mut folder_state,
                selected.uidvalidity,
                &known,
            )
            .await?;
            self.out.warn(&transfer::rematch_report(
                &self.account.name,
                &self.folder.name,
                matched,
                known.len(),
            ));
        }
        folder_state.uidvalidity = Some(selected.uidvalidity);
        // Before the expunge below, which forgets what it removes.
        let highest = state.imap_highest_uid(folder_state.id)?;

        if self.opts.mode == Mode::Delete {
            // Fetched before (in keep mode, or by a run that stopped before its EXPUNGE) and
            // safely on disk: delete them now.
            let due = state.imap_fetched_uids(folder_state.id)?;
            if !due.is_empty() {
                outcome.deleted += expunge(session, state, &folder_state, &due).await?;
            }
        }
        let candidates = self.candidates(session, &selected, highest).await?;
        let (fetch, too_large) = self.plan(&candidates, self.fetched_before);
        outcome.too_large += too_large.len() as u64;
        if !too_large.is_empty() {
            let skipped: Vec<ImapRecord> = too_large
                .iter()
                .map(|c| ImapRecord {
                    uid: c.uid,
                    local_name: None,
                    flags: String::new(),
                    size: c.size,
                    message_id: None,
                })
                .collect();
            state.imap_record(folder_state.id, &skipped)?;
        }
        let total = fetch.iter().map(|c| c.size).sum();
        let label = format!("{}/{}", self.account.name, self.folder.name);
        let mut progress = self.out.progress(&label, fetch.len() as u64, total);
        let mut keywords = Keywords::load(local.path())?;
        let pairs: Vec<(u32, u64)> = fetch.iter().map(|c| (c.uid, c.size)).collect();
        let delete = self.opts.mode == Mode::Delete;
        // In delete mode each batch is expunged once durable, so batches are not pipelined.
        let rounds = if delete {
            transfer::batches(&pairs)
        } else {
            vec![&pairs[..]]
        };
        for round in rounds {
            let landed = transfer::download(
                session,
                state,
                &folder_state,
                &local,
                &mut keywords,
                round,
                &mut progress,
            )
            .await?;
            outcome.fetched += landed.len() as u64;
            outcome.bytes += landed.iter().map(|l| l.size).sum::<u64>();
            if delete {
                state.imap_settle(folder_state.id)?;
                let uids: Vec<u32> = landed.iter().map(|l| l.uid).collect();
                outcome.deleted += expunge(session, state, &folder_state, &uids).await?;
            }
        }
        drop(progress);
        state.imap_settle(folder_state.id)?;
        folder_state.uidnext = selected.uidnext;
        // A fetch does not follow flag changes, so it must not claim a mod-sequence that sync
        // would take as "everything before this is known".
        folder_state.highestmodseq = None;
        state.imap_folder_synced(&folder_state)?;
        Ok(())
    }

    /// Server messages not in state: above the highest UID state knows (one round trip;
    /// none at all when UIDNEXT says nothing arrived).
    async fn candidates(
        &self,
        session: &mut Session,
        selected: &imap::Selected,
        highest: u32,
    ) -> anyhow::Result<Vec<Candidate>> {
        if selected.exists == 0 || selected.uidnext.is_some_and(|n| n <= highest + 1) {
            return Ok(Vec::new());
        }
        // `n:*` also names the last message when every UID is below n: filtered out.
        let mut out: Vec<Candidate> = Vec::new();
        session
            .client
            .fetch_each(
                &format!("UID FETCH {}:* (UID RFC822.SIZE)", highest + 1),
                |f| {
                    if let Some(uid) = f.uid.filter(|&u| u > highest) {
                        out.push(Candidate {
                            uid,
                            size: f.size.unwrap_or(0),
                        });
                    }
                },
            )
            .await?;
        out.sort_by_key(|c| c.uid);
        out.dedup_by_key(|c| c.uid);
        Ok(out)
    }

    /// Applies max_size and max_messages (counted over the whole run).
    fn plan(
        &self,
        candidates: &[Candidate],
        fetched_so_far: u64,
    ) -> (Vec<Candidate>, Vec<Candidate>) {
        let mut fetch = Vec::new();
        let mut too_large = Vec::new();
        let mut budget = self
            .opts
            .max_messages
            .map(|m| m.saturating_sub(fetched_so_far));
        for &c in candidates {
            if self.opts.max_size.is_some_and(|max| c.size > max) {
                too_large.push(c);
                continue;
            }
            if budget == Some(0) {
                break;
            }
            if let Some(b) = budget.as_mut() {
                *b -= 1;
            }
            fetch.push(c);
        }
        (fetch, too_large)
    }
}
