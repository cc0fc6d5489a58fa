//! The connections the endpoints serve, bounded without letting idle clients starve a scrape,
//! and the answers they hold, bounded without letting clients that never read them take the
//! memory.
//!
//! A cap that makes new connections wait while it is full lets any client on the network take
//! every slot with connections that say nothing, and the scrape and the kubelet's health check
//! then wait behind them. So a new connection is always taken, and when the cap is reached the
//! one that has waited longest without a request in progress is closed instead: idle clients
//! only ever push out each other (and a kept-alive connection between scrapes, which Prometheus
//! simply opens again).
//!
//! An answer is unsent from when it is handed to hyper until hyper has taken its last piece
//! (see `body`), so a client that asks for `/metrics` and never reads keeps a rendering in
//! memory. At most `max_unsent` answers are unsent at once; the next one closes the connection
//! of the one unsent longest. Memory then holds a few renderings, not one per connection, while
//! a scrape that reads its answer (taken off vantage's hands within milliseconds) is never the
//! oldest. Only answers count: a request waiting for its rendering holds nothing, and one
//! refused (401, 429) is answered in a single piece.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The connections being served, oldest first, and the answers unsent on them.
pub struct Connections {
    cap: usize,
    max_unsent: usize,
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    next: u64,
    by_age: BTreeMap<u64, Entry>,
    /// The unsent answers, by when their requests started (from `next`), and their connections.
    unsent: BTreeMap<u64, u64>,
}

struct Entry {
    /// When the requests in progress on this connection started (HTTP/2 carries several).
    requests: BTreeSet<u64>,
    close: oneshot::Sender<PushedOut>,
}

/// Why a connection was closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushedOut {
    /// It had no request in progress, and the connections were at their cap.
    Idle,
    /// Its answer had been unsent longest when too many were.
    Unsent,
}

/// One admitted connection: starts its requests, learns when it is pushed out, and leaves the
/// set when dropped.
pub struct Admitted {
    slot: Slot,
    /// Resolves when a newer connection or answer pushed this one out.
    pub pushed_out: oneshot::Receiver<PushedOut>,
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
    pub fn new(cap: usize, max_unsent: usize) -> Arc<Connections> {
        Arc::new(Connections {
            cap,
            max_unsent,
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
                live.push_out(victim, PushedOut::Idle);
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

    /// Closes a connection: it leaves the set, with its requests, and its task is told why.
    fn push_out(&mut self, id: u64, why: PushedOut) {
        if let Some(entry) = self.by_age.remove(&id) {
            for started in &entry.requests {
                self.unsent.remove(started);
            }
            // Its task may have just ended on its own: then there is nobody to tell.
            let _ = entry.close.send(why);
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
        self.slot
            .connections
            .lock()
            .push_out(self.slot.id, PushedOut::Idle);
    }
}

impl Slot {
    /// Marks a request as in progress on this connection, which is no longer idle. A request
    /// started on a connection that was pushed out is counted nowhere: its connection is
    /// closing.
    pub fn start(&self) -> InRequest {
        let mut live = self.connections.lock();
        let started = live.tick();
        if let Some(entry) = live.by_age.get_mut(&self.id) {
            entry.requests.insert(started);
        }
        InRequest {
            started,
            slot: self.clone(),
        }
    }
}

impl InRequest {
    /// Counts the request's answer as unsent, first pushing out the connection of the answer
    /// unsent longest when `max_unsent` already are. Over HTTP/2 that may be this very
    /// connection: a client holding the oldest answer unread loses the connection, this answer
    /// with it.
    pub fn unsent(&self) {
        let connections = &self.slot.connections;
        let mut live = connections.lock();
        if live.unsent.len() >= connections.max_unsent
            && let Some((_, &victim)) = live.unsent.first_key_value()
        {
            live.push_out(victim, PushedOut::Unsent);
        }
        if live.by_age.contains_key(&self.slot.id) {
            live.unsent.insert(self.started, self.slot.id);
        }
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        let mut live = self.slot.connections.lock();
        live.unsent.remove(&self.started);
        if let Some(entry) = live.by_age.get_mut(&self.slot.id) {
            entry.requests.remove(&self.started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed_out(a: &mut Admitted) -> Option<PushedOut> {
        a.pushed_out.try_recv().ok()
    }

    /// A request in progress on `a`, its answer unsent.
    fn unsent(a: &Admitted) -> InRequest {
        let request = a.slot().start();
        request.unsent();
        request
    }

    #[test]
    fn the_oldest_idle_connection_makes_room_and_requests_in_progress_are_kept() {
        let connections = Connections::new(3, 3);
        let mut first = connections.admit();
        let mut second = connections.admit();
        let mut third = connections.admit();
        let serving = first.slot().start();
        let mut fourth = connections.admit();
        assert_eq!(
            pushed_out(&mut first),
            None,
            "a request in progress is kept"
        );
        assert_eq!(pushed_out(&mut second), Some(PushedOut::Idle));
        assert_eq!(pushed_out(&mut third), None);
        drop(serving);
        let _fifth = connections.admit();
        assert_eq!(
            pushed_out(&mut first),
            Some(PushedOut::Idle),
            "now the oldest"
        );
        assert!(pushed_out(&mut third).is_none() && pushed_out(&mut fourth).is_none());
        assert_eq!(connections.lock().by_age.len(), 3);
    }

    #[test]
    fn with_every_connection_busy_the_oldest_makes_room() {
        let connections = Connections::new(2, 2);
        let mut first = connections.admit();
        let second = connections.admit();
        let _a = unsent(&first);
        let _b = unsent(&second);
        let _third = connections.admit();
        assert_eq!(pushed_out(&mut first), Some(PushedOut::Idle));
        let live = connections.lock();
        assert_eq!(live.by_age.len(), 2, "the cap holds");
        assert_eq!(live.unsent.len(), 1, "the pushed-out answer went with it");
    }

    #[test]
    fn a_connection_that_ends_frees_its_place() {
        let connections = Connections::new(2, 2);
        let mut first = connections.admit();
        let second = connections.admit();
        drop(second);
        let _third = connections.admit();
        assert_eq!(pushed_out(&mut first), None, "room was free");
    }

    #[test]
    fn past_the_limit_a_new_answer_pushes_out_the_oldest_unsent_one() {
        let connections = Connections::new(10, 2);
        let mut first = connections.admit();
        let mut second = connections.admit();
        let mut third = connections.admit();
        let _a = unsent(&first);
        let b = unsent(&second);
        // Requests waiting for their answers hold nothing and push out nobody.
        let mut waiting: Vec<Admitted> = (0..5).map(|_| connections.admit()).collect();
        let _in_progress: Vec<InRequest> = waiting.iter().map(|a| a.slot().start()).collect();
        assert_eq!(pushed_out(&mut first), None);
        let _c = unsent(&third);
        assert_eq!(pushed_out(&mut first), Some(PushedOut::Unsent));
        assert!(pushed_out(&mut second).is_none() && pushed_out(&mut third).is_none());
        drop(b);
        let mut fourth = connections.admit();
        let _d = unsent(&fourth);
        assert_eq!(pushed_out(&mut third), None, "a finished answer made room");
        assert_eq!(pushed_out(&mut fourth), None);
        assert!(waiting.iter_mut().all(|a| pushed_out(a).is_none()));
        assert_eq!(connections.lock().unsent.len(), 2);
    }

    #[test]
    fn answers_side_by_side_on_one_connection_are_each_counted() {
        let connections = Connections::new(10, 3);
        let mut multiplexed = connections.admit();
        let mut other = connections.admit();
        let first = unsent(&multiplexed);
        let _second = unsent(&multiplexed);
        drop(first);
        let _third = unsent(&other);
        let _fourth = unsent(&multiplexed);
        assert_eq!(
            pushed_out(&mut multiplexed),
            None,
            "three unsent, the limit"
        );
        let _fifth = unsent(&other);
        assert_eq!(pushed_out(&mut multiplexed), Some(PushedOut::Unsent));
        assert_eq!(pushed_out(&mut other), None);
        assert_eq!(
            connections.lock().unsent.len(),
            2,
            "both of its answers went"
        );
    }

    #[test]
    fn a_request_ending_after_its_connection_was_pushed_out_changes_nothing() {
        let connections = Connections::new(1, 1);
        let first = connections.admit();
        let request = unsent(&first);
        let mut second = connections.admit();
        let _b = unsent(&second);
        drop(request);
        drop(first);
        assert_eq!(pushed_out(&mut second), None);
        let live = connections.lock();
        assert_eq!((live.by_age.len(), live.unsent.len()), (1, 1));
    }
}
