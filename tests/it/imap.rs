//! IMAP fetch against the real Dovecot: folders, flags, dates, delete mode, UIDVALIDITY.

use crate::support::{
    Env, assert_same, dovecot, imap_account, local_files, local_messages, message,
};

fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| message(tag, i, 300 + (i * 71) % 5000))
        .collect()
}

#[test]
fn first_fetch_copies_folders_flags_and_dates_and_reruns_are_no_ops() {
    let server = dovecot();
    for tls in ["implicit", "starttls"] {
        let user = server.user(&format!("imapfetch-{tls}"));
        let inbox = corpus(&format!("{tls}-in"), 4);
        let flagged = message(&format!("{tls}-flagged"), 0, 700);
        server.put(&user, "", &inbox);
        server.put_flagged(&user, "", &[(flagged.clone(), "FS")]);
        let work = corpus(&format!("{tls}-work"), 3);
        server.put(&user, "Work.Été", &work);
        let nested = corpus(&format!("{tls}-arch"), 2);
        server.put(&user, "Archive.2024", &nested);
        let spam = corpus(&format!("{tls}-spam"), 2);
        server.put(&user, "Spam", &spam);

        // A keyword, carried by Dovecot's convention (letter + dovecot-keywords).
        server.doveadm(&[
            "flags",
            "add",
            "-u",
            &user.name,
            "$Label1",
            "mailbox",
            "INBOX",
            "header",
            "Subject",
            &format!("{tls}-flagged message 0"),
        ]);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        env.config(&imap_account(
            "acct",
            &user,
            tls,
            &maildir,
            "folders = [\"*\", \"!Spam\"]",
        ));
        let run = env.run(&["-v", "fetch"]);
        run.expect(0);
        assert!(
            run.stdout.contains("fetched 10 messages"),
            "{tls}: {}",
            run.stdout
        );
        let mut all_inbox = inbox.clone();
        all_inbox.push(flagged.clone());
        assert_same(local_messages(&maildir), &all_inbox, "INBOX");
        assert_same(
            local_messages(&maildir.join(".Work.Été")),
            &work,
            "Work/Été",
        );
        assert_same(
            local_messages(&maildir.join(".Archive.2024")),
            &nested,
            "Archive/2024",
        );
        assert!(!maildir.join(".Spam").exists(), "excluded folder fetched");

        // Flags and dates: the flagged message is in cur/ with FS; each file's time is the
        // server's INTERNALDATE, which Dovecot took from the time of the server's file.
        let files = local_files(&maildir);
        let (_, flags, _) = files.iter().find(|(m, _, _)| *m == flagged).unwrap();
        assert_eq!(flags, "FSa", "{tls}");
        assert_eq!(
            std::fs::read_to_string(maildir.join("dovecot-keywords")).unwrap(),
            "0 $Label1\n"
        );
        let server_times: Vec<std::time::SystemTime> = ["new", "cur"]
            .iter()
            .flat_map(|d| std::fs::read_dir(user.maildir().join(d)).unwrap().flatten())
            .map(|e| e.metadata().unwrap().modified().unwrap())
            .collect();
        for (_, _, mtime) in &files {
            assert!(
                server_times.contains(mtime),
                "{tls}: local time {mtime:?} is no server INTERNALDATE"
            );
        }
        // Private files: messages (and everything else) 0600, directories 0700.
        for path in crate::support::walk(&maildir) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            let want = if path.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{tls}: {path:?} has mode {mode:o}");
        }
        // BODY.PEEK: fetching marked nothing as read on the server.
        let seen = server.doveadm(&[
            "-f", "flow", "search", "-u", &user.name, "mailbox", "INBOX", "SEEN",
        ]);
        assert_eq!(
            seen.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "{tls}: {seen}"
        );

        let run = env.run(&["-v", "fetch"]);
        run.expect(0);
        assert!(run.stdout.contains("no new mail"), "{tls}: {}", run.stdout);

        let more = corpus(&format!("{tls}-more"), 2);
        server.put(&user, "Work.Été", &more);
        let run = env.run(&["-v", "fetch"]);
        run.expect(0);
        assert!(
            run.stdout.contains("fetched 2 messages"),
            "{tls}: {}",
            run.stdout
        );
        let mut all_work = work.clone();
        all_work.extend(more);
        assert_same(
            local_messages(&maildir.join(".Work.Été")),
            &all_work,
            "Work/Été after new mail",
        );
        assert_eq!(
            server.count(&user, "INBOX"),
            5,
            "keep mode leaves the server alone"
        );
    }
}

#[test]
fn delete_mode_empties_the_folders() {
    let server = dovecot();
    let user = server.user("imapdelete");
    let inbox = corpus("idel", 70);
    server.put(&user, "", &inbox);
    let sub = corpus("idelsub", 3);
    server.put(&user, "Sub", &sub);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&imap_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "mode = \"delete\"\nlayout = \"fs\"",
    ));
    let run = env.run(&["-v", "fetch"]);
    run.expect(0);
    assert!(
        run.stdout.contains("deleted 73 on the server"),
        "{}",
        run.stdout
    );
    assert_eq!(server.count(&user, "INBOX"), 0);
    assert_eq!(server.count(&user, "Sub"), 0);
    assert_same(local_messages(&maildir), &inbox, "INBOX");
    assert_same(
        local_messages(&maildir.join("Sub")),
        &sub,
        "Sub (fs layout)",
    );
}

#[test]
fn adhoc_url_with_a_folder_fetches_only_that_folder() {
    let server = dovecot();
    let user = server.user("imapadhoc");
    server.put(&user, "", &corpus("adin", 2));
    let work = corpus("adwork", 3);
    server.put(&user, "Work", &work);
    let mut env = Env::new();
    env.trust_test_ca();
    env.var("PW", &user.password);
    let maildir = env.path("Mail");
    let url = format!("imap://{}@localhost:{}/Work", user.name, server.imap);
    let run = env.run(&[
        "fetch",
        &url,
        "--maildir",
        maildir.to_str().unwrap(),
        "--password-env",
        "PW",
    ]);
    run.expect(0);
    assert_same(local_messages(&maildir.join(".Work")), &work, "Work");
    assert!(local_messages(&maildir).is_empty());
}

#[test]
fn adhoc_url_without_a_folder_fetches_every_folder_and_check_and_list_need_no_maildir() {
    let server = dovecot();
    let user = server.user("imapadhocall");
    let inbox = corpus("adall", 2);
    server.put(&user, "", &inbox);
    let work = corpus("adallwork", 3);
    server.put(&user, "Work", &work);
    let mut env = Env::new();
    env.trust_test_ca();
    env.var("PW", &user.password);
    let maildir = env.path("Mail");
    let url = format!("imaps://{}@localhost:{}", user.name, server.imaps);
    let with_pw = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--password-env", "PW"]);
        env.run(&all)
    };
    with_pw(&["fetch", &url, "--maildir", maildir.to_str().unwrap()]).expect(0);
    assert_same(local_messages(&maildir), &inbox, "INBOX");
    assert_same(local_messages(&maildir.join(".Work")), &work, "Work");
    let check = with_pw(&["check", &url]);
    check.expect(0);
    assert!(check.stdout.contains("2 folders"), "{}", check.stdout);
    assert!(
        check
            .stdout
            .contains("personal folders are at the top level"),
        "{}",
        check.stdout
    );
    let list = with_pw(&["list", &url]);
    list.expect(0);
    assert!(list.stdout.contains("Work: 3 messages"), "{}", list.stdout);
    // Plaintext allowed on the command line is said so, not "by the config".
    let plain = format!("imap://{}@localhost:{}", user.name, server.imap);
    let check = with_pw(&["check", &plain, "--tls", "none", "--allow-plaintext"]);
    check.expect(0);
    assert!(
        check
            .stdout
            .contains("plaintext allowed by --allow-plaintext"),
        "{}",
        check.stdout
    );
}

#[test]
fn a_keep_mode_no_op_opens_no_folder_and_new_mail_opens_only_its_own() {
    let server = dovecot();
    let user = server.user("imapnoop");
    server.put(&user, "", &corpus("noopin", 2));
    server.put(&user, "Work", &corpus("noopwork", 2));
    server.put(&user, "Lists", &corpus("nooplists", 2));
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&imap_account("acct", &user, "implicit", &maildir, ""));
    env.run(&["fetch"]).expect(0);
    let opened = |stderr: &str| -> Vec<String> {
        stderr
            .lines()
            .filter(|l| l.starts_with("C: ") && l.contains(" EXAMINE "))
            .filter_map(|l| {
                l.split(" EXAMINE ")
                    .nth(1)?
                    .split(' ')
                    .next()
                    .map(str::to_string)
            })
            .collect()
    };
    let run = env.run(&["-vv", "fetch"]);
    run.expect(0);
    assert!(run.stderr.contains(" STATUS "), "{}", run.stderr);
    assert_eq!(opened(&run.stderr), Vec::<String>::new());
    server.put(&user, "Work", &corpus("noopwork-new", 1));
    let run = env.run(&["-vv", "fetch"]);
    run.expect(0);
    assert_eq!(opened(&run.stderr), ["\"Work\""]);
    assert_eq!(local_messages(&maildir.join(".Work")).len(), 3);
}

#[test]
fn a_uidvalidity_change_refetches_nothing_twice() {
    let server = dovecot();
    let user = server.user("uidvalidity");
    let first = corpus("uv", 6);
    server.put(&user, "", &first);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&imap_account("acct", &user, "implicit", &maildir, ""));
    env.run(&["fetch"]).expect(0);
    server.doveadm(&[
        "mailbox",
        "update",
        "-u",
        &user.name,
        "--uid-validity",
        "12345",
        "INBOX",
    ]);
    let later = corpus("uv-later", 2);
    server.put(&user, "", &later);
    let run = env.run(&["fetch"]);
    run.expect(0);
    // Off a terminal (as from cron) the warning is printed, the summary is not.
    assert!(
        run.stderr.contains(
            "mailferry: warning: acct: folder INBOX: UIDVALIDITY changed; re-matched 6 of 6"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    let mut all = first;
    all.extend(later);
    assert_same(
        local_messages(&maildir),
        &all,
        "after the UIDVALIDITY change",
    );
    env.run(&["fetch"]).expect(0);
    assert_eq!(local_messages(&maildir).len(), 8);
}

#[test]
fn crash_at_every_step_of_an_imap_delete_run() {
    let server = dovecot();
    for (step, n) in [
        ("imap-after-tmp", 1),
        ("imap-after-tmp", 70),
        ("imap-after-record", 1),
        ("imap-after-rename", 1),
        ("imap-after-rename", 2),
        ("imap-after-store", 1),
        ("imap-after-store", 2),
    ] {
        let user = server.user(&format!("icrash-{step}-{n}"));
        let mail = corpus(&format!("{step}{n}"), 100);
        server.put(&user, "", &mail);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        env.config(&imap_account(
            "acct",
            &user,
            "implicit",
            &maildir,
            "mode = \"delete\"",
        ));
        let mut crashing = env.command(&["fetch"]);
        crashing.env("MAILFERRY_FAILPOINT", format!("{step}:{n}"));
        let out = crashing.output().unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "{step}:{n} should have crashed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env.run(&["fetch"]).expect(0);
        assert_same(local_messages(&maildir), &mail, &format!("{step}:{n}"));
        assert_eq!(server.count(&user, "INBOX"), 0, "{step}:{n}");
    }
}

#[test]
fn pipelined_keep_fetch_survives_a_crash_in_any_batch() {
    // 200 messages are four batches, each one's UID FETCH sent before the previous one is
    // read: a crash while batch N is being written or committed loses and repeats nothing.
    let server = dovecot();
    for (step, n) in [
        ("imap-after-tmp", 130),
        ("imap-after-record", 2),
        ("imap-after-rename", 3),
    ] {
        let user = server.user(&format!("ipipe-{step}-{n}"));
        let mail = corpus(&format!("pipe{step}{n}"), 200);
        server.put(&user, "", &mail);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        env.config(&imap_account("acct", &user, "implicit", &maildir, ""));
        let mut crashing = env.command(&["fetch"]);
        crashing.env("MAILFERRY_FAILPOINT", format!("{step}:{n}"));
        let out = crashing.output().unwrap();
        assert_eq!(out.status.code(), None, "{step}:{n} should have crashed");
        let partial = local_messages(&maildir).len();
        assert!(partial < 200, "{step}:{n}: {partial} already there");
        let run = env.run(&["-v", "fetch"]);
        run.expect(0);
        assert!(
            run.stdout
                .contains(&format!("fetched {} messages", 200 - partial)),
            "{step}:{n}: {partial} before, {}",
            run.stdout
        );
        assert_same(local_messages(&maildir), &mail, &format!("{step}:{n}"));
        assert_eq!(server.count(&user, "INBOX"), 200, "keep mode deleted");
    }
}

#[test]
fn imap_wrong_password_and_check() {
    let server = dovecot();
    let mut user = server.user("imapcheck");
    server.put(&user, "Work", &corpus("chk", 1));
    let mut env = Env::new();
    env.trust_test_ca();
    env.config(&imap_account(
        "acct",
        &user,
        "starttls",
        &env.path("Mail"),
        "",
    ));
    let run = env.run(&["-v", "-vv", "check"]);
    run.expect(0);
    assert!(
        run.stderr.contains("AUTHENTICATE <redacted>"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(&user.password),
        "the trace shows the password"
    );
    assert!(
        run.stdout.contains("TLS certificate sha256:"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 folders"), "{}", run.stdout);
    let run = env.run(&["list", "acct"]);
    run.expect(0);
    assert!(
        run.stdout.contains("Work") && run.stdout.contains("1 message"),
        "{}",
        run.stdout
    );
    user.password = "wrong".into();
    env.config(&imap_account(
        "acct",
        &user,
        "implicit",
        &env.path("Mail"),
        "",
    ));
    let run = env.run(&["fetch"]);
    run.expect(77);
    assert!(run.stderr.contains("login as imapcheck"), "{}", run.stderr);
}

#[test]
fn inbox_can_be_a_folder_of_its_own() {
    let server = dovecot();
    let user = server.user("inboxfolder");
    let inbox = corpus("ibf", 2);
    server.put(&user, "", &inbox);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&imap_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "inbox = \"folder\"",
    ));
    env.run(&["fetch"]).expect(0);
    assert_same(local_messages(&maildir.join(".INBOX")), &inbox, ".INBOX");
    assert!(local_messages(&maildir).is_empty(), "nothing at the root");
}

#[test]
fn a_size_limit_and_a_killed_first_run_leave_nothing_behind() {
    // The too-large messages are recorded as left on the server before anything is
    // downloaded; a first run killed after that must not strand the others below them, and
    // a rerun with a larger limit fetches what was left, each message once.
    let server = dovecot();
    let user = server.user("imap-maxsize-kill");
    let mut mail = corpus("mskill", 150);
    let big = message("mskillbig", 0, 40_000);
    mail.insert(149, big.clone());
    server.put(&user, "", &mail);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&imap_account("acct", &user, "implicit", &maildir, ""));
    let mut killed = env.command(&["fetch", "--max-size", "20k"]);
    killed.env("MAILFERRY_FAILPOINT", "imap-after-rename:1");
    assert_eq!(
        killed.output().unwrap().status.code(),
        None,
        "should have crashed"
    );
    assert!(local_messages(&maildir).len() < 150);
    let run = env.run(&["-v", "fetch", "--max-size", "20k"]);
    run.expect(0);
    assert!(
        run.stdout
            .contains("1 too large (over 20.0 KiB), left on the server"),
        "{}",
        run.stdout
    );
    assert_eq!(local_messages(&maildir).len(), 150);
    // Said again on the next run, and in status.
    let again = env.run(&["-v", "fetch", "--max-size", "20k"]);
    assert!(
        again.stdout.contains("no new mail, 1 too large"),
        "{}",
        again.stdout
    );
    let status = env.run(&["status", "acct"]);
    assert!(
        status.stdout.contains("1 left on the server (too large)"),
        "{}",
        status.stdout
    );
    let raised = env.run(&["-v", "fetch"]);
    raised.expect(0);
    assert!(
        raised.stdout.contains("fetched 1 message"),
        "{}",
        raised.stdout
    );
    assert_same(local_messages(&maildir), &mail, "everything once");
}

#[test]
fn a_pop3_and_an_imap_account_can_share_one_maildir() {
    // Each POP3 run clears stale tmp/ files; the IMAP run's files in flight already carry
    // their messages' old dates, and must not count as stale.
    let server = dovecot();
    let imap_user = server.user("shared-md-imap");
    let pop_user = server.user("shared-md-pop");
    let imap_mail = corpus("shimap", 400);
    server.put(&imap_user, "", &imap_mail);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&format!(
        "{}{}",
        imap_account("im", &imap_user, "implicit", &maildir, ""),
        crate::support::pop3_account("po", &pop_user, "implicit", &maildir, "")
    ));
    let mut imap = env.command(&["fetch", "im"]).spawn().unwrap();
    let mut pop_mail = Vec::new();
    let mut i = 0;
    let status = loop {
        if let Some(status) = imap.try_wait().unwrap() {
            break status;
        }
        let m = message("shpop", i, 500);
        server.put(&pop_user, "", std::slice::from_ref(&m));
        pop_mail.push(m);
        env.run(&["fetch", "po"]).expect(0);
        i += 1;
    };
    assert!(status.success(), "the IMAP fetch failed: {status:?}");
    env.run(&["fetch"]).expect(0);
    let mut all = imap_mail.clone();
    all.extend(pop_mail.clone());
    assert_same(
        local_messages(&maildir),
        &all,
        "both accounts, each message once",
    );
    assert!(!pop_mail.is_empty());
}

#[test]
fn two_pop3_and_two_imap_accounts_feed_one_maildir_at_once() {
    let server = dovecot();
    let mut sections = String::new();
    let mut all = Vec::new();
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    for (i, kind) in ["imap", "imap", "pop3", "pop3"].iter().enumerate() {
        let user = server.user(&format!("four-writers-{i}"));
        let mail = corpus(&format!("fw{i}"), 150);
        server.put(&user, "", &mail);
        all.extend(mail);
        sections.push_str(&match *kind {
            "imap" => imap_account(&format!("a{i}"), &user, "implicit", &maildir, ""),
            _ => crate::support::pop3_account(&format!("a{i}"), &user, "implicit", &maildir, ""),
        });
    }
    env.config(&sections);
    // All four at once (--jobs 4), twice: every message once.
    env.run(&["fetch", "--jobs", "4"]).expect(0);
    env.run(&["fetch", "--jobs", "4"]).expect(0);
    assert_same(local_messages(&maildir), &all, "four writers");
}
