//! The command line, config errors, password sources and locking: no server needed.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::Env;

const ACCOUNT: &str = r#"
[accounts.home]
protocol = "pop3"
host = "127.0.0.1"
port = 1
user = "me"
password_env = "MAILFERRY_TEST_PASSWORD"
maildir = "Mail"
retries = 0
"#;

#[test]
fn help_and_usage_errors() {
    let env = Env::new();
    let run = env.run(&["--help"]);
    run.expect(0);
    assert!(
        run.stdout.contains("fetch") && run.stdout.contains("Exit codes"),
        "{}",
        run.stdout
    );
    env.run(&["frobnicate"]).expect(64);
    env.run(&["fetch", "--keep", "--delete"]).expect(64);
}

#[test]
fn migrate_arguments_are_checked_before_anything_moves() {
    let env = Env::new();
    env.config(ACCOUNT);
    let run = env.run(&["migrate", "--from", "home", "--to", "nowhere"]);
    run.expect(64);
    assert!(
        run.stderr.contains("no account \"nowhere\"") && run.stderr.contains("known: home"),
        "{}",
        run.stderr
    );
    let run = env.run(&["migrate", "--from", "home", "--to", "home"]);
    run.expect(64);
    assert!(run.stderr.contains("is an IMAP account"), "{}", run.stderr);
    let run = env.run(&[
        "-v",
        "migrate",
        "--from",
        "/no/such/maildir",
        "--to",
        "imaps://me@localhost",
    ]);
    run.expect(64);
    assert!(
        run.stderr
            .contains("neither a configured account, a URL, nor a Maildir"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn config_typo_names_file_line_and_key() {
    let env = Env::new();
    let path = env.config(&ACCOUNT.replace("host =", "hots ="));
    let run = env.run(&["fetch"]);
    run.expect(78);
    let want = format!("{}:4: unknown field `hots`", path.display());
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    assert!(run.stderr.contains("expected one of"), "{}", run.stderr);

    let run = env.run(&["-c", "/nonexistent/mf.toml", "fetch"]);
    run.expect(78);
    assert!(
        run.stderr.contains("/nonexistent/mf.toml"),
        "{}",
        run.stderr
    );

    env.config(&ACCOUNT.replace("port = 1", "port = 70000"));
    let run = env.run(&["fetch"]);
    run.expect(78);
    assert!(run.stderr.contains(":5:"), "{}", run.stderr);
}

#[test]
fn missing_password_is_a_config_error() {
    let env = Env::new();
    env.config(ACCOUNT);
    let run = env.run(&["fetch", "home"]);
    run.expect(78);
    assert!(
        run.stderr.contains("MAILFERRY_TEST_PASSWORD is not set"),
        "{}",
        run.stderr
    );
    env.config(&ACCOUNT.replace("password_env = \"MAILFERRY_TEST_PASSWORD\"\n", ""));
    let run = env.run(&["fetch", "home"]);
    run.expect(78);
    assert!(run.stderr.contains("has no password"), "{}", run.stderr);
}

#[test]
fn readable_password_file_and_config_are_refused() {
    let env = Env::new();
    let pw = env.path("pw");
    fs::write(&pw, "secret\n").unwrap();
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
    env.config(&ACCOUNT.replace(
        "password_env = \"MAILFERRY_TEST_PASSWORD\"",
        &format!("password_file = \"{}\"", pw.display()),
    ));
    let run = env.run(&["fetch", "home"]);
    run.expect(78);
    assert!(
        run.stderr.contains("others can read it (mode 644)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);

    let path = env.config(&ACCOUNT.replace(
        "password_env = \"MAILFERRY_TEST_PASSWORD\"",
        "password = \"hunter2\"",
    ));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let run = env.run(&["fetch", "home"]);
    run.expect(78);
    assert!(run.stderr.contains("others can read"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

#[test]
fn a_second_run_finds_the_account_locked() {
    let mut env = Env::new();
    env.config(ACCOUNT);
    env.var("MAILFERRY_TEST_PASSWORD", "x");
    // Another run holds the account's lock (the same lock a running mailferry takes).
    let lock_path = env.path("state/mailferry/home.lock");
    fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    fs::write(&lock_path, "4242").unwrap();
    let held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.lock().unwrap();
    let run = env.run(&["fetch", "home"]);
    run.expect(80);
    assert!(
        run.stderr
            .contains("in use by another mailferry run (pid 4242)"),
        "{}",
        run.stderr
    );
    drop(held);
    // Free again: the run gets past the lock and fails where it should (nothing listens on port 1).
    env.run(&["fetch", "home"]).expect(75);
}

#[test]
fn adhoc_urls_need_a_maildir_and_no_inline_password() {
    let env = Env::new();
    let run = env.run(&["fetch", "pop3s://me@127.0.0.1:1"]);
    run.expect(64);
    assert!(run.stderr.contains("--maildir"), "{}", run.stderr);
    let run = env.run(&["fetch", "pop3s://me:pw@127.0.0.1", "--maildir", "m"]);
    run.expect(64);
    assert!(run.stderr.contains("process list"), "{}", run.stderr);
    let run = env.run(&["fetch", "nosuch"]);
    run.expect(64);
}

#[test]
fn status_of_an_account_never_run() {
    let env = Env::new();
    env.config(ACCOUNT);
    let run = env.run(&["status"]);
    run.expect(0);
    assert!(run.stdout.contains("home: never run"), "{}", run.stdout);
    // A name neither the config nor the state knows is the same error as for fetch.
    for command in ["status", "fetch"] {
        let run = env.run(&[command, "nosuch"]);
        run.expect(64);
        assert!(
            run.stderr.contains("no account \"nosuch\"") && run.stderr.contains("known: home"),
            "{command}: {}",
            run.stderr
        );
    }
}

#[test]
fn completions_are_printed() {
    let env = Env::new();
    let run = env.run(&["completions", "bash"]);
    run.expect(0);
    assert!(run.stdout.contains("_mailferry"), "{}", run.stdout);
}

#[test]
fn example_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        let env = Env::new();
        let run = env.run(&["-c", &path.display().to_string(), "status"]);
        run.expect(0);
        checked += 1;
    }
    assert_eq!(
        checked, 4,
        "examples/config holds the four documented examples"
    );
}
