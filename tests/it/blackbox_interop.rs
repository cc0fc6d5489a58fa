//! Side by side with Debian's blackbox_exporter (0.23): the same loopback servers probed by its
//! `/probe` and by a vantage run rendered with `render_probe` answer the same `probe_success`,
//! the same set of metric names (vantage's `probe_failure_info` aside) and, where both measure
//! the same thing, the same values (timings within a tolerance).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vantage::config::{self, LoadOptions, Target};

use crate::blackbox::Answer;
use crate::dns::Dnsmasq;
use crate::http::Web;
use crate::pki::{Leaf, Pki};
use crate::support::{self, TempDir, closed_port, exchange, run, socket_states, wait_for};
use crate::tls::Server;

/// A blackbox_exporter this test started on a loopback port, killed by PID on drop.
struct Blackbox {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Blackbox {
    /// Modules for every case, each with the trust of `root` where TLS is involved.
    fn start(root: &str, dns_question: &str) -> Blackbox {
        let dir = TempDir::new("blackbox");
        let tls = format!("tls_config: {{ca_file: {root}, server_name: vantage.test}}");
        let config = dir.write(
            "blackbox.yml",
            &format!(
                "modules:
  http: {{prober: http, timeout: 5s, http: {{preferred_ip_protocol: ip4}}}}
  https: {{prober: http, timeout: 5s, http: {{preferred_ip_protocol: ip4, {tls}}}}}
  tcp: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4}}}}
  tcp_tls: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4, tls: true, {tls}}}}}
  dns: {{prober: dns, timeout: 5s, dns: {{preferred_ip_protocol: ip4, query_name: {dns_question}, query_type: A}}}}
  icmp: {{prober: icmp, timeout: 5s, icmp: {{preferred_ip_protocol: ip4}}}}
"
            ),
        );
        let port = closed_port();
        let child = Command::new("prometheus-blackbox-exporter")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-blackbox-exporter runs");
        wait_for(
            Duration::from_secs(10),
            "blackbox_exporter to listen",
            || socket_states(port).contains("LISTEN"),
        );
        Blackbox {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
    }

    /// Its `/probe` answer for `module` and `target`.
    async fn probe(&self, module: &str, target: &str) -> Answer {
        let (addr, path) = (self.addr, format!("/probe?module={module}&target={target}"));
        // HTTP/1.0, so that Go answers without chunks, which this plain reader would keep.
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let response = tokio::task::spawn_blocking(move || exchange(addr, &request))
            .await
            .unwrap()
            .expect("blackbox_exporter answers");
        assert_eq!(response.status, 200, "{}", response.body);
        Answer::read(&response.body)
    }
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(entry: &str) -> Arc<Target> {
    let yaml = format!("targets:\n  - name: t\n    timeout: 5s\n{entry}");
    let config = config::parse(&yaml, "test.yml", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Arc::clone(&config.targets[0])
}

/// Probes with both, and compares: success, names, the values both know exactly, and the
/// timings named in `timed` within 50 ms (two separate runs on a shared machine).
async fn compare(
    blackbox: &Blackbox,
    module: &str,
    bb_target: &str,
    ours: &Target,
    exact: &[&str],
    timed: &[&str],
) {
    let theirs = blackbox.probe(module, bb_target).await;
    let run = run(ours).await;
    let mine = Answer::of(&run, ours);
    let case = format!("{module} {bb_target}");
    assert_eq!(
        mine.value("probe_success"),
        theirs.value("probe_success"),
        "{case}: probe_success\nvantage:\n{}\nblackbox:\n{}",
        mine.body,
        theirs.body
    );
    let mut names = mine.names();
    names.remove("probe_failure_info");
    assert_eq!(
        names,
        theirs.names(),
        "{case}: the names\nvantage:\n{}\nblackbox:\n{}",
        mine.body,
        theirs.body
    );
    for series in exact {
        assert_eq!(mine.value(series), theirs.value(series), "{case}: {series}");
    }
    for series in timed {
        let (a, b) = (mine.value(series), theirs.value(series));
        assert!(
            (a - b).abs() < 0.05,
            "{case}: {series}: vantage {a}, blackbox {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prober_answers_as_blackbox_exporter_does() {
    support::needs(&[
        "root",
        "tool:prometheus-blackbox-exporter",
        "tool:dnsmasq",
        "tool:promtool",
    ]);
    let pki = Pki::new("interop-blackbox");
    let root = pki.dir.0.join("root.pem").display().to_string();
    let blackbox = Blackbox::start(&root, "www.vantage.test");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (plain, _) = Web::plain().start().await;
    let (secure, _) = Web::tls(&leaf).start().await;
    let (tls_port, _) = Server::new(&leaf, &[]).start().await;
    let dnsmasq = Dnsmasq::start(&[]);
    let dead = closed_port();

    let http_exact = [
        "probe_http_status_code",
        "probe_http_content_length",
        "probe_http_uncompressed_body_length",
        "probe_http_redirects",
        "probe_http_ssl",
        "probe_http_version",
        "probe_failed_due_to_regex",
        "probe_ip_protocol",
        "probe_ip_addr_hash",
    ];
    let http_timed = [
        "probe_duration_seconds",
        "probe_http_duration_seconds{phase=\"connect\"}",
        "probe_http_duration_seconds{phase=\"processing\"}",
        "probe_http_duration_seconds{phase=\"transfer\"}",
    ];
    for path in ["ok", "modified", "redirect/2", "status/503"] {
        let url = format!("http://127.0.0.1:{plain}/{path}");
        let ours = parse(&format!("    type: http\n    url: {url}\n"));
        compare(&blackbox, "http", &url, &ours, &http_exact, &http_timed).await;
    }
    let url = format!("http://127.0.0.1:{plain}/modified");
    let ours = parse(&format!("    type: http\n    url: {url}\n"));
    compare(
        &blackbox,
        "http",
        &url,
        &ours,
        &["probe_http_last_modified_timestamp_seconds"],
        &[],
    )
    .await;
    let refused = format!("http://127.0.0.1:{dead}/");
    let ours = parse(&format!("    type: http\n    url: {refused}\n"));
    compare(&blackbox, "http", &refused, &ours, &http_exact, &[]).await;

    let url = format!("https://127.0.0.1:{secure}/ok");
    let ours = parse(&format!("    type: http\n    url: {url}\n{}", pki.flow("")));
    let theirs = blackbox.probe("https", &url).await;
    let tls_exact = [
        "probe_ssl_earliest_cert_expiry",
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "probe_tls_version_info{version=\"TLS 1.3\"}",
    ];
    let mut exact: Vec<&str> = http_exact.to_vec();
    exact.extend(tls_exact);
    compare(&blackbox, "https", &url, &ours, &exact, &http_timed).await;
    // The leaf's identity, spelled alike: the one series of each carries the same labels.
    let chain = |a: &Answer| -> BTreeSet<String> {
        a.series
            .keys()
            .filter(|s| s.starts_with("probe_ssl_last_chain_info"))
            .cloned()
            .collect()
    };
    let mine = Answer::of(&run(&ours).await, &ours);
    assert_eq!(
        chain(&mine),
        chain(&theirs),
        "{}\n{}",
        mine.body,
        theirs.body
    );

    let tcp_target = |port: u16, extra: &str| {
        parse(&format!(
            "    type: tcp\n    host: 127.0.0.1\n    port: {port}\n{extra}"
        ))
    };
    let tcp_exact = [
        "probe_ip_protocol",
        "probe_ip_addr_hash",
        "probe_failed_due_to_regex",
    ];
    let at = |port: u16| format!("127.0.0.1:{port}");
    compare(
        &blackbox,
        "tcp",
        &at(plain),
        &tcp_target(plain, ""),
        &tcp_exact,
        &[],
    )
    .await;
    compare(
        &blackbox,
        "tcp",
        &at(dead),
        &tcp_target(dead, ""),
        &tcp_exact,
        &[],
    )
    .await;
    let mut exact: Vec<&str> = tcp_exact.to_vec();
    exact.extend(tls_exact);
    let secured = tcp_target(tls_port, &pki.flow(""));
    compare(&blackbox, "tcp_tls", &at(tls_port), &secured, &exact, &[]).await;
    let stranger = Pki::new("interop-stranger");
    let untrusted = tcp_target(tls_port, &stranger.flow(""));
    let theirs_untrusted = Blackbox::start(
        &stranger.dir.0.join("root.pem").display().to_string(),
        "www.vantage.test",
    );
    compare(
        &theirs_untrusted,
        "tcp_tls",
        &at(tls_port),
        &untrusted,
        &tcp_exact,
        &[],
    )
    .await;

    let dns_exact = [
        "probe_dns_answer_rrs",
        "probe_dns_authority_rrs",
        "probe_dns_additional_rrs",
        "probe_dns_query_succeeded",
        "probe_ip_protocol",
        "probe_ip_addr_hash",
    ];
    let dns_target = |server: &str| {
        parse(&format!(
            "    type: dns\n    host: www.vantage.test\n    dns: {{server: \"{server}\"}}\n"
        ))
    };
    let server = dnsmasq.server();
    compare(
        &blackbox,
        "dns",
        &server,
        &dns_target(&server),
        &dns_exact,
        &[],
    )
    .await;

    let ping = parse("    type: icmp\n    host: 127.0.0.1\n    icmp: {count: 1}\n");
    compare(
        &blackbox,
        "icmp",
        "127.0.0.1",
        &ping,
        &["probe_ip_protocol", "probe_ip_addr_hash"],
        &["probe_icmp_duration_seconds{phase=\"rtt\"}"],
    )
    .await;
}
