//! The durable upload loop: putting messages onto a store exactly once.
//!
//! Each upload is recorded in the folder's ledger before it is sent (an intent: size, SHA-256
//! of the bytes sent, Message-ID, and the folder's next UID before it), then paired with its
//! UID: from the store's answer where it gives one, otherwise found again among the UIDs at or
//! above that floor by size and content hash. An interrupted run's intents are settled the same
//! way before anything else is sent, so a message is never appended twice and never lost track
//! of. Nothing is added to the message (mbsync's X-TUID header changes what the user stored).

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::flags::FlagSet;
use crate::message::{sha256_hex, to_crlf};
use crate::state::{FolderLedger, UploadIntent};
use crate::store::{Bodies, Fetched, Items, Mailbox, Outgoing, Search, Sink, Store, Uids};

/// A message ready to go up: the bytes (CRLF line ends) and what the append carries.
#[derive(Debug)]
pub struct Upload {
    /// What the ledger records before the append.
    pub intent: UploadIntent,
    /// The message, CRLF line ends.
    pub data: Vec<u8>,
    /// Its date (IMAP date-time), if known.
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
            message_id: crate::message::message_id(&data[..header_end]),
            floor: Some(floor),
            hash: Some(sha256_hex(&data)),
        };
        Upload { intent, data, date }
    }
}

/// Records, appends and pairs a batch of uploads into `mailbox`, the store's open mailbox.
/// Returns the local names with the UIDs they got (None: the server took it, but it could not
/// be found again; it is then forgotten and will go up again, which only happens when the
/// server changed the message's bytes).
pub async fn append_batch<S: Store>(
    store: &mut S,
    ledger: &mut FolderLedger<'_>,
    mailbox: &Mailbox,
    uploads: &[Upload],
) -> anyhow::Result<Vec<(String, Option<u32>)>> {
    if uploads.is_empty() {
        return Ok(Vec::new());
    }
    let intents: Vec<&UploadIntent> = uploads.iter().map(|u| &u.intent).collect();
    let rows = ledger.upload_intents(&intents)?;
    crate::failpoint::hit("upload-after-intent")?;
    let flags: Vec<FlagSet> = uploads
        .iter()
        .map(|u| FlagSet::parse(&u.intent.flags))
        .collect();
    let outgoing: Vec<Outgoing> = uploads
        .iter()
        .zip(&flags)
        .map(|(u, flags)| Outgoing {
            data: &u.data,
            flags,
            date: u.date.as_deref(),
        })
        .collect();
    let answers = store.append(mailbox, &outgoing).await?;
    let mut paired = Vec::with_capacity(uploads.len());
    let mut unpaired = Vec::new();
    for ((upload, &row), answer) in uploads.iter().zip(&rows).zip(answers) {
        match answer {
            Some((v, uid)) if Some(v) == ledger.folder.uidvalidity => paired.push((row, Some(uid))),
            _ => unpaired.push((row, upload.intent.clone())),
        }
    }
    if !unpaired.is_empty() {
        let taken: Vec<u32> = paired.iter().filter_map(|&(_, uid)| uid).collect();
        paired.extend(find(store, ledger, &unpaired, &taken).await?);
    }
    ledger.uploads_done(&paired)?;
    let uid_of: HashMap<i64, Option<u32>> = paired.into_iter().collect();
    Ok(uploads
        .iter()
        .zip(rows)
        .map(|(u, row)| (u.intent.local.clone(), uid_of.get(&row).copied().flatten()))
        .collect())
}

/// Settles the uploads an interrupted run recorded but did not pair: found on the server,
/// they are paired; otherwise they never arrived and are forgotten, to go up again.
pub async fn settle<S: Store>(
    store: &mut S,
    ledger: &mut FolderLedger<'_>,
) -> anyhow::Result<usize> {
    let pending = ledger.pending_uploads()?;
    if pending.is_empty() {
        return Ok(0);
    }
    let wanted: Vec<(i64, UploadIntent)> = pending.into_iter().map(|p| (p.row, p.intent)).collect();
    let mut done = find(store, ledger, &wanted, &[]).await?;
    if done.iter().any(|(_, uid)| uid.is_none()) {
        // The server may still be carrying out appends the interrupted run had sent (its
        // connection is not noticed gone at once): look once more before deciding that they
        // never arrived, which would send them again.
        tokio::time::sleep(SETTLE_GRACE).await;
        // A session sees messages added by others only once the server syncs its view.
        store.refresh().await?;
        let again: Vec<(i64, UploadIntent)> = wanted
            .into_iter()
            .filter(|(row, _)| done.iter().any(|(r, uid)| r == row && uid.is_none()))
            .collect();
        let taken: Vec<u32> = done.iter().filter_map(|&(_, uid)| uid).collect();
        let found = find(store, ledger, &again, &taken).await?;
        done.retain(|(_, uid)| uid.is_some());
        done.extend(found);
    }
    ledger.uploads_done(&done)?;
    Ok(done.iter().filter(|(_, uid)| uid.is_some()).count())
}

/// How long an interrupted run's unconfirmed uploads are given to show up on the server.
#[cfg(not(test))]
const SETTLE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// In unit tests the in-memory store has nothing in flight.
#[cfg(test)]
const SETTLE_GRACE: std::time::Duration = std::time::Duration::ZERO;

/// Finds uploaded messages in the open mailbox: by size and content hash among the UIDs at
/// or above each one's floor that the ledger does not know yet; intents without a floor (older
/// state) by Message-ID and size.
async fn find<S: Store>(
    store: &mut S,
    ledger: &FolderLedger<'_>,
    wanted: &[(i64, UploadIntent)],
    taken: &[u32],
) -> anyhow::Result<Vec<(i64, Option<u32>)>> {
    let mut claimed: HashSet<u32> = ledger
        .messages()?
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
        let sizes: Vec<u64> = by_content.iter().map(|(_, i)| i.size).collect();
        // The size sent, or less down to half of it: a server that keeps bare LF counts the
        // message without its CRs (the content hash, line ends made CRLF, then decides).
        let may_be = |size: u64| sizes.iter().any(|&sent| size <= sent && 2 * size >= sent);
        let mut candidates: Vec<u32> = Vec::new();
        let items = Items {
            size: true,
            ..Items::default()
        };
        store
            .list(Uids::From(low), items, &mut |m| {
                if !claimed.contains(&m.uid) && may_be(m.size) {
                    candidates.push(m.uid);
                }
            })
            .await?;
        let hashes = if candidates.is_empty() {
            Vec::new()
        } else {
            content_hashes(store, &candidates).await?
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
            Some(id) => by_message_id(store, id, intent.size, &claimed).await?,
            None => None,
        };
        if let Some(uid) = uid {
            claimed.insert(uid);
        }
        found.push((*row, uid));
    }
    Ok(found)
}

/// SHA-256 (hex) of the messages with these UIDs, line ends made CRLF, streamed (nothing
/// held in memory).
pub async fn content_hashes<S: Store>(
    store: &mut S,
    uids: &[u32],
) -> anyhow::Result<Vec<(u32, String)>> {
    Ok(both_hashes(store, uids)
        .await?
        .into_iter()
        .map(|(uid, crlf, _)| (uid, crlf))
        .collect())
}

/// SHA-256 (hex) of the messages with these UIDs: with line ends made CRLF, and of the bytes
/// as the store keeps them.
pub async fn both_hashes<S: Store>(
    store: &mut S,
    uids: &[u32],
) -> anyhow::Result<Vec<(u32, String, String)>> {
    let mut sink = HashSink::default();
    store.fetch(uids, Bodies::Plain, &mut sink).await?;
    Ok(sink.done)
}

/// A message found by Message-ID and size, not already paired.
async fn by_message_id<S: Store>(
    store: &mut S,
    message_id: &str,
    size: u64,
    claimed: &HashSet<u32>,
) -> anyhow::Result<Option<u32>> {
    let uids: Vec<u32> = store
        .search(Search::MessageId(message_id))
        .await?
        .into_iter()
        .filter(|u| !claimed.contains(u))
        .collect();
    if uids.is_empty() {
        return Ok(None);
    }
    let mut hit = None;
    let items = Items {
        size: true,
        ..Items::default()
    };
    store
        .list(Uids::Set(&uids), items, &mut |m| {
            if hit.is_none() && m.size == size {
                hit = Some(m.uid);
            }
        })
        .await?;
    Ok(hit)
}

/// Hashes bodies as they stream in, with line ends made CRLF (a server that keeps bare LF
/// stores the same message; its copy must hash as what was sent).
#[derive(Default)]
struct HashSink {
    /// (line ends made CRLF, as stored).
    current: Option<(Sha256, Sha256)>,
    /// The last byte of the previous chunk was CR.
    after_cr: bool,
    done: Vec<(u32, String, String)>,
}

impl Sink for HashSink {
    fn begin(&mut self) -> anyhow::Result<()> {
        self.current = Some((Sha256::new(), Sha256::new()));
        self.after_cr = false;
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        let Some((h, raw)) = &mut self.current else {
            return Ok(());
        };
        raw.update(chunk);
        let mut start = 0;
        for lf in memchr::memchr_iter(b'\n', chunk) {
            let cr = if lf == 0 {
                self.after_cr
            } else {
                chunk[lf - 1] == b'\r'
            };
            if !cr {
                h.update(&chunk[start..lf]);
                h.update(b"\r");
                start = lf;
            }
        }
        h.update(&chunk[start..]);
        if let Some(&last) = chunk.last() {
            self.after_cr = last == b'\r';
        }
        Ok(())
    }

    fn end(&mut self, fetched: Fetched) -> anyhow::Result<()> {
        if let Some((h, raw)) = self.current.take() {
            let (h, raw) = (h.finalize(), raw.finalize());
            self.done
                .push((fetched.uid, crate::text::hex(&h), crate::text::hex(&raw)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_hash_the_same_with_any_line_ends_and_read_boundaries() {
        let crlf = b"A: 1\r\n\r\nbody\r\nmore\r\n";
        let want = sha256_hex(crlf);
        for data in [
            &crlf[..],
            b"A: 1\n\nbody\nmore\n",
            b"A: 1\r\n\nbody\r\nmore\n",
        ] {
            for piece in [1, 2, 3, 7, 100] {
                let mut sink = HashSink::default();
                sink.begin().unwrap();
                for chunk in data.chunks(piece) {
                    sink.data(chunk).unwrap();
                }
                sink.end(Fetched::default()).unwrap();
                assert_eq!(sink.done[0].1, want, "{data:?} in pieces of {piece}");
                assert_eq!(sink.done[0].2, sha256_hex(data), "as stored");
            }
        }
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
