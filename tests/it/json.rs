//! `--json`: one object per job, succeeded or failed, in the shape doc/report.schema.json
//! documents.

use serde_json::Value;

use crate::support::schema::{objects, report_schema, violation};
use crate::support::{Env, channel, deliver_local, dovecot, imap_account, message, pop3_account};

#[test]
fn the_schema_knows_every_exit_code_and_holds_what_it_says() {
    let schema = report_schema();
    let codes: Vec<i64> = schema["$defs"]["exit"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .collect();
    let table: Vec<i64> = mailferry::exit::Exit::TABLE
        .iter()
        .map(|(e, _)| i64::from(e.code()))
        .collect();
    assert_eq!(codes, table);
    let good = serde_json::json!({
        "kind": "status", "name": "a", "exit": 64, "error": "no such account", "failed": []
    });
    assert_eq!(violation(&schema, &schema, &good, "$"), None);
    for bad in [
        serde_json::json!({"kind": "status", "name": "a", "exit": 64, "failed": []}),
        serde_json::json!({"kind": "status", "name": "a", "exit": 3, "error": "x", "failed": []}),
        serde_json::json!({"kind": "fetch", "name": "a", "exit": 0, "error": null, "failed": []}),
        serde_json::json!({
            "kind": "status", "name": "a", "exit": 64, "error": "x", "failed": [], "extra": 1
        }),
    ] {
        assert!(violation(&schema, &schema, &bad, "$").is_some(), "{bad}");
    }
}

#[test]
fn every_job_prints_one_object_whether_it_went_well_or_not() {
    let server = dovecot();
    let good = server.user("json-good");
    let mut bad = server.user("json-bad");
    bad.password = "not-it".into();
    server.put(&good, "", &[message("jsg", 0, 500), message("jsg", 1, 700)]);
    let mut env = Env::new();
    env.trust_test_ca();
    let sync_dir = env.path("Synced");
    // Dovecot refuses a folder name that begins with '~'.
    deliver_local(&sync_dir, &["~Old"], &[(message("jsold", 0, 600), "S")]);
    env.config(&format!(
        "{}{}{}{}",
        pop3_account("bad", &bad, "implicit", &env.path("MailB"), ""),
        pop3_account("good", &good, "implicit", &env.path("MailG"), ""),
        imap_account("imap", &good, "implicit", &sync_dir, ""),
        channel("ch", "imap", "create = \"both\"")
    ));

    let run = env.run(&["--json", "fetch", "bad", "good"]);
    run.expect(77);
    let lines = objects(&run.stdout);
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(
        (&lines[0]["kind"], &lines[0]["name"], &lines[0]["exit"]),
        (&"fetch".into(), &"bad".into(), &77.into())
    );
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("login as json-bad"),
        "{}",
        lines[0]
    );
    assert_eq!(
        (&lines[1]["name"], &lines[1]["exit"]),
        (&"good".into(), &0.into())
    );
    assert_eq!(
        (&lines[1]["fetched"], &lines[1]["error"]),
        (&2.into(), &Value::Null)
    );

    let run = env.run(&["--json", "fetch", "good", "--dry-run"]);
    run.expect(0);
    assert_eq!(objects(&run.stdout)[0]["dry_run"], true);

    let run = env.run(&["--json", "sync"]);
    run.expect(2);
    let lines = objects(&run.stdout);
    assert_eq!(lines[0]["failed"][0]["folder"], "~Old", "{}", lines[0]);
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("Begins with '~'")
    );
    assert_eq!(lines[0]["downloaded"], 2);

    let run = env.run(&["--json", "status", "nosuch"]);
    run.expect(64);
    let lines = objects(&run.stdout);
    assert_eq!(
        (&lines[0]["kind"], &lines[0]["exit"]),
        (&"status".into(), &64.into())
    );

    let run = env.run(&[
        "--json", "migrate", "--from", "good", "--to", "imap", "--verify",
    ]);
    run.expect(0);
    let lines = objects(&run.stdout);
    assert_eq!(lines[0]["kind"], "migrate");
    assert_eq!(lines[0]["verified"]["missing"], 0, "{}", lines[0]);
}
