//! Password and token sources: command, environment, file, OS keyring, or the (private) config
//! file.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::{Account, AuthMech, ConfigError, PasswordSource};
use crate::keyring::{self, KeyringError};

/// A password or token; never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What an account logs in with, for every connection of a run: a password is read once; an
/// OAuth access token is asked for again at each login, since tokens expire (often within the
/// hour) and a long run opens connections late or reconnects.
pub struct Credentials<'a> {
    account: &'a Account,
    password: Option<Secret>,
}

impl<'a> Credentials<'a> {
    /// Reads a password now (so that a bad source fails before any connection).
    pub async fn new(account: &'a Account) -> Result<Credentials<'a>, ConfigError> {
        let oauth = matches!(account.auth, AuthMech::Xoauth2 | AuthMech::Oauthbearer);
        let password = if oauth {
            None
        } else {
            Some(password(account).await?)
        };
        Ok(Credentials { account, password })
    }

    /// The secret for the next login.
    pub async fn secret(&self) -> Result<Secret, ConfigError> {
        match &self.password {
            Some(p) => Ok(p.clone()),
            None => password(self.account).await,
        }
    }
}

/// Reads the password of an account from its source.
pub async fn password(account: &Account) -> Result<Secret, ConfigError> {
    let name = &account.name;
    let value = match &account.password {
        PasswordSource::Missing => {
            return Err(ConfigError::config(format!(
                "account {name} ({}) has no password: set password_command, password_env, password_file or password_keyring \
                 (or --password-env / --password-command with a URL)",
                account.origin
            )));
        }
        PasswordSource::Inline(p) => p.clone(),
        PasswordSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => v,
            _ => {
                return Err(ConfigError::config(format!(
                    "account {name}: the password environment variable {var} is not set or empty"
                )));
            }
        },
        PasswordSource::Command(cmd) => run_command(name, cmd, account.timeout).await?,
        PasswordSource::Keyring(entry) => keyring::get(entry).map_err(|e| match e {
            KeyringError::NoEntry => ConfigError::config(format!(
                "account {name}: the keyring holds no password under service {}, username {entry}; \
                 store one with: mailferry keyring store {name}",
                keyring::SERVICE
            )),
            other => ConfigError::config(format!("account {name}: {other}")),
        })?,
        PasswordSource::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| {
                ConfigError::config(format!(
                    "account {name}: cannot read password_file {}: {e}",
                    path.display()
                ))
            })?;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(ConfigError::config(format!(
                    "account {name}: refusing password_file {} because others can read it (mode {:03o}); \
                     run chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::config(format!(
                    "account {name}: cannot read password_file {}: {e}",
                    path.display()
                ))
            })?;
            first_line(&text).to_string()
        }
    };
    if value.is_empty() || value.contains(['\r', '\n', '\0']) {
        return Err(ConfigError::config(format!(
            "account {name}: the password from its source is empty"
        )));
    }
    Ok(Secret(value))
}

/// Runs a password command in a process group of its own, in a thread of its own (the other
/// accounts of the run go on meanwhile), for at most `timeout`: a command that hangs (a
/// pinentry nobody answers, a stuck network call) is killed with everything it started.
async fn run_command(name: &str, cmd: &str, timeout: Duration) -> Result<String, ConfigError> {
    let failed = |what: String| ConfigError::config(format!("account {name}: {what}"));
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(|e| failed(format!("cannot run password_command: {e}")))?;
    let mut group = Group(Some(child.id() as libc::pid_t));
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(output)) => {
            group.0 = None;
            output.map_err(|e| failed(format!("password_command: {e}")))?
        }
        Ok(Err(_)) => return Err(failed("password_command: its waiter went away".into())),
        Err(_) => {
            return Err(failed(format!(
                "password_command did not finish within {} (the account's timeout); killed it",
                crate::units::format_duration(timeout)
            )));
        }
    };
    if !output.status.success() {
        return Err(failed(format!(
            "password_command failed ({})",
            output.status
        )));
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| failed("password_command printed something that is not UTF-8".into()))?;
    Ok(first_line(&text).to_string())
}

/// A password command's process group, killed whole when dropped before the command ended
/// (a timeout, or a signal that stopped the run while it waited).
struct Group(Option<libc::pid_t>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // Not reaped yet (its waiter is still waiting), so the group is still its own.
            // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

/// Reads a password from standard input: asked for with echo off on a terminal, else the
/// first line (for `printf %s "$PW" | mailferry keyring store ACCOUNT`).
pub fn read_password(prompt: &str) -> Result<Secret, ConfigError> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    // Echo goes off before the prompt shows: what is typed after it is never on the screen.
    let echo_off = stdin.is_terminal().then(|| {
        let guard = EchoOff::new();
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        guard
    });
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(guard) = echo_off {
        drop(guard);
        eprintln!();
    }
    read.map_err(|e| ConfigError::usage(format!("cannot read the password: {e}")))?;
    let value = first_line(&line);
    if value.is_empty() || value.contains('\0') {
        return Err(ConfigError::usage("no password given on standard input"));
    }
    Ok(Secret(value.to_string()))
}

/// Terminal echo switched off until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: termios is plain data; tcgetattr fills it or fails and leaves it unused.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return EchoOff(None);
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a termios from tcgetattr with one flag changed.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) };
        EchoOff(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, saved) };
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end_matches('\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adhoc::{Adhoc, account};

    fn with(source: PasswordSource) -> Account {
        let mut a = account(
            "pop3s://me@h",
            &Adhoc {
                maildir: Some("/tmp/x".into()),
                ..Adhoc::default()
            },
        )
        .unwrap();
        a.password = source;
        a
    }

    fn password(a: &Account) -> Result<Secret, ConfigError> {
        crate::testkit::block_on(super::password(a))
    }

    #[test]
    fn a_hanging_password_command_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut a = with(PasswordSource::Command(format!(
            "sleep 30 & echo $! > {}; wait",
            pid_file.display()
        )));
        a.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let e = password(&a).unwrap_err().to_string();
        assert!(e.contains("did not finish within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild is gone too, or a zombie its new parent has not reaped yet.
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            matches!(state, None | Some('Z' | 'X'))
        });
        assert!(gone, "sleep {pid} outlived its password command");
    }

    #[test]
    fn sources() {
        let a = with(PasswordSource::Command("printf 'pw\\nrest'".into()));
        assert_eq!(password(&a).unwrap().expose(), "pw");
        let a = with(PasswordSource::Command("exit 3".into()));
        assert!(password(&a).unwrap_err().to_string().contains("failed"));
        let a = with(PasswordSource::Missing);
        assert!(
            password(&a)
                .unwrap_err()
                .to_string()
                .contains("has no password")
        );
        let a = with(PasswordSource::Env("MAILFERRY_TEST_SURELY_UNSET".into()));
        assert!(password(&a).unwrap_err().to_string().contains("not set"));
        assert_eq!(format!("{:?}", Secret::new("x".into())), "<redacted>");
    }

    #[test]
    fn password_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let a = with(PasswordSource::File(path.clone()));
        let e = password(&a).unwrap_err().to_string();
        assert!(
            e.contains("others can read") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(password(&a).unwrap().expose(), "s3cret");
    }
}
