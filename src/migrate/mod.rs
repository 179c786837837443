//! `mailferry migrate`: copies a store (a POP3 mailbox, a Maildir or an IMAP account) into an
//! IMAP server, idempotent and resumable.
//!
//! Per source mailbox (unit): the target folder is created if needed and opened; uploads an
//! interrupted run left unconfirmed are settled ([`crate::upload::settle`]); messages whose
//! source key the migration's state already maps to a target UID are skipped; a message the
//! target already holds (same Message-ID and size, e.g. from an earlier partial migration by
//! another tool) is recorded, not copied; the rest go up in batches with their flags and date,
//! each recorded before it is sent and paired after, exactly as `sync` uploads. A dry run
//! shows the plan. The source changes only with `--delete-source`, and then only for messages
//! the target confirmed.

mod copy;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::config::{Account, Protocol};
use crate::exit::{Classify, Exit};
use crate::failures::{self, Failure};
use crate::report::{Output, Summary};
use crate::state::State;
use crate::store::imap::ImapConnect;
use crate::store::maildir::MaildirStore;
use crate::store::pop3::Pop3Connect;
use crate::store::{AnyStore, Connect, Deletes, Mailbox, Store, selected_by};
use crate::text::sanitize;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Name of the source, for messages.
    pub from: String,
    /// Name of the target, for messages.
    pub to: String,
    /// Target folder for a POP3 mailbox and a Maildir's root.
    pub inbox: Vec<String>,
    /// The source folders to copy (patterns, as an account's `folders`).
    pub folders: Vec<String>,
    /// Remove what the target confirmed from the source.
    pub delete_source: bool,
    /// Change nothing anywhere; show the plan.
    pub dry_run: bool,
    /// After copying, compare both sides message by message.
    pub verify: bool,
}

/// What a dry run would copy from one source folder.
#[derive(Debug, Clone, Serialize)]
pub struct UnitPlan {
    /// The source folder.
    pub from: String,
    /// The target folder.
    pub to: String,
    /// Whether the target folder is created.
    pub create: bool,
    /// Source keys of the messages to copy.
    pub copy: Vec<String>,
    /// Messages copied by an earlier run.
    pub done_before: u64,
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
    /// A dry run's plan, folder by folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<UnitPlan>,
    /// Folders that failed while the others were copied (under `failed` of the job).
    #[serde(skip)]
    pub failed: Vec<Failure>,
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
    /// Source messages whose copy differs only in its line ends (the server keeps bare LF).
    pub line_endings: u64,
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
    /// What `--verify` found missing or different, if anything.
    pub fn mismatch(&self) -> Option<Mismatch> {
        let v = self.verified.as_ref()?;
        (v.missing > 0 || v.differ > 0).then_some(Mismatch {
            checked: v.checked,
            missing: v.missing,
            differ: v.differ,
        })
    }

    /// Adds one folder's part.
    fn add(&mut self, part: &MigrateOutcome) {
        self.copied += part.copied;
        self.bytes += part.bytes;
        self.already_there += part.already_there;
        self.done_before += part.done_before;
        self.folders_created += part.folders_created;
        self.source_deleted += part.source_deleted;
        self.plan.extend(part.plan.iter().cloned());
        self.failed.extend(part.failed.iter().cloned());
        if let Some(v) = &part.verified {
            let total = self.verified.get_or_insert_with(Verification::default);
            total.checked += v.checked;
            total.missing += v.missing;
            total.differ += v.differ;
            total.line_endings += v.line_endings;
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
            if v.line_endings > 0 {
                parts.push(format!("{} differ only in line endings", v.line_endings));
            }
        }
        if !self.failed.is_empty() {
            parts.push(crate::failures::counted(&self.failed));
        }
        format!("{} -> {}: {}", self.from, self.to, parts.join(", "))
    }
}

/// Where a migration reads from: each worker opens its own source connection.
pub enum SourceConnect<'a> {
    /// A Maildir tree.
    Maildir(PathBuf),
    /// A POP3 account.
    Pop3(Pop3Connect<'a>),
    /// An IMAP account.
    Imap(ImapConnect<'a>),
}

impl<'a> SourceConnect<'a> {
    /// The source an account is (its password source read once).
    pub async fn account(account: &'a Account) -> anyhow::Result<SourceConnect<'a>> {
        Ok(match account.protocol {
            Protocol::Pop3 => SourceConnect::Pop3(Pop3Connect::new(account).await?),
            Protocol::Imap => SourceConnect::Imap(ImapConnect::new(account).await?),
        })
    }
}

impl Connect for SourceConnect<'_> {
    type Store = AnyStore;

    async fn connect(&self) -> crate::store::Result<AnyStore> {
        Ok(match self {
            SourceConnect::Maildir(root) => {
                AnyStore::Maildir(Box::new(MaildirStore::new(root.clone())))
            }
            SourceConnect::Pop3(c) => AnyStore::Pop3(Box::new(c.connect().await?)),
            SourceConnect::Imap(c) => AnyStore::Imap(Box::new(c.connect().await?)),
        })
    }
}

/// One source mailbox and the target folder it goes to.
#[derive(Debug, Clone)]
struct Unit {
    source: Mailbox,
    target: Mailbox,
    /// The target folder exists (a dry run does not create it, so cannot open it).
    exists: bool,
}

/// A worker's connections: a source and a target session and a state connection.
struct Worker<S, T> {
    source: S,
    target: T,
    state: State,
    /// Deletions were marked that the session's end carries out (POP3), which must then
    /// succeed.
    deleting: bool,
}

/// Runs a migration: target folders are created on one connection, then units are copied
/// (and verified) over up to `connections` connections at once, each worker with its own
/// source session (a POP3 mailbox is one unit, so one worker). Extra workers open the state
/// at `state`'s path (a dry run, which works on a copy, uses one worker).
pub async fn run<C: Connect, D: Connect>(
    source: &C,
    target: &D,
    connections: usize,
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
    let mut src = source.connect().await?;
    let mut dst = target.connect().await?;
    let units = units(&mut src, &mut dst, opts, &mut outcome).await?;
    let state_path = state.path().to_path_buf();
    let workers = if opts.dry_run { 1 } else { connections };
    let first = Worker {
        source: src,
        target: dst,
        state,
        deleting: false,
    };
    let parts = crate::join::work_queue(
        first,
        units,
        workers,
        async || {
            Ok(Worker {
                source: source.connect().await?,
                target: target.connect().await?,
                state: State::open(&state_path)?,
                deleting: false,
            })
        },
        async |w: &mut Worker<C::Store, D::Store>, unit: Unit| {
            let done = copy_unit(w, &unit, opts, out).await;
            failures::of_folder(&unit.source.name, done)
        },
        async |w: Worker<C::Store, D::Store>| finish(w).await,
    )
    .await?;
    for part in parts {
        match part {
            Ok(part) => outcome.add(&part),
            Err(failure) => outcome.failed.push(failure),
        }
    }
    Ok(outcome)
}

/// The source's mailboxes with their target folders, the missing ones created (not in a dry
/// run).
async fn units<S: Store, T: Store>(
    src: &mut S,
    dst: &mut T,
    opts: &MigrateOptions,
    outcome: &mut MigrateOutcome,
) -> anyhow::Result<Vec<Unit>> {
    let listed = src.mailboxes().await?;
    // A source folder that cannot be named safely is that folder's failure: not copied, said.
    let unusable = listed
        .skipped
        .into_iter()
        .filter(|s| selected_by(&s.folder, &opts.folders));
    outcome.failed.extend(unusable.map(Failure::from));
    let mut existing: HashMap<Vec<String>, Mailbox> = dst
        .mailboxes()
        .await?
        .mailboxes
        .into_iter()
        .map(|f| (f.components.clone(), f))
        .collect();
    let mut units = Vec::new();
    for source in listed.mailboxes {
        if !source.root && !selected_by(&source.name, &opts.folders) {
            continue;
        }
        let components = if source.root {
            opts.inbox.clone()
        } else {
            source.components.clone()
        };
        let exists = !opts.dry_run || existing.contains_key(&components);
        let target = match existing.get(&components) {
            Some(f) => f.clone(),
            None => {
                let f = dst.mailbox(&components).await?;
                if !opts.dry_run {
                    // A target folder the server will not create fails its unit only.
                    let created = dst.create(&f).await.map_err(anyhow::Error::from);
                    let created = created
                        .with_context(|| format!("creating folder {}", sanitize(&f.name, 100)));
                    if let Err(failure) = failures::of_folder(&source.name, created)? {
                        outcome.failed.push(failure);
                        continue;
                    }
                }
                outcome.folders_created += 1;
                existing.insert(components, f.clone());
                f
            }
        };
        units.push(Unit {
            source,
            target,
            exists,
        });
    }
    Ok(units)
}

/// Copies (and verifies) one unit on a worker's connections.
async fn copy_unit<S: Store, T: Store>(
    w: &mut Worker<S, T>,
    unit: &Unit,
    opts: &MigrateOptions,
    out: &Output,
) -> anyhow::Result<MigrateOutcome> {
    let label = sanitize(&unit.source.name, 100);
    let mut pass = copy::Pass {
        source: &mut w.source,
        target: &mut w.target,
        opts,
        out,
        unit,
        deleting: &mut w.deleting,
    };
    let mut part = MigrateOutcome::default();
    pass.copy(&mut w.state, &mut part)
        .await
        .with_context(|| format!("folder {label}"))?;
    if opts.verify && !opts.dry_run {
        part.verified = Some(pass.verify(&mut w.state).await?);
    }
    Ok(part)
}

/// Ends a worker's sessions; a POP3 source's end carries out its deletions and must succeed.
async fn finish<S: Store, T: Store>(w: Worker<S, T>) -> anyhow::Result<()> {
    if w.source.caps().deletes == Deletes::AtClose {
        crate::failpoint::hit("migrate-before-quit")?;
    }
    let closed = w.source.close().await;
    if w.deleting {
        closed
            .context("the POP3 server did not confirm the deletions at the end of the session")?;
    }
    let _ = w.target.close().await;
    Ok(())
}
