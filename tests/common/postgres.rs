//! A real PostgreSQL server (Debian's package) for tests: a cluster made with `initdb` in a
//! temporary folder, run as the `postgres` user when the tests run as root (PostgreSQL refuses
//! to run as root), listening on a free loopback port with password (SCRAM) authentication,
//! and removed at the end. Fails the test (never skips) when PostgreSQL is not installed.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::common::free_port;

/// The superuser's password in every test cluster.
pub const PASSWORD: &str = "test-only-Pg-password";

/// A running (or stopped) test cluster.
pub struct Postgres {
    child: Option<Child>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    settings: Vec<String>,
}

/// The folder of `initdb`, `postgres`, `pg_isready` and `psql`: `$ACQUIRE_TEST_PG_BIN`, else
/// the newest `/usr/lib/postgresql/*/bin`, else the `PATH`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ACQUIRE_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match which {
        Some(p) => Path::new(&p).parent().unwrap().to_owned(),
        None => panic!(
            "PostgreSQL is not installed: apt-get install -y postgresql (scripts/test does it)"
        ),
    }
}

/// The `postgres` user's uid and gid when the tests run as root.
fn owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        assert!(
            out.status.success(),
            "running as root needs the postgres user (the postgresql package makes it)"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

impl Postgres {
    /// A new cluster with PostgreSQL's default settings (`synchronous_commit=on`, fsync on).
    pub fn start() -> Postgres {
        Self::start_with(&[])
    }

    /// A new cluster with extra `-c name=value` settings.
    pub fn start_with(settings: &[&str]) -> Postgres {
        let bin = bin_dir();
        let owner = owner();
        let dir = tempfile::Builder::new()
            .prefix("acquire-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        chown(dir.path(), owner);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        chown(&pwfile, owner);
        let out = as_owner(Command::new(bin.join("initdb")), owner)
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            child: None,
            dir,
            bin,
            owner,
            port: free_port(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        // The port was free when it was drawn; should another process take it first, the
        // first start draws another (a restart keeps its port: the exporters know it).
        for _ in 0..4 {
            match pg.try_resume() {
                Ok(()) => return pg,
                Err(log) if log.contains("Address already in use") => pg.port = free_port(),
                Err(log) => panic!("postgres exited: {log}"),
            }
        }
        pg.resume();
        pg
    }

    /// The cluster's folder (its data folder is `data/` inside).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Add a line to `pg_hba.conf` before the others (takes effect at the next start).
    pub fn hba_first(&self, line: &str) {
        let path = self.dir.path().join("data/pg_hba.conf");
        let old = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{line}\n{old}")).unwrap();
    }

    /// Replace `pg_hba.conf` (takes effect at the next start).
    pub fn hba(&self, text: &str) {
        std::fs::write(self.dir.path().join("data/pg_hba.conf"), text).unwrap();
    }

    /// Add a setting for the next start.
    pub fn set(&mut self, setting: &str) {
        self.settings.push(setting.to_owned());
    }

    /// A file in the cluster's folder, owned by the server's user with mode 0600 (keys).
    pub fn write_private(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown(&path, self.owner);
        path
    }

    /// Start the server again (after [`Self::stop`] or [`Self::kill`]) on the same port and
    /// wait until it accepts connections.
    pub fn resume(&mut self) {
        if let Err(log) = self.try_resume() {
            panic!("postgres exited: {log}");
        }
    }

    /// [`Self::resume`], or the server's log when it exited before it accepted connections.
    fn try_resume(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let mut cmd = as_owner(Command::new(self.bin.join("postgres")), self.owner);
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for s in &self.settings {
            cmd.args(["-c", s]);
        }
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status}) {}", self.log()));
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .expect("pg_isready");
            if ready.success() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stop the server the way an operator does (fast shutdown: sessions are ended, open
    /// transactions rolled back) and wait until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-INT");
            let _ = child.wait();
        }
    }

    /// Kill the server outright.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The URL of database `db` for the superuser, without TLS.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Create database `name`.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// Run SQL with psql over TCP; its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A number psql prints.
    pub fn count(&self, db: &str, sql: &str) -> i64 {
        let out = self.psql(db, sql);
        out.parse()
            .unwrap_or_else(|_| panic!("{sql}: {out:?} is not a number"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

fn as_owner(mut cmd: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp");
    }
    cmd
}

/// Send a signal (`-INT`, `-TERM`, `-KILL`, `-STOP`, `-CONT`) to a child.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig}");
}
