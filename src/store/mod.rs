//! The store seam: what the engines (fetch, sync, migrate) need of a mail store, and nothing of
//! how it is spoken to. A store has mailboxes; an open mailbox has messages named by a number
//! (an IMAP UID, which lasts while UIDVALIDITY does; a POP3 message number or a Maildir
//! listing position, which last one session and come with a lasting key). Only the stores
//! write protocol text.
//!
//! [`imap::ImapStore`], [`pop3::Pop3Store`] and [`maildir::MaildirStore`] (a Maildir tree as a
//! migration source) are the real ones; `mem::MemStore` (tests) holds mailboxes in memory,
//! can hide capabilities, counts every call as a step and fails any call on request.
//! Static dispatch throughout; [`AnyStore`] is the enum for a choice made at run time.

pub mod imap;
pub mod maildir;
#[cfg(test)]
pub mod mem;
pub mod pop3;

use std::fmt;

use crate::exit::{Classify, Exit};
use crate::flags::FlagSet;

/// Where a failure stops: the message, the folder, or the whole account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One message (its number in the open mailbox).
    Message(u32),
    /// One mailbox (its name).
    Folder(String),
    /// Everything the account does.
    Account,
}

/// When trying the same again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// At once, on a new connection (the connection was lost).
    Now,
    /// Later (the server is busy, throttling, unreachable).
    Later,
    /// Not without a change (a refusal, a missing capability, bad data).
    Never,
}

/// A store failure: the underlying error with its scope and retry class. It displays as the
/// error it wraps, and its exit code is that error's.
#[derive(Debug)]
pub struct StoreError {
    /// Where it stops.
    pub scope: Scope,
    /// Whether to try again.
    pub retry: Retry,
    exit: Exit,
    error: anyhow::Error,
}

impl StoreError {
    /// Wraps an error that knows its exit code.
    pub fn new<E>(scope: Scope, retry: Retry, error: E) -> StoreError
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        StoreError {
            scope,
            retry,
            exit: error.exit(),
            error: error.into(),
        }
    }

    /// A local failure (writing what arrived, reading a Maildir) of an account's run.
    pub fn local(error: anyhow::Error) -> StoreError {
        StoreError {
            scope: Scope::Account,
            retry: Retry::Never,
            exit: Exit::LocalIo,
            error,
        }
    }

    /// A failure a sink reported while messages streamed in: its own class where it is one
    /// of the known errors (a local write, a protocol error noticed in what arrived, a crash
    /// test), a bug of mailferry otherwise.
    pub fn from_sink(error: anyhow::Error) -> StoreError {
        let exit = sink_exit(&error);
        StoreError {
            scope: Scope::Account,
            retry: Retry::Never,
            exit,
            error,
        }
    }

    /// The store lacks what the engine needs (worded by the store).
    pub fn missing(what: String) -> StoreError {
        StoreError {
            scope: Scope::Account,
            retry: Retry::Never,
            exit: Exit::Unavailable,
            error: anyhow::Error::msg(format!("the server does not offer {what}")),
        }
    }

    /// Something this kind of store cannot do was asked of it (a bug of the caller).
    pub fn unsupported(what: &str) -> StoreError {
        StoreError {
            scope: Scope::Account,
            retry: Retry::Never,
            exit: Exit::Software,
            error: anyhow::anyhow!("internal: this store does not support {what}"),
        }
    }

    /// The store contradicts itself (what it confirmed is not so).
    pub fn broken(what: String) -> StoreError {
        StoreError {
            scope: Scope::Account,
            retry: Retry::Never,
            exit: Exit::Protocol,
            error: anyhow::Error::msg(what),
        }
    }
}

/// The exit code of a sink's error (see [`StoreError::from_sink`]).
fn sink_exit(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        // Before the I/O errors: a network error wraps one.
        if let Some(e) = cause.downcast_ref::<crate::net::NetError>() {
            return e.exit();
        }
        if cause.is::<crate::maildir::MaildirError>()
            || cause.is::<crate::state::StateError>()
            || cause.is::<std::io::Error>()
        {
            return Exit::LocalIo;
        }
        if let Some(e) = cause.downcast_ref::<crate::imap::ImapError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return e.exit;
        }
    }
    Exit::Software
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl From<crate::failpoint::Crash> for StoreError {
    fn from(crash: crate::failpoint::Crash) -> StoreError {
        StoreError::new(Scope::Account, Retry::Never, crash)
    }
}

impl Classify for StoreError {
    fn exit(&self) -> Exit {
        self.exit
    }
}

/// A store result.
pub type Result<T> = std::result::Result<T, StoreError>;

/// How a store removes messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletes {
    /// Marked first, then expunged exactly (IMAP with UIDPLUS).
    Marked,
    /// Marked, and carried out when the session ends well (POP3: DELE, then QUIT).
    AtClose,
    /// At once (Maildir files).
    AtOnce,
    /// Not exactly: only all marked messages at once, which would take others' too (IMAP
    /// without UIDPLUS). Deleting is refused.
    Never,
}

/// What a store can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// How messages are removed.
    pub deletes: Deletes,
    /// Message numbers last across sessions (IMAP UIDs); without, messages are known by key.
    pub lasting_uids: bool,
}

/// Something a store may lack, for the error that says so in the store's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Removing exactly the named messages.
    ExactDelete,
    /// A lasting identity for every message.
    Identity,
}

/// A mailbox of a store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mailbox {
    /// Its name in UTF-8, hierarchy levels joined by '/' (what patterns, state and messages
    /// use).
    pub name: String,
    /// Its hierarchy levels (the inbox is `["INBOX"]`; a store's root is `[]`).
    pub components: Vec<String>,
    /// The store's top level (a POP3 mailbox, a Maildir's root), which a migration puts where
    /// `--folder` says.
    pub root: bool,
    /// The store's own spelling (IMAP: as the server sends it, in modified UTF-7).
    #[serde(skip)]
    raw: String,
}

impl Mailbox {
    /// A mailbox of a store's own naming.
    pub(crate) fn new(name: String, components: Vec<String>, raw: String, root: bool) -> Mailbox {
        Mailbox {
            name,
            components,
            root,
            raw,
        }
    }
}

/// The mailboxes of a store, and the names it has that cannot be used.
#[derive(Debug, Clone, Default)]
pub struct Mailboxes {
    /// Usable mailboxes, sorted by name.
    pub mailboxes: Vec<Mailbox>,
    /// The mailboxes left out.
    pub skipped: Vec<Skipped>,
}

/// A mailbox a store has that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("folder \"{folder}\" skipped: {why}")]
pub struct Skipped {
    /// Its name as the server sent it (sanitised).
    pub folder: String,
    /// Why.
    pub why: String,
}

/// How a mailbox is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing is changed (IMAP EXAMINE).
    ReadOnly,
    /// Flags may be set, messages added and removed.
    ReadWrite,
}

/// What opening a mailbox tells.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    /// Messages in it.
    pub exists: u32,
    /// The generation its message numbers belong to (IMAP UIDVALIDITY; 0 for stores whose
    /// numbers last one session).
    pub uidvalidity: u32,
    /// The number the next message will get, if told.
    pub uidnext: Option<u32>,
    /// The highest mod-sequence, if the store has them.
    pub highestmodseq: Option<u64>,
    /// Given `since` (the UIDVALIDITY and mod-sequence of a last complete pass) on a store
    /// that can: everything that changed since. None when not asked for or not honoured.
    pub changes: Option<Changes>,
    /// The keywords a message keeps here, where that is limited (IMAP PERMANENTFLAGS without
    /// `\*`); None: any.
    pub keywords: Option<Vec<String>>,
}

/// What changed in a mailbox since a mod-sequence.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Ranges of numbers removed.
    pub vanished: Vec<(u32, u32)>,
    /// Messages whose flags changed, or that are new, with their flags now.
    pub changed: Vec<(u32, FlagSet)>,
}

/// Which messages of the open mailbox.
#[derive(Debug, Clone, Copy)]
pub enum Uids<'a> {
    /// Every message with a number at least this.
    From(u32),
    /// These.
    Set(&'a [u32]),
}

/// What a listing reports of each message besides its number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Items {
    /// Its size.
    pub size: bool,
    /// Its flags.
    pub flags: bool,
    /// Its Message-ID.
    pub message_id: bool,
}

/// One message of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// Its number in the open mailbox.
    pub uid: u32,
    /// Its size (octets, as the store counts them), if asked for.
    pub size: u64,
    /// Its flags, if asked for.
    pub flags: Option<FlagSet>,
    /// Its Message-ID, if asked for and it has one.
    pub message_id: Option<String>,
    /// Its lasting identity on a store whose numbers last one session (POP3: the UIDL or a
    /// header hash; Maildir: the unique name); None where there is none.
    pub key: Option<Box<str>>,
}

/// What is fetched with a message's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Flags, date, size and Message-ID too (to deliver or copy it).
    Whole,
    /// The bytes only (to hash them).
    Plain,
}

/// A fetch that was sent and whose messages are still to be read ([`Store::fetch_receive`]).
#[derive(Debug)]
pub struct Pending {
    uids: Vec<u32>,
    tag: Option<String>,
}

/// A message whose bytes were passed to a [`Sink`], with what came with them.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Its number.
    pub uid: u32,
    /// Its size as the store counts it.
    pub size: Option<u64>,
    /// Its flags.
    pub flags: FlagSet,
    /// Its date (IMAP date-time), if the store keeps one.
    pub date: Option<String>,
    /// Its Message-ID.
    pub message_id: Option<String>,
    /// Its lasting key, as in [`Listed::key`].
    pub key: Option<Box<str>>,
}

/// Receives fetched messages: each as `begin`, its bytes in pieces (line ends as the store
/// keeps them), then `end` with what came with it. A store may pass messages of a later
/// pending fetch early; a sink that cares keeps them for it.
pub trait Sink {
    /// A message begins.
    fn begin(&mut self) -> anyhow::Result<()>;
    /// Some of its bytes.
    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()>;
    /// It is complete.
    fn end(&mut self, fetched: Fetched) -> anyhow::Result<()>;
    /// The store refused to send message `uid` (None: some of those asked for, unnamed), in
    /// its words; returns whether the sink takes that and the fetch goes on with the others.
    /// By default it does not: the fetch fails with the refusal.
    fn refused(&mut self, _uid: Option<u32>, _why: &str) -> bool {
        false
    }
}

/// A message to add to a mailbox.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Its bytes, CRLF line ends.
    pub data: &'a [u8],
    /// Its flags.
    pub flags: &'a FlagSet,
    /// Its date (IMAP date-time), if known.
    pub date: Option<&'a str>,
}

/// A flag change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the flags.
    Add,
    /// Remove the flags.
    Remove,
}

/// What to search for in the open mailbox.
#[derive(Debug, Clone, Copy)]
pub enum Search<'a> {
    /// Which of these numbers are still there.
    Present(&'a [u32]),
    /// Messages with this Message-ID.
    MessageId(&'a str),
}

/// A mail store, connected and logged in.
// One thread runs every future (a current-thread runtime), so they need not be Send.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// What it can do.
    fn caps(&self) -> Caps;

    /// How the connection is secured, for `-v` ("TLS, certificate …", "no TLS", "local").
    fn security(&self) -> String;

    /// The error saying that the store lacks `need`, which `purpose` ("delete mode needs to
    /// remove only what it fetched") needs, in the store's own words.
    fn missing(&self, need: Need, purpose: &str) -> StoreError {
        let what = match need {
            Need::ExactDelete => "exact removal",
            Need::Identity => "lasting message names",
        };
        StoreError::missing(format!("{what}, which {purpose}"))
    }

    /// Its mailboxes.
    async fn mailboxes(&mut self) -> Result<Mailboxes>;

    /// The mailbox named by these levels on this store (whether it exists or not).
    async fn mailbox(&mut self, components: &[String]) -> Result<Mailbox>;

    /// Each mailbox's (UIDVALIDITY, UIDNEXT) without opening it, in one round trip where the
    /// store can; None where it does not tell (then the mailbox is opened to find out).
    async fn status_of(&mut self, mailboxes: &[Mailbox]) -> Result<Vec<Option<(u32, u32)>>> {
        Ok(vec![None; mailboxes.len()])
    }

    /// Creates a mailbox (a store that is only ever read from cannot).
    async fn create(&mut self, _mailbox: &Mailbox) -> Result<()> {
        Err(StoreError::unsupported("creating folders"))
    }

    /// Opens a mailbox; the calls below act on it until another is opened.
    async fn select(
        &mut self,
        mailbox: &Mailbox,
        access: Access,
        since: Option<(u32, u64)>,
    ) -> Result<Selected>;

    /// Lists messages of the open mailbox, each passed to `each` as it arrives (a listing of
    /// a large mailbox is never held whole here).
    async fn list(
        &mut self,
        uids: Uids<'_>,
        items: Items,
        each: &mut dyn FnMut(Listed),
    ) -> Result<()>;

    /// Numbers of messages of the open mailbox that match.
    async fn search(&mut self, search: Search<'_>) -> Result<Vec<u32>>;

    /// Asks for messages; their bytes are read by [`Store::fetch_receive`]. Several fetches
    /// may be pending, received in the order sent. (Stores that send nothing ahead only note
    /// what to read.)
    async fn fetch_send(&mut self, uids: &[u32], _bodies: Bodies) -> Result<Pending> {
        Ok(Pending {
            uids: uids.to_vec(),
            tag: None,
        })
    }

    /// Reads a pending fetch's messages into `sink`. Numbers that no longer exist are left
    /// out.
    async fn fetch_receive(&mut self, pending: Pending, sink: &mut dyn Sink) -> Result<()>;

    /// Fetches messages into `sink` (send and receive).
    async fn fetch(&mut self, uids: &[u32], bodies: Bodies, sink: &mut dyn Sink) -> Result<()> {
        let pending = self.fetch_send(uids, bodies).await?;
        self.fetch_receive(pending, sink).await
    }

    /// Adds messages to a mailbox (the open one, on stores that want that); returns for each
    /// the (UIDVALIDITY, UID) it got, where the store tells.
    async fn append(
        &mut self,
        _mailbox: &Mailbox,
        _messages: &[Outgoing<'_>],
    ) -> Result<Vec<Option<(u32, u32)>>> {
        Err(StoreError::unsupported("adding messages"))
    }

    /// Adds or removes flags of messages of the open mailbox.
    async fn set_flags(&mut self, _uids: &[u32], _change: Change, _flags: &FlagSet) -> Result<()> {
        Err(StoreError::unsupported("setting flags"))
    }

    /// Marks messages of the open mailbox for removal (see [`Caps::deletes`]).
    async fn mark_deleted(&mut self, uids: &[u32]) -> Result<()>;

    /// Removes exactly these marked messages (nothing for stores that remove at once or at
    /// close).
    async fn expunge(&mut self, uids: &[u32]) -> Result<()>;

    /// Brings this session's view up to date with what other sessions did.
    async fn refresh(&mut self) -> Result<()> {
        Ok(())
    }

    /// Ends the session; on stores that delete at close, its success confirms the deletions.
    async fn close(self) -> Result<()>;
}

/// Opens connections to one store, as many as the engine asks for.
#[allow(async_fn_in_trait)]
pub trait Connect {
    /// The store it opens.
    type Store: Store;

    /// A new connection, logged in.
    async fn connect(&self) -> Result<Self::Store>;
}

/// A store chosen at run time (a migration's source).
pub enum AnyStore {
    /// An IMAP account.
    Imap(Box<imap::ImapStore>),
    /// A POP3 mailbox.
    Pop3(Box<pop3::Pop3Store>),
    /// A Maildir tree.
    Maildir(Box<maildir::MaildirStore>),
}

/// Runs the same expression on whichever store it is.
macro_rules! each_store {
    ($store:expr, $s:ident => $e:expr) => {
        match $store {
            AnyStore::Imap($s) => $e,
            AnyStore::Pop3($s) => $e,
            AnyStore::Maildir($s) => $e,
        }
    };
}

impl Store for AnyStore {
    fn caps(&self) -> Caps {
        each_store!(self, s => s.caps())
    }

    fn security(&self) -> String {
        each_store!(self, s => s.security())
    }

    fn missing(&self, need: Need, purpose: &str) -> StoreError {
        each_store!(self, s => s.missing(need, purpose))
    }

    async fn mailboxes(&mut self) -> Result<Mailboxes> {
        each_store!(self, s => s.mailboxes().await)
    }

    async fn mailbox(&mut self, components: &[String]) -> Result<Mailbox> {
        each_store!(self, s => s.mailbox(components).await)
    }

    async fn create(&mut self, mailbox: &Mailbox) -> Result<()> {
        each_store!(self, s => s.create(mailbox).await)
    }

    async fn select(
        &mut self,
        mailbox: &Mailbox,
        access: Access,
        since: Option<(u32, u64)>,
    ) -> Result<Selected> {
        each_store!(self, s => s.select(mailbox, access, since).await)
    }

    async fn list(
        &mut self,
        uids: Uids<'_>,
        items: Items,
        each: &mut dyn FnMut(Listed),
    ) -> Result<()> {
        each_store!(self, s => s.list(uids, items, each).await)
    }

    async fn search(&mut self, search: Search<'_>) -> Result<Vec<u32>> {
        each_store!(self, s => s.search(search).await)
    }

    async fn fetch_send(&mut self, uids: &[u32], bodies: Bodies) -> Result<Pending> {
        each_store!(self, s => s.fetch_send(uids, bodies).await)
    }

    async fn fetch_receive(&mut self, pending: Pending, sink: &mut dyn Sink) -> Result<()> {
        each_store!(self, s => s.fetch_receive(pending, sink).await)
    }

    async fn append(
        &mut self,
        mailbox: &Mailbox,
        messages: &[Outgoing<'_>],
    ) -> Result<Vec<Option<(u32, u32)>>> {
        each_store!(self, s => s.append(mailbox, messages).await)
    }

    async fn set_flags(&mut self, uids: &[u32], change: Change, flags: &FlagSet) -> Result<()> {
        each_store!(self, s => s.set_flags(uids, change, flags).await)
    }

    async fn mark_deleted(&mut self, uids: &[u32]) -> Result<()> {
        each_store!(self, s => s.mark_deleted(uids).await)
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        each_store!(self, s => s.expunge(uids).await)
    }

    async fn refresh(&mut self) -> Result<()> {
        each_store!(self, s => s.refresh().await)
    }

    async fn close(self) -> Result<()> {
        each_store!(self, s => s.close().await)
    }
}

/// Whether a mailbox name matches an account's patterns (`*` matches anything; a pattern
/// starting with `!` excludes; the last matching pattern wins).
pub fn selected_by(name: &str, patterns: &[String]) -> bool {
    let mut selected = false;
    for p in patterns {
        let (negate, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        if glob(p, name) {
            selected = !negate;
        }
    }
    selected
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => {
            pattern == name
                || (pattern.eq_ignore_ascii_case("INBOX") && name.eq_ignore_ascii_case("INBOX"))
        }
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_error_keeps_its_class() {
        let protocol = crate::imap::ImapError::Protocol("a FETCH body without its UID".into());
        assert_eq!(
            StoreError::from_sink(protocol.into()).exit(),
            Exit::Protocol
        );
        let io = std::io::Error::other("disk full");
        let local = anyhow::Error::new(io).context("writing tmp/");
        assert_eq!(StoreError::from_sink(local).exit(), Exit::LocalIo);
        let bug = anyhow::anyhow!("message data before its start");
        assert_eq!(StoreError::from_sink(bug).exit(), Exit::Software);
        // A link lost in the middle of a body is the network's, though an I/O error is in it.
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no close_notify");
        let lost = anyhow::Error::new(crate::net::NetError::Io(eof)).context("message 3");
        assert_eq!(StoreError::from_sink(lost).exit(), Exit::TempFail);
    }

    #[test]
    fn folder_patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(selected_by("INBOX", &p(&["*"])));
        assert!(!selected_by("Spam", &p(&["*", "!Spam"])));
        assert!(selected_by("Work/2024", &p(&["Work/*"])));
        assert!(!selected_by("Private", &p(&["Work/*"])));
        assert!(selected_by("inbox", &p(&["INBOX"])));
        assert!(selected_by("Été/x", &p(&["*x"])));
        assert!(!selected_by("Archive/Old", &p(&["*", "!Archive/*"])));
    }
}
