//! What the user sees: progress bars on a terminal, a summary line per account, or JSON.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::text::sanitize;

/// Whether the protocol trace (`-vv`) is on.
static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the protocol trace on or off.
pub fn set_trace(on: bool) {
    TRACE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Prints one protocol line to stderr when the trace is on. Commands that carry credentials
/// (LOGIN, AUTHENTICATE, PASS, APOP, SASL responses) are shown without their arguments.
pub fn trace(direction: &str, line: &[u8]) {
    if !TRACE.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    let words: Vec<&str> = text.splitn(3, ' ').collect();
    let secret = |w: &str| {
        ["LOGIN", "AUTHENTICATE", "PASS", "APOP", "AUTH", "USER"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    };
    let shown = if direction == "C" && words.first().is_some_and(|w| secret(w)) {
        format!("{} <redacted>", words[0])
    } else if direction == "C" && words.get(1).is_some_and(|w| secret(w)) {
        format!("{} {} <redacted>", words[0], words[1])
    } else if direction == "C+" {
        "<continuation redacted>".to_string()
    } else {
        sanitize(text, 300)
    };
    eprintln!("{direction}: {shown}");
}

/// The log file, once opened.
static LOG: std::sync::OnceLock<std::sync::Mutex<std::fs::File>> = std::sync::OnceLock::new();

/// Appends every later report line to `path` (created 0600), each with its time and process.
pub fn log_to(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let _ = LOG.set(std::sync::Mutex::new(file));
    Ok(())
}

/// Writes a line to the log file, if there is one. One write per line: with O_APPEND, lines
/// of runs at the same time do not mix. A log that cannot be written does not stop a run.
pub fn log(line: &str) {
    use std::io::Write;
    let Some(file) = LOG.get() else { return };
    let stamp = crate::date::timestamp(std::time::SystemTime::now());
    let text = format!("{stamp} [{}] {line}\n", std::process::id());
    if let Ok(mut f) = file.lock() {
        let _ = f.write_all(text.as_bytes());
    }
}

/// How output is wanted.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Only errors.
    pub quiet: bool,
    /// JSON summary on stdout instead of text.
    pub json: bool,
    /// Verbosity (`-v` count).
    pub verbose: u8,
    /// Summary lines wanted: on a terminal or under `-v`, so that cron mails only warnings
    /// and errors.
    pub summaries: bool,
}

/// What a finished run reports: a line of text (its fields are serialised for `--json`).
pub trait Summary {
    /// The summary line.
    fn line(&self) -> String;
}

impl Output {
    /// The output a command line asks for; summaries depend on where stdout goes.
    pub fn new(quiet: bool, json: bool, verbose: u8) -> Output {
        Output {
            quiet,
            json,
            verbose,
            summaries: !quiet && (verbose > 0 || std::io::stdout().is_terminal()),
        }
    }

    /// Whether progress bars should be drawn (a terminal on stderr, not quiet, not JSON).
    pub fn bars(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }

    /// A progress bar for one account's transfer (hidden when bars are off).
    pub fn progress(&self, account: &str, messages: u64, bytes: u64) -> Progress {
        if !self.bars() || messages == 0 {
            return Progress {
                bar: None,
                messages,
                done: 0,
            };
        }
        // One MultiProgress for the process, so that bars of folders worked on at once stack.
        static MULTI: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
        let multi =
            MULTI.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let bar = multi.add(ProgressBar::new(bytes));
        let style = ProgressStyle::with_template(
            "{prefix:.bold} [{bar:30}] {msg} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(sanitize(account, 40));
        bar.set_message(format!("0/{messages} msgs"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            messages,
            done: 0,
        }
    }

    /// Prints a detail line to stderr under `-v`.
    pub fn detail(&self, line: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{line}");
            log(line);
        }
    }

    /// Prints a warning to stderr (not under -q).
    pub fn warn(&self, line: &str) {
        if !self.quiet {
            eprintln!("mailferry: warning: {line}");
        }
        log(&format!("warning: {line}"));
    }

    /// Prints an informational line (not under -q or --json).
    pub fn info(&self, line: &str) {
        if !self.quiet && !self.json {
            println!("{line}");
        }
    }

    /// Prints a line of a run's report (not under --json; off a terminal only under -v).
    pub fn note(&self, line: &str) {
        if self.summaries && !self.json {
            println!("{line}");
        }
        log(line);
    }

    /// Prints what a finished run did (see [`Output::note`]).
    pub fn summary(&self, o: &impl Summary) {
        self.note(&o.line());
    }
}

/// Shows a server's `[ALERT]` (RFC 3501 says the user must see it) on stderr, under `-q`
/// too, sanitised, each text once per run; and logs it.
pub fn alert(text: &str) {
    static SHOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let text = sanitize(text, 300);
    let Ok(mut shown) = SHOWN.lock() else { return };
    if shown.contains(&text) {
        return;
    }
    eprintln!("mailferry: the server says: {text}");
    log(&format!("server alert: {text}"));
    shown.push(text);
}

/// Says once that a signal stopped jobs, and what that means for the mail.
pub fn interrupted(signal: &crate::signals::Interrupted, jobs: &[String]) {
    let names: Vec<String> = jobs.iter().map(|j| sanitize(j, 100)).collect();
    let line = format!(
        "{signal}: stopped {}; what was durable is kept, the rest comes next run",
        names.join(", ")
    );
    eprintln!("mailferry: {line}");
    log(&line);
}

/// Prints what went wrong in a job that went on (a folder that failed, a verification that
/// found differences) to stderr, whatever the output, and logs it.
pub fn problem(job: &str, text: &str) {
    let line = format!("{}: error: {text}", sanitize(job, 100));
    eprintln!("mailferry: {line}");
    log(&line);
}

/// Prints one job's `--json` object: its kind, name, exit code, error (null when it went
/// well), the folders that failed, and the summary's own fields.
pub fn json(
    kind: &str,
    name: &str,
    exit: crate::exit::Exit,
    error: Option<String>,
    failed: &[crate::failures::Failure],
    mut fields: serde_json::Value,
) {
    let Some(object) = fields.as_object_mut() else {
        return;
    };
    object.insert("kind".into(), kind.into());
    object.insert("name".into(), name.into());
    object.insert("exit".into(), exit.code().into());
    object.insert("error".into(), error.into());
    object.insert("failed".into(), serde_json::json!(failed));
    println!("{fields}");
}

/// Prints an error and its causes to stderr (each cause once), and logs them.
pub fn error(account: Option<&str>, e: &anyhow::Error) {
    let prefix = match account {
        Some(a) => format!("mailferry: {a}: "),
        None => "mailferry: ".to_string(),
    };
    let mut last = e.to_string();
    eprintln!("{prefix}error: {last}");
    log(&format!(
        "{}error: {last}",
        account.map(|a| format!("{a}: ")).unwrap_or_default()
    ));
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            eprintln!("  caused by: {text}");
            log(&format!("  caused by: {text}"));
        }
        last = text;
    }
}

/// What `check` found out about an account.
pub struct Check<'a> {
    /// The account.
    pub account: &'a crate::config::Account,
    /// The server certificate's fingerprint, with TLS.
    pub fingerprint: Option<crate::net::Fingerprint>,
    /// The POP3 greeting (sanitised).
    pub greeting: Option<String>,
    /// Capabilities that matter.
    pub capabilities: Vec<String>,
    /// IMAP: how many folders.
    pub folders: Option<usize>,
    /// IMAP: the personal namespace prefix and hierarchy delimiter folders are mapped with.
    pub namespace: Option<(String, char)>,
    /// POP3: messages and bytes on the server.
    pub messages: Option<(usize, u64)>,
    /// Folders left out, and why.
    pub warnings: Vec<String>,
}

impl Check<'_> {
    /// Prints it: lines of text, or one JSON object.
    pub fn show(&self, out: &Output) {
        let a = self.account;
        if out.json {
            let mut value = serde_json::json!({
                "account": a.name,
                "server": format!("{}:{}", a.host, a.port),
                "tls_fingerprint": self.fingerprint.map(|f| f.to_string()),
                "capabilities": self.capabilities,
            });
            if let Some(n) = self.folders {
                value["folders"] = n.into();
            }
            if let Some((prefix, delimiter)) = &self.namespace {
                value["namespace"] = serde_json::json!({
                    "prefix": prefix,
                    "delimiter": delimiter.to_string(),
                });
            }
            if let Some(g) = &self.greeting {
                value["greeting"] = g.as_str().into();
            }
            if let Some((n, bytes)) = self.messages {
                value["messages"] = n.into();
                value["bytes"] = bytes.into();
            }
            println!("{value}");
            return;
        }
        let name = &a.name;
        let greeting = self
            .greeting
            .as_ref()
            .map(|g| format!(" ({g})"))
            .unwrap_or_default();
        out.info(&format!(
            "{name}: connected to {}:{}{greeting}",
            a.host, a.port
        ));
        match self.fingerprint {
            Some(fp) => out.info(&format!("{name}: TLS certificate {fp}")),
            None => {
                let by = match crate::adhoc::is_url(&a.origin) {
                    true => "--allow-plaintext",
                    false => "the config",
                };
                out.info(&format!("{name}: no TLS (plaintext allowed by {by})"))
            }
        }
        out.info(&format!(
            "{name}: logged in as {}; capabilities: {}",
            a.user,
            self.capabilities.join(", ")
        ));
        if let Some(n) = self.folders {
            out.info(&format!("{name}: {n} folders"));
        }
        match &self.namespace {
            Some((prefix, delimiter)) if !prefix.is_empty() => out.info(&format!(
                "{name}: personal folders are under \"{}\" (separator \"{delimiter}\"): \
                 server {}Archive is local Archive",
                sanitize(prefix, 100),
                sanitize(prefix, 100),
            )),
            Some((_, delimiter)) => out.info(&format!(
                "{name}: personal folders are at the top level (separator \"{delimiter}\")"
            )),
            None => {}
        }
        if let Some((n, bytes)) = self.messages {
            out.info(&format!(
                "{name}: {n} message{} ({}) on the server",
                if n == 1 { "" } else { "s" },
                human_bytes(bytes)
            ));
        }
        for warning in &self.warnings {
            out.warn(&format!("{name}: {warning}"));
        }
    }
}

/// A line of `list`: a folder's messages (and unseen ones, where the server tells).
pub fn folder_counts(out: &Output, folder: &str, messages: u64, unseen: Option<u64>) {
    if out.json {
        let mut value = serde_json::json!({"folder": folder, "messages": messages});
        if let Some(u) = unseen {
            value["unseen"] = u.into();
        }
        println!("{value}");
        return;
    }
    let unseen = unseen.map(|u| format!(" ({u} unseen)")).unwrap_or_default();
    out.info(&format!(
        "{}: {messages} message{}{unseen}",
        sanitize(folder, 200),
        if messages == 1 { "" } else { "s" }
    ));
}

/// `status` of an account that never ran.
pub fn never_run(out: &Output, name: &str, path: &std::path::Path) {
    out.info(&format!(
        "{name}: never run (no state at {})",
        path.display()
    ));
}

/// `status` of an account: what its state knows.
pub fn status(out: &Output, name: &str, s: &crate::state::Summary) {
    if out.json {
        let value = serde_json::json!({
            "account": name,
            "messages": s.messages,
            "deleted_on_server": s.deleted,
            "last_run": s.last_run.as_ref().map(|(t, o, e)| serde_json::json!({"finished": t, "outcome": o, "error": e})),
            "last_success": s.last_success,
            "left_on_server": s.left_on_server,
        });
        println!("{value}");
        return;
    }
    let last = match &s.last_run {
        Some((t, outcome, err)) => format!(
            "last run {} ({outcome}{})",
            ago(*t),
            err.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        ),
        None => "no finished run".to_string(),
    };
    let success = s
        .last_success
        .map(|t| format!(", last success {}", ago(t)))
        .unwrap_or_default();
    let left = match s.left_on_server {
        0 => String::new(),
        n => format!(", {n} left on the server (too large)"),
    };
    out.info(&format!(
        "{name}: {} messages known, {} deleted on the server{left}; {last}{success}",
        s.messages, s.deleted
    ));
}

/// How long ago a unix time was, roughly.
fn ago(t: i64) -> String {
    let secs = (crate::date::now() - t).max(0);
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// Bytes in B, KiB, MiB or GiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar of one transfer; does nothing when hidden.
pub struct Progress {
    bar: Option<ProgressBar>,
    messages: u64,
    done: u64,
}

impl Progress {
    /// Some bytes arrived.
    pub fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// A message is complete.
    pub fn message(&mut self) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}/{} msgs", self.done, self.messages));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
    }
}
