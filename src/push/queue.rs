//! One receiver's queue: samples in the order they were made, bounded in count. When it is
//! full, the oldest give way and are counted; the sender takes batches from the front.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// An empty queue holding room for more samples than this gives it back.
const SHRINK_ABOVE: usize = 65_536;

/// A series' labels, sorted by name, `__name__` among them; shared by every sample of it.
pub type Series = [(String, String)];

#[derive(Debug, Clone)]
pub struct Sample {
    pub series: std::sync::Arc<Series>,
    pub timestamp_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(series: &std::sync::Arc<Series>, timestamp_ms: i64, value: f64) -> Sample {
        Sample {
            series: std::sync::Arc::clone(series),
            timestamp_ms,
            value,
        }
    }
}

/// Counts in Prometheus' own terms (`prometheus_remote_storage_*`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Samples queued (runs, markers and vantage's own): sent, failed, dropped and pending
    /// account for every one.
    pub queued: AtomicU64,
    /// Samples the receiver accepted.
    pub sent: AtomicU64,
    /// Samples the receiver refused for good (a 4xx other than 429), or not sent at shutdown.
    pub failed: AtomicU64,
    /// Samples that gave way to newer ones in a full queue.
    pub dropped: AtomicU64,
    /// Samples sent again after a 5xx, a 429 or a network error.
    pub retried: AtomicU64,
    /// Unix milliseconds of the last send the receiver accepted; 0 before the first.
    pub last_send_ms: AtomicU64,
    /// The newest sample timestamp the receiver accepted, in Unix milliseconds.
    pub highest_sent_ms: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Queue {
    inner: Mutex<Inner>,
    changed: Notify,
}

#[derive(Debug)]
struct Inner {
    samples: VecDeque<Sample>,
    capacity: usize,
    /// When the queue last went from empty to holding samples: the batch deadline runs from it.
    since: Option<Instant>,
    closing: bool,
}

/// What the sender gets from [`Queue::next_batch`].
pub enum Next {
    Batch(Vec<Sample>),
    /// Closing, and nothing is left.
    Done,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            inner: Mutex::new(Inner {
                samples: VecDeque::new(),
                capacity,
                since: None,
                closing: false,
            }),
            changed: Notify::new(),
        }
    }

    /// Adds a run's samples; returns how many of the oldest gave way.
    pub fn push(&self, samples: impl IntoIterator<Item = Sample>) -> usize {
        let mut inner = self.lock();
        let was_empty = inner.samples.is_empty();
        inner.samples.extend(samples);
        if inner.samples.is_empty() {
            // Nothing came: no deadline may start, or the sender would wake for nothing.
            return 0;
        }
        if was_empty {
            inner.since = Some(Instant::now());
        }
        let dropped = inner.trim();
        drop(inner);
        self.changed.notify_one();
        dropped
    }

    /// Sets a new capacity (a reload); returns how many of the oldest gave way. A sender
    /// waiting for a batch looks again, by the settings it reads now.
    pub fn set_capacity(&self, capacity: usize) -> usize {
        let mut inner = self.lock();
        inner.capacity = capacity;
        let dropped = inner.trim();
        drop(inner);
        self.changed.notify_one();
        dropped
    }

    pub fn len(&self) -> usize {
        self.lock().samples.len()
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Sends what is left without waiting for full batches; [`Queue::next_batch`] says
    /// [`Next::Done`] once it is all taken.
    pub fn close(&self) {
        self.lock().closing = true;
        self.changed.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// Waits for a batch: `max` samples, or fewer once the oldest has waited `deadline`, or
    /// whatever is left when closing. `settings` gives `max` and `deadline`, read at every
    /// look, so that a reload's apply to the batch being gathered.
    pub async fn next_batch(&self, settings: impl Fn() -> (usize, Duration)) -> Next {
        loop {
            // Registered before looking, so that a push between the look and the wait wakes it.
            let changed = self.changed.notified();
            let (max, deadline) = settings();
            let wait_until = {
                let mut inner = self.lock();
                let due = inner
                    .since
                    .filter(|_| !inner.samples.is_empty())
                    .map(|since| since + deadline);
                let ready = inner.samples.len() >= max
                    || (!inner.samples.is_empty()
                        && (inner.closing || due.is_some_and(|d| d <= Instant::now())));
                if ready {
                    return Next::Batch(inner.take(max));
                }
                if inner.closing {
                    return Next::Done;
                }
                due
            };
            match wait_until {
                Some(due) => {
                    let _ = tokio::time::timeout_at(due, changed).await;
                }
                None => changed.await,
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn trim(&mut self) -> usize {
        let excess = self.samples.len().saturating_sub(self.capacity);
        self.samples.drain(..excess);
        excess
    }

    fn take(&mut self, max: usize) -> Vec<Sample> {
        let n = max.min(self.samples.len());
        let batch: Vec<Sample> = self.samples.drain(..n).collect();
        // After an outage the queue may have grown to its capacity; emptied, it gives the
        // memory back.
        if self.samples.is_empty() && self.samples.capacity() > SHRINK_ABOVE {
            self.samples.shrink_to_fit();
        }
        // What is left has waited since the batch's newest sample was queued, at most; starting
        // its deadline now errs towards fuller batches, never towards a lost sample.
        self.since = (!self.samples.is_empty()).then(Instant::now);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn samples(range: std::ops::Range<i64>) -> Vec<Sample> {
        let series: Arc<Series> = Arc::from(vec![("__name__".into(), "x".into())]);
        range.map(|t| Sample::new(&series, t, 1.0)).collect()
    }

    fn times(batch: &[Sample]) -> Vec<i64> {
        batch.iter().map(|s| s.timestamp_ms).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_the_oldest_and_counts_them() {
        let queue = Queue::new(5);
        assert_eq!(queue.push(samples(0..3)), 0);
        assert_eq!(queue.push(samples(3..8)), 3, "0, 1, 2 gave way");
        assert_eq!(queue.len(), 5);
        let Next::Batch(batch) = queue.next_batch(|| (10, Duration::from_secs(5))).await else {
            panic!("samples are waiting")
        };
        assert_eq!(times(&batch), [3, 4, 5, 6, 7], "the newest five, in order");
        assert_eq!(queue.push(samples(8..10)), 0);
        assert_eq!(queue.set_capacity(1), 1);
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_its_size_or_its_deadline() {
        let queue = Arc::new(Queue::new(100));
        queue.push(samples(0..4));
        let started = Instant::now();
        let Next::Batch(batch) = queue.next_batch(|| (3, Duration::from_secs(5))).await else {
            panic!()
        };
        assert_eq!(times(&batch), [0, 1, 2], "a full batch goes at once");
        assert_eq!(started.elapsed(), Duration::ZERO);
        let Next::Batch(batch) = queue.next_batch(|| (3, Duration::from_secs(5))).await else {
            panic!()
        };
        assert_eq!(times(&batch), [3]);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "a part batch waits for the deadline"
        );
        let waiting = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.next_batch(|| (3, Duration::from_secs(5))).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "an empty queue waits");
        queue.close();
        assert!(matches!(waiting.await.unwrap(), Next::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_sender_takes_new_settings_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let queue = Arc::new(Queue::new(100));
        let max = Arc::new(AtomicUsize::new(3));
        queue.push(samples(0..2));
        let waiting = tokio::spawn({
            let (queue, max) = (Arc::clone(&queue), Arc::clone(&max));
            async move {
                let settings = || (max.load(Ordering::SeqCst), Duration::from_secs(60));
                queue.next_batch(settings).await
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !waiting.is_finished(),
            "two samples wait for a batch of three"
        );
        // A reload: smaller batches, and the capacity set again, which wakes the sender.
        max.store(2, Ordering::SeqCst);
        assert_eq!(queue.set_capacity(100), 0);
        let woken = Instant::now();
        let Next::Batch(batch) = waiting.await.unwrap() else {
            panic!()
        };
        assert_eq!(times(&batch), [0, 1]);
        assert_eq!(
            woken.elapsed(),
            Duration::ZERO,
            "taken by the new size at once, not at the old deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pushing_nothing_starts_no_deadline() {
        let queue = Arc::new(Queue::new(100));
        assert_eq!(queue.push(Vec::new()), 0);
        let waiting = tokio::spawn({
            let queue = Arc::clone(&queue);
            async move { queue.next_batch(|| (3, Duration::from_secs(5))).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "still waiting, for a sample");
        assert!(
            queue.lock().since.is_none(),
            "no deadline: a due one with nothing to take would spin the sender"
        );
        queue.close();
        assert!(matches!(waiting.await.unwrap(), Next::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_sends_what_is_left_at_once() {
        let queue = Queue::new(100);
        queue.push(samples(0..2));
        queue.close();
        let started = Instant::now();
        let Next::Batch(batch) = queue.next_batch(|| (10, Duration::from_secs(5))).await else {
            panic!()
        };
        assert_eq!(times(&batch), [0, 1]);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(matches!(
            queue.next_batch(|| (10, Duration::from_secs(5))).await,
            Next::Done
        ));
    }
}
