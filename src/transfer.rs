//! Moving messages between an IMAP folder and a Maildir folder with durable state: the
//! download sequence (bodies written into tmp/ -> recorded -> synced and renamed into place),
//! exactly what is safe, crash recovery, and re-matching after a UIDVALIDITY change. Shared by
//! `fetch` and `sync`.

use std::collections::{HashMap, HashSet};

use anyhow::Context;

use crate::failpoint;
use crate::flags::FlagSet;
use crate::imap::{self, FetchSink, ImapError, Session, codec, date};
use crate::maildir::keywords::Keywords;
use crate::maildir::{Folder, TmpMessage, Written};
use crate::report::Progress;
use crate::state::{ImapFolder, ImapRecord, State};

/// Messages per durable batch (one state commit and one directory sync each).
pub const BATCH_MESSAGES: usize = 64;
/// Bytes per durable batch.
pub const BATCH_BYTES: u64 = 16 << 20;
/// What is fetched with each body (ENVELOPE and BODYSTRUCTURE are never asked for).
const BODY_ITEMS: &str =
    "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[])";

/// Splits (UID, size) pairs into durable batches of at most 64 messages or about 16 MiB.
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
    /// Its UID.
    pub uid: u32,
    /// Its flags as fetched (written form of [`crate::flags`]).
    pub flags: String,
    /// Its size on the server.
    pub size: u64,
}

/// Downloads messages in durable batches: bodies streamed into tmp/, recorded in state, then
/// made durable and renamed into place, one batch at a time. A crash at any point loses
/// nothing and, after [`recover`], duplicates nothing. UIDs the server no longer has are
/// skipped.
///
/// The batches are pipelined: the next batch's UID FETCH goes out before the current one is
/// read, so the server never waits for a commit. A server may answer pipelined commands
/// interleaved (Dovecot does), so a body of the next batch that comes early is kept for it.
/// Nothing else may be sent on the session meanwhile.
pub async fn download(
    session: &mut Session,
    state: &mut State,
    folder: &ImapFolder,
    local: &Folder,
    keywords: &mut Keywords,
    messages: &[(u32, u64)],
    progress: &mut Progress,
) -> anyhow::Result<Vec<Landed>> {
    let mut sink = BodySink {
        folder: local,
        keywords,
        current: None,
        done: Vec::new(),
        wanted: HashSet::new(),
        progress,
    };
    let mut landed = Vec::with_capacity(messages.len());
    let mut in_flight: Option<(String, Vec<u32>)> = None;
    for batch in batches(messages) {
        let uids: Vec<u32> = batch.iter().map(|&(u, _)| u).collect();
        sink.wanted.extend(&uids);
        let tag = session
            .client
            .send(&format!(
                "UID FETCH {} {BODY_ITEMS}",
                codec::format_set(&uids)
            ))
            .await?;
        if let Some((tag, uids)) = in_flight.replace((tag, uids)) {
            landed.extend(receive(session, &tag, &mut sink, state, folder, &uids).await?);
        }
    }
    if let Some((tag, uids)) = in_flight {
        landed.extend(receive(session, &tag, &mut sink, state, folder, &uids).await?);
    }
    Ok(landed)
}

/// Reads until one batch's UID FETCH completes, then makes the batch durable.
async fn receive(
    session: &mut Session,
    tag: &str,
    sink: &mut BodySink<'_>,
    state: &mut State,
    folder: &ImapFolder,
    uids: &[u32],
) -> anyhow::Result<Vec<Landed>> {
    session
        .client
        .complete(tag, "UID FETCH", sink, &mut |_| {})
        .await?;
    let batch: HashSet<u32> = uids.iter().copied().collect();
    let (mut fetched, early): (Vec<Fetched>, Vec<Fetched>) = std::mem::take(&mut sink.done)
        .into_iter()
        .partition(|f| batch.contains(&f.uid));
    sink.done = early;
    // Whatever of this batch did not come is not coming (expunged meanwhile).
    sink.wanted.retain(|u| !batch.contains(u));
    fetched.sort_by_key(|f| f.uid);
    let records: Vec<ImapRecord> = fetched
        .iter()
        .map(|f| ImapRecord {
            uid: f.uid,
            local_name: Some(f.written.unique()),
            flags: f.flags.clone(),
            size: f.size,
            message_id: f.message_id.clone(),
        })
        .collect();
    // Record before the rename, so that a crash after it cannot cause a duplicate.
    state.imap_record(folder.id, &records)?;
    failpoint::hit("imap-after-record");
    let landed: Vec<Landed> = fetched
        .iter()
        .map(|f| Landed {
            uid: f.uid,
            flags: f.flags.clone(),
            size: f.size,
        })
        .collect();
    // New keyword letters are on disk before any file uses them.
    sink.keywords.save()?;
    let files = fetched
        .into_iter()
        .map(|f| {
            let letters = sink.keywords.letters("", &FlagSet::parse(&f.flags));
            (f.written, letters)
        })
        .collect();
    sink.folder.commit(files)?;
    failpoint::hit("imap-after-rename");
    Ok(landed)
}

/// The warning a UIDVALIDITY change prints.
pub fn rematch_report(account: &str, folder: &str, matched: usize, known: usize) -> String {
    format!(
        "{account}: folder {}: UIDVALIDITY changed; re-matched {matched} of {known} known messages by \
         Message-ID and size (those are not fetched again)",
        crate::text::sanitize(folder, 100)
    )
}

/// UIDVALIDITY changed: matches server messages to known ones by Message-ID and size, gives
/// the matches their new UIDs and forgets the rest (their local copies stay). Returns how many
/// were re-matched.
pub async fn rematch(
    session: &mut Session,
    state: &mut State,
    folder: &mut ImapFolder,
    uidvalidity: u32,
    known: &[ImapRecord],
) -> anyhow::Result<usize> {
    let mut by_key: HashMap<(String, u64), Vec<u32>> = HashMap::new();
    for r in known {
        if let Some(id) = &r.message_id {
            by_key.entry((id.clone(), r.size)).or_default().push(r.uid);
        }
    }
    let mut moves = Vec::new();
    session
        .client
        .fetch_each(
            "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
            |f| {
                if let (Some(uid), Some(size), Some(id)) =
                    (f.uid, f.size, f.header.as_deref().and_then(message_id))
                    && let Some(old) = by_key.get_mut(&(id, size)).and_then(Vec::pop)
                {
                    moves.push((old, uid));
                }
            },
        )
        .await?;
    folder.uidvalidity = Some(uidvalidity);
    state.imap_rebind(folder, &moves)?;
    Ok(moves.len())
}

/// Marks messages \Deleted and removes exactly them (UID EXPUNGE), then forgets them in state.
/// Only ever called for messages whose local copy is durable and recorded. Returns how many
/// are gone from the server afterwards.
pub async fn expunge(
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
    session.client.run(&format!("UID EXPUNGE {set}")).await?;
    failpoint::hit("imap-after-expunge");
    // Forget only what the server no longer has: were a message left (an EXPUNGE refused in
    // part), forgetting it would make the next run fetch it again.
    let remaining: HashSet<u32> = imap::search_uids(session, &format!("UID {set}"))
        .await?
        .into_iter()
        .collect();
    let gone: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| !remaining.contains(u))
        .collect();
    state.imap_forget(folder.id, &gone)?;
    Ok(gone.len() as u64)
}

/// Settles records of a batch that was interrupted (see the POP3 fetch for the scheme).
pub fn recover(state: &mut State, folder: &ImapFolder, local: &Folder) -> anyhow::Result<()> {
    if !state.imap_has_pending(folder.id)? {
        return Ok(());
    }
    let present: HashSet<String> = local
        .list()?
        .iter()
        .map(|e| e.unique().to_string())
        .collect();
    state.imap_recover(folder.id, |name| present.contains(name))?;
    Ok(())
}

/// The Message-ID in a header block, if any.
pub fn message_id(header: &[u8]) -> Option<String> {
    header_value(header, "message-id")
}

/// The (unfolded, trimmed) value of the first header field called `name` in a header block.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            break;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if !field.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.trim().to_string();
        while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(next.trim());
            lines.next();
        }
        let value = value.trim();
        return (!value.is_empty()).then(|| value.to_string());
    }
    None
}

/// A fetched message, written into tmp/.
struct Fetched {
    uid: u32,
    flags: String,
    size: u64,
    message_id: Option<String>,
    written: Written,
}

/// Streams `BODY[]` literals into tmp/ files and completes them with their FETCH data.
struct BodySink<'a> {
    folder: &'a Folder,
    keywords: &'a mut Keywords,
    current: Option<TmpMessage>,
    done: Vec<Fetched>,
    wanted: HashSet<u32>,
    progress: &'a mut Progress,
}

impl BodySink<'_> {
    /// The flags of a fetched message that its folder can store (a keyword gets a letter if
    /// there is room; the flags recorded are the ones the file will have).
    fn storable(&mut self, imap_flags: &[String]) -> String {
        let set = FlagSet::from_imap(imap_flags);
        self.keywords.admit(&set);
        self.keywords.storable(&set).to_string()
    }
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

    fn fetched(&mut self, fetch: &codec::Fetch) -> anyhow::Result<()> {
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
        let written = tmp.finish(mtime)?;
        failpoint::hit("imap-after-tmp");
        let flags = self.storable(fetch.flags.as_deref().unwrap_or_default());
        self.done.push(Fetched {
            uid,
            flags,
            size: fetch.size.unwrap_or(written.size()),
            message_id: fetch.header.as_deref().and_then(message_id),
            written,
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
