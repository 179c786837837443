//! The fetch engines end to end over the in-memory store and a real temporary Maildir: keep
//! and delete mode over IMAP and POP3, a crash after every step, limits, a UIDVALIDITY change.

use super::*;
use crate::config::Mode;
use crate::state::State;
use crate::store::Deletes;
use crate::store::mem::MemServer;
use crate::testkit::{Lab, block_on, crash_after_every_step, message, quiet};

fn options(lab: &Lab, mode: Mode) -> FetchOptions {
    FetchOptions {
        mode,
        delete_after: None,
        max_messages: None,
        max_size: None,
        dry_run: false,
        commit_every: 3,
        state_path: lab.state_path(),
    }
}

fn fetch(lab: &Lab, opts: &FetchOptions) -> anyhow::Result<Outcome> {
    block_on(async {
        if lab.account.protocol == crate::config::Protocol::Pop3 {
            if opts.dry_run {
                return pop3::run(&lab.connect(), &lab.account, opts, None, &quiet()).await;
            }
            let mut state = State::open(&opts.state_path)?;
            pop3::run(
                &lab.connect(),
                &lab.account,
                opts,
                Some(&mut state),
                &quiet(),
            )
            .await
        } else {
            imap::run(&lab.connect(), &lab.account, opts, &quiet()).await
        }
    })
}

/// 70 messages in INBOX (more than one durable batch), three in Work, one large one.
fn imap_lab(account: &str) -> Lab {
    let lab = Lab::new(MemServer::imap(), account, "");
    let mut s = lab.server.borrow_mut();
    for i in 0..70 {
        s.put(
            "INBOX",
            &message("fi", i),
            if i % 3 == 0 { "S" } else { "" },
        );
    }
    for i in 0..3 {
        s.put("Work", &message("fw", i), "F");
    }
    let mut big = message("fbig", 0);
    big.extend(std::iter::repeat_n(b'x', 5000));
    s.put("Work", &big, "");
    drop(s);
    lab
}

fn pop3_lab() -> Lab {
    let lab = Lab::new(MemServer::pop3(), "", "");
    for i in 0..8 {
        lab.server.borrow_mut().put("INBOX", &message("fp", i), "");
    }
    lab
}

fn count(s: &crate::testkit::Snapshot) -> usize {
    s.values().map(Vec::len).sum()
}

#[test]
fn imap_keep_mode_copies_every_folder_once_and_reruns_are_no_ops() {
    let lab = imap_lab("connections = 2");
    let opts = FetchOptions {
        max_size: Some(2000),
        ..options(&lab, Mode::Keep)
    };
    let first = fetch(&lab, &opts).unwrap();
    assert_eq!((first.fetched, first.too_large, first.deleted), (73, 1, 0));
    let near = lab.near();
    assert_eq!((near["INBOX"].len(), near["Work"].len()), (70, 3));
    // Flags as the server had them; the server unchanged (nothing marked read).
    assert_eq!(near["INBOX"].iter().filter(|(f, _)| f == "S").count(), 24);
    assert!(near["Work"].iter().all(|(f, _)| f == "F"));
    let far_before = lab.far();
    let again = fetch(&lab, &opts).unwrap();
    // The one left on the server is said again, every run.
    assert_eq!((again.fetched, again.too_large), (0, 1));
    assert_eq!(lab.far(), far_before);
    assert_eq!(lab.near(), near);
    // New mail only.
    lab.server.borrow_mut().put("Work", &message("fw", 9), "");
    assert_eq!(fetch(&lab, &opts).unwrap().fetched, 1);
}

#[test]
fn imap_delete_mode_empties_the_server_after_a_crash_at_any_step() {
    let steps = crash_after_every_step(
        || imap_lab("connections = 2"),
        |lab| fetch(lab, &options(lab, Mode::Delete)).map(|_| ()),
    );
    for step in [
        "imap-after-tmp",
        "imap-after-record",
        "imap-after-rename",
        "imap-after-store",
        "imap-after-expunge",
    ] {
        assert!(steps.iter().any(|s| s == step), "never crashed at {step}");
    }
    let lab = imap_lab("");
    fetch(&lab, &options(&lab, Mode::Delete)).unwrap();
    assert_eq!(count(&lab.far()), 0);
    assert_eq!(count(&lab.near()), 74);
}

#[test]
fn a_folder_the_server_refuses_is_named_and_the_others_are_fetched() {
    use crate::store::{Retry, Scope};
    for op in ["select", "fetch_receive", "set_flags", "expunge"] {
        let lab = imap_lab("connections = 2");
        let work = Scope::Folder("Work".into());
        lab.server
            .borrow_mut()
            .fail(op, Some("Work"), work, Retry::Never);
        let done = fetch(&lab, &options(&lab, Mode::Delete)).unwrap();
        let named: Vec<&str> = done.failed.iter().map(|f| f.folder.as_str()).collect();
        assert_eq!(named, ["Work"], "{op}");
        assert!(
            done.failed[0].error.contains("Work"),
            "{op}: {:?}",
            done.failed
        );
        assert_eq!(lab.near()["INBOX"].len(), 70, "{op}");
        assert!(
            !lab.far().contains_key("INBOX") || lab.far()["INBOX"].is_empty(),
            "{op}"
        );
        // Whatever Work got to, nothing of it was deleted without its copy.
        let (near, far) = (lab.near(), lab.far());
        let texts = |s: &crate::testkit::Snapshot| -> Vec<String> {
            s.get("Work")
                .into_iter()
                .flatten()
                .map(|(_, t)| t.clone())
                .collect()
        };
        let mut kept = texts(&near);
        kept.extend(texts(&far));
        kept.sort();
        kept.dedup();
        assert_eq!(kept.len(), 4, "{op}");
        lab.server.borrow_mut().clear_failures();
        let rerun = fetch(&lab, &options(&lab, Mode::Delete)).unwrap();
        assert!(rerun.failed.is_empty(), "{op}");
        assert_eq!(count(&lab.far()), 0, "{op}");
        assert_eq!(count(&lab.near()), 74, "{op}");
    }
}

#[test]
fn imap_keep_mode_survives_a_crash_at_any_step() {
    crash_after_every_step(
        || imap_lab(""),
        |lab| fetch(lab, &options(lab, Mode::Keep)).map(|_| ()),
    );
}

#[test]
fn nothing_is_stranded_below_what_was_fetched_or_left_as_too_large() {
    // A size limit records the large message before anything is downloaded: a crash at any
    // step after that must not leave the smaller ones below it behind.
    let with_limit = |lab: &Lab| FetchOptions {
        max_size: Some(2000),
        ..options(lab, Mode::Keep)
    };
    crash_after_every_step(
        || imap_lab(""),
        |lab| fetch(lab, &with_limit(lab)).map(|_| ()),
    );
    // Raising the limit fetches what was left, once.
    let lab = imap_lab("");
    assert_eq!(fetch(&lab, &with_limit(&lab)).unwrap().fetched, 73);
    let raised = fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    assert_eq!((raised.fetched, raised.too_large), (1, 0));
    assert_eq!(count(&lab.near()), 74);
    assert_eq!(fetch(&lab, &options(&lab, Mode::Keep)).unwrap().fetched, 0);
}

#[test]
fn a_message_the_server_did_not_send_is_asked_for_again() {
    let lab = imap_lab("");
    lab.server.borrow_mut().withhold_once(&["INBOX"], 5);
    let first = fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    assert_eq!(first.fetched, 73);
    // New mail arrives meanwhile; the next run fetches both the new one and the one withheld.
    lab.server
        .borrow_mut()
        .put("INBOX", &message("fi", 100), "");
    let second = fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    assert_eq!(second.fetched, 2);
    assert_eq!(lab.near()["INBOX"].len(), 71);
    assert_eq!(fetch(&lab, &options(&lab, Mode::Keep)).unwrap().fetched, 0);
}

#[test]
fn imap_delete_mode_is_refused_without_exact_removal_and_deletes_nothing() {
    let lab = imap_lab("");
    lab.server.borrow_mut().caps.deletes = Deletes::Never;
    let e = fetch(&lab, &options(&lab, Mode::Delete)).unwrap_err();
    assert_eq!(
        crate::job::classify(&e),
        crate::exit::Exit::Unavailable,
        "{e:#}"
    );
    assert!(e.to_string().contains("delete mode needs"), "{e}");
    assert_eq!(count(&lab.far()), 74);
}

#[test]
fn a_uidvalidity_change_fetches_nothing_twice() {
    let lab = imap_lab("");
    fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    lab.server.borrow_mut().renumber("INBOX");
    lab.server.borrow_mut().put("INBOX", &message("fi", 99), "");
    let again = fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    assert_eq!(again.fetched, 1);
    assert_eq!(lab.near()["INBOX"].len(), 71);
}

#[test]
fn max_messages_counts_over_the_whole_run() {
    let lab = imap_lab("");
    let opts = FetchOptions {
        max_messages: Some(50),
        ..options(&lab, Mode::Keep)
    };
    assert_eq!(fetch(&lab, &opts).unwrap().fetched, 50);
    assert_eq!(fetch(&lab, &opts).unwrap().fetched, 24);
    assert_eq!(fetch(&lab, &opts).unwrap().fetched, 0);
}

#[test]
fn a_dry_run_plans_every_folder_and_changes_nothing() {
    let lab = imap_lab("");
    let opts = FetchOptions {
        dry_run: true,
        max_size: Some(2000),
        ..options(&lab, Mode::Delete)
    };
    let plan = fetch(&lab, &opts).unwrap();
    assert_eq!((plan.fetched, plan.deleted, plan.too_large), (73, 73, 1));
    let json = serde_json::to_value(&plan).unwrap();
    let folders: Vec<&str> = json["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["folder"].as_str().unwrap())
        .collect();
    assert_eq!(folders, ["INBOX", "Work"]);
    assert!(json["plan"][1]["too_large"][0]["size"].as_u64().unwrap() > 2000);
    assert_eq!(count(&lab.far()), 74);
    assert_eq!(count(&lab.near()), 0);
    assert!(!lab.state_path().exists(), "a dry run wrote state");
}

#[test]
fn pop3_keep_mode_fetches_each_message_once() {
    let lab = pop3_lab();
    let opts = options(&lab, Mode::Keep);
    assert_eq!(fetch(&lab, &opts).unwrap().fetched, 8);
    assert_eq!(fetch(&lab, &opts).unwrap().fetched, 0);
    lab.server.borrow_mut().put("INBOX", &message("fp", 8), "");
    assert_eq!(fetch(&lab, &opts).unwrap().fetched, 1);
    assert_eq!(lab.near()["INBOX"].len(), 9);
    assert_eq!(lab.far()["INBOX"].len(), 9);
}

/// Eight messages fetched in keep mode, then four new ones.
fn pop3_kept() -> Lab {
    let lab = pop3_lab();
    fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    for i in 8..12 {
        lab.server.borrow_mut().put("INBOX", &message("fp", i), "");
    }
    lab
}

#[test]
fn pop3_delete_mode_over_several_sessions_survives_a_crash_at_any_step() {
    // Three deletions per session (checked between batches): the eight fetched before take
    // three sessions, the last of which also fetches and deletes the new ones.
    let steps = crash_after_every_step(pop3_kept, |lab| {
        fetch(lab, &options(lab, Mode::Delete)).map(|_| ())
    });
    for step in [
        "pop3-after-tmp",
        "pop3-after-record",
        "pop3-after-rename",
        "pop3-after-dele",
        "pop3-before-quit",
        "pop3-after-quit",
    ] {
        assert!(steps.iter().any(|s| s == step), "never crashed at {step}");
    }
    let lab = pop3_kept();
    let before = lab.server.borrow().connections;
    let done = fetch(&lab, &options(&lab, Mode::Delete)).unwrap();
    assert_eq!((done.fetched, done.deleted), (4, 12));
    assert_eq!(count(&lab.far()), 0);
    assert_eq!(lab.near()["INBOX"].len(), 12);
    assert_eq!(lab.server.borrow().connections - before, 3);
}

#[test]
fn pop3_keep_mode_removes_what_delete_after_allows() {
    let lab = pop3_lab();
    fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    let opts = FetchOptions {
        delete_after: Some(std::time::Duration::ZERO),
        ..options(&lab, Mode::Keep)
    };
    let done = fetch(&lab, &opts).unwrap();
    assert_eq!((done.fetched, done.deleted), (0, 8));
    assert_eq!(count(&lab.far()), 0);
    assert_eq!(lab.near()["INBOX"].len(), 8);
}

#[test]
fn lost_state_fetches_nothing_twice() {
    let lab = imap_lab("");
    // One message without a Message-ID: paired by its content.
    lab.server
        .borrow_mut()
        .put("Work", b"From: x@example.org\nSubject: no id\n\nbody\n", "");
    fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    let near = lab.near();
    std::fs::remove_file(lab.state_path()).unwrap();
    let again = fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    assert_eq!((again.fetched, again.paired), (0, 75));
    assert_eq!(lab.near(), near);
    assert!(
        again.line().contains("75 already in the Maildir, paired"),
        "{}",
        again.line()
    );
    assert_eq!(fetch(&lab, &options(&lab, Mode::Keep)).unwrap().fetched, 0);
    // Delete mode after lost state: paired by content, then removed from the server.
    std::fs::remove_file(lab.state_path()).unwrap();
    let deleting = fetch(&lab, &options(&lab, Mode::Delete)).unwrap();
    assert_eq!((deleting.fetched, deleting.deleted), (0, 75));
    assert_eq!(count(&lab.far()), 0);
    assert_eq!(lab.near(), near);
}

#[test]
fn delete_mode_after_lost_state_keeps_what_differs_from_the_local_copy() {
    // The same Message-ID and size, other bytes: not the same message; fetched, not deleted
    // because of the pair.
    let lab = imap_lab("");
    fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    std::fs::remove_file(lab.state_path()).unwrap();
    let f = lab.local(&["Work"]);
    let e = f.list().unwrap().into_iter().next().unwrap();
    let path = e.path(&f);
    let mut data = std::fs::read(&path).unwrap();
    let last = data.len() - 2;
    data[last] ^= 1;
    std::fs::write(&path, data).unwrap();
    let done = fetch(&lab, &options(&lab, Mode::Delete)).unwrap();
    assert_eq!((done.fetched, done.deleted), (1, 74));
    assert_eq!(lab.near()["Work"].len(), 5);
}

#[test]
fn pop3_lost_state_fetches_nothing_twice() {
    let lab = pop3_lab();
    fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    std::fs::remove_file(lab.state_path()).unwrap();
    let again = fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    assert_eq!((again.fetched, again.paired), (0, 8));
    assert_eq!(fetch(&lab, &options(&lab, Mode::Keep)).unwrap().fetched, 0);
    std::fs::remove_file(lab.state_path()).unwrap();
    let deleting = fetch(&lab, &options(&lab, Mode::Delete)).unwrap();
    assert_eq!((deleting.fetched, deleting.deleted), (0, 8));
    assert_eq!(lab.near()["INBOX"].len(), 8);
    assert_eq!(count(&lab.far()), 0);
}

#[test]
fn a_uidvalidity_change_rematches_messages_without_a_message_id_by_content() {
    let lab = imap_lab("");
    for body in ["one", "two"] {
        let m = format!("From: x@example.org\nSubject: anonymous\n\n{body}\n");
        lab.server.borrow_mut().put("INBOX", m.as_bytes(), "");
    }
    fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    lab.server.borrow_mut().renumber("INBOX");
    let again = fetch(&lab, &options(&lab, Mode::Keep)).unwrap();
    assert_eq!(again.fetched, 0);
    assert_eq!(lab.near()["INBOX"].len(), 72);
}

#[test]
fn a_message_the_server_will_not_send_is_reported_kept_there_and_asked_for_again() {
    for mode in [Mode::Keep, Mode::Delete] {
        let lab = pop3_lab();
        let words = "-ERR message is corrupt";
        lab.server.borrow_mut().refuse(&["INBOX"], 4, words);
        let done = fetch(&lab, &options(&lab, mode)).unwrap();
        assert_eq!(done.fetched, 7, "{mode:?}");
        let failed: Vec<(Option<&str>, &str)> = done
            .failed
            .iter()
            .map(|f| (f.id.as_deref(), f.error.as_str()))
            .collect();
        assert_eq!(failed, [(Some("4"), words)], "{mode:?}");
        assert!(done.line().contains("1 message could not be fetched"));
        // Delete mode removed what it has, and only that.
        let left = if mode == Mode::Delete { 1 } else { 8 };
        assert_eq!(lab.far()["INBOX"].len(), left, "{mode:?}");
        assert_eq!(lab.near()["INBOX"].len(), 7, "{mode:?}");
        // Reported on every run until the server sends it; then fetched once.
        let again = fetch(&lab, &options(&lab, mode)).unwrap();
        assert_eq!((again.fetched, again.failed.len()), (0, 1), "{mode:?}");
        lab.server.borrow_mut().clear_failures();
        let mended = fetch(&lab, &options(&lab, mode)).unwrap();
        assert_eq!((mended.fetched, mended.failed.len()), (1, 0), "{mode:?}");
        assert_eq!(lab.near()["INBOX"].len(), 8, "{mode:?}");
        let left = if mode == Mode::Delete { 0 } else { 8 };
        assert_eq!(lab.far()["INBOX"].len(), left, "{mode:?}");
    }
}

#[test]
fn an_imap_message_the_server_will_not_send_is_reported_and_fetched_when_it_can_be() {
    for mode in [Mode::Keep, Mode::Delete] {
        let lab = imap_lab("");
        let words = "NO Some messages could not be FETCHed (Failure)";
        lab.server.borrow_mut().refuse(&["INBOX"], 30, words);
        let done = fetch(&lab, &options(&lab, mode)).unwrap();
        assert_eq!(done.fetched, 73, "{mode:?}");
        let failed: Vec<(&str, Option<u32>)> = done
            .failed
            .iter()
            .map(|f| (f.folder.as_str(), f.uid))
            .collect();
        assert_eq!(failed, [("INBOX", Some(30))], "{mode:?}");
        assert!(done.failed[0].error.contains("could not be FETCHed"));
        let left = if mode == Mode::Delete { 1 } else { 70 };
        assert_eq!(lab.far()["INBOX"].len(), left, "{mode:?}");
        // New mail meanwhile does not move the next run past the one that failed.
        lab.server.borrow_mut().put("INBOX", &message("fi", 99), "");
        let again = fetch(&lab, &options(&lab, mode)).unwrap();
        assert_eq!((again.fetched, again.failed.len()), (1, 1), "{mode:?}");
        lab.server.borrow_mut().clear_failures();
        let mended = fetch(&lab, &options(&lab, mode)).unwrap();
        assert_eq!((mended.fetched, mended.failed.len()), (1, 0), "{mode:?}");
        assert_eq!(lab.near()["INBOX"].len(), 71, "{mode:?}");
    }
}
