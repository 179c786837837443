//! The OS keyring as a password source (`--features keyring`), against a real Secret Service:
//! gnome-keyring on a private D-Bus session bus.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::support::secret_service::SecretService;
use crate::support::{Env, Run, dovecot, local_messages, message, pop3_account, under_terminal};

/// A home whose account `acct` takes its password from the keyring entry `entry`.
fn keyring_env(service: &SecretService, user: &crate::support::User, entry: &str) -> Env {
    let mut env = Env::new();
    env.trust_test_ca();
    env.var("DBUS_SESSION_BUS_ADDRESS", &service.address);
    let account = pop3_account("acct", user, "implicit", &env.path("Mail"), "retries = 0");
    let account: Vec<String> = account
        .lines()
        .map(|l| {
            if l.starts_with("password_command") {
                format!("password_keyring = \"{entry}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    env.config(&account.join("\n"));
    env
}

/// Runs the binary with `input` on its standard input.
fn run_with_input(env: &Env, args: &[&str], input: &str) -> Run {
    let mut child = env
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailferry");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for mailferry").into()
}

#[test]
fn a_password_stored_in_the_keyring_logs_in_and_nothing_else_does() {
    let service = SecretService::start();
    let server = dovecot();
    let user = server.user("keyring-user");
    let corpus: Vec<Vec<u8>> = (0..3).map(|i| message("keyring", i, 700)).collect();
    server.put(&user, "", &corpus);
    let entry = format!("{}@localhost", user.name);
    let env = keyring_env(&service, &user, &entry);

    // Nothing stored yet: a configuration error that says how to store it, and no mail moves.
    let run = env.run(&["fetch", "acct"]);
    run.expect(78);
    assert!(
        run.stderr.contains(&format!(
            "the keyring holds no password under service mailferry, username {entry}"
        )) && run.stderr.contains("mailferry keyring store acct"),
        "{}",
        run.stderr
    );
    assert!(local_messages(&env.path("Mail")).is_empty());

    // Stored from standard input, it is the same item secret-tool finds (the README's way).
    let run = run_with_input(
        &env,
        &["-v", "keyring", "store", "acct"],
        &format!("{}\n", user.password),
    );
    run.expect(0);
    assert!(run.stdout.contains("acct: stored"), "{}", run.stdout);
    assert_eq!(
        service.lookup(&["service", "mailferry", "username", &entry]),
        Some(user.password.clone())
    );

    env.run(&["fetch", "acct"]).expect(0);
    assert_eq!(local_messages(&env.path("Mail")).len(), 3);

    // Deleted, the entry is gone for mailferry and for secret-tool alike.
    env.run(&["keyring", "delete", "acct"]).expect(0);
    assert_eq!(
        service.lookup(&["service", "mailferry", "username", &entry]),
        None
    );
    env.run(&["fetch", "acct"]).expect(78);
}

#[test]
fn a_wrong_password_in_the_keyring_is_an_authentication_failure() {
    let service = SecretService::start();
    let user = dovecot().user("keyring-wrong");
    let env = keyring_env(&service, &user, "wrong@localhost");
    run_with_input(&env, &["keyring", "store", "acct"], "not-the-password\n").expect(0);
    let run = env.run(&["fetch", "acct"]);
    run.expect(77);
    assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
}

#[test]
fn keyring_trouble_is_a_clear_configuration_error() {
    let service = SecretService::start();
    let user = dovecot().user("keyring-trouble");
    let mut env = keyring_env(&service, &user, "trouble@localhost");

    // An account with another password source has no keyring entry to store.
    let other = pop3_account("plain", &user, "implicit", &env.path("Plain"), "");
    let text = std::fs::read_to_string(env.config_path()).expect("config");
    env.config(&format!("{text}\n{other}"));
    let run = run_with_input(&env, &["keyring", "store", "plain"], "x\n");
    run.expect(78);
    assert!(
        run.stderr
            .contains("account plain does not take its password from the keyring"),
        "{}",
        run.stderr
    );

    // An empty standard input stores nothing.
    let run = run_with_input(&env, &["keyring", "store", "acct"], "");
    run.expect(64);
    assert!(run.stderr.contains("no password given"), "{}", run.stderr);

    // No Secret Service on the bus: said, not a panic or a hang.
    env.var("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let run = env.run(&["fetch", "acct"]);
    run.expect(78);
    assert!(
        run.stderr
            .contains("account acct: the keyring cannot be used"),
        "{}",
        run.stderr
    );
}

#[test]
fn on_a_terminal_the_password_is_asked_for_without_echo() {
    let service = SecretService::start();
    let user = dovecot().user("keyring-tty");
    let env = keyring_env(&service, &user, "tty@localhost");
    let mut child = under_terminal(&env.command(&["keyring", "store", "acct"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let mut screen = Vec::new();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut chunk = [0u8; 256];
    // Type only once the prompt shows (echo is off by then).
    while !String::from_utf8_lossy(&screen).contains("Password for acct (tty@localhost): ") {
        let n = stdout.read(&mut chunk).expect("read the terminal");
        assert!(n > 0, "no prompt: {:?}", String::from_utf8_lossy(&screen));
        screen.extend_from_slice(&chunk[..n]);
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"typed-secret\r").expect("type");
    stdout.read_to_end(&mut screen).expect("read the terminal");
    drop(stdin);
    let status = child.wait().expect("script");
    let screen = String::from_utf8_lossy(&screen);
    assert!(status.success(), "{screen:?}");
    assert!(!screen.contains("typed-secret"), "echoed: {screen:?}");
    assert_eq!(
        service.lookup(&["service", "mailferry", "username", "tty@localhost"]),
        Some("typed-secret".to_string())
    );
}
