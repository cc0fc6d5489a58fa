//! The latest result and the run counters of every target: what the scheduler writes and what
//! `/metrics` and the status page read.
//!
//! Gauges are rendered from here at scrape time, so a target that leaves the store loses all of
//! its series at once and no stale series can linger.
//!
//! Each entry is immutable behind an `Arc`: a reader (a scrape, the status page) takes a
//! [`Store::snapshot`], which copies only the pointers under the lock, and renders from it with
//! the lock released. A run recorded meanwhile replaces its target's entry with an updated copy
//! (`Arc::make_mut`), so the scheduler never waits for a rendering, and a rendering sees every
//! target as it was when it started.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::config::Target;
use crate::probe::{Reason, Run};

/// One target's state.
#[derive(Debug, Clone)]
pub struct Entry {
    pub target: Arc<Target>,
    /// `None` until the first run completes. Shared, so that updating an entry a snapshot
    /// still holds copies a pointer, not the run.
    pub last: Option<Arc<Run>>,
    pub successes: u64,
    pub failures: u64,
    /// Failed runs since the last success, so alerts can wait for a number of runs whatever
    /// the target's interval.
    pub consecutive_failures: u64,
    pub failures_by_reason: BTreeMap<Reason, u64>,
}

/// What is told of every change to the store: the push to remote_write receivers, which
/// sends each run as it completes instead of waiting for a scrape.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Whether it wants runs now: when not, the store spares itself the copy of the entry.
    fn active(&self) -> bool;
    /// A run was recorded; `entry` is the target's state with it.
    fn recorded(&self, entry: Arc<Entry>);
    /// A reload left the store with targets of `names`; others left, and those of `fresh`
    /// (among `names`) start afresh, their labels changed.
    fn applied(&self, names: &[&str], fresh: &[&str]);
}

#[derive(Debug, Default)]
pub struct Store {
    state: Mutex<State>,
    observer: OnceLock<Arc<dyn Observer>>,
}

#[derive(Debug, Default)]
struct State {
    /// This instance's vantage point, which a reload may change.
    location: String,
    entries: BTreeMap<String, Arc<Entry>>,
    /// Targets by probe type, counted when the set changes rather than at every scrape, which
    /// would read every target's entry under the lock.
    kinds: BTreeMap<&'static str, i64>,
}

impl Entry {
    fn new(target: &Arc<Target>) -> Arc<Entry> {
        Arc::new(Entry {
            target: Arc::clone(target),
            last: None,
            successes: 0,
            failures: 0,
            consecutive_failures: 0,
            failures_by_reason: BTreeMap::new(),
        })
    }
}

impl Store {
    /// Makes `targets` the stored set after a reload. A target passed as the very `Arc` it is
    /// stored with is unchanged and keeps everything, so none of its series has a gap or a
    /// reset. A changed target whose labels stay keeps its counters, but not its latest run,
    /// whose facts (certificates, assertions) its old settings produced. A target whose labels
    /// changed starts afresh, and a target no longer listed leaves with all its series.
    pub fn apply(&self, targets: &[Arc<Target>], location: &str) {
        let mut state = self.lock();
        let mut previous = std::mem::take(&mut state.entries);
        let mut fresh = Vec::new();
        state.entries = targets
            .iter()
            .map(|t| {
                let entry = match previous.remove(&t.name) {
                    Some(kept) if Arc::ptr_eq(&kept.target, t) => kept,
                    Some(mut kept) if kept.target.labels == t.labels => {
                        let kept_mut = Arc::make_mut(&mut kept);
                        kept_mut.target = Arc::clone(t);
                        kept_mut.last = None;
                        kept_mut.consecutive_failures = 0;
                        kept
                    }
                    Some(_) => {
                        fresh.push(t.name.as_str());
                        Entry::new(t)
                    }
                    None => Entry::new(t),
                };
                (t.name.clone(), entry)
            })
            .collect();
        location.clone_into(&mut state.location);
        let mut kinds = BTreeMap::new();
        for entry in state.entries.values() {
            *kinds.entry(entry.target.probe.kind()).or_default() += 1;
        }
        state.kinds = kinds;
        if let Some(observer) = self.observer.get() {
            let names: Vec<&str> = state.entries.keys().map(String::as_str).collect();
            observer.applied(&names, &fresh);
        }
    }

    /// Tells `observer` of every run recorded and every reload from now on. Only the first
    /// call counts: there is one push per process.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    pub fn location(&self) -> String {
        self.lock().location.clone()
    }

    /// Whether the target's latest run succeeded; `None` before its first run.
    pub fn last_success(&self, name: &str) -> Option<bool> {
        self.get(name)?.last.as_ref().map(|r| r.success())
    }

    /// The target's state now.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.lock().entries.get(name).cloned()
    }

    /// Stores a completed run as the target's latest and counts it.
    pub fn record(&self, name: &str, mut run: Run) {
        run.outcome.forget_events();
        let mut state = self.lock();
        let Some(shared) = state.entries.get_mut(name) else {
            return;
        };
        // A copy only while a snapshot holds the entry; the run itself is never copied.
        let entry = Arc::make_mut(shared);
        match run.failure() {
            None => {
                entry.successes += 1;
                entry.consecutive_failures = 0;
            }
            Some(failure) => {
                entry.failures += 1;
                entry.consecutive_failures += 1;
                *entry.failures_by_reason.entry(failure.reason).or_default() += 1;
            }
        }
        entry.last = Some(Arc::new(run));
        let Some(observer) = self.observer.get().filter(|o| o.active()) else {
            return;
        };
        // The observer renders what it was given; the store's lock is not held meanwhile.
        let entry = Arc::clone(shared);
        drop(state);
        observer.recorded(entry);
    }

    /// How many targets of each probe type the store holds.
    pub fn kinds(&self) -> BTreeMap<&'static str, i64> {
        self.lock().kinds.clone()
    }

    /// Every entry as it is now, in name order. The lock is held only to copy the pointers
    /// (a few milliseconds at 100,000 targets), never while the caller reads them.
    pub fn snapshot(&self) -> Vec<Arc<Entry>> {
        self.lock().entries.values().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use crate::probe::{Event, Failure, Outcome, Probed, Trace};
    use std::time::{Duration, SystemTime};

    fn by_name(store: &Store) -> BTreeMap<String, Arc<Entry>> {
        let snapshot = store.snapshot();
        snapshot
            .into_iter()
            .map(|e| (e.target.name.clone(), e))
            .collect()
    }

    /// A store holding the targets of `yaml`.
    fn stored(yaml: &str) -> Store {
        let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = Store::default();
        store.apply(&config.targets, "");
        store
    }

    fn run(result: Result<(), Failure>) -> Run {
        Run {
            outcome: Outcome::new(result, Trace::start()),
            attempts: 1,
            duration: Duration::from_millis(1),
            finished_at: SystemTime::now(),
        }
    }

    #[test]
    fn records_the_latest_run_and_counts_by_result_and_reason() {
        let yaml = "targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n";
        let store = stored(yaml);
        assert_eq!(store.last_success("a"), None, "no run yet");
        let streak = || store.get("a").unwrap().consecutive_failures;
        for n in 1..=2 {
            store.record("a", run(Err(Failure::new(Reason::ConnectionRefused, "x"))));
            assert_eq!(streak(), n);
        }
        assert_eq!(store.last_success("a"), Some(false));
        store.record("a", run(Ok(())));
        assert_eq!(store.last_success("a"), Some(true));
        assert_eq!(streak(), 0, "a success ends the streak");
        store.record("unknown", run(Ok(())));
        {
            let entries = by_name(&store);
            let a = &entries["a"];
            assert_eq!((a.successes, a.failures), (1, 2));
            assert_eq!(
                a.failures_by_reason.get(&Reason::ConnectionRefused),
                Some(&2)
            );
            assert_eq!(entries.len(), 1, "runs of unknown targets are not stored");
        }
    }

    #[test]
    fn a_stored_run_keeps_its_numbers_and_not_its_events() {
        let yaml = "targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n";
        let store = stored(yaml);
        let mut trace = Trace::start();
        trace.phases.connect = Some(Duration::from_millis(3));
        trace.record(Event::Held { peer_closed: true });
        let mut outcome = Outcome::new(Ok(()), trace.clone());
        outcome.addresses.push(Probed {
            address: [127, 0, 0, 1].into(),
            outcome: Outcome::new(Ok(()), trace),
            took: Duration::from_millis(4),
        });
        let mut run = run(Ok(()));
        run.outcome = outcome;
        store.record("a", run);
        let entry = store.get("a").unwrap();
        let kept = &entry.last.as_ref().unwrap().outcome;
        assert_eq!(kept.trace.phases.connect, Some(Duration::from_millis(3)));
        assert_eq!(kept.trace.events.capacity(), 0);
        let address = &kept.addresses[0].outcome.trace;
        assert_eq!(address.phases.connect, Some(Duration::from_millis(3)));
        assert_eq!(address.events.capacity(), 0);
    }

    #[test]
    fn targets_are_counted_by_type_as_each_reload_leaves_them() {
        let store = Store::default();
        let apply = |yaml: &str| {
            let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
            store.apply(&config.targets, "");
            store.kinds().into_iter().collect::<Vec<_>>()
        };
        let two = "targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: b, type: tcp, host: 127.0.0.1, port: 2}\n";
        assert_eq!(apply(two), [("tcp", 2)]);
        let mixed = "targets:\n  - {name: a, type: icmp, host: 127.0.0.1}\n  - {name: c, type: http, url: 'http://127.0.0.1:3/'}\n";
        assert_eq!(apply(mixed), [("http", 1), ("icmp", 1)], "tcp is gone");
        assert_eq!(apply("targets: []\n"), []);
    }

    #[test]
    fn a_reload_keeps_counters_while_labels_stay_and_drops_removed_targets() {
        let parse = |yaml: &str| config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let before = parse(
            "targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: b, type: tcp, host: 127.0.0.1, port: 2}\n  - {name: c, type: tcp, host: 127.0.0.1, port: 3}\n",
        );
        let store = Store::default();
        store.apply(&before.targets, "lab");
        for name in ["a", "b", "c"] {
            store.record(name, run(Ok(())));
        }
        store.record("a", run(Err(Failure::new(Reason::Timeout, "x"))));
        // a: new timeout, same labels; b: new port, so a new `target` label; c: unchanged.
        let after = parse(
            "targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1, timeout: 2s}\n  - {name: b, type: tcp, host: 127.0.0.1, port: 5}\n",
        );
        let unchanged = Arc::clone(&before.targets[2]);
        let mut targets = after.targets.clone();
        targets.push(unchanged);
        store.apply(&targets, "office");
        assert_eq!(store.location(), "office");
        {
            let entries = by_name(&store);
            assert_eq!(entries.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
            assert_eq!(entries["a"].successes, 1, "same labels: counters carry on");
            assert_eq!(entries["a"].failures, 1);
            assert_eq!(
                entries["a"].consecutive_failures, 0,
                "the streak belongs to the old settings"
            );
            assert!(
                entries["a"].last.is_none(),
                "old settings' results are gone"
            );
            assert_eq!(entries["a"].target.policy.timeout, Duration::from_secs(2));
            assert_eq!(entries["b"].successes, 0, "new labels, new series");
            assert!(entries["b"].last.is_none());
            assert_eq!(entries["c"].successes, 1, "unchanged: everything kept");
            assert!(entries["c"].last.is_some());
        }
        store.apply(&after.targets, "office");
        assert!(store.get("c").is_none(), "removed");
    }
}
