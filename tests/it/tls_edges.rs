//! TLS probes at the edges, against real rustls servers on loopback: many runs that leave the
//! server holding nothing, certificates with thousands of names or megabytes, peers that stop
//! reading, the operating system's store, and what the exporter and `vantage probe` show.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vantage::probe::Reason;

use crate::pki::{Ca, Leaf, Pki, days};
use crate::support::{run, run_plan, socket_states, target, wait_for};
use crate::tls::{Seen, Server, facts, probe, reason, validity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_200_runs_the_tls_server_holds_no_connection_of_ours() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let bad = pki.root.leaf(Leaf::server(&["other.test"]));
    let (port, seen) = Server::new(&leaf, &[]).start().await;
    let (bad_port, bad_seen) = Server::new(&bad, &[]).start().await;
    let ping = "    tcp: {send: \"PING\\r\\n\", expect: \"^\\\\+PONG\"}\n";
    let plan = [
        (target(port, &pki.yaml("")), None, 100),
        (target(port, &format!("{ping}{}", pki.yaml(""))), None, 50),
        // Failed verification closes politely too.
        (
            target(bad_port, &pki.yaml("")),
            Some(Reason::TlsHostnameMismatch),
            50,
        ),
    ];
    run_plan(plan.into()).await;
    wait_for(
        Duration::from_secs(10),
        "the servers to see every connection end",
        || seen.open.load(Ordering::SeqCst) + bad_seen.open.load(Ordering::SeqCst) == 0,
    );
    for s in [&seen, &bad_seen] {
        assert_eq!(
            s.polite_closes.load(Ordering::SeqCst),
            s.accepted.load(Ordering::SeqCst),
            "every connection ended with close_notify and FIN, no reset"
        );
    }
    assert_eq!(
        seen.accepted.load(Ordering::SeqCst) + bad_seen.accepted.load(Ordering::SeqCst),
        200
    );
    for p in [port, bad_port] {
        wait_for(
            Duration::from_secs(10),
            "only LISTEN and TIME_WAIT to remain",
            || {
                socket_states(p)
                    .iter()
                    .all(|s| matches!(*s, "LISTEN" | "TIME_WAIT"))
            },
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_serves_certificate_facts_that_pass_promtool() {
    crate::support::needs(&["tool:promtool"]);
    let pki = Pki::new("tls");
    let intermediate = pki.root.intermediate("metrics intermediate", days(200));
    let leaf = intermediate.leaf(Leaf::server(&["vantage.test"]).valid(days(-1), days(100)));
    let (good, _) = Server::new(&leaf, &[&intermediate]).start().await;
    let expired = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(-30), days(-1)));
    let (bad, _) = Server::new(&expired, &[]).start().await;
    let root = pki.dir.0.join("root.pem").display().to_string();
    let config = pki.dir.write(
        "exporter.yml",
        &format!(
            "defaults: {{interval: 1s, timeout: 800ms}}
targets:
  - name: good
    type: tcp
    host: 127.0.0.1
    port: {good}
    tls: {{ca_file: {root}, server_name: vantage.test}}
    assertions:
      - {{type: certificate_expiry, greater_than: 30d}}
      - {{type: tls_version, in: [TLSv1.3]}}
  - name: expired-unverified
    type: tcp
    host: 127.0.0.1
    port: {bad}
    tls: {{ca_file: {root}, server_name: vantage.test, verify: false}}
"
        ),
    );
    let body = tokio::task::spawn_blocking(move || {
        let vantage = crate::support::Vantage::start(&config, &[]);
        wait_for(Duration::from_secs(15), "a run of both targets", || {
            crate::support::http_get(vantage.addr, "/metrics", None)
                .is_some_and(|r| r.body.matches("probe_success{").count() == 2)
        });
        crate::support::http_get(vantage.addr, "/metrics", None)
            .unwrap()
            .body
    })
    .await
    .unwrap();

    let series = |name: &str, target: &str| crate::support::series(&body, name, target);
    let value = |line: &str| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    assert_eq!(value(&series("probe_success", "good")[0]), 1.0, "{body}");
    assert_eq!(
        value(&series("probe_success", "expired-unverified")[0]),
        1.0,
        "verify: false does not fail on the chain\n{body}"
    );
    let info = series("probe_tls_cert_info", "good");
    assert_eq!(info.len(), 2, "{body}");
    assert!(
        info[0].contains(
            "cert_index=\"0\",subject=\"CN=vantage.test\",issuer=\"CN=metrics intermediate\""
        ) && info[0].contains("dns_names=\"vantage.test\",sha256=\""),
        "{}",
        info[0]
    );
    assert!(info[1].contains("cert_index=\"1\""), "{}", info[1]);
    assert_eq!(
        series("probe_tls_cert_not_after_timestamp_seconds", "good").len(),
        2
    );
    let days_left = value(&series("probe_tls_cert_expires_in_seconds", "good")[0]) / 86_400.0;
    assert!((99.0..=100.01).contains(&days_left), "{days_left}");
    let earliest = value(&series("probe_ssl_earliest_cert_expiry", "good")[0]);
    assert!((earliest - days(100).unix_timestamp() as f64).abs() < 60.0);
    let version = &series("probe_tls_version_info", "good")[0];
    assert!(
        version.contains("version=\"TLSv1.3\",cipher=\"TLS_")
            && version.contains("key_exchange=\"X25519\""),
        "{body}"
    );
    assert_eq!(value(&series("probe_tls_hello_retry", "good")[0]), 0.0);
    assert_eq!(value(&series("probe_tls_chain_valid", "good")[0]), 1.0);
    assert_eq!(value(&series("probe_tls_hostname_valid", "good")[0]), 1.0);
    assert!(series("probe_tls_handshake_duration_seconds", "good").len() == 1);
    let assertions = series("probe_assertion_success", "good");
    assert!(
        assertions[0].contains("assertion=\"certificate_expiry\"} 1")
            && assertions[1].contains("assertion=\"tls_version\"} 1"),
        "{assertions:?}"
    );
    assert_eq!(
        value(&series("probe_tls_chain_valid", "expired-unverified")[0]),
        0.0
    );
    assert_eq!(
        value(&series("probe_tls_hostname_valid", "expired-unverified")[0]),
        1.0
    );
    assert!(value(&series("probe_tls_cert_expires_in_seconds", "expired-unverified")[0]) < 0.0);
    crate::support::promtool_check(&body);
}

/// A server whose leaf is for `vantage.test` and `extra` more names (about 26 bytes each), and
/// the leaf's size.
async fn serve_many_names(pki: &Pki, extra: usize) -> (u16, Arc<Seen>, usize) {
    let mut names = vec!["vantage.test".to_string()];
    names.extend((0..extra).map(|i| format!("host-{i:05}.vantage.test")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let leaf = pki.root.leaf(Leaf::server(&names));
    let (port, seen) = Server::new(&leaf, &[]).start().await;
    (port, seen, leaf.der().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_thousands_of_names_is_inspected_without_harm() {
    let pki = Pki::new("tls");
    let (port, seen, size) = serve_many_names(&pki, 1500).await;
    assert!(size > 30_000, "{size}");
    let run = probe(port, &pki.yaml("")).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(facts(&run).chain[0].names.len(), 1501);
    wait_for(
        Duration::from_secs(5),
        "the server to see the close",
        || seen.polite_closes.load(Ordering::SeqCst) == 1,
    );
}

/// Regression (issue 23, item 5): a 1 MB certificate failed with the detail "the peer's answer
/// is not TLS (a plaintext service on this port?)"; the cause is the message's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_certificate_names_its_size_as_the_cause() {
    let pki = Pki::new("tls");
    let (port, _, size) = serve_many_names(&pki, 40_000).await;
    assert!(size > 1_000_000, "{size}");
    let run = probe(port, &pki.yaml("    timeout: 5s\n")).await;
    assert_eq!(reason(&run), Some(Reason::TlsHandshakeFailed));
    let detail = &run.failure().unwrap().detail;
    assert!(!detail.contains("not TLS"), "{detail}");
    assert!(
        detail.contains("handshake message over the 64 KiB"),
        "{detail}"
    );
    assert!(detail.contains("certificate chain"), "{detail}");
    assert!(run.duration < Duration::from_secs(5), "failed fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vantage_probe_type_tls_prints_the_chain_and_the_verdict() {
    let pki = Pki::new("tls");
    let intermediate = pki.root.intermediate("report intermediate", days(300));
    let leaf = intermediate.leaf(Leaf::server(&["127.0.0.1"]));
    let (port, _) = Server::new(&leaf, &[&intermediate]).start().await;
    let root = pki.dir.0.join("root.pem").display().to_string();
    let config = pki.dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - {{name: ours, type: tcp, host: 127.0.0.1, port: {port}, tls: {{ca_file: {root}, key_exchange: post_quantum}}}}\n"
        ),
    );
    let (adhoc, named) = tokio::task::spawn_blocking(move || {
        let probe = |args: &[&str]| {
            std::process::Command::new(crate::support::vantage_bin())
                .arg(format!("--config.file={}", config.display()))
                .arg("probe")
                .args(args)
                .output()
                .unwrap()
        };
        (
            probe(&[&format!("127.0.0.1:{port}"), "--type=tls"]),
            probe(&["--name=ours"]),
        )
    })
    .await
    .unwrap();

    // Ad hoc: the Mozilla roots do not know the test root.
    let out = String::from_utf8_lossy(&adhoc.stdout);
    assert_eq!(adhoc.status.code(), Some(1), "{out}");
    for expected in [
        "tls       TLSv1.3 TLS_",
        " X25519, handshake ",
        "no SNI (IP address)",
        "cert 0    CN=127.0.0.1",
        "issuer   CN=report intermediate",
        "days left)",
        "names    127.0.0.1",
        "cert 1    CN=report intermediate",
        "chain     FAILED tls_unknown_issuer",
        "hostname  ok",
        "close     close_notify and FIN sent",
        "result    FAILURE tls_unknown_issuer",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    // From the config, with its ca_file: verified, and the hybrid share it asks for taken.
    let out = String::from_utf8_lossy(&named.stdout);
    assert_eq!(named.status.code(), Some(0), "{out}");
    assert!(out.contains(" X25519MLKEM768, handshake "), "{out}");
    assert!(out.contains("chain     ok"), "{out}");
    assert!(out.contains("result    success"), "{out}");
}

/// `trust: system` reads the OS store, which OpenSSL's `SSL_CERT_FILE` can point at: with it
/// naming the test root, only a `trust: system` target verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_system_uses_the_operating_system_store() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Server::new(&leaf, &[]).start().await;
    let root = pki.dir.0.join("root.pem");
    let config = pki.dir.write(
        "exporter.yml",
        &format!(
            "targets:
  - {{name: system, type: tcp, host: 127.0.0.1, port: {port}, tls: {{trust: system, server_name: vantage.test}}}}
  - {{name: mozilla, type: tcp, host: 127.0.0.1, port: {port}, tls: {{server_name: vantage.test}}}}
"
        ),
    );
    let outputs = tokio::task::spawn_blocking(move || {
        ["system", "mozilla"].map(|name| {
            std::process::Command::new(crate::support::vantage_bin())
                .env("SSL_CERT_FILE", &root)
                .env_remove("SSL_CERT_DIR")
                .arg(format!("--config.file={}", config.display()))
                .args(["probe", &format!("--name={name}")])
                .output()
                .unwrap()
        })
    })
    .await
    .unwrap();
    let [system, mozilla] = outputs;
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(system.status.code(), Some(0), "{}", text(&system));
    assert!(text(&system).contains("chain     ok"), "{}", text(&system));
    assert_eq!(mozilla.status.code(), Some(1), "{}", text(&mozilla));
    assert!(
        text(&mozilla).contains("FAILURE tls_unknown_issuer"),
        "{}",
        text(&mozilla)
    );
}

/// Regression: closing TLS writes close_notify, which waited forever on a peer that stopped
/// reading; the run then ended in the backstop with its trace (and chain) lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_peer_that_stops_reading_cannot_hold_the_close_past_the_deadline() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let mut server = Server::new(&leaf, &[]);
    server.stall = true;
    let (port, _) = server.start().await;
    let big = "x".repeat(8 << 20);
    let yaml = format!(
        "    timeout: 1s\n    tcp: {{send: \"{big}\"}}\n{}",
        pki.yaml("")
    );
    // Timed from the built target: parsing 8 MiB of YAML in a debug build takes seconds.
    let target = target(port, &yaml);
    let started = std::time::Instant::now();
    let run = run(&target).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(reason(&run), Some(Reason::Timeout));
    assert_eq!(facts(&run).chain.len(), 1, "the trace survived: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_never_sent_to_a_server_that_fails_verification() {
    let pki = Pki::new("tls");
    let clients = Ca::root("client root");
    let wrong_name = pki.root.leaf(Leaf::server(&["other.test"]));
    let mut server = Server::new(&wrong_name, &[]);
    server.client_ca = Some(clients.der());
    let (port, seen) = server.start().await;
    let client = clients.leaf(Leaf::server(&["vantage probe"]).client());
    let (cert, key) = client.write(&pki.dir, "client");
    let files = format!("      cert_file: {cert}\n      key_file: {key}\n");

    let run = probe(port, &pki.yaml(&files)).await;
    assert_eq!(reason(&run), Some(Reason::TlsHostnameMismatch));
    assert_eq!(facts(&run).chain.len(), 1, "the chain is still reported");
    assert_eq!(validity(&run), (true, false));
    assert_eq!(
        seen.handshakes.load(Ordering::SeqCst),
        0,
        "the server never got our certificate"
    );

    // Told to skip the hostname, the same handshake completes with our certificate.
    let run = probe(
        port,
        &pki.yaml(&format!("{files}      skip_hostname_verify: true\n")),
    )
    .await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_time_does_not_count_the_hold() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Server::new(&leaf, &[]).start().await;
    let yaml = format!(
        "    tcp: {{hold: 400ms}}\n    assertions:\n      - {{type: response_time, less_than: 300ms}}\n{}",
        pki.yaml("")
    );
    let run = probe(port, &yaml).await;
    assert!(run.success(), "{:?}", run.failure());
    assert!(run.duration >= Duration::from_millis(400));
}
