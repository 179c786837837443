//! Putting messages onto an IMAP server exactly once.
//!
//! Each upload is recorded in state before its APPEND (an intent: size, SHA-256 of the bytes
//! sent, Message-ID, and the folder's UIDNEXT before it), then paired with its UID: from
//! APPENDUID when the server has UIDPLUS, otherwise found again among the UIDs at or above that
//! floor by size and content hash. An interrupted run's intents are settled the same way before
//! anything else is sent, so a message is never appended twice and never lost track of. Nothing
//! is added to the message (mbsync's X-TUID header changes what the user stored).

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::flags::FlagSet;
use crate::imap::{self, FetchSink, Session, codec};
use crate::state::{ImapFolder, State, UploadIntent};

/// A message ready to go up: the bytes (CRLF line ends) and what the APPEND carries.
#[derive(Debug)]
pub struct Upload {
    /// What state records before the APPEND.
    pub intent: UploadIntent,
    /// The message, CRLF line ends.
    pub data: Vec<u8>,
    /// INTERNALDATE to give it (IMAP date-time), if known.
    pub date: Option<String>,
}

impl Upload {
    /// Prepares a message whose stored form has LF (or CRLF) line ends.
    pub fn new(
        local: String,
        flags: String,
        raw: &[u8],
        date: Option<String>,
        floor: u32,
    ) -> Upload {
        let data = to_crlf(raw);
        let header_end = memchr::memmem::find(&data, b"\r\n\r\n").map_or(data.len(), |p| p + 4);
        let intent = UploadIntent {
            local,
            flags,
            size: data.len() as u64,
            message_id: crate::transfer::message_id(&data[..header_end]),
            floor: Some(floor),
            hash: Some(sha256_hex(&data)),
        };
        Upload { intent, data, date }
    }
}

/// Records, appends and pairs a batch of uploads into the selected folder `mailbox` (quoted).
/// Returns the local names with the UIDs they got (None: the server took it, but it could not
/// be found again; it is then forgotten and will go up again, which only happens when the
/// server changed the message's bytes).
pub async fn append_batch(
    session: &mut Session,
    state: &mut State,
    folder: &ImapFolder,
    mailbox: &str,
    uploads: &[Upload],
) -> anyhow::Result<Vec<(String, Option<u32>)>> {
    if uploads.is_empty() {
        return Ok(Vec::new());
    }
    let intents: Vec<UploadIntent> = uploads.iter().map(|u| u.intent.clone()).collect();
    let rows = state.imap_upload_intents(folder.id, &intents)?;
    crate::failpoint::hit("upload-after-intent");
    // With LITERAL+ the whole batch is sent before the first completion is read (the server
    // answers APPENDs in order); without it, one at a time.
    let window = if session.client.has("LITERAL+") {
        uploads.len()
    } else {
        1
    };
    let mut paired = Vec::with_capacity(uploads.len());
    let mut unpaired = Vec::new();
    for (chunk, chunk_rows) in uploads.chunks(window).zip(rows.chunks(window)) {
        let mut tags = Vec::with_capacity(chunk.len());
        for upload in chunk {
            let flags = FlagSet::parse(&upload.intent.flags).to_imap();
            tags.push(
                session
                    .client
                    .append_send(mailbox, &flags, upload.date.as_deref(), &upload.data)
                    .await?,
            );
        }
        for ((upload, &row), tag) in chunk.iter().zip(chunk_rows).zip(tags) {
            let appended = session.client.append_done(&tag).await?;
            crate::failpoint::hit("upload-after-append");
            match appended {
                Some((v, uid)) if Some(v) == folder.uidvalidity => paired.push((row, Some(uid))),
                _ => unpaired.push((row, upload.intent.clone())),
            }
        }
    }
    if !unpaired.is_empty() {
        let taken: Vec<u32> = paired.iter().filter_map(|&(_, uid)| uid).collect();
        paired.extend(find(session, state, folder, &unpaired, &taken).await?);
    }
    state.imap_uploads_done(&paired)?;
    let uid_of: HashMap<i64, Option<u32>> = paired.into_iter().collect();
    Ok(uploads
        .iter()
        .zip(rows)
        .map(|(u, row)| (u.intent.local.clone(), uid_of.get(&row).copied().flatten()))
        .collect())
}

/// Settles the uploads an interrupted run recorded but did not pair: found on the server,
/// they are paired; otherwise they never arrived and are forgotten, to go up again.
pub async fn settle(
    session: &mut Session,
    state: &mut State,
    folder: &ImapFolder,
) -> anyhow::Result<usize> {
    let pending = state.imap_pending_uploads(folder.id)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let wanted: Vec<(i64, UploadIntent)> = pending.into_iter().map(|p| (p.row, p.intent)).collect();
    let mut done = find(session, state, folder, &wanted, &[]).await?;
    if done.iter().any(|(_, uid)| uid.is_none()) {
        // The server may still be carrying out APPENDs the interrupted run had sent (its
        // connection is not noticed gone at once): look once more before deciding that they
        // never arrived, which would send them again.
        tokio::time::sleep(SETTLE_GRACE).await;
        // A session sees messages added by others only once the server syncs its view.
        session.client.run("NOOP").await?;
        let again: Vec<(i64, UploadIntent)> = wanted
            .into_iter()
            .filter(|(row, _)| done.iter().any(|(r, uid)| r == row && uid.is_none()))
            .collect();
        let taken: Vec<u32> = done.iter().filter_map(|&(_, uid)| uid).collect();
        let found = find(session, state, folder, &again, &taken).await?;
        done.retain(|(_, uid)| uid.is_some());
        done.extend(found);
    }
    state.imap_uploads_done(&done)?;
    Ok(done.iter().filter(|(_, uid)| uid.is_some()).count())
}

/// How long an interrupted run's unconfirmed uploads are given to show up on the server.
const SETTLE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Finds uploaded messages on the selected folder: by size and content hash among the UIDs
/// at or above each one's floor that state does not know yet; intents without a floor (older
/// state) by Message-ID and size.
async fn find(
    session: &mut Session,
    state: &State,
    folder: &ImapFolder,
    wanted: &[(i64, UploadIntent)],
    taken: &[u32],
) -> anyhow::Result<Vec<(i64, Option<u32>)>> {
    let mut claimed: HashSet<u32> = state
        .imap_messages(folder.id)?
        .into_iter()
        .map(|r| r.uid)
        .chain(taken.iter().copied())
        .collect();
    let mut found = Vec::with_capacity(wanted.len());
    let by_content: Vec<&(i64, UploadIntent)> = wanted
        .iter()
        .filter(|(_, i)| i.floor.is_some() && i.hash.is_some())
        .collect();
    if let Some(low) = by_content.iter().filter_map(|(_, i)| i.floor).min() {
        let sizes: HashSet<u64> = by_content.iter().map(|(_, i)| i.size).collect();
        // `low:*` also names the last message when all UIDs are below `low`: filter.
        let mut candidates: Vec<u32> = Vec::new();
        session
            .client
            .fetch_each(&format!("UID FETCH {low}:* (UID RFC822.SIZE)"), |f| {
                if let (Some(uid), Some(size)) = (f.uid, f.size)
                    && uid >= low
                    && !claimed.contains(&uid)
                    && sizes.contains(&size)
                {
                    candidates.push(uid);
                }
            })
            .await?;
        let hashes = if candidates.is_empty() {
            Vec::new()
        } else {
            content_hashes(session, &candidates).await?
        };
        for (row, intent) in by_content {
            let floor = intent.floor.unwrap_or(0);
            let hit = hashes
                .iter()
                .filter(|(uid, hash)| {
                    *uid >= floor && !claimed.contains(uid) && intent.hash.as_ref() == Some(hash)
                })
                .map(|(uid, _)| *uid)
                .min();
            if let Some(uid) = hit {
                claimed.insert(uid);
            }
            found.push((*row, hit));
        }
    }
    for (row, intent) in wanted
        .iter()
        .filter(|(_, i)| i.floor.is_none() || i.hash.is_none())
    {
        let uid = match &intent.message_id {
            Some(id) => by_message_id(session, id, intent.size, &claimed).await?,
            None => None,
        };
        if let Some(uid) = uid {
            claimed.insert(uid);
        }
        found.push((*row, uid));
    }
    Ok(found)
}

/// SHA-256 (hex) of the messages with these UIDs, streamed (nothing held in memory).
pub async fn content_hashes(
    session: &mut Session,
    uids: &[u32],
) -> anyhow::Result<Vec<(u32, String)>> {
    let mut sink = HashSink::default();
    let command = format!("UID FETCH {} (UID BODY.PEEK[])", codec::format_set(uids));
    session.client.run_with(&command, &mut sink).await?;
    Ok(sink.done)
}

/// A message found by Message-ID and size, not already paired.
async fn by_message_id(
    session: &mut Session,
    message_id: &str,
    size: u64,
    claimed: &HashSet<u32>,
) -> anyhow::Result<Option<u32>> {
    let Some(quoted) = codec::quote(message_id) else {
        return Ok(None);
    };
    let uids: Vec<u32> = imap::search_uids(session, &format!("HEADER Message-ID {quoted}"))
        .await?
        .into_iter()
        .filter(|u| !claimed.contains(u))
        .collect();
    if uids.is_empty() {
        return Ok(None);
    }
    let (untagged, _) = session
        .client
        .run(&format!(
            "UID FETCH {} (UID RFC822.SIZE)",
            codec::format_set(&uids)
        ))
        .await?;
    Ok(untagged.into_iter().find_map(|r| match r {
        imap::Response::Fetch(f) if f.size == Some(size) => f.uid,
        _ => None,
    }))
}

/// Hashes bodies as they stream in.
#[derive(Default)]
struct HashSink {
    current: Option<Sha256>,
    done: Vec<(u32, String)>,
}

impl FetchSink for HashSink {
    fn begin(&mut self, _len: usize) -> anyhow::Result<()> {
        self.current = Some(Sha256::new());
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        if let Some(h) = &mut self.current {
            h.update(chunk);
        }
        Ok(())
    }

    fn fetched(&mut self, fetch: &codec::Fetch) -> anyhow::Result<()> {
        if let (Some(h), Some(uid), true) = (self.current.take(), fetch.uid, fetch.body) {
            self.done.push((uid, crate::text::hex(&h.finalize())));
        }
        Ok(())
    }
}

/// SHA-256 of bytes, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    crate::text::hex(&Sha256::digest(data))
}

/// LF line ends to CRLF (IMAP wants CRLF; a Maildir holds LF).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b""), b"");
    }

    #[test]
    fn intent_describes_the_bytes_sent() {
        let u = Upload::new(
            "n1".into(),
            "S".into(),
            b"Message-ID: <x@y>\nSubject: s\n\nbody\n",
            None,
            7,
        );
        assert_eq!(u.data, b"Message-ID: <x@y>\r\nSubject: s\r\n\r\nbody\r\n");
        assert_eq!(u.intent.size, u.data.len() as u64);
        assert_eq!(u.intent.message_id.as_deref(), Some("<x@y>"));
        assert_eq!(u.intent.floor, Some(7));
        assert_eq!(u.intent.hash, Some(sha256_hex(&u.data)));
        assert_eq!(u.intent.hash.as_ref().map(String::len), Some(64));
    }
}
