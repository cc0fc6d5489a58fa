//! `addresses: first | all` against a name with four loopback addresses (served by a real
//! dnsmasq, the target's `dns.server`), three of them listening and one dead: the run, the
//! exporter's `probe_address_success`, `probe_ip_protocol` and `probe_ip_addr_hash`, and the
//! per-address report of `vantage probe --name`.

use std::io::Read;
use std::net::{IpAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use vantage::config::{self, LoadOptions};
use vantage::probe::Reason;

use crate::dns::Dnsmasq;
use crate::support::{self, TempDir, Vantage, http_get, run, vantage_bin, wait_for};

const LIVE: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
const DEAD: &str = "127.0.0.14";

/// FNV-1a (32 bits) of each address's four bytes, computed apart from vantage (Python), to check
/// `probe_ip_addr_hash` against blackbox_exporter's definition.
const HASHES: [(&str, f64); 4] = [
    ("127.0.0.11", 3_501_142_319.0),
    ("127.0.0.12", 3_450_809_462.0),
    ("127.0.0.13", 3_467_587_081.0),
    ("127.0.0.14", 3_417_254_224.0),
];

/// dnsmasq answering `multi.vantage.test` with the four addresses.
fn dnsmasq() -> Dnsmasq {
    let records: Vec<String> = LIVE
        .iter()
        .chain([&DEAD])
        .map(|ip| format!("--host-record=multi.vantage.test,{ip}"))
        .collect();
    Dnsmasq::start(&records.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Listeners on the live addresses, all on one port, each taking a bounded number of
/// connections and reading each until the prober closes it; nothing listens on the dead one.
fn backends() -> u16 {
    let first = TcpListener::bind((LIVE[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![first];
    listeners.extend(
        LIVE[1..]
            .iter()
            .map(|ip| TcpListener::bind((*ip, port)).unwrap()),
    );
    for listener in listeners {
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten().take(200) {
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = stream.read(&mut [0u8; 16]);
                });
            }
        });
    }
    port
}

fn config_text(server: &str, port: u16) -> String {
    format!(
        "defaults: {{interval: 2s, timeout: 1500ms}}
targets:
  - {{name: first, type: tcp, host: multi.vantage.test, port: {port}, dns: {{server: \"{server}\"}}}}
  - {{name: all, type: tcp, host: multi.vantage.test, port: {port}, addresses: all, dns: {{server: \"{server}\"}}}}
"
    )
}

fn hash_of(ip: IpAddr) -> f64 {
    HASHES
        .iter()
        .find(|(a, _)| a.parse::<IpAddr>().unwrap() == ip)
        .map(|(_, h)| *h)
        .unwrap_or_else(|| panic!("{ip} is none of the name's addresses"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_probes_every_address_and_names_the_dead_one() {
    support::needs(&["tool:dnsmasq"]);
    let dnsmasq = dnsmasq();
    let port = backends();
    let config = config::parse(
        &config_text(&dnsmasq.server(), port),
        "t.yml",
        &LoadOptions::default(),
    )
    .unwrap();

    let first = run(&config.targets[0]).await;
    assert!(first.outcome.addresses.is_empty(), "one address, no list");
    let picked = first.outcome.trace.address.expect("an address").ip();
    assert_eq!(
        first.success(),
        picked != DEAD.parse::<IpAddr>().unwrap(),
        "{picked}: {:?}",
        first.failure()
    );

    let all = run(&config.targets[1]).await;
    let failure = all.failure().expect("the dead address fails the run");
    assert_eq!(failure.reason, Reason::ConnectionRefused);
    assert!(
        failure
            .detail
            .contains("1 of 4 addresses failed (127.0.0.14)"),
        "{failure}"
    );
    assert_eq!(
        all.outcome.trace.address.map(|a| a.ip().to_string()),
        Some(DEAD.to_string()),
        "the target shows the failing address's attempt"
    );
    assert!(
        all.outcome.trace.phases.dns.get().is_some(),
        "the one lookup is timed"
    );
    let mut each: Vec<(String, bool)> = all
        .outcome
        .addresses
        .iter()
        .map(|p| (p.address.to_string(), p.outcome.result.is_ok()))
        .collect();
    each.sort();
    let mut expected: Vec<(String, bool)> = LIVE.iter().map(|ip| (ip.to_string(), true)).collect();
    expected.push((DEAD.to_string(), false));
    assert_eq!(each, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_and_the_report_show_each_address() {
    support::needs(&["tool:dnsmasq"]);
    let dnsmasq = dnsmasq();
    let port = backends();
    let dir = TempDir::new("addresses");
    let path = dir.write("exporter.yml", &config_text(&dnsmasq.server(), port));

    let (body, report) = tokio::task::spawn_blocking(move || {
        let vantage = Vantage::start(&path, &[]);
        wait_for(Duration::from_secs(15), "a run of both targets", || {
            http_get(vantage.addr, "/metrics", None)
                .is_some_and(|r| r.body.matches("probe_ip_addr_hash{").count() == 2)
        });
        let body = http_get(vantage.addr, "/metrics", None).unwrap().body;
        let out = Command::new(vantage_bin())
            .arg(format!("--config.file={}", path.display()))
            .args(["probe", "--name=all"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "the dead address fails it");
        (body, String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
    .unwrap();

    let value = |name: &str, target: &str, extra: &str| -> Option<f64> {
        let prefix = format!("{name}{{name=\"{target}\"");
        body.lines()
            .find(|l| l.starts_with(&prefix) && l.contains(extra))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    };
    for target in ["first", "all"] {
        assert_eq!(value("probe_ip_protocol", target, ""), Some(4.0), "{body}");
    }
    assert_eq!(
        value("probe_ip_addr_hash", "all", ""),
        Some(hash_of(DEAD.parse().unwrap())),
        "the failing address's hash"
    );
    let first_hash = value("probe_ip_addr_hash", "first", "").unwrap();
    assert!(
        HASHES.iter().any(|(_, h)| *h == first_hash),
        "{first_hash} is the hash of one of the name's addresses"
    );

    let each: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("probe_address_success{"))
        .collect();
    assert_eq!(each.len(), 4, "four addresses of one target: {each:?}");
    assert!(each.iter().all(|l| l.contains("name=\"all\"")), "{each:?}");
    for ip in LIVE {
        let up = value("probe_address_success", "all", &format!("address=\"{ip}\""));
        assert_eq!(up, Some(1.0), "{ip}");
    }
    let dead = value(
        "probe_address_success",
        "all",
        &format!("address=\"{DEAD}\""),
    );
    assert_eq!(dead, Some(0.0));

    let sections = report.lines().filter(|l| l.starts_with("address ")).count();
    assert_eq!(sections, 4, "{report}");
    assert!(
        report.contains("FAILURE connection_refused: 127.0.0.14"),
        "{report}"
    );
    assert!(report.contains("1 of 4 addresses failed"), "{report}");
}

/// A backend that accepts and never answers TLS: with `addresses: all` the run must end on that
/// address's own failure (the handshake timed out, after a connect), as `first` does, and not on
/// the run's backstop, which knows neither the address nor the phase. Several runs, because the
/// two end at the same instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_address_keeps_its_own_reason_when_the_deadline_ends_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().flatten().take(20).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    let text = format!(
        "defaults: {{interval: 5s, timeout: 400ms}}
targets:
  - {{name: first, type: tcp, host: 127.0.0.1, port: {port}, tls: {{}}}}
  - {{name: all, type: tcp, host: 127.0.0.1, port: {port}, tls: {{}}, addresses: all}}
"
    );
    let config = config::parse(&text, "t.yml", &LoadOptions::default()).unwrap();
    for target in &config.targets {
        for _ in 0..4 {
            let ran = run(target).await;
            let failure = ran.failure().expect("the handshake never completes");
            assert_eq!(
                failure.reason,
                Reason::TlsHandshakeTimeout,
                "{}: {failure}",
                target.name
            );
            assert!(
                ran.outcome.trace.phases.connect.get().is_some(),
                "{}: the connect is kept",
                target.name
            );
            assert_eq!(
                ran.outcome.trace.address.map(|a| a.ip().to_string()),
                Some("127.0.0.1".to_string()),
                "{}",
                target.name
            );
        }
    }
}
