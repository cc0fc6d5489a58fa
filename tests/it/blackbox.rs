//! `/probe` answers in blackbox_exporter's names: real runs against loopback servers of each
//! kind, rendered by `render_probe`, checked for blackbox 0.23's name set per prober and case,
//! for values that match what the run saw, and by promtool in both formats.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use vantage::config::{self, LoadOptions, Target};
use vantage::metrics::{Format, render_probe};
use vantage::probe::Run;

use crate::dns::Dnsmasq;
use crate::http::{Web, web_target};
use crate::pki::{Leaf, Pki};
use crate::support::{self, closed_port, promtool_check, run, target, thread_peer};
use crate::tls::Server;

/// The names blackbox_exporter 0.23 answers for every run that resolved its target.
pub const COMMON: &[&str] = &[
    "probe_success",
    "probe_duration_seconds",
    "probe_dns_lookup_time_seconds",
    "probe_ip_protocol",
    "probe_ip_addr_hash",
];
pub const HTTP: &[&str] = &[
    "probe_http_duration_seconds",
    "probe_http_content_length",
    "probe_http_uncompressed_body_length",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_http_status_code",
    "probe_http_version",
    "probe_failed_due_to_regex",
];
pub const TLS: &[&str] = &[
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_tls_version_info",
    "probe_ssl_last_chain_info",
];

/// A `/probe` answer read back: each series (its name and labels, the labels sorted so that
/// two exporters' spellings compare) and its value.
pub struct Answer {
    pub body: String,
    pub series: BTreeMap<String, f64>,
}

impl Answer {
    /// Renders `run` in both formats, has promtool check both, and reads the classic one.
    pub fn of(run: &Run, target: &Target) -> Answer {
        let openmetrics = render_probe(run, target, Format::OpenMetrics);
        promtool_check(&openmetrics);
        let body = render_probe(run, target, Format::Classic);
        promtool_check(&body);
        Answer::read(&body)
    }

    /// Reads a classic-format body, vantage's or blackbox_exporter's.
    pub fn read(body: &str) -> Answer {
        let series = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                (sorted_labels(series), value.parse().unwrap())
            })
            .collect();
        Answer {
            body: body.to_string(),
            series,
        }
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.series
            .keys()
            .map(|s| s.split('{').next().unwrap().to_string())
            .collect()
    }

    pub fn value(&self, series: &str) -> f64 {
        *self
            .series
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.body))
    }
}

/// `name{labels}` with its labels in name order, and without `{}` when it has none.
fn sorted_labels(series: &str) -> String {
    let Some((name, labels)) = series.split_once('{') else {
        return series.to_string();
    };
    let labels = labels.strip_suffix('}').unwrap();
    // Split at the commas outside quoted values (which may hold commas and escaped quotes).
    let mut pairs = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in labels.chars() {
        match c {
            ',' if !quoted => pairs.push(std::mem::take(&mut current)),
            _ => {
                if c == '"' && !escaped {
                    quoted = !quoted;
                }
                escaped = c == '\\' && !escaped;
                current.push(c);
            }
        }
    }
    if !current.is_empty() {
        pairs.push(current);
    }
    if pairs.is_empty() {
        return name.to_string();
    }
    pairs.sort();
    format!("{name}{{{}}}", pairs.join(","))
}

pub fn set(groups: &[&[&str]]) -> BTreeSet<String> {
    groups
        .iter()
        .flat_map(|g| g.iter().map(|n| n.to_string()))
        .collect()
}

fn parse(yaml: &str) -> Arc<Target> {
    let config = config::parse(yaml, "test.yml", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Arc::clone(&config.targets[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_carry_blackboxs_names_and_the_values_the_run_saw() {
    support::needs(&["tool:promtool"]);
    let (port, _) = Web::plain().start().await;

    let modified = web_target(&format!("http://127.0.0.1:{port}/modified"), "");
    let run = run(&modified).await;
    assert!(run.success(), "{:?}", run.failure());
    let answer = Answer::of(&run, &modified);
    let mut expected = set(&[COMMON, HTTP]);
    expected.insert("probe_http_last_modified_timestamp_seconds".into());
    assert_eq!(answer.names(), expected);
    for (series, value) in [
        ("probe_success", 1.0),
        ("probe_http_status_code", 200.0),
        ("probe_http_version", 1.1),
        ("probe_http_ssl", 0.0),
        ("probe_http_redirects", 0.0),
        ("probe_http_content_length", 7.0),
        ("probe_http_uncompressed_body_length", 7.0),
        ("probe_http_last_modified_timestamp_seconds", 784_111_777.0),
        ("probe_http_duration_seconds{phase=\"resolve\"}", 0.0),
        ("probe_http_duration_seconds{phase=\"tls\"}", 0.0),
        ("probe_dns_lookup_time_seconds", 0.0),
        ("probe_ip_protocol", 4.0),
        ("probe_ip_addr_hash", 3_668_918_509.0),
        ("probe_failed_due_to_regex", 0.0),
    ] {
        assert_eq!(answer.value(series), value, "{series}");
    }
    let phases = run.outcome.trace.phases;
    let connect = answer.value("probe_http_duration_seconds{phase=\"connect\"}");
    assert_eq!(connect, phases.connect.get().unwrap().as_secs_f64());
    let processing = answer.value("probe_http_duration_seconds{phase=\"processing\"}");
    assert_eq!(processing, phases.first_byte.get().unwrap().as_secs_f64());
    let transfer = answer.value("probe_http_duration_seconds{phase=\"transfer\"}");
    assert!(
        transfer > 0.0 && transfer < run.duration.as_secs_f64(),
        "{transfer}"
    );

    // A chunked body declares no length: blackbox's -1. Two redirects, then the body.
    let redirected = web_target(&format!("http://127.0.0.1:{port}/redirect/2"), "");
    let answer = Answer::of(&support::run(&redirected).await, &redirected);
    assert_eq!(answer.names(), set(&[COMMON, HTTP]));
    assert_eq!(answer.value("probe_http_redirects"), 2.0);
    assert_eq!(answer.value("probe_http_content_length"), -1.0);
    assert_eq!(answer.value("probe_http_uncompressed_body_length"), 7.0);

    let mismatch = web_target(
        &format!("http://127.0.0.1:{port}/ok"),
        "    http: {body_regex: nowhere}\n",
    );
    let answer = Answer::of(&support::run(&mismatch).await, &mismatch);
    assert_eq!(answer.value("probe_success"), 0.0);
    assert_eq!(answer.value("probe_failed_due_to_regex"), 1.0);
    assert_eq!(
        answer.value("probe_failure_info{reason=\"http_body_mismatch\"}"),
        1.0
    );

    // Nothing listens: blackbox's zeros, and vantage's reason.
    let refused = web_target(&format!("http://127.0.0.1:{}/", closed_port()), "");
    let answer = Answer::of(&support::run(&refused).await, &refused);
    let mut expected = set(&[COMMON, HTTP]);
    expected.insert("probe_failure_info".into());
    assert_eq!(answer.names(), expected);
    assert_eq!(answer.value("probe_http_status_code"), 0.0);
    assert_eq!(
        answer.value("probe_failure_info{reason=\"connection_refused\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_answers_carry_the_tls_families_in_blackboxs_spelling() {
    support::needs(&["tool:promtool"]);
    let pki = Pki::new("blackbox");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Web::tls(&leaf).start().await;
    let https = web_target(&format!("https://127.0.0.1:{port}/ok"), &pki.flow(""));
    let run = run(&https).await;
    assert!(run.success(), "{:?}", run.failure());
    let answer = Answer::of(&run, &https);
    assert_eq!(answer.names(), set(&[COMMON, HTTP, TLS]));
    assert_eq!(answer.value("probe_http_ssl"), 1.0);
    assert_eq!(
        answer.value("probe_tls_version_info{version=\"TLS 1.3\"}"),
        1.0
    );
    let tls = run.outcome.facts.tls().unwrap();
    let handshake = answer.value("probe_http_duration_seconds{phase=\"tls\"}");
    assert_eq!(
        handshake,
        run.outcome.trace.phases.tls.get().unwrap().as_secs_f64()
    );
    let leaf_facts = &tls.chain[0];
    let info = format!(
        "probe_ssl_last_chain_info{{fingerprint_sha256=\"{}\",issuer=\"CN=vantage blackbox root\",subject=\"CN=vantage.test\",subjectalternative=\"vantage.test\"}}",
        leaf_facts.sha256
    );
    assert_eq!(answer.value(&info), 1.0);
    let not_after = leaf_facts.not_after.unwrap() as f64;
    assert_eq!(answer.value("probe_ssl_earliest_cert_expiry"), not_after);
    let verified = tls.verified_expiry().unwrap().not_after as f64;
    assert_eq!(
        answer.value("probe_ssl_last_chain_expiry_timestamp_seconds"),
        verified
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_answers_with_and_without_tls_and_a_refused_certificate() {
    support::needs(&["tool:promtool"]);
    let port = thread_peer(|mut stream| {
        let _ = stream.write_all(b"hello\r\n");
        let _ = stream.read(&mut [0u8; 64]);
    });
    let plain = target(port, "    tcp: {steps: [{expect: hello}]}\n");
    let run_plain = run(&plain).await;
    assert!(run_plain.success(), "{:?}", run_plain.failure());
    let answer = Answer::of(&run_plain, &plain);
    assert_eq!(
        answer.names(),
        set(&[COMMON, &["probe_failed_due_to_regex"]])
    );
    assert_eq!(answer.value("probe_failed_due_to_regex"), 0.0);

    let mismatch = target(
        port,
        "    tcp: {steps: [{expect: goodbye}]}\n    timeout: 1s\n",
    );
    let answer = Answer::of(&run(&mismatch).await, &mismatch);
    assert_eq!(answer.value("probe_failed_due_to_regex"), 1.0);
    assert_eq!(
        answer.value("probe_failure_info{reason=\"expect_mismatch\",step=\"0\"}"),
        1.0
    );

    let pki = Pki::new("blackbox-tcp");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (tls_port, _) = Server::new(&leaf, &[]).start().await;
    let secured = target(tls_port, &pki.flow(""));
    let run_tls = run(&secured).await;
    assert!(run_tls.success(), "{:?}", run_tls.failure());
    let answer = Answer::of(&run_tls, &secured);
    assert_eq!(
        answer.names(),
        set(&[COMMON, TLS, &["probe_failed_due_to_regex"]])
    );
    assert_eq!(
        answer.value("probe_tls_version_info{version=\"TLS 1.3\"}"),
        1.0
    );

    // Go's client ends a handshake whose certificate does not verify: no TLS families.
    let stranger = Pki::new("blackbox-stranger");
    let untrusted = target(tls_port, &stranger.flow(""));
    let answer = Answer::of(&run(&untrusted).await, &untrusted);
    let mut expected = set(&[COMMON, &["probe_failed_due_to_regex", "probe_failure_info"]]);
    assert_eq!(answer.names(), expected);
    assert_eq!(
        answer.value("probe_failure_info{reason=\"tls_unknown_issuer\"}"),
        1.0
    );

    // The name is not found (its resolver, on loopback, does not answer): blackbox's zeros for
    // the address.
    let unknown = parse(&format!(
        "targets:\n  - {{name: t, type: tcp, host: nowhere.invalid, port: 1, timeout: 2s, dns: {{server: \"127.0.0.1:{}\"}}}}\n",
        closed_port()
    ));
    let answer = Answer::of(&run(&unknown).await, &unknown);
    expected.remove("probe_failure_info");
    assert!(answer.names().is_superset(&expected), "{}", answer.body);
    assert_eq!(answer.value("probe_ip_protocol"), 0.0);
    assert_eq!(answer.value("probe_ip_addr_hash"), 0.0);
    assert_eq!(
        answer.value("probe_failure_info{reason=\"dns_error\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_count_every_section_and_read_the_zones_serial() {
    support::needs(&["tool:dnsmasq", "tool:promtool"]);
    let dnsmasq = Dnsmasq::start(&[
        "--auth-zone=vantage.test",
        "--auth-server=ns.vantage.test,lo",
        "--auth-soa=2026120701,hostmaster.vantage.test",
    ]);
    let ask = |host: &str, dns: &str| {
        parse(&format!(
            "targets:\n  - name: d\n    type: dns\n    host: {host}\n    timeout: 3s\n    dns: {{server: \"{}\"{dns}}}\n",
            dnsmasq.server()
        ))
    };
    let names = set(&[
        COMMON,
        &[
            "probe_dns_duration_seconds",
            "probe_dns_answer_rrs",
            "probe_dns_authority_rrs",
            "probe_dns_additional_rrs",
            "probe_dns_query_succeeded",
        ],
    ]);

    let a = ask("two.vantage.test", "");
    let run_a = run(&a).await;
    assert!(run_a.success(), "{:?}", run_a.failure());
    let answer = Answer::of(&run_a, &a);
    assert_eq!(answer.names(), names);
    let facts = run_a.outcome.facts.dns().unwrap();
    assert_eq!(answer.value("probe_dns_answer_rrs"), 2.0);
    assert_eq!(
        answer.value("probe_dns_authority_rrs"),
        facts.authority_records as f64
    );
    assert_eq!(
        answer.value("probe_dns_additional_rrs"),
        facts.additional_records as f64
    );
    assert_eq!(answer.value("probe_dns_query_succeeded"), 1.0);
    assert_eq!(answer.value("probe_dns_lookup_time_seconds"), 0.0);
    assert_eq!(
        answer.value("probe_dns_duration_seconds{phase=\"connect\"}"),
        0.0,
        "UDP"
    );
    let request = answer.value("probe_dns_duration_seconds{phase=\"request\"}");
    assert_eq!(request, facts.took.as_secs_f64());

    let soa = ask("vantage.test", ", record_type: SOA, transport: tcp");
    let run_soa = run(&soa).await;
    assert!(run_soa.success(), "{:?}", run_soa.failure());
    let answer = Answer::of(&run_soa, &soa);
    let mut with_serial = names.clone();
    with_serial.insert("probe_dns_serial".into());
    assert_eq!(answer.names(), with_serial);
    assert_eq!(answer.value("probe_dns_serial"), 2_026_120_701.0);
    let connect = answer.value("probe_dns_duration_seconds{phase=\"connect\"}");
    assert!(connect > 0.0, "a TCP connect takes time");
    let connected = run_soa.outcome.facts.dns().unwrap().connected;
    assert_eq!(
        run_soa.outcome.trace.phases.connect.get(),
        connected,
        "/metrics's connect phase"
    );

    // No server answers: blackbox's zeros and vantage's reason.
    let silent = parse(&format!(
        "targets:\n  - {{name: d, type: dns, host: x.test, timeout: 1s, dns: {{server: \"127.0.0.1:{}\"}}}}\n",
        closed_port()
    ));
    let answer = Answer::of(&run(&silent).await, &silent);
    let mut failed = names.clone();
    failed.insert("probe_failure_info".into());
    assert_eq!(answer.names(), failed);
    assert_eq!(answer.value("probe_dns_query_succeeded"), 0.0);
    assert_eq!(answer.value("probe_dns_answer_rrs"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_answers_carry_the_phases_and_the_replys_hop_limit() {
    support::needs(&["root", "tool:promtool"]);
    let ping = parse(
        "targets:\n  - {name: i, type: icmp, host: 127.0.0.1, timeout: 3s, icmp: {count: 2}}\n",
    );
    let run = run(&ping).await;
    assert!(run.success(), "{:?}", run.failure());
    let answer = Answer::of(&run, &ping);
    let facts = run.outcome.facts.icmp().unwrap();
    let mut expected = set(&[COMMON, &["probe_icmp_duration_seconds"]]);
    // Seen by a raw socket only; a ping socket (where ping_group_range admits us) gives no IP
    // header, and then the family is absent.
    if let Some(ttl) = facts.hop_limit {
        let default_ttl: u8 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            ttl, default_ttl,
            "loopback's replies leave with the default TTL"
        );
        expected.insert("probe_icmp_reply_hop_limit".into());
        assert_eq!(
            answer.value("probe_icmp_reply_hop_limit"),
            f64::from(default_ttl)
        );
    }
    assert_eq!(answer.names(), expected);
    let rtt = answer.value("probe_icmp_duration_seconds{phase=\"rtt\"}");
    assert_eq!(rtt, facts.stats().unwrap()[1]);
    let setup = answer.value("probe_icmp_duration_seconds{phase=\"setup\"}");
    assert!(setup > 0.0 && setup < Duration::from_secs(1).as_secs_f64());
    assert_eq!(
        answer.value("probe_icmp_duration_seconds{phase=\"resolve\"}"),
        0.0
    );
}
