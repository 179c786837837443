//! The sync engine end to end over the in-memory store and a real temporary Maildir: every
//! kind of change on either side under each policy, with and without UIDPLUS and QRESYNC;
//! a crash after every step the engine takes; failures of each scope.

use super::*;
use crate::maildir::Entry;
use crate::store::mem::MemServer;
use crate::store::{Retry, Scope, StoreError};
use crate::testkit::{Lab, Snapshot, block_on, crash_after_every_step, message, quiet};

/// Server capabilities to run each case with.
#[derive(Debug, Clone, Copy)]
enum Server {
    /// UIDPLUS and QRESYNC (Dovecot).
    Full,
    /// UIDPLUS, no QRESYNC: every pass lists the folder.
    NoQresync,
    /// Neither: uploads are found again by content, nothing can be expunged exactly.
    Bare,
}

const SERVERS: [Server; 3] = [Server::Full, Server::NoQresync, Server::Bare];

fn server(kind: Server) -> MemServer {
    let mut s = MemServer::imap();
    match kind {
        Server::Full => {}
        Server::NoQresync => s.qresync = false,
        Server::Bare => {
            s.qresync = false;
            s.appenduid = false;
            s.caps.deletes = Deletes::Never;
        }
    }
    s
}

fn sync(lab: &Lab) -> anyhow::Result<SyncOutcome> {
    sync_with(lab, None)
}

fn sync_with(lab: &Lab, direction: Option<SyncDirection>) -> anyhow::Result<SyncOutcome> {
    let opts = SyncOptions {
        direction,
        dry_run: false,
        allow_empty: Vec::new(),
    };
    let channel = lab.channel.as_ref().expect("a channel");
    block_on(async {
        let mut state = State::open(&lab.state_path())?;
        run(
            &lab.connect(),
            channel,
            &lab.account,
            &opts,
            &mut state,
            &quiet(),
        )
        .await
    })
}

/// The local message with this Message-ID in a folder.
fn near_entry(lab: &Lab, folder: &[&str], id: &str) -> Option<Entry> {
    let f = lab.local(folder);
    f.list().unwrap().into_iter().find(|e| {
        let data = f.read(e).unwrap().map(|s| s.data).unwrap_or_default();
        crate::message::message_id(crate::message::header(&data)).as_deref() == Some(id)
    })
}

/// The UID of the server message with this Message-ID in a mailbox.
fn far_uid(lab: &Lab, mailbox: &str, id: &str) -> Option<u32> {
    let server = lab.server.borrow();
    server
        .boxes
        .get(mailbox)?
        .messages
        .iter()
        .find_map(|(&uid, m)| {
            let found = crate::message::message_id(crate::message::header(&m.data));
            (found.as_deref() == Some(id)).then_some(uid)
        })
}

/// Flags of every copy of a message on each side: (near, far).
fn copies(lab: &Lab, id: &str) -> (Vec<String>, Vec<String>) {
    let has = |data: &str| {
        crate::message::message_id(crate::message::header(data.as_bytes())).as_deref() == Some(id)
    };
    let pick = |s: Snapshot| -> Vec<String> {
        s.get("INBOX")
            .map(|m| {
                m.iter()
                    .filter(|(_, d)| has(d))
                    .map(|(f, _)| f.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    (pick(lab.near()), pick(lab.far()))
}

fn id(i: usize) -> String {
    format!("<tt.{i}@example.org>")
}

/// A synced INBOX of five messages.
fn seeded(kind: Server, channel: &str) -> Lab {
    let lab = Lab::new(server(kind), "", channel);
    for (i, flags) in ["", "S", "", "", "F"].iter().enumerate() {
        lab.server
            .borrow_mut()
            .put("INBOX", &message("tt", i), flags);
    }
    let first = sync(&lab).unwrap();
    assert_eq!(first.downloaded, 5);
    lab
}

/// A change to one side or both.
type ChangeFn = fn(&Lab);

fn far_new(lab: &Lab) {
    lab.server.borrow_mut().put("INBOX", &message("tt", 9), "");
}
fn near_new(lab: &Lab) {
    lab.deliver(&[], &message("tt", 9), "");
}
fn far_seen(lab: &Lab) {
    let uid = far_uid(lab, "INBOX", &id(0)).unwrap();
    lab.server.borrow_mut().set_flags("INBOX", uid, "S");
}
fn near_flagged(lab: &Lab) {
    let e = near_entry(lab, &[], &id(0)).unwrap();
    lab.local(&[]).set_flags(&e, "F").unwrap();
}
fn both_flags(lab: &Lab) {
    far_seen(lab);
    near_flagged(lab);
}
fn far_expunged(lab: &Lab) {
    let uid = far_uid(lab, "INBOX", &id(0)).unwrap();
    lab.server.borrow_mut().expunge("INBOX", uid);
}
fn near_deleted(lab: &Lab) {
    let e = near_entry(lab, &[], &id(0)).unwrap();
    assert!(lab.local(&[]).remove(&e).unwrap());
}
fn both_deleted(lab: &Lab) {
    far_expunged(lab);
    near_deleted(lab);
}
fn renumbered(lab: &Lab) {
    lab.server.borrow_mut().renumber("INBOX");
    far_seen(lab);
}

/// One row: the channel, the change, the direction, and what each side holds of message 0
/// (or 9, the new one) afterwards.
struct Row {
    channel: &'static str,
    change: ChangeFn,
    direction: Option<SyncDirection>,
    message: usize,
    near: &'static [&'static str],
    far: &'static [&'static str],
}

const fn row(
    channel: &'static str,
    change: ChangeFn,
    direction: Option<SyncDirection>,
    message: usize,
    near: &'static [&'static str],
    far: &'static [&'static str],
) -> Row {
    Row {
        channel,
        change,
        direction,
        message,
        near,
        far,
    }
}

const PULL: Option<SyncDirection> = Some(SyncDirection::Pull);
const PUSH: Option<SyncDirection> = Some(SyncDirection::Push);

fn rows() -> Vec<Row> {
    vec![
        // New on one side: copied where the direction allows.
        row("", far_new, None, 9, &[""], &[""]),
        row("", far_new, PUSH, 9, &[], &[""]),
        row("", near_new, None, 9, &[""], &[""]),
        row("", near_new, PULL, 9, &[""], &[]),
        // A flag changed on one side: carried where the direction allows.
        row("", far_seen, None, 0, &["S"], &["S"]),
        row("", far_seen, PUSH, 0, &[""], &["S"]),
        row("", near_flagged, None, 0, &["F"], &["F"]),
        row("", near_flagged, PULL, 0, &["F"], &[""]),
        // Both changed, different flags: merged flag by flag.
        row("", both_flags, None, 0, &["FS"], &["FS"]),
        // Expunged on the server: marked deleted locally, or removed where allowed.
        row("", far_expunged, None, 0, &["T"], &[]),
        row("expunge = \"near\"", far_expunged, None, 0, &[], &[]),
        row("expunge = \"near\"", far_expunged, PUSH, 0, &[""], &[]),
        // Deleted locally: marked deleted on the server, or expunged where allowed.
        row("", near_deleted, None, 0, &[], &["T"]),
        row("", near_deleted, PULL, 0, &[], &[""]),
        row("expunge = \"far\"", near_deleted, None, 0, &[], &[]),
        // Gone on both sides: forgotten.
        row("expunge = \"both\"", both_deleted, None, 0, &[], &[]),
        row("", both_deleted, None, 0, &[], &[]),
        // A new UIDVALIDITY: re-matched, nothing copied twice, later changes still carried.
        row("", renumbered, None, 0, &["S"], &["S"]),
    ]
}

#[test]
fn every_kind_of_change_under_every_policy_with_and_without_uidplus_and_qresync() {
    for kind in SERVERS {
        for (i, r) in rows().iter().enumerate() {
            let what = format!("row {i} ({}) on {kind:?}", r.channel);
            let expunges_far = r.channel.contains("far") || r.channel.contains("both");
            if expunges_far && matches!(kind, Server::Bare) {
                // Refused before anything moves: it could not remove exactly what was deleted.
                let lab = Lab::new(server(kind), "", r.channel);
                lab.server.borrow_mut().put("INBOX", &message("tt", 0), "");
                let e = sync(&lab).expect_err(&what);
                assert!(e.to_string().contains("which expunge = far"), "{what}: {e}");
                assert_eq!(crate::job::classify(&e), Exit::Unavailable, "{what}");
                assert!(lab.near().get("INBOX").is_none_or(Vec::is_empty), "{what}");
                continue;
            }
            let lab = seeded(kind, r.channel);
            (r.change)(&lab);
            sync_with(&lab, r.direction).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            let (near, far) = copies(&lab, &id(r.message));
            assert_eq!(near, r.near, "{what}: Maildir");
            assert_eq!(far, r.far, "{what}: server");
            // Everything else untouched, nothing doubled.
            let (near, far) = (lab.near(), lab.far());
            assert_eq!(
                near["INBOX"].len(),
                5 + usize::from(r.message == 9) - usize::from(r.near.is_empty()),
                "{what}"
            );
            assert_eq!(
                far["INBOX"].len(),
                5 + usize::from(r.message == 9) - usize::from(r.far.is_empty()),
                "{what}"
            );
            // And the next pass has nothing to do.
            let again = sync_with(&lab, r.direction).unwrap();
            assert_eq!(again.line(), "lab: in sync, nothing to do", "{what}");
            assert_eq!((lab.near(), lab.far()), (near, far), "{what}: second pass");
        }
    }
}

#[test]
fn an_emptied_side_is_refused_and_nothing_is_deleted() {
    let lab = seeded(Server::Full, "expunge = \"both\"");
    let f = lab.local(&[]);
    for e in f.list().unwrap() {
        f.remove(&e).unwrap();
    }
    let e = sync(&lab).unwrap_err();
    assert_eq!(crate::job::classify(&e), Exit::Refused, "{e:#}");
    assert_eq!(lab.far()["INBOX"].len(), 5);
}

#[test]
fn an_emptied_folder_goes_through_when_few_moved_or_allowed() {
    // Inbox zero: the last messages deleted in a reader.
    let lab = Lab::new(server(Server::Full), "", "expunge = \"both\"");
    for i in 0..2 {
        lab.server.borrow_mut().put("INBOX", &message("ez", i), "");
    }
    sync(&lab).unwrap();
    let f = lab.local(&[]);
    for e in f.list().unwrap() {
        f.remove(&e).unwrap();
    }
    let done = sync(&lab).unwrap();
    assert_eq!(done.far_deleted, 2);
    // Both sides empty from then on: nothing to refuse.
    assert_eq!(sync(&lab).unwrap().line(), "lab: in sync, nothing to do");

    // Five moved by a reader into another synced folder: explained, not refused.
    let lab = seeded(Server::Full, "expunge = \"both\"\ncreate = \"both\"");
    let from = lab.local(&[]);
    let to = lab.local(&["Archive"]);
    for e in from.list().unwrap() {
        std::fs::rename(e.path(&from), e.path(&to)).unwrap();
    }
    let done = sync(&lab).unwrap();
    assert_eq!((done.far_deleted, done.uploaded), (5, 5));
    assert_eq!(lab.far()["Archive"].len(), 5);
    assert!(lab.far()["INBOX"].is_empty());

    // Five deleted: refused, with the way out; given it, carried out.
    let lab = seeded(Server::Full, "expunge = \"both\"");
    let f = lab.local(&[]);
    for e in f.list().unwrap() {
        f.remove(&e).unwrap();
    }
    let e = sync(&lab).unwrap_err();
    assert!(format!("{e:#}").contains("--allow-empty INBOX"), "{e:#}");
    let opts = SyncOptions {
        direction: None,
        dry_run: false,
        allow_empty: vec!["INBOX".into()],
    };
    let done = block_on(async {
        let mut state = State::open(&lab.state_path())?;
        run(
            &lab.connect(),
            lab.channel.as_ref().unwrap(),
            &lab.account,
            &opts,
            &mut state,
            &quiet(),
        )
        .await
    })
    .unwrap();
    assert_eq!(done.far_deleted, 5);
    assert!(lab.far()["INBOX"].is_empty());
}

#[test]
fn a_dry_run_plans_and_changes_nothing() {
    let lab = seeded(Server::Full, "expunge = \"both\"");
    far_new(&lab);
    near_deleted(&lab);
    let before = (lab.near(), lab.far());
    let calls_before = lab.server.borrow().calls.len();
    let opts = SyncOptions {
        direction: None,
        dry_run: true,
        allow_empty: Vec::new(),
    };
    let outcome = block_on(async {
        let (mut copy, _dir) = State::dry_run_copy(&lab.state_path())?;
        run(
            &lab.connect(),
            lab.channel.as_ref().unwrap(),
            &lab.account,
            &opts,
            &mut copy,
            &quiet(),
        )
        .await
    })
    .unwrap();
    assert_eq!((outcome.downloaded, outcome.far_deleted), (1, 1));
    let planned: Vec<&Action> = outcome.plan.iter().flat_map(|f| &f.actions).collect();
    assert!(
        planned.iter().any(|a| matches!(a, Action::Download { .. })),
        "{planned:?}"
    );
    assert!(
        planned
            .iter()
            .any(|a| matches!(a, Action::ExpungeFar { .. })),
        "{planned:?}"
    );
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["plan"][0]["folder"], "INBOX");
    assert!(
        json["plan"][0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "expunge_far")
    );
    assert_eq!((lab.near(), lab.far()), before);
    let calls: Vec<String> = lab.server.borrow().calls[calls_before..].to_vec();
    assert!(
        !calls.iter().any(|c| c.starts_with("append")
            || c.starts_with("set_flags")
            || c.starts_with("expunge")),
        "{calls:?}"
    );
    // The real run does what the dry run said.
    let done = sync(&lab).unwrap();
    assert_eq!((done.downloaded, done.far_deleted), (1, 1));
}

/// Two devices' worth of changes in three folders, one of them new locally.
fn busy(kind: Server, channel: &str) -> Lab {
    let lab = Lab::new(server(kind), "connections = 3", channel);
    {
        let mut s = lab.server.borrow_mut();
        for (i, flags) in ["S", "", "FS", ""].iter().enumerate() {
            s.put("INBOX", &message("cm", i), flags);
        }
        s.put("Work", &message("cmw", 0), "");
        s.put("Work", &message("cmw", 1), "R");
    }
    sync(&lab).unwrap();
    // This device: read one, delete one, write one, and one in a new folder.
    let f = lab.local(&[]);
    let e = near_entry(&lab, &[], "<cm.0@example.org>").unwrap();
    f.set_flags(&e, "FS").unwrap();
    let e = near_entry(&lab, &[], "<cm.1@example.org>").unwrap();
    f.remove(&e).unwrap();
    lab.deliver(&[], &message("cml", 0), "");
    lab.deliver(&["Notes"], &message("cmn", 0), "F");
    // Another device: flag one, expunge one, new mail in two folders.
    let uid = far_uid(&lab, "INBOX", "<cm.2@example.org>").unwrap();
    lab.server.borrow_mut().set_flags("INBOX", uid, "FRS");
    let uid = far_uid(&lab, "INBOX", "<cm.3@example.org>").unwrap();
    lab.server.borrow_mut().expunge("INBOX", uid);
    lab.server
        .borrow_mut()
        .put("INBOX", &message("cmnew", 0), "");
    lab.server
        .borrow_mut()
        .put("Work", &message("cmnew", 1), "S");
    lab
}

#[test]
fn a_crash_after_any_step_then_a_rerun_ends_as_an_uninterrupted_sync() {
    for (kind, channel, direction) in [
        (Server::Full, "expunge = \"both\"\ncreate = \"both\"", None),
        (
            Server::NoQresync,
            "expunge = \"both\"\ncreate = \"both\"",
            None,
        ),
        (Server::Bare, "expunge = \"near\"\ncreate = \"both\"", None),
        (Server::Full, "expunge = \"both\"\ncreate = \"both\"", PULL),
        (Server::Bare, "create = \"both\"", PUSH),
    ] {
        let steps = crash_after_every_step(
            || busy(kind, channel),
            |lab| sync_with(lab, direction).map(|_| ()),
        );
        let names: std::collections::BTreeSet<&str> = steps.iter().map(String::as_str).collect();
        let expected: &[&str] = match direction {
            None if matches!(kind, Server::Bare) => &[
                "imap-after-tmp",
                "imap-after-record",
                "imap-after-rename",
                "upload-after-intent",
                "upload-after-append",
                "sync-after-create",
                "sync-after-near-delete",
                "sync-after-bases",
                "sync-after-folder",
            ],
            None => &[
                "imap-after-tmp",
                "imap-after-record",
                "imap-after-rename",
                "upload-after-intent",
                "upload-after-append",
                "sync-after-create",
                "sync-after-far-flags",
                "sync-after-near-flags",
                "imap-after-store",
                "imap-after-expunge",
                "sync-after-near-delete",
                "sync-after-bases",
                "sync-after-folder",
            ],
            Some(SyncDirection::Pull) => &[
                "imap-after-tmp",
                "imap-after-record",
                "imap-after-rename",
                "sync-after-near-flags",
                "sync-after-near-delete",
                "sync-after-folder",
            ],
            Some(_) => &[
                "upload-after-intent",
                "upload-after-append",
                "sync-after-create",
                "sync-after-far-flags",
                "sync-after-folder",
            ],
        };
        for step in expected {
            assert!(
                names.contains(step),
                "{kind:?} {direction:?}: never crashed at {step}: {names:?}"
            );
        }
        assert!(
            names.iter().any(|s| s.starts_with("mem-")),
            "store calls are steps too"
        );
    }
}

/// Each side's folders but one.
fn without(snapshot: Snapshot, folder: &str) -> Snapshot {
    snapshot.into_iter().filter(|(f, _)| f != folder).collect()
}

#[test]
fn a_failure_of_a_folder_leaves_the_others_synced_and_a_rerun_completes_it() {
    let reference = busy(Server::Full, "expunge = \"both\"\ncreate = \"both\"");
    sync(&reference).unwrap();
    let want = (reference.near(), reference.far());
    for (op, folder) in [
        ("select", "Work"),
        ("list", "Notes"),
        ("fetch_receive", "Work"),
        ("append", "INBOX"),
        ("set_flags", "INBOX"),
        ("expunge", "INBOX"),
        ("search", "INBOX"),
        ("create", "Notes"),
    ] {
        for scope in [Scope::Message(1), Scope::Folder(folder.into())] {
            let lab = busy(Server::Full, "expunge = \"both\"\ncreate = \"both\"");
            let (near, far) = (lab.near(), lab.far());
            let failing = Some(folder);
            lab.server
                .borrow_mut()
                .fail(op, failing, scope.clone(), Retry::Never);
            let outcome = sync(&lab).unwrap_or_else(|e| panic!("{op} {scope:?}: {e:#}"));
            let named: Vec<&str> = outcome.failed.iter().map(|f| f.folder.as_str()).collect();
            assert_eq!(named, [folder], "{op} {scope:?}");
            assert!(
                outcome.failed[0].error.contains("as the test asked"),
                "{op}"
            );
            // Every other folder is where the reference got; the failed one is no further
            // than where it was, or on its way there (never past it, never anything else).
            let others = |s: Snapshot| without(s, folder);
            assert_eq!(others(lab.near()), others(want.0.clone()), "{op} {scope:?}");
            assert_eq!(others(lab.far()), others(want.1.clone()), "{op} {scope:?}");
            if op == "select" {
                assert_eq!(lab.near().get(folder), near.get(folder), "{op}");
                assert_eq!(lab.far().get(folder), far.get(folder), "{op}");
            }
            lab.server.borrow_mut().clear_failures();
            let rerun = sync(&lab).unwrap_or_else(|e| panic!("{op} {scope:?}: rerun: {e:#}"));
            assert!(
                rerun.failed.is_empty(),
                "{op} {scope:?}: {:?}",
                rerun.failed
            );
            assert_eq!((lab.near(), lab.far()), want, "{op} {scope:?}");
        }
    }
}

#[test]
fn a_failure_of_the_account_stops_the_run_and_a_rerun_completes_it() {
    let reference = busy(Server::Full, "expunge = \"both\"\ncreate = \"both\"");
    sync(&reference).unwrap();
    let want = (reference.near(), reference.far());
    for op in [
        "select",
        "list",
        "fetch_receive",
        "append",
        "set_flags",
        "expunge",
        "search",
        "create",
    ] {
        let lab = busy(Server::Full, "expunge = \"both\"\ncreate = \"both\"");
        lab.server
            .borrow_mut()
            .fail(op, None, Scope::Account, Retry::Later);
        let e = sync(&lab).expect_err(op);
        let store = e
            .chain()
            .find_map(|c| c.downcast_ref::<StoreError>())
            .unwrap_or_else(|| panic!("{op}: not a store error: {e:#}"));
        assert_eq!(
            (&store.scope, store.retry),
            (&Scope::Account, Retry::Later),
            "{op}"
        );
        assert_eq!(crate::job::classify(&e), Exit::Protocol, "{op}: {e:#}");
        lab.server.borrow_mut().clear_failures();
        sync(&lab).unwrap_or_else(|e| panic!("{op}: rerun: {e:#}"));
        assert_eq!((lab.near(), lab.far()), want, "{op}");
    }
}

#[test]
fn a_message_a_listing_missed_is_looked_for_again_not_taken_as_deleted() {
    use crate::maildir::Sub;
    let known: Vec<SyncedRecord> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| SyncedRecord {
            uid: i as u32 + 1,
            local_name: Some((*name).into()),
            flags: "".into(),
        })
        .collect();
    let entry = |name: &str| Entry::parse(Sub::Cur, &format!("{name}:2,S"));
    // The first listing misses "b" (renamed while the directory was read); the second has it.
    let mut listings = vec![
        vec![entry("a"), entry("b"), entry("c")],
        vec![entry("a"), entry("c")],
    ];
    let entries = listing_confirmed(|| Ok(listings.pop().unwrap_or_default()), &known).unwrap();
    let mut names: Vec<&str> = entries.iter().map(Entry::unique).collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b", "c"]);
    // Really gone: looked for again, not found, not made up.
    let mut listings = vec![vec![entry("a")], vec![entry("a")]];
    let entries = listing_confirmed(|| Ok(listings.pop().unwrap_or_default()), &known).unwrap();
    assert_eq!(entries.len(), 1);
}

#[test]
fn a_flag_a_mail_reader_sets_during_the_sync_is_kept() {
    let lab = seeded(Server::Full, "");
    // Another device flags message 0; new mail makes the pass download first.
    let uid = far_uid(&lab, "INBOX", &id(0)).unwrap();
    lab.server.borrow_mut().set_flags("INBOX", uid, "F");
    far_new(&lab);
    // While the download runs (after the plan was made), a mail reader reads message 0.
    let folder = lab.local(&[]);
    let e = near_entry(&lab, &[], &id(0)).unwrap();
    lab.server.borrow_mut().before("fetch_receive", move || {
        folder.set_flags(&e, "S").unwrap();
    });
    sync(&lab).unwrap();
    assert_eq!(
        copies(&lab, &id(0)),
        (vec!["FS".to_string()], vec!["F".to_string()])
    );
    // The reader's S reaches the server on the next pass.
    sync(&lab).unwrap();
    assert_eq!(
        copies(&lab, &id(0)),
        (vec!["FS".to_string()], vec!["FS".to_string()])
    );
}

#[test]
fn lost_state_copies_nothing_twice_and_keeps_both_sides_flags() {
    let lab = seeded(Server::Full, "expunge = \"both\"");
    lab.deliver(&[], &message("tt", 7), "");
    sync(&lab).unwrap();
    std::fs::remove_file(lab.state_path()).unwrap();
    // Meanwhile one side reads a message, the other flags another.
    let e = near_entry(&lab, &[], &id(2)).unwrap();
    lab.local(&[]).set_flags(&e, "S").unwrap();
    let uid = far_uid(&lab, "INBOX", &id(3)).unwrap();
    lab.server.borrow_mut().set_flags("INBOX", uid, "F");
    let again = sync(&lab).unwrap();
    assert_eq!((again.downloaded, again.uploaded, again.paired), (0, 0, 6));
    assert_eq!(
        copies(&lab, &id(2)),
        (vec!["S".to_string()], vec!["S".to_string()])
    );
    assert_eq!(
        copies(&lab, &id(3)),
        (vec!["F".to_string()], vec!["F".to_string()])
    );
    assert_eq!(sync(&lab).unwrap().line(), "lab: in sync, nothing to do");
}

#[test]
fn a_uidvalidity_change_doubles_no_message_without_a_message_id() {
    let lab = Lab::new(server(Server::Full), "", "expunge = \"both\"");
    for body in ["one", "two", "three"] {
        let m = format!("From: x@example.org\nSubject: anonymous\n\n{body}\n");
        lab.server.borrow_mut().put("INBOX", m.as_bytes(), "");
    }
    sync(&lab).unwrap();
    lab.server.borrow_mut().renumber("INBOX");
    let again = sync(&lab).unwrap();
    assert_eq!((again.downloaded, again.uploaded), (0, 0));
    assert_eq!(
        (lab.near()["INBOX"].len(), lab.far()["INBOX"].len()),
        (3, 3)
    );
}

#[test]
fn keywords_the_server_cannot_keep_are_not_pushed_nor_taken_as_removed() {
    let lab = seeded(Server::Full, "");
    lab.server.borrow_mut().keywords = Some(vec!["$Junk".into()]);
    // A local keyword the server drops, and one it keeps.
    let f = lab.local(&[]);
    let mut keywords = crate::maildir::keywords::Keywords::load(f.path()).unwrap();
    keywords.admit(&FlagSet::parse(" $Junk work"));
    keywords.save().unwrap();
    let e = near_entry(&lab, &[], &id(0)).unwrap();
    let letters = keywords.letters(e.flags(), &FlagSet::parse("S $Junk work"));
    f.set_flags(&e, &letters).unwrap();
    for _ in 0..3 {
        sync(&lab).unwrap();
    }
    let (near, far) = copies(&lab, &id(0));
    assert_eq!(far, ["S $Junk"]);
    let e = near_entry(&lab, &[], &id(0)).unwrap();
    assert_eq!(
        keywords.flags(e.flags()).to_string(),
        "S $Junk work",
        "{near:?}"
    );
}

#[test]
fn a_message_the_server_will_not_send_is_reported_and_synced_once_it_can_be() {
    for kind in SERVERS {
        let lab = busy(kind, "");
        let uid = far_uid(&lab, "INBOX", "<cmnew.0@example.org>").unwrap();
        let words = "NO [UNAVAILABLE] the message cannot be read";
        lab.server.borrow_mut().refuse(&["INBOX"], uid, words);
        let done = sync(&lab).unwrap();
        let failed: Vec<(&str, Option<u32>)> = done
            .failed
            .iter()
            .map(|f| (f.folder.as_str(), f.uid))
            .collect();
        assert_eq!(failed, [("INBOX", Some(uid))], "{kind:?}");
        assert!(done.failed[0].error.contains("cannot be read"), "{kind:?}");
        assert!(near_entry(&lab, &[], "<cmnew.0@example.org>").is_none());
        // Work's new message came all the same.
        assert!(near_entry(&lab, &["Work"], "<cmnew.1@example.org>").is_some());
        // Asked for again (and said again) until the server sends it, then once.
        assert_eq!(sync(&lab).unwrap().failed.len(), 1, "{kind:?}");
        lab.server.borrow_mut().clear_failures();
        let mended = sync(&lab).unwrap();
        assert!(mended.failed.is_empty(), "{kind:?}: {:?}", mended.failed);
        assert_eq!(mended.downloaded, 1, "{kind:?}");
        assert!(near_entry(&lab, &[], "<cmnew.0@example.org>").is_some());
        assert!(sync(&lab).unwrap().downloaded == 0, "{kind:?}");
    }
}

#[test]
fn a_server_folder_that_vanished_is_not_made_again_unless_asked() {
    let lab = busy(Server::Full, "create = \"both\"");
    sync(&lab).unwrap();
    let near_work = lab.near()["Work"].clone();
    lab.server.borrow_mut().boxes.remove("Work");
    for _ in 0..2 {
        let done = sync(&lab).unwrap();
        let named: Vec<&str> = done.failed.iter().map(|f| f.folder.as_str()).collect();
        assert_eq!(named, ["Work"]);
        assert!(done.failed[0].error.contains("gone from the server"));
        assert!(done.failed[0].error.contains("--allow-empty Work"));
        assert!(!lab.far().contains_key("Work"));
        assert_eq!(lab.near()["Work"], near_work);
    }
    // Asked for: made again, and what the Maildir kept is copied back.
    let opts = SyncOptions {
        direction: None,
        dry_run: false,
        allow_empty: vec!["Work".into()],
    };
    let channel = lab.channel.as_ref().expect("a channel");
    let done = block_on(async {
        let mut state = State::open(&lab.state_path())?;
        run(
            &lab.connect(),
            channel,
            &lab.account,
            &opts,
            &mut state,
            &quiet(),
        )
        .await
    })
    .unwrap();
    assert!(done.failed.is_empty(), "{:?}", done.failed);
    assert_eq!(lab.far()["Work"].len(), near_work.len());
    let again = sync(&lab).unwrap();
    assert!(again.failed.is_empty(), "{:?}", again.failed);
    assert_eq!(lab.far()["Work"].len(), near_work.len());
}
