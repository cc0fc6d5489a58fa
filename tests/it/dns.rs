//! dns probes and per-target resolvers against a real DNS server: Debian's dnsmasq, started on a
//! loopback port by the test, with records that point only at loopback addresses.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vantage::config::{self, LoadOptions, Target};
use vantage::probe::{Reason, Run};

use crate::support::{self, TempDir, closed_port, run, thread_peer, wait_for};

/// A dnsmasq this test started, killed by PID on drop.
pub struct Dnsmasq {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Dnsmasq {
    /// Serves the `vantage.test` zone from its command line, answering NXDOMAIN for other
    /// names under `test`. `extra` adds options. A dnsmasq that exits before it listens (its
    /// port taken by a concurrent test in between) is started again on another port.
    pub fn start(extra: &[&str]) -> Dnsmasq {
        for _ in 0..3 {
            if let Some(server) = Self::try_start(extra) {
                return server;
            }
        }
        panic!("dnsmasq exited before listening, three times on three ports");
    }

    fn try_start(extra: &[&str]) -> Option<Dnsmasq> {
        let port = closed_port();
        let dir = TempDir::new("dnsmasq");
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local=/test/",
                "--host-record=www.vantage.test,127.0.0.10,::1",
                "--host-record=local.vantage.test,127.0.0.1",
                "--host-record=two.vantage.test,127.0.0.11",
                "--host-record=two.vantage.test,127.0.0.12",
                "--cname=alias.vantage.test,www.vantage.test",
                "--mx-host=vantage.test,mail.vantage.test,10",
                "--txt-record=vantage.test,v=spf1 -all",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.0.join("pid").display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs");
        let mut server = Dnsmasq {
            child,
            port,
            _dir: dir,
        };
        let mut exited = false;
        wait_for(Duration::from_secs(10), "dnsmasq to listen", || {
            exited = matches!(server.child.try_wait(), Ok(Some(_)));
            exited || crate::support::socket_states(port).contains("LISTEN")
        });
        (!exited).then_some(server)
    }

    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dns_target(yaml: &str) -> Arc<Target> {
    let yaml = format!("targets:\n  - name: d\n    interval: 1m\n    timeout: 3s\n{yaml}");
    let config = config::parse(&yaml, "test.yml", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Arc::clone(&config.targets[0])
}

async fn ask(server: &Dnsmasq, host: &str, dns: &str) -> Run {
    run(&dns_target(&format!(
        "    type: dns\n    host: {host}\n    dns: {{server: \"{}\"{dns}}}\n",
        server.server()
    )))
    .await
}

fn reason(run: &Run) -> Option<Reason> {
    run.failure().map(|f| f.reason)
}

fn rcode(run: &Run) -> Option<String> {
    let facts = run.outcome.facts.dns()?;
    Some(vantage::net::dns::rcode_name(facts.rcode))
}

fn answers(run: &Run) -> Vec<String> {
    run.outcome.facts.dns().expect("an answer").answers.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_every_common_type_are_asked_and_judged() {
    support::needs(&["tool:dnsmasq"]);
    let dnsmasq = Dnsmasq::start(&[]);

    let a = ask(
        &dnsmasq,
        "two.vantage.test",
        ", expect_addresses: [127.0.0.12, 127.0.0.11]",
    )
    .await;
    assert!(a.success(), "{:?}", a.failure());
    assert_eq!(answers(&a).len(), 2);
    assert!(a.outcome.trace.phases.dns.get().is_some());

    for transport in ["udp", "tcp"] {
        let aaaa = ask(
            &dnsmasq,
            "www.vantage.test",
            &format!(", record_type: AAAA, transport: {transport}, expect_addresses: [\"::1\"]"),
        )
        .await;
        assert!(aaaa.success(), "{transport}: {:?}", aaaa.failure());
        let facts = aaaa.outcome.facts.dns().unwrap();
        assert_eq!(facts.transport.to_string(), transport);
    }

    let cname = ask(&dnsmasq, "alias.vantage.test", ", record_type: CNAME").await;
    assert!(cname.success(), "{:?}", cname.failure());
    assert!(
        answers(&cname)[0].ends_with("CNAME www.vantage.test."),
        "{:?}",
        answers(&cname)
    );

    let mx = ask(
        &dnsmasq,
        "vantage.test",
        ", record_type: MX, expect_regex: \"MX 10 mail\\\\.vantage\"",
    )
    .await;
    assert!(mx.success(), "{:?} {:?}", mx.failure(), answers(&mx));

    let txt = ask(
        &dnsmasq,
        "vantage.test",
        ", record_type: TXT, expect_regex: \"v=spf1\"",
    )
    .await;
    assert!(txt.success(), "{:?} {:?}", txt.failure(), answers(&txt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_and_refused_answers_fail_with_their_reasons() {
    support::needs(&["tool:dnsmasq"]);
    let dnsmasq = Dnsmasq::start(&[]);

    // A stale record: the name answers, but not with the address it should.
    let stale = ask(
        &dnsmasq,
        "www.vantage.test",
        ", expect_addresses: [127.0.0.99]",
    )
    .await;
    assert_eq!(reason(&stale), Some(Reason::DnsUnexpectedAnswer));
    assert!(
        stale
            .failure()
            .unwrap()
            .detail
            .contains("[127.0.0.10], expected [127.0.0.99]"),
        "{:?}",
        stale.failure()
    );
    let regex = ask(
        &dnsmasq,
        "vantage.test",
        ", record_type: MX, expect_regex: backup",
    )
    .await;
    assert_eq!(reason(&regex), Some(Reason::DnsUnexpectedAnswer));

    let nx = ask(&dnsmasq, "nothing.vantage.test", "").await;
    assert_eq!(reason(&nx), Some(Reason::DnsError));
    assert!(
        nx.failure().unwrap().detail.contains("NXDOMAIN"),
        "{:?}",
        nx.failure()
    );
    assert_eq!(rcode(&nx), Some("NXDOMAIN".to_string()));
    let must_not_exist = ask(
        &dnsmasq,
        "nothing.vantage.test",
        ", valid_rcodes: [NXDOMAIN]",
    )
    .await;
    assert!(must_not_exist.success(), "{:?}", must_not_exist.failure());

    // NOERROR without records of the type asked (NODATA).
    let nodata = ask(&dnsmasq, "two.vantage.test", ", record_type: MX").await;
    assert_eq!(reason(&nodata), Some(Reason::DnsUnexpectedAnswer));

    let nobody = run(&dns_target(&format!(
        "    type: dns\n    host: www.vantage.test\n    dns: {{server: \"127.0.0.1:{}\"}}\n",
        closed_port()
    )))
    .await;
    assert_eq!(reason(&nobody), Some(Reason::DnsError));
    assert!(
        nobody
            .failure()
            .unwrap()
            .detail
            .contains("no answer from the DNS server"),
        "{:?}",
        nobody.failure()
    );
    let nobody_tcp = run(&dns_target(&format!(
        "    type: dns\n    host: www.vantage.test\n    dns: {{server: \"127.0.0.1:{}\", transport: tcp}}\n",
        closed_port()
    )))
    .await;
    assert_eq!(reason(&nobody_tcp), Some(Reason::DnsError));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_from_a_validating_resolver_is_a_dns_error() {
    support::needs(&["tool:dnsmasq"]);
    // A DNSSEC-validating dnsmasq in front of an unsigned one cannot prove the answer: SERVFAIL.
    let unsigned = Dnsmasq::start(&["--local=/", "--host-record=www.signed.example,127.0.0.13"]);
    let validating = Dnsmasq::start(&[
        "--dnssec",
        "--dnssec-check-unsigned",
        "--trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
        &format!("--server=127.0.0.1#{}", unsigned.port),
    ]);
    let failed = ask(&validating, "www.signed.example", "").await;
    assert_eq!(
        reason(&failed),
        Some(Reason::DnsError),
        "{:?}",
        failed.failure()
    );
    assert_eq!(rcode(&failed), Some("SERVFAIL".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_server_on_tcp_and_http_targets_picks_their_resolver() {
    support::needs(&["tool:dnsmasq"]);
    let dnsmasq = Dnsmasq::start(&[]);
    let listener = thread_peer(|mut s| {
        use std::io::{Read, Write};
        let _ = crate::support::read_request_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        let mut rest = [0u8; 64];
        while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
    });
    // The peer listens on 127.0.0.1, which local.vantage.test points at.
    let server = dnsmasq.server();
    let tcp = run(&dns_target(&format!(
        "    type: tcp\n    host: local.vantage.test\n    port: {listener}\n    dns: {{server: \"{server}\"}}\n"
    )))
    .await;
    assert!(tcp.success(), "{:?}", tcp.failure());
    assert_eq!(
        tcp.outcome.trace.address,
        Some(format!("127.0.0.1:{listener}").parse().unwrap())
    );
    assert!(
        tcp.outcome.trace.phases.dns.get().is_some(),
        "the lookup is timed"
    );

    let http = run(&dns_target(&format!(
        "    type: http\n    url: http://local.vantage.test:{listener}/\n    dns: {{server: \"{server}\", transport: tcp}}\n"
    )))
    .await;
    assert!(http.success(), "{:?}", http.failure());

    let unknown = run(&dns_target(&format!(
        "    type: tcp\n    host: gone.vantage.test\n    port: {listener}\n    dns: {{server: \"{server}\"}}\n"
    )))
    .await;
    assert_eq!(reason(&unknown), Some(Reason::DnsError));
    assert!(
        unknown.failure().unwrap().detail.contains("NXDOMAIN"),
        "{:?}",
        unknown.failure()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_serves_dns_and_icmp_series_that_promtool_accepts() {
    support::needs(&["root", "tool:dnsmasq", "tool:promtool"]);
    let dnsmasq = Dnsmasq::start(&[]);
    let dir = TempDir::new("dns-exporter");
    let config = dir.write(
        "exporter.yml",
        &format!(
            "defaults: {{interval: 2s, timeout: 1500ms}}
targets:
  - {{name: www, type: dns, host: www.vantage.test, dns: {{server: \"{server}\", expect_addresses: [127.0.0.10]}}}}
  - {{name: gone, type: dns, host: gone.vantage.test, dns: {{server: \"{server}\"}}}}
  - {{name: loop, type: icmp, host: 127.0.0.1, icmp: {{count: 2}}}}
",
            server = dnsmasq.server()
        ),
    );
    let body = tokio::task::spawn_blocking(move || {
        crate::support::scrape_when_ready(&config, "probe_success", 3)
    })
    .await
    .unwrap();
    let value = |name: &str, target: &str| crate::support::sample(&body, name, target);
    assert_eq!(value("probe_success", "www"), 1.0);
    assert_eq!(value("probe_dns_answer_rrs", "www"), 1.0);
    assert_eq!(value("probe_dns_authority_rrs", "www"), 0.0);
    assert_eq!(value("probe_dns_additional_rrs", "www"), 0.0);
    assert!(value("probe_dns_lookup_duration_seconds", "www") > 0.0);
    assert!(
        body.contains("probe_dns_rcode_info{name=\"www\",probe=\"dns\",target=\"www.vantage.test\",location=\"\",rcode=\"NOERROR\"} 1"),
        "{body}"
    );
    assert_eq!(value("probe_success", "gone"), 0.0);
    assert!(body.contains("rcode=\"NXDOMAIN\"} 1"), "{body}");
    assert_eq!(value("probe_success", "loop"), 1.0);
    assert_eq!(value("probe_icmp_packet_loss_ratio", "loop"), 0.0);
    for stat in ["min", "avg", "max", "stddev"] {
        assert!(
            body.contains(&format!("probe_icmp_rtt_seconds{{name=\"loop\",probe=\"icmp\",target=\"127.0.0.1\",location=\"\",stat=\"{stat}\"}}")),
            "{stat}\n{body}"
        );
    }
    crate::support::promtool_check(&body);
}
