//! The shipped alert rules, Prometheus and Alertmanager configs and Grafana dashboard, proven
//! against the real stack from Debian: promtool and amtool check them, and an end-to-end run
//! has Prometheus scrape vantage with the shipped rules and send to Alertmanager, which notifies
//! a webhook and an SMTP server run by this test. Everything listens on 127.0.0.1. The queries
//! of the dashboard and the README run in queries.rs.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dns::Dnsmasq;
use crate::pki::Pki;
use crate::prometheus::{
    Daemon, Prometheus, beside_certificate_servers, dashboard, expressions, get_json, http10,
    query, read_shipped, rewrite, shipped, wait_ready, wait_until,
};
use crate::remote_write::Receiver;
use crate::support::{
    self, TempDir, Vantage, closed_port, read_request, read_request_head, thread_peer,
};

/// Runs a checking tool; returns whether it succeeded and everything it printed.
fn check(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(shipped("deploy/prometheus"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_rules_pass_their_unit_tests_and_every_config_checks() {
    support::needs(&["tool:promtool", "tool:amtool"]);
    for (program, args) in [
        ("promtool", &["check", "rules", "alerts.yml"][..]),
        ("promtool", &["test", "rules", "alerts_test.yml"]),
        ("promtool", &["check", "config", "prometheus.yml"]),
        ("amtool", &["check-config", "alertmanager.yml"]),
    ] {
        let (ok, report) = check(program, args);
        assert!(ok, "{program} {args:?} failed:\n{report}");
        assert!(report.contains("SUCCESS"), "{program} {args:?}:\n{report}");
    }
}

/// The vector selectors of a PromQL expression: each metric name with its matchers, skipping
/// functions, aggregations, keywords with their label lists, strings, ranges and numbers.
fn selectors(expr: &str) -> Vec<String> {
    // Words followed by a label list: `by (a, b)`, `on (a)`, `group_left ()`.
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const OPERATORS: [&str; 16] = [
        "and", "or", "unless", "bool", "offset", "sum", "min", "max", "avg", "count", "group",
        "stddev", "stdvar", "topk", "bottomk", "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // The index just past the string that opens at `i`.
    let past_string = |mut i: usize| {
        i += 1;
        while i < chars.len() && chars[i] != '"' {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    // The index just past the first `close` from `i` on, strings skipped.
    let past = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            i = if chars[i] == '"' {
                past_string(i)
            } else {
                i + 1
            };
        }
        i + 1
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = past_string(i);
        } else if c == '[' {
            i = past(i, ']');
        } else if c.is_ascii_digit() {
            while i < chars.len() && (name_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if name_char(c) {
            let start = i;
            while i < chars.len() && name_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while chars.get(next).is_some_and(|c| c.is_whitespace()) {
                next += 1;
            }
            let opens = |c: char| chars.get(next) == Some(&c);
            if LABEL_LISTS.contains(&word.as_str()) {
                if opens('(') {
                    i = past(next, ')');
                }
            } else if !OPERATORS.contains(&word.as_str()) && !opens('(') {
                let end = if opens('{') { past(next, '}') } else { i };
                found.push(chars[start..end].iter().collect());
                i = end;
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn selectors_are_found_in_rule_expressions() {
    assert_eq!(
        selectors(
            r#"label_replace(last_over_time(probe_tls_chain_valid[1h]) == 0, "problem", "a b", "", "")
              or avg_over_time(x:y:z[10m]) > on (slow_above) group_left () vantage:slow_above_seconds
              and ignoring (reason, step) probe_failure_info{reason="dns_unexpected_answer", step!="}"} / 86400
              unless absent(up{job="vantage"}) * 1e3 + count(a) - sum by (x) (b{c="d"})"#
        ),
        [
            "probe_tls_chain_valid",
            "x:y:z",
            "vantage:slow_above_seconds",
            r#"probe_failure_info{reason="dns_unexpected_answer", step!="}"}"#,
            r#"up{job="vantage"}"#,
            "a",
            r#"b{c="d"}"#,
        ]
    );
}

#[test]
fn the_dashboard_asks_only_for_a_prometheus_datasource() {
    let dashboard = dashboard();
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        variables,
        ["datasource", "location", "target", "probe", "compare"]
    );
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
    assert_eq!(dashboard["templating"]["list"][0]["query"], "prometheus");
    assert!(
        dashboard.get("__inputs").is_none(),
        "no import-time inputs: the datasource is a variable"
    );

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title}: wider than the 24-column grid");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], datasource, "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{title}");
        }
    }
}

type Inbox<T> = Arc<Mutex<Vec<T>>>;

/// A loopback server whose `session` runs on its own thread for every connection and files
/// what it receives into the returned inbox.
fn sink<T: Send + 'static>(session: fn(TcpStream, &Inbox<T>)) -> (SocketAddr, Inbox<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox: Inbox<T> = Arc::default();
    let store = Arc::clone(&inbox);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = Arc::clone(&store);
            std::thread::spawn(move || session(stream, &store));
        }
    });
    (addr, inbox)
}

/// Alertmanager's webhook receiver: files every notification's JSON.
fn webhook_session(mut stream: TcpStream, inbox: &Inbox<Value>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some((_, body)) = read_request(&mut stream) else {
        return;
    };
    if let Ok(json) = serde_json::from_slice(&body) {
        inbox.lock().unwrap().push(json);
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// One email as an SMTP server sees it.
#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    data: String,
}

/// A plain SMTP server's session (no TLS, no AUTH) that accepts every message.
fn smtp_session(stream: TcpStream, inbox: &Inbox<Mail>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream.take(1 << 20));
    let mut reply = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    reply("220 sink ESMTP");
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let answered = if command.starts_with("EHLO") || command.starts_with("HELO") {
            reply("250 sink")
        } else if let Some(rcpt) = command.strip_prefix("RCPT TO:") {
            to.push(rcpt.trim_matches(['<', '>', ' ']).to_ascii_lowercase());
            reply("250 OK")
        } else if command == "DATA" {
            reply("354 go ahead");
            let mut data = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line.trim_end() == "." {
                    break;
                }
                data.push_str(&line);
            }
            inbox.lock().unwrap().push(Mail {
                to: std::mem::take(&mut to),
                data,
            });
            reply("250 queued")
        } else if command == "QUIT" {
            reply("221 bye");
            return;
        } else {
            reply("250 OK")
        };
        if !answered {
            return;
        }
    }
}

/// Whether a webhook notification carried `alertname` for target `name` in `status`
/// (`firing` or `resolved`), with `severity` if given.
fn notified(
    inbox: &Inbox<Value>,
    alertname: &str,
    name: &str,
    status: &str,
    severity: Option<&str>,
) -> bool {
    inbox.lock().unwrap().iter().any(|n| {
        n["alerts"].as_array().into_iter().flatten().any(|a| {
            a["status"] == status
                && a["labels"]["alertname"] == alertname
                && a["labels"]["name"] == name
                && severity.is_none_or(|s| a["labels"]["severity"] == s)
        })
    })
}

/// Answers every request with 200 and a short body.
fn web_page(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if read_request_head(&mut stream).is_some() {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_alertmanager_and_resolve_on_recovery() {
    support::needs(&[
        "root",
        "tool:prometheus",
        "tool:prometheus-alertmanager",
        "tool:dnsmasq",
    ]);
    beside_certificate_servers("alerting", 3, end_to_end).await;
}

fn end_to_end(pki: &Pki, healthy_port: u16, expiring_port: u16) {
    let dir = TempDir::new("alerting");
    let receiver = Receiver::start(|_| Some((204, "")));
    let dnsmasq = Dnsmasq::start(&[]);
    let web_port = thread_peer(web_page);
    let failing_port = closed_port();
    let config = dir.write(
        "exporter.yml",
        &format!(
            "location: e2e
defaults: {{interval: 1s, timeout: 800ms}}
targets:
  - name: healthy-tls
    type: tcp
    host: 127.0.0.1
    port: {healthy_port}
{healthy_tls}  - name: expiring-tls
    type: tcp
    host: 127.0.0.1
    port: {expiring_port}
{expiring_tls}  - name: untrusted-tls
    type: tcp
    host: 127.0.0.1
    port: {healthy_port}
    tls: {{server_name: vantage.test, verify: false}}
  - {{name: failing, type: tcp, host: 127.0.0.1, port: {failing_port}}}
  - {{name: web, type: http, url: \"http://127.0.0.1:{web_port}/\", labels: {{slow_above: 10s}}}}
  - name: resolver
    type: dns
    host: www.vantage.test
    dns: {{server: \"{dns}\", expect_addresses: [127.0.0.10]}}
  - name: wrong-dns
    type: dns
    host: www.vantage.test
    dns: {{server: \"{dns}\", expect_addresses: [127.0.0.99]}}
  - {{name: loopback, type: icmp, host: 127.0.0.1, icmp: {{count: 2}}, labels: {{slow_above: 1s}}}}
remote_write:
  - {{url: \"{sink}\", name: sink, self_metrics_interval: 0s}}
",
            healthy_tls = pki.yaml(""),
            expiring_tls = pki.yaml("      alert_before_expiry: 30d\n"),
            dns = dnsmasq.server(),
            // A receiver that takes everything: its metrics reach Prometheus by the scrape,
            // and the rules about pushes have data to watch.
            sink = receiver.url(),
        ),
    );
    let vantage = Vantage::start(&config, &[]);

    let (webhook, notifications) = sink(webhook_session);
    let (smtp, mails) = sink(smtp_session);
    let alertmanager_addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();

    // The shipped configs, pointed at this test's servers and made fast; nothing else changes.
    let webhook_url = format!("http://{webhook}/vantage");
    dir.write(
        "alertmanager.yml",
        &rewrite(
            &read_shipped("deploy/prometheus/alertmanager.yml"),
            &[
                ("smtp.example.com:587", &smtp.to_string()),
                ("smtp_require_tls: true", "smtp_require_tls: false"),
                (
                    "http://alert-receiver.example.com:5001/vantage",
                    &webhook_url,
                ),
                ("group_wait: 30s", "group_wait: 1s"),
                ("group_interval: 5m", "group_interval: 1s"),
            ],
        ),
    );
    let path = |name: &str| dir.0.join(name).display().to_string();
    let alertmanager = Daemon::start(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", path("alertmanager.yml")),
            format!("--storage.path={}", path("am-data")),
            format!("--web.listen-address={alertmanager_addr}"),
            // No cluster: nothing listens beyond the one loopback port.
            "--cluster.listen-address=".to_string(),
        ],
        &dir,
    );
    let prometheus = Prometheus::start(&dir, &[vantage.addr], alertmanager_addr);
    let prometheus_addr = prometheus.addr;
    wait_ready(alertmanager_addr, &alertmanager, "alertmanager");

    // The scrape's health too (`lastError` of each target) and Prometheus' own log: an empty
    // list of alerts alone does not say whether the rules ran on nothing or never ran.
    let explain = || {
        format!(
            "prometheus alerts: {:?}\nprometheus targets: {:?}\nwebhook: {:?}\n\
             alertmanager log:\n{}\nprometheus log:\n{}\nvantage log:\n{}",
            http10(prometheus_addr, "GET", "/api/v1/alerts").map(|(_, body)| body),
            http10(prometheus_addr, "GET", "/api/v1/targets").map(|(_, body)| body),
            notifications.lock().unwrap(),
            alertmanager.output(),
            prometheus.daemon.output(),
            vantage.log()
        )
    };

    // 3 failed runs of 1 s each, a scrape and an evaluation, Alertmanager's 1 s group wait.
    wait_until(
        Duration::from_secs(90),
        "the down, wrong answer and expiring pages at the webhook",
        || {
            [
                ("VantageTargetDownEverywhere", "failing"),
                ("VantageTargetDownEverywhere", "wrong-dns"),
                ("VantageCertificateExpiring", "expiring-tls"),
            ]
            .iter()
            .all(|(alert, name)| notified(&notifications, alert, name, "firing", Some("critical")))
        },
        explain,
    );

    // Held back by the inhibitions: Alertmanager has them, suppressed, and never sent the
    // per-location warning or the wrong-answer alert under the down page, or the 28-day
    // warning under the 7-day page.
    let held = get_json(alertmanager_addr, "/api/v2/alerts");
    let held = held.as_array().unwrap();
    let find = |alertname: &str, name: &str, severity: &str| {
        held.iter()
            .find(|a| {
                let labels = &a["labels"];
                labels["alertname"] == alertname
                    && labels["name"] == name
                    && labels["severity"] == severity
            })
            .unwrap_or_else(|| panic!("no {severity} {alertname} for {name}: {held:#?}"))
    };
    for (alertname, name, severity) in [
        ("VantageTargetDown", "failing", "warning"),
        ("VantageTargetDown", "wrong-dns", "warning"),
        ("VantageDnsUnexpectedAnswer", "wrong-dns", "critical"),
        ("VantageCertificateExpiring", "expiring-tls", "warning"),
    ] {
        let alert = find(alertname, name, severity);
        assert_eq!(alert["status"]["state"], "suppressed", "{alert}");
        assert!(
            !alert["status"]["inhibitedBy"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{alert}"
        );
    }
    for (alertname, name, severity) in [
        ("VantageTargetDown", "failing", "warning"),
        ("VantageDnsUnexpectedAnswer", "wrong-dns", "critical"),
        ("VantageCertificateExpiring", "expiring-tls", "warning"),
    ] {
        assert!(
            !notified(&notifications, alertname, name, "firing", Some(severity)),
            "{}",
            explain()
        );
    }
    let description = |alertname: &str, name: &str, severity: &str| {
        find(alertname, name, severity)["annotations"]["description"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let down = description("VantageTargetDown", "failing", "warning");
    assert!(
        down.contains("from e2e; reason: connection_refused."),
        "{down}"
    );
    let everywhere = description("VantageTargetDownEverywhere", "wrong-dns", "critical");
    assert!(
        everywhere.ends_with("Reasons: dns_unexpected_answer (locations: 1)."),
        "{everywhere}"
    );
    for alert in held {
        let name = alert["labels"]["name"].as_str().unwrap_or_default();
        assert!(
            ["failing", "wrong-dns", "expiring-tls"].contains(&name),
            "only the failing, wrong and expiring targets alert: {alert}"
        );
    }

    rule_selectors_have_data(prometheus_addr);

    wait_until(
        Duration::from_secs(60),
        "the page by email to ops@example.com",
        || {
            mails.lock().unwrap().iter().any(|m| {
                m.to == ["ops@example.com"]
                    && m.data.contains("[FIRING:1] VantageTargetDownEverywhere")
            })
        },
        || format!("mails: {:?}", mails.lock().unwrap()),
    );

    // The failing target comes back: the page resolves by itself, on the webhook and by email.
    let listener = TcpListener::bind(("127.0.0.1", failing_port)).unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        }
    });
    wait_until(
        Duration::from_secs(60),
        "the page to resolve at the webhook",
        || {
            notified(
                &notifications,
                "VantageTargetDownEverywhere",
                "failing",
                "resolved",
                None,
            )
        },
        explain,
    );
    wait_until(
        Duration::from_secs(60),
        "the resolved email",
        || {
            mails
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.data.contains("[RESOLVED] VantageTargetDownEverywhere"))
        },
        || format!("mails: {:?}", mails.lock().unwrap()),
    );
    let still = get_json(prometheus_addr, "/api/v1/alerts");
    let firing: Vec<&str> = still["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["labels"]["name"].as_str())
        .collect();
    assert!(
        !firing.contains(&"failing") && firing.contains(&"expiring-tls"),
        "after recovery only the certificate alerts remain: {still}"
    );
}

/// Every vector selector of the shipped rules returns data from the end-to-end Prometheus:
/// no rule watches a metric or a label value that vantage does not export.
fn rule_selectors_have_data(prometheus: SocketAddr) {
    let rules: Value = serde_saphyr::from_str(&read_shipped("deploy/prometheus/alerts.yml"))
        .expect("alerts.yml is YAML");
    let found: BTreeSet<String> = expressions(&rules)
        .iter()
        .flat_map(|e| selectors(e))
        .collect();
    assert!(found.len() > 15, "{found:?}");
    all_have_data(prometheus, found.into_iter().collect(), "rule selectors");
}

/// Polls until each query returns a series: counters and rates need a few scrapes.
fn all_have_data(prometheus: SocketAddr, mut pending: Vec<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        pending.retain(|expr| query(prometheus, expr).is_empty());
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} without data after 60 s: {pending:#?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
