//! What a migration reads from: a local Maildir, a POP3 mailbox or an IMAP account. Each is
//! a list of units (folders) whose messages are listed with a stable key, loaded in batches
//! (one batch in memory at a time), and removed only when asked to (`--delete-source`).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::{Account, Mode, Protocol};
use crate::failpoint;
use crate::fetch::plan::Listed;
use crate::flags::FlagSet;
use crate::imap::{self, FetchSink, RemoteFolder, codec, date};
use crate::maildir::keywords::Keywords;
use crate::maildir::{Entry, Folder, Maildir};
use crate::pop3::client::RetrSink;
use crate::transfer::header_value;

/// One folder of the source and the target folder it goes to.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The source folder's name, for messages.
    pub label: String,
    /// The target folder's levels.
    pub target: Vec<String>,
    place: Place,
}

#[derive(Debug, Clone)]
enum Place {
    Maildir(PathBuf),
    Pop3,
    Imap(RemoteFolder),
}

/// A message of a unit, not loaded yet.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its stable identity in the source (Maildir unique name, POP3 UIDL, IMAP
    /// UIDVALIDITY.UID).
    pub key: String,
    /// Its size, as far as the source tells.
    pub size: u64,
    origin: Origin,
}

#[derive(Debug, Clone)]
enum Origin {
    File(Entry),
    Pop3(u32),
    Imap(u32),
}

/// The POP3 message numbers or IMAP UIDs of items, with their keys.
fn numbered<'a>(items: &[&'a Item]) -> (Vec<u32>, HashMap<u32, &'a str>) {
    let pairs: Vec<(u32, &str)> = items
        .iter()
        .filter_map(|i| match i.origin {
            Origin::Pop3(n) | Origin::Imap(n) => Some((n, i.key.as_str())),
            Origin::File(_) => None,
        })
        .collect();
    (
        pairs.iter().map(|&(n, _)| n).collect(),
        pairs.into_iter().collect(),
    )
}

/// A loaded message.
#[derive(Debug)]
pub struct Message {
    /// Its key.
    pub key: String,
    /// Its bytes as stored (line ends as the source keeps them).
    pub data: Vec<u8>,
    /// Its flags (written form of [`crate::flags`]).
    pub flags: String,
    /// Its date as an INTERNALDATE, if known.
    pub date: Option<String>,
}

/// An open source.
pub enum Source {
    /// A Maildir tree (Maildir++ layout).
    Maildir(Maildir),
    /// A POP3 mailbox and its listing.
    Pop3 {
        /// The session.
        session: Box<crate::pop3::Session>,
        /// UIDL listing, taken once.
        listing: Vec<Listed>,
        /// Whether DELE was sent (QUIT then commits it).
        deleting: bool,
    },
    /// An IMAP account.
    Imap {
        /// The session.
        session: Box<imap::Session>,
        /// The account (folder patterns).
        account: Box<Account>,
        /// Whether folders are selected read-write (for `--delete-source`).
        writable: bool,
    },
}

impl Source {
    /// Opens a POP3 or IMAP account (POP3 messages need a stable identity: UIDL, or TOP for a
    /// header hash). IMAP folders are opened read-write only to delete from them.
    pub async fn open(account: &Account, delete: bool) -> anyhow::Result<Source> {
        let login = crate::credentials::Credentials::new(account)?;
        match account.protocol {
            Protocol::Pop3 => {
                let mut session = crate::pop3::open(account, &login.secret()?).await?;
                let listing =
                    crate::fetch::pop3::listing(&mut session.client, &session.caps, Mode::Keep)
                        .await?;
                Ok(Source::Pop3 {
                    session: Box::new(session),
                    listing,
                    deleting: false,
                })
            }
            Protocol::Imap => Ok(Source::Imap {
                session: Box::new(imap::open(account, &login.secret()?).await?),
                account: Box::new(account.clone()),
                writable: delete,
            }),
        }
    }

    /// The units, the Maildir root and a POP3 mailbox going to `inbox`.
    pub async fn units(&mut self, inbox: &[String]) -> anyhow::Result<Vec<Unit>> {
        match self {
            Source::Maildir(md) => {
                let mut units = Vec::new();
                if md.root().join("cur").is_dir() {
                    units.push(Unit {
                        label: "(Maildir root)".into(),
                        target: inbox.to_vec(),
                        place: Place::Maildir(md.root().to_path_buf()),
                    });
                }
                for components in md.list_folders()? {
                    let refs: Vec<&str> = components.iter().map(String::as_str).collect();
                    units.push(Unit {
                        label: components.join("/"),
                        place: Place::Maildir(md.folder_path(&refs)?),
                        target: components,
                    });
                }
                Ok(units)
            }
            Source::Pop3 { .. } => Ok(vec![Unit {
                label: "INBOX".into(),
                target: inbox.to_vec(),
                place: Place::Pop3,
            }]),
            Source::Imap {
                session, account, ..
            } => {
                let (folders, skipped) = imap::list_folders(&mut session.client).await?;
                if !skipped.is_empty() {
                    anyhow::bail!(
                        "source folders that cannot be named safely: {}",
                        skipped.join("; ")
                    );
                }
                Ok(folders
                    .into_iter()
                    .filter(|f| imap::folder_selected(&f.name, &account.folders))
                    .map(|f| Unit {
                        label: f.name.clone(),
                        target: f.components.clone(),
                        place: Place::Imap(f),
                    })
                    .collect())
            }
        }
    }

    /// The messages of a unit.
    pub async fn list(&mut self, unit: &Unit) -> anyhow::Result<Vec<Item>> {
        match (self, &unit.place) {
            (Source::Maildir(_), Place::Maildir(path)) => {
                let folder = Folder::at(path.clone());
                folder
                    .list()?
                    .into_iter()
                    .map(|e| {
                        let size = std::fs::metadata(e.path(&folder)).map_or(0, |m| m.len());
                        Ok(Item {
                            key: e.unique().to_string(),
                            size,
                            origin: Origin::File(e),
                        })
                    })
                    .collect()
            }
            (Source::Pop3 { listing, .. }, Place::Pop3) => Ok(listing
                .iter()
                .filter_map(|l| {
                    Some(Item {
                        key: l.id.clone()?,
                        size: l.size,
                        origin: Origin::Pop3(l.msg),
                    })
                })
                .collect()),
            (
                Source::Imap {
                    session, writable, ..
                },
                Place::Imap(folder),
            ) => {
                let selected = imap::select(session, folder, !*writable, None).await?;
                if selected.exists == 0 {
                    return Ok(Vec::new());
                }
                let mut items: Vec<Item> = Vec::new();
                session
                    .client
                    .fetch_each("UID FETCH 1:* (UID RFC822.SIZE)", |f| {
                        if let Some(uid) = f.uid {
                            items.push(Item {
                                key: format!("{}.{uid}", selected.uidvalidity),
                                size: f.size.unwrap_or(0),
                                origin: Origin::Imap(uid),
                            });
                        }
                    })
                    .await?;
                items.sort_by_key(|i| match i.origin {
                    Origin::Imap(uid) => uid,
                    _ => 0,
                });
                items.dedup_by(|a, b| a.key == b.key);
                Ok(items)
            }
            _ => anyhow::bail!("internal: a unit listed from another source"),
        }
    }

    /// Loads a batch of a unit's messages (the unit listed last, for IMAP).
    pub async fn load(&mut self, unit: &Unit, items: &[&Item]) -> anyhow::Result<Vec<Message>> {
        match (self, &unit.place) {
            (Source::Maildir(_), Place::Maildir(path)) => {
                let folder = Folder::at(path.clone());
                let keywords = Keywords::load(path)?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let Origin::File(entry) = &item.origin else {
                        continue;
                    };
                    // A mail reader may have renamed it since the listing.
                    let Some(entry) = folder.current(entry)? else {
                        continue;
                    };
                    let path = entry.path(&folder);
                    let data = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let date = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .map(date::format);
                    out.push(Message {
                        key: item.key.clone(),
                        data,
                        flags: keywords.flags(entry.flags()).to_string(),
                        date,
                    });
                }
                Ok(out)
            }
            (Source::Pop3 { session, .. }, Place::Pop3) => {
                let (msgs, keys) = numbered(items);
                let mut sink = Collect::default();
                let window = if session.caps.pipelining { 16 } else { 1 };
                session
                    .client
                    .retr_pipelined(&msgs, window, &mut sink)
                    .await?;
                Ok(sink
                    .done
                    .into_iter()
                    .filter_map(|(msg, data)| {
                        let date = date_header(&data);
                        Some(Message {
                            key: keys.get(&msg)?.to_string(),
                            data,
                            flags: String::new(),
                            date,
                        })
                    })
                    .collect())
            }
            (Source::Imap { session, .. }, Place::Imap(_)) => {
                let (uids, keys) = numbered(items);
                let mut sink = Collect::default();
                let command = format!(
                    "UID FETCH {} (UID FLAGS INTERNALDATE BODY.PEEK[])",
                    codec::format_set(&uids)
                );
                session.client.run_with(&command, &mut sink).await?;
                Ok(sink
                    .fetched
                    .into_iter()
                    .filter_map(|(uid, data, flags, date)| {
                        Some(Message {
                            key: keys.get(&uid)?.to_string(),
                            data,
                            flags,
                            date,
                        })
                    })
                    .collect())
            }
            _ => anyhow::bail!("internal: a unit loaded from another source"),
        }
    }

    /// Removes messages from the source (only ever those the target confirmed). Returns how
    /// many are gone (for POP3: marked, gone at [`Source::finish`]).
    pub async fn delete(&mut self, unit: &Unit, items: &[&Item]) -> anyhow::Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        match (self, &unit.place) {
            (Source::Maildir(_), Place::Maildir(path)) => {
                let folder = Folder::at(path.clone());
                let mut gone = 0;
                for item in items {
                    let Origin::File(entry) = &item.origin else {
                        continue;
                    };
                    if let Some(e) = folder.current(entry)? {
                        std::fs::remove_file(e.path(&folder))
                            .with_context(|| format!("removing {}", e.path(&folder).display()))?;
                        gone += 1;
                        failpoint::hit("migrate-after-unlink");
                    }
                }
                folder.sync()?;
                Ok(gone)
            }
            (
                Source::Pop3 {
                    session, deleting, ..
                },
                Place::Pop3,
            ) => {
                let (msgs, _) = numbered(items);
                let window = if session.caps.pipelining { 16 } else { 1 };
                session.client.dele_pipelined(&msgs, window).await?;
                *deleting = true;
                failpoint::hit("migrate-after-dele");
                Ok(msgs.len() as u64)
            }
            (Source::Imap { session, .. }, Place::Imap(_)) => {
                if !session.client.has("UIDPLUS") {
                    return Err(imap::ImapError::Missing(
                        "UIDPLUS (UID EXPUNGE) on the source, which --delete-source needs to \
                         remove only what was copied",
                    )
                    .into());
                }
                let (uids, _) = numbered(items);
                let set = codec::format_set(&uids);
                session
                    .client
                    .run(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
                    .await?;
                failpoint::hit("migrate-after-source-store");
                session.client.run(&format!("UID EXPUNGE {set}")).await?;
                failpoint::hit("migrate-after-source-expunge");
                Ok(uids.len() as u64)
            }
            _ => anyhow::bail!("internal: a unit deleted from another source"),
        }
    }

    /// Ends the session; for POP3 the QUIT that carries out the deletions.
    pub async fn finish(self) -> anyhow::Result<()> {
        match self {
            Source::Maildir(_) => Ok(()),
            Source::Pop3 {
                session, deleting, ..
            } => {
                failpoint::hit("migrate-before-quit");
                let quit = session.client.quit().await;
                if deleting {
                    quit.context("the POP3 server did not confirm the deletions (QUIT)")?;
                }
                Ok(())
            }
            Source::Imap { session, .. } => {
                let _ = session.client.logout().await;
                Ok(())
            }
        }
    }
}

/// The Date header of a message as an INTERNALDATE.
fn date_header(data: &[u8]) -> Option<String> {
    let end = memchr::memmem::find(data, b"\n\n")
        .or_else(|| memchr::memmem::find(data, b"\r\n\r\n"))
        .unwrap_or(data.len());
    header_value(&data[..end], "date").and_then(|d| date::from_header(&d))
}

/// Collects messages in memory: POP3 RETR bodies, or IMAP FETCH bodies with their data.
#[derive(Default)]
struct Collect {
    current: Vec<u8>,
    done: Vec<(u32, Vec<u8>)>,
    fetched: Vec<(u32, Vec<u8>, String, Option<String>)>,
}

impl RetrSink for Collect {
    fn begin(&mut self, _msg: u32) -> anyhow::Result<()> {
        self.current.clear();
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.current.extend_from_slice(chunk);
        Ok(())
    }

    fn end(&mut self, msg: u32) -> anyhow::Result<()> {
        self.done.push((msg, std::mem::take(&mut self.current)));
        Ok(())
    }
}

impl FetchSink for Collect {
    fn begin(&mut self, len: usize) -> anyhow::Result<()> {
        self.current = Vec::with_capacity(len);
        Ok(())
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.current.extend_from_slice(chunk);
        Ok(())
    }

    fn fetched(&mut self, fetch: &codec::Fetch) -> anyhow::Result<()> {
        if let (true, Some(uid)) = (fetch.body, fetch.uid) {
            self.fetched.push((
                uid,
                std::mem::take(&mut self.current),
                FlagSet::from_imap(fetch.flags.as_deref().unwrap_or_default()).to_string(),
                fetch.internaldate.clone(),
            ));
        }
        Ok(())
    }
}
