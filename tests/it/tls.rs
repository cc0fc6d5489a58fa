//! TLS probes against real rustls servers on loopback, with certificates made for each test:
//! every verdict and reason, the facts reported whatever the verdict, and the polite close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::SupportedKxGroup;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{NamedGroup, RootCertStore, ServerConfig};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vantage::probe::{Close, Event, Reason, Run};
use vantage::tls::{TlsFacts, TlsVersion};

use crate::pki::{Ca, Issued, Leaf, Pki, days};
use crate::support::{run, target, wait_for};

/// What a test server saw, counted over all its connections.
#[derive(Default)]
pub struct Seen {
    pub accepted: AtomicUsize,
    pub open: AtomicUsize,
    pub handshakes: AtomicUsize,
    /// Connections the client ended with close_notify and then FIN, with no reset after.
    pub polite_closes: AtomicUsize,
    /// Application bytes received after handshakes.
    pub app_bytes: AtomicUsize,
    /// Handshakes that resumed an earlier session instead of presenting the certificate.
    pub resumed: AtomicUsize,
    pub sni: Mutex<Vec<Option<String>>>,
    /// Each handshake's key-exchange group, and whether the server sent a HelloRetryRequest.
    pub kx: Mutex<Vec<(Option<NamedGroup>, bool)>>,
}

pub struct Server {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub tls12_only: bool,
    /// The key-exchange groups the server accepts; empty: rustls' defaults.
    pub kx_groups: Vec<&'static dyn SupportedKxGroup>,
    /// Require a client certificate issued by this CA.
    pub client_ca: Option<CertificateDer<'static>>,
    /// After the handshake, never read again (and so never take the client's data).
    pub stall: bool,
    /// Answer the client's close_notify with plaintext, as exim does to a client that leaves
    /// without QUIT.
    pub plaintext_after_close: bool,
}

impl Server {
    pub fn new(leaf: &Issued, intermediates: &[&Ca]) -> Server {
        let mut chain = vec![leaf.der()];
        chain.extend(intermediates.iter().map(|ca| ca.der()));
        Server {
            chain,
            key: leaf.key_der(),
            tls12_only: false,
            kx_groups: Vec::new(),
            client_ca: None,
            stall: false,
            plaintext_after_close: false,
        }
    }

    /// Starts serving on 127.0.0.1; every connection: handshake, then answer `PING` with
    /// `+PONG`, until the client closes.
    pub async fn start(self) -> (u16, Arc<Seen>) {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if !self.kx_groups.is_empty() {
            provider.kx_groups = self.kx_groups;
        }
        let provider = Arc::new(provider);
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca).unwrap();
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        // Through a resolver, not `with_single_cert`: that parses the leaf, and webpki refuses a
        // certificate over 64 KiB, which a test serves on purpose.
        let key = provider.key_provider.load_private_key(self.key).unwrap();
        let certified = Arc::new(CertifiedKey::new(self.chain, key));
        let config = builder.with_cert_resolver(Arc::new(Fixed(certified)));
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let behaviour = (self.stall, self.plaintext_after_close);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let counters = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                counters.open.fetch_add(1, Ordering::SeqCst);
                let seen = Arc::clone(&counters);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    serve(acceptor, tcp, &seen, behaviour).await;
                    seen.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (port, seen)
    }
}

/// The one chain and key every handshake gets.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

async fn serve(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    seen: &Seen,
    (stall, plaintext_after_close): (bool, bool),
) {
    let limit = Duration::from_secs(10);
    let Ok(Ok(mut tls)) = tokio::time::timeout(limit, acceptor.accept(tcp)).await else {
        return;
    };
    if stall {
        tokio::time::sleep(Duration::from_secs(30)).await;
        return;
    }
    seen.handshakes.fetch_add(1, Ordering::SeqCst);
    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        seen.resumed.fetch_add(1, Ordering::SeqCst);
    }
    let connection = tls.get_ref().1;
    let sni = connection.server_name().map(str::to_string);
    seen.sni.lock().unwrap().push(sni);
    seen.kx.lock().unwrap().push((
        connection.negotiated_key_exchange_group().map(|g| g.name()),
        connection.handshake_kind() == Some(rustls::HandshakeKind::FullWithHelloRetryRequest),
    ));
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, tls.read(&mut buf)).await {
            // close_notify: answer it, then see whether a reset follows the client's FIN.
            Ok(Ok(0)) if plaintext_after_close => {
                let _ = tls
                    .get_mut()
                    .0
                    .write_all(b"421 4.3.2 closing in plaintext\r\n")
                    .await;
                return;
            }
            Ok(Ok(0)) => {
                let _ = tls.shutdown().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if matches!(SockRef::from(tls.get_ref().0).take_error(), Ok(None)) {
                    seen.polite_closes.fetch_add(1, Ordering::SeqCst);
                }
                return;
            }
            Ok(Ok(n)) => {
                seen.app_bytes.fetch_add(n, Ordering::SeqCst);
                if buf[..n].starts_with(b"PING") && tls.write_all(b"+PONG\r\n").await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

pub async fn probe(port: u16, yaml: &str) -> Run {
    run(&target(port, yaml)).await
}

pub fn facts(run: &Run) -> &TlsFacts {
    run.outcome.facts.tls().expect("TLS facts")
}

pub fn reason(run: &Run) -> Option<Reason> {
    run.failure().map(|f| f.reason)
}

/// chain_valid and hostname_valid, as the metrics report them.
pub fn validity(run: &Run) -> (bool, bool) {
    let v = facts(run)
        .verification
        .as_ref()
        .expect("a certificate arrived");
    (v.chain.is_ok(), v.hostname.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_rsa_and_ecdsa_leaves_verify_and_report_their_facts() {
    let pki = Pki::new("tls");
    for rsa in [false, true] {
        let mut spec = Leaf::server(&["vantage.test", "www.vantage.test"]);
        if rsa {
            spec = spec.rsa();
        }
        let leaf = pki.root.leaf(spec);
        let (port, seen) = Server::new(&leaf, &[]).start().await;
        let run = probe(port, &pki.yaml("")).await;
        assert!(run.success(), "rsa={rsa}: {:?}", run.failure());
        let trace = &run.outcome.trace;
        assert!(trace.phases.connect.get().is_some() && trace.phases.tls.get().is_some());
        let f = facts(&run);
        assert_eq!(f.version, Some(TlsVersion::Tls13));
        assert!(f.cipher.as_deref().unwrap().starts_with("TLS_"), "{f:?}");
        assert_eq!(f.server_name.as_deref(), Some("vantage.test"));
        assert_eq!(f.chain.len(), 1);
        let cert = &f.chain[0];
        assert_eq!(cert.subject, "CN=vantage.test");
        assert_eq!(cert.issuer, "CN=vantage tls root");
        assert_eq!(cert.names, ["vantage.test", "www.vantage.test"]);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf.der());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(cert.sha256, hex);
        let expires = days(90).unix_timestamp();
        assert!((cert.not_after.unwrap() - expires).abs() <= 5);
        assert_eq!(validity(&run), (true, true));
        wait_for(
            Duration::from_secs(5),
            "the server to see the close",
            || seen.polite_closes.load(Ordering::SeqCst) == 1,
        );
        assert_eq!(
            *seen.sni.lock().unwrap(),
            [Some("vantage.test".to_string())]
        );
        assert_eq!(seen.app_bytes.load(Ordering::SeqCst), 0);
    }
}

/// A resumed session skips the certificate: every run must be a full handshake to see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_of_a_target_is_a_full_handshake_that_sees_the_chain() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, seen) = Server::new(&leaf, &[]).start().await;
    let t = target(
        port,
        &pki.yaml("    tcp: {send: \"PING\\r\\n\", expect: PONG}\n"),
    );
    for _ in 0..3 {
        let run = run(&t).await;
        assert!(run.success(), "{:?}", run.failure());
        assert_eq!(facts(&run).chain.len(), 1);
    }
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 3);
    assert_eq!(seen.resumed.load(Ordering::SeqCst), 0);
}

// Regression: the close drained the peer's last bytes through rustls, which took plaintext
// after our close_notify for a broken record and raised a second fatal alert (a debug assertion
// in rustls: a panic in a test build). From the first byte that is no TLS record on, the close
// now drains the TCP stream beneath.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_in_answer_to_close_notify_is_drained_not_parsed() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let mut server = Server::new(&leaf, &[]);
    server.plaintext_after_close = true;
    let (port, seen) = server.start().await;
    let t = target(
        port,
        &pki.yaml("    tcp: {send: \"PING\\r\\n\", expect: PONG}\n"),
    );
    for _ in 0..3 {
        let run = run(&t).await;
        assert!(run.success(), "{:?}", run.failure());
        let closed = run.outcome.trace.events.iter().any(|e| {
            matches!(
                e.what,
                Event::Closed {
                    how: Close::PeerClosed,
                    discarded,
                } if discarded > 0
            )
        });
        assert!(closed, "{:?}", run.outcome.trace.events);
    }
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_leaf_fails_but_still_reports_its_chain() {
    let pki = Pki::new("tls");
    let leaf = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(-60), days(-2)));
    let (port, _) = Server::new(&leaf, &[]).start().await;
    let run = probe(port, &pki.yaml("")).await;
    assert_eq!(reason(&run), Some(Reason::TlsCertExpired));
    let f = facts(&run);
    assert_eq!(f.version, Some(TlsVersion::Tls13), "the handshake finished");
    assert_eq!(f.chain.len(), 1);
    assert_eq!(validity(&run), (false, true));

    // verify: false reports the same truth without failing the run.
    let run = probe(port, &pki.yaml("      verify: false\n")).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(validity(&run), (false, true));
    assert_eq!(facts(&run).chain.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_not_yet_valid_is_tls_cert_not_yet_valid() {
    let pki = Pki::new("tls");
    let leaf = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(3), days(90)));
    let (port, _) = Server::new(&leaf, &[]).start().await;
    let run = probe(port, &pki.yaml("")).await;
    assert_eq!(reason(&run), Some(Reason::TlsCertNotYetValid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_is_a_mismatch_unless_hostname_checks_are_skipped() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["other.test"]));
    let (port, _) = Server::new(&leaf, &[]).start().await;
    let run = probe(port, &pki.yaml("")).await;
    assert_eq!(reason(&run), Some(Reason::TlsHostnameMismatch));
    assert_eq!(validity(&run), (true, false));

    let run = probe(port, &pki.yaml("      skip_hostname_verify: true\n")).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(validity(&run), (true, false), "the truth is still told");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_and_unknown_ca_certificates_are_unknown_issuers() {
    let pki = Pki::new("tls");
    let self_signed = Leaf::server(&["vantage.test"]).self_signed();
    let stranger = Ca::root("someone else's root");
    let foreign = stranger.leaf(Leaf::server(&["vantage.test"]));
    for leaf in [&self_signed, &foreign] {
        let (port, _) = Server::new(leaf, &[]).start().await;
        let run = probe(port, &pki.yaml("")).await;
        assert_eq!(reason(&run), Some(Reason::TlsUnknownIssuer));
        assert_eq!(validity(&run), (false, true));
    }
    // Without ca_file, the Mozilla roots do not know our test root either.
    let ours = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Server::new(&ours, &[]).start().await;
    let run = probe(port, "    tls: {server_name: vantage.test}\n").await;
    assert_eq!(reason(&run), Some(Reason::TlsUnknownIssuer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_verifies_with_its_intermediate_and_not_without() {
    let pki = Pki::new("tls");
    let intermediate = pki
        .root
        .intermediate("vantage test intermediate", days(365));
    let leaf = intermediate.leaf(Leaf::server(&["vantage.test"]));

    let (port, _) = Server::new(&leaf, &[&intermediate]).start().await;
    let run = probe(port, &pki.yaml("")).await;
    assert!(run.success(), "{:?}", run.failure());
    let f = facts(&run);
    assert_eq!(f.chain.len(), 2);
    assert_eq!(f.chain[1].subject, "CN=vantage test intermediate");
    assert_eq!(f.chain[1].issuer, "CN=vantage tls root");

    let (port, _) = Server::new(&leaf, &[]).start().await;
    let run = probe(port, &pki.yaml("")).await;
    assert_eq!(reason(&run), Some(Reason::TlsUnknownIssuer));
    assert_eq!(facts(&run).chain.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_earliest_expiry_follows_an_intermediate_that_expires_first() {
    let pki = Pki::new("tls");
    let intermediate = pki.root.intermediate("short-lived intermediate", days(10));
    let leaf = intermediate.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Server::new(&leaf, &[&intermediate]).start().await;
    let run = probe(port, &pki.yaml("")).await;
    assert!(run.success(), "{:?}", run.failure());
    let (index, at) = facts(&run).earliest_expiry().unwrap();
    assert_eq!(index, 1, "the intermediate expires first");
    assert!((at - days(10).unix_timestamp()).abs() <= 5);

    // And alert_before_expiry sees it, as a warning: the run succeeds.
    let run = probe(port, &pki.yaml("      alert_before_expiry: 30d\n")).await;
    assert!(run.success(), "{:?}", run.failure());
    let now = std::time::SystemTime::now();
    assert_eq!(facts(&run).expiring(now), Some(true));
    let warning = facts(&run).expiry_warning(now).unwrap();
    assert!(warning.contains("short-lived"), "{warning}");
    let run = probe(port, &pki.yaml("      alert_before_expiry: 5d\n")).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(facts(&run).expiring(now), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_literal_target_sends_no_sni_and_matches_an_ip_san() {
    let pki = Pki::new("tls");
    let ca = format!(
        "    tls:\n      ca_file: {}\n",
        pki.dir.0.join("root.pem").display()
    );
    let leaf = pki.root.leaf(Leaf::server(&["127.0.0.1"]));
    let (port, seen) = Server::new(&leaf, &[]).start().await;
    let run = probe(port, &ca).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(facts(&run).server_name, None);
    assert_eq!(facts(&run).chain[0].names, ["127.0.0.1"]);
    assert_eq!(*seen.sni.lock().unwrap(), [None]);

    let named = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Server::new(&named, &[]).start().await;
    let run = probe(port, &ca).await;
    assert_eq!(reason(&run), Some(Reason::TlsHostnameMismatch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_only_server_fails_min_version_tls13_and_a_version_assertion() {
    let pki = Pki::new("tls");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let mut server = Server::new(&leaf, &[]);
    server.tls12_only = true;
    let (port, _) = server.start().await;

    let run = probe(port, &pki.yaml("")).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(facts(&run).version, Some(TlsVersion::Tls12));
    assert!(
        facts(&run)
            .cipher
            .as_deref()
            .unwrap()
            .starts_with("TLS_ECDHE_"),
        "{:?}",
        facts(&run).cipher
    );

    let run = probe(port, &pki.yaml("      min_version: TLSv1.3\n")).await;
    assert_eq!(reason(&run), Some(Reason::TlsProtocolVersion));

    let run = probe(
        port,
        &pki.yaml("    assertions:\n      - {type: tls_version, in: [TLSv1.3]}\n"),
    )
    .await;
    assert_eq!(reason(&run), Some(Reason::TlsProtocolVersion));
    let judged = &run.outcome.assertions;
    assert_eq!(judged.len(), 1);
    assert_eq!(
        (judged[0].assertion, judged[0].held),
        ("tls_version", false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_the_client_hello_is_a_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded: accept a few, hold them silently.
        for _ in 0..4 {
            if let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let run = probe(port, "    timeout: 400ms\n    tls: {}\n").await;
    assert_eq!(reason(&run), Some(Reason::TlsHandshakeTimeout));
    assert!(
        run.outcome.trace.phases.connect.get().is_some(),
        "TCP connected"
    );
    assert!(run.duration >= Duration::from_millis(400));
    assert!(facts(&run).chain.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_peer_is_a_failed_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let run = probe(port, "    timeout: 2s\n    tls: {}\n").await;
    assert_eq!(reason(&run), Some(Reason::TlsHandshakeFailed));
    let detail = &run.failure().unwrap().detail;
    assert!(detail.contains("not TLS"), "{detail}");
    assert!(run.duration < Duration::from_secs(2), "failed fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requiring_a_client_certificate_gets_one_when_configured() {
    let pki = Pki::new("tls");
    let clients = Ca::root("client root");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let mut server = Server::new(&leaf, &[]);
    server.client_ca = Some(clients.der());
    let (port, seen) = server.start().await;

    let run = probe(port, &pki.yaml("")).await;
    assert_eq!(reason(&run), Some(Reason::TlsAlert));
    let detail = &run.failure().unwrap().detail;
    assert!(detail.contains("certificate_required"), "{detail}");
    assert_eq!(facts(&run).chain.len(), 1, "the server's chain arrived");

    let client = clients.leaf(Leaf::server(&["vantage probe"]).client());
    let (cert, key) = client.write(&pki.dir, "client");
    let run = probe(
        port,
        &pki.yaml(&format!("      cert_file: {cert}\n      key_file: {key}\n")),
    )
    .await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialogue_runs_inside_tls_and_never_over_an_unverified_connection() {
    let pki = Pki::new("tls");
    let ping = "    tcp: {send: \"PING\\r\\n\", expect: \"^\\\\+PONG\"}\n";
    let good = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (port, seen) = Server::new(&good, &[]).start().await;
    let run = probe(port, &format!("{ping}{}", pki.yaml(""))).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(seen.app_bytes.load(Ordering::SeqCst), 6);

    let bad = pki.root.leaf(Leaf::server(&["other.test"]));
    let (port, seen) = Server::new(&bad, &[]).start().await;
    let run = probe(port, &format!("{ping}{}", pki.yaml(""))).await;
    assert_eq!(reason(&run), Some(Reason::TlsHostnameMismatch));
    wait_for(
        Duration::from_secs(5),
        "the server to see the close",
        || seen.polite_closes.load(Ordering::SeqCst) == 1,
    );
    assert_eq!(
        seen.app_bytes.load(Ordering::SeqCst),
        0,
        "nothing was sent to a server that failed verification"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_are_judged_and_the_specific_reason_wins() {
    let pki = Pki::new("tls");
    let leaf = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(-1), days(10)));
    let (port, _) = Server::new(&leaf, &[]).start().await;
    let all_hold = "    assertions:\n      - {type: connection, status: success}\n      - {type: response_time, less_than: 5s}\n      - {type: certificate_expiry, greater_than: 5d}\n      - {type: tls_version, in: [TLSv1.2, TLSv1.3]}\n";
    let run = probe(port, &format!("{}{all_hold}", pki.yaml(""))).await;
    assert!(run.success(), "{:?}", run.failure());
    let held: Vec<(&str, bool)> = run
        .outcome
        .assertions
        .iter()
        .map(|j| (j.assertion, j.held))
        .collect();
    assert_eq!(
        held,
        [
            ("connection", true),
            ("response_time", true),
            ("certificate_expiry", true),
            ("tls_version", true)
        ]
    );

    let expiry = "    assertions:\n      - {type: certificate_expiry, greater_than: 30d}\n";
    let run = probe(port, &format!("{}{expiry}", pki.yaml(""))).await;
    assert_eq!(reason(&run), Some(Reason::TlsCertExpiring));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_fails_response_time_with_assertion_failed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = stream.write_all(b"READY\r\n").await;
                let mut rest = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest)).await;
            });
        }
    });
    let yaml = "    tcp: {expect: READY}\n    assertions:\n      - {type: response_time, less_than: 100ms}\n";
    let run = probe(port, yaml).await;
    assert_eq!(reason(&run), Some(Reason::AssertionFailed));
    assert!(run.outcome.trace.answered.unwrap() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_expected_to_fail_makes_a_refusal_a_success() {
    let closed = crate::support::closed_port();
    let run = probe(
        closed,
        "    assertions:\n      - {type: connection, status: failure}\n",
    )
    .await;
    assert!(run.success(), "{:?}", run.failure());
    assert!(run.outcome.assertions[0].held);
}
