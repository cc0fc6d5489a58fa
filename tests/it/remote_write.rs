//! remote_write against a receiver of the test's own on 127.0.0.1, which records every request
//! and answers as each test scripts it (accepts, 429 with `Retry-After`, 503, 400, or never):
//! the protocol's headers and body, credentials, each run once at its end time, retries and
//! their backoff, no retry on a refusal, and probing that no receiver can slow down. The same
//! push into a real Prometheus is `fleet`'s.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use vantage::push::wire::WriteRequest;

use crate::pki::{Ca, Issued, Leaf, Pki};
use crate::support::{TempDir, Vantage, http_get, quiet_peer, read_request, wait_for};

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn decode(&self) -> WriteRequest {
        let protobuf = snap::raw::Decoder::new()
            .decompress_vec(&self.body)
            .expect("a snappy block-format body");
        WriteRequest::decode(protobuf.as_slice()).expect("a WriteRequest")
    }
}

/// How the receiver answers its n-th request (from 0): a status line's code and extra headers
/// (`X-Body-Bytes: N` adds a body of N bytes), or `None` to never answer.
pub type Script = fn(usize) -> Option<(u16, &'static str)>;

pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(script: Script) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, script, &log));
            }
        });
        Receiver { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every sample of the series named `name`, as (labels, timestamp, value), in arrival order.
    pub fn samples(&self, name: &str) -> Vec<(BTreeMap<String, String>, i64, f64)> {
        let mut out = Vec::new();
        for request in self.received() {
            for series in request.decode().timeseries {
                let labels: BTreeMap<String, String> = series
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                if labels.get("__name__").map(String::as_str) == Some(name) {
                    for s in &series.samples {
                        out.push((labels.clone(), s.timestamp, s.value));
                    }
                }
            }
        }
        out
    }
}

fn serve(mut stream: TcpStream, script: Script, log: &Mutex<Vec<Received>>) {
    loop {
        let Some((text, body)) = read_request(&mut stream) else {
            return;
        };
        let n = {
            let mut log = log.lock().unwrap();
            log.push(Received {
                at: Instant::now(),
                head: text,
                body,
            });
            log.len() - 1
        };
        let Some((status, extra)) = script(n) else {
            // Never answers, never reads again: a receiver that hangs.
            std::thread::sleep(Duration::from_secs(120));
            return;
        };
        // A header `X-Body-Bytes: N` in the script's answer asks for a body of N bytes.
        let padding = extra
            .lines()
            .find_map(|l| l.strip_prefix("X-Body-Bytes: ")?.trim().parse().ok())
            .map_or(String::new(), |n: usize| "x".repeat(n));
        let answer = if status == 400 {
            "out of bounds: sample too old"
        } else {
            padding.as_str()
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A config of `targets` tcp targets on a peer that accepts, every second, pushing to `url`.
pub fn config(dir: &TempDir, targets: usize, remote: &str) -> std::path::PathBuf {
    let port = quiet_peer();
    let mut yaml =
        String::from("location: lab\ndefaults: {interval: 1s, timeout: 500ms}\ntargets:\n");
    for i in 0..targets {
        yaml.push_str(&format!(
            "  - {{name: t{i}, type: tcp, host: 127.0.0.1, port: {port}}}\n"
        ));
    }
    yaml.push_str(remote);
    dir.write("exporter.yml", &yaml)
}

/// A vantage probing one target every second and pushing to `receiver` (its own metrics
/// off), with `queue` as the entry's queue settings (`key: value, ...`). The folder of its
/// config goes with it, after it.
pub fn pushing(receiver: &Receiver, tag: &str, queue: &str) -> (Vantage, TempDir) {
    let dir = TempDir::new(tag);
    let path = config(
        &dir,
        1,
        &format!(
            "remote_write:\n  - url: {}\n    self_metrics_interval: 0s\n    queue: {{{queue}}}\n",
            receiver.url()
        ),
    );
    (Vantage::start(&path, &[]), dir)
}

/// The time between each request and the next.
pub fn gaps(received: &[Received]) -> Vec<Duration> {
    received.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// The value of the first series of `family` in a classic scrape of `vantage`, 0 if none.
pub fn metric(vantage: &Vantage, family: &str) -> f64 {
    let body = http_get(vantage.addr, "/metrics", None).unwrap().body;
    body.lines()
        .find(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn each_run_arrives_once_at_its_end_with_the_protocols_headers_and_credentials() {
    let receiver = Receiver::start(|_| Some((204, "")));
    let dir = TempDir::new("rw-each-run");
    dir.write("token", "s3cr3t-token\n");
    let path = config(
        &dir,
        1,
        &format!(
            "remote_write:\n  - url: {}\n    authorization: {{credentials_file: token}}\n    headers: {{X-Scope-OrgID: team-a}}\n    instance: edge-1\n    self_metrics_interval: 1s\n    queue: {{batch_send_deadline: 500ms}}\n",
            receiver.url()
        ),
    );
    let vantage = Vantage::start(&path, &[]);
    wait_for(Duration::from_secs(20), "five runs pushed", || {
        receiver.samples("probe_success").len() >= 5
    });
    let (exit, log) = vantage.stop("TERM");
    assert!(exit.success(), "{log}");

    let first = &receiver.received()[0];
    assert_eq!(first.header("content-encoding").as_deref(), Some("snappy"));
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(
        first.header("x-prometheus-remote-write-version").as_deref(),
        Some("0.1.0")
    );
    assert_eq!(
        first.header("authorization").as_deref(),
        Some("Bearer s3cr3t-token")
    );
    assert_eq!(first.header("x-scope-orgid").as_deref(), Some("team-a"));
    assert!(
        first.head.starts_with("POST /api/v1/write HTTP/1.1"),
        "{}",
        first.head
    );
    assert!(!log.contains("s3cr3t"), "the token in the log:\n{log}");

    let success = receiver.samples("probe_success");
    let labels = &success[0].0;
    for (name, value) in [
        ("job", "vantage"),
        ("instance", "edge-1"),
        ("location", "lab"),
        ("name", "t0"),
        ("probe", "tcp"),
    ] {
        assert_eq!(
            labels.get(name).map(String::as_str),
            Some(value),
            "{labels:?}"
        );
    }
    let times: Vec<i64> = success.iter().map(|(_, t, _)| *t).collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 500),
        "one sample per run, each at its own end, about 1 s apart: {times:?}"
    );
    // Each run once: the last pushed count of runs is the number of probe_success samples.
    let runs: f64 = ["success", "failure"]
        .iter()
        .map(|result| {
            receiver
                .samples("probe_runs_total")
                .iter()
                .rev()
                .find(|(l, _, _)| l.get("result").map(String::as_str) == Some(*result))
                .map_or(0.0, |(_, _, v)| *v)
        })
        .sum();
    assert_eq!(
        runs as usize,
        success.len(),
        "every run exactly once: {times:?}"
    );
    let build = receiver.samples("vantage_build_info");
    assert!(!build.is_empty(), "vantage's own metrics are pushed too");
    assert_eq!(
        build[0].0.get("instance").map(String::as_str),
        Some("edge-1")
    );
}

#[test]
fn a_429_with_retry_after_is_honoured_and_the_batch_is_sent_again() {
    let receiver = Receiver::start(|n| {
        Some(if n == 0 {
            (429, "Retry-After: 2\r\n")
        } else {
            (200, "")
        })
    });
    let (vantage, _dir) = pushing(
        &receiver,
        "rw-429",
        "batch_send_deadline: 200ms, min_backoff: 30ms, max_backoff: 100ms",
    );
    wait_for(Duration::from_secs(20), "the retry accepted", || {
        receiver.received().len() >= 2
    });
    let received = receiver.received();
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 obeyed, not the 30 ms backoff: {gap:?}"
    );
    assert_eq!(received[0].body, received[1].body, "the same batch again");
    wait_for(Duration::from_secs(5), "the retry counted", || {
        metric(&vantage, "vantage_remote_write_samples_retried_total") > 0.0
    });
    assert_eq!(
        metric(&vantage, "vantage_remote_write_samples_failed_total"),
        0.0
    );
}

#[test]
fn server_errors_are_retried_with_a_growing_backoff() {
    let receiver = Receiver::start(|n| Some(if n < 3 { (503, "") } else { (200, "") }));
    let (_vantage, _dir) = pushing(
        &receiver,
        "rw-503",
        "batch_send_deadline: 200ms, min_backoff: 200ms, max_backoff: 5s",
    );
    wait_for(
        Duration::from_secs(20),
        "three refusals and a success",
        || receiver.received().len() >= 4,
    );
    let received = receiver.received();
    assert!(
        received[1..4].iter().all(|r| r.body == received[0].body),
        "one batch, sent until accepted"
    );
    let gaps = gaps(&received[..4]);
    for (gap, floor) in gaps.iter().zip([200, 400, 800]) {
        assert!(
            *gap >= Duration::from_millis(floor - 20),
            "backoff doubles from min_backoff: {gaps:?}"
        );
    }
}

#[test]
fn a_refusal_is_not_retried_and_the_log_has_the_receivers_answer() {
    let receiver = Receiver::start(|_| Some((400, "")));
    let (vantage, _dir) = pushing(
        &receiver,
        "rw-400",
        "batch_send_deadline: 200ms, min_backoff: 30ms",
    );
    wait_for(Duration::from_secs(20), "three batches refused", || {
        receiver.received().len() >= 3
    });
    let received = receiver.received();
    for (i, a) in received.iter().enumerate() {
        for b in &received[i + 1..] {
            assert_ne!(a.body, b.body, "a refused batch was sent again");
        }
    }
    assert!(metric(&vantage, "vantage_remote_write_samples_failed_total") > 0.0);
    assert_eq!(
        metric(&vantage, "vantage_remote_write_samples_retried_total"),
        0.0
    );
    let log = vantage.log();
    assert!(
        log.contains("out of bounds: sample too old") && log.contains("status=400"),
        "{log}"
    );
}

/// Schedule delays in one instance's scrape: the histogram's sum and count.
fn delay(vantage: &Vantage) -> (f64, f64) {
    (
        metric(vantage, "vantage_probe_schedule_delay_seconds_sum"),
        metric(vantage, "vantage_probe_schedule_delay_seconds_count"),
    )
}

#[test]
fn a_receiver_that_never_answers_does_not_slow_probing() {
    // Accepts every connection and never answers: each send waits out the timeout.
    let silent = Receiver::start(|_| None);
    let dir = TempDir::new("rw-silent");
    let quiet = TempDir::new("rw-none");
    let pushing = config(
        &dir,
        200,
        &format!(
            "remote_write:\n  - url: {}\n    timeout: 2s\n    self_metrics_interval: 1s\n    queue: {{capacity: 2000, max_samples_per_send: 100, batch_send_deadline: 100ms}}\n",
            silent.url()
        ),
    );
    let alone = config(&quiet, 200, "");
    // Both at once, so that the machine's noise falls on both alike.
    let (a, b) = (Vantage::start(&pushing, &[]), Vantage::start(&alone, &[]));
    std::thread::sleep(Duration::from_secs(8));
    let ((sum_a, count_a), (sum_b, count_b)) = (delay(&a), delay(&b));
    assert!(
        metric(&a, "vantage_remote_write_samples_dropped_total") > 0.0,
        "the queue filled behind the silent receiver, as meant"
    );
    assert!(
        count_a >= count_b * 0.9,
        "runs started: {count_a} pushing vs {count_b} not"
    );
    // Waiting on the receiver would delay runs by its 2 s timeout; the pushing instance's own
    // rendering competes for the same two cores as everything else on this machine, which in
    // CI has cost tens of milliseconds of delay (18 ms against 5 ms once), never more.
    let (mean_a, mean_b) = (sum_a / count_a, sum_b / count_b);
    assert!(
        mean_a <= mean_b * 2.0 + 0.05,
        "mean schedule delay {mean_a:.4}s pushing vs {mean_b:.4}s not"
    );
}

/// An https receiver on 127.0.0.1 serving `leaf`, requiring a client certificate from
/// `client_ca` if given; answers 204 to every request. Returns its port and the heads of the
/// requests it got.
async fn tls_receiver(leaf: &Issued, client_ca: Option<&Ca>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        }
    };
    let config = builder
        .with_single_cert(vec![leaf.der()], leaf.key_der())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), Arc::clone(&log));
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 65536];
                let mut pending = Vec::new();
                loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    // The whole request (head and body) has come once the body's length is in.
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: ")?.parse().ok())
                        .unwrap_or(0);
                    if pending.len() < end + 4 + length {
                        continue;
                    }
                    pending.drain(..end + 4 + length);
                    log.lock().unwrap().push(head);
                    let answer = b"HTTP/1.1 204 No Content\r\n\r\n";
                    if tls.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_are_verified_and_get_the_client_certificate() {
    let pki = Pki::new("rw-tls");
    let server = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let client = pki.root.leaf(Leaf::server(&["edge"]).client());
    let (cert, key) = client.write(&pki.dir, "client");
    let (trusted_port, trusted) = tls_receiver(&server, Some(&pki.root)).await;
    let stranger = Ca::root("not the receiver's root");
    let (untrusted_port, untrusted) =
        tls_receiver(&stranger.leaf(Leaf::server(&["vantage.test"])), None).await;
    let root = pki.dir.0.join("root.pem").display().to_string();
    let remote = |name: &str, port: u16| {
        format!(
            "  - url: https://127.0.0.1:{port}/api/v1/write\n    name: {name}\n    basic_auth: {{username: edge, password: hunter2}}\n    self_metrics_interval: 0s\n    tls: {{ca_file: {root}, server_name: vantage.test, cert_file: {cert}, key_file: {key}}}\n    queue: {{batch_send_deadline: 200ms, min_backoff: 100ms, max_backoff: 200ms}}\n"
        )
    };
    let dir = TempDir::new("rw-tls-config");
    let path = config(
        &dir,
        1,
        &format!(
            "remote_write:\n{}{}",
            remote("trusted", trusted_port),
            remote("untrusted", untrusted_port)
        ),
    );
    let vantage = tokio::task::spawn_blocking(move || Vantage::start(&path, &[]))
        .await
        .unwrap();
    let check = Arc::clone(&trusted);
    let vantage = tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(20), "a push over mutual TLS", || {
            !check.lock().unwrap().is_empty()
        });
        // Its failure, not the start-up line that names it too.
        wait_for(Duration::from_secs(10), "retries to the stranger", || {
            vantage.log().contains("tls_unknown_issuer")
        });
        vantage
    })
    .await
    .unwrap();
    let head = trusted.lock().unwrap()[0].clone();
    assert!(head.contains("authorization: Basic "), "{head}");
    assert!(
        untrusted.lock().unwrap().is_empty(),
        "nothing, credentials least of all, goes to a server that failed verification"
    );
    let log = vantage.log();
    assert!(log.contains("tls_unknown_issuer"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}

/// The TCP ports process `pid` listens on, from its descriptors and the kernel's socket tables.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.display().to_string();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, state (0A: LISTEN), ..., inode
            if fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[test]
fn an_empty_listen_address_pushes_without_serving_anything() {
    let receiver = Receiver::start(|_| Some((204, "")));
    let dir = TempDir::new("rw-push-only");
    let path = config(
        &dir,
        1,
        &format!(
            "remote_write:\n  - url: {}\n    queue: {{batch_send_deadline: 200ms}}\n",
            receiver.url()
        ),
    );
    let mut command = std::process::Command::new(crate::support::vantage_bin());
    command.arg(format!("--config.file={}", path.display()));
    command.arg("--web.listen-address=");
    // No endpoint to ask whether it is ready: it is once samples arrive.
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let vantage = Vantage::spawn_until(command, unused, |_| {
        !receiver.samples("probe_success").is_empty()
    });
    assert_eq!(listening_ports(vantage.child.id()), Vec::<u16>::new());
    // The same look finds the port of an instance that serves.
    let serving = Vantage::start(&path, &[]);
    assert_eq!(listening_ports(serving.child.id()), [serving.addr.port()]);
    let (exit, log) = vantage.stop("TERM");
    assert!(exit.success(), "{log}");
    assert!(log.contains("serving no endpoints"), "{log}");
}
