//! The targets and when each runs next: one priority queue of slots instead of a sleeping task
//! per target.
//!
//! A task per target cost about 700 bytes while it slept (the task's cell, its timer entry and
//! its future), a quarter of what an idle target cost. Here an idle target is a slot (its
//! target, its first regular slot, the run in flight if any) and one entry in a binary heap; a
//! task exists only while a run does.
//!
//! A slot freed by a reload keeps counting generations, so that the heap's entry of a target
//! that left (or changed) is recognised as stale when it comes due, and a run that finishes
//! after its target left does not queue it again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Target;

/// A slot's place in the queue: which target, and which of the targets it has held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    slot: u32,
    generation: u32,
}

/// A run that is due: its target, when it was scheduled, and the target's first regular slot.
pub struct Due {
    pub ticket: Ticket,
    pub target: Arc<Target>,
    pub scheduled: Instant,
    pub first: Instant,
}

#[derive(Default)]
pub struct Queue {
    slots: Vec<Slot>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Entries in the heap of targets that left while idle: they go when they come due, or all
    /// at once when they outnumber the others (frequent reloads of long intervals).
    stale: usize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    held: Option<Held>,
}

struct Held {
    target: Arc<Target>,
    /// The first regular slot; the others follow every interval.
    first: Instant,
    /// The run in flight (from when it came due until it is queued again), which a reload or a
    /// stop cancels.
    running: Option<JoinHandle<()>>,
}

impl Queue {
    /// Holds `target`, due first at `first`.
    pub fn insert(&mut self, target: Arc<Target>, first: Instant) -> Ticket {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 targets")
        });
        let slot = &mut self.slots[index as usize];
        slot.held = Some(Held {
            target,
            first,
            running: None,
        });
        self.heap.push(Reverse((first, index, slot.generation)));
        Ticket::new(index, slot.generation)
    }

    /// Lets the target of `ticket` go; its run in flight, if any, is the caller's to cancel.
    pub fn remove(&mut self, ticket: Ticket) -> Option<JoinHandle<()>> {
        let slot = self.held(ticket)?;
        let running = slot.held.take().and_then(|held| held.running);
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(ticket.slot);
        if running.is_none() {
            // Idle, so its entry is in the heap; a running one has none until it is requeued.
            self.stale += 1;
            if self.stale > self.heap.len() / 2 {
                let slots = &self.slots;
                self.heap.retain(|Reverse((_, index, generation))| {
                    slots[*index as usize].holds(*generation)
                });
                self.stale = 0;
            }
        }
        running
    }

    /// Lets every target go, returning their runs in flight.
    pub fn clear(&mut self) -> Vec<JoinHandle<()>> {
        let slots = std::mem::take(self).slots;
        slots
            .into_iter()
            .filter_map(|slot| slot.held?.running)
            .collect()
    }

    /// Starts the next run due at or before `now`, if there is one: takes it off the queue and
    /// marks its target as running with the task `start` spawns for it. Entries of targets that
    /// left are dropped on the way.
    pub fn start_due(&mut self, now: Instant, start: impl FnOnce(Due) -> JoinHandle<()>) -> bool {
        loop {
            let Some(&Reverse((at, index, generation))) = self.heap.peek() else {
                return false;
            };
            if at > now {
                return false;
            }
            self.heap.pop();
            let ticket = Ticket::new(index, generation);
            let Some(slot) = self.held(ticket) else {
                self.stale = self.stale.saturating_sub(1);
                continue;
            };
            let held = slot.held.as_mut().expect("held() checked it");
            let due = Due {
                ticket,
                target: Arc::clone(&held.target),
                scheduled: at,
                first: held.first,
            };
            // A held target has an entry in the heap or a run in flight, never both.
            debug_assert!(held.running.is_none(), "a running target came due");
            held.running = Some(start(due));
            return true;
        }
    }

    /// When the next run is due, if any target is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Queues the target of `ticket` again, its run over, due at `at`; a target that left
    /// meanwhile stays gone. Whether it is now the first due, which the driver must know.
    pub fn requeue(&mut self, ticket: Ticket, at: Instant) -> bool {
        let Some(held) = self.held(ticket).and_then(|slot| slot.held.as_mut()) else {
            return false;
        };
        // The handle of the task calling this: dropping it detaches, it does not cancel. A
        // target that is not running has its entry already, and a second would run it twice.
        if held.running.take().is_none() {
            return false;
        }
        self.heap
            .push(Reverse((at, ticket.slot, ticket.generation)));
        self.next_due() == Some(at)
    }

    /// The slot of `ticket`, if it still holds that target.
    fn held(&mut self, ticket: Ticket) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(ticket.slot as usize)?;
        slot.holds(ticket.generation).then_some(slot)
    }
}

impl Slot {
    /// Whether the slot still holds the target it held in `generation`.
    fn holds(&self, generation: u32) -> bool {
        self.generation == generation && self.held.is_some()
    }
}

impl Ticket {
    fn new(slot: u32, generation: u32) -> Self {
        Ticket { slot, generation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::config::{self, LoadOptions};

    fn targets(names: &[&str]) -> Vec<Arc<Target>> {
        let mut yaml = String::from("targets:\n");
        for name in names {
            yaml.push_str(&format!(
                "  - {{name: {name}, type: tcp, host: 127.0.0.1, port: 9}}\n"
            ));
        }
        config::parse(&yaml, "t.yml", &LoadOptions::default())
            .unwrap()
            .targets
    }

    /// Takes every run due at `now`, with a task that does nothing, and names their targets.
    fn take_due(queue: &mut Queue, now: Instant) -> Vec<(String, Ticket)> {
        let mut taken = Vec::new();
        while queue.start_due(now, |due| {
            taken.push((due.target.name.clone(), due.ticket));
            tokio::spawn(async {})
        }) {}
        taken
    }

    #[tokio::test]
    async fn runs_come_due_in_time_order_and_only_when_queued_again() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut queue = Queue::default();
        for (target, at) in targets(&["a", "b", "c"]).into_iter().zip([30, 10, 20]) {
            queue.insert(target, ms(at));
        }
        assert_eq!(queue.next_due(), Some(ms(10)));
        let due = take_due(&mut queue, ms(20));
        let names: Vec<&str> = due.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(queue.next_due(), Some(ms(30)));
        // A running target is not due again until its run queues it.
        assert!(take_due(&mut queue, ms(25)).is_empty());
        assert!(!queue.requeue(due[0].1, ms(40)), "a stays first");
        assert!(queue.requeue(due[1].1, ms(5)), "c is due first now");
        assert!(
            !queue.requeue(due[1].1, ms(1)),
            "c is queued already: no second entry"
        );
        assert_eq!(queue.heap.len(), 3);
        let names: Vec<String> = take_due(&mut queue, ms(40))
            .into_iter()
            .map(|d| d.0)
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[tokio::test]
    async fn a_target_that_left_never_comes_due_and_its_slot_serves_the_next() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        let mut given = targets(&["gone", "stays", "new"]).into_iter();
        let (gone, stays, new) = (
            given.next().unwrap(),
            given.next().unwrap(),
            given.next().unwrap(),
        );
        queue.insert(gone, t0);
        queue.insert(stays, t0 + Duration::from_millis(1));
        let running = take_due(&mut queue, t0);
        assert_eq!(running[0].0, "gone");
        let ticket = running[0].1;
        assert!(
            queue.remove(ticket).is_some(),
            "its run in flight is handed back"
        );
        assert!(queue.remove(ticket).is_none(), "gone already");
        // The run that finishes after its target left does not bring it back.
        assert!(!queue.requeue(ticket, t0));
        let reused = queue.insert(new, t0 + Duration::from_millis(2));
        assert_eq!(
            reused.slot, ticket.slot,
            "the freed slot serves the next target"
        );
        assert!(
            !queue.requeue(ticket, t0),
            "the old ticket is not the new target's"
        );
        let due = take_due(&mut queue, t0 + Duration::from_secs(1));
        let names: Vec<&str> = due.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["stays", "new"]);
        assert_eq!(queue.clear().len(), 2);
        assert_eq!(queue.next_due(), None);
    }

    #[tokio::test]
    async fn entries_of_idle_targets_that_left_go_once_they_outnumber_the_others() {
        let t0 = Instant::now();
        let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut queue = Queue::default();
        let tickets: Vec<Ticket> = targets(&names)
            .into_iter()
            .map(|t| queue.insert(t, t0 + Duration::from_secs(3600)))
            .collect();
        for (removed, ticket) in tickets[..5].iter().enumerate() {
            assert!(queue.remove(*ticket).is_none(), "idle: no run to cancel");
            assert_eq!(queue.heap.len(), 10, "after {} removals", removed + 1);
        }
        queue.remove(tickets[5]);
        assert_eq!(queue.heap.len(), 4, "six stale of ten: swept");
        assert_eq!(queue.stale, 0);
        let due = take_due(&mut queue, t0 + Duration::from_secs(3600));
        let names: Vec<&str> = due.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["t6", "t7", "t8", "t9"]);
    }
}
