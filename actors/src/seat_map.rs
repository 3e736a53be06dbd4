//! Seat state of one event: which seats are available, held or sold, with
//! per-row and per-section counts kept current so that summaries are O(1)
//! and best-available searches skip rows (and whole depths of rows) that
//! hold no block long enough, without looking at seats.

use std::sync::Arc;

use onsale_schema::message::{Area, SectionSeats, SectionSummary};
use onsale_schema::venue::Venue;
use onsale_schema::{HoldId, OrderId, PriceLevelIdx, RowIdx, SeatIdx, SectionIdx, limits};

/// Longest-run buckets per depth: 0..=`HOLD_SEATS_MAX`, the last meaning
/// "at least that long" (no request asks for more).
const RUN_BUCKETS: usize = limits::HOLD_SEATS_MAX + 1;

fn run_bucket(run: u32) -> usize {
    (run as usize).min(RUN_BUCKETS - 1)
}

/// One seat's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeatState {
    Available,
    Held(HoldId),
    Sold(OrderId),
}

/// Seat states of one event over its venue.
#[derive(Clone, Debug)]
pub struct SeatMap {
    venue: Arc<Venue>,
    states: Vec<SeatState>,
    row_available: Vec<u32>,
    /// Longest run of adjacent available seats in each row. Recomputed for
    /// a row (≤ `ROW_SEATS_MAX` seats) whenever one of its seats changes.
    row_run: Vec<u32>,
    /// For each depth (row rank within its section), how many rows there
    /// have each longest run (bucketed): best-available skips a depth with
    /// no row long enough in O(`RUN_BUCKETS`), and a full venue costs a
    /// walk over depths rather than over every row.
    depth_runs: Vec<[u32; RUN_BUCKETS]>,
    section_available: Vec<u32>,
    /// (min, max) price per section, fixed by the venue.
    section_prices: Vec<(u64, u64)>,
    /// The deepest section's row count, for best-available ordering.
    rows_deepest: u32,
    held: u32,
    sold: u32,
}

impl SeatMap {
    #[must_use]
    pub fn new(venue: Arc<Venue>) -> SeatMap {
        let row_available = venue.rows.iter().map(|r| r.seats.len() as u32).collect();
        let section_available = venue
            .sections
            .iter()
            .map(|s| s.seats.len() as u32)
            .collect();
        let section_prices = venue
            .sections
            .iter()
            .map(|s| {
                let prices = s.seats.clone().map(|i| venue.price_cents(SeatIdx(i)));
                let (lo, hi) = prices.fold((u64::MAX, 0), |(lo, hi), p| (lo.min(p), hi.max(p)));
                (lo, hi)
            })
            .collect();
        let rows_deepest = venue
            .sections
            .iter()
            .map(|s| s.rows.len() as u32)
            .max()
            .unwrap_or(0);
        let row_run: Vec<u32> = venue.rows.iter().map(|r| r.seats.len() as u32).collect();
        let mut depth_runs = vec![[0; RUN_BUCKETS]; rows_deepest as usize];
        for (row, run) in row_run.iter().enumerate() {
            depth_runs[depth_of(&venue, RowIdx(row as u32))][run_bucket(*run)] += 1;
        }
        SeatMap {
            states: vec![SeatState::Available; venue.seats.len()],
            row_available,
            row_run,
            depth_runs,
            section_available,
            section_prices,
            rows_deepest,
            held: 0,
            sold: 0,
            venue,
        }
    }

    #[must_use]
    pub fn venue(&self) -> &Arc<Venue> {
        &self.venue
    }

    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.states.len() as u32
    }

    #[must_use]
    pub fn held(&self) -> u32 {
        self.held
    }

    #[must_use]
    pub fn sold(&self) -> u32 {
        self.sold
    }

    /// Tickets neither sold nor held.
    #[must_use]
    pub fn available(&self) -> u32 {
        self.capacity() - self.sold - self.held
    }

    #[must_use]
    pub fn state(&self, seat: SeatIdx) -> Option<SeatState> {
        self.states.get(seat.0 as usize).copied()
    }

    /// The seats of `seats` that are not available (unknown seats count as
    /// taken; callers check indices first).
    #[must_use]
    pub fn taken(&self, seats: &[SeatIdx]) -> Vec<SeatIdx> {
        seats
            .iter()
            .copied()
            .filter(|s| self.state(*s) != Some(SeatState::Available))
            .collect()
    }

    /// Mark available seats held. Panics (an invariant) if one is not.
    pub fn hold(&mut self, seats: &[SeatIdx], hold: HoldId) {
        for &seat in seats {
            self.transition(seat, SeatState::Available, SeatState::Held(hold));
            self.count_available(seat, -1);
        }
        self.refresh_runs(seats);
        self.held += seats.len() as u32;
    }

    /// Put held seats back on sale.
    pub fn release(&mut self, seats: &[SeatIdx], hold: HoldId) {
        for &seat in seats {
            self.transition(seat, SeatState::Held(hold), SeatState::Available);
            self.count_available(seat, 1);
        }
        self.refresh_runs(seats);
        self.held -= seats.len() as u32;
    }

    /// Turn held seats into sold ones.
    pub fn sell(&mut self, seats: &[SeatIdx], hold: HoldId, order: OrderId) {
        for &seat in seats {
            self.transition(seat, SeatState::Held(hold), SeatState::Sold(order));
        }
        self.held -= seats.len() as u32;
        self.sold += seats.len() as u32;
    }

    /// Mark available seats sold directly (restoring orders from a snapshot).
    pub fn restore_sold(&mut self, seats: &[SeatIdx], order: OrderId) {
        for &seat in seats {
            self.transition(seat, SeatState::Available, SeatState::Sold(order));
            self.count_available(seat, -1);
        }
        self.refresh_runs(seats);
        self.sold += seats.len() as u32;
    }

    fn transition(&mut self, seat: SeatIdx, from: SeatState, to: SeatState) {
        let state = &mut self.states[seat.0 as usize];
        assert_eq!(*state, from, "seat {seat} is not in the expected state");
        *state = to;
    }

    fn count_available(&mut self, seat: SeatIdx, delta: i32) {
        let row = self.venue.row_of(seat);
        let section = self.venue.row(row).section;
        let r = &mut self.row_available[row.0 as usize];
        *r = r.checked_add_signed(delta).expect("row count in range");
        let s = &mut self.section_available[section.0 as usize];
        *s = s.checked_add_signed(delta).expect("section count in range");
    }

    /// Recompute the longest run of each row that `seats` touch (once per
    /// row for the sorted or contiguous lists holds use).
    fn refresh_runs(&mut self, seats: &[SeatIdx]) {
        let mut last = None;
        for &seat in seats {
            let row = self.venue.row_of(seat);
            if last != Some(row) {
                self.refresh_run(row);
                last = Some(row);
            }
        }
    }

    fn refresh_run(&mut self, row: RowIdx) {
        let run = self.longest_run(row);
        let old = std::mem::replace(&mut self.row_run[row.0 as usize], run);
        let depth = &mut self.depth_runs[depth_of(&self.venue, row)];
        depth[run_bucket(old)] -= 1;
        depth[run_bucket(run)] += 1;
    }

    fn longest_run(&self, row: RowIdx) -> u32 {
        let (mut run, mut longest) = (0, 0);
        for seat in self.venue.row(row).seats.clone() {
            if self.states[seat as usize] == SeatState::Available {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        longest
    }

    /// Whether some row at `depth` may hold `count` adjacent seats.
    fn depth_may_hold(&self, depth: u32, count: u32) -> bool {
        self.depth_runs[depth as usize][run_bucket(count)..]
            .iter()
            .any(|rows| *rows > 0)
    }

    #[must_use]
    pub fn section_summary(&self, section: SectionIdx) -> SectionSummary {
        let s = &self.venue.sections[section.0 as usize];
        let (price_min_cents, price_max_cents) = self.section_prices[section.0 as usize];
        SectionSummary {
            section,
            seats: s.seats.len() as u32,
            available: self.section_available[section.0 as usize],
            price_min_cents,
            price_max_cents,
        }
    }

    #[must_use]
    pub fn section_seats(&self, section: SectionIdx) -> Option<SectionSeats> {
        let s = self.venue.section(section)?;
        let count = s.seats.len() as u32;
        let mut available = vec![0u8; count.div_ceil(8) as usize];
        for (i, seat) in s.seats.clone().enumerate() {
            if self.states[seat as usize] == SeatState::Available {
                available[i / 8] |= 1 << (i % 8);
            }
        }
        Some(SectionSeats {
            section,
            first_seat: SeatIdx(s.seats.start),
            seat_count: count,
            available,
        })
    }

    /// The best `count` adjacent available seats in `area`: the front-most
    /// row (rows are ranked by depth within their section, so the front rows
    /// of every section come before any second row), then the block nearest
    /// the row's centre. `None` if the area names nothing or has no block.
    #[must_use]
    pub fn best_block(&self, count: u32, area: Area) -> Option<Vec<SeatIdx>> {
        let (sections, level) = match area {
            Area::Section { section } => {
                self.venue.section(section)?;
                (section.0 as usize..section.0 as usize + 1, None)
            }
            Area::PriceLevel { price_level } => {
                self.venue.price_levels.get(price_level.0 as usize)?;
                (0..self.venue.sections.len(), Some(price_level))
            }
            Area::Anywhere => (0..self.venue.sections.len(), None),
        };
        for depth in 0..self.rows_deepest {
            if !self.depth_may_hold(depth, count) {
                continue;
            }
            for section in sections.clone() {
                let rows = &self.venue.sections[section].rows;
                let Some(row) = rows.clone().nth(depth as usize) else {
                    continue;
                };
                let row = RowIdx(row);
                let seats = &self.venue.row(row).seats;
                let centre = seats.start + (seats.len() as u32).saturating_sub(count) / 2;
                if let Some(block) = self.block_in_row(row, count, centre, level) {
                    return Some(block);
                }
            }
        }
        None
    }

    /// The available block of `count` adjacent seats nearest to `near`, in
    /// `near`'s section: its own row first, then rows at growing distance.
    #[must_use]
    pub fn nearest_block(&self, count: u32, near: SeatIdx) -> Option<Vec<SeatIdx>> {
        let row = self.venue.row_of(near);
        let section = &self.venue.sections[self.venue.row(row).section.0 as usize];
        let offset_in_row = near.0 - self.venue.row(row).seats.start;
        let rows = section.rows.clone();
        let here = row.0;
        for distance in 0..rows.len() as u32 {
            for candidate in [here.checked_sub(distance), here.checked_add(distance)] {
                let Some(candidate) = candidate.filter(|r| rows.contains(r)) else {
                    continue;
                };
                if distance == 0 && candidate != here {
                    continue;
                }
                let seats = &self.venue.row(RowIdx(candidate)).seats;
                let target = seats.start + offset_in_row.min(seats.len() as u32 - 1);
                if let Some(block) = self.block_in_row(RowIdx(candidate), count, target, None) {
                    return Some(block);
                }
                if distance == 0 {
                    break;
                }
            }
        }
        None
    }

    /// The block of `count` available seats in `row` whose first seat is
    /// nearest to seat index `target`, optionally all at one price level.
    fn block_in_row(
        &self,
        row: RowIdx,
        count: u32,
        target: u32,
        level: Option<PriceLevelIdx>,
    ) -> Option<Vec<SeatIdx>> {
        if count == 0 || self.row_run[row.0 as usize] < count {
            return None;
        }
        let seats = self.venue.row(row).seats.clone();
        let usable = |seat: u32| {
            self.states[seat as usize] == SeatState::Available
                && level.is_none_or(|l| self.venue.seats[seat as usize].price_level == l)
        };
        let mut best: Option<(u32, u32)> = None; // (distance, start)
        let mut run_start = seats.start;
        for seat in seats.start..=seats.end {
            if seat < seats.end && usable(seat) {
                continue;
            }
            // A run of usable seats is [run_start, seat).
            if seat - run_start >= count {
                let start = target.clamp(run_start, seat - count);
                let distance = start.abs_diff(target);
                if best.is_none_or(|(d, _)| distance < d) {
                    best = Some((distance, start));
                }
            }
            run_start = seat + 1;
        }
        best.map(|(_, start)| (start..start + count).map(SeatIdx).collect())
    }

    /// Check the counts against the states (for tests and the simulator).
    pub fn check(&self) -> Result<(), String> {
        let mut held = 0;
        let mut sold = 0;
        let mut rows = vec![0u32; self.row_available.len()];
        let mut sections = vec![0u32; self.section_available.len()];
        for (i, state) in self.states.iter().enumerate() {
            match state {
                SeatState::Available => {
                    let row = self.venue.row_of(SeatIdx(i as u32));
                    rows[row.0 as usize] += 1;
                    sections[self.venue.row(row).section.0 as usize] += 1;
                }
                SeatState::Held(_) => held += 1,
                SeatState::Sold(_) => sold += 1,
            }
        }
        if held != self.held || sold != self.sold {
            return Err(format!(
                "seat counts held {}/{held} sold {}/{sold} disagree with states",
                self.held, self.sold
            ));
        }
        if rows != self.row_available || sections != self.section_available {
            return Err("per-row or per-section availability disagrees with states".into());
        }
        let mut depth_runs = vec![[0; RUN_BUCKETS]; self.depth_runs.len()];
        for (row, run) in self.row_run.iter().enumerate() {
            let row = RowIdx(row as u32);
            if *run != self.longest_run(row) {
                return Err(format!(
                    "longest available run of {row} disagrees with states"
                ));
            }
            depth_runs[depth_of(&self.venue, row)][run_bucket(*run)] += 1;
        }
        if depth_runs != self.depth_runs {
            return Err("per-depth longest runs disagree with the rows".into());
        }
        Ok(())
    }
}

/// A row's rank within its section, front row 0.
fn depth_of(venue: &Venue, row: RowIdx) -> usize {
    let section = venue.row(row).section;
    (row.0 - venue.sections[section.0 as usize].rows.start) as usize
}
