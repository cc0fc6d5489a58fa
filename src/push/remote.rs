//! One receiver: its settings (which a reload may change), its queue, its counts and what it
//! sent last of every source.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::queue::{Queue, Sample, Stats};
use super::series::{self, LastSent};
use crate::config::remote_write::RemoteWrite;

/// How often the log may tell of samples dropped from a full queue.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// One receiver: its settings (which a reload may change), its queue and counts.
#[derive(Debug)]
pub struct Remote {
    pub(super) settings: Mutex<Arc<RemoteWrite>>,
    pub(super) queue: Queue,
    pub(super) stats: Stats,
    pub(super) last: Mutex<LastSent>,
    /// Wakes a sender that waits out a backoff, when a shutdown or a reload comes.
    pub(super) wake: Notify,
    /// Counts reloads of the settings and the close: a sender that began an attempt under
    /// an older one does not wait out its backoff, even if the wake-up came while it was busy.
    generation: AtomicU64,
    /// Drops not yet logged, and when the log last told of drops: one line a minute at most.
    unlogged_drops: Mutex<(usize, Option<Instant>)>,
    pub(super) shutdown_deadline: Mutex<Option<Instant>>,
    /// Samples of the batch being sent: taken from the queue, not yet accepted or refused.
    pub(super) in_flight: AtomicUsize,
}

impl Remote {
    pub(super) fn new(settings: RemoteWrite) -> Remote {
        Remote {
            queue: Queue::new(settings.queue.capacity),
            settings: Mutex::new(Arc::new(settings)),
            stats: Stats::default(),
            last: Mutex::new(LastSent::default()),
            wake: Notify::new(),
            generation: AtomicU64::new(0),
            unlogged_drops: Mutex::new((0, None)),
            shutdown_deadline: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
        }
    }

    pub fn settings(&self) -> Arc<RemoteWrite> {
        Arc::clone(&lock(&self.settings))
    }

    /// When a closing sender gives up; far away while not closing.
    pub(super) fn shutdown_deadline(&self) -> Instant {
        lock(&self.shutdown_deadline).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// The settings' generation now: see [`Remote::sleep`].
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A backoff's wait, cut short by a shutdown or a reload: one that comes during the wait,
    /// or came since `began` (the generation when the failed attempt began).
    pub(super) async fn sleep(&self, wait: Duration, began: u64) {
        let woken = self.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if self.generation() != began {
            return;
        }
        let _ = tokio::time::timeout(wait, woken).await;
    }

    /// Queues a rendering of `source` at `at`, counting what gave way.
    pub(super) fn queue_rendering(
        &self,
        source: &str,
        parsed: Vec<series::Parsed>,
        at: SystemTime,
    ) {
        let settings = self.settings();
        let extra = [
            ("job", settings.job.as_str()),
            ("instance", settings.instance.as_str()),
        ];
        let at_ms = timestamp_ms(at);
        let samples = lock(&self.last).samples(source, parsed, &extra, at_ms);
        self.enqueue(samples);
    }

    /// Queues samples, counting them and what gave way.
    pub(super) fn enqueue(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        Stats::add(&self.stats.queued, samples.len());
        let dropped = self.queue.push(samples);
        self.count_dropped(dropped);
    }

    /// A backoff under way ends now, to go on with new settings or to finish; so does the
    /// next one of an attempt already under way. No wake-up is held over beyond that to cut a
    /// later outage's first backoff short.
    pub(super) fn wake(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Counts samples that gave way, and tells the log: at once the first time, then at most
    /// once a minute with the sum since, so that a long outage does not write a line per run.
    pub(super) fn count_dropped(&self, dropped: usize) {
        if dropped == 0 {
            return;
        }
        Stats::add(&self.stats.dropped, dropped);
        let mut unlogged = lock(&self.unlogged_drops);
        unlogged.0 += dropped;
        if unlogged.1.is_some_and(|at| at.elapsed() < DROP_LOG_EVERY) {
            return;
        }
        let dropped = std::mem::take(&mut unlogged.0);
        unlogged.1 = Some(Instant::now());
        drop(unlogged);
        let settings = self.settings();
        warn!(remote = %settings.name, url = %settings.endpoint.shown_url, dropped, capacity = self.queue.capacity(), "remote_write queue full: the oldest samples were dropped");
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere while holding the lock leaves nothing half-done that
    // matters more than carrying on.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `at` as a sample's timestamp: Unix milliseconds.
pub(super) fn timestamp_ms(at: SystemTime) -> i64 {
    i64::try_from(unix_ms(at)).unwrap_or(i64::MAX)
}
