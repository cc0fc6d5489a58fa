//! Sites that reach one shared target over links with delays of their own, for tests that need
//! timings that differ by location (root only).
//!
//! The kernel may have no netem, so the delay is made in user space: in each site's namespace an
//! iptables rule sends the packets to the target to NFQUEUE 0 (`--queue-bypass`), and
//! `tests/delay_link.py delay`, started in that namespace (NFQUEUE sockets are per network
//! namespace), holds each one for the site's delay before accepting it. Only the way to the
//! target is delayed, so a TCP connect from the site takes at least the delay (the SYN waits)
//! and the answers come back at once. The script's head says what it guarantees: packets leave
//! in order, the live delayer drops none, and once it is gone packets flow undelayed.
//!
//! The topology ([`sites`]):
//! - a target namespace with [`TARGET`] (10.78.0.1) on its loopback;
//! - site `k` (from 0): a namespace joined to the target namespace by a veth pair, 10.78.{k+1}.2
//!   on its side (the source address the target sees) and 10.78.{k+1}.1 on the target's, with a
//!   route to 10.78.0.0/16 over it;
//! - for each site a host link, a veth pair to the root namespace on 10.79.{h}.0/24:
//!   10.79.{h}.1 in the root namespace ([`Site::host_addr`]), 10.79.{h}.2 in the site
//!   ([`Site::listen_addr`]). A process in the site reaches a server of the test process bound to
//!   `host_addr` or 0.0.0.0 (not 127.0.0.1: the site's loopback is its own), and the test process
//!   reaches a server in the site bound to `listen_addr`. `h` is unique on the machine while the
//!   site lives: the root end's name, `vtdh{h}`, is claimed by creating it, so tests in parallel
//!   processes never share one. The host link is not delayed, and a site has no default route:
//!   it reaches nothing but the target and the test process.
//!
//! Everything goes with the [`Sites`] value: the helper processes are stopped by PID (stdin
//! closed, then SIGKILL after 2 s), then the namespaces are deleted, which deletes their veths
//! and iptables rules. The helpers also end on their own after [`MAX_LIFETIME`], or when the
//! test process is gone (their stdin, a pipe from it, closes).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::support::{Vantage, http_get, needs, sample, vantage_bin, wait_for};

/// The shared target's address, on the target namespace's loopback.
pub const TARGET: &str = "10.78.0.1";

/// How long a helper process (delayer, listener) lives at most, whatever happens to the test.
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// The helper script (`delay` and `listen`).
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delay_link.py");

/// Ports for [`Site::vantage`]: distinct within this process, so their log files are too.
static NEXT_PORT: AtomicU16 = AtomicU16::new(19_000);

/// Runs `ip args`, returning its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) must be installed");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[track_caller]
fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("ip {args:?}: {e}");
    }
}

/// A command that runs `program` (arguments to follow) inside `ns`. `ip netns exec` execs, so
/// the child's PID is the program's.
pub fn in_ns(ns: &Netns, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &ns.0, program]);
    command
}

/// A helper process started inside a namespace, which said `ready`. Stopped on drop: its stdin
/// closed (it lets go of what it holds and exits), then SIGKILL by PID if it has not exited
/// within 2 s.
pub struct NsProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl NsProcess {
    /// Starts `tests/delay_link.py args` inside `ns` and waits (at most 20 s) for its `ready`.
    pub fn script(ns: &Netns, args: &[&str]) -> NsProcess {
        let mut command = in_ns(ns, "python3");
        command
            .arg(SCRIPT)
            .args(args)
            .arg(format!("--max-seconds={}", MAX_LIFETIME.as_secs()));
        NsProcess::start(command)
    }

    /// Starts `command`, which must print `ready` on stdout once set up, and waits (at most
    /// 20 s) for that line. Its stderr goes to the test's.
    pub fn start(mut command: Command) -> NsProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut process = NsProcess { child, stdin };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.trim() == "ready" => process,
            other => {
                process.kill();
                panic!("{command:?} did not get ready: {other:?} (its stderr is above)");
            }
        }
    }

    /// Kills it now with SIGKILL, by PID, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

/// One site: a namespace whose packets to the target are delayed by `delay`.
pub struct Site {
    /// First, so that it stops before its namespace goes.
    delayer: Option<NsProcess>,
    pub ns: Netns,
    /// The root namespace's end of the host link: a process in the site reaches a server of the
    /// test process bound to it (or to 0.0.0.0).
    pub host_addr: String,
    /// The site's end of the host link: the test process reaches a server in the site bound to
    /// it.
    pub listen_addr: String,
    /// The one-way delay on the way to the target (zero: no delayer).
    pub delay: Duration,
}

impl Site {
    /// A command that runs `program` (arguments to follow) inside the site.
    pub fn command(&self, program: &str) -> Command {
        in_ns(&self.ns, program)
    }

    /// `vantage probe args` inside the site.
    pub fn probe(&self, args: &[&str]) -> Output {
        self.command(vantage_bin())
            .arg("probe")
            .args(args)
            .output()
            .unwrap()
    }

    /// A vantage exporter inside the site on `config`, listening on the site's end of the host
    /// link (its `addr` is where the test process scrapes it), once ready.
    pub fn vantage(&self, config: &Path, extra_args: &[&str]) -> Vantage {
        let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let addr: SocketAddr = format!("{}:{port}", self.listen_addr).parse().unwrap();
        let mut command = self.command(vantage_bin());
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra_args);
        Vantage::spawn(command, addr)
    }

    /// Kills the delayer (SIGKILL, as a crash would): from then on the link has no delay, as
    /// the rule's `--queue-bypass` lets packets through when nothing listens on the queue.
    pub fn kill_delayer(&mut self) {
        if let Some(mut delayer) = self.delayer.take() {
            delayer.kill();
        }
    }
}

/// The target namespace and its sites; everything goes on drop.
pub struct Sites {
    /// First, so that the sites' helpers stop before the target namespace goes.
    pub sites: Vec<Site>,
    pub target: Netns,
}

impl Sites {
    /// A TCP listener on [`TARGET`]`:port` in the target namespace, which accepts every
    /// connection and closes it when the peer does.
    pub fn listen(&self, port: u16) -> NsProcess {
        NsProcess::script(
            &self.target,
            &["listen", "--addr", TARGET, "--port", &port.to_string()],
        )
    }
}

/// A target namespace with [`TARGET`] and one site for each of `delays`, its one-way delay to
/// the target (see the module's head). Root, `ip`, `iptables` (for a non-zero delay) and
/// `python3`.
pub fn sites(delays: &[Duration]) -> Sites {
    assert!(delays.len() < 250, "at most 249 sites");
    let target = Netns::new();
    target.exec(&["ip", "addr", "add", &format!("{TARGET}/32"), "dev", "lo"]);
    let mut sites = Vec::new();
    for (k, &delay) in delays.iter().enumerate() {
        let ns = Netns::new();
        let net = k + 1;
        let (site_end, target_end) = ("target".to_string(), format!("site{k}"));
        must(&[
            "link",
            "add",
            &site_end,
            "netns",
            &ns.0,
            "type",
            "veth",
            "peer",
            "name",
            &target_end,
            "netns",
            &target.0,
        ]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.78.{net}.2/24"),
            "dev",
            &site_end,
        ]);
        target.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.78.{net}.1/24"),
            "dev",
            &target_end,
        ]);
        ns.exec(&["ip", "link", "set", &site_end, "up"]);
        target.exec(&["ip", "link", "set", &target_end, "up"]);
        ns.exec(&[
            "ip",
            "route",
            "add",
            "10.78.0.0/16",
            "via",
            &format!("10.78.{net}.1"),
        ]);

        let h = claim_host_link(&ns);
        let root_end = format!("vtdh{h}");
        let (host_addr, listen_addr) = (format!("10.79.{h}.1"), format!("10.79.{h}.2"));
        must(&["addr", "add", &format!("{host_addr}/24"), "dev", &root_end]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{listen_addr}/24"),
            "dev",
            "host",
        ]);
        must(&["link", "set", &root_end, "up"]);
        ns.exec(&["ip", "link", "set", "host", "up"]);

        let delayer = (!delay.is_zero()).then(|| {
            ns.exec(&[
                "iptables",
                "-A",
                "OUTPUT",
                "-d",
                TARGET,
                "-j",
                "NFQUEUE",
                "--queue-num",
                "0",
                "--queue-bypass",
            ]);
            let ms = format!("{}", delay.as_secs_f64() * 1000.0);
            NsProcess::script(&ns, &["delay", "--queue=0", "--delay-ms", &ms])
        });
        sites.push(Site {
            delayer,
            ns,
            host_addr,
            listen_addr,
            delay,
        });
    }
    Sites { sites, target }
}

/// Creates the veth pair of `ns`'s host link, `vtdh{h}` in the root namespace and `host` in
/// `ns`, for the first `h` whose name no other site on the machine has taken; returns `h`.
fn claim_host_link(ns: &Netns) -> u8 {
    for h in 0..=255u8 {
        let name = format!("vtdh{h}");
        match ip(&[
            "link", "add", &name, "type", "veth", "peer", "name", "host", "netns", &ns.0,
        ]) {
            Ok(()) => return h,
            Err(e) if e.contains("File exists") => continue,
            Err(e) => panic!("ip link add {name}: {e}"),
        }
    }
    panic!("all 256 host links (vtdh0..vtdh255) are taken: stale ones from killed tests?");
}

/// The connect time in a successful `vantage probe` report, in ms.
#[track_caller]
fn connect_ms(out: &Output) -> f64 {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let time = text
        .lines()
        .find_map(|l| l.strip_prefix("connect   "))
        .unwrap_or_else(|| panic!("no connect line in\n{text}"));
    match time.split_once(' ') {
        Some((n, "ms")) => n.parse().unwrap(),
        Some((n, "s")) => n.parse::<f64>().unwrap() * 1000.0,
        _ => panic!("connect time {time:?} in\n{text}"),
    }
}

/// A TCP peer of the test process on `addr`: accepts, and reads until the prober closes.
fn root_peer(addr: &str) -> u16 {
    let listener = TcpListener::bind((addr, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.read(&mut [0u8; 16]);
        }
    });
    port
}

#[test]
fn each_site_connects_to_the_shared_target_after_its_own_delay() {
    needs(&["root", "tool:iptables", "tool:python3"]);
    let delays = [20, 80];
    let mut topology = sites(&delays.map(Duration::from_millis));
    let port = 7000;
    let _listener = topology.listen(port);
    let target = format!("{TARGET}:{port}");

    // Five probes from each site, alternating, so that a slow moment of the machine hits both.
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..5 {
        for (site, times) in topology.sites.iter().zip(&mut times) {
            times.push(connect_ms(&site.probe(&[&target, "--timeout=5s"])));
        }
    }
    let medians = times.clone().map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    });
    for (median, site) in medians.iter().zip(&topology.sites) {
        let delay = site.delay.as_secs_f64() * 1000.0;
        assert!(
            *median >= delay,
            "a median connect of {median} ms over a {delay} ms link: {times:?}"
        );
    }
    assert!(
        medians[1] - medians[0] >= 40.0,
        "the 80 ms site's median connect is not 40 ms above the 20 ms site's: {times:?}"
    );

    // The host link, both ways and undelayed: an exporter in the 80 ms site, scraped by the
    // test process, serves the delayed connect time; and a probe from the site reaches a peer
    // of the test process.
    let site = &topology.sites[1];
    let dir = crate::support::TempDir::new("delay");
    let config = dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - {{name: shared, type: tcp, host: {TARGET}, port: {port}, interval: 2s, timeout: 1s}}\n"
        ),
    );
    let exporter = site.vantage(&config, &[]);
    let mut body = String::new();
    wait_for(
        Duration::from_secs(15),
        "a run of the shared target",
        || {
            body = http_get(exporter.addr, "/metrics", None)
                .map(|r| r.body)
                .unwrap_or_default();
            body.contains("probe_connect_duration_seconds{name=\"shared\"")
        },
    );
    let connect = sample(&body, "probe_connect_duration_seconds", "shared");
    assert!(
        connect >= site.delay.as_secs_f64(),
        "{connect} s over a {:?} link\n{body}",
        site.delay
    );
    drop(exporter);
    let peer = root_peer(&site.host_addr);
    connect_ms(&site.probe(&[&format!("{}:{peer}", site.host_addr), "--timeout=5s"]));

    // A delayer killed as a crash would is bypassed (`--queue-bypass`): the link still flows.
    // Without the bypass, packets queued to no reader are dropped and the probe would time out.
    let site = &mut topology.sites[1];
    site.kill_delayer();
    let after = connect_ms(&site.probe(&[&target, "--timeout=5s"]));
    eprintln!("connect times (ms): {times:?}; 80 ms site without its delayer: {after} ms");
}
