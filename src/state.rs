//! The state database: one SQLite file per account (WAL, synchronous=FULL), with migrations.
//!
//! It records what was fetched (POP3 UIDL -> local message) and what is synced (IMAP folder,
//! UIDVALIDITY, UID <-> local message, last synced flags). A commit here is durable: mailferry
//! deletes nothing on a server before the matching commit has returned.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::exit::{Classify, Exit};

/// A state database or state directory failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file system operation on the state directory failed.
    #[error("state: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer mailferry.
    #[error(
        "state database {path} has schema version {found}, newer than this mailferry knows ({known}); upgrade mailferry"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

impl Classify for StateError {
    fn exit(&self) -> Exit {
        Exit::LocalIo
    }
}

type Result<T> = std::result::Result<T, StateError>;

/// Creates a directory with mode 0700 (and its parents) if it is missing.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StateError::Io {
            action: "create directory",
            path: dir.to_path_buf(),
            source,
        })
}

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// The schema, one entry per version; entry N migrates version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started INTEGER NOT NULL,
        finished INTEGER,
        outcome TEXT,
        fetched INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    -- POP3: one row per message fetched; `id` is the UIDL, or a header hash without UIDL.
    CREATE TABLE pop3_messages (
        id TEXT PRIMARY KEY,
        local_name TEXT,
        size INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        deleted INTEGER,
        -- 0 while the local copy may not have been renamed into place yet (see pop3_recover).
        delivered INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    -- IMAP: one row per server folder.
    CREATE TABLE imap_folders (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        local_path TEXT NOT NULL,
        uidvalidity INTEGER,
        highestmodseq INTEGER,
        uidnext INTEGER
    );
    -- IMAP: the pairing of server messages and Maildir messages with the last synced flags
    -- (Maildir letters). local_name is NULL for a message seen but not fetched (too large).
    CREATE TABLE imap_messages (
        id INTEGER PRIMARY KEY,
        folder_id INTEGER NOT NULL REFERENCES imap_folders(id) ON DELETE CASCADE,
        uid INTEGER,
        local_name TEXT,
        flags TEXT NOT NULL DEFAULT '',
        size INTEGER,
        message_id TEXT,
        -- 0 while the local copy may not have been renamed into place yet.
        delivered INTEGER NOT NULL DEFAULT 0,
        UNIQUE (folder_id, uid),
        UNIQUE (folder_id, local_name)
    );
    ",
    // v2: what finds an upload again without APPENDUID: the folder's UIDNEXT before the
    // APPEND, and the SHA-256 of the bytes sent.
    "
    ALTER TABLE imap_messages ADD COLUMN upload_floor INTEGER;
    ALTER TABLE imap_messages ADD COLUMN content_hash TEXT;
    ",
    // v3: the pending rows (recorded, rename not yet confirmed) are found by index. Every run
    // asks for them and every recorded batch confirms them; without these, each did a scan of
    // the whole table (a no-op sync of 50,000 messages read them all).
    "
    CREATE INDEX pop3_pending ON pop3_messages(delivered) WHERE delivered = 0;
    CREATE INDEX imap_pending ON imap_messages(folder_id) WHERE delivered = 0;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The directory of a dry run's state copy, removed when dropped (see [`State::dry_run_copy`]).
#[derive(Debug)]
pub struct DryRunDir(PathBuf);

impl Drop for DryRunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A server folder as state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapFolder {
    /// Row id.
    pub id: i64,
    /// UIDVALIDITY the UIDs below belong to.
    pub uidvalidity: Option<u32>,
    /// HIGHESTMODSEQ after the last complete pass (CONDSTORE).
    pub highestmodseq: Option<u64>,
    /// UIDNEXT after the last complete pass.
    pub uidnext: Option<u32>,
}

/// An IMAP message as state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapRecord {
    /// UID on the server.
    pub uid: u32,
    /// Maildir unique name; None when it was seen but not fetched.
    pub local_name: Option<String>,
    /// Flags last synced (Maildir letters).
    pub flags: String,
    /// RFC822.SIZE on the server.
    pub size: u64,
    /// Message-ID header, for re-matching after a UIDVALIDITY change.
    pub message_id: Option<String>,
}

/// What sync needs of a known message, and no more (it holds one per message of a folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedRecord {
    /// UID on the server.
    pub uid: u32,
    /// Maildir unique name; None when it was seen but not fetched.
    pub local_name: Option<Box<str>>,
    /// Flags last synced (the written form of `crate::flags`).
    pub flags: Box<str>,
}

/// The POP3 messages state knows: each id with the time it was first fetched, packed into one
/// string and sorted (a no-op run over a large mailbox holds one entry per message, so no
/// allocation per entry).
#[derive(Debug, Default)]
pub struct Pop3Known {
    text: String,
    /// (start, end) of an id in `text`, and its first-fetch time; sorted by id.
    spans: Vec<(usize, usize, i64)>,
}

impl Pop3Known {
    /// When the message with this id was first fetched, if state knows it.
    pub fn get(&self, id: &str) -> Option<i64> {
        self.spans
            .binary_search_by(|&(s, e, _)| self.text[s..e].cmp(id))
            .ok()
            .map(|i| self.spans[i].2)
    }

    /// How many messages state knows.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether state knows none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Sorts by id unless already sorted (rows come in the index's order, which is byte order).
    fn sorted(mut self) -> Self {
        let text = &self.text;
        let id = |&(s, e, _): &(usize, usize, i64)| &text[s..e];
        if !self.spans.is_sorted_by(|a, b| id(a) <= id(b)) {
            self.spans.sort_unstable_by(|a, b| id(a).cmp(id(b)));
        }
        self
    }
}

impl<S: AsRef<str>> FromIterator<(S, i64)> for Pop3Known {
    fn from_iter<I: IntoIterator<Item = (S, i64)>>(rows: I) -> Self {
        let mut known = Pop3Known::default();
        for (id, first_seen) in rows {
            let start = known.text.len();
            known.text.push_str(id.as_ref());
            known.spans.push((start, known.text.len(), first_seen));
        }
        known.sorted()
    }
}

/// An upload recorded before its APPEND whose UID is not known yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Row id in imap_messages.
    pub row: i64,
    /// What was recorded of it.
    pub intent: UploadIntent,
}

/// What is recorded of a message before its APPEND, to pair it with its UID afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadIntent {
    /// Maildir unique name.
    pub local: String,
    /// Flags sent (Maildir letters), the pair's first synced flags.
    pub flags: String,
    /// Size with CRLF line ends (RFC822.SIZE on the server).
    pub size: u64,
    /// Message-ID header.
    pub message_id: Option<String>,
    /// The folder's UIDNEXT before the APPEND: its UID is at least this (None in intents
    /// recorded by schema v1).
    pub floor: Option<u32>,
    /// SHA-256 (hex) of the bytes sent (None in intents recorded by schema v1).
    pub hash: Option<String>,
}

/// What `status` shows about an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages known (fetched or synced).
    pub messages: u64,
    /// Of those, deleted on the server by mailferry.
    pub deleted: u64,
    /// The last finished run: (finished unix time, outcome, error).
    pub last_run: Option<(i64, String, Option<String>)>,
    /// The last successful run's finish time.
    pub last_success: Option<i64>,
}

/// An open state database.
#[derive(Debug)]
pub struct State {
    conn: Connection,
    path: PathBuf,
}

impl State {
    /// Opens (creating with mode 0600 if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<State> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir)?;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| StateError::Io {
                action: "create",
                path: path.to_path_buf(),
                source,
            })?;
        let sql = sql_err(path);
        let conn = Connection::open(path).map_err(&sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(&sql)?;
        let mut state = State {
            conn,
            path: path.to_path_buf(),
        };
        state.migrate()?;
        Ok(state)
    }

    /// A private copy of the database at `path` (empty if there is none) for a dry run to
    /// plan against, so that nothing it records reaches the real state. The copy's directory
    /// goes when the returned guard is dropped.
    pub fn dry_run_copy(path: &Path) -> Result<(State, DryRunDir)> {
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mailferry-dry-run-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_private_dir(&dir)?;
        let copy = dir.join("state.sqlite");
        if path.exists() {
            let source = State::open(path)?;
            source
                .conn
                .execute("VACUUM INTO ?1", params![copy.to_string_lossy()])
                .map_err(source.sql())?;
        }
        Ok((State::open(&copy)?, DryRunDir(dir)))
    }

    /// Opens an existing database without creating one (for `status`).
    pub fn open_existing(path: &Path) -> Result<Option<State>> {
        if !path.exists() {
            return Ok(None);
        }
        State::open(path).map(Some)
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        sql_err(&self.path)
    }

    /// Every row of a (cached) query, each read by `row`, collected.
    fn rows<T, B: FromIterator<T>>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<B> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.sql())?;
        let rows = stmt.query_map(args, row).map_err(self.sql())?;
        rows.collect::<rusqlite::Result<B>>().map_err(self.sql())
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.sql())?;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let sql = sql_err(&self.path);
            let tx = self.conn.transaction().map_err(&sql)?;
            tx.execute_batch(step).map_err(&sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(&sql)?;
            tx.commit().map_err(&sql)?;
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every POP3 message state knows (fetched, or fetched and deleted): its id and when it was
    /// first fetched, all a plan needs (a no-op run holds one per message on the server).
    pub fn pop3_known(&self) -> Result<Pop3Known> {
        self.rows(
            "SELECT id, first_seen FROM pop3_messages ORDER BY id",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
    }

    /// Records messages about to be made durable and renamed into the Maildir (written in tmp/),
    /// in one durable transaction with the confirmation of all earlier ones: (id, local name,
    /// size). Call [`State::pop3_settle`] once their renames are durable.
    pub fn pop3_record(&mut self, fetched: &[(String, String, u64)], now: i64) -> Result<()> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        tx.execute(
            "UPDATE pop3_messages SET delivered = 1 WHERE delivered = 0",
            [],
        )
        .map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO pop3_messages (id, local_name, size, first_seen, delivered) VALUES (?1, ?2, ?3, ?4, 0)
                     ON CONFLICT(id) DO UPDATE SET local_name = excluded.local_name, size = excluded.size,
                        delivered = 0, deleted = NULL",
                )
                .map_err(&sql)?;
            for (id, local, size) in fetched {
                stmt.execute(params![id, local, *size as i64, now])
                    .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// Confirms every recorded message whose rename is durable.
    pub fn pop3_settle(&mut self) -> Result<()> {
        self.conn
            .execute(
                "UPDATE pop3_messages SET delivered = 1 WHERE delivered = 0",
                [],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// After a crash: messages recorded but perhaps never renamed into place. `present` says
    /// whether a local name is in the Maildir; those present are confirmed, the others are
    /// forgotten (so they are fetched again). Returns the local names forgotten.
    pub fn pop3_recover(&mut self, present: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        self.recover_pending("pop3_messages", "delivered = 0", &[], present)
    }

    /// Whether any POP3 message is recorded but not confirmed (a crash happened mid-batch).
    pub fn pop3_has_pending(&self) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pop3_messages WHERE delivered = 0)",
                [],
                |r| r.get(0),
            )
            .map_err(self.sql())
    }

    /// Marks POP3 messages as deleted on the server (after the server confirmed it).
    pub fn pop3_mark_deleted(&mut self, ids: &[String], now: i64) -> Result<()> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE pop3_messages SET deleted = ?2 WHERE id = ?1")
                .map_err(&sql)?;
            for id in ids {
                stmt.execute(params![id, now]).map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// The state of a server folder, created (empty) if it is new.
    pub fn imap_folder(&mut self, name: &str, local_path: &str) -> Result<ImapFolder> {
        let sql = sql_err(&self.path);
        self.conn
            .execute(
                "INSERT INTO imap_folders (name, local_path) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
                params![name, local_path],
            )
            .map_err(&sql)?;
        self.conn
            .query_row(
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
            .map_err(&sql)
    }

    /// Records a folder's UIDVALIDITY, HIGHESTMODSEQ and UIDNEXT after a successful pass.
    pub fn imap_folder_synced(&mut self, folder: &ImapFolder) -> Result<()> {
        self.conn
            .execute(
                "UPDATE imap_folders SET uidvalidity = ?2, highestmodseq = ?3, uidnext = ?4 WHERE id = ?1",
                params![
                    folder.id,
                    folder.uidvalidity.map(i64::from),
                    folder.highestmodseq.map(|m| m as i64),
                    folder.uidnext.map(i64::from)
                ],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// The messages state knows in a folder, by UID.
    pub fn imap_messages(&self, folder: i64) -> Result<Vec<ImapRecord>> {
        self.rows(
            "SELECT uid, local_name, flags, size, message_id FROM imap_messages
                 WHERE folder_id = ?1 AND uid IS NOT NULL ORDER BY uid",
            params![folder],
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

    /// A folder's known messages as sync pairs them, by UID.
    pub fn imap_synced(&self, folder: i64) -> Result<Vec<SyncedRecord>> {
        self.rows(
            "SELECT uid, local_name, flags FROM imap_messages
                 WHERE folder_id = ?1 AND uid IS NOT NULL ORDER BY uid",
            params![folder],
            |r| {
                Ok(SyncedRecord {
                    uid: r.get::<_, i64>(0)? as u32,
                    local_name: r.get::<_, Option<String>>(1)?.map(String::into_boxed_str),
                    flags: r.get::<_, String>(2)?.into_boxed_str(),
                })
            },
        )
    }

    /// The highest UID known in a folder (0: none), which is where new mail starts.
    pub fn imap_highest_uid(&self, folder: i64) -> Result<u32> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(uid), 0) FROM imap_messages WHERE folder_id = ?1",
                params![folder],
                |r| r.get::<_, i64>(0),
            )
            .map(|uid| uid as u32)
            .map_err(self.sql())
    }

    /// UIDs of a folder's messages that are in the Maildir (delete mode expunges them).
    pub fn imap_fetched_uids(&self, folder: i64) -> Result<Vec<u32>> {
        self.rows(
            "SELECT uid FROM imap_messages
                 WHERE folder_id = ?1 AND uid IS NOT NULL AND local_name IS NOT NULL ORDER BY uid",
            params![folder],
            |r| r.get::<_, i64>(0).map(|u| u as u32),
        )
    }

    /// Records messages about to be renamed into the Maildir (or skipped, with no local name),
    /// confirming earlier ones, in one durable transaction; see [`State::pop3_record`].
    pub fn imap_record(&mut self, folder: i64, records: &[ImapRecord]) -> Result<()> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        // Only this folder's: another folder's worker may be between its record and its rename.
        tx.execute(
            "UPDATE imap_messages SET delivered = 1 WHERE delivered = 0 AND folder_id = ?1",
            params![folder],
        )
        .map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO imap_messages (folder_id, uid, local_name, flags, size, message_id, delivered)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(folder_id, uid) DO UPDATE SET local_name = excluded.local_name,
                        flags = excluded.flags, size = excluded.size, message_id = excluded.message_id,
                        delivered = excluded.delivered",
                )
                .map_err(&sql)?;
            for r in records {
                stmt.execute(params![
                    folder,
                    r.uid,
                    r.local_name,
                    r.flags,
                    r.size as i64,
                    r.message_id,
                    r.local_name.is_none()
                ])
                .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// Confirms the recorded messages of `folder`, whose renames are durable.
    pub fn imap_settle(&mut self, folder: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE imap_messages SET delivered = 1 WHERE delivered = 0 AND folder_id = ?1",
                params![folder],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// After a crash: pending records of `folder` whose file is not in the Maildir are
    /// forgotten (fetched again); the others are confirmed. Returns the names forgotten.
    pub fn imap_recover(
        &mut self,
        folder: i64,
        present: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        self.recover_pending(
            "imap_messages",
            "delivered = 0 AND folder_id = ?1",
            &[&folder],
            present,
        )
    }

    /// Confirms the pending rows of `table` (matching `filter`) whose local file is present and
    /// deletes the others; returns the local names of those deleted.
    fn recover_pending(
        &mut self,
        table: &str,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
        present: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let pending: Vec<(rusqlite::types::Value, Option<String>)> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT id, local_name FROM {table} WHERE {filter}"
                ))
                .map_err(&sql)?;
            stmt.query_map(args, |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(&sql)?
                .collect::<rusqlite::Result<_>>()
                .map_err(&sql)?
        };
        let mut forgotten = Vec::new();
        for (id, local) in pending {
            if local.as_deref().is_some_and(&present) {
                tx.execute(
                    &format!("UPDATE {table} SET delivered = 1 WHERE id = ?1"),
                    params![id],
                )
                .map_err(&sql)?;
            } else {
                tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), params![id])
                    .map_err(&sql)?;
                forgotten.extend(local);
            }
        }
        tx.commit().map_err(&sql)?;
        Ok(forgotten)
    }

    /// Whether any IMAP message of `folder` is recorded but not confirmed.
    pub fn imap_has_pending(&self, folder: i64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM imap_messages WHERE delivered = 0 AND folder_id = ?1)",
                params![folder],
                |r| r.get(0),
            )
            .map_err(self.sql())
    }

    /// Forgets messages of a folder by UID (expunged on the server).
    pub fn imap_forget(&mut self, folder: i64, uids: &[u32]) -> Result<()> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM imap_messages WHERE folder_id = ?1 AND uid = ?2")
                .map_err(&sql)?;
            for uid in uids {
                stmt.execute(params![folder, uid]).map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// After a UIDVALIDITY change: gives re-matched messages their new UIDs and forgets the
    /// rest, in one transaction with the new UIDVALIDITY.
    pub fn imap_rebind(&mut self, folder: &ImapFolder, moves: &[(u32, u32)]) -> Result<()> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        {
            // Park re-matched rows on negative UIDs first, so old and new UIDs cannot collide.
            let mut park = tx
                .prepare_cached(
                    "UPDATE imap_messages SET uid = -?3 WHERE folder_id = ?1 AND uid = ?2",
                )
                .map_err(&sql)?;
            for (old, new) in moves {
                park.execute(params![folder.id, old, new]).map_err(&sql)?;
            }
            tx.execute(
                "DELETE FROM imap_messages WHERE folder_id = ?1 AND uid > 0",
                params![folder.id],
            )
            .map_err(&sql)?;
            tx.execute(
                "UPDATE imap_messages SET uid = -uid WHERE folder_id = ?1 AND uid < 0",
                params![folder.id],
            )
            .map_err(&sql)?;
            tx.execute(
                "UPDATE imap_folders SET uidvalidity = ?2, highestmodseq = NULL, uidnext = NULL WHERE id = ?1",
                params![folder.id, folder.uidvalidity.map(i64::from)],
            )
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)
    }

    /// Messages being uploaded (recorded before their APPEND, no UID yet) in a folder.
    pub fn imap_pending_uploads(&self, folder: i64) -> Result<Vec<PendingUpload>> {
        self.rows(
            "SELECT id, local_name, flags, size, message_id, upload_floor, content_hash
                 FROM imap_messages WHERE folder_id = ?1 AND uid IS NULL AND local_name IS NOT NULL",
            params![folder],
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
    pub fn imap_upload_intents(
        &mut self,
        folder: i64,
        uploads: &[UploadIntent],
    ) -> Result<Vec<i64>> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut ids = Vec::with_capacity(uploads.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO imap_messages (folder_id, uid, local_name, flags, size, message_id,
                         delivered, upload_floor, content_hash)
                     VALUES (?1, NULL, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
                )
                .map_err(&sql)?;
            for u in uploads {
                stmt.execute(params![
                    folder,
                    u.local,
                    u.flags,
                    u.size as i64,
                    u.message_id,
                    u.floor,
                    u.hash
                ])
                .map_err(&sql)?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(&sql)?;
        Ok(ids)
    }

    /// Gives uploaded messages their UIDs, or forgets intents that did not reach the server
    /// (uid None), in one transaction.
    pub fn imap_uploads_done(&mut self, done: &[(i64, Option<u32>)]) -> Result<()> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        {
            let mut set = tx
                .prepare_cached("UPDATE imap_messages SET uid = ?2 WHERE id = ?1")
                .map_err(&sql)?;
            let mut drop = tx
                .prepare_cached("DELETE FROM imap_messages WHERE id = ?1")
                .map_err(&sql)?;
            for (id, uid) in done {
                match uid {
                    Some(uid) => set.execute(params![id, uid]).map_err(&sql)?,
                    None => drop.execute(params![id]).map_err(&sql)?,
                };
            }
        }
        tx.commit().map_err(&sql)
    }

    /// Records the synced flags of messages: (UID, letters).
    pub fn imap_set_flags(&mut self, folder: i64, flags: &[(u32, String)]) -> Result<()> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE imap_messages SET flags = ?3 WHERE folder_id = ?1 AND uid = ?2",
                )
                .map_err(&sql)?;
            for (uid, f) in flags {
                stmt.execute(params![folder, uid, f]).map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// Starts a run record; returns its id.
    pub fn run_started(&mut self, now: i64) -> Result<i64> {
        self.without_fsync(|c| {
            c.execute("INSERT INTO runs (started) VALUES (?1)", params![now])
                .map(|_| c.last_insert_rowid())
        })
    }

    /// Runs a write that is history only (the run log) without waiting for the disk: a power
    /// cut may lose it, never a delivery record, since the WAL replays commits in order and the
    /// next durable commit carries it along. Saves a no-op run both of its fsyncs.
    fn without_fsync<T>(
        &self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let sql = self.sql();
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(&sql)?;
        let written = write(&self.conn);
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(&sql)?;
        written.map_err(sql)
    }

    /// Finishes a run record with its outcome and counts.
    pub fn run_finished(
        &mut self,
        run: i64,
        now: i64,
        outcome: &str,
        fetched: u64,
        deleted: u64,
        error: Option<&str>,
    ) -> Result<()> {
        self.without_fsync(|c| {
            c.execute(
                "UPDATE runs SET finished = ?2, outcome = ?3, fetched = ?4, deleted = ?5, error = ?6 WHERE id = ?1",
                params![run, now, outcome, fetched as i64, deleted as i64, error],
            )
        })?;
        Ok(())
    }

    /// What state knows, for `status`.
    pub fn summary(&self) -> Result<Summary> {
        let (pop, pop_deleted): (i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*), count(deleted) FROM pop3_messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql())?;
        let imap: i64 = self
            .conn
            .query_row("SELECT count(*) FROM imap_messages", [], |r| r.get(0))
            .map_err(self.sql())?;
        let last_run = self
            .conn
            .query_row(
                "SELECT finished, outcome, error FROM runs WHERE finished IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.sql())?;
        let last_success = self
            .conn
            .query_row(
                "SELECT max(finished) FROM runs WHERE outcome = 'ok'",
                [],
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        Ok(Summary {
            messages: (pop + imap) as u64,
            deleted: pop_deleted as u64,
            last_run,
            last_success,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/acct.sqlite");
        let mut s = State::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        s.pop3_record(&[("u1".into(), "name1".into(), 10)], 100)
            .unwrap();
        s.pop3_settle().unwrap();
        s.pop3_mark_deleted(&["u1".into()], 200).unwrap();
        drop(s);
        let s = State::open(&path).unwrap();
        assert_eq!(s.pop3_known().unwrap().get("u1"), Some(100));
        let row: (String, i64, i64, i64) = s
            .conn
            .query_row(
                "SELECT local_name, size, first_seen, deleted FROM pop3_messages WHERE id = 'u1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(row, ("name1".into(), 10, 100, 200));
        let v: i64 = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn recovery_keeps_what_landed_and_forgets_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("a.sqlite")).unwrap();
        s.pop3_record(&[("a".into(), "la".into(), 1)], 1).unwrap();
        // The next batch confirms the previous one.
        s.pop3_record(
            &[("b".into(), "lb".into(), 1), ("c".into(), "lc".into(), 1)],
            2,
        )
        .unwrap();
        assert!(s.pop3_has_pending().unwrap());
        let forgotten = s.pop3_recover(|name| name == "lb").unwrap();
        assert_eq!(forgotten, vec!["lc".to_string()]);
        let known = s.pop3_known().unwrap();
        assert_eq!(known.len(), 2);
        assert!(known.get("a").is_some() && known.get("b").is_some());
        assert_eq!(known.get("c"), None);
        assert!(!s.pop3_has_pending().unwrap());
    }

    #[test]
    fn pop3_known_finds_every_id_in_any_order_and_no_other() {
        let ids = [
            "uidl:b",
            "uidl:a",
            "hdr:ff#2",
            "uidl:ab",
            "",
            "uidl:a#hdr:00",
            "Ü",
        ];
        let known: Pop3Known = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as i64))
            .collect();
        assert_eq!(known.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(known.get(id), Some(i as i64), "{id}");
        }
        for absent in ["uidl:", "uidl:c", "uidl:a#", "hdr:ff", "ü"] {
            assert_eq!(known.get(absent), None, "{absent}");
        }
        // From the database, in the index's order.
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("a.sqlite")).unwrap();
        let rows: Vec<(String, String, u64)> = ids
            .iter()
            .map(|id| (id.to_string(), format!("n{id}"), 1))
            .collect();
        s.pop3_record(&rows, 7).unwrap();
        let stored = s.pop3_known().unwrap();
        assert!(ids.iter().all(|id| stored.get(id) == Some(7)));
        assert_eq!(stored.get("uidl:c"), None);
    }

    #[test]
    fn imap_records_recovery_and_rebinding() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("a.sqlite")).unwrap();
        let mut f = s.imap_folder("INBOX", "").unwrap();
        assert_eq!(s.imap_folder("INBOX", "").unwrap().id, f.id);
        let rec = |uid: u32, name: &str| ImapRecord {
            uid,
            local_name: Some(name.into()),
            flags: "S".into(),
            size: 10,
            message_id: Some(format!("<{uid}@x>")),
        };
        s.imap_record(f.id, &[rec(1, "a"), rec(2, "b")]).unwrap();
        s.imap_record(f.id, &[rec(3, "c")]).unwrap();
        assert!(s.imap_has_pending(f.id).unwrap());
        assert_eq!(
            s.imap_recover(f.id, |n| n != "c").unwrap(),
            vec!["c".to_string()]
        );
        assert_eq!(s.imap_messages(f.id).unwrap().len(), 2);
        f.uidvalidity = Some(7);
        // UID 1 becomes 2 and 2 becomes 1 (a swap must not collide); nothing is forgotten.
        s.imap_rebind(&f, &[(1, 2), (2, 1)]).unwrap();
        let m = s.imap_messages(f.id).unwrap();
        assert_eq!((m[0].uid, m[0].local_name.as_deref()), (1, Some("b")));
        assert_eq!((m[1].uid, m[1].local_name.as_deref()), (2, Some("a")));
        assert_eq!(s.imap_folder("INBOX", "").unwrap().uidvalidity, Some(7));
        s.imap_rebind(&f, &[(1, 5)]).unwrap();
        let m = s.imap_messages(f.id).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].uid, m[0].local_name.as_deref()), (5, Some("b")));
    }

    #[test]
    fn a_folder_confirms_only_its_own_pending_records() {
        // Folders are fetched in parallel: one folder's record or settle must not confirm
        // another's message that is recorded but not yet renamed into the Maildir.
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("a.sqlite")).unwrap();
        let inbox = s.imap_folder("INBOX", "").unwrap().id;
        let work = s.imap_folder("Work", ".Work").unwrap().id;
        let rec = |uid: u32, name: &str| ImapRecord {
            uid,
            local_name: Some(name.into()),
            flags: String::new(),
            size: 10,
            message_id: None,
        };
        s.imap_record(work, &[rec(1, "w")]).unwrap();
        s.imap_record(inbox, &[rec(1, "i1")]).unwrap();
        s.imap_record(inbox, &[rec(2, "i2")]).unwrap();
        s.imap_settle(inbox).unwrap();
        assert!(!s.imap_has_pending(inbox).unwrap());
        assert!(s.imap_has_pending(work).unwrap());
        assert_eq!(
            s.imap_recover(work, |_| false).unwrap(),
            vec!["w".to_string()]
        );
        assert!(s.imap_messages(work).unwrap().is_empty());
    }

    #[test]
    fn a_dry_run_copy_leaves_the_original_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        let mut s = State::open(&path).unwrap();
        s.pop3_record(&[("u1".into(), "n1".into(), 1)], 1).unwrap();
        drop(s);
        let (mut copy, guard) = State::dry_run_copy(&path).unwrap();
        assert!(copy.pop3_known().unwrap().get("u1").is_some());
        copy.pop3_record(&[("u2".into(), "n2".into(), 1)], 2)
            .unwrap();
        let copy_dir = guard.0.clone();
        drop(copy);
        drop(guard);
        assert!(!copy_dir.exists());
        assert_eq!(State::open(&path).unwrap().pop3_known().unwrap().len(), 1);
        let (empty, _guard) = State::dry_run_copy(&dir.path().join("missing.sqlite")).unwrap();
        assert!(empty.pop3_known().unwrap().is_empty());
        assert!(!dir.path().join("missing.sqlite").exists());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        let s = State::open(&path).unwrap();
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let e = State::open(&path).unwrap_err();
        assert!(matches!(e, StateError::TooNew { found: 99, .. }), "{e}");
    }

    #[test]
    fn runs_and_summary() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("a.sqlite")).unwrap();
        assert_eq!(s.summary().unwrap(), Summary::default());
        let r = s.run_started(5).unwrap();
        s.pop3_record(
            &[("a".into(), "x".into(), 1), ("b".into(), "y".into(), 2)],
            5,
        )
        .unwrap();
        s.run_finished(r, 6, "ok", 2, 0, None).unwrap();
        let r = s.run_started(7).unwrap();
        s.run_finished(r, 8, "failed", 0, 0, Some("boom")).unwrap();
        let sum = s.summary().unwrap();
        assert_eq!(sum.messages, 2);
        assert_eq!(sum.last_success, Some(6));
        assert_eq!(
            sum.last_run,
            Some((8, "failed".into(), Some("boom".into())))
        );
    }
}
