//! The keys of each probe type: tcp (steps, hold, TLS, STARTTLS), http, dns and icmp, and
//! assertions.

use super::*;

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
        t.resolver.as_deref(),
        Some(&dns::Server {
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

/// The key exchange a built target's TLS client offers.
fn key_exchange(probe: &Probe) -> KeyExchange {
    match probe {
        Probe::Tcp(tcp) => {
            tcp.tls
                .as_ref()
                .expect("TLS on")
                .client
                .options
                .key_exchange
        }
        Probe::Http(http) => {
            let theirs = http.tls_elsewhere.options.key_exchange;
            assert_eq!(
                http.tls.client.options.key_exchange, theirs,
                "redirects offer the same"
            );
            theirs
        }
        other => panic!("no TLS: {other:?}"),
    }
}

#[test]
fn key_exchange_is_classic_unless_the_tls_table_says_post_quantum() {
    let c = ok(&format!(
        "{TCP}    tls: {{}}
  - {{name: b, type: tcp, host: 127.0.0.1, port: 443, tls: {{key_exchange: post_quantum}}}}
  - {{name: c, type: tcp, host: 127.0.0.1, port: 25, tls: {{starttls: smtp, key_exchange: post_quantum}}}}
  - {{name: d, type: http, url: \"https://127.0.0.1/\", tls: {{key_exchange: post_quantum}}}}
  - {{name: e, type: http, url: \"https://127.0.0.1/\", tls: {{key_exchange: classic}}}}
  - {{name: f, type: http, url: \"https://127.0.0.1/\"}}
"
    ));
    let got: Vec<KeyExchange> = c.targets.iter().map(|t| key_exchange(&t.probe)).collect();
    use KeyExchange::{Classic, PostQuantum};
    assert_eq!(
        got,
        [
            Classic,
            PostQuantum,
            PostQuantum,
            PostQuantum,
            Classic,
            Classic
        ]
    );
}

#[test]
fn an_unknown_key_exchange_is_named_where_it_is_written() {
    single(
        &format!("{TCP}    tls:\n      key_exchange: hybrid\n"),
        7,
        21,
        "targets[0].tls.key_exchange",
        "expected one of classic, post_quantum",
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
        "no PEM certificate in it",
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
