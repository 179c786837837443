//! What cron, systemd and scripts rely on: many accounts in one run, locks that can be
//! waited for, and a progress bar that behaves on a terminal.

use std::time::{Duration, Instant};

use crate::support::{Env, dovecot, local_messages, message, pop3_account, pop3_env};

fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| message(tag, i, 500 + i * 37)).collect()
}

/// An account "broken" whose server cannot be reached (exit code 75, no retries).
fn unreachable_account(env: &Env, user: &crate::support::User) -> String {
    pop3_account(
        "broken",
        user,
        "implicit",
        &env.path("Broken"),
        "retries = 0",
    )
    .replace(&format!("port = {}", dovecot().pop3s), "port = 1")
}

#[test]
fn one_failing_account_does_not_stop_the_others() {
    let server = dovecot();
    let (a, b) = (server.user("ops-many-a"), server.user("ops-many-b"));
    server.put(&a, "", &corpus("opsa", 3));
    server.put(&b, "", &corpus("opsb", 4));
    let mut env = Env::new();
    env.trust_test_ca();
    let broken = unreachable_account(&env, &a);
    env.config(&format!(
        "{}{broken}{}",
        pop3_account("first", &a, "implicit", &env.path("A"), ""),
        pop3_account("second", &b, "implicit", &env.path("B"), "")
    ));
    let run = env.run(&["-v", "--jobs", "2", "fetch"]);
    run.expect(75);
    assert_eq!(local_messages(&env.path("A")).len(), 3);
    assert_eq!(local_messages(&env.path("B")).len(), 4);
    // One summary line per account that worked, in the order of the config; the failure on
    // standard error, named.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with("first: fetched 3 messages ("),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("second: fetched 4 messages ("),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("mailferry: broken: error:"),
        "{}",
        run.stderr
    );
}

#[test]
fn off_a_terminal_only_what_matters_is_printed() {
    // cron mails whatever a job prints: a run that went well prints nothing, a failure its
    // error, and -v brings the summary lines back for a script that wants them.
    let server = dovecot();
    let user = server.user("ops-cron");
    server.put(&user, "", &corpus("opscron", 3));
    let mut env = Env::new();
    env.trust_test_ca();
    let broken = unreachable_account(&env, &user);
    env.config(&format!(
        "{}{broken}",
        pop3_account("good", &user, "implicit", &env.path("Good"), "")
    ));
    let run = env.run(&["fetch", "good"]);
    run.expect(0);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    assert_eq!(local_messages(&env.path("Good")).len(), 3);

    let run = env.run(&["fetch"]);
    run.expect(75);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with("mailferry: broken: error:") && !run.stderr.contains("good"),
        "{}",
        run.stderr
    );

    let run = env.run(&["-v", "fetch", "good"]);
    run.expect(0);
    assert_eq!(run.stdout, "good: no new mail\n");
}

#[test]
fn a_log_file_keeps_what_a_quiet_run_did() {
    use std::os::unix::fs::PermissionsExt;
    let server = dovecot();
    let user = server.user("ops-log");
    server.put(&user, "", &corpus("opslog", 2));
    let mut env = Env::new();
    env.trust_test_ca();
    let log = env.path("mailferry.log");
    let broken = unreachable_account(&env, &user);
    env.config(&format!(
        "log_file = \"{}\"\n{}{broken}",
        log.display(),
        pop3_account("good", &user, "implicit", &env.path("Good"), "")
    ));
    let run = env.run(&["-q", "fetch", "good"]);
    run.expect(0);
    assert_eq!(run.stdout, "");
    env.run(&["fetch"]).expect(75);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Each line: time, process, what was reported; appended run after run.
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert!(
            stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{line}"
        );
        assert!(rest.starts_with('['), "{line}");
    }
    assert!(lines[0].contains("] good: fetched 2 messages ("), "{text}");
    assert!(text.contains("] good: no new mail\n"), "{text}");
    assert!(text.contains("] broken: error: "), "{text}");
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // --log-file wins over the config; a log that cannot be opened stops the run.
    let other = env.path("other.log");
    env.run(&["--log-file", other.to_str().unwrap(), "fetch", "good"])
        .expect(0);
    assert!(
        std::fs::read_to_string(&other)
            .unwrap()
            .contains("] good: no new mail")
    );
    let run = env.run(&["--log-file", "/nonexistent/dir/x.log", "fetch", "good"]);
    run.expect(74);
    assert!(
        run.stderr
            .contains("cannot open the log file /nonexistent/dir/x.log"),
        "{}",
        run.stderr
    );
}

#[test]
fn wait_lock_waits_for_the_other_run() {
    let server = dovecot();
    let user = server.user("ops-waitlock");
    server.put(&user, "", &corpus("opswl", 2));
    let env = pop3_env(&user, "");
    let dir = env.path("state/mailferry");
    std::fs::create_dir_all(&dir).unwrap();
    let held = std::fs::File::create(dir.join("acct.lock")).unwrap();
    held.lock().unwrap();
    env.run(&["fetch"]).expect(80);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        drop(held);
    });
    let started = Instant::now();
    let run = env.run(&["--wait-lock", "30s", "fetch"]);
    run.expect(0);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "did not wait"
    );
    assert_eq!(local_messages(&env.path("Mail")).len(), 2);
    release.join().unwrap();
    // A lock held longer than the wait: code 80 after the wait.
    let held = std::fs::File::create(dir.join("acct.lock")).unwrap();
    held.lock().unwrap();
    let started = Instant::now();
    env.run(&["--wait-lock", "300ms", "fetch"]).expect(80);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Text as a terminal shows it: escape sequences dropped, each line as last overwritten.
fn screen(raw: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            continue;
        }
        text.push(c);
    }
    text.split('\n')
        .map(|l| {
            l.rsplit('\r')
                .find(|p| !p.trim().is_empty())
                .unwrap_or("")
                .to_string()
        })
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn the_progress_bar_shows_on_a_terminal_and_is_cleared() {
    let server = dovecot();
    let user = server.user("ops-pty");
    let mail: Vec<Vec<u8>> = (0..300).map(|i| message("opspty", i, 20_000)).collect();
    server.put(&user, "", &mail);
    let env = pop3_env(&user, "");
    let out = crate::support::under_terminal(&env.command(&["fetch"]))
        .output()
        .expect("script(1) from util-linux");
    assert_eq!(out.status.code(), Some(0));
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(raw.contains("msgs"), "no bar was drawn: {raw:?}");
    assert!(raw.contains("acct"), "{raw:?}");
    // What stays on the screen is the summary alone: the bar was cleared, not left behind.
    assert_eq!(
        screen(&raw),
        vec!["acct: fetched 300 messages (5.8 MiB)".to_string()],
        "{raw:?}"
    );
    // Without a terminal, no bar at all.
    let plain = env.run(&["-v", "fetch"]);
    assert!(!plain.stderr.contains("msgs") && !plain.stdout.contains("msgs"));
}
