//! Integration tests: the built binary, run the way a user runs it, against a real Dovecot.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod crash;
mod crash_matrix;
mod dovecot_harness;
mod generated;
mod hostile;
mod hostile_imap;
mod imap;
mod json;
#[cfg(feature = "keyring")]
mod keyring;
mod migrate;
mod ops;
mod pop3;
mod signals;
mod sync;
mod tls;
