//! A deadline queue that runs every SIP timer of one actor (RFC 3261 §17.1.1.2, §17.1.2.2,
//! §17.2.1, §17.2.2 and Table 4 of Appendix A need timers A–K per transaction).
//!
//! The queue is sans-IO: it never reads the clock. The owner passes `Instant`s in, asks for the
//! [`TimerQueue::next_deadline`] to sleep until, and then calls [`TimerQueue::pop_due`].
//! Cancellation is lazy: a cancelled timer's payload is dropped at once, its heap entry is skipped
//! later, and the heap is compacted when dead entries outnumber live ones.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Handle of one scheduled timer, returned by [`TimerQueue::schedule`] so it can be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

/// Deadlines for many timers in one actor: O(log n) insert, lazy cancellation, pop due ones.
///
/// Timers with equal deadlines fire in the order they were scheduled.
#[derive(Debug)]
pub struct TimerQueue<T> {
    /// Min-heap of (deadline, id); may hold entries of cancelled timers, but never on top.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Payloads of the live timers.
    live: HashMap<u64, T>,
    /// Next id to hand out; ids are never reused.
    next_id: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerQueue<T> {
    /// Creates an empty queue.
    pub fn new() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            live: HashMap::new(),
            next_id: 0,
        }
    }

    /// Arms a timer that becomes due at `at`; O(log n).
    pub fn schedule(&mut self, at: Instant, payload: T) -> TimerId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.heap.push(Reverse((at, id)));
        self.live.insert(id, payload);
        TimerId(id)
    }

    /// Cancels a pending timer and returns its payload, or `None` if it already fired or was
    /// cancelled. Amortised O(log n): the heap entry is only dropped when it reaches the top or
    /// when a compaction runs (after at least half of the entries died).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let payload = self.live.remove(&id.0)?;
        self.drop_dead_top();
        self.compact_if_sparse();
        Some(payload)
    }

    /// Removes and returns all timers due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<(TimerId, T)> {
        let mut due = Vec::new();
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(payload) = self.live.remove(&id) {
                due.push((TimerId(id), payload));
            }
        }
        self.drop_dead_top();
        due
    }

    /// The deadline of the earliest live timer, to know how long the actor may sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        // Invariant kept by every `&mut self` method: the top of the heap is live.
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Number of live (scheduled, not yet fired or cancelled) timers.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no live timer is pending.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Pops cancelled entries off the top so that `next_deadline` only sees live timers.
    fn drop_dead_top(&mut self) {
        while let Some(Reverse((_, id))) = self.heap.peek() {
            if self.live.contains_key(id) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Rebuilds the heap without dead entries once they outnumber the live ones.
    fn compact_if_sparse(&mut self) {
        let dead = self.heap.len().saturating_sub(self.live.len());
        if dead > self.live.len() {
            let live = &self.live;
            self.heap.retain(|Reverse((_, id))| live.contains_key(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.schedule(t0 + ms(300), "c");
        q.schedule(t0 + ms(100), "a");
        q.schedule(t0 + ms(200), "b");
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_deadline(), Some(t0 + ms(100)));
        let due: Vec<&str> = q
            .pop_due(t0 + ms(250))
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(due, vec!["a", "b"]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_deadline(), Some(t0 + ms(300)));
        assert!(q.pop_due(t0 + ms(299)).is_empty());
        let due: Vec<&str> = q
            .pop_due(t0 + ms(300))
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(due, vec!["c"]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn equal_deadlines_pop_in_schedule_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.schedule(t0 + ms(10), 'a');
        let b = q.schedule(t0 + ms(10), 'b');
        let c = q.schedule(t0 + ms(10), 'c');
        let early = q.schedule(t0 + ms(5), 'e');
        assert_eq!(
            q.pop_due(t0 + ms(10)),
            vec![(early, 'e'), (a, 'a'), (b, 'b'), (c, 'c')]
        );
    }

    #[test]
    fn cancel_returns_payload_once_and_skips_the_timer() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.schedule(t0 + ms(10), 1);
        let b = q.schedule(t0 + ms(20), 2);
        assert_eq!(q.cancel(a), Some(1));
        assert_eq!(q.cancel(a), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(t0 + ms(30)), vec![(b, 2)]);
        // A fired timer can no longer be cancelled.
        assert_eq!(q.cancel(b), None);
        assert!(q.is_empty());
    }

    #[test]
    fn next_deadline_skips_cancelled_timers() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.schedule(t0 + ms(10), ());
        let b = q.schedule(t0 + ms(20), ());
        q.schedule(t0 + ms(30), ());
        // Cancelling a timer that is not on top leaves the earliest deadline alone.
        q.cancel(b);
        assert_eq!(q.next_deadline(), Some(t0 + ms(10)));
        q.cancel(a);
        assert_eq!(q.next_deadline(), Some(t0 + ms(30)));
    }

    #[test]
    fn cancelling_the_earliest_of_many_moves_next_deadline() {
        // Few dead entries, so no compaction hides a stale top.
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let first = q.schedule(t0 + ms(10), ());
        for i in 2..=5 {
            q.schedule(t0 + ms(10 * i), ());
        }
        q.cancel(first);
        assert_eq!(q.next_deadline(), Some(t0 + ms(20)));
        assert_eq!(q.len(), 4);
    }

    #[test]
    fn compaction_keeps_live_timers() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let ids: Vec<TimerId> = (0..100u64).map(|i| q.schedule(t0 + ms(i), i)).collect();
        // Cancel every timer but the multiples of 10, from the back so the top stays live.
        for (i, id) in ids.iter().enumerate().rev() {
            if i % 10 != 0 {
                assert_eq!(q.cancel(*id), Some(i as u64));
            }
        }
        assert_eq!(q.len(), 10);
        assert!(q.heap.len() <= 2 * q.len(), "heap was not compacted");
        let fired: Vec<u64> = q
            .pop_due(t0 + ms(1000))
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(fired, vec![0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    }

    #[test]
    fn ids_are_not_reused() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let a = q.schedule(t0, 'a');
        q.cancel(a);
        let b = q.schedule(t0, 'b');
        assert_ne!(a, b);
        // Cancelling the stale id must not remove the new timer.
        assert_eq!(q.cancel(a), None);
        assert_eq!(q.pop_due(t0), vec![(b, 'b')]);
    }
}
