//! `mailferry sync`: two-way sync of a store's folders with a Maildir (mbsync's model).
//!
//! Per folder: open both sides, settle what an interrupted run left (downloads and uploads
//! recorded but unconfirmed), list both sides, plan with [`plan::plan`]; a dry run shows the
//! plan, a real run carries it out ([`exec`]) in the order that can lose nothing: downloads
//! and uploads first (each recorded before it becomes visible), then flag changes, then
//! deletions, then the new synced state.

mod exec;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::Context;
use serde::Serialize;

use crate::adopt::adopt;
use crate::config::{Account, Channel, Sides, SyncDirection};
use crate::exit::{Classify, Exit};
use crate::failures::{self, Failure};
use crate::flags::FlagSet;
use crate::maildir::keywords::Keywords;
use crate::maildir::{Entry, Folder, Maildir, account_maildir};
use crate::reconcile;
use crate::report::{Output, Summary};
use crate::state::{FolderLedger, State, SyncedRecord};
use crate::store::{Access, Connect, Deletes, Items, Mailbox, Need, Selected, Store, Uids};
use crate::text::sanitize;
use crate::{deliver, failpoint, join, upload};
use plan::{Action, Pair, Policy};

/// A safety stop: planning was refused for a folder.
#[derive(Debug, thiserror::Error)]
#[error(
    "folder {folder}: {refusal}. If they were deleted on purpose, run `mailferry sync {channel} \
     --allow-empty {folder}` once: the deletions are then carried out as the channel's expunge \
     setting says. If not, restore the folder"
)]
pub struct Refused {
    channel: String,
    folder: String,
    refusal: plan::Refusal,
}

impl Classify for Refused {
    fn exit(&self) -> Exit {
        Exit::Refused
    }
}

/// Per-run options.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Direction from the command line, overriding the channel's.
    pub direction: Option<SyncDirection>,
    /// Change nothing anywhere.
    pub dry_run: bool,
    /// Folders whose emptied side is taken as deleted messages (`--allow-empty`).
    pub allow_empty: Vec<String>,
}

/// What a dry run would do in one folder.
#[derive(Debug, Clone, Serialize)]
pub struct FolderActions {
    /// The folder.
    pub folder: String,
    /// What would be done, in order.
    pub actions: Vec<Action>,
}

/// What a channel's sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncOutcome {
    /// Channel name.
    pub channel: String,
    /// Messages copied server -> Maildir.
    pub downloaded: u64,
    /// Messages copied Maildir -> server.
    pub uploaded: u64,
    /// Messages whose flags changed on the server.
    pub far_flags: u64,
    /// Messages whose flags changed in the Maildir.
    pub near_flags: u64,
    /// Messages expunged on the server.
    pub far_deleted: u64,
    /// Messages removed from the Maildir.
    pub near_deleted: u64,
    /// Folders created (either side).
    pub folders_created: u64,
    /// Messages both sides held already (state knew nothing of them), paired, not copied.
    pub paired: u64,
    /// Nothing was changed (dry run).
    pub dry_run: bool,
    /// A dry run's plan, folder by folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<FolderActions>,
    /// Folders that failed while the others synced (under `failed` of the job).
    #[serde(skip)]
    pub failed: Vec<Failure>,
}

impl SyncOutcome {
    /// Adds another partial outcome (one folder's) to this one.
    pub fn add(&mut self, other: &SyncOutcome) {
        self.downloaded += other.downloaded;
        self.uploaded += other.uploaded;
        self.far_flags += other.far_flags;
        self.near_flags += other.near_flags;
        self.far_deleted += other.far_deleted;
        self.near_deleted += other.near_deleted;
        self.folders_created += other.folders_created;
        self.paired += other.paired;
        self.plan.extend(other.plan.iter().cloned());
        self.failed.extend(other.failed.iter().cloned());
    }

    /// Counts what a dry run's actions would do, and keeps them.
    fn planned(&mut self, folder: &str, actions: Vec<Action>) {
        for a in &actions {
            match a {
                Action::Download { .. } => self.downloaded += 1,
                Action::Upload { .. } => self.uploaded += 1,
                Action::FarFlags { .. } => self.far_flags += 1,
                Action::NearFlags { .. } => self.near_flags += 1,
                Action::ExpungeFar { .. } => self.far_deleted += 1,
                Action::DeleteNear { .. } => self.near_deleted += 1,
                Action::Base { .. } | Action::Forget { .. } => {}
            }
        }
        if !actions.is_empty() {
            self.plan.push(FolderActions {
                folder: folder.to_string(),
                actions,
            });
        }
    }
}

impl Summary for SyncOutcome {
    fn line(&self) -> String {
        let verb = if self.dry_run {
            "would change"
        } else {
            "synced"
        };
        let counts = [
            (self.downloaded, "downloaded"),
            (self.uploaded, "uploaded"),
            (self.far_flags, "flags changed on the server"),
            (self.near_flags, "flags changed locally"),
            (self.far_deleted, "expunged on the server"),
            (self.near_deleted, "removed locally"),
            (self.folders_created, "folders created"),
            (self.paired, "already on both sides, paired"),
        ];
        let mut parts: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !self.failed.is_empty() {
            parts.push(failures::counted(&self.failed));
        }
        if parts.is_empty() {
            format!("{}: in sync, nothing to do", self.channel)
        } else {
            format!("{}: {verb}: {}", self.channel, parts.join(", "))
        }
    }
}

/// The channel's direction and expunge settings as the planner takes them.
fn policy(channel: &Channel, opts: &SyncOptions) -> Policy {
    let direction = opts.direction.unwrap_or(channel.sync);
    Policy {
        pull: direction != SyncDirection::Push,
        push: direction != SyncDirection::Pull,
        expunge_far: matches!(channel.expunge, Sides::Far | Sides::Both),
        expunge_near: matches!(channel.expunge, Sides::Near | Sides::Both),
        allow_empty: false,
    }
}

/// Syncs one channel.
pub async fn run<C: Connect>(
    connect: &C,
    channel: &Channel,
    account: &Account,
    opts: &SyncOptions,
    state: &mut State,
    out: &Output,
) -> anyhow::Result<SyncOutcome> {
    let policy = policy(channel, opts);
    let mut outcome = SyncOutcome {
        channel: channel.name.clone(),
        dry_run: opts.dry_run,
        ..SyncOutcome::default()
    };
    let maildir = account_maildir(account);
    let mut store = connect.connect().await?;
    if policy.expunge_far && store.caps().deletes != Deletes::Marked {
        return Err(store
            .missing(
                Need::ExactDelete,
                "expunge = far or both needs to remove only the messages deleted here (set \
                 expunge = near or none for this server)",
            )
            .into());
    }
    let folders = pair_folders(&mut store, channel, account, &maildir, opts, state, out).await?;
    outcome.folders_created += folders.created;
    outcome.failed = folders.failed;
    // Every worker has its own connection to the state database (SQLite serialises writers).
    let state_path = state.path().to_path_buf();
    let parts = join::work_queue(
        (store, State::open(&state_path)?),
        folders.mailboxes,
        account.connections,
        async || Ok((connect.connect().await?, State::open(&state_path)?)),
        async |(store, state): &mut (C::Store, State), mailbox: Mailbox| {
            let job = FolderSync {
                account,
                channel: &channel.name,
                policy: Policy {
                    allow_empty: opts.allow_empty.contains(&mailbox.name),
                    ..policy
                },
                dry_run: opts.dry_run,
                out,
                mailbox: &mailbox,
                maildir: &maildir,
            };
            let done = job
                .run(store, state)
                .await
                .with_context(|| format!("folder {}", sanitize(&mailbox.name, 100)));
            failures::of_folder(&mailbox.name, done)
        },
        async |(store, _): (C::Store, State)| Ok(store.close().await?),
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

/// The folders a channel syncs, those missing on the server created (where allowed).
struct Paired {
    mailboxes: Vec<Mailbox>,
    created: u64,
    /// Folders the server would not create: left out, the others go on.
    failed: Vec<Failure>,
}

/// Pairs the server's folders with the Maildir's by name: a folder on one side only is
/// created on the other where `create` allows (on the server here, in the Maildir when it is
/// synced), else skipped.
async fn pair_folders<S: Store>(
    store: &mut S,
    channel: &Channel,
    account: &Account,
    maildir: &Maildir,
    opts: &SyncOptions,
    state: &State,
    out: &Output,
) -> anyhow::Result<Paired> {
    let create_far = matches!(channel.create, Sides::Far | Sides::Both);
    let create_near = matches!(channel.create, Sides::Near | Sides::Both);
    let far = store.mailboxes().await?;
    let mut folders: BTreeMap<Vec<String>, Option<Mailbox>> = far
        .mailboxes
        .into_iter()
        .filter(|f| crate::store::selected_by(&f.name, &account.folders))
        .map(|f| (f.components.clone(), Some(f)))
        .collect();
    let mut near_folders = maildir.list_folders()?;
    if maildir.inbox_at_root() && maildir.root().join("cur").is_dir() {
        near_folders.push(vec!["INBOX".to_string()]);
    }
    for components in near_folders {
        if crate::store::selected_by(&components.join("/"), &account.folders) {
            folders.entry(components).or_insert(None);
        }
    }
    // A server folder that cannot be used is a failure of that folder: its mail is not copied.
    let unusable = far
        .skipped
        .into_iter()
        .filter(|s| crate::store::selected_by(&s.folder, &account.folders));
    let mut paired = Paired {
        mailboxes: Vec::new(),
        created: 0,
        failed: unusable.map(Failure::from).collect(),
    };
    for (components, far) in folders {
        let name = components.join("/");
        let levels: Vec<&str> = components.iter().map(String::as_str).collect();
        let near_path =
            failures::of_folder(&name, maildir.folder_path(&levels).map_err(Into::into))?;
        let near_path = match near_path {
            Ok(path) => path,
            Err(failure) => {
                paired.failed.push(failure);
                continue;
            }
        };
        let near_exists = Folder::at(near_path.clone()).exists();
        // A server folder synced before and gone now was deleted there (or renamed): it is
        // not made again without being asked, and its local copies are kept.
        let kept = match far {
            None if near_exists => state.kept_locally(&name)?,
            _ => 0,
        };
        if kept > 0 && !opts.allow_empty.contains(&name) {
            paired.failed.push(Failure::folder(
                &name,
                vanished(&channel.name, &name, kept, &near_path),
            ));
            continue;
        }
        let (side, allowed) = match &far {
            Some(_) => ("in the Maildir", near_exists || create_near),
            None => ("on the server", create_far || kept > 0),
        };
        if !allowed {
            out.detail(&format!(
                "{}: {name}: not {side} and create does not allow it; skipped",
                channel.name
            ));
            continue;
        }
        let mailbox = match far {
            Some(m) => m,
            None => match create_on_server(store, &components, opts.dry_run).await? {
                Ok(m) => {
                    paired.created += 1;
                    m
                }
                Err(failure) => {
                    paired.failed.push(failure);
                    continue;
                }
            },
        };
        if !near_exists {
            paired.created += 1;
        }
        paired.mailboxes.push(mailbox);
    }
    Ok(paired)
}

/// What is said of a server folder that vanished while state knows `kept` of its messages.
fn vanished(channel: &str, name: &str, kept: u64, local: &std::path::Path) -> String {
    let (name, local) = (sanitize(name, 100), local.display());
    format!(
        "folder {name}: gone from the server since it was last synced; its {kept} messages are \
         kept in the Maildir ({local}) and the folder is not created again. If it was deleted \
         on purpose, remove that Maildir folder too; to create it again and copy them back, \
         run `mailferry sync {channel} --allow-empty {name}` once"
    )
}

/// Creates on the server a folder the Maildir has; a refusal is that folder's failure.
async fn create_on_server<S: Store>(
    store: &mut S,
    components: &[String],
    dry_run: bool,
) -> anyhow::Result<Result<Mailbox, Failure>> {
    let mailbox = store.mailbox(components).await?;
    if dry_run {
        return Ok(Ok(mailbox));
    }
    let created = store
        .create(&mailbox)
        .await
        .with_context(|| format!("creating folder {}", sanitize(&mailbox.name, 100)));
    if let Err(failure) = failures::of_folder(&mailbox.name, created)? {
        return Ok(Err(failure));
    }
    failpoint::hit("sync-after-create")?;
    Ok(Ok(mailbox))
}

/// A Maildir message as the planner sees it (its flags as the other side would name them)
/// and the file.
struct Near<'a> {
    flags: FlagSet,
    entry: &'a Entry,
}

impl AsRef<FlagSet> for Near<'_> {
    fn as_ref(&self) -> &FlagSet {
        &self.flags
    }
}

/// One folder's pass.
struct FolderSync<'a> {
    account: &'a Account,
    channel: &'a str,
    policy: Policy,
    dry_run: bool,
    out: &'a Output,
    mailbox: &'a Mailbox,
    maildir: &'a Maildir,
}

impl FolderSync<'_> {
    async fn run<S: Store>(&self, store: &mut S, state: &mut State) -> anyhow::Result<SyncOutcome> {
        let components: Vec<&str> = self.mailbox.components.iter().map(String::as_str).collect();
        let near_path = self.maildir.folder_path(&components)?;
        let local_path = near_path
            .strip_prefix(self.maildir.root())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut ledger = state.folder(&self.mailbox.name, &local_path)?;
        let since = ledger.folder.uidvalidity.zip(ledger.folder.highestmodseq);
        let access = if self.dry_run {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let selected = store.select(self.mailbox, access, since).await?;
        let mut outcome = SyncOutcome::default();
        let local = match self.dry_run {
            true => Folder::at(near_path),
            false => {
                let local = self.maildir.open_folder(&components)?;
                deliver::recover(&mut ledger, &local)?;
                upload::settle(store, &mut ledger).await?;
                // State knows nothing of the folder but both sides hold mail: pair what is
                // on both before anything is copied.
                if ledger.folder.uidvalidity.is_none() && ledger.highest_uid()? == 0 {
                    outcome.paired += adopt(store, &mut ledger, &local, false).await?;
                }
                local
            }
        };
        if !self.rematch(store, &mut ledger, &selected, &local).await? {
            return Ok(outcome);
        }
        ledger.folder.uidvalidity = Some(selected.uidvalidity);
        let known = ledger.synced()?;
        let mut keywords = Keywords::load(local.path())?;
        let far = self.far(store, &known, &selected, &mut keywords).await?;
        let entries: Vec<Entry> = if local.exists() {
            listing_confirmed(|| Ok(local.list()?), &known)?
        } else {
            Vec::new()
        };
        let mut near = near_of(&entries, &keywords);
        if let Some(allowed) = &selected.keywords {
            self.limit_keywords(&mut near, allowed);
        }
        let actions = self.plan(&known, &far, &near, &keywords, &selected.keywords)?;
        if self.dry_run {
            self.show(&actions);
            outcome.planned(&self.mailbox.name, actions);
            return Ok(outcome);
        }
        // Every upload of this pass gets a UID at least this (what finds it when the server
        // does not say which it gave).
        let floor = selected
            .uidnext
            .or_else(|| known.iter().map(|r| r.uid.saturating_add(1)).max())
            .unwrap_or(1);
        let mut pass = exec::Pass {
            account: &self.account.name,
            mailbox: self.mailbox,
            out: self.out,
            ledger: &mut ledger,
            local: &local,
            keywords: &mut keywords,
            near: &near,
            floor,
            outcome: &mut outcome,
        };
        pass.execute(store, &actions).await?;
        if outcome.failed.is_empty() {
            ledger.folder.uidnext = selected.uidnext;
            ledger.folder.highestmodseq = selected.highestmodseq;
        }
        ledger.passed()?;
        failpoint::hit("sync-after-folder")?;
        Ok(outcome)
    }

    /// After a UIDVALIDITY change the old pairs are matched to the new UIDs first. Returns
    /// whether the pass goes on (a dry run stops there: it cannot re-match).
    async fn rematch<S: Store>(
        &self,
        store: &mut S,
        ledger: &mut FolderLedger<'_>,
        selected: &Selected,
        local: &Folder,
    ) -> anyhow::Result<bool> {
        if !reconcile::renumbered(ledger, selected.uidvalidity)? {
            return Ok(true);
        }
        if self.dry_run {
            self.out.warn(&format!(
                "{}: UIDVALIDITY changed; a real run will re-match messages",
                self.mailbox.name
            ));
            return Ok(false);
        }
        let who = (self.account.name.as_str(), self.mailbox.name.as_str());
        reconcile::rematch(
            store,
            ledger,
            selected.uidvalidity,
            Some(local),
            self.out,
            who,
        )
        .await?;
        Ok(true)
    }

    /// The server's messages with their flags as the folder can store them: keywords need a
    /// letter in the folder's table to be stored locally; those that get none (26 already)
    /// are left out on every side, so their absence is not a change.
    async fn far<S: Store>(
        &self,
        store: &mut S,
        known: &[SyncedRecord],
        selected: &Selected,
        keywords: &mut Keywords,
    ) -> anyhow::Result<BTreeMap<u32, FlagSet>> {
        let mut far = match &selected.changes {
            Some(changes) => far_from_changes(known, changes),
            None => far_listing(store).await?,
        };
        let mut refused = BTreeSet::new();
        for flags in far.values_mut().filter(|f| !f.plain()) {
            refused.extend(keywords.admit(flags));
            *flags = keywords.storable(flags);
        }
        if !refused.is_empty() {
            self.out.warn(&format!(
                "{}: keywords not carried (the Maildir folder has room for 26): {}",
                sanitize(&self.mailbox.name, 100),
                sanitize(&refused.into_iter().collect::<Vec<_>>().join(" "), 300)
            ));
        }
        Ok(far)
    }

    /// A server that keeps only some keywords (PERMANENTFLAGS): the others are left out of
    /// the local side as planned (they stay in the files), so they are neither pushed, to be
    /// dropped, nor taken as removed when the server does not have them; said once a pass.
    fn limit_keywords(&self, near: &mut HashMap<&str, Near<'_>>, allowed: &[String]) {
        let mut dropped = BTreeSet::new();
        for n in near.values_mut().filter(|n| !n.flags.plain()) {
            let kept = n.flags.only_keywords(allowed);
            dropped.extend(n.flags.minus(&kept).keywords().map(str::to_string));
            n.flags = kept;
        }
        if !dropped.is_empty() {
            self.out.warn(&format!(
                "{}: the server keeps no keywords but {}; not carried to it: {}",
                sanitize(&self.mailbox.name, 100),
                sanitize(&allowed.join(" "), 200),
                sanitize(&dropped.into_iter().collect::<Vec<_>>().join(" "), 300)
            ));
        }
    }

    /// Plans the folder, or refuses (a side emptied while state knows its messages).
    fn plan(
        &self,
        known: &[SyncedRecord],
        far: &BTreeMap<u32, FlagSet>,
        near: &HashMap<&str, Near<'_>>,
        keywords: &Keywords,
        allowed: &Option<Vec<String>>,
    ) -> anyhow::Result<Vec<Action>> {
        let pairs: Vec<Pair> = known
            .iter()
            .map(|r| {
                let base = synced_flags(r, keywords);
                Pair {
                    uid: r.uid,
                    local: r.local_name.as_deref(),
                    base: Some(match allowed {
                        Some(allowed) => base.only_keywords(allowed),
                        None => base,
                    }),
                }
            })
            .collect();
        let refused = |refusal| Refused {
            channel: self.channel.to_string(),
            folder: sanitize(&self.mailbox.name, 100),
            refusal,
        };
        match plan::plan(&pairs, far, near, self.policy) {
            // Emptied here, but every message turns up in another folder: moved by a mail
            // reader, so the deletions here are explained.
            Err(plan::Refusal::NearEmpty(_)) if self.moved_elsewhere(&pairs)? => {
                let policy = Policy {
                    allow_empty: true,
                    ..self.policy
                };
                Ok(plan::plan(&pairs, far, near, policy).map_err(refused)?)
            }
            result => Ok(result.map_err(refused)?),
        }
    }

    /// Whether every local message state knows in this folder is in another folder of the
    /// Maildir now (a file keeps its unique name when a reader moves it).
    fn moved_elsewhere(&self, pairs: &[Pair]) -> anyhow::Result<bool> {
        let mut missing: HashSet<&str> = pairs.iter().filter_map(|p| p.local).collect();
        let this = self.maildir.folder_path(
            &self
                .mailbox
                .components
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )?;
        let mut folders = self.maildir.list_folders()?;
        folders.push(vec!["INBOX".to_string()]);
        for components in folders {
            let levels: Vec<&str> = components.iter().map(String::as_str).collect();
            let path = self.maildir.folder_path(&levels)?;
            let folder = Folder::at(path.clone());
            if path == this || !folder.exists() {
                continue;
            }
            for e in folder.list()? {
                missing.remove(e.unique());
            }
            if missing.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The dry-run lines of a plan.
    fn show(&self, actions: &[Action]) {
        for a in actions {
            self.out.info(&format!(
                "{}: would {}",
                sanitize(&self.mailbox.name, 100),
                describe(a)
            ));
        }
    }
}

/// How often the Maildir is listed again to find messages a first listing missed.
const RELISTS: usize = 3;

/// The Maildir folder's messages, each that state knows but the listing does not have looked
/// for again: a mail reader renaming files while the directory is read (new/ -> cur/, or a
/// flag change) can hide one from a listing, and a message missing here would be taken as
/// deleted. The folder is listed again until a listing finds none of the missing ones.
fn listing_confirmed(
    mut list: impl FnMut() -> anyhow::Result<Vec<Entry>>,
    known: &[SyncedRecord],
) -> anyhow::Result<Vec<Entry>> {
    let mut entries = list()?;
    for _ in 0..RELISTS {
        let listed: HashSet<&str> = entries.iter().map(Entry::unique).collect();
        let mut missing: HashSet<&str> = known
            .iter()
            .filter_map(|r| r.local_name.as_deref())
            .filter(|name| !listed.contains(name))
            .collect();
        if missing.is_empty() {
            break;
        }
        let found: Vec<Entry> = list()?
            .into_iter()
            .filter(|e| missing.remove(e.unique()))
            .collect();
        if found.is_empty() {
            break;
        }
        entries.extend(found);
    }
    Ok(entries)
}

/// A pair's synced flags, read against the folder's keyword table (a keyword that has no
/// letter there is on neither side).
fn synced_flags(r: &SyncedRecord, keywords: &Keywords) -> FlagSet {
    let set = FlagSet::parse(&r.flags);
    if set.plain() {
        set
    } else {
        keywords.storable(&set)
    }
}

/// The Maildir's messages by unique name, with their flags.
fn near_of<'e>(entries: &'e [Entry], keywords: &Keywords) -> HashMap<&'e str, Near<'e>> {
    entries
        .iter()
        .map(|e| {
            let flags = keywords.flags(e.flags());
            (e.unique(), Near { flags, entry: e })
        })
        .collect()
}

/// The server's messages rebuilt from state and what changed since the last pass: known
/// messages with their synced flags, less the vanished, with the changed and new ones.
fn far_from_changes(
    known: &[SyncedRecord],
    changes: &crate::store::Changes,
) -> BTreeMap<u32, FlagSet> {
    let mut far: BTreeMap<u32, FlagSet> = known
        .iter()
        .map(|r| (r.uid, FlagSet::parse(&r.flags)))
        .collect();
    for &(a, b) in &changes.vanished {
        let gone: Vec<u32> = far.range(a..=b).map(|(u, _)| *u).collect();
        for uid in gone {
            far.remove(&uid);
        }
    }
    for (uid, flags) in &changes.changed {
        far.insert(*uid, flags.clone());
    }
    far
}

/// Every message of the open mailbox with its flags (one round trip).
async fn far_listing<S: Store>(store: &mut S) -> anyhow::Result<BTreeMap<u32, FlagSet>> {
    let mut far = BTreeMap::new();
    let items = Items {
        flags: true,
        ..Items::default()
    };
    store
        .list(Uids::From(1), items, &mut |m| {
            far.insert(m.uid, m.flags.unwrap_or_default());
        })
        .await?;
    Ok(far)
}

fn describe(a: &Action) -> String {
    match a {
        Action::Download { uid, .. } => format!("download UID {uid}"),
        Action::Upload { local, .. } => format!("upload {}", sanitize(local, 80)),
        Action::FarFlags { uid, add, remove } => {
            format!("set flags of UID {uid} on the server (+{add} -{remove})")
        }
        Action::NearFlags { local, flags } => {
            format!("set flags of {} to {flags}", sanitize(local, 80))
        }
        Action::ExpungeFar { uid } => format!("expunge UID {uid} on the server"),
        Action::DeleteNear { local } => format!("remove {}", sanitize(local, 80)),
        Action::Base { uid, flags } => format!("record flags {flags} for UID {uid}"),
        Action::Forget { uid } => format!("forget UID {uid}"),
    }
}
