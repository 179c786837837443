//! IMAP: the response codec, the async client, opening a logged-in session, and the folder and
//! flag conventions shared by fetch and sync.

pub mod client;
pub mod codec;
pub mod date;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::{Account, AuthMech, Tls};
use crate::credentials::Secret;
use crate::exit::{Classify, Exit};
use crate::net::{self, BoxIo, Fingerprint, NetError};
use crate::text::sanitize;

pub use client::{Client, FetchSink};
pub use codec::{Code, Fetch, ListEntry, Response, Status};

/// An IMAP failure.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The server answered NO or BAD.
    #[error("the server refused {command}: {status} {}{text}", .code.as_ref().map(|c| format!("[{c}] ")).unwrap_or_default())]
    Refused {
        /// The command.
        command: String,
        /// NO or BAD.
        status: Status,
        /// Response code name.
        code: Option<String>,
        /// Server text (sanitised).
        text: String,
    },
    /// Login failed.
    #[error("login as {user} ({mechanism}) failed: {text}")]
    AuthFailed {
        /// User (sanitised).
        user: String,
        /// Mechanism.
        mechanism: String,
        /// Server text (sanitised).
        text: String,
        /// Whether the server said to try later ([UNAVAILABLE]).
        temporary: bool,
    },
    /// The server closed the session with BYE.
    #[error("the server ended the session: {0}")]
    Bye(String),
    /// The server lacks something mailferry needs.
    #[error("the server does not offer {0}")]
    Missing(&'static str),
    /// The server broke the protocol.
    #[error("the server broke the IMAP protocol: {0}")]
    Protocol(String),
    /// A response could not be parsed.
    #[error(transparent)]
    Parse(#[from] codec::ParseError),
    /// Writing what arrived failed locally.
    #[error(transparent)]
    Local(anyhow::Error),
}

impl Classify for ImapError {
    fn exit(&self) -> Exit {
        match self {
            ImapError::Net(e) => e.exit(),
            ImapError::Refused { code, .. }
                if matches!(
                    code.as_deref(),
                    Some("UNAVAILABLE" | "INUSE" | "LIMIT" | "OVERQUOTA")
                ) =>
            {
                Exit::TempFail
            }
            ImapError::Refused { .. } => Exit::Protocol,
            ImapError::AuthFailed {
                temporary: true, ..
            } => Exit::TempFail,
            ImapError::AuthFailed { .. } => Exit::Auth,
            ImapError::Bye(_) => Exit::TempFail,
            ImapError::Missing(_) => Exit::Unavailable,
            ImapError::Protocol(_) | ImapError::Parse(_) => Exit::Protocol,
            ImapError::Local(e) => crate::exit::classify(e),
        }
    }
}

/// A logged-in session.
pub struct Session {
    /// The client, authenticated.
    pub client: Client,
    /// The certificate fingerprint, when TLS is used.
    pub fingerprint: Option<Fingerprint>,
    /// CONDSTORE is enabled (MODSEQ in FETCH, HIGHESTMODSEQ in SELECT).
    pub condstore: bool,
    /// QRESYNC is enabled (VANISHED on SELECT).
    pub qresync: bool,
}

/// Connects, secures the connection as the account says, logs in and enables what helps.
pub async fn open(account: &Account, secret: &Secret) -> Result<Session, ImapError> {
    let tcp = net::connect(&account.host, account.port, account.timeout).await?;
    let io: BoxIo = Box::new(tcp);
    let (mut client, fingerprint) = match account.tls {
        Tls::Implicit => {
            let (io, fp) =
                net::start_tls(io, &account.host, account.tls_fingerprint, account.timeout).await?;
            let (client, _) = Client::start(io, account.timeout).await?;
            (client, Some(fp))
        }
        Tls::Starttls => {
            let (mut client, _) = Client::start(io, account.timeout).await?;
            if client.caps.is_empty() {
                client.capability().await?;
            }
            // A missing STARTTLS is how a downgrade attack looks: refuse.
            if !client.has("STARTTLS") {
                return Err(ImapError::Missing(
                    "STARTTLS, so the connection cannot be encrypted (set tls = \"implicit\", or \
                     tls = \"none\" with allow_plaintext = true)",
                ));
            }
            let (client, fp) = client
                .starttls(&account.host, account.tls_fingerprint)
                .await?;
            (client, Some(fp))
        }
        Tls::None => {
            let (client, _) = Client::start(io, account.timeout).await?;
            (client, None)
        }
    };
    if client.caps.is_empty() {
        client.capability().await?;
    }
    login(&mut client, account, secret).await?;
    if account.compress.wanted(&account.host) && client.has("COMPRESS=DEFLATE") {
        client = client.compress().await?;
    }
    let mut session = Session {
        client,
        fingerprint,
        condstore: false,
        qresync: false,
    };
    let want: Vec<&str> = ["QRESYNC", "CONDSTORE"]
        .into_iter()
        .filter(|c| session.client.has(c))
        .collect();
    if !want.is_empty() && session.client.has("ENABLE") {
        let (untagged, _) = session
            .client
            .run(&format!("ENABLE {}", want.join(" ")))
            .await?;
        for r in untagged {
            if let Response::Enabled(caps) = r {
                session.qresync |= caps.iter().any(|c| c == "QRESYNC");
                session.condstore |= caps.iter().any(|c| c == "CONDSTORE" || c == "QRESYNC");
            }
        }
    } else if session.client.has("CONDSTORE") {
        // CONDSTORE is enabled by its first use (SELECT ... (CONDSTORE)).
        session.condstore = true;
    }
    Ok(session)
}

async fn login(client: &mut Client, account: &Account, secret: &Secret) -> Result<(), ImapError> {
    let user = &account.user;
    let pw = secret.expose();
    let mech = match account.auth {
        AuthMech::Auto if client.has("AUTH=PLAIN") => AuthMech::Plain,
        AuthMech::Auto | AuthMech::User | AuthMech::Apop | AuthMech::Login => AuthMech::User,
        m => m,
    };
    if mech == AuthMech::User && client.has("LOGINDISABLED") {
        return Err(ImapError::Missing(
            "a login mechanism it allows here (it says LOGINDISABLED)",
        ));
    }
    let (name, initial, abort) = match mech {
        AuthMech::Plain => ("PLAIN", B64.encode(format!("\0{user}\0{pw}")), ""),
        AuthMech::Xoauth2 => (
            "XOAUTH2",
            B64.encode(format!("user={user}\x01auth=Bearer {pw}\x01\x01")),
            "",
        ),
        AuthMech::Oauthbearer => (
            "OAUTHBEARER",
            B64.encode(format!("n,a={user},\x01auth=Bearer {pw}\x01\x01")),
            "AQ==",
        ),
        _ => ("LOGIN", String::new(), ""),
    };
    let failed = |text: String, temporary: bool| ImapError::AuthFailed {
        user: sanitize(user, 100),
        mechanism: name.to_string(),
        text: sanitize(&text, 300),
        temporary,
    };
    let tag = if name == "LOGIN" {
        let (u, p) = codec::quote(user)
            .zip(codec::quote(pw))
            .ok_or_else(|| ImapError::Protocol("user or password with a line break".into()))?;
        client.send(&format!("LOGIN {u} {p}")).await?
    } else if client.has("SASL-IR") {
        client
            .send(&format!("AUTHENTICATE {name} {initial}"))
            .await?
    } else {
        let tag = client.send(&format!("AUTHENTICATE {name}")).await?;
        match client.read(&mut client::NoBodies).await? {
            Response::Continue(_) => {
                crate::report::trace("C+", b"");
                client.write(format!("{initial}\r\n").as_bytes()).await?
            }
            Response::Tagged { status, .. } => return Err(failed(status.text, false)),
            other => {
                return Err(ImapError::Protocol(format!(
                    "unexpected reply to AUTHENTICATE: {other:?}"
                )));
            }
        }
        tag
    };
    loop {
        match client.read(&mut client::NoBodies).await? {
            Response::Continue(_) => {
                crate::report::trace("C+", b"");
                client.write(format!("{abort}\r\n").as_bytes()).await?
            }
            Response::Tagged { tag: t, status } if t == tag => {
                return match status.status {
                    Status::Ok => {
                        match status.code {
                            Some(Code::Capability(caps)) => client.caps = caps,
                            _ => client.capability().await?,
                        }
                        Ok(())
                    }
                    _ => {
                        let temporary =
                            matches!(&status.code, Some(Code::Other(c, _)) if c == "UNAVAILABLE");
                        Err(failed(status.text, temporary))
                    }
                };
            }
            Response::Tagged { tag: t, .. } => {
                return Err(ImapError::Protocol(format!(
                    "a reply for command {} that was not sent",
                    sanitize(&t, 40)
                )));
            }
            Response::Capability(c) => client.caps = c,
            Response::Status(s) if s.status == Status::Bye => {
                return Err(ImapError::Bye(sanitize(&s.text, 300)));
            }
            _ => {}
        }
    }
}

/// A selectable folder on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFolder {
    /// Its name in UTF-8, hierarchy levels joined by '/' (what patterns and messages use).
    pub name: String,
    /// Its name as the server spells it (modified UTF-7), for commands.
    pub wire: String,
    /// Its hierarchy levels in UTF-8 (INBOX is `["INBOX"]`).
    pub components: Vec<String>,
}

impl RemoteFolder {
    /// A folder named by its levels, on a server with this hierarchy delimiter.
    pub fn new(components: &[String], delimiter: char) -> RemoteFolder {
        RemoteFolder {
            name: components.join("/"),
            wire: components
                .iter()
                .map(|c| codec::utf7_encode(c))
                .collect::<Vec<_>>()
                .join(&delimiter.to_string()),
            components: components.to_vec(),
        }
    }

    /// The name quoted for a command.
    pub fn quoted(&self) -> String {
        codec::quote(&self.wire).unwrap_or_else(|| "\"\"".to_string())
    }
}

/// Lists the selectable folders; names that cannot be used are returned as warnings instead.
pub async fn list_folders(
    client: &mut Client,
) -> Result<(Vec<RemoteFolder>, Vec<String>), ImapError> {
    let (untagged, _) = client.run("LIST \"\" \"*\"").await?;
    let mut folders = Vec::new();
    let mut skipped = Vec::new();
    for r in untagged {
        let Response::List(entry) = r else { continue };
        if entry.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        }) {
            continue;
        }
        let shown = crate::text::sanitize_bytes(&entry.name, 100);
        let Some(utf8) = codec::utf7_decode(&entry.name) else {
            skipped.push(format!(
                "folder \"{shown}\" skipped: its name is not valid modified UTF-7"
            ));
            continue;
        };
        let components: Vec<String> = match entry.delimiter {
            Some(d) => utf8.split(d).map(str::to_string).collect(),
            None => vec![utf8.clone()],
        };
        if components.iter().any(|c| c.is_empty()) {
            skipped.push(format!(
                "folder \"{shown}\" skipped: it has an empty hierarchy level"
            ));
            continue;
        }
        let wire = String::from_utf8_lossy(&entry.name).into_owned();
        let components = if components.len() == 1 && components[0].eq_ignore_ascii_case("INBOX") {
            vec!["INBOX".to_string()]
        } else {
            components
        };
        folders.push(RemoteFolder {
            name: components.join("/"),
            wire,
            components,
        });
    }
    folders.sort_by(|a, b| a.name.cmp(&b.name));
    folders.dedup_by(|a, b| a.name == b.name);
    Ok((folders, skipped))
}

/// What SELECT or EXAMINE reported.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    /// Messages in the folder.
    pub exists: u32,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT, if sent.
    pub uidnext: Option<u32>,
    /// HIGHESTMODSEQ, if CONDSTORE is on and the folder has mod-sequences.
    pub highestmodseq: Option<u64>,
    /// With QRESYNC: whether the server took our (UIDVALIDITY, MODSEQ), so that `vanished` and
    /// `changed` are everything that happened since.
    pub resynced: bool,
    /// With QRESYNC: UIDs expunged since the given MODSEQ.
    pub vanished: Vec<(u32, u32)>,
    /// With QRESYNC: messages changed (or new) since the given MODSEQ.
    pub changed: Vec<Fetch>,
}

/// The server's hierarchy delimiter ('/' when it has none).
pub async fn delimiter(session: &mut Session) -> anyhow::Result<char> {
    let (untagged, _) = session.client.run("LIST \"\" \"\"").await?;
    Ok(untagged
        .into_iter()
        .find_map(|r| match r {
            Response::List(l) => l.delimiter,
            _ => None,
        })
        .unwrap_or('/'))
}

/// The UIDs a `UID SEARCH` with these criteria finds in the selected folder.
pub async fn search_uids(session: &mut Session, criteria: &str) -> anyhow::Result<Vec<u32>> {
    let (untagged, _) = session
        .client
        .run(&format!("UID SEARCH {criteria}"))
        .await?;
    Ok(untagged
        .into_iter()
        .flat_map(|r| match r {
            Response::Search(uids) => uids,
            _ => Vec::new(),
        })
        .collect())
}

/// Creates a folder on the server.
pub async fn create(session: &mut Session, folder: &RemoteFolder) -> anyhow::Result<()> {
    session
        .client
        .run(&format!("CREATE {}", folder.quoted()))
        .await?;
    Ok(())
}

/// Selects a folder (read-only with EXAMINE). With QRESYNC enabled and `since` (the
/// UIDVALIDITY and HIGHESTMODSEQ of the last complete pass) the server reports in the same
/// round trip what changed and what vanished since then; with CONDSTORE only, mod-sequences
/// are switched on.
pub async fn select(
    session: &mut Session,
    folder: &RemoteFolder,
    read_only: bool,
    since: Option<(u32, u64)>,
) -> Result<Selected, ImapError> {
    let verb = if read_only { "EXAMINE" } else { "SELECT" };
    let params = match (session.qresync, since) {
        (true, Some((v, m))) => format!(" (QRESYNC ({v} {m}))"),
        _ if session.condstore => " (CONDSTORE)".to_string(),
        _ => String::new(),
    };
    let (untagged, status) = session
        .client
        .run(&format!("{verb} {}{params}", folder.quoted()))
        .await?;
    let mut selected = Selected::default();
    let mut validity = None;
    let mut codes: Vec<Code> = Vec::new();
    for r in untagged {
        match r {
            Response::Status(s) => codes.extend(s.code),
            Response::Exists(n) => selected.exists = n,
            Response::Vanished { uids, .. } => selected.vanished.extend(uids),
            Response::Fetch(f) => selected.changed.push(f),
            _ => {}
        }
    }
    codes.extend(status.code);
    for code in codes {
        match code {
            Code::UidValidity(v) => validity = Some(v),
            Code::UidNext(n) => selected.uidnext = Some(n),
            Code::HighestModseq(m) => selected.highestmodseq = Some(m),
            Code::NoModseq => selected.highestmodseq = None,
            _ => {}
        }
    }
    selected.uidvalidity =
        validity.ok_or(ImapError::Missing("UIDVALIDITY for a selected folder"))?;
    // A server ignores QRESYNC parameters whose UIDVALIDITY no longer holds.
    selected.resynced = session.qresync && since.is_some_and(|(v, _)| v == selected.uidvalidity);
    Ok(selected)
}

/// Whether a folder name matches the account's patterns (`*` matches anything; a pattern
/// starting with `!` excludes; the last matching pattern wins).
pub fn folder_selected(name: &str, patterns: &[String]) -> bool {
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
    fn folder_patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(folder_selected("INBOX", &p(&["*"])));
        assert!(!folder_selected("Spam", &p(&["*", "!Spam"])));
        assert!(folder_selected("Work/2024", &p(&["Work/*"])));
        assert!(!folder_selected("Private", &p(&["Work/*"])));
        assert!(folder_selected("inbox", &p(&["INBOX"])));
        assert!(folder_selected("Été/x", &p(&["*x"])));
        assert!(!folder_selected("Archive/Old", &p(&["*", "!Archive/*"])));
    }
}
