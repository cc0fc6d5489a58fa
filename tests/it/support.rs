//! Helpers for the integration tests: targets from YAML, loopback peers, the vantage binary.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chunked::dechunk;
use vantage::config::{self, LoadOptions, Target};
use vantage::probe::{self, Reason, Run};

/// A target built by the real config code from one YAML target entry's extra keys.
pub fn target(port: u16, extra: &str) -> Arc<Target> {
    let yaml = format!(
        "targets:\n  - name: t\n    type: tcp\n    host: 127.0.0.1\n    port: {port}\n    interval: 1m\n{extra}"
    );
    let config = config::parse(&yaml, "test.yml", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Arc::clone(&config.targets[0])
}

pub async fn run(target: &Target) -> Run {
    probe::run(&target.probe, &target.assertions, &target.policy).await
}

/// Runs each target `count` times, 20 at a time, and checks every run's failure reason (`None`:
/// success). Bounded concurrency keeps a test from measuring the machine instead of vantage.
pub async fn run_plan(plan: Vec<(Arc<Target>, Option<Reason>, usize)>) {
    let mut runs = tokio::task::JoinSet::new();
    for (t, expected, count) in plan {
        for _ in 0..count {
            let t = Arc::clone(&t);
            runs.spawn(async move { (run(&t).await.failure().map(|f| f.reason), expected) });
            if runs.len() >= 20 {
                let (got, want) = runs.join_next().await.unwrap().unwrap();
                assert_eq!(got, want);
            }
        }
    }
    while let Some(result) = runs.join_next().await {
        let (got, want) = result.unwrap();
        assert_eq!(got, want);
    }
}

/// A loopback server for tests without a runtime: every connection gets its own thread running
/// `serve`. It lives until the test process ends.
pub fn thread_peer(serve: fn(TcpStream)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// A port on 127.0.0.1 that nothing listens on, free for TCP and UDP when chosen. It is drawn
/// from just below the kernel's ephemeral range: a port the kernel hands out (`bind(0)`) could
/// be given again to a concurrent test's client socket (a DNS probe's UDP source port, say)
/// before a server started on it had bound, which made dnsmasq fail to start in CI.
pub fn closed_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(10_000);
    let span = u64::from(ephemeral_low.saturating_sub(low).max(1));
    let seed = RandomState::new();
    for attempt in 0u64..1000 {
        let port = low + (seed.hash_one(attempt) % span) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{ephemeral_low} after 1000 tries");
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("vantage-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn vantage_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vantage")
}

/// A command that runs vantage (arguments to follow) with `hostname` as its hostname, as a
/// StatefulSet pod's is: a UTS namespace of its own (root only). It execs, so the child's PID
/// is vantage's.
pub fn vantage_as_host(hostname: &str) -> Command {
    let mut command = Command::new("unshare");
    command.args([
        "--uts",
        "sh",
        "-c",
        &format!("echo {hostname} > /proc/sys/kernel/hostname && exec \"$0\" \"$@\""),
        vantage_bin(),
    ]);
    command
}

/// A vantage process this test started; killed by PID on drop if still running. Its log goes
/// to a file rather than a pipe, which a chatty run could fill and so block vantage.
pub struct Vantage {
    pub child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Vantage {
    pub fn start(config: &Path, extra_args: &[&str]) -> Vantage {
        Vantage::start_as(Command::new(vantage_bin()), config, extra_args)
    }

    /// [`Vantage::start`] with `command`, which runs vantage (see [`vantage_as_host`]).
    pub fn start_as(mut command: Command, config: &Path, extra_args: &[&str]) -> Vantage {
        let addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra_args);
        Vantage::spawn(command, addr)
    }

    /// Starts `command`, a vantage (perhaps behind an exec'ing wrapper) told to listen on
    /// `addr`, and waits until it is ready.
    pub fn spawn(command: Command, addr: SocketAddr) -> Vantage {
        Vantage::spawn_until(command, addr, |addr| {
            http_get(addr, "/-/ready", None).is_some_and(|r| r.status == 200)
        })
    }

    /// [`Vantage::spawn`], waiting until `ready` holds for its address instead of a plaintext
    /// `/-/ready` (for endpoints behind TLS).
    pub fn spawn_until(
        mut command: Command,
        addr: SocketAddr,
        mut ready: impl FnMut(SocketAddr) -> bool,
    ) -> Vantage {
        let log = std::env::temp_dir().join(format!(
            "vantage-log-{}-{}.txt",
            std::process::id(),
            addr.port()
        ));
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let vantage = Vantage { child, addr, log };
        wait_for(Duration::from_secs(20), "vantage to become ready", || {
            ready(vantage.addr)
        });
        vantage
    }

    /// What vantage has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`HUP`, `TERM`, ...) to this vantage, by its PID.
    pub fn signal(&self, signal: &str) {
        // The shell's builtin `kill`: no procps package needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{signal} {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends `signal` (`TERM`, `INT`) and waits (bounded) for the exit status and the log.
    pub fn stop(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "vantage did not exit within 10s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (exit, self.log())
    }
}

impl Drop for Vantage {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A minimal HTTP/1.1 request with `Connection: close`; `None` if nothing answers.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    accept: Option<&str>,
) -> Option<Response> {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    exchange(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"),
    )
}

/// Sends `request` as it is and reads the answer until the server closes; `None` if nothing
/// answers or the answer is not HTTP.
pub fn exchange(addr: SocketAddr, request: &str) -> Option<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let mut response = Response {
        status: status_line.split(' ').nth(1)?.parse().ok()?,
        headers: headers.to_string(),
        body: String::new(),
    };
    let body = &raw[split + 4..];
    let chunked = response.header("transfer-encoding") == Some("chunked");
    response.body = String::from_utf8(if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    })
    .ok()?;
    Some(response)
}

pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Option<Response> {
    http_request(addr, "GET", path, accept)
}

/// Polls `done` until it holds, failing the test after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// TCP states (from /proc/net/tcp{,6}) of every socket whose local or remote port is `port`.
pub fn socket_states(port: u16) -> BTreeSet<&'static str> {
    let name = |st: &str| match st {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "UNKNOWN",
    };
    let mut states = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port_of = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if fields.len() > 3
                && (port_of(fields[1]) == Some(port) || port_of(fields[2]) == Some(port))
            {
                states.insert(name(fields[3]));
            }
        }
    }
    states
}

/// Fails the calling test unless each of `needs` (words of `tests/needs`, e.g. `root` or
/// `tool:dnsmasq`) is met, and unless its line in `tests/needs` declares every one of them: that
/// file is what `tests/run` reads to leave out (nextest counts them as skipped) the tests whose
/// needs are unmet, so a check the file does not declare would fail where it should skip. A
/// test that gets here with a need unmet was not filtered out (e.g. plain `cargo nextest run`),
/// and fails rather than pass without testing anything.
pub fn needs(needs: &[&str]) {
    let test = current_test();
    let declared = declared_needs(&test);
    for need in needs {
        assert!(
            declared.iter().any(|d| d == need),
            "{test} checks the need `{need}`, which its line in tests/needs does not declare \
             (it declares {declared:?}): add it there, so that tests/run can skip the test"
        );
    }
    for need in needs {
        let (met, what) = need_met(need);
        if !met {
            assert!(
                std::env::var("VANTAGE_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
                "{test} needs {what}, and VANTAGE_TEST_REQUIRE_ALL=1 forbids skipping it"
            );
            panic!("{test} needs {what}: run tests/run, which reports it as skipped");
        }
    }
}

/// The running test's name as nextest shows it (`netns::no_route_is_network_unreachable`):
/// libtest runs each test on a thread named so. `#[tokio::test]` bodies run there too (the
/// runtime's `block_on`), but not code in spawned tasks or `spawn_blocking`.
fn current_test() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("");
    assert!(
        name.contains("::"),
        "support::needs runs on the test's own thread (named after the test), not {name:?}"
    );
    name.to_string()
}

/// `tests/needs` as (test, needs) pairs: comment and blank lines left out.
pub fn needs_file() -> Vec<(String, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/needs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace().map(str::to_string);
            (words.next().unwrap(), words.collect())
        })
        .collect()
}

fn declared_needs(test: &str) -> Vec<String> {
    needs_file()
        .into_iter()
        .find(|(t, _)| t == test)
        .map(|(_, needs)| needs)
        .unwrap_or_default()
}

/// Whether `need` holds on this machine, checked as `tests/run` checks it, and what it is in
/// words. A need that `tests/needs` does not define panics.
pub fn need_met(need: &str) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match need.split_once(':') {
        Some(("tool", tool)) => {
            let found = Command::new("sh")
                .args(["-c", "command -v \"$0\"", tool])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            (found, tool.to_string())
        }
        Some(("npm", dir)) => (
            root.join(dir).join("node_modules").is_dir(),
            format!("`npm ci` in {dir}"),
        ),
        _ => match need {
            "root" => {
                let out = Command::new("id").arg("-u").output().unwrap();
                let uid = String::from_utf8_lossy(&out.stdout);
                (uid.trim() == "0", "root".to_string())
            }
            "ipv6-loopback" => {
                let addresses = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
                let found = addresses
                    .lines()
                    .any(|l| l.starts_with("00000000000000000000000000000001 "));
                (found, "an IPv6 loopback (::1)".to_string())
            }
            "debian12" => {
                let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
                let found = os.lines().any(|l| l == "ID=debian")
                    && os.lines().any(|l| l == "VERSION_ID=\"12\"");
                (found, "Debian 12, the container base's release".to_string())
            }
            "release-binary" => (
                root.join("target/release/vantage").exists(),
                "target/release/vantage (cargo build --release --locked)".to_string(),
            ),
            "ping-sockets-closed" => {
                let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
                    .unwrap_or_default();
                let bounds: Vec<u64> = range
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                let open = matches!(bounds[..], [low, high] if (low..=high).contains(&65534));
                (
                    !open,
                    format!("ping sockets closed to nobody (ping_group_range is {range:?})"),
                )
            }
            _ => panic!("tests/needs defines no need {need:?} (see the top of that file)"),
        },
    }
}

/// `tests/needs` names only tests that exist and needs that `need_met` knows, once each: a
/// renamed test would otherwise lose its needs silently.
#[test]
fn tests_needs_names_real_tests_and_known_needs() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--list", "--format", "terse"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    let tests: BTreeSet<&str> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    let mut seen = BTreeSet::new();
    for (test, needs) in needs_file() {
        assert!(tests.contains(test.as_str()), "tests/needs: no test {test}");
        assert!(seen.insert(test.clone()), "tests/needs: {test} twice");
        assert!(!needs.is_empty(), "tests/needs: {test} lists no need");
        for need in &needs {
            need_met(need);
        }
    }
}

/// `promtool check metrics` on a classic-format body must pass with nothing to say.
pub fn promtool_check(body: &str) {
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool must be installed (apt-get install prometheus; tests/run does this as root)",
        );
    let mut promtool = promtool;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}\n{body}"
    );
    assert_eq!(report.trim(), "", "promtool reported problems:\n{report}");
}

/// Reads an HTTP request head (through its blank line) from a blocking stream; `None` if the
/// client closes or fails first.
pub fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// Reads an HTTP request from a blocking stream: its head (through the blank line) as text,
/// and its body of `Content-Length` bytes (at most 16 MiB); `None` if the client closes or
/// fails first.
pub fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let head = read_request_head(stream)?;
    let split = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&head[..split]).to_string();
    let length: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = head[split..].to_vec();
    let mut buf = [0u8; 8192];
    while body.len() < length.min(16 << 20) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    Some((text, body))
}

/// Starts vantage on `config`, waits until `family` has a series for `targets` targets, and
/// returns that scrape (classic text format). Blocking: call it from `spawn_blocking`.
pub fn scrape_when_ready(config: &Path, family: &str, targets: usize) -> String {
    let vantage = Vantage::start(config, &[]);
    let needle = format!("{family}{{");
    wait_for(Duration::from_secs(15), "a run of every target", || {
        http_get(vantage.addr, "/metrics", None)
            .is_some_and(|r| r.body.matches(needle.as_str()).count() == targets)
    });
    http_get(vantage.addr, "/metrics", None).unwrap().body
}

/// An `exporter.yml` in `dir` with one tcp target on a closed loopback port: for tests of
/// vantage's own endpoints, which need a config and nothing more from it.
pub fn one_target_config(dir: &TempDir) -> PathBuf {
    dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - {{name: a, type: tcp, host: 127.0.0.1, port: {}}}\n",
            closed_port()
        ),
    )
}

/// Every line of `name`'s series for target `target` in a classic-format scrape.
pub fn series(body: &str, name: &str, target: &str) -> Vec<String> {
    let prefix = format!("{name}{{name=\"{target}\"");
    body.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// The value of `name`'s series for target `target` in a classic-format scrape.
pub fn sample(body: &str, name: &str, target: &str) -> f64 {
    let prefix = format!("{name}{{name=\"{target}\"");
    body.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A loopback peer that accepts and waits for the prober to close.
pub fn quiet_peer() -> u16 {
    thread_peer(|mut stream| {
        let _ = stream.read(&mut [0u8; 16]);
    })
}

/// The target names with a `probe_success` series in a scrape of `vantage`.
pub fn probed(vantage: &Vantage) -> BTreeSet<String> {
    let body = http_get(vantage.addr, "/metrics", None)
        .map(|r| r.body)
        .unwrap_or_default();
    body.lines()
        .filter_map(|l| l.strip_prefix("probe_success{name=\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect()
}

/// An nginx this test started (one process, in the foreground, its files in `dir`), killed
/// by PID on drop. `http` is the body of its `http` block; the temp paths are set already.
pub struct Nginx {
    child: Child,
}

impl Nginx {
    /// Starts nginx and waits until `port` listens.
    pub fn start(dir: &Path, http: &str, port: u16) -> Nginx {
        let root = dir.display();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;
master_process off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{http}
}}
"
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs");
        let nginx = Nginx { child };
        wait_for(Duration::from_secs(10), "nginx to listen", || {
            socket_states(port).contains("LISTEN")
        });
        nginx
    }

    /// The lines of the access log that `dir/access.log` names.
    pub fn log(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
