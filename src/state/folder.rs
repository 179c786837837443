//! One server folder's records (fetch, sync, and the target folders of a migration): the
//! folder's UIDVALIDITY, HIGHESTMODSEQ and UIDNEXT after the last complete pass, and each
//! message's pairing of UID and local name with the flags last synced, uploads in flight
//! included.

use rusqlite::params;

use super::{
    Deliveries, Delivery, ImapFolder, ImapRecord, PendingUpload, Result, State, Steps,
    SyncedRecord, UploadIntent,
};

/// The ledger of one server folder.
pub struct FolderLedger<'s> {
    state: &'s mut State,
    /// The folder's row: id, and what the last complete pass left.
    pub folder: ImapFolder,
}

impl State {
    /// How many messages of a server folder state knows a local copy of (0 for a folder it
    /// does not know).
    pub fn kept_locally(&self, name: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM imap_messages m JOIN imap_folders f ON m.folder_id = f.id
                     WHERE f.name = ?1 AND m.uid IS NOT NULL AND m.local_name IS NOT NULL",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.sql())
    }

    /// The ledger of a server folder, created (empty) if it is new; `local_path` says where
    /// its messages are kept (for people reading the database).
    pub fn folder(&mut self, name: &str, local_path: &str) -> Result<FolderLedger<'_>> {
        let folder = self.write(|tx| {
            tx.execute(
                "INSERT INTO imap_folders (name, local_path) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, local_path],
            )?;
            tx.query_row(
                "SELECT id, uidvalidity, highestmodseq, uidnext FROM imap_folders WHERE name = ?1",
                params![name],
                |r| {
                    Ok(ImapFolder {
                        id: r.get(0)?,
                        uidvalidity: r.get::<_, Option<i64>>(1)?.map(|v| v as u32),
                        highestmodseq: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                        uidnext: r.get::<_, Option<i64>>(3)?.map(|v| v as u32),
                    })
                },
            )
        })?;
        Ok(FolderLedger {
            state: self,
            folder,
        })
    }
}

impl FolderLedger<'_> {
    fn id(&self) -> i64 {
        self.folder.id
    }

    /// Records the folder's UIDVALIDITY, HIGHESTMODSEQ and UIDNEXT (as now in `folder`) after
    /// a successful pass.
    pub fn passed(&mut self) -> Result<()> {
        let f = self.folder.clone();
        self.state.write(|tx| {
            tx.execute(
                "UPDATE imap_folders SET uidvalidity = ?2, highestmodseq = ?3, uidnext = ?4 WHERE id = ?1",
                params![
                    f.id,
                    f.uidvalidity.map(i64::from),
                    f.highestmodseq.map(|m| m as i64),
                    f.uidnext.map(i64::from)
                ],
            )
            .map(|_| ())
        })
    }

    /// The messages state knows in the folder, by UID.
    pub fn messages(&self) -> Result<Vec<ImapRecord>> {
        self.state.rows(
            "SELECT uid, local_name, flags, size, message_id FROM imap_messages
                 WHERE folder_id = ?1 AND uid IS NOT NULL ORDER BY uid",
            params![self.id()],
            |r| {
                Ok(ImapRecord {
                    uid: r.get::<_, i64>(0)? as u32,
                    local_name: r.get(1)?,
                    flags: r.get(2)?,
                    size: r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
                    message_id: r.get(4)?,
                })
            },
        )
    }

    /// The folder's known messages as sync pairs them, by UID.
    pub fn synced(&self) -> Result<Vec<SyncedRecord>> {
        self.state.rows(
            "SELECT uid, local_name, flags FROM imap_messages
                 WHERE folder_id = ?1 AND uid IS NOT NULL ORDER BY uid",
            params![self.id()],
            |r| {
                Ok(SyncedRecord {
                    uid: r.get::<_, i64>(0)? as u32,
                    local_name: r.get::<_, Option<String>>(1)?.map(String::into_boxed_str),
                    flags: r.get::<_, String>(2)?.into_boxed_str(),
                })
            },
        )
    }

    /// The highest UID known (0: none), which is where new mail starts.
    pub fn highest_uid(&self) -> Result<u32> {
        self.state
            .conn
            .query_row(
                "SELECT COALESCE(MAX(uid), 0) FROM imap_messages WHERE folder_id = ?1",
                params![self.id()],
                |r| r.get::<_, i64>(0),
            )
            .map(|uid| uid as u32)
            .map_err(self.state.sql())
    }

    /// The UIDs state knows (fetched, skipped or paired) from `floor` on.
    pub fn known_from(&self, floor: u32) -> Result<Vec<u32>> {
        self.state.rows(
            "SELECT uid FROM imap_messages WHERE folder_id = ?1 AND uid >= ?2",
            params![self.id(), floor],
            |r| r.get::<_, i64>(0).map(|u| u as u32),
        )
    }

    /// Messages seen on the server but left there (too large): UID and size.
    pub fn skipped(&self) -> Result<Vec<(u32, u64)>> {
        self.state.rows(
            "SELECT uid, size FROM imap_messages
                 WHERE folder_id = ?1 AND local_name IS NULL AND uid IS NOT NULL ORDER BY uid",
            params![self.id()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u32,
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64,
                ))
            },
        )
    }

    /// The messages that are in the Maildir (delete mode removes them): UID and size.
    pub fn fetched(&self) -> Result<Vec<(u32, u64)>> {
        self.state.rows(
            "SELECT uid, size FROM imap_messages
                 WHERE folder_id = ?1 AND uid IS NOT NULL AND local_name IS NOT NULL ORDER BY uid",
            params![self.id()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u32,
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64,
                ))
            },
        )
    }

    /// Forgets messages by UID (expunged on the server).
    pub fn forget(&mut self, uids: &[u32]) -> Result<()> {
        let id = self.id();
        self.state.write(|tx| {
            let mut stmt =
                tx.prepare_cached("DELETE FROM imap_messages WHERE folder_id = ?1 AND uid = ?2")?;
            for uid in uids {
                stmt.execute(params![id, uid])?;
            }
            Ok(())
        })
    }

    /// After a UIDVALIDITY change to `uidvalidity`: gives re-matched messages their new UIDs
    /// ((old, new) pairs) and forgets the rest, in one transaction with the new UIDVALIDITY
    /// (the folder's mod-sequence and UIDNEXT are forgotten too).
    pub fn rebind(&mut self, uidvalidity: u32, moves: &[(u32, u32)]) -> Result<()> {
        let id = self.id();
        self.state.write(|tx| {
            // Park re-matched rows on negative UIDs first, so old and new UIDs cannot collide.
            let mut park = tx.prepare_cached(
                "UPDATE imap_messages SET uid = -?3 WHERE folder_id = ?1 AND uid = ?2",
            )?;
            for (old, new) in moves {
                park.execute(params![id, old, new])?;
            }
            tx.execute(
                "DELETE FROM imap_messages WHERE folder_id = ?1 AND uid > 0",
                params![id],
            )?;
            tx.execute(
                "UPDATE imap_messages SET uid = -uid WHERE folder_id = ?1 AND uid < 0",
                params![id],
            )?;
            tx.execute(
                "UPDATE imap_folders SET uidvalidity = ?2, highestmodseq = NULL, uidnext = NULL WHERE id = ?1",
                params![id, i64::from(uidvalidity)],
            )
            .map(|_| ())
        })?;
        self.folder.uidvalidity = Some(uidvalidity);
        self.folder.highestmodseq = None;
        self.folder.uidnext = None;
        Ok(())
    }

    /// Messages being uploaded (recorded before their APPEND, no UID yet).
    pub fn pending_uploads(&self) -> Result<Vec<PendingUpload>> {
        self.state.rows(
            "SELECT id, local_name, flags, size, message_id, upload_floor, content_hash
                 FROM imap_messages WHERE folder_id = ?1 AND uid IS NULL AND local_name IS NOT NULL",
            params![self.id()],
            |r| {
                Ok(PendingUpload {
                    row: r.get(0)?,
                    intent: UploadIntent {
                        local: r.get(1)?,
                        flags: r.get(2)?,
                        size: r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64,
                        message_id: r.get(4)?,
                        floor: r.get(5)?,
                        hash: r.get(6)?,
                    },
                })
            },
        )
    }

    /// Records uploads before they are sent (so a crash after the APPEND cannot make a second
    /// copy). Returns their row ids.
    pub fn upload_intents(&mut self, uploads: &[&UploadIntent]) -> Result<Vec<i64>> {
        let id = self.id();
        self.state.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO imap_messages (folder_id, uid, local_name, flags, size, message_id,
                     delivered, upload_floor, content_hash)
                 VALUES (?1, NULL, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
            )?;
            let mut rows = Vec::with_capacity(uploads.len());
            for u in uploads {
                stmt.execute(params![
                    id,
                    u.local,
                    u.flags,
                    u.size as i64,
                    u.message_id,
                    u.floor,
                    u.hash
                ])?;
                rows.push(tx.last_insert_rowid());
            }
            Ok(rows)
        })
    }

    /// Gives uploaded messages their UIDs, or forgets intents that did not reach the server
    /// (uid None), in one transaction.
    pub fn uploads_done(&mut self, done: &[(i64, Option<u32>)]) -> Result<()> {
        self.state.write(|tx| {
            let mut set = tx.prepare_cached("UPDATE imap_messages SET uid = ?2 WHERE id = ?1")?;
            let mut drop = tx.prepare_cached("DELETE FROM imap_messages WHERE id = ?1")?;
            for (row, uid) in done {
                match uid {
                    Some(uid) => set.execute(params![row, uid])?,
                    None => drop.execute(params![row])?,
                };
            }
            Ok(())
        })
    }

    /// Records the synced flags of messages: (UID, written form).
    pub fn set_flags(&mut self, flags: &[(u32, String)]) -> Result<()> {
        let id = self.id();
        self.state.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE imap_messages SET flags = ?3 WHERE folder_id = ?1 AND uid = ?2",
            )?;
            for (uid, f) in flags {
                stmt.execute(params![id, uid, f])?;
            }
            Ok(())
        })
    }
}

impl Deliveries for FolderLedger<'_> {
    const STEPS: Steps = Steps {
        tmp: "imap-after-tmp",
        record: "imap-after-record",
        rename: "imap-after-rename",
    };

    /// Records messages about to be renamed into the Maildir (or skipped, with no local
    /// name), confirming this folder's earlier ones, in one durable transaction.
    fn record(&mut self, batch: &[Delivery]) -> Result<()> {
        let id = self.id();
        self.state.write(|tx| {
            // Only this folder's: another folder's worker may be between its record and its
            // rename.
            tx.execute(
                "UPDATE imap_messages SET delivered = 1 WHERE delivered = 0 AND folder_id = ?1",
                params![id],
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO imap_messages (folder_id, uid, local_name, flags, size, message_id, delivered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(folder_id, uid) DO UPDATE SET local_name = excluded.local_name,
                    flags = excluded.flags, size = excluded.size, message_id = excluded.message_id,
                    delivered = excluded.delivered",
            )?;
            for d in batch {
                stmt.execute(params![
                    id,
                    d.uid,
                    d.local,
                    d.flags,
                    d.size as i64,
                    d.message_id,
                    d.local.is_none()
                ])?;
            }
            Ok(())
        })
    }

    fn settle(&mut self) -> Result<()> {
        let id = self.id();
        self.state.write(|tx| {
            tx.execute(
                "UPDATE imap_messages SET delivered = 1 WHERE delivered = 0 AND folder_id = ?1",
                params![id],
            )
            .map(|_| ())
        })
    }

    fn has_pending(&self) -> Result<bool> {
        self.state.exists(
            "SELECT EXISTS (SELECT 1 FROM imap_messages WHERE delivered = 0 AND folder_id = ?1)",
            params![self.id()],
        )
    }

    fn recover(&mut self, present: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let id = self.id();
        self.state.recover_pending(
            "imap_messages",
            "delivered = 0 AND folder_id = ?1",
            &[&id],
            present,
        )
    }
}
