//! `modules:` and targets that name them.

use super::*;

const MODULES: &str = "modules:
  http_2xx:
    type: http
    timeout: 4s
    http: {valid_status_codes: [\"200-299\"], method: HEAD}
    allow: {networks: [127.0.0.0/8], ports: [80, 443]}
  tcp_tls:
    type: tcp
    tls: {verify: false}
  dns_www:
    type: dns
    host: www.vantage.test
    dns: {record_type: AAAA}
";

#[test]
fn a_target_takes_its_modules_type_settings_and_tables() {
    let config = ok(&format!(
        "{MODULES}targets:
  - name: web
    module: http_2xx
    url: http://127.0.0.1:8080/
    interval: 1m
  - name: slow
    module: http_2xx
    url: http://127.0.0.1:8080/slow
    timeout: 9s
  - name: tls
    type: tcp
    module: tcp_tls
    host: 127.0.0.1
    port: 443
"
    ));
    let web = &config.targets[0];
    let Probe::Http(http) = &web.probe else {
        panic!("{:?}", web.probe)
    };
    assert_eq!(http.method, Method::HEAD);
    assert_eq!(web.policy.timeout, Duration::from_secs(4));
    assert_eq!(web.interval, Duration::from_secs(60));
    assert_eq!(config.targets[1].policy.timeout, Duration::from_secs(9));
    let Probe::Tcp(tcp) = &config.targets[2].probe else {
        panic!()
    };
    assert!(tcp.tls.is_some());
    // Built on their own too, for /probe, with their allow lists.
    assert_eq!(
        config.modules.keys().collect::<Vec<_>>(),
        ["dns_www", "http_2xx", "tcp_tls"]
    );
    assert!(config.modules["http_2xx"].allow.is_some());
    assert!(config.modules["tcp_tls"].allow.is_none());
    assert!(config.modules["dns_www"].asks_name);
    assert!(!config.modules["http_2xx"].asks_name);
}

#[test]
fn a_modules_key_exchange_is_its_targets_and_its_own() {
    let yaml = "modules:
  pq:
    type: tcp
    tls: {key_exchange: post_quantum}
targets:
  - {name: a, module: pq, host: 127.0.0.1, port: 443}
";
    let config = ok(yaml);
    let options = |probe: &Probe| match probe {
        Probe::Tcp(tcp) => tcp.tls.as_ref().unwrap().client.options.key_exchange,
        other => panic!("{other:?}"),
    };
    assert_eq!(options(&config.targets[0].probe), KeyExchange::PostQuantum);
    assert_eq!(
        options(&config.modules["pq"].template.probe),
        KeyExchange::PostQuantum,
        "what /probe runs"
    );
    let errs = errors(&yaml.replace("port: 443}", "port: 443, tls: {key_exchange: classic}}"));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].message.contains("tables are not merged"),
        "{}",
        errs[0]
    );
    let before = config.targets[0].fingerprint;
    let after = ok(&yaml.replace("post_quantum", "classic")).targets[0].fingerprint;
    assert_ne!(
        before, after,
        "a change of key exchange restarts the target"
    );
}

#[test]
fn a_modules_content_is_in_its_targets_fingerprints() {
    let target = "targets:\n  - {name: web, module: http_2xx, url: \"http://127.0.0.1/\"}\n";
    let before = ok(&format!("{MODULES}{target}")).targets[0].fingerprint;
    let changed = MODULES.replace("method: HEAD", "method: GET");
    let after = ok(&format!("{changed}{target}")).targets[0].fingerprint;
    assert_ne!(before, after);
    let unrelated = MODULES.replace("verify: false", "verify: true");
    assert_eq!(
        ok(&format!("{unrelated}{target}")).targets[0].fingerprint,
        before
    );
}

#[test]
fn a_target_without_type_or_module_is_named() {
    single(
        "targets:\n  - name: a\n    host: h\n    port: 1\n",
        2,
        5,
        "targets[0].type",
        "missing `type` (tcp, http, icmp or dns), or a `module` that gives one",
    );
}

#[test]
fn module_mistakes_are_reported_once_at_the_module() {
    let yaml = "modules:
  bad:
    type: http
    http: {method: \"NO PE\"}
targets:
  - {name: a, module: bad, url: \"http://h/\"}
  - {name: b, module: bad, url: \"http://h/\"}
";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].path, "modules.bad.http.method");
    assert_eq!(errs[0].line, 4);
}

#[test]
fn targets_and_modules_that_disagree_are_named() {
    let cases = [
        (
            "  - {name: a, module: nope, url: \"http://h/\"}\n",
            "targets[0].module",
            "unknown module \"nope\"; modules: dns_www, http_2xx, tcp_tls",
        ),
        (
            "  - {name: a, type: tcp, module: http_2xx, host: h, port: 1}\n",
            "targets[0].type",
            "module \"http_2xx\" is a http module",
        ),
        (
            "  - {name: a, module: http_2xx, url: \"http://h/\", http: {method: GET}}\n",
            "targets[0].http",
            "module \"http_2xx\" sets `http` (line 5); tables are not merged",
        ),
        (
            "  - {name: a, module: http_2xx, url: \"http://h/\", host: h}\n",
            "targets[0].host",
            "http targets take a `url`",
        ),
    ];
    for (target, path, needle) in cases {
        let errs = errors(&format!("{MODULES}targets:\n{target}"));
        assert_eq!(errs.len(), 1, "{target}: {errs:#?}");
        assert_eq!(errs[0].path, path, "{target}");
        assert!(errs[0].message.contains(needle), "{target}: {}", errs[0]);
    }
}

#[test]
fn module_keys_of_their_own_are_checked() {
    single(
        "modules:\n  m:\n    type: tcp\n    host: h\n",
        4,
        11,
        "modules.m.host",
        "only a dns module names a host",
    );
    single(
        "modules:\n  \"a b\":\n    type: icmp\n",
        3,
        5,
        "modules",
        "invalid module name \"a b\"",
    );
    single(
        "modules:\n  m:\n    type: icmp\n    allow: {networks: [10.0.0.1/8]}\n",
        4,
        24,
        "modules.m.allow.networks[0]",
        "host bits set",
    );
    single(
        "modules:\n  m:\n    type: icmp\n    url: x\n",
        4,
        5,
        "modules.m.url",
        "unknown field `url`",
    );
}
