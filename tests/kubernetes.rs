//! The Kubernetes manifests (`deploy/kubernetes/`) and the compose `ha` profile
//! (`deploy/compose-ha.yml`) against the real binary: the Deployment's arguments start the
//! exporter (with its Secret's files in place and a real PostgreSQL behind the URL), its
//! probes answer on the port it names, the Service, the PodDisruptionBudget and the
//! ServiceMonitor select those pods and that port, and the compose file is accepted by
//! docker-compose and hardened as the main stack is.

mod common;
#[path = "common/postgres.rs"]
mod pg;

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

use common::{Exporter, get};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every document of every manifest, by kind.
fn manifests() -> Vec<Value> {
    let dir = root().join("deploy/kubernetes");
    let mut docs = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push(v);
        }
    }
    docs
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// True when every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let dir = root().join("deploy/kubernetes");
    let k: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut listed = strings(&k["resources"]);
    listed.sort();
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    present.sort();
    assert_eq!(listed, present);
}

#[test]
fn two_replicas_with_a_budget_a_service_and_a_service_monitor_select_the_same_pods() {
    let docs = manifests();
    let deployment = kind(&docs, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(2));
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(0),
        "a rollout never leaves fewer replicas ready"
    );

    let pdb = kind(&docs, "PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    let min = pdb["spec"]["minAvailable"].as_u64().expect("minAvailable");
    assert!(
        (1..2).contains(&min),
        "a drain keeps one replica and can proceed"
    );

    let container = &spec["template"]["spec"]["containers"][0];
    let port_name = container["ports"][0]["name"].as_str().unwrap();
    let service = kind(&docs, "Service");
    assert!(selects(&service["spec"]["selector"], pod_labels));
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["targetPort"].as_str(), Some(port_name));

    let monitor = kind(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service_port["name"]);
    assert_eq!(
        endpoint["path"], "/metrics",
        "the exporter's telemetry path"
    );

    let secret = kind(&docs, "Secret");
    let volume = &spec["template"]["spec"]["volumes"][0];
    assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);
    for item in volume["secret"]["items"].as_sequence().unwrap() {
        let key = item["key"].as_str().unwrap();
        assert!(
            secret["stringData"].get(key).is_some(),
            "the Secret has no {key}"
        );
    }
}

#[test]
fn the_deployments_arguments_probes_and_port_work_with_the_real_binary() {
    let docs = manifests();
    let deployment = kind(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let secret = kind(&docs, "Secret");

    // The container port is the binary's default listen port.
    let help = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    assert!(
        help.contains(&format!("[default: 0.0.0.0:{port}]")),
        "the binary does not listen on {port} by default"
    );
    for var in container["env"].as_sequence().into_iter().flatten() {
        let name = var["name"].as_str().unwrap();
        assert!(help.contains(&format!("env: {name}")), "{name} is not read");
    }

    // The Secret's files where the pod mounts them, with a real database behind the URL.
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let files = tempfile::tempdir().unwrap();
    let token = secret["stringData"]["webhook-token"].as_str().unwrap();
    for item in pod["volumes"][0]["secret"]["items"].as_sequence().unwrap() {
        let content = match item["key"].as_str().unwrap() {
            "storage-url" => server.url("acquire"),
            "webhook-token" => token.to_owned(),
            other => panic!("unexpected secret key {other}"),
        };
        std::fs::write(files.path().join(item["path"].as_str().unwrap()), content).unwrap();
    }
    let args: Vec<String> = strings(&container["args"])
        .into_iter()
        .map(|a| a.replace(mount, &files.path().display().to_string()))
        .collect();
    assert!(
        args.iter().any(|a| a.starts_with("--storage.url-file=")),
        "the URL comes from a file: {args:?}"
    );
    // The harness sets the log format itself (JSON, as the Deployment does).
    assert!(args.contains(&"--log.format=json".to_owned()));
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--log.format=json")
        .collect();
    let exporter = Exporter::spawn(&args);
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let http = &container[probe]["httpGet"];
        assert_eq!(
            http["port"].as_str(),
            container["ports"][0]["name"].as_str()
        );
        let path = http["path"].as_str().unwrap();
        // Ready once the replica's connections are up, within the probes' patience.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while get(&exporter.url(path)).0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "{probe} {path} never passed"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/-/ready",
        "Ready follows the store"
    );
    // The token from the Secret is the one the exporter checks.
    let body = common::close_event("k8s-1", "1", Some("Operator"), "5", "60");
    let url = exporter.url("/webhook");
    let (status, _) = common::post(&url, "application/json", &body);
    assert_eq!(status, 401, "without the token");
    let (status, _) = common::post_with(
        &common::agent(),
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        &body,
    );
    assert_eq!(status, 200);
    assert_eq!(
        server.count("acquire", "SELECT count(*) FROM acquire_events"),
        1
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
}

#[test]
fn docker_compose_accepts_the_ha_profile() {
    let found = Command::new("docker-compose").arg("version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "docker-compose is not installed: apt-get install -y docker-compose (scripts/test does it)"
    );
    let out = Command::new("docker-compose")
        .current_dir(root())
        .args([
            "-f",
            "deploy/compose-ha.yml",
            "--profile",
            "ha",
            "config",
            "-q",
        ])
        .output()
        .expect("docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config -q: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_ha_profiles_balancer_scrapes_and_flags_name_its_two_replicas() {
    let compose: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("deploy/compose-ha.yml")).unwrap(),
    )
    .unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let exporters: Vec<String> = services
        .iter()
        .filter(|(_, s)| s["image"] == "acquire-exporter:local")
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(exporters.len(), 2, "two replicas: {exporters:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for name in &exporters {
        let s = &services[name.as_str()];
        for flag in strings(&s["command"]) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.contains(&format!("{flag} <")),
                "{name}: {flag} is not a flag"
            );
        }
        for key in s["environment"]
            .as_mapping()
            .into_iter()
            .flat_map(|m| m.keys())
        {
            let key = key.as_str().unwrap();
            assert!(
                help.contains(&format!("env: {key}")),
                "{name}: {key} is not read"
            );
        }
    }

    // haproxy's servers and Prometheus's targets are those two, on the exporter's port.
    let dir = root().join("deploy/compose-ha");
    let haproxy = dir.join("haproxy.cfg");
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&haproxy)
        .output()
        .expect("haproxy (scripts/test installs it)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let cfg = std::fs::read_to_string(&haproxy).unwrap();
    let servers: Vec<&str> = cfg
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let expected: Vec<String> = exporters.iter().map(|e| format!("{e}:9867")).collect();
    assert_eq!(servers, expected);
    assert!(cfg.contains("option httpchk GET /-/ready"));

    let prometheus = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    let p: Value = serde_yaml_ng::from_str(&prometheus).unwrap();
    assert_eq!(
        strings(&p["scrape_configs"][0]["static_configs"][0]["targets"]),
        expected
    );
    // Debian's promtool (2.42) knows neither Prometheus 3 key: checked without them.
    let older: String = prometheus
        .lines()
        .filter(|l| !l.contains("scrape_native_histograms") && !l.contains("always_scrape_classic"))
        .map(|l| {
            l.replace(
                "/etc/prometheus/rules/*.yml",
                &root().join("prometheus/rules/*.yml").display().to_string(),
            )
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), older).unwrap();
    let out = Command::new(common::promtool())
        .args(["check", "config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The URL in the secret file reaches the compose service with the password file's password.
    let url = std::fs::read_to_string(dir.join("storage-url")).unwrap();
    let password = std::fs::read_to_string(dir.join("postgres-password")).unwrap();
    assert!(url.trim().starts_with(&format!(
        "postgres://acquire:{}@postgres:5432/acquire",
        password.trim()
    )));
}

#[test]
fn the_ha_profile_is_hardened_as_the_main_stack_is() {
    let deploy = root().join("deploy");
    let compose: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(deploy.join("compose-ha.yml")).unwrap())
            .unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let named: Vec<&str> = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    let mut published = Vec::new();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        assert_eq!(
            strings(&s["profiles"]),
            ["ha"],
            "{name}: in the ha profile only"
        );
        // Every published port on the loopback, as in docker-compose.yml.
        for p in strings(&s["ports"]) {
            assert!(
                p.starts_with("127.0.0.1:") && p.matches(':').count() == 2,
                "{name}: port {p:?} is not bound to 127.0.0.1"
            );
            published.push(name.to_owned());
        }
        assert!(s["network_mode"] != "host", "{name}: host networking");
        // Repository files mounted read-only and present; other volumes declared.
        for v in strings(&s["volumes"]) {
            let parts: Vec<&str> = v.split(':').collect();
            if parts[0].starts_with('.') {
                let path = deploy.join(parts[0]);
                assert!(
                    path.exists(),
                    "{name}: mounts {}, which is missing",
                    parts[0]
                );
                assert_eq!(
                    parts.get(2).copied(),
                    Some("ro"),
                    "{name}: {v} must be read-only"
                );
            } else {
                assert!(
                    named.contains(&parts[0]),
                    "{name}: volume {} is not declared",
                    parts[0]
                );
            }
        }
        // Images pinned; the exporters built from the repository's Dockerfile.
        let image = s["image"].as_str().unwrap_or_default();
        if s.get("build").is_some() {
            let context = s["build"]["context"].as_str().expect("a build context");
            assert!(deploy.join(context).join("Dockerfile").is_file(), "{name}");
            assert_eq!(image, "acquire-exporter:local");
        } else {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
                "{name}: image {image:?} is not pinned"
            );
        }
        // A health check in exec form, but for haproxy, whose image has no client and which
        // checks the replicas itself.
        if name != "haproxy" {
            let test = strings(&s["healthcheck"]["test"]);
            assert_eq!(
                test.first().map(String::as_str),
                Some("CMD"),
                "{name}: {test:?}"
            );
        }
    }
    assert_eq!(
        published,
        ["haproxy", "prometheus-ha"],
        "only the balancer and Prometheus"
    );
    for (name, secret) in compose["secrets"].as_mapping().unwrap() {
        let file = secret["file"].as_str().unwrap();
        let file = file
            .strip_prefix("${ACQUIRE_WEBHOOK_TOKEN_FILE:-")
            .map(|f| f.trim_end_matches('}'))
            .unwrap_or(file);
        assert!(
            deploy.join(file).is_file(),
            "secret {name:?}: {file} is missing"
        );
    }

    // The replicas run as the main stack's exporter does: read-only, no capabilities, no new
    // privileges, a scratch /tmp, the token from a file, healthy on /-/healthy, after PostgreSQL.
    for name in ["exporter-a", "exporter-b"] {
        let s = &services[name];
        assert_eq!(s["read_only"], true, "{name}: a read-only root file system");
        assert_eq!(strings(&s["cap_drop"]), ["ALL"], "{name}");
        assert!(strings(&s["security_opt"]).contains(&"no-new-privileges:true".to_owned()));
        assert_eq!(strings(&s["tmpfs"]), ["/tmp"], "{name}");
        let command = strings(&s["command"]);
        assert!(command.contains(&"--webhook.token-file=/run/secrets/webhook_token".to_owned()));
        assert!(command.contains(&"--storage.url-file=/run/secrets/storage-url".to_owned()));
        assert!(
            strings(&s["healthcheck"]["test"])
                .iter()
                .any(|a| a.contains("http://127.0.0.1:9867/-/healthy")),
            "{name}"
        );
        assert_eq!(s["depends_on"]["postgres"]["condition"], "service_healthy");
    }
    assert!(
        strings(&services["postgres"]["healthcheck"]["test"]).contains(&"pg_isready".to_owned())
    );
}
