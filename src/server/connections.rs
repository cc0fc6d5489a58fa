//! The connections the endpoints serve, bounded without letting idle clients starve a scrape,
//! and the responses they hold, bounded without letting clients that never read them take the
//! memory.
//!
//! A cap that makes new connections wait while it is full lets any client on the network take
//! every slot with connections that say nothing, and the scrape and the kubelet's health check
//! then wait behind them. So a new connection is always taken, and when the cap is reached the
//! one that has waited longest without a request in progress is closed instead: idle clients
//! only ever push out each other (and a kept-alive connection between scrapes, which Prometheus
//! simply opens again), while a request that has arrived is answered.
//!
//! A request stays in progress until its response has been handed to the socket, so a client
//! that asks for `/metrics` and never reads keeps a whole rendering in memory. At most
//! `max_in_progress` requests are in progress at once; the next one closes the connection of
//! the one that has been in progress longest, so memory holds a few renderings, not one per
//! connection, while a scrape that reads its response (in milliseconds) is never the oldest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The connections being served, oldest first, and the requests in progress on them.
pub struct Connections {
    cap: usize,
    max_in_progress: usize,
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    next: u64,
    by_age: BTreeMap<u64, Entry>,
    /// The requests in progress, by when they started (from `next`), and their connections.
    in_progress: BTreeMap<u64, u64>,
}

struct Entry {
    /// When the requests in progress on this connection started (HTTP/2 carries several).
    requests: BTreeSet<u64>,
    close: oneshot::Sender<()>,
}

/// One admitted connection: starts its requests, learns when it is pushed out, and leaves the
/// set when dropped.
pub struct Admitted {
    slot: Slot,
    /// Resolves when a newer connection or request pushed this one out.
    pub pushed_out: oneshot::Receiver<()>,
}

/// What a connection's service needs to start a request on it.
#[derive(Clone)]
pub struct Slot {
    id: u64,
    connections: Arc<Connections>,
}

/// A request in progress on a connection; the connection is idle again once it is dropped.
pub struct InRequest {
    started: u64,
    slot: Slot,
}

impl Connections {
    pub fn new(cap: usize, max_in_progress: usize) -> Arc<Connections> {
        Arc::new(Connections {
            cap,
            max_in_progress,
            live: Mutex::new(Live::default()),
        })
    }

    /// Takes a new connection, first pushing out the oldest idle one when the cap is reached
    /// (the oldest of all when every one has a request in progress, so the cap always holds).
    pub fn admit(self: &Arc<Self>) -> Admitted {
        let mut live = self.lock();
        if live.by_age.len() >= self.cap {
            let oldest_idle = live
                .by_age
                .iter()
                .find(|(_, e)| e.requests.is_empty())
                .map(|(&id, _)| id);
            if let Some(victim) = oldest_idle.or_else(|| live.by_age.keys().next().copied()) {
                live.push_out(victim);
            }
        }
        let id = live.tick();
        let (close, pushed_out) = oneshot::channel();
        live.by_age.insert(
            id,
            Entry {
                requests: BTreeSet::new(),
                close,
            },
        );
        Admitted {
            slot: Slot {
                id,
                connections: Arc::clone(self),
            },
            pushed_out,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // Nothing in the set can be left half-updated by a panic.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Live {
    fn tick(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Closes a connection: it leaves the set, with its request, and its task is told.
    fn push_out(&mut self, id: u64) {
        if let Some(entry) = self.by_age.remove(&id) {
            for started in &entry.requests {
                self.in_progress.remove(started);
            }
            // Its task may have just ended on its own: then there is nobody to tell.
            let _ = entry.close.send(());
        }
    }
}

impl Admitted {
    /// The handle a connection's service starts its requests with.
    pub fn slot(&self) -> Slot {
        self.slot.clone()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.slot.connections.lock().push_out(self.slot.id);
    }
}

impl Slot {
    /// Marks a request as in progress on this connection, first pushing out the connection of
    /// the oldest request in progress when `max_in_progress` already are. A request started
    /// on a connection that was pushed out is counted nowhere: its connection is closing.
    pub fn start(&self) -> InRequest {
        let mut live = self.connections.lock();
        if live.in_progress.len() >= self.connections.max_in_progress {
            // Over HTTP/2 that may be this very connection: a client holding the oldest answer
            // unread loses the connection, its new request with it.
            if let Some((_, &victim)) = live.in_progress.first_key_value() {
                live.push_out(victim);
            }
        }
        let started = live.tick();
        if let Some(entry) = live.by_age.get_mut(&self.id) {
            entry.requests.insert(started);
            live.in_progress.insert(started, self.id);
        }
        InRequest {
            started,
            slot: self.clone(),
        }
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        let mut live = self.slot.connections.lock();
        if live.in_progress.remove(&self.started).is_some()
            && let Some(entry) = live.by_age.get_mut(&self.slot.id)
        {
            entry.requests.remove(&self.started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed_out(a: &mut Admitted) -> bool {
        a.pushed_out.try_recv().is_ok()
    }

    #[test]
    fn the_oldest_idle_connection_makes_room_and_requests_in_progress_are_kept() {
        let connections = Connections::new(3, 3);
        let mut first = connections.admit();
        let mut second = connections.admit();
        let mut third = connections.admit();
        let serving = first.slot().start();
        let mut fourth = connections.admit();
        assert!(!pushed_out(&mut first), "a request in progress is kept");
        assert!(pushed_out(&mut second), "the oldest idle one makes room");
        assert!(!pushed_out(&mut third));
        drop(serving);
        let _fifth = connections.admit();
        assert!(pushed_out(&mut first), "idle again, and now the oldest");
        assert!(!pushed_out(&mut third) && !pushed_out(&mut fourth));
        assert_eq!(connections.lock().by_age.len(), 3);
    }

    #[test]
    fn with_every_connection_busy_the_oldest_makes_room() {
        let connections = Connections::new(2, 2);
        let mut first = connections.admit();
        let second = connections.admit();
        let _a = first.slot().start();
        let _b = second.slot().start();
        let _third = connections.admit();
        assert!(pushed_out(&mut first));
        let live = connections.lock();
        assert_eq!(live.by_age.len(), 2, "the cap holds");
        assert_eq!(
            live.in_progress.len(),
            1,
            "the pushed-out request went with it"
        );
    }

    #[test]
    fn a_connection_that_ends_frees_its_place() {
        let connections = Connections::new(2, 2);
        let mut first = connections.admit();
        let second = connections.admit();
        drop(second);
        let _third = connections.admit();
        assert!(!pushed_out(&mut first), "room was free");
    }

    #[test]
    fn past_the_limit_a_new_request_pushes_out_the_oldest_one_in_progress() {
        let connections = Connections::new(10, 2);
        let mut first = connections.admit();
        let mut second = connections.admit();
        let mut third = connections.admit();
        let _a = first.slot().start();
        let b = second.slot().start();
        let _c = third.slot().start();
        assert!(pushed_out(&mut first), "the oldest request in progress");
        assert!(!pushed_out(&mut second) && !pushed_out(&mut third));
        drop(b);
        let mut fourth = connections.admit();
        let _d = fourth.slot().start();
        assert!(!pushed_out(&mut third), "a finished request made room");
        assert!(!pushed_out(&mut fourth));
        assert_eq!(connections.lock().in_progress.len(), 2);
    }

    #[test]
    fn requests_side_by_side_on_one_connection_are_each_counted() {
        let connections = Connections::new(10, 3);
        let mut multiplexed = connections.admit();
        let mut other = connections.admit();
        let first = multiplexed.slot().start();
        let _second = multiplexed.slot().start();
        drop(first);
        let _third = other.slot().start();
        let _fourth = multiplexed.slot().start();
        assert!(
            !pushed_out(&mut multiplexed),
            "three in progress, the limit"
        );
        let _fifth = other.slot().start();
        assert!(pushed_out(&mut multiplexed), "the oldest was on it");
        assert!(!pushed_out(&mut other));
        assert_eq!(
            connections.lock().in_progress.len(),
            2,
            "both of its requests went"
        );
    }

    #[test]
    fn a_request_ending_after_its_connection_was_pushed_out_changes_nothing() {
        let connections = Connections::new(1, 1);
        let first = connections.admit();
        let request = first.slot().start();
        let mut second = connections.admit();
        let _b = second.slot().start();
        drop(request);
        drop(first);
        assert!(!pushed_out(&mut second));
        let live = connections.lock();
        assert_eq!((live.by_age.len(), live.in_progress.len()), (1, 1));
    }
}
