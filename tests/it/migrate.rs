//! Migrations into the real Dovecot: POP3, Maildir and IMAP sources, reruns, crashes,
//! verification and deleting the source.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::support::{
    Env, User, assert_same, deliver_local, dovecot, imap_account, local_files, local_messages,
    message, pop3_account,
};

/// Messages with a Date header (what a POP3 migration takes as the date).
fn dated(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut m = b"Date: Tue, 1 Jul 2003 10:52:37 +0200\n".to_vec();
            m.extend(message(tag, i, 300 + (i * 97) % 4000));
            m
        })
        .collect()
}

/// A config with the source section, the target `dst`, and `back`: the target fetched into
/// `back_dir` to look at what arrived.
fn config(env: &Env, source: &str, target: &User) -> std::path::PathBuf {
    let back = env.path("Back");
    env.config(&format!(
        "{source}{}{}",
        imap_account("dst", target, "implicit", &env.path("unused"), ""),
        imap_account("back", target, "implicit", &back, "")
    ));
    back
}

/// What arrived on the target: its folders fetched into a Maildir.
fn fetch_back(env: &Env) {
    env.run(&["fetch", "back"]).expect(0);
}

#[test]
fn pop3_to_imap_arrives_complete_once_and_verified() {
    let server = dovecot();
    let src = server.user("mig-pop-src");
    let dst = server.user("mig-pop-dst");
    let mail = dated("mp", 150);
    server.put(&src, "", &mail);
    let mut env = Env::new();
    env.trust_test_ca();
    let back = config(
        &env,
        &pop3_account("old", &src, "implicit", &env.path("unused"), ""),
        &dst,
    );
    let dry = env.run(&["-v", "migrate", "--from", "old", "--to", "dst", "--dry-run"]);
    dry.expect(0);
    assert!(
        dry.stdout.contains("would copy 150 messages"),
        "{}",
        dry.stdout
    );
    assert_eq!(server.count(&dst, "INBOX"), 0, "a dry run copied");

    let run = env.run(&["-v", "migrate", "--from", "old", "--to", "dst", "--verify"]);
    run.expect(0);
    assert!(
        run.stdout.contains("150 copied")
            && run.stdout.contains("verified 150: 0 missing, 0 differ"),
        "{}",
        run.stdout
    );
    assert_eq!(server.count(&src, "INBOX"), 150, "the source was changed");
    fetch_back(&env);
    assert_same(local_messages(&back), &mail, "on the target");
    // The Date header became the INTERNALDATE (the fetched file's time).
    for (_, _, mtime) in local_files(&back) {
        assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(1_057_049_557));
    }

    let rerun = env.run(&["-v", "migrate", "--from", "old", "--to", "dst"]);
    rerun.expect(0);
    assert!(
        rerun.stdout.contains("0 copied") && rerun.stdout.contains("150 copied before"),
        "{}",
        rerun.stdout
    );
    assert_eq!(server.count(&dst, "INBOX"), 150);

    // Removed from the target behind mailferry's back: --verify says so, with exit code 1.
    server.expunge_message(&dst, "INBOX", "<mp.7@example.org>");
    let check = env.run(&["migrate", "--from", "old", "--to", "dst", "--verify"]);
    check.expect(1);
    assert!(
        check.stderr.contains("1 of 150 messages missing"),
        "{}",
        check.stderr
    );

    // --delete-source removes from the POP3 mailbox what the target holds now: not the one
    // removed behind our back, although state counts it as copied.
    let del = env.run(&[
        "-v",
        "migrate",
        "--from",
        "old",
        "--to",
        "dst",
        "--delete-source",
    ]);
    del.expect(0);
    assert!(
        del.stdout.contains("149 deleted from the source"),
        "{}",
        del.stdout
    );
    assert!(
        del.stderr
            .contains("1 messages copied before are no longer on the target")
    );
    assert_eq!(server.count(&src, "INBOX"), 1);
}

fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn maildir_to_imap_keeps_folders_flags_keywords_and_dates() {
    let server = dovecot();
    let dst = server.user("mig-md-dst");
    let mut env = Env::new();
    env.trust_test_ca();
    let src = env.path("Old");
    let top = vec![
        (message("mdtop", 0, 900), "FS"),
        (message("mdtop", 1, 500), ""),
    ];
    deliver_local(&src, &[], &top);
    let work: Vec<(Vec<u8>, &str)> = (0..40).map(|i| (message("mdwork", i, 700), "R")).collect();
    deliver_local(&src, &["Work", "Été"], &work);
    std::fs::write(src.join(".Work.Été/dovecot-keywords"), "0 $Label1\n").unwrap();
    let tagged =
        crate::support::find_local(&src.join(".Work.Été"), "<mdwork.3@example.org>").unwrap();
    crate::support::set_local_flags(&tagged, "Ra");
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            set_mtime(&e.path(), 1_600_000_000);
        }
    }
    let back = config(&env, "", &dst);
    let before: Vec<_> = local_files(&src.join(".Work.Été"));
    let src_arg = src.display().to_string();
    let run = env.run(&[
        "-v", "migrate", "--from", &src_arg, "--to", "dst", "--folder", "Imported", "--verify",
    ]);
    run.expect(0);
    assert!(
        run.stdout.contains("42 copied") && run.stdout.contains("2 folders created"),
        "{}",
        run.stdout
    );
    fetch_back(&env);
    let imported = local_files(&back.join(".Imported"));
    assert_eq!(imported.len(), 2);
    let flagged = imported.iter().find(|(m, _, _)| *m == top[0].0).unwrap();
    assert_eq!(flagged.1, "FS");
    assert_eq!(flagged.2, UNIX_EPOCH + Duration::from_secs(1_600_000_000));
    let arrived = local_files(&back.join(".Work.Été"));
    assert_same(
        arrived.iter().map(|(m, _, _)| m.clone()).collect(),
        &before.iter().map(|(m, _, _)| m.clone()).collect::<Vec<_>>(),
        "Work/Été",
    );
    let with_keyword =
        crate::support::find_local(&back.join(".Work.Été"), "<mdwork.3@example.org>").unwrap();
    assert_eq!(crate::support::local_flags(&with_keyword), "Ra");
    assert_eq!(
        std::fs::read_to_string(back.join(".Work.Été/dovecot-keywords")).unwrap(),
        "0 $Label1\n"
    );
    assert!(
        src.join(".Work.Été/cur").read_dir().unwrap().count() == 40,
        "source changed"
    );
    let rerun = env.run(&[
        "-v", "migrate", "--from", &src_arg, "--to", "dst", "--folder", "Imported",
    ]);
    rerun.expect(0);
    assert!(rerun.stdout.contains("0 copied"), "{}", rerun.stdout);
}

#[test]
fn imap_to_imap_and_earlier_copies_are_recognised() {
    let server = dovecot();
    let src = server.user("mig-imap-src");
    let dst = server.user("mig-imap-dst");
    let inbox: Vec<(Vec<u8>, &str)> = (0..120)
        .map(|i| (message("mi", i, 600), if i % 3 == 0 { "S" } else { "" }))
        .collect();
    server.put_flagged(&src, "", &inbox);
    let arch: Vec<Vec<u8>> = (0..100).map(|i| message("miarch", i, 2000)).collect();
    server.put(&src, "Archive.2024", &arch);
    let work: Vec<(Vec<u8>, &str)> = (0..80).map(|i| (message("miwork", i, 900), "FR")).collect();
    server.put_flagged(&src, "Work.Été", &work);
    // An earlier partial migration by another tool already put 10 of INBOX there.
    let earlier: Vec<Vec<u8>> = inbox[..10].iter().map(|(m, _)| m.clone()).collect();
    server.put(&dst, "", &earlier);
    let mut env = Env::new();
    env.trust_test_ca();
    let back = config(
        &env,
        &imap_account("oldimap", &src, "implicit", &env.path("unused"), ""),
        &dst,
    );
    // The target as an ad-hoc URL, its password from a command.
    let url = format!("imaps://{}@localhost:{}", dst.name, server.imaps);
    let password = format!("printf %s '{}'", dst.password);
    let run = env.run(&[
        "-v",
        "migrate",
        "--from",
        "oldimap",
        "--to",
        &url,
        "--to-password-command",
        &password,
        "--verify",
    ]);
    run.expect(0);
    assert!(
        run.stdout.contains("290 copied") && run.stdout.contains("10 already on the target"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("verify Work/Été -> Work/Été: 80 checked, 0 missing, 0 differ"),
        "{}",
        run.stdout
    );
    assert_eq!(server.count(&dst, "INBOX"), 120);
    assert_eq!(server.count(&dst, "Archive.2024"), 100);
    assert_eq!(server.count(&dst, "Work.Été"), 80);
    fetch_back(&env);
    let all: Vec<Vec<u8>> = inbox.iter().map(|(m, _)| m.clone()).collect();
    assert_same(local_messages(&back), &all, "INBOX");
    assert_same(
        local_messages(&back.join(".Archive.2024")),
        &arch,
        "Archive/2024",
    );
    let seen = local_files(&back)
        .into_iter()
        .filter(|(_, f, _)| f.contains('S'))
        .count();
    assert_eq!(seen, 40, "flags of copied and of recognised messages");
    let work_back = local_files(&back.join(".Work.Été"));
    assert_same(
        work_back.iter().map(|(m, _, _)| m.clone()).collect(),
        &work.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
        "Work/Été",
    );
    assert!(work_back.iter().all(|(_, f, _)| f == "FR"));
    // Dates: the source's INTERNALDATEs (put_flagged gives each message its own time).
    let times = |dir: &std::path::Path| {
        let mut t: Vec<_> = local_files(dir).into_iter().map(|(_, _, m)| m).collect();
        t.sort();
        t
    };
    let src_times: Vec<_> = {
        let mut t: Vec<_> = ["new", "cur"]
            .iter()
            .flat_map(|d| std::fs::read_dir(src.maildir().join(".Work.Été").join(d)).unwrap())
            .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
            .collect();
        t.sort();
        t
    };
    assert_eq!(times(&back.join(".Work.Été")), src_times);
}

#[test]
fn a_killed_migration_resumes_with_each_message_once() {
    let server = dovecot();
    for (step, n) in [
        ("upload-after-intent", 2),
        ("upload-after-append", 45),
        ("", 0),
    ] {
        let src = server.user(&format!("mig-kill-src-{step}-{n}"));
        let dst = server.user(&format!("mig-kill-dst-{step}-{n}"));
        let mail = dated(&format!("mk{step}{n}"), 300);
        server.put(&src, "", &mail);
        let mut env = Env::new();
        env.trust_test_ca();
        config(
            &env,
            &pop3_account("old", &src, "implicit", &env.path("unused"), ""),
            &dst,
        );
        if step.is_empty() {
            // A real SIGKILL, some time into the copy.
            let mut child = env
                .command(&["migrate", "--from", "old", "--to", "dst"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(250));
            let _ = child.kill();
            child.wait().unwrap();
        } else {
            let mut crashing = env.command(&["migrate", "--from", "old", "--to", "dst"]);
            crashing.env("MAILFERRY_FAILPOINT", format!("{step}:{n}"));
            let out = crashing.output().unwrap();
            assert_eq!(out.status.code(), None, "{step}:{n} should have crashed");
        }
        let partial = server.count(&dst, "INBOX");
        assert!(partial < 300, "{step}:{n}: nothing was left to resume");
        if step == "upload-after-append" {
            // APPENDs are pipelined: the crash after the nth completion may leave more on the
            // server than were confirmed; the rerun pairs those by content.
            assert!(partial >= n, "the crash came after the {n}th APPEND");
        }
        let run = env.run(&["-v", "migrate", "--from", "old", "--to", "dst", "--verify"]);
        run.expect(0);
        assert_eq!(
            server.count(&dst, "INBOX"),
            300,
            "{step}:{n}: {}",
            run.stdout
        );
    }
}

#[test]
fn a_dry_run_prints_its_plan_as_json() {
    let server = dovecot();
    let src = server.user("mig-dryjson-src");
    let dst = server.user("mig-dryjson-dst");
    server.put(&src, "", &dated("mdj", 3));
    server.put(&src, "Archive", &dated("mdja", 2));
    let mut env = Env::new();
    env.trust_test_ca();
    config(
        &env,
        &imap_account("old", &src, "implicit", &env.path("unused"), ""),
        &dst,
    );
    let run = env.run(&[
        "--json",
        "migrate",
        "--from",
        "old",
        "--to",
        "dst",
        "--dry-run",
    ]);
    run.expect(0);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let plan: Vec<(String, bool, usize)> = v["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["to"].as_str().unwrap().to_string(),
                u["create"].as_bool().unwrap(),
                u["copy"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        plan,
        [
            ("Archive".to_string(), true, 2),
            ("INBOX".to_string(), false, 3)
        ]
    );
    assert_eq!(
        (v["copied"].as_u64(), v["dry_run"].as_bool()),
        (Some(5), Some(true))
    );
    assert_eq!(server.count(&dst, "INBOX"), 0, "a dry run copied");
}
