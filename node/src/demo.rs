//! The deterministic demo onsale (see `main.rs`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use onsale_actors::testing::Harness;
use onsale_schema::message::{
    Area, FanStatus, HoldRequest, JoinRefused, PaymentSettled, ProviderAnswer, SaleCommand,
};
use onsale_schema::{EventConfig, FanId, PaymentId, SaleState, SectionIdx, Venue};

const CLUB: &[u8] = include_bytes!("../../venues/club.json");
const SECOND_MS: u64 = 1_000;
const END_S: u64 = 20 * 60;
const SNAPSHOT_AT_S: u64 = 50;
const CRASH_AT_S: u64 = 75;

/// A tiny deterministic generator (SplitMix64): no dependency, same
/// numbers on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a fan does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Arrive,
    Poll,
    Answer(PaymentId),
}

#[derive(Default)]
struct Tally {
    full: u64,
    sold_out: u64,
    holds: u64,
    rejected: u64,
    declined: u64,
    expired_turns: u64,
}

pub fn run(fans: u64, seed: u64, out: &mut impl Write) -> anyhow::Result<()> {
    let venue = Arc::new(Venue::from_json(CLUB).context("embedded club venue")?);
    let config = EventConfig {
        shoppers_max: 150,
        show_up_window_ms: 30 * SECOND_MS,
        shopping_window_ms: 120 * SECOND_MS,
        checkout_window_ms: 90 * SECOND_MS,
        provider_timeout_ms: 300 * SECOND_MS,
        counter_block: 1_000,
        ..EventConfig::default()
    };
    let mut h = Harness::new(Arc::clone(&venue), config);
    let mut rng = Rng(seed);
    let mut agenda: BinaryHeap<Reverse<(u64, u64, Step)>> = BinaryHeap::new();
    for fan in 0..fans {
        // A flash crowd: most arrive in the first 20 s, a tail over 5 min.
        let at = if rng.below(10) < 8 {
            rng.below(20_000)
        } else {
            rng.below(300_000)
        };
        agenda.push(Reverse((at, fan, Step::Arrive)));
    }
    let start = h.now;
    let mut tally = Tally::default();
    writeln!(
        out,
        "onsale demo: {} ({} seats), {fans} fans, seed {seed}\n",
        venue.name,
        venue.seat_count()
    )?;
    writeln!(
        out,
        "{:>6}  {:<9} {:>8} {:>9} {:>8} {:>5} {:>5} {:>6} {:>9}  note",
        "t", "sale", "waiting", "admitted", "shopping", "held", "sold", "orders", "turned"
    )?;
    let _ = h.sale(SaleCommand::Open);
    let mut next_row_s = 0;
    for second in 0..=END_S {
        let now_ms = second * SECOND_MS;
        while let Some(Reverse((at, fan, step))) = agenda.peek().copied() {
            if at > now_ms {
                break;
            }
            agenda.pop();
            h.now = start.saturating_add_ms(at);
            act(
                &mut h,
                &mut rng,
                &mut agenda,
                &mut tally,
                at,
                FanId(fan),
                step,
            );
        }
        h.now = start.saturating_add_ms(now_ms);
        h.advance(0);
        let mut note = String::new();
        if second == SNAPSHOT_AT_S {
            h.snapshot();
            note = "snapshot stored".into();
        }
        if second == CRASH_AT_S {
            h.crash_and_restore();
            note =
                "CRASH: restored from snapshot + journal; waiting fans resume with tokens".into();
        }
        if second >= next_row_s
            || !note.is_empty()
            || (h.core.sale() == SaleState::SoldOut && agenda.is_empty())
        {
            row(out, &h, second, &tally, &note)?;
            next_row_s = second + 15;
        }
        if h.core.sale() == SaleState::SoldOut && second > CRASH_AT_S {
            row(out, &h, second, &tally, "sold out")?;
            break;
        }
    }
    let seats = h.core.seats();
    writeln!(
        out,
        "\n{} of {} seats sold in {} orders; {} holds placed, {} refused (seats taken, fair share or no adjacent block), \
         {} payments declined, {} turns lapsed; {} arrivals turned away as full, {} as sold out; \
         {} crash restored. Every invariant held after every step.",
        seats.sold(),
        seats.capacity(),
        h.core.orders().len(),
        tally.holds,
        tally.rejected,
        tally.declined,
        tally.expired_turns,
        tally.full,
        tally.sold_out,
        h.restores,
    )?;
    Ok(())
}

fn row(
    out: &mut impl Write,
    h: &Harness,
    second: u64,
    tally: &Tally,
    note: &str,
) -> anyhow::Result<()> {
    let o = h.core.overview();
    writeln!(
        out,
        "{:>5}s  {:<9} {:>8} {:>9} {:>8} {:>5} {:>5} {:>6} {:>9}  {note}",
        second,
        o.sale.as_str(),
        o.waiting,
        o.admitted_through.0,
        h.core.shopping(),
        o.held,
        o.sold,
        h.core.orders().len(),
        tally.full + tally.sold_out,
    )?;
    Ok(())
}

fn act(
    h: &mut Harness,
    rng: &mut Rng,
    agenda: &mut BinaryHeap<Reverse<(u64, u64, Step)>>,
    tally: &mut Tally,
    at: u64,
    fan: FanId,
    step: Step,
) {
    let mut later = |delay_ms: u64, step: Step| agenda.push(Reverse((at + delay_ms, fan.0, step)));
    match step {
        Step::Arrive => match h.join(fan) {
            Ok(_) => later(1_000 + rng.below(4_000), Step::Poll),
            Err(JoinRefused::Full) => tally.full += 1,
            Err(JoinRefused::SoldOut) => tally.sold_out += 1,
            Err(_) => {}
        },
        Step::Answer(payment) => {
            // One in ten payments is declined by the provider.
            let answer = if rng.below(10) == 0 {
                ProviderAnswer::Declined
            } else {
                ProviderAnswer::Confirmed
            };
            if let PaymentSettled::Declined { .. } = h.provider_answer(payment, answer) {
                tally.declined += 1;
            }
            later(2_000, Step::Poll);
        }
        Step::Poll => poll(h, rng, tally, fan, &mut later),
    }
}

fn poll(
    h: &mut Harness,
    rng: &mut Rng,
    tally: &mut Tally,
    fan: FanId,
    later: &mut impl FnMut(u64, Step),
) {
    let status = match h.core.status(fan) {
        Some(status) => status,
        // Forgotten by a crash: the fan's page resumes with its token.
        None => match h.resume(fan) {
            Some(Ok(joined)) => joined.status,
            _ => return,
        },
    };
    match status {
        FanStatus::PreQueued { .. } | FanStatus::Waiting { .. } => later(5_000, Step::Poll),
        FanStatus::Admitted { .. } => {
            // Some fans never show up; the rest pick seats after a while.
            if rng.below(20) == 0 {
                return;
            }
            h.enter(fan);
            let area = match rng.below(3) {
                0 => Area::Anywhere,
                _ => Area::Section {
                    section: SectionIdx(rng.below(4) as u16),
                },
            };
            let request = HoldRequest::Best {
                count: 1 + rng.below(4) as u8,
                area,
            };
            match h.hold(fan, &request) {
                Ok(_) => {
                    tally.holds += 1;
                    later(5_000 + rng.below(60_000), Step::Poll);
                }
                Err(_) => {
                    tally.rejected += 1;
                    later(3_000 + rng.below(5_000), Step::Poll);
                }
            }
        }
        FanStatus::Holding {
            hold,
            paying: false,
            ..
        } => {
            // One in twenty lets the checkout clock run out.
            if rng.below(20) == 0 {
                return;
            }
            if let Ok(started) = h.submit_payment(fan, hold) {
                later(1_000 + rng.below(8_000), Step::Answer(started.payment));
            }
        }
        FanStatus::Holding { paying: true, .. } => later(5_000, Step::Poll),
        FanStatus::Expired => tally.expired_turns += 1,
        FanStatus::Purchased { .. } | FanStatus::Left => {}
    }
}
