//! One lock per account, so two runs (say, two cron jobs) never work on one mailbox at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::exit::{Classify, Exit};
use crate::state::StateError;

/// Another run holds the lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "account {account} is in use by another mailferry run{holder}; try again when it has finished (lock: {path})"
)]
pub struct Locked {
    account: String,
    holder: String,
    path: PathBuf,
}

impl Classify for Locked {
    fn exit(&self) -> Exit {
        Exit::Locked
    }
}

/// A held account lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct AccountLock {
    _file: File,
}

/// Takes the lock of `account` in `dir`; while another run holds it, tries again every 100 ms
/// for up to `wait` (None: fails at once with [`Locked`]).
pub async fn acquire_within(
    dir: &Path,
    account: &str,
    wait: Option<std::time::Duration>,
) -> anyhow::Result<AccountLock> {
    let deadline = wait.map(|w| std::time::Instant::now() + w);
    loop {
        match acquire(dir, account) {
            Err(e)
                if e.is::<Locked>() && deadline.is_some_and(|d| std::time::Instant::now() < d) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Takes the lock of `account` in `dir`, failing at once with [`Locked`] when it is held.
pub fn acquire(dir: &Path, account: &str) -> anyhow::Result<AccountLock> {
    crate::state::create_private_dir(dir)?;
    let path = dir.join(format!("{account}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|source| StateError::Io {
            action: "open lock file",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(Locked {
                account: account.to_string(),
                holder,
                path,
            }
            .into());
        }
        Err(TryLockError::Error(source)) => {
            return Err(StateError::Io {
                action: "lock",
                path,
                source,
            }
            .into());
        }
    }
    // The pid is only for the message a second run prints.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(AccountLock { _file: file })
}
