//! vantage's own endpoints under attack, through the real binary: idle and slowloris clients
//! cannot keep a scrape, a health check or vantage's own probe of itself waiting, the
//! connections they hold stay bounded, and `POST /-/reload` needs `--web.enable-lifecycle`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::chunked::dechunk;
use crate::support::{
    TempDir, Vantage, closed_port, http_get, http_request, one_target_config, quiet_peer, series,
    vantage_bin, wait_for,
};

/// Idle connections opened in one burst, as in the attack.
const IDLE: usize = 1000;
/// Slowloris connections: a request head that never ends, a byte at a time.
const SLOW: usize = 300;

/// How long a GET of `path` takes, and its status.
fn timed_get(addr: SocketAddr, path: &str) -> (Duration, Option<u16>) {
    let started = Instant::now();
    let status = http_get(addr, path, None).map(|r| r.status);
    (started.elapsed(), status)
}

/// The self probe's runs with `result`.
fn runs(body: &str, result: &str) -> f64 {
    series(body, "probe_runs_total", "self")
        .iter()
        .find(|l| l.contains(&format!("result=\"{result}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {result} runs of self in\n{body}"))
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[test]
fn idle_and_slowloris_connections_cannot_keep_a_scrape_or_a_health_check_waiting() {
    let dir = TempDir::new("endpoints");
    let addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    // vantage probes its own health endpoint, as the shipped exporter.yml does.
    let config = dir.write(
        "exporter.yml",
        &format!(
            "defaults: {{interval: 1s, timeout: 900ms}}
targets:
  - {{name: self, type: http, url: \"http://{addr}/-/healthy\"}}
"
        ),
    );
    let mut command = Command::new(vantage_bin());
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"));
    let vantage = Vantage::spawn(command, addr);
    let pid = vantage.child.id();
    wait_for(Duration::from_secs(10), "a run of the self probe", || {
        http_get(addr, "/metrics", None).is_some_and(|r| r.body.contains("probe_success{"))
    });
    let files_before = open_files(pid);
    let runs_before = runs(&http_get(addr, "/metrics", None).unwrap().body, "success");

    let idle: Vec<TcpStream> = (0..IDLE)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    assert_eq!(idle.len(), IDLE, "every idle connection was taken");
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<TcpStream> = (0..SLOW)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").ok()?;
            Some(s)
        })
        .collect();
    assert_eq!(slow.len(), SLOW);
    let trickle = {
        let stop = Arc::clone(&stop);
        let mut slow = slow;
        thread::spawn(move || {
            // At most 60 rounds (30 s): a byte on every slow connection each half second.
            for _ in 0..60 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                for s in &mut slow {
                    let _ = s.write_all(b"a");
                }
                thread::sleep(Duration::from_millis(500));
            }
        })
    };

    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        for path in ["/metrics", "/-/healthy"] {
            let (took, status) = timed_get(addr, path);
            assert_eq!(status, Some(200), "{path} answered under attack");
            slowest = slowest.max(took);
        }
        thread::sleep(Duration::from_millis(300));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest scrape or health check under attack took {slowest:?}"
    );
    let files_during = open_files(pid);
    // The cap of 256 connections, and a margin for probes and the scrapes themselves.
    assert!(
        files_during <= files_before + 256 + 16,
        "{files_during} open files under attack, {files_before} before"
    );

    // vantage's probe of itself kept passing while the attack held its connections.
    let body = http_get(addr, "/metrics", None).unwrap().body;
    let ran = runs(&body, "success") - runs_before;
    assert!(
        ran >= 2.0,
        "the self probe passed during the attack: {ran} runs"
    );
    assert_eq!(runs(&body, "failure"), 0.0, "the self probe never failed");
    stop.store(true, Ordering::Release);
    trickle.join().unwrap();
    drop(idle);
    let (status, _) = vantage.stop("TERM");
    assert!(status.success());
}

#[test]
fn post_reload_needs_web_enable_lifecycle() {
    let dir = TempDir::new("lifecycle");
    let config = one_target_config(&dir);
    let off = Vantage::start(&config, &[]);
    let refused = http_request(off.addr, "POST", "/-/reload", None).unwrap();
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("--web.enable-lifecycle"),
        "{}",
        refused.body
    );
    // A browser's form POST is a plain POST too: refused the same way.
    let mut form = TcpStream::connect(off.addr).unwrap();
    form.write_all(
        b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    form.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        !off.log().contains("reload"),
        "nothing was reloaded:\n{}",
        off.log()
    );
    drop(off);

    let on = Vantage::start(&config, &["--web.enable-lifecycle"]);
    let applied = http_request(on.addr, "POST", "/-/reload", None).unwrap();
    assert_eq!(applied.status, 200, "{}", applied.body);
}

#[test]
fn a_request_head_over_16_kib_is_refused_and_the_next_one_is_served() {
    let dir = TempDir::new("bighead");
    let config = one_target_config(&dir);
    let vantage = Vantage::start(&config, &[]);
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let refused = crate::support::exchange(vantage.addr, &big).expect("an answer");
    assert_eq!(refused.status, 431);
    let fits = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    assert_eq!(
        crate::support::exchange(vantage.addr, &fits).map(|r| r.status),
        Some(200)
    );
}

/// A URL with a password in it is refused; the refusal names the URL with the password
/// replaced, wherever it is shown: `check-config`, the `POST /-/reload` answer and the log.
#[test]
fn a_password_in_a_url_never_reaches_check_config_the_reload_answer_or_the_log() {
    const SECRET: &str = "hunter2-secret";
    let dir = TempDir::new("redact");
    let good = format!(
        "targets:\n  - {{name: a, type: tcp, host: 127.0.0.1, port: {}}}\n",
        closed_port()
    );
    let bad = format!(
        "targets:\n  - {{name: a, type: http, url: \"http://ops:{SECRET}@127.0.0.1:{}/\"}}\n",
        closed_port()
    );
    let path = dir.write("exporter.yml", &bad);
    let checked = Command::new(vantage_bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(checked.status.code(), Some(1), "{said}");
    assert!(said.contains("\"http://xxxxx@127.0.0.1:"), "{said}");
    assert!(!said.contains(SECRET), "{said}");

    dir.write("exporter.yml", &good);
    let vantage = Vantage::start(&path, &["--web.enable-lifecycle"]);
    dir.write("exporter.yml", &bad);
    let answer = http_request(vantage.addr, "POST", "/-/reload", None).unwrap();
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("http://xxxxx@127.0.0.1:"),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains(SECRET), "{}", answer.body);
    wait_for(Duration::from_secs(5), "the refusal in the log", || {
        vantage.log().contains("xxxxx@127.0.0.1:")
    });
    assert!(!vantage.log().contains(SECRET), "{}", vantage.log());
}

/// Scrapes that ask for `/metrics` and never read their answer: each would keep a rendering in
/// vantage's memory, so their number bounds nothing. However many there are, vantage holds a
/// few renderings' worth at most (streamed, an unread answer holds a few pieces, and what grows
/// is mostly what the allocator keeps for the threads that rendered: 5 measured; 12 to 14 when
/// each held its whole rendering, 104 without the bound), and a scrape and a health check are
/// still answered.
#[test]
fn scrapes_that_never_read_their_response_hold_a_few_renderings_at_most() {
    const UNREAD: usize = 100;
    let dir = TempDir::new("unread");
    // 20 targets with 60 labels of a kilobyte each: a rendering of about 20 MB, large against
    // what the sockets' kernel buffers take, so that what vantage holds shows in its memory.
    let labels = (0..60)
        .map(|i| format!("l{i}: \"{}{i}\"", "x".repeat(1000)))
        .collect::<Vec<_>>()
        .join(", ");
    // A peer held for the whole test: a port merely closed could be taken by another test's
    // server, which would then count these probes' connections as its own.
    let port = quiet_peer();
    let targets: String = (0..20)
        .map(|t| {
            format!("  - {{name: t{t}, type: tcp, host: 127.0.0.1, port: {port}, labels: {{{labels}}}}}\n")
        })
        .collect();
    let config = dir.write(
        "exporter.yml",
        &format!("defaults: {{interval: 2s, timeout: 1s}}\ntargets:\n{targets}"),
    );
    let vantage = Vantage::start(&config, &[]);
    let pid = vantage.child.id();
    let mut rendering = 0;
    wait_for(Duration::from_secs(30), "a run of every target", || {
        let body = http_get(vantage.addr, "/metrics", None).map_or_else(String::new, |r| r.body);
        rendering = body.len();
        body.matches("\nprobe_success{").count() == 20
    });
    assert!(rendering > 10_000_000, "a rendering of {rendering} bytes");
    let before = resident(pid);

    let unread: Vec<TcpStream> = (0..UNREAD).map(|_| unread_scrape(vantage.addr)).collect();
    wait_for(
        Duration::from_secs(120),
        "every unread scrape answered or closed",
        || {
            unread.iter().all(|s| !matches!(s.peek(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        },
    );
    let grown = resident(pid).saturating_sub(before);
    assert!(
        grown < 8 * rendering,
        "{UNREAD} unread scrapes grew vantage by {} MB, {} renderings of {} MB",
        grown >> 20,
        grown / rendering,
        rendering >> 20
    );
    assert_eq!(
        http_get(vantage.addr, "/-/healthy", None).map(|r| r.status),
        Some(200)
    );
    let scrape = http_get(vantage.addr, "/metrics", None).expect("a scrape that reads");
    assert_eq!(
        (
            scrape.status,
            scrape.body.matches("\nprobe_success{").count()
        ),
        (200, 20)
    );
    drop(unread);
}

/// A connection that asks for `/metrics` and then reads nothing, with a small receive buffer
/// so that the kernel takes little of the answer off vantage's hands.
fn unread_scrape(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(2))
        .unwrap();
    let mut stream = TcpStream::from(socket);
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream.set_nonblocking(true).unwrap();
    stream
}

/// The resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// `/metrics` as Prometheus fetches it: gzip when asked, in both formats, streamed in chunks,
/// and the same series as a plain scrape.
#[test]
fn metrics_are_gzipped_when_asked_and_carry_the_same_series() {
    let dir = TempDir::new("gzip");
    let port = quiet_peer();
    let targets: String = (0..300)
        .map(|t| format!("  - {{name: t{t}, type: tcp, host: 127.0.0.1, port: {port}}}\n"))
        .collect();
    let config = dir.write(
        "exporter.yml",
        &format!("defaults: {{interval: 10s, timeout: 2s}}\ntargets:\n{targets}"),
    );
    let vantage = Vantage::start(&config, &[]);
    let mut plain = String::new();
    wait_for(Duration::from_secs(90), "a run of every target", || {
        plain = http_get(
            vantage.addr,
            "/metrics",
            Some("application/openmetrics-text"),
        )
        .map_or_else(String::new, |r| r.body);
        plain.matches("\nprobe_success{").count() == 300
    });
    for (accept, eof) in [
        ("application/openmetrics-text", true),
        ("text/plain", false),
    ] {
        let (head, body) = raw_get(vantage.addr, accept, "gzip, deflate");
        assert!(head.contains("\r\ncontent-encoding: gzip\r\n"), "{head}");
        assert!(head.contains("\r\nvary: Accept-Encoding\r\n"), "{head}");
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n"),
            "{head}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&dechunk(&body).expect("a whole chunked body")[..])
            .read_to_string(&mut text)
            .expect("a whole gzip stream");
        assert_eq!(text.ends_with("# EOF\n"), eof, "{accept}");
        assert!(
            text.len() > 10 * body.len(),
            "{} bytes from {}",
            text.len(),
            body.len()
        );
        // The same series (values move between scrapes: durations, counters).
        let keys = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("probe_"))
                .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
                .collect()
        };
        assert_eq!(keys(&text), keys(&plain), "{accept}");
    }
    // Without gzip in Accept-Encoding (or refused), plain text.
    for encoding in ["identity", "gzip;q=0"] {
        let (head, body) = raw_get(vantage.addr, "text/plain", encoding);
        assert!(!head.contains("content-encoding"), "{head}");
        let text = String::from_utf8(dechunk(&body).expect("a whole chunked body")).unwrap();
        assert_eq!(text.matches("\nprobe_success{").count(), 300);
    }
    // HTTP/1.0 has no chunks: the whole answer, with its length.
    let mut stream = TcpStream::connect(vantage.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let length = head.lines().find_map(|l| {
        let l = l.to_ascii_lowercase();
        l.strip_prefix("content-length:")?
            .trim()
            .parse::<usize>()
            .ok()
    });
    assert_eq!(length, Some(body.len()), "{head}");
    assert_eq!(body.matches("\nprobe_success{").count(), 300);
}

/// A GET of `/metrics` with these headers; the head (lower-cased names) and the raw body.
fn raw_get(addr: SocketAddr, accept: &str, encoding: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nAccept-Encoding: {encoding}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split + 2].to_vec()).unwrap();
    (
        head.to_ascii_lowercase()
            .replace("vary: accept-encoding", "vary: Accept-Encoding"),
        raw[split + 4..].to_vec(),
    )
}
