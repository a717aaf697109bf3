//! The README's first command, run as written: a newcomer's `cargo run --release` must start the
//! exporter with its embedded defaults and become ready.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The shell block under "Run the exporter with its embedded defaults" in the README.
fn readme_run_command() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = readme
        .split_once("Run the exporter with its embedded defaults")
        .expect("the README introduces its run command")
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a ```sh block follows")
        .0;
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands.len(), 1, "one run command: {commands:?}");
    commands[0].to_owned()
}

#[test]
fn the_readme_run_command_starts_a_ready_exporter() {
    let command = readme_run_command();
    assert!(command.starts_with("cargo run"), "{command}");
    let storage = tempfile::tempdir().unwrap();
    // `cargo run` replaces itself with the exporter once it is built, so the child is the exporter.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ACQUIRE_EXPORTER_WEB_LISTEN_ADDRESS", "127.0.0.1:0")
        .env("ACQUIRE_EXPORTER_STORAGE_PATH", storage.path())
        .env("ACQUIRE_EXPORTER_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the README's command");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A release build from scratch takes minutes on a small machine.
    let deadline = Instant::now() + Duration::from_secs(1200);
    let mut output = Vec::new();
    let address = loop {
        let line = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let exited = child.try_wait().unwrap();
                assert!(
                    exited.is_none() && Instant::now() < deadline,
                    "`{command}` did not start listening ({exited:?}):\n{}",
                    output.join("\n")
                );
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                panic!(
                    "`{command}` exited with {status} before listening:\n{}",
                    output.join("\n")
                );
            }
        };
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "listening"
        {
            assert_eq!(
                v["storage"].as_str(),
                Some(storage.path().to_str().unwrap()),
                "the storage path comes from its environment variable"
            );
            break v["address"].as_str().expect("address").to_owned();
        }
        output.push(line);
    };
    let ready = loop {
        let (status, body) = common::get(&format!("http://{address}/-/ready"));
        if status == 200 {
            break body;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the exporter exited while starting"
        );
        assert!(Instant::now() < deadline, "never ready: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ready, "Ready\n");
    let _ = child.kill();
    let _ = child.wait();
}
