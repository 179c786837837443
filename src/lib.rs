//! mailferry: fetch mail over POP3 and sync it over IMAP into durable Maildir folders.
//!
//! The binary is a thin wrapper around [`run`]. The modules, by layer (each may use the
//! layers below it, never one above):
//!
//! The top: command line and config to jobs, jobs to output and an exit code.
//! - `job`: resolve (config + command line + environment -> jobs), run (locks, retries, run
//!   records), and the one place where errors of every subsystem become exit codes.
//! - `cli`: the clap definitions (also the source of man/ and completions/).
//! - `signals`: SIGINT and SIGTERM stop jobs where they wait (exit 130/143).
//! - `report`: everything printed: progress, summaries, JSON, errors, the protocol trace, the
//!   log file.
//!
//! Engines: plan from state and listings, then carry the plan out over stores; no protocol
//! text, no sockets, no `std::fs` (they use `store`, `maildir`, `state`, `report`).
//! - `fetch` (`fetch::plan` pure), `sync` (`sync::plan` pure, `sync::exec`), `migrate`.
//! - `deliver`: the durable delivery loop (tmp -> record -> commit -> settle; recovery).
//! - `upload`: the durable upload loop (intent -> append -> pair or find again).
//! - `reconcile`: re-matching after a UIDVALIDITY change; exact removal with its record.
//! - `adopt`: pairing what both sides hold already when state knows nothing of a folder.
//! - `failures`: folders that failed while the rest of the run went on (exit code 2).
//!
//! Stores and local storage: the only I/O with mail.
//! - `store`: the `Store` trait and its implementations (IMAP, POP3, a Maildir source, and an
//!   in-memory one for tests); store errors with a scope and a retry class.
//! - `maildir`: durable Maildir delivery, listing, flags, keywords, folder names on disk.
//! - `state`: the SQLite state database; per-folder ledgers (`FolderLedger`, `Pop3Ledger`).
//! - `lock`: one lock per account.
//!
//! Protocols and the network: sans-IO codecs and the clients over them.
//! - `imap` (`imap::codec` pure, `imap::client`), `pop3` (`pop3::codec` and
//!   `pop3::identity` pure, `pop3::client`), `net` (TCP, TLS, pinning, COMPRESS).
//! - `credentials`, `keyring`: password and token sources.
//!
//! Leaves (pure, used by any layer):
//! - `config` (TOML -> validated accounts and channels), `adhoc` (URL accounts), `exit` (the
//!   exit codes and the `Classify` trait), `flags`, `message` (header fields, line ends,
//!   hashes), `date`, `text` (sanitising), `units`, `join` (futures on one thread),
//!   `failpoint` (crash hooks for tests).
//! - `testkit` (tests only): an in-memory server, a temporary Maildir, snapshots, the
//!   in-process crash matrix.

pub mod adhoc;
pub mod adopt;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod date;
pub mod deliver;
pub mod exit;
pub mod failpoint;
pub mod failures;
pub mod fetch;
pub mod flags;
pub mod imap;
pub mod job;
pub mod join;
pub mod keyring;
pub mod lock;
pub mod maildir;
pub mod message;
pub mod migrate;
pub mod net;
pub mod pop3;
pub mod reconcile;
pub mod report;
pub mod signals;
pub mod state;
pub mod store;
pub mod sync;
#[cfg(test)]
pub mod testkit;
pub mod text;
pub mod units;
pub mod upload;

use clap::Parser;

pub use exit::Exit;

/// Parses the command line, runs it and returns the process exit code.
pub fn run<I, T>(args: I) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match cli::Cli::try_parse_from(args) {
        Ok(cli) => job::run(cli),
        Err(e) => {
            let _ = e.print();
            match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok
                }
                _ => Exit::Usage,
            }
        }
    }
}
