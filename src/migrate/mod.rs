//! `mailferry migrate`: copies a POP3 mailbox, a Maildir or an IMAP account into an IMAP
//! server, idempotent and resumable.
//!
//! Per source folder (unit): the target folder is created if needed and selected; uploads an
//! interrupted run left unconfirmed are settled ([`crate::upload::settle`]); messages whose
//! source key the migration's state already maps to a target UID are skipped; a message the
//! target already holds (same Message-ID and size, e.g. from an earlier partial migration by
//! another tool) is recorded, not copied; the rest go up in batches with their flags and date,
//! each recorded before its APPEND and paired after it, exactly as `sync` uploads. The source
//! changes only with `--delete-source`, and then only for messages the target confirmed.

pub mod source;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use anyhow::Context;

use crate::config::Account;
use crate::exit::{Classify, Exit};
use crate::imap::{self, RemoteFolder, Session};
use crate::maildir::Maildir;
use crate::report::{Output, Summary};
use crate::state::{ImapFolder, ImapRecord, State};
use crate::text::sanitize;
use crate::upload::{self, Upload};
use crate::{failpoint, transfer};
use source::{Item, Source, Unit};

/// Messages per batch loaded from the source (one batch in memory at a time).
const BATCH_MESSAGES: usize = 32;
/// Bytes per batch loaded from the source.
const BATCH_BYTES: u64 = 16 << 20;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Name of the source, for messages.
    pub from: String,
    /// Name of the target, for messages.
    pub to: String,
    /// Target folder for a POP3 mailbox and a Maildir's root.
    pub inbox: Vec<String>,
    /// Remove what the target confirmed from the source.
    pub delete_source: bool,
    /// Change nothing anywhere; show the plan.
    pub dry_run: bool,
    /// After copying, compare both sides message by message.
    pub verify: bool,
}

/// What a migration did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MigrateOutcome {
    /// Source.
    pub from: String,
    /// Target.
    pub to: String,
    /// Messages uploaded.
    pub copied: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Messages found on the target already (by Message-ID and size) and not copied.
    pub already_there: u64,
    /// Messages copied by an earlier run.
    pub done_before: u64,
    /// Folders created on the target.
    pub folders_created: u64,
    /// Messages removed from the source (`--delete-source`).
    pub source_deleted: u64,
    /// Verification: messages checked, missing on the target, and differing.
    pub verified: Option<Verification>,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// The result of `--verify`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Verification {
    /// Source messages compared.
    pub checked: u64,
    /// Source messages the target does not have.
    pub missing: u64,
    /// Source messages whose copy on the target has other bytes.
    pub differ: u64,
}

/// `--verify` found differences.
#[derive(Debug, thiserror::Error)]
#[error(
    "verification failed: {missing} of {checked} messages missing on the target, {differ} \
     differ (the warnings above name them)"
)]
pub struct Mismatch {
    checked: u64,
    missing: u64,
    differ: u64,
}

impl Classify for Mismatch {
    fn exit(&self) -> Exit {
        Exit::Differs
    }
}

impl MigrateOutcome {
    /// Adds one folder's part.
    fn add(&mut self, part: &MigrateOutcome) {
        self.copied += part.copied;
        self.bytes += part.bytes;
        self.already_there += part.already_there;
        self.done_before += part.done_before;
        self.folders_created += part.folders_created;
        self.source_deleted += part.source_deleted;
        if let Some(v) = &part.verified {
            let total = self.verified.get_or_insert_with(Verification::default);
            total.checked += v.checked;
            total.missing += v.missing;
            total.differ += v.differ;
        }
    }
}

impl Summary for MigrateOutcome {
    fn line(&self) -> String {
        let mut parts = vec![if self.dry_run {
            format!("would copy {} messages", self.copied)
        } else {
            format!(
                "{} copied ({})",
                self.copied,
                crate::report::human_bytes(self.bytes)
            )
        }];
        for (n, what) in [
            (self.already_there, "already on the target"),
            (self.done_before, "copied before"),
            (self.folders_created, "folders created"),
            (self.source_deleted, "deleted from the source"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if let Some(v) = &self.verified {
            parts.push(format!(
                "verified {}: {} missing, {} differ",
                v.checked, v.missing, v.differ
            ));
        }
        format!("{} -> {}: {}", self.from, self.to, parts.join(", "))
    }
}

/// Where a migration reads from, so that each worker can open its own connection.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A Maildir tree.
    Maildir(std::path::PathBuf),
    /// A POP3 or IMAP account.
    Account(Box<Account>),
}

impl SourceSpec {
    async fn open(&self, delete: bool) -> anyhow::Result<Source> {
        match self {
            SourceSpec::Maildir(root) => Ok(Source::Maildir(Maildir::new(
                root,
                crate::config::Layout::MaildirPlusPlus,
            ))),
            SourceSpec::Account(a) => Source::open(a, delete).await,
        }
    }
}

/// Runs a migration into `target`: folders are created on one connection, then copied (and
/// verified) over up to the target account's `connections` connections at once, each worker
/// with its own source session (a POP3 mailbox is one folder, so one worker). `state_path`
/// is where extra workers open the state (a dry run, which works on a copy, uses one worker).
pub async fn run(
    spec: &SourceSpec,
    target: &Account,
    state: State,
    opts: &MigrateOptions,
    out: &Output,
) -> anyhow::Result<MigrateOutcome> {
    let mut outcome = MigrateOutcome {
        from: opts.from.clone(),
        to: opts.to.clone(),
        dry_run: opts.dry_run,
        ..MigrateOutcome::default()
    };
    let login = crate::credentials::Credentials::new(target)?;
    let mut source = spec.open(opts.delete_source).await?;
    let mut session = imap::open(target, &login.secret()?).await?;
    let units = source.units(&opts.inbox).await?;
    let delimiter = imap::delimiter(&mut session).await?;
    let (existing, _) = imap::list_folders(&mut session.client).await?;
    let mut existing: HashMap<Vec<String>, RemoteFolder> = existing
        .into_iter()
        .map(|f| (f.components.clone(), f))
        .collect();
    let mut jobs = Vec::with_capacity(units.len());
    for unit in units {
        // A dry run does not create folders, so one it would create cannot be selected.
        let exists = !opts.dry_run || existing.contains_key(&unit.target);
        let remote = match existing.get(&unit.target) {
            Some(f) => f.clone(),
            None => {
                let f = RemoteFolder::new(&unit.target, delimiter);
                if !opts.dry_run {
                    imap::create(&mut session, &f).await?;
                }
                outcome.folders_created += 1;
                existing.insert(unit.target.clone(), f.clone());
                f
            }
        };
        jobs.push((unit, remote, exists));
    }
    let state_path = state.path().to_path_buf();
    let workers = if opts.dry_run { 1 } else { target.connections };
    let parts = crate::join::work_queue(
        (source, session, state),
        jobs,
        workers,
        async || {
            Ok((
                spec.open(opts.delete_source).await?,
                imap::open(target, &login.secret()?).await?,
                State::open(&state_path)?,
            ))
        },
        async |(source, target, state): &mut (Source, Session, State),
               (unit, remote, exists): (Unit, RemoteFolder, bool)| {
            let mut part = MigrateOutcome::default();
            let mut pass = Pass {
                source,
                target,
                state,
                opts,
                out,
                unit: &unit,
                remote: &remote,
            };
            pass.copy(exists, &mut part)
                .await
                .with_context(|| format!("folder {}", sanitize(&unit.label, 100)))?;
            if opts.verify && !opts.dry_run {
                part.verified = Some(pass.verify().await?);
            }
            Ok(part)
        },
        async |(source, target, _): (Source, Session, State)| {
            source.finish().await?;
            let _ = target.client.logout().await;
            Ok(())
        },
    )
    .await?;
    for part in parts {
        outcome.add(&part);
    }
    if let Some(v) = &outcome.verified
        && (v.missing > 0 || v.differ > 0)
    {
        out.summary(&outcome);
        return Err(Mismatch {
            checked: v.checked,
            missing: v.missing,
            differ: v.differ,
        }
        .into());
    }
    Ok(outcome)
}

/// One unit's copy (or verification) into its target folder.
struct Pass<'a> {
    source: &'a mut Source,
    target: &'a mut Session,
    state: &'a mut State,
    opts: &'a MigrateOptions,
    out: &'a Output,
    unit: &'a Unit,
    remote: &'a RemoteFolder,
}

impl Pass<'_> {
    /// The folder's state row and the lowest UID an upload can get, with the target folder
    /// selected and state re-matched if its UIDVALIDITY changed.
    async fn open_target(&mut self, read_only: bool) -> anyhow::Result<(ImapFolder, u32)> {
        let mut folder = self
            .state
            .imap_folder(&self.remote.name, &self.unit.label)?;
        let selected = imap::select(self.target, self.remote, read_only, None).await?;
        let known = self.state.imap_messages(folder.id)?;
        if folder
            .uidvalidity
            .is_some_and(|v| v != selected.uidvalidity)
            && !known.is_empty()
        {
            let matched = transfer::rematch(
                self.target,
                self.state,
                &mut folder,
                selected.uidvalidity,
                &known,
            )
            .await?;
            self.out.warn(&transfer::rematch_report(
                &self.opts.to,
                &self.remote.name,
                matched,
                known.len(),
            ));
        }
        if folder.uidvalidity != Some(selected.uidvalidity) {
            folder.uidvalidity = Some(selected.uidvalidity);
            self.state.imap_folder_synced(&folder)?;
        }
        let floor = selected
            .uidnext
            .or_else(|| known.iter().map(|r| r.uid.saturating_add(1)).max())
            .unwrap_or(1);
        Ok((folder, floor))
    }

    async fn copy(&mut self, exists: bool, outcome: &mut MigrateOutcome) -> anyhow::Result<()> {
        let items = self.source.list(self.unit).await?;
        let (folder, floor) = if exists {
            let (f, floor) = self.open_target(self.opts.dry_run).await?;
            (Some(f), floor)
        } else {
            (None, 1)
        };
        if let (Some(folder), false) = (&folder, self.opts.dry_run) {
            upload::settle(self.target, self.state, folder).await?;
        }
        let migrated: HashSet<String> = match &folder {
            Some(f) => self
                .state
                .imap_messages(f.id)?
                .into_iter()
                .filter_map(|r| r.local_name)
                .collect(),
            None => HashSet::new(),
        };
        let (done, todo): (Vec<&Item>, Vec<&Item>) =
            items.iter().partition(|i| migrated.contains(&i.key));
        outcome.done_before += done.len() as u64;
        let Some(folder) = folder.filter(|_| !self.opts.dry_run) else {
            outcome.copied += todo.len() as u64;
            outcome.bytes += todo.iter().map(|i| i.size).sum::<u64>();
            if !todo.is_empty() {
                self.out.info(&format!(
                    "{} -> {}: would copy {} messages",
                    sanitize(&self.unit.label, 100),
                    sanitize(&self.remote.name, 100),
                    todo.len()
                ));
            }
            return Ok(());
        };
        if !todo.is_empty() {
            let mut present = self.target_index(&folder).await?;
            let label = format!("{} -> {}", self.unit.label, self.remote.name);
            let mut progress =
                self.out
                    .progress(&label, todo.len() as u64, todo.iter().map(|i| i.size).sum());
            for batch in batches(&todo) {
                let messages = self.source.load(self.unit, batch).await?;
                let mut found = Vec::new();
                let mut uploads = Vec::new();
                for m in messages {
                    progress.bytes(m.data.len() as u64);
                    progress.message();
                    let u = Upload::new(m.key, m.flags, &m.data, m.date, floor);
                    let there = u
                        .intent
                        .message_id
                        .clone()
                        .and_then(|id| present.get_mut(&(id, u.intent.size))?.pop());
                    match there {
                        Some(uid) => found.push(ImapRecord {
                            uid,
                            local_name: Some(u.intent.local.clone()),
                            flags: u.intent.flags.clone(),
                            size: u.intent.size,
                            message_id: u.intent.message_id.clone(),
                        }),
                        None => uploads.push(u),
                    }
                }
                if !found.is_empty() {
                    self.carry_flags(&found).await?;
                    failpoint::hit("migrate-after-flags");
                    self.state.imap_record(folder.id, &found)?;
                    self.state.imap_settle(folder.id)?;
                    failpoint::hit("migrate-after-found");
                    outcome.already_there += found.len() as u64;
                }
                let quoted = self.remote.quoted();
                let paired =
                    upload::append_batch(self.target, self.state, &folder, &quoted, &uploads)
                        .await?;
                for (u, (_, uid)) in uploads.iter().zip(&paired) {
                    if uid.is_some() {
                        outcome.copied += 1;
                        outcome.bytes += u.intent.size;
                    } else {
                        self.out.warn(&format!(
                            "{}: the target took message {} but it cannot be found again; it \
                             will be copied again by the next run",
                            sanitize(&self.remote.name, 100),
                            sanitize(&u.intent.local, 100)
                        ));
                    }
                }
            }
        }
        if self.opts.delete_source {
            let confirmed = self.still_on_target(&folder).await?;
            let (gone, kept): (Vec<&Item>, Vec<&Item>) =
                items.iter().partition(|i| confirmed.contains(&i.key));
            let lost = kept.iter().filter(|i| migrated.contains(&i.key)).count();
            if lost > 0 {
                self.out.warn(&format!(
                    "{}: {lost} messages copied before are no longer on the target; they stay \
                     in the source",
                    sanitize(&self.remote.name, 100)
                ));
            }
            outcome.source_deleted += self.source.delete(self.unit, &gone).await?;
        }
        Ok(())
    }

    /// The source keys whose copies the target holds now (asked, not assumed from state:
    /// a source message is only ever removed while its copy is there).
    async fn still_on_target(&mut self, folder: &ImapFolder) -> anyhow::Result<HashSet<String>> {
        let records = self.state.imap_messages(folder.id)?;
        let uids: Vec<u32> = records.iter().map(|r| r.uid).collect();
        if uids.is_empty() {
            return Ok(HashSet::new());
        }
        let present: HashSet<u32> = imap::search_uids(
            self.target,
            &format!("UID {}", imap::codec::format_set(&uids)),
        )
        .await?
        .into_iter()
        .collect();
        Ok(records
            .into_iter()
            .filter(|r| present.contains(&r.uid))
            .filter_map(|r| r.local_name)
            .collect())
    }

    /// Gives messages found on the target the source's flags too (added, none taken away).
    async fn carry_flags(&mut self, found: &[ImapRecord]) -> anyhow::Result<()> {
        let mut by_flags: HashMap<&str, Vec<u32>> = HashMap::new();
        for r in found.iter().filter(|r| !r.flags.is_empty()) {
            by_flags.entry(&r.flags).or_default().push(r.uid);
        }
        for (flags, uids) in by_flags {
            self.target
                .client
                .run(&format!(
                    "UID STORE {} +FLAGS.SILENT ({})",
                    imap::codec::format_set(&uids),
                    crate::flags::FlagSet::parse(flags).to_imap()
                ))
                .await?;
        }
        Ok(())
    }

    /// Messages on the target that state does not map yet, by (Message-ID, size).
    async fn target_index(
        &mut self,
        folder: &ImapFolder,
    ) -> anyhow::Result<HashMap<(String, u64), Vec<u32>>> {
        let claimed: HashSet<u32> = self
            .state
            .imap_messages(folder.id)?
            .into_iter()
            .map(|r| r.uid)
            .collect();
        let mut index: HashMap<(String, u64), Vec<u32>> = HashMap::new();
        self.target
            .client
            .fetch_each(
                "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
                |f| {
                    if let (Some(uid), Some(size), Some(id)) = (
                        f.uid,
                        f.size,
                        f.header.as_deref().and_then(transfer::message_id),
                    ) && !claimed.contains(&uid)
                    {
                        index.entry((id, size)).or_default().push(uid);
                    }
                },
            )
            .await?;
        Ok(index)
    }

    /// Compares every source message with its copy on the target by SHA-256.
    async fn verify(&mut self) -> anyhow::Result<Verification> {
        let items = self.source.list(self.unit).await?;
        let (folder, _) = self.open_target(true).await?;
        let uid_of: HashMap<String, u32> = self
            .state
            .imap_messages(folder.id)?
            .into_iter()
            .filter_map(|r| Some((r.local_name?, r.uid)))
            .collect();
        let uids: Vec<u32> = items
            .iter()
            .filter_map(|i| uid_of.get(&i.key).copied())
            .collect();
        let target: HashMap<u32, String> = if uids.is_empty() {
            HashMap::new()
        } else {
            upload::content_hashes(self.target, &uids)
                .await?
                .into_iter()
                .collect()
        };
        let mut v = Verification::default();
        let all: Vec<&Item> = items.iter().collect();
        for batch in batches(&all) {
            for m in self.source.load(self.unit, batch).await? {
                v.checked += 1;
                let hash = upload::sha256_hex(&upload::to_crlf(&m.data));
                match uid_of.get(&m.key).and_then(|uid| target.get(uid)) {
                    None => {
                        v.missing += 1;
                        self.out.warn(&format!(
                            "{}: source message {} is not on the target",
                            sanitize(&self.remote.name, 100),
                            sanitize(&m.key, 100)
                        ));
                    }
                    Some(h) if *h != hash => {
                        v.differ += 1;
                        self.out.warn(&format!(
                            "{}: source message {} differs from its copy on the target",
                            sanitize(&self.remote.name, 100),
                            sanitize(&m.key, 100)
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        self.out.note(&format!(
            "verify {} -> {}: {} checked, {} missing, {} differ",
            sanitize(&self.unit.label, 100),
            sanitize(&self.remote.name, 100),
            v.checked,
            v.missing,
            v.differ
        ));
        Ok(v)
    }
}

/// Splits items into load batches of at most 32 messages or about 16 MiB.
fn batches<'a, 'b>(items: &'b [&'a Item]) -> Vec<&'b [&'a Item]> {
    transfer::chunks(items, BATCH_MESSAGES, BATCH_BYTES, |i| i.size)
}
