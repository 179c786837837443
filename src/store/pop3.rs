//! A POP3 mailbox as a [`Store`]: one mailbox (the store's root), its messages numbered for the
//! session and known by a lasting key (the UIDL, or a header hash where there is none or it is
//! shared); RETR and DELE pipelined where the server allows; DELE carried out at QUIT.

use sha2::{Digest, Sha256};

use crate::config::Account;
use crate::credentials::Credentials;
use crate::net::NetError;
use crate::pop3::identity::Uidls;
use crate::pop3::{self, Pop3Error, RetrSink, Session};

use super::{
    Access, Bodies, Caps, Connect, Deletes, Fetched, Items, Listed, Mailbox, Mailboxes, Need,
    Pending, Result, Retry, Scope, Search, Selected, Sink, Store, StoreError, Uids,
};

/// RETR/DELE commands in flight with PIPELINING.
const WINDOW: usize = 16;

/// One message of the session's listing.
#[derive(Debug, Clone)]
struct Entry {
    msg: u32,
    key: Option<Box<str>>,
    size: u64,
}

/// A POP3 session as a store.
pub struct Pop3Store {
    session: Session,
    /// The listing, taken when the mailbox is opened (UIDL once per session).
    listing: Vec<Entry>,
}

/// Opens POP3 sessions of one account.
pub struct Pop3Connect<'a> {
    account: &'a Account,
    login: Credentials<'a>,
}

impl<'a> Pop3Connect<'a> {
    /// Reads the account's password source once (tokens are asked for per connection).
    pub async fn new(account: &'a Account) -> anyhow::Result<Pop3Connect<'a>> {
        Ok(Pop3Connect {
            account,
            login: Credentials::new(account).await?,
        })
    }
}

impl Connect for Pop3Connect<'_> {
    type Store = Pop3Store;

    async fn connect(&self) -> Result<Pop3Store> {
        let secret = self
            .login
            .secret()
            .await
            .map_err(|e| StoreError::new(Scope::Account, Retry::Never, e))?;
        let session = pop3::open(self.account, &secret)
            .await
            .map_err(|e| error(Scope::Account, e))?;
        Ok(Pop3Store::new(session))
    }
}

fn error(scope: Scope, e: Pop3Error) -> StoreError {
    use crate::exit::{Classify, Exit};
    let retry = match &e {
        Pop3Error::Net(NetError::Closed { .. } | NetError::Io(_)) => Retry::Now,
        e if e.exit() == Exit::TempFail => Retry::Later,
        _ => Retry::Never,
    };
    StoreError::new(scope, retry, e)
}

/// A failure of a call that passes bodies to a sink: the server's, or the sink's (local).
fn streamed(e: anyhow::Error) -> StoreError {
    match e.downcast::<Pop3Error>() {
        Ok(e) => error(Scope::Account, e),
        Err(local) => StoreError::from_sink(local),
    }
}

impl Pop3Store {
    /// A logged-in session as a store.
    pub fn new(session: Session) -> Pop3Store {
        Pop3Store {
            session,
            listing: Vec::new(),
        }
    }

    /// The server's greeting, sanitised (for `check`).
    pub fn greeting(&self) -> String {
        crate::text::sanitize(self.session.client.greeting(), 200)
    }

    /// The server certificate's fingerprint, when TLS is used.
    pub fn fingerprint(&self) -> Option<crate::net::Fingerprint> {
        self.session.fingerprint
    }

    /// The capabilities that matter to mailferry, by name (for `check`).
    pub fn notable_capabilities(&self) -> Vec<String> {
        let caps = &self.session.caps;
        let mut names: Vec<String> = [
            (caps.uidl, "UIDL"),
            (caps.top, "TOP"),
            (caps.pipelining, "PIPELINING"),
            (caps.resp_codes, "RESP-CODES"),
        ]
        .into_iter()
        .filter(|&(on, _)| on)
        .map(|(_, name)| name.to_string())
        .collect();
        if !caps.sasl.is_empty() {
            names.push(format!("SASL {}", caps.sasl.join(" ")));
        }
        names
    }

    fn window(&self) -> usize {
        if self.session.caps.pipelining {
            WINDOW
        } else {
            1
        }
    }

    /// UIDL (once per session) and LIST, with header hashes where needed.
    async fn take_listing(&mut self) -> std::result::Result<Vec<Entry>, Pop3Error> {
        let client = &mut self.session.client;
        let caps = &self.session.caps;
        let uidls = if caps.uidl || !caps.known {
            client.uidl().await?
        } else {
            None
        };
        let sizes = client.list().await?;
        let msgs: Vec<u32> = sizes.iter().map(|&(m, _)| m).collect();
        let uidls = Uidls::new(&msgs, uidls);
        let mut headers = std::collections::HashMap::new();
        for i in uidls.need_header() {
            match client.top_header(msgs[i]).await {
                Ok(header) => {
                    headers.insert(i, crate::text::hex(&Sha256::digest(&header)[..16]));
                }
                Err(Pop3Error::Refused { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        drop(msgs);
        let ids = uidls.identities(|i| headers.remove(&i));
        let mut entries: Vec<Entry> = sizes
            .into_iter()
            .zip(ids)
            .map(|((msg, size), id)| Entry {
                msg,
                key: id.map(String::into_boxed_str),
                size,
            })
            .collect();
        // Looked up by number; LIST gives them in order, a broken server perhaps not.
        entries.sort_by_key(|e| e.msg);
        Ok(entries)
    }

    /// Every message's size (LIST alone), for `check` and `list`.
    pub async fn sizes(&mut self) -> Result<Vec<u64>> {
        let sizes = self.session.client.list().await;
        let sizes = sizes.map_err(|e| error(Scope::Account, e))?;
        Ok(sizes.into_iter().map(|(_, size)| size).collect())
    }

    fn entry(&self, msg: u32) -> Option<&Entry> {
        let i = self.listing.binary_search_by_key(&msg, |e| e.msg).ok()?;
        self.listing.get(i)
    }
}

impl Store for Pop3Store {
    fn caps(&self) -> Caps {
        Caps {
            deletes: Deletes::AtClose,
            lasting_uids: false,
        }
    }

    fn security(&self) -> String {
        match self.session.fingerprint {
            Some(fp) => format!("TLS, certificate {fp}"),
            None => "no TLS".to_string(),
        }
    }

    fn missing(&self, need: Need, purpose: &str) -> StoreError {
        StoreError::missing(match need {
            Need::Identity => format!("UIDL or TOP, which {purpose}"),
            Need::ExactDelete => format!("DELE, which {purpose}"),
        })
    }

    async fn mailboxes(&mut self) -> Result<Mailboxes> {
        Ok(Mailboxes {
            mailboxes: vec![inbox()],
            skipped: Vec::new(),
        })
    }

    async fn mailbox(&mut self, _components: &[String]) -> Result<Mailbox> {
        Ok(inbox())
    }

    async fn select(
        &mut self,
        _mailbox: &Mailbox,
        _access: Access,
        _since: Option<(u32, u64)>,
    ) -> Result<Selected> {
        self.listing = self
            .take_listing()
            .await
            .map_err(|e| error(Scope::Account, e))?;
        Ok(Selected {
            exists: self.listing.len() as u32,
            ..Selected::default()
        })
    }

    async fn list(
        &mut self,
        uids: Uids<'_>,
        items: Items,
        each: &mut dyn FnMut(Listed),
    ) -> Result<()> {
        let wanted: Vec<Entry> = self
            .listing
            .iter()
            .filter(|e| match uids {
                Uids::From(n) => e.msg >= n,
                Uids::Set(set) => set.contains(&e.msg),
            })
            .cloned()
            .collect();
        for e in wanted {
            // A Message-ID costs a TOP per message: only when asked for (pairing what a
            // Maildir holds already), and none where the server has no TOP.
            let message_id = match items.message_id {
                true => match self.session.client.top_header(e.msg).await {
                    Ok(header) => crate::message::message_id(&header),
                    Err(Pop3Error::Refused { .. }) => None,
                    Err(other) => return Err(error(Scope::Account, other)),
                },
                false => None,
            };
            each(Listed {
                uid: e.msg,
                size: e.size,
                key: e.key,
                message_id,
                ..Listed::default()
            });
        }
        Ok(())
    }

    async fn search(&mut self, search: Search<'_>) -> Result<Vec<u32>> {
        match search {
            Search::Present(msgs) => Ok(msgs
                .iter()
                .copied()
                .filter(|&m| self.entry(m).is_some())
                .collect()),
            Search::MessageId(_) => Err(StoreError::unsupported("searching by Message-ID")),
        }
    }

    async fn fetch_send(&mut self, uids: &[u32], _bodies: Bodies) -> Result<Pending> {
        // With PIPELINING the whole batch is asked for at once, so that its bytes flow while
        // the batch before it is made durable; without, RETRs go one by one when read.
        let sent = self.session.caps.pipelining;
        if sent {
            self.session
                .client
                .retr_send(uids)
                .await
                .map_err(|e| error(Scope::Account, e))?;
        }
        Ok(Pending {
            uids: uids.to_vec(),
            tag: sent.then(|| "RETR".to_string()),
        })
    }

    async fn fetch_receive(&mut self, pending: Pending, sink: &mut dyn Sink) -> Result<()> {
        let window = self.window();
        let mut bodies = RetrBodies {
            sink,
            listing: &self.listing,
        };
        let client = &mut self.session.client;
        let read = match pending.tag {
            Some(_) => client.retr_read(&pending.uids, &mut bodies).await,
            None => {
                client
                    .retr_pipelined(&pending.uids, window, &mut bodies)
                    .await
            }
        };
        read.map_err(streamed)
    }

    async fn mark_deleted(&mut self, uids: &[u32]) -> Result<()> {
        let window = self.window();
        self.session
            .client
            .dele_pipelined(uids, window)
            .await
            .map_err(|e| error(Scope::Account, e))
    }

    async fn expunge(&mut self, _uids: &[u32]) -> Result<()> {
        // DELE is carried out at QUIT.
        Ok(())
    }

    async fn close(self) -> Result<()> {
        self.session
            .client
            .quit()
            .await
            .map_err(|e| error(Scope::Account, e))
    }
}

/// The one mailbox of a POP3 account.
fn inbox() -> Mailbox {
    Mailbox::new(
        "INBOX".to_string(),
        vec!["INBOX".to_string()],
        String::new(),
        true,
    )
}

/// Passes RETR bodies on to a store [`Sink`], with what the listing says of each.
struct RetrBodies<'a> {
    sink: &'a mut dyn Sink,
    listing: &'a [Entry],
}

impl RetrSink for RetrBodies<'_> {
    fn begin(&mut self, _msg: u32) -> anyhow::Result<()> {
        self.sink.begin()
    }

    fn data(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        self.sink.data(chunk)
    }

    fn refused(&mut self, msg: u32, why: &str) -> bool {
        self.sink.refused(Some(msg), why)
    }

    fn end(&mut self, msg: u32) -> anyhow::Result<()> {
        let entry = self
            .listing
            .binary_search_by_key(&msg, |e| e.msg)
            .ok()
            .and_then(|i| self.listing.get(i));
        self.sink.end(Fetched {
            uid: msg,
            size: entry.map(|e| e.size),
            key: entry.and_then(|e| e.key.clone()),
            ..Fetched::default()
        })
    }
}
