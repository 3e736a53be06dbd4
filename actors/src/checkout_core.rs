//! The checkout of one hold, as a pure state machine.
//!
//! ```text
//!   Open ──submit (now < deadline)──▶ Paying ──confirmed──▶ (sold)
//!    │  ▲                               │  └──declined, now < deadline──▶ Open
//!    │  └───────────────────────────────┘
//!    ├──now ≥ deadline──▶ (released: Expired)
//!    Paying ──declined, now ≥ deadline──▶ (released: Declined)
//!    Paying ──now ≥ submitted_at + provider timeout──▶ (released: Voided)
//! ```
//!
//! The race the whole design turns on: once payment was submitted in time,
//! the deadline no longer releases the seats. Only the provider's answer,
//! or its silence past the provider timeout, ends the checkout.

use onsale_schema::message::PaymentRefused;
use onsale_schema::snapshot::{CheckoutRecord, ReleaseReason};
use onsale_schema::{Millis, PaymentId};

/// One hold's checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckoutCore {
    pub deadline: Millis,
    pub state: CheckoutRecord,
}

impl CheckoutCore {
    #[must_use]
    pub fn new(deadline: Millis) -> CheckoutCore {
        CheckoutCore {
            deadline,
            state: CheckoutRecord::Open,
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

    pub fn submitted(&mut self, payment: PaymentId, at: Millis) {
        self.state = CheckoutRecord::Paying {
            payment,
            submitted_at: at,
        };
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

    /// When this checkout next needs attention.
    #[must_use]
    pub fn next_timeout(&self, provider_timeout_ms: u64) -> Millis {
        match self.state {
            CheckoutRecord::Open => self.deadline,
            CheckoutRecord::Paying { submitted_at, .. } => {
                submitted_at.saturating_add_ms(provider_timeout_ms)
            }
        }
    }

    /// Whether the checkout ends at `now`, and why.
    #[must_use]
    pub fn due(&self, now: Millis, provider_timeout_ms: u64) -> Option<ReleaseReason> {
        if now < self.next_timeout(provider_timeout_ms) {
            return None;
        }
        Some(match self.state {
            CheckoutRecord::Open => ReleaseReason::Expired,
            CheckoutRecord::Paying { .. } => ReleaseReason::Voided,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVIDER_MS: u64 = 1_000;

    fn check(events: &[(&str, u64)]) -> Vec<String> {
        let mut core = CheckoutCore::new(Millis(100));
        let mut out = Vec::new();
        for &(what, at) in events {
            let now = Millis(at);
            let line = match what {
                "submit" => match core.can_submit(now) {
                    Ok(()) => {
                        core.submitted(PaymentId(at), now);
                        "paying".to_owned()
                    }
                    Err(e) => format!("{e:?}"),
                },
                "decline" => {
                    core.declined();
                    "open".to_owned()
                }
                "tick" => format!("{:?}", core.due(now, PROVIDER_MS)),
                other => panic!("unknown step {other}"),
            };
            out.push(line);
        }
        out
    }

    #[test]
    fn open_checkout_expires_at_its_deadline() {
        assert_eq!(
            check(&[("tick", 99), ("tick", 100)]),
            ["None", "Some(Expired)"]
        );
    }

    #[test]
    fn payment_in_time_outlives_the_deadline_until_the_provider_timeout() {
        let out = check(&[
            ("submit", 99),
            ("tick", 100),
            ("tick", 1_098),
            ("tick", 1_099),
        ]);
        assert_eq!(out, ["paying", "None", "None", "Some(Voided)"]);
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
            ("submit", 30),
            ("tick", 1_029),
        ]);
        assert_eq!(out, ["paying", "open", "paying", "None"]);
    }
}
