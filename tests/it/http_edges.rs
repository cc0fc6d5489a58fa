//! HTTP(S) probes at the edges, against the in-process hyper server of `http`: HTTPS facts and
//! HTTP/2, a redirect to another TLS host, many runs that leave the server holding nothing,
//! garbage and half answers, and what the exporter serves.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Version;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vantage::probe::Reason;

use crate::http::{Seen, Web, get, header, http, reason, web_target};
use crate::pki::{Leaf, Pki, days};
use crate::support::{run, socket_states, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_an_expired_certificate_reports_facts_and_sends_no_request() {
    let pki = Pki::new("http");
    let leaf = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(-60), days(-1)));
    let (port, log) = Web::tls(&leaf).start().await;
    let url = format!("https://127.0.0.1:{port}/ok");
    let run = get(&url, &pki.flow("")).await;
    assert_eq!(reason(&run), Some(Reason::TlsCertExpired));
    let facts = run.outcome.facts.tls().expect("TLS facts");
    assert_eq!(facts.chain.len(), 1);
    assert_eq!(facts.chain[0].subject, "CN=vantage.test");
    assert!(facts.expires_in(std::time::SystemTime::now()).unwrap() < 0);
    assert!(
        log.requests().is_empty(),
        "no request over an unverified connection"
    );
    assert_eq!(http(&run).hops[0].status, None);

    let unverified = get(&url, &pki.flow(", verify: false")).await;
    assert!(unverified.success(), "{:?}", unverified.failure());
    assert_eq!(log.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_negotiates_http2_only_when_asked() {
    let pki = Pki::new("http");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, log) = Web {
        h2: true,
        ..Web::tls(&leaf)
    }
    .start()
    .await;
    let url = format!("https://127.0.0.1:{port}/redirect/1");

    let h1 = get(&url, &pki.flow("")).await;
    assert!(h1.success(), "{:?}", h1.failure());
    assert_eq!(http(&h1).version(), Some(Version::HTTP_11));
    let tls = h1.outcome.facts.tls().unwrap();
    assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));

    let h2 = get(
        &url,
        &format!("{}    http: {{http2: true}}\n", pki.flow("")),
    )
    .await;
    assert!(h2.success(), "{:?}", h2.failure());
    assert_eq!(http(&h2).version(), Some(Version::HTTP_2));
    assert_eq!(http(&h2).redirects(), 1);
    let tls = h2.outcome.facts.tls().unwrap();
    assert_eq!(tls.alpn.as_deref(), Some("h2"));
    assert!(h2.outcome.trace.phases.first_byte.get().is_some());

    let seen = log.requests();
    let h2_requests: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.version == Version::HTTP_2)
        .collect();
    assert_eq!(h2_requests.len(), 2);
    assert!(
        h2_requests
            .iter()
            .all(|s| header(s, "connection").is_none())
    );
    assert!(
        h2_requests
            .iter()
            .all(|s| header(s, "user-agent").is_some_and(|ua| ua.starts_with("vantage/")))
    );
    wait_for(Duration::from_secs(10), "every connection to end", || {
        log.open.load(Ordering::SeqCst) == 0
    });
    assert_eq!(
        log.errors.load(Ordering::SeqCst),
        0,
        "every connection ended cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_redirect_to_another_host_verifies_that_host_by_its_own_name() {
    let pki = Pki::new("http");
    let other_leaf = pki.root.leaf(Leaf::server(&["127.0.0.2"]));
    let (other_port, other_log) = Web {
        ip: "127.0.0.2",
        ..Web::tls(&other_leaf)
    }
    .start()
    .await;
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Web::tls(&leaf).start().await;
    let run = get(
        &format!("https://127.0.0.1:{port}/to?https://127.0.0.2:{other_port}/ok"),
        &pki.flow(""),
    )
    .await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(other_log.requests().len(), 1);
    let facts = run.outcome.facts.tls().unwrap();
    assert_eq!(
        facts.server_name, None,
        "the IP host is verified by IP, sends no SNI"
    );
    assert_eq!(facts.chain[0].names, vec!["127.0.0.2"]);
    let hops = &http(&run).hops;
    assert!(hops.iter().all(|h| h.phases.tls.get().is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_leave_the_server_holding_nothing() {
    let pki = Pki::new("http");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (plain_port, plain_log) = Web::plain().start().await;
    let (tls_port, tls_log) = Web {
        h2: true,
        ..Web::tls(&leaf)
    }
    .start()
    .await;
    let targets = [
        web_target(&format!("http://127.0.0.1:{plain_port}/redirect/1"), ""),
        web_target(&format!("http://127.0.0.1:{plain_port}/status/500"), ""),
        web_target(&format!("https://127.0.0.1:{tls_port}/ok"), &pki.flow("")),
        web_target(
            &format!("https://127.0.0.1:{tls_port}/ok"),
            &format!("{}    http: {{http2: true}}\n", pki.flow("")),
        ),
    ];
    let mut runs = tokio::task::JoinSet::new();
    for round in 0..25 {
        for (i, target) in targets.iter().enumerate() {
            let target = Arc::clone(target);
            // The second target answers 500; every other one succeeds.
            let expected = (i == 1).then_some(Reason::HttpStatus);
            runs.spawn(async move { (reason(&run(&target).await), expected) });
        }
        if round % 5 == 4 {
            while let Some(done) = runs.join_next().await {
                let (got, expected) = done.unwrap();
                assert_eq!(got, expected);
            }
        }
    }
    for (port, log) in [(plain_port, &plain_log), (tls_port, &tls_log)] {
        wait_for(Duration::from_secs(10), "every connection to end", || {
            log.open.load(Ordering::SeqCst) == 0
        });
        assert_eq!(
            log.errors.load(Ordering::SeqCst),
            0,
            "no connection was reset"
        );
        let states = socket_states(port);
        assert!(
            states.iter().all(|s| matches!(*s, "LISTEN" | "TIME_WAIT")),
            "{states:?}"
        );
    }
    assert_eq!(plain_log.accepted.load(Ordering::SeqCst), 75);
    assert_eq!(tls_log.accepted.load(Ordering::SeqCst), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_serves_http_series_that_promtool_accepts() {
    crate::support::needs(&["tool:promtool"]);
    let pki = Pki::new("http");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (plain, _) = Web::plain().start().await;
    let (secure, _) = Web {
        h2: true,
        ..Web::tls(&leaf)
    }
    .start()
    .await;
    let config = pki.dir.write(
        "exporter.yml",
        &format!(
            "defaults: {{interval: 1s, timeout: 800ms}}
targets:
  - {{name: redirected, type: http, url: \"http://127.0.0.1:{plain}/redirect/2\"}}
  - {{name: failing, type: http, url: \"http://127.0.0.1:{plain}/status/503\"}}
  - {{name: modified, type: http, url: \"http://127.0.0.1:{plain}/modified\"}}
  - name: h2
    type: http
    url: https://127.0.0.1:{secure}/ok
    http: {{http2: true, body_regex: hello}}
{}",
            pki.flow("")
        ),
    );
    let body = tokio::task::spawn_blocking(move || {
        crate::support::scrape_when_ready(&config, "probe_http_status_code", 4)
    })
    .await
    .unwrap();
    let value = |name: &str, target: &str| crate::support::sample(&body, name, target);
    assert_eq!(value("probe_success", "redirected"), 1.0);
    assert_eq!(value("probe_http_status_code", "redirected"), 200.0);
    assert_eq!(value("probe_http_redirects", "redirected"), 2.0);
    assert_eq!(value("probe_http_version", "redirected"), 1.1);
    assert!(value("probe_http_first_byte_duration_seconds", "redirected") > 0.0);
    let phases: Vec<String> =
        crate::support::series(&body, "probe_http_duration_seconds", "redirected");
    for phase in ["connect", "processing", "transfer"] {
        assert!(
            phases
                .iter()
                .any(|s| s.contains(&format!("phase=\"{phase}\""))),
            "{phase} in {phases:?}"
        );
    }
    assert!(
        !phases
            .iter()
            .any(|s| s.contains("phase=\"tls\"") || s.contains("phase=\"resolve\"")),
        "no TLS and no lookup happened: {phases:?}"
    );
    assert_eq!(
        value("probe_http_uncompressed_body_length", "redirected"),
        7.0
    );
    assert_eq!(value("probe_http_ssl", "redirected"), 0.0);
    assert!(
        crate::support::series(&body, "probe_http_content_length", "redirected").is_empty(),
        "a chunked body declares no length: no series, not blackbox's -1\n{body}"
    );
    assert_eq!(value("probe_http_content_length", "modified"), 7.0);
    assert_eq!(
        value("probe_http_last_modified_timestamp_seconds", "modified"),
        784_111_777.0
    );
    assert_eq!(value("probe_success", "failing"), 0.0);
    assert_eq!(value("probe_http_status_code", "failing"), 503.0);
    assert!(
        body.contains(
            "probe_failure_info{name=\"failing\",probe=\"http\",target=\"http://127.0.0.1:"
        ) && body.contains("reason=\"http_status\"} 1"),
        "{body}"
    );
    assert_eq!(value("probe_success", "h2"), 1.0);
    assert_eq!(value("probe_http_version", "h2"), 2.0);
    assert_eq!(value("probe_http_ssl", "h2"), 1.0);
    assert_eq!(value("probe_tls_chain_valid", "h2"), 1.0);
    assert!(value("probe_tls_handshake_duration_seconds", "h2") > 0.0);
    crate::support::promtool_check(&body);
}

/// Reads the request head, then answers with `reply` (and closes, or resets when `reset`).
fn answer_with(mut stream: std::net::TcpStream, reply: &[u8], reset: bool) {
    use std::io::Write;
    if crate::support::read_request_head(&mut stream).is_none() {
        return;
    }
    let _ = stream.write_all(reply);
    if reset {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_resets_and_half_answers_fail_with_their_own_reason() {
    let garbage =
        crate::support::thread_peer(|s| answer_with(s, b"SSH-2.0-OpenSSH_9.2\r\n\r\n\r\n", false));
    let reset = crate::support::thread_peer(|s| answer_with(s, b"HTTP/1.1 200 OK\r\n", true));
    let half = crate::support::thread_peer(|s| {
        answer_with(
            s,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
            false,
        )
    });
    let run_at = |port: u16| async move { get(&format!("http://127.0.0.1:{port}/"), "").await };

    let not_http = run_at(garbage).await;
    assert_eq!(reason(&not_http), Some(Reason::IoError));
    assert!(
        not_http
            .failure()
            .unwrap()
            .detail
            .contains("not valid HTTP"),
        "{:?}",
        not_http.failure()
    );
    let was_reset = run_at(reset).await;
    assert_eq!(
        reason(&was_reset),
        Some(Reason::ConnectionReset),
        "{:?}",
        was_reset.failure()
    );
    let cut_short = run_at(half).await;
    assert_eq!(reason(&cut_short), Some(Reason::IoError));
    assert!(
        cut_short
            .failure()
            .unwrap()
            .detail
            .contains("reading the body"),
        "{:?}",
        cut_short.failure()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_goes_to_the_configured_host_only() {
    let pki = Pki::new("http-mtls");
    let client = pki.root.leaf(Leaf::server(&["vantage client"]).client());
    let (cert, key) = client.write(&pki.dir, "client");
    let other_leaf = pki.root.leaf(Leaf::server(&["127.0.0.2"]));
    let (other_port, other_log) = Web {
        ip: "127.0.0.2",
        client_ca: Some(pki.root.der()),
        ..Web::tls(&other_leaf)
    }
    .start()
    .await;
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, log) = Web {
        client_ca: Some(pki.root.der()),
        ..Web::tls(&leaf)
    }
    .start()
    .await;
    let run = get(
        &format!("https://127.0.0.1:{port}/to?https://127.0.0.2:{other_port}/ok"),
        &pki.flow(&format!(", cert_file: {cert}, key_file: {key}")),
    )
    .await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(log.client_certs.load(Ordering::SeqCst), 1);
    assert_eq!(other_log.requests().len(), 1);
    assert_eq!(
        other_log.client_certs.load(Ordering::SeqCst),
        0,
        "the other host did not get our certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_that_ends_its_body_by_closing_without_close_notify_has_answered() {
    let pki = Pki::new("http-eof");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der()], leaf.key_der())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        // No Content-Length: the body ends with the connection, and no close_notify is sent.
        tls.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let (tcp, _) = tls.into_inner();
        drop(tcp);
    });
    let run = get(
        &format!("https://127.0.0.1:{port}/"),
        &format!("{}    http: {{body_regex: \"all of it$\"}}\n", pki.flow("")),
    )
    .await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(http(&run).hops[0].body_bytes, 9);
}
