//! TLS refusals against servers presenting bad certificates (openssl s_server with
//! certificates minted from the test CA): expired, for another host, self-signed; and a
//! server that speaks only TLS 1.1.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Env, dovecot};

/// An `openssl s_server` on 127.0.0.1, stopped when dropped.
struct TlsServer {
    port: u16,
    child: Child,
}

impl TlsServer {
    fn start(cert: &Path, key: &Path, extra: &[&str]) -> TlsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer { port, child }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate for `san` signed by the test CA, valid from `start` to `end`
/// (YYYYMMDDHHMMSSZ); returns (certificate, key).
fn mint(dir: &Path, name: &str, san: &str, start: &str, end: &str) -> (PathBuf, PathBuf) {
    let ca = &dovecot().dir;
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=test",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            &ca.join("ca.pem").display().to_string(),
            "-keyfile",
            &ca.join("ca.key").display().to_string(),
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.pem"),
            "-startdate",
            start,
            "-enddate",
            end,
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

fn fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().rsplit('=').next().unwrap().replace(':', "");
    format!("sha256:{}", hex.to_lowercase())
}

fn check_against(port: u16) -> crate::support::Run {
    let mut env = Env::new();
    env.trust_test_ca();
    env.var("PW", "x");
    env.config(&format!(
        "[accounts.t]\nprotocol = \"pop3\"\nhost = \"localhost\"\nport = {port}\ntls = \"implicit\"\n\
         user = \"u\"\npassword_env = \"PW\"\nmaildir = \"Mail\"\ntimeout = \"5s\"\nretries = 0\n"
    ));
    env.run(&["check"])
}

#[test]
fn bad_certificates_are_refused_with_their_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let far = "20991231000000Z";
    let cases = [
        (
            "expired",
            "DNS:localhost,IP:127.0.0.1",
            "20200101000000Z",
            "20210101000000Z",
            "expired",
        ),
        (
            "otherhost",
            "DNS:mail.example.org",
            "20240101000000Z",
            far,
            "not valid for the name localhost",
        ),
    ];
    for (name, san, start, end, why) in cases {
        let (cert, key) = mint(dir.path(), name, san, start, end);
        let server = TlsServer::start(&cert, &key, &[]);
        let run = check_against(server.port);
        run.expect(77);
        assert!(run.stderr.contains(why), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(&fingerprint(&cert)),
            "{name}: no fingerprint: {}",
            run.stderr
        );
    }
    // Self-signed (no CA vouches for it).
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            "self.key",
            "-out",
            "self.pem",
        ],
    );
    let server = TlsServer::start(&d.join("self.pem"), &d.join("self.key"), &[]);
    let run = check_against(server.port);
    run.expect(77);
    assert!(
        run.stderr.contains(&fingerprint(&d.join("self.pem"))),
        "{}",
        run.stderr
    );
    // In words, not the TLS library's type names.
    assert!(run.stderr.contains("self-signed"), "{}", run.stderr);
    assert!(!run.stderr.contains("Other("), "{}", run.stderr);
}

#[test]
fn tls_older_than_1_2_is_refused() {
    let server = dovecot();
    let old = TlsServer::start(
        &server.dir.join("server.pem"),
        &server.dir.join("server.key"),
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
    );
    let run = check_against(old.port);
    // Not worth a retry: the server will not speak TLS 1.2 by itself.
    run.expect(76);
    assert!(
        run.stderr.contains("TLS handshake with localhost failed"),
        "{}",
        run.stderr
    );
    // The same certificate with a modern TLS gets past the handshake (to the POP3 greeting
    // s_server never sends: a timeout, not a TLS error).
    let modern = TlsServer::start(
        &server.dir.join("server.pem"),
        &server.dir.join("server.key"),
        &[],
    );
    let run = check_against(modern.port);
    run.expect(75);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
}
