//! One receiver: its settings (which a reload may change), its queue, its counts and what it
//! sent last of every source.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::warn;

use super::queue::{Queue, Sample, Stats};
use super::series::{self, LastSent};
use crate::config::remote_write::RemoteWrite;

/// One receiver: its settings (which a reload may change), its queue and counts.
#[derive(Debug)]
pub struct Remote {
    pub(super) settings: Mutex<Arc<RemoteWrite>>,
    pub(super) queue: Queue,
    pub(super) stats: Stats,
    pub(super) last: Mutex<LastSent>,
    /// Wakes a sender that waits out a backoff, when a shutdown or a reload comes.
    pub(super) wake: Notify,
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

    /// A backoff's wait, cut short by a shutdown or a reload.
    pub(super) async fn sleep(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.wake.notified()).await;
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
        let at_ms = i64::try_from(unix_ms(at)).unwrap_or(i64::MAX);
        let samples = lock(&self.last).samples(source, parsed, &extra, at_ms);
        self.enqueue(samples);
    }

    /// Queues samples, counting them and what gave way.
    pub(super) fn enqueue(&self, samples: Vec<Sample>) {
        Stats::add(&self.stats.queued, samples.len());
        let dropped = self.queue.push(samples);
        self.count_dropped(dropped);
    }

    /// A backoff under way ends now, to go on with new settings or to finish. Only a wait in
    /// progress is woken: none is held over to cut the next outage's first backoff short.
    pub(super) fn wake(&self) {
        self.wake.notify_waiters();
    }

    pub(super) fn count_dropped(&self, dropped: usize) {
        if dropped > 0 {
            Stats::add(&self.stats.dropped, dropped);
            let settings = self.settings();
            warn!(remote = %settings.name, url = %settings.shown_url, dropped, capacity = self.queue.capacity(), "remote_write queue full: the oldest samples were dropped");
        }
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
