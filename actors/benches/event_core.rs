//! Throughput of the event core, single thread, against its targets:
//!
//! - joins: ≥ 5,000,000 joins/s (`join/*`);
//! - sales: ≥ 1,000,000 hold → pay → sell cycles/s on the 60,000-seat
//!   venue (`sell/*`);
//! - snapshots of that venue with 1,000,000 fans queued: ≤ 1 MB encoded
//!   and encode + decode ≤ 20 ms (`snapshot/*`; sizes are printed once);
//! - queue tokens, for the record (`token/*`).
//!
//! Cores are built in `with_inputs`, so construction is never timed. The
//! timed loops drain effects after every input, as a shell would, and
//! confirm counter blocks at once (a store that is durable instantly).
//!
//! Fan ids are scrambled 64-bit values, as an identity provider would hand
//! out, and `now` is Unix-epoch milliseconds: both make hashing and
//! snapshot varints as costly as in production.
//!
//! Run: `cargo bench -p onsale-actors --bench event_core`.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock};

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use onsale_actors::testing::grid_venue;
use onsale_actors::{Effect, EventCore};
use onsale_schema::message::{Area, HoldRequest, PaymentSettled, ProviderAnswer, SaleCommand};
use onsale_schema::snapshot::EventSnapshot;
use onsale_schema::token::{self, QueueClaims, TokenKey};
use onsale_schema::venue::Venue;
use onsale_schema::{EventConfig, EventId, FanId, Millis, SeatIdx, limits};

fn main() {
    // Load the venue and count best-two sales before divan prints its table.
    LazyLock::force(&STADIUM);
    LazyLock::force(&sell::BEST_CYCLES);
    snapshot::build_all();
    divan::main();
}

/// A plausible wall-clock `now` (Unix-epoch ms, late 2025).
const NOW: Millis = Millis(1_764_000_000_000);

/// The 60,000-seat stadium from `venues/`, or a 60,000-seat grid if the
/// file is not there.
static STADIUM: LazyLock<Arc<Venue>> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../venues/stadium.json");
    match std::fs::read(path) {
        Ok(bytes) => {
            let venue = Venue::from_json(&bytes).expect("venues/stadium.json is a valid venue");
            eprintln!("[venue] venues/stadium.json: {} seats", venue.seat_count());
            Arc::new(venue)
        }
        Err(_) => {
            let venue = grid_venue(40, 30, 50);
            eprintln!(
                "[venue] venues/stadium.json missing: grid 40x30x50, {} seats",
                venue.seat_count()
            );
            venue
        }
    }
});

/// A venue so small that admission stops at once, but with enough seats
/// (2,000) that 1,000,000 waiting fans stay under `full_factor` 1000.
static SMALL: LazyLock<Arc<Venue>> = LazyLock::new(|| grid_venue(1, 20, 100));

/// Every adjacent pair of seats in every row of the stadium, front to back.
static PAIRS: LazyLock<Vec<[SeatIdx; 2]>> = LazyLock::new(|| {
    STADIUM
        .rows
        .iter()
        .flat_map(|row| {
            let seats = row.seats.clone();
            seats
                .clone()
                .step_by(2)
                .filter(move |s| s + 1 < seats.end)
                .map(|s| [SeatIdx(s), SeatIdx(s + 1)])
        })
        .collect()
});

/// Fan `i`, as an identity provider would name it (splitmix64 of `i`).
fn fan(i: u64) -> FanId {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    FanId(z ^ (z >> 31))
}

/// A config where neither "full" nor a counter block interferes.
fn config(shoppers_max: u32) -> EventConfig {
    EventConfig {
        full_factor: 1_000,
        shoppers_max,
        counter_block: 10_000_000,
        ..EventConfig::default()
    }
}

/// A core plus what a shell would track of it: admitted fans in order.
struct Shell {
    core: EventCore,
    admitted: VecDeque<FanId>,
}

impl Shell {
    fn new(venue: &Arc<Venue>, shoppers_max: u32) -> Shell {
        let core = EventCore::new(EventId(1), Arc::clone(venue), config(shoppers_max), NOW)
            .expect("bench config is valid");
        let mut shell = Shell {
            core,
            admitted: VecDeque::new(),
        };
        shell.settle();
        shell
    }

    /// Drain effects: confirm counter blocks, note admissions.
    fn settle(&mut self) {
        loop {
            let mut ceiling = None;
            for effect in self.core.drain_effects() {
                match effect {
                    Effect::ReserveCounter { ceiling: c } => ceiling = Some(c),
                    Effect::Journal(record) => {
                        for (fan, _, _) in record.entry.admissions() {
                            self.admitted.push_back(fan);
                        }
                    }
                    _ => {}
                }
            }
            match ceiling {
                Some(c) => self.core.counter_durable(c),
                None => return,
            }
        }
    }

    fn join(&mut self, fans: std::ops::Range<u64>) {
        for i in fans {
            self.core.join(fan(i), NOW).expect("bench join is accepted");
            self.settle();
        }
    }

    fn open(&mut self) {
        self.core
            .sale_command(SaleCommand::Open, NOW)
            .expect("sale opens");
        self.settle();
    }

    /// The next admitted fan holds `request` and, unless `pay` is false,
    /// pays and is confirmed. Returns false if the hold was refused.
    fn buy(&mut self, request: &HoldRequest, pay: bool) -> bool {
        let fan = self.admitted.pop_front().expect("a fan is admitted");
        let Ok(placed) = self.core.hold(fan, request, NOW) else {
            self.admitted.push_front(fan);
            return false;
        };
        self.settle();
        if pay {
            let started = self
                .core
                .submit_payment(fan, placed.hold, NOW)
                .expect("payment starts");
            self.settle();
            let settled =
                self.core
                    .provider_answer(started.payment, ProviderAnswer::Confirmed, NOW);
            assert!(
                matches!(settled, PaymentSettled::Sold { .. }),
                "{settled:?}"
            );
            self.settle();
        }
        true
    }

    /// Sell in parties of up to `party` (best available, anywhere) until
    /// `seats_left` remain unsold and unheld.
    fn sell_until(&mut self, party: u8, seats_left: u32) {
        while self.core.seats().available() > seats_left {
            let fair = 1 + self.core.seats().available() - self.core.shopping();
            let mut count = party.min(u8::try_from(fair).unwrap_or(u8::MAX));
            while !self.buy(&best(count), true) {
                count -= 1;
                assert!(count > 0, "no single seat left to buy");
            }
        }
    }
}

fn best(count: u8) -> HoldRequest {
    HoldRequest::Best {
        count,
        area: Area::Anywhere,
    }
}

/// Drop every effect, as a shell that has handled them would.
fn drain(core: &mut EventCore) {
    core.drain_effects().for_each(drop);
}

// ----- joins ---------------------------------------------------------------

mod join {
    use super::*;

    const FANS: u64 = 1_000_000;

    fn bench_joins(bencher: Bencher<'_, '_>, make: impl Fn() -> Shell) {
        bencher
            .counter(ItemsCount::new(FANS))
            .with_inputs(make)
            .bench_local_refs(|shell| {
                let core = &mut shell.core;
                for i in 0..FANS {
                    let joined = core.join(fan(i), NOW);
                    black_box(joined).expect("join accepted");
                    for effect in core.drain_effects() {
                        // The block is 10M: one is never due within 1M joins.
                        assert!(!matches!(effect, Effect::ReserveCounter { .. }));
                    }
                }
            });
    }

    /// Fans queue before the sale opens: no admissions at all.
    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn scheduled_stadium(bencher: Bencher<'_, '_>) {
        bench_joins(bencher, || Shell::new(&STADIUM, 5_000));
    }

    /// On sale, shopper cap 1 already reached: every join tries to admit
    /// and stops at once.
    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn on_sale_capped(bencher: Bencher<'_, '_>) {
        bench_joins(bencher, || {
            let mut shell = Shell::new(&SMALL, 1);
            shell.open();
            shell
        });
    }
}

// ----- hold → pay → sell ---------------------------------------------------

mod sell {
    use super::*;

    /// An on-sale stadium with one admitted fan per adjacent pair of seats.
    /// A fan may hold 1 + available − shopping seats; with at most one fan
    /// per two seats that stays ≥ 2 for every fan to the last.
    fn admitted_stadium() -> (EventCore, Vec<FanId>) {
        let fans = PAIRS.len() as u32;
        assert!(
            2 * fans <= STADIUM.seat_count(),
            "fair share lets every fan hold two"
        );
        assert!(fans <= limits::SHOPPERS_MAX, "all of them shop at once");
        let mut shell = Shell::new(&STADIUM, fans);
        shell.join(0..u64::from(fans));
        shell.open();
        assert_eq!(shell.admitted.len(), fans as usize);
        (shell.core, shell.admitted.into())
    }

    /// One hold → pay → sell cycle, draining effects after each input.
    /// False (and nothing sold) if the hold is refused.
    fn try_cycle(core: &mut EventCore, fan: FanId, request: &HoldRequest) -> bool {
        let Ok(placed) = core.hold(fan, request, NOW) else {
            drain(core);
            return false;
        };
        drain(core);
        let started = core
            .submit_payment(fan, placed.hold, NOW)
            .expect("payment starts");
        drain(core);
        let settled = core.provider_answer(started.payment, ProviderAnswer::Confirmed, NOW);
        assert!(matches!(settled, PaymentSettled::Sold { .. }));
        drain(core);
        true
    }

    fn cycle(core: &mut EventCore, fan: FanId, request: &HoldRequest) {
        assert!(try_cycle(core, fan, request), "hold placed");
    }

    /// How many best-two cycles succeed before best-available finds no
    /// adjacent pair (centring leaves some single seats that pairs in
    /// `PAIRS` would not). The core is deterministic, so this is the
    /// same in every sample.
    pub(crate) static BEST_CYCLES: LazyLock<usize> = LazyLock::new(|| {
        let (mut core, fans) = admitted_stadium();
        let cycles = fans
            .iter()
            .take_while(|fan| try_cycle(&mut core, **fan, &best(2)))
            .count();
        eprintln!(
            "[sell] best-two sells {cycles} pairs ({} seats) before no adjacent pair is left; exact pairs: {}",
            cycles * 2,
            PAIRS.len()
        );
        cycles
    });

    /// Every fan names two adjacent seats; the venue sells through.
    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn exact_pairs(bencher: Bencher<'_, '_>) {
        let requests: Vec<HoldRequest> = PAIRS
            .iter()
            .map(|pair| HoldRequest::Seats {
                seats: pair.to_vec(),
            })
            .collect();
        bencher
            .counter(ItemsCount::new(PAIRS.len()))
            .with_inputs(admitted_stadium)
            .bench_local_refs(|(core, fans)| {
                for (fan, request) in fans.iter().zip(&requests) {
                    cycle(core, *fan, request);
                }
            });
    }

    /// Every fan asks for the best two anywhere, until no adjacent pair
    /// is left. The search walks rows front to back, so it slows as the
    /// venue fills.
    #[divan::bench(sample_count = 5, sample_size = 1)]
    fn best_pairs(bencher: Bencher<'_, '_>) {
        let cycles = *BEST_CYCLES;
        let request = best(2);
        bencher
            .counter(ItemsCount::new(cycles))
            .with_inputs(admitted_stadium)
            .bench_local_refs(|(core, fans)| {
                for fan in &fans[..cycles] {
                    cycle(core, *fan, &request);
                }
            });
    }

    /// Best-two cycles with `percent` of those best-two sales already
    /// made: the cost of the search at that stage of the sale.
    #[divan::bench(args = [0, 50, 90], sample_count = 5, sample_size = 1)]
    fn best_pairs_when_sold(bencher: Bencher<'_, '_>, percent: usize) {
        let before = *BEST_CYCLES * percent / 100;
        let cycles = (*BEST_CYCLES - before).min(2_000);
        let request = best(2);
        bencher
            .counter(ItemsCount::new(cycles))
            .with_inputs(|| {
                let (mut core, fans) = admitted_stadium();
                for fan in &fans[..before] {
                    cycle(&mut core, *fan, &request);
                }
                (core, fans[before..before + cycles].to_vec())
            })
            .bench_local_refs(|(core, fans)| {
                for fan in fans.iter() {
                    cycle(core, *fan, &request);
                }
            });
    }
}

// ----- snapshots -------------------------------------------------------------

mod snapshot {
    use super::*;

    const QUEUED: u64 = 1_000_000;

    /// Half the stadium sold in pairs, 1,000 holds open (half of them
    /// paying), 5,000 fans shopping (half of them entered), the rest of
    /// the 1,000,000 fans waiting.
    static HALF_SOLD: LazyLock<EventCore> = LazyLock::new(|| {
        let mut shell = Shell::new(&STADIUM, 5_000);
        shell.join(0..QUEUED);
        shell.open();
        shell.sell_until(2, STADIUM.seat_count() / 2);
        for _ in 0..1_000 {
            assert!(shell.buy(&best(2), false), "hold placed");
        }
        pay_half_the_holds(&mut shell);
        for fan in shell
            .admitted
            .iter()
            .step_by(2)
            .copied()
            .collect::<Vec<_>>()
        {
            shell.core.enter(fan, NOW);
        }
        shell.settle();
        report("half sold", &shell.core);
        shell.core
    });

    /// Submit payment for every other open hold (found through a snapshot:
    /// set-up only).
    fn pay_half_the_holds(shell: &mut Shell) {
        let holds = shell.core.snapshot().holds;
        for h in holds.iter().step_by(2) {
            shell
                .core
                .submit_payment(h.fan, h.hold, NOW)
                .expect("payment starts");
            shell.settle();
        }
    }

    /// Sold out in parties of two (singles once fair share forces them),
    /// after 1,000,000 fans joined (sold out sends the waiting ones away).
    static SOLD_OUT_PAIRS: LazyLock<EventCore> = LazyLock::new(|| sold_out("sold out, pairs", 2));

    /// Sold out in parties of one: the most orders, the largest snapshot.
    static SOLD_OUT_SINGLES: LazyLock<EventCore> =
        LazyLock::new(|| sold_out("sold out, singles", 1));

    fn sold_out(name: &str, party: u8) -> EventCore {
        let mut shell = Shell::new(&STADIUM, 5_000);
        shell.join(0..QUEUED);
        shell.open();
        shell.sell_until(party, 0);
        assert_eq!(shell.core.sale(), onsale_schema::SaleState::SoldOut);
        report(name, &shell.core);
        shell.core
    }

    /// Print the encoded size and shape once, outside any timing.
    fn report(name: &str, core: &EventCore) {
        let snapshot = core.snapshot();
        let bytes = snapshot.encode().expect("snapshot encodes");
        let orders = onsale_schema::codec::encode_record(&snapshot.orders).expect("orders encode");
        eprintln!(
            "[snapshot] {name}: {} bytes ({:.3} MB; orders {} bytes, {:.1} per order) — \
             {} orders, {} holds, {} shoppers, {} waiting, {} of {} seats sold",
            bytes.len(),
            bytes.len() as f64 / 1e6,
            orders.len(),
            orders.len() as f64 / snapshot.orders.len().max(1) as f64,
            snapshot.orders.len(),
            snapshot.holds.len(),
            snapshot.shoppers.len(),
            snapshot.waiting,
            core.seats().sold(),
            core.seats().capacity(),
        );
        // What the same state would take if fan ids were small and sale
        // times counted from the sale's start (spread over it, 100 ms per
        // order): how much of the size is varints of production-sized
        // numbers (random 64-bit fan ids, Unix-epoch times).
        let mut small = snapshot.clone();
        for (i, order) in small.orders.iter_mut().enumerate() {
            order.fan = FanId(i as u64 + 1);
            order.at = Millis(i as u64 * 100);
        }
        let small = small.encode().expect("snapshot encodes");
        eprintln!(
            "[snapshot] {name}: {} bytes if order fan ids were small and order times sale-relative",
            small.len()
        );
    }

    fn encoded(core: &EventCore) -> Vec<u8> {
        core.snapshot().encode().expect("snapshot encodes")
    }

    /// Build every case (and print its size) before divan prints its table.
    pub(crate) fn build_all() {
        for name in CASES {
            case(name);
        }
    }

    fn case(name: &str) -> &'static EventCore {
        match name {
            "half_sold" => &HALF_SOLD,
            "sold_out_pairs" => &SOLD_OUT_PAIRS,
            "sold_out_singles" => &SOLD_OUT_SINGLES,
            _ => unreachable!("unknown case {name}"),
        }
    }

    const CASES: [&str; 3] = ["half_sold", "sold_out_pairs", "sold_out_singles"];

    /// `snapshot()` + `encode`.
    #[divan::bench(args = CASES, sample_count = 20)]
    fn encode(bencher: Bencher<'_, '_>, name: &str) {
        let core = case(name);
        bencher.bench_local(|| encoded(black_box(core)));
    }

    /// `decode` alone.
    #[divan::bench(args = CASES, sample_count = 20)]
    fn decode(bencher: Bencher<'_, '_>, name: &str) {
        let bytes = encoded(case(name));
        bencher.bench_local(|| EventSnapshot::decode(black_box(&bytes)).expect("decodes"));
    }

    /// `snapshot()` + `encode` + `decode`: the ≤ 20 ms target.
    #[divan::bench(args = CASES, sample_count = 20)]
    fn round_trip(bencher: Bencher<'_, '_>, name: &str) {
        let core = case(name);
        bencher.bench_local(|| EventSnapshot::decode(&encoded(black_box(core))).expect("decodes"));
    }

    /// `Venue::digest` of the stadium, which a restore checks the
    /// snapshot against.
    #[divan::bench(sample_count = 20)]
    fn venue_digest(bencher: Bencher<'_, '_>) {
        bencher.bench_local(|| black_box(&*STADIUM).digest());
    }

    /// `EventCore::restore` from a decoded snapshot: the recovery cost
    /// (journal replay not included).
    #[divan::bench(args = CASES, sample_count = 20)]
    fn restore(bencher: Bencher<'_, '_>, name: &str) {
        let snapshot = case(name).snapshot();
        let venue = Arc::clone(&STADIUM);
        bencher.bench_local(|| {
            EventCore::restore(
                Arc::clone(&venue),
                black_box(&snapshot),
                snapshot.counter_ceiling,
            )
            .expect("restores")
        });
    }
}

// ----- tokens ----------------------------------------------------------------

mod token_bench {
    use super::*;

    fn claims() -> QueueClaims {
        QueueClaims {
            event: EventId(1),
            fan: fan(42),
            position: onsale_schema::Position(123_456),
            issued_at: NOW,
        }
    }

    #[divan::bench]
    fn sign(bencher: Bencher<'_, '_>) {
        let key = TokenKey::derive(b"bench");
        let claims = claims();
        bencher
            .counter(ItemsCount::new(1_usize))
            .bench_local(|| token::sign(black_box(&key), black_box(&claims)));
    }

    #[divan::bench]
    fn verify(bencher: Bencher<'_, '_>) {
        let key = TokenKey::derive(b"bench");
        let claims = claims();
        let text = token::sign(&key, &claims);
        bencher.counter(ItemsCount::new(1_usize)).bench_local(|| {
            token::verify(
                black_box(&key),
                black_box(&text),
                claims.event,
                claims.fan,
                NOW,
            )
            .expect("verifies")
        });
    }
}
