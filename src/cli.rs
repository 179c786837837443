//! Command-line definitions (clap derive); also the source of man/ and completions/.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Layout, Tls};

macro_rules! examples {
    () => {
        "Examples:
  mailferry fetch                          fetch every POP3/IMAP account in the config
  mailferry fetch old-isp --delete         fetch, then delete on the server what is safely on disk
  mailferry fetch pop3s://me@pop.example.org --maildir ~/Mail/backup --password-env POP_PASS
  mailferry migrate --from old-isp --to new-imap --verify   POP3 mailbox into an IMAP server
  mailferry check old-isp                  connect, TLS, login; no mail moves
  mailferry keyring store work             put work's password into the OS keyring (password_keyring)
  mailferry status                         what the state database knows"
    };
}

const AFTER_HELP: &str = concat!(examples!(), "

Exit codes: 0 ok (also \"no new mail\"), 1 migrate --verify found differences, 64 usage, 65 safety stop, 69 not available, 70 internal error,
74 local I/O, 75 temporary failure (retry), 76 protocol error, 77 authentication or
certificate, 78 configuration, 80 account locked by another run.");

const AFTER_LONG_HELP: &str = concat!(
    examples!(),
    "

Configuration ($XDG_CONFIG_HOME/mailferry/config.toml, or -c FILE), one table per account:
  [accounts.NAME]
  protocol = \"pop3\" | \"imap\"
  host, port            server (port defaults to 995/110 or 993/143 by tls)
  tls = \"implicit\" | \"starttls\" | \"none\"   (none also needs allow_plaintext = true)
  tls_fingerprint = \"sha256:HEX\"   accept exactly this server certificate (self-signed servers)
  user                  login name
  auth = \"auto\" | \"plain\" | \"login\" | \"user\" | \"apop\" | \"xoauth2\" | \"oauthbearer\"
  password_command | password_env | password_file | password_keyring | password
                        one password source (OAuth: the access token); a plain password needs a
                        config file only its owner can read, a password_file likewise;
                        password_keyring = \"ENTRY\" reads the OS keyring (`keyring` feature)
  maildir               Maildir root (~ expanded, relative to the config file's directory)
  layout = \"maildir++\" | \"fs\"   sub-folders as .A.B (Dovecot's default) or A/B
  inbox = \"root\" | \"folder\"   IMAP INBOX at the Maildir root (default) or in a folder
  compress = \"auto\" | \"always\" | \"never\"   IMAP COMPRESS=DEFLATE (auto: not on loopback)
  mode = \"keep\" | \"delete\"   leave mail on the server, or delete it once it is safe on disk
  delete_after = \"30d\"   keep mode: delete messages this long after they were first fetched
  max_messages, max_size (\"20M\"), timeout (\"60s\"), folders (IMAP patterns),
  connections (IMAP connections at once, default 3),
  retries (default 2), retry_delay (\"10s\", doubled each time)   after temporary failures
  [channels.NAME]       account, sync = both|pull|push, expunge = none|far|near|both, create
Top level: state_dir, log_file. Every key: mailferry.toml(5).
Unknown keys are errors; every error names the file, line and key.
State: $XDG_STATE_HOME/mailferry/ACCOUNT.sqlite (one SQLite database and one lock per account).

Exit codes:
  0   success, including \"no new mail\"
  1   migrate --verify found messages missing or different on the target
  2   some folders or messages failed (each named, in the server's words); the rest was done
  64  bad command line
  65  a safety check stopped the run: a folder emptied while state knows many of its messages
  69  the server refused a command (in its own words) or lacks what it needs
  70  internal error (a bug: please report it)
  74  local I/O error (disk full, read-only Maildir, state database)
  75  temporary failure: network, timeout, server busy or mailbox in use; retry later
  76  the server broke the protocol
  77  authentication failed or server certificate not trusted
  78  configuration error (file, key or password source)
  80  another mailferry run holds this account's lock
  130 stopped by SIGINT (Ctrl-C): what was durable is kept, the rest comes next run
  143 stopped by SIGTERM, as SIGINT"
);

const SYNC_SEMANTICS: &str = "Sync semantics (mbsync's model; state pairs each server message (UIDVALIDITY, UID)
with a Maildir unique name and remembers the flags last synced):
  New messages      copied to the other side where `sync` allows, with flags and date (file time
                    <-> INTERNALDATE). Uploads are recorded before APPEND and paired by APPENDUID,
                    or found again by size and SHA-256 (no UIDPLUS, or after a crash): never twice.
  Flags             \\Seen S, \\Answered R, \\Flagged F, \\Draft D, \\Deleted T, and keywords (letters
                    a-z named in the folder's dovecot-keywords file, Dovecot's convention, at most
                    26) merge one by one against the last synced flags: a flag changed on one side
                    takes that side's value; at a first pairing the union is taken.
  Deletions         carried out only where `expunge` allows (none, far, near, both; default none);
                    otherwise the copy left is marked \\Deleted (server) or T (Maildir).
  Safety            a folder empty on one side while state knows messages there stops the run
                    (exit 65) and changes nothing anywhere.
  Folders           created in the Maildir by default (`create` includes near), on the server with
                    create = far or both; deleting folders is not propagated.
  UIDVALIDITY       a change is recovered by re-matching Message-ID and size (said in the output).
  Speed             with QRESYNC a run with no changes costs one SELECT per folder.";

/// mailferry: fetch mail over POP3 and sync it over IMAP into durable Maildir folders.
#[derive(Debug, Parser)]
#[command(
    name = "mailferry",
    version,
    after_help = AFTER_HELP,
    after_long_help = AFTER_LONG_HELP,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file [default: $XDG_CONFIG_HOME/mailferry/config.toml]
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print nothing but errors (off a terminal a run already prints only warnings and errors)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more: -v prints the summary lines even off a terminal, and on standard error the
    /// connection and plan of each account; -vv adds a protocol trace (credentials never shown)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print the summary as JSON on standard output
    #[arg(long, global = true)]
    pub json: bool,

    /// Accounts fetched at once [default: 4]
    #[arg(short, long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,

    /// When another run holds an account, wait for it up to DURATION ("30s", "10m") instead of
    /// exiting with code 80
    #[arg(long, global = true, value_name = "DURATION")]
    pub wait_lock: Option<String>,

    /// Also append what the run reports (summaries, warnings, errors; details under -v) to FILE,
    /// each line with its time, whether or not anything is printed
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Directory of the state databases and locks [default: $XDG_STATE_HOME/mailferry]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch mail one way, from POP3 or IMAP into a Maildir
    Fetch(FetchArgs),
    /// Two-way sync of IMAP folders with a Maildir (channels of the config)
    #[command(after_long_help = SYNC_SEMANTICS)]
    Sync(SyncArgs),
    /// Copy a POP3, IMAP or Maildir store into an IMAP server
    Migrate(MigrateArgs),
    /// Connect, negotiate TLS and log in; no mail moves
    Check(CheckArgs),
    /// List the folders of an account with message counts
    List(ListArgs),
    /// Show what the state database knows about accounts
    Status(StatusArgs),
    /// Store or delete an account's password in the OS keyring (password_keyring)
    Keyring(KeyringArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The command's name, as typed (the `kind` of its `--json` objects).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Fetch(_) => "fetch",
            Command::Sync(_) => "sync",
            Command::Migrate(_) => "migrate",
            Command::Check(_) => "check",
            Command::List(_) => "list",
            Command::Status(_) => "status",
            Command::Keyring(_) => "keyring",
            Command::Completions { .. } => "completions",
        }
    }
}

/// An account given on the command line instead of the config file (ad-hoc mode).
#[derive(Debug, Args, Default, Clone)]
pub struct AdhocArgs {
    /// Maildir to deliver into (needed when an account is given as a URL)
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<PathBuf>,

    /// Take the password from this environment variable
    #[arg(long, value_name = "VAR", conflicts_with = "password_command")]
    pub password_env: Option<String>,

    /// Take the password from the first line this shell command prints
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,

    /// TLS mode [default: implicit for pop3s/imaps, starttls for pop3/imap]
    #[arg(long, value_enum, value_name = "MODE")]
    pub tls: Option<TlsArg>,

    /// Accept the server's certificate by its SHA-256 fingerprint ("sha256:HEX")
    #[arg(long, value_name = "PIN")]
    pub tls_fingerprint: Option<String>,

    /// Allow a password over a connection without TLS (needs --tls none)
    #[arg(long)]
    pub allow_plaintext: bool,

    /// Maildir folder layout
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub layout: Option<LayoutArg>,
}

/// `--tls` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TlsArg {
    /// TLS from the first byte (pop3s, imaps)
    Implicit,
    /// Plain connection upgraded with STLS / STARTTLS
    Starttls,
    /// No TLS at all (needs --allow-plaintext)
    None,
}

impl From<TlsArg> for Tls {
    fn from(t: TlsArg) -> Tls {
        match t {
            TlsArg::Implicit => Tls::Implicit,
            TlsArg::Starttls => Tls::Starttls,
            TlsArg::None => Tls::None,
        }
    }
}

/// `--layout` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    /// Maildir++: sub-folders as .Sub.Folder (Dovecot's default)
    #[value(name = "maildir++")]
    MaildirPlusPlus,
    /// Nested directories: Sub/Folder
    Fs,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::MaildirPlusPlus => Layout::MaildirPlusPlus,
            LayoutArg::Fs => Layout::Fs,
        }
    }
}

/// `mailferry fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Account names from the config, or URLs such as pop3s://user@host [default: all accounts]
    #[arg(value_name = "ACCOUNT|URL")]
    pub accounts: Vec<String>,

    /// Leave mail on the server (the default)
    #[arg(long, conflicts_with_all = ["delete", "delete_after"])]
    pub keep: bool,

    /// Delete each message on the server once it is safely on disk
    #[arg(long, conflicts_with = "delete_after")]
    pub delete: bool,

    /// Keep mail on the server, deleting it this long after it was first fetched (e.g. 30d)
    #[arg(long, value_name = "AGE")]
    pub delete_after: Option<String>,

    /// Fetch at most this many messages in this run
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,

    /// Skip (and leave on the server) messages larger than this (e.g. 20M)
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,

    /// Show what would be fetched or deleted; change nothing anywhere
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub adhoc: AdhocArgs,
}

/// `mailferry sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Channel names from the config [default: all channels]
    pub channels: Vec<String>,
    /// Only copy changes from the server to the Maildir
    #[arg(long, conflicts_with = "push")]
    pub pull: bool,
    /// Only copy changes from the Maildir to the server
    #[arg(long)]
    pub push: bool,
    /// Show what would change; change nothing anywhere
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Take the emptied side of this folder as messages deleted on purpose (repeatable)
    #[arg(long, value_name = "FOLDER")]
    pub allow_empty: Vec<String>,
}

/// `mailferry migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Source: a POP3 or IMAP account name, a URL (pop3s://user@host, imaps://user@host) or a
    /// Maildir directory
    #[arg(long, value_name = "SRC")]
    pub from: String,
    /// Target IMAP account: an account name or a URL (imaps://user@host)
    #[arg(long, value_name = "DST")]
    pub to: String,
    /// Target folder for a POP3 mailbox and for a Maildir's top level
    #[arg(long, value_name = "FOLDER", default_value = "INBOX")]
    pub folder: String,
    /// After copying, compare every message on both sides by SHA-256; exit 1 on a difference
    #[arg(long)]
    pub verify: bool,
    /// Remove from the source what the target confirmed holding (never anything else)
    #[arg(long)]
    pub delete_source: bool,
    /// Show the plan; change nothing anywhere
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Password of a source given as a URL, from this environment variable
    #[arg(long, value_name = "VAR")]
    pub from_password_env: Option<String>,
    /// Password of a source given as a URL, from this shell command
    #[arg(long, value_name = "CMD")]
    pub from_password_command: Option<String>,
    /// Password of a target given as a URL, from this environment variable
    #[arg(long, value_name = "VAR")]
    pub to_password_env: Option<String>,
    /// Password of a target given as a URL, from this shell command
    #[arg(long, value_name = "CMD")]
    pub to_password_command: Option<String>,
}

/// `mailferry check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Account names from the config, or URLs [default: all accounts]
    #[arg(value_name = "ACCOUNT|URL")]
    pub accounts: Vec<String>,
    #[command(flatten)]
    pub adhoc: AdhocArgs,
}

/// `mailferry list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Account name from the config, or a URL
    #[arg(value_name = "ACCOUNT|URL")]
    pub account: String,
    #[command(flatten)]
    pub adhoc: AdhocArgs,
}

/// `mailferry keyring`.
#[derive(Debug, Args)]
pub struct KeyringArgs {
    /// What to do with the account's keyring entry
    #[arg(value_enum)]
    pub action: KeyringAction,
    /// Account name from the config (its password_keyring names the entry)
    #[arg(value_name = "ACCOUNT")]
    pub account: String,
}

/// `mailferry keyring` actions.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyringAction {
    /// Store the password read from standard input (asked for without echo on a terminal)
    Store,
    /// Remove the entry
    Delete,
}

/// `mailferry status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Account names [default: all accounts]
    pub accounts: Vec<String>,
}
