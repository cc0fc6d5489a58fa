//! Runs every target on its own interval, forever, within a global bound on runs in flight.
//!
//! Each target runs at a fixed phase of its interval in wall-clock time (Unix time modulo the
//! interval), derived from a stable hash of its name: targets that share an interval are spread
//! over it instead of stampeding at start-up, and a target keeps its slots across restarts and
//! replicas. While failing it may re-check every `interval_on_failure`; once it recovers it goes
//! back to its regular slots. A run that starts late (waiting for the concurrency limit) is
//! measured in `vantage_probe_schedule_delay_seconds`; a target that falls a whole interval
//! behind skips the missed slots rather than bursting to catch up.
//!
//! Each target has its own task. A reload hands the scheduler a new config, which it applies as
//! a diff by target fingerprint: only changed, added and removed targets' tasks are touched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::config::{Config, Target};
use crate::metrics::Telemetry;
use crate::probe::Run;
use crate::store::Store;

/// Performs one run of a target. The exporter runs real probes; scheduler tests script runs.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, target: &Target) -> impl Future<Output = Run> + Send;
}

/// Runs the target's probe, with its retries and deadline.
pub struct Probes;

impl Runner for Probes {
    fn run(&self, target: &Target) -> impl Future<Output = Run> + Send {
        crate::probe::run(&target.probe, &target.assertions, &target.policy)
    }
}

/// What every target's task shares.
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<Store>,
    pub limiter: Arc<Limiter>,
    pub telemetry: Telemetry,
}

/// The global bound on runs in flight (`max_concurrent_probes`), which a reload may change.
#[derive(Debug)]
pub struct Limiter {
    semaphore: Semaphore,
    sizes: Mutex<Sizes>,
}

#[derive(Debug)]
struct Sizes {
    size: usize,
    /// Permits to retire as runs hand them back: a shrink cannot take permits that are in use.
    owed: usize,
}

/// A slot for one run; dropping it frees the slot (or retires it after a shrink).
pub struct Permit<'a> {
    limiter: &'a Limiter,
    permit: Option<SemaphorePermit<'a>>,
}

impl Limiter {
    pub fn new(size: usize) -> Limiter {
        Limiter {
            semaphore: Semaphore::new(size),
            sizes: Mutex::new(Sizes { size, owed: 0 }),
        }
    }

    pub fn size(&self) -> usize {
        self.sizes().size
    }

    /// Sets a new bound. Runs in flight finish; once they have, at most `size` run at once.
    pub fn resize(&self, size: usize) {
        let mut sizes = self.sizes();
        if size > sizes.size {
            let grow = size - sizes.size;
            let repaid = grow.min(sizes.owed);
            sizes.owed -= repaid;
            self.semaphore.add_permits(grow - repaid);
        } else {
            let shrink = sizes.size - size;
            sizes.owed += shrink - self.semaphore.forget_permits(shrink);
        }
        sizes.size = size;
    }

    /// Waits for a free slot; `None` only if the semaphore were closed, which vantage never does.
    pub async fn acquire(&self) -> Option<Permit<'_>> {
        let permit = self.semaphore.acquire().await.ok()?;
        Some(Permit {
            limiter: self,
            permit: Some(permit),
        })
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, Sizes> {
        self.sizes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut sizes = self.limiter.sizes();
        if let Some(permit) = self.permit.take()
            && sizes.owed > 0
        {
            sizes.owed -= 1;
            permit.forget();
        }
    }
}

/// What applying a config changed, by target.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// The running targets: one task each.
pub struct Scheduler<R: Runner> {
    runner: Arc<R>,
    shared: Shared,
    tasks: HashMap<String, Task>,
}

struct Task {
    target: Arc<Target>,
    handle: JoinHandle<()>,
}

impl<R: Runner> Scheduler<R> {
    /// A scheduler with no targets yet: [`Scheduler::apply`] starts them.
    pub fn new(runner: Arc<R>, shared: Shared) -> Self {
        Scheduler {
            runner,
            shared,
            tasks: HashMap::new(),
        }
    }

    /// Makes `config` the running one. Targets whose fingerprint is unchanged keep their task,
    /// schedule, latest run and counters untouched; changed targets restart with their new
    /// settings; removed ones stop, and their tasks have ended when this returns; added ones
    /// start on their slot in their interval.
    pub async fn apply(&mut self, config: &Config) -> Changes {
        self.apply_with_clock(config, || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
        })
        .await
    }

    /// [`Scheduler::apply`] with `wall` reading the wall clock (time since the Unix epoch).
    async fn apply_with_clock(&mut self, config: &Config, wall: impl Fn() -> Duration) -> Changes {
        let mut changes = Changes::default();
        let mut previous = std::mem::take(&mut self.tasks);
        let mut running = Vec::with_capacity(config.targets.len());
        let mut to_start = Vec::new();
        let mut to_stop = Vec::new();
        for target in &config.targets {
            match previous.remove(&target.name) {
                Some(task) if task.target.fingerprint == target.fingerprint => {
                    changes.unchanged += 1;
                    running.push(Arc::clone(&task.target));
                    self.tasks.insert(target.name.clone(), task);
                    continue;
                }
                Some(task) => {
                    changes.changed += 1;
                    to_stop.push(task.handle);
                }
                None => changes.added += 1,
            }
            running.push(Arc::clone(target));
            to_start.push(Arc::clone(target));
        }
        changes.removed = previous.len();
        to_stop.extend(previous.into_values().map(|task| task.handle));
        stop(to_stop).await;

        // Only now that no stopped task can record a run does the store take the new set.
        self.shared.store.apply(&running, &config.location);
        self.shared.limiter.resize(config.max_concurrent_probes);
        // Both clocks read together, after the stops, so new tasks land exactly on their slots.
        let (wall, now) = (wall(), Instant::now());
        for target in to_start {
            let first =
                now + until_slot(wall, phase(&target.name, target.interval), target.interval);
            let handle = tokio::spawn(run_target(
                Arc::clone(&target),
                Arc::clone(&self.runner),
                self.shared.clone(),
                first,
            ));
            self.tasks
                .insert(target.name.clone(), Task { target, handle });
        }
        changes
    }

    /// Stops every target. Runs in flight are cancelled, which closes their sockets.
    pub async fn stop(self) {
        stop(self.tasks.into_values().map(|task| task.handle).collect()).await;
    }
}

/// Cancels the tasks and waits until every one has ended.
async fn stop(handles: Vec<JoinHandle<()>>) {
    for handle in &handles {
        handle.abort();
    }
    for handle in handles {
        // A task ends cancelled; a panic in one has been reported by the runtime already.
        let _ = handle.await;
    }
}

/// Where in its interval a target runs: a stable hash of the name, modulo the interval.
pub fn phase(name: &str, interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(fnv1a(name.as_bytes()) % nanos)
}

/// FNV-1a: fixed by its definition, unlike `std`'s hasher, so phases never change under us.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How long from wall-clock time `wall` until the next slot `phase` into an `interval` (zero if
/// `wall` is exactly on one).
fn until_slot(wall: Duration, phase: Duration, interval: Duration) -> Duration {
    let interval = interval.as_nanos().max(1);
    let into = wall.as_nanos() % interval;
    let until = (phase.as_nanos() + interval - into) % interval;
    Duration::from_nanos(u64::try_from(until).unwrap_or(u64::MAX))
}

/// The first slot after `scheduled` that is still ahead of `now`, keeping the phase.
fn next_slot(scheduled: Instant, step: Duration, now: Instant) -> Instant {
    let next = scheduled + step;
    if next > now {
        return next;
    }
    let step_nanos = step.as_nanos().max(1);
    let missed = (now - next).as_nanos() / step_nanos + 1;
    let skip = u64::try_from(missed * step_nanos).unwrap_or(u64::MAX);
    next + Duration::from_nanos(skip)
}

/// Counts a run as in flight for as long as it exists, including when it is cancelled.
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs one target forever. `first` is its first regular slot; the others follow every interval.
async fn run_target<R: Runner>(
    target: Arc<Target>,
    runner: Arc<R>,
    shared: Shared,
    first: Instant,
) {
    let mut scheduled = first;
    loop {
        sleep_until(scheduled).await;
        let Some(permit) = shared.limiter.acquire().await else {
            return;
        };
        let delay = Instant::now().saturating_duration_since(scheduled);
        shared.telemetry.schedule_delay.observe(delay.as_secs_f64());
        let run = {
            let _in_flight = InFlight::enter(&shared.telemetry.in_flight);
            // Boxed: a probe's state (hyper, rustls) is kilobytes, and inline it would make
            // every target's task that size while it sleeps between runs.
            Box::pin(runner.run(&target)).await
        };
        drop(permit);

        let retry_sooner = run.failure().and(target.interval_on_failure);
        // Only this task writes this target's entry, so reading first and recording after agree.
        log_run(&target, &run, shared.store.last_success(&target.name));
        shared.store.record(&target.name, run);
        let now = Instant::now();
        scheduled = match retry_sooner {
            Some(step) => next_slot(scheduled, step, now),
            // Back on the regular slots, however interval_on_failure moved us meanwhile.
            None => next_slot(first, target.interval, now),
        };
    }
}

/// Logs every run at debug, and changes between up and down at info and warn.
fn log_run(target: &Target, run: &Run, was_up: Option<bool>) {
    let name = target.name.as_str();
    let probe = target.probe.kind();
    let seconds = run.duration.as_secs_f64();
    match run.failure() {
        None => {
            debug!(
                name,
                probe,
                seconds,
                attempts = run.attempts,
                "run succeeded"
            );
            if was_up != Some(true) {
                info!(name, probe, seconds, "target is up");
            }
        }
        Some(failure) => {
            let reason = failure.reason.as_str();
            let detail = failure.detail.as_str();
            debug!(
                name,
                probe,
                reason,
                step = failure.step,
                detail,
                attempts = run.attempts,
                "run failed"
            );
            if was_up != Some(false) {
                warn!(
                    name,
                    probe,
                    reason,
                    step = failure.step,
                    detail,
                    "target is down"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        let successes = shared.store.read(|e| e["t0"].successes);
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
        let (keep_done, change_done) = shared
            .store
            .read(|e| (e["keep"].successes, e["change"].successes));
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
        let names = shared.store.read(|e| e.keys().cloned().collect::<Vec<_>>());
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
    async fn tasks_of_stopped_targets_end_so_the_task_count_follows_the_config() {
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
        for round in 0..20 {
            let next = if round % 2 == 0 { &other } else { &one };
            let changes = scheduler.apply(next).await;
            assert_eq!(
                changes.added + changes.changed + changes.unchanged,
                next.targets.len()
            );
            assert_eq!(alive(), next.targets.len(), "round {round}");
            assert_eq!(shared.store.read(|e| e.len()), next.targets.len());
            sleep(Duration::from_millis(730)).await;
        }
        scheduler.stop().await;
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
}
