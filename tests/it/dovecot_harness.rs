//! The harness itself, and Maildir written by mailferry's store being served by Dovecot.

use mailferry::config::Layout;
use mailferry::maildir::Maildir;

use crate::support::{Env, dovecot, message};

#[test]
fn tls_and_starttls_login_work_against_dovecot() {
    let server = dovecot();
    let user = server.user("harness");
    server.put(&user, "", &[message("h", 1, 500)]);
    let mut env = Env::new();
    env.trust_test_ca();
    env.var("PW", &user.password);
    for (url, tls) in [
        (
            format!("pop3s://{}@localhost:{}", user.name, server.pop3s),
            "implicit",
        ),
        (
            format!("pop3://{}@localhost:{}", user.name, server.pop3),
            "starttls",
        ),
    ] {
        let run = env.run(&[
            "-v",
            "check",
            &url,
            "--maildir",
            "m",
            "--password-env",
            "PW",
        ]);
        run.expect(0);
        assert!(
            run.stdout.contains("TLS certificate sha256:"),
            "{tls}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains(&server.fingerprint()),
            "{tls}: {}",
            run.stdout
        );
        assert!(run.stdout.contains("1 message"), "{tls}: {}", run.stdout);
    }
}

#[test]
fn maildir_written_by_the_store_is_read_by_dovecot() {
    let server = dovecot();
    let user = server.user("storeformat");
    let md = Maildir::new(user.maildir(), Layout::MaildirPlusPlus);
    let deliver = |components: &[&str], body: &[u8], flags: &str| {
        let folder = md.open_folder(components).unwrap();
        let mut tmp = folder.create_tmp().unwrap();
        tmp.write_crlf(body).unwrap();
        let durable = tmp.finish(None).unwrap();
        folder.commit(vec![(durable, flags.to_string())]).unwrap();
    };
    let plain = message("store", 1, 300);
    deliver(&[], &plain, "");
    deliver(&[], &message("store", 2, 300), "FS");
    deliver(&["Work", "Été"], &message("store", 3, 300), "R");
    server.chown_tree(&user.home);

    let listed = server.doveadm(&["mailbox", "list", "-u", &user.name]);
    assert!(listed.lines().any(|l| l.trim() == "Work.Été"), "{listed}");
    let flags = server.doveadm(&[
        "-f", "tab", "fetch", "-u", &user.name, "flags", "mailbox", "INBOX", "all",
    ]);
    let mut rows: Vec<&str> = flags.lines().skip(1).map(str::trim).collect();
    rows.sort();
    assert_eq!(rows.len(), 2, "{flags}");
    assert!(
        rows.iter()
            .any(|r| r.contains("\\Seen") && r.contains("\\Flagged")),
        "{flags}"
    );
    let body = server.doveadm(&[
        "-f",
        "flow",
        "fetch",
        "-u",
        &user.name,
        "body",
        "mailbox",
        "Work.Été",
        "all",
    ]);
    assert!(body.contains("store 3 line 0"), "{body}");
    let answered = server.doveadm(&[
        "-f",
        "flow",
        "fetch",
        "-u",
        &user.name,
        "flags",
        "mailbox",
        "Work.Été",
        "all",
    ]);
    assert!(answered.contains("\\Answered"), "{answered}");
    let text = server.doveadm(&[
        "-f", "flow", "fetch", "-u", &user.name, "text", "mailbox", "INBOX", "all",
    ]);
    assert!(
        text.contains("Subject: store message 1") && text.contains("Subject: store message 2"),
        "{text}"
    );
}
