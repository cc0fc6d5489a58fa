//! The real monitoring stack as tests start it: the shipped files (Prometheus config, rules,
//! dashboard), daemons run by PID with their output in files, Debian's Prometheus scraping
//! vantages every second with the shipped rules, and its HTTP API. Everything listens on
//! 127.0.0.1. Shared by the alerting end-to-end test and the query test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pki::{Leaf, Pki, days};
use crate::support::{TempDir, closed_port, exchange};
use crate::tls;

pub fn shipped(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn read_shipped(path: &str) -> String {
    std::fs::read_to_string(shipped(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn dashboard() -> Value {
    serde_json::from_str(&read_shipped("dashboards/vantage.json")).expect("valid JSON")
}

/// Every `expr` in a dashboard or rule file, in order.
pub fn expressions(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    found.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(dashboard, &mut found);
    found
}

/// Replaces each `from` with `to`, failing if the shipped file no longer contains it.
pub fn rewrite(text: &str, edits: &[(&str, &str)]) -> String {
    edits.iter().fold(text.to_string(), |text, (from, to)| {
        assert!(text.contains(from), "the shipped file lost {from:?}");
        text.replace(from, to)
    })
}

/// A process this test started, killed by PID on drop. Its output goes to a file, which a
/// chatty process cannot fill up the way it can a pipe.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(program: &str, args: &[String], dir: &TempDir) -> Daemon {
        let log = dir.0.join(format!("{program}.log"));
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.0.join(format!("{program}.err"))).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        Daemon { child, log }
    }

    pub fn output(&self) -> String {
        let err = self.log.with_extension("err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Prometheus with the shipped `prometheus.yml` and `alerts.yml`, changed only where
/// a test must: 1 s scrape and evaluation intervals, and this test's vantages (each a target
/// of the job `vantage`) and Alertmanager. It also takes pushes (remote write 1.0).
pub struct Prometheus {
    pub addr: SocketAddr,
    pub daemon: Daemon,
}

impl Prometheus {
    pub fn start(dir: &TempDir, vantages: &[SocketAddr], alertmanager: SocketAddr) -> Prometheus {
        let addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
        // `targets: ["localhost:9875"]` becomes `targets: ["A", "B"]`.
        let targets: Vec<String> = vantages.iter().map(SocketAddr::to_string).collect();
        let targets = targets.join("\", \"");
        dir.write(
            "prometheus.yml",
            &rewrite(
                &read_shipped("deploy/prometheus/prometheus.yml"),
                &[
                    ("scrape_interval: 15s", "scrape_interval: 1s"),
                    ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                    ("localhost:9093", &alertmanager.to_string()),
                    ("localhost:9875", &targets),
                ],
            ),
        );
        dir.write("alerts.yml", &read_shipped("deploy/prometheus/alerts.yml"));
        let path = |name: &str| dir.0.join(name).display().to_string();
        let daemon = Daemon::start(
            "prometheus",
            &[
                format!("--config.file={}", path("prometheus.yml")),
                format!("--storage.tsdb.path={}", path("prom-data")),
                format!("--web.listen-address={addr}"),
                "--web.enable-remote-write-receiver".to_string(),
            ],
            dir,
        );
        wait_ready(addr, &daemon, "prometheus");
        Prometheus { addr, daemon }
    }
}

/// Runs `test` on a blocking thread beside two TLS servers on 127.0.0.1 with leaves for
/// `vantage.test` from one test root: a healthy one and one that expires in `expiring_days`.
/// `test` gets the root and their ports.
pub async fn beside_certificate_servers(tag: &str, expiring_days: i64, test: fn(&Pki, u16, u16)) {
    let pki = Pki::new(tag);
    let healthy = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let expiring = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(-60), days(expiring_days)));
    let (healthy_port, _) = tls::Server::new(&healthy, &[]).start().await;
    let (expiring_port, _) = tls::Server::new(&expiring, &[]).start().await;
    tokio::task::spawn_blocking(move || test(&pki, healthy_port, expiring_port))
        .await
        .unwrap();
}

/// One HTTP/1.0 exchange: Go servers answer it without chunked encoding, and close.
pub fn http10(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    exchange(addr, &request).map(|r| (r.status, r.body))
}

pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http10(addr, "GET", path).unwrap_or_else(|| panic!("GET {path}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus API answer's `data`, or what went wrong: its error, or the HTTP exchange.
pub fn api(prometheus: SocketAddr, path: &str) -> Result<Value, String> {
    let (status, body) =
        http10(prometheus, "GET", path).ok_or_else(|| format!("GET {path}: no answer"))?;
    let answer: Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, {e}: {body}"))?;
    if status != 200 || answer["status"] != "success" {
        return Err(format!("HTTP {status}: {answer}"));
    }
    Ok(answer["data"].clone())
}

/// An instant query's result vector.
pub fn query(prometheus: SocketAddr, expr: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", percent_encode(expr));
    let data = api(prometheus, &path).unwrap_or_else(|e| panic!("{expr}: {e}"));
    data["result"].as_array().cloned().unwrap_or_default()
}

pub fn wait_ready(addr: SocketAddr, daemon: &Daemon, what: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("{what} to be ready"),
        || http10(addr, "GET", "/-/ready").is_some_and(|(status, _)| status == 200),
        || daemon.output(),
    );
}

/// Polls `done` until it holds; after `limit`, fails with what `explain` says.
pub fn wait_until(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}\n{}",
            explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
