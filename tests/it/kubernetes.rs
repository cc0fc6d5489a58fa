//! The Helm chart and the sidecar example, without a cluster: `helm lint --strict`, every
//! rendering checked against the Kubernetes API schemas (kubernetes-validate --strict, at the
//! oldest Kubernetes the chart supports and the newest the tool knows) and the prometheus-operator
//! CRD schemas, the rendered config accepted by `vantage check-config`, and the rendered pod's
//! own command line run for real: its probes answer, its shards split the targets, and its ICMP
//! switch grants what it says inside a network namespace of the test's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::netns::Netns;
use crate::pki::Ca;
use crate::support::{
    self, TempDir, Vantage, closed_port, http_get, probed, quiet_peer, vantage_as_host,
    vantage_bin, wait_for,
};

pub(crate) const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/vantage");
const SIDECAR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/kubernetes/sidecar-example.yaml"
);
pub(crate) const RELEASE: &str = "vantage";
/// The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest that
/// kubernetes-validate knows.
const KUBERNETES: [&str; 2] = ["1.25.0", "1.37.0"];

/// The values files CI renders: the defaults, and each of `ci/` (every switch covered).
fn values_files() -> Vec<Option<PathBuf>> {
    let mut files: Vec<Option<PathBuf>> = std::fs::read_dir(Path::new(CHART).join("ci"))
        .unwrap()
        .map(|e| Some(e.unwrap().path()))
        .collect();
    files.sort();
    files.insert(0, None);
    files
}

/// What every test here needs (see tests/needs), `root` added where the pod runs in a network
/// namespace of its own: helm, kubernetes-validate, and node with the CRD schemas from npm.
pub(crate) fn tools(root: bool) {
    let mut needs = vec![
        "tool:helm",
        "tool:kubernetes-validate",
        "tool:node",
        "npm:tests/kubernetes",
    ];
    if root {
        needs.push("root");
    }
    support::needs(&needs);
}

/// Runs `program`, asserting success; returns its standard output.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `helm template` of the chart with these extra arguments: the manifest text.
pub(crate) fn template(args: &[&str]) -> String {
    let mut all = vec!["template", RELEASE, CHART];
    all.extend_from_slice(args);
    run("helm", &all, None)
}

fn values_args(file: &Option<PathBuf>) -> Vec<String> {
    file.iter()
        .flat_map(|f| ["-f".to_string(), f.display().to_string()])
        .collect()
}

/// The documents of a multi-document YAML stream, parsed.
pub(crate) fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .map(|doc| doc.trim_start_matches("---"))
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|doc| serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}")))
        .collect()
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// The Deployment or StatefulSet.
pub(crate) fn workload(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        .expect("a workload")
}

pub(crate) fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub(crate) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// kubernetes-validate --strict on `manifest`, for each Kubernetes version; the
/// prometheus-operator objects, which it has no schema for, go to the CRD schema check.
fn validate(manifest: &str, what: &str) {
    let dir = TempDir::new("k8s-validate");
    let file = dir.write("manifest.yaml", manifest);
    let docs = documents(manifest);
    let (operator, native): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .partition(|d| d["apiVersion"].as_str().unwrap().starts_with("monitoring."));
    for version in KUBERNETES {
        let out = run(
            "kubernetes-validate",
            &["--strict", "-k", version, file.to_str().unwrap()],
            None,
        );
        assert_eq!(
            out.matches(" passed for resource ").count(),
            native.len(),
            "{what}, Kubernetes {version}: every core object must pass:\n{out}"
        );
    }
    if !operator.is_empty() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubernetes/validate-crds.mjs");
        let out = run(
            "node",
            &[script.to_str().unwrap()],
            Some(&serde_json::to_string(&operator).unwrap()),
        );
        assert_eq!(out.matches("ok ").count(), operator.len(), "{what}: {out}");
    }
}

#[test]
fn the_chart_lints_strictly_with_every_values_file() {
    tools(false);
    for file in values_files() {
        let mut args = vec!["lint".to_string(), "--strict".into(), CHART.into()];
        args.extend(values_args(&file));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run("helm", &args, None);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
    }
    // The longest release name Helm takes, sharded: the StatefulSet's name leaves room for the
    // controller-revision-hash label (name, "-", up to 10 characters), and every name fits 63.
    let longest = "a".repeat(53);
    let out = run(
        "helm",
        &["template", &longest, CHART, "--set", "shards=3"],
        None,
    );
    for doc in documents(&out) {
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert!(name.len() <= 63, "{name}");
        if doc["kind"] == "StatefulSet" {
            assert!(name.len() <= 52, "{name}");
        }
    }
    // The values schema refuses a typo instead of ignoring it.
    let typo = Command::new("helm")
        .args(["template", RELEASE, CHART, "--set", "shard=3"])
        .output()
        .unwrap();
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("'shard' not allowed"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
}

#[test]
fn every_rendering_and_the_sidecar_example_pass_the_kubernetes_schemas() {
    tools(false);
    let expected = |file: &Option<PathBuf>| -> BTreeSet<String> {
        let name = file
            .as_ref()
            .map(|f| f.file_name().unwrap().to_str().unwrap().to_string());
        let kinds: &[&str] = match name.as_deref() {
            None => &[
                "ConfigMap",
                "Deployment",
                "PodDisruptionBudget",
                "Service",
                "ServiceAccount",
            ],
            Some("full-values.yaml") => &[
                "ConfigMap",
                "NetworkPolicy",
                "PodDisruptionBudget",
                "Probe",
                "PrometheusRule",
                "Service",
                "ServiceAccount",
                "ServiceMonitor",
                "StatefulSet",
            ],
            Some("netraw-values.yaml") => &["Deployment", "Service"],
            // Push only: no Service, no ServiceMonitor.
            Some("edge-values.yaml") => &[
                "ConfigMap",
                "Deployment",
                "PodDisruptionBudget",
                "ServiceAccount",
            ],
            Some(other) => panic!("add the kinds that ci/{other} renders to this test"),
        };
        kinds.iter().map(|k| k.to_string()).collect()
    };
    for file in values_files() {
        let args = values_args(&file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let manifest = template(&args);
        assert_eq!(kinds(&documents(&manifest)), expected(&file), "{file:?}");
        validate(&manifest, &format!("{file:?}"));
    }
    let sidecar = std::fs::read_to_string(SIDECAR).unwrap();
    assert_eq!(
        kinds(&documents(&sidecar)),
        ["ConfigMap", "Deployment", "PodMonitor"]
            .iter()
            .map(|k| k.to_string())
            .collect()
    );
    validate(&sidecar, "sidecar-example.yaml");
}

/// Lays out, under `root`, what the pod's container sees under /etc/vantage: the config from
/// its ConfigMap, and a CA certificate for every file the config names in another mounted
/// folder (`../kubernetes/ca.crt` and the like). Returns the config's path.
fn materialize(root: &Path, docs: &[Value], container_name: &str) -> PathBuf {
    let pod = workload(docs);
    let vantage = container(pod, container_name);
    let args = strings(&vantage["args"]);
    let config_path = args
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .expect("--config.file in the container's args");
    let relative = config_path
        .strip_prefix("/etc/vantage/")
        .expect("the config under /etc/vantage");
    let (folder, key) = relative.split_once('/').unwrap();
    let mounts = vantage["volumeMounts"].as_array().unwrap();
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    let volume_name = mount(&format!("/etc/vantage/{folder}"))["name"].clone();
    let volume = pod["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume_name)
        .unwrap();
    let map_name = volume["configMap"]["name"].as_str().unwrap();
    let map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == map_name)
        .unwrap_or_else(|| panic!("the ConfigMap {map_name} is not rendered"));
    let text = map["data"][key]
        .as_str()
        .expect("the config key in the ConfigMap");
    std::fs::create_dir_all(root.join(folder)).unwrap();
    let config = root.join(folder).join(key);
    std::fs::write(&config, text).unwrap();

    let ca = Ca::root("materialized CA").cert.pem();
    let named = regex::Regex::new(r"\.\./([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)").unwrap();
    for found in named.captures_iter(text) {
        let (dir, file) = (&found[1], &found[2]);
        mount(&format!("/etc/vantage/{dir}"));
        std::fs::create_dir_all(root.join(dir)).unwrap();
        // Certificates and keys get a PEM; anything else (a password, a token) a word.
        let pem = [".crt", ".pem", ".key"].iter().any(|e| file.ends_with(e));
        let content = if pem {
            ca.as_str()
        } else {
            "materialized-secret"
        };
        std::fs::write(root.join(dir).join(file), content).unwrap();
    }
    // A file SD folder (`../DIR/*.json`) gets one list, of one target.
    let lists = regex::Regex::new(r"\.\./([A-Za-z0-9_.-]+)/\*\.json").unwrap();
    for found in lists.captures_iter(text) {
        let dir = &found[1];
        mount(&format!("/etc/vantage/{dir}"));
        std::fs::create_dir_all(root.join(dir)).unwrap();
        let list = r#"[{"targets": ["https://shop.example.com/"], "labels": {"team": "web"}}]"#;
        std::fs::write(root.join(dir).join("materialized.json"), list).unwrap();
    }
    config
}

/// `vantage check-config` on the rendered config, laid out as the pod sees it.
fn check_config(docs: &[Value], container_name: &str) -> String {
    let dir = TempDir::new("k8s-config");
    let config = materialize(&dir.0, docs, container_name);
    let out = Command::new(vantage_bin())
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_rendered_configs_pass_check_config_as_the_pod_mounts_them() {
    tools(false);
    let defaults = check_config(&documents(&template(&[])), "vantage");
    assert!(defaults.contains("targets: 1\n"), "{defaults}");
    assert!(
        defaults.contains("kubernetes-api (tcp kubernetes.default.svc:443)"),
        "{defaults}"
    );
    let full = Path::new(CHART).join("ci/full-values.yaml");
    let full = check_config(
        &documents(&template(&["-f", full.to_str().unwrap()])),
        "vantage",
    );
    assert!(full.contains("targets: 6\n"), "{full}");
    assert!(
        full.contains("target source websites (file_sd ")
            && full.contains("web-targets/*.json): targets: 1"),
        "{full}"
    );
    let sidecar = check_config(
        &documents(&std::fs::read_to_string(SIDECAR).unwrap()),
        "vantage",
    );
    assert!(sidecar.contains("targets: 2\n"), "{sidecar}");
    let edge = Path::new(CHART).join("ci/edge-values.yaml");
    let edge = check_config(
        &documents(&template(&["-f", edge.to_str().unwrap()])),
        "vantage",
    );
    for receiver in [
        "remote_write central: https://prometheus.example.com/api/v1/write with credentials",
        "remote_write mimir: https://mimir.example.com/api/v1/push with credentials",
    ] {
        assert!(edge.contains(receiver), "{edge}");
    }
    assert!(!edge.contains("materialized-secret"), "{edge}");
}

#[test]
fn the_prometheus_rule_is_alerts_yml_and_the_service_monitor_scrapes_job_vantage() {
    tools(false);
    let full = Path::new(CHART).join("ci/full-values.yaml");
    let docs = documents(&template(&["-f", full.to_str().unwrap()]));
    let alerts_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let alerts_text = std::fs::read_to_string(&alerts_path).unwrap();
    let alerts: Value = serde_saphyr::from_str(&alerts_text).unwrap();
    let rule = find(&docs, "PrometheusRule");
    assert_eq!(
        rule["spec"], alerts,
        "the PrometheusRule drifted from alerts.yml"
    );
    assert!(!alerts["groups"].as_array().unwrap().is_empty());
    let dir = TempDir::new("k8s-rules");
    let extracted = dir.write("rules.json", &rule["spec"].to_string());
    let checked = run(
        "promtool",
        &["check", "rules", extracted.to_str().unwrap()],
        None,
    );
    assert!(checked.contains("SUCCESS"), "{checked}");

    let monitor = find(&docs, "ServiceMonitor");
    let endpoint = &monitor["spec"]["endpoints"][0];
    let relabelings = endpoint["relabelings"].as_array().unwrap();
    let job = relabelings
        .iter()
        .find(|r| r["targetLabel"] == "job")
        .expect("the scrape sets job")["replacement"]
        .as_str()
        .unwrap();
    // The values' own relabelings come after the job's.
    assert_eq!(
        relabelings.last().unwrap(),
        &json!({"action": "labeldrop", "regex": "namespace|service|endpoint|container"})
    );
    assert!(
        alerts_text.contains(&format!("up{{job=\"{job}\"}}")),
        "the rules look for another job than {job:?}"
    );
    let selects = |service: &Value| {
        let labels = &service["metadata"]["labels"];
        let wanted = monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        wanted.iter().all(|(k, v)| &labels[k] == v)
            && monitor["spec"]["selector"]["matchExpressions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| {
                    e["operator"] == "DoesNotExist" && labels[e["key"].as_str().unwrap()].is_null()
                })
    };
    let services: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Service").collect();
    assert_eq!(
        services.len(),
        2,
        "the Service and the shards' headless one"
    );
    let scraped: Vec<&&Value> = services.iter().filter(|s| selects(s)).collect();
    assert_eq!(
        scraped.len(),
        1,
        "each pod is scraped through one Service only"
    );
    assert!(scraped[0]["spec"]["clusterIP"].is_null());
    let port_names: Vec<&Value> = scraped[0]["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert!(port_names.contains(&&endpoint["port"]));
}

/// Every `*_file` value under `value`, with its key: the files a config section names.
fn named_files(value: &Value, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v.as_str() {
                    Some(path) if key.ends_with("_file") => {
                        found.push((key.clone(), path.to_string()));
                    }
                    _ => named_files(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| named_files(v, found)),
        _ => {}
    }
}

#[test]
fn the_edge_values_only_push_with_no_service_and_their_secrets_mounted() {
    tools(false);
    let edge = Path::new(CHART).join("ci/edge-values.yaml");
    let edge = edge.to_str().unwrap();
    let docs = documents(&template(&["-f", edge]));
    let kinds = kinds(&docs);
    assert!(
        !kinds.contains("Service") && !kinds.contains("ServiceMonitor"),
        "{kinds:?}"
    );

    // The config holds the remote_write entries as the values give them.
    let map = find(&docs, "ConfigMap");
    let config: Value = serde_saphyr::from_str(map["data"]["exporter.yml"].as_str().unwrap())
        .expect("the rendered config is YAML");
    let remote_write = config["remote_write"].as_array().expect("remote_write");
    assert_eq!(remote_write.len(), 2, "{config}");
    assert_eq!(
        remote_write[0]["url"],
        "https://prometheus.example.com/api/v1/write"
    );
    assert_eq!(remote_write[0]["basic_auth"]["username"], "office-berlin");
    assert_eq!(remote_write[1]["headers"]["X-Scope-OrgID"], "team-a");
    assert_eq!(config["targets"].as_array().unwrap().len(), 2);

    // Each file it names lies in a folder mounted read-only from the Secret that holds it.
    let mut files = Vec::new();
    named_files(&config["remote_write"], &mut files);
    let pod = workload(&docs);
    let vantage = container(pod, "vantage");
    let volumes = pod["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let mut secrets = BTreeSet::new();
    for (key, path) in &files {
        let (folder, file) = path
            .strip_prefix("../")
            .and_then(|p| p.split_once('/'))
            .unwrap_or_else(|| panic!("{key}: {path} is not ../FOLDER/FILE"));
        let mount = vantage["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == format!("/etc/vantage/{folder}"))
            .unwrap_or_else(|| panic!("{key}: nothing mounted for {path}"));
        assert_eq!(mount["readOnly"], true, "{mount}");
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
        let secret = &volume["secret"];
        let name = secret["secretName"].as_str().expect("a Secret volume");
        if let Some(items) = secret["items"].as_array() {
            assert!(
                items.iter().any(|i| i["path"] == file),
                "{key}: {file} is not among the items of {name}: {volume}"
            );
        }
        secrets.insert(name.to_string());
    }
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(
        secrets,
        BTreeSet::from(["vantage-remote-write".into(), "vantage-mimir-token".into()])
    );

    // The kubelet still asks the pod's own port.
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(vantage[probe]["httpGet"]["port"], "http-metrics", "{probe}");
    }
    assert_eq!(vantage["ports"][0]["name"], "http-metrics");

    // What cannot work is refused, not rendered.
    for (args, refusal) in [
        (
            vec!["--set", "serviceMonitor.enabled=true"],
            "serviceMonitor.enabled needs service.enabled",
        ),
        (
            vec!["--set", "existingConfigMap=mine"],
            "with existingConfigMap, put remote_write in that ConfigMap",
        ),
        (
            vec![
                "--set-json",
                r#"config={"remote_write": [{"url": "http://a/api/v1/write"}]}"#,
            ],
            "remote_write is set twice",
        ),
        (
            vec![
                "--set-json",
                r#"secretMounts=[{"name": "config", "secretName": "x"}]"#,
            ],
            "secretMounts",
        ),
        (
            vec![
                "--set-json",
                r#"targetSources={"configMaps": [{"name": "remote-write", "configMapName": "x"}]}"#,
            ],
            "\"remote-write\" is also a secretMounts name",
        ),
    ] {
        let out = Command::new("helm")
            .args(["template", RELEASE, CHART, "-f", edge])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} rendered");
        assert!(stderr.contains(refusal), "{args:?}: {stderr}");
    }
}

/// The image's user, from the Dockerfile's `USER uid:gid`.
fn image_user() -> (u64, u64) {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let (uid, gid) = user.trim().split_once(':').unwrap();
    (uid.parse().unwrap(), gid.parse().unwrap())
}

#[test]
fn the_pod_is_locked_down_and_each_icmp_mode_grants_only_what_it_names() {
    tools(false);
    let (uid, gid) = image_user();
    for mode in ["sysctl", "netRaw", "none"] {
        let docs = documents(&template(&["--set", &format!("icmp={mode}")]));
        let pod = &workload(&docs)["spec"]["template"]["spec"];
        let context = &container(workload(&docs), "vantage")["securityContext"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(context["readOnlyRootFilesystem"], true, "{mode}");
        assert_eq!(context["allowPrivilegeEscalation"], false, "{mode}");
        assert_eq!(strings(&context["capabilities"]["drop"]), ["ALL"], "{mode}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let added = strings(&context["capabilities"]["add"]);
        let sysctls = &pod["securityContext"]["sysctls"];
        match mode {
            "netRaw" => {
                assert_eq!(added, ["NET_RAW"]);
                assert_eq!(pod["securityContext"]["runAsUser"], 0);
                assert!(sysctls.is_null());
            }
            _ => {
                assert!(added.is_empty(), "{mode}");
                assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
                assert_eq!(pod["securityContext"]["runAsUser"], uid, "the image's user");
                assert_eq!(pod["securityContext"]["runAsGroup"], gid);
            }
        }
        if mode == "sysctl" {
            assert_eq!(
                sysctls,
                &json!([{"name": "net.ipv4.ping_group_range", "value": "0 2147483647"}])
            );
        } else {
            assert!(sysctls.is_null(), "{mode}");
        }
    }
}

/// Runs `vantage probe 127.0.0.1 --type=icmp` as the rendered pod would, in a network namespace
/// whose ping_group_range is the pod's sysctl (or closed to every group without one): the
/// pod's user and group, and only the capabilities its container adds.
fn ping_as_the_pod(mode: &str) -> (bool, String) {
    let docs = documents(&template(&["--set", &format!("icmp={mode}")]));
    let pod = &workload(&docs)["spec"]["template"]["spec"];
    let context = &pod["securityContext"];
    let range = pod["securityContext"]["sysctls"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "net.ipv4.ping_group_range"))
        .map_or("1 0".to_string(), |s| {
            s["value"].as_str().unwrap().to_string()
        });
    let added: Vec<String> =
        strings(&container(workload(&docs), "vantage")["securityContext"]["capabilities"]["add"])
            .iter()
            .map(|c| format!(",+{}", c.to_lowercase()))
            .collect();
    let namespace = Netns::new();
    namespace.exec(&[
        "sh",
        "-c",
        &format!("echo '{range}' > /proc/sys/net/ipv4/ping_group_range"),
    ]);
    let out = Command::new("ip")
        .args(["netns", "exec", &namespace.0, "setpriv"])
        .arg(format!("--reuid={}", context["runAsUser"]))
        .arg(format!("--regid={}", context["runAsGroup"]))
        .args(["--clear-groups", "--inh-caps=-all"])
        .arg(format!("--bounding-set=-all{}", added.concat()))
        .args([
            vantage_bin(),
            "probe",
            "127.0.0.1",
            "--type=icmp",
            "--timeout=3s",
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn each_icmp_mode_pings_or_fails_as_documented_with_the_pods_rights() {
    tools(true);
    for mode in ["sysctl", "netRaw"] {
        let (ok, text) = ping_as_the_pod(mode);
        assert!(ok, "{mode}: {text}");
        assert!(text.contains("3 of 3 answered"), "{mode}: {text}");
    }
    let (ok, text) = ping_as_the_pod("none");
    assert!(!ok, "{text}");
    assert!(text.contains("FAILURE permission_denied"), "{text}");
}

/// The rendered container's command line, with its paths under /etc/vantage moved to `root`
/// and its listen address to a free loopback port. Checks that the port it listens on is the
/// port the container declares.
fn local_command(root: &Path, workload: &Value) -> (Vec<String>, std::net::SocketAddr) {
    let vantage = container(workload, "vantage");
    let declared = vantage["ports"][0]["containerPort"].as_u64().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let args = strings(&vantage["args"])
        .into_iter()
        .map(|arg| {
            if let Some(listen) = arg.strip_prefix("--web.listen-address=") {
                assert_eq!(
                    listen,
                    format!(":{declared}"),
                    "listens on the declared port"
                );
                format!("--web.listen-address={addr}")
            } else {
                arg.replace("/etc/vantage/", &format!("{}/", root.display()))
            }
        })
        .collect();
    (args, addr)
}

fn local_config(port: u16, targets: usize) -> String {
    let targets: Vec<Value> = (0..targets)
        .map(|i| json!({"name": format!("svc-{i}"), "type": "tcp", "host": "127.0.0.1", "port": port}))
        .collect();
    json!({"defaults": {"interval": "1s", "timeout": "500ms"}, "targets": targets}).to_string()
}

#[test]
fn the_rendered_pod_runs_answers_its_probes_and_labels_its_location() {
    tools(false);
    let port = quiet_peer();
    let docs = documents(&template(&[
        "--set",
        "location=eu-west-1",
        "--set-json",
        &format!("config={}", local_config(port, 2)),
    ]));
    let dir = TempDir::new("k8s-pod");
    materialize(&dir.0, &docs, "vantage");
    let pod = workload(&docs);
    let (args, addr) = local_command(&dir.0, pod);
    let mut command = Command::new(vantage_bin());
    command.args(&args);
    let vantage = Vantage::spawn(command, addr);
    let spec = container(pod, "vantage");
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = spec[probe]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(spec[probe]["httpGet"]["port"], spec["ports"][0]["name"]);
        let answer = http_get(addr, path, None).unwrap();
        assert_eq!(answer.status, 200, "{probe} {path}");
    }
    wait_for(Duration::from_secs(15), "both targets probed", || {
        probed(&vantage).len() == 2
    });
    let body = http_get(addr, "/metrics", None).unwrap().body;
    assert!(
        body.contains("probe_success{name=\"svc-0\",probe=\"tcp\"")
            && body.contains("location=\"eu-west-1\"} 1"),
        "{body}"
    );
}

#[test]
fn the_full_values_statefulset_runs_and_splits_the_targets_over_its_pods() {
    tools(true);
    let port = quiet_peer();
    // Every switch on (extraArgs repeating a flag the chart passes among them), with targets on
    // loopback instead of the cluster's.
    let full = Path::new(CHART).join("ci/full-values.yaml");
    let docs = documents(&template(&[
        "-f",
        full.to_str().unwrap(),
        "--set-json",
        &format!("config={}", local_config(port, 30)),
    ]));
    let set = workload(&docs);
    assert_eq!(set["kind"], "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 3);
    let headless = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == set["spec"]["serviceName"])
        .expect("the StatefulSet's governing Service");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let dir = TempDir::new("k8s-shards");
    materialize(&dir.0, &docs, "vantage");
    // Pod N of a StatefulSet is named, and has the hostname, NAME-N.
    let name = set["metadata"]["name"].as_str().unwrap();
    let pods: Vec<Vantage> = (0..3)
        .map(|ordinal| {
            let (args, addr) = local_command(&dir.0, set);
            let mut command = vantage_as_host(&format!("{name}-{ordinal}"));
            command.args(&args);
            Vantage::spawn(command, addr)
        })
        .collect();
    let mut shares: Vec<BTreeSet<String>> = Vec::new();
    wait_for(Duration::from_secs(20), "all 30 targets probed", || {
        shares = pods.iter().map(probed).collect();
        shares.iter().map(BTreeSet::len).sum::<usize>() >= 30
    });
    let union: BTreeSet<&String> = shares.iter().flatten().collect();
    assert_eq!(union.len(), 30);
    assert_eq!(
        shares.iter().map(BTreeSet::len).sum::<usize>(),
        30,
        "{shares:?}"
    );
    for (ordinal, pod) in pods.iter().enumerate() {
        let body = http_get(pod.addr, "/metrics", None).unwrap().body;
        assert!(
            body.contains(&format!(
                "vantage_shard_info{{index=\"{ordinal}\",count=\"3\"}} 1"
            )),
            "{body}"
        );
        assert!(!shares[ordinal].is_empty(), "pod {ordinal} probes nothing");
        assert!(body.contains("location=\"eu-west-1\"} 1"), "{body}");
        assert!(
            pod.log().contains("level=debug"),
            "extraArgs' --log.level=debug overrides the chart's --log.level=info:\n{}",
            pod.log()
        );
    }
}
