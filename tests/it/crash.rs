//! Crashes, dropped connections and disk trouble (write errors, a read-only Maildir) during
//! fetches: nothing lost, nothing twice.

use std::process::Stdio;
use std::time::Duration;

use crate::support::proxy::Proxy;
use crate::support::{Env, assert_same, dovecot, files_in, local_messages, message, pop3_account};

fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| message(tag, i, 300 + (i * 53) % 4000))
        .collect()
}

/// Every step of a delete-mode fetch where a crash must be survivable, with the occurrences to
/// crash at (batches are 64 messages; rounds end every 50 deletions here).
const STEPS: &[(&str, &[u32])] = &[
    ("pop3-after-tmp", &[1, 30, 64, 65]),
    ("pop3-after-record", &[1, 2]),
    ("pop3-after-rename", &[1, 2]),
    ("pop3-after-dele", &[1, 2]),
    ("pop3-before-quit", &[1, 2]),
    ("pop3-after-quit", &[1, 3]),
];

#[test]
fn crash_at_every_step_of_a_delete_run_loses_and_duplicates_nothing() {
    let server = dovecot();
    for &(step, occurrences) in STEPS {
        for &n in occurrences {
            let user = server.user(&format!("crash-{step}-{n}"));
            let mail = corpus(&format!("{step}{n}"), 150);
            server.put(&user, "", &mail);
            let mut env = Env::new();
            env.trust_test_ca();
            env.var("MAILFERRY_COMMIT_EVERY", "50");
            let maildir = env.path("Mail");
            env.config(&pop3_account(
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
            assert_same(
                local_messages(&maildir),
                &mail,
                &format!("{step}:{n}: each message exactly once"),
            );
            assert_eq!(
                server.count(&user, "INBOX"),
                0,
                "{step}:{n}: server emptied"
            );
            env.run(&["fetch"]).expect(0);
            assert_eq!(
                local_messages(&maildir).len(),
                mail.len(),
                "{step}:{n}: a third run adds nothing"
            );
        }
    }
}

#[test]
fn sigkill_at_many_moments_then_a_full_run() {
    let server = dovecot();
    let user = server.user("sigkill");
    let mail = corpus("kill", 300);
    server.put(&user, "", &mail);
    let mut env = Env::new();
    env.trust_test_ca();
    env.var("MAILFERRY_COMMIT_EVERY", "40");
    let maildir = env.path("Mail");
    env.config(&pop3_account(
        "acct",
        &user,
        "implicit",
        &maildir,
        "mode = \"delete\"",
    ));
    let mut killed = 0;
    for delay_ms in [5u64, 20, 40, 60, 80, 110, 140, 180, 230, 300] {
        let mut child = env
            .command(&["fetch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    env.run(&["fetch"]).expect(0);
    assert_same(local_messages(&maildir), &mail, "local messages");
    assert_eq!(server.count(&user, "INBOX"), 0);
    assert!(
        killed > 0,
        "no run was interrupted; the test proved nothing"
    );
}

#[test]
fn connection_cut_mid_retr_leaves_no_partial_message() {
    let server = dovecot();
    let user = server.user("cutretr");
    let mail = corpus("cut", 60);
    server.put(&user, "", &mail);
    let proxy = Proxy::start(server.pop3);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    let config = pop3_account(
        "acct",
        &user,
        "starttls",
        &maildir,
        "mode = \"delete\"\nretries = 0",
    )
    .replace(
        &format!("port = {}", server.pop3),
        &format!("port = {}", proxy.port),
    );
    env.config(&config);
    for cut in [3_000usize, 40_000, 90_000] {
        proxy.cut_after(Some(cut));
        let run = env.run(&["fetch"]);
        run.expect(75);
        assert!(
            run.stderr.contains("closed the connection") || run.stderr.contains("network error"),
            "{}",
            run.stderr
        );
        // Whatever reached new/ is whole: every local file is one of the server's messages.
        for m in local_messages(&maildir) {
            assert!(mail.contains(&m), "a partial or foreign message landed");
        }
        assert!(
            files_in(&maildir.join("tmp")).is_empty(),
            "tmp/ holds {:?}",
            files_in(&maildir.join("tmp"))
        );
    }
    proxy.cut_after(None);
    env.run(&["fetch"]).expect(0);
    assert_same(local_messages(&maildir), &mail, "local messages");
    assert_eq!(server.count(&user, "INBOX"), 0);
}

/// Runs with writes beyond `bytes` per file failing (EFBIG, as a full disk fails them).
fn with_file_size_limit(cmd: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_write_error_stops_the_run_and_deletes_nothing_unsafe() {
    let server = dovecot();
    for protocol in ["pop3", "imap"] {
        let user = server.user(&format!("diskfull-{protocol}"));
        let mut mail = corpus(&format!("df{protocol}"), 20);
        mail.insert(10, message(&format!("df{protocol}big"), 0, 300_000));
        server.put(&user, "", &mail);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        let extra = "mode = \"delete\"\nretries = 0";
        env.config(&match protocol {
            "pop3" => pop3_account("acct", &user, "implicit", &maildir, extra),
            _ => crate::support::imap_account("acct", &user, "implicit", &maildir, extra),
        });
        let mut cmd = env.command(&["fetch"]);
        with_file_size_limit(&mut cmd, 200_000);
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(74),
            "{protocol}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("too large"),
            "{protocol}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Nothing lost: every message is in the Maildir or still on the server.
        let local = local_messages(&maildir);
        assert!(
            !local.contains(&mail[10]),
            "{protocol}: the big one was stored"
        );
        assert_eq!(
            local.len() + server.count(&user, "INBOX"),
            mail.len(),
            "{protocol}: a message is neither here nor there, or in both"
        );
        env.run(&["fetch"]).expect(0);
        assert_same(local_messages(&maildir), &mail, protocol);
        assert_eq!(server.count(&user, "INBOX"), 0);
    }
}

#[test]
fn imap_connections_cut_at_every_phase_lose_and_duplicate_nothing() {
    // Cuts from the greeting and TLS handshake through LOGIN, SELECT, the listing, the body
    // stream and the expunge of an IMAP delete-mode fetch and a two-way sync.
    let server = dovecot();
    for command in ["fetch", "sync"] {
        let user = server.user(&format!("cutimap-{command}"));
        let mail = corpus(&format!("ci{command}"), 80);
        server.put(&user, "", &mail);
        let (proxy, env, maildir) = imap_through_proxy(&user);
        let config = std::fs::read_to_string(env.config_path()).unwrap();
        env.config(&format!(
            "{config}{}",
            crate::support::channel("ch", "acct", "expunge = \"both\"")
        ));
        for cut in [100usize, 2_500, 6_000, 9_000, 30_000, 120_000, 300_000] {
            proxy.cut_after(Some(cut));
            let run = env.run(&[command]);
            if run.code == 0 {
                continue; // all done before the cut
            }
            run.expect(75);
            for m in local_messages(&maildir) {
                assert!(
                    mail.contains(&m),
                    "{command} cut at {cut}: a partial message landed"
                );
            }
            assert!(
                files_in(&maildir.join("tmp")).is_empty(),
                "{command} cut at {cut}: tmp/ holds {:?}",
                files_in(&maildir.join("tmp"))
            );
        }
        proxy.cut_after(None);
        env.run(&[command]).expect(0);
        assert_same(local_messages(&maildir), &mail, command);
        if command == "fetch" {
            assert_eq!(server.count(&user, "INBOX"), 0);
        } else {
            assert_eq!(
                server.count(&user, "INBOX"),
                80,
                "sync keeps the server's copies"
            );
            let run = env.run(&["-v", "sync"]);
            assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
        }
    }
}

#[test]
fn a_stall_a_reset_and_a_trickle_end_as_documented() {
    use crate::support::proxy::Fault;
    let server = dovecot();
    let user = server.user("faults-imap");
    let mail = corpus("flt", 40);
    server.put(&user, "", &mail);
    let (proxy, env, maildir) = imap_through_proxy(&user);
    for (fault, why) in [
        (Fault::Stall(20_000), "timed out after 2s"),
        (Fault::Reset(20_000), "network error"),
    ] {
        proxy.inject(fault);
        let started = std::time::Instant::now();
        let run = env.run(&["fetch"]);
        run.expect(75);
        assert!(run.stderr.contains(why), "{fault:?}: {}", run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{fault:?}: hung"
        );
        for m in local_messages(&maildir) {
            assert!(mail.contains(&m), "{fault:?}: a partial message landed");
        }
        assert!(files_in(&maildir.join("tmp")).is_empty(), "{fault:?}");
    }
    // A slow server that keeps sending is not a timeout.
    proxy.inject(Fault::Trickle(1024, 1));
    env.run(&["fetch"]).expect(0);
    assert_same(local_messages(&maildir), &mail, "after the faults");
    assert_eq!(server.count(&user, "INBOX"), 0);
}

/// A home with an IMAP account `acct` (delete mode, no retries, 2 s timeout) whose connections
/// go through a fault-injecting proxy to the test server.
fn imap_through_proxy(user: &crate::support::User) -> (Proxy, Env, std::path::PathBuf) {
    let server = dovecot();
    let proxy = Proxy::start(server.imaps);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    let config = crate::support::imap_account(
        "acct",
        user,
        "implicit",
        &maildir,
        "mode = \"delete\"\nretries = 0\ntimeout = \"2s\"",
    )
    .replace(
        &format!("port = {}", server.imaps),
        &format!("port = {}", proxy.port),
    );
    env.config(&config);
    (proxy, env, maildir)
}

/// Makes the next runs of `cmd` unable to write into `dir`, as a read-only Maildir is: by its
/// mode, and when the tests run as root (whom modes do not stop) by running as the mail user
/// with the home handed over to it and `dir` kept root's.
fn read_only_dir(env: &mut Env, dir: &std::path::Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for sub in ["", "cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // SAFETY: geteuid has no preconditions.
    let owner = if unsafe { libc::geteuid() } == 0 {
        // The CA must be readable by the mail user: a copy in the home.
        let ca = env.path("ca.pem");
        std::fs::copy(&dovecot().ca, &ca).unwrap();
        env.var("SSL_CERT_FILE", &ca.display().to_string());
        dovecot().chown_tree(env.home());
        let meta = std::fs::metadata(env.home()).unwrap();
        for sub in ["", "cur", "new", "tmp"] {
            std::os::unix::fs::chown(dir.join(sub), Some(0), Some(0)).unwrap();
        }
        Some((meta.uid(), meta.gid()))
    } else {
        None
    };
    for sub in ["", "cur", "new", "tmp"] {
        std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    owner
}

#[test]
fn a_read_only_maildir_stops_the_run_and_deletes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let server = dovecot();
    for protocol in ["pop3", "imap"] {
        let user = server.user(&format!("readonly-{protocol}"));
        let mail = corpus(&format!("ro{protocol}"), 12);
        server.put(&user, "", &mail);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        let extra = "mode = \"delete\"\nretries = 0";
        env.config(&match protocol {
            "pop3" => pop3_account("acct", &user, "implicit", &maildir, extra),
            _ => crate::support::imap_account("acct", &user, "implicit", &maildir, extra),
        });
        let owner = read_only_dir(&mut env, &maildir);
        let run_as_owner = |args: &[&str]| {
            let mut cmd = env.command(args);
            if let Some((uid, gid)) = owner {
                cmd.uid(uid).gid(gid);
            }
            crate::support::Run::from(cmd.output().unwrap())
        };
        let run = run_as_owner(&["fetch"]);
        run.expect(74);
        assert!(
            run.stderr.contains("Permission denied")
                && run.stderr.contains(&*maildir.to_string_lossy()),
            "{protocol}: says why and where: {}",
            run.stderr
        );
        assert_eq!(
            server.count(&user, "INBOX"),
            mail.len(),
            "{protocol}: deleted on the server"
        );
        assert!(local_messages(&maildir).is_empty());

        // Writable again: everything arrives once, and only then leaves the server.
        for sub in ["", "cur", "new", "tmp"] {
            let path = maildir.join(sub);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        run_as_owner(&["fetch"]).expect(0);
        assert_same(local_messages(&maildir), &mail, protocol);
        assert_eq!(server.count(&user, "INBOX"), 0);
    }
}
