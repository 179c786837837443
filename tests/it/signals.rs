//! SIGTERM and SIGINT in the middle of a run: the exit code says so, nothing is left in tmp/,
//! nothing is deleted that is not safe here, the run is recorded, and a rerun completes it.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::proxy::{Fault, Proxy};
use crate::support::{
    Env, assert_same, channel, deliver_local, dovecot, files_in, imap_account, local_messages,
    message, pop3_account, walk,
};

fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| message(tag, i, 800 + (i * 53) % 3000))
        .collect()
}

/// Waits until `ready` holds (the run is in its middle), then sends `signal`; returns the
/// exit code and standard error.
fn signal_when(mut child: Child, signal: i32, ready: impl Fn() -> bool) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its middle"
        );
        assert!(
            Instant::now() < deadline,
            "the run never reached its middle"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let sent = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every tmp/ directory under `root` is empty.
fn no_tmp_leftovers(root: &std::path::Path) {
    for dir in walk(root).into_iter().filter(|p| p.ends_with("tmp")) {
        assert!(
            files_in(&dir).is_empty(),
            "{}: {:?}",
            dir.display(),
            files_in(&dir)
        );
    }
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_signal_in_the_middle_of_a_pop3_delete_mode_fetch() {
    let server = dovecot();
    for (name, signal, code) in [
        ("sigterm-pop", libc::SIGTERM, 143),
        ("sigint-pop", libc::SIGINT, 130),
    ] {
        let user = server.user(name);
        let mail = corpus(name, 240);
        server.put(&user, "", &mail);
        let proxy = Proxy::start(server.pop3);
        let mut env = Env::new();
        env.trust_test_ca();
        let maildir = env.path("Mail");
        let config = pop3_account("acct", &user, "starttls", &maildir, "mode = \"delete\"")
            .replace(
                &format!("port = {}", server.pop3),
                &format!("port = {}", proxy.port),
            );
        env.config(&config);
        proxy.inject(Fault::Trickle(2048, 5));
        let child = spawn(&env, &["fetch"]);
        let (exit, stderr) = signal_when(child, signal, || local_messages(&maildir).len() >= 70);
        assert_eq!(exit, Some(code), "{stderr}");
        assert!(
            stderr.contains("interrupted by SIG") && stderr.contains("stopped acct"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        no_tmp_leftovers(&maildir);
        // Every message is here or still on the server; none is here twice.
        let here = local_messages(&maildir);
        let mut deduped = here.clone();
        deduped.dedup();
        assert_eq!(deduped.len(), here.len(), "a message landed twice");
        assert!(
            here.len() < mail.len(),
            "the run was not stopped in its middle"
        );
        assert!(server.count(&user, "INBOX") + here.len() >= mail.len());
        let status = env.run(&["status", "acct"]);
        assert!(status.stdout.contains("interrupted"), "{}", status.stdout);

        proxy.inject(Fault::None);
        env.run(&["fetch"]).expect(0);
        assert_same(local_messages(&maildir), &mail, "after the rerun");
        assert_eq!(server.count(&user, "INBOX"), 0);
    }
}

#[test]
fn sigterm_in_the_middle_of_an_imap_sync() {
    let server = dovecot();
    let user = server.user("sigterm-sync");
    let far = corpus("stfar", 200);
    server.put(&user, "", &far);
    let work = corpus("stwork", 60);
    server.put(&user, "Work", &work);
    let proxy = Proxy::start(server.imap);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    let near = corpus("stnear", 40);
    deliver_local(
        &maildir,
        &["Drafts"],
        &near.iter().map(|m| (m.clone(), "")).collect::<Vec<_>>(),
    );
    let account = imap_account("acct", &user, "starttls", &maildir, "connections = 1").replace(
        &format!("port = {}", server.imap),
        &format!("port = {}", proxy.port),
    );
    env.config(&format!(
        "{account}{}",
        channel("ch", "acct", "create = \"both\"")
    ));
    proxy.inject(Fault::Trickle(2048, 5));
    let child = spawn(&env, &["sync"]);
    let (exit, stderr) = signal_when(child, libc::SIGTERM, || {
        local_messages(&maildir).len() >= 64
    });
    assert_eq!(exit, Some(143), "{stderr}");
    no_tmp_leftovers(&maildir);
    assert!(
        local_messages(&maildir).len() < far.len(),
        "not stopped in its middle"
    );

    proxy.inject(Fault::None);
    env.run(&["sync"]).expect(0);
    assert_same(local_messages(&maildir), &far, "INBOX");
    assert_same(local_messages(&maildir.join(".Work")), &work, "Work");
    assert_eq!(
        server.count(&user, "Drafts"),
        near.len(),
        "each upload exactly once"
    );
    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
}
