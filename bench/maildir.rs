//! How the Maildir store behaves at 100,000 messages in one folder: group-committed delivery,
//! listing, and flag changes. `cargo run --release --example bench-maildir [N]`.

use std::time::Instant;

use mailferry::config::Layout;
use mailferry::maildir::Maildir;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = Maildir::new(dir.path().join("Mail"), Layout::MaildirPlusPlus)
        .open_folder(&[])
        .expect("open folder");
    let body = b"From: a@example.org\r\nSubject: x\r\n\r\n".repeat(30);

    let t = Instant::now();
    for _ in 0..n / 1000 {
        let mut batch = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let mut tmp = folder.create_tmp().expect("create");
            tmp.write_crlf(&body).expect("write");
            batch.push((tmp.finish(None).expect("finish"), String::new()));
        }
        folder.commit(batch).expect("commit");
    }
    let deliver = t.elapsed();

    let t = Instant::now();
    let entries = folder.list().expect("list");
    let list = t.elapsed();
    assert_eq!(entries.len(), n / 1000 * 1000);

    let t = Instant::now();
    for e in entries.iter().step_by(entries.len() / 1000) {
        folder.set_flags(e, "S").expect("set flags");
    }
    folder.sync().expect("sync");
    let flags = t.elapsed();

    println!("{} messages in one folder:", entries.len());
    println!(
        "  deliver (fsync each file, one directory sync per 1000): {:.2} s ({:.0} msg/s)",
        deliver.as_secs_f64(),
        entries.len() as f64 / deliver.as_secs_f64()
    );
    println!("  list new/ + cur/: {:.1} ms", list.as_secs_f64() * 1000.0);
    println!(
        "  1000 flag changes (one rename each, one sync): {:.1} ms",
        flags.as_secs_f64() * 1000.0
    );
}
