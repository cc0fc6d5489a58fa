//! The latest result and the run counters of every target: what the scheduler writes and what
//! `/metrics` and the status page read.
//!
//! Gauges are rendered from here at scrape time, so a target that leaves the store loses all of
//! its series at once and no stale series can linger.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::Target;
use crate::probe::{Reason, Run};

/// One target's state.
#[derive(Debug)]
pub struct Entry {
    pub target: Arc<Target>,
    /// `None` until the first run completes.
    pub last: Option<Run>,
    pub successes: u64,
    pub failures: u64,
    pub failures_by_reason: BTreeMap<Reason, u64>,
}

#[derive(Debug, Default)]
pub struct Store {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl Store {
    pub fn new(targets: &[Arc<Target>]) -> Self {
        let entries = targets
            .iter()
            .map(|t| {
                let entry = Entry {
                    target: Arc::clone(t),
                    last: None,
                    successes: 0,
                    failures: 0,
                    failures_by_reason: BTreeMap::new(),
                };
                (t.name.clone(), entry)
            })
            .collect();
        Store {
            entries: Mutex::new(entries),
        }
    }

    /// Whether the target's latest run succeeded; `None` before its first run.
    pub fn last_success(&self, name: &str) -> Option<bool> {
        self.lock().get(name)?.last.as_ref().map(Run::success)
    }

    /// Stores a completed run as the target's latest and counts it.
    pub fn record(&self, name: &str, run: Run) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(name) else {
            return;
        };
        match run.failure() {
            None => entry.successes += 1,
            Some(failure) => {
                entry.failures += 1;
                *entry.failures_by_reason.entry(failure.reason).or_default() += 1;
            }
        }
        entry.last = Some(run);
    }

    /// Reads every entry, in name order, under one lock.
    pub fn read<R>(&self, f: impl FnOnce(&BTreeMap<String, Entry>) -> R) -> R {
        f(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving it.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use crate::probe::{Failure, Outcome, Trace};
    use std::time::{Duration, SystemTime};

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
        let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = Store::new(&config.targets);
        assert_eq!(store.last_success("a"), None, "no run yet");
        store.record("a", run(Err(Failure::new(Reason::ConnectionRefused, "x"))));
        assert_eq!(store.last_success("a"), Some(false));
        store.record("a", run(Ok(())));
        assert_eq!(store.last_success("a"), Some(true));
        store.record("unknown", run(Ok(())));
        store.read(|entries| {
            let a = &entries["a"];
            assert_eq!((a.successes, a.failures), (1, 1));
            assert_eq!(
                a.failures_by_reason.get(&Reason::ConnectionRefused),
                Some(&1)
            );
            assert_eq!(entries.len(), 1, "runs of unknown targets are not stored");
        });
    }
}
