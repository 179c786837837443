//! Exit codes (sysexits-style) and the trait by which an error names its own. A leaf: the
//! error chain of a run is classified at the top (`job::classify`), which knows every subsystem.

use std::fmt;

/// The documented, stable exit codes of mailferry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything asked for was done (including "no new mail").
    Ok = 0,
    /// `migrate --verify` found messages missing or different on the target.
    Differs = 1,
    /// Some folders failed (each is named); the rest was done.
    Partial = 2,
    /// Bad command line.
    Usage = 64,
    /// A safety check stopped the run (a side emptied while state knows its messages).
    Refused = 65,
    /// The server refused a command (NO, -ERR) or lacks what it needs.
    Unavailable = 69,
    /// A bug in mailferry.
    Software = 70,
    /// Local I/O failed (disk full, read-only Maildir, state database unwritable).
    LocalIo = 74,
    /// A temporary failure worth retrying later (network, timeout, server busy or locked).
    TempFail = 75,
    /// The server broke the protocol or sent something mailferry will not accept.
    Protocol = 76,
    /// Authentication failed or the server's certificate is not trusted.
    Auth = 77,
    /// The configuration is wrong (file, key, password source).
    Config = 78,
    /// Another mailferry run holds the lock of this account.
    Locked = 80,
    /// Stopped by SIGINT (128 + 2, as a shell reports it).
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15).
    Terminated = 143,
}

impl Exit {
    /// The numeric process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// All codes with their one-line meaning, for the README, man page and `--help`.
    pub const TABLE: &'static [(Exit, &'static str)] = &[
        (Exit::Ok, "success, including \"no new mail\""),
        (
            Exit::Differs,
            "migrate --verify found messages missing or different on the target",
        ),
        (
            Exit::Partial,
            "some folders or messages failed (each named, in the server's words); the rest was done",
        ),
        (Exit::Usage, "bad command line"),
        (
            Exit::Refused,
            "a safety check stopped the run: a folder emptied while state knows many of its messages",
        ),
        (
            Exit::Unavailable,
            "the server refused a command (in its own words) or lacks what it needs",
        ),
        (Exit::Software, "internal error (a bug: please report it)"),
        (
            Exit::LocalIo,
            "local I/O error (disk full, read-only Maildir, state database)",
        ),
        (
            Exit::TempFail,
            "temporary failure: network, timeout, server busy or mailbox in use; retry later",
        ),
        (Exit::Protocol, "the server broke the protocol"),
        (
            Exit::Auth,
            "authentication failed or server certificate not trusted",
        ),
        (
            Exit::Config,
            "configuration error (file, key or password source)",
        ),
        (
            Exit::Locked,
            "another mailferry run holds this account's lock",
        ),
        (
            Exit::Interrupted,
            "stopped by SIGINT (Ctrl-C): what was durable is kept, the rest comes next run",
        ),
        (Exit::Terminated, "stopped by SIGTERM, as SIGINT"),
    ];
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// An error that knows which exit code it stands for.
pub trait Classify {
    /// The exit code a run that ends with this error returns.
    fn exit(&self) -> Exit;
}
