//! `mailferry fetch`: one-way transfer from a server into a Maildir.

pub mod imap;
pub mod plan;
pub mod pop3;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::Mode;
use crate::failures::Failure;
use crate::report::Summary;

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
    /// POP3: end the session (carrying deletions out) and reconnect after this many.
    pub commit_every: usize,
    /// The account's state database (read in dry runs).
    pub state_path: PathBuf,
}

/// One message a plan names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// Its number on the server (IMAP UID; POP3 message number).
    pub uid: u32,
    /// Its POP3 identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its size.
    pub size: u64,
}

/// What a fetch will do in one folder: what a dry run shows (`--json`: as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FolderPlan {
    /// The server folder.
    pub folder: String,
    /// Messages to fetch (in delete mode, each is removed from the server once it is safe).
    pub fetch: Vec<Planned>,
    /// Messages fetched before and now due for removal from the server.
    pub delete: Vec<Planned>,
    /// New messages over `max_size`, left on the server.
    pub too_large: Vec<Planned>,
    /// New messages left for a later run by `max_messages`.
    pub deferred: u64,
    /// Messages left on the server as too large by earlier runs that still are.
    #[serde(skip_serializing_if = "is_zero")]
    pub too_large_before: u64,
    /// Skipped by earlier runs and no longer on the server: forgotten.
    #[serde(skip)]
    pub gone: Vec<u32>,
    /// Where the next run's listing may start, when the server tells no UIDNEXT.
    #[serde(skip)]
    pub next_floor: Option<u32>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FolderPlan {
    /// The messages removed from the server when the plan is carried out in `mode`.
    pub fn deleting(&self, mode: Mode) -> impl Iterator<Item = &Planned> {
        let fetched = match mode {
            Mode::Delete => &self.fetch[..],
            Mode::Keep => &[],
        };
        self.delete.iter().chain(fetched)
    }
}

/// The result of one account's fetch.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Account name.
    pub account: String,
    /// Messages delivered into the Maildir.
    pub fetched: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Messages deleted on the server (confirmed).
    pub deleted: u64,
    /// Messages found in the Maildir already (state knew nothing of them) and not fetched.
    pub paired: u64,
    /// New messages over max_size, left on the server.
    pub too_large: u64,
    /// New messages left for a later run by max_messages.
    pub deferred: u64,
    /// Nothing was changed (dry run).
    pub dry_run: bool,
    /// A dry run's plan, folder by folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<FolderPlan>,
    /// Folders that failed while the others were fetched (under `failed` of the job).
    #[serde(skip)]
    pub failed: Vec<Failure>,
    /// The size limit, for the summary.
    #[serde(skip)]
    pub max_size: Option<u64>,
}

impl Outcome {
    /// Adds another partial outcome (one folder's) to this one.
    pub fn add(&mut self, other: &Outcome) {
        self.fetched += other.fetched;
        self.bytes += other.bytes;
        self.deleted += other.deleted;
        self.paired += other.paired;
        self.too_large += other.too_large;
        self.deferred += other.deferred;
        self.plan.extend(other.plan.iter().cloned());
        self.failed.extend(other.failed.iter().cloned());
    }

    /// Counts what a plan will do, as a dry run reports it, and keeps the plan.
    pub fn planned(&mut self, plan: FolderPlan, mode: Mode) {
        self.fetched += plan.fetch.len() as u64;
        self.bytes += plan.fetch.iter().map(|m| m.size).sum::<u64>();
        self.deleted += plan.deleting(mode).count() as u64;
        self.too_large += plan.too_large.len() as u64 + plan.too_large_before;
        self.deferred += plan.deferred;
        self.plan.push(plan);
    }
}

impl Summary for Outcome {
    fn line(&self) -> String {
        let o = self;
        let mut parts = Vec::new();
        let verb = if o.dry_run { "would fetch" } else { "fetched" };
        if o.fetched == 0 && o.deleted == 0 && !o.dry_run {
            let nothing = if o.failed.is_empty() {
                "no new mail"
            } else {
                "nothing fetched"
            };
            parts.push(nothing.to_string());
        } else {
            parts.push(format!(
                "{verb} {} message{} ({})",
                o.fetched,
                plural(o.fetched),
                crate::report::human_bytes(o.bytes)
            ));
            let del = if o.dry_run { "would delete" } else { "deleted" };
            if o.deleted > 0 || o.dry_run {
                parts.push(format!("{del} {} on the server", o.deleted));
            }
        }
        if o.paired > 0 {
            parts.push(format!("{} already in the Maildir, paired", o.paired));
        }
        if o.too_large > 0 {
            let over = o
                .max_size
                .map(|m| format!(" (over {})", crate::report::human_bytes(m)))
                .unwrap_or_default();
            parts.push(format!(
                "{} too large{over}, left on the server",
                o.too_large
            ));
        }
        if o.deferred > 0 {
            parts.push(format!(
                "{} left for the next run (max_messages)",
                o.deferred
            ));
        }
        if !o.failed.is_empty() {
            parts.push(crate::failures::counted(&o.failed));
        }
        format!("{}: {}", o.account, parts.join(", "))
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}
