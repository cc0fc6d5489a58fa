//! The body of a `/probe` answer: one run's families with blackbox_exporter's names, labels and
//! values, so that the dashboards and rules written for it read vantage unchanged, and
//! `probe_failure_info`, vantage's word on why a run failed. No target labels: Prometheus
//! attaches the scrape's `instance`, as it does for blackbox.
//!
//! Which families appear follows blackbox_exporter 0.23's probers: those it always answers are
//! always here, with its values for "none" where the step did not happen (a status of 0, the
//! phases that did not run at 0, `probe_ip_protocol` 0 when no address was found); those it
//! answers only sometimes (`probe_http_last_modified_timestamp_seconds`, the TLS families,
//! `probe_icmp_reply_hop_limit`, `probe_dns_serial`) only when vantage saw the fact.

use std::fmt;

use prometheus_client::metrics::MetricType;

use super::format::Format;
use crate::config::Target;
use crate::exposition::Encoder;
use crate::family::{UNLABELLED, gauge, series};
use crate::net;
use crate::probe::{Probe, Run};

/// The whole body of a `/probe` answer for `run`, a run of `target`, in `format`.
pub fn render_probe(run: &Run, target: &Target, format: Format) -> String {
    let mut encoder = Encoder::whole(format == Format::Classic);
    // Writing into a String cannot fail; an encoder error would be a bug in the families.
    answer(&mut encoder, run, &target.probe).expect("encoding metrics into a String");
    let mut out = encoder.finish().expect("encoding metrics into a String");
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// One run's families, as blackbox_exporter's prober for its type answers them.
fn answer(encoder: &mut Encoder, run: &Run, probe: &Probe) -> fmt::Result {
    let rows = [(UNLABELLED, run)];
    let (address, lookup) = probe.resolved(run);
    let values = [
        (
            "probe_success",
            "1 if the run succeeded and every assertion held, else 0",
            f64::from(u8::from(run.success())),
        ),
        (
            "probe_duration_seconds",
            "Duration of the run, retries included",
            run.duration.as_secs_f64(),
        ),
        (
            "probe_dns_lookup_time_seconds",
            "Name resolution of the target's host; 0 when none happened (an address)",
            lookup.map_or(0.0, |d| d.as_secs_f64()),
        ),
        (
            "probe_ip_protocol",
            "IP version of the address probed (4 or 6); 0 when none was found",
            address.map_or(0.0, net::ip_protocol),
        ),
        (
            "probe_ip_addr_hash",
            "FNV-1a hash of the address probed, as blackbox_exporter's; 0 when none was found",
            address.map_or(0.0, net::ip_hash),
        ),
    ];
    for (name, help, value) in values {
        gauge(encoder, &rows, name, help, |_| Some(value))?;
    }
    probe.encode_blackbox(encoder, run)?;
    // A gauge at 1, as blackbox_exporter's `_info` families are, so that the name is the
    // same in both formats (and /metrics's `probe_failure_info` reads the same).
    series(
        encoder,
        &rows,
        "probe_failure_info",
        "Present when the run failed: why, and for dialogues the failing step",
        MetricType::Gauge,
        |r| {
            let Some(failure) = r.failure() else {
                return Vec::new();
            };
            let mut labels = vec![("reason", failure.reason.as_str().to_string())];
            labels.extend(failure.step.map(|s| ("step", s.to_string())));
            vec![(labels, 1.0)]
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::{self, LoadOptions};
    use crate::probe::dns::DnsFacts;
    use crate::probe::http::{Hop, HttpFacts, Url};
    use crate::probe::icmp::IcmpFacts;
    use crate::probe::tcp::TcpFacts;
    use crate::probe::{Facts, Failure, Outcome, Phases, Reason, Trace};
    use crate::tls::cert::CertFacts;
    use crate::tls::{TlsFacts, TlsVersion};

    /// Every name blackbox_exporter 0.23 answers for every run of a prober.
    const COMMON: &[&str] = &[
        "probe_success",
        "probe_duration_seconds",
        "probe_dns_lookup_time_seconds",
        "probe_ip_protocol",
        "probe_ip_addr_hash",
    ];
    const HTTP: &[&str] = &[
        "probe_http_duration_seconds",
        "probe_http_content_length",
        "probe_http_uncompressed_body_length",
        "probe_http_redirects",
        "probe_http_ssl",
        "probe_http_status_code",
        "probe_http_version",
        "probe_failed_due_to_regex",
    ];
    const TLS: &[&str] = &[
        "probe_ssl_earliest_cert_expiry",
        "probe_tls_version_info",
        "probe_ssl_last_chain_info",
    ];

    fn target(entry: &str) -> Target {
        let yaml = format!("targets:\n  - {{name: t, {entry}}}\n");
        let config = config::parse(&yaml, "t.yml", &LoadOptions::default()).unwrap();
        (*config.targets[0]).clone()
    }

    fn run(result: Result<(), Failure>, trace: Trace, facts: Facts) -> Run {
        Run {
            outcome: Outcome::with_facts(result, trace, facts),
            attempts: 1,
            duration: Duration::from_millis(12),
            finished_at: SystemTime::now(),
        }
    }

    fn trace_at(address: &str, phases: Phases) -> Trace {
        let mut trace = Trace::start();
        trace.address = Some(address.parse().unwrap());
        trace.phases = phases;
        trace
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    /// The sample names of a rendering, after checking that both formats hold the same.
    fn names(run: &Run, target: &Target) -> BTreeSet<String> {
        let sample_names = |text: &str| -> BTreeSet<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
                .collect()
        };
        let classic = render_probe(run, target, Format::Classic);
        let openmetrics = render_probe(run, target, Format::OpenMetrics);
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
        assert!(!classic.contains("# EOF"), "{classic}");
        assert_eq!(sample_names(&classic), sample_names(&openmetrics));
        assert!(!classic.contains("target=") && !classic.contains("name="));
        assert!(
            !classic.contains("{}") && !openmetrics.contains("{}"),
            "unlabelled series are written as blackbox writes them:\n{classic}"
        );
        sample_names(&classic)
    }

    /// The value of `series` (a name, with its labels if it has any) in a rendering.
    fn sample(body: &str, series: &str) -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    }

    fn set(groups: &[&[&str]]) -> BTreeSet<String> {
        groups
            .iter()
            .flat_map(|g| g.iter().map(|n| n.to_string()))
            .collect()
    }

    fn leaf() -> CertFacts {
        CertFacts {
            subject: "CN=www.example.test, O=Example".into(),
            issuer: "CN=Example CA".into(),
            subject_go: "CN=www.example.test,O=Example".into(),
            issuer_go: "CN=Example CA".into(),
            serial: "01".into(),
            names: vec!["www.example.test".into(), "127.0.0.1".into()],
            sha256: "ab".repeat(32),
            not_before: Some(0),
            not_after: Some(1_900_000_000),
        }
    }

    fn handshake() -> TlsFacts {
        TlsFacts {
            version: Some(TlsVersion::Tls13),
            cipher: Some("TLS13_AES_128_GCM_SHA256".into()),
            chain: vec![leaf()],
            ..TlsFacts::default()
        }
    }

    fn hop(url: &str, status: Option<u16>) -> Hop {
        Hop {
            method: http::Method::GET,
            url: Url::parse(url).unwrap(),
            address: Some("127.0.0.1:8443".parse().unwrap()),
            phases: Phases {
                dns: ms(2).into(),
                connect: ms(1).into(),
                tls: ms(3).into(),
                first_byte: ms(4).into(),
                ..Phases::default()
            },
            status,
            version: status.map(|_| http::Version::HTTP_11),
            location: None,
            content_length: None,
            last_modified: None,
            body_bytes: 11,
            body_cut: false,
            transfer: status.and(ms(5)),
            events: 0..0,
        }
    }

    #[test]
    fn an_https_answer_has_blackboxs_http_and_tls_names_in_its_spelling() {
        let target = target("type: http, url: 'https://www.example.test:8443/'");
        let mut last = hop("https://www.example.test:8443/", Some(200));
        last.last_modified = Some(784_111_777);
        let facts = HttpFacts {
            hops: vec![last.clone()],
            tls: Some(handshake()),
        };
        let trace = trace_at("127.0.0.1:8443", last.phases);
        let run = run(Ok(()), trace, Facts::Http(Box::new(facts)));
        let mut expected = set(&[COMMON, HTTP, TLS]);
        expected.insert("probe_http_last_modified_timestamp_seconds".into());
        assert_eq!(names(&run, &target), expected);

        let body = render_probe(&run, &target, Format::Classic);
        for (series, value) in [
            ("probe_tls_version_info{version=\"TLS 1.3\"}", 1.0),
            ("probe_http_duration_seconds{phase=\"resolve\"}", 0.002),
            ("probe_http_duration_seconds{phase=\"tls\"}", 0.003),
            ("probe_http_duration_seconds{phase=\"processing\"}", 0.004),
            ("probe_http_duration_seconds{phase=\"transfer\"}", 0.005),
            ("probe_http_content_length", -1.0),
            ("probe_http_uncompressed_body_length", 11.0),
            ("probe_http_ssl", 1.0),
            ("probe_http_version", 1.1),
            ("probe_http_last_modified_timestamp_seconds", 784111777.0),
            ("probe_ip_protocol", 4.0),
            ("probe_ip_addr_hash", 3668918509.0),
            ("probe_ssl_earliest_cert_expiry", 1900000000.0),
        ] {
            assert_eq!(sample(&body, series), value, "{series}");
        }
        let chain = format!(
            "probe_ssl_last_chain_info{{fingerprint_sha256=\"{}\",subject=\"CN=www.example.test,O=Example\",issuer=\"CN=Example CA\",subjectalternative=\"www.example.test\"}} 1",
            "ab".repeat(32)
        );
        assert!(body.contains(&chain), "{body}");
        assert!(
            !body
                .lines()
                .any(|l| l.starts_with("probe_ssl_last_chain_expiry_timestamp_seconds")),
            "no chain verified: no made-up year 1"
        );
    }

    #[test]
    fn a_refused_connection_answers_blackboxs_zeros_and_says_why() {
        let target = target("type: http, url: 'http://127.0.0.1:1/'");
        let mut refused = hop("http://127.0.0.1:1/", None);
        refused.phases = Phases {
            connect: ms(1).into(),
            ..Phases::default()
        };
        let facts = HttpFacts {
            hops: vec![refused.clone()],
            tls: None,
        };
        let failure = Failure::new(Reason::ConnectionRefused, "refused");
        let run = run(
            Err(failure),
            trace_at("127.0.0.1:1", refused.phases),
            Facts::Http(Box::new(facts)),
        );
        let mut expected = set(&[COMMON, HTTP]);
        expected.insert("probe_failure_info".into());
        assert_eq!(names(&run, &target), expected);
        let body = render_probe(&run, &target, Format::Classic);
        for (series, value) in [
            ("probe_success", 0.0),
            ("probe_http_status_code", 0.0),
            ("probe_http_ssl", 0.0),
            ("probe_http_content_length", 0.0),
            ("probe_http_duration_seconds{phase=\"connect\"}", 0.001),
            ("probe_http_duration_seconds{phase=\"transfer\"}", 0.0),
            ("probe_failed_due_to_regex", 0.0),
            ("probe_failure_info{reason=\"connection_refused\"}", 1.0),
        ] {
            assert_eq!(sample(&body, series), value, "{series}");
        }
    }

    #[test]
    fn a_body_mismatch_is_a_failure_due_to_regex() {
        let target = target("type: http, url: 'http://127.0.0.1:1/'");
        let facts = HttpFacts {
            hops: vec![hop("http://127.0.0.1:1/", Some(200))],
            tls: None,
        };
        let failure = Failure::new(Reason::HttpBodyMismatch, "no match");
        let run = run(Err(failure), Trace::start(), Facts::Http(Box::new(facts)));
        let body = render_probe(&run, &target, Format::Classic);
        assert_eq!(sample(&body, "probe_failed_due_to_regex"), 1.0);
    }

    #[test]
    fn tcp_has_tls_names_only_for_an_accepted_handshake() {
        let target = target("type: tcp, host: www.example.test, port: 443, tls: {}");
        let accepted = run(
            Ok(()),
            trace_at("[::1]:443", Phases::default()),
            Facts::Tcp(TcpFacts {
                tls: Some(Box::new(handshake())),
            }),
        );
        let mut expected = set(&[COMMON, TLS, &["probe_failed_due_to_regex"]]);
        assert_eq!(names(&accepted, &target), expected);
        let body = render_probe(&accepted, &target, Format::OpenMetrics);
        assert_eq!(sample(&body, "probe_ip_protocol"), 6.0);
        assert!(
            body.contains("# TYPE probe_tls_version_info gauge"),
            "{body}"
        );

        let refused = run(
            Err(Failure::new(Reason::TlsUnknownIssuer, "self-signed")),
            trace_at("[::1]:443", Phases::default()),
            Facts::Tcp(TcpFacts {
                tls: Some(Box::new(handshake())),
            }),
        );
        for name in TLS {
            expected.remove(*name);
        }
        expected.insert("probe_failure_info".into());
        assert_eq!(names(&refused, &target), expected);
    }

    #[test]
    fn dns_has_its_phases_sections_and_the_serial_of_an_soa_answer() {
        let target = target("type: dns, host: example.test, dns: {server: '127.0.0.1:53'}");
        let facts = DnsFacts {
            server: "127.0.0.1:53".parse().unwrap(),
            transport: crate::net::dns::Transport::Tcp,
            rcode: hickory_proto::op::ResponseCode::NoError,
            answers: vec!["example.test. 60 IN SOA ...".into()],
            authority_records: 2,
            additional_records: 3,
            serial: Some(2026120701),
            took: Duration::from_millis(5),
            connected: ms(2),
        };
        let trace = trace_at(
            "127.0.0.1:53",
            Phases {
                dns: ms(5).into(),
                ..Phases::default()
            },
        );
        let run = run(Ok(()), trace, Facts::Dns(Some(Box::new(facts))));
        let expected = set(&[
            COMMON,
            &[
                "probe_dns_duration_seconds",
                "probe_dns_answer_rrs",
                "probe_dns_authority_rrs",
                "probe_dns_additional_rrs",
                "probe_dns_query_succeeded",
                "probe_dns_serial",
            ],
        ]);
        assert_eq!(names(&run, &target), expected);
        let body = render_probe(&run, &target, Format::Classic);
        for (series, value) in [
            ("probe_dns_lookup_time_seconds", 0.0),
            ("probe_dns_duration_seconds{phase=\"connect\"}", 0.002),
            ("probe_dns_duration_seconds{phase=\"request\"}", 0.003),
            ("probe_dns_authority_rrs", 2.0),
            ("probe_dns_additional_rrs", 3.0),
            ("probe_dns_serial", 2026120701.0),
        ] {
            assert_eq!(sample(&body, series), value, "{series}");
        }
    }

    #[test]
    fn icmp_has_its_phases_and_the_hop_limit_when_seen() {
        let target = target("type: icmp, host: 127.0.0.1");
        let facts = IcmpFacts {
            sent: 2,
            rtts: vec![Duration::from_millis(1), Duration::from_millis(3)],
            setup: Duration::from_micros(50),
            hop_limit: Some(64),
            ..IcmpFacts::default()
        };
        let run = run(
            Ok(()),
            trace_at("127.0.0.1:0", Phases::default()),
            Facts::Icmp(Some(Box::new(facts))),
        );
        let expected = set(&[
            COMMON,
            &["probe_icmp_duration_seconds", "probe_icmp_reply_hop_limit"],
        ]);
        assert_eq!(names(&run, &target), expected);
        let body = render_probe(&run, &target, Format::Classic);
        let phase = |p: &str| {
            sample(
                &body,
                &format!("probe_icmp_duration_seconds{{phase=\"{p}\"}}"),
            )
        };
        assert_eq!(phase("rtt"), 0.002, "the mean round trip");
        assert_eq!(phase("setup"), 0.00005);
        assert_eq!(phase("resolve"), 0.0, "an address needs no lookup");
        assert_eq!(sample(&body, "probe_icmp_reply_hop_limit"), 64.0);
    }
}
