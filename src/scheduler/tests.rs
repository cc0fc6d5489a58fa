//! The scheduler's unit tests, on paused time.

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use prometheus_client::registry::Registry;
use tokio::time::sleep;

use crate::config::{self, LoadOptions};
use crate::probe::{Failure, Outcome, Reason, Trace};

/// Runs that take a scripted time and succeed or fail by script, recording when they start.
struct Scripted {
    epoch: Instant,
    takes: Duration,
    /// Whether the n-th run (0-based) of a target fails.
    fails: fn(usize) -> bool,
    starts: Mutex<HashMap<String, Vec<Duration>>>,
    /// The timeout each run of a target was given, to see which settings a run used.
    timeouts: Mutex<HashMap<String, Vec<Duration>>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// The runs in progress, by target name and timeout (which tells a changed target's runs
    /// from its old ones); a run cancelled midway leaves too.
    running: Mutex<Vec<(String, Duration)>>,
}

/// A run's place in `Scripted::running`, given up however the run ends.
struct InProgress<'a>(&'a Mutex<Vec<(String, Duration)>>, (String, Duration));

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        let mut running = self.0.lock().unwrap();
        let at = running.iter().position(|r| *r == self.1).unwrap();
        running.swap_remove(at);
    }
}

impl Scripted {
    fn new(takes: Duration, fails: fn(usize) -> bool) -> Arc<Self> {
        Arc::new(Scripted {
            epoch: Instant::now(),
            takes,
            fails,
            starts: Mutex::new(HashMap::new()),
            timeouts: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            running: Mutex::new(Vec::new()),
        })
    }

    fn starts(&self, name: &str) -> Vec<Duration> {
        self.starts
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

impl Runner for Scripted {
    async fn run(&self, target: &Target) -> Run {
        let n = {
            let mut starts = self.starts.lock().unwrap();
            let list = starts.entry(target.name.clone()).or_default();
            list.push(Instant::now() - self.epoch);
            list.len() - 1
        };
        self.timeouts
            .lock()
            .unwrap()
            .entry(target.name.clone())
            .or_default()
            .push(target.policy.timeout);
        let run = (target.name.clone(), target.policy.timeout);
        self.running.lock().unwrap().push(run.clone());
        let _in_progress = InProgress(&self.running, run);
        let active = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(active, Ordering::SeqCst);
        sleep(self.takes).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        let result = if (self.fails)(n) {
            Err(Failure::new(Reason::ConnectionRefused, "scripted"))
        } else {
            Ok(())
        };
        Run {
            outcome: Outcome::new(result, Trace::start()),
            attempts: 1,
            duration: self.takes,
            finished_at: SystemTime::now(),
        }
    }
}

/// tokio's timers have millisecond resolution: a run starts up to 1 ms after its slot.
#[track_caller]
fn assert_starts(actual: &[Duration], expected: &[Duration]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            *a >= *e && *a - *e <= Duration::from_millis(1),
            "{actual:?} vs {expected:?}"
        );
    }
}

fn config(yaml: &str) -> Config {
    config::parse(yaml, "test.yml", &LoadOptions::default()).unwrap()
}

fn tcp_targets(count: usize, schedule: &str) -> String {
    let mut yaml = String::from("targets:\n");
    for i in 0..count {
        yaml.push_str(&format!(
            "  - {{name: t{i}, type: tcp, host: 127.0.0.1, port: 9, {schedule}}}\n"
        ));
    }
    yaml
}

async fn start(config: &Config, runner: &Arc<Scripted>) -> (Scheduler<Scripted>, Shared) {
    let shared = Shared {
        store: Arc::new(Store::default()),
        limiter: Arc::new(Limiter::new(config.max_concurrent_probes)),
        telemetry: Telemetry::new(),
    };
    let mut scheduler = Scheduler::new(Arc::clone(runner), shared.clone());
    // The wall clock reads 0: a target's first slot is its phase, which keeps tests exact.
    scheduler.apply_with_clock(config, || Duration::ZERO).await;
    (scheduler, shared)
}

#[test]
fn phase_is_pinned_so_upgrades_keep_every_target_in_place() {
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(
        phase("api-https", Duration::from_secs(30)),
        Duration::from_nanos(fnv1a(b"api-https") % 30_000_000_000)
    );
}

#[test]
fn slots_are_fixed_in_wall_clock_time() {
    let s = Duration::from_secs;
    // 100 s into the epoch, a 30 s interval is 10 s in; the slot 5 s in is 25 s away.
    assert_eq!(until_slot(s(100), s(5), s(30)), s(25));
    assert_eq!(until_slot(s(100), s(10), s(30)), s(0), "on a slot: run now");
    assert_eq!(until_slot(s(100), s(29), s(30)), s(19));
    // A restart 7 s later lands on the same slot, 7 s closer.
    assert_eq!(until_slot(s(107), s(5), s(30)), s(18));
}

#[test]
fn next_slot_skips_missed_slots_and_keeps_the_phase() {
    let t0 = Instant::now();
    let s = Duration::from_secs(10);
    assert_eq!(next_slot(t0, s, t0 + Duration::from_secs(3)), t0 + s);
    assert_eq!(next_slot(t0, s, t0 + Duration::from_secs(10)), t0 + 2 * s);
    assert_eq!(next_slot(t0, s, t0 + Duration::from_secs(35)), t0 + 4 * s);
}

#[tokio::test(start_paused = true)]
async fn first_runs_are_spread_over_the_interval_by_name() {
    let config = config(&tcp_targets(40, "interval: 60s, timeout: 1s"));
    let targets = &config.targets;
    let runner = Scripted::new(Duration::ZERO, |_| false);
    let (scheduler, _) = start(&config, &runner).await;
    sleep(Duration::from_secs(60) - Duration::from_millis(1)).await;
    scheduler.stop().await;

    let mut firsts = Vec::new();
    for t in targets {
        let starts = runner.starts(&t.name);
        assert_eq!(
            starts.len(),
            1,
            "{} ran {} times in its first interval",
            t.name,
            starts.len()
        );
        assert_starts(&starts, &[phase(&t.name, Duration::from_secs(60))]);
        firsts.push(starts[0]);
    }
    // No stampede: every tenth of the interval has some first runs, none has most of them.
    let mut per_slice = [0; 10];
    for f in &firsts {
        per_slice[(f.as_secs() / 6) as usize] += 1;
    }
    assert!(
        per_slice.iter().all(|&n| (1..=12).contains(&n)),
        "{per_slice:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn runs_once_per_interval_at_a_fixed_phase() {
    let config = config(&tcp_targets(1, "interval: 10s, timeout: 1s"));
    let runner = Scripted::new(Duration::from_millis(300), |_| false);
    let p = phase("t0", Duration::from_secs(10));
    let s = Duration::from_secs(10);
    let (scheduler, _) = start(&config, &runner).await;
    sleep(p + Duration::from_secs(35)).await;
    scheduler.stop().await;
    assert_starts(&runner.starts("t0"), &[p, p + s, p + 2 * s, p + 3 * s]);
}

#[tokio::test(start_paused = true)]
async fn interval_on_failure_rechecks_faster_until_the_target_recovers() {
    let config = config(&tcp_targets(
        1,
        "interval: 60s, timeout: 1s, interval_on_failure: 5s",
    ));
    let runner = Scripted::new(Duration::from_millis(100), |n| n < 3);
    let p = phase("t0", Duration::from_secs(60));
    let (scheduler, shared) = start(&config, &runner).await;
    sleep(p + Duration::from_secs(125)).await;
    scheduler.stop().await;
    let at = |s: u64| p + Duration::from_secs(s);
    // Three failures five seconds apart, a success, then back on the regular slots: the
    // phase has not drifted by the 15 s spent failing.
    assert_starts(
        &runner.starts("t0"),
        &[at(0), at(5), at(10), at(15), at(60), at(120)],
    );
    let successes = shared.store.get("t0").unwrap().successes;
    assert_eq!(successes, 3);
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_bounds_runs_in_flight_and_delays_are_measured() {
    let config = config(&format!(
        "max_concurrent_probes: 2\n{}",
        tcp_targets(6, "interval: 60s, timeout: 50s")
    ));
    let targets = &config.targets;
    let runner = Scripted::new(Duration::from_secs(40), |_| false);
    let (scheduler, shared) = start(&config, &runner).await;
    sleep(Duration::from_secs(59)).await;
    assert_eq!(runner.max_active.load(Ordering::SeqCst), 2);
    assert_eq!(shared.telemetry.in_flight.get(), 2);
    sleep(Duration::from_secs(120)).await;
    scheduler.stop().await;
    assert_eq!(
        shared.telemetry.in_flight.get(),
        0,
        "cancelled runs leave the gauge"
    );
    assert!(targets.iter().all(|t| !runner.starts(&t.name).is_empty()));
    assert_eq!(runner.max_active.load(Ordering::SeqCst), 2);

    let mut registry = Registry::default();
    registry.register("delay", "", shared.telemetry.schedule_delay.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let value = |series: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let runs: usize = targets.iter().map(|t| runner.starts(&t.name).len()).sum();
    assert_eq!(value("delay_count ") as usize, runs);
    assert!(
        value("delay_sum ") >= 40.0,
        "runs that waited for a slot are counted as late"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_restarts_only_what_changed_and_keeps_every_other_schedule() {
    let before = config(
        "targets:
  - {name: keep, type: tcp, host: 127.0.0.1, port: 9, interval: 10s, timeout: 1s}
  - {name: change, type: tcp, host: 127.0.0.1, port: 9, interval: 10s, timeout: 1s}
  - {name: gone, type: tcp, host: 127.0.0.1, port: 9, interval: 10s, timeout: 1s}
",
    );
    // Reordered, reformatted and commented: only `change` (its timeout) and the target list
    // differ.
    let after = config(
        "targets:
  # a comment that changes nothing
  - {name: new, type: tcp, host: 127.0.0.1, port: 9, interval: 10s, timeout: 1s}
  - {name: change, type: tcp, host: 127.0.0.1, port: 9, interval: 10s, timeout: 2s}
  - name: keep
    type: tcp
    host: 127.0.0.1
    port: 9
    interval: 10s
    timeout: 1s
",
    );
    // Runs take 2 s, and the reload comes in the middle of one of `keep`'s: an unchanged
    // target's run in flight must finish and count.
    let takes = Duration::from_secs(2);
    let runner = Scripted::new(takes, |_| false);
    let (mut scheduler, shared) = start(&before, &runner).await;
    let reload_at = phase("keep", Duration::from_secs(10)) + Duration::from_secs(11);
    sleep(reload_at).await;
    // The wall clock has moved on as far as the paused clock (a timer fires on a whole ms).
    let changes = scheduler
        .apply_with_clock(&after, || runner.epoch.elapsed())
        .await;
    assert_eq!(
        changes,
        Changes {
            added: 1,
            changed: 1,
            removed: 1,
            unchanged: 1
        }
    );
    let end = reload_at + Duration::from_secs(30);
    sleep(Duration::from_secs(30)).await;
    let (keep_done, change_done) = (
        shared.store.get("keep").unwrap().successes,
        shared.store.get("change").unwrap().successes,
    );
    scheduler.stop().await;

    let slots = |name: &str, until: Duration| -> Vec<Duration> {
        let p = phase(name, Duration::from_secs(10));
        (0..)
            .map(|n| p + Duration::from_secs(10) * n)
            .take_while(|t| *t < until)
            .collect()
    };
    // Unchanged and changed targets run on their slots before and after, with no extra run at
    // the reload; the removed one stops; the added one starts on its own slot.
    assert_starts(&runner.starts("keep"), &slots("keep", end));
    assert_starts(&runner.starts("change"), &slots("change", end));
    assert_starts(&runner.starts("gone"), &slots("gone", reload_at));
    let new_slots: Vec<Duration> = slots("new", end)
        .into_iter()
        .filter(|t| *t >= reload_at)
        .collect();
    assert_starts(&runner.starts("new"), &new_slots);

    let timeouts = runner.timeouts.lock().unwrap();
    let before_reload = slots("change", reload_at).len();
    assert!(
        timeouts["change"][..before_reload]
            .iter()
            .all(|t| t.as_secs() == 1)
    );
    assert!(
        timeouts["change"][before_reload..]
            .iter()
            .all(|t| t.as_secs() == 2),
        "the changed target runs with its new settings: {:?}",
        timeouts["change"]
    );
    let names = shared
        .store
        .snapshot()
        .iter()
        .map(|e| e.target.name.clone())
        .collect::<Vec<_>>();
    assert_eq!(names, ["change", "keep", "new"]);
    // Same labels: counters carry on across the reload, for the changed target too. A run
    // counts once it has finished; the changed target's run in flight at the reload (if
    // any) was cancelled, the unchanged target's was not.
    let finished = |name: &str, cancelled_at: Option<Duration>| {
        runner
            .starts(name)
            .iter()
            .filter(|s| **s + takes <= end)
            .filter(|s| cancelled_at.is_none_or(|c| !(**s < c && c < **s + takes)))
            .count() as u64
    };
    assert_eq!(keep_done, finished("keep", None));
    assert_eq!(change_done, finished("change", Some(reload_at)));
}

#[tokio::test(start_paused = true)]
async fn only_runs_in_flight_have_a_task_and_stopped_targets_leave_none() {
    let one = config(&tcp_targets(30, "interval: 1s, timeout: 500ms"));
    let mut other = config(&tcp_targets(50, "interval: 1s, timeout: 400ms"));
    other.targets.drain(..10);
    let runner = Scripted::new(Duration::from_millis(300), |n| n % 3 == 0);
    let (mut scheduler, shared) = start(&one, &runner).await;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let mut busy = 0;
    for round in 0..20 {
        let next = if round % 2 == 0 { &other } else { &one };
        let changes = scheduler.apply(next).await;
        assert_eq!(
            changes.added + changes.changed + changes.unchanged,
            next.targets.len()
        );
        assert_eq!(shared.store.snapshot().len(), next.targets.len());
        // Runs of removed targets, and of changed ones with their old settings, have ended.
        for (name, timeout) in runner.running.lock().unwrap().iter() {
            let target = next.targets.iter().find(|t| t.name == *name);
            assert_eq!(
                target.map(|t| t.policy.timeout),
                Some(*timeout),
                "round {round}: {name}"
            );
        }
        sleep(Duration::from_millis(730)).await;
        // The driver, and a task for each run in progress: a sleeping target has none.
        let running = usize::try_from(shared.telemetry.in_flight.get()).unwrap();
        assert_eq!(alive(), 1 + running, "round {round}");
        assert!(running < next.targets.len(), "round {round}");
        busy += running;
    }
    assert!(busy > 0, "some rounds caught runs in progress");
    // Every target of the last config (round 19 applied `one`) runs once a second: none was
    // left out of the queue, and none is in it twice. Three seconds, give or take a run at
    // either edge of the window (slots fall on timer ticks).
    let since = runner.epoch.elapsed();
    sleep(Duration::from_secs(3)).await;
    for target in &one.targets {
        let runs = runner
            .starts(&target.name)
            .iter()
            .filter(|s| **s >= since)
            .count();
        assert!(
            (2..=4).contains(&runs),
            "{}: {runs} runs in 3 s",
            target.name
        );
    }
    scheduler.stop().await;
    assert!(runner.running.lock().unwrap().is_empty());
    assert_eq!(alive(), 0);
    assert_eq!(shared.telemetry.in_flight.get(), 0);
}

#[tokio::test]
async fn a_smaller_limit_takes_effect_as_runs_in_flight_hand_back_their_slots() {
    let limiter = Limiter::new(4);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(limiter.acquire().await.unwrap());
    }
    limiter.resize(2);
    assert_eq!(limiter.size(), 2);
    held.truncate(1);
    // Three slots came back: two were retired, one is free beside the one still held.
    assert_eq!(limiter.semaphore.available_permits(), 1);
    limiter.resize(5);
    assert_eq!(limiter.semaphore.available_permits(), 4);
    drop(held);
    assert_eq!(limiter.semaphore.available_permits(), 5);
    limiter.resize(3);
    assert_eq!(
        limiter.semaphore.available_permits(),
        3,
        "free slots go at once"
    );
}
