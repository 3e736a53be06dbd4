//! `OutputGate`: nothing an event says leaves before the journal records it
//! depends on are durable.
//!
//! A pure state machine (no async, no clock, no I/O), generic over what it
//! holds back: the event actor's replies, pushes, charges and refunds, the
//! simulator's answers to its fans.
//!
//! **Inputs.** [`push`](OutputGate::push)`(needs_seq, item)`: the shell
//! produced `item` when the journal had reached `needs_seq` (the sequence
//! of the last record produced so far, durable or not), so the item may
//! not leave before that record is durable.
//! [`durable`](OutputGate::durable)`(seq)`: every record up to `seq` is
//! durable. Reports may come out of order, twice, or lower than an earlier
//! one (a late or repeated commit report): the gate keeps the highest.
//!
//! **Output.** [`pop`](OutputGate::pop) gives the next item that may leave,
//! until there is none. The shell calls it after every input.
//!
//! **Ordering.** Items leave exactly once, in the order they were pushed,
//! and as soon as they may: an item leaves once its own `needs_seq` and
//! those of every item before it are durable. With `needs_seq` never
//! decreasing (the shell's journal only grows), an item waits only for its
//! own records: after `durable(seq)`, `pop` gives every item needing at
//! most `seq`, and the first item left behind needs more.
//!
//! **Capacity.** `len_max` items. The gate never refuses an item: an item
//! stands for an input the core has already applied, and refusing it would
//! lose what was decided. Instead the shell asks
//! [`is_full`](OutputGate::is_full) before it takes an input that would add
//! more, and refuses that input (the event actor answers `busy`). So the
//! gate holds at most `len_max` plus what one input produces.
//!
//! **Stopping.** When the journal writer stops (store failing, or fenced),
//! nothing waiting may ever be said: [`clear`](OutputGate::clear) drops it
//! all (and hands it back, for a simulator that accounts for it).

use std::collections::VecDeque;

/// Items held back until the journal records they depend on are durable.
#[derive(Debug)]
pub struct OutputGate<T> {
    /// In push order, each with the journal sequence it needs.
    waiting: VecDeque<(u64, T)>,
    /// Every record up to this one is durable.
    durable_seq: u64,
    len_max: usize,
}

impl<T> OutputGate<T> {
    /// An empty gate over a journal durable up to `durable_seq` (an event
    /// restored at sequence N starts with N). `len_max` is at least 1.
    #[must_use]
    pub fn new(durable_seq: u64, len_max: usize) -> Self {
        assert!(len_max > 0, "an output gate holds at least one item");
        Self {
            waiting: VecDeque::new(),
            durable_seq,
            len_max,
        }
    }

    /// `item` was produced with the journal at `needs_seq`: it leaves once
    /// that record (and every item pushed before it) may leave.
    pub fn push(&mut self, needs_seq: u64, item: T) {
        self.waiting.push_back((needs_seq, item));
    }

    /// Records up to `seq` are durable. A report lower than an earlier one
    /// changes nothing.
    pub fn durable(&mut self, seq: u64) {
        self.durable_seq = self.durable_seq.max(seq);
    }

    /// The next item that may leave, in push order; `None` while the oldest
    /// waiting item's records are not durable yet, or nothing waits.
    pub fn pop(&mut self) -> Option<T> {
        let (needs_seq, _) = self.waiting.front()?;
        if *needs_seq > self.durable_seq {
            return None;
        }
        self.waiting.pop_front().map(|(_, item)| item)
    }

    /// Drop everything waiting (the writer stopped: none of it may be
    /// said), in push order. The durable sequence stays.
    pub fn clear(&mut self) -> Vec<T> {
        self.waiting.drain(..).map(|(_, item)| item).collect()
    }

    /// Every record up to this one is durable (the highest report).
    #[must_use]
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// The journal sequence the oldest waiting item needs, if any waits.
    #[must_use]
    pub fn needs_seq(&self) -> Option<u64> {
        self.waiting.front().map(|(needs_seq, _)| *needs_seq)
    }

    /// Everything in the gate, oldest first (for accounting: what is said
    /// but not out yet).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.waiting.iter().map(|(_, item)| item)
    }

    /// Items in the gate, whether or not they may leave yet.
    #[must_use]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    #[must_use]
    pub fn len_max(&self) -> usize {
        self.len_max
    }

    /// At `len_max` or over: the shell refuses inputs that would add items.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.waiting.len() >= self.len_max
    }
}
