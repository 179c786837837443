//! POP3 fetch against the real Dovecot: keep, delete, delete_after, errors and TLS trust.

use std::fs;

use crate::support::{
    Env, assert_same, dovecot, files_in, local_messages, message, pop3_account, pop3_env,
};

fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| message(tag, i, 200 + (i * 37) % 3000))
        .collect()
}

#[test]
fn keep_mode_is_incremental_and_byte_identical() {
    let server = dovecot();
    for tls in ["implicit", "starttls", "none"] {
        let user = server.user(&format!("keep-{tls}"));
        let first = corpus(tls, 25);
        server.put(&user, "", &first);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        env.config(&pop3_account("acct", &user, tls, &maildir, ""));

        let run = env.run(&["-v", "fetch"]);
        run.expect(0);
        assert!(
            run.stdout.contains("acct: fetched 25 messages"),
            "{tls}: {}",
            run.stdout
        );
        assert_same(local_messages(&maildir), &first, tls);
        assert!(files_in(&maildir.join("tmp")).is_empty());
        assert_eq!(
            server.count(&user, "INBOX"),
            25,
            "keep mode leaves the server alone"
        );

        let run = env.run(&["-v", "fetch"]);
        run.expect(0);
        assert!(
            run.stdout.contains("acct: no new mail"),
            "{tls}: {}",
            run.stdout
        );
        assert_eq!(local_messages(&maildir).len(), 25);

        let more = corpus(&format!("{tls}-more"), 3);
        server.put(&user, "", &more);
        let run = env.run(&["-v", "fetch"]);
        run.expect(0);
        assert!(
            run.stdout.contains("fetched 3 messages"),
            "{tls}: {}",
            run.stdout
        );
        let mut all = first.clone();
        all.extend(more);
        assert_same(local_messages(&maildir), &all, tls);
    }
}

#[test]
fn delete_mode_empties_the_server_and_keeps_one_copy() {
    let server = dovecot();
    let user = server.user("delete");
    let mail = corpus("del", 40);
    server.put(&user, "", &mail);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&pop3_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "mode = \"delete\"",
    ));
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(
        run.stdout.contains("deleted 40 on the server"),
        "{}",
        run.stdout
    );
    assert_eq!(server.count(&user, "INBOX"), 0);
    assert_same(local_messages(&maildir), &mail, "local messages");
    env.run(&["fetch"]).expect(0);
    assert_eq!(local_messages(&maildir).len(), 40);
}

#[test]
fn keep_then_delete_removes_what_was_fetched_without_refetching() {
    let server = dovecot();
    let user = server.user("keepdelete");
    let mail = corpus("kd", 6);
    server.put(&user, "", &mail);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&pop3_account("acct", &user, "implicit", &maildir, ""));
    env.run(&["fetch"]).expect(0);
    let run = env.run(&["-v", "fetch", "--delete"]);
    run.expect(0);
    assert!(run.stdout.contains("deleted 6"), "{}", run.stdout);
    assert_eq!(server.count(&user, "INBOX"), 0);
    assert_same(local_messages(&maildir), &mail, "local messages");
}

#[test]
fn dry_run_changes_nothing_anywhere() {
    let server = dovecot();
    let user = server.user("dryrun");
    server.put(&user, "", &corpus("dry", 4));
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&pop3_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "mode = \"delete\"",
    ));
    let run = env.run(&["-v", "fetch", "--dry-run"]);
    run.expect(0);
    assert_eq!(
        run.stdout.matches("would fetch message").count(),
        4,
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("would delete message").count(),
        4,
        "{}",
        run.stdout
    );
    assert!(!maildir.exists());
    assert!(!env.path("state/mailferry/acct.sqlite").exists());
    assert_eq!(server.count(&user, "INBOX"), 4);
}

#[test]
fn delete_after_deletes_exactly_the_old_ones() {
    let server = dovecot();
    let user = server.user("deleteafter");
    let old = corpus("old", 3);
    server.put(&user, "", &old);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&pop3_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "delete_after = \"30d\"",
    ));
    let day = 86_400;
    let t0 = 1_800_000_000i64;
    env.var("MAILFERRY_NOW", &t0.to_string());
    env.run(&["fetch"]).expect(0);
    let young = corpus("young", 2);
    server.put(&user, "", &young);
    env.vars.retain(|(k, _)| k != "MAILFERRY_NOW");
    env.var("MAILFERRY_NOW", &(t0 + 10 * day).to_string());
    env.run(&["fetch"]).expect(0);
    assert_eq!(server.count(&user, "INBOX"), 5);

    // Day 30 after the first fetch: exactly the first three are due; the others are 20 days old.
    env.vars.retain(|(k, _)| k != "MAILFERRY_NOW");
    env.var("MAILFERRY_NOW", &(t0 + 30 * day).to_string());
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(run.stdout.contains("deleted 3"), "{}", run.stdout);
    assert_eq!(server.count(&user, "INBOX"), 2);
    let left = server.doveadm(&[
        "-f",
        "flow",
        "fetch",
        "-u",
        &user.name,
        "hdr.subject",
        "mailbox",
        "INBOX",
        "all",
    ]);
    assert!(
        left.contains("young message 0") && left.contains("young message 1"),
        "{left}"
    );
    let mut all = old;
    all.extend(young);
    assert_same(local_messages(&maildir), &all, "local messages");
}

#[test]
fn wrong_password_is_an_auth_failure() {
    let server = dovecot();
    let mut user = server.user("wrongpw");
    user.password = "not-it".into();
    let env = pop3_env(&user, "");
    let run = env.run(&["fetch"]);
    run.expect(77);
    assert!(
        run.stderr.contains("login as wrongpw") && run.stderr.contains("[AUTH]"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-it"), "{}", run.stderr);
}

#[test]
fn untrusted_certificate_and_pins() {
    let server = dovecot();
    let user = server.user("pins");
    server.put(&user, "", &corpus("pin", 1));
    let mut env = Env::new();
    // A trust store that does not hold the server's CA.
    env.var("SSL_CERT_FILE", &server.other_ca.display().to_string());
    let maildir = env.path("Mail");
    env.config(&pop3_account("acct", &user, "implicit", &maildir, ""));
    let run = env.run(&["fetch"]);
    run.expect(77);
    assert!(run.stderr.contains("is not trusted"), "{}", run.stderr);
    assert!(run.stderr.contains(&server.fingerprint()), "{}", run.stderr);
    assert!(!maildir.join("new").exists() || files_in(&maildir.join("new")).is_empty());

    let wrong = format!("sha256:{}", "00".repeat(32));
    env.config(&pop3_account(
        "acct",
        &user,
        "starttls",
        &maildir,
        &format!("tls_fingerprint = \"{wrong}\""),
    ));
    let run = env.run(&["fetch"]);
    run.expect(77);
    assert!(
        run.stderr.contains("does not match tls_fingerprint"),
        "{}",
        run.stderr
    );

    let right = server.fingerprint();
    env.config(&pop3_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        &format!("tls_fingerprint = \"{right}\""),
    ));
    env.run(&["fetch"]).expect(0);
    assert_eq!(local_messages(&maildir).len(), 1);
}

#[test]
fn mailbox_in_use_is_a_temporary_failure() {
    use std::io::{BufRead, BufReader, Write};
    let server = dovecot();
    let user = server.user("inuse");
    server.put(&user, "", &corpus("inuse", 1));
    // Another client holds the POP3 session (Dovecot runs with pop3_lock_session = yes).
    let stream = std::net::TcpStream::connect(("127.0.0.1", server.pop3)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    for cmd in [
        format!("USER {}\r\n", user.name),
        format!("PASS {}\r\n", user.password),
    ] {
        writer.write_all(cmd.as_bytes()).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("+OK"), "{line}");
    }
    let mut env = Env::new();
    env.trust_test_ca();
    // Dovecot answers IN-USE (after waiting for its lock); the run tries again until the other
    // client lets go, then succeeds.
    env.config(&pop3_account(
        "acct",
        &user,
        "implicit",
        &env.path("Mail"),
        "retries = 10\nretry_delay = \"100ms\"",
    ));
    let mut child = env
        .command(&["-v", "fetch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("trying again") {
        assert!(err.read_line(&mut said).unwrap() > 0, "no retry: {said}");
    }
    assert!(said.contains("IN-USE"), "{said}");
    writer.write_all(b"QUIT\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("fetched 1 message"));
    assert_eq!(local_messages(&env.path("Mail")).len(), 1);
}

#[test]
fn status_after_runs() {
    let server = dovecot();
    let user = server.user("status");
    server.put(&user, "", &corpus("st", 2));
    let env = pop3_env(&user, "");
    env.run(&["fetch"]).expect(0);
    let run = env.run(&["status"]);
    run.expect(0);
    assert!(
        run.stdout.contains("acct: 2 messages known"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(ok)"), "{}", run.stdout);
    let state = env.path("state/mailferry/acct.sqlite");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(state).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn every_password_mechanism_logs_in() {
    let server = dovecot();
    let user = server.user("mechs");
    server.put(&user, "", &corpus("mech", 2));
    let mut env = Env::new();
    env.trust_test_ca();
    for mech in ["plain", "login", "user", "apop"] {
        let maildir = env.path(&format!("Mail-{mech}"));
        env.config(&pop3_account(
            "acct",
            &user,
            "implicit",
            &maildir,
            &format!("auth = \"{mech}\""),
        ));
        fs::remove_dir_all(env.path("state")).ok();
        let run = env.run(&["-vv", "fetch"]);
        run.expect(0);
        assert_eq!(local_messages(&maildir).len(), 2, "{mech}");
        assert!(run.stderr.contains("C: "), "{mech}: no trace");
        assert!(
            !run.stderr.contains(&user.password),
            "{mech}: the trace shows the password"
        );
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        for secret in [
            b64(&format!("\0{}\0{}", user.name, user.password)),
            b64(&user.password),
        ] {
            assert!(
                !run.stderr.contains(&secret),
                "{mech}: the trace shows an encoded password"
            );
        }
    }
}

#[test]
fn quiet_prints_nothing_and_limits_apply() {
    let server = dovecot();
    let user = server.user("limits");
    let mut mail = corpus("lim", 5);
    mail.push(message("big", 0, 50_000));
    server.put(&user, "", &mail);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&pop3_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "max_size = \"20k\"",
    ));
    let run = env.run(&["-q", "fetch", "--max-messages", "3"]);
    run.expect(0);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    assert_eq!(local_messages(&maildir).len(), 3);
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(
        run.stdout.contains("fetched 2 messages") && run.stdout.contains("1 too large"),
        "{}",
        run.stdout
    );
    assert!(!local_messages(&maildir).contains(&message("big", 0, 50_000)));
    let run = env.run(&["--json", "fetch"]);
    run.expect(0);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(
        (
            v["account"].as_str(),
            v["fetched"].as_u64(),
            v["too_large"].as_u64()
        ),
        (Some("acct"), Some(0), Some(1))
    );
}

#[test]
fn lost_state_fetches_nothing_twice() {
    // The state deleted (the advice of old versions, a new machine, another XDG_STATE_HOME):
    // what the Maildir holds already is paired, not fetched again, in keep and delete mode.
    let server = dovecot();
    let user = server.user("pop-lost-state");
    let mail = corpus("pls", 30);
    server.put(&user, "", &mail);
    let env = pop3_env(&user, "");
    env.run(&["fetch"]).expect(0);
    let state = env.path("state/mailferry/acct.sqlite");
    fs::remove_file(&state).unwrap();
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(
        run.stdout.contains("30 already in the Maildir, paired"),
        "{}",
        run.stdout
    );
    assert_same(local_messages(&env.path("Mail")), &mail, "keep mode");
    fs::remove_file(&state).unwrap();
    env.run(&["fetch", "--delete"]).expect(0);
    assert_same(local_messages(&env.path("Mail")), &mail, "delete mode");
    assert_eq!(server.count(&user, "INBOX"), 0);
}

#[test]
fn status_of_the_other_accounts_works_when_one_state_is_corrupt() {
    let server = dovecot();
    let good = server.user("status-good");
    let bad = server.user("status-bad");
    server.put(&good, "", &corpus("sg", 2));
    server.put(&bad, "", &corpus("sb", 1));
    let mut env = Env::new();
    env.trust_test_ca();
    env.config(&format!(
        "{}{}",
        pop3_account("bad", &bad, "implicit", &env.path("MailB"), ""),
        pop3_account("good", &good, "implicit", &env.path("MailG"), "")
    ));
    env.run(&["fetch"]).expect(0);
    fs::write(
        env.path("state/mailferry/bad.sqlite"),
        b"not a database at all",
    )
    .unwrap();
    let run = env.run(&["status"]);
    run.expect(74);
    assert!(run.stderr.contains("bad.sqlite"), "{}", run.stderr);
    assert!(
        run.stdout.contains("good: 2 messages known"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_hanging_password_command_times_out_and_the_other_accounts_are_fetched() {
    let server = dovecot();
    let hang = server.user("pwhang");
    let good = server.user("pwgood");
    server.put(&good, "", &corpus("pwg", 3));
    let mut env = Env::new();
    env.trust_test_ca();
    let hanging = pop3_account(
        "hang",
        &hang,
        "implicit",
        &env.path("MailH"),
        "timeout = \"2s\"",
    );
    let hanging: String = hanging
        .lines()
        .map(|l| match l.starts_with("password_command") {
            true => "password_command = \"sleep 600\"\n".to_string(),
            false => format!("{l}\n"),
        })
        .collect();
    env.config(&format!(
        "{hanging}{}",
        pop3_account("good", &good, "implicit", &env.path("MailG"), "")
    ));
    for jobs in ["1", "4"] {
        let started = std::time::Instant::now();
        let run = env.run(&["fetch", "--jobs", jobs]);
        run.expect(78);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert!(
            run.stderr.contains("hang") && run.stderr.contains("did not finish within 2s"),
            "{}",
            run.stderr
        );
        assert_eq!(local_messages(&env.path("MailG")).len(), 3, "--jobs {jobs}");
    }
}
