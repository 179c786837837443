//! One unit of a migration: its messages listed on the source, copied to the target folder in
//! batches (one batch in memory at a time), the source's copies removed when asked, verified.

use std::collections::{HashMap, HashSet};

use super::{MigrateOptions, MigrateOutcome, Unit, UnitPlan, Verification};
use crate::deliver::chunks;
use crate::failpoint;
use crate::flags::FlagSet;
use crate::message::{sha256_hex, to_crlf};
use crate::reconcile;
use crate::report::Output;
use crate::state::{Deliveries, Delivery, FolderLedger, State};
use crate::store::{
    Access, Bodies, Change, Deletes, Fetched, Items, Need, Search, Sink, Store, Uids,
};
use crate::text::sanitize;
use crate::upload::{self, Upload};

/// Messages per batch loaded from the source (one batch in memory at a time).
const BATCH_MESSAGES: usize = 32;
/// Bytes per batch loaded from the source.
const BATCH_BYTES: u64 = 16 << 20;

/// A message of the source, not loaded yet.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// Its lasting identity in the source (Maildir unique name, POP3 identity, IMAP
    /// UIDVALIDITY.UID).
    key: String,
    /// Its number in the open source mailbox.
    uid: u32,
    /// Its size, as far as the source tells.
    size: u64,
}

/// A loaded message.
#[derive(Debug)]
struct Message {
    key: String,
    /// Its bytes as stored (line ends as the source keeps them).
    data: Vec<u8>,
    /// Its flags (written form of [`crate::flags`]).
    flags: String,
    /// Its date as an IMAP date-time, if known.
    date: Option<String>,
}

/// One unit's copy (or verification) into its target folder.
pub(super) struct Pass<'a, S, T> {
    pub source: &'a mut S,
    pub target: &'a mut T,
    pub opts: &'a MigrateOptions,
    pub out: &'a Output,
    pub unit: &'a Unit,
    /// Set once the source was asked to delete at close.
    pub deleting: &'a mut bool,
}

impl<S: Store, T: Store> Pass<'_, S, T> {
    /// The unit's messages on the source, by number (the mailbox stays open for loading).
    async fn items(&mut self) -> anyhow::Result<Vec<Item>> {
        let access = if self.opts.delete_source {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let selected = self.source.select(&self.unit.source, access, None).await?;
        let lasting = self.source.caps().lasting_uids;
        if lasting && selected.exists == 0 {
            return Ok(Vec::new());
        }
        let mut items: Vec<Item> = Vec::new();
        let mut keyless = false;
        let wanted = Items {
            size: true,
            ..Items::default()
        };
        self.source
            .list(Uids::From(1), wanted, &mut |m| {
                let key = match (m.key, lasting) {
                    (Some(k), _) => k.into_string(),
                    (None, true) => format!("{}.{}", selected.uidvalidity, m.uid),
                    (None, false) => {
                        keyless = true;
                        return;
                    }
                };
                items.push(Item {
                    key,
                    uid: m.uid,
                    size: m.size,
                });
            })
            .await?;
        if keyless {
            return Err(self
                .source
                .missing(
                    Need::Identity,
                    "a migration needs to know what it copied before",
                )
                .into());
        }
        items.sort_by_key(|i| i.uid);
        items.dedup_by(|a, b| a.key == b.key);
        Ok(items)
    }

    /// Loads a batch of the unit's messages (the unit listed last).
    async fn load(&mut self, items: &[&Item]) -> anyhow::Result<Vec<Message>> {
        let uids: Vec<u32> = items.iter().map(|i| i.uid).collect();
        let keys: HashMap<u32, &str> = items.iter().map(|i| (i.uid, i.key.as_str())).collect();
        let mut sink = Collect::default();
        self.source.fetch(&uids, Bodies::Whole, &mut sink).await?;
        Ok(sink
            .done
            .into_iter()
            .filter_map(|(f, data)| {
                let date = f.date.or_else(|| crate::message::date(&data));
                Some(Message {
                    key: keys.get(&f.uid)?.to_string(),
                    data,
                    flags: f.flags.to_string(),
                    date,
                })
            })
            .collect())
    }

    /// The target folder's ledger and the lowest UID an upload can get, with the target
    /// folder open and the ledger re-matched if its UIDVALIDITY changed.
    async fn open_target<'s>(
        &mut self,
        state: &'s mut State,
        read_only: bool,
    ) -> anyhow::Result<(FolderLedger<'s>, u32)> {
        let access = if read_only {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let selected = self.target.select(&self.unit.target, access, None).await?;
        let mut ledger = state.folder(&self.unit.target.name, &self.unit.source.name)?;
        if reconcile::renumbered(&ledger, selected.uidvalidity)? {
            let who = (self.opts.to.as_str(), self.unit.target.name.as_str());
            // Its copies are matched by Message-ID and size (there is no local copy to
            // compare content with).
            reconcile::rematch(
                self.target,
                &mut ledger,
                selected.uidvalidity,
                None,
                self.out,
                who,
            )
            .await?;
        }
        if ledger.folder.uidvalidity != Some(selected.uidvalidity) {
            ledger.folder.uidvalidity = Some(selected.uidvalidity);
            ledger.passed()?;
        }
        let floor = match selected.uidnext {
            Some(n) => n,
            None => ledger.highest_uid()?.saturating_add(1),
        };
        Ok((ledger, floor))
    }

    /// Copies the unit (a dry run: shows what it would copy).
    pub async fn copy(
        &mut self,
        state: &mut State,
        outcome: &mut MigrateOutcome,
    ) -> anyhow::Result<()> {
        let items = self.items().await?;
        if !self.unit.exists || self.opts.dry_run {
            return self.plan(state, items, outcome).await;
        }
        let (mut ledger, floor) = self.open_target(state, false).await?;
        upload::settle(self.target, &mut ledger).await?;
        let migrated = migrated(&ledger)?;
        let todo: Vec<&Item> = items
            .iter()
            .filter(|i| !migrated.contains(&i.key))
            .collect();
        outcome.done_before += (items.len() - todo.len()) as u64;
        if !todo.is_empty() {
            self.upload(&mut ledger, &todo, floor, outcome).await?;
        }
        if self.opts.delete_source {
            self.delete_source(&ledger, &items, &migrated, outcome)
                .await?;
        }
        Ok(())
    }

    /// A dry run's part: what would be copied.
    async fn plan(
        &mut self,
        state: &mut State,
        items: Vec<Item>,
        outcome: &mut MigrateOutcome,
    ) -> anyhow::Result<()> {
        let migrated = if self.unit.exists {
            let (ledger, _) = self.open_target(state, true).await?;
            migrated(&ledger)?
        } else {
            HashSet::new()
        };
        let (done, todo): (Vec<Item>, Vec<Item>) =
            items.into_iter().partition(|i| migrated.contains(&i.key));
        outcome.done_before += done.len() as u64;
        outcome.copied += todo.len() as u64;
        outcome.bytes += todo.iter().map(|i| i.size).sum::<u64>();
        if !todo.is_empty() {
            self.out.info(&format!(
                "{} -> {}: would copy {} messages",
                sanitize(&self.unit.source.name, 100),
                sanitize(&self.unit.target.name, 100),
                todo.len()
            ));
        }
        outcome.plan.push(UnitPlan {
            from: self.unit.source.name.clone(),
            to: self.unit.target.name.clone(),
            create: !self.unit.exists,
            copy: todo.into_iter().map(|i| i.key).collect(),
            done_before: done.len() as u64,
        });
        Ok(())
    }

    /// Copies what is not on the target yet, batch by batch.
    async fn upload(
        &mut self,
        ledger: &mut FolderLedger<'_>,
        todo: &[&Item],
        floor: u32,
        outcome: &mut MigrateOutcome,
    ) -> anyhow::Result<()> {
        let mut present = self.target_index(ledger).await?;
        let label = format!("{} -> {}", self.unit.source.name, self.unit.target.name);
        let total = todo.iter().map(|i| i.size).sum();
        let mut progress = self.out.progress(&label, todo.len() as u64, total);
        for batch in chunks(todo, BATCH_MESSAGES, BATCH_BYTES, |i| i.size) {
            let messages = self.load(batch).await?;
            let mut candidates = Vec::new();
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
                    Some(uid) => candidates.push((uid, u)),
                    None => uploads.push(u),
                }
            }
            let found = self.same_content(candidates, &mut uploads).await?;
            self.record_found(ledger, &found, outcome).await?;
            self.append(ledger, &uploads, outcome).await?;
        }
        Ok(())
    }

    /// Of messages the target seems to hold (same Message-ID and size), those whose content
    /// it holds too: a copy is only taken as there (and the source message then removable)
    /// when its bytes are; the others go up.
    async fn same_content(
        &mut self,
        candidates: Vec<(u32, Upload)>,
        uploads: &mut Vec<Upload>,
    ) -> anyhow::Result<Vec<Delivery>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let uids: Vec<u32> = candidates.iter().map(|(uid, _)| *uid).collect();
        let hashes: HashMap<u32, String> = upload::content_hashes(self.target, &uids)
            .await?
            .into_iter()
            .collect();
        let mut found = Vec::new();
        for (uid, u) in candidates {
            if hashes.get(&uid) != u.intent.hash.as_ref() {
                uploads.push(u);
                continue;
            }
            found.push(Delivery {
                uid,
                key: None,
                local: Some(u.intent.local.clone()),
                flags: u.intent.flags.clone(),
                size: u.intent.size,
                message_id: u.intent.message_id.clone(),
            });
        }
        Ok(found)
    }

    /// Messages the target holds already: given the source's flags too (added, none taken
    /// away) and recorded as copied.
    async fn record_found(
        &mut self,
        ledger: &mut FolderLedger<'_>,
        found: &[Delivery],
        outcome: &mut MigrateOutcome,
    ) -> anyhow::Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        let mut by_flags: HashMap<&str, Vec<u32>> = HashMap::new();
        for r in found.iter().filter(|r| !r.flags.is_empty()) {
            by_flags.entry(&r.flags).or_default().push(r.uid);
        }
        for (flags, uids) in by_flags {
            self.target
                .set_flags(&uids, Change::Add, &FlagSet::parse(flags))
                .await?;
        }
        failpoint::hit("migrate-after-flags")?;
        ledger.record(found)?;
        ledger.settle()?;
        failpoint::hit("migrate-after-found")?;
        outcome.already_there += found.len() as u64;
        Ok(())
    }

    /// Uploads a batch, each recorded before it is sent and paired after.
    async fn append(
        &mut self,
        ledger: &mut FolderLedger<'_>,
        uploads: &[Upload],
        outcome: &mut MigrateOutcome,
    ) -> anyhow::Result<()> {
        let paired = upload::append_batch(self.target, ledger, &self.unit.target, uploads).await?;
        for (u, (_, uid)) in uploads.iter().zip(&paired) {
            if uid.is_some() {
                outcome.copied += 1;
                outcome.bytes += u.intent.size;
            } else {
                self.out.warn(&format!(
                    "{}: the target took message {} but it cannot be found again; it will be \
                     copied again by the next run",
                    sanitize(&self.unit.target.name, 100),
                    sanitize(&u.intent.local, 100)
                ));
            }
        }
        Ok(())
    }

    /// Messages on the target that state does not map yet, by (Message-ID, size).
    async fn target_index(
        &mut self,
        ledger: &FolderLedger<'_>,
    ) -> anyhow::Result<HashMap<(String, u64), Vec<u32>>> {
        let claimed: HashSet<u32> = ledger.messages()?.into_iter().map(|r| r.uid).collect();
        let mut index: HashMap<(String, u64), Vec<u32>> = HashMap::new();
        let items = Items {
            size: true,
            message_id: true,
            ..Items::default()
        };
        self.target
            .list(Uids::From(1), items, &mut |m| {
                if let Some(id) = m.message_id
                    && !claimed.contains(&m.uid)
                {
                    index.entry((id, m.size)).or_default().push(m.uid);
                }
            })
            .await?;
        Ok(index)
    }

    /// Removes from the source the messages whose copies the target holds now (asked, not
    /// assumed from state: a source message is only ever removed while its copy is there).
    async fn delete_source(
        &mut self,
        ledger: &FolderLedger<'_>,
        items: &[Item],
        migrated: &HashSet<String>,
        outcome: &mut MigrateOutcome,
    ) -> anyhow::Result<()> {
        let confirmed = self.still_on_target(ledger).await?;
        let (gone, kept): (Vec<&Item>, Vec<&Item>) =
            items.iter().partition(|i| confirmed.contains(&i.key));
        let lost = kept.iter().filter(|i| migrated.contains(&i.key)).count();
        if lost > 0 {
            self.out.warn(&format!(
                "{}: {lost} messages copied before are no longer on the target; they stay in \
                 the source",
                sanitize(&self.unit.target.name, 100)
            ));
        }
        if gone.is_empty() {
            return Ok(());
        }
        let deletes = self.source.caps().deletes;
        if deletes == Deletes::Never {
            return Err(self
                .source
                .missing(
                    Need::ExactDelete,
                    "--delete-source needs to remove only what was copied (on the source)",
                )
                .into());
        }
        let uids: Vec<u32> = gone.iter().map(|i| i.uid).collect();
        self.source.mark_deleted(&uids).await?;
        match deletes {
            Deletes::Marked => failpoint::hit("migrate-after-source-store")?,
            Deletes::AtClose => {
                *self.deleting = true;
                failpoint::hit("migrate-after-dele")?
            }
            Deletes::AtOnce | Deletes::Never => {}
        }
        self.source.expunge(&uids).await?;
        if deletes == Deletes::Marked {
            failpoint::hit("migrate-after-source-expunge")?;
        }
        outcome.source_deleted += uids.len() as u64;
        Ok(())
    }

    /// The source keys whose copies the target holds now.
    async fn still_on_target(
        &mut self,
        ledger: &FolderLedger<'_>,
    ) -> anyhow::Result<HashSet<String>> {
        let records = ledger.messages()?;
        let uids: Vec<u32> = records.iter().map(|r| r.uid).collect();
        if uids.is_empty() {
            return Ok(HashSet::new());
        }
        let present: HashSet<u32> = self
            .target
            .search(Search::Present(&uids))
            .await?
            .into_iter()
            .collect();
        Ok(records
            .into_iter()
            .filter(|r| present.contains(&r.uid))
            .filter_map(|r| r.local_name)
            .collect())
    }

    /// Compares every source message with its copy on the target by SHA-256.
    pub async fn verify(&mut self, state: &mut State) -> anyhow::Result<Verification> {
        let items = self.items().await?;
        let uid_of: HashMap<String, u32> = {
            let (ledger, _) = self.open_target(state, true).await?;
            ledger
                .messages()?
                .into_iter()
                .filter_map(|r| Some((r.local_name?, r.uid)))
                .collect()
        };
        let uids: Vec<u32> = items
            .iter()
            .filter_map(|i| uid_of.get(&i.key).copied())
            .collect();
        let target: HashMap<u32, (String, String)> = if uids.is_empty() {
            HashMap::new()
        } else {
            upload::both_hashes(self.target, &uids)
                .await?
                .into_iter()
                .map(|(uid, crlf, raw)| (uid, (crlf, raw)))
                .collect()
        };
        let mut v = Verification::default();
        let all: Vec<&Item> = items.iter().collect();
        for batch in chunks(&all, BATCH_MESSAGES, BATCH_BYTES, |i| i.size) {
            for m in self.load(batch).await? {
                v.checked += 1;
                // What was sent: the message with CRLF line ends.
                let sent = sha256_hex(&to_crlf(&m.data));
                let problem = match uid_of.get(&m.key).and_then(|uid| target.get(uid)) {
                    None => Some(("is not on the target", &mut v.missing)),
                    Some((_, raw)) if *raw == sent => None,
                    Some((crlf, _)) if *crlf == sent => Some((
                        "differs from its copy on the target only in line endings",
                        &mut v.line_endings,
                    )),
                    Some(_) => Some(("differs from its copy on the target", &mut v.differ)),
                };
                if let Some((what, count)) = problem {
                    *count += 1;
                    self.out.warn(&format!(
                        "{}: source message {} {what}",
                        sanitize(&self.unit.target.name, 100),
                        sanitize(&m.key, 100)
                    ));
                }
            }
        }
        self.out.note(&format!(
            "verify {} -> {}: {} checked, {} missing, {} differ",
            sanitize(&self.unit.source.name, 100),
            sanitize(&self.unit.target.name, 100),
            v.checked,
            v.missing,
            v.differ
        ));
        Ok(v)
    }
}

/// The source keys the target folder's ledger maps to a UID.
fn migrated(ledger: &FolderLedger<'_>) -> anyhow::Result<HashSet<String>> {
    Ok(ledger
        .messages()?
        .into_iter()
        .filter_map(|r| r.local_name)
        .collect())
}

/// Collects fetched messages in memory.
#[derive(Default)]
struct Collect {
    current: Vec<u8>,
    done: Vec<(Fetched, Vec<u8>)>,
}

impl Sink for Collect {
    fn begin(&mut self) -> anyhow::Result<()> {
        self.current.clear();
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.current.extend_from_slice(chunk);
        Ok(())
    }

    fn end(&mut self, fetched: Fetched) -> anyhow::Result<()> {
        self.done.push((fetched, std::mem::take(&mut self.current)));
        Ok(())
    }
}
