//! The demo: starts a throwaway Dovecot on 127.0.0.1, fills a mailbox with sample mail, and
//! runs `mailferry fetch` against it twice (the second run has nothing to do), then once more
//! in delete mode. Run it with `scripts/demo`.

#[path = "../tests/support/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let server = dovecot::dovecot();
    let user = server.user("demo");
    let mail: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            format!(
                "From: friend{i}@example.org\nTo: demo@example.org\nSubject: demo message {i}\n\nHello number {i}.\n{}\n",
                "Some text. ".repeat(i % 50 + 1)
            )
            .into_bytes()
        })
        .collect();
    server.put(&user, "", &mail);

    let home = std::env::temp_dir().join(format!("mailferry-demo-{}", std::process::id()));
    let maildir = home.join("Mail");
    let config = home.join("config.toml");
    std::fs::create_dir_all(&home).expect("create demo home");
    std::fs::write(
        &config,
        format!(
            "[accounts.demo]\nprotocol = \"pop3\"\nhost = \"localhost\"\nport = {}\ntls = \"implicit\"\n\
             user = \"demo\"\npassword_command = \"echo {}\"\nmaildir = \"{}\"\n",
            server.pop3s,
            user.password,
            maildir.display()
        ),
    )
    .expect("write demo config");
    println!(
        "Dovecot on 127.0.0.1 (POP3S port {}), 200 messages for user demo",
        server.pop3s
    );
    println!(
        "config: {}\n{}",
        config.display(),
        std::fs::read_to_string(&config).unwrap_or_default()
    );

    let exe = std::env::current_exe().expect("own path");
    let bin: PathBuf = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("mailferry"))
        .expect("target directory");
    let run = |args: &[&str]| {
        println!("$ mailferry {}", args.join(" "));
        let status = Command::new(&bin)
            .args([
                "-c",
                &config.display().to_string(),
                "--state-dir",
                &home.join("state").display().to_string(),
            ])
            .args(args)
            .env("SSL_CERT_FILE", &server.ca)
            .status()
            .expect("run mailferry (build it first: cargo build --release)");
        println!("(exit code {})\n", status.code().unwrap_or(-1));
    };
    run(&["check", "demo"]);
    run(&["fetch"]);
    run(&["fetch"]);
    run(&["fetch", "--delete"]);
    run(&["status"]);
    let count = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(maildir.join(d)).ok())
        .map(|d| d.count())
        .sum::<usize>();
    println!(
        "{count} messages in {} (a Maildir: try `mutt -f {}`)",
        maildir.display(),
        maildir.display()
    );
}
