//! The benchmark: vantage against Prometheus' blackbox_exporter on the same local servers, the
//! rustls handshake floor, vantage at 1,000 to 100,000 targets, whether scrapes stall its
//! probing, its memory per target up to a million targets, and its schedule delay at 1,000
//! runs a second. `bench/run` installs the servers and runs this; the README's "Benchmark"
//! section explains every figure. Every load is bounded in time and count, and touches only
//! loopback addresses (127.0.0.1 to 127.0.0.254).

mod blackbox;
mod certs;
mod client;
mod floor;
mod procs;
mod report;
mod scale;
mod stall;
mod vantage;

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::time::sleep;

use crate::certs::{Chain, SERVER_NAME};
use crate::floor::Close;
use crate::procs::Process;
use crate::report::{CpuRow, Load, Results};
use crate::vantage::Vantage;

/// Targets are spread over this many loopback addresses, 127.0.0.1 upwards, so that no single
/// address pair runs out of ephemeral ports.
const ADDRESSES: usize = 254;
/// blackbox_exporter is driven with this many requests in flight, as the issue asks.
const IN_FLIGHT: usize = 50;
/// The cap on requests or handshakes of one load, whatever its time window.
const MAX_OPERATIONS: u64 = 2_000_000;
/// vantage's load for the CPU comparison: `Plan::cpu_targets` targets every `CPU_INTERVAL`.
const CPU_INTERVAL: Duration = Duration::from_secs(2);

const PARTS: [&str; 5] = ["cpu", "scale", "stall", "curve", "delay"];

/// The sizes and windows of every part: the full benchmark's, or `--smoke`'s.
struct Plan {
    /// vantage's targets in the CPU comparison, every `CPU_INTERVAL`.
    cpu_targets: usize,
    /// The scale table's target counts with their `failure_reasons`, and their interval.
    scales: Vec<(usize, &'static str)>,
    scale_interval: Duration,
    /// The stall part's targets and interval.
    stall: (usize, Duration),
    /// The memory curve's target counts; each size's interval spreads its runs at
    /// `curve_rate` a second, and is at least `curve_min_interval`.
    curve: Vec<usize>,
    curve_rate: f64,
    curve_min_interval: Duration,
    /// The schedule delay part's targets and interval.
    delay: (usize, Duration),
    /// The window of every schedule delay measurement.
    delay_window: Duration,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        match args.smoke {
            // Every part once, small and short: that each still works, not what it measures.
            // A fifth of the CPU comparison's rate, so that a busy CI machine does not time
            // out TLS handshakes.
            true => Plan {
                cpu_targets: 200,
                scales: vec![(1_000, "possible"), (1_000, "seen")],
                scale_interval: Duration::from_secs(3),
                stall: (1_000, Duration::from_secs(2)),
                curve: vec![1_000],
                curve_rate: 1_000.0,
                curve_min_interval: Duration::from_secs(3),
                delay: (1_000, Duration::from_secs(1)),
                delay_window: args.window,
            },
            false => Plan {
                cpu_targets: 1_000,
                scales: vec![
                    (1_000, "possible"),
                    (10_000, "possible"),
                    (100_000, "possible"),
                    (100_000, "seen"),
                ],
                scale_interval: Duration::from_secs(30),
                // 1,000 runs a second.
                stall: (100_000, Duration::from_secs(100)),
                curve: vec![1_000, 10_000, 100_000, 1_000_000],
                // A million targets every 5 minutes.
                curve_rate: 3_334.0,
                curve_min_interval: Duration::from_secs(30),
                // 1,000 runs a second.
                delay: (10_000, Duration::from_secs(10)),
                delay_window: args.window.max(Duration::from_secs(30)),
            },
        }
    }
}

struct Args {
    /// Where the results go; by default bench/results, or a folder removed at the end with
    /// `--smoke`, whose figures mean nothing.
    out: Option<PathBuf>,
    window: Duration,
    /// The parts to run, some of `PARTS`.
    parts: Vec<String>,
    /// Rounds of the CPU comparison.
    rounds: u32,
    /// Record a `perf` profile of vantage during each CPU window, into `out`.
    perf: bool,
    /// One round, short windows, small scale: a check that every part runs, for CI.
    smoke: bool,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            out: None,
            window: Duration::from_secs(8),
            parts: PARTS.iter().map(|p| p.to_string()).collect(),
            perf: false,
            rounds: 3,
            smoke: false,
        };
        let mut given = std::env::args().skip(1);
        let (mut window, mut rounds) = (None, None);
        while let Some(arg) = given.next() {
            match arg.as_str() {
                // cargo bench passes this to every bench target.
                "--bench" => {}
                "--out" => args.out = Some(given.next().ok_or("--out needs a folder")?.into()),
                "--seconds" => {
                    let seconds: u64 = given
                        .next()
                        .and_then(|s| s.parse().ok())
                        .filter(|s| (1..=600).contains(s))
                        .ok_or("--seconds needs a number from 1 to 600")?;
                    window = Some(Duration::from_secs(seconds));
                }
                "--perf" => args.perf = true,
                "--smoke" => args.smoke = true,
                "--rounds" => {
                    rounds = Some(
                        given
                            .next()
                            .and_then(|s| s.parse().ok())
                            .filter(|r| (1..=20).contains(r))
                            .ok_or("--rounds needs a number from 1 to 20")?,
                    );
                }
                "--only" => {
                    let parts = given.next().ok_or("--only needs a list")?;
                    args.parts = parts.split(',').map(str::to_string).collect();
                    if let Some(bad) = args.parts.iter().find(|p| !PARTS.contains(&p.as_str())) {
                        return Err(format!("--only: {bad:?} is none of {PARTS:?}"));
                    }
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (--out DIR, --seconds N, --rounds N, --only {}, --perf, --smoke)",
                        PARTS.join(",")
                    ));
                }
            }
        }
        let (default_window, default_rounds) = match args.smoke {
            true => (Duration::from_secs(2), 1),
            false => (Duration::from_secs(8), 3),
        };
        args.window = window.unwrap_or(default_window);
        args.rounds = rounds.unwrap_or(default_rounds);
        Ok(args)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tcp,
    TlsRsa,
    TlsEcdsa,
    Https,
    Icmp,
}

const KINDS: [Kind; 5] = [
    Kind::Tcp,
    Kind::TlsRsa,
    Kind::TlsEcdsa,
    Kind::Https,
    Kind::Icmp,
];

/// The servers and files every measurement shares.
struct Setup {
    dir: PathBuf,
    rsa: Chain,
    ecdsa: Chain,
    http_port: u16,
    rsa_port: u16,
    ecdsa_port: u16,
}

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % ADDRESSES) as u8)
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Tcp => "TCP connect",
            Kind::TlsRsa => "TLS, RSA-2048 leaf",
            Kind::TlsEcdsa => "TLS, ECDSA P-256 leaf",
            Kind::Https => "HTTPS GET, RSA-2048 leaf",
            Kind::Icmp => "ICMP echo",
        }
    }

    /// The chart's label.
    fn short(self) -> &'static str {
        match self {
            Kind::Tcp => "TCP",
            Kind::TlsRsa => "TLS RSA",
            Kind::TlsEcdsa => "TLS ECDSA",
            Kind::Https => "HTTPS",
            Kind::Icmp => "ICMP",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::TlsRsa => "tls_rsa",
            Kind::TlsEcdsa => "tls_ecdsa",
            Kind::Https => "https",
            Kind::Icmp => "icmp",
        }
    }

    /// One vantage target of this kind, as a YAML flow mapping.
    fn vantage_target(self, setup: &Setup, i: usize) -> String {
        let name = format!("{}-{i:06}", self.key());
        let ip = address(i);
        let tls = |ca: &Path| format!("{{server_name: {SERVER_NAME}, ca_file: {}}}", ca.display());
        match self {
            Kind::Tcp => format!(
                "{{name: {name}, type: tcp, host: {ip}, port: {}}}",
                setup.http_port
            ),
            Kind::TlsRsa => format!(
                "{{name: {name}, type: tcp, host: {ip}, port: {}, tls: {}}}",
                setup.rsa_port,
                tls(&setup.rsa.ca)
            ),
            Kind::TlsEcdsa => format!(
                "{{name: {name}, type: tcp, host: {ip}, port: {}, tls: {}}}",
                setup.ecdsa_port,
                tls(&setup.ecdsa.ca)
            ),
            Kind::Https => format!(
                "{{name: {name}, type: http, url: \"https://{ip}:{}/\", tls: {}}}",
                setup.rsa_port,
                tls(&setup.rsa.ca)
            ),
            // One echo per run, as blackbox_exporter sends (vantage's default is 3).
            Kind::Icmp => format!("{{name: {name}, type: icmp, host: {ip}, icmp: {{count: 1}}}}"),
        }
    }

    /// blackbox_exporter's `/probe` path for target `i`.
    fn blackbox_path(self, setup: &Setup, i: usize) -> String {
        let ip = address(i);
        let (module, target) = match self {
            Kind::Tcp => ("tcp", format!("{ip}:{}", setup.http_port)),
            Kind::TlsRsa => ("tls_rsa", format!("{ip}:{}", setup.rsa_port)),
            Kind::TlsEcdsa => ("tls_ecdsa", format!("{ip}:{}", setup.ecdsa_port)),
            Kind::Https => ("https", format!("https://{ip}:{}/", setup.rsa_port)),
            Kind::Icmp => ("icmp", ip.to_string()),
        };
        format!("/probe?module={module}&target={target}")
    }
}

fn main() {
    let result = Args::parse().and_then(|args| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(run(args))
    });
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("vantage-bench-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(dir.clone());
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None if args.smoke => dir.join("results"),
        None => PathBuf::from("bench/results"),
    };
    fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let setup = Setup {
        rsa: certs::rsa(&dir),
        ecdsa: certs::ecdsa(&dir),
        http_port: free_port()?,
        rsa_port: free_port()?,
        ecdsa_port: free_port()?,
        dir,
    };
    let _nginx = start_nginx(&setup).await?;
    let plan = Plan::new(&args);
    let mut results = Results::new(args.window, args.rounds);
    let runs = |part: &str| args.parts.iter().any(|p| p == part);

    if runs("cpu") {
        cpu(&setup, &args, &plan, &out, &mut results).await?;
    }
    if runs("scale") {
        for &(targets, failure_reasons) in &plan.scales {
            eprintln!("bench: scale, {targets} targets, failure_reasons: {failure_reasons} ...");
            let row = scale::scale(&setup, &plan, targets, failure_reasons).await?;
            eprintln!("bench:   {}", row.summary());
            results.scale.push(row);
        }
    }
    if runs("stall") {
        eprintln!("bench: stall, {} targets ...", plan.stall.0);
        let stall = stall::stall(&setup, &plan).await?;
        eprintln!("bench:   {}", stall.summary());
        results.stall = Some(stall);
    }
    if runs("curve") {
        eprintln!("bench: memory curve, baseline ...");
        results.baseline_rss = Some(scale::baseline(&setup, &plan).await?);
        for &targets in &plan.curve {
            eprintln!("bench: memory curve, {targets} targets ...");
            let row = scale::curve(&setup, &plan, targets).await?;
            eprintln!("bench:   {}", results.curve_summary(&row));
            results.curve.push(row);
        }
    }
    if runs("delay") {
        eprintln!("bench: schedule delay at 1,000 runs/s ...");
        let delay = scale::schedule_delay(&setup, &plan).await?;
        eprintln!("bench:   {}", delay.summary());
        results.delay = Some(delay);
    }
    report::write(&out, &results)
}

/// CPU per probe of every kind, vantage and blackbox_exporter, and the floor for TLS.
async fn cpu(
    setup: &Setup,
    args: &Args,
    plan: &Plan,
    out: &Path,
    results: &mut Results,
) -> Result<(), String> {
    let mut blackbox = blackbox::start(setup).await?;
    let blackbox_addr = blackbox.1;
    let mut rows: Vec<CpuRow> = KINDS
        .iter()
        .map(|k| CpuRow::new(k.key(), k.label(), k.short()))
        .collect();
    // Rounds interleave the exporters, so that a busy spell on this shared machine lands on
    // both; the tables give each one's median.
    for round in 1..=args.rounds {
        for (kind, row) in KINDS.into_iter().zip(&mut rows) {
            eprintln!("bench: round {round}/{}: {} ...", args.rounds, kind.label());
            let paths: Vec<String> = (0..ADDRESSES)
                .map(|i| kind.blackbox_path(setup, i))
                .collect();
            let theirs =
                blackbox::drive(&mut blackbox.0, blackbox_addr, paths, args.window).await?;
            let ours = vantage_load(setup, kind, args, plan.cpu_targets, out).await?;
            let chain = match kind {
                Kind::TlsRsa => Some((&setup.rsa, setup.rsa_port)),
                Kind::TlsEcdsa => Some((&setup.ecdsa, setup.ecdsa_port)),
                _ => None,
            };
            if let Some((chain, port)) = chain {
                let window = args.window;
                row.floor
                    .push(floor::rustls(chain, port, window, Close::Abrupt).await?);
                row.gentle_floor
                    .push(floor::rustls(chain, port, window, Close::Gentle).await?);
            }
            row.vantage.push(ours);
            row.blackbox.push(theirs);
            eprintln!("bench:   {}", row.summary());
        }
    }
    results.cpu = rows;
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Waits until `addr` accepts a connection.
async fn wait_listening(addr: SocketAddr, process: &mut Process) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        process.check_running()?;
        if Instant::now() > deadline {
            return Err(format!("nothing listens on {addr} after 120 s"));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// nginx from Debian: plain HTTP, TLS with the RSA leaf, TLS with the ECDSA leaf, each on every
/// one of the loopback addresses; every request is answered `200 ok`.
async fn start_nginx(setup: &Setup) -> Result<Process, String> {
    let dir = &setup.dir;
    let listen = |port: u16, ssl: &str| {
        (0..ADDRESSES).fold(String::new(), |mut out, i| {
            let _ = writeln!(out, "    listen {}:{port}{ssl};", address(i));
            out
        })
    };
    let conf = format!(
        "daemon off;
worker_processes 2;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  # nginx 1.22 (Debian 12) leaves TLS 1.3 out by default; servers today offer it.
  ssl_protocols TLSv1.2 TLSv1.3;
  client_body_temp_path {dir}/nginx-body;
  server {{
{plain}    return 200 \"ok\\n\";
  }}
  server {{
{rsa}    ssl_certificate {rsa_cert};
    ssl_certificate_key {rsa_key};
    return 200 \"ok\\n\";
  }}
  server {{
{ecdsa}    ssl_certificate {ecdsa_cert};
    ssl_certificate_key {ecdsa_key};
    return 200 \"ok\\n\";
  }}
}}
",
        dir = dir.display(),
        plain = listen(setup.http_port, ""),
        rsa = listen(setup.rsa_port, " ssl"),
        ecdsa = listen(setup.ecdsa_port, " ssl"),
        rsa_cert = setup.rsa.cert.display(),
        rsa_key = setup.rsa.key.display(),
        ecdsa_cert = setup.ecdsa.cert.display(),
        ecdsa_key = setup.ecdsa.key.display(),
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).map_err(|e| e.to_string())?;
    let mut nginx = Process::start(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("nginx-error.log")),
        &dir.join("nginx.out"),
    )?;
    for port in [setup.http_port, setup.rsa_port, setup.ecdsa_port] {
        for i in [0, ADDRESSES - 1] {
            wait_listening(SocketAddr::new(address(i).into(), port), &mut nginx).await?;
        }
    }
    Ok(nginx)
}

/// vantage probing `targets` targets of `kind` every `CPU_INTERVAL`: its CPU over `window`
/// after every target has run once. Every run must succeed.
async fn vantage_load(
    setup: &Setup,
    kind: Kind,
    args: &Args,
    targets: usize,
    out: &Path,
) -> Result<Load, String> {
    let window = args.window;
    let targets: Vec<String> = (0..targets)
        .map(|i| kind.vantage_target(setup, i))
        .collect();
    let schedule = format!("{{interval: {}s, timeout: 1s}}", CPU_INTERVAL.as_secs());
    let vantage = Vantage::start(setup, kind.key(), &targets, &schedule, "possible").await?;
    sleep(CPU_INTERVAL + Duration::from_secs(1)).await;
    let before = vantage.summary().await?;
    let perf = match args.perf {
        true => Some(record_profile(
            &vantage.process,
            &out.join(format!("perf-{}.data", kind.key())),
            setup,
        )?),
        false => None,
    };
    let (cpu0, t0) = (vantage.process.cpu_seconds()?, Instant::now());
    sleep(window).await;
    let (cpu1, t1) = (vantage.process.cpu_seconds()?, Instant::now());
    drop(perf);
    let after = vantage.summary().await?;
    after
        .no_failures()
        .map_err(|e| format!("vantage {}: {e}", kind.key()))?;
    Ok(Load {
        operations: (after.runs - before.runs) as u64,
        cpu_seconds: cpu1 - cpu0,
        seconds: (t1 - t0).as_secs_f64(),
    })
}

/// `perf record` of `process` (sampled on CPU time, which works without hardware counters)
/// until the returned process is dropped; read it with `perf report -i FILE`.
fn record_profile(process: &Process, file: &Path, setup: &Setup) -> Result<Process, String> {
    Process::start(
        "perf",
        Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-p"])
            .arg(process.pid().to_string())
            .arg("-o")
            .arg(file),
        &setup.dir.join("perf.log"),
    )
}
