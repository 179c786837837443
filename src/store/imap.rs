//! An IMAP account as a [`Store`]: the commands the engines' calls stand for (LIST, SELECT or
//! EXAMINE with CONDSTORE/QRESYNC, UID FETCH, UID SEARCH, APPEND with LITERAL+, UID STORE,
//! UID EXPUNGE), over [`crate::imap::Client`].

use crate::config::Account;
use crate::credentials::Credentials;
use crate::flags::FlagSet;
use crate::imap::{self, Code, FetchSink, ImapError, Response, Session, Status, codec};
use crate::net::NetError;

use super::{
    Access, Bodies, Caps, Change, Changes, Connect, Deletes, Fetched, Items, Listed, Mailbox,
    Mailboxes, Need, Outgoing, Pending, Result, Retry, Scope, Search, Selected, Sink, Skipped,
    Store, StoreError, Uids,
};

/// What is fetched with each body to deliver or copy it (ENVELOPE and BODYSTRUCTURE never).
const WHOLE: &str =
    "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[])";
/// What is fetched to hash a body.
const PLAIN: &str = "(UID BODY.PEEK[])";

/// An IMAP session as a store.
pub struct ImapStore {
    session: Session,
    /// The hierarchy delimiter, once asked for.
    delimiter: Option<char>,
    /// The personal namespace's prefix, as the account sets it or, once asked, NAMESPACE
    /// says (None: not asked yet).
    namespace: Option<String>,
    /// The personal namespace's prefix as hierarchy levels (`INBOX.` on Cyrus and Courier:
    /// `["INBOX"]`), once known: left out of the names folders get here, put back on the way
    /// to the server.
    personal: Option<Vec<String>>,
    /// The open mailbox: its name, and whether it is known to be empty (it was when opened,
    /// and nothing was added since), so that listing it needs no command.
    open: Option<(String, bool)>,
}

/// Opens IMAP sessions of one account.
pub struct ImapConnect<'a> {
    account: &'a Account,
    login: Credentials<'a>,
}

impl<'a> ImapConnect<'a> {
    /// Reads the account's password source once (tokens are asked for per connection).
    pub async fn new(account: &'a Account) -> anyhow::Result<ImapConnect<'a>> {
        Ok(ImapConnect {
            account,
            login: Credentials::new(account).await?,
        })
    }
}

impl Connect for ImapConnect<'_> {
    type Store = ImapStore;

    async fn connect(&self) -> Result<ImapStore> {
        let secret = self
            .login
            .secret()
            .await
            .map_err(|e| StoreError::new(Scope::Account, Retry::Never, e))?;
        let session = imap::open(self.account, &secret)
            .await
            .map_err(account_error)?;
        Ok(ImapStore::new(session, self.account.namespace.clone()))
    }
}

/// Whether trying again may help after this error.
fn retry_of(e: &ImapError) -> Retry {
    use crate::exit::{Classify, Exit};
    match e {
        ImapError::Net(NetError::Closed { .. } | NetError::Io(_)) | ImapError::Bye(_) => Retry::Now,
        e if e.exit() == Exit::TempFail => Retry::Later,
        _ => Retry::Never,
    }
}

fn account_error(e: ImapError) -> StoreError {
    StoreError::new(Scope::Account, retry_of(&e), e)
}

impl ImapStore {
    /// A logged-in session as a store; `namespace` overrides the personal namespace prefix
    /// the server tells.
    pub fn new(session: Session, namespace: Option<String>) -> ImapStore {
        ImapStore {
            session,
            delimiter: None,
            namespace,
            personal: None,
            open: None,
        }
    }

    /// The personal namespace prefix, as the server sent it or the account set it, and its
    /// delimiter (`check` shows them).
    pub async fn namespace(&mut self) -> Result<(String, char)> {
        let delimiter = self.delimiter().await?;
        if self.namespace.is_none() {
            let untagged = match self.session.client.has("NAMESPACE") {
                true => self.run("NAMESPACE").await?,
                false => Vec::new(),
            };
            self.namespace = Some(prefix_of(untagged));
        }
        Ok((self.namespace.clone().unwrap_or_default(), delimiter))
    }

    /// The personal namespace prefix as levels, asked for once.
    async fn personal(&mut self) -> Result<Vec<String>> {
        if let Some(levels) = &self.personal {
            return Ok(levels.clone());
        }
        let (prefix, delimiter) = self.namespace().await?;
        let prefix = prefix.strip_suffix(delimiter).unwrap_or(&prefix);
        let levels: Vec<String> = match prefix {
            "" => Vec::new(),
            p => p
                .split(delimiter)
                .map(|l| level_name(l.as_bytes()))
                .collect(),
        };
        self.personal = Some(levels.clone());
        Ok(levels)
    }

    /// The server certificate's fingerprint, when TLS is used.
    pub fn fingerprint(&self) -> Option<crate::net::Fingerprint> {
        self.session.fingerprint
    }

    /// The capabilities that matter to mailferry, of those the server announced (for
    /// `check`).
    pub fn notable_capabilities(&self) -> Vec<String> {
        [
            "IMAP4REV1",
            "IMAP4REV2",
            "UIDPLUS",
            "CONDSTORE",
            "QRESYNC",
            "LITERAL+",
            "MOVE",
            "IDLE",
            "COMPRESS=DEFLATE",
        ]
        .into_iter()
        .filter(|c| self.session.client.has(c))
        .map(str::to_string)
        .collect()
    }

    /// An error of the open mailbox when the server refused (the other folders may go on),
    /// else of the account.
    fn err(&self, e: ImapError) -> StoreError {
        let scope = match (&e, &self.open) {
            (ImapError::Refused { .. }, Some((name, _))) => Scope::Folder(name.clone()),
            _ => Scope::Account,
        };
        if let ImapError::Local(local) = e {
            return StoreError::from_sink(local);
        }
        StoreError::new(scope, retry_of(&e), e)
    }

    async fn run(&mut self, command: &str) -> Result<Vec<Response>> {
        match self.session.client.run(command).await {
            Ok((untagged, _)) => Ok(untagged),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn delimiter(&mut self) -> Result<char> {
        if let Some(d) = self.delimiter {
            return Ok(d);
        }
        let d = delimiter_of(self.run("LIST \"\" \"\"").await?);
        self.delimiter = Some(d);
        Ok(d)
    }

    /// Messages and unseen messages of a mailbox (STATUS), without opening it.
    pub async fn counts(&mut self, mailbox: &Mailbox) -> Result<(u64, u64)> {
        let untagged = self
            .run(&format!("STATUS {} (MESSAGES UNSEEN)", quoted(mailbox)))
            .await?;
        let items = untagged
            .into_iter()
            .find_map(|r| match r {
                Response::MailboxStatus { items, .. } => Some(items),
                _ => None,
            })
            .unwrap_or_default();
        let item = |key: &str| items.iter().find(|(k, _)| k == key).map_or(0, |&(_, v)| v);
        Ok((item("MESSAGES"), item("UNSEEN")))
    }

    async fn fetch_items(
        &mut self,
        command: &str,
        each: &mut dyn FnMut(codec::Fetch),
    ) -> Result<()> {
        match self.session.client.fetch_each(command, each).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// The hierarchy delimiter a `LIST "" ""` reply tells ('/' where it tells none).
fn delimiter_of(untagged: Vec<Response>) -> char {
    untagged
        .into_iter()
        .find_map(|r| match r {
            Response::List(l) => l.delimiter,
            _ => None,
        })
        .unwrap_or('/')
}

/// The personal namespace prefix a NAMESPACE reply tells ("" where it tells none).
fn prefix_of(untagged: Vec<Response>) -> String {
    untagged
        .into_iter()
        .find_map(|r| match r {
            Response::Namespace(Some((prefix, _))) => {
                Some(String::from_utf8_lossy(&prefix).into_owned())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// A mailbox name quoted for a command.
fn quoted(mailbox: &Mailbox) -> String {
    codec::quote(&mailbox.raw).unwrap_or_else(|| "\"\"".to_string())
}

/// The mailboxes of a LIST reply, named without the personal namespace prefix (`personal`,
/// as levels); names that cannot be used are said as skipped.
fn mailboxes_of(untagged: Vec<Response>, personal: &[String]) -> Mailboxes {
    let mut out = Mailboxes::default();
    for r in untagged {
        let Response::List(entry) = r else { continue };
        if entry.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        }) {
            continue;
        }
        let shown = crate::text::sanitize_bytes(&entry.name, 100);
        let levels: Vec<&[u8]> = match entry.delimiter {
            Some(d) if d.is_ascii() => entry.name.split(|&b| b == d as u8).collect(),
            _ => vec![&entry.name[..]],
        };
        let components: Vec<String> = levels.into_iter().map(level_name).collect();
        if components.iter().any(|c| c.is_empty()) {
            out.skipped.push(Skipped {
                folder: shown,
                why: "it has an empty hierarchy level".into(),
            });
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.name).into_owned();
        let components = if components.len() == 1 && components[0].eq_ignore_ascii_case("INBOX") {
            vec!["INBOX".to_string()]
        } else if components.len() > personal.len() && components.starts_with(personal) {
            components[personal.len()..].to_vec()
        } else {
            components
        };
        out.mailboxes
            .push(Mailbox::new(components.join("/"), components, raw, false));
    }
    out.mailboxes.sort_by(|a, b| a.name.cmp(&b.name));
    out.mailboxes.dedup_by(|later, kept| {
        let same = later.name == kept.name;
        if same {
            out.skipped.push(Skipped {
                folder: crate::text::sanitize(&later.raw, 100),
                why: format!(
                    "its name reads as that of folder \"{}\"",
                    crate::text::sanitize(&kept.raw, 100)
                ),
            });
        }
        same
    });
    out
}

/// A hierarchy level's name: decoded from modified UTF-7, or, where it is not valid modified
/// UTF-7 (a client that wrote the name raw), its text as the server sent it, so that its
/// mail is archived all the same (the raw name still goes back to the server).
fn level_name(level: &[u8]) -> String {
    codec::utf7_decode(level).unwrap_or_else(|| String::from_utf8_lossy(level).into_owned())
}

/// What SELECT or EXAMINE reported.
fn selected_of(
    untagged: Vec<Response>,
    completion: Option<Code>,
    resynced: bool,
) -> std::result::Result<Selected, ImapError> {
    let mut selected = Selected::default();
    let mut changes = Changes::default();
    let mut validity = None;
    let mut codes: Vec<Code> = Vec::new();
    for r in untagged {
        match r {
            Response::Status(s) => codes.extend(s.code),
            Response::Exists(n) => selected.exists = n,
            Response::Vanished { uids, .. } => changes.vanished.extend(uids),
            Response::Fetch(f) => {
                if let Some(uid) = f.uid {
                    let flags = FlagSet::from_imap(f.flags.as_deref().unwrap_or_default());
                    changes.changed.push((uid, flags));
                }
            }
            _ => {}
        }
    }
    codes.extend(completion);
    for code in codes {
        match code {
            Code::UidValidity(v) => validity = Some(v),
            Code::UidNext(n) => selected.uidnext = Some(n),
            Code::HighestModseq(m) => selected.highestmodseq = Some(m),
            Code::NoModseq => selected.highestmodseq = None,
            Code::PermanentFlags(flags) if !flags.iter().any(|f| f == "\\*") => {
                selected.keywords =
                    Some(flags.into_iter().filter(|f| !f.starts_with('\\')).collect());
            }
            _ => {}
        }
    }
    selected.uidvalidity =
        validity.ok_or(ImapError::Missing("UIDVALIDITY for a selected folder"))?;
    selected.changes = resynced.then_some(changes);
    Ok(selected)
}

impl Store for ImapStore {
    fn caps(&self) -> Caps {
        let uidplus = self.session.client.has("UIDPLUS");
        Caps {
            deletes: if uidplus {
                Deletes::Marked
            } else {
                Deletes::Never
            },
            lasting_uids: true,
        }
    }

    fn security(&self) -> String {
        match self.session.fingerprint {
            Some(f) => format!("TLS, certificate {f}"),
            None => "no TLS".to_string(),
        }
    }

    fn missing(&self, need: Need, purpose: &str) -> StoreError {
        StoreError::missing(match need {
            Need::ExactDelete => format!("UIDPLUS (UID EXPUNGE), which {purpose}"),
            Need::Identity => format!("UIDs, which {purpose}"),
        })
    }

    async fn mailboxes(&mut self) -> Result<Mailboxes> {
        // What naming needs is asked for with the listing, in one round trip.
        let ask_delimiter = self.delimiter.is_none();
        let ask_namespace = self.namespace.is_none() && self.session.client.has("NAMESPACE");
        let mut commands = vec!["LIST \"\" \"*\""];
        if ask_delimiter {
            commands.push("LIST \"\" \"\"");
        }
        if ask_namespace {
            commands.push("NAMESPACE");
        }
        let mut replies = match self.session.client.run_all(&commands).await {
            Ok(replies) => replies.into_iter(),
            Err(e) => return Err(self.err(e)),
        };
        let listing = match replies.next() {
            Some(Ok(listing)) => listing,
            Some(Err(e)) => return Err(self.err(e)),
            None => Vec::new(),
        };
        // A refused LIST "" "" or NAMESPACE tells nothing: the defaults hold.
        let mut next = || replies.next().and_then(|r| r.ok()).unwrap_or_default();
        if ask_delimiter {
            self.delimiter = Some(delimiter_of(next()));
        }
        if ask_namespace {
            self.namespace = Some(prefix_of(next()));
        }
        let personal = self.personal().await?;
        Ok(mailboxes_of(listing, &personal))
    }

    async fn mailbox(&mut self, components: &[String]) -> Result<Mailbox> {
        let delimiter = self.delimiter().await?.to_string();
        let personal = self.personal().await?;
        // A folder goes under the personal prefix, unless it is INBOX or already there.
        let inbox = matches!(components, [only] if only.eq_ignore_ascii_case("INBOX"));
        let prefixed = personal.is_empty() || inbox || components.starts_with(&personal);
        let levels = match prefixed {
            true => components.to_vec(),
            false => [&personal[..], components].concat(),
        };
        let raw = levels
            .iter()
            .map(|c| codec::utf7_encode(c))
            .collect::<Vec<_>>()
            .join(&delimiter);
        Ok(Mailbox::new(
            components.join("/"),
            components.to_vec(),
            raw,
            false,
        ))
    }

    async fn status_of(&mut self, mailboxes: &[Mailbox]) -> Result<Vec<Option<(u32, u32)>>> {
        if mailboxes.is_empty() {
            return Ok(Vec::new());
        }
        let commands: Vec<String> = mailboxes
            .iter()
            .map(|m| format!("STATUS {} (UIDVALIDITY UIDNEXT)", quoted(m)))
            .collect();
        let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
        let replies = match self.session.client.run_all(&commands).await {
            Ok(replies) => replies,
            Err(e) => return Err(self.err(e)),
        };
        // A folder the server refused STATUS for is not known to be unchanged.
        Ok(replies
            .into_iter()
            .map(|reply| {
                let items = reply.ok()?.into_iter().find_map(|r| match r {
                    Response::MailboxStatus { items, .. } => Some(items),
                    _ => None,
                })?;
                let item = |key: &str| {
                    let v = items.iter().find(|(k, _)| k == key)?.1;
                    u32::try_from(v).ok()
                };
                Some((item("UIDVALIDITY")?, item("UIDNEXT")?))
            })
            .collect())
    }

    async fn create(&mut self, mailbox: &Mailbox) -> Result<()> {
        let command = format!("CREATE {}", quoted(mailbox));
        match self.session.client.run(&command).await {
            Ok(_) => Ok(()),
            // A refused name is that folder's failure, whatever folder is open.
            Err(e @ ImapError::Refused { .. }) => {
                let scope = Scope::Folder(mailbox.name.clone());
                Err(StoreError::new(scope, retry_of(&e), e))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn select(
        &mut self,
        mailbox: &Mailbox,
        access: Access,
        since: Option<(u32, u64)>,
    ) -> Result<Selected> {
        let verb = match access {
            Access::ReadOnly => "EXAMINE",
            Access::ReadWrite => "SELECT",
        };
        let params = match (self.session.qresync, since) {
            (true, Some((v, m))) => format!(" (QRESYNC ({v} {m}))"),
            _ if self.session.condstore => " (CONDSTORE)".to_string(),
            _ => String::new(),
        };
        // A folder before this one may have stopped at a refusal with commands in flight.
        if let Err(e) = self.session.client.settle().await {
            return Err(self.err(e));
        }
        self.open = Some((mailbox.name.clone(), false));
        let command = format!("{verb} {}{params}", quoted(mailbox));
        let (untagged, status) = match self.session.client.run(&command).await {
            Ok(r) => r,
            Err(e) => return Err(self.err(e)),
        };
        // A server ignores QRESYNC parameters whose UIDVALIDITY no longer holds: checked below.
        let asked = self.session.qresync && since.is_some();
        let mut selected = selected_of(untagged, status.code, asked).map_err(|e| self.err(e))?;
        if since.is_some_and(|(v, _)| v != selected.uidvalidity) {
            selected.changes = None;
        }
        self.open = Some((mailbox.name.clone(), selected.exists == 0));
        Ok(selected)
    }

    async fn list(
        &mut self,
        uids: Uids<'_>,
        items: Items,
        each: &mut dyn FnMut(Listed),
    ) -> Result<()> {
        if self.open.as_ref().is_some_and(|&(_, empty)| empty) {
            return Ok(());
        }
        let (set, from) = match uids {
            Uids::From(n) => (format!("{n}:*"), n),
            Uids::Set([]) => return Ok(()),
            Uids::Set(uids) => (codec::format_set(uids), 0),
        };
        let mut wanted = vec!["UID"];
        if items.size {
            wanted.push("RFC822.SIZE");
        }
        if items.flags {
            wanted.push("FLAGS");
        }
        if items.message_id {
            wanted.push("BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]");
        }
        let command = format!("UID FETCH {set} ({})", wanted.join(" "));
        self.fetch_items(&command, &mut |f| {
            // `n:*` also names the last message when every UID is below n.
            let Some(uid) = f.uid.filter(|&u| u >= from) else {
                return;
            };
            each(Listed {
                uid,
                size: f.size.unwrap_or(0),
                flags: items
                    .flags
                    .then(|| FlagSet::from_imap(f.flags.as_deref().unwrap_or_default())),
                message_id: f.header.as_deref().and_then(crate::message::message_id),
                key: None,
            })
        })
        .await
    }

    async fn search(&mut self, search: Search<'_>) -> Result<Vec<u32>> {
        let criteria = match search {
            Search::Present([]) => return Ok(Vec::new()),
            Search::Present(uids) => format!("UID {}", codec::format_set(uids)),
            Search::MessageId(id) => match codec::quote(id) {
                Some(quoted) => format!("HEADER Message-ID {quoted}"),
                None => return Ok(Vec::new()),
            },
        };
        let untagged = self.run(&format!("UID SEARCH {criteria}")).await?;
        Ok(untagged
            .into_iter()
            .flat_map(|r| match r {
                Response::Search(uids) => uids,
                _ => Vec::new(),
            })
            .collect())
    }

    async fn fetch_send(&mut self, uids: &[u32], bodies: Bodies) -> Result<Pending> {
        let items = match bodies {
            Bodies::Whole => WHOLE,
            Bodies::Plain => PLAIN,
        };
        let command = format!("UID FETCH {} {items}", codec::format_set(uids));
        let tag = match self.session.client.send(&command).await {
            Ok(tag) => tag,
            Err(e) => return Err(self.err(e)),
        };
        Ok(Pending {
            uids: uids.to_vec(),
            tag: Some(tag),
        })
    }

    async fn fetch_receive(&mut self, pending: Pending, sink: &mut dyn Sink) -> Result<()> {
        let Some(tag) = pending.tag else {
            return Ok(());
        };
        let mut bodies = BodySink { sink };
        let done = self
            .session
            .client
            .complete(&tag, "UID FETCH", &mut bodies, &mut |_| {})
            .await;
        match done {
            // A plain NO: the server would not send some of them (Gmail, Exchange do for
            // messages they cannot read); those that came are good.
            Err(
                e @ ImapError::Refused {
                    status: Status::No, ..
                },
            ) if bodies.sink.refused(None, &e.to_string()) => Ok(()),
            done => done.map(|_| ()).map_err(|e| self.err(e)),
        }
    }

    async fn append(
        &mut self,
        mailbox: &Mailbox,
        messages: &[Outgoing<'_>],
    ) -> Result<Vec<Option<(u32, u32)>>> {
        // With LITERAL+ a whole batch is sent before the first completion is read (the server
        // answers APPENDs in order); without it, one at a time.
        let window = if self.session.client.has("LITERAL+") {
            messages.len().max(1)
        } else {
            1
        };
        let name = quoted(mailbox);
        if let Some((_, empty)) = &mut self.open {
            *empty = false;
        }
        let mut out = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(window) {
            let mut tags = Vec::with_capacity(chunk.len());
            for m in chunk {
                let sent = self
                    .session
                    .client
                    .append_send(&name, &m.flags.to_imap(), m.date, m.data)
                    .await;
                tags.push(sent.map_err(|e| self.err(e))?);
            }
            for tag in tags {
                let done = self.session.client.append_done(&tag).await;
                out.push(done.map_err(|e| self.err(e))?);
                crate::failpoint::hit("upload-after-append")?;
            }
        }
        Ok(out)
    }

    async fn set_flags(&mut self, uids: &[u32], change: Change, flags: &FlagSet) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let sign = match change {
            Change::Add => '+',
            Change::Remove => '-',
        };
        self.run(&format!(
            "UID STORE {} {sign}FLAGS.SILENT ({})",
            codec::format_set(uids),
            flags.to_imap()
        ))
        .await?;
        Ok(())
    }

    async fn mark_deleted(&mut self, uids: &[u32]) -> Result<()> {
        // Marked messages could only be removed with all others marked \Deleted.
        if !self.session.client.has("UIDPLUS") {
            return Err(self.missing(
                Need::ExactDelete,
                "mailferry needs to remove only the messages it chose",
            ));
        }
        let deleted = FlagSet::parse("T");
        self.set_flags(uids, Change::Add, &deleted).await
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        if !self.session.client.has("UIDPLUS") {
            // Plain EXPUNGE would also remove what other clients marked \Deleted.
            return Err(self.missing(
                Need::ExactDelete,
                "mailferry needs to remove only the messages it chose",
            ));
        }
        if uids.is_empty() {
            return Ok(());
        }
        self.run(&format!("UID EXPUNGE {}", codec::format_set(uids)))
            .await?;
        Ok(())
    }

    async fn refresh(&mut self) -> Result<()> {
        self.run("NOOP").await?;
        // Others may have added messages.
        if let Some((_, empty)) = &mut self.open {
            *empty = false;
        }
        Ok(())
    }

    async fn close(self) -> Result<()> {
        self.session.client.logout().await.map_err(account_error)
    }
}

/// Passes `BODY[]` literals and their FETCH data on to a store [`Sink`].
struct BodySink<'a> {
    sink: &'a mut dyn Sink,
}

impl FetchSink for BodySink<'_> {
    fn begin(&mut self, _len: usize) -> anyhow::Result<()> {
        self.sink.begin()
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.sink.data(chunk)
    }

    fn fetched(&mut self, fetch: &codec::Fetch) -> anyhow::Result<()> {
        if !fetch.body {
            return Ok(());
        }
        let uid = fetch
            .uid
            .ok_or_else(|| ImapError::Protocol("a FETCH body without its UID".into()))?;
        self.sink.end(Fetched {
            uid,
            size: fetch.size,
            flags: FlagSet::from_imap(fetch.flags.as_deref().unwrap_or_default()),
            date: fetch.internaldate.clone(),
            message_id: fetch.header.as_deref().and_then(crate::message::message_id),
            key: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::codec::ListEntry;

    fn listing(names: &[&str]) -> Mailboxes {
        listing_in(names, '/', &[])
    }

    fn listing_in(names: &[&str], delimiter: char, personal: &[String]) -> Mailboxes {
        let entries = names.iter().map(|n| {
            Response::List(ListEntry {
                attributes: Vec::new(),
                delimiter: Some(delimiter),
                name: n.as_bytes().to_vec(),
            })
        });
        mailboxes_of(entries.collect(), personal)
    }

    #[test]
    fn folders_under_the_personal_namespace_are_named_without_its_prefix() {
        // Cyrus and Courier: NAMESPACE (("INBOX." ".")).
        let personal = ["INBOX".to_string()];
        let raw = [
            "INBOX",
            "INBOX.Archive",
            "INBOX.Archive.2024",
            "user.bob.Shared",
        ];
        let got = listing_in(&raw, '.', &personal);
        let pairs: Vec<(&str, &str)> = got
            .mailboxes
            .iter()
            .map(|m| (m.name.as_str(), m.raw.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("Archive", "INBOX.Archive"),
                ("Archive/2024", "INBOX.Archive.2024"),
                ("INBOX", "INBOX"),
                // Outside the personal namespace: named as it is.
                ("user/bob/Shared", "user.bob.Shared"),
            ]
        );
    }

    #[test]
    fn names_that_are_not_modified_utf7_are_kept_under_their_raw_text() {
        let raw = ["&AGE-", "Work/&Jjo", "&2AA-", "&AGEAYgBj-", "Caf&AOk-/&Jjo"];
        let got = listing(&raw);
        assert_eq!(got.skipped, Vec::<Skipped>::new());
        let mut pairs: Vec<(String, String)> = got
            .mailboxes
            .iter()
            .map(|m| (m.raw.clone(), m.components.join("|")))
            .collect();
        pairs.sort();
        let mut want: Vec<(String, String)> = [
            ("&2AA-", "&2AA-"),
            ("&AGE-", "&AGE-"),
            ("&AGEAYgBj-", "&AGEAYgBj-"),
            // Each level on its own: the valid one decoded, the other kept raw.
            ("Caf&AOk-/&Jjo", "Café|&Jjo"),
            ("Work/&Jjo", "Work|&Jjo"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        want.sort();
        assert_eq!(pairs, want);
    }

    #[test]
    fn two_names_that_read_the_same_keep_one_and_say_so() {
        // "R&-D" is "R&D" in modified UTF-7; "R&D" is the same text written raw.
        let got = listing(&["R&-D", "R&D", "Other"]);
        let names: Vec<&str> = got.mailboxes.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Other", "R&D"]);
        assert_eq!(got.skipped.len(), 1, "{:?}", got.skipped);
        assert_eq!(got.skipped[0].folder, "R&D");
        assert!(
            got.skipped[0].why.contains("reads as that of"),
            "{:?}",
            got.skipped
        );
    }
}
