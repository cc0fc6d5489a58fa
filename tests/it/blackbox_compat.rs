//! Side by side with Debian's blackbox_exporter (0.23): the real vantage binary's `/probe` and
//! blackbox's, each with an equivalent module, asked about the same loopback servers. For every
//! module and case both answer the same `probe_success`, every metric name blackbox answers is
//! in vantage's answer too (vantage may add its own), and the values both measure the same way
//! are equal: what was seen exactly (status, address, protocol, certificate expiry, counts),
//! durations only as present and not negative.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::dns::Dnsmasq;
use crate::http::Web;
use crate::pki::{Leaf, Pki, days};
use crate::prometheus::{Daemon, http10, percent_encode, wait_ready};
use crate::support::{self, TempDir, Vantage, closed_port, quiet_peer};
use crate::tls::Server;

/// Families whose values both must answer alike, where both answer them.
const EXACT: &[&str] = &[
    "probe_http_status_code",
    "probe_ip_protocol",
    "probe_ip_addr_hash",
    "probe_http_ssl",
    "probe_http_version",
    "probe_http_redirects",
    "probe_http_content_length",
    "probe_http_uncompressed_body_length",
    "probe_failed_due_to_regex",
    "probe_ssl_earliest_cert_expiry",
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_additional_rrs",
    "probe_dns_query_succeeded",
];

/// Families whose labels both must answer alike: what was negotiated, which leaf came.
const SAME_LABELS: &[(&str, &str)] = &[
    ("probe_tls_version_info", "version"),
    ("probe_ssl_last_chain_info", "fingerprint_sha256"),
];

/// One sample of a text-format answer: name, labels as written, value.
struct Sample {
    name: String,
    labels: String,
    value: f64,
}

/// The samples of a Prometheus text-format (0.0.4) answer; comments and blank lines left out.
/// A label value may hold spaces: the value is the line's last field.
fn parse(body: &str) -> Vec<Sample> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let end = line.find(['{', ' '])?;
            let name = line[..end].to_string();
            let labels = match line[end..].strip_prefix('{') {
                Some(rest) => rest[..rest.rfind('}')?].to_string(),
                None => String::new(),
            };
            let value = line.rsplit(' ').next()?.parse().ok()?;
            Some(Sample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// Every metric name of an answer.
fn names(samples: &[Sample]) -> BTreeSet<&str> {
    samples.iter().map(|s| s.name.as_str()).collect()
}

/// The first value of family `name`, whatever its labels.
fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

/// The values of `label` over family `name`'s samples.
fn label_values(samples: &[Sample], name: &str, label: &str) -> BTreeSet<String> {
    let key = format!("{label}=\"");
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter_map(|s| {
            let at = s.labels.find(&key)? + key.len();
            let rest = &s.labels[at..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

/// A blackbox_exporter and a vantage started with equivalent modules, both on loopback ports.
struct Pair {
    blackbox: SocketAddr,
    vantage: Vantage,
    _daemon: Daemon,
    _dir: TempDir,
}

impl Pair {
    /// `modules`: (name, blackbox's module on one line, vantage's module on one line, without
    /// its allow list, which every vantage module gets: loopback only).
    fn start(tag: &str, modules: &[(&str, String, String)]) -> Pair {
        let dir = TempDir::new(tag);
        let mut blackbox_yml = "modules:\n".to_string();
        let mut vantage_yml = "modules:\n".to_string();
        for (name, theirs, ours) in modules {
            blackbox_yml.push_str(&format!("  {name}: {theirs}\n"));
            let ours = ours.strip_suffix('}').expect("a flow mapping");
            vantage_yml.push_str(&format!(
                "  {name}: {ours}, allow: {{networks: [127.0.0.0/8]}}}}\n"
            ));
        }
        vantage_yml.push_str("targets: []\n");
        let config = dir.write("blackbox.yml", &blackbox_yml);
        let addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
        let daemon = Daemon::start(
            "prometheus-blackbox-exporter",
            &[
                format!("--config.file={}", config.display()),
                format!("--web.listen-address={addr}"),
            ],
            &dir,
        );
        wait_ready(addr, &daemon, "blackbox_exporter");
        let vantage = Vantage::start(
            &dir.write("exporter.yml", &vantage_yml),
            &["--web.enable-probe"],
        );
        Pair {
            blackbox: addr,
            vantage,
            _daemon: daemon,
            _dir: dir,
        }
    }

    /// Asks both `/probe?module=MODULE&target=TARGET` and returns what differs, each line naming
    /// `case`; `success` is the `probe_success` both must answer.
    fn compare(&self, case: &str, module: &str, target: &str, success: bool) -> Vec<String> {
        let path = format!("/probe?module={module}&target={}", percent_encode(target));
        let ask = |addr: SocketAddr, who: &str| {
            let (status, body) = http10(addr, "GET", &path)
                .unwrap_or_else(|| panic!("{case}: {who} did not answer {path}"));
            assert_eq!(status, 200, "{case}: {who} answered {path} with\n{body}");
            body
        };
        let (theirs_text, ours_text) = (
            ask(self.blackbox, "blackbox"),
            ask(self.vantage.addr, "vantage"),
        );
        let (theirs, ours) = (parse(&theirs_text), parse(&ours_text));
        let mut problems = Vec::new();
        let want = if success { 1.0 } else { 0.0 };
        for (who, samples) in [("blackbox", &theirs), ("vantage", &ours)] {
            let got = value(samples, "probe_success");
            if got != Some(want) {
                problems.push(format!(
                    "{case}: {who}'s probe_success is {got:?}, not {want}"
                ));
            }
        }
        let missing: Vec<&str> = names(&theirs).difference(&names(&ours)).copied().collect();
        if !missing.is_empty() {
            problems.push(format!("{case}: vantage lacks {}", missing.join(", ")));
        }
        for name in EXACT {
            if let (Some(a), Some(b)) = (value(&theirs, name), value(&ours, name))
                && a != b
            {
                problems.push(format!(
                    "{case}: {name} is {a} from blackbox, {b} from vantage"
                ));
            }
        }
        for (name, label) in SAME_LABELS {
            let a = label_values(&theirs, name, label);
            if !a.is_empty() && a != label_values(&ours, name, label) {
                let b = label_values(&ours, name, label);
                problems.push(format!(
                    "{case}: {name}'s {label} is {a:?} from blackbox, {b:?} from vantage"
                ));
            }
        }
        // Durations: blackbox's phases are vantage's phases, each present and not negative.
        let timed = names(&theirs)
            .into_iter()
            .filter(|n| n.ends_with("_seconds") && !n.contains("timestamp"));
        for name in timed {
            let a = label_values(&theirs, name, "phase");
            let b = label_values(&ours, name, "phase");
            if a != b {
                problems.push(format!(
                    "{case}: {name}'s phases are {a:?} from blackbox, {b:?} from vantage"
                ));
            }
            for s in ours.iter().filter(|s| s.name == name) {
                if !(s.value >= 0.0 && s.value.is_finite()) {
                    problems.push(format!(
                        "{case}: vantage's {name}{{{}}} is {}",
                        s.labels, s.value
                    ));
                }
            }
        }
        if !problems.is_empty() {
            eprintln!(
                "--- {case}: blackbox answered\n{theirs_text}--- vantage answered\n{ours_text}"
            );
        }
        problems
    }

    /// Runs every case, then fails with every difference found, if any.
    fn check(&self, cases: &[(&str, &str, String, bool)]) {
        let mut problems = Vec::new();
        for (case, module, target, success) in cases {
            problems.extend(self.compare(case, module, target, *success));
        }
        assert!(
            problems.is_empty(),
            "vantage's /probe differs from blackbox_exporter's:\n{}",
            problems.join("\n")
        );
    }
}

/// A test root written to `root.pem`, and the leaves of the TLS cases, all for `127.0.0.1`
/// (an IP SAN, which both verify against an IP target): valid for 45 days, expired, and
/// self-signed (untrusted).
struct Certificates {
    pki: Pki,
    valid: crate::pki::Issued,
    expired: crate::pki::Issued,
    untrusted: crate::pki::Issued,
}

impl Certificates {
    fn new(tag: &str) -> Certificates {
        let pki = Pki::new(tag);
        let ip = ["127.0.0.1"];
        Certificates {
            valid: pki.root.leaf(Leaf::server(&ip).valid(days(-1), days(45))),
            expired: pki.root.leaf(Leaf::server(&ip).valid(days(-60), days(-2))),
            untrusted: Leaf::server(&ip).self_signed(),
            pki,
        }
    }

    fn root(&self) -> String {
        self.pki.dir.0.join("root.pem").display().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_https_modules_answer_as_blackbox_does() {
    support::needs(&["tool:prometheus-blackbox-exporter"]);
    let certs = Certificates::new("compat-http");
    let (plain, _) = Web::plain().start().await;
    let (valid, _) = Web::tls(&certs.valid).start().await;
    let (expired, _) = Web::tls(&certs.expired).start().await;
    let (untrusted, _) = Web::tls(&certs.untrusted).start().await;
    let root = certs.root();
    tokio::task::spawn_blocking(move || {
        let pair = Pair::start(
            "compat-http",
            &[
                (
                    "http_2xx",
                    "{prober: http, timeout: 5s, http: {preferred_ip_protocol: ip4}}".into(),
                    "{type: http, timeout: 5s}".into(),
                ),
                (
                    "https_2xx",
                    format!(
                        "{{prober: http, timeout: 5s, http: {{preferred_ip_protocol: ip4, \
                         tls_config: {{ca_file: {root}}}}}}}"
                    ),
                    format!("{{type: http, timeout: 5s, tls: {{ca_file: {root}}}}}"),
                ),
            ],
        );
        let closed = closed_port();
        pair.check(&[
            (
                "http 200",
                "http_2xx",
                format!("http://127.0.0.1:{plain}/ok"),
                true,
            ),
            (
                "http 500",
                "http_2xx",
                format!("http://127.0.0.1:{plain}/status/500"),
                false,
            ),
            (
                "http closed port",
                "http_2xx",
                format!("http://127.0.0.1:{closed}/"),
                false,
            ),
            (
                "https valid",
                "https_2xx",
                format!("https://127.0.0.1:{valid}/ok"),
                true,
            ),
            (
                "https expired",
                "https_2xx",
                format!("https://127.0.0.1:{expired}/ok"),
                false,
            ),
            (
                "https untrusted",
                "https_2xx",
                format!("https://127.0.0.1:{untrusted}/ok"),
                false,
            ),
        ]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_modules_answer_as_blackbox_does() {
    support::needs(&["tool:prometheus-blackbox-exporter"]);
    let certs = Certificates::new("compat-tcp");
    let open = quiet_peer();
    let (valid, _) = Server::new(&certs.valid, &[]).start().await;
    let (expired, _) = Server::new(&certs.expired, &[]).start().await;
    let (untrusted, _) = Server::new(&certs.untrusted, &[]).start().await;
    let root = certs.root();
    tokio::task::spawn_blocking(move || {
        let pair = Pair::start(
            "compat-tcp",
            &[
                (
                    "tcp_connect",
                    "{prober: tcp, timeout: 5s, tcp: {preferred_ip_protocol: ip4}}".into(),
                    "{type: tcp, timeout: 5s}".into(),
                ),
                (
                    "tls_connect",
                    format!(
                        "{{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4, tls: true, \
                         tls_config: {{ca_file: {root}}}}}}}"
                    ),
                    format!("{{type: tcp, timeout: 5s, tls: {{ca_file: {root}}}}}"),
                ),
            ],
        );
        let closed = closed_port();
        pair.check(&[
            ("tcp open", "tcp_connect", format!("127.0.0.1:{open}"), true),
            (
                "tcp closed port",
                "tcp_connect",
                format!("127.0.0.1:{closed}"),
                false,
            ),
            (
                "tls valid",
                "tls_connect",
                format!("127.0.0.1:{valid}"),
                true,
            ),
            (
                "tls expired",
                "tls_connect",
                format!("127.0.0.1:{expired}"),
                false,
            ),
            (
                "tls untrusted",
                "tls_connect",
                format!("127.0.0.1:{untrusted}"),
                false,
            ),
        ]);
    })
    .await
    .unwrap();
}

#[test]
fn icmp_module_answers_as_blackbox_does() {
    support::needs(&["root", "tool:prometheus-blackbox-exporter"]);
    let pair = Pair::start(
        "compat-icmp",
        &[(
            "icmp",
            "{prober: icmp, timeout: 5s, icmp: {preferred_ip_protocol: ip4}}".into(),
            "{type: icmp, timeout: 5s}".into(),
        )],
    );
    pair.check(&[("icmp 127.0.0.1", "icmp", "127.0.0.1".into(), true)]);
}

#[test]
fn dns_modules_answer_as_blackbox_does() {
    support::needs(&["tool:prometheus-blackbox-exporter", "tool:dnsmasq"]);
    let dnsmasq = Dnsmasq::start(&[]);
    let module = |name: &str| {
        (
            format!(
                "{{prober: dns, timeout: 5s, dns: {{preferred_ip_protocol: ip4, query_name: {name}, \
                 query_type: A}}}}"
            ),
            format!("{{type: dns, timeout: 5s, host: {name}, dns: {{record_type: A}}}}"),
        )
    };
    let (found, found_ours) = module("www.vantage.test");
    let (missing, missing_ours) = module("nowhere.vantage.test");
    let pair = Pair::start(
        "compat-dns",
        &[
            ("dns_a", found, found_ours),
            ("dns_nxdomain", missing, missing_ours),
        ],
    );
    let silent = format!("127.0.0.1:{}", closed_port());
    pair.check(&[
        ("dns A", "dns_a", dnsmasq.server(), true),
        ("dns NXDOMAIN", "dns_nxdomain", dnsmasq.server(), false),
        ("dns no server", "dns_a", silent, false),
    ]);
}

/// The parser reads what both exporters write: labels with spaces and commas, exponents.
#[test]
fn the_answer_parser_reads_names_labels_and_values() {
    let body = "# HELP x y\n# TYPE probe_success gauge\nprobe_success 1\n\
        probe_ssl_last_chain_info{fingerprint_sha256=\"ab\",subject=\"CN=a, O=b c\"} 1\n\
        probe_http_duration_seconds{phase=\"connect\"} 1.5e-05\n";
    let samples = parse(body);
    assert_eq!(
        names(&samples),
        BTreeSet::from([
            "probe_success",
            "probe_ssl_last_chain_info",
            "probe_http_duration_seconds"
        ])
    );
    assert_eq!(value(&samples, "probe_http_duration_seconds"), Some(1.5e-5));
    assert_eq!(
        label_values(&samples, "probe_ssl_last_chain_info", "fingerprint_sha256"),
        BTreeSet::from(["ab".to_string()])
    );
}
