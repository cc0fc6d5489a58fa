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
//! An idle target costs no task: one queue holds when each target runs next, and one driver
//! task starts each run as it comes due, in a task that lives as long as the run (`queue`). A
//! reload hands the scheduler a new config, which it applies as a diff by target fingerprint:
//! only changed, added and removed targets are touched.

mod queue;
mod telemetry;

pub use telemetry::Telemetry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::config::{Config, Target};
use crate::probe::Run;
use crate::store::Store;
use queue::{Due, Queue, Ticket};

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

/// What every run shares.
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

/// The running targets: a queue of when each runs next, and a task per run in flight.
pub struct Scheduler<R: Runner> {
    context: Arc<Context<R>>,
    /// The targets held, by name, with their place in the queue. Only `apply` changes which
    /// targets run, so it diffs a config against this without taking the queue's lock.
    held: HashMap<ByName, Ticket>,
    /// Starts each run as it comes due; spawned by the first `apply`, which runs on the
    /// runtime (`new` may not).
    driver: Option<JoinHandle<()>>,
}

/// A target keyed by its name, sharing the target's own string rather than a copy of it.
struct ByName(Arc<Target>);

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl std::hash::Hash for ByName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

/// What the driver and every run share.
struct Context<R> {
    runner: Arc<R>,
    shared: Shared,
    queue: Mutex<Queue>,
    /// Wakes the driver when a run is queued ahead of the one it sleeps for, or a reload
    /// queued new targets.
    wake: Notify,
}

/// Targets added or removed under one hold of the queue's lock: a reload of a million targets
/// lets runs that finish meanwhile queue themselves again between chunks, instead of holding
/// their worker threads until it is done.
const CHUNK: usize = 4096;

impl<R: Runner> Scheduler<R> {
    /// A scheduler with no targets yet: [`Scheduler::apply`] starts them.
    pub fn new(runner: Arc<R>, shared: Shared) -> Self {
        Scheduler {
            context: Arc::new(Context {
                runner,
                shared,
                queue: Mutex::new(Queue::default()),
                wake: Notify::new(),
            }),
            held: HashMap::new(),
            driver: None,
        }
    }

    /// Makes `config` the running one. Targets whose fingerprint is unchanged keep their
    /// schedule, run in flight, latest run and counters untouched; changed targets restart
    /// with their new settings; removed ones stop, and their runs in flight have ended when
    /// this returns; added ones start on their slot in their interval.
    pub async fn apply(&mut self, config: &Config) -> Changes {
        self.apply_with_clock(config, || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
        })
        .await
    }

    /// [`Scheduler::apply`] with `wall` reading the wall clock (time since the Unix epoch).
    // `ByName` hashes and compares the name alone, which never changes; the mutability clippy
    // sees is inside the probe.
    #[allow(clippy::mutable_key_type)]
    async fn apply_with_clock(&mut self, config: &Config, wall: impl Fn() -> Duration) -> Changes {
        let mut changes = Changes::default();
        let mut running = Vec::with_capacity(config.targets.len());
        let mut to_start = Vec::new();
        let mut leaving = Vec::new();
        let mut previous = std::mem::take(&mut self.held);
        self.held.reserve(config.targets.len());
        for target in &config.targets {
            match previous.remove_entry(target.name.as_str()) {
                Some((kept, ticket)) if kept.0.fingerprint == target.fingerprint => {
                    changes.unchanged += 1;
                    running.push(Arc::clone(&kept.0));
                    self.held.insert(kept, ticket);
                    continue;
                }
                Some((_, ticket)) => {
                    changes.changed += 1;
                    leaving.push(ticket);
                }
                None => changes.added += 1,
            }
            running.push(Arc::clone(target));
            to_start.push(Arc::clone(target));
        }
        changes.removed = previous.len();
        leaving.extend(previous.into_values());
        let context = &self.context;
        let mut to_stop = Vec::new();
        for chunk in leaving.chunks(CHUNK) {
            let mut queue = context.queue();
            to_stop.extend(chunk.iter().filter_map(|ticket| queue.remove(*ticket)));
        }
        stop(to_stop).await;

        // Only now that no stopped run can record does the store take the new set.
        context.shared.store.apply(&running, &config.location);
        context.shared.limiter.resize(config.max_concurrent_probes);
        // Both clocks read together, after the stops, so new targets land exactly on their slots.
        let (wall, now) = (wall(), Instant::now());
        for chunk in to_start.chunks(CHUNK) {
            let mut queue = context.queue();
            for target in chunk {
                let slot = until_slot(wall, phase(&target.name, target.interval), target.interval);
                let ticket = queue.insert(Arc::clone(target), now + slot);
                self.held.insert(ByName(Arc::clone(target)), ticket);
            }
        }
        if self.driver.is_none() {
            self.driver = Some(tokio::spawn(drive(Arc::clone(context))));
        }
        context.wake.notify_one();
        changes
    }

    /// Stops every target. Runs in flight are cancelled, which closes their sockets.
    pub async fn stop(self) {
        if let Some(driver) = self.driver {
            stop(vec![driver]).await;
        }
        let running = self.context.queue().clear();
        stop(running).await;
    }
}

impl<R> Context<R> {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Runs started in one go before the driver lets other tasks in.
const BATCH: usize = 256;

/// Starts every run as it comes due, each in a task of its own, and sleeps until the next is
/// due or the queue changes.
async fn drive<R: Runner>(context: Arc<Context<R>>) {
    loop {
        let (full, next) = {
            let mut queue = context.queue();
            let now = Instant::now();
            let mut started = 0;
            // Spawned under the lock on purpose: the run's handle must be in its slot before
            // the run can queue itself again or a reload can take it to cancel it.
            while started < BATCH
                && queue.start_due(now, |due| tokio::spawn(run(Arc::clone(&context), due)))
            {
                started += 1;
            }
            (started == BATCH, queue.next_due())
        };
        if full {
            // Let the runs just started (and other tasks) have the worker before starting more.
            tokio::task::yield_now().await;
            continue;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = sleep_until(at) => {}
                    () = context.wake.notified() => {}
                }
            }
            None => context.wake.notified().await,
        }
    }
}

/// One run of a target: waits for a slot of the concurrency limit, runs, records, and queues
/// the target for its next slot.
async fn run<R: Runner>(context: Arc<Context<R>>, due: Due) {
    let mut next = Requeue {
        context: &context,
        due: &due,
        at: None,
    };
    let Due {
        target, scheduled, ..
    } = &due;
    let shared = &context.shared;
    let Some(permit) = shared.limiter.acquire().await else {
        return;
    };
    let delay = Instant::now().saturating_duration_since(*scheduled);
    shared.telemetry.schedule_delay.observe(delay.as_secs_f64());
    let run = {
        let _in_flight = InFlight::enter(&shared.telemetry.in_flight);
        // Boxed: a probe's state (hyper, rustls) is kilobytes, and inline it would make every
        // run's task that size while it waits for a slot of the limit.
        Box::pin(context.runner.run(target)).await
    };
    drop(permit);

    let retry_sooner = run.failure().and(target.interval_on_failure);
    // Only this run writes this target's entry now, so reading first and recording after agree.
    log_run(target, &run, shared.store.last_success(&target.name));
    shared.store.record(&target.name, run);
    let now = Instant::now();
    next.at = Some(match retry_sooner {
        Some(step) => next_slot(*scheduled, step, now),
        // Back on the regular slots, however interval_on_failure moved us meanwhile.
        None => next_slot(due.first, target.interval, now),
    });
}

/// Queues a run's target again however the run ends: at the slot the run chose, or, if it
/// panicked, at its next regular slot, so that one bad run cannot stop a target for good. A
/// run cancelled by a reload or a stop queues nothing: its target has left the queue already.
struct Requeue<'a, R> {
    context: &'a Context<R>,
    due: &'a Due,
    at: Option<Instant>,
}

impl<R> Drop for Requeue<'_, R> {
    fn drop(&mut self) {
        let due = self.due;
        let at = self
            .at
            .unwrap_or_else(|| next_slot(due.first, due.target.interval, Instant::now()));
        if self.context.queue().requeue(due.ticket, at) {
            self.context.wake.notify_one();
        }
    }
}

/// Logs every run at debug (with its phases, so that one run's numbers can be followed in the
/// log), and changes between up and down at info and warn. Each event names the target as its
/// series do (`name`, `probe`, `target`, `location`) and the address the run probed.
fn log_run(target: &Target, run: &Run, was_up: Option<bool>) {
    let name = target.name.as_str();
    let probe = target.probe.kind();
    let probed = target.label("target");
    let probed = probed.as_deref();
    let location = target.label("location");
    let location = location.as_deref().filter(|l| !l.is_empty());
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
                dns_seconds = phase(phases.dns.get()),
                connect_seconds = phase(phases.connect.get()),
                tls_seconds = phase(phases.tls.get()),
                first_byte_seconds = phase(phases.first_byte.get()),
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
                dns_seconds = phase(phases.dns.get()),
                connect_seconds = phase(phases.connect.get()),
                tls_seconds = phase(phases.tls.get()),
                first_byte_seconds = phase(phases.first_byte.get()),
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
