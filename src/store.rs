//! The latest result and the run counters of every target: what the scheduler writes and what
//! `/metrics` and the status page read.
//!
//! Gauges are rendered from here at scrape time, so a target that leaves the store loses all of
//! its series at once and no stale series can linger.
//!
//! Each entry is immutable behind an `Arc`: a reader (a scrape, the status page) takes a
//! [`Store::snapshot`], which copies only the pointers under the lock, and renders from it with
//! the lock released. A run recorded meanwhile replaces its target's entry with a new one (the
//! counts carried over, the run it replaces not copied), so the scheduler never waits for a
//! rendering, and a rendering sees every target as it was when it started.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::config::Target;
use crate::probe::{Reason, Run};

/// One target's state.
#[derive(Debug, Clone)]
pub struct Entry {
    pub target: Arc<Target>,
    /// `None` until the first run completes. Inline, not behind an `Arc` of its own, which
    /// would cost every target a second allocation: an entry that a snapshot holds is never
    /// changed, so a new run goes into a new entry and the old run is never copied.
    pub last: Option<Run>,
    pub successes: u64,
    pub failures: u64,
    /// Failed runs since the last success, so alerts can wait for a number of runs whatever
    /// the target's interval.
    pub consecutive_failures: u64,
    /// `None` until the first failure: boxed, as most targets never fail and every entry is
    /// one of a million.
    pub failures_by_reason: Option<Box<BTreeMap<Reason, u64>>>,
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
    /// In name order, found by binary search: a map would add a node's share and a copy of
    /// the name to every target, tens of bytes each of a million.
    entries: Vec<Arc<Entry>>,
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
            failures_by_reason: None,
        })
    }

    /// This entry's counters for `target`, without a latest run: where a reload that kept the
    /// target's labels, or a run recorded while a snapshot holds the entry, starts from.
    fn counters_for(&self, target: &Arc<Target>) -> Entry {
        Entry {
            target: Arc::clone(target),
            last: None,
            failures_by_reason: self.failures_by_reason.clone(),
            ..*self
        }
    }
}

impl State {
    /// Where the entry of the target `name` is.
    fn find(&self, name: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.target.name.as_str().cmp(name))
            .ok()
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
        // In name order, as the entries always are; names are unique, so each is found once.
        let previous = std::mem::take(&mut state.entries);
        let mut fresh = Vec::new();
        let mut entries: Vec<Arc<Entry>> = targets
            .iter()
            .map(|t| {
                let found = previous.binary_search_by(|e| e.target.name.cmp(&t.name));
                match found.ok().map(|i| &previous[i]) {
                    Some(kept) if Arc::ptr_eq(&kept.target, t) => Arc::clone(kept),
                    Some(kept) if kept.target.labels == t.labels => Arc::new(Entry {
                        consecutive_failures: 0,
                        ..kept.counters_for(t)
                    }),
                    Some(_) => {
                        fresh.push(t.name.as_str());
                        Entry::new(t)
                    }
                    None => Entry::new(t),
                }
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.target.name.cmp(&b.target.name));
        state.entries = entries;
        location.clone_into(&mut state.location);
        let mut kinds = BTreeMap::new();
        for entry in &state.entries {
            *kinds.entry(entry.target.probe.kind()).or_default() += 1;
        }
        state.kinds = kinds;
        if let Some(observer) = self.observer.get() {
            let names: Vec<&str> = state
                .entries
                .iter()
                .map(|e| e.target.name.as_str())
                .collect();
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
        let state = self.lock();
        state.find(name).map(|i| Arc::clone(&state.entries[i]))
    }

    /// Stores a completed run as the target's latest and counts it.
    pub fn record(&self, name: &str, mut run: Run) {
        run.outcome.forget_events();
        let mut state = self.lock();
        let Some(index) = state.find(name) else {
            return;
        };
        let shared = &mut state.entries[index];
        if Arc::get_mut(shared).is_none() {
            // A snapshot holds the entry: a new one, whose run is set below.
            let fresh = shared.counters_for(&shared.target);
            *shared = Arc::new(fresh);
        }
        let entry = Arc::get_mut(shared).expect("the entry has no other owner now");
        match run.failure() {
            None => {
                entry.successes += 1;
                entry.consecutive_failures = 0;
            }
            Some(failure) => {
                entry.failures += 1;
                entry.consecutive_failures += 1;
                let counted = entry.failures_by_reason.get_or_insert_default();
                *counted.entry(failure.reason).or_default() += 1;
            }
        }
        entry.last = Some(run);
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
        self.lock().entries.clone()
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
                a.failures_by_reason
                    .as_ref()
                    .unwrap()
                    .get(&Reason::ConnectionRefused),
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
        trace.phases.connect = Duration::from_millis(3).into();
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
        assert_eq!(
            kept.trace.phases.connect.get(),
            Some(Duration::from_millis(3))
        );
        assert_eq!(kept.trace.events.capacity(), 0);
        let address = &kept.addresses[0].outcome.trace;
        assert_eq!(address.phases.connect.get(), Some(Duration::from_millis(3)));
        assert_eq!(address.events.capacity(), 0);
    }

    #[test]
    fn targets_given_in_any_order_are_found_by_name_and_listed_in_name_order() {
        let store = stored(
            "targets:\n  - {name: c, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: a, type: tcp, host: 127.0.0.1, port: 2}\n  - {name: b, type: tcp, host: 127.0.0.1, port: 3}\n",
        );
        for name in ["c", "a", "b"] {
            store.record(name, run(Ok(())));
        }
        store.record("a", run(Ok(())));
        let listed: Vec<(String, u64)> = store
            .snapshot()
            .iter()
            .map(|e| (e.target.name.clone(), e.successes))
            .collect();
        assert_eq!(listed, [("a".into(), 2), ("b".into(), 1), ("c".into(), 1)]);
        assert_eq!(
            store.get("b").unwrap().target.label("target").as_deref(),
            Some("127.0.0.1:3")
        );
        assert!(store.get("d").is_none() && store.get("").is_none());
    }

    #[test]
    fn a_run_recorded_while_a_snapshot_holds_the_entry_leaves_the_snapshot_as_it_was() {
        let store = stored("targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n");
        store.record("a", run(Err(Failure::new(Reason::Timeout, "x"))));
        let held = store.snapshot();
        store.record("a", run(Ok(())));
        let then = &held[0];
        assert_eq!((then.successes, then.failures), (0, 1));
        assert!(!then.last.as_ref().unwrap().success());
        let now = store.get("a").unwrap();
        assert!(
            !Arc::ptr_eq(then, &now),
            "a new entry, not the held one changed"
        );
        assert_eq!(
            (now.successes, now.failures, now.consecutive_failures),
            (1, 1, 0)
        );
        assert!(now.last.as_ref().unwrap().success());
        let counted = now.failures_by_reason.as_deref().unwrap();
        assert_eq!(
            counted.get(&Reason::Timeout),
            Some(&1),
            "counts carried over"
        );
        assert!(Arc::ptr_eq(&then.target, &now.target));
    }

    #[test]
    fn a_reload_in_any_order_finds_each_entry_by_name_while_a_snapshot_holds_them() {
        let parse = |yaml: &str| config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = stored(
            "targets:\n  - {name: c, type: tcp, host: 127.0.0.1, port: 3}\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: b, type: tcp, host: 127.0.0.1, port: 2}\n",
        );
        for (name, times) in [("a", 1), ("b", 2), ("c", 3)] {
            for _ in 0..times {
                store.record(name, run(Err(Failure::new(Reason::Timeout, "x"))));
            }
        }
        let held = store.snapshot();
        // b and c changed their settings, not their labels; a left; d is new.
        let after = parse(
            "targets:\n  - {name: d, type: tcp, host: 127.0.0.1, port: 4}\n  - {name: c, type: tcp, host: 127.0.0.1, port: 3, timeout: 2s}\n  - {name: b, type: tcp, host: 127.0.0.1, port: 2, timeout: 2s}\n",
        );
        store.apply(&after.targets, "");
        let entries = by_name(&store);
        let kept: Vec<(&str, u64, u64, bool)> = entries
            .iter()
            .map(|(n, e)| {
                (
                    n.as_str(),
                    e.failures,
                    e.consecutive_failures,
                    e.last.is_some(),
                )
            })
            .collect();
        assert_eq!(
            kept,
            [("b", 2, 0, false), ("c", 3, 0, false), ("d", 0, 0, false)]
        );
        let counted = entries["c"].failures_by_reason.as_deref().unwrap();
        assert_eq!(counted.get(&Reason::Timeout), Some(&3));
        let then: Vec<(&str, u64, bool)> = held
            .iter()
            .map(|e| (e.target.name.as_str(), e.failures, e.last.is_some()))
            .collect();
        assert_eq!(
            then,
            [("a", 1, true), ("b", 2, true), ("c", 3, true)],
            "the snapshot is as it was"
        );
    }

    #[test]
    fn an_entry_holds_its_latest_run_in_a_few_hundred_bytes() {
        // Every target has one: the run inline (result, phases and facts kept small) and the
        // counts, one allocation of a million.
        assert!(
            std::mem::size_of::<Entry>() <= 304,
            "{}",
            std::mem::size_of::<Entry>()
        );
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
