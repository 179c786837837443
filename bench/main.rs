//! Benchmarks mailferry side by side with its peers on one local Dovecot, in one run.
//!
//! `scripts/bench [MESSAGES] [RUNS] [pop3|imap|all]` (defaults 2000, 3, all). It starts a throwaway Dovecot on
//! 127.0.0.1, fills a mailbox with a deterministic corpus, and times each tool (wall, CPU,
//! peak RSS via /usr/bin/time) over implicit TLS, checking each result before it counts.
//! Prints a Markdown table of medians, with ratios to mailferry.

#[path = "../tests/support/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

/// A deterministic pseudo-random sequence (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The corpus: mostly 2-20 KB text, 5% 100 KB - 2 MB with a base64 "attachment".
fn corpus(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Lcg(42);
    (0..n)
        .map(|i| {
            let size = if rng.next().is_multiple_of(20) {
                100_000 + (rng.next() % 1_900_000) as usize
            } else {
                2_000 + (rng.next() % 18_000) as usize
            };
            let mut m = format!(
                "From: sender{i}@example.org\nTo: bench@example.org\nSubject: bench message {i}\n\
                 Message-ID: <bench.{i}@example.org>\nDate: Mon, 02 Nov 2026 10:00:00 +0000\n\n"
            )
            .into_bytes();
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            while m.len() < size {
                let line: Vec<u8> = (0..76)
                    .map(|_| alphabet[(rng.next() % 64) as usize])
                    .collect();
                m.extend_from_slice(&line);
                m.push(b'\n');
            }
            m
        })
        .collect()
}

/// The Message-IDs found in a Maildir tree (every new/ and cur/ below it, so that each
/// tool's folder layout counts), and the number of message files.
fn message_ids(root: &Path) -> (BTreeSet<String>, usize) {
    let mut ids = BTreeSet::new();
    let mut files = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let is_messages = matches!(
            dir.file_name().and_then(|n| n.to_str()),
            Some("new" | "cur")
        );
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if is_messages {
                files += 1;
                if let Ok(text) = fs::read(&path) {
                    let text = String::from_utf8_lossy(&text[..text.len().min(4096)]).into_owned();
                    if let Some(line) = text.lines().find(|l| l.starts_with("Message-ID:")) {
                        ids.insert(line.to_string());
                    }
                }
            }
        }
    }
    (ids, files)
}

fn timed(cmd: &mut Command, scratch: &Path, ok: &[i32]) -> Result<Sample, String> {
    let out_file = scratch.join("time.out");
    let mut timer = Command::new("/usr/bin/time");
    timer.arg("-f").arg("%e %U %S %M").arg("-o").arg(&out_file);
    timer.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timer.env(k, v),
            None => timer.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timer.current_dir(dir);
    }
    let out = timer
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if !out.status.code().is_some_and(|c| ok.contains(&c)) {
        return Err(format!(
            "{:?} failed: {}{}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = fs::read_to_string(&out_file).map_err(|e| e.to_string())?;
    let f: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    if f.len() != 4 {
        return Err(format!("cannot read /usr/bin/time output: {text}"));
    }
    Ok(Sample {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_kib: f[3] as u64,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn private_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A POP3 client under test: how to make its config in a fresh directory and the command
/// that fetches (keep mode) into `dir/Mail`.
struct Tool {
    name: &'static str,
    setup: fn(&Ctx, &Path) -> Command,
    /// Exit codes that mean success (fetchmail says 1 for "no mail").
    ok: &'static [i32],
}

struct Ctx {
    port: u16,
    imap_port: u16,
    user: String,
    password: String,
    ca: PathBuf,
    mailferry: PathBuf,
}

fn maildir_in(dir: &Path) -> PathBuf {
    let m = dir.join("Mail");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(m.join(sub)).unwrap();
    }
    m
}

fn mailferry(ctx: &Ctx, dir: &Path) -> Command {
    let config = dir.join("mailferry.toml");
    private_file(
        &config,
        &format!(
            "[accounts.bench]\nprotocol = \"pop3\"\nhost = \"localhost\"\nport = {}\ntls = \"implicit\"\nuser = \"{}\"\n\
             password = \"{}\"\nmaildir = \"{}\"\n",
            ctx.port,
            ctx.user,
            ctx.password,
            maildir_in(dir).display()
        ),
    );
    let mut cmd = Command::new(&ctx.mailferry);
    cmd.arg("-q")
        .arg("-c")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("fetch")
        .env("SSL_CERT_FILE", &ctx.ca);
    cmd
}

fn mpop(ctx: &Ctx, dir: &Path) -> Command {
    let config = dir.join("mpoprc");
    private_file(
        &config,
        &format!(
            "account bench\nhost localhost\nport {}\ntls on\ntls_starttls off\ntls_trust_file {}\nuser {}\n\
             password {}\nkeep on\ndelivery maildir {}\nuidls_file {}\n",
            ctx.port,
            ctx.ca.display(),
            ctx.user,
            ctx.password,
            maildir_in(dir).display(),
            dir.join("uidls").display()
        ),
    );
    let mut cmd = Command::new("mpop");
    cmd.arg("-C").arg(&config).arg("-q").arg("bench");
    cmd
}

fn fetchmail(ctx: &Ctx, dir: &Path) -> Command {
    let rc = dir.join("fetchmailrc");
    let maildir = maildir_in(dir);
    // fetchmail has no Maildir delivery of its own: its users hand mail to an MDA, here procmail
    // (a trailing slash in DEFAULT means Maildir).
    private_file(
        &rc,
        &format!(
            "set no syslog\npoll localhost service {} protocol pop3 uidl\n  user \"{}\" password \"{}\" ssl sslcertck sslcertfile \"{}\"\n  keep\n  mda \"/usr/bin/procmail -p -m DEFAULT={}/ /dev/null\"\n",
            ctx.port,
            ctx.user,
            ctx.password,
            ctx.ca.display(),
            maildir.display()
        ),
    );
    let mut cmd = Command::new("fetchmail");
    cmd.arg("-f")
        .arg(&rc)
        .arg("--idfile")
        .arg(dir.join("fetchids"))
        .arg("--pidfile")
        .arg(dir.join("fetchmail.pid"))
        .arg("-s")
        .env("FETCHMAILHOME", dir)
        .env("HOME", dir);
    cmd
}

fn getmail(ctx: &Ctx, dir: &Path) -> Command {
    let rc = dir.join("getmailrc");
    let maildir = maildir_in(dir);
    // getmail refuses to deliver as root; its `user` option makes it deliver as another user.
    let root =
        fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let as_user = if root {
        for sub in ["", "tmp", "new", "cur"] {
            let _ = std::os::unix::fs::chown(maildir.join(sub), Some(65534), Some(65534));
        }
        "user = nobody\n"
    } else {
        ""
    };
    private_file(
        &rc,
        &format!(
            "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = localhost\nport = {}\nusername = {}\npassword = {}\nca_certs = {}\n\n\
             [destination]\ntype = Maildir\npath = {}/\n{as_user}\n[options]\nread_all = false\ndelete = false\nverbose = 0\nmessage_log_syslog = false\n",
            ctx.port,
            ctx.user,
            ctx.password,
            ctx.ca.display(),
            maildir.display()
        ),
    );
    let mut cmd = Command::new("getmail");
    cmd.arg("--getmaildir")
        .arg(dir)
        .arg("--rcfile")
        .arg(&rc)
        .arg("-q");
    cmd
}

fn mailferry_imap(ctx: &Ctx, dir: &Path, sync: bool) -> Command {
    let config = dir.join("mailferry.toml");
    let channel = if sync {
        "[channels.bench]\naccount = \"bench\"\n"
    } else {
        ""
    };
    private_file(
        &config,
        &format!(
            "[accounts.bench]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {}\ntls = \"implicit\"\nuser = \"{}\"\n\
             password = \"{}\"\nmaildir = \"{}\"\n{channel}",
            ctx.imap_port,
            ctx.user,
            ctx.password,
            maildir_in(dir).display()
        ),
    );
    let mut cmd = Command::new(&ctx.mailferry);
    cmd.arg("-q")
        .arg("-c")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg(if sync { "sync" } else { "fetch" })
        .env("SSL_CERT_FILE", &ctx.ca);
    cmd
}

fn mailferry_imap_fetch(ctx: &Ctx, dir: &Path) -> Command {
    mailferry_imap(ctx, dir, false)
}

fn mailferry_imap_sync(ctx: &Ctx, dir: &Path) -> Command {
    mailferry_imap(ctx, dir, true)
}

fn mbsync(ctx: &Ctx, dir: &Path) -> Command {
    let rc = dir.join("mbsyncrc");
    let maildir = maildir_in(dir);
    private_file(
        &rc,
        &format!(
            "IMAPAccount bench\nHost localhost\nPort {}\nUser {}\nPass {}\nSSLType IMAPS\nCertificateFile {}\n\n\
             IMAPStore remote\nAccount bench\n\n\
             MaildirStore local\nPath {}/\nInbox {}/INBOX\nSubFolders Verbatim\n\n\
             Channel bench\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\n",
            ctx.imap_port,
            ctx.user,
            ctx.password,
            ctx.ca.display(),
            maildir.display(),
            maildir.display()
        ),
    );
    let mut cmd = Command::new("mbsync");
    cmd.arg("-c").arg(&rc).arg("-q").arg("bench");
    cmd
}

fn offlineimap(ctx: &Ctx, dir: &Path) -> Command {
    let rc = dir.join("offlineimaprc");
    let maildir = maildir_in(dir);
    private_file(
        &rc,
        &format!(
            "[general]\naccounts = bench\nmetadata = {}/meta\n\n[Account bench]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {}\nremoteuser = {}\nremotepass = {}\n\
             ssl = yes\nsslcacertfile = {}\nreadonly = True\n",
            dir.display(),
            maildir.display(),
            ctx.imap_port,
            ctx.user,
            ctx.password,
            ctx.ca.display()
        ),
    );
    let mut cmd = Command::new("offlineimap");
    cmd.arg("-c").arg(&rc).arg("-u").arg("quiet").arg("-o");
    cmd
}

/// The IMAP tools, each pulling every folder into a Maildir.
const IMAP_TOOLS: &[Tool] = &[
    Tool {
        name: "mailferry fetch",
        setup: mailferry_imap_fetch,
        ok: &[0],
    },
    Tool {
        name: "mailferry sync",
        setup: mailferry_imap_sync,
        ok: &[0],
    },
    Tool {
        name: "mbsync",
        setup: mbsync,
        ok: &[0],
    },
    Tool {
        name: "offlineimap3",
        setup: offlineimap,
        ok: &[0],
    },
];

/// The POP3 tools, each fetching INBOX into a Maildir in keep mode.
const POP3_TOOLS: &[Tool] = &[
    Tool {
        name: "mailferry",
        setup: mailferry,
        ok: &[0],
    },
    Tool {
        name: "mpop",
        setup: mpop,
        ok: &[0],
    },
    Tool {
        name: "fetchmail",
        setup: fetchmail,
        ok: &[0, 1],
    },
    Tool {
        name: "getmail6",
        setup: getmail,
        ok: &[0],
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
    let only = args.get(3).map(String::as_str).unwrap_or("all");
    let (pop3, imap) = (only != "imap", only != "pop3");
    let server = dovecot::dovecot();
    let exe = std::env::current_exe().expect("own path");
    let mailferry = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("mailferry");
    let scratch = std::env::temp_dir().join(format!("mailferry-bench-{}", std::process::id()));

    let mail = corpus(n);
    let mib = mail.iter().map(Vec::len).sum::<usize>() as f64 / 1048576.0;
    if pop3 {
        scenario(
            server,
            "bench",
            &mail,
            &[""],
            POP3_TOOLS,
            &format!(
                "POP3 over implicit TLS, Dovecot on 127.0.0.1: {n} messages ({mib:.1} MiB) in INBOX, keep mode; medians of {runs} runs"
            ),
            runs,
            &mailferry,
            &scratch,
        );
    }
    if imap {
        scenario(
            server,
            "bench-imap",
            &mail,
            &["", "Work.Projects", "Archive.Été", "Lists"],
            IMAP_TOOLS,
            &format!(
                "IMAP over implicit TLS, Dovecot on 127.0.0.1: {n} messages ({mib:.1} MiB) in 4 folders (nested, non-ASCII), first pull; medians of {runs} runs"
            ),
            runs,
            &mailferry,
            &scratch,
        );
    }
    // One 25 MB message: memory must not grow with message size.
    let mut big = corpus(1);
    big[0].extend(
        std::iter::repeat_n(
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n",
            340_000,
        )
        .flatten(),
    );
    if pop3 {
        scenario(
            server,
            "bench-big-pop3",
            &big,
            &[""],
            POP3_TOOLS,
            "POP3: one 25 MB message; medians of 3 runs",
            3,
            &mailferry,
            &scratch,
        );
    }
    if imap {
        scenario(
            server,
            "bench-big-imap",
            &big,
            &[""],
            IMAP_TOOLS,
            "IMAP: one 25 MB message; medians of 3 runs",
            3,
            &mailferry,
            &scratch,
        );
    }
    let _ = fs::remove_dir_all(&scratch);
}

/// Fills a mailbox of its own with `mail` and times every tool fetching it.
#[allow(clippy::too_many_arguments)]
fn scenario(
    server: &dovecot::Dovecot,
    name: &str,
    mail: &[Vec<u8>],
    folders: &[&str],
    tools: &[Tool],
    title: &str,
    runs: usize,
    mailferry: &Path,
    scratch: &Path,
) {
    let n = mail.len();
    let user = server.user(name);
    // Messages are dealt round-robin into the folders.
    for (f, folder) in folders.iter().enumerate() {
        let share: Vec<Vec<u8>> = mail
            .iter()
            .skip(f)
            .step_by(folders.len())
            .cloned()
            .collect();
        server.put(&user, folder, &share);
        // Let Dovecot index the mailbox before any tool is timed.
        let mailbox = if folder.is_empty() { "INBOX" } else { folder };
        server.doveadm(&[
            "-f",
            "flow",
            "fetch",
            "-u",
            &user.name,
            "size.virtual",
            "mailbox",
            mailbox,
            "all",
        ]);
    }
    let expected: BTreeSet<String> = (0..n)
        .map(|i| format!("Message-ID: <bench.{i}@example.org>"))
        .collect();
    let ctx = Ctx {
        port: server.pop3s,
        imap_port: server.imaps,
        user: user.name.clone(),
        password: user.password.clone(),
        ca: server.ca.clone(),
        mailferry: mailferry.to_path_buf(),
    };
    println!("\n{title}\n");
    println!(
        "| tool | first fetch wall s | CPU s | peak RSS MiB | no-op rerun wall s | wall vs mailferry | RSS vs mailferry |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut base: Option<(f64, f64)> = None;
    for tool in tools {
        let mut first = Vec::new();
        let mut noop = Vec::new();
        let mut failure = None;
        for run in 0..=runs {
            let dir = scratch.join(format!("{}-{run}", tool.name));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let result =
                timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok).and_then(|first_sample| {
                    let (ids, files) = message_ids(&dir.join("Mail"));
                    if ids != expected || files != n {
                        return Err(format!(
                            "wrong result: {files} files, {} of {n} messages",
                            ids.len()
                        ));
                    }
                    let again = timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok)?;
                    if message_ids(&dir.join("Mail")).1 != n {
                        return Err("the no-op rerun fetched again".to_string());
                    }
                    Ok((first_sample, again))
                });
            let _ = fs::remove_dir_all(&dir);
            match result {
                // Run 0 warms caches and is not counted.
                Ok(_) if run == 0 => {}
                Ok((a, b)) => {
                    first.push(a);
                    noop.push(b);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            println!(
                "| {} | failed: {} | | | | | |",
                tool.name,
                e.replace('\n', " ").chars().take(200).collect::<String>()
            );
            continue;
        }
        let wall = median(first.iter().map(|s| s.wall).collect());
        let cpu = median(first.iter().map(|s| s.cpu).collect());
        let rss = median(first.iter().map(|s| s.rss_kib as f64).collect()) / 1024.0;
        let noop_wall = median(noop.iter().map(|s| s.wall).collect());
        let (bw, br) = *base.get_or_insert((wall, rss));
        println!(
            "| {} | {wall:.2} | {cpu:.2} | {rss:.1} | {noop_wall:.3} | {:.2} | {:.2} |",
            tool.name,
            wall / bw,
            rss / br
        );
    }
}
