//! A real Dovecot (IMAP + POP3, implicit TLS and STARTTLS) on 127.0.0.1, one per test binary,
//! with a throwaway config, certificates and mail root. Each test gets users of its own.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The running server.
pub struct Dovecot {
    /// Root of everything this instance uses.
    pub dir: PathBuf,
    /// Plain POP3 port (STLS offered).
    pub pop3: u16,
    /// Implicit-TLS POP3 port.
    pub pop3s: u16,
    /// Plain IMAP port (STARTTLS offered).
    pub imap: u16,
    /// Implicit-TLS IMAP port.
    pub imaps: u16,
    /// The CA that signed the server certificate (trust it with SSL_CERT_FILE).
    pub ca: PathBuf,
    /// A CA that did not sign it (for "untrusted" tests).
    pub other_ca: PathBuf,
    /// The server certificate (DER fingerprint via `fingerprint`).
    pub cert: PathBuf,
    conf: PathBuf,
    mail_owner: (u32, u32),
    _guard: Mutex<(Child, ChildStdin)>,
}

/// A mail user of the test server.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Home directory (its Maildir is `home/Maildir`).
    pub home: PathBuf,
}

impl User {
    /// The server-side Maildir root of this user.
    pub fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }
}

/// The shared server of this test binary, started on first use.
pub fn dovecot() -> &'static Dovecot {
    static SERVER: OnceLock<Dovecot> = OnceLock::new();
    SERVER.get_or_init(|| Dovecot::start().expect("start Dovecot"))
}

fn euid() -> u32 {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

fn lookup(file: &str, name: &str) -> Option<u32> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

fn name_of_uid(uid: u32) -> Option<String> {
    fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f[0].to_string())
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs(dir: &Path) {
    let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
    for ca in ["ca", "other-ca"] {
        ossl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3",
            "-subj",
            &format!("/CN=mailferry test {ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
}

impl Dovecot {
    fn start() -> Result<Dovecot, String> {
        let binary = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("Dovecot is not installed: run scripts/test (it installs it) or apt-get install dovecot-imapd dovecot-pop3d")?;
        let dir = std::env::temp_dir().join(format!("mailferry-dovecot-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("run")).map_err(|e| e.to_string())?;
        fs::create_dir_all(dir.join("home")).map_err(|e| e.to_string())?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        make_certs(&dir);

        let me = euid();
        // Dovecot will not touch mail as root: as root, mail belongs to `nobody`.
        let (mail_owner, login_user, internal_user, mail_lines) = if me == 0 {
            let uid = lookup("/etc/passwd", "nobody").ok_or("no user nobody")?;
            let gid = lookup("/etc/group", "nogroup")
                .or_else(|| lookup("/etc/group", "nobody"))
                .ok_or("no group nogroup")?;
            (
                (uid, gid),
                "dovenull".to_string(),
                "dovecot".to_string(),
                format!(
                    "mail_uid = {uid}\nmail_gid = {gid}\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"
                ),
            )
        } else {
            let name = name_of_uid(me).ok_or("cannot find my user name")?;
            let gid = fs::metadata("/proc/self").map(|m| m.gid()).unwrap_or(me);
            (
                (me, gid),
                name.clone(),
                name,
                format!("first_valid_uid = {me}\n"),
            )
        };
        std::os::unix::fs::chown(dir.join("home"), Some(mail_owner.0), Some(mail_owner.1))
            .map_err(|e| e.to_string())?;

        let (pop3, pop3s, imap, imaps) = (free_port(), free_port(), free_port(), free_port());
        let d = dir.display();
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = mailferry-test-{pid}
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login apop
default_login_user = {login_user}
default_internal_user = {internal_user}
{mail_lines}mail_location = maildir:~/Maildir:UTF-8
mail_home = {d}/home/%u
pop3_uidl_format = %08Xu%08Xv
pop3_lock_session = yes
mail_plugins = $mail_plugins zlib
protocol imap {{
  mail_plugins = $mail_plugins imap_zlib
}}
login_trusted_networks =
auth_verbose = yes
passdb {{
  driver = static
  args = password=pw-%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"#,
            pid = std::process::id(),
            uid = mail_owner.0,
            gid = mail_owner.1,
        );
        let conf_path = dir.join("dovecot.conf");
        fs::write(&conf_path, conf).map_err(|e| e.to_string())?;

        // The shell stays as the guard: when this test process exits, its stdin closes, and it
        // stops Dovecot and removes the directory. A static is never dropped, so Drop won't do.
        let script = format!(
            "{binary} -F -c {conf} & pid=$!; read _; kill $pid; wait $pid; rm -rf {d}",
            conf = conf_path.display()
        );
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let server = Dovecot {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            cert: dir.join("server.pem"),
            dir,
            pop3,
            pop3s,
            imap,
            imaps,
            conf: conf_path,
            mail_owner,
            _guard: Mutex::new((child, stdin)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [pop3, pop3s, imap, imaps] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    let log =
                        fs::read_to_string(server.dir.join("dovecot.log")).unwrap_or_default();
                    return Err(format!("Dovecot did not start listening on {port}:\n{log}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(server)
    }

    /// A user of its own for a test (names must be unique in the test binary). Every name
    /// exists (a static passdb); the password is "pw-" + name.
    pub fn user(&self, name: &str) -> User {
        User {
            name: name.to_string(),
            password: format!("pw-{name}"),
            home: self.dir.join("home").join(name),
        }
    }

    /// Puts messages into a folder of the user's server Maildir ("" is INBOX; "A.B" is B
    /// under A), as a local delivery agent would: written to tmp/, renamed into new/, owned by
    /// the mail user.
    pub fn put(&self, user: &User, folder: &str, messages: &[Vec<u8>]) {
        let flagged: Vec<(Vec<u8>, &str)> = messages.iter().map(|m| (m.clone(), "")).collect();
        self.put_flagged(user, folder, &flagged);
    }

    /// Like `put`, with Maildir flag letters per message (those go to cur/ as `:2,FLAGS`).
    /// Each message's modification time, which Dovecot takes as its INTERNALDATE, is a distinct
    /// time in 2023.
    pub fn put_flagged(&self, user: &User, folder: &str, messages: &[(Vec<u8>, &str)]) {
        let root = if folder.is_empty() {
            user.maildir()
        } else {
            user.maildir().join(format!(".{folder}"))
        };
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for (m, flags) in messages {
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("{}.T{n}.test", 1_700_000_000 + n);
            let tmp = root.join("tmp").join(&name);
            fs::write(&tmp, m).unwrap();
            let when = std::time::UNIX_EPOCH + Duration::from_secs(1_680_000_000 + n * 3600);
            fs::File::options()
                .write(true)
                .open(&tmp)
                .unwrap()
                .set_modified(when)
                .unwrap();
            let target = if flags.is_empty() {
                root.join("new").join(&name)
            } else {
                root.join("cur").join(format!("{name}:2,{flags}"))
            };
            fs::rename(&tmp, target).unwrap();
        }
        self.chown_tree(&user.home);
    }

    /// Hands a directory tree to the mail user (Dovecot refuses root-owned mail when root).
    pub fn chown_tree(&self, path: &Path) {
        let (uid, gid) = self.mail_owner;
        if euid() != 0 {
            return;
        }
        let mut stack = vec![path.to_path_buf()];
        // The parents up to the home root must be traversable too.
        let mut p = path.parent();
        while let Some(dir) = p {
            if !dir.starts_with(self.dir.join("home")) || dir == self.dir.join("home") {
                break;
            }
            let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
            p = dir.parent();
        }
        while let Some(p) = stack.pop() {
            let _ = std::os::unix::fs::chown(&p, Some(uid), Some(gid));
            if p.is_dir()
                && let Ok(entries) = fs::read_dir(&p)
            {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }

    /// Runs doveadm against this instance and returns its standard output.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("run doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds IMAP flags (space-separated) to the messages of a mailbox whose Message-ID header
    /// holds `message_id`, as another client would.
    pub fn add_flags(&self, user: &User, mailbox: &str, message_id: &str, flags: &str) {
        self.doveadm(&[
            "flags",
            "add",
            "-u",
            &user.name,
            flags,
            "mailbox",
            mailbox,
            "header",
            "Message-ID",
            message_id,
        ]);
    }

    /// Expunges the messages of a mailbox whose Message-ID header holds `message_id`, as
    /// another client deleting mail behind mailferry's back.
    pub fn expunge_message(&self, user: &User, mailbox: &str, message_id: &str) {
        self.doveadm(&[
            "expunge",
            "-u",
            &user.name,
            "mailbox",
            mailbox,
            "header",
            "Message-ID",
            message_id,
        ]);
    }

    /// Number of messages in a mailbox, as Dovecot sees it.
    pub fn count(&self, user: &User, mailbox: &str) -> usize {
        self.doveadm(&[
            "-f", "flow", "search", "-u", &user.name, "mailbox", mailbox, "all",
        ])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
    }

    /// The SHA-256 fingerprint of the server certificate, as mailferry writes it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&self.cert)
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text
            .trim()
            .rsplit('=')
            .next()
            .unwrap_or("")
            .replace(':', "")
            .to_lowercase();
        format!("sha256:{hex}")
    }
}
