//! A fleet of vantages pushing to one real Prometheus over remote write (issue 22): what arrives
//! there, run by run, through Prometheus' own HTTP API. Debian's Prometheus runs with its
//! remote-write receiver on and no scrape job, so everything it holds was pushed.
//!
//! Each run's samples carry the run's end as their timestamp and the run's `probe_runs_total`,
//! so the raw samples stored for a target are a list of run numbers: a run that arrived twice
//! or not at all, or a hole an outage left, shows there without any assumption on timing.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::delay::{self, TARGET};
use crate::prometheus::{Daemon, api, percent_encode, wait_ready, wait_until};
use crate::support::{TempDir, Vantage, closed_port, http_get, needs, probed, quiet_peer};

/// Every range query reaches back this far: more than any test here lasts.
const WINDOW: &str = "10m";

/// A Prometheus with only its remote-write receiver: no scrape job, so all it holds was
/// pushed. Its data directory outlives a [`Receiver::kill`], for a restart on the same port.
pub struct Receiver {
    addr: SocketAddr,
    dir: TempDir,
    daemon: Option<Daemon>,
    /// Each start's own folder for its logs, so that a restart keeps the first one's.
    logs: Vec<TempDir>,
}

impl Receiver {
    pub fn start(addr: SocketAddr) -> Receiver {
        let dir = TempDir::new("fleet-prometheus");
        dir.write("prometheus.yml", "global:\n  scrape_interval: 15s\n");
        let mut receiver = Receiver {
            addr,
            dir,
            daemon: None,
            logs: Vec::new(),
        };
        receiver.restart();
        receiver
    }

    /// Starts it (again) on the same address and data directory; returns once it is ready.
    pub fn restart(&mut self) {
        assert!(self.daemon.is_none(), "it is running");
        let logs = TempDir::new("fleet-prometheus-log");
        let path = |name: &str| self.dir.0.join(name).display().to_string();
        let daemon = Daemon::start(
            "prometheus",
            &[
                format!("--config.file={}", path("prometheus.yml")),
                format!("--storage.tsdb.path={}", path("data")),
                format!("--web.listen-address={}", self.addr),
                "--web.enable-remote-write-receiver".to_string(),
            ],
            &logs,
        );
        wait_ready(self.addr, &daemon, "prometheus");
        self.daemon = Some(daemon);
        self.logs.push(logs);
    }

    /// Kills it by PID with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        drop(self.daemon.take().expect("it is running"));
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// What every start logged, for a failure's message.
    pub fn output(&self) -> String {
        self.logs
            .iter()
            .map(|dir| {
                ["log", "err"]
                    .map(|ext| {
                        std::fs::read_to_string(dir.0.join(format!("prometheus.{ext}")))
                            .unwrap_or_default()
                    })
                    .concat()
            })
            .collect::<Vec<_>>()
            .join("--- restarted ---\n")
    }

    /// An instant query's result, evaluated now or at `at` (Unix seconds).
    pub fn query(&self, expr: &str, at: Option<f64>) -> Vec<Value> {
        let time = at.map(|t| format!("&time={t:.3}")).unwrap_or_default();
        let path = format!("/api/v1/query?query={}{time}", percent_encode(expr));
        let data = api(self.addr, &path)
            .unwrap_or_else(|e| panic!("{expr}: {e}\nprometheus:\n{}", self.output()));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The one value of an instant query that must return one series.
    pub fn value(&self, expr: &str) -> f64 {
        let result = self.query(expr, None);
        assert_eq!(result.len(), 1, "{expr}: {result:?}");
        number(&result[0]["value"][1])
    }

    /// Every raw sample of each series `selector` picks over the window, oldest first: (Unix
    /// milliseconds, value), by the series' labels. Staleness markers are not among them.
    pub fn raw(&self, selector: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let expr = format!("{selector}[{WINDOW}]");
        self.query(&expr, None)
            .iter()
            .map(|series| {
                let values = series["values"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{expr}: not a matrix: {series}"))
                    .iter()
                    .map(|pair| ((number(&pair[0]) * 1000.0).round() as i64, number(&pair[1])))
                    .collect();
                (series["metric"].to_string(), values)
            })
            .collect()
    }

    /// The runs of the series `labels` picks (e.g. `location="office"`) that arrived: (run's
    /// end in Unix milliseconds, run number), oldest first, read from the raw
    /// `probe_runs_total` samples, whose results (success, failure) add up to the run number.
    pub fn runs(&self, labels: &str) -> Vec<(i64, u64)> {
        let mut by_time: BTreeMap<i64, f64> = BTreeMap::new();
        for samples in self.raw(&format!("probe_runs_total{{{labels}}}")).values() {
            for (at, value) in samples {
                *by_time.entry(*at).or_default() += value;
            }
        }
        by_time.into_iter().map(|(at, n)| (at, n as u64)).collect()
    }

    /// The timestamps of the raw `probe_success` samples of the series `labels` picks.
    pub fn success_times(&self, labels: &str) -> Vec<i64> {
        let raw = self.raw(&format!("probe_success{{{labels}}}"));
        assert_eq!(
            raw.len(),
            1,
            "one probe_success series for {labels}: {raw:?}"
        );
        raw.into_values()
            .next()
            .unwrap()
            .iter()
            .map(|s| s.0)
            .collect()
    }
}

/// A JSON number, or a number in a string as Prometheus writes sample values.
fn number(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}")),
        other => panic!("not a number: {other}"),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A vantage's probe and push counts in one scrape of its `/metrics` (summed over series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub runs: f64,
    pub sent: f64,
    pub failed: f64,
    pub dropped: f64,
    pub retried: f64,
    pub pending: f64,
    pub capacity: f64,
}

impl Counts {
    pub fn read(vantage: &Vantage) -> Option<Counts> {
        let body = http_get(vantage.addr, "/metrics", None)?.body;
        let total = |name: &str| -> f64 {
            body.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum()
        };
        Some(Counts {
            runs: total("probe_runs_total"),
            sent: total("vantage_remote_write_samples_total"),
            failed: total("vantage_remote_write_samples_failed_total"),
            dropped: total("vantage_remote_write_samples_dropped_total"),
            retried: total("vantage_remote_write_samples_retried_total"),
            pending: total("vantage_remote_write_samples_pending"),
            capacity: total("vantage_remote_write_queue_capacity_samples"),
        })
    }

    /// Counts taken between runs and sends: two scrapes in a row that agree, so no run or
    /// send was half-counted. Waits (at most `limit`) for such a pair for which `ready` holds.
    pub fn quiet(
        vantage: &Vantage,
        limit: Duration,
        what: &str,
        ready: impl FnMut(&Counts) -> bool,
    ) -> Counts {
        let agreeing = || {
            let (a, b) = (Counts::read(vantage)?, Counts::read(vantage)?);
            (a == b).then_some(b)
        };
        Counts::poll(vantage, limit, what, agreeing, ready)
    }

    /// Waits (at most `limit`) until a scrape's counts satisfy `done`, and returns them.
    pub fn wait(
        vantage: &Vantage,
        limit: Duration,
        what: &str,
        done: impl FnMut(&Counts) -> bool,
    ) -> Counts {
        Counts::poll(vantage, limit, what, || Counts::read(vantage), done)
    }

    /// Reads counts with `read` until they satisfy `done` (at most `limit`), and returns them.
    fn poll(
        vantage: &Vantage,
        limit: Duration,
        what: &str,
        read: impl Fn() -> Option<Counts>,
        mut done: impl FnMut(&Counts) -> bool,
    ) -> Counts {
        let last = Cell::new(None);
        wait_until(
            limit,
            what,
            || {
                let counts = read();
                if counts.is_some() {
                    last.set(counts);
                }
                counts.as_ref().is_some_and(&mut done)
            },
            || format!("last counts: {:?}\nvantage:\n{}", last.get(), vantage.log()),
        );
        last.get().unwrap()
    }
}

/// Stops `vantage` with SIGTERM, which sends what its queues hold first, and checks that it
/// exited cleanly with every sample taken.
pub fn stop_cleanly(vantage: Vantage) {
    let (exit, log) = vantage.stop("TERM");
    assert!(exit.success(), "{exit}\n{log}");
    for trouble in [
        "stopped before the remote_write receiver took every sample",
        "shutting down before the remote_write receiver took these samples",
        "refused samples",
    ] {
        assert!(!log.contains(trouble), "{trouble}:\n{log}");
    }
}

/// Checks that `runs` (from [`Receiver::runs`]) are exactly runs 1, 2, ... up to at least
/// `at_least`, each once, and returns how many.
#[track_caller]
pub fn every_run_once(runs: &[(i64, u64)], at_least: f64, what: &str) -> u64 {
    let numbers: Vec<u64> = runs.iter().map(|r| r.1).collect();
    let last = numbers.last().copied().unwrap_or(0);
    assert_eq!(
        numbers,
        (1..=last).collect::<Vec<_>>(),
        "{what}: the run numbers stored are not 1..={last}, each once: {runs:?}"
    );
    assert!(
        last as f64 >= at_least,
        "{what}: {last} runs stored, but vantage counted {at_least} before it stopped"
    );
    last
}

/// `times` (Unix ms) strictly increase, at least half a second apart, and most steps are one
/// interval: the runs' own ends, one a second, not a burst or a grid of pushes.
#[track_caller]
pub fn one_a_second(times: &[i64], what: &str) {
    let steps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|&s| s >= 500),
        "{what}: samples less than half an interval apart: {steps:?}"
    );
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!(
        (median as f64 / 1000.0).round() == 1.0,
        "{what}: the median step between samples is {median} ms, not one 1 s interval: {steps:?}"
    );
}

/// A config of one loopback tcp target `t` pushing to `url` with `queue`, no self metrics.
pub fn loopback_config(dir: &TempDir, port: u16, url: &str, queue: &str) -> PathBuf {
    dir.write(
        "exporter.yml",
        &format!(
            "location: lab\n\
             defaults: {{interval: 1s, timeout: 500ms}}\n\
             targets:\n  - {{name: t, type: tcp, host: 127.0.0.1, port: {port}}}\n\
             remote_write:\n  - url: {url}\n    queue: {{{queue}}}\n    instance: lab-1\n    self_metrics_interval: 0s\n"
        ),
    )
}

/// A Prometheus on a free loopback port.
pub fn loopback_receiver() -> Receiver {
    Receiver::start(format!("127.0.0.1:{}", closed_port()).parse().unwrap())
}

pub fn rewrite(config: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from), "{from:?} in\n{text}");
    std::fs::write(config, text.replace(from, to)).unwrap();
}

#[test]
fn two_locations_push_to_one_prometheus() {
    needs(&["root", "tool:prometheus", "tool:iptables", "tool:python3"]);
    let started = Instant::now();
    let locations = [("office", 20u64), ("cloud", 80u64)];
    let topology = delay::sites(&locations.map(|(_, ms)| Duration::from_millis(ms)));
    let port = 7100;
    let _listener = topology.listen(port);

    // Prometheus listens on the first site's host link only (2.42 takes one listen address);
    // the second site reaches that address over its own host link, by a route of its own.
    let first = &topology.sites[0];
    let prometheus = Receiver::start(
        format!("{}:{}", first.host_addr, closed_port())
            .parse()
            .unwrap(),
    );
    for site in &topology.sites[1..] {
        site.ns.exec(&[
            "ip",
            "route",
            "add",
            &format!("{}/32", first.host_addr),
            "via",
            &site.host_addr,
        ]);
    }

    let dir = TempDir::new("fleet-two");
    let vantages: Vec<Vantage> = topology
        .sites
        .iter()
        .zip(locations)
        .map(|(site, (location, _))| {
            let config = dir.write(
                &format!("{location}.yml"),
                &format!(
                    "location: {location}\n\
                     defaults: {{interval: 1s, timeout: 500ms}}\n\
                     targets:\n  - {{name: shared, type: tcp, host: {TARGET}, port: {port}}}\n\
                     remote_write:\n  - url: {}\n    queue: {{batch_send_deadline: 1s, max_backoff: 1s}}\n    \
                     instance: {location}-1\n    self_metrics_interval: 1s\n",
                    prometheus.url()
                ),
            );
            site.vantage(&config, &[])
        })
        .collect();

    // Enough runs for medians, and each location in Prometheus.
    for vantage in &vantages {
        Counts::wait(vantage, Duration::from_secs(40), "8 runs", |c| {
            c.runs >= 8.0
        });
    }
    wait_until(
        Duration::from_secs(20),
        "probe_success of both locations in Prometheus",
        || prometheus.query("probe_success", None).len() == 2,
        || prometheus.output(),
    );

    // (a) Both locations, up, each with its instance and the default job.
    let up = prometheus.query("probe_success", None);
    let mut seen: Vec<(String, String, String, f64)> = up
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let text = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (
                text("location"),
                text("instance"),
                text("job"),
                number(&s["value"][1]),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("cloud".into(), "cloud-1".into(), "vantage".into(), 1.0),
            ("office".into(), "office-1".into(), "vantage".into(), 1.0)
        ],
        "{up:?}"
    );
    // vantage's own metrics arrive too, one instance each.
    let own = prometheus.query(
        "count by (instance) (vantage_remote_write_samples_total)",
        None,
    );
    assert_eq!(own.len(), 2, "self metrics of both instances: {own:?}");

    // (b) The connect time by location: every run of each at least its link's delay, and the
    // 80 ms location's median 40 ms above the 20 ms one's (medians: one slow moment of the
    // machine must not decide).
    let mut medians = Vec::new();
    for (location, ms) in locations {
        let sel = format!("probe_connect_duration_seconds{{location=\"{location}\"}}");
        let least = prometheus.value(&format!("min_over_time({sel}[{WINDOW}])"));
        assert!(
            least >= ms as f64 / 1000.0,
            "{location}: a connect of {least} s over a {ms} ms link"
        );
        let now = prometheus.value(&sel);
        assert!(now >= ms as f64 / 1000.0, "{location}: {now} s now");
        medians.push(prometheus.value(&format!("quantile_over_time(0.5, {sel}[{WINDOW}])")));
    }
    assert!(
        medians[1] - medians[0] >= 0.04,
        "the cloud's median connect is not 40 ms above the office's: {medians:?}"
    );

    // (c) Each run's sample exactly once. The runs counted before the stop, which flushes.
    let before: Vec<f64> = vantages
        .iter()
        .map(|v| Counts::read(v).unwrap().runs)
        .collect();
    for vantage in vantages {
        stop_cleanly(vantage);
    }
    let phase = vantage::scheduler::phase("shared", Duration::from_secs(1)).as_millis() as i64;
    for ((location, ms), before) in locations.into_iter().zip(before) {
        let labels = format!("location=\"{location}\"");
        let runs = prometheus.runs(&labels);
        let last = every_run_once(&runs, before, location);
        let times = prometheus.success_times(&labels);
        assert_eq!(
            times.len() as u64,
            last,
            "{location}: {} probe_success samples for {last} runs",
            times.len()
        );
        assert_eq!(
            times,
            runs.iter().map(|r| r.0).collect::<Vec<_>>(),
            "{location}: probe_success and probe_runs_total at other times"
        );
        one_a_second(&times, location);
        // Runs start on the target's slot (its phase into each second); a sample's timestamp is
        // its run's end, so at least the link's delay after the slot: not the slot, not a grid.
        for t in &times {
            let after_slot = (t - phase).rem_euclid(1000);
            assert!(
                after_slot >= ms as i64,
                "{location}: a sample {after_slot} ms after its run's slot (phase {phase} ms) \
                 over a {ms} ms link: {times:?}"
            );
        }
        eprintln!("{location}: {last} runs, each stored once");
    }
    eprintln!(
        "two_locations_push_to_one_prometheus took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_target_removed_by_reload_is_stale_in_prometheus_within_a_run() {
    needs(&["tool:prometheus"]);
    let started = Instant::now();
    let prometheus = loopback_receiver();
    let dir = TempDir::new("fleet-reload");
    let peer = quiet_peer();
    let removed = format!("  - {{name: removed, type: tcp, host: 127.0.0.1, port: {peer}}}\n");
    let config = dir.write(
        "exporter.yml",
        &format!(
            "defaults: {{interval: 1s, timeout: 500ms}}\n\
             targets:\n  - {{name: kept, type: tcp, host: 127.0.0.1, port: {peer}}}\n{removed}\
             remote_write:\n  - url: {}\n    queue: {{batch_send_deadline: 1s}}\n    self_metrics_interval: 0s\n",
            prometheus.url()
        ),
    );
    let vantage = Vantage::start(&config, &[]);
    wait_until(
        Duration::from_secs(20),
        "both targets in Prometheus",
        || prometheus.query("probe_success", None).len() == 2,
        || format!("{}\nvantage:\n{}", prometheus.output(), vantage.log()),
    );

    let before = unix_now();
    rewrite(&config, &removed, "");
    vantage.signal("HUP");
    let hup = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "the reload",
        || probed(&vantage).into_iter().collect::<Vec<_>>() == ["kept"],
        || vantage.log(),
    );
    let applied = unix_now();
    wait_until(
        Duration::from_secs(30),
        "removed's probe_success to go stale in Prometheus",
        || {
            prometheus
                .query("probe_success{name=\"removed\"}", None)
                .is_empty()
        },
        || {
            format!(
                "{:?}\nvantage:\n{}",
                prometheus.query("probe_success{name=\"removed\"}", None),
                vantage.log()
            )
        },
    );
    let gone_after = hup.elapsed();

    // Gone at the reload itself: present just before it, absent from then on (every series of
    // the target), though its last real sample is seconds old, far inside the five minutes
    // after which Prometheus would drop a silent series by itself. Only a staleness marker
    // timestamped at the reload does that.
    assert_eq!(
        prometheus
            .query("probe_success{name=\"removed\"}", Some(before))
            .len(),
        1,
        "removed was not there before the reload"
    );
    let at_reload = prometheus.query("{name=\"removed\"}", Some(applied));
    assert!(
        at_reload.is_empty(),
        "series of removed still current at the reload: {at_reload:?}"
    );
    let last_real = prometheus.raw("probe_success{name=\"removed\"}");
    let newest = last_real.values().flatten().map(|s| s.0).max().unwrap() as f64 / 1000.0;
    assert!(
        newest >= before - 5.0,
        "removed's last sample at {newest}, long before the reload at {before}"
    );
    // The other target goes on: present, and pushed since.
    wait_until(
        Duration::from_secs(20),
        "a sample of kept after the reload",
        || {
            prometheus
                .query("timestamp(probe_success{name=\"kept\"})", None)
                .first()
                .is_some_and(|s| number(&s["value"][1]) > applied)
        },
        || vantage.log(),
    );
    let kept = prometheus.query("probe_success", None);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["metric"]["name"], "kept", "{kept:?}");
    stop_cleanly(vantage);
    eprintln!(
        "removed went stale in Prometheus {gone_after:?} after the SIGHUP; took {:?}",
        started.elapsed()
    );
}
