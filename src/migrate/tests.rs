//! Migrations end to end over in-memory stores and a real Maildir: a Maildir tree, a POP3
//! mailbox and an IMAP account into an IMAP target, exactly once, after a crash at any step,
//! with the source removed only where the target holds the copy, and verified.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::store::mem::{MemConnect, MemServer};
use crate::testkit::{Lab, Snapshot, block_on, crash_matrix, message, quiet, server_snapshot};

fn options(delete_source: bool, verify: bool) -> MigrateOptions {
    MigrateOptions {
        from: "src".into(),
        to: "dst".into(),
        inbox: vec!["Imported".into()],
        folders: vec!["*".into()],
        delete_source,
        dry_run: false,
        verify,
    }
}

fn migrate<C: Connect>(
    lab: &Lab,
    source: &C,
    opts: &MigrateOptions,
) -> anyhow::Result<MigrateOutcome> {
    block_on(async {
        let state = State::open(&lab.dir.path().join("state/migrate.sqlite"))?;
        run(source, &lab.connect(), 2, state, opts, &quiet()).await
    })
}

/// A target that already holds one of the messages (copied before by other means, without
/// its flags), and a Maildir source: three at its root, two in a sub-folder.
fn maildir_lab() -> Lab {
    let lab = Lab::new(MemServer::imap(), "", "");
    lab.deliver(&[], &message("mm", 0), "S");
    lab.deliver(&[], &message("mm", 1), "");
    lab.deliver(&[], &message("mm", 2), "FS");
    lab.deliver(&["Archive"], &message("mm", 3), "S");
    lab.deliver(&["Archive"], &message("mm", 4), "R");
    lab.server.borrow_mut().create("Imported");
    lab.server
        .borrow_mut()
        .put("Imported", &message("mm", 0), "");
    lab
}

fn maildir_source(lab: &Lab) -> SourceConnect<'static> {
    SourceConnect::Maildir(lab.dir.path().join("Mail"))
}

#[test]
fn a_maildir_tree_migrates_once_with_its_flags_and_a_rerun_copies_nothing() {
    let lab = maildir_lab();
    let first = migrate(&lab, &maildir_source(&lab), &options(false, true)).unwrap();
    assert_eq!(
        (first.copied, first.already_there, first.folders_created),
        (4, 1, 1)
    );
    let v = first.verified.unwrap();
    assert_eq!((v.checked, v.missing, v.differ), (5, 0, 0));
    let far = lab.far();
    let flags =
        |folder: &str| -> Vec<String> { far[folder].iter().map(|(f, _)| f.clone()).collect() };
    assert_eq!(flags("Imported"), ["", "FS", "S"]);
    assert_eq!(flags("Archive"), ["R", "S"]);
    let again = migrate(&lab, &maildir_source(&lab), &options(false, false)).unwrap();
    assert_eq!((again.copied, again.done_before), (0, 5));
    assert_eq!(lab.far(), far);
    assert_eq!(lab.near()["INBOX"].len(), 3, "the source is read only");
}

#[test]
fn a_maildir_migration_deleting_its_source_survives_a_crash_at_any_step() {
    let steps = crash_matrix(
        maildir_lab,
        |lab| migrate(lab, &maildir_source(lab), &options(true, false)).map(|_| ()),
        |lab| (lab.near(), lab.far()),
    );
    for step in [
        "upload-after-intent",
        "upload-after-append",
        "migrate-after-flags",
        "migrate-after-found",
        "migrate-after-unlink",
    ] {
        assert!(
            steps.iter().any(|s| s == step),
            "never crashed at {step}: {steps:?}"
        );
    }
    let lab = maildir_lab();
    migrate(&lab, &maildir_source(&lab), &options(true, false)).unwrap();
    assert!(lab.near().values().all(Vec::is_empty));
    assert_eq!(lab.far()["Imported"].len() + lab.far()["Archive"].len(), 5);
}

/// A second in-memory server as the source, and the lab's as the target.
struct Pair {
    lab: Lab,
    source: Rc<RefCell<MemServer>>,
}

impl Pair {
    fn new(source: MemServer) -> Pair {
        let source = source.shared();
        {
            let mut s = source.borrow_mut();
            for i in 0..4 {
                s.put("INBOX", &message("pm", i), if i == 1 { "S" } else { "" });
            }
            if s.caps.lasting_uids {
                s.put("Work", &message("pw", 0), "F");
            }
        }
        Pair {
            lab: Lab::new(MemServer::imap(), "", ""),
            source,
        }
    }

    fn snapshot(&self) -> (Snapshot, Snapshot) {
        (server_snapshot(&self.source.borrow()), self.lab.far())
    }

    fn run(&self, opts: &MigrateOptions) -> anyhow::Result<MigrateOutcome> {
        migrate(&self.lab, &MemConnect(self.source.clone()), opts)
    }
}

#[test]
fn pop3_and_imap_sources_migrate_after_a_crash_at_any_step_and_leave_only_what_was_not_copied() {
    for (source, expected) in [
        (
            MemServer::pop3 as fn() -> MemServer,
            &["migrate-after-dele", "migrate-before-quit"][..],
        ),
        (
            MemServer::imap,
            &["migrate-after-source-store", "migrate-after-source-expunge"],
        ),
    ] {
        let steps = crash_matrix(
            || Pair::new(source()),
            |p| p.run(&options(true, false)).map(|_| ()),
            Pair::snapshot,
        );
        for step in expected
            .iter()
            .chain(&["upload-after-intent", "upload-after-append"])
        {
            assert!(
                steps.iter().any(|s| s == step),
                "never crashed at {step}: {steps:?}"
            );
        }
        let p = Pair::new(source());
        let done = p.run(&options(true, true)).unwrap();
        let (src, dst) = p.snapshot();
        assert!(src.values().all(Vec::is_empty), "{src:?}");
        let copied: usize = dst.values().map(Vec::len).sum();
        assert_eq!(
            (done.copied as usize, copied),
            (copied, done.source_deleted as usize)
        );
    }
}

#[test]
fn a_source_message_whose_copy_left_the_target_is_not_deleted() {
    let p = Pair::new(MemServer::imap());
    p.run(&options(false, false)).unwrap();
    // Someone removes one copy on the target; the next run with --delete-source keeps its
    // source message.
    let uid = *p.lab.server.borrow().boxes["INBOX"]
        .messages
        .keys()
        .next()
        .unwrap();
    p.lab.server.borrow_mut().expunge("INBOX", uid);
    let done = p.run(&options(true, false)).unwrap();
    assert_eq!(done.source_deleted, 4);
    let (src, _) = p.snapshot();
    assert_eq!(src.values().map(Vec::len).sum::<usize>(), 1);
}

#[test]
fn a_dry_run_shows_the_plan_and_changes_nothing() {
    let p = Pair::new(MemServer::imap());
    let opts = MigrateOptions {
        dry_run: true,
        ..options(true, false)
    };
    let before = p.snapshot();
    let plan = block_on(async {
        let (copy, _dir) = State::dry_run_copy(&p.lab.dir.path().join("state/migrate.sqlite"))?;
        run(
            &MemConnect(p.source.clone()),
            &p.lab.connect(),
            2,
            copy,
            &opts,
            &quiet(),
        )
        .await
    })
    .unwrap();
    assert_eq!((plan.copied, plan.folders_created), (5, 1));
    let json = serde_json::to_value(&plan).unwrap();
    let units: Vec<(&str, bool, usize)> = json["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["from"].as_str().unwrap(),
                u["create"].as_bool().unwrap(),
                u["copy"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(units, [("INBOX", false, 4), ("Work", true, 1)]);
    assert_eq!(p.snapshot(), before);
}

#[test]
fn a_target_copy_with_the_same_message_id_but_other_bytes_is_not_taken_as_there() {
    let p = Pair::new(MemServer::imap());
    let mut other = message("pm", 0);
    let last = other.len() - 3;
    other[last] ^= 1;
    p.lab.server.borrow_mut().put("INBOX", &other, "");
    let done = p.run(&options(true, false)).unwrap();
    assert_eq!((done.already_there, done.copied), (0, 5));
    let (src, dst) = p.snapshot();
    assert!(src.values().all(Vec::is_empty));
    assert_eq!(
        dst["INBOX"].len(),
        5,
        "the real copy went up beside the other one"
    );
}

#[test]
fn a_target_that_keeps_bare_lf_verifies_as_differing_only_in_line_endings() {
    let lab = maildir_lab();
    lab.server.borrow_mut().bare_lf = true;
    let done = migrate(&lab, &maildir_source(&lab), &options(false, true)).unwrap();
    let v = done.verified.clone().unwrap();
    // The one copied before by other means has CRLF; the four sent now came back bare LF.
    assert_eq!(
        (v.checked, v.missing, v.differ, v.line_endings),
        (5, 0, 0, 4)
    );
    assert!(
        done.line().contains("4 differ only in line endings"),
        "{}",
        done.line()
    );
    // And a rerun copies nothing again.
    let again = migrate(&lab, &maildir_source(&lab), &options(false, false)).unwrap();
    assert_eq!(again.copied, 0);
}

#[test]
fn uploads_to_a_bare_lf_server_without_appenduid_are_found_again_after_a_crash() {
    let setup = || {
        let lab = maildir_lab();
        lab.server.borrow_mut().bare_lf = true;
        lab.server.borrow_mut().appenduid = false;
        lab
    };
    crash_matrix(
        setup,
        |lab| migrate(lab, &maildir_source(lab), &options(false, false)).map(|_| ()),
        |lab| (lab.near(), lab.far()),
    );
}

#[test]
fn a_target_folder_the_server_refuses_fails_alone_and_a_rerun_completes_it() {
    use crate::store::{Retry, Scope};
    for op in ["create", "append"] {
        let lab = maildir_lab();
        let archive = Scope::Folder("Archive".into());
        lab.server
            .borrow_mut()
            .fail(op, Some("Archive"), archive, Retry::Never);
        let done = migrate(&lab, &maildir_source(&lab), &options(true, false)).unwrap();
        let named: Vec<&str> = done.failed.iter().map(|f| f.folder.as_str()).collect();
        assert_eq!(named, ["Archive"], "{op}");
        assert!(
            done.line().contains("1 folder failed"),
            "{op}: {}",
            done.line()
        );
        // The root went over (and left the source); Archive stays whole in the source.
        assert_eq!(lab.far()["Imported"].len(), 3, "{op}");
        assert_eq!(lab.near()["Archive"].len(), 2, "{op}");
        lab.server.borrow_mut().clear_failures();
        let rerun = migrate(&lab, &maildir_source(&lab), &options(true, true)).unwrap();
        assert!(rerun.failed.is_empty(), "{op}: {:?}", rerun.failed);
        assert_eq!(lab.far()["Archive"].len(), 2, "{op}");
        assert!(rerun.mismatch().is_none(), "{op}");
    }
}
