//! Arrival times, generated lazily in order: ten million fans never sit in
//! memory or in the agenda at once.
//!
//! A curve is one or two segments, each `count` fans whose arrival times
//! are independent draws from a distribution on an interval. The sorted
//! draws are produced one at a time from the order statistics of uniforms
//! (`U(k+1) = 1 - (1 - U(k)) · V^(1/(n-k))`) mapped through the
//! distribution's inverse, so the k-th arrival costs O(1) and the whole
//! sequence is exactly that of sorting `count` independent draws.

use crate::rng::Rng;
use crate::scenario::Curve;

#[derive(Clone, Debug)]
enum Shape {
    /// Truncated exponential on `[0, duration]` with `rate` per ms.
    Decay {
        rate: f64,
        duration: f64,
    },
    Uniform {
        duration: f64,
    },
    /// Exponential gaps of mean `gap` ms, unbounded.
    Poisson {
        gap: f64,
    },
}

#[derive(Clone, Debug)]
struct Segment {
    start_ms: f64,
    count: u64,
    shape: Shape,
    /// Whether these fans arrive before the sale opens (pre-queue).
    early: bool,
}

/// One arrival: when, and whether it came into the pre-queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    pub at_ms: u64,
    pub early: bool,
}

/// The arrival process of a scenario.
#[derive(Clone, Debug)]
pub struct Arrivals {
    segments: Vec<Segment>,
    segment: usize,
    /// Arrivals already drawn from the current segment.
    drawn: u64,
    /// The last order statistic (uniform) or time (Poisson) of the segment.
    last: f64,
    rng: Rng,
    next: Option<Arrival>,
}

impl Arrivals {
    #[must_use]
    pub fn new(curve: &Curve, fans: u64, opens_at_ms: u64, rng: Rng) -> Arrivals {
        let open = opens_at_ms as f64;
        let segments = match curve {
            Curve::Burst {
                duration_s,
                half_life_s,
            } => vec![Segment {
                start_ms: open,
                count: fans,
                shape: Shape::Decay {
                    rate: std::f64::consts::LN_2 / (half_life_s * 1000.0),
                    duration: duration_s * 1000.0,
                },
                early: false,
            }],
            Curve::Poisson { rate_per_s } => vec![Segment {
                start_ms: open,
                count: fans,
                shape: Shape::Poisson {
                    gap: 1000.0 / rate_per_s,
                },
                early: false,
            }],
            Curve::PreQueue {
                opens_before_s,
                late_share,
                late_duration_s,
                ..
            } => {
                let late = ((fans as f64) * late_share).round() as u64;
                vec![
                    Segment {
                        start_ms: open - opens_before_s * 1000.0,
                        count: fans - late,
                        shape: Shape::Uniform {
                            duration: opens_before_s * 1000.0,
                        },
                        early: true,
                    },
                    Segment {
                        start_ms: open,
                        count: late,
                        shape: Shape::Uniform {
                            duration: late_duration_s * 1000.0,
                        },
                        early: false,
                    },
                ]
            }
        };
        let mut arrivals = Arrivals {
            segments,
            segment: 0,
            drawn: 0,
            last: 0.0,
            rng,
            next: None,
        };
        arrivals.next = arrivals.draw();
        arrivals
    }

    /// The next arrival, without taking it.
    #[must_use]
    pub fn peek(&self) -> Option<Arrival> {
        self.next
    }

    /// Take the next arrival.
    pub fn pop(&mut self) -> Option<Arrival> {
        let next = self.next.take()?;
        self.next = self.draw();
        Some(next)
    }

    fn draw(&mut self) -> Option<Arrival> {
        loop {
            let segment = self.segments.get(self.segment)?;
            if self.drawn < segment.count {
                break;
            }
            self.segment += 1;
            self.drawn = 0;
            self.last = 0.0;
        }
        let segment = &self.segments[self.segment];
        let remaining = (segment.count - self.drawn) as f64;
        let offset = match segment.shape {
            Shape::Poisson { gap } => {
                self.last += self.rng.exponential(gap);
                self.last
            }
            Shape::Uniform { duration } => {
                self.last = next_order_statistic(self.last, remaining, &mut self.rng);
                self.last * duration
            }
            Shape::Decay { rate, duration } => {
                self.last = next_order_statistic(self.last, remaining, &mut self.rng);
                let mass = 1.0 - (-rate * duration).exp();
                -(1.0 - self.last * mass).ln() / rate
            }
        };
        self.drawn += 1;
        let at = (segment.start_ms + offset).max(0.0);
        Some(Arrival {
            at_ms: at as u64,
            early: segment.early,
        })
    }
}

/// The next of `remaining + (drawn so far)` sorted uniforms after `last`.
fn next_order_statistic(last: f64, remaining: f64, rng: &mut Rng) -> f64 {
    let v = rng.unit_open();
    let next = 1.0 - (1.0 - last) * v.powf(1.0 / remaining);
    next.clamp(last, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(curve: &Curve, fans: u64) -> Vec<Arrival> {
        let mut a = Arrivals::new(curve, fans, 3_600_000, Rng::new(1, 1));
        std::iter::from_fn(|| a.pop()).collect()
    }

    #[test]
    fn burst_arrivals_are_sorted_inside_the_window_and_front_loaded() {
        let curve = Curve::Burst {
            duration_s: 600.0,
            half_life_s: 60.0,
        };
        let got = all(&curve, 100_000);
        assert_eq!(got.len(), 100_000);
        assert!(got.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(got[0].at_ms >= 3_600_000 && got[99_999].at_ms <= 4_200_000);
        // Half of the mass in the first half-life (up to truncation).
        let first_minute = got.iter().filter(|a| a.at_ms < 3_660_000).count();
        assert!((49_000..52_000).contains(&first_minute), "{first_minute}");
    }

    #[test]
    fn pre_queue_splits_early_and_late_fans_around_the_opening() {
        let curve = Curve::PreQueue {
            opens_before_s: 1800.0,
            late_share: 0.25,
            late_duration_s: 60.0,
            randomize: true,
        };
        let got = all(&curve, 1_000);
        assert_eq!(got.iter().filter(|a| a.early).count(), 750);
        assert!(got.iter().all(|a| a.early == (a.at_ms < 3_600_000)));
        assert!(got.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn poisson_rate_is_about_right() {
        let got = all(&Curve::Poisson { rate_per_s: 100.0 }, 10_000);
        let span_s = (got[9_999].at_ms - got[0].at_ms) as f64 / 1000.0;
        assert!((90.0..110.0).contains(&span_s), "{span_s}");
    }
}
