//! vantage as the benchmark runs it: started on a generated config, scraped, and what its
//! `/metrics` says, read as a stream (a million targets make 2 GB of text).

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use tokio::time::sleep;

use crate::procs::Process;
use crate::report::{self, Quantile};
use crate::{Setup, client, free_port};

/// How long vantage may take to load its config and answer `/-/ready` (a million targets).
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// vantage started on a config of `targets` (YAML flow mappings) with the given schedule.
pub struct Vantage {
    pub process: Process,
    pub addr: SocketAddr,
    /// From the start of the process to `/-/ready` answering 200: the config load, mostly.
    pub ready_after: Duration,
}

impl Vantage {
    pub async fn start(
        setup: &Setup,
        name: &str,
        targets: &[String],
        schedule: &str,
        failure_reasons: &str,
    ) -> Result<Vantage, String> {
        let mut config = format!(
            "location: bench\nfailure_reasons: {failure_reasons}\ndefaults: {schedule}\ntargets:\n"
        );
        for target in targets {
            let _ = writeln!(config, "  - {target}");
        }
        let path = setup.dir.join(format!("{name}.yml"));
        fs::write(&path, config).map_err(|e| e.to_string())?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let started = Instant::now();
        let mut process = Process::start(
            "vantage",
            Command::new(env!("CARGO_BIN_EXE_vantage"))
                .arg(format!("--config.file={}", path.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn"),
            &setup.dir.join(format!("{name}.log")),
        )?;
        loop {
            if let Ok((200, _, _)) = client::get(addr, "/-/ready", false).await {
                break;
            }
            process.check_running()?;
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!("vantage {name}: not ready after {READY_TIMEOUT:?}"));
            }
            sleep(Duration::from_millis(50)).await;
        }
        Ok(Vantage {
            process,
            addr,
            ready_after: started.elapsed(),
        })
    }

    /// One scrape, gzip-compressed as Prometheus asks, read as a summary.
    pub async fn summary(&self) -> Result<Summary, String> {
        let (body, _) = client::get_ok(self.addr, "/metrics", true).await?;
        Summary::read(&body)
    }

    /// Waits until every one of `targets` has a result (`probe_success`), at most `limit`: the
    /// last scrape's summary. Every run must have succeeded.
    pub async fn all_ran(&self, targets: usize, limit: Duration) -> Result<Summary, String> {
        let deadline = Instant::now() + limit;
        loop {
            let summary = self.summary().await?;
            summary.no_failures()?;
            if summary.results == targets {
                return Ok(summary);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {targets} targets have a result",
                    summary.results
                ));
            }
            sleep(Duration::from_secs(2)).await;
        }
    }

    /// The memory one `/metrics` scrape needs beyond what vantage holds already: the peak
    /// (`VmHWM`, reset first through `clear_refs`) minus the resident size before it.
    pub async fn scrape_memory(&self, gzip: bool) -> Result<u64, String> {
        let clear = format!("/proc/{}/clear_refs", self.process.pid());
        // 5 resets the peak resident size to the current one (proc(5)).
        fs::write(&clear, "5").map_err(|e| format!("{clear}: {e}"))?;
        let (_, before) = self.process.rss()?;
        client::get_ok(self.addr, "/metrics", gzip).await?;
        let (peak, _) = self.process.rss()?;
        Ok(peak.saturating_sub(before))
    }
}

/// What the benchmark reads from one `/metrics` answer.
pub struct Summary {
    /// Targets with a result (`probe_success` series).
    pub results: usize,
    /// `probe_runs_total` over every target.
    pub runs: f64,
    pub failures: f64,
    /// A few of the failing targets' `probe_failures_total` lines, for the error.
    failed: Vec<String>,
    /// `vantage_probe_schedule_delay_seconds`' cumulative buckets `(le, count)`.
    pub delay: Vec<(f64, f64)>,
}

impl Summary {
    /// Reads a `/metrics` body, gzip-compressed or not, a line at a time.
    pub fn read(body: &[u8]) -> Result<Summary, String> {
        let text: Box<dyn Read + '_> = match body.starts_with(&[0x1f, 0x8b]) {
            true => Box::new(GzDecoder::new(body)),
            false => Box::new(body),
        };
        let mut summary = Summary {
            results: 0,
            runs: 0.0,
            failures: 0.0,
            failed: Vec::new(),
            delay: Vec::new(),
        };
        let value = |line: &str| {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let mut delay_text = String::new();
        for line in BufReader::new(text).lines() {
            let line = line.map_err(|e| format!("reading /metrics: {e}"))?;
            if line.starts_with("probe_success{") {
                summary.results += 1;
            } else if line.starts_with("probe_runs_total{") {
                summary.runs += value(&line);
            } else if line.starts_with("probe_failures_total{") && value(&line) > 0.0 {
                summary.failures += value(&line);
                if summary.failed.len() < 3 {
                    summary.failed.push(line);
                }
            } else if line.starts_with(DELAY_BUCKET) {
                delay_text.push_str(&line);
                delay_text.push('\n');
            }
        }
        summary.delay = report::buckets(&delay_text, DELAY_BUCKET);
        Ok(summary)
    }

    pub fn no_failures(&self) -> Result<(), String> {
        match self.failures > 0.0 {
            true => Err(format!(
                "{} vantage runs failed: {:?}",
                self.failures, self.failed
            )),
            false => Ok(()),
        }
    }
}

const DELAY_BUCKET: &str = "vantage_probe_schedule_delay_seconds_bucket";

/// How late runs started between two summaries: p50, p99, and runs a second over `seconds`.
pub struct Delay {
    pub runs_per_second: f64,
    pub p50: Quantile,
    pub p99: Quantile,
}

impl Delay {
    pub fn between(before: &Summary, after: &Summary, seconds: f64) -> Result<Delay, String> {
        let (b0, b1) = (&before.delay, &after.delay);
        if b0.len() != b1.len() || b1.is_empty() {
            return Err("no schedule delay histogram in /metrics".to_string());
        }
        let delta: Vec<(f64, f64)> = b1
            .iter()
            .zip(b0)
            .map(|(&(le, n1), &(_, n0))| (le, n1 - n0))
            .collect();
        Ok(Delay {
            runs_per_second: (after.runs - before.runs) / seconds,
            p50: report::quantile(&delta, 0.5),
            p99: report::quantile(&delta, 0.99),
        })
    }

    pub fn summary(&self) -> String {
        format!(
            "at {:.0} runs/s: p50 {:.2} ms (bucket ≤ {} ms), p99 {:.2} ms (bucket ≤ {} ms)",
            self.runs_per_second,
            self.p50.estimate * 1000.0,
            self.p50.at_most * 1000.0,
            self.p99.estimate * 1000.0,
            self.p99.at_most * 1000.0
        )
    }
}
