//! The results: `results.json`, `results.md` (the README's tables) and `cpu.png` (by gnuplot).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::procs;
use crate::vantage::Delay;

/// What one load did: operations (probes, handshakes) and CPU-seconds over a window.
#[derive(Clone, Copy)]
pub struct Load {
    pub operations: u64,
    pub cpu_seconds: f64,
    pub seconds: f64,
}

impl Load {
    pub fn per_thousand(&self) -> f64 {
        self.cpu_seconds / self.operations.max(1) as f64 * 1000.0
    }

    pub fn rate(&self) -> f64 {
        self.operations as f64 / self.seconds
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "operations": self.operations,
            "cpu_seconds": self.cpu_seconds,
            "seconds": self.seconds,
            "cpu_seconds_per_1000": self.per_thousand(),
        })
    }
}

/// One probe kind's loads, a round each.
pub struct CpuRow {
    pub key: &'static str,
    pub label: &'static str,
    pub short: &'static str,
    pub vantage: Vec<Load>,
    pub blackbox: Vec<Load>,
    /// The rustls handshake floor, for the TLS rows: the client drops the connection after
    /// its close_notify.
    pub floor: Vec<Load>,
    /// The same, but the client reads on to the server's FIN as vantage does.
    pub gentle_floor: Vec<Load>,
}

/// The load with the median CPU per operation.
fn median(loads: &[Load]) -> Option<Load> {
    let mut sorted = loads.to_vec();
    sorted.sort_by(|a, b| a.per_thousand().total_cmp(&b.per_thousand()));
    sorted.get(sorted.len() / 2).copied()
}

impl CpuRow {
    pub fn new(key: &'static str, label: &'static str, short: &'static str) -> CpuRow {
        CpuRow {
            key,
            label,
            short,
            vantage: Vec::new(),
            blackbox: Vec::new(),
            floor: Vec::new(),
            gentle_floor: Vec::new(),
        }
    }

    /// The medians: vantage, blackbox_exporter, and the floors where there are some.
    fn medians(&self) -> (Load, Load, Option<Load>, Option<Load>) {
        let none = Load {
            operations: 0,
            cpu_seconds: f64::NAN,
            seconds: f64::NAN,
        };
        (
            median(&self.vantage).unwrap_or(none),
            median(&self.blackbox).unwrap_or(none),
            median(&self.floor),
            median(&self.gentle_floor),
        )
    }

    pub fn summary(&self) -> String {
        let (ours, theirs, floor, gentle) = self.medians();
        let floor = [("rustls floor", floor), ("gentle floor", gentle)]
            .iter()
            .filter_map(|(name, f)| {
                let f = f.as_ref()?;
                Some(format!(
                    ", {name} {:.3} (vantage {:.2}x)",
                    f.per_thousand(),
                    ours.per_thousand() / f.per_thousand()
                ))
            })
            .collect::<String>();
        format!(
            "medians so far: vantage {:.3} CPU-s/1000, blackbox {:.3}, ratio {:.2}{floor}",
            ours.per_thousand(),
            theirs.per_thousand(),
            ours.per_thousand() / theirs.per_thousand()
        )
    }
}

pub struct ScaleRow {
    pub targets: usize,
    /// The config's `failure_reasons`: whether every target has a zero series per reason.
    pub failure_reasons: &'static str,
    pub peak_rss: u64,
    pub rss: u64,
    /// Medians of five scrapes, each from the connect to the last byte, and sizes on the wire.
    pub plain_time: Duration,
    pub plain_bytes: usize,
    pub gzip_time: Duration,
    pub gzip_bytes: usize,
    /// The peak resident size during one scrape minus the resident size before it.
    pub plain_transient: u64,
    pub gzip_transient: u64,
}

impl ScaleRow {
    pub fn summary(&self) -> String {
        format!(
            "peak RSS {:.1} MiB, /metrics plain {:.1} ms {:.1} MiB (+{:.1} MiB), gzip {:.1} ms {:.2} MiB (+{:.1} MiB)",
            mib(self.peak_rss),
            ms(self.plain_time.as_secs_f64()),
            mib(self.plain_bytes as u64),
            mib(self.plain_transient),
            ms(self.gzip_time.as_secs_f64()),
            mib(self.gzip_bytes as u64),
            mib(self.gzip_transient),
        )
    }
}

/// The schedule delay without scrapes, then with back-to-back scrapes.
pub struct StallResult {
    pub targets: usize,
    pub quiet: Delay,
    pub scraped: Delay,
    pub scrapes: usize,
    pub median_scrape: Duration,
    pub median_bytes: usize,
}

impl StallResult {
    fn ratio(&self) -> f64 {
        self.scraped.p99.estimate / self.quiet.p99.estimate
    }

    pub fn summary(&self) -> String {
        format!(
            "without scrapes {}; with {} scrapes (median {:.1} ms, {:.2} MiB) {}; p99 ratio {:.2}x",
            self.quiet.summary(),
            self.scrapes,
            ms(self.median_scrape.as_secs_f64()),
            mib(self.median_bytes as u64),
            self.scraped.summary(),
            self.ratio()
        )
    }
}

/// One size of the memory curve.
pub struct CurveRow {
    pub targets: usize,
    pub interval: Duration,
    pub rss: u64,
    pub peak_rss: u64,
    pub ready_after: Duration,
    pub delay: Delay,
    /// vantage's CPU over the delay window, in cores.
    pub cpu_cores: f64,
}

/// A quantile estimated from histogram buckets, and the upper bound of its bucket.
#[derive(Clone, Copy)]
pub struct Quantile {
    pub estimate: f64,
    pub at_most: f64,
}

pub struct Results {
    pub window: Duration,
    pub rounds: u32,
    pub cpu: Vec<CpuRow>,
    pub scale: Vec<ScaleRow>,
    pub stall: Option<StallResult>,
    /// vantage's resident size with one target, which the curve subtracts.
    pub baseline_rss: Option<u64>,
    pub curve: Vec<CurveRow>,
    pub delay: Option<Delay>,
}

impl Results {
    pub fn new(window: Duration, rounds: u32) -> Results {
        Results {
            window,
            rounds,
            cpu: Vec::new(),
            scale: Vec::new(),
            stall: None,
            baseline_rss: None,
            curve: Vec::new(),
            delay: None,
        }
    }

    /// Resident bytes per target beyond the baseline.
    fn per_target(&self, row: &CurveRow) -> f64 {
        let baseline = self.baseline_rss.unwrap_or(0);
        row.rss.saturating_sub(baseline) as f64 / row.targets as f64
    }

    pub fn curve_summary(&self, row: &CurveRow) -> String {
        format!(
            "RSS {:.1} MiB ({:.0} B/target over the baseline), peak {:.1} MiB, ready after {:.1} s, {:.2} cores, delay {}",
            mib(row.rss),
            self.per_target(row),
            mib(row.peak_rss),
            row.ready_after.as_secs_f64(),
            row.cpu_cores,
            row.delay.summary()
        )
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(seconds: f64) -> f64 {
    seconds * 1000.0
}

/// The cumulative buckets `(le, count)` of histogram samples named `name`, in order.
pub fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let mut found: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix("{le=\"")?;
            let (le, rest) = rest.split_once('"')?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found
}

/// Prometheus' `histogram_quantile`: linear within the bucket the rank falls in.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Quantile {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank && count > below {
            if le.is_infinite() {
                return Quantile {
                    estimate: lower,
                    at_most: le,
                };
            }
            let estimate = lower + (le - lower) * (rank - below) / (count - below);
            return Quantile {
                estimate,
                at_most: le,
            };
        }
        (lower, below) = (le, count);
    }
    Quantile {
        estimate: f64::NAN,
        at_most: f64::NAN,
    }
}

/// The machine and the versions, for the README's table.
fn machine() -> serde_json::Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let memory = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0.0, |kib| kib as f64 / (1024.0 * 1024.0));
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gib": memory.round(),
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "date": procs::output("date", &["-u", "+%Y-%m-%d"]),
        "vantage": procs::output(env!("CARGO_BIN_EXE_vantage"), &["--version"]),
        "vantage_revision": procs::output("git", &["rev-parse", "--short", "HEAD"]),
        "blackbox_exporter": procs::output("prometheus-blackbox-exporter", &["--version"]),
        "nginx": procs::output("nginx", &["-v"]),
    })
}

fn delay_json(d: &Delay) -> serde_json::Value {
    json!({
        "runs_per_second": d.runs_per_second,
        "p50_seconds": d.p50.estimate,
        "p50_bucket_le": d.p50.at_most,
        "p99_seconds": d.p99.estimate,
        "p99_bucket_le": d.p99.at_most,
    })
}

pub fn write(out: &Path, results: &Results) -> Result<(), String> {
    let machine = machine();
    let json = json!({
        "machine": machine,
        "window_seconds": results.window.as_secs(),
        "rounds": results.rounds,
        "cpu": results.cpu.iter().map(|r| json!({
            "probe": r.key,
            "vantage": r.vantage.iter().map(Load::json).collect::<Vec<_>>(),
            "blackbox_exporter": r.blackbox.iter().map(Load::json).collect::<Vec<_>>(),
            "rustls_floor": r.floor.iter().map(Load::json).collect::<Vec<_>>(),
            "rustls_gentle_floor": r.gentle_floor.iter().map(Load::json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "scale": results.scale.iter().map(|s| json!({
            "targets": s.targets,
            "failure_reasons": s.failure_reasons,
            "peak_rss_bytes": s.peak_rss,
            "rss_bytes": s.rss,
            "metrics_seconds": s.plain_time.as_secs_f64(),
            "metrics_bytes": s.plain_bytes,
            "metrics_gzip_seconds": s.gzip_time.as_secs_f64(),
            "metrics_gzip_bytes": s.gzip_bytes,
            "scrape_transient_bytes": s.plain_transient,
            "scrape_gzip_transient_bytes": s.gzip_transient,
        })).collect::<Vec<_>>(),
        "stall": results.stall.as_ref().map(|s| json!({
            "targets": s.targets,
            "without_scrapes": delay_json(&s.quiet),
            "with_scrapes": delay_json(&s.scraped),
            "scrapes": s.scrapes,
            "median_scrape_seconds": s.median_scrape.as_secs_f64(),
            "median_scrape_bytes": s.median_bytes,
        })),
        "curve_baseline_rss_bytes": results.baseline_rss,
        "curve": results.curve.iter().map(|c| json!({
            "targets": c.targets,
            "interval_seconds": c.interval.as_secs(),
            "rss_bytes": c.rss,
            "peak_rss_bytes": c.peak_rss,
            "bytes_per_target": results.per_target(c),
            "ready_seconds": c.ready_after.as_secs_f64(),
            "schedule_delay": delay_json(&c.delay),
            "cpu_cores": c.cpu_cores,
        })).collect::<Vec<_>>(),
        "schedule_delay": results.delay.as_ref().map(delay_json),
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    fs::write(out.join("results.json"), text + "\n").map_err(|e| e.to_string())?;
    let markdown = markdown(&machine, results);
    fs::write(out.join("results.md"), &markdown).map_err(|e| e.to_string())?;
    if !results.cpu.is_empty() {
        chart(out, results)?;
    }
    print!("{markdown}");
    Ok(())
}

fn markdown(machine: &serde_json::Value, results: &Results) -> String {
    let s = |k: &str| machine[k].as_str().unwrap_or("").to_string();
    let mut md = String::new();
    let _ = write!(
        md,
        "Measured {} on {} ({} cores, {} GiB), Linux {}: {}, {}, {}",
        s("date"),
        s("cpu"),
        machine["cores"],
        machine["memory_gib"],
        s("kernel"),
        s("vantage"),
        s("blackbox_exporter"),
        s("nginx"),
    );
    if !results.cpu.is_empty() {
        let _ = write!(
            md,
            "; CPU: the median of {} rounds of {} s per load",
            results.rounds,
            results.window.as_secs()
        );
    }
    md.push_str(".\n");
    if !results.cpu.is_empty() {
        md.push_str("\n| Probe | vantage CPU-s / 1000 probes | blackbox_exporter CPU-s / 1000 probes | vantage / blackbox | rustls floor CPU-s / 1000 handshakes | vantage / floor | gentle floor | vantage / gentle floor |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    for r in &results.cpu {
        let (ours, theirs, floor, gentle) = r.medians();
        let floor_cells = |f: Option<Load>| match f {
            Some(f) => format!(
                "{:.3} | {:.2}x",
                f.per_thousand(),
                ours.per_thousand() / f.per_thousand()
            ),
            None => " | ".to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {:.3} ({:.0}/s) | {:.3} ({:.0}/s) | {:.2}x | {} | {} |",
            r.label,
            ours.per_thousand(),
            ours.rate(),
            theirs.per_thousand(),
            theirs.rate(),
            ours.per_thousand() / theirs.per_thousand(),
            floor_cells(floor),
            floor_cells(gentle)
        );
    }
    if !results.scale.is_empty() {
        md.push_str("\n| Configured targets | failure_reasons | Peak RSS | /metrics plain: time, size | /metrics gzip: time, size | Scrape's transient memory, plain / gzip |\n");
        md.push_str("|---:|---|---:|---:|---:|---:|\n");
    }
    for row in &results.scale {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} MiB | {:.1} ms, {:.1} MiB | {:.1} ms, {:.2} MiB | {:.1} / {:.1} MiB |",
            row.targets,
            row.failure_reasons,
            mib(row.peak_rss),
            ms(row.plain_time.as_secs_f64()),
            mib(row.plain_bytes as u64),
            ms(row.gzip_time.as_secs_f64()),
            mib(row.gzip_bytes as u64),
            mib(row.plain_transient),
            mib(row.gzip_transient)
        );
    }
    if let Some(st) = &results.stall {
        let _ = writeln!(
            md,
            "\n| {} targets | runs/s | schedule delay p50 | p99 |\n|---|---:|---:|---:|",
            st.targets
        );
        for (name, d) in [
            ("without scrapes", &st.quiet),
            ("with back-to-back scrapes", &st.scraped),
        ] {
            let _ = writeln!(
                md,
                "| {name} | {:.0} | {:.2} ms (bucket ≤ {} ms) | {:.2} ms (bucket ≤ {} ms) |",
                d.runs_per_second,
                ms(d.p50.estimate),
                ms(d.p50.at_most),
                ms(d.p99.estimate),
                ms(d.p99.at_most)
            );
        }
        let _ = writeln!(
            md,
            "\np99 with scrapes / without: {:.2}x; {} scrapes (gzip), median {:.1} ms and {:.2} MiB each.",
            st.ratio(),
            st.scrapes,
            ms(st.median_scrape.as_secs_f64()),
            mib(st.median_bytes as u64)
        );
    }
    if let Some(baseline) = results.baseline_rss {
        let _ = writeln!(
            md,
            "\nMemory per idle TCP target (baseline: {:.1} MiB RSS with one target):\n\n| Targets | Interval | Ready after | RSS | Per target over the baseline | Peak RSS | Runs/s | Schedule delay p50 / p99 | CPU |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            mib(baseline)
        );
    }
    for c in &results.curve {
        let _ = writeln!(
            md,
            "| {} | {} s | {:.1} s | {:.1} MiB | {:.0} B | {:.1} MiB | {:.0} | {:.2} / {:.2} ms | {:.2} cores |",
            c.targets,
            c.interval.as_secs(),
            c.ready_after.as_secs_f64(),
            mib(c.rss),
            results.per_target(c),
            mib(c.peak_rss),
            c.delay.runs_per_second,
            ms(c.delay.p50.estimate),
            ms(c.delay.p99.estimate),
            c.cpu_cores
        );
    }
    if let Some(d) = &results.delay {
        let _ = writeln!(md, "\nSchedule delay {}.", d.summary());
    }
    md
}

/// `cpu.png`: CPU-seconds per 1000 probes, vantage beside blackbox_exporter (and the floors).
fn chart(out: &Path, results: &Results) -> Result<(), String> {
    let mut data = String::from("# probe vantage blackbox_exporter rustls_floor gentle_floor\n");
    for r in &results.cpu {
        let (ours, theirs, floor, gentle) = r.medians();
        let cell = |f: Option<Load>| f.map_or("NaN".to_string(), |f| f.per_thousand().to_string());
        let _ = writeln!(
            data,
            "\"{}\" {} {} {} {}",
            r.short,
            ours.per_thousand(),
            theirs.per_thousand(),
            cell(floor),
            cell(gentle)
        );
    }
    let data_file = out.join("cpu.dat");
    fs::write(&data_file, data).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/cpu.gp");
    let status = Command::new("gnuplot")
        .arg("-e")
        .arg(format!(
            "datafile='{}'; outfile='{}'",
            data_file.display(),
            out.join("cpu.png").display()
        ))
        .arg(&script)
        .status()
        .map_err(|e| format!("gnuplot: {e}"))?;
    if !status.success() {
        return Err(format!("gnuplot {}: {status}", script.display()));
    }
    Ok(())
}
