//! A Maildir tree (Maildir++ layout) as a [`Store`], the source of a migration: its root and
//! sub-folders are the mailboxes, messages are numbered by their place in the listing taken
//! when a folder is opened and known by their unique names, files are followed when a mail
//! reader renames them, and removed only when asked to.

use std::path::PathBuf;

use crate::config::Layout;
use crate::maildir::keywords::Keywords;
use crate::maildir::{Entry, Folder, Maildir};

use super::{
    Access, Caps, Deletes, Fetched, Items, Listed, Mailbox, Mailboxes, Pending, Result, Search,
    Selected, Sink, Store, StoreError, Uids,
};

/// The label of a Maildir's root (its own messages, not a sub-folder).
const ROOT: &str = "(Maildir root)";

/// A Maildir tree as a store.
pub struct MaildirStore {
    maildir: Maildir,
    open: Option<Open>,
}

/// The open folder and its listing.
struct Open {
    folder: Folder,
    keywords: Keywords,
    entries: Vec<Entry>,
}

fn local(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::local(e.into())
}

impl MaildirStore {
    /// The Maildir tree at `root`.
    pub fn new(root: PathBuf) -> MaildirStore {
        MaildirStore {
            maildir: Maildir::new(root, Layout::MaildirPlusPlus),
            open: None,
        }
    }

    fn open(&self) -> Result<&Open> {
        self.open
            .as_ref()
            .ok_or_else(|| StoreError::unsupported("reading without an open folder"))
    }

    /// The entry a number names.
    fn entry(&self, uid: u32) -> Result<Option<&Entry>> {
        Ok(self.open()?.entries.get((uid as usize).wrapping_sub(1)))
    }
}

impl Store for MaildirStore {
    fn caps(&self) -> Caps {
        Caps {
            deletes: Deletes::AtOnce,
            lasting_uids: false,
        }
    }

    fn security(&self) -> String {
        "local".to_string()
    }

    async fn mailboxes(&mut self) -> Result<Mailboxes> {
        let mut out = Mailboxes::default();
        if self.maildir.root().join("cur").is_dir() {
            out.mailboxes
                .push(Mailbox::new(ROOT.into(), Vec::new(), String::new(), true));
        }
        for components in self.maildir.list_folders().map_err(local)? {
            let name = components.join("/");
            out.mailboxes
                .push(Mailbox::new(name.clone(), components, name, false));
        }
        Ok(out)
    }

    async fn mailbox(&mut self, components: &[String]) -> Result<Mailbox> {
        let name = components.join("/");
        Ok(Mailbox::new(name.clone(), components.to_vec(), name, false))
    }

    async fn select(
        &mut self,
        mailbox: &Mailbox,
        _access: Access,
        _since: Option<(u32, u64)>,
    ) -> Result<Selected> {
        let levels: Vec<&str> = mailbox.components.iter().map(String::as_str).collect();
        let path = self.maildir.folder_path(&levels).map_err(local)?;
        let folder = Folder::at(path);
        let entries = folder.list().map_err(local)?;
        let keywords = Keywords::load(folder.path()).map_err(local)?;
        let exists = entries.len() as u32;
        self.open = Some(Open {
            folder,
            keywords,
            entries,
        });
        Ok(Selected {
            exists,
            ..Selected::default()
        })
    }

    async fn list(
        &mut self,
        uids: Uids<'_>,
        items: Items,
        each: &mut dyn FnMut(Listed),
    ) -> Result<()> {
        let open = self.open()?;
        for (i, e) in open.entries.iter().enumerate() {
            let uid = i as u32 + 1;
            let wanted = match uids {
                Uids::From(n) => uid >= n,
                Uids::Set(set) => set.contains(&uid),
            };
            if !wanted {
                continue;
            }
            each(Listed {
                uid,
                size: if items.size {
                    open.folder.file_size(e)
                } else {
                    0
                },
                flags: items.flags.then(|| open.keywords.flags(e.flags())),
                message_id: None,
                key: Some(e.unique().into()),
            });
        }
        Ok(())
    }

    async fn search(&mut self, search: Search<'_>) -> Result<Vec<u32>> {
        match search {
            Search::Present(uids) => {
                let open = self.open()?;
                Ok(uids
                    .iter()
                    .copied()
                    .filter(|&u| (u as usize).wrapping_sub(1) < open.entries.len())
                    .collect())
            }
            Search::MessageId(_) => Err(StoreError::unsupported("searching by Message-ID")),
        }
    }

    async fn fetch_receive(&mut self, pending: Pending, sink: &mut dyn Sink) -> Result<()> {
        for &uid in &pending.uids {
            let Some(entry) = self.entry(uid)? else {
                continue;
            };
            let open = self.open()?;
            // A mail reader may have renamed it since the listing, or removed it.
            let Some(stored) = open.folder.read(entry).map_err(local)? else {
                continue;
            };
            sink.begin().map_err(StoreError::from_sink)?;
            sink.data(&stored.data).map_err(StoreError::from_sink)?;
            sink.end(Fetched {
                uid,
                size: Some(stored.data.len() as u64),
                flags: open.keywords.flags(stored.entry.flags()),
                date: stored.mtime.map(crate::date::format),
                message_id: None,
                key: Some(stored.entry.unique().into()),
            })
            .map_err(StoreError::from_sink)?;
        }
        Ok(())
    }

    async fn mark_deleted(&mut self, uids: &[u32]) -> Result<()> {
        let open = self.open()?;
        for &uid in uids {
            let Some(entry) = open.entries.get((uid as usize).wrapping_sub(1)) else {
                continue;
            };
            if open.folder.remove(entry).map_err(local)? {
                crate::failpoint::hit("migrate-after-unlink")?;
            }
        }
        open.folder.sync().map_err(local)
    }

    async fn expunge(&mut self, _uids: &[u32]) -> Result<()> {
        Ok(())
    }

    async fn close(self) -> Result<()> {
        Ok(())
    }
}
