//! POP3: the wire codec, the async client, and opening a logged-in session for an account.

pub mod client;
pub mod codec;
pub mod identity;

use crate::config::{Account, Tls};
use crate::credentials::Secret;
use crate::exit::{Classify, Exit};
use crate::net::{Fingerprint, NetError};

pub use client::{Client, RetrSink};
pub use codec::Capabilities;

/// A POP3 failure that is not a network failure.
#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The server answered -ERR.
    #[error("the server refused {command}: {}{text}", code_prefix(.code))]
    Refused {
        /// The command.
        command: String,
        /// RFC 2449 response code.
        code: Option<String>,
        /// Server text (sanitised).
        text: String,
    },
    /// Login failed.
    #[error("login as {user} ({mechanism}) failed: {}{text}", code_prefix(.code))]
    AuthFailed {
        /// The user (sanitised).
        user: String,
        /// The mechanism tried.
        mechanism: String,
        /// RFC 2449 response code.
        code: Option<String>,
        /// Server text (sanitised).
        text: String,
    },
    /// The server lacks something mailferry needs.
    #[error("the server does not offer {0}")]
    Missing(&'static str),
    /// The server broke the protocol.
    #[error("the server broke the POP3 protocol: {0}")]
    Protocol(String),
}

fn code_prefix(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!("[{c}] ")).unwrap_or_default()
}

/// Response codes that mean "try again later" (RFC 2449, RFC 3206).
fn temporary(code: &Option<String>) -> bool {
    matches!(code.as_deref(), Some("IN-USE" | "LOGIN-DELAY" | "SYS/TEMP"))
}

impl Classify for Pop3Error {
    fn exit(&self) -> Exit {
        match self {
            Pop3Error::Net(e) => e.exit(),
            Pop3Error::Refused { code, .. } if temporary(code) => Exit::TempFail,
            Pop3Error::Refused { code, .. } if code.as_deref() == Some("AUTH") => Exit::Auth,
            Pop3Error::Refused { .. } => Exit::Unavailable,
            Pop3Error::AuthFailed { code, .. } if temporary(code) => Exit::TempFail,
            Pop3Error::AuthFailed { .. } => Exit::Auth,
            Pop3Error::Missing(_) => Exit::Unavailable,
            Pop3Error::Protocol(_) => Exit::Protocol,
        }
    }
}

/// A logged-in session and what was learnt while opening it.
pub struct Session {
    /// The client, in TRANSACTION state.
    pub client: Client,
    /// Capabilities after login.
    pub caps: Capabilities,
    /// The server certificate's fingerprint, when TLS is used.
    pub fingerprint: Option<Fingerprint>,
}

/// Connects, secures the connection as the account says, and logs in.
pub async fn open(account: &Account, secret: &Secret) -> Result<Session, Pop3Error> {
    let endpoint = account.endpoint();
    let (io, implicit) = endpoint.connect(account.tls == Tls::Implicit).await?;
    let mut client = Client::start(io, account.timeout).await?;
    let fingerprint = match account.tls {
        Tls::Starttls => {
            let caps = client.capa().await?;
            // Without STLS in CAPA we refuse rather than send the password in clear text:
            // a stripped capability is how a downgrade attack looks.
            if !caps.stls {
                return Err(Pop3Error::Missing(
                    "STLS, so the connection cannot be encrypted (set tls = \"implicit\", or \
                     tls = \"none\" with allow_plaintext = true)",
                ));
            }
            let (secured, fp) = client.stls(&endpoint).await?;
            client = secured;
            Some(fp)
        }
        Tls::Implicit | Tls::None => implicit,
    };
    let caps = client.capa().await?;
    // Without UTF8 a server that offers it may send, for a message with raw UTF-8 in its
    // header, a substitute it made up (Courier does): stored, and in delete mode the original
    // deleted. So it is asked for before login (RFC 6856), and a refusal stops the session.
    if caps.utf8 {
        client.utf8().await?;
    }
    client
        .login(account.auth, &account.user, secret, &caps)
        .await?;
    // Capabilities may change after login (RFC 2449); ask again only if they were known.
    let caps = if caps.known {
        client.capa().await?
    } else {
        caps
    };
    Ok(Session {
        client,
        caps,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: Option<&str>) -> Exit {
        let e = Pop3Error::Refused {
            command: "RETR".into(),
            code: code.map(str::to_string),
            text: "no".into(),
        };
        e.exit()
    }

    #[test]
    fn an_err_is_a_refusal_temporary_or_of_the_login_by_its_code() {
        assert_eq!(refused(None), Exit::Unavailable);
        assert_eq!(refused(Some("IN-USE")), Exit::TempFail);
        assert_eq!(refused(Some("SYS/TEMP")), Exit::TempFail);
        assert_eq!(refused(Some("AUTH")), Exit::Auth);
    }
}
