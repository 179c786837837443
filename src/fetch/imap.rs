//! IMAP fetch: every selected folder into the Maildir, one way, incremental by UID.
//!
//! Per folder: EXAMINE (SELECT in delete mode), UIDs above the highest one fetched before are
//! new; bodies are fetched with BODY.PEEK[] (nothing is marked read) in batches that are made
//! durable, recorded in state, renamed into place, and only then (delete mode) marked
//! \Deleted and removed with UID EXPUNGE. A changed UIDVALIDITY is recovered by matching
//! Message-ID and size instead of fetching everything again.

use std::collections::{HashMap, HashSet};

use anyhow::Context;

use super::FetchOptions;
use crate::config::{Account, Mode};
use crate::imap::{self, FetchSink, ImapError, RemoteFolder, Session, codec, date};
use crate::maildir::{Durable, Folder, Maildir, TmpMessage};
use crate::report::{Outcome, Output, Progress};
use crate::state::{ImapFolder, ImapRecord, State};
use crate::text::sanitize;
use crate::{credentials, failpoint};

/// Messages per durable batch.
const BATCH_MESSAGES: usize = 64;
/// Bytes per durable batch.
const BATCH_BYTES: u64 = 16 << 20;
/// What is fetched with each body (ENVELOPE and BODYSTRUCTURE are never asked for).
const BODY_ITEMS: &str =
    "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[])";

/// Fetches every selected folder of one IMAP account.
pub async fn run(
    account: &Account,
    opts: &FetchOptions,
    mut state: Option<&mut State>,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let secret = credentials::password(account)?;
    let maildir = Maildir::new(&account.maildir, account.layout);
    let mut outcome = Outcome {
        account: account.name.clone(),
        dry_run: opts.dry_run,
        ..Outcome::default()
    };
    let mut session = imap::open(account, &secret).await?;
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
    for folder in &folders {
        let mut job = FolderJob {
            account,
            opts,
            out,
            folder,
            maildir: &maildir,
        };
        job.run(&mut session, state.as_deref_mut(), &mut outcome)
            .await
            .with_context(|| format!("folder {}", sanitize(&folder.name, 100)))?;
    }
    session.client.logout().await?;
    Ok(outcome)
}

struct FolderJob<'a> {
    account: &'a Account,
    opts: &'a FetchOptions,
    out: &'a Output,
    folder: &'a RemoteFolder,
    maildir: &'a Maildir,
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
        state: Option<&mut State>,
        outcome: &mut Outcome,
    ) -> anyhow::Result<()> {
        let components: Vec<&str> = self.folder.components.iter().map(String::as_str).collect();
        let read_only = self.opts.mode == Mode::Keep || self.opts.dry_run;
        let selected = imap::select(session, self.folder, read_only).await?;

        let Some(state) = state else {
            // Dry run: what state knows (if anything) decides; nothing is changed.
            let known = match State::open_existing(&self.opts.state_path)? {
                Some(mut s) => {
                    let f = s.imap_folder(&self.folder.name, "")?;
                    (f.uidvalidity == Some(selected.uidvalidity))
                        .then(|| s.imap_messages(f.id))
                        .transpose()?
                        .unwrap_or_default()
                }
                None => Vec::new(),
            };
            let candidates = self.candidates(session, &selected, &known).await?;
            let (fetch, too_large) = self.plan(&candidates, outcome.fetched);
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
        let mut known = state.imap_messages(folder_state.id)?;
        if folder_state
            .uidvalidity
            .is_some_and(|v| v != selected.uidvalidity)
        {
            known = self
                .rematch(
                    session,
                    state,
                    &mut folder_state,
                    selected.uidvalidity,
                    known,
                )
                .await?;
        }
        folder_state.uidvalidity = Some(selected.uidvalidity);

        if self.opts.mode == Mode::Delete {
            // Fetched before (in keep mode, or by a run that stopped before its EXPUNGE) and
            // safely on disk: delete them now.
            let due: Vec<u32> = known
                .iter()
                .filter(|r| r.local_name.is_some())
                .map(|r| r.uid)
                .collect();
            if !due.is_empty() {
                outcome.deleted += expunge(session, state, &folder_state, &due).await?;
            }
        }
        let candidates = self.candidates(session, &selected, &known).await?;
        let (fetch, too_large) = self.plan(&candidates, outcome.fetched);
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
        let mut rest = &fetch[..];
        while !rest.is_empty() {
            let mut take = 0;
            let mut bytes = 0;
            while take < rest.len() && take < BATCH_MESSAGES && (take == 0 || bytes < BATCH_BYTES) {
                bytes += rest[take].size;
                take += 1;
            }
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            let fetched = self
                .fetch_batch(session, batch, &local, &mut progress)
                .await?;
            let records: Vec<ImapRecord> = fetched
                .iter()
                .map(|f| ImapRecord {
                    uid: f.uid,
                    local_name: Some(f.durable.unique()),
                    flags: f.flags.clone(),
                    size: f.size,
                    message_id: f.message_id.clone(),
                })
                .collect();
            // Record before the rename, so that a crash after it cannot cause a duplicate.
            state.imap_record(folder_state.id, &records)?;
            failpoint::hit("imap-after-record");
            let uids: Vec<u32> = fetched.iter().map(|f| f.uid).collect();
            let landed =
                local.commit(fetched.into_iter().map(|f| (f.durable, f.flags)).collect())?;
            failpoint::hit("imap-after-rename");
            outcome.fetched += landed.len() as u64;
            outcome.bytes += batch.iter().map(|c| c.size).sum::<u64>();
            if self.opts.mode == Mode::Delete {
                state.imap_settle()?;
                outcome.deleted += expunge(session, state, &folder_state, &uids).await?;
            }
        }
        drop(progress);
        state.imap_settle()?;
        folder_state.uidnext = selected.uidnext;
        folder_state.highestmodseq = selected.highestmodseq;
        state.imap_folder_synced(&folder_state)?;
        Ok(())
    }

    /// Server messages not in state: above the highest UID state knows (one round trip;
    /// none at all when UIDNEXT says nothing arrived).
    async fn candidates(
        &self,
        session: &mut Session,
        selected: &imap::Selected,
        known: &[ImapRecord],
    ) -> anyhow::Result<Vec<Candidate>> {
        let max_known = known.iter().map(|r| r.uid).max().unwrap_or(0);
        if selected.exists == 0 || selected.uidnext.is_some_and(|n| n <= max_known + 1) {
            return Ok(Vec::new());
        }
        let (untagged, _) = session
            .client
            .run(&format!("UID FETCH {}:* (UID RFC822.SIZE)", max_known + 1))
            .await?;
        let known: HashSet<u32> = known.iter().map(|r| r.uid).collect();
        let mut out: Vec<Candidate> = untagged
            .into_iter()
            .filter_map(|r| match r {
                imap::Response::Fetch(f) => Some(Candidate {
                    uid: f.uid?,
                    size: f.size.unwrap_or(0),
                }),
                _ => None,
            })
            .filter(|c| c.uid > max_known && !known.contains(&c.uid))
            .collect();
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

    async fn fetch_batch(
        &self,
        session: &mut Session,
        batch: &[Candidate],
        local: &Folder,
        progress: &mut Progress,
    ) -> anyhow::Result<Vec<Fetched>> {
        let uids: Vec<u32> = batch.iter().map(|c| c.uid).collect();
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut sink = BodySink {
            folder: local,
            current: None,
            done: Vec::with_capacity(batch.len()),
            wanted,
            progress,
        };
        let tag = session
            .client
            .send(&format!(
                "UID FETCH {} {BODY_ITEMS}",
                codec::format_set(&uids)
            ))
            .await?;
        let mut untagged = Vec::new();
        session
            .client
            .complete(&tag, "UID FETCH", &mut sink, &mut untagged)
            .await?;
        let mut done = sink.done;
        // A message expunged by another client meanwhile is simply not there; it is not
        // recorded, so nothing is lost: it no longer exists to be fetched.
        done.sort_by_key(|f| f.uid);
        Ok(done)
    }

    /// UIDVALIDITY changed: match server messages to known ones by Message-ID and size, give
    /// the matches their new UIDs, forget the rest (their local copies stay).
    async fn rematch(
        &self,
        session: &mut Session,
        state: &mut State,
        folder_state: &mut ImapFolder,
        uidvalidity: u32,
        known: Vec<ImapRecord>,
    ) -> anyhow::Result<Vec<ImapRecord>> {
        let (untagged, _) = session
            .client
            .run("UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            .await?;
        let mut by_key: HashMap<(String, u64), Vec<u32>> = HashMap::new();
        for r in &known {
            if let Some(id) = &r.message_id {
                by_key.entry((id.clone(), r.size)).or_default().push(r.uid);
            }
        }
        let mut moves = Vec::new();
        for response in untagged {
            let imap::Response::Fetch(f) = response else {
                continue;
            };
            let (Some(uid), Some(size), Some(id)) =
                (f.uid, f.size, f.header.as_deref().and_then(message_id))
            else {
                continue;
            };
            if let Some(old) = by_key.get_mut(&(id, size)).and_then(Vec::pop) {
                moves.push((old, uid));
            }
        }
        folder_state.uidvalidity = Some(uidvalidity);
        state.imap_rebind(folder_state, &moves)?;
        self.out.warn(&format!(
            "{}: folder {}: UIDVALIDITY changed; re-matched {} of {} known messages by Message-ID and size, \
             nothing fetched twice for those",
            self.account.name,
            sanitize(&self.folder.name, 100),
            moves.len(),
            known.len()
        ));
        Ok(state.imap_messages(folder_state.id)?)
    }
}

/// Marks messages \Deleted and removes exactly them (UID EXPUNGE), then forgets them in state.
/// Only ever called for messages whose local copy is durable and recorded. Returns how many
/// the server reported removed.
async fn expunge(
    session: &mut Session,
    state: &mut State,
    folder: &ImapFolder,
    uids: &[u32],
) -> anyhow::Result<u64> {
    let set = codec::format_set(uids);
    session
        .client
        .run(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
        .await?;
    failpoint::hit("imap-after-store");
    let (untagged, _) = session.client.run(&format!("UID EXPUNGE {set}")).await?;
    let removed: u64 = untagged
        .iter()
        .map(|r| match r {
            imap::Response::Expunge(_) => 1,
            imap::Response::Vanished {
                earlier: false,
                uids,
            } => uids.iter().map(|(a, b)| u64::from(b - a) + 1).sum(),
            _ => 0,
        })
        .sum();
    state.imap_forget(folder.id, uids)?;
    Ok(removed)
}

/// Settles records of a batch that was interrupted (see the POP3 fetch for the scheme).
fn recover(state: &mut State, folder: &ImapFolder, local: &Folder) -> anyhow::Result<()> {
    if !state.imap_has_pending(folder.id)? {
        return Ok(());
    }
    let present: HashSet<String> = local.list()?.into_iter().map(|e| e.unique).collect();
    state.imap_recover(folder.id, |name| present.contains(name))?;
    Ok(())
}

/// The Message-ID in a header block, if any (folded lines handled).
pub fn message_id(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_string();
        while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
            value.push_str(next.trim());
            lines.next();
        }
        let value = value.trim();
        return (!value.is_empty()).then(|| value.to_string());
    }
    None
}

/// A fetched message, durable in tmp/.
struct Fetched {
    uid: u32,
    flags: String,
    size: u64,
    message_id: Option<String>,
    durable: Durable,
}

/// Streams `BODY[]` literals into tmp/ files and completes them with their FETCH data.
struct BodySink<'a> {
    folder: &'a Folder,
    current: Option<TmpMessage>,
    done: Vec<Fetched>,
    wanted: HashSet<u32>,
    progress: &'a mut Progress,
}

impl FetchSink for BodySink<'_> {
    fn begin(&mut self, _len: usize) -> anyhow::Result<()> {
        self.current = Some(self.folder.create_tmp()?);
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.current
            .as_mut()
            .context("body data before its start")?
            .write_crlf(chunk)?;
        self.progress.bytes(chunk.len() as u64);
        Ok(())
    }

    fn fetched(&mut self, fetch: codec::Fetch) -> anyhow::Result<()> {
        if !fetch.body {
            return Ok(());
        }
        let tmp = self
            .current
            .take()
            .context("a FETCH body without its start")?;
        let uid = fetch
            .uid
            .ok_or_else(|| ImapError::Protocol("a FETCH body without its UID".into()))?;
        // A body for a UID we did not ask for is dropped (its tmp file goes with `tmp`).
        if !self.wanted.remove(&uid) {
            return Ok(());
        }
        let mtime = fetch.internaldate.as_deref().and_then(date::parse);
        let durable = tmp.finish(mtime)?;
        failpoint::hit("imap-after-tmp");
        self.done.push(Fetched {
            uid,
            flags: imap::maildir_flags(fetch.flags.as_deref().unwrap_or_default()),
            size: fetch.size.unwrap_or(durable.size()),
            message_id: fetch.header.as_deref().and_then(message_id),
            durable,
        });
        self.progress.message();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_message_ids() {
        assert_eq!(
            message_id(b"Message-ID: <a@b>\r\n\r\n").as_deref(),
            Some("<a@b>")
        );
        assert_eq!(
            message_id(b"message-id:\r\n <folded@x>\r\n\r\n").as_deref(),
            Some("<folded@x>")
        );
        assert_eq!(message_id(b"Subject: x\r\n\r\n"), None);
        assert_eq!(message_id(b""), None);
    }
}
