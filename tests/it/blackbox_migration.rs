//! Moving from blackbox_exporter as its users would: a blackbox.yml written as blackbox's own
//! example.yml writes its modules and a prometheus.yml in the `/probe` job shape of blackbox's
//! README, converted by `vantage import-blackbox`, run, and scraped by Debian's Prometheus. The
//! community's queries return data, and sensible values, in both ways of running it: Prometheus
//! scraping vantage's `/metrics`, where vantage runs the converted targets itself, and blackbox's
//! jobs left as they were but for the exporter's address (blackbox's, now vantage's), scraping
//! vantage's `/probe` with the converted modules.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dns::Dnsmasq;
use crate::http::Web;
use crate::pki::{Leaf, Pki, days};
use crate::prometheus::{Daemon, query, wait_ready};
use crate::support::{self, TempDir, Vantage, closed_port, quiet_peer, vantage_bin};
use crate::tls::Server;

/// Modules as blackbox_exporter's example.yml writes them (its keys and comments), pointed at
/// this test's servers: `{ROOT}` is the test CA, `{NAME}` the name dnsmasq knows.
const BLACKBOX: &str = r#"modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2.0"]
      valid_status_codes: []  # Defaults to 2xx
      method: GET
      follow_redirects: true
      preferred_ip_protocol: "ip4" # defaults to "ip6"
  http_post_2xx:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Content-Type: application/json
      body: '{}'
  https_2xx:
    prober: http
    timeout: 5s
    http:
      method: GET
      tls_config:
        ca_file: "{ROOT}"
      preferred_ip_protocol: "ip4"
  tcp_connect:
    prober: tcp
    timeout: 5s
  tls_connect:
    prober: tcp
    timeout: 5s
    tcp:
      tls: true
      tls_config:
        ca_file: "{ROOT}"
  icmp:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: "ip4"
  dns_udp_example:
    prober: dns
    timeout: 5s
    dns:
      query_name: "{NAME}"
      query_type: "A"
      valid_rcodes:
        - NOERROR
      preferred_ip_protocol: "ip4"
"#;

/// One `/probe` job as blackbox_exporter's README writes it, for `module` and `targets`.
fn job(name: &str, module: &str, targets: &[String]) -> String {
    let targets: String = targets.iter().map(|t| format!("        - {t}\n")).collect();
    format!(
        "  - job_name: '{name}'
    metrics_path: /probe
    params:
      module: [{module}]
    static_configs:
      - targets:
{targets}    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115  # The blackbox exporter's real hostname:port.
"
    )
}

/// The community's queries: what is down, certificates expiring within 30 days, the status
/// code, availability, and the HTTP phases.
const QUERIES: &[&str] = &[
    "probe_success == 0",
    "probe_ssl_earliest_cert_expiry - time() < 86400 * 30",
    "probe_http_status_code",
    "avg_over_time(probe_success[5m])",
    "probe_http_duration_seconds",
];

/// A `/probe` job: its name, its module, and its targets with the `probe_success` each should
/// have.
type Job = (&'static str, &'static str, Vec<(String, f64)>);

/// The loopback servers the configs name, and what each should answer.
struct Servers {
    web: u16,
    closed: u16,
    expiring: u16,
    tls: u16,
    open: u16,
    dns: String,
}

impl Servers {
    /// Every `/probe` job.
    fn targets(&self) -> Vec<Job> {
        let mut jobs = vec![
            (
                "blackbox",
                "http_2xx",
                vec![
                    (format!("http://127.0.0.1:{}/ok", self.web), 1.0),
                    (format!("http://127.0.0.1:{}/", self.closed), 0.0),
                ],
            ),
            (
                "blackbox_post",
                "http_post_2xx",
                vec![(format!("http://127.0.0.1:{}/ok", self.web), 1.0)],
            ),
            (
                "blackbox_https",
                "https_2xx",
                vec![(format!("https://127.0.0.1:{}/ok", self.expiring), 1.0)],
            ),
            (
                "blackbox_tcp",
                "tcp_connect",
                vec![(format!("127.0.0.1:{}", self.open), 1.0)],
            ),
            (
                "blackbox_tls",
                "tls_connect",
                vec![(format!("127.0.0.1:{}", self.tls), 1.0)],
            ),
        ];
        jobs.push(("blackbox_icmp", "icmp", vec![("127.0.0.1".into(), 1.0)]));
        jobs.push((
            "blackbox_dns",
            "dns_udp_example",
            vec![(self.dns.clone(), 1.0)],
        ));
        jobs
    }

    fn prometheus_yml(&self) -> String {
        let mut yml =
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n".to_string();
        for (name, module, targets) in self.targets() {
            let targets: Vec<String> = targets.into_iter().map(|(t, _)| t).collect();
            yml.push_str(&job(name, module, &targets));
        }
        yml
    }
}

/// `vantage import-blackbox BLACKBOX PROMETHEUS`: the converted config, which must be whole.
fn import(dir: &TempDir, blackbox: &str, prometheus: &str) -> String {
    let b = dir.write("blackbox.yml", blackbox);
    let p = dir.write("prometheus-blackbox.yml", prometheus);
    let out = Command::new(vantage_bin())
        .arg("import-blackbox")
        .args([&b, &p])
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "import-blackbox did not convert everything:\n{}\n---\n{config}",
        String::from_utf8_lossy(&out.stderr)
    );
    config
}

fn job_of(series: &Value) -> &str {
    series["metric"]["job"].as_str().unwrap_or("")
}

fn value_of(series: &Value) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Whether `series` names `needle` in a label (vantage's `name`/`target`, or `instance`).
fn mentions(series: &Value, needle: &str) -> bool {
    series["metric"].as_object().is_some_and(|labels| {
        labels
            .values()
            .any(|v| v.as_str().is_some_and(|v| v.contains(needle)))
    })
}

/// How Prometheus reaches vantage.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// vantage runs the imported targets; Prometheus scrapes its `/metrics` (job `vantage`).
    Metrics,
    /// Prometheus runs blackbox's jobs unchanged but for the exporter's address: vantage's
    /// `/probe` with the imported modules and the allow lists the importer wrote.
    Probe,
}

/// What the queries lack: empty when every one has sensible data.
fn judge(prometheus: SocketAddr, servers: &Servers, way: Way) -> Vec<String> {
    let mut problems = Vec::new();
    let closed = format!(":{}/", servers.closed);
    let ok = format!(":{}/ok", servers.web);
    for expr in QUERIES {
        let series = query(prometheus, expr);
        if series.is_empty() {
            problems.push(format!("{expr}: no data"));
            continue;
        }
        let values: Vec<f64> = series.iter().map(value_of).collect();
        let sensible = match *expr {
            "probe_success == 0" => {
                series.iter().any(|s| mentions(s, &closed)) && values.iter().all(|v| *v == 0.0)
            }
            "probe_http_status_code" => series
                .iter()
                .any(|s| mentions(s, &ok) && value_of(s) == 200.0),
            "avg_over_time(probe_success[5m])" => {
                values.iter().all(|v| (0.0..=1.0).contains(v))
                    && series
                        .iter()
                        .any(|s| mentions(s, &ok) && value_of(s) == 1.0)
            }
            // The https server's certificate expires in 10 days.
            "probe_ssl_earliest_cert_expiry - time() < 86400 * 30" => values
                .iter()
                .all(|v| (9.0 * 86400.0..11.0 * 86400.0).contains(v)),
            _ => values.iter().all(|v| *v >= 0.0),
        };
        if !sensible {
            problems.push(format!("{expr}: unexpected values: {series:?}"));
        }
    }
    if way == Way::Metrics {
        return problems;
    }
    // blackbox's jobs, unchanged: one probe_success per target, with the right value.
    let probed = query(prometheus, "probe_success");
    for (job, _, targets) in servers.targets() {
        for (target, want) in targets {
            let found = probed
                .iter()
                .find(|s| job_of(s) == job && s["metric"]["instance"] == target.as_str());
            match found.map(value_of) {
                Some(v) if v == want => {}
                other => problems.push(format!(
                    "probe_success{{job=\"{job}\",instance=\"{target}\"}} is {other:?}, not {want}"
                )),
            }
        }
    }
    problems
}

/// The loopback servers, blackbox's configs converted by `import-blackbox`, vantage running
/// the result, and Prometheus scraping it `way`; fails unless every query has sensible data.
async fn migrate(way: Way) {
    let pki = Pki::new("migration");
    let root = pki.dir.0.join("root.pem").display().to_string();
    let expiring = pki
        .root
        .leaf(Leaf::server(&["127.0.0.1"]).valid(days(-80), days(10)));
    let (web, _) = Web::plain().start().await;
    let (expiring_port, _) = Web::tls(&expiring).start().await;
    let (tls_port, _) = Server::new(&expiring, &[]).start().await;
    tokio::task::spawn_blocking(move || {
        let dnsmasq = Dnsmasq::start(&[]);
        let servers = Servers {
            web,
            closed: closed_port(),
            expiring: expiring_port,
            tls: tls_port,
            open: quiet_peer(),
            dns: dnsmasq.server(),
        };
        let dir = TempDir::new("migration");
        let blackbox = BLACKBOX
            .replace("{ROOT}", &root)
            .replace("{NAME}", "www.vantage.test");
        let scrape = servers.prometheus_yml();
        let converted = import(&dir, &blackbox, &scrape);
        let (config, args): (String, &[&str]) = match way {
            Way::Metrics => (converted.clone(), &[]),
            // The allow lists are the importer's, from the jobs' targets: the migration is the
            // converted file as it is.
            Way::Probe => (converted.clone(), &["--web.enable-probe"]),
        };
        let vantage = Vantage::start(&dir.write("exporter.yml", &config), args);

        let prometheus_addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
        let yml = match way {
            Way::Metrics => format!(
                "global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: vantage\n    \
                 static_configs:\n      - targets: ['{}']\n",
                vantage.addr
            ),
            Way::Probe => scrape.replace("127.0.0.1:9115", &vantage.addr.to_string()),
        };
        let yml = dir.write("prometheus.yml", &yml);
        let daemon = Daemon::start(
            "prometheus",
            &[
                format!("--config.file={}", yml.display()),
                format!("--storage.tsdb.path={}", dir.0.join("prom-data").display()),
                format!("--web.listen-address={prometheus_addr}"),
            ],
            &dir,
        );
        wait_ready(prometheus_addr, &daemon, "prometheus");

        // A few scrapes of every job: then every query has its answer, or never will.
        let deadline = Instant::now() + Duration::from_secs(30);
        let problems = loop {
            let problems = judge(prometheus_addr, &servers, way);
            if problems.is_empty() || Instant::now() > deadline {
                break problems;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        assert!(
            problems.is_empty(),
            "{}\n--- exporter.yml\n{config}\n--- vantage's log\n{}",
            problems.join("\n"),
            vantage.log()
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_targets_on_metrics_answer_the_community_queries() {
    support::needs(&["root", "tool:prometheus", "tool:dnsmasq"]);
    migrate(Way::Metrics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackboxs_jobs_on_vantages_probe_answer_the_community_queries() {
    support::needs(&["root", "tool:prometheus", "tool:dnsmasq"]);
    migrate(Way::Probe).await;
}
