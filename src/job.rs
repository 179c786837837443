//! Turns the command line and the config into jobs, runs them, and reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use clap::CommandFactory;

use crate::adhoc::{self, Adhoc};
use crate::cli::{
    AdhocArgs, CheckArgs, Cli, Command, FetchArgs, KeyringAction, KeyringArgs, ListArgs,
    MigrateArgs, StatusArgs, SyncArgs,
};
use crate::config::{
    self, Account, Channel, Config, ConfigError, Mode, PasswordSource, Protocol, SyncDirection,
};
use crate::exit::{Classify, Exit};
use crate::fetch::{self, FetchOptions, Outcome, now};
use crate::report::Output;
use crate::state::State;
use crate::store::imap::ImapConnect;
use crate::store::pop3::Pop3Connect;
use crate::store::{Connect, Store};
use crate::sync::{self, SyncOptions, SyncOutcome};
use crate::text::sanitize;
use crate::units::{parse_duration, parse_size};
use crate::{credentials, lock, migrate};

/// Walks an error chain and returns the exit code of the first error that knows its class.
pub fn classify(err: &anyhow::Error) -> Exit {
    macro_rules! known {
        ($cause:expr, $($t:ty),+) => {
            $(if let Some(e) = $cause.downcast_ref::<$t>() {
                return e.exit();
            })+
        };
    }
    for cause in err.chain() {
        known!(
            cause,
            crate::store::StoreError,
            crate::config::ConfigError,
            crate::lock::Locked,
            crate::net::NetError,
            crate::pop3::Pop3Error,
            crate::imap::ImapError,
            crate::state::StateError,
            crate::maildir::MaildirError,
            crate::sync::Refused,
            crate::migrate::Mismatch,
            crate::failpoint::Crash
        );
        // A bare I/O error that reaches the top is local: network errors arrive wrapped in
        // `NetError`, which comes first in the chain.
        if cause.is::<std::io::Error>() {
            return Exit::LocalIo;
        }
    }
    Exit::Software
}

/// POP3 deletions committed (QUIT and reconnect) at least this often in delete mode.
const COMMIT_EVERY: usize = 1000;

/// Runs a parsed command line and returns the exit code; errors are printed to stderr.
pub fn run(cli: Cli) -> Exit {
    let out = Output::new(cli.quiet, cli.json, cli.verbose);
    if let Some(path) = &cli.log_file
        && let Err(code) = open_log(path)
    {
        return code;
    }
    crate::report::set_trace(cli.verbose >= 2 && !cli.quiet);
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "mailferry",
            &mut std::io::stdout(),
        );
        return Exit::Ok;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_error(
                None,
                &anyhow::Error::new(e).context("cannot start the async runtime"),
            );
            return Exit::Software;
        }
    };
    let ctx = match Setup::new(&cli) {
        Ok(ctx) => ctx,
        Err(e) => {
            let e = anyhow::Error::new(e);
            report_error(None, &e);
            return classify(&e);
        }
    };
    if cli.log_file.is_none()
        && let Some(path) = ctx.config.as_ref().and_then(|c| c.log_file.as_ref())
        && let Err(code) = open_log(path)
    {
        return code;
    }
    let results: Vec<(String, anyhow::Result<()>)> = match &cli.command {
        Command::Fetch(args) => runtime.block_on(ctx.fetch(args, &out)),
        Command::Check(args) => runtime.block_on(ctx.check(args, &out)),
        Command::Status(args) => vec![(String::new(), ctx.status(args, &out))],
        Command::Sync(args) => runtime.block_on(ctx.sync(args, &out)),
        Command::Migrate(args) => vec![(String::new(), runtime.block_on(ctx.migrate(args, &out)))],
        Command::List(args) => runtime.block_on(ctx.list(args, &out)),
        Command::Keyring(args) => vec![(args.account.clone(), ctx.keyring(args, &out))],
        Command::Completions { .. } => vec![],
    };
    let mut worst = Exit::Ok;
    for (account, result) in results {
        if let Err(e) = result {
            report_error(
                Some(&account).filter(|a| !a.is_empty()).map(|a| a.as_str()),
                &e,
            );
            worst = worst.max(classify(&e));
        }
    }
    worst
}

/// Opens the log file, or says why it cannot (exit code 74).
fn open_log(path: &Path) -> Result<(), Exit> {
    crate::report::log_to(path).map_err(|e| {
        let e =
            anyhow::Error::new(e).context(format!("cannot open the log file {}", path.display()));
        report_error(None, &e);
        Exit::LocalIo
    })
}

/// Prints an error and its causes to stderr (each cause once).
pub fn report_error(account: Option<&str>, e: &anyhow::Error) {
    let prefix = match account {
        Some(a) => format!("mailferry: {a}: "),
        None => "mailferry: ".to_string(),
    };
    let mut last = e.to_string();
    eprintln!("{prefix}error: {last}");
    crate::report::log(&format!(
        "{}error: {last}",
        account.map(|a| format!("{a}: ")).unwrap_or_default()
    ));
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            eprintln!("  caused by: {text}");
            crate::report::log(&format!("  caused by: {text}"));
        }
        last = text;
    }
}

/// Accounts worked on at once unless `--jobs` says otherwise.
const DEFAULT_JOBS: usize = 4;

/// The longest wait between two tries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

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
            "{}: {e}; trying again in {} ({tries} of {})",
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

/// What every command needs: the config (if any) and where state lives.
struct Setup {
    config: Option<Config>,
    config_path: Option<PathBuf>,
    state_dir: PathBuf,
    jobs: usize,
    wait_lock: Option<Duration>,
}

impl Setup {
    fn new(cli: &Cli) -> Result<Setup, ConfigError> {
        let (config, config_path) = match &cli.config {
            Some(path) => (Some(Config::load(path)?), Some(path.clone())),
            None => match config::default_path() {
                Some(path) if path.exists() => (Some(Config::load(&path)?), Some(path)),
                other => (None, other),
            },
        };
        let state_dir = cli
            .state_dir
            .clone()
            .or_else(|| config.as_ref().and_then(|c| c.state_dir.clone()))
            .or_else(|| {
                config::xdg_dir("XDG_STATE_HOME", ".local/state").map(|d| d.join("mailferry"))
            })
            .ok_or_else(|| {
                ConfigError::config(
                    "cannot tell where to keep state: set $HOME, $XDG_STATE_HOME or --state-dir",
                )
            })?;
        let wait_lock = cli
            .wait_lock
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|m| ConfigError::usage(format!("--wait-lock: {m}")))?;
        Ok(Setup {
            config,
            config_path,
            state_dir,
            jobs: cli.jobs.map_or(DEFAULT_JOBS, usize::from),
            wait_lock,
        })
    }

    /// The accounts named on the command line (names or URLs), or all configured ones.
    fn accounts(
        &self,
        words: &[String],
        adhoc_args: &AdhocArgs,
    ) -> Result<Vec<Account>, ConfigError> {
        let adhoc = to_adhoc(adhoc_args);
        let missing_config = || match &self.config_path {
            Some(p) => format!(
                "no config file at {} (give an account as a URL, or create it)",
                p.display()
            ),
            None => "no config file (give an account as a URL, or use -c FILE)".to_string(),
        };
        if words.is_empty() {
            let config = self
                .config
                .as_ref()
                .ok_or_else(|| ConfigError::config(missing_config()))?;
            if config.accounts.is_empty() {
                return Err(ConfigError::config(format!(
                    "{}: no accounts are configured",
                    self.config_path
                        .as_deref()
                        .unwrap_or(Path::new("config"))
                        .display()
                )));
            }
            return Ok(config.accounts.values().cloned().collect());
        }
        words
            .iter()
            .map(|w| {
                if adhoc::is_url(w) {
                    return adhoc::account(w, &adhoc);
                }
                let config = self
                    .config
                    .as_ref()
                    .ok_or_else(|| ConfigError::usage(missing_config()))?;
                config.accounts.get(w).cloned().ok_or_else(|| {
                    ConfigError::usage(format!(
                        "there is no account \"{}\" in {} (known: {})",
                        sanitize(w, 100),
                        self.config_path
                            .as_deref()
                            .unwrap_or(Path::new("config"))
                            .display(),
                        config
                            .accounts
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect()
    }

    async fn lock(&self, name: &str) -> anyhow::Result<lock::AccountLock> {
        lock::acquire_within(&self.state_dir, name, self.wait_lock).await
    }

    fn state_path(&self, account: &str) -> PathBuf {
        self.state_dir.join(format!("{account}.sqlite"))
    }

    async fn fetch(&self, args: &FetchArgs, out: &Output) -> Vec<(String, anyhow::Result<()>)> {
        let accounts = match self.accounts(&args.accounts, &args.adhoc) {
            Ok(a) => a,
            Err(e) => return vec![(String::new(), Err(e.into()))],
        };
        // Accounts run side by side, at most `jobs` at once; the summary lines come at the
        // end in the order the accounts were named, each failure reported by `run`.
        let indexed: Vec<(usize, Account)> = accounts.into_iter().enumerate().collect();
        let done = crate::join::work_queue(
            (),
            indexed,
            self.jobs,
            async || Ok(()),
            async |_: &mut (), (i, account): (usize, Account)| {
                let result = with_retries(&account, out, async || {
                    self.fetch_account(&account, args, out).await
                })
                .await;
                Ok((i, account.name, result))
            },
            async |_| Ok(()),
        )
        .await;
        let mut done = match done {
            Ok(d) => d,
            Err(e) => return vec![(String::new(), Err(e))],
        };
        done.sort_by_key(|(i, _, _)| *i);
        done.into_iter()
            .map(|(_, name, result)| {
                if let Ok(outcome) = &result {
                    out.summary(outcome);
                }
                (name, result.map(|_| ()))
            })
            .collect()
    }

    async fn fetch_account(
        &self,
        account: &Account,
        args: &FetchArgs,
        out: &Output,
    ) -> anyhow::Result<Outcome> {
        let opts = fetch_options(account, args, self.state_path(&account.name))?;
        let _lock = self.lock(&account.name).await?;
        let run_fetch = async |state: Option<&mut State>| match account.protocol {
            Protocol::Pop3 => {
                let connect = Pop3Connect::new(account)?;
                fetch::pop3::run(&connect, account, &opts, state, out).await
            }
            Protocol::Imap => {
                fetch::imap::run(&ImapConnect::new(account)?, account, &opts, out).await
            }
        };
        if opts.dry_run {
            return run_fetch(None).await;
        }
        let mut state = State::open(&opts.state_path)?;
        let run = state.run_started(now())?;
        let result = run_fetch(Some(&mut state)).await;
        let recorded = match &result {
            Ok(o) => state.run_finished(run, now(), "ok", o.fetched, o.deleted, None),
            Err(e) => state.run_finished(run, now(), "failed", 0, 0, Some(&format!("{e:#}"))),
        };
        let outcome = result?;
        recorded?;
        Ok(outcome)
    }

    async fn check(&self, args: &CheckArgs, out: &Output) -> Vec<(String, anyhow::Result<()>)> {
        let accounts = match self.accounts(&args.accounts, &args.adhoc) {
            Ok(a) => a,
            Err(e) => return vec![(String::new(), Err(e.into()))],
        };
        let mut results = Vec::new();
        for account in accounts {
            let result = check_account(&account, out).await;
            results.push((account.name.clone(), result));
        }
        results
    }

    async fn sync(&self, args: &SyncArgs, out: &Output) -> Vec<(String, anyhow::Result<()>)> {
        let Some(config) = &self.config else {
            return vec![(
                String::new(),
                Err(ConfigError::config("sync needs a config file with [channels]").into()),
            )];
        };
        let names: Vec<String> = if args.channels.is_empty() {
            config.channels.keys().cloned().collect()
        } else {
            args.channels.clone()
        };
        if names.is_empty() {
            return vec![(
                String::new(),
                Err(ConfigError::config("no [channels] are configured").into()),
            )];
        }
        let direction = if args.pull {
            Some(SyncDirection::Pull)
        } else if args.push {
            Some(SyncDirection::Push)
        } else {
            None
        };
        let opts = SyncOptions {
            direction,
            dry_run: args.dry_run,
        };
        let mut results = Vec::new();
        for name in names {
            let Some(channel) = config.channels.get(&name) else {
                let known = config
                    .channels
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                results.push((
                    String::new(),
                    Err(ConfigError::usage(format!(
                        "there is no channel \"{}\" (known: {known})",
                        sanitize(&name, 100)
                    ))
                    .into()),
                ));
                continue;
            };
            let Some(account) = config.accounts.get(&channel.account) else {
                continue;
            };
            let result = with_retries(account, out, async || {
                self.sync_channel(channel, account, &opts, out).await
            })
            .await;
            if let Ok(o) = &result {
                out.summary(o);
            }
            results.push((name, result.map(|_| ())));
        }
        results
    }

    async fn sync_channel(
        &self,
        channel: &Channel,
        account: &Account,
        opts: &SyncOptions,
        out: &Output,
    ) -> anyhow::Result<SyncOutcome> {
        let _lock = self.lock(&account.name).await?;
        let state_path = self.state_path(&account.name);
        let connect = ImapConnect::new(account)?;
        if opts.dry_run {
            // Plan against a copy, so that nothing of the dry run reaches the state.
            let (mut copy, _dir) = State::dry_run_copy(&state_path)?;
            return sync::run(&connect, channel, account, opts, &mut copy, out).await;
        }
        let mut state = State::open(&state_path)?;
        let run = state.run_started(now())?;
        let result = sync::run(&connect, channel, account, opts, &mut state, out).await;
        let recorded = match &result {
            Ok(o) => state.run_finished(run, now(), "ok", o.downloaded, o.far_deleted, None),
            Err(e) => state.run_finished(run, now(), "failed", 0, 0, Some(&format!("{e:#}"))),
        };
        let outcome = result?;
        recorded?;
        Ok(outcome)
    }

    /// One account, by name or URL (with these password sources for a URL).
    fn one_account(
        &self,
        word: &str,
        password_env: &Option<String>,
        password_command: &Option<String>,
    ) -> Result<Account, ConfigError> {
        let adhoc = AdhocArgs {
            // A migration delivers into no Maildir; a URL account still names one.
            maildir: Some(self.state_dir.clone()),
            password_env: password_env.clone(),
            password_command: password_command.clone(),
            ..AdhocArgs::default()
        };
        let mut accounts = self.accounts(&[word.to_string()], &adhoc)?;
        Ok(accounts.remove(0))
    }

    async fn migrate(&self, args: &MigrateArgs, out: &Output) -> anyhow::Result<()> {
        let target =
            self.one_account(&args.to, &args.to_password_env, &args.to_password_command)?;
        if target.protocol != Protocol::Imap {
            return Err(ConfigError::usage(format!(
                "--to {}: the target of a migration is an IMAP account",
                sanitize(&args.to, 100)
            ))
            .into());
        }
        let known_account = self
            .config
            .as_ref()
            .is_some_and(|c| c.accounts.contains_key(&args.from));
        let maildir_source = !adhoc::is_url(&args.from) && !known_account;
        let (source_account, source_name) = if maildir_source {
            let path = PathBuf::from(&args.from);
            if !path.is_dir() {
                return Err(ConfigError::usage(format!(
                    "--from {}: neither a configured account, a URL, nor a Maildir directory",
                    sanitize(&args.from, 100)
                ))
                .into());
            }
            let canonical = path.canonicalize()?;
            let digest = crate::message::sha256_hex(canonical.as_os_str().as_encoded_bytes());
            (None, format!("maildir-{}", &digest[..12]))
        } else {
            let a = self.one_account(
                &args.from,
                &args.from_password_env,
                &args.from_password_command,
            )?;
            let name = a.name.clone();
            (Some(a), name)
        };
        let name = format!("migrate-{source_name}-to-{}", target.name);
        let opts = migrate::MigrateOptions {
            from: if maildir_source {
                args.from.clone()
            } else {
                source_name
            },
            to: target.name.clone(),
            inbox: args.folder.split('/').map(str::to_string).collect(),
            folders: source_account
                .as_ref()
                .map_or_else(|| vec!["*".to_string()], |a| a.folders.clone()),
            delete_source: args.delete_source,
            dry_run: args.dry_run,
            verify: args.verify,
        };
        let _lock = self.lock(&name).await?;
        let source = match &source_account {
            None => migrate::SourceConnect::Maildir(PathBuf::from(&args.from)),
            Some(a) => migrate::SourceConnect::account(a)?,
        };
        let connect = ImapConnect::new(&target)?;
        let state_path = self.state_path(&name);
        let (state, _dir) = if args.dry_run {
            let (copy, dir) = State::dry_run_copy(&state_path)?;
            (copy, Some(dir))
        } else {
            (State::open(&state_path)?, None)
        };
        let outcome =
            migrate::run(&source, &connect, target.connections, state, &opts, out).await?;
        out.summary(&outcome);
        Ok(())
    }

    async fn list(&self, args: &ListArgs, out: &Output) -> Vec<(String, anyhow::Result<()>)> {
        let account = match self.accounts(std::slice::from_ref(&args.account), &args.adhoc) {
            Ok(mut a) => a.remove(0),
            Err(e) => return vec![(String::new(), Err(e.into()))],
        };
        let result = list_account(&account, out).await;
        vec![(account.name, result)]
    }

    fn status(&self, args: &StatusArgs, out: &Output) -> anyhow::Result<()> {
        let names: Vec<String> = if args.accounts.is_empty() {
            let config = self.config.as_ref().ok_or_else(|| {
                ConfigError::config("no config file: name the accounts, or use -c FILE")
            })?;
            config.accounts.keys().cloned().collect()
        } else {
            args.accounts.clone()
        };
        for name in names {
            if !config::valid_account_name(&name) {
                return Err(ConfigError::usage(format!(
                    "\"{}\" is not an account name",
                    sanitize(&name, 100)
                ))
                .into());
            }
            let path = self.state_path(&name);
            let Some(state) = State::open_existing(&path)? else {
                out.info(&format!(
                    "{name}: never run (no state at {})",
                    path.display()
                ));
                continue;
            };
            let s = state.summary()?;
            if out.json {
                let value = serde_json::json!({
                    "account": name,
                    "messages": s.messages,
                    "deleted_on_server": s.deleted,
                    "last_run": s.last_run.as_ref().map(|(t, o, e)| serde_json::json!({"finished": t, "outcome": o, "error": e})),
                    "last_success": s.last_success,
                });
                println!("{value}");
                continue;
            }
            let last = match &s.last_run {
                Some((t, outcome, err)) => format!(
                    "last run {} ({outcome}{})",
                    ago(*t),
                    err.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
                None => "no finished run".to_string(),
            };
            let success = s
                .last_success
                .map(|t| format!(", last success {}", ago(t)))
                .unwrap_or_default();
            out.info(&format!(
                "{name}: {} messages known, {} deleted on the server; {last}{success}",
                s.messages, s.deleted
            ));
        }
        Ok(())
    }
}

impl Setup {
    /// `mailferry keyring store|delete ACCOUNT`: the entry its password_keyring names.
    fn keyring(&self, args: &KeyringArgs, out: &Output) -> anyhow::Result<()> {
        let account = self
            .accounts(std::slice::from_ref(&args.account), &AdhocArgs::default())?
            .remove(0);
        let PasswordSource::Keyring(entry) = &account.password else {
            return Err(ConfigError::config(format!(
                "account {} does not take its password from the keyring; \
                 set password_keyring = \"{}@{}\" in its table ({})",
                account.name, account.user, account.host, account.origin
            ))
            .into());
        };
        let what = format!(
            "the keyring entry service {}, username {entry}",
            crate::keyring::SERVICE
        );
        let done = match args.action {
            KeyringAction::Store => {
                let password = credentials::read_password(&format!(
                    "Password for {} ({entry}): ",
                    account.name
                ))?;
                crate::keyring::set(entry, password.expose()).map(|()| "stored")
            }
            KeyringAction::Delete => crate::keyring::delete(entry).map(|()| "deleted"),
        };
        let done = done.map_err(|e| ConfigError::config(format!("{what}: {e}")))?;
        out.info(&format!("{}: {done} {what}", account.name));
        Ok(())
    }
}

fn ago(t: i64) -> String {
    let secs = (now() - t).max(0);
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn to_adhoc(args: &AdhocArgs) -> Adhoc {
    Adhoc {
        maildir: args.maildir.clone(),
        password_env: args.password_env.clone(),
        password_command: args.password_command.clone(),
        tls: args.tls.map(Into::into),
        tls_fingerprint: args.tls_fingerprint.clone(),
        allow_plaintext: args.allow_plaintext,
        layout: args.layout.map(Into::into),
    }
}

/// The account's settings, overridden by the command line.
fn fetch_options(
    account: &Account,
    args: &FetchArgs,
    state_path: PathBuf,
) -> Result<FetchOptions, ConfigError> {
    let (mode, delete_after) = if args.delete {
        (Mode::Delete, None)
    } else if args.keep {
        (Mode::Keep, None)
    } else if let Some(text) = &args.delete_after {
        let age =
            parse_duration(text).map_err(|m| ConfigError::usage(format!("--delete-after: {m}")))?;
        (Mode::Keep, Some(age))
    } else {
        (account.mode, account.delete_after)
    };
    let max_size = match &args.max_size {
        Some(text) => {
            Some(parse_size(text).map_err(|m| ConfigError::usage(format!("--max-size: {m}")))?)
        }
        None => account.max_size,
    };
    Ok(FetchOptions {
        mode,
        delete_after,
        max_messages: args.max_messages.or(account.max_messages),
        max_size,
        dry_run: args.dry_run,
        commit_every: std::env::var("MAILFERRY_COMMIT_EVERY")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(COMMIT_EVERY),
        state_path,
    })
}

/// `mailferry check` for IMAP: connect, TLS, login, capabilities, folders; nothing moves.
async fn check_imap(account: &Account, out: &Output) -> anyhow::Result<()> {
    let mut store = ImapConnect::new(account)?.connect().await?;
    let folders = store.mailboxes().await?;
    let interesting = [
        "IMAP4REV1",
        "IMAP4REV2",
        "UIDPLUS",
        "CONDSTORE",
        "QRESYNC",
        "LITERAL+",
        "MOVE",
        "IDLE",
        "COMPRESS=DEFLATE",
    ];
    let caps: Vec<&str> = interesting
        .iter()
        .copied()
        .filter(|c| store.capabilities().iter().any(|have| have == c))
        .collect();
    let fingerprint = store.fingerprint();
    store.close().await?;
    if out.json {
        let value = serde_json::json!({
            "account": account.name,
            "server": format!("{}:{}", account.host, account.port),
            "tls_fingerprint": fingerprint.map(|f| f.to_string()),
            "capabilities": caps,
            "folders": folders.mailboxes.len(),
        });
        println!("{value}");
        return Ok(());
    }
    let name = &account.name;
    out.info(&format!(
        "{name}: connected to {}:{}",
        account.host, account.port
    ));
    match fingerprint {
        Some(fp) => out.info(&format!("{name}: TLS certificate {fp}")),
        None => out.info(&format!("{name}: no TLS (plaintext allowed by the config)")),
    }
    out.info(&format!(
        "{name}: logged in as {}; capabilities: {}",
        account.user,
        caps.join(", ")
    ));
    out.info(&format!("{name}: {} folders", folders.mailboxes.len()));
    for warning in folders.skipped {
        out.warn(&format!("{name}: {warning}"));
    }
    Ok(())
}

/// `mailferry list`: folders with message counts.
async fn list_account(account: &Account, out: &Output) -> anyhow::Result<()> {
    if account.protocol == Protocol::Pop3 {
        let mut store = Pop3Connect::new(account)?.connect().await?;
        let n = store.sizes().await?.len();
        store.close().await?;
        out.info(&format!(
            "INBOX: {n} message{}",
            if n == 1 { "" } else { "s" }
        ));
        return Ok(());
    }
    let mut store = ImapConnect::new(account)?.connect().await?;
    let folders = store.mailboxes().await?;
    for folder in &folders.mailboxes {
        let (messages, unseen) = store.counts(folder).await?;
        if out.json {
            println!(
                "{}",
                serde_json::json!({"folder": folder.name, "messages": messages, "unseen": unseen})
            );
        } else {
            out.info(&format!(
                "{}: {messages} message{} ({unseen} unseen)",
                sanitize(&folder.name, 200),
                if messages == 1 { "" } else { "s" }
            ));
        }
    }
    store.close().await?;
    for warning in folders.skipped {
        out.warn(&format!("{}: {warning}", account.name));
    }
    Ok(())
}

/// `mailferry check`: connect, TLS, login, capabilities, message count; nothing moves.
async fn check_account(account: &Account, out: &Output) -> anyhow::Result<()> {
    if account.protocol == Protocol::Imap {
        return check_imap(account, out).await;
    }
    let mut store = Pop3Connect::new(account)?.connect().await?;
    let listing = store.sizes().await?;
    let bytes: u64 = listing.iter().sum();
    let greeting = sanitize(store.session().client.greeting(), 200);
    let caps = store.session().caps.clone();
    let fingerprint = store.session().fingerprint;
    store.close().await?;
    let mut names = Vec::new();
    for (on, name) in [
        (caps.uidl, "UIDL"),
        (caps.top, "TOP"),
        (caps.pipelining, "PIPELINING"),
        (caps.resp_codes, "RESP-CODES"),
    ] {
        if on {
            names.push(name.to_string());
        }
    }
    if !caps.sasl.is_empty() {
        names.push(format!("SASL {}", caps.sasl.join(" ")));
    }
    if out.json {
        let value = serde_json::json!({
            "account": account.name,
            "server": format!("{}:{}", account.host, account.port),
            "tls_fingerprint": fingerprint.map(|f| f.to_string()),
            "greeting": greeting,
            "capabilities": names,
            "messages": listing.len(),
            "bytes": bytes,
        });
        println!("{value}");
        return Ok(());
    }
    out.info(&format!(
        "{}: connected to {}:{} ({greeting})",
        account.name, account.host, account.port
    ));
    if let Some(fp) = fingerprint {
        out.info(&format!("{}: TLS certificate {fp}", account.name));
    } else {
        out.info(&format!(
            "{}: no TLS (plaintext allowed by the config)",
            account.name
        ));
    }
    out.info(&format!(
        "{}: logged in as {}; capabilities: {}",
        account.name,
        account.user,
        names.join(", ")
    ));
    out.info(&format!(
        "{}: {} message{} ({}) on the server",
        account.name,
        listing.len(),
        if listing.len() == 1 { "" } else { "s" },
        crate::report::human_bytes(bytes)
    ));
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
