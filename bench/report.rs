//! The results: `results.json`, `results.md` (the README's tables) and `cpu.png` (by gnuplot).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::procs;

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
    /// The rustls handshake floor, for the TLS rows.
    pub floor: Vec<Load>,
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
        }
    }

    /// The medians: vantage, blackbox_exporter, and the floor where there is one.
    fn medians(&self) -> (Load, Load, Option<Load>) {
        let none = Load {
            operations: 0,
            cpu_seconds: f64::NAN,
            seconds: f64::NAN,
        };
        (
            median(&self.vantage).unwrap_or(none),
            median(&self.blackbox).unwrap_or(none),
            median(&self.floor),
        )
    }

    pub fn summary(&self) -> String {
        let (ours, theirs, floor) = self.medians();
        let floor = floor.map_or(String::new(), |f| {
            format!(
                ", rustls floor {:.3} (vantage {:.2}x)",
                f.per_thousand(),
                ours.per_thousand() / f.per_thousand()
            )
        });
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
    pub peak_rss: u64,
    pub rss: u64,
    pub metrics_time: Duration,
    pub metrics_bytes: usize,
}

impl ScaleRow {
    pub fn summary(&self) -> String {
        format!(
            "peak RSS {:.1} MiB, /metrics {:.1} ms, {:.1} MiB",
            mib(self.peak_rss),
            ms(self.metrics_time.as_secs_f64()),
            mib(self.metrics_bytes as u64)
        )
    }
}

/// A quantile estimated from histogram buckets, and the upper bound of its bucket.
#[derive(Clone, Copy)]
pub struct Quantile {
    pub estimate: f64,
    pub at_most: f64,
}

pub struct DelayResult {
    pub runs_per_second: f64,
    pub p50: Quantile,
    pub p99: Quantile,
}

impl DelayResult {
    pub fn summary(&self) -> String {
        format!(
            "at {:.0} runs/s: p50 {:.2} ms (bucket ≤ {} ms), p99 {:.2} ms (bucket ≤ {} ms)",
            self.runs_per_second,
            ms(self.p50.estimate),
            ms(self.p50.at_most),
            ms(self.p99.estimate),
            ms(self.p99.at_most)
        )
    }
}

pub struct Results {
    pub window: Duration,
    pub rounds: u32,
    pub cpu: Vec<CpuRow>,
    pub scale: Vec<ScaleRow>,
    pub delay: Option<DelayResult>,
}

impl Results {
    pub fn new(window: Duration, rounds: u32) -> Results {
        Results {
            window,
            rounds,
            cpu: Vec::new(),
            scale: Vec::new(),
            delay: None,
        }
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
        })).collect::<Vec<_>>(),
        "scale": results.scale.iter().map(|s| json!({
            "targets": s.targets,
            "peak_rss_bytes": s.peak_rss,
            "rss_bytes": s.rss,
            "metrics_seconds": s.metrics_time.as_secs_f64(),
            "metrics_bytes": s.metrics_bytes,
        })).collect::<Vec<_>>(),
        "schedule_delay": results.delay.as_ref().map(|d| json!({
            "runs_per_second": d.runs_per_second,
            "p50_seconds": d.p50.estimate,
            "p50_bucket_le": d.p50.at_most,
            "p99_seconds": d.p99.estimate,
            "p99_bucket_le": d.p99.at_most,
        })),
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
    let _ = writeln!(
        md,
        "Measured {} on {} ({} cores, {} GiB), Linux {}: {}, {}, {}; CPU: the median of {} rounds of {} s per load.\n",
        s("date"),
        s("cpu"),
        machine["cores"],
        machine["memory_gib"],
        s("kernel"),
        s("vantage"),
        s("blackbox_exporter"),
        s("nginx"),
        results.rounds,
        results.window.as_secs()
    );
    md.push_str("| Probe | vantage CPU-s / 1000 probes | blackbox_exporter CPU-s / 1000 probes | vantage / blackbox | rustls floor CPU-s / 1000 handshakes | vantage / floor |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    for r in &results.cpu {
        let (ours, theirs, floor) = r.medians();
        let (floor, over_floor) = match floor {
            Some(f) => (
                format!("{:.3}", f.per_thousand()),
                format!("{:.2}x", ours.per_thousand() / f.per_thousand()),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            md,
            "| {} | {:.3} ({:.0}/s) | {:.3} ({:.0}/s) | {:.2}x | {floor} | {over_floor} |",
            r.label,
            ours.per_thousand(),
            ours.rate(),
            theirs.per_thousand(),
            theirs.rate(),
            ours.per_thousand() / theirs.per_thousand()
        );
    }
    if !results.scale.is_empty() {
        md.push_str(
            "\n| Configured targets | Peak RSS | /metrics time (median of 5) | /metrics size |\n",
        );
        md.push_str("|---:|---:|---:|---:|\n");
    }
    for row in &results.scale {
        let _ = writeln!(
            md,
            "| {} | {:.1} MiB | {:.1} ms | {:.1} MiB |",
            row.targets,
            mib(row.peak_rss),
            ms(row.metrics_time.as_secs_f64()),
            mib(row.metrics_bytes as u64)
        );
    }
    if let Some(d) = &results.delay {
        let _ = writeln!(md, "\nSchedule delay {}.", d.summary());
    }
    md
}

/// `cpu.png`: CPU-seconds per 1000 probes, vantage beside blackbox_exporter (and the floor).
fn chart(out: &Path, results: &Results) -> Result<(), String> {
    let mut data = String::from("# probe vantage blackbox_exporter rustls_floor\n");
    for r in &results.cpu {
        let (ours, theirs, floor) = r.medians();
        let _ = writeln!(
            data,
            "\"{}\" {} {} {}",
            r.short,
            ours.per_thousand(),
            theirs.per_thousand(),
            floor.map_or("NaN".to_string(), |f| f.per_thousand().to_string())
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
