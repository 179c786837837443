//! IMAP servers that are broken or hostile (a scripted fake: a real server will not do this).
//! Each case ends in a clear error or a safe skip with a message: never a write outside the
//! Maildir, never a hang past the timeout, never a panic.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::fake_imap::{FakeImap, Script};
use crate::support::{Env, local_messages, message, walk};

fn crlf(m: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(m)
        .replace('\n', "\r\n")
        .into_bytes()
}

fn mail(tag: &str, n: u32) -> Vec<(u32, Vec<u8>)> {
    (1..=n)
        .map(|u| (u, crlf(&message(tag, u as usize, 400))))
        .collect()
}

/// A config for the fake server; the Maildir is `area/Mail`, so that anything written beside
/// it shows.
fn env_for(port: u16, tls: &str) -> (Env, PathBuf) {
    let mut env = Env::new();
    env.var("FAKE_PW", "secret-pw");
    let maildir = env.path("area/Mail");
    env.config(&format!(
        "[accounts.fake]\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
         allow_plaintext = true\nuser = \"u\"\npassword_env = \"FAKE_PW\"\nmaildir = \"{}\"\n\
         timeout = \"2s\"\nretries = 0\n",
        maildir.display()
    ));
    (env, maildir)
}

#[test]
fn folder_names_from_the_server_never_leave_the_maildir() {
    let long = "n".repeat(300);
    let server = FakeImap::start(Script {
        folders: vec![
            r#"() "/" "INBOX""#.into(),
            r#"() "/" "../x""#.into(),
            r#"() "/" "/etc""#.into(),
            r#"() "/" "a/../../b""#.into(),
            "() \"/\" \"ctl\u{1}name\"".into(),
            format!(r#"() "/" "{long}""#),
            r#"() "/" "&Jjo""#.into(),
            "() \"/\" {5}\r\na\0b/c".into(),
        ],
        messages: mail("esc", 2),
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    let run = env.run(&["fetch"]);
    // The folders that cannot be stored fail alone; the others arrive.
    run.expect(2);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let area = maildir.parent().unwrap();
    for p in walk(area) {
        assert!(
            p.starts_with(&maildir),
            "written outside the Maildir: {p:?}"
        );
    }
    assert!(!area.join("x").exists() && !area.join("b").exists());
    // Names that cannot be stored are errors of their folders, each named; names with `..`
    // levels are stored escaped inside the Maildir; a name that is not modified UTF-7 is kept
    // as it was sent.
    assert!(run.stderr.contains("\"/etc\""), "{}", run.stderr);
    assert!(
        run.stderr.contains("longer than a file name may be"),
        "{}",
        run.stderr
    );
    assert!(maildir.join(".%2E%2E.x/cur").is_dir());
    // Control characters, even NUL, are escaped as other unsafe characters are.
    for kept in [".&Jjo", ".ctl%01name", ".a%00b.c"] {
        assert_eq!(local_messages(&maildir.join(kept)).len(), 2, "{kept}");
    }
    assert_eq!(
        local_messages(&maildir).len(),
        2,
        "INBOX itself still arrives"
    );
}

#[test]
fn a_body_for_a_uid_not_asked_for_is_dropped() {
    let server = FakeImap::start(Script {
        folders: vec![r#"() "/" "INBOX""#.into()],
        messages: mail("asked", 3),
        unasked: Some((50, crlf(&message("unasked", 0, 300)))),
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    let got = local_messages(&maildir);
    assert_eq!(got.len(), 3, "{}", run.stdout);
    assert!(!got.contains(&message("unasked", 0, 300)));
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(run.stdout.contains("no new mail"), "{}", run.stdout);
}

#[test]
fn a_literal_that_never_ends_hits_the_timeout_and_leaves_nothing() {
    let server = FakeImap::start(Script {
        folders: vec![r#"() "/" "INBOX""#.into()],
        messages: mail("stall", 1),
        stall_in_literal: true,
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    let started = Instant::now();
    let run = env.run(&["fetch"]);
    run.expect(75);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(local_messages(&maildir).is_empty());
    assert_eq!(
        std::fs::read_dir(maildir.join("tmp")).map_or(0, |d| d.count()),
        0,
        "a partial message was left in tmp/"
    );
}

#[test]
fn a_line_megabytes_long_is_a_protocol_error() {
    let server = FakeImap::start(Script {
        folders: vec![r#"() "/" "INBOX""#.into()],
        messages: mail("long", 1),
        // Past the 16 MiB a response line may have: refused, not buffered on.
        long_line: Some(40 << 20),
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    let run = env.run(&["fetch"]);
    run.expect(76);
    assert!(run.stderr.contains("longer than"), "{}", run.stderr);
    assert!(local_messages(&maildir).is_empty());
}

#[test]
fn a_reply_to_a_tag_never_sent_is_a_protocol_error() {
    let server = FakeImap::start(Script {
        wrong_tag: true,
        ..Script::default()
    });
    let (env, _) = env_for(server.port, "none");
    let run = env.run(&["fetch"]);
    run.expect(76);
    assert!(run.stderr.contains("not sent"), "{}", run.stderr);
}

#[test]
fn a_stripped_starttls_is_refused_before_the_password_is_sent() {
    let server = FakeImap::start(Script {
        caps: Some("IMAP4rev1 UIDPLUS AUTH=PLAIN".into()),
        ..Script::default()
    });
    let (env, _) = env_for(server.port, "starttls");
    let run = env.run(&["fetch"]);
    run.expect(69);
    assert!(run.stderr.contains("STARTTLS"), "{}", run.stderr);
    let commands = server.commands.lock().unwrap();
    assert!(
        commands
            .iter()
            .all(|c| !c.contains("LOGIN") && !c.contains("AUTHENTICATE")),
        "{commands:?}"
    );
}

#[test]
fn a_server_alert_is_shown_once_even_under_quiet() {
    let server = FakeImap::start(Script {
        folders: vec![r#"() "/" "INBOX""#.into(), r#"() "/" "Work""#.into()],
        messages: mail("alert", 2),
        alert: Some("Mailbox at 95% of quota \u{1b}[31m".into()),
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    let run = env.run(&["-q", "fetch"]);
    run.expect(0);
    let shown: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("95% of quota"))
        .collect();
    assert_eq!(shown.len(), 1, "{}", run.stderr);
    assert!(
        shown[0].contains("the server says") && !shown[0].contains('\u{1b}'),
        "{shown:?}"
    );
    assert_eq!(local_messages(&maildir).len(), 2);
}

#[test]
fn folders_whose_names_are_not_modified_utf7_are_archived_and_reruns_are_no_ops() {
    let names = ["&AGE-", "&Jjo", "&2AA-", "&AGEAYgBj-"];
    let mut folders = vec![r#"() "/" "INBOX""#.to_string()];
    folders.extend(names.iter().map(|n| format!(r#"() "/" "{n}""#)));
    let server = FakeImap::start(Script {
        folders,
        messages: mail("utf7", 2),
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    let run = env.run(&["-q", "fetch"]);
    run.expect(0);
    assert_eq!(local_messages(&maildir).len(), 2);
    for name in names {
        assert_eq!(
            local_messages(&maildir.join(format!(".{name}"))).len(),
            2,
            "{name}"
        );
    }
    // The raw name went back to the server, as it sent it.
    let commands = server.commands.lock().unwrap().clone();
    assert!(
        commands.iter().any(|c| c.contains("EXAMINE \"&Jjo\"")),
        "{commands:?}"
    );
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(run.stdout.contains("no new mail"), "{}", run.stdout);
}

#[test]
fn a_message_the_server_will_not_send_is_named_every_run_and_the_others_are_fetched() {
    let server = FakeImap::start(Script {
        folders: vec![r#"() "/" "INBOX""#.into()],
        messages: mail("unreadable", 5),
        refuse_fetch: vec![3],
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    for _ in 0..2 {
        let run = env.run(&["-q", "fetch"]);
        run.expect(2);
        assert!(
            run.stderr.contains("INBOX UID 3") && run.stderr.contains("could not be FETCHed"),
            "{}",
            run.stderr
        );
        let got = local_messages(&maildir);
        assert_eq!(got.len(), 4);
        assert!(!got.contains(&message("unreadable", 3, 400)));
    }
    // Asked for again on each run: the run after the first asks for UID 3 (and only it).
    let commands = server.commands.lock().unwrap();
    let bodies: Vec<&String> = commands
        .iter()
        .filter(|c| c.contains("BODY.PEEK[]"))
        .collect();
    assert!(
        bodies.last().is_some_and(|c| c.contains("FETCH 3 ")),
        "{bodies:?}"
    );
}

#[test]
fn folders_under_a_personal_namespace_prefix_are_named_without_it() {
    // Cyrus and Courier: personal folders under "INBOX." with "." between levels.
    let server = FakeImap::start(Script {
        caps: Some("IMAP4rev1 UIDPLUS NAMESPACE".into()),
        folders: vec![
            r#"() "." "INBOX""#.into(),
            r#"() "." "INBOX.Archive""#.into(),
            r#"() "." "INBOX.Archive.2024""#.into(),
        ],
        messages: mail("ns", 2),
        delimiter: Some('.'),
        namespace: Some(r#"(("INBOX." ".")) (("user." ".")) NIL"#.into()),
        ..Script::default()
    });
    let (env, maildir) = env_for(server.port, "none");
    env.run(&["fetch"]).expect(0);
    for folder in ["", ".Archive", ".Archive.2024"] {
        assert_eq!(local_messages(&maildir.join(folder)).len(), 2, "{folder}");
    }
    assert!(!maildir.join(".INBOX.Archive").exists());
    // The server's own names go back to it, and what naming needs was asked for in one go.
    let commands = server.commands.lock().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c.contains("EXAMINE \"INBOX.Archive.2024\""))
    );
    let list = commands
        .iter()
        .position(|c| c.contains("LIST \"\" \"*\""))
        .unwrap();
    let ns = commands
        .iter()
        .position(|c| c.ends_with("NAMESPACE"))
        .unwrap();
    assert_eq!(ns, list + 2, "{commands:?}");
}
