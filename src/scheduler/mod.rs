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

mod telemetry;

pub use telemetry::Telemetry;

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

/// Logs every run at debug (with its phases, so that one run's numbers can be followed in the
/// log), and changes between up and down at info and warn. Each event names the target as its
/// series do (`name`, `probe`, `target`, `location`) and the address the run probed.
fn log_run(target: &Target, run: &Run, was_up: Option<bool>) {
    let name = target.name.as_str();
    let probe = target.probe.kind();
    let probed = target.label("target");
    let location = target.label("location").filter(|l| !l.is_empty());
    let trace = &run.outcome.trace;
    // An icmp run's address has no port (the socket address holds 0).
    let address = trace.address.map(|a| match a.port() {
        0 => a.ip().to_string(),
        _ => a.to_string(),
    });
    let seconds = run.duration.as_secs_f64();
    let phase = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let phases = &trace.phases;
    match run.failure() {
        None => {
            debug!(
                name,
                probe,
                target = probed,
                address,
                location,
                seconds,
                attempts = run.attempts,
                dns_seconds = phase(phases.dns),
                connect_seconds = phase(phases.connect),
                tls_seconds = phase(phases.tls),
                first_byte_seconds = phase(phases.first_byte),
                "run succeeded"
            );
            if was_up != Some(true) {
                info!(
                    name,
                    probe,
                    target = probed,
                    address,
                    location,
                    seconds,
                    "target is up"
                );
            }
        }
        Some(failure) => {
            let reason = failure.reason.as_str();
            let detail = failure.detail.as_str();
            debug!(
                name,
                probe,
                target = probed,
                address,
                location,
                reason,
                step = failure.step,
                detail,
                seconds,
                attempts = run.attempts,
                dns_seconds = phase(phases.dns),
                connect_seconds = phase(phases.connect),
                tls_seconds = phase(phases.tls),
                first_byte_seconds = phase(phases.first_byte),
                "run failed"
            );
            if was_up != Some(false) {
                warn!(
                    name,
                    probe,
                    target = probed,
                    address,
                    location,
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
mod tests;
