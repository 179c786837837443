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

mod folder;
mod pop3;

pub use folder::FolderLedger;
pub use pop3::Pop3Ledger;

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
    // v4: messages left on the server (too large), which every fetch looks at again. The
    // UIDNEXT older versions recorded after passes that were cut short (max_messages, a
    // message the server did not send) is forgotten: a fetch lists from it as everything
    // below was handled, so the first fetch after the upgrade lists each folder whole.
    "
    CREATE INDEX imap_skipped ON imap_messages(folder_id) WHERE local_name IS NULL;
    UPDATE imap_folders SET uidnext = NULL;
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
    /// IMAP messages seen but left on the server (too large).
    pub left_on_server: u64,
}

/// A message about to be renamed into the Maildir (or, with no local name, left on the
/// server), as a ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its number on the server (an IMAP UID).
    pub uid: u32,
    /// Its lasting key where numbers do not last (POP3: the identity).
    pub key: Option<Box<str>>,
    /// Its Maildir unique name; None when it is not fetched (too large).
    pub local: Option<String>,
    /// Its flags (written form of `crate::flags`).
    pub flags: String,
    /// Its size on the server.
    pub size: u64,
    /// Its Message-ID, for re-matching after a UIDVALIDITY change.
    pub message_id: Option<String>,
}

/// The names of a delivery's crash-test steps (see `crate::failpoint`).
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    /// A message is complete in tmp/.
    pub tmp: &'static str,
    /// A batch is recorded.
    pub record: &'static str,
    /// A batch is renamed into place.
    pub rename: &'static str,
}

/// Where deliveries are recorded: each batch before its rename into the Maildir (so that a
/// crash after the rename cannot cause a duplicate), confirmed once the rename is durable (by
/// the next batch's record, or [`Deliveries::settle`]), and after a crash settled against what
/// the Maildir holds ([`Deliveries::recover`]).
pub trait Deliveries {
    /// The crash-test names of the delivery steps into this ledger.
    const STEPS: Steps;

    /// Records a batch, confirming earlier ones, in one durable transaction.
    fn record(&mut self, batch: &[Delivery]) -> Result<()>;

    /// Confirms every recorded message: their renames are durable.
    fn settle(&mut self) -> Result<()>;

    /// Whether anything is recorded but not confirmed (a crash happened mid-batch).
    fn has_pending(&self) -> Result<bool>;

    /// After a crash: confirms the recorded messages whose local name `present` says is in
    /// the Maildir and forgets the others (so they are fetched again). Returns the local
    /// names forgotten.
    fn recover(&mut self, present: &dyn Fn(&str) -> bool) -> Result<Vec<String>>;
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

    /// Runs `work` in one transaction and commits it (durably: synchronous = FULL).
    fn write<T>(
        &mut self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let sql = sql_err(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let value = work(&tx).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(value)
    }

    /// The answer of a `SELECT EXISTS (...)`.
    fn exists(&self, sql: &str, args: impl rusqlite::Params) -> Result<bool> {
        self.conn
            .query_row(sql, args, |r| r.get(0))
            .map_err(self.sql())
    }

    /// Confirms the pending rows of `table` (matching `filter`) whose local file is present and
    /// deletes the others; returns the local names of those deleted.
    fn recover_pending(
        &mut self,
        table: &str,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
        present: &dyn Fn(&str) -> bool,
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
            if local.as_deref().is_some_and(present) {
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
        let (imap, left): (i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*), count(*) FILTER (WHERE local_name IS NULL AND uid IS NOT NULL)
                     FROM imap_messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
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
            left_on_server: left as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// POP3 records: (id, local name, size).
    fn pop3(rows: &[(&str, &str, u64)]) -> Vec<Delivery> {
        rows.iter()
            .map(|&(id, local, size)| Delivery {
                uid: 0,
                key: Some(id.into()),
                local: Some(local.into()),
                flags: String::new(),
                size,
                message_id: None,
            })
            .collect()
    }

    /// IMAP records: (UID, local name, flags, Message-ID).
    fn imap(uid: u32, name: &str, flags: &str, message_id: Option<String>) -> Delivery {
        Delivery {
            uid,
            key: None,
            local: Some(name.into()),
            flags: flags.into(),
            size: 10,
            message_id,
        }
    }

    #[test]
    fn creates_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/acct.sqlite");
        let mut s = State::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        s.pop3(100).record(&pop3(&[("u1", "name1", 10)])).unwrap();
        s.pop3(100).settle().unwrap();
        s.pop3(200).mark_deleted(&["u1".into()]).unwrap();
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
        s.pop3(1).record(&pop3(&[("a", "la", 1)])).unwrap();
        // The next batch confirms the previous one.
        s.pop3(2)
            .record(&pop3(&[("b", "lb", 1), ("c", "lc", 1)]))
            .unwrap();
        assert!(s.pop3(2).has_pending().unwrap());
        let forgotten = s.pop3(2).recover(&|name| name == "lb").unwrap();
        assert_eq!(forgotten, vec!["lc".to_string()]);
        let known = s.pop3_known().unwrap();
        assert_eq!(known.len(), 2);
        assert!(known.get("a").is_some() && known.get("b").is_some());
        assert_eq!(known.get("c"), None);
        assert!(!s.pop3(2).has_pending().unwrap());
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
        let names: Vec<String> = ids.iter().map(|id| format!("n{id}")).collect();
        let rows: Vec<(&str, &str, u64)> = ids
            .iter()
            .zip(&names)
            .map(|(id, n)| (*id, n.as_str(), 1))
            .collect();
        s.pop3(7).record(&pop3(&rows)).unwrap();
        let stored = s.pop3_known().unwrap();
        assert!(ids.iter().all(|id| stored.get(id) == Some(7)));
        assert_eq!(stored.get("uidl:c"), None);
    }

    #[test]
    fn imap_records_recovery_and_rebinding() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("a.sqlite")).unwrap();
        let id = s.folder("INBOX", "").unwrap().folder.id;
        assert_eq!(s.folder("INBOX", "").unwrap().folder.id, id);
        let rec = |uid: u32, name: &str| imap(uid, name, "S", Some(format!("<{uid}@x>")));
        let mut f = s.folder("INBOX", "").unwrap();
        f.record(&[rec(1, "a"), rec(2, "b")]).unwrap();
        f.record(&[rec(3, "c")]).unwrap();
        assert!(f.has_pending().unwrap());
        assert_eq!(f.recover(&|n| n != "c").unwrap(), vec!["c".to_string()]);
        assert_eq!(f.messages().unwrap().len(), 2);
        // UID 1 becomes 2 and 2 becomes 1 (a swap must not collide); nothing is forgotten.
        f.rebind(7, &[(1, 2), (2, 1)]).unwrap();
        let m = f.messages().unwrap();
        assert_eq!((m[0].uid, m[0].local_name.as_deref()), (1, Some("b")));
        assert_eq!((m[1].uid, m[1].local_name.as_deref()), (2, Some("a")));
        assert_eq!(s.folder("INBOX", "").unwrap().folder.uidvalidity, Some(7));
        let mut f = s.folder("INBOX", "").unwrap();
        f.rebind(7, &[(1, 5)]).unwrap();
        let m = f.messages().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].uid, m[0].local_name.as_deref()), (5, Some("b")));
    }

    #[test]
    fn a_folder_confirms_only_its_own_pending_records() {
        // Folders are fetched in parallel: one folder's record or settle must not confirm
        // another's message that is recorded but not yet renamed into the Maildir.
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(&dir.path().join("a.sqlite")).unwrap();
        let rec = |uid: u32, name: &str| imap(uid, name, "", None);
        s.folder("Work", ".Work")
            .unwrap()
            .record(&[rec(1, "w")])
            .unwrap();
        let mut inbox = s.folder("INBOX", "").unwrap();
        inbox.record(&[rec(1, "i1")]).unwrap();
        inbox.record(&[rec(2, "i2")]).unwrap();
        inbox.settle().unwrap();
        assert!(!inbox.has_pending().unwrap());
        let mut work = s.folder("Work", ".Work").unwrap();
        assert!(work.has_pending().unwrap());
        assert_eq!(work.recover(&|_| false).unwrap(), vec!["w".to_string()]);
        assert!(work.messages().unwrap().is_empty());
    }

    #[test]
    fn a_dry_run_copy_leaves_the_original_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        let mut s = State::open(&path).unwrap();
        s.pop3(1).record(&pop3(&[("u1", "n1", 1)])).unwrap();
        drop(s);
        let (mut copy, guard) = State::dry_run_copy(&path).unwrap();
        assert!(copy.pop3_known().unwrap().get("u1").is_some());
        copy.pop3(2).record(&pop3(&[("u2", "n2", 1)])).unwrap();
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
    fn the_upgrade_to_v4_forgets_uidnext_recorded_by_older_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        let mut s = State::open(&path).unwrap();
        let mut f = s.folder("INBOX", "").unwrap();
        f.folder.uidnext = Some(50);
        f.passed().unwrap();
        // As a v3 database left it.
        s.conn
            .execute_batch("DROP INDEX imap_skipped; PRAGMA user_version = 3;")
            .unwrap();
        drop(s);
        let mut s = State::open(&path).unwrap();
        assert_eq!(s.folder("INBOX", "").unwrap().folder.uidnext, None);
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
        s.pop3(5)
            .record(&pop3(&[("a", "x", 1), ("b", "y", 2)]))
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
