//! `/probe`: blackbox_exporter's endpoint, run by the real binary against loopback servers
//! that record who reached them, so that the allow list is shown to keep probes away, not
//! only to answer 403.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{TempDir, Vantage, exchange, http_get, wait_for};

/// An HTTP server on 127.0.0.1 that answers 200 and keeps each request's head; with `silent`
/// it reads and never answers.
struct Recorder {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(silent: bool) -> Recorder {
        Recorder::on(TcpListener::bind("127.0.0.1:0").unwrap(), silent)
    }

    fn on(listener: TcpListener, silent: bool) -> Recorder {
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = [0u8; 4096];
                    let n = stream.read(&mut buf).unwrap_or(0);
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    if silent {
                        let _ = stream.read(&mut buf);
                        return;
                    }
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                });
            }
        });
        Recorder { port, heads }
    }

    fn requests(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn config(dir: &TempDir, allowed_port: u16, extra: &str) -> std::path::PathBuf {
    dir.write(
        "exporter.yml",
        &format!(
            "modules:
  http_2xx:
    type: http
    timeout: 8s
    allow: {{networks: [127.0.0.0/8], hosts: [localhost], ports: [{allowed_port}]}}
  tcp_connect:
    type: tcp
    allow: {{hosts: [localhost]}}
  unlisted:
    type: tcp
{extra}targets: []
"
        ),
    )
}

fn probe(vantage: &Vantage, query: &str) -> crate::support::Response {
    http_get(vantage.addr, &format!("/probe?{query}"), None).expect("an answer")
}

#[test]
fn probe_runs_a_module_at_the_callers_target_only_within_its_allow_list() {
    let allowed = Recorder::start(false);
    let outside = Recorder::start(false);
    let dir = TempDir::new("probe-endpoint");
    let vantage = Vantage::start(&config(&dir, allowed.port, ""), &["--web.enable-probe"]);

    // blackbox's module when none is named, and its scheme when the target has none.
    let ok = probe(&vantage, &format!("target=127.0.0.1:{}", allowed.port));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("probe_success"), "{}", ok.body);
    assert_eq!(allowed.requests().len(), 1);
    assert!(allowed.requests()[0].starts_with("GET / HTTP/1.1\r\n"));

    // `hostname` is the Host the request names, sent to the target's address.
    let named = probe(
        &vantage,
        &format!(
            "module=http_2xx&target=http%3A%2F%2F127.0.0.1%3A{}%2Fhealth&hostname=www.vantage.test",
            allowed.port
        ),
    );
    assert_eq!(named.status, 200, "{}", named.body);
    let head = allowed.requests()[1].to_ascii_lowercase();
    assert!(head.starts_with("get /health http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("host: www.vantage.test:{}\r\n", allowed.port)),
        "{head}"
    );

    // Outside the list: refused, and nothing reached the server.
    for (query, why) in [
        (
            format!("module=http_2xx&target=127.0.0.1:{}", outside.port),
            "not in the module's allow list",
        ),
        (
            format!("module=tcp_connect&target=127.0.0.1:{}", outside.port),
            "127.0.0.1 is not in the module's allowed networks",
        ),
        (
            format!("module=unlisted&target=localhost:{}", outside.port),
            "has no allow list",
        ),
    ] {
        let refused = probe(&vantage, &query);
        assert_eq!(refused.status, 403, "{query}: {}", refused.body);
        assert!(refused.body.contains(why), "{query}: {}", refused.body);
    }
    assert!(outside.requests().is_empty(), "{:?}", outside.requests());
    // A name the list names is allowed on any port the module does not limit.
    let by_name = probe(
        &vantage,
        &format!("module=tcp_connect&target=localhost:{}", outside.port),
    );
    assert_eq!(by_name.status, 200, "{}", by_name.body);

    for (query, status, says) in [
        ("module=nope&target=x", 400, "Unknown module \"nope\""),
        ("module=http_2xx", 400, "Target parameter is missing"),
        ("module=http_2xx&target=%zz", 400, "malformed %-escape"),
        (
            "module=tcp_connect&target=localhost",
            400,
            "target \"localhost\"",
        ),
        (
            "module=tcp_connect&target=localhost:1&hostname=a",
            400,
            "hostname applies to http modules only",
        ),
    ] {
        let bad = probe(&vantage, query);
        assert_eq!(bad.status, status, "{query}: {}", bad.body);
        assert!(bad.body.contains(says), "{query}: {}", bad.body);
    }

    let metrics = http_get(vantage.addr, "/metrics", None).unwrap().body;
    let count = |module: &str, result: &str| {
        sample_of(
            &metrics,
            &format!("vantage_probe_requests_total{{module=\"{module}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(count("http_2xx", "success"), 2.0);
    assert_eq!(count("http_2xx", "refused"), 1.0);
    assert_eq!(count("tcp_connect", "refused"), 1.0);
    assert_eq!(count("unlisted", "refused"), 1.0);
    assert_eq!(count("tcp_connect", "success"), 1.0);
    assert_eq!(count("", "unknown_module"), 1.0);
    assert_eq!(count("", "invalid"), 1.0);
    assert_eq!(count("http_2xx", "invalid"), 1.0);
    assert_eq!(count("tcp_connect", "invalid"), 2.0);
}

/// The value of the first series that is `series` (a name, or a name with its labels).
fn sample_of(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(series)?;
            let labelled = !series.contains('{') && rest.starts_with('{');
            (rest.starts_with(' ') || labelled)
                .then(|| l.rsplit(' ').next()?.parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

#[test]
fn the_scrape_timeout_bounds_the_run_and_debug_shows_the_report() {
    let silent = Recorder::start(true);
    let dir = TempDir::new("probe-timeout");
    let vantage = Vantage::start(&config(&dir, silent.port, ""), &["--web.enable-probe"]);
    let ask = |timeout: &str, query: &str| {
        exchange(
            vantage.addr,
            &format!(
                "GET /probe?{query} HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: \
                 {timeout}\r\nConnection: close\r\n\r\n"
            ),
        )
        .expect("an answer")
    };
    // 2 s less the 500 ms offset: the run stops at 1.5 s, not at the module's 8 s.
    let target = format!("module=http_2xx&target=127.0.0.1:{}", silent.port);
    let answer = ask("2", &target);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let took = sample_of(&answer.body, "probe_duration_seconds");
    assert!((1.4..4.0).contains(&took), "the run took {took}s");
    assert_eq!(sample_of(&answer.body, "probe_success"), 0.0);

    let short = ask("0.5", &target);
    assert_eq!(short.status, 400, "{}", short.body);
    assert!(
        short.body.contains("less than 100ms for the run"),
        "{}",
        short.body
    );
    assert_eq!(ask("soon", &target).status, 400);

    let debug = ask("3", &format!("{target}&debug=true"));
    assert_eq!(debug.status, 200);
    assert_eq!(
        debug.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    for part in [
        "Module \"http_2xx\", target \"127.0.0.1:",
        "result ",
        "Metrics that would have been returned:",
        "probe_success",
        "Module configuration:",
        "timeout 8s (this run 2s",
    ] {
        assert!(debug.body.contains(part), "{part:?} in\n{}", debug.body);
    }
}

#[test]
fn probe_is_off_unless_enabled_and_follows_reloads() {
    let server = Recorder::start(false);
    let dir = TempDir::new("probe-reload");
    let path = config(&dir, server.port, "");
    let off = Vantage::start(&path, &[]);
    let refused = probe(&off, &format!("target=127.0.0.1:{}", server.port));
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("--web.enable-probe"),
        "{}",
        refused.body
    );
    assert!(server.requests().is_empty());
    drop(off);

    let vantage = Vantage::start(&path, &["--web.enable-probe"]);
    let query = format!("module=later&target=127.0.0.1:{}", server.port);
    assert_eq!(probe(&vantage, &query).status, 400);
    config(
        &dir,
        server.port,
        "  later:\n    type: tcp\n    allow: {networks: [127.0.0.1/32]}\n",
    );
    vantage.signal("HUP");
    wait_for(Duration::from_secs(10), "the new module", || {
        probe(&vantage, &query).status == 200
    });
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn probe_runs_share_max_concurrent_probes_and_wait_only_within_the_timeout() {
    let silent = Recorder::start(true);
    let dir = TempDir::new("probe-busy");
    let path = config(&dir, silent.port, "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("max_concurrent_probes: 1\n{text}")).unwrap();
    let vantage = Vantage::start(&path, &["--web.enable-probe"]);
    let addr = vantage.addr;
    let request = format!(
        "GET /probe?module=http_2xx&target=127.0.0.1:{} HTTP/1.1\r\nHost: x\r\n\
         X-Prometheus-Scrape-Timeout-Seconds: 2\r\nConnection: close\r\n\r\n",
        silent.port
    );
    let first = {
        let request = request.clone();
        std::thread::spawn(move || exchange(addr, &request).expect("an answer"))
    };
    wait_for(Duration::from_secs(5), "the first run to connect", || {
        silent.requests().len() == 1
    });
    // The one slot is taken until the first run's 1.5 s are up; the second gives up before
    // its own 1.5 s would be.
    let second = exchange(addr, &request).expect("an answer");
    assert_eq!(second.status, 503, "{}", second.body);
    assert!(
        second
            .body
            .contains("max_concurrent_probes (1) runs were in flight"),
        "{}",
        second.body
    );
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(silent.requests().len(), 1, "the second run never connected");
    let metrics = http_get(addr, "/metrics", None).unwrap().body;
    assert_eq!(
        sample_of(
            &metrics,
            "vantage_probe_requests_total{module=\"http_2xx\",result=\"busy\"}"
        ),
        1.0
    );
}

/// Servers on one port of several loopback addresses: which address a probe reached.
fn recorders_on(ips: &[&str]) -> (u16, Vec<Recorder>) {
    for _ in 0..20 {
        let port = crate::support::closed_port();
        let listeners: Vec<_> = ips
            .iter()
            .filter_map(|ip| TcpListener::bind((*ip, port)).ok())
            .collect();
        if listeners.len() == ips.len() {
            let recorders = listeners.into_iter().map(|l| Recorder::on(l, false));
            return (port, recorders.collect());
        }
    }
    panic!("no port free on all of {ips:?}");
}

#[test]
fn a_pinned_run_reaches_the_checked_address_only_even_with_addresses_all() {
    crate::support::needs(&["tool:dnsmasq"]);
    let dnsmasq = crate::dns::Dnsmasq::start(&[]);
    // two.vantage.test has 127.0.0.11 and 127.0.0.12; only .11 is allowed.
    let (port, servers) = recorders_on(&["127.0.0.11", "127.0.0.12", "127.0.0.1"]);
    let dir = TempDir::new("probe-pinned");
    let path = config(
        &dir,
        port,
        &format!(
            "  two:\n    type: http\n    addresses: all\n    dns: {{server: \"{}\"}}\n    \
             allow: {{networks: [127.0.0.11/32]}}\n  named:\n    type: http\n    \
             addresses: all\n    allow: {{networks: [127.0.0.12/32]}}\n",
            dnsmasq.server()
        ),
    );
    let vantage = Vantage::start(&path, &["--web.enable-probe"]);
    let mut ran = 0;
    for _ in 0..4 {
        let answer = probe(
            &vantage,
            &format!("module=two&target=http://two.vantage.test:{port}/"),
        );
        assert!(matches!(answer.status, 200 | 403), "{}", answer.body);
        if answer.status == 200 {
            ran += 1;
            assert!(
                sample_of(&answer.body, "probe_dns_lookup_time_seconds") > 0.0,
                "the allow list's lookup is the run's: {}",
                answer.body
            );
        }
    }
    // `hostname` names another host; the connection still goes to the checked target.
    let named = probe(
        &vantage,
        &format!("module=named&target=http://127.0.0.12:{port}/&hostname=localhost"),
    );
    assert_eq!(named.status, 200, "{}", named.body);
    assert_eq!(servers[0].requests().len(), ran);
    assert_eq!(servers[1].requests().len(), 1, "only the hostname request");
    assert!(
        servers[1].requests()[0]
            .to_ascii_lowercase()
            .contains("host: localhost:")
    );
    assert!(
        servers[2].requests().is_empty(),
        "localhost itself was never reached: {:?}",
        servers[2].requests()
    );
}
