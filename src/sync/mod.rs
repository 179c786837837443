//! `mailferry sync`: two-way sync of IMAP folders with a Maildir (mbsync's model).
//!
//! Per folder: list both sides, settle what an interrupted run left (downloads and uploads
//! recorded but unconfirmed), plan with [`plan::plan`], then carry the plan out in the order
//! that can lose nothing: downloads and uploads first (each recorded before it becomes
//! visible), then flag changes, then deletions, then the new synced state.

pub mod plan;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context;
use serde::Serialize;

use crate::config::{Account, Channel, Sides, SyncDirection};
use crate::exit::{Classify, Exit};
use crate::flags::FlagSet;
use crate::imap::{self, RemoteFolder, Session, codec, date};
use crate::maildir::keywords::Keywords;
use crate::maildir::{Entry, Folder, Maildir, account_maildir};
use crate::report::{Output, Summary};
use crate::state::{ImapFolder, State, SyncedRecord};
use crate::text::sanitize;
use crate::transfer::{self, expunge, recover};
use crate::upload::{self, Upload};
use crate::{credentials, failpoint, join};
use plan::{Action, Pair, Policy};

/// Uploads recorded per state commit.
const UPLOAD_BATCH: usize = 32;

/// A safety stop: planning was refused for a folder.
#[derive(Debug, thiserror::Error)]
#[error("folder {folder}: {refusal}")]
pub struct Refused {
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
    /// Nothing was changed (dry run).
    pub dry_run: bool,
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
        ];
        let parts: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if parts.is_empty() {
            format!("{}: in sync, nothing to do", self.channel)
        } else {
            format!("{}: {verb}: {}", self.channel, parts.join(", "))
        }
    }
}

/// Syncs one channel.
pub async fn run(
    channel: &Channel,
    account: &Account,
    opts: &SyncOptions,
    state: &mut State,
    out: &Output,
) -> anyhow::Result<SyncOutcome> {
    let direction = opts.direction.unwrap_or(channel.sync);
    let policy = Policy {
        pull: direction != SyncDirection::Push,
        push: direction != SyncDirection::Pull,
        expunge_far: matches!(channel.expunge, Sides::Far | Sides::Both),
        expunge_near: matches!(channel.expunge, Sides::Near | Sides::Both),
    };
    let create_far = matches!(channel.create, Sides::Far | Sides::Both);
    let create_near = matches!(channel.create, Sides::Near | Sides::Both);
    let mut outcome = SyncOutcome {
        channel: channel.name.clone(),
        dry_run: opts.dry_run,
        ..SyncOutcome::default()
    };
    let login = credentials::Credentials::new(account)?;
    let maildir = account_maildir(account);
    let mut session = imap::open(account, &login.secret()?).await?;
    if policy.expunge_far && !session.client.has("UIDPLUS") {
        return Err(imap::ImapError::Missing(
            "UIDPLUS (UID EXPUNGE), which expunge = far or both needs to remove only the messages \
             deleted here (set expunge = near or none for this server)",
        )
        .into());
    }
    let (far_folders, skipped) = imap::list_folders(&mut session.client).await?;
    for warning in skipped {
        out.warn(&format!("{}: {warning}", channel.name));
    }
    let mut folders: BTreeMap<Vec<String>, Option<RemoteFolder>> = far_folders
        .into_iter()
        .filter(|f| imap::folder_selected(&f.name, &account.folders))
        .map(|f| (f.components.clone(), Some(f)))
        .collect();
    let mut near_folders = maildir.list_folders()?;
    if maildir.inbox_at_root() && maildir.root().join("cur").is_dir() {
        near_folders.push(vec!["INBOX".to_string()]);
    }
    for components in near_folders {
        if imap::folder_selected(&components.join("/"), &account.folders) {
            folders.entry(components).or_insert(None);
        }
    }
    let delimiter = imap::delimiter(&mut session).await?;
    let mut jobs = Vec::new();
    for (components, remote) in folders {
        let name = components.join("/");
        let near_exists = maildir
            .folder_path(&components.iter().map(String::as_str).collect::<Vec<_>>())?
            .join("cur")
            .is_dir();
        let remote = match remote {
            Some(r) => {
                if !near_exists && !create_near {
                    out.detail(&format!(
                        "{}: {name}: not in the Maildir and create does not allow it; skipped",
                        channel.name
                    ));
                    continue;
                }
                r
            }
            None => {
                if !create_far {
                    out.detail(&format!(
                        "{}: {name}: not on the server and create does not allow it; skipped",
                        channel.name
                    ));
                    continue;
                }
                let remote = RemoteFolder::new(&components, delimiter);
                if !opts.dry_run {
                    imap::create(&mut session, &remote).await?;
                    failpoint::hit("sync-after-create");
                }
                outcome.folders_created += 1;
                remote
            }
        };
        if !near_exists {
            outcome.folders_created += 1;
        }
        jobs.push(remote);
    }
    // Every worker has its own connection to the state database (SQLite serialises writers).
    let state_path = state.path().to_path_buf();
    let parts = join::work_queue(
        (session, State::open(&state_path)?),
        jobs,
        account.connections,
        async || {
            Ok((
                imap::open(account, &login.secret()?).await?,
                State::open(&state_path)?,
            ))
        },
        async |(session, state): &mut (Session, State), remote: RemoteFolder| {
            let mut part = SyncOutcome::default();
            let mut job = FolderSync {
                account,
                policy,
                dry_run: opts.dry_run,
                out,
                remote: &remote,
                maildir: &maildir,
            };
            job.run(session, state, &mut part)
                .await
                .with_context(|| format!("folder {}", sanitize(&remote.name, 100)))?;
            Ok(part)
        },
        async |(session, _): (Session, State)| Ok(session.client.logout().await?),
    )
    .await?;
    for part in parts {
        outcome.add(&part);
    }
    Ok(outcome)
}

/// A Maildir message as the planner sees it (its flags in the written form) and the file.
struct Near<'a> {
    flags: Cow<'a, str>,
    entry: &'a Entry,
}

impl AsRef<str> for Near<'_> {
    fn as_ref(&self) -> &str {
        &self.flags
    }
}

struct FolderSync<'a> {
    account: &'a Account,
    policy: Policy,
    dry_run: bool,
    out: &'a Output,
    remote: &'a RemoteFolder,
    maildir: &'a Maildir,
}

impl FolderSync<'_> {
    async fn run(
        &mut self,
        session: &mut Session,
        state: &mut State,
        outcome: &mut SyncOutcome,
    ) -> anyhow::Result<()> {
        let components: Vec<&str> = self.remote.components.iter().map(String::as_str).collect();
        let near_path = self.maildir.folder_path(&components)?;
        let local_path = near_path
            .strip_prefix(self.maildir.root())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut folder_state = state.imap_folder(&self.remote.name, &local_path)?;
        let since = folder_state.uidvalidity.zip(folder_state.highestmodseq);
        let selected = imap::select(session, self.remote, self.dry_run, since).await?;
        let local = if self.dry_run {
            None
        } else {
            Some(self.maildir.open_folder(&components)?)
        };
        if let Some(local) = &local {
            recover(state, &folder_state, local)?;
            upload::settle(session, state, &folder_state).await?;
        }
        // After a UIDVALIDITY change the old pairs are matched to the new UIDs first (loaded
        // only then: at 50,000 messages every copy of them is megabytes).
        let reset = folder_state
            .uidvalidity
            .is_some_and(|v| v != selected.uidvalidity);
        let old = if reset {
            state.imap_messages(folder_state.id)?
        } else {
            Vec::new()
        };
        if !old.is_empty() {
            if self.dry_run {
                self.out.warn(&format!(
                    "{}: UIDVALIDITY changed; a real run will re-match messages",
                    self.remote.name
                ));
                return Ok(());
            }
            let matched = transfer::rematch(
                session,
                state,
                &mut folder_state,
                selected.uidvalidity,
                &old,
            )
            .await?;
            self.out.warn(&transfer::rematch_report(
                &self.account.name,
                &self.remote.name,
                matched,
                old.len(),
            ));
        }
        drop(old);
        folder_state.uidvalidity = Some(selected.uidvalidity);
        let known = state.imap_synced(folder_state.id)?;

        let mut far = if selected.resynced {
            far_from_changes(&known, &selected)
        } else {
            far_listing(session, &selected).await?
        };
        // Keywords need a letter in the folder's table to be stored locally; those that get
        // none (26 already) are left out on every side, so their absence is not a change.
        let mut keywords = Keywords::load(&near_path)?;
        let mut refused = BTreeSet::new();
        for flags in far.values_mut().filter(|f| !plan::plain(f)) {
            let set = FlagSet::parse(flags);
            refused.extend(keywords.admit(&set));
            *flags = Cow::Owned(keywords.storable(&set).to_string());
        }
        if !refused.is_empty() {
            self.out.warn(&format!(
                "{}: keywords not carried (the Maildir folder has room for 26): {}",
                sanitize(&self.remote.name, 100),
                sanitize(&refused.into_iter().collect::<Vec<_>>().join(" "), 300)
            ));
        }
        let entries: Vec<Entry> = match &local {
            Some(l) => l.list()?,
            None => match self.maildir.folder_path(&components) {
                Ok(p) if p.join("cur").is_dir() => Folder::at(p).list()?,
                _ => Vec::new(),
            },
        };
        let near: HashMap<&str, Near> = entries
            .iter()
            .map(|e| {
                let flags = if plan::plain(e.flags()) {
                    Cow::Borrowed(e.flags())
                } else {
                    Cow::Owned(keywords.flags(e.flags()).to_string())
                };
                (e.unique(), Near { flags, entry: e })
            })
            .collect();
        // Synced flags with keywords are read against the folder's table (rare: the others are
        // used as they are).
        let storable: HashMap<u32, String> = known
            .iter()
            .filter(|r| !plan::plain(&r.flags))
            .map(|r| {
                let set = keywords.storable(&FlagSet::parse(&r.flags));
                (r.uid, set.to_string())
            })
            .collect();
        let pairs: Vec<Pair> = known
            .iter()
            .map(|r| Pair {
                uid: r.uid,
                local: r.local_name.as_deref(),
                base: Some(storable.get(&r.uid).map_or(&*r.flags, String::as_str)),
            })
            .collect();
        let actions = plan::plan(&pairs, &far, &near, self.policy).map_err(|refusal| Refused {
            folder: sanitize(&self.remote.name, 100),
            refusal,
        })?;
        let Some(local) = local else {
            for a in &actions {
                self.out.info(&format!(
                    "{}: would {}",
                    sanitize(&self.remote.name, 100),
                    describe(a)
                ));
            }
            count(&actions, outcome);
            return Ok(());
        };
        // Every upload of this pass gets a UID at least this (what finds it without APPENDUID).
        let floor = selected
            .uidnext
            .or_else(|| known.iter().map(|r| r.uid.saturating_add(1)).max())
            .unwrap_or(1);
        self.execute(
            session,
            state,
            &folder_state,
            &local,
            &mut keywords,
            &near,
            &actions,
            floor,
            outcome,
        )
        .await?;
        folder_state.uidnext = selected.uidnext;
        folder_state.highestmodseq = selected.highestmodseq;
        state.imap_folder_synced(&folder_state)?;
        failpoint::hit("sync-after-folder");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        session: &mut Session,
        state: &mut State,
        folder: &ImapFolder,
        local: &Folder,
        keywords: &mut Keywords,
        near: &HashMap<&str, Near<'_>>,
        actions: &[Action],
        floor: u32,
        outcome: &mut SyncOutcome,
    ) -> anyhow::Result<()> {
        // Keyword letters given out while planning are on disk before any file uses them.
        keywords.save()?;
        // 1. Downloads.
        let downloads: Vec<(u32, u64)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Download { uid, .. } => Some((*uid, 0)),
                _ => None,
            })
            .collect();
        let label = format!("{}/{}", self.account.name, self.remote.name);
        let mut progress = self.out.progress(&label, downloads.len() as u64, 0);
        let landed = transfer::download(
            session,
            state,
            folder,
            local,
            keywords,
            &downloads,
            &mut progress,
        )
        .await?;
        outcome.downloaded += landed.len() as u64;
        drop(progress);
        state.imap_settle(folder.id)?;

        // 2. Uploads: recorded before the APPEND, paired by APPENDUID or found by content.
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
                let Some(Near { entry, .. }) = near.get(name.as_str()) else {
                    continue;
                };
                let path = entry.path(local);
                let raw =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                prepared.push(Upload::new(
                    entry.unique().to_string(),
                    keywords.flags(entry.flags()).to_string(),
                    &raw,
                    mtime.map(date::format),
                    floor,
                ));
            }
            let done =
                upload::append_batch(session, state, folder, &self.remote.quoted(), &prepared)
                    .await?;
            outcome.uploaded += done.len() as u64;
        }

        // 3. Flags, grouped into as few STOREs as there are distinct changes.
        let mut stores: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
        for a in actions {
            if let Action::FarFlags { uid, add, remove } = a {
                stores
                    .entry((add.clone(), remove.clone()))
                    .or_default()
                    .push(*uid);
                outcome.far_flags += 1;
            }
        }
        for ((add, remove), uids) in stores {
            let set = codec::format_set(&uids);
            if !add.is_empty() {
                session
                    .client
                    .run(&format!(
                        "UID STORE {set} +FLAGS.SILENT ({})",
                        FlagSet::parse(&add).to_imap()
                    ))
                    .await?;
                failpoint::hit("sync-after-far-flags");
            }
            if !remove.is_empty() {
                session
                    .client
                    .run(&format!(
                        "UID STORE {set} -FLAGS.SILENT ({})",
                        FlagSet::parse(&remove).to_imap()
                    ))
                    .await?;
                failpoint::hit("sync-after-far-flags");
            }
        }
        let mut touched_near = false;
        for a in actions {
            if let Action::NearFlags { local: name, flags } = a
                && let Some(Near { entry, .. }) = near.get(name.as_str())
            {
                local.set_flags(
                    entry,
                    &keywords.letters(entry.flags(), &FlagSet::parse(flags)),
                )?;
                touched_near = true;
                outcome.near_flags += 1;
                failpoint::hit("sync-after-near-flags");
            }
        }

        // 4. Deletions, where the channel allows them.
        let expunged: Vec<u32> = actions
            .iter()
            .filter_map(|a| match a {
                Action::ExpungeFar { uid } => Some(*uid),
                _ => None,
            })
            .collect();
        if !expunged.is_empty() {
            outcome.far_deleted += expunge(session, state, folder, &expunged).await?;
        }
        for a in actions {
            if let Action::DeleteNear { local: name } = a
                && let Some(Near { entry, .. }) = near.get(name.as_str())
            {
                match std::fs::remove_file(entry.path(local)) {
                    Ok(()) => outcome.near_deleted += 1,
                    // A mail reader moved it meanwhile: look it up once.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if let Some(current) = local.find(entry.unique())? {
                            std::fs::remove_file(current.path(local))?;
                            outcome.near_deleted += 1;
                        }
                    }
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("removing {}", entry.path(local).display()));
                    }
                }
                touched_near = true;
                failpoint::hit("sync-after-near-delete");
            }
        }
        if touched_near {
            local.sync()?;
        }

        // 5. The new synced state.
        let bases: Vec<(u32, String)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Base { uid, flags } => Some((*uid, flags.clone())),
                _ => None,
            })
            .collect();
        state.imap_set_flags(folder.id, &bases)?;
        failpoint::hit("sync-after-bases");
        // Pairs expunged on the server were forgotten by `expunge`, and only if really gone.
        let forget: Vec<u32> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Forget { uid } if !expunged.contains(uid) => Some(*uid),
                _ => None,
            })
            .collect();
        state.imap_forget(folder.id, &forget)?;
        Ok(())
    }
}

/// The server's messages rebuilt from state and what QRESYNC reported since the last pass:
/// known messages with their synced flags (borrowed), less the vanished, with the changed and
/// new ones.
fn far_from_changes<'a>(
    known: &'a [SyncedRecord],
    selected: &imap::Selected,
) -> BTreeMap<u32, Cow<'a, str>> {
    let mut far: BTreeMap<u32, Cow<str>> = known
        .iter()
        .map(|r| (r.uid, Cow::Borrowed(&*r.flags)))
        .collect();
    for &(a, b) in &selected.vanished {
        let gone: Vec<u32> = far.range(a..=b).map(|(u, _)| *u).collect();
        for uid in gone {
            far.remove(&uid);
        }
    }
    for f in &selected.changed {
        if let Some(uid) = f.uid {
            far.insert(
                uid,
                Cow::Owned(FlagSet::from_imap(f.flags.as_deref().unwrap_or_default()).to_string()),
            );
        }
    }
    far
}

/// Every message of the selected folder with its flags (one round trip).
async fn far_listing(
    session: &mut Session,
    selected: &imap::Selected,
) -> anyhow::Result<BTreeMap<u32, Cow<'static, str>>> {
    if selected.exists == 0 {
        return Ok(BTreeMap::new());
    }
    let mut far = BTreeMap::new();
    session
        .client
        .fetch_each("UID FETCH 1:* (UID FLAGS)", |f| {
            if let Some(uid) = f.uid {
                let flags = FlagSet::from_imap(f.flags.as_deref().unwrap_or_default());
                far.insert(uid, Cow::Owned(flags.to_string()));
            }
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

fn count(actions: &[Action], outcome: &mut SyncOutcome) {
    for a in actions {
        match a {
            Action::Download { .. } => outcome.downloaded += 1,
            Action::Upload { .. } => outcome.uploaded += 1,
            Action::FarFlags { .. } => outcome.far_flags += 1,
            Action::NearFlags { .. } => outcome.near_flags += 1,
            Action::ExpungeFar { .. } => outcome.far_deleted += 1,
            Action::DeleteNear { .. } => outcome.near_deleted += 1,
            Action::Base { .. } | Action::Forget { .. } => {}
        }
    }
}
