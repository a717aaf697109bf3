//! The container kit without a Docker engine: `docker-compose config -q` accepts
//! `docker-compose.yml` (and refuses it without Grafana's admin password); every host port is
//! bound to the loopback; every mounted path of the repository exists and is read-only; the
//! exporter runs read-only, without capabilities or new privileges, with the webhook token as a
//! secret file; the long-running services have health checks and wait for what they need; the
//! image is built with its revision; the Grafana mounts match the provisioning; and the commands
//! the compose file and the Dockerfile give the binaries are accepted by the real binaries (the
//! health checks and the simulator's flags, with the secret's token, against a running
//! exporter). Profiles other than the default and `simulator` (an `ha` stack) are left to their
//! own tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use common::{Exporter, sample};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Value {
    yaml(&root().join("docker-compose.yml"))
}

fn services(c: &Value) -> Vec<(String, &Value)> {
    c["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `${NAME:-default}` as Compose reads it when NAME is unset.
fn interpolate(s: &str) -> String {
    match (s.find("${"), s.find(":-"), s.rfind('}')) {
        (Some(a), Some(b), Some(c)) if a < b && b < c => {
            format!("{}{}{}", &s[..a], &s[b + 2..c], &s[c + 1..])
        }
        _ => s.to_owned(),
    }
}

const PASSWORD: &str = "compose-test-password";

/// `docker-compose config` of the file with only `env` from the variables it reads; `args` go
/// before `config`, except `-q` after it.
fn compose_config(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let found = Command::new("docker-compose").arg("version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "docker-compose is not installed: apt-get install -y docker-compose (scripts/test does it)"
    );
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(root())
        .env_remove("GRAFANA_ADMIN_PASSWORD")
        .env_remove("ACQUIRE_EXPORTER_REVISION")
        .env_remove("ACQUIRE_WEBHOOK_TOKEN")
        .env_remove("ACQUIRE_WEBHOOK_TOKEN_FILE")
        .envs(env.iter().copied())
        .args(["--project-directory", "."])
        .args(["-f", "docker-compose.yml"])
        .args(args.iter().filter(|a| **a != "-q"))
        .arg("config")
        .args(args.iter().filter(|a| **a == "-q"));
    cmd.output().expect("docker-compose")
}

/// The file as Compose reads it (variables interpolated, every service of the simulator
/// profile included).
fn rendered(env: &[(&str, &str)]) -> Value {
    let out = compose_config(env, &["--profile", "simulator"]);
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::from_slice(&out.stdout).expect("the rendered compose file")
}

fn default_env() -> Vec<(&'static str, &'static str)> {
    vec![("GRAFANA_ADMIN_PASSWORD", PASSWORD)]
}

/// The services of the default profile and of `simulator` (other profiles have their tests).
fn kit_services(c: &Value) -> Vec<(String, &Value)> {
    services(c)
        .into_iter()
        .filter(|(_, s)| {
            let profiles = strings(&s["profiles"]);
            profiles.is_empty() || profiles == ["simulator"]
        })
        .collect()
}

#[test]
fn docker_compose_accepts_the_file() {
    for profile in [&[][..], &["--profile", "simulator"][..]] {
        let out = compose_config(&default_env(), &[profile, &["-q"]].concat());
        assert!(
            out.status.success(),
            "docker-compose {profile:?} config -q: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn grafana_s_admin_password_must_be_chosen() {
    let out = compose_config(&[], &["-q"]);
    assert!(
        !out.status.success(),
        "the stack starts with Grafana's default admin/admin"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("GRAFANA_ADMIN_PASSWORD"),
        "the error names the variable: {said}"
    );
    let c = rendered(&default_env());
    let env = &c["services"]["grafana"]["environment"];
    assert_eq!(env["GF_SECURITY_ADMIN_PASSWORD"], PASSWORD);
    assert_ne!(env["GF_SECURITY_ADMIN_PASSWORD"], "admin");
}

#[test]
fn every_host_port_is_bound_to_the_loopback() {
    let c = compose();
    let mut ports = 0;
    for (name, s) in kit_services(&c) {
        for p in s["ports"].as_sequence().into_iter().flatten() {
            ports += 1;
            match p {
                Value::String(p) => assert!(
                    p.starts_with("127.0.0.1:") && p.matches(':').count() == 2,
                    "{name}: port {p:?} is not bound to 127.0.0.1"
                ),
                Value::Mapping(_) => {
                    assert_eq!(p["host_ip"].as_str(), Some("127.0.0.1"), "{name}: {p:?}")
                }
                other => panic!("{name}: port {other:?}"),
            }
        }
        assert!(s["network_mode"] != "host", "{name}: host networking");
    }
    assert_eq!(
        ports, 3,
        "the exporter, Prometheus and Grafana publish a port"
    );
}

#[test]
fn every_mounted_repository_path_exists_and_is_read_only() {
    let c = compose();
    let named: Vec<String> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    let mut binds = 0;
    for (name, s) in kit_services(&c) {
        for v in strings(&s["volumes"]) {
            let parts: Vec<&str> = v.split(':').collect();
            let source = parts[0];
            if source.starts_with('.') || source.starts_with('/') {
                binds += 1;
                let path = root().join(source);
                assert!(
                    path.exists(),
                    "{name}: mounts {source}, which is not in the repository"
                );
                assert!(
                    path.canonicalize()
                        .unwrap()
                        .starts_with(root().canonicalize().unwrap()),
                    "{name}: {source} is outside the repository"
                );
                assert_eq!(
                    parts.get(2).copied(),
                    Some("ro"),
                    "{name}: {v} must be read-only"
                );
            } else {
                assert!(
                    named.iter().any(|n| n == source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        if let Some(build) = s.get("build") {
            let context = build
                .as_str()
                .or_else(|| build["context"].as_str())
                .unwrap_or(".");
            assert!(
                root().join(context).join("Dockerfile").is_file(),
                "{name}: no Dockerfile in {context}"
            );
        }
    }
    assert_eq!(
        binds, 4,
        "Prometheus's config and rules, Grafana's provisioning and dashboards"
    );
    for (name, secret) in c["secrets"].as_mapping().expect("secrets") {
        let file = interpolate(secret["file"].as_str().expect("a file secret"));
        let path = root().join(&file);
        assert!(
            path.is_file(),
            "secret {name:?}: {file} is not in the repository"
        );
    }
}

#[test]
fn the_exporter_runs_read_only_without_capabilities_or_new_privileges() {
    let c = rendered(&default_env());
    for name in ["exporter", "simulator"] {
        let s = &c["services"][name];
        assert_eq!(s["read_only"], true, "{name}: a read-only root file system");
        assert_eq!(strings(&s["cap_drop"]), ["ALL"], "{name}: no capabilities");
        assert!(
            strings(&s["security_opt"]).contains(&"no-new-privileges:true".to_owned()),
            "{name}: no new privileges: {:?}",
            s["security_opt"]
        );
    }
    // Read-only but for the state volume, where the store lives, and a scratch /tmp.
    let exporter = &c["services"]["exporter"];
    assert!(strings(&exporter["command"]).contains(&"--storage.path=/data".to_owned()));
    assert!(
        strings(&exporter["volumes"]).contains(&"exporter-data:/data:rw".to_owned()),
        "{:?}",
        exporter["volumes"]
    );
    assert_eq!(strings(&exporter["tmpfs"]), ["/tmp"]);
}

#[test]
fn every_long_running_service_has_a_health_check_and_waits_for_what_it_needs() {
    let c = rendered(&default_env());
    for (name, endpoint) in [
        ("exporter", "http://127.0.0.1:9867/-/healthy"),
        ("prometheus", "http://127.0.0.1:9090/-/ready"),
        ("grafana", "http://127.0.0.1:3000/api/health"),
    ] {
        let test = strings(&c["services"][name]["healthcheck"]["test"]);
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "{name}: exec form: {test:?}"
        );
        assert!(
            test.iter().any(|a| a.contains(endpoint)),
            "{name}: the health check asks {endpoint}: {test:?}"
        );
    }
    let condition = |service: &str, on: &str| -> String {
        c["services"][service]["depends_on"][on]["condition"]
            .as_str()
            .unwrap_or_else(|| panic!("{service} does not depend on {on}"))
            .to_owned()
    };
    assert_eq!(condition("grafana", "prometheus"), "service_healthy");
    assert_eq!(condition("simulator", "exporter"), "service_healthy");
    // Prometheus must run, and alert, while the exporter is unhealthy.
    assert_eq!(condition("prometheus", "exporter"), "service_started");
}

#[test]
fn the_image_is_built_with_its_revision() {
    let c = rendered(&[
        ("GRAFANA_ADMIN_PASSWORD", PASSWORD),
        ("ACQUIRE_EXPORTER_REVISION", "0123abc"),
    ]);
    for name in ["exporter", "simulator"] {
        assert_eq!(
            c["services"][name]["build"]["args"]["ACQUIRE_EXPORTER_REVISION"], "0123abc",
            "{name}: the revision is passed to the build"
        );
    }
    // The Dockerfile's build stage declares it before the build that reads it, and hands it to
    // cargo, where acquire_exporter_build_info reads it at compile time.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let build_stage = &joined[..joined.find("\nFROM gcr.io").expect("the runtime stage")];
    let arg = build_stage
        .find("ARG ACQUIRE_EXPORTER_REVISION")
        .expect("ARG ACQUIRE_EXPORTER_REVISION in the build stage");
    let build = build_stage
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("the cargo build");
    assert!(
        build.contains("ACQUIRE_EXPORTER_REVISION=\"$ACQUIRE_EXPORTER_REVISION\" cargo build"),
        "{build}"
    );
    assert!(arg < build_stage.find("cargo build").unwrap());
    let record = std::fs::read_to_string(root().join("src/expose/mod.rs")).unwrap();
    assert!(record.contains("option_env!(\"ACQUIRE_EXPORTER_REVISION\")"));
}

#[test]
fn images_are_pinned_and_prometheus_is_version_3() {
    let c = compose();
    for (name, s) in services(&c) {
        if s.get("build").is_some() {
            continue;
        }
        let image = s["image"].as_str().unwrap_or_default();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: image {image:?} is not pinned"
        );
    }
    let prometheus = c["services"]["prometheus"]["image"].as_str().unwrap();
    assert!(
        prometheus.starts_with("prom/prometheus:v3."),
        "{prometheus}"
    );
    let flags = strings(&c["services"]["prometheus"]["command"]);
    assert!(
        flags.iter().any(|f| f.contains("exemplar-storage")),
        "{flags:?}"
    );
    assert!(flags.contains(&"--config.file=/etc/prometheus/prometheus.yml".to_owned()));
    let grafana = &c["services"]["grafana"];
    assert!(
        grafana["image"]
            .as_str()
            .unwrap()
            .starts_with("grafana/grafana:")
    );
    assert_eq!(grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"], "true");
    assert_eq!(
        grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"],
        "Viewer"
    );
}

#[test]
fn grafana_mounts_match_the_provisioning() {
    let c = compose();
    let grafana = &c["services"]["grafana"];
    let mounts = strings(&grafana["volumes"]);
    let target_of = |source: &str| -> String {
        mounts
            .iter()
            .find_map(|m| {
                let parts: Vec<&str> = m.split(':').collect();
                (parts[0] == source).then(|| parts[1].to_owned())
            })
            .unwrap_or_else(|| panic!("grafana does not mount {source}"))
    };
    assert_eq!(
        target_of("./grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let dashboards = target_of("./grafana/dashboards");

    let providers = yaml(&root().join("grafana/provisioning/dashboards/acquire.yml"));
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"], "file");
    assert_eq!(
        provider["options"]["path"].as_str(),
        Some(dashboards.as_str()),
        "the provider reads where compose mounts the dashboards"
    );
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .unwrap();
    let file = home
        .strip_prefix(&format!("{dashboards}/"))
        .expect("the home dashboard is a mounted one");
    assert!(root().join("grafana/dashboards").join(file).is_file());

    let sources = yaml(&root().join("grafana/provisioning/datasources/prometheus.yml"));
    let ds = &sources["datasources"][0];
    assert_eq!(ds["type"], "prometheus");
    assert_eq!(ds["uid"], "acquire-prometheus", "a stable uid");
    assert_eq!(ds["url"], "http://prometheus:9090", "the compose service");
    assert!(c["services"]["prometheus"].is_mapping());
}

#[test]
fn the_dockerfile_ships_both_binaries_as_non_root_with_a_health_check() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(has("FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(
        dockerfile.contains("acquire-simulator"),
        "the simulator ships too"
    );
    assert!(has("USER 65532"), "non-root");
    assert!(has("EXPOSE 9867"));
    assert!(has("VOLUME [\"/data\"]"));
    assert!(has("CMD [\"--storage.path=/data\"]"));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for entry in ["target", ".git", "data"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

/// The JSON array after `CMD` in the Dockerfile's HEALTHCHECK.
fn healthcheck_command() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.trim_start().starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    let array = &line[line.find("CMD").expect("HEALTHCHECK CMD") + 3..];
    serde_json::from_str(array.trim()).expect("HEALTHCHECK CMD in exec form")
}

#[test]
fn the_health_check_commands_pass_against_a_running_exporter_and_fail_without_one() {
    let compose = strings(&rendered(&default_env())["services"]["exporter"]["healthcheck"]["test"]);
    for (source, cmd) in [
        ("Dockerfile", healthcheck_command()),
        ("docker-compose.yml", compose[1..].to_vec()),
    ] {
        assert_eq!(cmd[0], "/usr/local/bin/acquire-exporter", "{source}");
        assert_eq!(cmd[1], "healthcheck", "{source}");
        let exporter = Exporter::spawn(&["--storage.in-memory"]);
        let port = exporter.base.rsplit(':').next().unwrap().to_owned();
        let run = |args: &[String]| {
            Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
                .args(
                    args.iter()
                        .map(|a| a.replace(":9867/", &format!(":{port}/"))),
                )
                .output()
                .expect("run the health check")
        };
        let ok = run(&cmd[1..]);
        assert!(
            ok.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        drop(exporter);
        assert!(
            !run(&cmd[1..]).status.success(),
            "{source}: no exporter, no health"
        );
    }
}

#[test]
fn the_webhook_token_is_a_secret_file_and_the_simulator_s_flags_work_with_the_real_binaries() {
    let c = rendered(&default_env());
    let exporter = &c["services"]["exporter"];
    let simulator = &c["services"]["simulator"];
    assert_eq!(strings(&simulator["profiles"]), ["simulator"]);
    assert_eq!(
        strings(&simulator["entrypoint"]),
        ["/usr/local/bin/acquire-simulator"]
    );
    assert_eq!(
        simulator["image"], exporter["image"],
        "the simulator runs from the exporter's image"
    );
    // The token is no environment variable of the exporter: a secret, read with --webhook.token-file.
    let env_keys: Vec<String> = exporter["environment"]
        .as_mapping()
        .map(|m| m.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    assert!(
        !env_keys
            .iter()
            .any(|k| k.contains("TOKEN") || k.contains("SECRET")),
        "a secret in the environment: {env_keys:?}"
    );
    let command = strings(&exporter["command"]);
    let secret = exporter["secrets"][0]["source"]
        .as_str()
        .or_else(|| exporter["secrets"][0].as_str())
        .expect("the exporter's secret");
    assert!(
        command.contains(&format!("--webhook.token-file=/run/secrets/{secret}")),
        "{command:?}"
    );
    let file = c["secrets"][secret]["file"]
        .as_str()
        .expect("a file secret");
    let token_file = std::path::PathBuf::from(file);
    assert!(token_file.starts_with(root()), "{file}");

    // The simulator presents the token of the secret file.
    let file_token = std::fs::read_to_string(&token_file).unwrap();
    let token = simulator["environment"]["ACQUIRE_SIMULATOR_TOKEN"]
        .as_str()
        .expect("the simulator's token")
        .to_owned();
    assert_eq!(
        file_token.trim_end(),
        token,
        "the simulator's token is the secret's"
    );

    // The environment variables are the ones the binaries read.
    for (binary, env) in [
        (
            env!("CARGO_BIN_EXE_acquire-exporter"),
            &exporter["environment"],
        ),
        (
            env!("CARGO_BIN_EXE_acquire-simulator"),
            &simulator["environment"],
        ),
    ] {
        let help = Command::new(binary).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        for key in env.as_mapping().into_iter().flat_map(|m| m.keys()) {
            let key = key.as_str().unwrap();
            assert!(
                help.contains(&format!("env: {key}")),
                "{binary} does not read {key}"
            );
        }
    }

    // The exporter reading the secret file as the compose command does, and the simulator with
    // the compose file's flags (the URL pointed at it): its deliveries are accepted.
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--webhook.token-file={}", token_file.display()),
    ]);
    let command = strings(&simulator["command"]);
    let url = command
        .iter()
        .find_map(|a| a.strip_prefix("--url="))
        .expect("--url");
    assert_eq!(url, "http://exporter:9867/webhook", "the exporter service");
    let args: Vec<String> = command
        .iter()
        .map(|a| a.replace("http://exporter:9867", &exporter.base))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_acquire-simulator"))
        .args(&args)
        .args([
            "--start-hour=11",
            "--duration=5s",
            "--report-every=2s",
            "--seed=7",
        ])
        .env("ACQUIRE_SIMULATOR_TOKEN", &token)
        .output()
        .expect("run the simulator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = exporter.metrics();
    let starts = sample(
        &metrics,
        r#"acquire_webhooks_received_total{event="chat_start",outcome="observed"}"#,
    )
    .unwrap_or(0.0);
    assert!(starts >= 1.0, "no chat reached the exporter: {stdout}");
    assert_eq!(
        sample(
            &metrics,
            r#"acquire_webhook_rejections_total{reason="unauthorized"}"#
        ),
        Some(0.0),
        "the token was refused"
    );

    // And without the token, the exporter refuses the simulator.
    let out = Command::new(env!("CARGO_BIN_EXE_acquire-simulator"))
        .args(&args)
        .args(["--start-hour=11", "--duration=4s", "--seed=8"])
        .env_remove("ACQUIRE_SIMULATOR_TOKEN")
        .output()
        .expect("run the simulator");
    assert!(out.status.success());
    let refused = sample(
        &exporter.metrics(),
        r#"acquire_webhook_rejections_total{reason="unauthorized"}"#,
    )
    .unwrap_or(0.0);
    assert!(
        refused >= 1.0,
        "deliveries without the token must be refused"
    );
}
