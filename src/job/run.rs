//! Running resolved jobs: each under its account's lock, with its run recorded in state and
//! retried after temporary failures; the engines behind the store seam do the work.

use std::time::Duration;

use anyhow::Context;

use super::classify;
use super::resolve::{Job, MigrateJob, MigrateSource, Setup};
use crate::cli::KeyringAction;
use crate::config::{Account, Channel, Protocol};
use crate::date::now;
use crate::exit::{Classify, Exit};
use crate::failures::Failure;
use crate::fetch::{self, FetchOptions, Outcome};
use crate::migrate::{self, MigrateOutcome, SourceConnect};
use crate::report::{self, Output};
use crate::state::State;
use crate::store::imap::ImapConnect;
use crate::store::pop3::Pop3Connect;
use crate::store::{Connect, Store};
use crate::sync::{self, SyncOptions, SyncOutcome};
use crate::{credentials, lock};

/// The longest wait between two tries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// What a job that went well reports at the end.
pub enum Done {
    /// A fetch's summary.
    Fetched(Outcome),
    /// A sync's summary.
    Synced(SyncOutcome),
    /// A migration's summary.
    Migrated(MigrateOutcome),
    /// Shown as it ran (check, list, status, keyring).
    Shown,
}

impl Done {
    /// Prints the summary line.
    pub fn report(&self, out: &Output) {
        match self {
            Done::Fetched(o) => out.summary(o),
            Done::Synced(o) => out.summary(o),
            Done::Migrated(o) => out.summary(o),
            Done::Shown => {}
        }
    }

    /// The summary's fields, for `--json` (none for what was shown as it ran).
    pub fn fields(&self) -> Option<serde_json::Value> {
        match self {
            Done::Fetched(o) => serde_json::to_value(o).ok(),
            Done::Synced(o) => serde_json::to_value(o).ok(),
            Done::Migrated(o) => serde_json::to_value(o).ok(),
            Done::Shown => None,
        }
    }

    /// The folders and messages that failed while the rest went on.
    pub fn failures(&self) -> &[Failure] {
        match self {
            Done::Fetched(o) => &o.failed,
            Done::Synced(o) => &o.failed,
            Done::Migrated(o) => &o.failed,
            Done::Shown => &[],
        }
    }

    /// What went wrong although the job went through: each failed folder or message, or what
    /// `--verify` found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.failures().iter().map(Failure::to_string).collect();
        if let Done::Migrated(o) = self {
            problems.extend(o.mismatch().map(|m| m.to_string()));
        }
        problems
    }

    /// The exit code of a job that went through: 2 where a folder or message failed, else 1
    /// where `--verify` found messages missing or different (the higher code wins).
    pub fn exit(&self) -> Exit {
        if !self.failures().is_empty() {
            return Exit::Partial;
        }
        match self {
            Done::Migrated(o) => o.mismatch().map_or(Exit::Ok, |m| m.exit()),
            _ => Exit::Ok,
        }
    }
}

/// How a run that ended in an error is recorded.
fn failed(e: &anyhow::Error) -> &'static str {
    match e.is::<crate::signals::Interrupted>() {
        true => "interrupted",
        false => "failed",
    }
}

/// How a run that went through is recorded: "partial" (with what failed) where a folder or
/// message failed.
fn finished(failed: &[Failure]) -> (&'static str, Option<String>) {
    if failed.is_empty() {
        return ("ok", None);
    }
    let what: Vec<String> = failed.iter().map(Failure::to_string).collect();
    ("partial", Some(what.join("; ")))
}

/// Runs `attempt`, and again after a temporary failure (exit code 75) as often as the account
/// allows: first after `retry_delay`, then twice as long each time, or as long as the server
/// suggested. Everything a run does is recorded as it goes, so a retry repeats nothing.
async fn with_retries<T>(
    account: &Account,
    out: &Output,
    attempt: impl AsyncFn() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut delay = account.retry_delay;
    let mut tries = 0;
    loop {
        let result = attempt().await;
        let Err(e) = &result else { return result };
        if classify(e) != Exit::TempFail {
            return result;
        }
        if tries == account.retries {
            return match tries {
                0 => result,
                n => result.with_context(|| format!("gave up after {} attempts", n + 1)),
            };
        }
        tries += 1;
        let wait = suggested_backoff(&format!("{e:#}"))
            .unwrap_or(delay)
            .min(MAX_RETRY_DELAY);
        out.warn(&format!(
            "{}: {e:#}; trying again in {} ({tries} of {})",
            account.name,
            crate::units::format_duration(wait),
            account.retries
        ));
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// The wait a server asked for, as Office 365 words it: "Suggested Backoff Time: N
/// milliseconds".
fn suggested_backoff(text: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    let rest = &lower[lower.find("suggested backoff time:")? + "suggested backoff time:".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: u64 = digits.parse().ok()?;
    Some(Duration::from_millis(n))
}

impl Setup {
    async fn lock(&self, name: &str) -> anyhow::Result<lock::AccountLock> {
        lock::acquire_within(&self.state_dir, name, self.wait_lock).await
    }

    /// Runs one job.
    pub async fn run(&self, job: Job, out: &Output) -> anyhow::Result<Done> {
        match job {
            Job::Fetch { account, opts } => {
                let o = with_retries(&account, out, async || {
                    self.fetch(&account, &opts, out).await
                })
                .await?;
                Ok(Done::Fetched(o))
            }
            Job::Sync {
                channel,
                account,
                opts,
            } => {
                let o = with_retries(&account, out, async || {
                    self.sync(&channel, &account, &opts, out).await
                })
                .await?;
                Ok(Done::Synced(o))
            }
            Job::Migrate(m) => Ok(Done::Migrated(self.migrate(&m, out).await?)),
            Job::Check(account) => check(&account, out).await.map(|()| Done::Shown),
            Job::List(account) => list(&account, out).await.map(|()| Done::Shown),
            Job::Status { name } => self.status(&name, out).map(|()| Done::Shown),
            Job::Keyring {
                account,
                entry,
                action,
            } => keyring(&account, &entry, action, out).map(|()| Done::Shown),
        }
    }

    async fn fetch(
        &self,
        account: &Account,
        opts: &FetchOptions,
        out: &Output,
    ) -> anyhow::Result<Outcome> {
        let _lock = self.lock(&account.name).await?;
        let run_fetch = async |state: Option<&mut State>| match account.protocol {
            Protocol::Pop3 => {
                let connect = Pop3Connect::new(account).await?;
                fetch::pop3::run(&connect, account, opts, state, out).await
            }
            Protocol::Imap => {
                fetch::imap::run(&ImapConnect::new(account).await?, account, opts, out).await
            }
        };
        if opts.dry_run {
            return run_fetch(None).await;
        }
        let mut state = State::open(&opts.state_path)?;
        let run = state.run_started(now())?;
        let result = crate::signals::interruptible(run_fetch(Some(&mut state))).await;
        let recorded = match &result {
            Ok(o) => {
                let (status, error) = finished(&o.failed);
                state.run_finished(run, now(), status, o.fetched, o.deleted, error.as_deref())
            }
            Err(e) => state.run_finished(run, now(), failed(e), 0, 0, Some(&format!("{e:#}"))),
        };
        let outcome = result?;
        recorded?;
        Ok(outcome)
    }

    async fn sync(
        &self,
        channel: &Channel,
        account: &Account,
        opts: &SyncOptions,
        out: &Output,
    ) -> anyhow::Result<SyncOutcome> {
        let _lock = self.lock(&account.name).await?;
        let state_path = self.state_path(&account.name);
        let connect = ImapConnect::new(account).await?;
        if opts.dry_run {
            // Plan against a copy, so that nothing of the dry run reaches the state.
            let (mut copy, _dir) = State::dry_run_copy(&state_path)?;
            return sync::run(&connect, channel, account, opts, &mut copy, out).await;
        }
        let mut state = State::open(&state_path)?;
        let run = state.run_started(now())?;
        let syncing = sync::run(&connect, channel, account, opts, &mut state, out);
        let result = crate::signals::interruptible(syncing).await;
        let recorded = match &result {
            Ok(o) => {
                let (status, error) = finished(&o.failed);
                let (downloaded, deleted) = (o.downloaded, o.far_deleted);
                state.run_finished(run, now(), status, downloaded, deleted, error.as_deref())
            }
            Err(e) => state.run_finished(run, now(), failed(e), 0, 0, Some(&format!("{e:#}"))),
        };
        let outcome = result?;
        recorded?;
        Ok(outcome)
    }

    async fn migrate(&self, m: &MigrateJob, out: &Output) -> anyhow::Result<MigrateOutcome> {
        let _lock = self.lock(&m.name).await?;
        let source = match &m.source {
            MigrateSource::Maildir(path) => SourceConnect::Maildir(path.clone()),
            MigrateSource::Account(a) => SourceConnect::account(a).await?,
        };
        let connect = ImapConnect::new(&m.target).await?;
        let state_path = self.state_path(&m.name);
        let (state, _dir) = if m.opts.dry_run {
            let (copy, dir) = State::dry_run_copy(&state_path)?;
            (copy, Some(dir))
        } else {
            (State::open(&state_path)?, None)
        };
        let connections = m.target.connections;
        migrate::run(&source, &connect, connections, state, &m.opts, out).await
    }

    /// `mailferry status`: what state knows of an account.
    fn status(&self, name: &str, out: &Output) -> anyhow::Result<()> {
        let path = self.state_path(name);
        match State::open_existing(&path)? {
            None => report::never_run(out, name, &path),
            Some(state) => report::status(out, name, &state.summary()?),
        }
        Ok(())
    }
}

/// `mailferry check`: connect, TLS, login, capabilities, counts; nothing moves.
async fn check(account: &Account, out: &Output) -> anyhow::Result<()> {
    let check = match account.protocol {
        Protocol::Imap => {
            let mut store = ImapConnect::new(account).await?.connect().await?;
            let folders = store.mailboxes().await?;
            let check = report::Check {
                account,
                fingerprint: store.fingerprint(),
                greeting: None,
                capabilities: store.notable_capabilities(),
                folders: Some(folders.mailboxes.len()),
                namespace: Some(store.namespace().await?),
                messages: None,
                warnings: folders.skipped.iter().map(ToString::to_string).collect(),
            };
            store.close().await?;
            check
        }
        Protocol::Pop3 => {
            let mut store = Pop3Connect::new(account).await?.connect().await?;
            let sizes = store.sizes().await?;
            let check = report::Check {
                account,
                fingerprint: store.fingerprint(),
                greeting: Some(store.greeting()),
                capabilities: store.notable_capabilities(),
                folders: None,
                namespace: None,
                messages: Some((sizes.len(), sizes.iter().sum())),
                warnings: Vec::new(),
            };
            store.close().await?;
            check
        }
    };
    check.show(out);
    Ok(())
}

/// `mailferry list`: folders with message counts.
async fn list(account: &Account, out: &Output) -> anyhow::Result<()> {
    if account.protocol == Protocol::Pop3 {
        let mut store = Pop3Connect::new(account).await?.connect().await?;
        let n = store.sizes().await?.len() as u64;
        store.close().await?;
        report::folder_counts(out, "INBOX", n, None);
        return Ok(());
    }
    let mut store = ImapConnect::new(account).await?.connect().await?;
    let folders = store.mailboxes().await?;
    for folder in &folders.mailboxes {
        let (messages, unseen) = store.counts(folder).await?;
        report::folder_counts(out, &folder.name, messages, Some(unseen));
    }
    store.close().await?;
    for warning in folders.skipped {
        out.warn(&format!("{}: {warning}", account.name));
    }
    Ok(())
}

/// `mailferry keyring store|delete ACCOUNT`: the entry its password_keyring names.
fn keyring(
    account: &Account,
    entry: &str,
    action: KeyringAction,
    out: &Output,
) -> anyhow::Result<()> {
    let what = format!(
        "the keyring entry service {}, username {entry}",
        crate::keyring::SERVICE
    );
    let done = match action {
        KeyringAction::Store => {
            let password =
                credentials::read_password(&format!("Password for {} ({entry}): ", account.name))?;
            crate::keyring::set(entry, password.expose()).map(|()| "stored")
        }
        KeyringAction::Delete => crate::keyring::delete(entry).map(|()| "deleted"),
    };
    let done = done.map_err(|e| crate::config::ConfigError::config(format!("{what}: {e}")))?;
    out.info(&format!("{}: {done} {what}", account.name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggested_backoff_is_read() {
        assert_eq!(
            suggested_backoff(
                "NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 92415 milliseconds"
            ),
            Some(Duration::from_millis(92_415))
        );
        assert_eq!(suggested_backoff("NO [UNAVAILABLE] try later"), None);
        assert_eq!(suggested_backoff("suggested backoff time: soon"), None);
    }
}
