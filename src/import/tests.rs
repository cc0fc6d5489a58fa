//! The whole conversion: targets of each prober, names, timeouts, the header and the verdict.

use super::*;

const BLACKBOX: &str = "modules:\n  web: {prober: http, timeout: 5s}\n  port: {prober: tcp}\n  ping: {prober: icmp}\n  ns: {prober: dns, dns: {query_name: example.com, query_type: A}}\n  gz: {prober: http, http: {compression: gzip}}\n";

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
        c.config
            .contains("    dns:\n      server: \"10.0.0.53:5353\"\n      record_type: \"A\"\n"),
        "{}",
        c.config
    );
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
