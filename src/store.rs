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

    /// Stores a completed run and returns whether the previous one had succeeded.
    pub fn record(&self, name: &str, run: Run) -> Option<bool> {
        let mut entries = self.lock();
        let entry = entries.get_mut(name)?;
        match run.failure() {
            None => entry.successes += 1,
            Some(failure) => {
                entry.failures += 1;
                *entry.failures_by_reason.entry(failure.reason).or_default() += 1;
            }
        }
        entry.last.replace(run).map(|previous| previous.success())
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
