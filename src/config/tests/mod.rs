//! Every validation rule, with the line, column and key path its error must name: the file
//! as a whole and the keys every target shares here, each type's keys, the schedule and the
//! fingerprints in the files beside this one.

mod fingerprints;
mod mistakes;
mod modules;
mod remote_write;
mod schedule;
mod size;
mod sources;
mod types;

use std::fmt::Write as _;

use ::http::Method;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::net::Host;
use crate::net::{IpVersion, dns};
use crate::probe::http::StatusCodes;
use crate::probe::tcp::Step;
use crate::probe::tcp::starttls::Dialect;
use crate::probe::{Assertion, Probe};
use crate::shard::Shard;
use crate::tls::KeyExchange;

fn ok(yaml: &str) -> Config {
    parse(yaml, "t.yml", &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    match parse(yaml, "t.yml", &LoadOptions::default()) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.0,
    }
}

/// The only error is at `line:column`, on `path`, and its message contains `needle`.
#[track_caller]
fn single(yaml: &str, line: u64, column: u64, path: &str, needle: &str) {
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    let e = &errs[0];
    assert_eq!(
        (e.line, e.column, e.path.as_str()),
        (line, column, path),
        "wrong place: {e}"
    );
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
    assert!(
        e.to_string()
            .starts_with(&format!("t.yml:{line}:{column}: ")),
        "{e}"
    );
}

const TCP: &str = "targets:\n  - name: a\n    type: tcp\n    host: 127.0.0.1\n    port: 80\n";

#[test]
fn minimal_tcp_target_gets_the_built_in_defaults() {
    let c = ok(TCP);
    assert_eq!(c.max_concurrent_probes, 512);
    let t = &c.targets[0];
    assert_eq!(t.interval, Duration::from_secs(30));
    assert_eq!(t.policy.timeout, Duration::from_secs(10));
    assert_eq!(t.policy.retries, 0);
    assert_eq!(t.interval_on_failure, None);
    assert_eq!(t.probe.target(), "127.0.0.1:80");
    assert_eq!(
        t.labels.text(),
        r#"name="a",probe="tcp",target="127.0.0.1:80",location="""#
    );
}

#[test]
fn unknown_key_is_an_error_at_the_key() {
    single(
        "targets:\n  - name: a\n    type: tcp\n    host: h\n    prot: 80\n",
        5,
        5,
        "targets[0].prot",
        "unknown field `prot`",
    );
}

#[test]
fn unknown_key_in_a_nested_table_names_the_full_path() {
    single(
        "targets:\n  - name: a\n    type: tcp\n    host: h\n    port: 1\n    tcp:\n      sned: x\n",
        7,
        7,
        "targets[0].tcp.sned",
        "unknown field `sned`",
    );
    single(
        "targets:\n  - name: a\n    type: tcp\n    host: h\n    port: 1\n    tls:\n      min_verison: TLSv1.2\n",
        7,
        7,
        "targets[0].tls.min_verison",
        "unknown field",
    );
}

#[test]
fn a_bare_number_duration_is_refused_with_the_unit_hint() {
    single(
        "defaults:\n  interval: 30\ntargets: []\n",
        2,
        13,
        "defaults.interval",
        "\"30s\"",
    );
}

#[test]
fn a_malformed_duration_names_the_units() {
    single(
        "targets:\n  - {name: a, type: tcp, host: h, port: 1, timeout: 1.5s}\n",
        2,
        53,
        "targets[0].timeout",
        "ms, s, m, h, d, w",
    );
}

#[test]
fn an_unknown_type_lists_the_types() {
    single(
        "targets:\n  - name: a\n    type: tpc\n",
        3,
        11,
        "targets[0].type",
        "expected one of icmp, tcp, http, dns",
    );
}

#[test]
fn tables_of_other_types_are_refused_on_tcp_targets() {
    single(
        &format!("{TCP}    http: {{method: GET}}\n"),
        6,
        11,
        "targets[0].http",
        "http targets only",
    );
    single(
        &format!("{TCP}    url: http://x/\n"),
        6,
        10,
        "targets[0].url",
        "`url` is for http targets",
    );
}

#[test]
fn a_missing_field_names_the_target() {
    single(
        "targets:\n  - type: tcp\n",
        2,
        5,
        "targets[0]",
        "missing field `name`",
    );
    single(
        "targets:\n  - name: a\n    type: tcp\n    port: 1\n",
        2,
        5,
        "targets[0].host",
        "tcp targets need `host`",
    );
    single(
        "targets:\n  - name: a\n    type: tcp\n    host: h\n",
        2,
        5,
        "targets[0].port",
        "tcp targets need `port`",
    );
}

#[test]
fn duplicate_names_point_at_the_second_use_and_the_first() {
    let yaml = format!("{TCP}  - name: a\n    type: tcp\n    host: h\n    port: 2\n");
    single(&yaml, 6, 11, "targets[1].name", "first used on line 2");
}

#[test]
fn a_duplicate_key_is_an_error() {
    single(
        "targets:\n  - name: a\n    name: b\n    type: tcp\n",
        3,
        5,
        "targets[0]",
        "duplicate mapping key",
    );
}

#[test]
fn ports_must_be_in_range() {
    for (port, column) in [("0", 11), ("65536", 11), ("-1", 11)] {
        single(
            &format!("targets:\n  - name: a\n    type: tcp\n    host: h\n    port: {port}\n"),
            5,
            column,
            "targets[0].port",
            "out of range 1-65535",
        );
    }
}

#[test]
fn hosts_must_be_names_or_addresses() {
    single(
        "targets:\n  - {name: a, type: tcp, host: \"h:80\", port: 80}\n",
        2,
        32,
        "targets[0].host",
        "includes a port",
    );
}

#[test]
fn every_mistake_is_reported_in_file_order() {
    let yaml = "targets:\n  - name: a\n    type: tcp\n    host: \"bad host\"\n    port: 0\n  - name: a\n    type: icmp\n";
    let errs = errors(yaml);
    let places: Vec<(u64, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        places,
        vec![
            (4, "targets[0].host"),
            (5, "targets[0].port"),
            (6, "targets[1].host"),
            (6, "targets[1].name"),
        ]
    );
}

#[test]
fn yaml_syntax_errors_have_a_location() {
    let errs = errors("targets: [\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 1, "{}", errs[0]);
}

#[test]
fn a_missing_file_names_the_file() {
    let err = load(
        Path::new("/nonexistent/vantage.yml"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 1);
    let text = err.to_string();
    assert!(
        text.starts_with("/nonexistent/vantage.yml: cannot read the config file:"),
        "{text}"
    );
}

#[test]
fn the_shipped_config_is_valid_and_probes_only_this_machine() {
    let c = load(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/exporter.yml")),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.targets.is_empty());
    for t in &c.targets {
        let host = match &t.probe {
            Probe::Tcp(p) => &p.host,
            Probe::Http(p) => &p.url.host,
            Probe::Icmp(p) => &p.host,
            Probe::Dns(_) => panic!("a dns target needs a DNS server, which is no local check"),
        };
        let local = match host {
            Host::Ip(ip) => ip.is_loopback(),
            Host::Name(name) => name == "localhost",
        };
        assert!(local, "{} probes {host}, which needs a network", t.name);
    }
    let kinds: Vec<&str> = c.targets.iter().map(|t| t.probe.kind()).collect();
    assert!(
        kinds.contains(&"tcp") && kinds.contains(&"http"),
        "{kinds:?}"
    );
}

#[test]
fn every_documented_table_parses_so_typos_fail_today() {
    // A complete SPEC example: it must fail only on files that do not exist here, never
    // because the parser does not know a documented key.
    let yaml = r#"
targets:
  - name: a
    type: http
    url: https://x/
    http:
      method: GET
      valid_status_codes: [200, "300-399"]
      headers: {Authorization: {file: /run/token}, X-A: b}
      body: "{}"
      body_regex: ok
      body_not_regex: error
      body_size_limit: 1MiB
      follow_redirects: true
      http2: true
    tls:
      enabled: true
      verify: true
      server_name: x
      skip_hostname_verify: false
      min_version: TLSv1.2
      ca_file: /ca.pem
      trust: mozilla
      cert_file: /c.pem
      key_file: /k.pem
      alert_before_expiry: 30d
    assertions:
      - {type: connection, status: success}
      - {type: response_time, less_than: 500ms}
      - {type: certificate_expiry, greater_than: 30d}
      - {type: tls_version, in: [TLSv1.2, TLSv1.3]}
  - name: b
    type: icmp
    host: h
    icmp: {count: 3, max_loss_ratio: 0.5, payload_size: 56}
  - name: c
    type: dns
    host: h
    dns: {server: "10.0.0.53:53", record_type: AAAA, transport: tcp, expect_addresses: ["2001:db8::1"], expect_regex: x, valid_rcodes: [NOERROR]}
  - name: d
    type: tcp
    host: h
    port: 25
    tls: {starttls: smtp}
"#;
    let errs = errors(yaml);
    let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
    // The http target parses in full and fails only on its files, which do not exist here.
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        messages[0].contains("cannot read /run/token"),
        "{messages:?}"
    );
    assert!(messages[1].contains("cannot read /ca.pem"), "{messages:?}");
}

#[test]
fn an_error_at_defaults_does_not_cite_defaults_for_its_own_values() {
    single(
        "defaults: {interval: 10s, timeout: 20s}\ntargets: []\n",
        1,
        36,
        "defaults.timeout",
        "timeout 20s must be shorter than interval 10s: a run must end",
    );
    let errs = errors("defaults: {interval: 10s, timeout: 20s}\ntargets: []\n");
    assert!(
        !errs[0].message.contains("from defaults"),
        "{}",
        errs[0].message
    );
}

#[test]
fn a_key_named_like_the_parser_wrapper_keeps_its_path() {
    single(
        "labels: {values: [1]}\ntargets: []\n",
        1,
        18,
        "labels.values",
        "",
    );
}

#[test]
fn octal_and_short_ipv4_forms_are_refused_as_hosts() {
    single(
        "targets:\n  - {name: a, type: tcp, host: 010.0.0.1, port: 80}\n",
        2,
        32,
        "targets[0].host",
        "looks like an IPv4 address",
    );
}
