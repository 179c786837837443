//! SIGINT and SIGTERM: the first stops the run cleanly, the second at once.
//!
//! The first signal is noted and every job's engine future is dropped where it waits (on
//! the network, a lock, a password command): the tmp/ files of a batch not yet durable go
//! with their owners, nothing is deleted on a server that a durable, recorded copy does not
//! justify (a POP3 session ends without QUIT, so its DELEs are void), and the job records
//! its run as interrupted. A job not yet started does not start. The exit code is 130
//! (SIGINT) or 143 (SIGTERM).

use std::sync::OnceLock;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::exit::{Classify, Exit};

/// A signal that stops a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// SIGINT (Ctrl-C).
    #[error("interrupted by SIGINT")]
    Int,
    /// SIGTERM (kill, systemd stop, shutdown).
    #[error("interrupted by SIGTERM")]
    Term,
}

impl Classify for Interrupted {
    fn exit(&self) -> Exit {
        match self {
            Interrupted::Int => Exit::Interrupted,
            Interrupted::Term => Exit::Terminated,
        }
    }
}

fn channel() -> &'static watch::Sender<Option<Interrupted>> {
    static STOP: OnceLock<watch::Sender<Option<Interrupted>>> = OnceLock::new();
    STOP.get_or_init(|| watch::channel(None).0)
}

/// Takes over SIGINT and SIGTERM for the rest of the process (call inside the runtime,
/// before any job starts). A second signal exits at once with its code.
pub fn listen() -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let caught = tokio::select! {
                _ = int.recv() => Interrupted::Int,
                _ = term.recv() => Interrupted::Term,
            };
            if channel().borrow().is_some() {
                eprintln!("mailferry: {caught} again; exiting at once");
                std::process::exit(caught.exit() as i32);
            }
            channel().send_replace(Some(caught));
        }
    });
    Ok(())
}

/// The signal caught so far, if any.
pub fn caught() -> Option<Interrupted> {
    *channel().borrow()
}

/// Runs `work` until it ends or a signal stops the run (then `work` is dropped where it
/// waits, and the error is [`Interrupted`]).
pub async fn interruptible<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let mut stop = channel().subscribe();
    if let Some(s) = *stop.borrow_and_update() {
        return Err(s.into());
    }
    tokio::select! {
        biased;
        done = work => done,
        s = stop.wait_for(Option::is_some) => match s.ok().and_then(|s| *s) {
            Some(s) => Err(s.into()),
            None => Err(anyhow::anyhow!("the signal listener went away")),
        },
    }
}
