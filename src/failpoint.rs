//! Crash hooks at every step a run takes that must be survivable.
//!
//! In the binary, `MAILFERRY_FAILPOINT=NAME:N` kills the process (abort, no cleanup, like
//! SIGKILL) the N-th time the step NAME is reached; `any:N` at the N-th step of any name, so
//! a test can crash a run after each of its steps in turn. Unset, a hook costs one comparison.
//!
//! In unit tests a run is stopped in-process instead: [`crash_after`] arms the current thread,
//! and from the N-th step on every hook (and every call of the in-memory store) returns
//! [`Crash`], so the run stops there as if killed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::exit::{Classify, Exit};

/// A run stopped at a step by a test, as if killed there.
#[derive(Debug, Clone, thiserror::Error)]
#[error("failpoint: crashed at {0}")]
pub struct Crash(pub String);

impl Classify for Crash {
    fn exit(&self) -> Exit {
        Exit::Software
    }
}

/// Marks a step where a crash must be survivable.
pub fn hit(name: &str) -> Result<(), Crash> {
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let spec = SPEC.get_or_init(|| {
        let value = std::env::var("MAILFERRY_FAILPOINT").ok()?;
        let (step, n) = value.rsplit_once(':')?;
        Some((step.to_string(), n.parse().ok()?))
    });
    if let Some((step, n)) = spec
        && (step == name || step == "any")
        && COUNT.fetch_add(1, Ordering::Relaxed) + 1 == *n
    {
        // Names the step for the test's message; stderr is unbuffered.
        eprintln!("failpoint: crashing at {name}");
        std::process::abort();
    }
    in_process::hit(name)
}

#[cfg(test)]
pub use in_process::{crash_after, steps};

#[cfg(not(test))]
mod in_process {
    pub fn hit(_: &str) -> Result<(), super::Crash> {
        Ok(())
    }
}

#[cfg(test)]
mod in_process {
    use std::cell::RefCell;

    /// Steps left before the crash, the steps taken, and where it crashed.
    #[derive(Default)]
    pub struct Armed {
        pub left: Option<u64>,
        pub taken: Vec<String>,
        pub crashed: Option<String>,
    }

    thread_local! {
        pub static ARMED: RefCell<Armed> = RefCell::default();
    }

    pub fn hit(name: &str) -> Result<(), super::Crash> {
        ARMED.with_borrow_mut(|a| {
            if let Some(at) = &a.crashed {
                return Err(super::Crash(at.clone()));
            }
            a.taken.push(name.to_string());
            match &mut a.left {
                Some(0) => {
                    a.crashed = Some(name.to_string());
                    Err(super::Crash(name.to_string()))
                }
                Some(n) => {
                    *n -= 1;
                    Ok(())
                }
                None => Ok(()),
            }
        })
    }

    /// Tests: crash the current thread's run at its `n`-th step from now (1 is the first), or
    /// never (`None`); forgets the steps counted so far.
    pub fn crash_after(n: Option<u64>) {
        ARMED.with_borrow_mut(|a| {
            *a = Armed {
                left: n.map(|n| n.saturating_sub(1)),
                ..Default::default()
            }
        });
    }

    /// Tests: the steps taken since [`crash_after`], and the one it crashed at.
    pub fn steps() -> (Vec<String>, Option<String>) {
        ARMED.with_borrow(|a| (a.taken.clone(), a.crashed.clone()))
    }
}
