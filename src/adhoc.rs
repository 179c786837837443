//! Ad-hoc accounts for scripts: `pop3s://user@host:port` plus flags, no config file.

use std::path::PathBuf;

use crate::config::{
    Account, AuthMech, CompressMode, ConfigError, DEFAULT_CONNECTIONS, DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY, DEFAULT_TIMEOUT, Layout, Mode, PasswordSource, Protocol, Tls,
    default_port,
};
use crate::net::Fingerprint;

/// The command-line options that complete an account given as a URL.
#[derive(Debug, Clone, Default)]
pub struct Adhoc {
    /// Maildir to deliver into.
    pub maildir: Option<PathBuf>,
    /// Password from this environment variable.
    pub password_env: Option<String>,
    /// Password from this shell command.
    pub password_command: Option<String>,
    /// TLS mode, overriding the scheme's default.
    pub tls: Option<Tls>,
    /// Certificate pin.
    pub tls_fingerprint: Option<String>,
    /// Allow a password without TLS.
    pub allow_plaintext: bool,
    /// Maildir layout.
    pub layout: Option<Layout>,
}

/// The parts of an account URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountUrl {
    /// pop3 or imap.
    pub protocol: Protocol,
    /// Implicit TLS for the `s` schemes, STARTTLS otherwise.
    pub tls: Tls,
    /// Login name (percent-decoded).
    pub user: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// IMAP folder, if given (percent-decoded).
    pub folder: Option<String>,
}

/// Whether a command-line word looks like an account URL rather than an account name.
pub fn is_url(word: &str) -> bool {
    word.contains("://")
}

/// Parses `scheme://user@host[:port][/folder]`.
pub fn parse_url(url: &str) -> Result<AccountUrl, ConfigError> {
    let bad = |why: &str| ConfigError::usage(format!("{url}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected a URL such as pop3s://user@host"))?;
    let (protocol, tls) = match scheme.to_ascii_lowercase().as_str() {
        "pop3" | "pop" => (Protocol::Pop3, Tls::Starttls),
        "pop3s" | "pops" => (Protocol::Pop3, Tls::Implicit),
        "imap" => (Protocol::Imap, Tls::Starttls),
        "imaps" => (Protocol::Imap, Tls::Implicit),
        other => {
            return Err(bad(&format!(
                "unknown scheme \"{other}\": expected pop3, pop3s, imap or imaps"
            )));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .ok_or_else(|| bad("the URL needs a user: scheme://user@host"))?;
    if userinfo.contains(':') {
        return Err(bad(
            "a password in the URL would show in the process list; use --password-env or --password-command",
        ));
    }
    let user = percent_decode(userinfo)
        .ok_or_else(|| bad("the user is not valid percent-encoded UTF-8"))?;
    if user.is_empty() || user.contains(['\r', '\n', '\0']) {
        return Err(bad("the user is empty or holds a line break"));
    }
    let (host, port) =
        split_host_port(hostport).ok_or_else(|| bad("expected host or host:port after '@'"))?;
    let folder = match path {
        Some(p) if !p.is_empty() => {
            if protocol == Protocol::Pop3 {
                return Err(bad("a POP3 URL has no folder"));
            }
            Some(
                percent_decode(p)
                    .ok_or_else(|| bad("the folder is not valid percent-encoded UTF-8"))?,
            )
        }
        _ => None,
    };
    Ok(AccountUrl {
        protocol,
        tls,
        user,
        host,
        port,
        folder,
    })
}

fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => None,
    };
    Some((host.to_string(), port))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Builds an account from a URL and the ad-hoc options.
pub fn account(url: &str, opts: &Adhoc) -> Result<Account, ConfigError> {
    let parsed = parse_url(url)?;
    let maildir = opts.maildir.clone().ok_or_else(|| {
        ConfigError::usage(format!(
            "{url}: an account given as a URL needs --maildir DIR"
        ))
    })?;
    let tls = opts.tls.unwrap_or(parsed.tls);
    if tls == Tls::None && !opts.allow_plaintext {
        return Err(ConfigError::usage(
            "--tls none sends the password in clear text; add --allow-plaintext if you really mean it",
        ));
    }
    let tls_fingerprint = opts
        .tls_fingerprint
        .as_deref()
        .map(Fingerprint::parse)
        .transpose()
        .map_err(|m| ConfigError::usage(format!("--tls-fingerprint: {m}")))?;
    let password = match (&opts.password_env, &opts.password_command) {
        (Some(v), _) => PasswordSource::Env(v.clone()),
        (None, Some(c)) => PasswordSource::Command(c.clone()),
        (None, None) => PasswordSource::Missing,
    };
    let name = adhoc_name(&parsed);
    Ok(Account {
        name,
        protocol: parsed.protocol,
        port: parsed
            .port
            .unwrap_or_else(|| default_port(parsed.protocol, tls)),
        host: parsed.host,
        tls,
        tls_fingerprint,
        allow_plaintext: opts.allow_plaintext,
        user: parsed.user,
        auth: AuthMech::Auto,
        password,
        maildir,
        layout: opts.layout.unwrap_or_default(),
        folder_names: Default::default(),
        inbox_at_root: true,
        compress: CompressMode::Auto,
        mode: Mode::Keep,
        delete_after: None,
        // Without a folder in the URL, every folder, as a configured account.
        folders: vec![parsed.folder.unwrap_or_else(|| "*".to_string())],
        max_messages: None,
        max_size: None,
        timeout: DEFAULT_TIMEOUT,
        connections: DEFAULT_CONNECTIONS,
        namespace: None,
        retries: DEFAULT_RETRIES,
        retry_delay: DEFAULT_RETRY_DELAY,
        origin: url.to_string(),
    })
}

/// A stable, file-name-safe account name for a URL, so reruns find the same state.
fn adhoc_name(url: &AccountUrl) -> String {
    let raw = match url.port {
        Some(p) => format!("{}-{}@{}-{p}", url.protocol, url.user, url.host),
        None => format!("{}-{}@{}", url.protocol, url.user, url.host),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = parse_url("pop3s://me%40example.org@pop.example.org:1995").unwrap();
        assert_eq!(u.protocol, Protocol::Pop3);
        assert_eq!(u.tls, Tls::Implicit);
        assert_eq!(u.user, "me@example.org");
        assert_eq!(u.host, "pop.example.org");
        assert_eq!(u.port, Some(1995));
        let u = parse_url("imap://me@[::1]/Archive%2F2024").unwrap();
        assert_eq!(u.tls, Tls::Starttls);
        assert_eq!(u.host, "::1");
        assert_eq!(u.port, None);
        assert_eq!(u.folder.as_deref(), Some("Archive/2024"));
    }

    #[test]
    fn rejects_bad_urls() {
        for (url, why) in [
            ("pop3s://pop.example.org", "needs a user"),
            ("pop3s://me:pw@host", "password in the URL"),
            ("smtp://me@host", "unknown scheme"),
            ("pop3://me@host:99999", "host:port"),
            ("pop3://me@host/INBOX", "no folder"),
            ("pop3://me@:110", "host:port"),
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }

    #[test]
    fn account_needs_maildir_and_safe_tls() {
        let e = account("pop3s://me@h", &Adhoc::default()).unwrap_err();
        assert!(e.to_string().contains("--maildir"));
        let opts = Adhoc {
            maildir: Some("/tmp/m".into()),
            tls: Some(Tls::None),
            ..Adhoc::default()
        };
        assert!(
            account("pop3://me@h", &opts)
                .unwrap_err()
                .to_string()
                .contains("--allow-plaintext")
        );
        let opts = Adhoc {
            maildir: Some("/tmp/m".into()),
            password_env: Some("P".into()),
            ..Adhoc::default()
        };
        let a = account("pop3://me@host:2110", &opts).unwrap();
        assert_eq!(a.name, "pop3-me@host-2110");
        assert_eq!(a.tls, Tls::Starttls);
        assert_eq!(a.port, 2110);
    }
}
