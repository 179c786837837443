//! Tests of the engines without a server: an in-memory store ([`crate::store::mem`]) on one
//! side and a real temporary Maildir and state database on the other, an account as a config
//! file would give it, and snapshots of both sides to compare runs by.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::config::{Account, Channel, Config};
use crate::maildir::{Folder, account_maildir};
use crate::report::Output;
use crate::store::mem::{MemConnect, MemServer};

/// Messages by folder, each as (flags, text with LF line ends), sorted: what a user compares
/// two mailboxes by.
pub type Snapshot = BTreeMap<String, Vec<(String, String)>>;

/// A throwaway account: a Maildir and state under a temporary directory, and a server.
pub struct Lab {
    /// Holds the files.
    pub dir: tempfile::TempDir,
    /// The server.
    pub server: Rc<RefCell<MemServer>>,
    /// The account (`[accounts.lab]` plus `extra`).
    pub account: Account,
    /// Its channel (`[channels.lab]` plus what was given), if any.
    pub channel: Option<Channel>,
}

impl Lab {
    /// An account of the server's kind (POP3 where its numbers last one session, else IMAP)
    /// with these account and channel settings.
    pub fn new(server: MemServer, account: &str, channel: &str) -> Lab {
        let protocol = if server.caps.lasting_uids {
            "imap"
        } else {
            "pop3"
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let maildir = dir.path().join("Mail");
        let mut text = format!(
            "state_dir = \"{}\"\n[accounts.lab]\nprotocol = \"{protocol}\"\nhost = \"mem\"\nuser = \"me\"\n\
             password_env = \"UNUSED\"\nmaildir = \"{}\"\n{account}\n",
            dir.path().join("state").display(),
            maildir.display()
        );
        if protocol == "imap" {
            text.push_str(&format!("[channels.lab]\naccount = \"lab\"\n{channel}\n"));
        }
        let config =
            Config::parse(&text, &dir.path().join("config.toml"), 0o600).expect("a valid config");
        Lab {
            account: config.accounts["lab"].clone(),
            channel: config.channels.get("lab").cloned(),
            server: server.shared(),
            dir,
        }
    }

    /// Connections to the server.
    pub fn connect(&self) -> MemConnect {
        MemConnect(self.server.clone())
    }

    /// The account's state database.
    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state/lab.sqlite")
    }

    /// Delivers a message into a local folder (`[]`: INBOX) as a mail reader would find it.
    pub fn deliver(&self, folder: &[&str], data: &[u8], flags: &str) {
        let f = self.local(folder);
        let mut tmp = f.create_tmp().expect("tmp");
        std::io::Write::write_all(&mut tmp, data).expect("write");
        let written = tmp.finish(None).expect("finish");
        f.commit(vec![(written, flags.to_string())])
            .expect("commit");
    }

    /// A local folder (`[]`: INBOX), created if missing.
    pub fn local(&self, folder: &[&str]) -> Folder {
        let levels: Vec<&str> = if folder.is_empty() {
            vec!["INBOX"]
        } else {
            folder.to_vec()
        };
        account_maildir(&self.account)
            .open_folder(&levels)
            .expect("a local folder")
    }

    /// What the Maildir holds: folder name -> sorted (flag letters, bytes).
    pub fn near(&self) -> Snapshot {
        let maildir = account_maildir(&self.account);
        let mut folders = maildir.list_folders().expect("folders");
        folders.push(vec!["INBOX".to_string()]);
        let mut out = Snapshot::new();
        for components in folders {
            let levels: Vec<&str> = components.iter().map(String::as_str).collect();
            let folder = Folder::at(maildir.folder_path(&levels).expect("a path"));
            if !folder.exists() {
                continue;
            }
            let mut messages: Vec<(String, String)> = folder
                .list()
                .expect("a listing")
                .iter()
                .filter_map(|e| {
                    let stored = folder.read(e).expect("readable")?;
                    let text = String::from_utf8_lossy(&stored.data).into_owned();
                    Some((stored.entry.flags().to_string(), text))
                })
                .collect();
            messages.sort();
            out.insert(components.join("/"), messages);
        }
        out
    }

    /// What the server holds (see [`server_snapshot`]).
    pub fn far(&self) -> Snapshot {
        server_snapshot(&self.server.borrow())
    }
}

/// What a server holds: mailbox -> sorted (flags, text with LF line ends).
pub fn server_snapshot(server: &MemServer) -> Snapshot {
    server
        .contents()
        .into_iter()
        .map(|(name, messages)| {
            let mut messages: Vec<(String, String)> = messages
                .into_iter()
                .map(|(flags, data)| {
                    let text = String::from_utf8_lossy(&crate::message::to_lf(&data)).into_owned();
                    (flags, text)
                })
                .collect();
            messages.sort();
            (name, messages)
        })
        .collect()
}

/// Output that prints nothing but warnings and errors.
pub fn quiet() -> Output {
    Output {
        quiet: true,
        json: false,
        verbose: 0,
        summaries: false,
    }
}

/// Runs a future on a current-thread runtime, as the binary does.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// A test message (LF line ends) with a Message-ID made from `tag` and `i`.
pub fn message(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: a{i}@example.org\nSubject: {tag} {i}\nMessage-ID: <{tag}.{i}@example.org>\n\n{tag} body {i}\n.leading dot\n"
    )
    .into_bytes()
}

/// Crashes the run `setup` prepares after each of its steps in turn (a fresh copy each time),
/// reruns it, and checks that both sides end as after an uninterrupted run. Returns the steps
/// crashed at.
pub fn crash_after_every_step(
    setup: impl Fn() -> Lab,
    run: impl Fn(&Lab) -> anyhow::Result<()>,
) -> Vec<String> {
    crash_matrix(setup, run, |lab| (lab.near(), lab.far()))
}

/// [`crash_after_every_step`] for any setup, compared by `snapshot`.
pub fn crash_matrix<L, S: PartialEq + std::fmt::Debug>(
    setup: impl Fn() -> L,
    run: impl Fn(&L) -> anyhow::Result<()>,
    snapshot: impl Fn(&L) -> S,
) -> Vec<String> {
    let reference = setup();
    run(&reference).unwrap();
    let want = snapshot(&reference);
    let mut crashed_at = Vec::new();
    for n in 1.. {
        let lab = setup();
        crate::failpoint::crash_after(Some(n));
        let result = run(&lab);
        let (_, crashed) = crate::failpoint::steps();
        crate::failpoint::crash_after(None);
        let Some(step) = crashed else {
            result.unwrap();
            assert_eq!(snapshot(&lab), want, "a run that was not crashed");
            break;
        };
        // A crash in a step whose failure a run may ignore (ending a session) can end well.
        drop(result);
        run(&lab).unwrap_or_else(|e| panic!("rerun after a crash at step {n} ({step}): {e:#}"));
        assert_eq!(
            snapshot(&lab),
            want,
            "after a crash at step {n} ({step}) and a rerun"
        );
        crashed_at.push(step);
    }
    crashed_at
}
