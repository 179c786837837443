//! mailferry: fetch mail over POP3 and sync it over IMAP into durable Maildir folders.
//!
//! The binary is a thin wrapper around [`run`]; the modules are usable on their own.

pub mod adhoc;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod date;
pub mod deliver;
pub mod exit;
pub mod failpoint;
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
