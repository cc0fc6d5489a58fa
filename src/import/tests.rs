//! The whole conversion: targets of each prober, names, timeouts, the header and the verdict.

use super::*;

const BLACKBOX: &str = "modules:\n  web: {prober: http, timeout: 5s}\n  port: {prober: tcp}\n  ping: {prober: icmp}\n  ns: {prober: dns, dns: {query_name: example.com, query_type: A}}\n  gz: {prober: http, http: {compression: gzip}}\n  mx: {prober: dns, timeout: 3s, dns: {query_name: example.com, query_type: MX, transport_protocol: tcp, valid_rcodes: [NOERROR], preferred_ip_protocol: ip4, ip_protocol_fallback: false, validate_answer_rrs: {fail_if_none_matches_regexp: ['mail']}}}\n";

fn prometheus(module: &str, targets: &str) -> String {
    format!(
        "scrape_configs:\n  - job_name: j\n    metrics_path: /probe\n    scrape_interval: 30s\n    params: {{module: [{module}]}}\n    static_configs: [{{targets: [{targets}]}}]\n    relabel_configs:\n      - {{source_labels: [__address__], target_label: __param_target}}\n"
    )
}

fn run(module: &str, targets: &str) -> Conversion {
    let p = prometheus(module, targets);
    convert(
        Source {
            file: "b.yml",
            text: BLACKBOX,
        },
        Some(Source {
            file: "p.yml",
            text: &p,
        }),
    )
    .unwrap()
}

#[test]
fn each_prober_writes_its_target_keys() {
    let c = run("web", "example.com, 'https://example.com/x', example.com");
    let lost = |c: &Conversion| {
        c.items
            .iter()
            .any(|i| i.file == "p.yml" && i.kind == Kind::NotConverted)
    };
    assert!(!lost(&c), "{:?}", c.items);
    assert!(c.config.contains("  - name: \"j/example.com\"\n    module: \"web\"\n    url: \"http://example.com\"\n    interval: \"30s\"\n"), "{}", c.config);
    // The module's 5s is sooner than the scrape's 10s less blackbox's offset: no override.
    assert!(!c.config.contains("timeout: \"9s500ms\""), "{}", c.config);
    assert!(
        c.config.contains("name: \"j/example.com (2)\""),
        "{}",
        c.config
    );
    let c = run("port", "'db:5432', '[::1]:22'");
    assert!(
        c.config.contains("host: \"db\"\n    port: 5432\n"),
        "{}",
        c.config
    );
    assert!(
        c.config.contains("host: \"::1\"\n    port: 22\n"),
        "{}",
        c.config
    );
    assert!(c.config.contains("timeout: \"9s500ms\""), "{}", c.config);
    let c = run("ping", "10.0.0.1");
    assert!(c.config.contains("host: \"10.0.0.1\""), "{}", c.config);
    let c = run("ns", "'10.0.0.53:5353'");
    assert!(
        c.config.contains(
            "  - name: \"j/10.0.0.53:5353\"\n    # as module ns, with its server\n    type: \"dns\"\n    \
             host: \"example.com\"\n    dns:\n      server: \"10.0.0.53:5353\"\n      record_type: \"A\"\n    \
             interval: \"30s\"\n    timeout: \"9s500ms\"\n"
        ),
        "{}",
        c.config
    );
}

/// The written config read back, as JSON values.
fn read_back(config: &str) -> serde_json::Value {
    serde_saphyr::from_str(config).unwrap()
}

#[test]
fn a_dns_module_has_its_whole_dns_table_and_its_targets_that_table_with_their_server() {
    let c = run("mx", "10.0.0.53, '[2001:db8::53]:5353'");
    assert!(
        c.config.contains(
            "  mx:\n    type: \"dns\"\n    timeout: \"3s\"\n    ip_version: \"4\"\n    host: \"example.com\"\n    \
             dns:\n      record_type: \"MX\"\n      transport: \"tcp\"\n      valid_rcodes: [\"NOERROR\"]\n      \
             expect_regex: \"mail\"\n"
        ),
        "{}",
        c.config
    );
    let doc = read_back(&c.config);
    let module = &doc["modules"]["mx"];
    let targets = doc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{}", c.config);
    for (target, server) in targets.iter().zip(["10.0.0.53", "[2001:db8::53]:5353"]) {
        // Written whole, not through the module (which it could not add a server to).
        assert_eq!(target.get("module"), None, "{target}");
        assert_eq!(target["type"], "dns");
        for key in ["host", "ip_version", "timeout"] {
            assert_eq!(target[key], module[key], "{key} of {target}");
        }
        let mut dns = target["dns"].as_object().unwrap().clone();
        assert_eq!(dns.remove("server"), Some(server.into()), "{target}");
        assert_eq!(&serde_json::Value::Object(dns), &module["dns"], "{target}");
    }
    assert!(
        c.config
            .contains("  - name: \"j/10.0.0.53\"\n    # as module mx, with its server\n"),
        "{}",
        c.config
    );
    // The module's allow list is its targets' servers, the module keeps it.
    assert_eq!(module["allow"]["ports"], serde_json::json!([53, 5353]));
}

#[test]
fn a_target_vantage_cannot_take_is_named_and_the_verdict_says_so() {
    let c = run("port", "nohostport");
    assert!(!c.complete());
    assert!(c.items.iter().any(|i| i.to_string().starts_with("p.yml:6: scrape_configs.j.static_configs[0].targets[0]: not converted: a tcp target is HOST:PORT")), "{:?}", c.items);
    let c = run("ns", "ns1.example.com");
    assert!(
        c.items
            .iter()
            .any(|i| i.message.contains("takes as an IP address")),
        "{:?}",
        c.items
    );
    let c = run("missing", "x");
    assert!(
        c.items.iter().any(|i| i
            .message
            .contains("its module \"missing\" is not in the blackbox config")),
        "{:?}",
        c.items
    );
}

#[test]
fn the_header_names_the_sources_and_what_was_not_converted() {
    let c = run("gz", "x");
    assert!(
        c.config
            .starts_with("# Converted by `vantage import-blackbox`"),
        "{}",
        c.config
    );
    assert!(c.config.contains("from b.yml and p.yml.\n"), "{}", c.config);
    assert!(
        c.config
            .contains("#   b.yml:6: modules.gz.http.compression: not converted"),
        "{}",
        c.config
    );
    assert!(!c.complete());
}

#[test]
fn input_that_is_not_the_config_it_should_be_is_an_error() {
    let e = convert(
        Source {
            file: "b.yml",
            text: "a: [",
        },
        None,
    )
    .err()
    .unwrap();
    assert!(e.starts_with("b.yml: "), "{e}");
    let e = convert(
        Source {
            file: "b.yml",
            text: BLACKBOX,
        },
        Some(Source {
            file: "p.yml",
            text: "x: 1\n",
        }),
    )
    .err()
    .unwrap();
    assert!(e.contains("p.yml: it is not a Prometheus config"), "{e}");
}

#[test]
fn modules_a_probe_job_used_get_an_allow_list_of_its_targets_the_rest_a_comment() {
    let c = run("web", "'https://Example.com/x', 'http://10.0.0.1:8080'");
    assert!(
        c.config.contains(
            "  web:\n    type: \"http\"\n    timeout: \"5s\"\n    # whom /probe may reach with it: the static targets of its jobs\n    allow:\n      networks: [\"10.0.0.1/32\"]\n      hosts: [\"example.com\"]\n      ports: [443, 8080]\n"
        ),
        "{}",
        c.config
    );
    assert!(
        c.config.contains(
            "  # allow: {networks: [...], hosts: [...], ports: [...]}\n  port:\n    type: \"tcp\"\n"
        ),
        "{}",
        c.config
    );
    assert!(
        c.config
            .contains("  # /probe runs a module only within its allow list, and this one has none:\n  # no /probe job of the Prometheus config probes a target with it. To call it there, give it one:\n"),
        "{}",
        c.config
    );
    // One note for them all, at the first such module.
    let notes: Vec<String> = c
        .items
        .iter()
        .map(|i| i.to_string())
        .filter(|i| i.contains("no allow list"))
        .collect();
    assert_eq!(
        notes,
        [
            "b.yml:3: modules: note: port, ping, ns, gz, mx have no allow list, so /probe refuses them (no /probe job probes a target with them): a comment above each shows the shape of one"
        ]
    );
}

#[test]
fn without_a_prometheus_config_no_module_has_a_list() {
    let c = convert(
        Source {
            file: "b.yml",
            text: "modules:\n  t: {prober: tcp}\n",
        },
        None,
    )
    .unwrap();
    assert!(!c.config.contains("\n    allow:"), "{}", c.config);
    assert!(
        c.config.contains("this one has none:\n  # no Prometheus config was given to take its targets from. To call it there, give it one:\n  # allow: {networks: [...], hosts: [...], ports: [...]}\n  t:\n"),
        "{}",
        c.config
    );
    let items: Vec<String> = c.items.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        items,
        [
            "b.yml:2: modules: note: t has no allow list, so /probe refuses it (no Prometheus config was given to take targets from): a comment above each shows the shape of one"
        ]
    );
    assert!(c.complete());
}

#[test]
fn a_dns_modules_list_names_its_servers_and_their_ports() {
    let c = run("ns", "'10.0.0.53:5353', 10.0.0.54");
    assert!(
        c.config.contains(
            "    allow:\n      networks: [\"10.0.0.53/32\", \"10.0.0.54/32\"]\n      ports: [53, 5353]\n"
        ),
        "{}",
        c.config
    );
}

#[test]
fn a_jobs_listings_become_target_sources_that_vantage_loads() {
    let p = "scrape_configs:\n  - job_name: web\n    metrics_path: /probe\n    scrape_interval: 20s\n    params: {module: [web]}\n    file_sd_configs: [{files: [sd/web.json]}]\n    http_sd_configs:\n      - {url: 'http://127.0.0.1:9/sd', refresh_interval: 10s}\n      - {url: 'http://127.0.0.1:9/more'}\n    relabel_configs:\n      - {source_labels: [__address__], target_label: __param_target}\n";
    let c = convert(
        Source {
            file: "b.yml",
            text: BLACKBOX,
        },
        Some(Source {
            file: "p.yml",
            text: p,
        }),
    )
    .unwrap();
    for expected in [
        "target_sources:\n  - name: \"web\"\n",
        "    template:\n      type: \"http\"\n      timeout: \"5s\"\n      interval: \"20s\"\n    file_sd:\n      files: [\"sd/web.json\"]\n",
        "  - name: \"web (2)\"\n",
        // A poll every 10s cannot take vantage's default 10s timeout.
        "    http_sd:\n      url: \"http://127.0.0.1:9/sd\"\n      refresh_interval: \"10s\"\n      timeout: \"5s\"\n",
        "  - name: \"web (3)\"\n",
    ] {
        assert!(c.config.contains(expected), "{expected}\n---\n{}", c.config);
    }
    // What vantage makes of it: three sources, the file's list missing (a mistake of the
    // source's, not the config's), the servers not polled yet.
    let config = crate::config::parse(&c.config, "exporter.yml", &Default::default())
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", c.config));
    let states: Vec<_> = config
        .sources
        .iter()
        .map(|s| (s.source.name.as_str(), s.errors.len()))
        .collect();
    assert_eq!(states, [("web", 1), ("web (2)", 0), ("web (3)", 0)]);
}
