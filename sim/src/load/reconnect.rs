//! When a fan tries its connection again after it broke: a doubling wait
//! with jitter, bounded in attempts and in time.
//!
//! Pure: the caller says how long it has been since the connection broke
//! and hands in the fan's generator; nothing here reads a clock, sleeps or
//! touches a socket. The jitter comes from the fan's own generator (the
//! run's seed and the fan's index), so a run's waits replay from its seed
//! as far as the real gateway's timing lets them.
//!
//! Used for a websocket that dropped while the fan waited or paid (it
//! opens a new one and watches with its queue token) and for an HTTP
//! request whose connection was refused or broke (sent again on a new
//! connection, if it is safe to send twice).

use std::time::Duration;

use crate::rng::Rng;

/// A bounded, jittered, doubling backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first step; each attempt doubles it.
    pub first: Duration,
    /// The step stops doubling here.
    pub step_max: Duration,
    /// Attempts after one break, at most.
    pub attempts_max: u32,
    /// No wait ends later than this after the break: past it, give up.
    pub within: Duration,
}

impl Backoff {
    /// A fan whose connection to the gateway broke. A gateway restarted on
    /// a small store serves about 20 ms after its process starts (the
    /// crash test in `tests/tests/load_driver.rs`); 30 s lets a slow
    /// restart, a big store's restore or a failover to another node
    /// through (a lease expires in 3 s by default), and 16 attempts at
    /// most 4 s apart cover it.
    pub const RECONNECT: Backoff = Backoff {
        first: Duration::from_millis(250),
        step_max: Duration::from_secs(4),
        attempts_max: 16,
        within: Duration::from_secs(30),
    };

    /// The step of attempt `attempt` (0: the first after the break).
    #[must_use]
    pub fn step(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(1 << attempt.min(20))
            .min(self.step_max)
    }

    /// How long to wait before attempt `attempt` (0: the first after the
    /// break), `since_break` after the connection broke; `None`: give up
    /// (out of attempts, or the wait would end past `within`).
    ///
    /// "Equal jitter": half the step, plus up to as much again at random.
    /// A crowd dropped at one instant (a gateway killed) comes back spread
    /// over each step, and no fan comes back at once.
    pub fn delay(&self, attempt: u32, since_break: Duration, rng: &mut Rng) -> Option<Duration> {
        if attempt >= self.attempts_max || since_break >= self.within {
            return None;
        }
        let half = self.step(attempt) / 2;
        let delay = half + half.mul_f64(rng.unit());
        (since_break + delay <= self.within).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    // Not proptest's `Rng` (its prelude has one).
    use crate::rng::Rng;

    /// Every wait of one break, attempt after attempt, as if each attempt
    /// failed at once (the longest schedule; a slow attempt only uses up
    /// `within` sooner).
    fn schedule(backoff: &Backoff, seed: u64, fan: u64) -> Vec<Duration> {
        let mut rng = Rng::new(seed, fan);
        let mut since = Duration::ZERO;
        let mut waits = Vec::new();
        while let Some(delay) = backoff.delay(waits.len() as u32, since, &mut rng) {
            since += delay;
            waits.push(delay);
            assert!(waits.len() <= 1_000, "unbounded");
        }
        waits
    }

    fn backoffs() -> impl Strategy<Value = Backoff> {
        (1u64..2_000, 1u64..20_000, 0u32..40, 0u64..120_000).prop_map(
            |(first, step_max, attempts_max, within)| Backoff {
                first: Duration::from_millis(first),
                step_max: Duration::from_millis(step_max),
                attempts_max,
                within: Duration::from_millis(within),
            },
        )
    }

    proptest! {
        #[test]
        fn waits_are_bounded_in_count_in_size_and_in_all(
            backoff in backoffs(),
            seed in any::<u64>(),
            fan in 0u64..1_000_000,
        ) {
            let waits = schedule(&backoff, seed, fan);
            prop_assert!(waits.len() <= backoff.attempts_max as usize);
            prop_assert!(waits.iter().sum::<Duration>() <= backoff.within);
            for (attempt, wait) in waits.iter().enumerate() {
                let step = backoff.step(attempt as u32);
                prop_assert!(*wait >= step / 2 && *wait <= step, "{attempt}: {wait:?} of {step:?}");
                prop_assert!(*wait <= backoff.step_max);
            }
        }

        #[test]
        fn the_same_seed_and_fan_wait_alike_and_others_do_not(
            seed in any::<u64>(),
            fan in 0u64..1_000_000,
        ) {
            let backoff = Backoff::RECONNECT;
            let waits = schedule(&backoff, seed, fan);
            prop_assert_eq!(&waits, &schedule(&backoff, seed, fan));
            prop_assert_ne!(&waits, &schedule(&backoff, seed, fan + 1));
            prop_assert_ne!(&waits, &schedule(&backoff, seed.wrapping_add(1), fan));
        }

        #[test]
        fn past_the_time_or_the_attempts_it_gives_up(
            attempt in 0u32..100,
            since_ms in 0u64..100_000,
            seed in any::<u64>(),
        ) {
            let backoff = Backoff::RECONNECT;
            let since = Duration::from_millis(since_ms);
            let delay = backoff.delay(attempt, since, &mut Rng::new(seed, 0));
            if attempt >= backoff.attempts_max || since >= backoff.within {
                prop_assert_eq!(delay, None);
            }
            if let Some(delay) = delay {
                prop_assert!(since + delay <= backoff.within);
            }
        }
    }

    #[test]
    fn the_steps_double_up_to_the_cap() {
        let b = Backoff::RECONNECT;
        let steps: Vec<u64> = (0..7).map(|a| b.step(a).as_millis() as u64).collect();
        assert_eq!(steps, [250, 500, 1_000, 2_000, 4_000, 4_000, 4_000]);
        assert_eq!(b.step(u32::MAX), b.step_max);
    }

    #[test]
    fn a_crowd_dropped_at_once_comes_back_spread_over_the_first_step() {
        let b = Backoff::RECONNECT;
        let firsts: Vec<Duration> = (0..1_000)
            .map(|fan| {
                b.delay(0, Duration::ZERO, &mut Rng::new(1, fan))
                    .expect("a first attempt")
            })
            .collect();
        let (min, max) = (firsts.iter().min().unwrap(), firsts.iter().max().unwrap());
        assert!(*min >= Duration::from_millis(125) && *min < Duration::from_millis(130));
        assert!(*max <= Duration::from_millis(250) && *max > Duration::from_millis(245));
        // Each tenth of the step gets about a tenth of the crowd.
        for tenth in 0..10u32 {
            let from = Duration::from_millis(125) + Duration::from_micros(12_500) * tenth;
            let to = from + Duration::from_micros(12_500);
            let n = firsts.iter().filter(|d| **d >= from && **d < to).count();
            assert!((60..140).contains(&n), "tenth {tenth}: {n}");
        }
    }

    #[test]
    fn the_fans_schedule_gives_up_within_thirty_seconds() {
        let b = Backoff::RECONNECT;
        for fan in 0..200 {
            let waits = schedule(&b, 7, fan);
            let total: Duration = waits.iter().sum();
            assert!(total <= Duration::from_secs(30), "{total:?}");
            // Never fewer than 10 tries: at most 0.25 + 0.5 + 1 + 2 + 4 × 6 s.
            assert!(waits.len() >= 10, "{}", waits.len());
        }
    }
}
