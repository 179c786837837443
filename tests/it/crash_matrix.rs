//! The crash matrix (the mbsync way): a run is crashed after each of its steps in turn
//! (`MAILFERRY_FAILPOINT=any:N`, an abort that leaves what a SIGKILL leaves), rerun, and the
//! end state compared with that of the same run left alone.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{
    Env, User, channel, deliver_local, dovecot, find_local, header_line, imap_account, message,
    pop3_account, set_local_flags, walk,
};

/// Messages by folder, Message-ID and flags, the way a user would compare two mailboxes.
type Snapshot = Vec<(String, String, String)>;

/// What the server holds for a user, from Dovecot's own view (doveadm).
fn server_snapshot(user: &User) -> Snapshot {
    let out = dovecot().doveadm(&[
        "-f",
        "tab",
        "fetch",
        "-u",
        &user.name,
        "mailbox flags hdr.message-id",
        "ALL",
    ]);
    let mut rows: Snapshot = out
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut cols = line.split('\t');
            let mailbox = cols.next().unwrap_or_default().to_string();
            let flags: BTreeSet<&str> = cols
                .next()
                .unwrap_or_default()
                .split(' ')
                .filter(|f| !f.is_empty() && *f != "\\Recent")
                .collect();
            let id = cols.next().unwrap_or_default().trim().to_string();
            (mailbox, id, flags.into_iter().collect::<Vec<_>>().join(" "))
        })
        .collect();
    rows.sort();
    rows
}

/// What a Maildir holds: each message file's folder, Message-ID and flag letters.
fn local_snapshot(maildir: &Path) -> Snapshot {
    let mut rows: Snapshot = walk(maildir)
        .into_iter()
        .filter(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|d| d == "cur" || d == "new")
        })
        .map(|p| {
            let folder = p
                .parent()
                .and_then(Path::parent)
                .and_then(|f| f.strip_prefix(maildir).ok())
                .map(|f| f.display().to_string())
                .unwrap_or_default();
            let raw = std::fs::read(&p).unwrap();
            let id = header_line(&raw, "Message-ID").unwrap_or_default();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let flags = name
                .rsplit_once(":2,")
                .map(|(_, f)| f.to_string())
                .unwrap_or_default();
            (folder, id, flags)
        })
        .collect();
    rows.sort();
    rows
}

/// The end state of a fetch or sync: the Maildir, then the server.
fn maildir_and_server(maildir: std::path::PathBuf, user: User) -> Box<dyn Fn() -> Snapshot> {
    Box::new(move || {
        let mut all = local_snapshot(&maildir);
        all.extend(server_snapshot(&user));
        all
    })
}

/// The end state of a migration: the source's server, then the target's.
fn source_and_target(src: User, dst: User) -> Box<dyn Fn() -> Snapshot> {
    Box::new(move || {
        let mut all = server_snapshot(&src);
        all.push(("--- target".into(), String::new(), String::new()));
        all.extend(server_snapshot(&dst));
        all
    })
}

/// One prepared run: what to run, and how to read the end state.
struct Case {
    env: Env,
    args: Vec<&'static str>,
    snapshot: Box<dyn Fn() -> Snapshot>,
}

/// Crashes `prepare(tag)`'s run after step 1, 2, ... until a run gets through, reruns each,
/// and holds the end state to the uninterrupted run's. Returns the steps crashed at.
fn crash_after_every_step(name: &str, prepare: impl Fn(&str) -> Case) -> BTreeSet<String> {
    let reference = prepare(&format!("{name}-ref"));
    let run = reference.env.run(&reference.args);
    run.expect(0);
    let expected = (reference.snapshot)();
    assert!(
        !expected.is_empty(),
        "{name}: the run left nothing to compare"
    );

    let mut crashed_at = BTreeSet::new();
    for n in 1.. {
        assert!(n < 200, "{name}: the run never got through");
        let case = prepare(&format!("{name}-{n}"));
        let mut crashing = case.env.command(&case.args);
        crashing.env("MAILFERRY_FAILPOINT", format!("any:{n}"));
        let out = crashing.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            // Past the last step: the run went through.
            Some(0) => {
                assert_eq!((case.snapshot)(), expected, "{name}: uncrashed run {n}");
                break;
            }
            Some(code) => panic!("{name}: step {n}: exit {code}: {stderr}"),
            None => {
                let step = stderr
                    .lines()
                    .find_map(|l| l.strip_prefix("failpoint: crashing at "))
                    .unwrap_or("?")
                    .to_string();
                let rerun = case.env.run(&case.args);
                assert_eq!(
                    rerun.code, 0,
                    "{name}: rerun after a crash at step {n} ({step}): {}",
                    rerun.stderr
                );
                assert_eq!(
                    (case.snapshot)(),
                    expected,
                    "{name}: end state after a crash at step {n} ({step}); rerun said:\n{}{}",
                    rerun.stdout,
                    rerun.stderr
                );
                crashed_at.insert(step);
            }
        }
    }
    crashed_at
}

/// How an account section is written (`pop3_account` or `imap_account`).
type AccountFn = fn(&str, &User, &str, &Path, &str) -> String;

/// A delete-mode fetch of `user` into a fresh Maildir.
fn delete_fetch(user: User, account: AccountFn) -> Case {
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "mode = \"delete\"",
    ));
    Case {
        env,
        args: vec!["fetch"],
        snapshot: maildir_and_server(maildir, user),
    }
}

/// A migration from `src` (read with `source`) to the IMAP account of `dst`, deleting the source.
fn migration(src: User, source: AccountFn, dst: User) -> Case {
    let mut env = Env::new();
    env.trust_test_ca();
    env.config(&format!(
        "{}{}",
        source("old", &src, "implicit", &env.path("unused-src"), ""),
        imap_account("new", &dst, "implicit", &env.path("unused-dst"), "")
    ));
    Case {
        env,
        args: vec!["migrate", "--from", "old", "--to", "new", "--delete-source"],
        snapshot: source_and_target(src, dst),
    }
}

fn assert_covers(crashed_at: &BTreeSet<String>, steps: &[&str]) {
    for step in steps {
        assert!(
            crashed_at.contains(*step),
            "never crashed at {step}: {crashed_at:?}"
        );
    }
}

#[test]
fn a_pop3_delete_run_crashed_after_every_step() {
    let server = dovecot();
    let mail: Vec<Vec<u8>> = (0..5).map(|i| message("cmpop", i, 400 + i * 300)).collect();
    let crashed_at = crash_after_every_step("cm-pop3", |tag| {
        let user = server.user(tag);
        server.put(&user, "", &mail);
        let mut case = delete_fetch(user, pop3_account);
        case.env.var("MAILFERRY_COMMIT_EVERY", "2");
        case
    });
    assert_covers(
        &crashed_at,
        &[
            "pop3-after-tmp",
            "pop3-after-record",
            "pop3-after-rename",
            "pop3-after-dele",
            "pop3-before-quit",
            "pop3-after-quit",
        ],
    );
}

#[test]
fn an_imap_delete_run_over_two_folders_crashed_after_every_step() {
    let server = dovecot();
    let crashed_at = crash_after_every_step("cm-imapdel", |tag| {
        let user = server.user(tag);
        server.put(
            &user,
            "",
            &(0..3)
                .map(|i| message("cmid", i, 500 + i * 900))
                .collect::<Vec<_>>(),
        );
        server.put(
            &user,
            "Work",
            &(3..5).map(|i| message("cmid", i, 700)).collect::<Vec<_>>(),
        );
        delete_fetch(user, imap_account)
    });
    assert_covers(
        &crashed_at,
        &[
            "imap-after-tmp",
            "imap-after-record",
            "imap-after-rename",
            "imap-after-store",
            "imap-after-expunge",
        ],
    );
}

#[test]
fn a_sync_with_expunge_crashed_after_every_step() {
    let server = dovecot();
    let crashed_at = crash_after_every_step("cm-sync", |tag| {
        let user = server.user(tag);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        // One connection: with folders worked on in parallel, the order of their steps (and so
        // which step the N-th is) varied from run to run, and a step could fall between two N.
        env.config(&format!(
            "{}{}",
            imap_account("acct", &user, "implicit", &maildir, "connections = 1\n"),
            channel("ch", "acct", "expunge = \"both\"\ncreate = \"both\"")
        ));
        server.put(
            &user,
            "",
            &(0..6).map(|i| message("cms", i, 500)).collect::<Vec<_>>(),
        );
        server.put(&user, "Work", &[message("cmw", 0, 700)]);
        env.run(&["sync"]).expect(0);

        // This device: read one, delete one, write one, and one in a new folder.
        let mid = |i: usize| format!("<cms.{i}@example.org>");
        set_local_flags(&find_local(&maildir, &mid(0)).unwrap(), "S");
        std::fs::remove_file(find_local(&maildir, &mid(1)).unwrap()).unwrap();
        deliver_local(&maildir, &[], &[(message("cml", 0, 900), "")]);
        deliver_local(&maildir, &["Notes"], &[(message("cmn", 0, 600), "F")]);
        // Another device: flag one, expunge one, and new mail in two folders.
        server.add_flags(&user, "INBOX", &mid(2), "\\Flagged");
        server.expunge_message(&user, "INBOX", &mid(3));
        server.put(
            &user,
            "",
            &[message("cmnew", 0, 800), message("cmnew", 1, 3000)],
        );
        server.put(&user, "Work", &[message("cmnew", 2, 1200)]);
        Case {
            env,
            args: vec!["sync"],
            snapshot: maildir_and_server(maildir, user),
        }
    });
    assert_covers(
        &crashed_at,
        &[
            "sync-after-create",
            "imap-after-tmp",
            "imap-after-record",
            "imap-after-rename",
            "upload-after-intent",
            "upload-after-append",
            "sync-after-far-flags",
            "sync-after-near-flags",
            "imap-after-store",
            "imap-after-expunge",
            "sync-after-near-delete",
            "sync-after-bases",
            "sync-after-folder",
        ],
    );
}

#[test]
fn a_migration_deleting_the_source_crashed_after_every_step() {
    let server = dovecot();
    let crashed_at = crash_after_every_step("cm-mig", |tag| {
        let src = server.user(&format!("{tag}-src"));
        let dst = server.user(&format!("{tag}-dst"));
        server.put_flagged(
            &src,
            "",
            &[
                (message("cmm", 0, 500), "S"),
                (message("cmm", 1, 900), ""),
                (message("cmm", 2, 2500), "FS"),
            ],
        );
        server.put_flagged(&src, "Archive", &[(message("cmm", 3, 700), "S")]);
        // Copied before by some other means, without its flags.
        server.put(&dst, "", &[message("cmm", 0, 500)]);
        migration(src, imap_account, dst)
    });
    assert_covers(
        &crashed_at,
        &[
            "migrate-after-flags",
            "migrate-after-found",
            "upload-after-intent",
            "upload-after-append",
            "migrate-after-source-store",
            "migrate-after-source-expunge",
        ],
    );
}

#[test]
fn a_pop3_migration_deleting_the_source_crashed_after_every_step() {
    let server = dovecot();
    let crashed_at = crash_after_every_step("cm-pmig", |tag| {
        let src = server.user(&format!("{tag}-src"));
        let dst = server.user(&format!("{tag}-dst"));
        server.put(
            &src,
            "",
            &(0..4)
                .map(|i| message("cmp", i, 600 + i * 500))
                .collect::<Vec<_>>(),
        );
        migration(src, pop3_account, dst)
    });
    assert_covers(
        &crashed_at,
        &[
            "upload-after-intent",
            "upload-after-append",
            "migrate-after-dele",
            "migrate-before-quit",
        ],
    );
}
