//! Runs every target on its own interval, forever, within a global bound on runs in flight.
//!
//! Each target runs at a fixed phase of its interval in wall-clock time (Unix time modulo the
//! interval), derived from a stable hash of its name: targets that share an interval are spread
//! over it instead of stampeding at start-up, and a target keeps its slots across restarts and
//! replicas. While failing it may re-check every `interval_on_failure`; once it recovers it goes
//! back to its regular slots. A run that starts late (waiting for the concurrency limit) is
//! measured in `vantage_probe_schedule_delay_seconds`; a target that falls a whole interval
//! behind skips the missed slots rather than bursting to catch up.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::config::Target;
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
    pub limiter: Arc<Semaphore>,
    pub telemetry: Telemetry,
}

pub struct Scheduler {
    tasks: JoinSet<()>,
}

impl Scheduler {
    pub fn start<R: Runner>(targets: &[Arc<Target>], runner: Arc<R>, shared: Shared) -> Scheduler {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Self::start_at(targets, runner, shared, wall)
    }

    /// Starts with the wall clock reading `wall` (time since the Unix epoch) now.
    fn start_at<R: Runner>(
        targets: &[Arc<Target>],
        runner: Arc<R>,
        shared: Shared,
        wall: Duration,
    ) -> Scheduler {
        let now = Instant::now();
        let mut tasks = JoinSet::new();
        for target in targets {
            let phase = phase(&target.name, target.interval);
            let first = now + until_slot(wall, phase, target.interval);
            tasks.spawn(run_target(
                Arc::clone(target),
                Arc::clone(&runner),
                shared.clone(),
                first,
            ));
        }
        Scheduler { tasks }
    }

    /// Stops every target. Runs in flight are cancelled, which closes their sockets.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
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
        let Ok(permit) = shared.limiter.acquire().await else {
            return; // the limiter is closed only when vantage shuts down
        };
        let delay = Instant::now().saturating_duration_since(scheduled);
        shared.telemetry.schedule_delay.observe(delay.as_secs_f64());
        let run = {
            let _in_flight = InFlight::enter(&shared.telemetry.in_flight);
            runner.run(&target).await
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

    fn targets(yaml: &str) -> (Vec<Arc<Target>>, usize) {
        let config = config::parse(yaml, "test.yml", &LoadOptions::default()).unwrap();
        (config.targets, config.max_concurrent_probes)
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

    fn start(targets: &[Arc<Target>], limit: usize, runner: &Arc<Scripted>) -> (Scheduler, Shared) {
        let shared = Shared {
            store: Arc::new(Store::new(targets)),
            limiter: Arc::new(Semaphore::new(limit)),
            telemetry: Telemetry::new(),
        };
        // The wall clock reads 0: a target's first slot is its phase, which keeps tests exact.
        let scheduler =
            Scheduler::start_at(targets, Arc::clone(runner), shared.clone(), Duration::ZERO);
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
        let (targets, limit) = targets(&tcp_targets(40, "interval: 60s, timeout: 1s"));
        let runner = Scripted::new(Duration::ZERO, |_| false);
        let (scheduler, _) = start(&targets, limit, &runner);
        sleep(Duration::from_secs(60) - Duration::from_millis(1)).await;
        scheduler.stop().await;

        let mut firsts = Vec::new();
        for t in &targets {
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
        let (targets, limit) = targets(&tcp_targets(1, "interval: 10s, timeout: 1s"));
        let runner = Scripted::new(Duration::from_millis(300), |_| false);
        let p = phase("t0", Duration::from_secs(10));
        let s = Duration::from_secs(10);
        let (scheduler, _) = start(&targets, limit, &runner);
        sleep(p + Duration::from_secs(35)).await;
        scheduler.stop().await;
        assert_starts(&runner.starts("t0"), &[p, p + s, p + 2 * s, p + 3 * s]);
    }

    #[tokio::test(start_paused = true)]
    async fn interval_on_failure_rechecks_faster_until_the_target_recovers() {
        let (targets, limit) = targets(&tcp_targets(
            1,
            "interval: 60s, timeout: 1s, interval_on_failure: 5s",
        ));
        let runner = Scripted::new(Duration::from_millis(100), |n| n < 3);
        let p = phase("t0", Duration::from_secs(60));
        let (scheduler, shared) = start(&targets, limit, &runner);
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
        let (targets, _) = targets(&tcp_targets(6, "interval: 60s, timeout: 50s"));
        let runner = Scripted::new(Duration::from_secs(40), |_| false);
        let (scheduler, shared) = start(&targets, 2, &runner);
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
}
