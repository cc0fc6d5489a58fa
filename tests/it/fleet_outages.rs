//! Receiver outages in the fleet of `fleet`: Debian's Prometheus, pushed to, killed and
//! started again on its port and data; a short outage loses no run, a longer one than the
//! queue holds loses exactly the oldest runs of the outage, counted and logged.

use std::time::{Duration, Instant};

use crate::fleet::{
    Counts, every_run_once, loopback_config, loopback_receiver, one_a_second, rewrite, stop_cleanly,
};
use crate::support::{TempDir, Vantage, needs, quiet_peer};

#[test]
fn a_receiver_outage_shorter_than_the_queue_loses_nothing() {
    needs(&["tool:prometheus"]);
    let started = Instant::now();
    let mut prometheus = loopback_receiver();
    let dir = TempDir::new("fleet-outage");
    let config = loopback_config(
        &dir,
        quiet_peer(),
        &prometheus.url(),
        "batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 500ms",
    );
    let vantage = Vantage::start(&config, &[]);

    Counts::wait(&vantage, Duration::from_secs(20), "samples sent", |c| {
        c.runs >= 3.0 && c.sent > 0.0
    });
    prometheus.kill();
    let killed = Counts::read(&vantage).unwrap();
    // Eight runs' worth of outage: counted, not slept.
    let during = Counts::wait(&vantage, Duration::from_secs(40), "8 runs more", |c| {
        c.runs >= killed.runs + 8.0
    });
    assert!(
        during.pending > 0.0,
        "nothing waits while the receiver is away: {during:?}"
    );
    prometheus.restart();
    let drained = Counts::quiet(
        &vantage,
        Duration::from_secs(30),
        "the queue to drain",
        |c| c.pending == 0.0 && c.runs > during.runs && c.sent > during.sent,
    );
    assert!(drained.retried > 0.0, "no retry counted: {drained:?}");
    assert_eq!(drained.dropped, 0.0, "{drained:?}");
    assert_eq!(drained.failed, 0.0, "{drained:?}");
    stop_cleanly(vantage);

    let runs = prometheus.runs("name=\"t\"");
    let last = every_run_once(&runs, drained.runs, "after an outage");
    let times = prometheus.success_times("name=\"t\"");
    assert_eq!(
        times.len() as u64,
        last,
        "probe_success samples for {last} runs"
    );
    assert_eq!(times, runs.iter().map(|r| r.0).collect::<Vec<_>>());
    one_a_second(&times, "after an outage");
    eprintln!(
        "{last} runs stored, {} made while Prometheus was down; {} samples retried; took {:?}",
        during.runs - killed.runs,
        drained.retried,
        started.elapsed()
    );
}

#[test]
fn a_longer_outage_drops_the_oldest_and_says_how_many() {
    needs(&["tool:prometheus"]);
    let started = Instant::now();
    let mut prometheus = loopback_receiver();
    let dir = TempDir::new("fleet-drop");
    let config = loopback_config(
        &dir,
        quiet_peer(),
        &prometheus.url(),
        "capacity: 100000, max_samples_per_send: 2000, batch_send_deadline: 1s, \
         min_backoff: 100ms, max_backoff: 500ms",
    );
    let vantage = Vantage::start(&config, &[]);

    // Samples per run, from what was sent once every run so far was taken.
    let first = Counts::quiet(&vantage, Duration::from_secs(20), "runs sent", |c| {
        c.runs >= 2.0 && c.pending == 0.0 && c.sent > 0.0
    });
    let per_run = first.sent / first.runs;
    assert_eq!(per_run.fract(), 0.0, "{first:?}");
    let per_run = per_run as u64;
    let series = prometheus.value("count({name=\"t\"})");
    assert_eq!(
        series, per_run as f64,
        "every series of a run is pushed, and only those"
    );

    // A queue of five runs and batches of one, set by a reload (the queue and its counts
    // stay). The batch being sent is out of the queue: while the receiver is away, it is the
    // one run retried on and on, and the queue holds the five newest after it.
    let runs_held = 5;
    let capacity = runs_held * per_run;
    rewrite(
        &config,
        "capacity: 100000, max_samples_per_send: 2000",
        &format!("capacity: {capacity}, max_samples_per_send: {per_run}"),
    );
    vantage.signal("HUP");
    let reloaded = Counts::wait(&vantage, Duration::from_secs(20), "the new capacity", |c| {
        c.capacity == capacity as f64
    });
    // The sender reads its settings between batches: one sent since the reload, and the next
    // is taken under the new ones.
    Counts::quiet(
        &vantage,
        Duration::from_secs(20),
        "a send after the reload",
        |c| c.sent > reloaded.sent && c.pending == 0.0,
    );

    prometheus.kill();
    let killed = Counts::read(&vantage).unwrap();
    let outage_runs = 12.0;
    let during = Counts::wait(&vantage, Duration::from_secs(60), "12 runs more", |c| {
        c.runs >= killed.runs + outage_runs
    });
    assert!(during.dropped > 0.0, "nothing dropped: {during:?}");
    prometheus.restart();
    let ready = Counts::read(&vantage).unwrap();
    let drained = Counts::quiet(
        &vantage,
        Duration::from_secs(30),
        "the queue to drain",
        |c| c.pending == 0.0 && c.runs > ready.runs && c.sent > ready.sent,
    );
    // Every sample made is accounted for: taken, dropped, failed or still waiting.
    assert_eq!(
        drained.sent + drained.dropped + drained.failed + drained.pending,
        drained.runs * per_run as f64,
        "{per_run} samples a run: {drained:?}"
    );
    assert_eq!(drained.failed, 0.0, "{drained:?}");
    assert_eq!(
        drained.dropped % per_run as f64,
        0.0,
        "whole runs give way: {drained:?}"
    );
    let dropped_runs = (drained.dropped / per_run as f64) as u64;
    let log = vantage.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("remote_write queue full: the oldest samples were dropped"))
        .collect();
    assert!(!said.is_empty(), "no word of the drop:\n{log}");
    assert!(
        said.iter()
            .all(|l| l.contains(&format!("dropped={per_run}"))
                && l.contains(&format!("capacity={capacity}"))),
        "each run pushed into the full queue drops one run's samples: {said:?}"
    );
    stop_cleanly(vantage);

    // What arrived: the runs before the outage (and the one in flight), a hole of exactly the
    // dropped runs starting right after them (the oldest of the outage), then the newest, from
    // before Prometheus was back to the end.
    let runs = prometheus.runs("name=\"t\"");
    let numbers: Vec<u64> = runs.iter().map(|r| r.1).collect();
    let last = *numbers.last().unwrap();
    assert!(last as f64 >= drained.runs, "{numbers:?}, {drained:?}");
    let missing: Vec<u64> = (1..=last).filter(|n| !numbers.contains(n)).collect();
    assert_eq!(
        numbers.len() as u64 + missing.len() as u64,
        last,
        "a run stored twice: {numbers:?}"
    );
    assert_eq!(
        missing.len() as u64,
        dropped_runs,
        "the runs missing are the runs dropped: {numbers:?}"
    );
    let (hole_start, hole_end) = (missing[0], *missing.last().unwrap());
    assert_eq!(
        hole_end - hole_start + 1,
        dropped_runs,
        "the missing runs are not one stretch: {missing:?}"
    );
    // Run `killed.runs` was the last before the outage; the next may be the batch in flight,
    // retried until it was taken.
    assert!(
        hole_start >= 2 && hole_start <= killed.runs as u64 + 2,
        "the hole starts at run {hole_start}, not at the outage's start (run {} was the last \
         before it, and one more may have been in flight): {numbers:?}",
        killed.runs
    );
    assert!(
        hole_end < ready.runs as u64,
        "the hole ends at run {hole_end}: none of the runs made while Prometheus was down \
         (up to run {}) arrived, though the newest were in the queue: {numbers:?}",
        ready.runs
    );
    let times = prometheus.success_times("name=\"t\"");
    assert_eq!(times, runs.iter().map(|r| r.0).collect::<Vec<_>>());
    eprintln!(
        "{per_run} samples a run, a queue of {runs_held} runs; {} runs while Prometheus was \
         down; runs {hole_start}..={hole_end} dropped ({} samples); {} runs stored; took {:?}",
        ready.runs - killed.runs,
        drained.dropped,
        numbers.len(),
        started.elapsed()
    );
}
