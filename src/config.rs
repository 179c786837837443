//! The configuration: TOML file or ad-hoc URL -> validated [`Config`] (no clap types past here).

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::exit::{Classify, Exit};
use crate::net::Fingerprint;
use crate::units::{parse_duration, parse_size};

/// A configuration or usage mistake, with the place it was found.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    message: String,
    exit: Exit,
}

impl ConfigError {
    /// A mistake in the configuration (file, key, password source).
    pub fn config(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            exit: Exit::Config,
        }
    }

    /// A mistake on the command line.
    pub fn usage(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
            exit: Exit::Usage,
        }
    }
}

impl Classify for ConfigError {
    fn exit(&self) -> Exit {
        self.exit
    }
}

/// POP3 or IMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// POP3 (RFC 1939).
    Pop3,
    /// IMAP4rev1 (RFC 3501).
    Imap,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
        })
    }
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// TLS from the first byte (ports 995, 993).
    Implicit,
    /// A plain connection upgraded by STLS / STARTTLS (ports 110, 143).
    Starttls,
    /// No TLS (needs `allow_plaintext = true`).
    None,
}

/// The folder layout of a Maildir tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Layout {
    /// `.Sub.Folder` beside `new/ cur/ tmp/` of INBOX (Dovecot's default).
    #[default]
    #[serde(rename = "maildir++")]
    MaildirPlusPlus,
    /// `Sub/Folder` nested directories.
    #[serde(rename = "fs")]
    Fs,
}

/// How non-ASCII folder names are spelled on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum FolderNames {
    /// UTF-7 where the Maildir already has such names (mbsync 1.4, Dovecot without `:UTF-8`),
    /// else UTF-8.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// UTF-8 (`.Entwürfe`; Dovecot with `:UTF-8`).
    #[serde(rename = "utf8")]
    Utf8,
    /// IMAP's modified UTF-7 (`.Entw&APw-rfe`).
    #[serde(rename = "utf7")]
    Utf7,
}

/// Whether to use IMAP COMPRESS=DEFLATE when the server offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CompressMode {
    /// Compress unless the server is on this machine (there it only costs CPU).
    #[default]
    Auto,
    /// Always, when offered.
    Always,
    /// Never.
    Never,
}

impl CompressMode {
    /// Whether to compress a connection to `host`.
    pub fn wanted(self, host: &str) -> bool {
        match self {
            CompressMode::Always => true,
            CompressMode::Never => false,
            CompressMode::Auto => {
                let loopback = host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                !loopback
            }
        }
    }
}

/// Where the IMAP INBOX goes in the Maildir tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum InboxPlace {
    /// At the root (new/ cur/ tmp/ of the tree itself), as Dovecot and mutt expect.
    #[default]
    Root,
    /// In a folder named INBOX, beside the others.
    Folder,
}

/// What a fetch does with mail on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Leave mail on the server; fetch only what is new.
    #[default]
    Keep,
    /// Delete each message on the server once it is durable locally.
    Delete,
}

/// The SASL or login mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMech {
    /// The best the server offers of the password mechanisms.
    #[default]
    Auto,
    /// SASL PLAIN.
    Plain,
    /// SASL LOGIN.
    Login,
    /// POP3 USER/PASS (or IMAP LOGIN).
    User,
    /// POP3 APOP.
    Apop,
    /// XOAUTH2; the password source yields the access token.
    Xoauth2,
    /// OAUTHBEARER (RFC 7628); the password source yields the access token.
    Oauthbearer,
}

/// Two-way sync direction of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncDirection {
    /// Both ways.
    #[default]
    Both,
    /// Server to Maildir only.
    Pull,
    /// Maildir to server only.
    Push,
}

/// Which side(s) a channel may expunge or create on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    /// Neither.
    #[default]
    None,
    /// The server ("far") side.
    Far,
    /// The Maildir ("near") side.
    Near,
    /// Both sides.
    Both,
}

/// Where the password (or OAuth token) comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line printed by a shell command.
    Command(String),
    /// An environment variable.
    Env(String),
    /// The first line of a file that only its owner may read.
    File(PathBuf),
    /// Written in the config file itself (which must not be readable by others).
    Inline(String),
    /// The OS keyring entry of this name (service `mailferry`).
    Keyring(String),
    /// No source was configured.
    Missing,
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::Command(c) => write!(f, "Command({c:?})"),
            PasswordSource::Env(v) => write!(f, "Env({v:?})"),
            PasswordSource::File(p) => write!(f, "File({p:?})"),
            PasswordSource::Keyring(e) => write!(f, "Keyring({e:?})"),
            PasswordSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            PasswordSource::Missing => f.write_str("Missing"),
        }
    }
}

/// A validated account.
#[derive(Debug, Clone)]
pub struct Account {
    /// The name: the config table key, or one derived from the URL in ad-hoc mode.
    pub name: String,
    /// POP3 or IMAP.
    pub protocol: Protocol,
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// How the connection is secured.
    pub tls: Tls,
    /// Accept exactly this certificate instead of checking the chain.
    pub tls_fingerprint: Option<Fingerprint>,
    /// A password may cross an unencrypted connection.
    pub allow_plaintext: bool,
    /// Login name.
    pub user: String,
    /// Login mechanism.
    pub auth: AuthMech,
    /// Password or token source.
    pub password: PasswordSource,
    /// Root of the local Maildir tree.
    pub maildir: PathBuf,
    /// Folder layout of that tree.
    pub layout: Layout,
    /// How non-ASCII folder names are spelled there.
    pub folder_names: FolderNames,
    /// IMAP INBOX is the Maildir root (true) or a folder like the others.
    pub inbox_at_root: bool,
    /// IMAP COMPRESS=DEFLATE.
    pub compress: CompressMode,
    /// Keep or delete mail on the server.
    pub mode: Mode,
    /// In keep mode: delete messages this long after they were first fetched.
    pub delete_after: Option<Duration>,
    /// IMAP folder patterns (`*`, `!Spam`).
    pub folders: Vec<String>,
    /// At most this many messages per run.
    pub max_messages: Option<u64>,
    /// Skip messages larger than this.
    pub max_size: Option<u64>,
    /// Limit on every network wait.
    pub timeout: Duration,
    /// IMAP: folders are worked on over at most this many connections at once.
    pub connections: usize,
    /// IMAP: the personal namespace prefix (`INBOX.`), instead of what NAMESPACE says.
    pub namespace: Option<String>,
    /// A run that fails for a temporary reason is tried again this many times.
    pub retries: u32,
    /// The wait before the first retry (doubled for each further one).
    pub retry_delay: Duration,
    /// Where the account came from, for messages ("file:line" or the URL).
    pub origin: String,
}

impl Account {
    /// Where its sessions go.
    pub fn endpoint(&self) -> crate::net::Endpoint<'_> {
        crate::net::Endpoint {
            host: &self.host,
            port: self.port,
            pin: self.tls_fingerprint,
            timeout: self.timeout,
        }
    }
}

/// A validated two-way sync channel.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The config table key.
    pub name: String,
    /// The IMAP account it syncs.
    pub account: String,
    /// Direction.
    pub sync: SyncDirection,
    /// Where deletions are expunged.
    pub expunge: Sides,
    /// Where missing folders are created.
    pub create: Sides,
}

/// The whole validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it was read from (None in ad-hoc mode).
    pub path: Option<PathBuf>,
    /// Directory for state databases and locks, if the file sets one.
    pub state_dir: Option<PathBuf>,
    /// A file to append the run's report to, if the file sets one.
    pub log_file: Option<PathBuf>,
    /// Accounts by name.
    pub accounts: BTreeMap<String, Account>,
    /// Channels by name.
    pub channels: BTreeMap<String, Channel>,
}

/// Default network timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default number of retries after a temporary failure.
pub const DEFAULT_RETRIES: u32 = 2;

/// Default wait before the first retry.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(10);

/// Default number of IMAP connections per account (servers limit them: Gmail to about 15).
pub const DEFAULT_CONNECTIONS: usize = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<Spanned<String>>,
    log_file: Option<Spanned<String>>,
    #[serde(default)]
    accounts: BTreeMap<String, Spanned<RawAccount>>,
    #[serde(default)]
    channels: BTreeMap<String, Spanned<RawChannel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    protocol: Protocol,
    host: Spanned<String>,
    port: Option<u16>,
    tls: Option<Spanned<Tls>>,
    tls_fingerprint: Option<Spanned<String>>,
    #[serde(default)]
    allow_plaintext: bool,
    user: Spanned<String>,
    #[serde(default)]
    auth: AuthMech,
    password: Option<Spanned<String>>,
    password_command: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_keyring: Option<Spanned<String>>,
    maildir: Spanned<String>,
    #[serde(default)]
    layout: Layout,
    #[serde(default)]
    folder_names: FolderNames,
    #[serde(default)]
    inbox: InboxPlace,
    #[serde(default)]
    compress: CompressMode,
    #[serde(default)]
    mode: Mode,
    delete_after: Option<Spanned<String>>,
    folders: Option<Vec<String>>,
    max_messages: Option<u64>,
    max_size: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    connections: Option<Spanned<u64>>,
    namespace: Option<String>,
    retries: Option<Spanned<u64>>,
    retry_delay: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    account: Spanned<String>,
    #[serde(default)]
    sync: SyncDirection,
    #[serde(default)]
    expunge: Sides,
    #[serde(default = "create_near")]
    create: Sides,
}

/// Folders found on the server are created in the Maildir unless the channel says otherwise.
fn create_near() -> Sides {
    Sides::Near
}

/// The default config path: `$XDG_CONFIG_HOME/mailferry/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("mailferry").join("config.toml"))
}

/// `$VAR`, or `$HOME/fallback`, per the XDG base directory spec (relative values are ignored).
pub fn xdg_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home().map(|h| h.join(fallback)))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o600);
        Config::parse(&text, path, mode)
    }

    /// Parses and validates config text; `path` names it in messages, `mode` is its file mode.
    pub fn parse(text: &str, path: &Path, mode: u32) -> Result<Config, ConfigError> {
        let src = Source { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config {
            path: Some(path.to_path_buf()),
            state_dir: raw.state_dir.map(|s| expand_path(s.get_ref(), base)),
            log_file: raw.log_file.map(|s| expand_path(s.get_ref(), base)),
            ..Config::default()
        };
        for (name, raw_account) in raw.accounts {
            let account = src.account(&name, raw_account, base, mode)?;
            config.accounts.insert(name, account);
        }
        for (name, raw_channel) in raw.channels {
            let channel = src.channel(&name, raw_channel, &config.accounts)?;
            config.channels.insert(name, channel);
        }
        Ok(config)
    }
}

struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    /// "file:line" of a byte offset.
    fn at(&self, offset: usize) -> String {
        let line = self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1;
        format!("{}:{line}", self.path.display())
    }

    fn error(&self, span: std::ops::Range<usize>, key: &str, message: &str) -> ConfigError {
        ConfigError::config(format!("{}: {key}: {message}", self.at(span.start)))
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let line_no = self.text[..span.start.min(self.text.len())]
                    .bytes()
                    .filter(|&b| b == b'\n')
                    .count();
                let line = self.text.lines().nth(line_no).unwrap_or("").trim();
                ConfigError::config(format!("{}: {message}\n    | {line}", self.at(span.start)))
            }
            None => ConfigError::config(format!("{}: {message}", self.path.display())),
        }
    }

    fn account(
        &self,
        name: &str,
        raw: Spanned<RawAccount>,
        base: &Path,
        mode: u32,
    ) -> Result<Account, ConfigError> {
        let table_span = raw.span();
        let raw = raw.into_inner();
        let key = |k: &str| format!("accounts.{name}.{k}");
        if !valid_account_name(name) {
            return Err(self.error(
                table_span,
                &format!("accounts.{name}"),
                "an account name may hold only letters, digits, '.', '_', '-' and '@' and must not start with '.'",
            ));
        }

        let host = raw.host.get_ref().trim().to_string();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(self.error(
                raw.host.span(),
                &key("host"),
                "expected a host name or address",
            ));
        }
        let user = raw.user.get_ref().clone();
        if user.is_empty() || user.contains(['\r', '\n', '\0']) {
            return Err(self.error(
                raw.user.span(),
                &key("user"),
                "expected a non-empty login name on one line",
            ));
        }

        let tls = raw
            .tls
            .as_ref()
            .map(|t| *t.get_ref())
            .unwrap_or(Tls::Implicit);
        if tls == Tls::None && !raw.allow_plaintext {
            let span = raw
                .tls
                .as_ref()
                .map(|t| t.span())
                .unwrap_or(table_span.clone());
            return Err(self.error(
                span,
                &key("tls"),
                "tls = \"none\" sends the password in clear text; add allow_plaintext = true if you really mean it",
            ));
        }
        let tls_fingerprint = match &raw.tls_fingerprint {
            Some(s) => Some(
                Fingerprint::parse(s.get_ref())
                    .map_err(|m| self.error(s.span(), &key("tls_fingerprint"), &m))?,
            ),
            None => None,
        };

        let password = self.password_source(&raw, name, base, mode)?;

        let maildir_text = raw.maildir.get_ref();
        if maildir_text.trim().is_empty() {
            return Err(self.error(
                raw.maildir.span(),
                &key("maildir"),
                "expected a directory path",
            ));
        }

        if raw.delete_after.is_some() && raw.mode == Mode::Delete {
            let span = raw
                .delete_after
                .as_ref()
                .map(|d| d.span())
                .unwrap_or(table_span.clone());
            return Err(self.error(
                span,
                &key("delete_after"),
                "delete_after goes with mode = \"keep\" (mode = \"delete\" deletes at once)",
            ));
        }
        let delete_after = match &raw.delete_after {
            Some(s) => Some(
                parse_duration(s.get_ref())
                    .map_err(|m| self.error(s.span(), &key("delete_after"), &m))?,
            ),
            None => None,
        };
        let max_size = match &raw.max_size {
            Some(s) => Some(
                parse_size(s.get_ref()).map_err(|m| self.error(s.span(), &key("max_size"), &m))?,
            ),
            None => None,
        };
        let timeout = match &raw.timeout {
            Some(s) => {
                let t = parse_duration(s.get_ref())
                    .map_err(|m| self.error(s.span(), &key("timeout"), &m))?;
                if t.is_zero() {
                    return Err(self.error(s.span(), &key("timeout"), "must be longer than 0s"));
                }
                t
            }
            None => DEFAULT_TIMEOUT,
        };
        let retries = match &raw.retries {
            Some(n) if *n.get_ref() > 20 => {
                return Err(self.error(
                    n.span(),
                    &key("retries"),
                    "expected a number from 0 to 20",
                ));
            }
            Some(n) => *n.get_ref() as u32,
            None => DEFAULT_RETRIES,
        };
        let retry_delay = match &raw.retry_delay {
            Some(s) => parse_duration(s.get_ref())
                .map_err(|m| self.error(s.span(), &key("retry_delay"), &m))?,
            None => DEFAULT_RETRY_DELAY,
        };

        let connections = match &raw.connections {
            Some(n) if !(1..=64).contains(n.get_ref()) => {
                return Err(self.error(
                    n.span(),
                    &key("connections"),
                    "expected a number from 1 to 64",
                ));
            }
            Some(n) => *n.get_ref() as usize,
            None => DEFAULT_CONNECTIONS,
        };
        Ok(Account {
            name: name.to_string(),
            protocol: raw.protocol,
            port: raw.port.unwrap_or_else(|| default_port(raw.protocol, tls)),
            host,
            tls,
            tls_fingerprint,
            allow_plaintext: raw.allow_plaintext,
            user,
            auth: raw.auth,
            password,
            maildir: expand_path(maildir_text, base),
            layout: raw.layout,
            folder_names: raw.folder_names,
            inbox_at_root: raw.inbox == InboxPlace::Root,
            compress: raw.compress,
            mode: raw.mode,
            delete_after,
            folders: raw.folders.unwrap_or_else(|| vec!["*".to_string()]),
            max_messages: raw.max_messages,
            max_size,
            timeout,
            connections,
            namespace: raw.namespace.clone(),
            retries,
            retry_delay,
            origin: self.at(table_span.start),
        })
    }

    fn password_source(
        &self,
        raw: &RawAccount,
        name: &str,
        base: &Path,
        mode: u32,
    ) -> Result<PasswordSource, ConfigError> {
        let key = |k: &str| format!("accounts.{name}.{k}");
        let given: Vec<(&str, &Spanned<String>)> = [
            ("password", &raw.password),
            ("password_command", &raw.password_command),
            ("password_env", &raw.password_env),
            ("password_file", &raw.password_file),
            ("password_keyring", &raw.password_keyring),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        match given.as_slice() {
            [] => Ok(PasswordSource::Missing),
            [(k, v)] => {
                if v.get_ref().trim().is_empty() {
                    return Err(self.error(v.span(), &key(k), "must not be empty"));
                }
                Ok(match *k {
                    "password" => {
                        if mode & 0o077 != 0 {
                            return Err(self.error(
                                v.span(),
                                &key(k),
                                &format!(
                                    "refusing a password in a config file that others can read (mode {:03o}); \
                                     run chmod 600 {} or use password_command, password_env or password_file",
                                    mode & 0o777,
                                    self.path.display()
                                ),
                            ));
                        }
                        PasswordSource::Inline(v.get_ref().clone())
                    }
                    "password_command" => PasswordSource::Command(v.get_ref().clone()),
                    "password_env" => PasswordSource::Env(v.get_ref().clone()),
                    "password_keyring" => PasswordSource::Keyring(v.get_ref().clone()),
                    _ => PasswordSource::File(expand_path(v.get_ref(), base)),
                })
            }
            [(first, _), (second, v), ..] => Err(self.error(
                v.span(),
                &key(second),
                &format!("give one password source, not both {first} and {second}"),
            )),
        }
    }

    fn channel(
        &self,
        name: &str,
        raw: Spanned<RawChannel>,
        accounts: &BTreeMap<String, Account>,
    ) -> Result<Channel, ConfigError> {
        let raw = raw.into_inner();
        let account = raw.account.get_ref();
        match accounts.get(account) {
            Some(a) if a.protocol == Protocol::Imap => {}
            Some(_) => {
                return Err(self.error(
                    raw.account.span(),
                    &format!("channels.{name}.account"),
                    &format!("account \"{account}\" is not an IMAP account; sync needs IMAP"),
                ));
            }
            None => {
                return Err(self.error(
                    raw.account.span(),
                    &format!("channels.{name}.account"),
                    &format!("there is no account \"{account}\" in this file"),
                ));
            }
        }
        Ok(Channel {
            name: name.to_string(),
            account: account.clone(),
            sync: raw.sync,
            expunge: raw.expunge,
            create: raw.create,
        })
    }
}

/// Whether a name is safe to use as an account name (it becomes a file name for state).
pub fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// The well-known port for a protocol and TLS mode.
pub fn default_port(protocol: Protocol, tls: Tls) -> u16 {
    match (protocol, tls) {
        (Protocol::Pop3, Tls::Implicit) => 995,
        (Protocol::Pop3, _) => 110,
        (Protocol::Imap, Tls::Implicit) => 993,
        (Protocol::Imap, _) => 143,
    }
}

/// Expands `~/` and makes a relative path relative to `base` (the config file's directory).
pub fn expand_path(text: &str, base: &Path) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = home()
    {
        return home.join(rest);
    }
    if text == "~"
        && let Some(home) = home()
    {
        return home;
    }
    let path = Path::new(text);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/mf.toml"), 0o600).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[accounts.old-isp]
protocol = "pop3"
host = "pop.example.org"
user = "me"
password_env = "POP_PASS"
maildir = "/home/me/Mail/old"
delete_after = "30d"

[accounts.work]
protocol = "imap"
host = "imap.example.org"
tls = "starttls"
user = "me@example.org"
password_command = "pass show work"
maildir = "Mail/work"
layout = "fs"
folders = ["*", "!Spam"]

[channels.work]
account = "work"
expunge = "both"
"#;

    #[test]
    fn good_config() {
        let c = parse(GOOD).unwrap();
        let pop = &c.accounts["old-isp"];
        assert_eq!(pop.protocol, Protocol::Pop3);
        assert_eq!(pop.port, 995);
        assert_eq!(pop.tls, Tls::Implicit);
        assert_eq!(pop.delete_after, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(pop.password, PasswordSource::Env("POP_PASS".into()));
        assert_eq!(pop.origin, "/etc/mf.toml:2");
        let imap = &c.accounts["work"];
        assert_eq!(imap.port, 143);
        assert_eq!(imap.maildir, PathBuf::from("/etc/Mail/work"));
        assert_eq!(imap.layout, Layout::Fs);
        assert_eq!(c.channels["work"].expunge, Sides::Both);
    }

    #[test]
    fn password_keyring_names_the_entry_and_is_one_source() {
        let text = GOOD.replace(
            "password_env = \"POP_PASS\"",
            "password_keyring = \"me@pop.example.org\"",
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.accounts["old-isp"].password,
            PasswordSource::Keyring("me@pop.example.org".into())
        );
        let both = GOOD.replace(
            "password_env = \"POP_PASS\"",
            "password_env = \"POP_PASS\"\npassword_keyring = \"me\"",
        );
        let e = parse(&both).unwrap_err();
        assert!(
            e.contains("not both password_env and password_keyring"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("[accounts.a]\nprotocol = \"pop3\"\nhots = \"x\"\n").unwrap_err();
        assert!(e.starts_with("/etc/mf.toml:3: unknown field `hots`"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
        assert!(e.contains("| hots = \"x\""), "{e}");
    }

    #[test]
    fn bad_enum_value_names_the_line() {
        let text = GOOD.replace("tls = \"starttls\"", "tls = \"startls\"");
        let e = parse(&text).unwrap_err();
        assert!(e.contains("/etc/mf.toml:13"), "{e}");
        assert!(e.contains("startls"), "{e}");
        assert!(e.contains("implicit"), "{e}");
    }

    #[test]
    fn missing_key() {
        let e =
            parse("[accounts.a]\nprotocol = \"pop3\"\nhost = \"h\"\nuser = \"u\"\n").unwrap_err();
        assert!(e.contains("/etc/mf.toml:1"), "{e}");
        assert!(e.contains("missing field `maildir`"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let two = GOOD.replace(
            "password_env = \"POP_PASS\"",
            "password_env = \"POP_PASS\"\npassword_file = \"/x\"",
        );
        let e = parse(&two).unwrap_err();
        assert!(e.contains("accounts.old-isp.password_file"), "{e}");
        assert!(e.contains("one password source"), "{e}");

        let delete = GOOD.replace(
            "delete_after = \"30d\"",
            "delete_after = \"30d\"\nmode = \"delete\"",
        );
        let e = parse(&delete).unwrap_err();
        assert!(
            e.starts_with("/etc/mf.toml:8: accounts.old-isp.delete_after"),
            "{e}"
        );

        let bad_age = GOOD.replace("\"30d\"", "\"30 days\"");
        let e = parse(&bad_age).unwrap_err();
        assert!(e.contains("accounts.old-isp.delete_after"), "{e}");

        let plain = GOOD.replace("tls = \"starttls\"", "tls = \"none\"");
        let e = parse(&plain).unwrap_err();
        assert!(e.contains("allow_plaintext"), "{e}");

        let channel = GOOD.replace("account = \"work\"", "account = \"old-isp\"");
        let e = parse(&channel).unwrap_err();
        assert!(e.contains("channels.work.account"), "{e}");
    }

    #[test]
    fn inline_password_needs_private_file() {
        let text = GOOD.replace("password_env = \"POP_PASS\"", "password = \"hunter2\"");
        let e = Config::parse(&text, Path::new("/etc/mf.toml"), 0o644)
            .unwrap_err()
            .to_string();
        assert!(e.contains("others can read"), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let ok = Config::parse(&text, Path::new("/etc/mf.toml"), 0o600).unwrap();
        assert!(!format!("{:?}", ok).contains("hunter2"));
    }

    #[test]
    fn bad_account_name() {
        let e = parse("[accounts.\"../x\"]\nprotocol = \"pop3\"\nhost = \"h\"\nuser = \"u\"\nmaildir = \"m\"\n")
            .unwrap_err();
        assert!(e.contains("account name"), "{e}");
    }

    proptest::proptest! {
        /// Whatever the file holds, parsing ends in a config or an error naming the file,
        /// never a panic.
        #[test]
        fn any_text_parses_or_errs_without_panicking(text in "(?s).{0,400}") {
            if let Err(e) = Config::parse(&text, Path::new("/x/c.toml"), 0o600) {
                proptest::prop_assert!(e.to_string().contains("/x/c.toml"), "{}", e);
            }
        }

        /// Near-valid configs: every key with arbitrary values.
        #[test]
        fn any_values_parse_or_err_without_panicking(
            key in "(protocol|host|port|tls|user|maildir|mode|delete_after|max_size|timeout|connections|retries|retry_delay|layout|folders)",
            value in "(\"[^\"\\\\]{0,12}\"|-?[0-9]{1,22}|\\[\\]|true)",
        ) {
            let base = "[accounts.a]\nprotocol = \"pop3\"\nhost = \"h\"\nuser = \"u\"\npassword_env = \"P\"\nmaildir = \"m\"\n";
            let text = base.replace(&format!("{key} = "), "#") + &format!("{key} = {value}\n");
            let _ = Config::parse(&text, Path::new("/x/c.toml"), 0o600);
        }
    }
}
