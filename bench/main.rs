//! Benchmarks mailferry side by side with its peers on one local Dovecot, in one run.
//!
//! `scripts/bench [MESSAGES] [RUNS] [SCENARIOS]` (defaults 2000, 3, all; scenarios are a
//! comma-separated list of keep, delete, imap, big, or pop3, imap, all). It starts a throwaway Dovecot on
//! 127.0.0.1, fills a mailbox with a deterministic corpus, and times each tool (wall, CPU,
//! peak RSS via /usr/bin/time) over implicit TLS, checking each result before it counts.
//! Besides the first pull: a no-op rerun, a rerun after 100 new messages, and (IMAP) a rerun
//! after flags changed on 100 messages; `cp -a` + `sync` of the server's Maildir is the
//! physical reference; then POP3 delete mode. Prints Markdown tables of medians, with ratios
//! to the best peer. `scripts/bench curve [SIZES] [RUNS]` times the no-op rerun as one folder
//! grows (2,000 to 50,000 messages by default). Every run's Maildir is kept until the end (see
//! `retire`): about 6 GB of /tmp at 2,000 messages, 30 GB at 10,000.
//!
//! `--delay-ms D` (anywhere on the line) puts every tool behind the same proxy, which delays
//! each direction by D ms (a link's latency, no bandwidth limit): a provider's server, not
//! loopback. Every no-op rerun is measured at least 2 s after the run before it, as a cron
//! run comes minutes later (mbsync waits for the clock's next second after writing).

#[path = "../tests/support/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The one-way delay every tool's connections get (`--delay-ms`), if any.
static DELAY: OnceLock<Option<Duration>> = OnceLock::new();

/// The port a tool connects to for the server's `upstream`: that port itself on loopback, or
/// a proxy in front of it that delays each direction by `DELAY` (one proxy per port).
fn reach(upstream: u16) -> u16 {
    static PROXIES: std::sync::Mutex<Vec<(u16, u16)>> = std::sync::Mutex::new(Vec::new());
    let Some(delay) = DELAY.get().copied().flatten() else {
        return upstream;
    };
    let mut proxies = PROXIES.lock().unwrap();
    if let Some(&(_, port)) = proxies.iter().find(|(u, _)| *u == upstream) {
        return port;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the delay proxy");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            for s in [&client, &server] {
                let _ = s.set_nodelay(true);
            }
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            delayed(client, s2, delay);
            delayed(server, c2, delay);
        }
    });
    proxies.push((upstream, port));
    port
}

/// Passes what `from` sends on to `to`, each piece `delay` after it arrived; reading goes on
/// meanwhile, so the delay costs latency, not bandwidth.
fn delayed(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
    use std::io::Read;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, piece) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&piece).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

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

/// Writes back every dirty page (untimed) so that a run's own fsyncs do not wait on what the
/// run before it left behind (ext4 commits all of it with the first fsync).
fn settle() {
    let _ = Command::new("sync").status();
}

fn timed(cmd: &mut Command, scratch: &Path, ok: &[i32]) -> Result<Sample, String> {
    settle();
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
    // Wall time from here, to the millisecond (/usr/bin/time rounds to 10 ms, too coarse for
    // no-op reruns); CPU and peak RSS from /usr/bin/time.
    let start = std::time::Instant::now();
    let out = timer
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let wall = start.elapsed().as_secs_f64();
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
        wall,
        cpu: f[1] + f[2],
        rss_kib: f[3] as u64,
    })
}

/// Moves a finished run's directory aside, to be removed only when the bench ends: ext4 does
/// not reuse an inode for a minute or more after its file was deleted and scans past such
/// inodes when creating files (`recently_deleted` in the kernel), so deleting thousands of
/// messages between runs made each next tool's file creation slower than the one before
/// (up to 70% of a run's CPU samples, perf).
fn retire(dir: &Path, scratch: &Path) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let retired = scratch.join("retired");
    let _ = fs::create_dir_all(&retired);
    if fs::rename(dir, retired.join(n.to_string())).is_err() {
        let _ = fs::remove_dir_all(dir);
    }
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
    /// What the tool is: mailferry, a peer, or the physical reference (first pull only).
    kind: Kind,
    /// Whether it carries flag changes on the server into the Maildir.
    follows_flags: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mailferry,
    Peer,
    Reference,
}

/// `cp -a` of the server's Maildir and `sync`: what the disk allows.
const CP_REFERENCE: Tool = Tool {
    name: "cp -a + sync (reference)",
    setup: cp_reference,
    ok: &[0],
    kind: Kind::Reference,
    follows_flags: false,
};

fn cp_reference(ctx: &Ctx, dir: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "cp -a '{}' '{}' && sync",
        ctx.server_maildir.display(),
        dir.join("Mail").display()
    ));
    cmd
}

struct Ctx {
    port: u16,
    imap_port: u16,
    user: String,
    password: String,
    ca: PathBuf,
    mailferry: PathBuf,
    server_maildir: PathBuf,
    /// POP3 delete mode: each tool removes what it fetched from the server.
    delete: bool,
}

impl Ctx {
    /// The tools' view of `user` on `server`.
    fn new(server: &dovecot::Dovecot, user: &dovecot::User, mailferry: &Path, delete: bool) -> Ctx {
        Ctx {
            port: reach(server.pop3s),
            imap_port: reach(server.imaps),
            user: user.name.clone(),
            password: user.password.clone(),
            ca: server.ca.clone(),
            mailferry: mailferry.to_path_buf(),
            server_maildir: user.maildir(),
            delete,
        }
    }
}

fn maildir_in(dir: &Path) -> PathBuf {
    let m = dir.join("Mail");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(m.join(sub)).unwrap();
    }
    m
}

/// mailferry with a config of one account `bench` (and `extra` sections), running `command`.
fn mailferry_with(
    ctx: &Ctx,
    dir: &Path,
    protocol: &str,
    port: u16,
    extra: &str,
    command: &str,
) -> Command {
    let config = dir.join("mailferry.toml");
    private_file(
        &config,
        &format!(
            "[accounts.bench]\nprotocol = \"{protocol}\"\nhost = \"localhost\"\nport = {port}\ntls = \"implicit\"\n\
             user = \"{}\"\npassword = \"{}\"\nmaildir = \"{}\"\n{extra}",
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
        .arg(command)
        // The test CA alone, as the peers' trust files give them (a shell's SSL_CERT_DIR would
        // have rustls-native-certs parse every system root at each start as well).
        .env("SSL_CERT_FILE", &ctx.ca)
        .env_remove("SSL_CERT_DIR");
    cmd
}

fn mailferry(ctx: &Ctx, dir: &Path) -> Command {
    let mode = if ctx.delete {
        "mode = \"delete\"\n"
    } else {
        ""
    };
    mailferry_with(ctx, dir, "pop3", ctx.port, mode, "fetch")
}

fn mpop(ctx: &Ctx, dir: &Path) -> Command {
    let config = dir.join("mpoprc");
    private_file(
        &config,
        &format!(
            "account bench\nhost localhost\nport {}\ntls on\ntls_starttls off\ntls_trust_file {}\nuser {}\n\
             password {}\nkeep {}\ndelivery maildir {}\nuidls_file {}\n",
            ctx.port,
            ctx.ca.display(),
            ctx.user,
            ctx.password,
            if ctx.delete { "off" } else { "on" },
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
            "set no syslog\npoll localhost service {} protocol pop3 uidl\n  user \"{}\" password \"{}\" ssl sslcertck sslcertfile \"{}\"\n  {}\n  mda \"/usr/bin/procmail -p -m DEFAULT={}/ /dev/null\"\n",
            ctx.port,
            ctx.user,
            ctx.password,
            ctx.ca.display(),
            if ctx.delete { "nokeep" } else { "keep" },
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
             [destination]\ntype = Maildir\npath = {}/\n{as_user}\n[options]\nread_all = false\ndelete = {}\nverbose = 0\nmessage_log_syslog = false\n",
            ctx.port,
            ctx.user,
            ctx.password,
            ctx.ca.display(),
            maildir.display(),
            if ctx.delete { "true" } else { "false" }
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

fn mailferry_imap_fetch(ctx: &Ctx, dir: &Path) -> Command {
    mailferry_with(ctx, dir, "imap", ctx.imap_port, "", "fetch")
}

fn mailferry_imap_sync(ctx: &Ctx, dir: &Path) -> Command {
    let channel = "[channels.bench]\naccount = \"bench\"\n";
    mailferry_with(ctx, dir, "imap", ctx.imap_port, channel, "sync")
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
        kind: Kind::Mailferry,
        follows_flags: false,
    },
    Tool {
        name: "mailferry sync",
        setup: mailferry_imap_sync,
        ok: &[0],
        kind: Kind::Mailferry,
        follows_flags: true,
    },
    Tool {
        name: "mbsync",
        setup: mbsync,
        ok: &[0],
        kind: Kind::Peer,
        follows_flags: true,
    },
    Tool {
        name: "offlineimap3",
        setup: offlineimap,
        ok: &[0],
        kind: Kind::Peer,
        follows_flags: true,
    },
];

/// The POP3 tools, each fetching INBOX into a Maildir in keep mode.
const POP3_TOOLS: &[Tool] = &[
    Tool {
        name: "mailferry",
        setup: mailferry,
        ok: &[0],
        kind: Kind::Mailferry,
        follows_flags: false,
    },
    Tool {
        name: "mpop",
        setup: mpop,
        ok: &[0],
        kind: Kind::Peer,
        follows_flags: false,
    },
    Tool {
        name: "fetchmail",
        setup: fetchmail,
        ok: &[0, 1],
        kind: Kind::Peer,
        follows_flags: false,
    },
    Tool {
        name: "getmail6",
        setup: getmail,
        ok: &[0],
        kind: Kind::Peer,
        follows_flags: false,
    },
];

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let delay = args.iter().position(|a| a == "--delay-ms").map(|i| {
        let ms: u64 = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--delay-ms takes a number of milliseconds");
        args.drain(i..i + 2);
        Duration::from_millis(ms)
    });
    DELAY.set(delay).expect("set once");
    match args.get(1).map(String::as_str) {
        Some("curve") => return curve(&args[2..]),
        Some("serve") => return serve(&args[2..]),
        _ => {}
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
    // Which scenarios: a comma-separated list of keep, delete, imap, big (the 25 MB message);
    // pop3 and imap name each protocol's share, all (the default) everything.
    let only = args.get(3).map(String::as_str).unwrap_or("all");
    let wants = |scenario: &str, protocol: &str| {
        only.split(',')
            .any(|w| w == "all" || w == protocol || w == scenario)
    };
    let (keep, delete, imap) = (
        wants("keep", "pop3"),
        wants("delete", "pop3"),
        wants("imap", "imap"),
    );
    let (big_pop3, big_imap) = (wants("big", "pop3"), wants("big", "imap"));
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
    if keep {
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
            Pass::Reruns,
        );
    }
    if delete {
        scenario(
            server,
            "bench-delete",
            &mail,
            &[""],
            POP3_TOOLS,
            &format!(
                "POP3 delete mode: {n} messages ({mib:.1} MiB), each fetched and deleted on the server (checked empty after); medians of {runs} runs"
            ),
            runs,
            &mailferry,
            &scratch,
            Pass::Delete,
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
            Pass::Reruns,
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
    if big_pop3 {
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
            Pass::First,
        );
    }
    if big_imap {
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
            Pass::First,
        );
    }
    let _ = fs::remove_dir_all(&scratch);
}

/// `n` small messages (2-4 KB), for mailbox sizes where only the count matters.
fn small_corpus(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "From: sender{i}@example.org\nSubject: curve {i}\nMessage-ID: <bench.{i}@example.org>\n\n{}",
                "a line of a small message body\n".repeat(60 + i % 60)
            )
            .into_bytes()
        })
        .collect()
}

/// `curve [SIZES] [RUNS]`: the no-op rerun as one folder grows (default 2000,10000,50000
/// small messages), for mailferry and the fastest peer of each protocol.
fn curve(args: &[String]) {
    let sizes: Vec<usize> = args
        .first()
        .map_or("2000,10000,50000", String::as_str)
        .split(',')
        .filter_map(|w| w.parse().ok())
        .collect();
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5).max(1);
    let server = dovecot::dovecot();
    let mailferry = std::env::current_exe()
        .expect("own path")
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("mailferry");
    let scratch = std::env::temp_dir().join(format!("mailferry-curve-{}", std::process::id()));
    let tools: Vec<&Tool> = IMAP_TOOLS[..3].iter().chain(&POP3_TOOLS[..2]).collect();
    println!(
        "\nNo-op rerun as INBOX grows (small messages, one folder); first pull once, no-op median of {runs}\n"
    );
    println!("| messages | tool | first pull s | no-op s | no-op CPU s | no-op RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for &n in &sizes {
        let mail = small_corpus(n);
        let user = server.user(&format!("curve-{n}"));
        fill(server, &user, &mail, &[""]);
        let ctx = Ctx::new(server, &user, &mailferry, false);
        for tool in &tools {
            let dir = scratch.join(tool.name.replace(' ', "_"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let result = timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok).and_then(|first| {
                if message_ids(&dir.join("Mail")).1 != n {
                    return Err("wrong first pull".to_string());
                }
                let noops = (0..runs)
                    .map(|_| timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok))
                    .collect::<Result<Vec<Sample>, String>>()?;
                Ok((first, noops))
            });
            retire(&dir, &scratch);
            match result {
                Ok((first, noops)) => println!(
                    "| {n} | {} | {:.2} | {:.3} | {:.3} | {:.1} |",
                    tool.name,
                    first.wall,
                    median(noops.iter().map(|s| s.wall).collect()),
                    median(noops.iter().map(|s| s.cpu).collect()),
                    median(noops.iter().map(|s| s.rss_kib as f64).collect()) / 1024.0
                ),
                Err(e) => println!("<!-- {n} {} failed: {e} -->", tool.name),
            }
        }
        // The server keeps each size's mailbox otherwise; the next is built afresh.
        server.doveadm(&["expunge", "-u", &user.name, "mailbox", "INBOX", "all"]);
    }
    let _ = fs::remove_dir_all(&scratch);
}

/// `serve [MESSAGES] [small]`: the benchmark's server and corpus in 4 folders (or the curve's
/// small messages, all in INBOX), and a mailferry config for them, kept until standard input closes: for profiling
/// one tool by hand (perf, valgrind) against what the benchmark measures.
fn serve(args: &[String]) {
    use std::io::Read;
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let server = dovecot::dovecot();
    let user = server.user("bench-serve");
    if args.get(1).map(String::as_str) == Some("small") {
        fill(server, &user, &small_corpus(n), &[""]);
    } else {
        let folders = ["", "Work.Projects", "Archive.Été", "Lists"];
        fill(server, &user, &corpus(n), &folders);
    }
    let dir = std::env::temp_dir().join(format!("mailferry-serve-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mailferry.toml");
    let account = |name: &str, protocol: &str, port: u16| {
        format!(
            "[accounts.{name}]\nprotocol = \"{protocol}\"\nhost = \"localhost\"\nport = {port}\ntls = \"implicit\"\n\
             user = \"{}\"\npassword = \"{}\"\nmaildir = \"{}\"\n",
            user.name,
            user.password,
            dir.join(name).display()
        )
    };
    private_file(
        &config,
        &format!(
            "state_dir = \"{}\"\n{}{}[channels.imap]\naccount = \"imap\"\n",
            dir.join("state").display(),
            account("imap", "imap", server.imaps),
            account("pop3", "pop3", server.pop3s)
        ),
    );
    println!(
        "{n} messages; SSL_CERT_FILE={} mailferry -c {} fetch imap|pop3 (or sync imap); \
         remove {}/state and the Maildirs to start again; close stdin to stop",
        server.ca.display(),
        config.display(),
        dir.display()
    );
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let _ = fs::remove_dir_all(&dir);
}

/// The medians of one tool's runs.
struct Row {
    name: &'static str,
    kind: Kind,
    first: Sample,
    noop: Option<f64>,
    plus100: Option<f64>,
    flags: Option<(f64, bool)>,
}

/// The reruns after a first pull: nothing new, flags changed on up to 100 messages (IMAP; and
/// whether the tool carried them), 100 new messages.
#[derive(Clone, Copy)]
struct Reruns {
    noop: Sample,
    flags: Option<(Sample, bool)>,
    plus100: Sample,
}

/// 100 messages that arrive between two runs.
fn new_mail(run: usize) -> Vec<Vec<u8>> {
    (0..100)
        .map(|i| {
            format!(
                "From: late@example.org\nSubject: late {i}\nMessage-ID: <bench-new.{run}.{i}@example.org>\n\n\
                 {}\n",
                "late mail body line\n".repeat(200)
            )
            .into_bytes()
        })
        .collect()
}

/// Message files in a Maildir tree whose flags include `letter`.
fn flagged_files(root: &Path, letter: char) -> usize {
    let mut count = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
                && name
                    .rsplit_once(":2,")
                    .is_some_and(|(_, f)| f.contains(letter))
            {
                count += 1;
            }
        }
    }
    count
}

/// What a scenario times besides the first pull.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    /// The first pull alone.
    First,
    /// Then the reruns: no-op, (IMAP) flags changed, 100 new messages.
    Reruns,
    /// POP3 delete mode: the mailbox is filled again before each run and must be empty after.
    Delete,
}

/// Puts `mail` into `folders` of `user`, dealt round-robin.
fn fill(server: &dovecot::Dovecot, user: &dovecot::User, mail: &[Vec<u8>], folders: &[&str]) {
    for (f, folder) in folders.iter().enumerate() {
        let mailbox = if folder.is_empty() { "INBOX" } else { folder };
        let share: Vec<Vec<u8>> = mail
            .iter()
            .skip(f)
            .step_by(folders.len())
            .cloned()
            .collect();
        server.put(user, folder, &share);
        // Let Dovecot index the mailbox before any tool is timed.
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
    pass: Pass,
) {
    let n = mail.len();
    let user = server.user(name);
    if pass != Pass::Delete {
        fill(server, &user, mail, folders);
    }
    let expected: BTreeSet<String> = (0..n)
        .map(|i| format!("Message-ID: <bench.{i}@example.org>"))
        .collect();
    let ctx = Ctx::new(server, &user, mailferry, pass == Pass::Delete);
    let imap = tools.iter().any(|t| t.follows_flags);
    // Flags change on the first 100 messages of INBOX (fewer if it holds fewer).
    let flagged = n.div_ceil(folders.len()).min(100);
    let first_ones = format!("1:{flagged}");
    let mut rows = Vec::new();
    for tool in tools.iter().chain([&CP_REFERENCE]) {
        let mut samples: Vec<(Sample, Option<Reruns>)> = Vec::new();
        let mut failure = None;
        for run in 0..=runs {
            let dir = scratch.join(format!("{}-{run}", tool.name.replace(' ', "_")));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            if pass == Pass::Delete {
                // What a failed run left behind goes first: every run starts from the full corpus.
                if server.count(&user, "INBOX") > 0 {
                    server.doveadm(&["expunge", "-u", &user.name, "mailbox", "INBOX", "all"]);
                }
                fill(server, &user, mail, folders);
            }
            let result = timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok).and_then(|first| {
                let (ids, files) = message_ids(&dir.join("Mail"));
                if ids != expected || files != n {
                    return Err(format!(
                        "wrong result: {files} files, {} of {n} messages",
                        ids.len()
                    ));
                }
                if pass == Pass::Delete && tool.kind != Kind::Reference {
                    let left = server.count(&user, "INBOX");
                    if left != 0 {
                        return Err(format!("{left} messages left on the server"));
                    }
                }
                if tool.kind == Kind::Reference || pass != Pass::Reruns {
                    return Ok((first, None));
                }
                // As cron runs it: not within the second of the run before.
                std::thread::sleep(Duration::from_secs(2));
                let again = timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok)?;
                if message_ids(&dir.join("Mail")).1 != n {
                    return Err("the no-op rerun fetched again".to_string());
                }
                // Flags changed on messages of INBOX by another client.
                let flags = if imap {
                    server.doveadm(&[
                        "flags",
                        "add",
                        "-u",
                        &user.name,
                        "\\Flagged",
                        "mailbox",
                        "INBOX",
                        &first_ones,
                    ]);
                    let sample = timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok);
                    server.doveadm(&[
                        "flags",
                        "remove",
                        "-u",
                        &user.name,
                        "\\Flagged",
                        "mailbox",
                        "INBOX",
                        &first_ones,
                    ]);
                    let sample = sample?;
                    let carried = flagged_files(&dir.join("Mail"), 'F') == flagged;
                    if tool.follows_flags && !carried {
                        return Err("the flag changes did not arrive".to_string());
                    }
                    Some((sample, carried))
                } else {
                    None
                };
                // 100 new messages in INBOX.
                server.put(&user, "", &new_mail(run));
                let plus = timed(&mut (tool.setup)(&ctx, &dir), &dir, tool.ok);
                server.expunge_message(&user, "INBOX", "bench-new");
                let plus = plus?;
                if message_ids(&dir.join("Mail")).1 != n + 100 {
                    return Err(
                        "the rerun after 100 new messages did not fetch exactly them".into(),
                    );
                }
                Ok((
                    first,
                    Some(Reruns {
                        noop: again,
                        flags,
                        plus100: plus,
                    }),
                ))
            });
            retire(&dir, scratch);
            match result {
                // Run 0 warms caches and is not counted.
                Ok(_) if run == 0 => {}
                Ok(s) => samples.push(s),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            eprintln!("{} failed: {e}", tool.name);
            println!(
                "<!-- {} failed: {} -->",
                tool.name,
                e.replace('\n', " ").chars().take(300).collect::<String>()
            );
            continue;
        }
        let first = |f: fn(&Sample) -> f64| median(samples.iter().map(|s| f(&s.0)).collect());
        let rerun = |pick: fn(&Reruns) -> Option<Sample>| {
            let v: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.1.as_ref().and_then(pick))
                .map(|s| s.wall)
                .collect();
            (!v.is_empty()).then(|| median(v))
        };
        let carried = samples
            .iter()
            .all(|s| s.1.and_then(|r| r.flags).is_some_and(|f| f.1));
        rows.push(Row {
            name: tool.name,
            kind: tool.kind,
            first: Sample {
                wall: first(|s| s.wall),
                cpu: first(|s| s.cpu),
                rss_kib: first(|s| s.rss_kib as f64) as u64,
            },
            noop: rerun(|r| Some(r.noop)),
            plus100: rerun(|r| Some(r.plus100)),
            flags: rerun(|r| r.flags.map(|f| f.0)).map(|w| (w, carried)),
        });
        // The rows so far, as each tool finishes: a run stopped early keeps what it measured.
        let _ = print_table(&mut std::io::stderr(), &format!("(so far) {title}"), &rows);
    }
    print_table(&mut std::io::stdout(), title, &rows).expect("write the table");
}

/// Prints the rows with each figure's ratio to the best peer (smaller is better).
fn print_table(out: &mut dyn Write, title: &str, rows: &[Row]) -> std::io::Result<()> {
    let peers: Vec<&Row> = rows.iter().filter(|r| r.kind == Kind::Peer).collect();
    let best = |f: &dyn Fn(&Row) -> Option<f64>| {
        peers
            .iter()
            .filter_map(|r| f(r))
            .min_by(|a, b| a.total_cmp(b))
    };
    let best_wall = best(&|r| Some(r.first.wall));
    let best_cpu = best(&|r| Some(r.first.cpu));
    let best_rss = best(&|r| Some(r.first.rss_kib as f64));
    let best_noop = best(&|r| r.noop);
    let ratio = |v: Option<f64>, b: Option<f64>| match (v, b) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
        _ => "—".to_string(),
    };
    let secs =
        |v: Option<f64>, digits: usize| v.map_or("—".to_string(), |v| format!("{v:.digits$}"));
    let link = match DELAY.get().copied().flatten() {
        Some(d) => format!(
            ", every tool through a proxy adding {} ms each way",
            d.as_millis()
        ),
        None => String::new(),
    };
    writeln!(out, "\n{title}{link}\n")?;
    writeln!(
        out,
        "| tool | first pull wall s | CPU s | peak RSS MiB | no-op rerun s | +100 new rerun s | flags-only rerun s | wall / best peer | CPU / best peer | RSS / best peer | no-op / best peer |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for r in rows {
        let flags = match r.flags {
            Some((w, true)) => format!("{w:.3}"),
            Some((w, false)) => format!("{w:.3} (not carried)"),
            None => "—".to_string(),
        };
        writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.1} | {} | {} | {flags} | {} | {} | {} | {} |",
            r.name,
            r.first.wall,
            r.first.cpu,
            r.first.rss_kib as f64 / 1024.0,
            secs(r.noop, 3),
            secs(r.plus100, 3),
            ratio(Some(r.first.wall), best_wall),
            ratio(Some(r.first.cpu), best_cpu),
            ratio(Some(r.first.rss_kib as f64), best_rss),
            ratio(r.noop, best_noop),
        )?;
    }
    Ok(())
}
