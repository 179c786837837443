//! Test support: the Dovecot harness, a per-test home, and running the built binary.
#![allow(dead_code)]

pub mod dovecot;
pub mod fake_imap;
pub mod fake_pop3;
pub mod proxy;
pub mod schema;
#[cfg(feature = "keyring")]
pub mod secret_service;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use dovecot::{User, dovecot};

/// A throwaway home for one test: config, state and Maildirs live here.
pub struct Env {
    /// Removed when the test ends.
    pub dir: tempfile::TempDir,
    /// Extra environment for every run.
    pub vars: Vec<(String, String)>,
}

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    /// A fresh home.
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            vars: Vec::new(),
        }
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the home.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Where the config file goes by default ($XDG_CONFIG_HOME/mailferry/config.toml).
    pub fn config_path(&self) -> PathBuf {
        self.path("config/mailferry/config.toml")
    }

    /// Writes the config file with mode 0600.
    pub fn config(&self, text: &str) -> PathBuf {
        let path = self.config_path();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Sets an environment variable for every later run.
    pub fn var(&mut self, key: &str, value: &str) {
        self.vars.push((key.to_string(), value.to_string()));
    }

    /// The binary, with this home's environment, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailferry"));
        cmd.args(args)
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env_remove("MAILFERRY_NOW")
            .env_remove("MAILFERRY_FAILPOINT");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run mailferry").into()
    }

    /// Trusts the test server's CA, as a user would with a corporate CA bundle.
    pub fn trust_test_ca(&mut self) {
        let ca = dovecot().ca.display().to_string();
        self.var("SSL_CERT_FILE", &ca);
    }
}

/// `cmd` run under a pseudo-terminal by script(1) (util-linux), with the same environment.
pub fn under_terminal(cmd: &Command) -> Command {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    script
}

/// The contents of every message in a Maildir folder (new/ and cur/), sorted.
pub fn local_messages(folder: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = fs::read_dir(folder.join(sub)) {
            for e in entries.flatten() {
                out.push(fs::read(e.path()).unwrap());
            }
        }
    }
    out.sort();
    out
}

/// Delivers messages into a Maildir++ folder (`[]` for INBOX) with the given flags, as a mail
/// reader's own copies.
pub fn deliver_local(maildir: &Path, folder: &[&str], messages: &[(Vec<u8>, &str)]) {
    let md = mailferry::maildir::Maildir::new(maildir, mailferry::config::Layout::MaildirPlusPlus);
    let f = md.open_folder(folder).unwrap();
    for (m, flags) in messages {
        let mut tmp = f.create_tmp().unwrap();
        tmp.write_crlf(m).unwrap();
        f.commit(vec![(tmp.finish(None).unwrap(), flags.to_string())])
            .unwrap();
    }
}

/// The names of files in a Maildir sub-directory.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A deterministic test message (LF line ends, as in a Maildir) of roughly `size` bytes, with
/// lines that start with dots to exercise dot-stuffing.
pub fn message(tag: &str, i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{i}@example.org\nTo: rcpt@example.org\nSubject: {tag} message {i}\nMessage-ID: <{tag}.{i}@example.org>\n\n.leading dot\n..two dots\n.\n"
    )
    .into_bytes();
    let mut line = 0;
    while m.len() < size {
        m.extend_from_slice(format!("{tag} {i} line {line} {}\n", "x".repeat(60)).as_bytes());
        line += 1;
    }
    m
}

/// A POP3 account section for the test server.
pub fn pop3_account(name: &str, user: &User, tls: &str, maildir: &Path, extra: &str) -> String {
    let server = dovecot();
    let port = match tls {
        "implicit" => server.pop3s,
        _ => server.pop3,
    };
    let plain = if tls == "none" {
        "allow_plaintext = true\n"
    } else {
        ""
    };
    format!(
        "[accounts.{name}]\nprotocol = \"pop3\"\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\n{plain}user = \"{}\"\npassword_command = \"printf %s '{}'\"\nmaildir = \"{}\"\n{extra}\n",
        user.name,
        user.password,
        maildir.display()
    )
}

/// Asserts that two sets of messages are equal (as multisets), with a short message when not.
#[track_caller]
pub fn assert_same(actual: Vec<Vec<u8>>, expected: &[Vec<u8>], what: &str) {
    let mut expected = expected.to_vec();
    expected.sort();
    if actual == expected {
        return;
    }
    let missing = expected.iter().filter(|m| !actual.contains(m)).count();
    let extra = actual.iter().filter(|m| !expected.contains(m)).count();
    let dupes = actual.len() - {
        let mut d = actual.clone();
        d.dedup();
        d.len()
    };
    let named: Vec<String> = actual
        .windows(2)
        .filter(|w| w[0] == w[1])
        .filter_map(|w| crate::support::header_line(&w[0], "Message-ID"))
        .take(5)
        .collect();
    panic!(
        "{what}: {} messages, expected {}; {missing} missing, {extra} unexpected, {dupes} duplicates {named:?}",
        actual.len(),
        expected.len()
    );
}

/// A test home whose config has one POP3 account `acct` (implicit TLS) for `user`, with its
/// Maildir at `Mail`.
pub fn pop3_env(user: &User, extra: &str) -> Env {
    let mut env = Env::new();
    env.trust_test_ca();
    env.config(&pop3_account(
        "acct",
        user,
        "implicit",
        &env.path("Mail"),
        extra,
    ));
    env
}

/// An IMAP account section for the test server.
pub fn imap_account(name: &str, user: &User, tls: &str, maildir: &Path, extra: &str) -> String {
    let server = dovecot();
    let port = match tls {
        "implicit" => server.imaps,
        _ => server.imap,
    };
    let plain = if tls == "none" {
        "allow_plaintext = true\n"
    } else {
        ""
    };
    format!(
        "[accounts.{name}]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\n{plain}user = \"{}\"\npassword_command = \"printf %s '{}'\"\nmaildir = \"{}\"\n{extra}\n",
        user.name,
        user.password,
        maildir.display()
    )
}

/// Every message file of a Maildir folder: (contents, flags after ":2,", modification time).
pub fn local_files(folder: &Path) -> Vec<(Vec<u8>, String, std::time::SystemTime)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = fs::read_dir(folder.join(sub)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let flags = name
                    .split_once(":2,")
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                let meta = e.metadata().unwrap();
                out.push((fs::read(e.path()).unwrap(), flags, meta.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The file of the message with this Message-ID in a Maildir folder.
pub fn find_local(folder: &Path, message_id: &str) -> Option<PathBuf> {
    let needle = format!("Message-ID: {message_id}\n");
    ["new", "cur"]
        .iter()
        .filter_map(|d| fs::read_dir(folder.join(d)).ok())
        .flat_map(|d| d.flatten())
        .map(|e| e.path())
        .find(|p| fs::read(p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(&needle)))
}

/// Sets a local message's flags as a mail reader does: rename into cur/ with `:2,FLAGS`.
pub fn set_local_flags(path: &Path, flags: &str) -> PathBuf {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let unique = name.split(":2,").next().unwrap().to_string();
    let target = path
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("cur")
        .join(format!("{unique}:2,{flags}"));
    fs::rename(path, &target).unwrap();
    target
}

/// The flags of a local message (letters after `:2,`).
pub fn local_flags(path: &Path) -> String {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .split_once(":2,")
        .map(|(_, f)| f.to_string())
        .unwrap_or_default()
}

/// A sync channel section for an account.
pub fn channel(name: &str, account: &str, extra: &str) -> String {
    format!("[channels.{name}]\naccount = \"{account}\"\n{extra}\n")
}

/// The value of a header line in a test message.
pub fn header_line(message: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(message)
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

/// Every path under `dir` (none if it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}
