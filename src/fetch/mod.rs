//! `mailferry fetch`: one-way transfer from a server into a Maildir.

pub mod imap;
pub mod plan;
pub mod pop3;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Mode;

/// Per-run options of a fetch, from the account and the command line.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Keep or delete.
    pub mode: Mode,
    /// Keep mode: delete this long after first fetch.
    pub delete_after: Option<Duration>,
    /// At most this many messages per run.
    pub max_messages: Option<u64>,
    /// Skip messages larger than this.
    pub max_size: Option<u64>,
    /// Change nothing anywhere.
    pub dry_run: bool,
    /// POP3: QUIT (committing deletions) and reconnect after this many deletions.
    pub commit_every: usize,
    /// The account's state database (read in dry runs).
    pub state_path: PathBuf,
}

/// The current unix time; `MAILFERRY_NOW` (unix seconds) overrides it, for tests of
/// time-based policies such as delete_after.
pub fn now() -> i64 {
    if let Some(t) = std::env::var("MAILFERRY_NOW")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
