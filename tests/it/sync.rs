//! Two-way sync against the real Dovecot: first sync, no-op reruns, two devices, conflicts,
//! moves, UIDVALIDITY, a vanished Maildir, and crashes.

use std::fs;

use crate::support::proxy::Proxy;
use crate::support::{
    Env, User, assert_same, channel, deliver_local, dovecot, find_local, imap_account, local_flags,
    local_messages, message, set_local_flags,
};

fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| message(tag, i, 300 + (i * 71) % 3000))
        .collect()
}

fn unflagged(messages: &[Vec<u8>]) -> Vec<(Vec<u8>, &'static str)> {
    messages.iter().map(|m| (m.clone(), "")).collect()
}

fn mid(tag: &str, i: usize) -> String {
    format!("<{tag}.{i}@example.org>")
}

fn server_flags(user: &User, mailbox: &str, msgid: &str) -> String {
    let out = dovecot().doveadm(&[
        "-f",
        "flow",
        "fetch",
        "-u",
        &user.name,
        "flags",
        "mailbox",
        mailbox,
        "header",
        "Message-ID",
        msgid,
    ]);
    out.trim().trim_start_matches("flags=").to_string()
}

fn setup(name: &str, extra_channel: &str) -> (User, Env, std::path::PathBuf) {
    let server = dovecot();
    let user = server.user(name);
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&format!(
        "{}{}",
        imap_account("acct", &user, "implicit", &maildir, ""),
        channel("ch", "acct", extra_channel)
    ));
    (user, env, maildir)
}

#[test]
fn first_sync_both_ways_then_nothing_to_do() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-first", "create = \"both\"");
    let inbox = corpus("sfin", 3);
    server.put(&user, "", &inbox);
    server.put_flagged(&user, "", &[(message("sfflag", 0, 500), "FS")]);
    let work = corpus("sfwork", 2);
    server.put(&user, "Work.Été", &work);
    // A message that exists only locally, in a folder the server does not have.
    let local_only = message("sflocal", 0, 800);
    deliver_local(&maildir, &["Drafts"], &[(local_only.clone(), "DS")]);

    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(
        run.stdout.contains("6 downloaded") && run.stdout.contains("1 uploaded"),
        "{}",
        run.stdout
    );
    let mut all_inbox = inbox.clone();
    all_inbox.push(message("sfflag", 0, 500));
    assert_same(local_messages(&maildir), &all_inbox, "INBOX");
    assert_same(
        local_messages(&maildir.join(".Work.Été")),
        &work,
        "Work/Été",
    );
    assert_eq!(
        local_flags(&find_local(&maildir, &mid("sfflag", 0)).unwrap()),
        "FS"
    );
    // Uploaded with its flags into a folder created on the server.
    assert_eq!(server.count(&user, "Drafts"), 1);
    let flags = server_flags(&user, "Drafts", &mid("sflocal", 0));
    assert!(
        flags.contains("\\Draft") && flags.contains("\\Seen"),
        "{flags}"
    );

    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(
        run.stdout.contains("ch: in sync, nothing to do"),
        "{}",
        run.stdout
    );
    assert_eq!(server.count(&user, "Drafts"), 1);
    assert_eq!(local_messages(&maildir).len(), 4);
}

#[test]
fn two_devices_read_flag_delete_and_move() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-devices", "expunge = \"both\"");
    server.put(&user, "", &corpus("dev", 6));
    server.put(&user, "Work", &corpus("devwork", 1));
    env.run(&["sync"]).expect(0);

    // Device 1 (this Maildir): read 0, flag 1, delete 2.
    set_local_flags(&find_local(&maildir, &mid("dev", 0)).unwrap(), "S");
    set_local_flags(&find_local(&maildir, &mid("dev", 1)).unwrap(), "F");
    fs::remove_file(find_local(&maildir, &mid("dev", 2)).unwrap()).unwrap();
    // Device 2 (on the server): read 3, expunge 4, move 5 to Work.
    server.add_flags(&user, "INBOX", &mid("dev", 3), "\\Seen");
    server.expunge_message(&user, "INBOX", &mid("dev", 4));
    server.doveadm(&[
        "move",
        "-u",
        &user.name,
        "Work",
        "mailbox",
        "INBOX",
        "header",
        "Message-ID",
        &mid("dev", 5),
    ]);

    let run = env.run(&["sync"]);
    run.expect(0);
    assert!(server_flags(&user, "INBOX", &mid("dev", 0)).contains("\\Seen"));
    assert!(server_flags(&user, "INBOX", &mid("dev", 1)).contains("\\Flagged"));
    assert_eq!(
        server.count(&user, "INBOX"),
        3,
        "2 expunged on the server, 4 and 5 gone"
    );
    assert_eq!(
        local_flags(&find_local(&maildir, &mid("dev", 3)).unwrap()),
        "S"
    );
    assert!(
        find_local(&maildir, &mid("dev", 4)).is_none(),
        "expunged on the server, removed locally"
    );
    assert!(
        find_local(&maildir, &mid("dev", 5)).is_none(),
        "moved away from INBOX"
    );
    assert!(
        find_local(&maildir.join(".Work"), &mid("dev", 5)).is_some(),
        "moved into Work"
    );
    assert_eq!(local_messages(&maildir).len(), 3);

    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
}

#[test]
fn conflicting_flag_changes_merge_flag_by_flag() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-conflict", "");
    server.put_flagged(
        &user,
        "",
        &[(message("cf", 0, 400), "S"), (message("cf", 1, 400), "")],
    );
    env.run(&["sync"]).expect(0);
    // Message 0: locally unread + flagged, on the server answered: all three changes survive.
    set_local_flags(&find_local(&maildir, &mid("cf", 0)).unwrap(), "F");
    server.add_flags(&user, "INBOX", &mid("cf", 0), "\\Answered");
    // Message 1: both sides mark it read.
    set_local_flags(&find_local(&maildir, &mid("cf", 1)).unwrap(), "S");
    server.add_flags(&user, "INBOX", &mid("cf", 1), "\\Seen");
    env.run(&["sync"]).expect(0);
    assert_eq!(
        local_flags(&find_local(&maildir, &mid("cf", 0)).unwrap()),
        "FR"
    );
    let far = server_flags(&user, "INBOX", &mid("cf", 0));
    assert!(
        far.contains("\\Flagged") && far.contains("\\Answered") && !far.contains("\\Seen"),
        "{far}"
    );
    assert_eq!(
        local_flags(&find_local(&maildir, &mid("cf", 1)).unwrap()),
        "S"
    );
    assert!(server_flags(&user, "INBOX", &mid("cf", 1)).contains("\\Seen"));
}

#[test]
fn expunge_none_marks_instead_of_deleting() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-noexpunge", "");
    server.put(&user, "", &corpus("nx", 3));
    env.run(&["sync"]).expect(0);
    fs::remove_file(find_local(&maildir, &mid("nx", 0)).unwrap()).unwrap();
    server.expunge_message(&user, "INBOX", &mid("nx", 1));
    env.run(&["sync"]).expect(0);
    assert_eq!(
        server.count(&user, "INBOX"),
        2,
        "nothing expunged on the server"
    );
    assert!(server_flags(&user, "INBOX", &mid("nx", 0)).contains("\\Deleted"));
    let kept = find_local(&maildir, &mid("nx", 1)).expect("kept locally");
    assert!(local_flags(&kept).contains('T'));
    env.run(&["sync"]).expect(0);
    assert_eq!(local_messages(&maildir).len(), 2);
    assert_eq!(server.count(&user, "INBOX"), 2);
}

#[test]
fn an_emptied_or_deleted_maildir_deletes_nothing_on_the_server() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-empty", "expunge = \"both\"");
    server.put(&user, "", &corpus("em", 5));
    env.run(&["sync"]).expect(0);
    for f in ["new", "cur"] {
        for e in fs::read_dir(maildir.join(f)).unwrap().flatten() {
            fs::remove_file(e.path()).unwrap();
        }
    }
    let run = env.run(&["sync"]);
    run.expect(65);
    assert!(
        run.stderr
            .contains("the Maildir folder is empty but state knows 5 messages"),
        "{}",
        run.stderr
    );
    assert_eq!(server.count(&user, "INBOX"), 5);
    fs::remove_dir_all(&maildir).unwrap();
    let run = env.run(&["sync"]);
    run.expect(65);
    assert_eq!(server.count(&user, "INBOX"), 5);
    let flags = server.doveadm(&[
        "-f", "flow", "search", "-u", &user.name, "mailbox", "INBOX", "DELETED",
    ]);
    assert!(
        flags.trim().is_empty(),
        "messages were marked deleted: {flags}"
    );
}

#[test]
fn a_uidvalidity_change_keeps_the_pairs() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-uidvalidity", "expunge = \"both\"");
    let mail = corpus("suv", 4);
    server.put(&user, "", &mail);
    env.run(&["sync"]).expect(0);
    server.doveadm(&[
        "mailbox",
        "update",
        "-u",
        &user.name,
        "--uid-validity",
        "777",
        "INBOX",
    ]);
    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(run.stderr.contains("re-matched 4 of 4"), "{}", run.stderr);
    assert_same(
        local_messages(&maildir),
        &mail,
        "after the UIDVALIDITY change",
    );
    assert_eq!(server.count(&user, "INBOX"), 4);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
}

#[test]
fn crashes_at_every_step_of_a_sync_lose_and_duplicate_nothing() {
    let server = dovecot();
    for (step, n) in [
        ("imap-after-tmp", 3),
        ("imap-after-record", 1),
        ("imap-after-rename", 1),
        ("upload-after-intent", 1),
        ("upload-after-append", 1),
        ("upload-after-append", 20),
    ] {
        let (user, mut env, maildir) =
            setup(&format!("sync-crash-{step}-{n}"), "create = \"both\"");
        let far = corpus(&format!("far{step}{n}"), 40);
        server.put(&user, "", &far);
        let near = corpus(&format!("near{step}{n}"), 30);
        deliver_local(&maildir, &[], &unflagged(&near));
        env.var("MAILFERRY_FAILPOINT", &format!("{step}:{n}"));
        let out = env.command(&["sync"]).output().unwrap();
        assert_eq!(
            out.status.code(),
            None,
            "{step}:{n} should have crashed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        env.vars.retain(|(k, _)| k != "MAILFERRY_FAILPOINT");
        env.run(&["sync"]).expect(0);
        let mut all = far.clone();
        all.extend(near.clone());
        assert_same(local_messages(&maildir), &all, &format!("{step}:{n} local"));
        assert_eq!(
            server.count(&user, "INBOX"),
            70,
            "{step}:{n}: each upload exactly once on the server"
        );
        let run = env.run(&["-v", "sync"]);
        run.expect(0);
        assert!(
            run.stdout.contains("nothing to do"),
            "{step}:{n}: {}",
            run.stdout
        );
    }
}

#[test]
fn a_no_op_sync_costs_one_command_per_folder() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-qresync", "expunge = \"both\"");
    server.put(&user, "", &corpus("qr", 30));
    server.put(&user, "A", &corpus("qra", 5));
    server.put(&user, "B", &corpus("qrb", 5));
    env.run(&["sync"]).expect(0);
    let run = env.run(&["-vv", "sync"]);
    run.expect(0);
    let commands: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("C: "))
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    let selects = commands.iter().filter(|c| **c == "SELECT").count();
    assert_eq!(selects, 3, "{commands:?}");
    assert!(
        !commands.contains(&"UID"),
        "a no-op run listed messages: {commands:?}"
    );
    assert!(
        run.stderr.contains("(QRESYNC ("),
        "QRESYNC not used:\n{}",
        run.stderr
    );
    // Changes are still seen through the fast path.
    server.add_flags(&user, "A", &mid("qra", 2), "\\Flagged");
    server.expunge_message(&user, "B", &mid("qrb", 1));
    env.run(&["sync"]).expect(0);
    assert_eq!(
        local_flags(&find_local(&maildir.join(".A"), &mid("qra", 2)).unwrap()),
        "F"
    );
    assert!(find_local(&maildir.join(".B"), &mid("qrb", 1)).is_none());
    assert_eq!(local_messages(&maildir.join(".B")).len(), 4);
}

#[test]
fn compressed_connections_carry_everything() {
    let server = dovecot();
    let user = server.user("sync-compress");
    let mut env = Env::new();
    env.trust_test_ca();
    let maildir = env.path("Mail");
    env.config(&format!(
        "{}{}",
        imap_account("acct", &user, "implicit", &maildir, "compress = \"always\""),
        channel("ch", "acct", "expunge = \"both\"")
    ));
    let mut mail = corpus("cz", 40);
    mail.push(message("czbig", 0, 3_000_000));
    server.put(&user, "", &mail);
    let run = env.run(&["-vv", "sync"]);
    run.expect(0);
    assert!(
        run.stderr.contains("COMPRESS DEFLATE"),
        "compression was not used"
    );
    assert_same(local_messages(&maildir), &mail, "after a compressed sync");
    // Upload and delete over compression too.
    set_local_flags(&find_local(&maildir, &mid("cz", 3)).unwrap(), "S");
    fs::remove_file(find_local(&maildir, &mid("cz", 4)).unwrap()).unwrap();
    deliver_local(&maildir, &[], &[(message("czup", 0, 200_000), "F")]);
    env.run(&["sync"]).expect(0);
    assert_eq!(server.count(&user, "INBOX"), 41);
    assert!(server_flags(&user, "INBOX", &mid("cz", 3)).contains("\\Seen"));
    assert!(server_flags(&user, "INBOX", &mid("czup", 0)).contains("\\Flagged"));
}

#[test]
fn sigkill_at_many_moments_of_a_sync() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-sigkill", "create = \"both\"");
    let far = corpus("skfar", 200);
    server.put(&user, "", &far);
    let near = corpus("sknear", 60);
    deliver_local(&maildir, &[], &unflagged(&near));
    let mut killed = 0;
    for delay_ms in [5u64, 15, 30, 50, 80, 120, 170, 230] {
        let mut child = env
            .command(&["sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    env.run(&["sync"]).expect(0);
    let mut all = far;
    all.extend(near);
    assert_same(local_messages(&maildir), &all, "after the kills");
    assert_eq!(
        server.count(&user, "INBOX"),
        260,
        "each upload exactly once"
    );
    assert!(
        killed > 0,
        "no run was interrupted; the test proved nothing"
    );
    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
}

#[test]
fn dry_runs_change_nothing_anywhere() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-dryrun", "expunge = \"both\"");
    server.put(&user, "", &corpus("dr", 3));
    env.run(&["sync"]).expect(0);
    let state = env.path("state/mailferry/acct.sqlite");
    let counts = || {
        let db = rusqlite::Connection::open(&state).unwrap();
        let q = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        (
            q("SELECT count(*) FROM runs"),
            q("SELECT count(*) FROM imap_messages"),
            q("SELECT count(*) FROM imap_folders"),
        )
    };
    let before = counts();
    server.put(&user, "", &corpus("drnew", 2));
    server.put(&user, "Other", &corpus("drother", 1));
    fs::remove_file(find_local(&maildir, &mid("dr", 0)).unwrap()).unwrap();
    for args in [&["sync", "--dry-run"][..], &["fetch", "--dry-run"]] {
        let run = env.run(args);
        run.expect(0);
        assert!(run.stdout.contains("would"), "{args:?}: {}", run.stdout);
    }
    assert_eq!(counts(), before, "a dry run wrote to the state");
    assert!(
        !maildir.join(".Other").exists(),
        "a dry run created a folder"
    );
    assert_eq!(local_messages(&maildir).len(), 2);
    assert_eq!(
        server.count(&user, "INBOX"),
        5,
        "a dry run expunged on the server"
    );
}

/// What a server without UIDPLUS says: no UIDPLUS capability, no APPENDUID.
fn without_uidplus(line: &str) -> String {
    let mut line = line.replace(" UIDPLUS", "");
    if let Some(start) = line.find("[APPENDUID ")
        && let Some(len) = line[start..].find("] ")
    {
        line.replace_range(start..start + len + 2, "");
    }
    line
}

#[test]
fn pushing_without_uidplus_pairs_uploads_by_content_even_after_a_crash() {
    let server = dovecot();
    let proxy = Proxy::rewriting(server.imap, without_uidplus);
    for (step, n) in [
        ("", 0),
        ("upload-after-intent", 1),
        ("upload-after-append", 1),
        ("upload-after-append", 9),
    ] {
        let user = server.user(&format!("sync-noplus-{step}-{n}"));
        let far = corpus(&format!("npfar{n}{step}"), 5);
        server.put(&user, "", &far);
        // Local mail with no Message-ID at all, and two pairs of byte-identical messages:
        // only the content tells them apart from what else is on the server.
        let mut near: Vec<Vec<u8>> = (0..6)
            .map(|i| {
                format!("From: a@example.org\nSubject: no id {i} {step}\n\nbody {i}\n").into_bytes()
            })
            .collect();
        near.extend(corpus(&format!("npnear{n}{step}"), 4));
        near.push(near[0].clone());
        near.push(near[7].clone());
        let mut env = Env::new();
        let maildir = env.path("Mail");
        let account = imap_account("acct", &user, "none", &maildir, "").replace(
            &format!("port = {}", server.imap),
            &format!("port = {}", proxy.port),
        );
        env.config(&format!(
            "{account}{}",
            channel("ch", "acct", "expunge = \"both\"")
        ));
        // The proxy really hides UIDPLUS: a channel that would need UID EXPUNGE says so.
        let refused = env.run(&["sync"]);
        refused.expect(69);
        assert!(refused.stderr.contains("UIDPLUS"), "{}", refused.stderr);

        env.config(&format!("{account}{}", channel("ch", "acct", "")));
        deliver_local(&maildir, &[], &unflagged(&near));
        if !step.is_empty() {
            env.var("MAILFERRY_FAILPOINT", &format!("{step}:{n}"));
            let out = env.command(&["sync"]).output().unwrap();
            assert_eq!(out.status.code(), None, "{step}:{n} should have crashed");
            env.vars.retain(|(k, _)| k != "MAILFERRY_FAILPOINT");
        }
        env.run(&["sync"]).expect(0);
        assert_eq!(
            server.count(&user, "INBOX"),
            far.len() + near.len(),
            "{step}:{n}: each upload exactly once on the server"
        );
        let mut all = far.clone();
        all.extend(near.clone());
        assert_same(local_messages(&maildir), &all, &format!("{step}:{n} local"));
        let run = env.run(&["-v", "sync"]);
        run.expect(0);
        assert!(
            run.stdout.contains("nothing to do"),
            "{step}:{n}: {}",
            run.stdout
        );
    }
}

/// A local message's flags by name, read the way a Dovecot-convention reader does.
fn local_keywords(maildir: &std::path::Path, msgid: &str) -> String {
    let keywords = mailferry::maildir::keywords::Keywords::load(maildir).unwrap();
    keywords
        .flags(&local_flags(&find_local(maildir, msgid).unwrap()))
        .to_string()
}

#[test]
fn keywords_travel_both_ways_through_dovecot_keywords() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-keywords", "");
    server.put(&user, "", &corpus("kw", 3));
    dovecot().add_flags(&user, "INBOX", &mid("kw", 0), "$Label1 work \\Seen");
    env.run(&["sync"]).expect(0);
    assert_eq!(local_keywords(&maildir, &mid("kw", 0)), "S $Label1 work");
    let table = fs::read_to_string(maildir.join("dovecot-keywords")).unwrap();
    assert!(
        table.contains(" $Label1\n") && table.contains(" work\n"),
        "{table}"
    );

    // A mail reader tags message 1 `todo` (a new keyword in the table) and takes `work` off
    // message 0; meanwhile the server adds `$Junk` to message 2.
    fs::write(maildir.join("dovecot-keywords"), format!("{table}7 todo\n")).unwrap();
    let m0 = find_local(&maildir, &mid("kw", 0)).unwrap();
    let label1 = keyword_letter(&table, "$Label1");
    set_local_flags(&m0, &format!("S{label1}"));
    set_local_flags(&find_local(&maildir, &mid("kw", 1)).unwrap(), "h");
    dovecot().add_flags(&user, "INBOX", &mid("kw", 2), "$Junk");
    let run = env.run(&["sync"]);
    run.expect(0);
    let on_server = |i| server_flags(&user, "INBOX", &mid("kw", i));
    assert!(
        on_server(0).contains("$Label1") && !on_server(0).contains("work"),
        "{}",
        on_server(0)
    );
    assert!(on_server(1).contains("todo"), "{}", on_server(1));
    assert_eq!(local_keywords(&maildir, &mid("kw", 2)), " $Junk");
    assert_eq!(local_keywords(&maildir, &mid("kw", 0)), "S $Label1");
    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
}

fn keyword_letter(table: &str, name: &str) -> char {
    let index: u8 = table
        .lines()
        .find_map(|l| l.strip_suffix(name)?.trim().parse().ok())
        .unwrap();
    (b'a' + index) as char
}

#[test]
fn dry_runs_print_their_plan_as_json() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-dryjson", "expunge = \"both\"");
    server.put(&user, "", &corpus("dj", 3));
    env.run(&["sync"]).expect(0);
    server.put(&user, "", &corpus("djnew", 2));
    fs::remove_file(find_local(&maildir, &mid("dj", 0)).unwrap()).unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let run = env.run(args);
        run.expect(0);
        serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", run.stdout))
    };
    let sync = json(&["--json", "sync", "--dry-run"]);
    assert_eq!(
        (
            sync["dry_run"].as_bool(),
            sync["downloaded"].as_u64(),
            sync["far_deleted"].as_u64()
        ),
        (Some(true), Some(2), Some(1))
    );
    let actions = sync["plan"][0]["actions"].as_array().unwrap();
    assert_eq!(sync["plan"][0]["folder"], "INBOX");
    assert_eq!(
        actions.iter().filter(|a| a["action"] == "download").count(),
        2
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| a["action"] == "expunge_far")
            .count(),
        1
    );
    let fetch = json(&["--json", "fetch", "--dry-run", "--delete"]);
    let folder = &fetch["plan"][0];
    assert_eq!(folder["folder"], "INBOX");
    // Fetched before by the sync: due for deletion; the two new ones to fetch (and delete).
    assert_eq!(folder["delete"].as_array().unwrap().len(), 3);
    assert_eq!(folder["fetch"].as_array().unwrap().len(), 2);
    assert!(
        folder["fetch"][0]["uid"].as_u64().is_some()
            && folder["fetch"][0]["size"].as_u64().unwrap() > 0
    );
    assert_eq!(fetch["deleted"], 5);
    assert_eq!(server.count(&user, "INBOX"), 5, "a dry run deleted");
}

#[test]
fn pushing_without_uidplus_into_a_new_folder_pairs_every_upload() {
    // The folder is empty when it is opened: the uploads must still be found again by
    // content, not taken as lost (which would upload them again on the next run).
    let server = dovecot();
    let proxy = Proxy::rewriting(server.imap, without_uidplus);
    let user = server.user("sync-noplus-newfolder");
    let env = Env::new();
    let maildir = env.path("Mail");
    let account = imap_account("acct", &user, "none", &maildir, "").replace(
        &format!("port = {}", server.imap),
        &format!("port = {}", proxy.port),
    );
    env.config(&format!(
        "{account}{}",
        channel("ch", "acct", "create = \"both\"")
    ));
    let drafts = corpus("npdrafts", 3);
    deliver_local(&maildir, &["Drafts"], &unflagged(&drafts));
    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(run.stdout.contains("3 uploaded"), "{}", run.stdout);
    assert_eq!(server.count(&user, "Drafts"), 3);
    let again = env.run(&["-v", "sync"]);
    again.expect(0);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(server.count(&user, "Drafts"), 3, "uploaded twice");
}

#[test]
fn a_mail_reader_retagging_during_syncs_causes_no_deletion_and_no_reupload() {
    // A reader (notmuch, mutt, mblaze) renames files while `sync` lists and works on the
    // folder: new/ -> cur/, seen on and off. Nothing it renames may be taken as deleted here
    // (expunged or marked \Deleted on the server) or uploaded again.
    let server = dovecot();
    let (user, env, maildir) = setup("sync-reader", "expunge = \"both\"");
    let n = 3000;
    server.put(&user, "", &corpus("rd", n));
    env.run(&["sync"]).expect(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, maildir) = (stop.clone(), maildir.clone());
        std::thread::spawn(move || {
            let mut renames = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for sub in ["new", "cur"] {
                    let Ok(dir) = fs::read_dir(maildir.join(sub)) else {
                        continue;
                    };
                    for e in dir.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let unique = name.split(":2,").next().unwrap_or(&name).to_string();
                        let flags = if name.ends_with(":2,S") { "" } else { "S" };
                        let to = maildir.join("cur").join(format!("{unique}:2,{flags}"));
                        if fs::rename(e.path(), to).is_ok() {
                            renames += 1;
                        }
                    }
                }
            }
            renames
        })
    };
    for round in 0..20 {
        let run = env.run(&["-v", "sync"]);
        run.expect(0);
        assert!(
            !run.stdout.contains("uploaded") && !run.stdout.contains("expunged"),
            "round {round}: {}",
            run.stdout
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let renames = reader.join().unwrap();
    assert!(renames > 1000, "the reader renamed only {renames} files");
    assert_eq!(
        server.count(&user, "INBOX"),
        n,
        "messages lost on the server"
    );
    let deleted = server.doveadm(&["search", "-u", &user.name, "mailbox", "INBOX", "DELETED"]);
    assert_eq!(deleted.trim(), "", "marked \\Deleted on the server");
    assert_eq!(local_messages(&maildir).len(), n);
    // Once the reader stops, one more pass brings the server in line and then nothing is left.
    env.run(&["sync"]).expect(0);
    let last = env.run(&["-v", "sync"]);
    assert!(last.stdout.contains("nothing to do"), "{}", last.stdout);
}

#[test]
fn emptying_a_folder_in_a_reader_syncs_and_a_wholesale_emptying_says_what_to_do() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-emptied", "expunge = \"both\"");
    server.put(&user, "Drafts", &corpus("edraft", 1));
    server.put(&user, "", &corpus("einbox", 5));
    env.run(&["sync"]).expect(0);
    // The last draft, deleted in a reader: an ordinary deletion.
    let drafts = maildir.join(".Drafts");
    for e in fs::read_dir(drafts.join("cur")).unwrap().flatten() {
        fs::remove_file(e.path()).unwrap();
    }
    for e in fs::read_dir(drafts.join("new")).unwrap().flatten() {
        fs::remove_file(e.path()).unwrap();
    }
    env.run(&["sync"]).expect(0);
    assert_eq!(server.count(&user, "Drafts"), 0);
    env.run(&["sync"]).expect(0);
    // Five at once: refused with the way out, which works.
    for f in ["new", "cur"] {
        for e in fs::read_dir(maildir.join(f)).unwrap().flatten() {
            fs::remove_file(e.path()).unwrap();
        }
    }
    let refused = env.run(&["sync"]);
    refused.expect(65);
    assert!(
        refused
            .stderr
            .contains("mailferry sync ch --allow-empty INBOX"),
        "{}",
        refused.stderr
    );
    assert_eq!(server.count(&user, "INBOX"), 5);
    env.run(&["sync", "--allow-empty", "INBOX"]).expect(0);
    assert_eq!(server.count(&user, "INBOX"), 0);
    env.run(&["sync"]).expect(0);
}

#[test]
fn lost_state_doubles_nothing_in_fetch_or_sync() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-lost-state", "");
    let far = corpus("lsfar", 20);
    server.put(&user, "", &far);
    server.put(&user, "Work", &corpus("lswork", 5));
    // One without a Message-ID on each side, paired by content.
    let anonymous = b"From: a@example.org\nSubject: no id\n\nplain body\n".to_vec();
    server.put(&user, "", std::slice::from_ref(&anonymous));
    let near = corpus("lsnear", 4);
    deliver_local(&maildir, &[], &unflagged(&near));
    env.run(&["sync"]).expect(0);
    let state = env.path("state/mailferry/acct.sqlite");
    for args in [&["sync"][..], &["fetch"]] {
        fs::remove_file(&state).unwrap();
        let run = env.run(&[&["-v"][..], args].concat());
        run.expect(0);
        assert!(run.stdout.contains("paired"), "{args:?}: {}", run.stdout);
        assert_eq!(
            server.count(&user, "INBOX"),
            25,
            "{args:?}: doubled on the server"
        );
        assert_eq!(
            local_messages(&maildir).len(),
            25,
            "{args:?}: doubled locally"
        );
    }
    let again = env.run(&["-v", "sync"]);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
}

#[test]
fn a_maildir_made_by_mbsync_is_paired_whole_and_nothing_is_copied() {
    // Switching from mbsync: mailferry's first sync over the Maildir mbsync built (its file
    // names carry ",U=N", its own state files lie beside) pairs every message and copies
    // nothing either way. mbsync is Debian's isync, installed by scripts/test.
    let server = dovecot();
    let (user, env, maildir) = setup("sync-from-mbsync", "");
    server.put_flagged(
        &user,
        "",
        &corpus("mbs", 12)
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, if i % 3 == 0 { "S" } else { "" }))
            .collect::<Vec<_>>(),
    );
    server.put(&user, "Work", &corpus("mbswork", 4));
    server.put(&user, "Entwürfe", &corpus("mbsdraft", 2));
    let rc = env.path("mbsyncrc");
    fs::write(
        &rc,
        format!(
            "IMAPAccount a\nHost localhost\nPort {}\nUser {}\nPass {}\nSSLType IMAPS\nCertificateFile {}\n\n\
             IMAPStore remote\nAccount a\n\n\
             MaildirStore local\nInbox {}\nSubFolders Maildir++\n\n\
             Channel ch\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSync All\nSyncState *\n",
            server.imaps,
            user.name,
            user.password,
            server.ca.display(),
            maildir.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("mbsync")
        .arg("-c")
        .arg(&rc)
        .arg("-q")
        .arg("ch")
        .output()
        .expect("mbsync (Debian's isync) is installed by scripts/test");
    assert!(
        out.status.success(),
        "mbsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(local_messages(&maildir).len(), 12, "mbsync did not fetch");
    let run = env.run(&["-v", "sync"]);
    run.expect(0);
    assert!(
        run.stdout.contains("18 already on both sides, paired")
            && !run.stdout.contains("downloaded")
            && !run.stdout.contains("uploaded"),
        "{}",
        run.stdout
    );
    assert_eq!(server.count(&user, "INBOX"), 12);
    assert_eq!(server.count(&user, "Work"), 4);
    assert_eq!(server.count(&user, "Entwürfe"), 2);
    assert_eq!(local_messages(&maildir).len(), 12);
    // mbsync spells the folder in modified UTF-7 on disk; no UTF-8 twin appears beside it.
    assert!(maildir.join(".Entw&APw-rfe").is_dir());
    assert!(
        !maildir.join(".Entwürfe").exists(),
        "a second folder was made"
    );
    let again = env.run(&["-v", "sync"]);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
}
#[test]
fn a_folder_the_server_refuses_to_create_is_named_and_the_others_sync() {
    let server = dovecot();
    let (user, env, maildir) = setup("sync-refused", "create = \"both\"");
    let inbox = corpus("srin", 3);
    server.put(&user, "", &inbox);
    let drafts = message("srdraft", 0, 700);
    deliver_local(&maildir, &["Drafts"], &[(drafts.clone(), "D")]);
    // Dovecot refuses a name that begins with '~'.
    deliver_local(&maildir, &["~Old"], &[(message("srold", 0, 600), "S")]);

    for _ in 0..2 {
        let run = env.run(&["-v", "sync"]);
        run.expect(2);
        assert!(
            run.stderr.contains("~Old") && run.stderr.contains("Begins with '~'"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.contains("1 folder failed"), "{}", run.stdout);
        assert_same(local_messages(&maildir), &inbox, "INBOX");
        assert_eq!(server.count(&user, "Drafts"), 1);
        // Still only here, and still here.
        assert_eq!(local_messages(&maildir.join(".~Old")).len(), 1);
    }
    let run = env.run(&["--json", "sync"]);
    run.expect(2);
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect(&run.stdout);
    assert_eq!(json["failed"][0]["folder"], "~Old", "{json}");
    let status = env.run(&["status", "acct"]);
    assert!(status.stdout.contains("partial"), "{}", status.stdout);
}
