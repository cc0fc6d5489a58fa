//! Pushing to `remote_write` receivers: every completed run's series, timestamped at the run's
//! end, go to each receiver's queue and on as Prometheus remote write 1.0; series that end get
//! a staleness marker; vantage's own metrics go on their own interval.
//!
//! The scheduler never waits for any of it: a run is rendered and queued (a bounded queue,
//! whose oldest samples give way), and each receiver has a task of its own that sends.

mod metrics;
mod queue;
mod remote;
pub(crate) mod send;
mod series;
pub mod wire;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::remote_write::RemoteWrite;
use crate::metrics::{Metrics, render_entry};
use crate::store::{Entry, Observer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use queue::Stats;
use remote::{Remote, lock, timestamp_ms};

/// The source name of vantage's own series among a receiver's [`LastSent`]: no target can
/// have it, since target names have no control characters.
const SELF: &str = "\u{0}vantage";

/// The push to every configured receiver. With none configured, it does nothing at all.
#[derive(Debug, Default)]
pub struct Push {
    remotes: Mutex<Vec<Running>>,
    /// vantage's own metrics, for the receivers that push them.
    own: Mutex<Option<Arc<Metrics>>>,
}

#[derive(Debug)]
struct Running {
    remote: Arc<Remote>,
    sender: JoinHandle<()>,
    own: Option<JoinHandle<()>>,
}

impl Push {
    pub fn new() -> Push {
        Push::default()
    }

    /// Gives the push vantage's own metrics, for the receivers with `self_metrics_interval`.
    pub fn set_own_metrics(&self, metrics: Arc<Metrics>) {
        *lock(&self.own) = Some(metrics);
    }

    /// The receivers of a (re)loaded config: a receiver of the same name keeps its queue and
    /// counts under its new settings; a new one starts; one no longer listed sends what it
    /// holds, within its timeout, and ends.
    pub fn apply(self: &Arc<Self>, configured: &[RemoteWrite]) {
        let mut remotes = lock(&self.remotes);
        let mut previous = std::mem::take(&mut *remotes);
        for settings in configured {
            let kept = previous
                .iter()
                .position(|r| r.remote.settings().name == settings.name)
                .map(|i| previous.swap_remove(i));
            let running = match kept {
                Some(running) if running.remote.settings().fingerprint == settings.fingerprint => {
                    running
                }
                Some(mut running) => {
                    let remote = &running.remote;
                    *lock(&remote.settings) = Arc::new(settings.clone());
                    // After the settings: the sender, woken by the queue, takes its next batch
                    // by the new ones.
                    let dropped = remote.queue.set_capacity(settings.queue.capacity);
                    remote.count_dropped(dropped);
                    remote.wake();
                    if let Some(own) = running.own.take() {
                        own.abort();
                    }
                    running.own = self.start_own(remote);
                    if running.own.is_none() {
                        // Its own metrics are no longer pushed: the receiver drops them now.
                        let now = timestamp_ms(SystemTime::now());
                        remote.enqueue(lock(&remote.last).forget(SELF, now));
                    }
                    info!(remote = %settings.name, url = %settings.endpoint.shown_url, "remote_write receiver's settings changed");
                    running
                }
                None => {
                    let remote = Arc::new(Remote::new(settings.clone()));
                    info!(remote = %settings.name, url = %settings.endpoint.shown_url, "pushing to a remote_write receiver");
                    Running {
                        sender: tokio::spawn(send::run(Arc::clone(&remote))),
                        own: self.start_own(&remote),
                        remote,
                    }
                }
            };
            remotes.push(running);
        }
        drop(remotes);
        for gone in previous {
            let settings = gone.remote.settings();
            info!(remote = %settings.name, url = %settings.endpoint.shown_url, "remote_write receiver no longer configured: sending what it holds, then stopping");
            tokio::spawn(async move {
                let timeout = gone.remote.settings().endpoint.timeout;
                gone.finish(Instant::now() + timeout).await;
            });
        }
    }

    /// The task that pushes vantage's own metrics to `remote` on its interval.
    fn start_own(&self, remote: &Arc<Remote>) -> Option<JoinHandle<()>> {
        let interval = remote.settings().self_metrics_interval?;
        let metrics = lock(&self.own).clone()?;
        let remote = Arc::clone(remote);
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let text = metrics.render_own();
                remote.queue_rendering(SELF, series::parse(&text), SystemTime::now());
            }
        }))
    }

    /// The receivers now, for the self metrics.
    fn remotes(&self) -> Vec<Arc<Remote>> {
        lock(&self.remotes)
            .iter()
            .map(|r| Arc::clone(&r.remote))
            .collect()
    }

    /// Sends what every queue holds, until `deadline`; what is left then is counted as failed.
    /// The receivers finish side by side: one that is away does not take the others' time.
    pub async fn stop(&self, deadline: Instant) {
        let remotes = std::mem::take(&mut *lock(&self.remotes));
        let finishing: Vec<JoinHandle<()>> = remotes
            .into_iter()
            .map(|running| tokio::spawn(running.finish(deadline)))
            .collect();
        for finished in finishing {
            let _ = finished.await;
        }
    }
}

impl Running {
    async fn finish(self, deadline: Instant) {
        let remote = &self.remote;
        // Its own metrics stop first, and for good, so that nothing is queued after the close.
        if let Some(mut own) = self.own {
            own.abort();
            let _ = (&mut own).await;
        }
        *lock(&remote.shutdown_deadline) = Some(deadline);
        remote.queue.close();
        remote.wake();
        let mut sender = self.sender;
        if tokio::time::timeout_at(deadline, &mut sender)
            .await
            .is_err()
        {
            // Ended before the counts are read: a send cannot complete between the two.
            sender.abort();
            let _ = (&mut sender).await;
            let left = remote.queue.len() + remote.in_flight.load(Ordering::Relaxed);
            Stats::add(&remote.stats.failed, left);
            let settings = remote.settings();
            warn!(remote = %settings.name, url = %settings.endpoint.shown_url, samples = left, "stopped before the remote_write receiver took every sample");
        }
    }
}

impl Observer for Push {
    fn active(&self) -> bool {
        !lock(&self.remotes).is_empty()
    }

    fn recorded(&self, entry: Arc<Entry>) {
        let remotes = self.remotes();
        if remotes.is_empty() {
            return;
        }
        let Some(finished) = entry.last.as_ref().map(|r| r.finished_at) else {
            return;
        };
        let name = entry.target.name.clone();
        let parsed = series::parse(&render_entry(entry));
        for remote in &remotes {
            remote.queue_rendering(&name, parsed.clone(), finished);
        }
    }

    fn applied(&self, names: &[&str], fresh: &[&str]) {
        // A target that starts afresh under the same name has new labels: its old series end.
        let fresh: HashSet<&str> = fresh.iter().copied().collect();
        let keep: HashSet<&str> = names
            .iter()
            .copied()
            .filter(|n| !fresh.contains(n))
            .chain([SELF])
            .collect();
        let now = timestamp_ms(SystemTime::now());
        for remote in self.remotes() {
            let markers = lock(&remote.last).retain(&keep, now);
            remote.enqueue(markers);
        }
    }
}

/// Renders the push's metrics at scrape time; no series while nothing is configured.
#[derive(Debug)]
pub struct PushCollector(pub Arc<Push>);

impl Collector for PushCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        metrics::encode(encoder, &self.0.remotes())
    }
}
