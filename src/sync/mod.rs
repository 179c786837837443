//! `mailferry sync`: two-way sync of IMAP folders with a Maildir (mbsync's model).

pub mod plan;
