//! A real load balancer (Debian's haproxy) in front of replicas, for end-to-end tests: round
//! robin, health checks on `/-/ready` every 500 ms, a failed request sent again to the other
//! replica. Fails the test (never skips) when haproxy is not installed.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

/// A running haproxy.
pub struct Haproxy {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Balance over `backends` (`host:port` each); waits until it listens and sees at least
    /// one backend ready.
    pub fn start(backends: &[&str]) -> Haproxy {
        let found = Command::new("haproxy").arg("-v").output().is_ok();
        assert!(
            found,
            "haproxy is not installed: apt-get install -y haproxy (scripts/test does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("  server replica{i} {b} check\n"))
            .collect();
        let config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch\n  retry-on conn-failure empty-response response-timeout 503\n\
             frontend webhooks\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n  option httpchk GET /-/ready\n  http-check expect status 200\n  default-server inter 500ms fall 2 rise 2\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let h = Haproxy {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = crate::common::agent()
                .get(&format!("{}/-/ready", h.base))
                .call()
            {
                if r.status().as_u16() == 200 {
                    return h;
                }
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not pass a request to a ready replica"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A URL through the balancer.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
