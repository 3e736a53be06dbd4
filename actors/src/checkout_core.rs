//! The checkout of one hold, as a pure state machine, and the one home of
//! every rule about a checkout's time.
//!
//! ```text
//!   Open ──submit (now < deadline)──▶ Paying ──confirmed──▶ (sold)
//!    │  ▲                               │  └──declined, now < deadline──▶ Open
//!    │  └───────────────────────────────┘
//!    ├──deadline − warning──▶ Warn (once) ──deadline──▶ (released: Expired)
//!    Paying ──declined, now ≥ deadline──▶ (released: Declined)
//!    Paying ──every query interval──▶ QueryPayment (ask the provider)
//!    Paying ──now ≥ submitted_at + provider timeout──▶ (released: Voided)
//! ```
//!
//! The race the whole design turns on: once payment was submitted in time,
//! the deadline no longer releases the seats. Only the provider's answer,
//! or its silence past the provider timeout, ends the checkout. While it
//! is silent the checkout asks the provider for the payment's status
//! (reconciliation, as real integrations do with a provider's "retrieve"
//! call): first after `payment_query_after_ms`, then at doubling
//! intervals, at most [`QUERY_INTERVAL_MAX_MS`] apart.
//!
//! [`CheckoutCore::next_alarm`] says when the checkout next needs
//! attention and [`CheckoutCore::due`] what is due then: the event core
//! tells its shell to arm exactly that alarm (`Effect::ArmCheckout`), so
//! no other code computes a checkout's times.

use onsale_schema::message::PaymentRefused;
use onsale_schema::snapshot::{CheckoutRecord, ReleaseReason};
use onsale_schema::{EventConfig, Millis, PaymentId};

/// A fan is warned this long before its hold's deadline (or halfway
/// through the checkout window, if that is shorter).
pub const HOLD_WARNING_MS: u64 = 60_000;

/// The longest wait between two status queries for one silent payment.
pub const QUERY_INTERVAL_MAX_MS: u64 = 300_000;

/// First status query this long after a payment was submitted, unless
/// the node says otherwise (`--payment-query-after-ms`). Providers answer
/// a charge within seconds; ten seconds of silence means the answer was
/// lost (or is slow), and asking costs one call.
pub const PAYMENT_QUERY_AFTER_MS: u64 = 10_000;

/// The rules every checkout of one event follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckoutRules {
    /// A payment unanswered this long after submission is voided.
    pub provider_timeout_ms: u64,
    /// The provider is first asked about a silent payment this long after
    /// submission.
    pub payment_query_after_ms: u64,
    /// The fan is warned this long before its deadline.
    pub warn_before_ms: u64,
}

impl CheckoutRules {
    /// The rules for an event's config, with the node's query interval.
    #[must_use]
    pub fn new(config: &EventConfig, payment_query_after_ms: u64) -> CheckoutRules {
        CheckoutRules {
            provider_timeout_ms: config.provider_timeout_ms,
            payment_query_after_ms: payment_query_after_ms.max(1),
            warn_before_ms: HOLD_WARNING_MS.min(config.checkout_window_ms / 2),
        }
    }
}

/// What a checkout's alarm found due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckoutDue {
    /// Tell the fan its hold ends soon.
    Warn,
    /// Ask the provider what became of this payment.
    QueryPayment(PaymentId),
    /// The checkout ends, and why.
    End(ReleaseReason),
}

/// One hold's checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckoutCore {
    pub deadline: Millis,
    pub state: CheckoutRecord,
    /// The fan was warned (not durable: a restored checkout may warn again).
    warned: bool,
    /// When the provider is next asked about the payment, while paying.
    next_query: Millis,
    /// Queries made for the current payment (not durable).
    queries: u32,
}

impl CheckoutCore {
    #[must_use]
    pub fn new(deadline: Millis) -> CheckoutCore {
        CheckoutCore {
            deadline,
            state: CheckoutRecord::Open,
            warned: false,
            next_query: Millis(u64::MAX),
            queries: 0,
        }
    }

    /// May a payment be submitted at `now`?
    pub fn can_submit(&self, now: Millis) -> Result<(), PaymentRefused> {
        match self.state {
            CheckoutRecord::Paying { .. } => Err(PaymentRefused::Pending),
            CheckoutRecord::Open if now >= self.deadline => Err(PaymentRefused::Late),
            CheckoutRecord::Open => Ok(()),
        }
    }

    pub fn submitted(&mut self, payment: PaymentId, at: Millis, rules: &CheckoutRules) {
        self.state = CheckoutRecord::Paying {
            payment,
            submitted_at: at,
        };
        self.queries = 0;
        self.next_query = at.saturating_add_ms(rules.payment_query_after_ms);
    }

    /// Start the payment's queries over under new `rules`.
    pub fn reschedule(&mut self, rules: &CheckoutRules) {
        if let CheckoutRecord::Paying { submitted_at, .. } = self.state {
            self.queries = 0;
            self.next_query = submitted_at.saturating_add_ms(rules.payment_query_after_ms);
        }
    }

    pub fn declined(&mut self) {
        self.state = CheckoutRecord::Open;
    }

    #[must_use]
    pub fn payment(&self) -> Option<PaymentId> {
        match self.state {
            CheckoutRecord::Paying { payment, .. } => Some(payment),
            CheckoutRecord::Open => None,
        }
    }

    /// When a silent payment is voided.
    #[must_use]
    fn void_at(submitted_at: Millis, rules: &CheckoutRules) -> Millis {
        submitted_at.saturating_add_ms(rules.provider_timeout_ms)
    }

    /// When this checkout next needs attention: the one alarm its session
    /// keeps armed.
    #[must_use]
    pub fn next_alarm(&self, rules: &CheckoutRules) -> Millis {
        match self.state {
            CheckoutRecord::Open if !self.warned => {
                Millis(self.deadline.0.saturating_sub(rules.warn_before_ms))
            }
            CheckoutRecord::Open => self.deadline,
            CheckoutRecord::Paying { submitted_at, .. } => {
                self.next_query.min(Self::void_at(submitted_at, rules))
            }
        }
    }

    /// What is due at `now`, if anything; a due warning or query is
    /// counted as done, so asking again at the same `now` moves on.
    pub fn due(&mut self, now: Millis, rules: &CheckoutRules) -> Option<CheckoutDue> {
        if now < self.next_alarm(rules) {
            return None;
        }
        Some(match self.state {
            CheckoutRecord::Open if now < self.deadline => {
                self.warned = true;
                CheckoutDue::Warn
            }
            CheckoutRecord::Open => CheckoutDue::End(ReleaseReason::Expired),
            CheckoutRecord::Paying { submitted_at, .. }
                if now >= Self::void_at(submitted_at, rules) =>
            {
                CheckoutDue::End(ReleaseReason::Voided)
            }
            CheckoutRecord::Paying { payment, .. } => {
                self.queries = self.queries.saturating_add(1);
                let interval = rules
                    .payment_query_after_ms
                    .saturating_mul(1 << self.queries.min(20))
                    .min(QUERY_INTERVAL_MAX_MS.max(rules.payment_query_after_ms));
                self.next_query = now.saturating_add_ms(interval);
                CheckoutDue::QueryPayment(payment)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: CheckoutRules = CheckoutRules {
        provider_timeout_ms: 1_000,
        payment_query_after_ms: 100,
        warn_before_ms: 30,
    };

    /// Runs steps against a checkout whose deadline is 100.
    fn check(events: &[(&str, u64)]) -> Vec<String> {
        let mut core = CheckoutCore::new(Millis(100));
        let mut out = Vec::new();
        for &(what, at) in events {
            let now = Millis(at);
            let line = match what {
                "submit" => match core.can_submit(now) {
                    Ok(()) => {
                        core.submitted(PaymentId(at), now, &RULES);
                        "paying".to_owned()
                    }
                    Err(e) => format!("{e:?}"),
                },
                "decline" => {
                    core.declined();
                    "open".to_owned()
                }
                "alarm" => format!("{}", core.next_alarm(&RULES).0),
                "tick" => format!("{:?}", core.due(now, &RULES)),
                other => panic!("unknown step {other}"),
            };
            out.push(line);
        }
        out
    }

    #[test]
    fn open_checkout_warns_once_then_expires_at_its_deadline() {
        let out = check(&[
            ("alarm", 0),
            ("tick", 69),
            ("tick", 70),
            ("tick", 71),
            ("alarm", 71),
            ("tick", 100),
        ]);
        assert_eq!(
            out,
            [
                "70",
                "None",
                "Some(Warn)",
                "None",
                "100",
                "Some(End(Expired))"
            ]
        );
    }

    #[test]
    fn a_checkout_found_late_expires_without_warning_first() {
        assert_eq!(check(&[("tick", 150)]), ["Some(End(Expired))"]);
    }

    #[test]
    fn payment_in_time_outlives_the_deadline_until_the_provider_timeout() {
        let out = check(&[
            ("submit", 99),
            ("tick", 100),
            ("tick", 1_098),
            ("tick", 1_099),
        ]);
        // The query at 1,098 is due (the provider was silent); the void at
        // 1,099 (99 + 1,000) ends it.
        assert_eq!(
            out,
            [
                "paying",
                "None",
                "Some(QueryPayment(PaymentId(99)))",
                "Some(End(Voided))"
            ]
        );
    }

    #[test]
    fn a_silent_payment_is_queried_at_doubling_intervals() {
        let out = check(&[
            ("submit", 10),
            ("alarm", 10),
            ("tick", 109),
            ("tick", 110),
            ("alarm", 110),
            ("tick", 310),
            ("alarm", 310),
        ]);
        assert_eq!(
            out,
            [
                "paying",
                "110",
                "None",
                "Some(QueryPayment(PaymentId(10)))",
                "310",
                "Some(QueryPayment(PaymentId(10)))",
                "710"
            ]
        );
    }

    #[test]
    fn late_or_duplicate_payment_is_refused() {
        assert_eq!(check(&[("submit", 100)]), ["Late"]);
        assert_eq!(
            check(&[("submit", 10), ("submit", 11)]),
            ["paying", "Pending"]
        );
    }

    #[test]
    fn declined_payment_reopens_the_checkout() {
        let out = check(&[
            ("submit", 10),
            ("decline", 20),
            ("alarm", 20),
            ("submit", 30),
            ("alarm", 30),
        ]);
        assert_eq!(out, ["paying", "open", "70", "paying", "130"]);
    }

    #[test]
    fn rules_warn_at_most_a_minute_ahead_or_halfway() {
        let config = EventConfig {
            checkout_window_ms: 300_000,
            ..EventConfig::default()
        };
        assert_eq!(CheckoutRules::new(&config, 5).warn_before_ms, 60_000);
        let short = EventConfig {
            checkout_window_ms: 4_000,
            ..EventConfig::default()
        };
        assert_eq!(CheckoutRules::new(&short, 5).warn_before_ms, 2_000);
    }
}
