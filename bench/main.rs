//! The benchmark: vantage against Prometheus' blackbox_exporter on the same local servers, the
//! rustls handshake floor, vantage at 1,000 to 100,000 targets, and its schedule delay at 1,000
//! runs a second. `bench/run` installs the servers and runs this; the README's "Benchmark"
//! section explains every figure. Every load is bounded in time and count, and touches only
//! loopback addresses (127.0.0.1 to 127.0.0.254).

mod certs;
mod client;
mod procs;
mod report;

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::sleep;
use tokio_rustls::TlsConnector;

use crate::certs::{Chain, SERVER_NAME};
use crate::client::Connection;
use crate::procs::Process;
use crate::report::{CpuRow, DelayResult, Load, Results, ScaleRow};

/// Targets are spread over this many loopback addresses, 127.0.0.1 upwards, so that no single
/// address pair runs out of ephemeral ports.
const ADDRESSES: usize = 254;
/// blackbox_exporter is driven with this many requests in flight, as the issue asks.
const IN_FLIGHT: usize = 50;
/// The cap on requests or handshakes of one load, whatever its time window.
const MAX_OPERATIONS: u64 = 2_000_000;
/// vantage's load for the CPU comparison: this many targets every `CPU_INTERVAL`.
const CPU_TARGETS: usize = 1_000;
const CPU_INTERVAL: Duration = Duration::from_secs(2);
const SCALES: [usize; 3] = [1_000, 10_000, 100_000];
const SCALE_INTERVAL: Duration = Duration::from_secs(30);
/// 10,000 targets every 10 s: 1,000 runs a second.
const DELAY_TARGETS: usize = 10_000;
const DELAY_INTERVAL: Duration = Duration::from_secs(10);

const PARTS: [&str; 3] = ["cpu", "scale", "delay"];

struct Args {
    out: PathBuf,
    window: Duration,
    /// The parts to run: `cpu`, `scale`, `delay`.
    parts: Vec<String>,
    /// Rounds of the CPU comparison.
    rounds: u32,
    /// Record a `perf` profile of vantage during each CPU window, into `out`.
    perf: bool,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            out: PathBuf::from("bench/results"),
            window: Duration::from_secs(8),
            parts: PARTS.iter().map(|p| p.to_string()).collect(),
            perf: false,
            rounds: 3,
        };
        let mut given = std::env::args().skip(1);
        while let Some(arg) = given.next() {
            match arg.as_str() {
                // cargo bench passes this to every bench target.
                "--bench" => {}
                "--out" => args.out = given.next().ok_or("--out needs a folder")?.into(),
                "--seconds" => {
                    let seconds: u64 = given
                        .next()
                        .and_then(|s| s.parse().ok())
                        .filter(|s| (1..=600).contains(s))
                        .ok_or("--seconds needs a number from 1 to 600")?;
                    args.window = Duration::from_secs(seconds);
                }
                "--perf" => args.perf = true,
                "--rounds" => {
                    args.rounds = given
                        .next()
                        .and_then(|s| s.parse().ok())
                        .filter(|r| (1..=20).contains(r))
                        .ok_or("--rounds needs a number from 1 to 20")?;
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
                        "unknown argument {other:?} (--out DIR, --seconds N, --rounds N, --only cpu,scale,delay, --perf)"
                    ));
                }
            }
        }
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
    fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let setup = Setup {
        rsa: certs::rsa(&dir),
        ecdsa: certs::ecdsa(&dir),
        http_port: free_port()?,
        rsa_port: free_port()?,
        ecdsa_port: free_port()?,
        dir,
    };
    let _nginx = start_nginx(&setup).await?;
    let mut results = Results::new(args.window, args.rounds);
    let runs = |part: &str| args.parts.iter().any(|p| p == part);

    if runs("cpu") {
        cpu(&setup, &args, &mut results).await?;
    }
    if runs("scale") {
        for targets in SCALES {
            eprintln!("bench: {targets} targets ...");
            let row = scale(&setup, targets).await?;
            eprintln!("bench:   {}", row.summary());
            results.scale.push(row);
        }
    }
    if runs("delay") {
        eprintln!("bench: schedule delay at 1,000 runs/s ...");
        let delay = schedule_delay(&setup, args.window.max(Duration::from_secs(30))).await?;
        eprintln!("bench:   {}", delay.summary());
        results.delay = Some(delay);
    }
    report::write(&args.out, &results)
}

/// CPU per probe of every kind, vantage and blackbox_exporter, and the floor for TLS.
async fn cpu(setup: &Setup, args: &Args, results: &mut Results) -> Result<(), String> {
    let mut blackbox = start_blackbox(setup).await?;
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
            let theirs = drive_blackbox(&mut blackbox.0, blackbox_addr, paths, args.window).await?;
            let ours = vantage_load(setup, kind, args).await?;
            let floor = match kind {
                Kind::TlsRsa => Some(rustls_floor(&setup.rsa, setup.rsa_port, args.window).await?),
                Kind::TlsEcdsa => {
                    Some(rustls_floor(&setup.ecdsa, setup.ecdsa_port, args.window).await?)
                }
                _ => None,
            };
            row.vantage.push(ours);
            row.blackbox.push(theirs);
            row.floor.extend(floor);
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

/// blackbox_exporter from Debian with one module per kind, trusting the same roots as vantage.
async fn start_blackbox(setup: &Setup) -> Result<(Process, SocketAddr), String> {
    let tls = |ca: &Path| format!("{{ca_file: {}, server_name: {SERVER_NAME}}}", ca.display());
    let conf = format!(
        "modules:
  tcp: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4}}}}
  tls_rsa: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4, tls: true, tls_config: {rsa}}}}}
  tls_ecdsa: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4, tls: true, tls_config: {ecdsa}}}}}
  https: {{prober: http, timeout: 5s, http: {{preferred_ip_protocol: ip4, tls_config: {rsa}}}}}
  icmp: {{prober: icmp, timeout: 5s, icmp: {{preferred_ip_protocol: ip4}}}}
",
        rsa = tls(&setup.rsa.ca),
        ecdsa = tls(&setup.ecdsa.ca),
    );
    let path = setup.dir.join("blackbox.yml");
    fs::write(&path, conf).map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut process = Process::start(
        "blackbox_exporter",
        Command::new("prometheus-blackbox-exporter")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--web.listen-address={addr}")),
        &setup.dir.join("blackbox.log"),
    )?;
    wait_listening(addr, &mut process).await?;
    Ok((process, addr))
}

/// Drives `/probe` with `IN_FLIGHT` requests at a time over kept-alive connections, and measures
/// blackbox_exporter's CPU over `window` after a warm-up. Every probe must succeed.
async fn drive_blackbox(
    process: &mut Process,
    addr: SocketAddr,
    paths: Vec<String>,
    window: Duration,
) -> Result<Load, String> {
    let paths = Arc::new(paths);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let error = Arc::new(Mutex::new(None::<String>));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (paths, stop, done, issued, error) = (
            Arc::clone(&paths),
            Arc::clone(&stop),
            Arc::clone(&done),
            Arc::clone(&issued),
            Arc::clone(&error),
        );
        workers.push(tokio::spawn(async move {
            let outcome = async {
                let mut connection = Connection::open(addr).await?;
                while !stop.load(Ordering::Relaxed) {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= MAX_OPERATIONS {
                        break;
                    }
                    let path = &paths[n as usize % paths.len()];
                    let (status, body) = connection.get(path).await?;
                    if status != 200 || !contains(&body, b"\nprobe_success 1\n") {
                        return Err(format!(
                            "{path}: status {status}, not a success:\n{}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            .await;
            if let Err(e) = outcome {
                error.lock().unwrap().get_or_insert(e);
                stop.store(true, Ordering::Relaxed);
            }
        }));
    }
    sleep(Duration::from_secs(2)).await;
    let (cpu0, done0, t0) = (
        process.cpu_seconds()?,
        done.load(Ordering::Relaxed),
        Instant::now(),
    );
    sleep(window).await;
    let (cpu1, done1, t1) = (
        process.cpu_seconds()?,
        done.load(Ordering::Relaxed),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    if let Some(e) = error.lock().unwrap().take() {
        return Err(format!("blackbox_exporter: {e}"));
    }
    Ok(Load {
        operations: done1 - done0,
        cpu_seconds: cpu1 - cpu0,
        seconds: (t1 - t0).as_secs_f64(),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// vantage started on a config of `targets` (YAML flow mappings) with the given schedule.
struct Vantage {
    process: Process,
    addr: SocketAddr,
}

impl Vantage {
    async fn start(
        setup: &Setup,
        name: &str,
        targets: &[String],
        schedule: &str,
    ) -> Result<Vantage, String> {
        let mut config = format!("location: bench\ndefaults: {schedule}\ntargets:\n");
        for target in targets {
            let _ = writeln!(config, "  - {target}");
        }
        let path = setup.dir.join(format!("{name}.yml"));
        fs::write(&path, config).map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut process = Process::start(
            "vantage",
            Command::new(env!("CARGO_BIN_EXE_vantage"))
                .arg(format!("--config.file={}", path.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn"),
            &setup.dir.join(format!("{name}.log")),
        )?;
        wait_listening(addr, &mut process).await?;
        Ok(Vantage { process, addr })
    }

    async fn scrape(&self) -> Result<String, String> {
        client::get_ok(self.addr, "/metrics").await
    }
}

/// The sum of every sample of `name` (with or without labels).
fn sum_of(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// vantage probing `CPU_TARGETS` targets of `kind` every `CPU_INTERVAL`: its CPU over `window`
/// after every target has run once. Every run must succeed.
async fn vantage_load(setup: &Setup, kind: Kind, args: &Args) -> Result<Load, String> {
    let window = args.window;
    let targets: Vec<String> = (0..CPU_TARGETS)
        .map(|i| kind.vantage_target(setup, i))
        .collect();
    let schedule = format!("{{interval: {}s, timeout: 1s}}", CPU_INTERVAL.as_secs());
    let vantage = Vantage::start(setup, kind.key(), &targets, &schedule).await?;
    sleep(CPU_INTERVAL + Duration::from_secs(1)).await;
    let before = vantage.scrape().await?;
    let perf = match args.perf {
        true => Some(record_profile(
            &vantage.process,
            &args.out.join(format!("perf-{}.data", kind.key())),
            setup,
        )?),
        false => None,
    };
    let (cpu0, t0) = (vantage.process.cpu_seconds()?, Instant::now());
    sleep(window).await;
    let (cpu1, t1) = (vantage.process.cpu_seconds()?, Instant::now());
    drop(perf);
    let after = vantage.scrape().await?;
    let failures = sum_of(&after, "probe_failures_total");
    if failures > 0.0 {
        let failed: Vec<&str> = after
            .lines()
            .filter(|l| l.starts_with("probe_failures_total"))
            .take(3)
            .collect();
        return Err(format!(
            "vantage {}: {failures} runs failed: {failed:?}",
            kind.key()
        ));
    }
    Ok(Load {
        operations: (sum_of(&after, "probe_runs_total") - sum_of(&before, "probe_runs_total"))
            as u64,
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

/// The floor: this process's CPU per handshake of a minimal rustls client (aws-lc-rs, the same
/// provider and roots as vantage, no resumption), connect + handshake + close_notify, one at a
/// time, while nothing else runs in this process.
async fn rustls_floor(chain: &Chain, port: u16, window: Duration) -> Result<Load, String> {
    let ca = CertificateDer::from_pem_file(&chain.ca).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| e.to_string())?;
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    let handshake = |i: usize| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = TcpStream::connect((address(i), port))
                .await
                .map_err(|e| e.to_string())?;
            let mut tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())
        }
    };
    for i in 0..200 {
        handshake(i).await?;
    }
    let (cpu0, t0) = (procs::own_cpu_seconds(), Instant::now());
    let mut count = 0u64;
    while t0.elapsed() < window && count < MAX_OPERATIONS {
        handshake(count as usize).await?;
        count += 1;
    }
    Ok(Load {
        operations: count,
        cpu_seconds: procs::own_cpu_seconds() - cpu0,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// vantage with `targets` TCP targets every `SCALE_INTERVAL`, once every target has a result:
/// peak RSS, and the time and size of `/metrics` (the median of five scrapes).
async fn scale(setup: &Setup, targets: usize) -> Result<ScaleRow, String> {
    let list: Vec<String> = (0..targets)
        .map(|i| Kind::Tcp.vantage_target(setup, i))
        .collect();
    let schedule = format!("{{interval: {}s, timeout: 5s}}", SCALE_INTERVAL.as_secs());
    let vantage = Vantage::start(setup, &format!("scale-{targets}"), &list, &schedule).await?;
    sleep(SCALE_INTERVAL + Duration::from_secs(2)).await;
    let deadline = Instant::now() + SCALE_INTERVAL;
    loop {
        let metrics = vantage.scrape().await?;
        let with_result = metrics
            .lines()
            .filter(|l| l.starts_with("probe_success{"))
            .count();
        if with_result == targets {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {with_result} of {targets} targets have a result"
            ));
        }
        sleep(Duration::from_secs(2)).await;
    }
    let mut scrapes = Vec::new();
    for _ in 0..5 {
        let (status, body, took) = client::get(vantage.addr, "/metrics").await?;
        if status != 200 {
            return Err(format!("/metrics answered {status}"));
        }
        scrapes.push((took, body.len()));
    }
    scrapes.sort();
    let (peak, current) = vantage.process.rss()?;
    Ok(ScaleRow {
        targets,
        peak_rss: peak,
        rss: current,
        metrics_time: scrapes[2].0,
        metrics_bytes: scrapes[2].1,
    })
}

/// vantage at 1,000 runs a second: how late runs start, from its own histogram over `window`.
async fn schedule_delay(setup: &Setup, window: Duration) -> Result<DelayResult, String> {
    let list: Vec<String> = (0..DELAY_TARGETS)
        .map(|i| Kind::Tcp.vantage_target(setup, i))
        .collect();
    let schedule = format!("{{interval: {}s, timeout: 5s}}", DELAY_INTERVAL.as_secs());
    let vantage = Vantage::start(setup, "delay", &list, &schedule).await?;
    sleep(DELAY_INTERVAL + Duration::from_secs(1)).await;
    let before = vantage.scrape().await?;
    let t0 = Instant::now();
    sleep(window).await;
    let after = vantage.scrape().await?;
    let seconds = t0.elapsed().as_secs_f64();
    let buckets = |text: &str| report::buckets(text, "vantage_probe_schedule_delay_seconds_bucket");
    let (b0, b1) = (buckets(&before), buckets(&after));
    if b0.len() != b1.len() || b1.is_empty() {
        return Err("no schedule delay histogram in /metrics".to_string());
    }
    let delta: Vec<(f64, f64)> = b1
        .iter()
        .zip(&b0)
        .map(|(&(le, n1), &(_, n0))| (le, n1 - n0))
        .collect();
    let runs = sum_of(&after, "probe_runs_total") - sum_of(&before, "probe_runs_total");
    Ok(DelayResult {
        runs_per_second: runs / seconds,
        p50: report::quantile(&delta, 0.5),
        p99: report::quantile(&delta, 0.99),
    })
}
