//! The fans' behaviour model: what a scenario's `[fans]`, `[bots]` and
//! `[[storms]]` tables mean, as draws from a generator.
//!
//! One model, two drivers: the deterministic [`engine`](crate::engine)
//! asks it in virtual time as each decision comes up, and
//! [load mode](crate::load) asks it up front for each fan (a fan's plan
//! must not depend on how the run's timing interleaves its draws). Each
//! function is one decision and draws from the generator it is given in a
//! fixed order, so the engine's outputs stay byte-identical and a load
//! fan's plan is a pure function of the seed and its index.
//!
//! Durations come back in milliseconds of scenario time; load mode scales
//! them (`--time-scale`).

use onsale_schema::message::{Area, HoldRejected};
use onsale_schema::{PriceLevelIdx, SectionIdx, Venue};

use crate::rng::Rng;
use crate::scenario::{BotsFile, FansFile, ScenarioFile, Span, StormFile};

/// After a declined payment, a fan that pays again does so within this
/// range (ms).
pub const PAY_AGAIN_AFTER_MS: (u64, u64) = (5_000, 30_000);
/// Share of periodic reloads that are a plain rejoin (a `join` from a page
/// that lost its queue token) rather than a resume with the token.
pub const PLAIN_REJOIN_SHARE: f64 = 0.5;

/// Uniform in `span` (in units of `unit_ms` each), in whole ms.
pub fn span_ms(rng: &mut Rng, span: Span, unit_ms: f64) -> u64 {
    let lo = (span.min * unit_ms) as u64;
    let hi = (span.max * unit_ms) as u64;
    rng.between(lo, hi.max(lo))
}

/// Where seats may be asked for, as the event numbers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Areas {
    /// The price level with the lowest price.
    pub cheapest: PriceLevelIdx,
    /// The price level with the highest price.
    pub dearest: PriceLevelIdx,
    /// The event's index of each of the venue's sections, in venue order.
    pub sections: Vec<SectionIdx>,
}

impl Areas {
    /// The venue's own numbering (the first cheapest and dearest level).
    #[must_use]
    pub fn of(venue: &Venue) -> Areas {
        let levels = &venue.price_levels;
        let by_price = |pick_max: bool| {
            let mut best = 0;
            for (i, level) in levels.iter().enumerate() {
                let better = if pick_max {
                    level.price_cents > levels[best].price_cents
                } else {
                    level.price_cents < levels[best].price_cents
                };
                if better {
                    best = i;
                }
            }
            PriceLevelIdx(best as u16)
        };
        Areas {
            cheapest: by_price(false),
            dearest: by_price(true),
            sections: (0..venue.sections.len())
                .map(|s| SectionIdx(s as u16))
                .collect(),
        }
    }
}

/// What a fan is, drawn once when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traits {
    /// Tickets it asks for.
    pub party: u8,
    /// Gives up waiting after a patience drawn by [`Model::patience_ms`].
    pub impatient: bool,
    /// Reloads its page while waiting, every [`Model::refresh_after_ms`].
    pub refresher: bool,
}

/// A scenario's fans and bots.
#[derive(Clone, Debug)]
pub struct Model {
    fans: FansFile,
    bots: BotsFile,
    tickets_max: u8,
    areas: Areas,
}

impl Model {
    /// The scenario's behaviour, asking for seats in `areas` (the venue's
    /// own numbering, [`Areas::of`], or the event's).
    #[must_use]
    pub fn new(scenario: &ScenarioFile, areas: Areas) -> Model {
        Model {
            fans: scenario.fans.clone(),
            bots: scenario.bots.clone(),
            tickets_max: scenario.event.tickets_per_fan_max,
            areas,
        }
    }

    #[must_use]
    pub fn fans(&self) -> &FansFile {
        &self.fans
    }

    #[must_use]
    pub fn bots(&self) -> &BotsFile {
        &self.bots
    }

    /// Whether an arrival is a bot.
    pub fn is_bot(&self, rng: &mut Rng) -> bool {
        rng.chance(self.bots.share)
    }

    /// A new fan account: bots ask for the ticket limit, never give up
    /// waiting and never reload.
    pub fn traits(&self, rng: &mut Rng, bot: bool) -> Traits {
        let fans = &self.fans;
        let party = if bot {
            self.tickets_max
        } else {
            1 + rng.weighted(&fans.party_size_weights) as u8
        };
        Traits {
            party,
            impatient: !bot && rng.chance(fans.impatient_share),
            refresher: !bot && rng.chance(fans.refresh_share),
        }
    }

    /// How long an impatient fan waits before it gives up (exponential).
    pub fn patience_ms(&self, rng: &mut Rng) -> u64 {
        rng.exponential(self.fans.patience_mean_s * 1000.0) as u64
    }

    /// Time to a refresher's next reload.
    pub fn refresh_after_ms(&self, rng: &mut Rng) -> u64 {
        span_ms(rng, self.fans.refresh_every_s, 1000.0)
    }

    /// Whether a periodic reload is a plain rejoin (else a resume with
    /// the queue token).
    pub fn rejoins_plainly(&self, rng: &mut Rng) -> bool {
        rng.chance(PLAIN_REJOIN_SHARE)
    }

    /// Whether a fan waiting when `storm` breaks reloads, and when
    /// (ms after the storm's start).
    pub fn storm_reload_after_ms(&self, rng: &mut Rng, storm: &StormFile) -> Option<u64> {
        let spread = (storm.spread_s * 1000.0) as u64;
        if !rng.chance(storm.share) {
            return None;
        }
        Some(rng.below(spread + 1))
    }

    /// After its `tries`-th "full", when a fan tries again (`None`: it
    /// gives up).
    pub fn full_retry_after_ms(&self, rng: &mut Rng, bot: bool, tries: u8) -> Option<u64> {
        let (max, span) = if bot {
            (self.bots.full_retries_max, self.bots.full_retry_after_s)
        } else {
            (self.fans.full_retries_max, self.fans.full_retry_after_s)
        };
        if tries >= max {
            return None;
        }
        Some(span_ms(rng, span, 1000.0))
    }

    /// From admission to opening the seat map (`None`: never shows up).
    pub fn show_up_after_ms(&self, rng: &mut Rng, bot: bool) -> Option<u64> {
        if bot {
            return Some(self.bots.react_ms);
        }
        if rng.chance(self.fans.no_show) {
            return None;
        }
        Some(span_ms(rng, self.fans.show_up_s, 1000.0))
    }

    /// Browsing from showing up to asking for seats.
    pub fn shopping_ms(&self, rng: &mut Rng, bot: bool) -> u64 {
        if bot {
            return self.bots.react_ms;
        }
        span_ms(rng, self.fans.shopping_s, 1000.0)
    }

    /// Where the fan asks for seats first (see [`settle_for_less`]).
    pub fn area(&self, rng: &mut Rng, bot: bool) -> Area {
        if bot {
            return Area::Anywhere;
        }
        let p = &self.fans.preference;
        match rng.weighted(&[p.anywhere, p.cheapest, p.dearest, p.section]) {
            0 => Area::Anywhere,
            1 => Area::PriceLevel {
                price_level: self.areas.cheapest,
            },
            2 => Area::PriceLevel {
                price_level: self.areas.dearest,
            },
            _ => {
                let sections = &self.areas.sections;
                Area::Section {
                    section: sections[rng.below(sections.len() as u64) as usize],
                }
            }
        }
    }

    /// From holding seats to submitting payment (`None`: never pays).
    pub fn checkout_ms(&self, rng: &mut Rng, bot: bool) -> Option<u64> {
        if bot {
            return Some(self.bots.react_ms);
        }
        if !rng.chance(self.fans.pay_probability) {
            return None;
        }
        Some(span_ms(rng, self.fans.checkout_s, 1000.0))
    }

    /// After a declined payment, when the fan pays again (`None`: it
    /// gives up).
    pub fn pay_again_after_ms(&self, rng: &mut Rng, bot: bool) -> Option<u64> {
        if bot {
            return Some(self.bots.react_ms);
        }
        let delay = rng.between(PAY_AGAIN_AFTER_MS.0, PAY_AGAIN_AFTER_MS.1);
        rng.chance(self.fans.pay_retry_probability).then_some(delay)
    }
}

/// A hold of `count` seats in `area` was refused: what a fan asks for
/// next, or `None` when it gives up (or the refusal is not about seats).
/// Over its fair share it asks for that share; with not enough seats it
/// widens to anywhere, then asks for one seat fewer.
#[must_use]
pub fn settle_for_less(count: u8, area: Area, rejected: &HoldRejected) -> Option<(u8, Area)> {
    match *rejected {
        HoldRejected::FairShare { max } if max > 0 && max < u32::from(count) => {
            Some((max as u8, area))
        }
        HoldRejected::NotEnoughSeats if area != Area::Anywhere => Some((count, Area::Anywhere)),
        HoldRejected::NotEnoughSeats if count > 1 => Some((count - 1, area)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_settle_for_anywhere_then_fewer_seats() {
        let section = Area::Section {
            section: SectionIdx(2),
        };
        let none = HoldRejected::NotEnoughSeats;
        assert_eq!(
            settle_for_less(3, section, &none),
            Some((3, Area::Anywhere))
        );
        assert_eq!(
            settle_for_less(3, Area::Anywhere, &none),
            Some((2, Area::Anywhere))
        );
        assert_eq!(settle_for_less(1, Area::Anywhere, &none), None);
        let share = HoldRejected::FairShare { max: 2 };
        assert_eq!(settle_for_less(4, section, &share), Some((2, section)));
        assert_eq!(settle_for_less(2, section, &share), None);
        assert_eq!(settle_for_less(2, section, &HoldRejected::SoldOut), None);
    }
}
