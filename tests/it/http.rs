//! HTTP(S) probes against an in-process hyper server on loopback (HTTP/1.1 and HTTP/2, plain
//! and TLS): statuses, redirects, body checks, phase attribution, hostile answers, and the
//! request exactly as the server saw it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use vantage::config::{self, LoadOptions, Target};
use vantage::probe::http::HttpFacts;
use vantage::probe::{Reason, Run};

use crate::pki::Issued;
use crate::support::{TempDir, run, wait_for};

/// A request as the test server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What a test server saw over all its connections.
#[derive(Default)]
pub struct Log {
    pub accepted: AtomicUsize,
    pub open: AtomicUsize,
    /// Connections that ended in an error (a reset, a broken TLS session) instead of a close.
    pub errors: AtomicUsize,
    /// TLS connections on which the client presented a certificate.
    pub client_certs: AtomicUsize,
    pub requests: Mutex<Vec<Seen>>,
}

impl Log {
    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

/// A test web server on `ip` (a loopback address), optionally with TLS and HTTP/2.
pub struct Web {
    pub ip: &'static str,
    pub tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub h2: bool,
    /// Ask for (but do not require) a client certificate issued by this CA.
    pub client_ca: Option<CertificateDer<'static>>,
}

impl Web {
    pub fn plain() -> Web {
        Web {
            ip: "127.0.0.1",
            tls: None,
            h2: false,
            client_ca: None,
        }
    }

    pub fn tls(leaf: &Issued) -> Web {
        Web {
            ip: "127.0.0.1",
            tls: Some((vec![leaf.der()], leaf.key_der())),
            h2: false,
            client_ca: None,
        }
    }

    /// Serves until the test process ends. Routes:
    /// `/ok`, `/status/N`, `/redirect/N` (N hops to `/redirect/0`), `/loop`, `/to?URL`,
    /// `/see-other`, `/slow` (200 ms before the head), `/silent` (no head for 30 s),
    /// `/endless` (a body without end), `/cookie` (sets one), `/modified` (with Last-Modified
    /// and Content-Length).
    pub async fn start(self) -> (u16, Arc<Log>) {
        let client_ca = self.client_ca;
        let acceptor = self.tls.map(|(chain, key)| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .unwrap();
            let builder = match client_ca {
                None => builder.with_no_client_auth(),
                Some(ca) => {
                    let mut roots = rustls::RootCertStore::empty();
                    roots.add(ca).unwrap();
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .allow_unauthenticated()
                    .build()
                    .unwrap();
                    builder.with_client_cert_verifier(verifier)
                }
            };
            let mut config = builder.with_single_cert(chain, key).unwrap();
            config.alpn_protocols = if self.h2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind((self.ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Log::default());
        let counters = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                // As real servers do; with Nagle, HTTP/2's small frames wait for delayed ACKs.
                tcp.set_nodelay(true).unwrap();
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                counters.open.fetch_add(1, Ordering::SeqCst);
                let log = Arc::clone(&counters);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let limit = Duration::from_secs(60);
                    let served = tokio::time::timeout(limit, connection(tcp, acceptor, &log)).await;
                    if !matches!(served, Ok(Ok(()))) {
                        log.errors.fetch_add(1, Ordering::SeqCst);
                    }
                    log.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (port, log)
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: Option<TlsAcceptor>,
    log: &Arc<Log>,
) -> Result<(), String> {
    let service = {
        let log = Arc::clone(log);
        service_fn(move |request| respond(request, Arc::clone(&log)))
    };
    let Some(acceptor) = acceptor else {
        return hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .await
            .map_err(|e| e.to_string());
    };
    let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
    if tls.get_ref().1.peer_certificates().is_some() {
        log.client_certs.fetch_add(1, Ordering::SeqCst);
    }
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tls), service)
            .await
    }
    .map_err(|e| e.to_string())
}

async fn respond(
    request: Request<Incoming>,
    log: Arc<Log>,
) -> Result<Response<TestBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    log.requests.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        body,
    });
    let reply = |status: u16, text: &str| {
        Response::builder()
            .status(status)
            .body(TestBody::Full(Some(Bytes::from(text.to_string()))))
            .unwrap()
    };
    let redirect = |status: u16, location: &str| {
        Response::builder()
            .status(status)
            .header("location", location)
            .body(TestBody::Full(Some(Bytes::from_static(b"moved"))))
            .unwrap()
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Ok(match segments.as_slice() {
        ["ok"] => reply(200, "hello from the test server"),
        ["status", code] => reply(code.parse().unwrap(), "as asked"),
        ["redirect", "0"] => reply(200, "arrived"),
        ["redirect", n] => redirect(302, &format!("/redirect/{}", n.parse::<u32>().unwrap() - 1)),
        ["loop"] => redirect(302, "/loop"),
        ["to"] => redirect(302, parts.uri.query().unwrap_or("/ok")),
        ["see-other"] => redirect(303, "/ok"),
        ["slow"] => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            reply(200, "slow but fine")
        }
        ["silent"] => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            reply(200, "too late")
        }
        ["endless"] => Response::new(TestBody::Endless { sent: 0 }),
        ["modified"] => Response::builder()
            .header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
            .header("content-length", "7")
            .body(TestBody::Full(Some(Bytes::from_static(b"unmoved"))))
            .unwrap(),
        ["cookie"] => Response::builder()
            .header("set-cookie", "session=abc123; Path=/")
            .body(TestBody::Full(Some(Bytes::from_static(b"have a cookie"))))
            .unwrap(),
        _ => reply(404, "no such route"),
    })
}

/// A response body: fixed, or 16 KiB chunks without end (bounded at 1 GiB, so that a
/// regression cannot run forever).
enum TestBody {
    Full(Option<Bytes>),
    Endless { sent: u64 },
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(match self.get_mut() {
            TestBody::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            TestBody::Endless { sent } if *sent < 1 << 30 => {
                *sent += 16 * 1024;
                Some(Ok(Frame::data(Bytes::from(vec![b'x'; 16 * 1024]))))
            }
            TestBody::Endless { .. } => None,
        })
    }
}

/// An http target built by the real config code; `extra` holds more keys of the target.
pub fn web_target(url: &str, extra: &str) -> Arc<Target> {
    let yaml =
        format!("targets:\n  - name: w\n    type: http\n    url: {url}\n    interval: 1m\n{extra}");
    let config = config::parse(&yaml, "test.yml", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Arc::clone(&config.targets[0])
}

pub async fn get(url: &str, extra: &str) -> Run {
    run(&web_target(url, extra)).await
}

pub fn http(run: &Run) -> &HttpFacts {
    run.outcome.facts.http().expect("HTTP facts")
}

pub fn reason(run: &Run) -> Option<Reason> {
    run.failure().map(|f| f.reason)
}

pub fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_judged_against_valid_status_codes() {
    let (port, _) = Web::plain().start().await;
    let base = format!("http://127.0.0.1:{port}");

    let ok = get(&format!("{base}/ok"), "").await;
    assert!(ok.success(), "{:?}", ok.failure());
    assert_eq!(http(&ok).status(), Some(200));
    assert_eq!(http(&ok).version(), Some(Version::HTTP_11));
    assert_eq!(http(&ok).redirects(), 0);

    let down = get(&format!("{base}/status/503"), "").await;
    assert_eq!(reason(&down), Some(Reason::HttpStatus));
    assert!(
        down.failure()
            .unwrap()
            .detail
            .contains("status 503, expected 200-299"),
        "{:?}",
        down.failure()
    );
    assert_eq!(http(&down).status(), Some(503));

    let expected = get(
        &format!("{base}/status/503"),
        "    http: {valid_status_codes: [\"500-503\", 204]}\n",
    )
    .await;
    assert!(expected.success(), "{:?}", expected.failure());

    let missing = get(&format!("{base}/nothing"), "").await;
    assert_eq!(reason(&missing), Some(Reason::HttpStatus));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_host_redirects_are_followed_on_new_connections_and_counted() {
    let (port, log) = Web::plain().start().await;
    let run = get(&format!("http://127.0.0.1:{port}/redirect/3"), "").await;
    assert!(run.success(), "{:?}", run.failure());
    let facts = http(&run);
    assert_eq!(facts.redirects(), 3);
    assert_eq!(facts.status(), Some(200));
    let paths: Vec<String> = facts.hops.iter().map(|h| h.url.to_string()).collect();
    assert_eq!(
        paths,
        (0..4)
            .rev()
            .map(|n| format!("http://127.0.0.1:{port}/redirect/{n}"))
            .collect::<Vec<_>>()
    );
    assert!(facts.hops.iter().all(|h| h.phases.connect.get().is_some()));
    // Phases add up over the hops: the run's connect is the sum of the four.
    let sum: Duration = facts
        .hops
        .iter()
        .filter_map(|h| h.phases.connect.get())
        .sum();
    assert_eq!(run.outcome.trace.phases.connect.get(), Some(sum));
    assert_eq!(
        log.accepted.load(Ordering::SeqCst),
        4,
        "one connection per hop"
    );
    let asked: Vec<String> = log.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(
        asked,
        ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]
    );

    let not_followed = get(
        &format!("http://127.0.0.1:{port}/redirect/1"),
        "    http: {follow_redirects: false}\n",
    )
    .await;
    assert_eq!(reason(&not_followed), Some(Reason::HttpStatus));
    assert_eq!(http(&not_followed).status(), Some(302));
    assert_eq!(http(&not_followed).redirects(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_stops_after_ten_hops() {
    let (port, log) = Web::plain().start().await;
    let run = get(&format!("http://127.0.0.1:{port}/loop"), "").await;
    assert_eq!(reason(&run), Some(Reason::HttpStatus));
    assert!(
        run.failure()
            .unwrap()
            .detail
            .contains("stopped after 10 redirects"),
        "{:?}",
        run.failure()
    );
    assert_eq!(http(&run).redirects(), 10);
    assert_eq!(log.accepted.load(Ordering::SeqCst), 11);
}

/// A redirect to 0.0.0.0 would reach this machine, whatever the target is: refused unconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_an_address_that_names_no_host_fails_without_connecting() {
    let (port, log) = Web::plain().start().await;
    let run = get(
        &format!("http://127.0.0.1:{port}/to?http://0.0.0.0:{port}/ok"),
        "",
    )
    .await;
    assert_eq!(reason(&run), Some(Reason::DnsError));
    let detail = &run.failure().unwrap().detail;
    assert!(
        detail.contains("0.0.0.0 is the unspecified address"),
        "{detail}"
    );
    assert_eq!(
        log.accepted.load(Ordering::SeqCst),
        1,
        "only the first hop connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_is_resolved_connected_and_timed_without_credentials() {
    let (other_port, other_log) = Web {
        ip: "127.0.0.2",
        ..Web::plain()
    }
    .start()
    .await;
    let (port, log) = Web::plain().start().await;
    let dir = TempDir::new("http-token");
    dir.write("token", "Bearer only-for-the-first-host\n");
    let config = dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - name: w\n    type: http\n    url: http://localhost:{port}/to?http://127.0.0.2:{other_port}/ok\n    http:\n      headers: {{Authorization: {{file: token}}, X-Trace: kept, Host: app.internal, Content-Type: text/plain}}\n      method: POST\n      body: hello\n"
        ),
    );
    let target = config::load(&config, &LoadOptions::default())
        .unwrap()
        .targets[0]
        .clone();
    let run = run(&target).await;
    assert!(run.success(), "{:?}", run.failure());
    let facts = http(&run);
    assert_eq!(facts.redirects(), 1);
    let (first, second) = (&facts.hops[0], &facts.hops[1]);
    assert!(first.phases.dns.get().is_some(), "localhost was looked up");
    assert_eq!(
        second.address,
        Some(format!("127.0.0.2:{other_port}").parse().unwrap())
    );
    assert!(second.phases.connect.get().is_some() && second.phases.first_byte.get().is_some());

    let asked = log.requests();
    assert_eq!(
        header(&asked[0], "authorization"),
        Some("Bearer only-for-the-first-host")
    );
    assert_eq!(asked[0].body, b"hello");
    assert_eq!(header(&asked[0], "host"), Some("app.internal"));
    let redirected = other_log.requests();
    assert_eq!(redirected.len(), 1);
    assert_eq!(header(&redirected[0], "authorization"), None);
    assert_eq!(header(&redirected[0], "x-trace"), Some("kept"));
    assert_eq!(
        header(&redirected[0], "host"),
        Some(format!("127.0.0.2:{other_port}").as_str())
    );
    assert_eq!(
        redirected[0].method, "GET",
        "a 302 after a POST becomes a GET"
    );
    assert!(redirected[0].body.is_empty());
    assert_eq!(header(&asked[0], "content-type"), Some("text/plain"));
    assert_eq!(
        header(&redirected[0], "content-type"),
        None,
        "no body, so nothing describes one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_regex_and_body_not_regex_judge_the_body() {
    let (port, _) = Web::plain().start().await;
    let url = format!("http://127.0.0.1:{port}/ok");
    let matched = get(&url, "    http: {body_regex: \"hello from\"}\n").await;
    assert!(matched.success(), "{:?}", matched.failure());

    let missed = get(&url, "    http: {body_regex: \"^status: ok\"}\n").await;
    assert_eq!(reason(&missed), Some(Reason::HttpBodyMismatch));
    assert!(
        missed
            .failure()
            .unwrap()
            .detail
            .contains("\"hello from the test server\""),
        "{:?}",
        missed.failure()
    );

    let forbidden = get(&url, "    http: {body_not_regex: \"test server\"}\n").await;
    assert_eq!(reason(&forbidden), Some(Reason::HttpBodyMismatch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_first_byte_time_not_connect_time() {
    let (port, _) = Web::plain().start().await;
    let run = get(&format!("http://127.0.0.1:{port}/slow"), "").await;
    assert!(run.success(), "{:?}", run.failure());
    let phases = run.outcome.trace.phases;
    let first_byte = phases.first_byte.get().unwrap();
    let connect = phases.connect.get().unwrap();
    assert!(first_byte >= Duration::from_millis(200), "{first_byte:?}");
    assert!(connect * 4 < first_byte, "{connect:?} vs {first_byte:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_read_up_to_the_limit_only() {
    let (port, log) = Web::plain().start().await;
    let run = get(
        &format!("http://127.0.0.1:{port}/endless"),
        "    timeout: 20s\n    http: {body_size_limit: 256KiB, body_regex: xxx}\n",
    )
    .await;
    assert!(run.success(), "{:?}", run.failure());
    let hop = &http(&run).hops[0];
    assert!(hop.body_cut);
    assert!(
        hop.body_bytes > 256 * 1024 && hop.body_bytes < 4 * 1024 * 1024,
        "{}",
        hop.body_bytes
    );
    assert!(
        run.duration < Duration::from_secs(10),
        "the read stopped at the limit instead of running to the deadline: {:?}",
        run.duration
    );
    wait_for(
        Duration::from_secs(10),
        "the server to end the connection",
        || log.open.load(Ordering::SeqCst) == 0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_sends_headers_times_out() {
    let (port, _) = Web::plain().start().await;
    let run = get(
        &format!("http://127.0.0.1:{port}/silent"),
        "    timeout: 1s\n",
    )
    .await;
    assert_eq!(reason(&run), Some(Reason::Timeout));
    assert!(
        run.failure()
            .unwrap()
            .detail
            .contains("no response headers before the deadline"),
        "{:?}",
        run.failure()
    );
    assert!(run.outcome.trace.phases.connect.get().is_some());
    assert!(run.duration < Duration::from_secs(3), "{:?}", run.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_is_gentle_and_keeps_no_cookies() {
    let (port, log) = Web::plain().start().await;
    let target = web_target(&format!("http://127.0.0.1:{port}/cookie"), "");
    for _ in 0..2 {
        let run = run(&target).await;
        assert!(run.success(), "{:?}", run.failure());
    }
    let seen = log.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.method, "GET");
        assert_eq!(request.version, Version::HTTP_11);
        assert_eq!(header(request, "connection"), Some("close"));
        assert_eq!(
            header(request, "user-agent"),
            Some(concat!("vantage/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(
            header(request, "host"),
            Some(format!("127.0.0.1:{port}").as_str())
        );
        assert_eq!(header(request, "cookie"), None, "no cookie jar");
    }
    assert_eq!(
        log.accepted.load(Ordering::SeqCst),
        2,
        "no connection reuse"
    );
}
