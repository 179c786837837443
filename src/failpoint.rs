//! Crash hooks for tests: `MAILFERRY_FAILPOINT=NAME:N` kills the process (abort, no cleanup,
//! like SIGKILL) the N-th time the step NAME is reached; `any:N` at the N-th step of any name,
//! so a test can crash a run after each of its steps in turn. Unset, a hook costs one comparison.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Marks a step where a crash must be survivable.
pub fn hit(name: &str) {
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
}
