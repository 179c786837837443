//! A real Secret Service for the keyring tests: gnome-keyring on a private D-Bus session bus.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// A session bus with an unlocked gnome-keyring on it; both end when this is dropped.
pub struct SecretService {
    /// The bus address, for DBUS_SESSION_BUS_ADDRESS.
    pub address: String,
    bus: Child,
    _dir: tempfile::TempDir,
}

impl SecretService {
    /// Starts the bus and the keyring daemon (which returns once it serves the bus).
    pub fn start() -> SecretService {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // session.conf's policy (gnome-keyring gets no replies through a narrower one), but no
        // service directories: nothing is started behind the test's back by bus activation.
        let conf = root.join("bus.conf");
        fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                root.join("bus").display()
            ),
        )
        .expect("write bus.conf");
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon (package dbus-daemon; scripts/deps installs it)");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().expect("bus stdout"))
            .read_line(&mut address)
            .expect("read the bus address");
        let address = address.trim().to_string();
        assert!(address.starts_with("unix:"), "bus address {address:?}");
        let runtime = root.join("run");
        fs::create_dir(&runtime).expect("runtime dir");
        fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod runtime dir");
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--daemonize", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", root)
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start gnome-keyring-daemon (package gnome-keyring)");
        // The login keyring's own password, read from stdin by --unlock.
        keyring
            .stdin
            .take()
            .expect("keyring stdin")
            .write_all(b"keyring-test")
            .expect("unlock the keyring");
        let status = keyring.wait().expect("gnome-keyring-daemon");
        assert!(status.success(), "gnome-keyring-daemon: {status}");
        SecretService {
            address,
            bus,
            _dir: dir,
        }
    }

    /// What `secret-tool lookup` finds for these attributes (None when nothing).
    pub fn lookup(&self, attributes: &[&str]) -> Option<String> {
        let out = Command::new("secret-tool")
            .arg("lookup")
            .args(attributes)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .output()
            .expect("run secret-tool (package libsecret-tools)");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        // The keyring daemon leaves when its bus goes away.
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}
