//! Every validation rule, with the line, column and key path its error must name.

use std::fmt::Write as _;

use ::http::Method;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::*;
use crate::net::Host;
use crate::net::{IpVersion, dns};
use crate::probe::http::StatusCodes;
use crate::probe::tcp::Step;
use crate::probe::tcp::starttls::Dialect;

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
        t.labels,
        vec![
            ("name".to_string(), "a".to_string()),
            ("probe".to_string(), "tcp".to_string()),
            ("target".to_string(), "127.0.0.1:80".to_string()),
            ("location".to_string(), String::new()),
        ]
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
fn icmp_and_dns_targets_get_their_defaults() {
    let c = ok(
        "targets:\n  - {name: i, type: icmp, host: 127.0.0.1}\n  - {name: d, type: dns, host: example.com}\n  - {name: p, type: dns, host: 127.0.0.1, dns: {record_type: PTR, server: 10.0.0.53}}\n",
    );
    let Probe::Icmp(i) = &c.targets[0].probe else {
        panic!("not icmp")
    };
    assert_eq!((i.count, i.payload_size, i.max_loss_ratio), (3, 56, 1.0));
    let Probe::Dns(d) = &c.targets[1].probe else {
        panic!("not dns")
    };
    assert_eq!(d.name.to_string(), "example.com.");
    assert_eq!(d.record_type, RecordType::A);
    assert_eq!(d.server, None, "the system resolver");
    assert_eq!(d.valid_rcodes, vec![ResponseCode::NoError]);
    let Probe::Dns(p) = &c.targets[2].probe else {
        panic!("not dns")
    };
    assert_eq!(p.name.to_string(), "1.0.0.127.in-addr.arpa.");
    assert_eq!(p.server, Some("10.0.0.53:53".parse().unwrap()));
}

#[test]
fn icmp_and_dns_mistakes_are_reported_where_they_are_written() {
    let icmp = "targets:\n  - name: i\n    type: icmp\n    host: 127.0.0.1\n";
    single(
        &format!("{icmp}    icmp: {{count: 0}}\n"),
        5,
        19,
        "targets[0].icmp.count",
        "from 1 to 100",
    );
    single(
        &format!("{icmp}    icmp: {{max_loss_ratio: 1.5}}\n"),
        5,
        28,
        "targets[0].icmp.max_loss_ratio",
        "from 0 to 1",
    );
    single(
        &format!("{icmp}    port: 7\n"),
        5,
        11,
        "targets[0].port",
        "tcp targets only",
    );
    let dns = "targets:\n  - name: d\n    type: dns\n    host: example.com\n";
    single(
        &format!("{dns}    dns: {{server: ns1.example.com}}\n"),
        5,
        19,
        "targets[0].dns.server",
        "not an IP address",
    );
    single(
        &format!("{dns}    dns: {{valid_rcodes: [NOSUCH]}}\n"),
        5,
        25,
        "targets[0].dns.valid_rcodes",
        "not a response code",
    );
    single(
        &format!("{dns}    dns: {{expect_regex: \"(\"}}\n"),
        5,
        25,
        "targets[0].dns.expect_regex",
        "invalid regex",
    );
    single(
        &format!("{dns}    tls: {{}}\n"),
        5,
        10,
        "targets[0].tls",
        "tcp and http targets only",
    );
    single(
        &format!("{dns}    dns: {{record_type: MX, expect_addresses: [10.0.0.1]}}\n"),
        5,
        46,
        "targets[0].dns.expect_addresses",
        "MX records hold no addresses",
    );
    single(
        &format!("{dns}    dns: {{server: \"10.0.0.53:0\"}}\n"),
        5,
        19,
        "targets[0].dns.server",
        "port must be from 1",
    );
    single(
        &format!("{dns}    ip_version: 6\n    dns: {{server: 10.0.0.53}}\n"),
        6,
        19,
        "targets[0].dns.server",
        "not an IPv6 address",
    );
    single(
        "targets:\n  - name: d\n    type: dns\n    host: 10.0.0.1\n",
        4,
        11,
        "targets[0].host",
        "record_type: PTR",
    );
    single(
        &format!("{TCP}    dns: {{server: 10.0.0.53, record_type: MX}}\n"),
        6,
        43,
        "targets[0].dns.record_type",
        "applies to dns targets",
    );
    let c = ok(&format!(
        "{TCP}    dns: {{server: \"[2001:db8::53]:5353\", transport: tcp}}\n"
    ));
    let Probe::Tcp(t) = &c.targets[0].probe else {
        panic!("not tcp")
    };
    assert_eq!(
        t.resolver,
        Some(dns::Server {
            addr: "[2001:db8::53]:5353".parse().unwrap(),
            transport: dns::Transport::Tcp
        })
    );
}

#[test]
fn a_tls_table_enables_verified_tls_with_the_host_as_server_name() {
    let config = ok(&format!("{TCP}    tls: {{}}\n"));
    let Probe::Tcp(tcp) = &config.targets[0].probe else {
        panic!("not tcp")
    };
    let tls = tcp.tls.as_ref().expect("tls is on");
    assert_eq!(tls.client.options, crate::tls::TlsOptions::default());
    assert!(matches!(
        tls.server_name,
        rustls::pki_types::ServerName::IpAddress(_)
    ));
    let off = ok(&format!(
        "{TCP}    tls: {{enabled: false, verify: false}}\n"
    ));
    let Probe::Tcp(tcp) = &off.targets[0].probe else {
        panic!("not tcp")
    };
    assert!(tcp.tls.is_none());
}

#[test]
fn tls_options_are_checked_where_they_are_written() {
    single(
        &format!("{TCP}    tls: {{min_version: TLSv1.1}}\n"),
        6,
        24,
        "targets[0].tls.min_version",
        "TLSv1.1",
    );
    single(
        &format!("{TCP}    tls:\n      ca_file: /nonexistent/ca.pem\n"),
        7,
        16,
        "targets[0].tls.ca_file",
        "cannot read /nonexistent/ca.pem",
    );
    single(
        &format!("{TCP}    tls:\n      cert_file: c.pem\n"),
        7,
        18,
        "targets[0].tls.key_file",
        "cert_file and key_file go together",
    );
    single(
        &format!("{TCP}    tls:\n      server_name: \"not a name\"\n"),
        7,
        20,
        "targets[0].tls.server_name",
        "neither a DNS name nor an IP address",
    );
    single(
        &format!("{TCP}    tls:\n      alert_before_expiry: 0s\n"),
        7,
        28,
        "targets[0].tls.alert_before_expiry",
        "longer than 0s",
    );
    single(
        &format!("{TCP}    tls:\n      enabled: false\n      starttls: smtp\n"),
        8,
        17,
        "targets[0].tls.starttls",
        "`enabled: false` turns off",
    );
    single(
        &format!("{TCP}    tcp: {{send: \"x\"}}\n    tls: {{starttls: imap}}\n"),
        7,
        21,
        "targets[0].tls.starttls",
        "the imap dialogue itself; it cannot be combined with tcp.send",
    );
    single(
        &format!("{TCP}    tls: {{starttls: smtps}}\n"),
        6,
        21,
        "targets[0].tls.starttls",
        "smtps",
    );
}

#[test]
fn starttls_turns_tls_on_with_its_dialect() {
    let c = ok(&format!(
        "{TCP}    tls: {{starttls: postgres, server_name: db.test}}\n"
    ));
    let Probe::Tcp(tcp) = &c.targets[0].probe else {
        panic!("not tcp")
    };
    assert_eq!(tcp.starttls, Some(Dialect::Postgres));
    let tls = tcp.tls.as_ref().expect("starttls needs the TLS client");
    assert_eq!(format!("{:?}", tls.server_name), "DnsName(\"db.test\")");
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let dir = std::env::temp_dir().join(format!("vantage-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    single(
        &format!("{TCP}    tls:\n      ca_file: {}\n", empty.display()),
        7,
        16,
        "targets[0].tls.ca_file",
        "holds no PEM certificate",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn assertions_are_built_in_order() {
    let config = ok(&format!(
        "{TCP}    tls: {{}}\n    assertions:\n      - {{type: connection, status: success}}\n      - {{type: response_time, less_than: 500ms}}\n      - {{type: certificate_expiry, greater_than: 30d}}\n      - {{type: tls_version, in: [TLSv1.3]}}\n"
    ));
    assert_eq!(
        config.targets[0].assertions,
        [
            Assertion::Connection { succeeds: true },
            Assertion::ResponseTime {
                less_than: Duration::from_millis(500)
            },
            Assertion::CertificateExpiry {
                greater_than: Duration::from_secs(30 * 86_400)
            },
            Assertion::TlsVersion {
                one_of: vec![crate::tls::TlsVersion::Tls13]
            },
        ]
    );
}

#[test]
fn assertions_are_checked_where_they_are_written() {
    single(
        &format!("{TCP}    assertions:\n      - {{type: certificate_expiry, greater_than: 30d}}\n"),
        7,
        16,
        "targets[0].assertions[0].type",
        "needs TLS",
    );
    single(
        &format!(
            "{TCP}    assertions:\n      - {{type: response_time, less_than: 1s, status: success}}\n"
        ),
        7,
        54,
        "targets[0].assertions[0].status",
        "does not apply to response_time",
    );
    single(
        &format!("{TCP}    assertions:\n      - {{type: response_time}}\n"),
        7,
        16,
        "targets[0].assertions[0].less_than",
        "need `less_than`",
    );
    single(
        &format!("{TCP}    assertions:\n      - {{type: connection, status: up}}\n"),
        7,
        36,
        "targets[0].assertions[0].status",
        "not one of success, failure",
    );
    single(
        &format!(
            "{TCP}    assertions:\n      - {{type: connection, status: success}}\n      - {{type: connection, status: failure}}\n"
        ),
        8,
        16,
        "targets[0].assertions[1].type",
        "already given on line 7",
    );
}

const HTTP: &str = "targets:\n  - name: w\n    type: http\n    url: http://127.0.0.1:8080/health\n";

#[test]
fn a_minimal_http_target_gets_get_200_299_redirects_and_1mib() {
    let c = ok(HTTP);
    let t = &c.targets[0];
    assert_eq!(t.probe.kind(), "http");
    assert_eq!(t.probe.target(), "http://127.0.0.1:8080/health");
    let Probe::Http(h) = &t.probe else {
        panic!("not http")
    };
    assert_eq!(h.method, Method::GET);
    assert_eq!(h.valid_status_codes, vec![StatusCodes::SUCCESS]);
    assert_eq!(h.body_size_limit, 1 << 20);
    assert!(h.follow_redirects);
    assert_eq!(h.url.authority(), "127.0.0.1:8080");
    assert_eq!(h.tls.client.options.alpn, vec![b"http/1.1".to_vec()]);
}

#[test]
fn http_options_are_built_and_secrets_are_marked() {
    let dir = std::env::temp_dir().join(format!("vantage-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "Bearer s3cret\n").unwrap();
    let yaml = "targets:\n  - name: w\n    type: http\n    url: https://api.example.com/x\n    http:\n      method: POST\n      headers: {Authorization: {file: token}, X-Env: prod, Cookie: a=b}\n      body: '{}'\n      valid_status_codes: [200, \"300-399\"]\n      body_regex: ok\n      body_size_limit: 4KiB\n      follow_redirects: false\n      http2: true\n";
    let file = dir.join("exporter.yml");
    let c = parse(yaml, file.to_str().unwrap(), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let Probe::Http(h) = &c.targets[0].probe else {
        panic!("not http")
    };
    assert_eq!(h.method, Method::POST);
    let headers: Vec<(&str, &[u8], bool)> = h
        .headers
        .iter()
        .map(|x| (x.name.as_str(), x.value.as_bytes(), x.secret))
        .collect();
    assert_eq!(
        headers,
        vec![
            ("authorization", &b"Bearer s3cret"[..], true),
            ("cookie", &b"a=b"[..], true),
            ("x-env", &b"prod"[..], false),
        ]
    );
    assert_eq!(
        h.valid_status_codes,
        vec![
            StatusCodes {
                first: 200,
                last: 200
            },
            StatusCodes {
                first: 300,
                last: 399
            }
        ]
    );
    assert_eq!(h.body_size_limit, 4096);
    assert!(!h.follow_redirects);
    assert_eq!(
        h.tls.client.options.alpn,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let debug = format!("{:?}", c.targets[0]);
    assert!(!debug.contains("s3cret"), "a secret leaks through Debug");
    let summary = c.summary();
    assert!(
        summary.contains("POST with authorization (secret), cookie (secret), x-env"),
        "{summary}"
    );
    assert!(!summary.contains("s3cret"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn http_mistakes_are_reported_where_they_are_written() {
    let target = |rest: &str| format!("{HTTP}{rest}");
    single(
        "targets:\n  - name: w\n    type: http\n",
        2,
        5,
        "targets[0].url",
        "http targets need `url`",
    );
    single(
        "targets:\n  - name: w\n    type: http\n    url: example.com/health\n",
        4,
        10,
        "targets[0].url",
        "not a URL",
    );
    single(
        &target("    host: x\n"),
        5,
        11,
        "targets[0].host",
        "take a `url`",
    );
    single(
        &target("    http: {method: get}\n"),
        5,
        20,
        "targets[0].http.method",
        "upper-case",
    );
    single(
        &target("    http: {http2: true}\n"),
        5,
        19,
        "targets[0].http.http2",
        "needs an https URL",
    );
    single(
        &target("    http: {headers: {Connection: keep-alive}}\n"),
        5,
        34,
        "targets[0].http.headers.Connection",
        "vantage sets Connection itself",
    );
    single(
        &target("    http: {headers: {\"bad name\": x}}\n"),
        5,
        34,
        "targets[0].http.headers.bad name",
        "not a valid header name",
    );
    single(
        &target("    http: {headers: {Authorization: {file: /nonexistent/token}}}\n"),
        5,
        37,
        "targets[0].http.headers.Authorization",
        "cannot read /nonexistent/token",
    );
    single(
        &target("    http: {headers: {Host: \"a b\"}}\n"),
        5,
        28,
        "targets[0].http.headers.Host",
        "Host must be a host name",
    );
    single(
        &target("    http: {valid_status_codes: []}\n"),
        5,
        32,
        "targets[0].http.valid_status_codes",
        "at least one",
    );
    single(
        &target("    http: {valid_status_codes: [200, 999]}\n"),
        5,
        38,
        "targets[0].http.valid_status_codes[1]",
        "not an HTTP status code",
    );
    single(
        &target("    http: {body_size_limit: 0}\n"),
        5,
        29,
        "targets[0].http.body_size_limit",
        "from 1 byte",
    );
    single(
        &target("    http: {body_regex: \"(\"}\n"),
        5,
        24,
        "targets[0].http.body_regex",
        "invalid regex",
    );
    single(
        "targets:\n  - name: w\n    type: http\n    url: https://x.example/\n    tls: {enabled: false}\n",
        5,
        10,
        "targets[0].tls.enabled",
        "always uses TLS",
    );
    single(
        &target("    tls: {starttls: smtp}\n"),
        5,
        21,
        "targets[0].tls.starttls",
        "tcp targets",
    );
}

#[test]
fn tls_assertions_need_an_https_url_on_http_targets() {
    let yaml = |url: &str| {
        format!(
            "targets:\n  - name: w\n    type: http\n    url: {url}\n    assertions: [{{type: certificate_expiry, greater_than: 7d}}]\n"
        )
    };
    ok(&yaml("https://x.example/"));
    single(
        &yaml("http://x.example/"),
        5,
        25,
        "targets[0].assertions[0].type",
        "or use an https URL",
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
fn timeout_must_be_shorter_than_interval_and_the_error_points_at_the_target() {
    single(
        &format!("{TCP}    interval: 10s\n    timeout: 10s\n"),
        7,
        14,
        "targets[0].timeout",
        "must be shorter than interval 10s",
    );
    // Only the interval is the target's own: the error points there and names the default.
    single(
        &format!("defaults:\n  timeout: 20s\n{TCP}    interval: 15s\n"),
        8,
        15,
        "targets[0].interval",
        "from defaults, line 2",
    );
}

#[test]
fn a_bad_default_is_reported_once_at_defaults_not_at_every_target() {
    let yaml =
        format!("defaults:\n  timeout: 40s\n{TCP}  - {{name: b, type: tcp, host: h, port: 1}}\n");
    single(&yaml, 2, 12, "defaults.timeout", "the built-in default");
}

#[test]
fn zero_durations_are_refused() {
    single(
        &format!("{TCP}    timeout: 0s\n"),
        6,
        14,
        "targets[0].timeout",
        "longer than 0s",
    );
    single(
        &format!("{TCP}    interval: 0s\n"),
        6,
        15,
        "targets[0].interval",
        "longer than 0s",
    );
}

#[test]
fn interval_on_failure_must_outlast_the_timeout() {
    single(
        &format!("{TCP}    timeout: 5s\n    interval_on_failure: 5s\n"),
        7,
        26,
        "targets[0].interval_on_failure",
        "longer than timeout 5s",
    );
}

#[test]
fn retries_must_fit_in_the_timeout_and_not_be_negative() {
    single(
        &format!("{TCP}    timeout: 2s\n    retries: 1\n    retry_delay: 2s\n"),
        8,
        18,
        "targets[0].retry_delay",
        "shorter than timeout 2s",
    );
    single(
        &format!("{TCP}    retries: -1\n"),
        6,
        14,
        "targets[0].retries",
        "0 or more",
    );
}

#[test]
fn defaults_are_inherited_and_targets_override_them() {
    let c = ok(&format!(
        "defaults:\n  interval: 1m\n  timeout: 3s\n  retries: 2\n  retry_delay: 500ms\n  \
         interval_on_failure: 10s\n  ip_version: 4\n{TCP}  - {{name: b, type: tcp, host: h, port: 1, timeout: 7s, ip_version: auto}}\n"
    ));
    let (a, b) = (&c.targets[0], &c.targets[1]);
    assert_eq!(a.interval, Duration::from_secs(60));
    assert_eq!(a.policy.timeout, Duration::from_secs(3));
    assert_eq!(a.policy.retries, 2);
    assert_eq!(a.policy.retry_delay, Duration::from_millis(500));
    assert_eq!(a.interval_on_failure, Some(Duration::from_secs(10)));
    assert_eq!(b.policy.timeout, Duration::from_secs(7));
    assert_eq!(b.interval, Duration::from_secs(60));
    let ip = |t: &Target| match &t.probe {
        Probe::Tcp(p) => p.ip_version,
        Probe::Http(p) => p.ip_version,
        Probe::Icmp(p) => p.ip_version,
        Probe::Dns(_) => panic!("dns targets ask a server at a fixed address"),
    };
    assert_eq!(ip(a), IpVersion::V4);
    assert_eq!(ip(b), IpVersion::Auto);
}

#[test]
fn ip_version_accepts_only_auto_4_and_6() {
    single(
        &format!("{TCP}    ip_version: 5\n"),
        6,
        17,
        "targets[0].ip_version",
        "not one of auto, 4, 6",
    );
}

#[test]
fn labels_merge_with_target_labels_winning() {
    let c = ok(&format!(
        "labels: {{env: prod, team: core}}\n{TCP}    labels: {{team: edge, tier: 1}}\n"
    ));
    let labels: Vec<(&str, &str)> = c.targets[0]
        .labels
        .iter()
        .skip(4)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        vec![("env", "prod"), ("team", "edge"), ("tier", "1")]
    );
}

#[test]
fn labels_must_be_valid_and_not_shadow_vantage_labels() {
    single(
        "labels: {name: x}\ntargets: []\n",
        1,
        9,
        "labels.name",
        "vantage sets itself",
    );
    single(
        "labels: {__x: y}\ntargets: []\n",
        1,
        9,
        "labels.__x",
        "reserves",
    );
    single(
        "labels: {9x: y}\ntargets: []\n",
        1,
        9,
        "labels.9x",
        "not a valid label name",
    );
    single(
        &format!("{TCP}    labels: {{reason: x}}\n"),
        6,
        13,
        "targets[0].labels.reason",
        "vantage sets itself",
    );
}

#[test]
fn locations_filter_targets_against_this_instance() {
    let yaml = format!(
        "location: office\n{TCP}    locations: [office, dc]\n  - {{name: b, type: tcp, host: h, port: 1, locations: [dc]}}\n"
    );
    let c = ok(&yaml);
    assert_eq!(c.location, "office");
    assert_eq!(
        c.targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(c.elsewhere, ["b"]);
    assert_eq!(
        c.targets[0].labels[3],
        ("location".to_string(), "office".to_string())
    );

    let dc = LoadOptions {
        location: Some("dc".into()),
        every_location: false,
        shard: Shard::WHOLE,
    };
    let c = parse(&yaml, "t.yml", &dc).unwrap();
    assert_eq!(c.location, "dc", "--location overrides the file");
    assert_eq!(c.targets.len(), 2);

    let all = LoadOptions {
        location: None,
        every_location: true,
        shard: Shard::WHOLE,
    };
    assert_eq!(parse(&yaml, "t.yml", &all).unwrap().targets.len(), 2);
}

#[test]
fn each_shard_keeps_its_own_targets_and_adding_or_removing_targets_moves_none() {
    let config = |names: &[String]| {
        let mut yaml = String::from("location: dc\ntargets:\n");
        for name in names {
            yaml.push_str(&format!(
                "  - {{name: {name}, type: tcp, host: h, port: 1}}\n"
            ));
        }
        yaml.push_str(
            "  - {name: office-only, type: tcp, host: h, port: 1, locations: [office]}\n",
        );
        yaml
    };
    let names = |yaml: &str, shard: Shard| {
        let options = LoadOptions {
            shard,
            ..LoadOptions::default()
        };
        let c = parse(yaml, "t.yml", &options).unwrap();
        assert_eq!(
            c.elsewhere,
            ["office-only"],
            "the location filter comes first"
        );
        assert_eq!(c.shard, shard);
        let names: Vec<String> = c.targets.iter().map(|t| t.name.clone()).collect();
        (names, c.other_shards)
    };
    let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
    let first: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
    let small = config(&first);
    let before: Vec<Vec<String>> = shards.iter().map(|&s| names(&small, s).0).collect();
    let mut all: Vec<String> = before.concat();
    all.sort();
    let mut expected = first.clone();
    expected.sort();
    assert_eq!(all, expected, "every target in exactly one shard");
    for (shard, kept) in shards.iter().zip(&before) {
        assert!(!kept.is_empty(), "shard {shard} has no targets of 60");
        assert_eq!(names(&small, *shard).1, 60 - kept.len());
    }

    // Positions change everywhere: 150 new targets before, between and after the old ones,
    // the first 20 old ones gone, the rest in reverse order.
    let mut second: Vec<String> = (0..50).map(|i| format!("new-{i}")).collect();
    for (i, old) in first[20..].iter().rev().enumerate() {
        second.push(old.clone());
        if i % 2 == 0 {
            second.push(format!("mid-{i}"));
        }
    }
    second.extend((0..80).map(|i| format!("late-{i}")));
    let big = config(&second);
    for (shard, kept) in shards.iter().zip(&before) {
        let (now, _) = names(&big, *shard);
        for name in kept.iter().filter(|n| second.contains(n)) {
            assert!(
                now.contains(name),
                "{name} left shard {shard} when others came, went and moved"
            );
        }
    }
    assert_eq!(second.len(), 190);
    assert!(ok(&big).summary().contains("targets: 190\n"));
    let c = parse(
        &small,
        "t.yml",
        &LoadOptions {
            shard: shards[1],
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(
        c.summary().contains(&format!(
            "targets: {} in shard 1/3, {} in the other shards\n",
            before[1].len(),
            60 - before[1].len()
        )),
        "{}",
        c.summary()
    );
}

#[test]
fn an_empty_locations_list_is_an_error() {
    single(
        &format!("{TCP}    locations: []\n"),
        6,
        16,
        "targets[0].locations",
        "one or more",
    );
}

#[test]
fn max_concurrent_probes_must_be_positive() {
    single(
        "max_concurrent_probes: 0\ntargets: []\n",
        1,
        24,
        "max_concurrent_probes",
        "from 1 to",
    );
    assert_eq!(
        ok("max_concurrent_probes: 8\ntargets: []\n").max_concurrent_probes,
        8
    );
}

#[test]
fn send_and_expect_are_shorthand_for_two_steps() {
    let c = ok(&format!(
        "{TCP}    tcp: {{send: \"PING\\r\\n\", expect: \"\\\\+PONG\"}}\n"
    ));
    let Probe::Tcp(p) = &c.targets[0].probe else {
        panic!("not tcp")
    };
    assert!(
        matches!(&p.steps[..], [Step::Send(s), Step::Expect(r)] if s == b"PING\r\n" && r.as_str() == "\\+PONG")
    );
}

#[test]
fn steps_keep_their_order_and_each_has_one_action() {
    let c = ok(&format!(
        "{TCP}    tcp:\n      steps:\n        - expect: \"^220\"\n        - send: \"QUIT\\r\\n\"\n        - expect: \"^221\"\n"
    ));
    let Probe::Tcp(p) = &c.targets[0].probe else {
        panic!("not tcp")
    };
    assert!(matches!(
        &p.steps[..],
        [Step::Expect(_), Step::Send(_), Step::Expect(_)]
    ));

    single(
        &format!("{TCP}    tcp:\n      steps:\n        - {{send: a, expect: b}}\n"),
        8,
        11,
        "targets[0].tcp.steps[0]",
        "exactly one of",
    );
    single(
        &format!("{TCP}    tcp:\n      send: a\n      steps: [{{send: b}}]\n"),
        8,
        14,
        "targets[0].tcp.steps",
        "not both",
    );
}

#[test]
fn a_bad_regex_is_an_error_at_the_expect() {
    single(
        &format!("{TCP}    tcp:\n      steps:\n        - expect: \"(unclosed\"\n"),
        8,
        19,
        "targets[0].tcp.steps[0].expect",
        "invalid regex: unclosed group",
    );
}

#[test]
fn hold_must_fit_in_the_timeout() {
    single(
        &format!("{TCP}    timeout: 2s\n    tcp: {{hold: 2s}}\n"),
        7,
        17,
        "targets[0].tcp.hold",
        "shorter than timeout 2s",
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

/// Each target's fingerprint, by name.
fn fingerprints(yaml: &str, file: &str, location: Option<&str>) -> BTreeMap<String, u64> {
    let options = LoadOptions {
        location: location.map(str::to_string),
        every_location: false,
        shard: Shard::WHOLE,
    };
    parse(yaml, file, &options)
        .unwrap_or_else(|e| panic!("{e}"))
        .targets
        .iter()
        .map(|t| (t.name.clone(), t.fingerprint))
        .collect()
}

#[test]
fn fingerprints_ignore_layout_and_position_but_see_every_setting() {
    let base = "labels: {team: a}\ndefaults: {timeout: 2s}\ntargets:\n  - {name: x, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: y, type: http, url: 'http://127.0.0.1:2/', http: {headers: {Authorization: Bearer one}}}\n";
    let before = fingerprints(base, "t.yml", None);
    assert_ne!(before["x"], before["y"]);

    let moved = "# moved and reformatted\nlabels:\n  team: a\ndefaults:\n  timeout: 2s\ntargets:\n  - {name: new, type: tcp, host: 127.0.0.1, port: 3}\n  - name: y\n    type: http\n    url: 'http://127.0.0.1:2/'\n    http:\n      headers:\n        Authorization: Bearer one\n  - name: x   # a comment\n    type: tcp\n    host: 127.0.0.1\n    port: 1\n";
    let after = fingerprints(moved, "t.yml", None);
    assert_eq!((after["x"], after["y"]), (before["x"], before["y"]));

    let changed = |from: &str, to: &str| {
        assert!(base.contains(from));
        fingerprints(&base.replace(from, to), "t.yml", None)
    };
    // A target's own setting changes that target only.
    let port = changed("port: 1}", "port: 4}");
    assert_ne!(port["x"], before["x"]);
    assert_eq!(port["y"], before["y"]);
    // An inline secret, which the built target only holds as a sensitive header value.
    let secret = changed("Bearer one", "Bearer two");
    assert_ne!(secret["y"], before["y"]);
    assert_eq!(secret["x"], before["x"]);
    // What every target inherits changes every target.
    for (from, to) in [("timeout: 2s", "timeout: 3s"), ("team: a", "team: b")] {
        let all = changed(from, to);
        assert!(all["x"] != before["x"] && all["y"] != before["y"], "{to}");
    }
    let elsewhere = fingerprints(base, "t.yml", Some("office"));
    assert!(elsewhere["x"] != before["x"] && elsewhere["y"] != before["y"]);
}

#[test]
fn fingerprints_see_the_content_of_the_files_a_target_reads() {
    let dir = std::env::temp_dir().join(format!("vantage-fingerprint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("exporter.yml");
    let file = file.to_str().unwrap();
    let yaml = "targets:\n  - {name: w, type: http, url: 'http://127.0.0.1:2/', http: {headers: {Authorization: {file: token}}}}\n  - {name: z, type: tcp, host: 127.0.0.1, port: 1}\n";
    std::fs::write(dir.join("token"), "Bearer one\n").unwrap();
    let before = fingerprints(yaml, file, None);
    assert_eq!(before, fingerprints(yaml, file, None), "stable");
    std::fs::write(dir.join("token"), "Bearer two\n").unwrap();
    let after = fingerprints(yaml, file, None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ne!(
        after["w"], before["w"],
        "a rotated token restarts the target"
    );
    assert_eq!(after["z"], before["z"]);
}

#[test]
fn a_config_of_30000_targets_is_within_the_parsers_limits() {
    // serde-saphyr's default budget (250,000 nodes) refused this at target 27,776.
    let mut yaml = String::from("targets:\n");
    for i in 0..30_000 {
        let _ = writeln!(
            yaml,
            "  - {{name: t{i}, type: tcp, host: 127.0.0.{}, port: 80}}",
            1 + i % 254
        );
    }
    let config = ok(&yaml);
    assert_eq!(config.targets.len(), 30_000);
    assert_eq!(config.targets[29_999].name, "t29999");
}
