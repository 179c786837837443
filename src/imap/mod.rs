//! IMAP: the response codec, the async client, and opening a logged-in session (the commands
//! the engines' calls stand for are in [`crate::store::imap`]).

pub mod client;
pub mod codec;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::{Account, AuthMech, Tls};
use crate::credentials::Secret;
use crate::exit::{Classify, Exit};
use crate::net::{Fingerprint, NetError};
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
            // NO is a refusal (said in the server's words); BAD says a command was not
            // understood, which mailferry never sends on purpose.
            ImapError::Refused {
                status: Status::No, ..
            } => Exit::Unavailable,
            ImapError::Refused { .. } => Exit::Protocol,
            ImapError::AuthFailed {
                temporary: true, ..
            } => Exit::TempFail,
            ImapError::AuthFailed { .. } => Exit::Auth,
            ImapError::Bye(_) => Exit::TempFail,
            ImapError::Missing(_) => Exit::Unavailable,
            ImapError::Protocol(_) | ImapError::Parse(_) => Exit::Protocol,
            // A sink writes files: what fails there is local.
            ImapError::Local(_) => Exit::LocalIo,
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
    let endpoint = account.endpoint();
    let (io, implicit) = endpoint.connect(account.tls == Tls::Implicit).await?;
    let (mut client, _) = Client::start(io, account.timeout).await?;
    let fingerprint = match account.tls {
        Tls::Starttls => {
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
            let (secured, fp) = client.starttls(&endpoint).await?;
            client = secured;
            Some(fp)
        }
        Tls::Implicit | Tls::None => implicit,
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
                client.completed(&tag);
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
            Response::Tagged { tag: t, .. } => return Err(client::not_sent(&t)),
            Response::Capability(c) => client.caps = c,
            Response::Status(s) if s.status == Status::Bye => {
                return Err(ImapError::Bye(sanitize(&s.text, 300)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: Status, code: Option<&str>) -> Exit {
        let e = ImapError::Refused {
            command: "LIST".into(),
            status,
            code: code.map(str::to_string),
            text: "no".into(),
        };
        e.exit()
    }

    #[test]
    fn a_refusal_is_not_a_broken_protocol_but_bad_is() {
        assert_eq!(refused(Status::No, None), Exit::Unavailable);
        assert_eq!(refused(Status::No, Some("NOPERM")), Exit::Unavailable);
        assert_eq!(refused(Status::No, Some("UNAVAILABLE")), Exit::TempFail);
        assert_eq!(refused(Status::No, Some("OVERQUOTA")), Exit::TempFail);
        assert_eq!(refused(Status::Bad, None), Exit::Protocol);
    }
}
