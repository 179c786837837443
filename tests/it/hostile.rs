//! POP3 servers that are broken or hostile (scripted fakes: a real server will not do this).

use crate::support::fake_pop3::{FakePop3, Script};
use crate::support::{Env, assert_same, local_messages, message};

fn account(port: u16, maildir: &std::path::Path, extra: &str) -> String {
    format!(
        "[accounts.fake]\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nallow_plaintext = true\n\
         user = \"u\"\npassword_env = \"FAKE_PW\"\nmaildir = \"{}\"\ntimeout = \"2s\"\n{extra}\n",
        maildir.display()
    )
}

fn env_for(port: u16, extra: &str) -> (Env, std::path::PathBuf) {
    let mut env = Env::new();
    env.var("FAKE_PW", "secret-pw");
    let maildir = env.path("Mail");
    env.config(&account(port, &maildir, extra));
    (env, maildir)
}

#[test]
fn duplicate_uidls_neither_merge_nor_lose_messages() {
    let mail: Vec<Vec<u8>> = (0..5).map(|i| message("dup", i, 400)).collect();
    let script = Script {
        uidls: vec![
            Some("a".into()),
            Some("same".into()),
            Some("same".into()),
            Some("b".into()),
            Some("same".into()),
        ],
        uidl: true,
        top: true,
        ..Script::default()
    };
    let server = FakePop3::start(script, &mail);
    let (env, maildir) = env_for(server.port, "");
    env.run(&["fetch"]).expect(0);
    assert_same(local_messages(&maildir), &mail, "local messages");
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(run.stdout.contains("no new mail"), "{}", run.stdout);
    env.run(&["fetch", "--delete"]).expect(0);
    assert!(server.mailbox.lock().unwrap().is_empty());
    assert_eq!(local_messages(&maildir).len(), 5);
}

#[test]
fn without_uidl_keep_mode_uses_header_hashes() {
    let mail: Vec<Vec<u8>> = (0..4).map(|i| message("nouidl", i, 300)).collect();
    let server = FakePop3::start(
        Script {
            top: true,
            ..Script::default()
        },
        &mail,
    );
    let (env, maildir) = env_for(server.port, "");
    env.run(&["fetch"]).expect(0);
    env.run(&["fetch"]).expect(0);
    assert_same(local_messages(&maildir), &mail, "local messages");
    let new = String::from_utf8(message("nouidl", 9, 300))
        .unwrap()
        .replace('\n', "\r\n");
    server
        .mailbox
        .lock()
        .unwrap()
        .push((None, new.into_bytes()));
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(run.stdout.contains("fetched 1 message"), "{}", run.stdout);
}

#[test]
fn without_uidl_and_top_only_delete_mode_works() {
    let mail: Vec<Vec<u8>> = (0..3).map(|i| message("bare", i, 300)).collect();
    let server = FakePop3::start(Script::default(), &mail);
    let (env, maildir) = env_for(server.port, "");
    let run = env.run(&["fetch"]);
    run.expect(69);
    assert!(run.stderr.contains("UIDL or TOP"), "{}", run.stderr);
    assert!(local_messages(&maildir).is_empty());
    env.run(&["fetch", "--delete"]).expect(0);
    assert_same(local_messages(&maildir), &mail, "local messages");
    assert!(server.mailbox.lock().unwrap().is_empty());
}

#[test]
fn stripped_stls_is_refused_before_the_password_is_sent() {
    let server = FakePop3::start(
        Script {
            uidl: true,
            ..Script::default()
        },
        &[message("s", 0, 100)],
    );
    let mut env = Env::new();
    env.var("FAKE_PW", "secret-pw");
    let maildir = env.path("Mail");
    env.config(&account(server.port, &maildir, "").replace(
        "tls = \"none\"\nallow_plaintext = true\n",
        "tls = \"starttls\"\n",
    ));
    let run = env.run(&["fetch"]);
    run.expect(69);
    assert!(run.stderr.contains("STLS"), "{}", run.stderr);
    let seen = server.seen.lock().unwrap();
    assert!(
        !seen
            .commands
            .iter()
            .any(|c| c.contains("secret-pw") || c.starts_with("PASS")),
        "{:?}",
        seen.commands
    );
}

#[test]
fn a_stalled_server_hits_the_timeout() {
    let server = FakePop3::start(
        Script {
            stall: true,
            ..Script::default()
        },
        &[],
    );
    let (env, _) = env_for(server.port, "retries = 1\nretry_delay = \"10ms\"");
    let started = std::time::Instant::now();
    let run = env.run(&["fetch"]);
    run.expect(75);
    assert!(run.stderr.contains("timed out after 2s"), "{}", run.stderr);
    assert!(
        run.stderr.contains("gave up after 2 attempts"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn an_endless_line_is_a_protocol_error() {
    let server = FakePop3::start(
        Script {
            endless_greeting: true,
            ..Script::default()
        },
        &[],
    );
    let (env, _) = env_for(server.port, "");
    let run = env.run(&["fetch"]);
    run.expect(76);
    assert!(run.stderr.contains("longer than"), "{}", run.stderr);
}

#[test]
fn oauth_tokens_and_their_refusal() {
    for mech in ["xoauth2", "oauthbearer"] {
        let script = Script {
            uidl: true,
            sasl: vec![mech.to_uppercase()],
            secret: "tok-123".into(),
            uidls: vec![Some("x".into())],
            ..Script::default()
        };
        let server = FakePop3::start(script, &[message("oauth", 0, 200)]);
        let mut env = Env::new();
        env.var("FAKE_PW", "tok-123");
        let maildir = env.path("Mail");
        env.config(&account(
            server.port,
            &maildir,
            &format!("auth = \"{mech}\""),
        ));
        env.run(&["fetch"]).expect(0);
        assert_eq!(local_messages(&maildir).len(), 1, "{mech}");

        env.vars.retain(|(k, _)| k != "FAKE_PW");
        env.var("FAKE_PW", "expired");
        let run = env.run(&["fetch"]);
        run.expect(77);
        assert!(
            run.stderr.contains("invalid token"),
            "{mech}: {}",
            run.stderr
        );
        let seen = server.seen.lock().unwrap();
        let answer = seen
            .commands
            .iter()
            .find(|c| c.starts_with("(answer)"))
            .cloned();
        let want = if mech == "oauthbearer" {
            "(answer) AQ=="
        } else {
            "(answer) "
        };
        assert_eq!(
            answer.as_deref().map(str::trim_end),
            Some(want.trim_end()),
            "{mech}"
        );
    }
}

#[test]
fn oauth_tokens_are_asked_for_again_at_each_login() {
    // Delete mode commits (QUIT, reconnect) after the batch (64) that passes 50 deletions here:
    // three logins in one run, each with a token that works once, as an expiring token would.
    let mail: Vec<Vec<u8>> = (0..130).map(|i| message("oauthre", i, 300)).collect();
    let script = Script {
        uidl: true,
        sasl: vec!["XOAUTH2".into()],
        secret: "tok-".into(),
        single_use_tokens: true,
        uidls: (0..130).map(|i| Some(format!("u{i}"))).collect(),
        ..Script::default()
    };
    let server = FakePop3::start(script, &mail);
    let mut env = Env::new();
    env.var("MAILFERRY_COMMIT_EVERY", "50");
    let maildir = env.path("Mail");
    let counter = env.path("counter");
    let config = account(
        server.port,
        &maildir,
        &format!(
            "auth = \"xoauth2\"\nmode = \"delete\"\npassword_command = \"echo x >> {0}; echo tok-$(wc -l < {0})\"",
            counter.display()
        ),
    )
    .replace("password_env = \"FAKE_PW\"\n", "");
    env.config(&config);
    env.run(&["fetch"]).expect(0);
    assert_same(local_messages(&maildir), &mail, "fetched");
    assert!(
        server.mailbox.lock().unwrap().is_empty(),
        "deleted on the server"
    );
    let tokens = server.seen.lock().unwrap().tokens.clone();
    assert_eq!(tokens, ["tok-1", "tok-2", "tok-3"]);
}

#[test]
fn a_second_concurrent_run_exits_at_once_with_its_own_code() {
    let server = FakePop3::start(
        Script {
            stall: true,
            ..Script::default()
        },
        &[],
    );
    let (env, _) = env_for(server.port, "");
    let mut first = env
        .command(&["fetch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock (it is then stalled by the server).
    let lock = env.path("state/mailferry/fake.lock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&lock)
        .map(|t| t.trim().is_empty())
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "first run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    let second = env.run(&["fetch"]);
    second.expect(80);
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        second.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the second run waited"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_server_that_lies_about_deleting_is_caught() {
    // More than one batch (64), so that the run starts a second session.
    let mail: Vec<Vec<u8>> = (0..70).map(|i| message("liar", i, 200)).collect();
    let script = Script {
        uidl: true,
        uidls: (0..70).map(|i| Some(format!("u{i}"))).collect(),
        ignore_deletes: true,
        ..Script::default()
    };
    let server = FakePop3::start(script, &mail);
    let (mut env, maildir) = env_for(server.port, "mode = \"delete\"");
    env.var("MAILFERRY_COMMIT_EVERY", "1");
    let run = env.run(&["fetch"]);
    run.expect(76);
    assert!(
        run.stderr.contains("after confirming its deletion"),
        "{}",
        run.stderr
    );
    // The first batch was fetched and is kept; the run stopped before anything else.
    let local = local_messages(&maildir);
    assert_eq!(local.len(), 64);
    assert!(local.iter().all(|m| mail.contains(m)));
}

#[test]
fn a_message_with_a_bare_lf_before_a_dot_line_is_fetched_whole_with_the_others() {
    // RFC 1939 lines end in CRLF: "\n.\r\n" inside a message is data, not the end of it.
    let crlf = |m: Vec<u8>| {
        String::from_utf8_lossy(&m)
            .replace('\n', "\r\n")
            .into_bytes()
    };
    let mut poison = crlf(message("poison", 1, 300));
    let body = poison.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    poison.splice(body..body, b"before\n.\r\nafter\r\n".iter().copied());
    let mail = vec![
        crlf(message("poison", 0, 300)),
        poison.clone(),
        crlf(message("poison", 2, 300)),
    ];
    let script = Script {
        uidls: vec![Some("a".into()), Some("b".into()), Some("c".into())],
        uidl: true,
        top: true,
        raw_line_ends: true,
        ..Script::default()
    };
    let server = FakePop3::start(script, &mail);
    let (env, maildir) = env_for(server.port, "");
    env.run(&["fetch"]).expect(0);
    let local = local_messages(&maildir);
    assert_eq!(
        local.len(),
        3,
        "every message, the one with the bare LF too"
    );
    let whole = String::from_utf8_lossy(&poison).replace("\r\n", "\n");
    assert!(
        local.iter().any(|m| *m == whole.as_bytes()),
        "the poison message, whole"
    );
    env.run(&["fetch"]).expect(0);
    assert_eq!(local_messages(&maildir).len(), 3);
}

#[test]
fn a_message_the_server_refuses_to_send_is_named_left_there_and_the_others_are_fetched() {
    let mail: Vec<Vec<u8>> = (0..5).map(|i| message("refused", i, 400)).collect();
    let script = Script {
        uidls: (0..5).map(|i| Some(format!("r{i}"))).collect(),
        uidl: true,
        top: true,
        refuse_retr: vec!["r2".into()],
        ..Script::default()
    };
    let server = FakePop3::start(script, &mail);
    let (env, maildir) = env_for(server.port, "mode = \"delete\"");
    // Said on every run, -q or not, with the message's UIDL and the server's words; the
    // others are fetched once and deleted, the refused one stays on the server.
    for _ in 0..2 {
        let run = env.run(&["fetch", "-q"]);
        run.expect(2);
        assert!(
            run.stderr.contains("message r2") && run.stderr.contains("message is corrupt"),
            "{}",
            run.stderr
        );
        let local = local_messages(&maildir);
        assert_eq!(local.len(), 4);
        assert!(local.iter().all(|m| mail.contains(m) && *m != mail[2]));
        let left = server.mailbox.lock().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0.as_deref(), Some("r2"));
    }
    let run = env.run(&["fetch", "--json"]);
    run.expect(2);
    let jobs = crate::support::schema::objects(&run.stdout);
    assert_eq!(jobs[0]["failed"][0]["id"], "r2", "{}", jobs[0]);
    assert_eq!(jobs[0]["fetched"], 0, "{}", jobs[0]);
}

#[test]
fn utf8_is_asked_for_where_offered_and_a_refusal_stops_before_anything_is_fetched() {
    // A header with raw UTF-8 (RFC 6532), as a server that offers UTF8 keeps it.
    let raw = "From: Zoë <zoe@example.org>\nSubject: Grüße aus Köln\nMessage-ID: <u8@example.org>\n\nHallo\n";
    let mail = vec![raw.as_bytes().to_vec()];
    let script = Script {
        uidls: vec![Some("u8".into())],
        uidl: true,
        top: true,
        utf8: true,
        ..Script::default()
    };
    let server = FakePop3::start(script.clone(), &mail);
    let (env, maildir) = env_for(server.port, "");
    env.run(&["fetch"]).expect(0);
    assert_eq!(local_messages(&maildir), mail);
    let commands = server.seen.lock().unwrap().commands.clone();
    let at = |verb: &str| commands.iter().position(|c| c.starts_with(verb));
    assert!(at("UTF8").is_some(), "{commands:?}");
    assert!(at("UTF8") < at("USER").or(at("AUTH")), "{commands:?}");

    let refusing = FakePop3::start(
        Script {
            utf8: false,
            refuse_utf8: true,
            ..script
        },
        &mail,
    );
    let (env, maildir) = env_for(refusing.port, "mode = \"delete\"");
    let run = env.run(&["fetch"]);
    run.expect(69);
    assert!(run.stderr.contains("offers UTF8"), "{}", run.stderr);
    assert!(local_messages(&maildir).is_empty());
    assert_eq!(refusing.mailbox.lock().unwrap().len(), 1);
}
