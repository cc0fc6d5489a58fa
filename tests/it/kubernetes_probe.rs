//! The Helm chart's `/probe` pattern: prometheus-operator `Probe` resources that call this
//! release's `/probe` through its Service, with a module the rendered config serves.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::kubernetes::{
    CHART, RELEASE, container, documents, find, strings, template, tools, workload,
};

#[test]
fn probe_resources_call_this_releases_probe_endpoint_with_a_module_it_serves() {
    tools(false);
    let full = Path::new(CHART).join("ci/full-values.yaml");
    let docs = documents(&template(&["-f", full.to_str().unwrap()]));
    let probe = find(&docs, "Probe");
    let service = docs
        .iter()
        .find(|d| {
            d["kind"] == "Service" && d["metadata"]["labels"]["vantage.dev/headless"].is_null()
        })
        .expect("the Service");
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(
        probe["spec"]["prober"],
        json!({
            "url": format!("{}.default.svc:{port}", service["metadata"]["name"].as_str().unwrap()),
            "path": "/probe"
        })
    );
    let args = strings(&container(workload(&docs), "vantage")["args"]);
    assert!(args.contains(&"--web.enable-probe".to_string()), "{args:?}");
    // The module the Probe names is in the rendered config, with an allow list that admits
    // the Probe's targets (check-config of the rendered config runs in another test).
    let config_map = find(&docs, "ConfigMap");
    let config: Value =
        serde_saphyr::from_str(config_map["data"]["exporter.yml"].as_str().unwrap()).unwrap();
    let module = probe["spec"]["module"].as_str().unwrap();
    let allow = &config["modules"][module]["allow"];
    assert_eq!(allow["hosts"], json!(["*.example.com"]), "{config}");
    for target in strings(&probe["spec"]["targets"]["staticConfig"]["static"]) {
        assert!(target.starts_with("https://") && target.contains(".example.com/"));
    }

    // Probes without the endpoint, or without the Service they call through, are refused.
    for (set, says) in [
        ("probeEndpoint.enabled=false", "needs probeEndpoint.enabled"),
        ("service.enabled=false", "needs service.enabled"),
    ] {
        let refused = Command::new("helm")
            .args(["template", RELEASE, CHART, "-f", full.to_str().unwrap()])
            .args(["--set", set, "--set", "serviceMonitor.enabled=false"])
            .output()
            .unwrap();
        assert!(!refused.status.success(), "{set}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(says),
            "{set}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
}
