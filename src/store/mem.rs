//! An in-memory store for the engines' tests: mailboxes of messages with UIDs, flags,
//! mod-sequences and UIDVALIDITY, shared by every connection to the same [`MemServer`].
//! Capabilities can be hidden (no UIDPLUS, no QRESYNC, POP3-like numbering), every call is a
//! counted step (`crate::failpoint`: a test can crash a run at any of them), and any call can
//! be made to fail with an error of a chosen scope.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::exit::{Classify, Exit};
use crate::flags::FlagSet;

use super::{
    Access, Bodies, Caps, Change, Changes, Connect, Deletes, Fetched, Items, Listed, Mailbox,
    Mailboxes, Need, Outgoing, Pending, Result, Retry, Scope, Search, Selected, Sink, Store,
    StoreError, Uids,
};

/// A failure the in-memory store was told to report.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct MemError(pub String);

impl Classify for MemError {
    fn exit(&self) -> Exit {
        Exit::Protocol
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemMessage {
    /// Its bytes (CRLF line ends, as a server keeps them).
    pub data: Vec<u8>,
    /// Its flags.
    pub flags: FlagSet,
    /// Its date (IMAP date-time).
    pub date: Option<String>,
    /// The mod-sequence of its last change.
    pub modseq: u64,
}

/// One mailbox.
#[derive(Debug, Clone, Default)]
pub struct MemBox {
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// The next UID.
    pub uidnext: u32,
    /// The highest mod-sequence.
    pub modseq: u64,
    /// Messages by UID.
    pub messages: BTreeMap<u32, MemMessage>,
    /// Expunged UIDs with the mod-sequence of their removal.
    pub vanished: Vec<(u32, u64)>,
}

impl MemBox {
    /// Adds a message; returns its UID.
    fn add(&mut self, data: Vec<u8>, flags: FlagSet, date: Option<String>) -> u32 {
        self.modseq += 1;
        let uid = self.uidnext;
        self.uidnext += 1;
        let modseq = self.modseq;
        self.messages.insert(
            uid,
            MemMessage {
                data,
                flags,
                date,
                modseq,
            },
        );
        uid
    }
}

/// A call the store will fail.
#[derive(Debug, Clone)]
struct Failure {
    op: &'static str,
    folder: Option<String>,
    scope: Scope,
    retry: Retry,
}

/// What a test does when a call begins.
type Hook = Box<dyn FnOnce()>;

/// The server every connection shares.
pub struct MemServer {
    /// Mailboxes by name (levels joined by '/').
    pub boxes: BTreeMap<String, MemBox>,
    /// What it offers.
    pub caps: Caps,
    /// It reports changes since a mod-sequence (QRESYNC).
    pub qresync: bool,
    /// It answers appends with their UID (APPENDUID).
    pub appenduid: bool,
    /// The only keywords it keeps (PERMANENTFLAGS without `\*`); None: any.
    pub keywords: Option<Vec<String>>,
    /// It keeps what is appended with bare LF line ends (as pymap does).
    pub bare_lf: bool,
    /// Calls made, as `op` or `op folder`.
    pub calls: Vec<String>,
    /// Connections opened.
    pub connections: usize,
    failures: Vec<Failure>,
    /// (mailbox, UID) whose body the next fetch of it leaves out, as a buggy server would.
    withheld: Vec<(String, u32)>,
    /// (mailbox, UID, words) the server refuses to send, every time (a message it cannot read).
    refused: Vec<(String, u32, String)>,
    /// Run once at the next call of their kind: what others do meanwhile (a mail reader).
    hooks: Vec<(&'static str, Hook)>,
    next_validity: u32,
}

impl MemServer {
    /// A server like Dovecot: UIDPLUS, QRESYNC, lasting UIDs, and an INBOX.
    pub fn imap() -> MemServer {
        let mut server = MemServer {
            boxes: BTreeMap::new(),
            caps: Caps {
                deletes: Deletes::Marked,
                lasting_uids: true,
            },
            qresync: true,
            appenduid: true,
            keywords: None,
            bare_lf: false,
            calls: Vec::new(),
            connections: 0,
            failures: Vec::new(),
            withheld: Vec::new(),
            refused: Vec::new(),
            hooks: Vec::new(),
            next_validity: 100,
        };
        server.create("INBOX");
        server
    }

    /// A POP3-like server: one mailbox, numbers for the session, deletions at close.
    pub fn pop3() -> MemServer {
        let mut server = MemServer::imap();
        server.caps = Caps {
            deletes: Deletes::AtClose,
            lasting_uids: false,
        };
        server.qresync = false;
        server.appenduid = false;
        server
    }

    /// Shared, for [`MemConnect`].
    pub fn shared(self) -> Rc<RefCell<MemServer>> {
        Rc::new(RefCell::new(self))
    }

    /// Creates a mailbox (empty) if it is missing.
    pub fn create(&mut self, name: &str) {
        if !self.boxes.contains_key(name) {
            self.next_validity += 1;
            let b = MemBox {
                uidvalidity: self.next_validity,
                uidnext: 1,
                ..MemBox::default()
            };
            self.boxes.insert(name.to_string(), b);
        }
    }

    /// Adds a message (LF or CRLF line ends) with flags; returns its UID.
    pub fn put(&mut self, name: &str, data: &[u8], flags: &str) -> u32 {
        self.create(name);
        let b = self.boxes.get_mut(name).expect("created above");
        let date = Some("17-Jul-1996 02:44:25 -0700".to_string());
        b.add(crate::message::to_crlf(data), FlagSet::parse(flags), date)
    }

    /// Changes a message's flags, as another client would.
    pub fn set_flags(&mut self, name: &str, uid: u32, flags: &str) {
        if let Some(b) = self.boxes.get_mut(name) {
            b.modseq += 1;
            if let Some(m) = b.messages.get_mut(&uid) {
                m.flags = FlagSet::parse(flags);
                m.modseq = b.modseq;
            }
        }
    }

    /// Removes a message, as another client would.
    pub fn expunge(&mut self, name: &str, uid: u32) {
        if let Some(b) = self.boxes.get_mut(name)
            && b.messages.remove(&uid).is_some()
        {
            b.modseq += 1;
            b.vanished.push((uid, b.modseq));
        }
    }

    /// Renumbers a mailbox under a new UIDVALIDITY (its messages keep their order).
    pub fn renumber(&mut self, name: &str) {
        self.next_validity += 1;
        let validity = self.next_validity;
        if let Some(b) = self.boxes.get_mut(name) {
            let old = std::mem::take(&mut b.messages);
            b.uidvalidity = validity;
            b.vanished.clear();
            for (i, m) in old.into_values().enumerate() {
                b.messages.insert(1000 + i as u32, m);
            }
            b.uidnext = 1000 + b.messages.len() as u32;
        }
    }

    /// Each mailbox's messages as (flags, bytes), by name then in UID order.
    pub fn contents(&self) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
        self.boxes
            .iter()
            .map(|(name, b)| {
                let messages = b
                    .messages
                    .values()
                    .map(|m| (m.flags.to_string(), m.data.clone()))
                    .collect();
                (name.clone(), messages)
            })
            .collect()
    }

    /// Leaves message `uid` of a mailbox out of the next fetch that asks for it.
    pub fn withhold_once(&mut self, mailbox: &[&str], uid: u32) {
        self.withheld.push((mailbox.join("/"), uid));
    }

    /// Makes every fetch of `uid` in `mailbox` refused, in these words.
    pub fn refuse(&mut self, mailbox: &[&str], uid: u32, words: &str) {
        self.refused
            .push((mailbox.join("/"), uid, words.to_string()));
    }

    /// Runs `hook` when the next call `op` begins (before the call does anything).
    pub fn before(&mut self, op: &'static str, hook: impl FnOnce() + 'static) {
        self.hooks.push((op, Box::new(hook)));
    }

    /// Forgets the failures and refusals asked for.
    pub fn clear_failures(&mut self) {
        self.failures.clear();
        self.refused.clear();
    }

    /// Makes every later call `op` (on `folder`, or any) fail with an error of `scope`.
    pub fn fail(&mut self, op: &'static str, folder: Option<&str>, scope: Scope, retry: Retry) {
        self.failures.push(Failure {
            op,
            folder: folder.map(str::to_string),
            scope,
            retry,
        });
    }
}

/// Opens connections to a [`MemServer`].
#[derive(Clone)]
pub struct MemConnect(pub Rc<RefCell<MemServer>>);

impl Connect for MemConnect {
    type Store = MemStore;

    async fn connect(&self) -> Result<MemStore> {
        let mut store = MemStore {
            server: self.0.clone(),
            open: None,
            numbers: Vec::new(),
            doomed: Vec::new(),
        };
        store.step("connect")?;
        self.0.borrow_mut().connections += 1;
        Ok(store)
    }
}

/// A connection to a [`MemServer`].
pub struct MemStore {
    server: Rc<RefCell<MemServer>>,
    open: Option<(String, Access)>,
    /// POP3-like: the UIDs the session's numbers stand for (number n is `numbers[n - 1]`).
    numbers: Vec<u32>,
    /// POP3-like: UIDs marked for deletion at close.
    doomed: Vec<u32>,
}

impl MemStore {
    /// Counts a step in the open folder, and fails it if the test asked for that.
    fn step(&mut self, op: &'static str) -> Result<()> {
        let folder = self.open.as_ref().map(|(n, _)| n.clone());
        self.step_in(op, folder)
    }

    /// Counts a step that concerns `folder`, and fails it if the test asked for that.
    fn step_in(&mut self, op: &'static str, folder: Option<String>) -> Result<()> {
        crate::failpoint::hit(&format!("mem-{op}"))?;
        let hook = {
            let mut server = self.server.borrow_mut();
            let i = server.hooks.iter().position(|(o, _)| *o == op);
            i.map(|i| server.hooks.remove(i).1)
        };
        if let Some(hook) = hook {
            hook();
        }
        let mut server = self.server.borrow_mut();
        server.calls.push(match &folder {
            Some(f) => format!("{op} {f}"),
            None => op.to_string(),
        });
        let failure = server
            .failures
            .iter()
            .find(|f| f.op == op && (f.folder.is_none() || f.folder == folder));
        match failure {
            Some(f) => Err(StoreError::new(
                f.scope.clone(),
                f.retry,
                MemError(format!("{op} failed (as the test asked)")),
            )),
            None => Ok(()),
        }
    }

    fn lasting(&self) -> bool {
        self.server.borrow().caps.lasting_uids
    }

    /// The UID a number of this session stands for.
    fn uid_of(&self, n: u32) -> Option<u32> {
        if self.lasting() {
            Some(n)
        } else {
            self.numbers.get((n as usize).wrapping_sub(1)).copied()
        }
    }

    /// The open mailbox, for a change.
    fn writable(&self) -> Result<String> {
        match &self.open {
            Some((name, Access::ReadWrite)) => Ok(name.clone()),
            Some((name, Access::ReadOnly)) => Err(StoreError::new(
                Scope::Folder(name.clone()),
                Retry::Never,
                MemError(format!("{name} is open read-only")),
            )),
            None => Err(no_mailbox()),
        }
    }

    fn opened(&self) -> Result<String> {
        self.open
            .as_ref()
            .map(|(n, _)| n.clone())
            .ok_or_else(no_mailbox)
    }
}

fn no_mailbox() -> StoreError {
    StoreError::new(
        Scope::Account,
        Retry::Never,
        MemError("no mailbox is open".into()),
    )
}

impl Store for MemStore {
    fn caps(&self) -> Caps {
        self.server.borrow().caps
    }

    fn security(&self) -> String {
        "in memory".to_string()
    }

    async fn mailboxes(&mut self) -> Result<Mailboxes> {
        self.step("mailboxes")?;
        let server = self.server.borrow();
        let mailboxes = server
            .boxes
            .keys()
            .map(|name| {
                let components: Vec<String> = name.split('/').map(str::to_string).collect();
                Mailbox::new(
                    name.clone(),
                    components,
                    name.clone(),
                    !server.caps.lasting_uids,
                )
            })
            .collect();
        Ok(Mailboxes {
            mailboxes,
            skipped: Vec::new(),
        })
    }

    async fn mailbox(&mut self, components: &[String]) -> Result<Mailbox> {
        let name = components.join("/");
        Ok(Mailbox::new(name.clone(), components.to_vec(), name, false))
    }

    async fn create(&mut self, mailbox: &Mailbox) -> Result<()> {
        self.step_in("create", Some(mailbox.raw.clone()))?;
        self.server.borrow_mut().create(&mailbox.raw);
        Ok(())
    }

    async fn select(
        &mut self,
        mailbox: &Mailbox,
        access: Access,
        since: Option<(u32, u64)>,
    ) -> Result<Selected> {
        self.open = Some((mailbox.raw.clone(), access));
        self.step("select")?;
        let server = self.server.borrow();
        let Some(b) = server.boxes.get(&mailbox.raw) else {
            return Err(StoreError::new(
                Scope::Folder(mailbox.name.clone()),
                Retry::Never,
                MemError(format!("no mailbox {}", mailbox.name)),
            ));
        };
        let changes = match since {
            Some((v, m)) if server.qresync && v == b.uidvalidity => Some(Changes {
                vanished: b
                    .vanished
                    .iter()
                    .filter(|&&(_, at)| at > m)
                    .map(|&(u, _)| (u, u))
                    .collect(),
                changed: b
                    .messages
                    .iter()
                    .filter(|(_, msg)| msg.modseq > m)
                    .map(|(&u, msg)| (u, msg.flags.clone()))
                    .collect(),
            }),
            _ => None,
        };
        let lasting = server.caps.lasting_uids;
        let selected = Selected {
            exists: b.messages.len() as u32,
            uidvalidity: if lasting { b.uidvalidity } else { 0 },
            uidnext: lasting.then_some(b.uidnext),
            highestmodseq: server.qresync.then_some(b.modseq),
            changes,
            keywords: server.keywords.clone(),
        };
        let numbers = b.messages.keys().copied().collect();
        drop(server);
        self.numbers = numbers;
        Ok(selected)
    }

    async fn list(
        &mut self,
        uids: Uids<'_>,
        items: Items,
        each: &mut dyn FnMut(Listed),
    ) -> Result<()> {
        self.step("list")?;
        let name = self.opened()?;
        let lasting = self.lasting();
        let server = self.server.borrow();
        let Some(b) = server.boxes.get(&name) else {
            return Ok(());
        };
        let numbered: Vec<(u32, u32)> = if lasting {
            b.messages.keys().map(|&u| (u, u)).collect()
        } else {
            (1..).zip(self.numbers.iter().copied()).collect()
        };
        for (n, uid) in numbered {
            let wanted = match uids {
                Uids::From(from) => n >= from,
                Uids::Set(set) => set.contains(&n),
            };
            let Some(m) = b.messages.get(&uid).filter(|_| wanted) else {
                continue;
            };
            each(Listed {
                uid: n,
                size: m.data.len() as u64,
                flags: items.flags.then(|| m.flags.clone()),
                message_id: crate::message::message_id(crate::message::header(&m.data)),
                key: (!lasting).then(|| format!("uidl:{uid}").into()),
            });
        }
        Ok(())
    }

    async fn search(&mut self, search: Search<'_>) -> Result<Vec<u32>> {
        self.step("search")?;
        let name = self.opened()?;
        let server = self.server.borrow();
        let Some(b) = server.boxes.get(&name) else {
            return Ok(Vec::new());
        };
        Ok(match search {
            Search::Present(uids) => uids
                .iter()
                .copied()
                .filter(|&n| self.uid_of(n).is_some_and(|u| b.messages.contains_key(&u)))
                .collect(),
            Search::MessageId(id) => b
                .messages
                .iter()
                .filter(|(_, m)| {
                    crate::message::message_id(crate::message::header(&m.data)).as_deref()
                        == Some(id)
                })
                .map(|(&u, _)| u)
                .collect(),
        })
    }

    async fn fetch_send(&mut self, uids: &[u32], _bodies: Bodies) -> Result<Pending> {
        self.step("fetch_send")?;
        Ok(Pending {
            uids: uids.to_vec(),
            tag: None,
        })
    }

    async fn fetch_receive(&mut self, pending: Pending, sink: &mut dyn Sink) -> Result<()> {
        self.step("fetch_receive")?;
        let name = self.opened()?;
        let lasting = self.lasting();
        for n in pending.uids {
            let message = self.uid_of(n).and_then(|uid| {
                let mut server = self.server.borrow_mut();
                let key = (name.clone(), uid);
                if let Some(i) = server.withheld.iter().position(|w| *w == key) {
                    server.withheld.remove(i);
                    return None;
                }
                let m = server.boxes.get(&name)?.messages.get(&uid)?.clone();
                Some((uid, m))
            });
            let Some((uid, m)) = message else { continue };
            let refusal = self
                .server
                .borrow()
                .refused
                .iter()
                .find_map(|(b, u, words)| (*b == name && *u == uid).then(|| words.clone()));
            if let Some(words) = refusal {
                if sink.refused(Some(n), &words) {
                    continue;
                }
                let refused = MemError(words);
                return Err(StoreError::new(Scope::Message(n), Retry::Never, refused));
            }
            sink.begin().map_err(StoreError::from_sink)?;
            // In pieces, as a network delivers them.
            for chunk in m.data.chunks(7) {
                sink.data(chunk).map_err(StoreError::from_sink)?;
            }
            sink.end(Fetched {
                uid: n,
                size: Some(m.data.len() as u64),
                flags: m.flags.clone(),
                date: m.date.clone(),
                message_id: crate::message::message_id(crate::message::header(&m.data)),
                key: (!lasting).then(|| format!("uidl:{uid}").into()),
            })
            .map_err(StoreError::from_sink)?;
        }
        Ok(())
    }

    async fn append(
        &mut self,
        mailbox: &Mailbox,
        messages: &[Outgoing<'_>],
    ) -> Result<Vec<Option<(u32, u32)>>> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            self.step("append")?;
            let mut server = self.server.borrow_mut();
            let answer = server.appenduid;
            let data = match server.bare_lf {
                true => crate::message::to_lf(m.data),
                false => m.data.to_vec(),
            };
            let Some(b) = server.boxes.get_mut(&mailbox.raw) else {
                return Err(StoreError::new(
                    Scope::Folder(mailbox.name.clone()),
                    Retry::Never,
                    MemError(format!("no mailbox {}", mailbox.name)),
                ));
            };
            let uid = b.add(data, m.flags.clone(), m.date.map(str::to_string));
            out.push(answer.then_some((b.uidvalidity, uid)));
            drop(server);
            crate::failpoint::hit("upload-after-append")?;
        }
        Ok(out)
    }

    async fn set_flags(&mut self, uids: &[u32], change: Change, flags: &FlagSet) -> Result<()> {
        self.step("set_flags")?;
        let name = self.writable()?;
        let mut server = self.server.borrow_mut();
        let keywords = server.keywords.clone();
        let Some(b) = server.boxes.get_mut(&name) else {
            return Ok(());
        };
        for uid in uids {
            b.modseq += 1;
            if let Some(m) = b.messages.get_mut(uid) {
                m.flags = match change {
                    Change::Add => m.flags.union(flags),
                    Change::Remove => m.flags.minus(flags),
                };
                // What it does not keep, it drops.
                if let Some(allowed) = &keywords {
                    m.flags = m.flags.only_keywords(allowed);
                }
                m.modseq = b.modseq;
            }
        }
        Ok(())
    }

    async fn mark_deleted(&mut self, uids: &[u32]) -> Result<()> {
        if self.lasting() {
            return self
                .set_flags(uids, Change::Add, &FlagSet::parse("T"))
                .await;
        }
        self.step("mark_deleted")?;
        let doomed: Vec<u32> = uids.iter().filter_map(|&n| self.uid_of(n)).collect();
        self.doomed.extend(doomed);
        Ok(())
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        self.step("expunge")?;
        let caps = self.caps();
        match caps.deletes {
            Deletes::Never => return Err(self.missing(Need::ExactDelete, "expunging needs")),
            Deletes::AtClose | Deletes::AtOnce => return Ok(()),
            Deletes::Marked => {}
        }
        let name = self.writable()?;
        let mut server = self.server.borrow_mut();
        for &uid in uids {
            let marked = server
                .boxes
                .get(&name)
                .and_then(|b| b.messages.get(&uid))
                .is_some_and(|m| m.flags.has('T'));
            if marked {
                server.expunge(&name, uid);
            }
        }
        Ok(())
    }

    async fn refresh(&mut self) -> Result<()> {
        self.step("refresh")
    }

    async fn close(mut self) -> Result<()> {
        self.step("close")?;
        let doomed = std::mem::take(&mut self.doomed);
        if let Some((name, _)) = &self.open {
            let mut server = self.server.borrow_mut();
            for uid in doomed {
                server.expunge(name, uid);
            }
        }
        Ok(())
    }
}
