//! A Maildir store written for durability: tmp/ -> fsync -> rename -> directory fsync.
//!
//! Deliveries are grouped: each message is written and made durable in `tmp/`, then a whole
//! batch is renamed into `new/` or `cur/` and each touched directory is synced once. A reader
//! never sees a partial message, and a batch is on disk before [`Folder::commit`] returns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod keywords;

use crate::config::Layout;
use crate::exit::{Classify, Exit};

/// A Maildir failure: local I/O, or a folder name that cannot be stored safely.
#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A folder name (usually from a server) that cannot become a safe path.
    #[error("folder name {name:?} cannot be stored: {why}")]
    BadName {
        /// The name as received.
        name: String,
        /// Why not.
        why: &'static str,
    },
}

impl Classify for MaildirError {
    fn exit(&self) -> Exit {
        match self {
            MaildirError::Io { .. } => Exit::LocalIo,
            MaildirError::BadName { .. } => Exit::Protocol,
        }
    }
}

type Result<T> = std::result::Result<T, MaildirError>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MaildirError + 'a {
    move |source| MaildirError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The longest file name most file systems take.
const NAME_MAX: usize = 255;

/// A Maildir tree: the INBOX at the root (or as a folder like the others), sub-folders by the
/// chosen layout.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
    layout: Layout,
    inbox_at_root: bool,
    /// Folder names are spelled in IMAP's modified UTF-7 on disk (as mbsync 1.4 and Dovecot
    /// without `:UTF-8` keep them), not UTF-8.
    utf7: bool,
}

impl Maildir {
    /// A tree rooted at `root` (nothing is created until a folder is opened).
    pub fn new(root: impl Into<PathBuf>, layout: Layout) -> Maildir {
        Maildir {
            root: root.into(),
            layout,
            inbox_at_root: true,
            utf7: false,
        }
    }

    /// Spells non-ASCII folder names as `names` says; `auto` takes UTF-7 where the tree has
    /// a folder so named already (so that a Maildir mbsync or Dovecot made gets no second,
    /// UTF-8 folder beside each of its own).
    pub fn with_folder_names(mut self, names: crate::config::FolderNames) -> Maildir {
        use crate::config::FolderNames;
        self.utf7 = match names {
            FolderNames::Utf7 => true,
            FolderNames::Utf8 => false,
            FolderNames::Auto => self.has_utf7_names(),
        };
        self
    }

    /// Whether a folder on disk has a name with a modified UTF-7 escape (`&APw-`).
    fn has_utf7_names(&self) -> bool {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return false;
        };
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let shifted = name
                .match_indices('&')
                .any(|(i, _)| !name[i..].starts_with("&-"));
            shifted
                && e.path().is_dir()
                && crate::imap::codec::utf7_decode(name.as_bytes()).is_some_and(|d| d != name)
        })
    }

    /// A level's name as spelled on disk, before escaping.
    fn spelled(&self, name: &str) -> String {
        if self.utf7 {
            crate::imap::codec::utf7_encode(name)
        } else {
            name.to_string()
        }
    }

    /// A level's name as read from disk, after unescaping.
    fn unspelled(&self, text: &str) -> String {
        let name = decode_component(text);
        match self.utf7 {
            true => crate::imap::codec::utf7_decode(name.as_bytes()).unwrap_or(name),
            false => name,
        }
    }

    /// Keeps INBOX in a folder of its own (`.INBOX`, or `INBOX/`) instead of at the root.
    pub fn inbox_as_folder(mut self) -> Maildir {
        self.inbox_at_root = false;
        self
    }

    /// Whether INBOX is the root of the tree.
    pub fn inbox_at_root(&self) -> bool {
        self.inbox_at_root
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a folder given as hierarchy components; `[]` is the root, and so is
    /// `["INBOX"]` unless INBOX is kept as a folder.
    pub fn folder_path(&self, components: &[&str]) -> Result<PathBuf> {
        let components = match components {
            [only] if self.inbox_at_root && only.eq_ignore_ascii_case("INBOX") => &[][..],
            other => other,
        };
        if components.is_empty() {
            return Ok(self.root.clone());
        }
        let whole = components.join("/");
        let mut encoded = Vec::with_capacity(components.len());
        for c in components {
            if c.is_empty() {
                return Err(MaildirError::BadName {
                    name: whole,
                    why: "it has an empty hierarchy level",
                });
            }
            encoded.push(encode_component(&self.spelled(c), self.layout));
        }
        match self.layout {
            Layout::MaildirPlusPlus => {
                let name = format!(".{}", encoded.join("."));
                if name.len() > NAME_MAX {
                    return Err(MaildirError::BadName {
                        name: whole,
                        why: "it is longer than a file name may be",
                    });
                }
                Ok(self.root.join(name))
            }
            Layout::Fs => {
                if encoded.iter().any(|e| e.len() > NAME_MAX) {
                    return Err(MaildirError::BadName {
                        name: whole,
                        why: "a level is longer than a file name may be",
                    });
                }
                Ok(encoded.iter().fold(self.root.clone(), |p, e| p.join(e)))
            }
        }
    }

    /// Opens a folder, creating it (tmp/ new/ cur/, mode 0700) durably if it does not exist.
    pub fn open_folder(&self, components: &[&str]) -> Result<Folder> {
        let path = self.folder_path(components)?;
        let is_sub = path != self.root;
        create_dirs_durably(&path)?;
        for sub in ["tmp", "new", "cur"] {
            create_dirs_durably(&path.join(sub))?;
        }
        if is_sub && self.layout == Layout::MaildirPlusPlus {
            let marker = path.join("maildirfolder");
            if !marker.exists() {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(&marker)
                    .map_err(io_err("create", &marker))?;
            }
        }
        Ok(Folder { path })
    }

    /// The sub-folders present on disk, as decoded hierarchy components (INBOX not included).
    pub fn list_folders(&self) -> Result<Vec<Vec<String>>> {
        let mut out = Vec::new();
        match self.layout {
            Layout::MaildirPlusPlus => {
                let entries = match fs::read_dir(&self.root) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(io_err("read directory", &self.root)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io_err("read directory", &self.root))?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let Some(rest) = name.strip_prefix('.') else {
                        continue;
                    };
                    if rest.is_empty() || rest == "." || !entry.path().join("cur").is_dir() {
                        continue;
                    }
                    out.push(rest.split('.').map(|c| self.unspelled(c)).collect());
                }
            }
            Layout::Fs => self.walk_fs(&self.root, &mut Vec::new(), &mut out)?,
        }
        out.sort();
        Ok(out)
    }

    fn walk_fs(
        &self,
        dir: &Path,
        prefix: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read directory", dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if matches!(name, "tmp" | "new" | "cur") || name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            prefix.push(self.unspelled(name));
            if path.join("cur").is_dir() {
                out.push(prefix.clone());
            }
            self.walk_fs(&path, prefix, out)?;
            prefix.pop();
        }
        Ok(())
    }
}

/// The Maildir tree of an account, as its config describes it.
pub fn account_maildir(account: &crate::config::Account) -> Maildir {
    let maildir =
        Maildir::new(&account.maildir, account.layout).with_folder_names(account.folder_names);
    if account.inbox_at_root {
        maildir
    } else {
        maildir.inbox_as_folder()
    }
}

/// Escapes what must not appear in one level of a folder name on disk.
fn encode_component(name: &str, layout: Layout) -> String {
    let reserved = matches!(name, "tmp" | "new" | "cur") && layout == Layout::Fs;
    let mut out = String::with_capacity(name.len());
    for (i, ch) in name.char_indices() {
        let escape = ch == '%'
            || ch == '/'
            || ch.is_control()
            || (ch == '.' && (layout == Layout::MaildirPlusPlus || i == 0))
            || (reserved && i == 0);
        if escape {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Reverses [`encode_component`]; text that is not a valid escape is kept as it is.
fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates a directory (and missing parents) with mode 0700 and syncs each new entry's parent.
fn create_dirs_durably(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dirs_durably(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(io_err("create directory", path)(e)),
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Makes a directory's entries (renames, creations) durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", path))
}

/// Where a message file lives inside its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// `new/`: not yet seen by a mail reader; no flags.
    New,
    /// `cur/`: with `:2,FLAGS`.
    Cur,
}

impl Sub {
    fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// A message file in a folder: its name once, the unique name and flags read as slices of it
/// (a sync of a large folder holds one of these per message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// new/ or cur/.
    pub sub: Sub,
    /// The file name as it is on disk.
    file_name: Box<str>,
    /// Length of the unique name, the file name up to `:2,`.
    unique_len: usize,
    /// The flag letters normalised, when the file name's own are not (unsorted, repeated).
    odd_flags: Option<Box<str>>,
}

impl Entry {
    /// Parses a file name found in new/ or cur/.
    pub fn parse(sub: Sub, file_name: &str) -> Entry {
        let (unique_len, letters) = match file_name.split_once(":2,") {
            Some((u, f)) => (u.len(), f),
            None => (
                file_name
                    .split_once(':')
                    .map_or(file_name, |(u, _)| u)
                    .len(),
                "",
            ),
        };
        // Readers write the letters in order; only others are copied, normalised.
        let in_order = letters.bytes().all(|c| c.is_ascii_alphabetic())
            && letters.as_bytes().windows(2).all(|w| w[0] < w[1]);
        Entry {
            sub,
            file_name: file_name.into(),
            unique_len,
            odd_flags: (!in_order).then(|| normalize_flags(letters).into()),
        }
    }

    /// The unique name: the file name up to `:2,`. This is the message's local identity.
    pub fn unique(&self) -> &str {
        &self.file_name[..self.unique_len]
    }

    /// Maildir flag letters, sorted (D F P R S T; lower-case letters are keywords).
    pub fn flags(&self) -> &str {
        match &self.odd_flags {
            Some(f) => f,
            None => self.file_name[self.unique_len..]
                .strip_prefix(":2,")
                .unwrap_or_default(),
        }
    }

    /// The file name as it is on disk.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// Path of the file inside `folder`.
    pub fn path(&self, folder: &Folder) -> PathBuf {
        folder.path.join(self.sub.dir()).join(&*self.file_name)
    }
}

/// Sorts and de-duplicates Maildir flag letters, dropping anything that is not a letter.
pub fn normalize_flags(flags: &str) -> String {
    let mut letters: Vec<char> = flags.chars().filter(char::is_ascii_alphabetic).collect();
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

/// One folder of a Maildir tree (a directory with tmp/ new/ cur/).
#[derive(Debug, Clone)]
pub struct Folder {
    path: PathBuf,
}

impl Folder {
    /// A folder at an existing directory, without creating anything (for reading).
    pub fn at(path: PathBuf) -> Folder {
        Folder { path }
    }

    /// The folder's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a new message in tmp/ (mode 0600) under a fresh unique name.
    pub fn create_tmp(&self) -> Result<TmpMessage> {
        let tmp_dir = self.path.join("tmp");
        loop {
            let base = unique_base();
            let path = tmp_dir.join(&base);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TmpMessage {
                        file: Some(BufWriter::with_capacity(64 * 1024, file)),
                        path,
                        base,
                        size: 0,
                        pending_cr: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &path)(e)),
            }
        }
    }

    /// Makes a batch of written tmp/ files durable and visible: one sync of their data, a
    /// rename of each into new/ (no flags) or cur/, one sync of each touched directory. On
    /// return the batch survives a power cut.
    pub fn commit(&self, batch: Vec<(Written, String)>) -> Result<Vec<Entry>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.make_durable(batch.iter().map(|(w, _)| w.path.as_path()))?;
        let mut entries = Vec::with_capacity(batch.len());
        let (mut touched_new, mut touched_cur) = (false, false);
        for (mut durable, flags) in batch {
            let flags = normalize_flags(&flags);
            let unique = durable.unique();
            let (sub, file_name) = if flags.is_empty() {
                touched_new = true;
                (Sub::New, unique)
            } else {
                touched_cur = true;
                (Sub::Cur, format!("{unique}:2,{flags}"))
            };
            let target = self.path.join(sub.dir()).join(&file_name);
            fs::rename(&durable.path, &target).map_err(io_err("rename into", &target))?;
            durable.path = PathBuf::new();
            entries.push(Entry::parse(sub, &file_name));
        }
        if touched_new {
            sync_dir(&self.path.join("new"))?;
        }
        if touched_cur {
            sync_dir(&self.path.join("cur"))?;
        }
        Ok(entries)
    }

    /// Makes the data of written tmp/ files durable. On Linux one syncfs(2) of the file system
    /// does it for the whole batch (one journal commit instead of one per message); elsewhere
    /// each file is synced.
    #[cfg(target_os = "linux")]
    fn make_durable<'a>(&self, _files: impl Iterator<Item = &'a Path>) -> Result<()> {
        use std::os::fd::AsRawFd;
        let tmp = self.path.join("tmp");
        let dir = File::open(&tmp).map_err(io_err("open", &tmp))?;
        // SAFETY: syncfs takes a valid open descriptor, which `dir` holds until after the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io_err("sync the file system of", &tmp)(
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn make_durable<'a>(&self, files: impl Iterator<Item = &'a Path>) -> Result<()> {
        for path in files {
            File::open(path)
                .and_then(|f| f.sync_data())
                .map_err(io_err("sync", path))?;
        }
        Ok(())
    }

    /// All messages in new/ and cur/ (one directory read each; no file is opened).
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for sub in [Sub::New, Sub::Cur] {
            let dir = self.path.join(sub.dir());
            for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
                let entry = entry.map_err(io_err("read directory", &dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                out.push(Entry::parse(sub, name));
            }
        }
        Ok(out)
    }

    /// Finds a message by unique name (a directory scan: use for repair, not per message).
    pub fn find(&self, unique: &str) -> Result<Option<Entry>> {
        Ok(self.list()?.into_iter().find(|e| e.unique() == unique))
    }

    /// `entry` as it is now: itself if its file is still there, else found again by its unique
    /// name (a mail reader renamed it), or None if it is gone.
    pub fn current(&self, entry: &Entry) -> Result<Option<Entry>> {
        if entry.path(self).exists() {
            return Ok(Some(entry.clone()));
        }
        self.find(entry.unique())
    }

    /// Sets the flags of a message: one rename (into cur/). When a mail reader renamed the file
    /// since `entry` was read, the folder is scanned once to find it. Not durable on its own:
    /// call [`Folder::sync`] after a batch of flag changes.
    pub fn set_flags(&self, entry: &Entry, flags: &str) -> Result<Entry> {
        let file_name = format!("{}:2,{}", entry.unique(), normalize_flags(flags));
        let target = self.path.join("cur").join(&file_name);
        let updated = Entry::parse(Sub::Cur, &file_name);
        match fs::rename(entry.path(self), &target) {
            Ok(()) => Ok(updated),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(current) = self.find(entry.unique())? else {
                    return Err(io_err("find message", &entry.path(self))(e));
                };
                fs::rename(current.path(self), &target).map_err(io_err("rename", &target))?;
                Ok(updated)
            }
            Err(e) => Err(io_err("rename", &target)(e)),
        }
    }

    /// Changes the flags of a message as it is now: `letters` gives the new flag letters
    /// from the file's current ones (read again if a mail reader renamed it since `entry`
    /// was listed). Nothing happens if it is gone. Not durable on its own: call
    /// [`Folder::sync`] after a batch.
    pub fn update_flags(&self, entry: &Entry, letters: impl Fn(&str) -> String) -> Result<()> {
        for _ in 0..3 {
            let Some(current) = self.current(entry)? else {
                return Ok(());
            };
            let wanted = normalize_flags(&letters(current.flags()));
            if wanted == current.flags() && current.sub == Sub::Cur {
                return Ok(());
            }
            let file_name = format!("{}:2,{wanted}", entry.unique());
            let target = self.path.join("cur").join(&file_name);
            match fs::rename(current.path(self), &target) {
                Ok(()) => return Ok(()),
                // Renamed again meanwhile: read it once more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("rename", &target)(e)),
            }
        }
        Ok(())
    }

    /// Removes files in tmp/ older than `age` (the Maildir spec's 36 hours) by both their
    /// modification and their change time: leftovers of a delivery that crashed mid-write.
    /// Younger ones may belong to a delivery in progress, this program's or another's.
    pub fn clean_tmp(&self, age: std::time::Duration) -> Result<usize> {
        let dir = self.path.join("tmp");
        let mut removed = 0;
        let Some(limit) = SystemTime::now().checked_sub(age) else {
            return Ok(0);
        };
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            // Old by both times: a delivery in flight (this run's or another writer's) may
            // already have given its file the message's date as its modification time, which
            // changes the inode's change time to now.
            let old = entry.metadata().is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                let changed = UNIX_EPOCH + std::time::Duration::from_secs(m.ctime().max(0) as u64);
                m.modified().is_ok_and(|t| t < limit) && changed < limit
            });
            if old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Syncs new/ and cur/ so that renames and removals done so far are durable.
    pub fn sync(&self) -> Result<()> {
        sync_dir(&self.path.join("new"))?;
        sync_dir(&self.path.join("cur"))
    }

    /// A message's bytes and modification time (its date), following it if a mail reader
    /// renamed it since `entry` was read; None if it is gone.
    pub fn read(&self, entry: &Entry) -> Result<Option<Stored>> {
        let Some(current) = self.current(entry)? else {
            return Ok(None);
        };
        let path = current.path(self);
        let data = match fs::read(&path) {
            Ok(data) => data,
            // Renamed again between the look-up and the read: once more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.find(entry.unique())? {
                Some(again) => fs::read(again.path(self)).map_err(io_err("read", &path))?,
                None => return Ok(None),
            },
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let mtime = fs::metadata(current.path(self))
            .and_then(|m| m.modified())
            .ok();
        Ok(Some(Stored {
            data,
            mtime,
            entry: current,
        }))
    }

    /// The size of a message's file (0 if it cannot be read).
    pub fn file_size(&self, entry: &Entry) -> u64 {
        fs::metadata(entry.path(self)).map_or(0, |m| m.len())
    }

    /// Removes a message, following it once if a mail reader renamed it; returns whether a
    /// file was removed (false: it is gone already). Not durable on its own: call
    /// [`Folder::sync`] after a batch.
    pub fn remove(&self, entry: &Entry) -> Result<bool> {
        match fs::remove_file(entry.path(self)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.find(entry.unique())? {
                Some(current) => {
                    let path = current.path(self);
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    Ok(true)
                }
                None => Ok(false),
            },
            Err(e) => Err(io_err("remove", &entry.path(self))(e)),
        }
    }

    /// Removes the tmp/ file a delivery of this unique name left, if any (a record forgotten
    /// after a crash: its message is fetched again).
    pub fn discard_tmp(&self, unique: &str) {
        // The tmp/ name is the unique name without its ",S=" size suffix.
        let base = unique.split(",S=").next().unwrap_or(unique);
        let _ = fs::remove_file(self.path.join("tmp").join(base));
    }

    /// Whether the folder exists on disk (has a cur/ directory).
    pub fn exists(&self) -> bool {
        self.path.join("cur").is_dir()
    }
}

/// A message as read from a folder.
#[derive(Debug)]
pub struct Stored {
    /// Its bytes (LF line ends, as stored).
    pub data: Vec<u8>,
    /// Its modification time, the message's date.
    pub mtime: Option<SystemTime>,
    /// Its file as found.
    pub entry: Entry,
}

/// A message being written into tmp/. Dropped without [`TmpMessage::finish`], its file is removed.
#[derive(Debug)]
pub struct TmpMessage {
    file: Option<BufWriter<File>>,
    path: PathBuf,
    base: String,
    size: u64,
    pending_cr: bool,
}

/// A message written completely into tmp/, not visible to readers yet, made durable by
/// [`Folder::commit`]. Dropped without being committed, its tmp/ file is removed.
#[derive(Debug)]
pub struct Written {
    path: PathBuf,
    base: String,
    size: u64,
}

impl Written {
    /// Size in bytes on disk.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The unique name the message gets when committed (Dovecot's `,S=size` included).
    pub fn unique(&self) -> String {
        format!("{},S={}", self.base, self.size)
    }
}

impl TmpMessage {
    /// Appends wire bytes, turning CRLF line ends into LF (Maildir files use LF); a CR split
    /// from its LF across two calls is handled.
    pub fn write_crlf(&mut self, chunk: &[u8]) -> Result<()> {
        self.convert_crlf(chunk).map_err(|source| MaildirError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })
    }

    fn convert_crlf(&mut self, mut chunk: &[u8]) -> io::Result<()> {
        if self.pending_cr {
            self.pending_cr = false;
            if chunk.first() != Some(&b'\n') {
                self.write_raw(b"\r")?;
            }
        }
        while let Some(pos) = memchr::memchr(b'\r', chunk) {
            if pos + 1 == chunk.len() {
                self.write_raw(&chunk[..pos])?;
                self.pending_cr = true;
                return Ok(());
            }
            if chunk[pos + 1] == b'\n' {
                self.write_raw(&chunk[..pos])?;
                chunk = &chunk[pos + 1..];
            } else {
                self.write_raw(&chunk[..=pos])?;
                chunk = &chunk[pos + 1..];
            }
        }
        self.write_raw(chunk)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("message already finished"))?;
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and sets the modification time (the message's date); [`Folder::commit`] makes
    /// the data durable.
    pub fn finish(mut self, mtime: Option<SystemTime>) -> Result<Written> {
        if std::mem::take(&mut self.pending_cr) {
            self.write_raw(b"\r").map_err(io_err("write", &self.path))?;
        }
        let writer = self
            .file
            .take()
            .ok_or_else(|| io_err("write", &self.path)(io::Error::other("finished twice")))?;
        let file = writer
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        if let Some(t) = mtime {
            file.set_modified(t)
                .map_err(io_err("set time of", &self.path))?;
        }
        // Made durable by `Folder::commit`, for the whole batch at once.
        Ok(Written {
            path: std::mem::take(&mut self.path),
            base: std::mem::take(&mut self.base),
            size: self.size,
        })
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Write for TmpMessage {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_raw(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for TmpMessage {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // An unfinished delivery: leave no half-written file behind.
            self.file.take();
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A new unique base name per the Maildir spec: `secs.MusecPpidQn.host`.
fn unique_base() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        n,
        hostname()
    )
}

fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let raw = raw.trim();
        let raw = if raw.is_empty() { "localhost" } else { raw };
        // The spec's escapes for '/' and ':', plus ',' which Dovecot reads as a field separator.
        raw.chars()
            .map(|c| match c {
                '/' => "\\057".to_string(),
                ':' => "\\072".to_string(),
                ',' => "\\054".to_string(),
                c if c.is_control() || c.is_whitespace() => "_".to_string(),
                c => c.to_string(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn deliver(folder: &Folder, body: &[u8], flags: &str) -> Entry {
        let mut tmp = folder.create_tmp().unwrap();
        tmp.write_crlf(body).unwrap();
        let durable = tmp.finish(None).unwrap();
        folder
            .commit(vec![(durable, flags.into())])
            .unwrap()
            .remove(0)
    }

    #[test]
    fn delivery_lands_in_new_or_cur_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::new(dir.path().join("m"), Layout::MaildirPlusPlus);
        let inbox = md.open_folder(&[]).unwrap();
        let e = deliver(&inbox, b"Subject: x\r\n\r\nhi\r\n", "");
        assert_eq!(e.sub, Sub::New);
        assert!(e.unique().ends_with(",S=15"), "{}", e.unique());
        assert_eq!(fs::read(e.path(&inbox)).unwrap(), b"Subject: x\n\nhi\n");
        let mode = fs::metadata(e.path(&inbox)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = fs::metadata(md.root().join("cur"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        let e2 = deliver(&inbox, b"x", "SF");
        assert_eq!(e2.sub, Sub::Cur);
        assert!(e2.file_name().ends_with(":2,FS"));
        assert_eq!(fs::read_dir(md.root().join("tmp")).unwrap().count(), 0);
        let mut listed = inbox.list().unwrap();
        listed.sort_by(|a, b| a.file_name().cmp(b.file_name()));
        assert_eq!(listed.len(), 2);
    }

    #[test]
    fn crlf_split_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Maildir::new(dir.path(), Layout::Fs)
            .open_folder(&[])
            .unwrap();
        let input = b"a\r\nb\rc\r\r\nd\r";
        let want = b"a\nb\rc\r\nd\r";
        for split in 0..=input.len() {
            let mut tmp = inbox.create_tmp().unwrap();
            tmp.write_crlf(&input[..split]).unwrap();
            tmp.write_crlf(&input[split..]).unwrap();
            let d = tmp.finish(None).unwrap();
            let e = inbox.commit(vec![(d, String::new())]).unwrap().remove(0);
            assert_eq!(fs::read(e.path(&inbox)).unwrap(), want, "split at {split}");
        }
    }

    #[test]
    fn dropped_tmp_message_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Maildir::new(dir.path(), Layout::Fs)
            .open_folder(&[])
            .unwrap();
        let mut tmp = inbox.create_tmp().unwrap();
        tmp.write_crlf(b"partial").unwrap();
        drop(tmp);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(inbox.list().unwrap().is_empty());
    }

    #[test]
    fn folder_names_in_utf7_are_recognised_and_kept() {
        use crate::config::FolderNames;
        let dir = tempfile::tempdir().unwrap();
        let made =
            Maildir::new(dir.path(), Layout::MaildirPlusPlus).with_folder_names(FolderNames::Utf7);
        let f = made.open_folder(&["Entwürfe", "Alt"]).unwrap();
        assert_eq!(f.path(), dir.path().join(".Entw&APw-rfe.Alt"));
        // Another tool's tree: auto sees the spelling and uses it; utf8 is told otherwise.
        let auto =
            Maildir::new(dir.path(), Layout::MaildirPlusPlus).with_folder_names(FolderNames::Auto);
        assert_eq!(
            auto.list_folders().unwrap(),
            vec![vec!["Entwürfe".to_string(), "Alt".to_string()]]
        );
        assert_eq!(
            auto.folder_path(&["Entwürfe"]).unwrap(),
            dir.path().join(".Entw&APw-rfe")
        );
        let utf8 =
            Maildir::new(dir.path(), Layout::MaildirPlusPlus).with_folder_names(FolderNames::Utf8);
        assert_eq!(
            utf8.folder_path(&["Entwürfe"]).unwrap(),
            dir.path().join(".Entwürfe")
        );
        // A plain "&" (written "&-") does not make a tree UTF-7.
        let other = tempfile::tempdir().unwrap();
        Maildir::new(other.path(), Layout::MaildirPlusPlus)
            .open_folder(&["R&D"])
            .unwrap();
        fs::rename(other.path().join(".R&D"), other.path().join(".R&-D")).unwrap();
        let auto = Maildir::new(other.path(), Layout::MaildirPlusPlus)
            .with_folder_names(FolderNames::Auto);
        assert_eq!(
            auto.folder_path(&["Été"]).unwrap(),
            other.path().join(".Été")
        );
    }

    #[test]
    fn clean_tmp_removes_only_old_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Maildir::new(dir.path(), Layout::Fs)
            .open_folder(&[])
            .unwrap();
        let two_days = SystemTime::now() - std::time::Duration::from_secs(48 * 3600);
        let dated = |name: &str| {
            let path = dir.path().join("tmp").join(name);
            fs::write(&path, "x").unwrap();
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(two_days)
                .unwrap();
            path
        };
        let old = dated("old");
        // Ages measured in a second here, not 36 hours: the change time cannot be set back.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(dir.path().join("tmp/young"), "x").unwrap();
        // Another writer's delivery in flight, already given the message's old date.
        let in_flight = dated("in-flight");
        let removed = inbox.clean_tmp(std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(removed, 1);
        assert!(!old.exists() && dir.path().join("tmp/young").exists());
        assert!(in_flight.exists(), "a delivery in flight was removed");
    }

    #[test]
    fn set_flags_follows_a_reader_rename() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Maildir::new(dir.path(), Layout::Fs)
            .open_folder(&[])
            .unwrap();
        let e = deliver(&inbox, b"x", "");
        let seen = inbox.set_flags(&e, "S").unwrap();
        assert_eq!(seen.flags(), "S");
        // A mail reader moves it again behind our back; our stale entry still works.
        let by_reader = inbox
            .path()
            .join("cur")
            .join(format!("{}:2,RS", e.unique()));
        fs::rename(seen.path(&inbox), &by_reader).unwrap();
        let flagged = inbox.set_flags(&seen, "FS").unwrap();
        assert!(flagged.path(&inbox).exists());
        assert_eq!(inbox.list().unwrap().len(), 1);
    }

    #[test]
    fn folder_names_cannot_escape_the_root() {
        let root = Path::new("/mail");
        for layout in [Layout::MaildirPlusPlus, Layout::Fs] {
            let md = Maildir::new(root, layout);
            for name in [
                &["..", "x"][..],
                &["../x"],
                &["/etc"],
                &["a/../../b"],
                &["a\0b"],
                &[".", ".."],
                &["new"],
                &["x\n\u{1b}[31m"],
            ] {
                let p = md.folder_path(name).unwrap();
                if layout == Layout::MaildirPlusPlus {
                    assert_eq!(p.parent(), Some(root), "{name:?} -> {p:?}");
                }
                assert!(p.starts_with(root), "{name:?} -> {p:?}");
                let rel = p.strip_prefix(root).unwrap();
                for c in rel.components() {
                    let s = c.as_os_str().to_str().unwrap();
                    assert!(
                        matches!(c, std::path::Component::Normal(_)),
                        "{name:?} -> {p:?}"
                    );
                    assert!(
                        !matches!(s, "tmp" | "new" | "cur" | ".." | "."),
                        "{name:?} -> {p:?}"
                    );
                    assert!(!s.chars().any(|ch| ch.is_control()), "{name:?} -> {p:?}");
                }
            }
            assert!(md.folder_path(&["a", ""]).is_err());
            assert!(md.folder_path(&[&"x".repeat(300)]).is_err());
            assert_eq!(md.folder_path(&["INBOX"]).unwrap(), root);
            let separate = md.clone().inbox_as_folder();
            assert_ne!(separate.folder_path(&["INBOX"]).unwrap(), root);
            assert!(separate.folder_path(&["INBOX"]).unwrap().starts_with(root));
        }
        let pp = Maildir::new(root, Layout::MaildirPlusPlus);
        assert_eq!(
            pp.folder_path(&["Work", "2024"]).unwrap(),
            root.join(".Work.2024")
        );
        assert_eq!(pp.folder_path(&["a.b"]).unwrap(), root.join(".a%2Eb"));
        let fs_ = Maildir::new(root, Layout::Fs);
        assert_eq!(
            fs_.folder_path(&["Work", "Één"]).unwrap(),
            root.join("Work/Één")
        );
    }

    #[test]
    fn folder_names_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for layout in [Layout::MaildirPlusPlus, Layout::Fs] {
            let root = dir.path().join(format!("{layout:?}"));
            let md = Maildir::new(&root, layout);
            let names: Vec<Vec<String>> = vec![
                vec!["Archive".into()],
                vec!["Archive".into(), "2024.Q1".into()],
                vec!["Cartório %".into()],
                vec!["new".into()],
                vec![".hidden".into()],
            ];
            md.open_folder(&[]).unwrap();
            for n in &names {
                let refs: Vec<&str> = n.iter().map(String::as_str).collect();
                md.open_folder(&refs).unwrap();
            }
            let mut want = names.clone();
            want.sort();
            assert_eq!(md.list_folders().unwrap(), want, "{layout:?}");
        }
    }

    #[test]
    fn parses_file_names() {
        let e = Entry::parse(Sub::Cur, "123.M1P2Q3.host,S=5:2,SFa");
        assert_eq!(e.unique(), "123.M1P2Q3.host,S=5");
        assert_eq!(e.flags(), "FSa");
        let e = Entry::parse(Sub::New, "123.M1P2Q3.host");
        assert_eq!(e.unique(), "123.M1P2Q3.host");
        assert_eq!(e.flags(), "");
    }

    proptest::proptest! {
        /// Any file name a reader may leave in cur/ parses: its unique part never holds the
        /// flag separator, and its flags are sorted letters.
        #[test]
        fn any_file_name_parses(name in "(?s)[^/\\x00]{1,80}") {
            let e = Entry::parse(Sub::Cur, &name);
            proptest::prop_assert!(!e.unique().contains(":2,"));
            proptest::prop_assert_eq!(normalize_flags(e.flags()), e.flags());
            proptest::prop_assert_eq!(e.file_name(), name.as_str());
            proptest::prop_assert!(name.starts_with(e.unique()));
            proptest::prop_assert!(e.flags().chars().all(|c| c.is_ascii_alphabetic()));
        }
    }
}
