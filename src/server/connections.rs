//! The connections the endpoints serve, bounded without letting idle clients starve a scrape.
//!
//! A cap that makes new connections wait while it is full lets any client on the network take
//! every slot with connections that say nothing, and the scrape and the kubelet's health check
//! then wait behind them. So a new connection is always taken, and when the cap is reached the
//! one that has waited longest without a request in progress is closed instead: idle clients
//! only ever push out each other (and a kept-alive connection between scrapes, which Prometheus
//! simply opens again), while a request that has arrived is answered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The connections being served, oldest first.
pub struct Connections {
    cap: usize,
    live: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    next: u64,
    by_age: BTreeMap<u64, Entry>,
}

struct Entry {
    busy: Arc<AtomicBool>,
    close: oneshot::Sender<()>,
}

/// One admitted connection: says whether a request is in progress, learns when it is pushed
/// out, and leaves the set when dropped.
pub struct Admitted {
    id: u64,
    connections: Arc<Connections>,
    busy: Arc<AtomicBool>,
    /// Resolves when a newer connection pushed this one out.
    pub pushed_out: oneshot::Receiver<()>,
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            cap,
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
                .find(|(_, e)| !e.busy.load(Ordering::Acquire))
                .map(|(&id, _)| id);
            let victim = oldest_idle.or_else(|| live.by_age.keys().next().copied());
            if let Some(entry) = victim.and_then(|id| live.by_age.remove(&id)) {
                // Its task may have just ended on its own: then there is nobody to tell.
                let _ = entry.close.send(());
            }
        }
        let id = live.next;
        live.next += 1;
        let busy = Arc::new(AtomicBool::new(false));
        let (close, pushed_out) = oneshot::channel();
        live.by_age.insert(
            id,
            Entry {
                busy: Arc::clone(&busy),
                close,
            },
        );
        Admitted {
            id,
            connections: Arc::clone(self),
            busy,
            pushed_out,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // Nothing in the set can be left half-updated by a panic.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Admitted {
    /// The flag that says a request is in progress, for the connection's service to set through
    /// [`InRequest`].
    pub fn busy_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.busy)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.lock().by_age.remove(&self.id);
    }
}

/// A request in progress on a connection; the connection is idle again once it is dropped.
pub struct InRequest(Arc<AtomicBool>);

impl InRequest {
    /// Marks a request as in progress on the connection whose flag `busy` is.
    pub fn on(busy: &Arc<AtomicBool>) -> InRequest {
        busy.store(true, Ordering::Release);
        InRequest(Arc::clone(busy))
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
        let connections = Connections::new(3);
        let mut first = connections.admit();
        let mut second = connections.admit();
        let mut third = connections.admit();
        let serving = InRequest::on(&first.busy_flag());
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
        let connections = Connections::new(2);
        let mut first = connections.admit();
        let second = connections.admit();
        let _a = InRequest::on(&first.busy_flag());
        let _b = InRequest::on(&second.busy_flag());
        let _third = connections.admit();
        assert!(pushed_out(&mut first));
        assert_eq!(connections.lock().by_age.len(), 2, "the cap holds");
    }

    #[test]
    fn a_connection_that_ends_frees_its_place() {
        let connections = Connections::new(2);
        let mut first = connections.admit();
        let second = connections.admit();
        drop(second);
        let _third = connections.admit();
        assert!(!pushed_out(&mut first), "room was free");
    }
}
