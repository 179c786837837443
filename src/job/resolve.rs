//! Resolution: the config, the command line's overrides and the environment's knobs become a
//! list of jobs, each complete (what to run against what, with which options), before
//! anything connects. Errors here are the user's: a name that is not configured, an option
//! that does not parse.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::adhoc::{self, Adhoc};
use crate::cli::{AdhocArgs, Cli, Command, FetchArgs, KeyringAction, MigrateArgs, SyncArgs};
use crate::config::{
    self, Account, Channel, Config, ConfigError, Mode, PasswordSource, Protocol, SyncDirection,
};
use crate::fetch::FetchOptions;
use crate::migrate::MigrateOptions;
use crate::sync::SyncOptions;
use crate::text::sanitize;
use crate::units::{parse_duration, parse_size};

/// POP3 deletions committed (session ended, then a new one) at least this often in delete mode.
const COMMIT_EVERY: usize = 1000;
/// Accounts worked on at once unless `--jobs` says otherwise.
const DEFAULT_JOBS: usize = 4;

/// What the environment says beyond the config and the command line (test knobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knobs {
    /// POP3 delete mode: deletions per session (`MAILFERRY_COMMIT_EVERY`).
    pub commit_every: usize,
}

impl Knobs {
    /// The knobs the process environment sets.
    pub fn from_env() -> Knobs {
        Knobs {
            commit_every: std::env::var("MAILFERRY_COMMIT_EVERY")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or(COMMIT_EVERY),
        }
    }
}

/// What every command needs: the config (if any) and where state lives.
#[derive(Debug)]
pub struct Setup {
    /// The config, if there is a file.
    pub config: Option<Config>,
    /// Where the config was looked for.
    pub config_path: Option<PathBuf>,
    /// Where state databases and locks live.
    pub state_dir: PathBuf,
    /// Accounts worked on at once.
    pub jobs: usize,
    /// How long to wait for another run's lock.
    pub wait_lock: Option<Duration>,
}

/// One job, ready to run.
#[derive(Debug)]
pub enum Job {
    /// Fetch one account.
    Fetch {
        /// The account.
        account: Box<Account>,
        /// Its options, overrides applied.
        opts: FetchOptions,
    },
    /// Sync one channel.
    Sync {
        /// The channel.
        channel: Box<Channel>,
        /// Its account.
        account: Box<Account>,
        /// Direction and dry run.
        opts: SyncOptions,
    },
    /// A migration.
    Migrate(Box<MigrateJob>),
    /// Connect and log in.
    Check(Box<Account>),
    /// Folders with counts.
    List(Box<Account>),
    /// What state knows of an account.
    Status {
        /// The account name.
        name: String,
    },
    /// Store or delete an account's keyring entry.
    Keyring {
        /// The account.
        account: Box<Account>,
        /// The entry (username under mailferry's service).
        entry: String,
        /// What to do.
        action: KeyringAction,
    },
}

/// Where a migration reads from.
#[derive(Debug)]
pub enum MigrateSource {
    /// A Maildir tree.
    Maildir(PathBuf),
    /// A POP3 or IMAP account.
    Account(Box<Account>),
}

/// A migration, resolved.
#[derive(Debug)]
pub struct MigrateJob {
    /// The source.
    pub source: MigrateSource,
    /// The IMAP target.
    pub target: Account,
    /// The options.
    pub opts: MigrateOptions,
    /// The name its lock and state go by.
    pub name: String,
}

/// A job or why it cannot be made, with the account or channel it is for ("" for none).
pub type Resolved = (String, anyhow::Result<Job>);

impl Setup {
    /// Reads the config (the `-c` file, or the default one if it exists) and the global
    /// options.
    pub fn new(cli: &Cli) -> Result<Setup, ConfigError> {
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

    /// The state database of an account (or migration).
    pub fn state_path(&self, name: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.sqlite"))
    }

    /// The jobs a command stands for.
    pub fn resolve(&self, command: &Command, knobs: Knobs) -> Vec<Resolved> {
        let whole = |r: anyhow::Result<Vec<Resolved>>| match r {
            Ok(jobs) => jobs,
            Err(e) => vec![(String::new(), Err(e))],
        };
        match command {
            Command::Fetch(args) => whole(self.fetches(args, knobs)),
            Command::Check(args) => whole(
                self.accounts(&args.accounts, &self.no_maildir(&args.adhoc))
                    .map(|a| each(a, |a| Ok(Job::Check(Box::new(a)))))
                    .map_err(Into::into),
            ),
            Command::List(args) => whole(
                self.accounts(
                    std::slice::from_ref(&args.account),
                    &self.no_maildir(&args.adhoc),
                )
                .map(|a| each(a, |a| Ok(Job::List(Box::new(a)))))
                .map_err(Into::into),
            ),
            Command::Sync(args) => whole(self.syncs(args)),
            Command::Migrate(args) => vec![(String::new(), self.migration(args))],
            Command::Status(args) => whole(self.statuses(&args.accounts)),
            Command::Keyring(args) => vec![(
                args.account.clone(),
                self.keyring(&args.account, args.action),
            )],
            Command::Completions { .. } => Vec::new(),
        }
    }

    fn config_name(&self) -> std::path::Display<'_> {
        self.config_path
            .as_deref()
            .unwrap_or(Path::new("config"))
            .display()
    }

    /// Whether the config has an account or a channel of this name.
    fn knows(&self, name: &str) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.accounts.contains_key(name) || c.channels.contains_key(name))
    }

    /// The error for a name the config does not have.
    fn unknown(&self, name: &str) -> ConfigError {
        let names = self.config.as_ref().map(|c| known(c.accounts.keys()));
        ConfigError::usage(format!(
            "there is no account \"{}\" in {} (known: {})",
            sanitize(name, 100),
            self.config_name(),
            names.as_deref().unwrap_or("none")
        ))
    }

    /// The accounts named on the command line (names or URLs), or all configured ones.
    pub fn accounts(
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
                    self.config_name()
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
                config
                    .accounts
                    .get(w)
                    .cloned()
                    .ok_or_else(|| self.unknown(w))
            })
            .collect()
    }

    fn fetches(&self, args: &FetchArgs, knobs: Knobs) -> anyhow::Result<Vec<Resolved>> {
        let accounts = self.accounts(&args.accounts, &args.adhoc)?;
        Ok(each(accounts, |account| {
            let state_path = self.state_path(&account.name);
            let opts = fetch_options(&account, args, state_path, knobs)?;
            Ok(Job::Fetch {
                account: Box::new(account),
                opts,
            })
        }))
    }

    fn syncs(&self, args: &SyncArgs) -> anyhow::Result<Vec<Resolved>> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| ConfigError::config("sync needs a config file with [channels]"))?;
        let names: Vec<String> = if args.channels.is_empty() {
            config.channels.keys().cloned().collect()
        } else {
            args.channels.clone()
        };
        if names.is_empty() {
            return Err(ConfigError::config("no [channels] are configured").into());
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
            allow_empty: args.allow_empty.clone(),
        };
        let mut jobs = Vec::new();
        for name in names {
            let Some(channel) = config.channels.get(&name) else {
                let e = ConfigError::usage(format!(
                    "there is no channel \"{}\" (known: {})",
                    sanitize(&name, 100),
                    known(config.channels.keys())
                ));
                jobs.push((String::new(), Err(e.into())));
                continue;
            };
            // The config's validation made sure every channel's account exists.
            let Some(account) = config.accounts.get(&channel.account) else {
                continue;
            };
            let job = Job::Sync {
                channel: Box::new(channel.clone()),
                account: Box::new(account.clone()),
                opts: opts.clone(),
            };
            jobs.push((name, Ok(job)));
        }
        Ok(jobs)
    }

    /// The ad-hoc options of a command that delivers into no Maildir (`check`, `list`, a
    /// migration): a URL account needs no `--maildir` there.
    fn no_maildir(&self, adhoc: &AdhocArgs) -> AdhocArgs {
        AdhocArgs {
            maildir: adhoc
                .maildir
                .clone()
                .or_else(|| Some(self.state_dir.clone())),
            ..adhoc.clone()
        }
    }

    /// One account, by name or URL (with these password sources for a URL).
    fn one_account(
        &self,
        word: &str,
        password_env: &Option<String>,
        password_command: &Option<String>,
    ) -> Result<Account, ConfigError> {
        // A migration delivers into no Maildir.
        let adhoc = self.no_maildir(&AdhocArgs {
            password_env: password_env.clone(),
            password_command: password_command.clone(),
            ..AdhocArgs::default()
        });
        let mut accounts = self.accounts(&[word.to_string()], &adhoc)?;
        Ok(accounts.remove(0))
    }

    fn migration(&self, args: &MigrateArgs) -> anyhow::Result<Job> {
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
        let (source, source_name) = if !adhoc::is_url(&args.from) && !known_account {
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
            (
                MigrateSource::Maildir(path),
                format!("maildir-{}", &digest[..12]),
            )
        } else {
            let a = self.one_account(
                &args.from,
                &args.from_password_env,
                &args.from_password_command,
            )?;
            let name = a.name.clone();
            (MigrateSource::Account(Box::new(a)), name)
        };
        let (from, folders) = match &source {
            MigrateSource::Maildir(_) => (args.from.clone(), vec!["*".to_string()]),
            MigrateSource::Account(a) => (source_name.clone(), a.folders.clone()),
        };
        let opts = MigrateOptions {
            from,
            to: target.name.clone(),
            inbox: args.folder.split('/').map(str::to_string).collect(),
            folders,
            delete_source: args.delete_source,
            dry_run: args.dry_run,
            verify: args.verify,
        };
        let name = format!("migrate-{source_name}-to-{}", target.name);
        Ok(Job::Migrate(Box::new(MigrateJob {
            source,
            target,
            opts,
            name,
        })))
    }

    fn statuses(&self, names: &[String]) -> anyhow::Result<Vec<Resolved>> {
        let names: Vec<String> = if names.is_empty() {
            let config = self.config.as_ref().ok_or_else(|| {
                ConfigError::config("no config file: name the accounts, or use -c FILE")
            })?;
            config.accounts.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        Ok(names
            .into_iter()
            .map(|name| {
                let job = if !config::valid_account_name(&name) {
                    Err(ConfigError::usage(format!(
                        "\"{}\" is not an account name",
                        sanitize(&name, 100)
                    ))
                    .into())
                } else if self.knows(&name) || self.state_path(&name).exists() {
                    Ok(Job::Status { name: name.clone() })
                } else {
                    Err(self.unknown(&name).into())
                };
                (sanitize(&name, 100), job)
            })
            .collect())
    }

    fn keyring(&self, name: &str, action: KeyringAction) -> anyhow::Result<Job> {
        let account = self
            .accounts(&[name.to_string()], &AdhocArgs::default())?
            .remove(0);
        let PasswordSource::Keyring(entry) = &account.password else {
            return Err(ConfigError::config(format!(
                "account {} does not take its password from the keyring; \
                 set password_keyring = \"{}@{}\" in its table ({})",
                account.name, account.user, account.host, account.origin
            ))
            .into());
        };
        Ok(Job::Keyring {
            entry: entry.clone(),
            account: Box::new(account),
            action,
        })
    }
}

/// One job per account, named after it.
fn each(accounts: Vec<Account>, job: impl Fn(Account) -> anyhow::Result<Job>) -> Vec<Resolved> {
    accounts
        .into_iter()
        .map(|a| (a.name.clone(), job(a)))
        .collect()
}

/// Names for an error message: "a, b, c".
fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.cloned().collect::<Vec<_>>().join(", ")
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
    knobs: Knobs,
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
        commit_every: knobs.commit_every,
        state_path,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::exit::{Classify, Exit};

    const KNOBS: Knobs = Knobs { commit_every: 7 };

    const CONFIG: &str = r#"
[accounts.pop]
protocol = "pop3"
host = "pop.example.org"
user = "me"
password_env = "PW"
maildir = "/tmp/mf-test/pop"
mode = "delete"
max_size = "1M"

[accounts.work]
protocol = "imap"
host = "imap.example.org"
user = "me"
password_env = "PW"
maildir = "/tmp/mf-test/work"
folders = ["*", "!Spam"]

[channels.laptop]
account = "work"
sync = "pull"
"#;

    fn setup(dir: &Path) -> Setup {
        let path = dir.join("config.toml");
        Setup {
            config: Some(Config::parse(CONFIG, &path, 0o600).unwrap()),
            config_path: Some(path),
            state_dir: dir.join("state"),
            jobs: 4,
            wait_lock: None,
        }
    }

    fn resolve(setup: &Setup, line: &[&str]) -> Vec<Resolved> {
        let cli =
            Cli::try_parse_from(std::iter::once("mailferry").chain(line.iter().copied())).unwrap();
        setup.resolve(&cli.command, KNOBS)
    }

    fn error(r: &Resolved) -> (String, Exit) {
        let e = r.1.as_ref().expect_err("an error");
        let code = e
            .downcast_ref::<ConfigError>()
            .map_or(Exit::Software, ConfigError::exit);
        (e.to_string(), code)
    }

    #[test]
    fn fetch_takes_every_account_with_the_command_line_over_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let setup = setup(dir.path());
        let jobs = resolve(&setup, &["fetch"]);
        let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pop", "work"]);
        let Ok(Job::Fetch { opts, account }) = &jobs[0].1 else {
            panic!("{:?}", jobs[0].1)
        };
        assert_eq!(account.name, "pop");
        assert_eq!(
            (opts.mode, opts.max_size, opts.commit_every),
            (Mode::Delete, Some(1 << 20), 7)
        );
        assert_eq!(opts.state_path, dir.path().join("state/pop.sqlite"));
        let jobs = resolve(
            &setup,
            &["fetch", "pop", "--keep", "--max-size", "2k", "--dry-run"],
        );
        let Ok(Job::Fetch { opts, .. }) = &jobs[0].1 else {
            panic!()
        };
        assert_eq!(
            (opts.mode, opts.max_size, opts.dry_run),
            (Mode::Keep, Some(2048), true)
        );
        let jobs = resolve(&setup, &["fetch", "pop", "--delete-after", "30d"]);
        let Ok(Job::Fetch { opts, .. }) = &jobs[0].1 else {
            panic!()
        };
        assert_eq!(opts.mode, Mode::Keep);
        assert_eq!(opts.delete_after, Some(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn bad_names_and_values_are_usage_errors_that_say_what_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let setup = setup(dir.path());
        let (text, code) = error(&resolve(&setup, &["fetch", "nosuch"])[0]);
        assert_eq!(code, Exit::Usage);
        assert!(
            text.contains("no account \"nosuch\"") && text.contains("known: pop, work"),
            "{text}"
        );
        let (text, code) = error(&resolve(&setup, &["fetch", "pop", "--max-size", "lots"])[0]);
        assert_eq!(code, Exit::Usage);
        assert!(text.starts_with("--max-size"), "{text}");
        let (text, code) = error(&resolve(&setup, &["sync", "nosuch"])[0]);
        assert_eq!(code, Exit::Usage);
        assert!(text.contains("known: laptop"), "{text}");
        let (text, code) = error(&resolve(&setup, &["status", "../x"])[0]);
        assert_eq!(code, Exit::Usage);
        assert!(text.contains("not an account name"), "{text}");
        let (text, code) = error(&resolve(&setup, &["keyring", "store", "work"])[0]);
        assert_eq!(code, Exit::Config);
        assert!(text.contains("password_keyring"), "{text}");
    }

    #[test]
    fn sync_channels_take_their_account_and_the_direction_flag() {
        let dir = tempfile::tempdir().unwrap();
        let setup = setup(dir.path());
        let jobs = resolve(&setup, &["sync", "--push"]);
        assert_eq!(jobs.len(), 1);
        let Ok(Job::Sync {
            channel,
            account,
            opts,
        }) = &jobs[0].1
        else {
            panic!("{:?}", jobs[0].1)
        };
        assert_eq!(
            (channel.name.as_str(), account.name.as_str()),
            ("laptop", "work")
        );
        assert_eq!(opts.direction, Some(SyncDirection::Push));
        let without = Setup {
            config: None,
            ..setup
        };
        let (text, code) = error(&resolve(&without, &["sync"])[0]);
        assert_eq!(code, Exit::Config);
        assert!(text.contains("[channels]"), "{text}");
    }

    #[test]
    fn a_migration_source_is_an_account_a_url_or_a_maildir() {
        let dir = tempfile::tempdir().unwrap();
        let setup = setup(dir.path());
        let jobs = resolve(&setup, &["migrate", "--from", "pop", "--to", "work"]);
        let Ok(Job::Migrate(m)) = &jobs[0].1 else {
            panic!("{:?}", jobs[0].1)
        };
        assert!(matches!(&m.source, MigrateSource::Account(a) if a.name == "pop"));
        assert_eq!(m.name, "migrate-pop-to-work");
        assert_eq!(m.opts.inbox, ["INBOX"]);
        let maildir = dir.path().join("Mail");
        std::fs::create_dir(&maildir).unwrap();
        let from = maildir.to_str().unwrap();
        let jobs = resolve(
            &setup,
            &[
                "migrate",
                "--from",
                from,
                "--to",
                "work",
                "--folder",
                "Old/Inbox",
            ],
        );
        let Ok(Job::Migrate(m)) = &jobs[0].1 else {
            panic!("{:?}", jobs[0].1)
        };
        assert!(matches!(&m.source, MigrateSource::Maildir(p) if p == &maildir));
        assert!(m.name.starts_with("migrate-maildir-") && m.name.ends_with("-to-work"));
        assert_eq!(
            (m.opts.inbox.clone(), m.opts.folders.clone()),
            (
                vec!["Old".to_string(), "Inbox".into()],
                vec!["*".to_string()]
            )
        );
        let (text, _) = error(&resolve(&setup, &["migrate", "--from", "work", "--to", "pop"])[0]);
        assert!(
            text.contains("target of a migration is an IMAP account"),
            "{text}"
        );
        let (text, code) =
            error(&resolve(&setup, &["migrate", "--from", "/no/such", "--to", "work"])[0]);
        assert_eq!(code, Exit::Usage);
        assert!(text.contains("neither a configured account"), "{text}");
    }
}
