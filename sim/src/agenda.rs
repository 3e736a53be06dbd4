//! The agenda: what happens next, in (time, sequence) order.
//!
//! A binary heap of `(time, seq, event)` holds the events of the current
//! time bucket (`BUCKET_MS` wide); events further ahead wait unsorted in
//! per-bucket vectors and are heapified when their bucket comes up. Ten
//! million fans retrying "later" then cost an append each, not a sift
//! through a heap of ten million. `seq` makes the order total: two events
//! at the same millisecond run in the order they were scheduled, on every
//! run.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// Width of one bucket of future events, in ms.
pub const BUCKET_MS: u64 = 1_024;

#[derive(Debug)]
struct Entry<E> {
    at: u64,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: the heap's top is the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events of type `E` scheduled at virtual milliseconds.
#[derive(Debug)]
pub struct Agenda<E> {
    /// Events of buckets up to `current`.
    heap: BinaryHeap<Entry<E>>,
    current: u64,
    later: BTreeMap<u64, Vec<Entry<E>>>,
    seq: u64,
    len: usize,
}

impl<E> Default for Agenda<E> {
    fn default() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
            current: 0,
            later: BTreeMap::new(),
            seq: 0,
            len: 0,
        }
    }
}

impl<E> Agenda<E> {
    pub fn push(&mut self, at: u64, event: E) {
        let entry = Entry {
            at,
            seq: self.seq,
            event,
        };
        self.seq += 1;
        self.len += 1;
        let bucket = at / BUCKET_MS;
        if bucket <= self.current {
            self.heap.push(entry);
        } else {
            self.later.entry(bucket).or_default().push(entry);
        }
    }

    /// When the earliest event is due.
    pub fn peek_time(&mut self) -> Option<u64> {
        self.fill();
        self.heap.peek().map(|e| e.at)
    }

    /// The earliest event, with its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.fill();
        let entry = self.heap.pop()?;
        self.len -= 1;
        Some((entry.at, entry.event))
    }

    /// Keep only the events `keep` accepts (one pass over everything).
    pub fn retain(&mut self, mut keep: impl FnMut(&E) -> bool) {
        self.heap.retain(|e| keep(&e.event));
        for entries in self.later.values_mut() {
            entries.retain(|e| keep(&e.event));
        }
        self.later.retain(|_, entries| !entries.is_empty());
        self.len = self.heap.len() + self.later.values().map(Vec::len).sum::<usize>();
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn fill(&mut self) {
        if !self.heap.is_empty() {
            return;
        }
        if let Some((bucket, entries)) = self.later.pop_first() {
            self.current = bucket;
            self.heap = BinaryHeap::from(entries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_in_time_then_schedule_order() {
        let mut agenda = Agenda::default();
        for (at, name) in [
            (5_000, "c"),
            (10, "a"),
            (5_000, "d"),
            (10, "b"),
            (99_999, "e"),
        ] {
            agenda.push(at, name);
        }
        assert_eq!(agenda.pop(), Some((10, "a")));
        agenda.push(20, "a2");
        agenda.push(3_000, "b2");
        let rest: Vec<_> = std::iter::from_fn(|| agenda.pop()).collect();
        assert_eq!(
            rest,
            [
                (10, "b"),
                (20, "a2"),
                (3_000, "b2"),
                (5_000, "c"),
                (5_000, "d"),
                (99_999, "e")
            ]
        );
        assert!(agenda.is_empty());
    }
}
