//! The waiting room of one event: the position counter and the fans in line.
//!
//! Positions come from an in-memory counter that may only hand out
//! positions below its *durable ceiling*, a value the store has confirmed.
//! When the counter nears the ceiling it asks for the next block ahead of
//! time, so joins never wait on the store. After a crash the counter
//! restarts at the ceiling: gaps, never reuse.
//!
//! Fans who joined in this incarnation sit in `queue`, ascending by
//! construction. Fans who come back with a queue token (after a restart,
//! or to reclaim an earlier place) sit in `resumed`, ordered by position.
//! Admission takes the lower head of the two. Entries are removed lazily:
//! an entry whose fan is no longer waiting at that position is skipped.

use std::collections::{BTreeMap, VecDeque};

use onsale_schema::{FanId, Position};
use rustc_hash::FxHashMap;

/// Where a fan is, as far as the waiting room knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanState {
    /// In the pre-queue, without a position until the opening's draw
    /// (its entry's position is 0).
    PreQueued,
    Waiting,
    /// Admitted; its turn is tracked by the event core's shopper records.
    Admitted,
    /// Bought: the order's id (an event sells at most
    /// `limits::VENUE_SEATS_MAX` orders, so 32 bits keep an entry at 16
    /// bytes).
    Purchased {
        order: u32,
    },
    Expired,
    Left,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanEntry {
    pub position: Position,
    pub state: FanState,
}

#[derive(Clone, Debug)]
pub struct WaitingRoom {
    /// The next position to hand out.
    next: u64,
    /// Positions below this are durable in the store.
    ceiling: u64,
    /// A ceiling asked of the store and not yet confirmed.
    requested: Option<u64>,
    block: u64,
    fans: FxHashMap<FanId, FanEntry>,
    queue: VecDeque<(Position, FanId)>,
    resumed: BTreeMap<Position, FanId>,
    waiting: u64,
    pre_queued: u64,
}

impl WaitingRoom {
    /// A room whose counter starts at `ceiling` (1 for a new event) with
    /// nothing yet durable above it.
    #[must_use]
    pub fn new(ceiling: u64, block: u64) -> WaitingRoom {
        WaitingRoom {
            next: ceiling.max(1),
            ceiling: ceiling.max(1),
            requested: None,
            block,
            fans: FxHashMap::default(),
            queue: VecDeque::new(),
            resumed: BTreeMap::new(),
            waiting: 0,
            pre_queued: 0,
        }
    }

    #[must_use]
    pub fn fan(&self, fan: FanId) -> Option<FanEntry> {
        self.fans.get(&fan).copied()
    }

    #[must_use]
    pub fn fans_known(&self) -> usize {
        self.fans.len()
    }

    /// Fans waiting and known to this incarnation.
    #[must_use]
    pub fn waiting(&self) -> u64 {
        self.waiting
    }

    /// Fans in the pre-queue, waiting for the draw.
    #[must_use]
    pub fn pre_queued(&self) -> u64 {
        self.pre_queued
    }

    /// Add a fan to the pre-queue (it has no position until the draw).
    /// A fan already known is left as it is.
    pub fn pre_queue(&mut self, fan: FanId) {
        if self.fans.contains_key(&fan) {
            return;
        }
        self.fans.insert(
            fan,
            FanEntry {
                position: Position(0),
                state: FanState::PreQueued,
            },
        );
        self.pre_queued += 1;
    }

    /// The draw gave a pre-queued fan `position`, at or above the next
    /// position (so the line stays ascending), which the counter now
    /// skips: `waiting` puts it in line, else its turn is already over
    /// (a restore past its admission). A fan no longer pre-queued keeps
    /// what it has.
    pub fn place_drawn(&mut self, fan: FanId, position: Position, waiting: bool) {
        let Some(entry) = self.fans.get_mut(&fan) else {
            return;
        };
        if entry.state != FanState::PreQueued {
            return;
        }
        self.pre_queued -= 1;
        self.next = self.next.max(position.0 + 1);
        self.ceiling = self.ceiling.max(self.next);
        if waiting {
            *entry = FanEntry {
                position,
                state: FanState::Waiting,
            };
            self.waiting += 1;
            if self.queue.back().is_none_or(|(p, _)| *p < position) {
                self.queue.push_back((position, fan));
            } else {
                self.resumed.insert(position, fan);
            }
        } else {
            *entry = FanEntry {
                position,
                state: FanState::Expired,
            };
        }
    }

    /// The next position that would be handed out.
    #[must_use]
    pub fn next_position(&self) -> Position {
        Position(self.next)
    }

    #[must_use]
    pub fn ceiling(&self) -> Position {
        Position(self.ceiling)
    }

    /// A new ceiling to ask the store for, if one is due and none is asked.
    pub fn block_due(&mut self) -> Option<Position> {
        if self.requested.is_some() || self.ceiling - self.next > self.block / 2 {
            return None;
        }
        let wanted = self.ceiling + self.block;
        self.requested = Some(wanted);
        Some(Position(wanted))
    }

    /// The reservation asked for was not made; it may be asked again.
    pub fn block_failed(&mut self) {
        self.requested = None;
    }

    /// The store confirmed that no position below `ceiling` will be reused.
    pub fn block_durable(&mut self, ceiling: Position) {
        if self.requested.is_some_and(|r| r <= ceiling.0) {
            self.requested = None;
        }
        self.ceiling = self.ceiling.max(ceiling.0);
    }

    /// Add a new fan at the next position, if the durable ceiling allows.
    pub fn join(&mut self, fan: FanId) -> Option<Position> {
        if self.next >= self.ceiling {
            return None;
        }
        let position = Position(self.next);
        self.next += 1;
        self.fans.insert(
            fan,
            FanEntry {
                position,
                state: FanState::Waiting,
            },
        );
        self.queue.push_back((position, fan));
        self.waiting += 1;
        Some(position)
    }

    /// Put a fan (back) into line at a position it holds a token for.
    /// A fan already waiting further back moves up to it.
    pub fn resume(&mut self, fan: FanId, position: Position) {
        match self.fans.get_mut(&fan) {
            Some(entry) if entry.state == FanState::Waiting => {
                if position < entry.position {
                    entry.position = position;
                    self.resumed.insert(position, fan);
                }
            }
            Some(entry) if entry.state == FanState::Left => {
                *entry = FanEntry {
                    position: position.min(entry.position),
                    state: FanState::Waiting,
                };
                self.resumed.insert(entry.position, fan);
                self.waiting += 1;
            }
            Some(_) => {}
            None => {
                self.fans.insert(
                    fan,
                    FanEntry {
                        position,
                        state: FanState::Waiting,
                    },
                );
                self.resumed.insert(position, fan);
                self.waiting += 1;
            }
        }
    }

    /// Set a fan's state (inserting it if unknown, e.g. on restore).
    pub fn set(&mut self, fan: FanId, position: Position, state: FanState) {
        assert!(
            state != FanState::PreQueued,
            "fans join the pre-queue by `pre_queue`"
        );
        let old = self.fans.insert(fan, FanEntry { position, state });
        if old.is_some_and(|e| e.state == FanState::Waiting) {
            self.waiting -= 1;
        }
        if old.is_some_and(|e| e.state == FanState::PreQueued) {
            self.pre_queued -= 1;
        }
        if state == FanState::Waiting {
            self.waiting += 1;
        }
    }

    /// The waiting fan with the lowest position, without removing it.
    pub fn peek_next(&mut self) -> Option<(Position, FanId)> {
        loop {
            let queued = self.queue.front().copied();
            let resumed = self.resumed.first_key_value().map(|(p, f)| (*p, *f));
            let head = match (queued, resumed) {
                (Some(q), Some(r)) => q.min(r),
                (Some(q), None) => q,
                (None, Some(r)) => r,
                (None, None) => return None,
            };
            if self.is_waiting_at(head) {
                return Some(head);
            }
            self.pop_head(head);
        }
    }

    /// Remove the fan `peek_next` returned from the line (it was admitted).
    pub fn take_next(&mut self, head: (Position, FanId)) {
        self.pop_head(head);
    }

    fn pop_head(&mut self, head: (Position, FanId)) {
        if self.queue.front() == Some(&head) {
            self.queue.pop_front();
        } else {
            self.resumed.remove(&head.0);
        }
    }

    fn is_waiting_at(&self, (position, fan): (Position, FanId)) -> bool {
        self.fans
            .get(&fan)
            .is_some_and(|e| e.state == FanState::Waiting && e.position == position)
    }

    /// Everyone still waiting leaves (sold out, closed). Returns how many.
    pub fn clear_waiting(&mut self) -> u64 {
        let cleared = self.waiting;
        for (_, fan) in self
            .queue
            .drain(..)
            .chain(std::mem::take(&mut self.resumed))
        {
            if let Some(entry) = self.fans.get_mut(&fan)
                && entry.state == FanState::Waiting
            {
                entry.state = FanState::Left;
            }
        }
        self.waiting = 0;
        if self.pre_queued > 0 {
            for entry in self.fans.values_mut() {
                if entry.state == FanState::PreQueued {
                    entry.state = FanState::Left;
                }
            }
            self.pre_queued = 0;
        }
        cleared
    }

    /// Check the counts (for tests and the simulator).
    pub fn check(&self) -> Result<(), String> {
        let waiting = self
            .fans
            .values()
            .filter(|e| e.state == FanState::Waiting)
            .count() as u64;
        if waiting != self.waiting {
            return Err(format!(
                "waiting count {} but {waiting} fans wait",
                self.waiting
            ));
        }
        let pre_queued = self
            .fans
            .values()
            .filter(|e| e.state == FanState::PreQueued)
            .count() as u64;
        if pre_queued != self.pre_queued {
            return Err(format!(
                "pre-queue count {} but {pre_queued} fans are pre-queued",
                self.pre_queued
            ));
        }
        if self.next > self.ceiling {
            return Err(format!(
                "counter {} handed out positions above the durable ceiling {}",
                self.next, self.ceiling
            ));
        }
        for entry in self.fans.values() {
            if entry.state == FanState::Waiting && entry.position.0 >= self.next {
                return Err(format!(
                    "fan waits at {} not yet handed out",
                    entry.position
                ));
            }
        }
        Ok(())
    }
}
