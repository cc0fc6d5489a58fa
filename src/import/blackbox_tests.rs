//! The module keys, the IP protocol, `tls_config` and icmp.

use super::*;
use crate::import::emit::document;
use crate::import::node::parse;
use crate::import::shared::tls_config;

/// The converted modules as YAML, and the findings as printed.
fn convert_all(yaml: &str) -> (String, Vec<String>) {
    let doc = parse(yaml).unwrap();
    let mut findings = Findings::new("b.yml");
    let modules = modules(&doc, &mut findings).unwrap();
    let mut map = Map::new();
    for m in modules {
        map.set(&m.name, Out::Map(m.out));
    }
    let items = findings.items().iter().map(|i| i.to_string()).collect();
    (document(&map), items)
}

#[test]
fn prober_and_timeout_become_type_and_timeout() {
    let (out, items) = convert_all("modules:\n  t:\n    prober: tcp\n    timeout: 1500ms\n");
    assert_eq!(out, "t:\n  type: \"tcp\"\n  timeout: \"1s500ms\"\n");
    assert!(items.is_empty(), "{items:?}");
}

#[test]
fn a_prober_vantage_lacks_leaves_the_module_out_with_its_line() {
    let (out, items) = convert_all("modules:\n  g:\n    prober: grpc\n");
    assert_eq!(out, "");
    assert_eq!(
        items,
        [
            "b.yml:3: modules.g.prober: not converted: prober \"grpc\": vantage has no gRPC health check; the module and its targets are left out"
        ]
    );
}

#[test]
fn ip_protocols_map_to_ip_version_where_vantage_has_the_same_choice() {
    let case = |settings: &str| {
        convert_all(&format!(
            "modules:\n  i:\n    prober: icmp\n    icmp: {{{settings}}}\n"
        ))
    };
    let (out, items) = case("preferred_ip_protocol: ip4, ip_protocol_fallback: false");
    assert!(out.contains("ip_version: \"4\""), "{out}");
    assert!(items.is_empty());
    let (out, _) = case("preferred_ip_protocol: ip6, ip_protocol_fallback: false");
    assert!(out.contains("ip_version: \"6\""), "{out}");
    // IPv4 first with a fallback is vantage's auto, its default.
    let (out, items) = case("preferred_ip_protocol: ip4");
    assert!(!out.contains("ip_version") && items.is_empty(), "{out}");
    let (out, items) = case("preferred_ip_protocol: ip6");
    assert!(!out.contains("ip_version"), "{out}");
    assert_eq!(items.len(), 1);
    assert!(
        items[0].starts_with("b.yml:4: modules.i.icmp.preferred_ip_protocol: not converted: vantage has no IPv6-first choice"),
        "{items:?}"
    );
}

#[test]
fn icmp_payload_converts_and_what_vantage_lacks_is_named() {
    let (out, items) = convert_all(
        "modules:\n  i:\n    prober: icmp\n    icmp:\n      payload_size: 100\n      dont_fragment: true\n      ttl: 3\n      source_ip_address: 10.0.0.1\n",
    );
    assert!(out.contains("icmp:\n    payload_size: 100\n"), "{out}");
    let keys: Vec<&str> = items
        .iter()
        .map(|i| &i[..i.find(": not").unwrap()])
        .collect();
    assert_eq!(
        keys,
        [
            "b.yml:6: modules.i.icmp.dont_fragment",
            "b.yml:7: modules.i.icmp.ttl",
            "b.yml:8: modules.i.icmp.source_ip_address",
        ]
    );
}

#[test]
fn tls_config_maps_each_option_and_names_the_rest() {
    let doc = parse(
        "insecure_skip_verify: true\nca_file: /etc/ca.pem\ncert_file: c.pem\nkey_file: /k.pem\nserver_name: x.example\nmin_version: TLS13\nmax_version: TLS13\n",
    )
    .unwrap();
    let mut findings = Findings::new("b.yml");
    let tls = tls_config(&doc, "m.tls_config", &mut findings);
    assert_eq!(
        document(&tls),
        "verify: false\nca_file: \"/etc/ca.pem\"\ncert_file: \"c.pem\"\nkey_file: \"/k.pem\"\nserver_name: \"x.example\"\nmin_version: \"TLSv1.3\"\n"
    );
    let items: Vec<String> = findings.items().iter().map(|i| i.to_string()).collect();
    assert!(
        items[0]
            .starts_with("b.yml:3: m.tls_config.cert_file: note: blackbox read this relative path"),
        "{items:?}"
    );
    assert!(
        items[1].starts_with("b.yml:7: m.tls_config.max_version: not converted"),
        "{items:?}"
    );
    assert_eq!(items.len(), 2);
}

#[test]
fn tls_below_1_2_is_named_as_vantage_never_offers_it() {
    let doc = parse("min_version: TLS10\n").unwrap();
    let mut findings = Findings::new("b.yml");
    let tls = tls_config(&doc, "m.tls_config", &mut findings);
    assert!(tls.is_empty());
    assert!(
        findings.items()[0]
            .to_string()
            .contains("min_version: not converted: vantage never offers TLS below 1.2")
    );
}

#[test]
fn a_file_without_modules_is_no_blackbox_config() {
    let doc = parse("scrape_configs: []\n").unwrap();
    let e = modules(&doc, &mut Findings::new("b.yml")).unwrap_err();
    assert!(e.contains("no `modules`"), "{e}");
}

#[test]
fn a_table_for_another_prober_is_named() {
    let (_, items) = convert_all("modules:\n  m:\n    prober: tcp\n    http:\n      method: GET\n");
    assert_eq!(
        items,
        [
            "b.yml:4: modules.m.http: not converted: the module's prober is tcp, which does not read this table"
        ]
    );
}

#[test]
fn a_timeout_past_vantages_default_interval_gives_the_module_prometheus_interval() {
    let (out, items) = convert_all("modules:\n  t:\n    prober: tcp\n    timeout: 30s\n");
    assert_eq!(
        out,
        "t:\n  type: \"tcp\"\n  timeout: \"30s\"\n  interval: \"1m\"\n"
    );
    assert!(
        items[0].starts_with(
            "b.yml:4: modules.t.timeout: note: longer than vantage's default interval"
        ),
        "{items:?}"
    );
}
