//! The durable delivery loop, shared by POP3 fetch, IMAP fetch and sync: messages fetched from
//! a store are streamed into tmp/, recorded in the ledger, made durable and renamed into place
//! one batch at a time (DESIGN.md §3), so that a crash at any point loses nothing and, after
//! [`recover`], duplicates nothing. Removing what landed is the caller's, after the batch.

use std::collections::{HashMap, HashSet};

use anyhow::Context;

use crate::failpoint;
use crate::flags::FlagSet;
use crate::maildir::keywords::Keywords;
use crate::maildir::{Folder, TmpMessage, Written};
use crate::report::Progress;
use crate::state::{Deliveries, Delivery, Steps};
use crate::store::{Bodies, Fetched, Pending, Sink, Store};

/// Messages per durable batch (one state commit and one directory sync each).
pub const BATCH_MESSAGES: usize = 64;
/// Bytes per durable batch.
pub const BATCH_BYTES: u64 = 16 << 20;

/// Splits (number, size) pairs into durable batches of at most 64 messages or about 16 MiB.
pub fn batches(messages: &[(u32, u64)]) -> Vec<&[(u32, u64)]> {
    chunks(messages, BATCH_MESSAGES, BATCH_BYTES, |&(_, size)| size)
}

/// Splits items into runs of at most `max` items and, unless one item alone is larger, about
/// `max_bytes` bytes.
pub fn chunks<T>(items: &[T], max: usize, max_bytes: u64, size: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let (mut take, mut bytes) = (0, 0);
        while take < rest.len() && take < max && (take == 0 || bytes < max_bytes) {
            bytes += size(&rest[take]);
            take += 1;
        }
        let (batch, tail) = rest.split_at(take);
        out.push(batch);
        rest = tail;
    }
    out
}

/// A message that landed in the Maildir.
#[derive(Debug, Clone)]
pub struct Landed {
    /// Its number on the store.
    pub uid: u32,
    /// Its lasting key, where the store has one.
    pub key: Option<Box<str>>,
    /// Its size on the store.
    pub size: u64,
}

/// What a download brought: the messages that landed, and the store's words for those it
/// refused to send.
#[derive(Debug, Default)]
pub struct Received {
    /// In the Maildir, recorded.
    pub landed: Vec<Landed>,
    /// Refusals of one message, by its number.
    refused: HashMap<u32, String>,
    /// A refusal of some of those asked for, not named (IMAP's tagged NO).
    refused_some: Option<String>,
}

impl Received {
    /// Adds what a later download brought.
    pub fn add(&mut self, other: Received) {
        self.landed.extend(other.landed);
        self.refused.extend(other.refused);
        self.refused_some = self.refused_some.take().or(other.refused_some);
    }

    /// The numbers of `asked` that did not land.
    pub fn missing(&self, asked: &[(u32, u64)]) -> Vec<u32> {
        let landed: HashSet<u32> = self.landed.iter().map(|l| l.uid).collect();
        asked
            .iter()
            .map(|&(uid, _)| uid)
            .filter(|uid| !landed.contains(uid))
            .collect()
    }

    /// Why message `uid` did not land, as far as the store said.
    pub fn why(&self, uid: u32) -> String {
        match (self.refused.get(&uid), &self.refused_some) {
            (Some(why), _) | (None, Some(why)) => why.clone(),
            (None, None) => "the server did not send it".to_string(),
        }
    }
}

/// Settles records of a batch that was interrupted: keeps those whose file is in the Maildir,
/// forgets the others (and their tmp/ leftovers) so that they are fetched again.
pub fn recover(ledger: &mut impl Deliveries, local: &Folder) -> anyhow::Result<()> {
    if !ledger.has_pending()? {
        return Ok(());
    }
    let present: HashSet<String> = local
        .list()?
        .iter()
        .map(|e| e.unique().to_string())
        .collect();
    for name in ledger.recover(&|name| present.contains(name))? {
        local.discard_tmp(&name);
    }
    Ok(())
}

/// Downloads into one Maildir folder, recording in one ledger.
pub struct Download<'a, L> {
    /// The folder messages land in.
    pub local: &'a Folder,
    /// Its keyword table (a keyword gets a letter when there is room).
    pub keywords: &'a mut Keywords,
    /// Where they are recorded.
    pub ledger: &'a mut L,
    /// Bytes and messages as they arrive.
    pub progress: &'a mut Progress,
}

impl<L: Deliveries> Download<'_, L> {
    /// Downloads `messages` (number, size) in durable batches, the next batch's fetch sent
    /// before the current one is read, so that the server never waits for a commit. Nothing
    /// else may be sent on the store meanwhile.
    pub async fn pipelined<S: Store>(
        &mut self,
        store: &mut S,
        messages: &[(u32, u64)],
    ) -> anyhow::Result<Received> {
        let (mut sink, ledger) = self.parts();
        let mut received = Received::default();
        let mut in_flight: Option<(Pending, Vec<u32>)> = None;
        for batch in batches(messages) {
            let uids: Vec<u32> = batch.iter().map(|&(u, _)| u).collect();
            sink.wanted.extend(&uids);
            let pending = store.fetch_send(&uids, Bodies::Whole).await?;
            if let Some((pending, uids)) = in_flight.replace((pending, uids)) {
                received.add(receive(store, pending, &mut sink, ledger, &uids).await?);
            }
        }
        if let Some((pending, uids)) = in_flight {
            received.add(receive(store, pending, &mut sink, ledger, &uids).await?);
        }
        Ok(received)
    }

    /// Downloads one batch and makes it durable (delete modes remove each batch before the
    /// next is fetched).
    pub async fn batch<S: Store>(
        &mut self,
        store: &mut S,
        batch: &[(u32, u64)],
    ) -> anyhow::Result<Received> {
        let (mut sink, ledger) = self.parts();
        let uids: Vec<u32> = batch.iter().map(|&(u, _)| u).collect();
        sink.wanted.extend(&uids);
        let pending = store.fetch_send(&uids, Bodies::Whole).await?;
        receive(store, pending, &mut sink, ledger, &uids).await
    }

    /// The sink bodies go to, and the ledger (borrowed apart).
    fn parts(&mut self) -> (DeliverySink<'_>, &mut L) {
        let sink = DeliverySink {
            local: self.local,
            keywords: self.keywords,
            current: None,
            done: Vec::new(),
            wanted: HashSet::new(),
            refused: HashMap::new(),
            refused_some: None,
            progress: self.progress,
            step: L::STEPS,
        };
        (sink, self.ledger)
    }
}

/// Reads until one batch's fetch is complete, then records the batch, makes it durable and
/// renames it into place.
async fn receive<S: Store, L: Deliveries>(
    store: &mut S,
    pending: Pending,
    sink: &mut DeliverySink<'_>,
    ledger: &mut L,
    uids: &[u32],
) -> anyhow::Result<Received> {
    store.fetch_receive(pending, sink).await?;
    let batch: HashSet<u32> = uids.iter().copied().collect();
    let (mut arrived, early): (Vec<Arrived>, Vec<Arrived>) = std::mem::take(&mut sink.done)
        .into_iter()
        .partition(|a| batch.contains(&a.fetched.uid));
    sink.done = early;
    // Whatever of this batch did not come is not coming (removed meanwhile).
    sink.wanted.retain(|u| !batch.contains(u));
    arrived.sort_by_key(|a| a.fetched.uid);
    let records: Vec<Delivery> = arrived
        .iter()
        .map(|a| Delivery {
            uid: a.fetched.uid,
            key: a.fetched.key.clone(),
            local: Some(a.written.unique()),
            flags: a.flags.clone(),
            size: a.size(),
            message_id: a.fetched.message_id.clone(),
        })
        .collect();
    // Recorded before the rename, so that a crash after it cannot cause a duplicate.
    ledger.record(&records)?;
    failpoint::hit(L::STEPS.record)?;
    let landed: Vec<Landed> = arrived
        .iter()
        .map(|a| Landed {
            uid: a.fetched.uid,
            key: a.fetched.key.clone(),
            size: a.size(),
        })
        .collect();
    // New keyword letters are on disk before any file uses them.
    sink.keywords.save()?;
    let files = arrived
        .into_iter()
        .map(|a| {
            let letters = sink.keywords.letters("", &FlagSet::parse(&a.flags));
            (a.written, letters)
        })
        .collect();
    sink.local.commit(files)?;
    failpoint::hit(L::STEPS.rename)?;
    Ok(Received {
        landed,
        refused: std::mem::take(&mut sink.refused),
        refused_some: sink.refused_some.take(),
    })
}

/// A fetched message, written into tmp/.
struct Arrived {
    fetched: Fetched,
    /// The flags its file will have (written form).
    flags: String,
    written: Written,
}

impl Arrived {
    fn size(&self) -> u64 {
        self.fetched.size.unwrap_or(self.written.size())
    }
}

/// Streams message bytes into tmp/ files and completes them with what came with them.
struct DeliverySink<'a> {
    local: &'a Folder,
    keywords: &'a mut Keywords,
    current: Option<TmpMessage>,
    done: Vec<Arrived>,
    wanted: HashSet<u32>,
    refused: HashMap<u32, String>,
    refused_some: Option<String>,
    progress: &'a mut Progress,
    step: Steps,
}

impl Sink for DeliverySink<'_> {
    // A message the store will not send is left where it is; the engine reports it and the
    // next run asks again.
    fn refused(&mut self, uid: Option<u32>, why: &str) -> bool {
        match uid {
            Some(uid) => self.refused.insert(uid, why.to_string()),
            None => self.refused_some.replace(why.to_string()),
        };
        true
    }

    fn begin(&mut self) -> anyhow::Result<()> {
        self.current = Some(self.local.create_tmp()?);
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.current
            .as_mut()
            .context("message data before its start")?
            .write_crlf(chunk)?;
        self.progress.bytes(chunk.len() as u64);
        Ok(())
    }

    fn end(&mut self, fetched: Fetched) -> anyhow::Result<()> {
        let tmp = self
            .current
            .take()
            .context("a message's end before its start")?;
        // A message not asked for is dropped (its tmp file goes with `tmp`).
        if !self.wanted.remove(&fetched.uid) {
            return Ok(());
        }
        let mtime = fetched.date.as_deref().and_then(crate::date::parse);
        let written = tmp.finish(mtime)?;
        failpoint::hit(self.step.tmp)?;
        // The flags a folder can store: a keyword gets a letter if there is room; the flags
        // recorded are the ones the file will have.
        self.keywords.admit(&fetched.flags);
        let flags = self.keywords.storable(&fetched.flags).to_string();
        self.done.push(Arrived {
            fetched,
            flags,
            written,
        });
        self.progress.message();
        Ok(())
    }
}
