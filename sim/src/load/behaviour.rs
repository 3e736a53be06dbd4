//! Load fans that behave as a scenario says (`onsale-sim load --scenario`).
//!
//! The model is the engine's ([`crate::behaviour::Model`]); here it is
//! mapped onto a real event and onto the wall clock:
//!
//! - **Areas**: the scenario venue's sections are found in the event's
//!   `GET /api/events/{event}` by id (or name), and must have the same
//!   seats and price range there; price levels (cheapest, dearest) keep
//!   the venue file's numbering, so the event must be on the same venue.
//! - **Time**: every duration of the model (patience, reload intervals,
//!   show-up, shopping, checkout, retries, arrivals, storms) is multiplied
//!   by `--time-scale`, so a scenario's minutes can run in seconds. An
//!   event created from the scenario gets its windows scaled alike
//!   ([`scaled_config`]; the provider timeout no shorter than
//!   [`PROVIDER_TIMEOUT_MS_MIN`]); an event the driver did not create
//!   keeps its own. What does not scale is the real system: delivery,
//!   requests and the gateway's payment provider take the time they take,
//!   so at a small scale they weigh more against the scaled windows (club
//!   at × 0.05 gives a fan 1.5 s from admission to showing up).
//! - **Arrivals**: fans arrive along the scenario's curve (drawn over the
//!   run's `--fans`), scenario time 0 being its first possible arrival
//!   (the sale's opening, or the pre-queue's) at the start of the run.
//!   Storms break at their scenario time on the same clock.
//! - **Each fan's plan** is drawn up front from its own generator (the
//!   run's seed and the fan's index), in a fixed order, so it does not
//!   depend on timing; what is left of the generator jitters backoffs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use onsale_schema::api::EventDetail;
use onsale_schema::message::Area;
use onsale_schema::{EventConfig, SectionIdx, Venue};
use serde::{Deserialize, Serialize};

use crate::arrivals::Arrivals;
use crate::behaviour::{Areas, Model};
use crate::rng::Rng;
use crate::scenario::{Curve, Scenario};

/// Generator stream of the arrival curve (fans use their index as stream).
pub const ARRIVALS_STREAM: u64 = 1 << 63;
/// Smallest and largest `--time-scale`.
pub const TIME_SCALE_MIN: f64 = 1e-4;
pub const TIME_SCALE_MAX: f64 = 100.0;
/// A created event's provider timeout, at least: the gateway's payment
/// provider answers in real time (the simulated one within 2 s), so a
/// scaled timeout below this would void payments that are merely slow.
pub const PROVIDER_TIMEOUT_MS_MIN: u64 = 10_000;
/// Payments per fan (a declined payment is submitted again, if the fan
/// wants to, at most this many times in all).
pub const PAY_ATTEMPTS_MAX: u32 = 3;

/// What the coordinator tells each worker about the scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioPlan {
    /// The scenario file; each worker reads it.
    pub path: PathBuf,
    /// Wall-clock time = scenario time × this.
    pub time_scale: f64,
    /// The event's index of each of the scenario venue's sections.
    pub sections: Vec<u16>,
    /// Every fan of the run: the arrival curve is drawn over them all.
    pub fans: u64,
}

/// A worker's view of the scenario.
#[derive(Debug)]
pub struct Behaviour {
    pub scenario: Scenario,
    pub model: Model,
    pub time_scale: f64,
    /// Scenario time (ms) of the start of the run: the first possible
    /// arrival.
    pub origin_ms: u64,
    /// When each storm breaks, from the start of the run.
    pub storms_at: Vec<Duration>,
}

impl Behaviour {
    /// Read the scenario and map its venue's sections onto the event's.
    pub fn load(plan: &ScenarioPlan) -> anyhow::Result<Behaviour> {
        let scenario = Scenario::load(&plan.path)?;
        if plan.sections.len() != scenario.venue.sections.len() {
            bail!(
                "scenario {}: {} sections mapped, the venue has {}",
                plan.path.display(),
                plan.sections.len(),
                scenario.venue.sections.len()
            );
        }
        check_time_scale(plan.time_scale)?;
        let mut areas = Areas::of(&scenario.venue);
        areas.sections = plan.sections.iter().map(|s| SectionIdx(*s)).collect();
        let model = Model::new(&scenario.file, areas);
        let origin_ms = origin_ms(&scenario);
        let scale = plan.time_scale;
        let storms_at = scenario
            .file
            .storms
            .iter()
            .map(|s| scaled(((s.at_s * 1000.0) as u64).saturating_sub(origin_ms), scale))
            .collect();
        Ok(Behaviour {
            scenario,
            model,
            time_scale: scale,
            origin_ms,
            storms_at,
        })
    }

    /// A scenario duration in ms, on the wall clock.
    #[must_use]
    pub fn scaled(&self, ms: u64) -> Duration {
        scaled(ms, self.time_scale)
    }

    /// When fans `first .. first + count` of a run of `fans` arrive, from
    /// the start of the run.
    #[must_use]
    pub fn arrivals(&self, seed: u64, fans: u64, first: u64, count: u64) -> Vec<Duration> {
        arrival_offsets(&self.scenario, self.time_scale, seed, fans)
            .skip(first as usize)
            .take(count as usize)
            .collect()
    }

    /// One fan's plan, drawn from its generator.
    pub fn fan_plan(&self, rng: &mut Rng) -> FanPlan {
        let m = &self.model;
        let bot = m.is_bot(rng);
        let traits = m.traits(rng, bot);
        let patience = traits.impatient.then(|| self.scaled(m.patience_ms(rng)));
        let mut refreshes = Vec::new();
        if traits.refresher {
            for _ in 0..m.fans().refreshes_max {
                let after = self.scaled(m.refresh_after_ms(rng));
                refreshes.push((after, m.rejoins_plainly(rng)));
            }
        }
        let mut storms = Vec::new();
        for (storm, at) in self.scenario.file.storms.iter().zip(&self.storms_at) {
            if let Some(after) = m.storm_reload_after_ms(rng, storm) {
                storms.push((*at, *at + self.scaled(after)));
            }
        }
        storms.sort_by_key(|&(_, reload)| reload);
        let mut full_retries = Vec::new();
        while let Some(after) = m.full_retry_after_ms(rng, bot, full_retries.len() as u8) {
            full_retries.push(self.scaled(after));
        }
        let show_up = m.show_up_after_ms(rng, bot).map(|ms| self.scaled(ms));
        let shopping = self.scaled(m.shopping_ms(rng, bot));
        let area = m.area(rng, bot);
        let checkout = m.checkout_ms(rng, bot).map(|ms| self.scaled(ms));
        let mut pay_again = Vec::new();
        for _ in 1..PAY_ATTEMPTS_MAX {
            let again = m.pay_again_after_ms(rng, bot).map(|ms| self.scaled(ms));
            pay_again.push(again);
            if again.is_none() {
                break;
            }
        }
        FanPlan {
            bot,
            party: traits.party,
            area,
            opens_map: true,
            patience,
            refreshes,
            storms,
            full_retries,
            show_up,
            shopping,
            checkout,
            pay_again,
        }
    }
}

/// What one fan will do, drawn before it starts. Durations are on the
/// wall clock (scaled).
#[derive(Clone, Debug, PartialEq)]
pub struct FanPlan {
    /// A bot's account: the ticket limit, anywhere, no delays, always pays.
    pub bot: bool,
    /// Seats asked for first.
    pub party: u8,
    /// Where they are asked for first.
    pub area: Area,
    /// Sends `enter` (opens the seat map) after `show_up`, then shops.
    pub opens_map: bool,
    /// Leaves the line this long after joining, if still waiting.
    pub patience: Option<Duration>,
    /// Reloads while waiting, each this long after the previous one (or
    /// the join); `true`: a plain rejoin before the resume.
    pub refreshes: Vec<(Duration, bool)>,
    /// Storms it takes part in if waiting when they break: (breaks at,
    /// reloads at), from the start of the run, in reload order.
    pub storms: Vec<(Duration, Duration)>,
    /// After each "full", tries again this long after (then gives up).
    pub full_retries: Vec<Duration>,
    /// From admission to opening the seat map (`None`: never shows up).
    pub show_up: Option<Duration>,
    /// From opening the seat map to asking for seats.
    pub shopping: Duration,
    /// From holding to paying (`None`: never pays).
    pub checkout: Option<Duration>,
    /// After the n-th declined payment, pays again this long after
    /// (`None`: gives up).
    pub pay_again: Vec<Option<Duration>>,
}

impl FanPlan {
    /// Without a scenario: the best 1 or 2 seats anywhere, at once; pays
    /// at once, again after a decline (3 payments in all); never leaves.
    pub fn plain(rng: &mut Rng) -> FanPlan {
        let party = 1 + rng.below(2) as u8;
        FanPlan {
            bot: false,
            party,
            area: Area::Anywhere,
            opens_map: false,
            patience: None,
            refreshes: Vec::new(),
            storms: Vec::new(),
            full_retries: Vec::new(),
            show_up: Some(Duration::ZERO),
            shopping: Duration::ZERO,
            checkout: Some(Duration::ZERO),
            pay_again: vec![Some(Duration::ZERO); PAY_ATTEMPTS_MAX as usize - 1],
        }
    }
}

/// `ms` of scenario time on the wall clock.
#[must_use]
pub fn scaled(ms: u64, time_scale: f64) -> Duration {
    Duration::from_secs_f64(ms as f64 / 1000.0 * time_scale)
}

/// The scenario's `[event]` config with its windows scaled like the
/// fans' times: at least 1 ms, and the provider timeout at least
/// [`PROVIDER_TIMEOUT_MS_MIN`] (unless the scenario's is shorter).
#[must_use]
pub fn scaled_config(config: &EventConfig, time_scale: f64) -> EventConfig {
    // The event refuses windows outside 1 ms ..= 7 days (`EventConfig::check`).
    const WINDOW_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
    let scale = |ms: u64| ((ms as f64 * time_scale).round() as u64).clamp(1, WINDOW_MS_MAX);
    let provider_floor = PROVIDER_TIMEOUT_MS_MIN.min(config.provider_timeout_ms);
    EventConfig {
        show_up_window_ms: scale(config.show_up_window_ms),
        shopping_window_ms: scale(config.shopping_window_ms),
        checkout_window_ms: scale(config.checkout_window_ms),
        provider_timeout_ms: scale(config.provider_timeout_ms).max(provider_floor),
        ..config.clone()
    }
}

pub fn check_time_scale(time_scale: f64) -> anyhow::Result<()> {
    if !(TIME_SCALE_MIN..=TIME_SCALE_MAX).contains(&time_scale) {
        bail!("--time-scale: must be within {TIME_SCALE_MIN}..={TIME_SCALE_MAX}, got {time_scale}");
    }
    Ok(())
}

/// Scenario time of the first possible arrival.
#[must_use]
pub fn origin_ms(scenario: &Scenario) -> u64 {
    let opens_at_ms = scenario.file.sale.opens_at_s * 1000;
    match scenario.file.arrivals.curve {
        Curve::PreQueue { opens_before_s, .. } => {
            opens_at_ms.saturating_sub((opens_before_s * 1000.0) as u64)
        }
        Curve::Burst { .. } | Curve::Poisson { .. } => opens_at_ms,
    }
}

/// Every fan's arrival, from the start of the run, in fan order.
pub fn arrival_offsets(
    scenario: &Scenario,
    time_scale: f64,
    seed: u64,
    fans: u64,
) -> impl Iterator<Item = Duration> {
    let origin = origin_ms(scenario);
    let opens_at_ms = scenario.file.sale.opens_at_s * 1000;
    let mut arrivals = Arrivals::new(
        &scenario.file.arrivals.curve,
        fans,
        opens_at_ms,
        Rng::new(seed, ARRIVALS_STREAM),
    );
    std::iter::from_fn(move || arrivals.pop())
        .map(move |a| scaled(a.at_ms.saturating_sub(origin), time_scale))
}

/// The event's index of each of the venue's sections: by id, else by
/// name, with the same seat count and price range. An event on another
/// venue is refused (price levels are asked for by the venue's numbering).
pub fn map_sections(venue: &Venue, event: &EventDetail) -> anyhow::Result<Vec<u16>> {
    let mut mapped = Vec::with_capacity(venue.sections.len());
    for section in &venue.sections {
        let found = event
            .sections
            .iter()
            .find(|s| s.id == section.id)
            .or_else(|| event.sections.iter().find(|s| s.name == section.name))
            .with_context(|| {
                format!(
                    "the event has no section {:?} ({:?}) of the scenario's venue",
                    section.id, section.name
                )
            })?;
        let seats = section.seats.end - section.seats.start;
        let prices = section
            .seats
            .clone()
            .map(|s| venue.price_cents(onsale_schema::SeatIdx(s)));
        let (min, max) = prices.fold((u64::MAX, 0), |(lo, hi), p| (lo.min(p), hi.max(p)));
        if found.seats != seats || found.price_min_cents != min || found.price_max_cents != max {
            bail!(
                "section {:?}: the event has {} seats at {}..={} cents, the scenario's venue \
                 {seats} at {min}..={max}: the event is not on the scenario's venue",
                section.id,
                found.seats,
                found.price_min_cents,
                found.price_max_cents
            );
        }
        mapped.push(found.section.0);
    }
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn club() -> Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/club.toml");
        Scenario::load(&path).expect("club parses")
    }

    #[test]
    fn a_fans_plan_depends_on_its_seed_and_index_only() {
        let scenario = club();
        let behaviour = Behaviour {
            model: Model::new(&scenario.file, Areas::of(&scenario.venue)),
            origin_ms: origin_ms(&scenario),
            storms_at: Vec::new(),
            time_scale: 0.01,
            scenario,
        };
        let plan = |index| behaviour.fan_plan(&mut Rng::new(7, index));
        assert_eq!(plan(3), plan(3));
        let plans: Vec<FanPlan> = (0..2_000).map(plan).collect();
        let parties = |n| plans.iter().filter(|p| p.party == n).count();
        // club: party weights 0.3, 0.4, 0.15, 0.15; 1 % bots (4 tickets).
        assert!((500..700).contains(&parties(1)), "{}", parties(1));
        assert!((700..900).contains(&parties(2)), "{}", parties(2));
        let impatient = plans.iter().filter(|p| p.patience.is_some()).count();
        assert!((500..700).contains(&impatient), "{impatient}");
        // Shopping 10..=90 s, scaled by 0.01.
        assert!(plans.iter().filter(|p| !p.bot).all(|p| {
            p.shopping >= Duration::from_millis(100) && p.shopping <= Duration::from_millis(900)
        }));
        assert!(plans.iter().any(|p| matches!(p.area, Area::Section { .. })));
        assert!(plans.iter().any(|p| p.checkout.is_none()));
    }

    #[test]
    fn a_created_event_has_the_fans_windows_scaled() {
        let config = club().file.event;
        let scaled = scaled_config(&config, 0.02);
        assert_eq!(scaled.show_up_window_ms, 600);
        assert_eq!(scaled.shopping_window_ms, 3_600);
        assert_eq!(scaled.checkout_window_ms, 2_400);
        assert_eq!(scaled.provider_timeout_ms, 12_000);
        assert_eq!(scaled_config(&config, 0.001).provider_timeout_ms, 10_000);
        assert_eq!(scaled.shoppers_max, config.shoppers_max);
        assert!(scaled.check().is_ok());
        assert_eq!(scaled_config(&config, 1e-9).show_up_window_ms, 1);
        assert_eq!(scaled_config(&config, 1.0), config);
        // Slower than real time: windows grow, up to what an event allows.
        assert!(scaled_config(&config, 100.0).check().is_ok());
    }

    #[test]
    fn arrivals_follow_the_curve_scaled() {
        let scenario = club();
        let all: Vec<Duration> = arrival_offsets(&scenario, 0.01, 1, 1_000).collect();
        assert_eq!(all.len(), 1_000);
        assert!(all.windows(2).all(|w| w[0] <= w[1]));
        // A burst over 300 s (3 s scaled), half of it in the first 20 s.
        assert!(*all.last().unwrap() <= Duration::from_secs(3));
        assert!(all[499] <= Duration::from_millis(300), "{:?}", all[499]);
    }
}
