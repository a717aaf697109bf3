//! A real Prometheus server (Debian's package) for end-to-end tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running Prometheus with its own temporary storage.
pub struct Prometheus {
    child: Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

/// The address in Prometheus's `msg="Listening on" address=127.0.0.1:PORT` log line, which gives
/// the port the server bound (it listens on port 0, so no two tests can race for a port).
pub fn listening_address(line: &str) -> Option<&str> {
    if !line.contains("msg=\"Listening on\"") {
        return None;
    }
    let rest = &line[line.find(" address=")? + " address=".len()..];
    rest.split_whitespace().next()
}

impl Prometheus {
    /// Start `prometheus` with `config` (YAML text) and extra flags; waits until it is ready.
    /// Fails the test (never skips) when the binary is missing.
    pub fn start(config: &str, flags: &[&str]) -> Prometheus {
        let found = Command::new("prometheus").arg("--version").output().is_ok();
        assert!(
            found,
            "prometheus is not installed: apt-get install -y prometheus (scripts/test does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        Self::start_with_file(&config_path, dir, flags)
    }

    pub fn start_with_file(
        config_path: &Path,
        dir: tempfile::TempDir,
        flags: &[&str],
    ) -> Prometheus {
        Self::start_binary(Path::new("prometheus"), config_path, dir, flags)
    }

    /// Start a given Prometheus binary (see [`newer_prometheus`]) on an ephemeral port, learn the
    /// port from its log, and wait until it is ready, failing at once if the process exits.
    pub fn start_binary(
        binary: &Path,
        config_path: &Path,
        dir: tempfile::TempDir,
        flags: &[&str],
    ) -> Prometheus {
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prometheus");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // Reads the log to its end, so the pipe never fills; the first listening line goes out.
        std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = listening_address(&line) {
                    let _ = tx.send(Ok(address.to_owned()));
                }
                log.push(line);
            }
            let _ = tx.send(Err(log.join("\n")));
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let address = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(address)) => address,
            Ok(Err(log)) => {
                let _ = child.wait();
                panic!("prometheus exited before listening:\n{log}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("prometheus did not say where it listens");
            }
        };
        let mut p = Prometheus {
            child,
            base: format!("http://{address}"),
            _dir: dir,
        };
        loop {
            if let Some(status) = p.child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited ({status}) before it was ready");
            }
            if let Ok(r) = super::agent().get(&format!("{}/-/ready", p.base)).call() {
                if r.status().as_u16() == 200 {
                    return p;
                }
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Reload the configuration (needs `--web.enable-lifecycle`).
    pub fn reload(&self) {
        let resp = super::agent()
            .post(&format!("{}/-/reload", self.base))
            .send(&[][..])
            .expect("reload");
        assert_eq!(resp.status().as_u16(), 200, "reload refused");
    }

    /// GET an API path with query parameters; the parsed `data` of a successful answer.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let mut req = super::agent().get(&format!("{}{path}", self.base));
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        let mut resp = req.call().map_err(|e| e.to_string())?;
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let body: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"].clone())
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// [`Prometheus::query`] evaluated at `time` (seconds since the epoch, as the API spells
    /// it) instead of now.
    pub fn query_at(&self, expr: &str, time: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr), ("time", time)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Wait until `expr` returns a non-empty result; the result.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.query(expr) {
                Ok(r) if !r.is_empty() => return r,
                Ok(_) => {}
                Err(e) => panic!("{expr}: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "{expr}: no data within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scrape config for one exporter target, scraped every second.
pub fn scrape_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: acquire\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// The numeric value of an instant-vector sample.
pub fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Prometheus 2.53 from Debian's next release (trixie), which `scripts/fetch-prometheus` unpacks
/// beside the repository (the README's test command runs it): the first Debian Prometheus that
/// can keep the classic buckets of a histogram scraped as native (`scrape_classic_histograms`).
/// Fails the test (never skips) when it is missing.
pub fn newer_prometheus() -> std::path::PathBuf {
    let path = std::env::var_os("ACQUIRE_TEST_PROMETHEUS_NEWER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".tools/prometheus-trixie/usr/bin/prometheus")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-prometheus (scripts/test does it)",
        path.display()
    );
    path
}
