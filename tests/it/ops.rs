//! What cron, systemd and scripts rely on: many accounts in one run, locks that can be
//! waited for, and a progress bar that behaves on a terminal.

use std::time::{Duration, Instant};

use crate::support::{Env, dovecot, local_messages, message, pop3_account, pop3_env};

fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| message(tag, i, 500 + i * 37)).collect()
}

#[test]
fn one_failing_account_does_not_stop_the_others() {
    let server = dovecot();
    let (a, b) = (server.user("ops-many-a"), server.user("ops-many-b"));
    server.put(&a, "", &corpus("opsa", 3));
    server.put(&b, "", &corpus("opsb", 4));
    let mut env = Env::new();
    env.trust_test_ca();
    let broken = pop3_account("broken", &a, "implicit", &env.path("Broken"), "retries = 0")
        .replace(&format!("port = {}", server.pop3s), "port = 1");
    env.config(&format!(
        "{}{broken}{}",
        pop3_account("first", &a, "implicit", &env.path("A"), ""),
        pop3_account("second", &b, "implicit", &env.path("B"), "")
    ));
    let run = env.run(&["--jobs", "2", "fetch"]);
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
    let cmd = env.command(&["fetch"]);
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = std::process::Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.output().expect("script(1) from util-linux");
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
    let plain = env.run(&["fetch"]);
    assert!(!plain.stderr.contains("msgs") && !plain.stdout.contains("msgs"));
}
