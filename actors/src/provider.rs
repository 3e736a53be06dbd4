//! Payment providers, as the event's shell sees them.
//!
//! Two kinds, both in the shape real providers have: a charge is started,
//! and its answer arrives later, possibly never, possibly twice; a silent
//! payment can be asked about (a provider's "retrieve" call); money taken
//! for a payment the event no longer honours is refunded.
//! - [`Provider::Webhook`]: an external provider that answers through the
//!   signed webhook (`Command::ProviderAnswer` delivered to the event). The
//!   node only starts charges; a provider retries its webhook until it is
//!   acknowledged, so an answer given while the node was down arrives when
//!   it is back. The node has no outbound call to such a provider yet:
//!   a status query is logged and left to the webhook's retries, and a
//!   refund is a structured `onsale::refund` log line plus the journal
//!   record that makes it happen at most once.
//! - [`Provider::Simulated`]: in-process, with latency, a decline rate and
//!   a share of charges whose answer is lost (it never calls back, but
//!   answers a status query). Its answers are a pure function of the
//!   payment id and a seed, so a restarted node that asks again gets the
//!   answer the provider gave before. It keeps a book of the refunds it
//!   was asked for.
//!
//! Answers go back through an [`Answers`] callback, so the provider knows
//! nothing of the actor that asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use onsale_schema::message::ProviderAnswer;
use onsale_schema::{EventId, PaymentId};

/// Where a provider's answers go: `(payment, answer)`, delivered to the
/// event the payment belongs to. Called from a tokio task.
pub type Answers = Arc<dyn Fn(PaymentId, ProviderAnswer) + Send + Sync>;

/// The refunds a simulated provider was asked for, in order.
#[derive(Debug, Default)]
pub struct RefundBook {
    refunds: Mutex<Vec<(EventId, PaymentId)>>,
}

impl RefundBook {
    /// Every refund asked for so far.
    #[must_use]
    pub fn refunds(&self) -> Vec<(EventId, PaymentId)> {
        self.refunds.lock().expect("refund book poisoned").clone()
    }
}

/// The simulated provider's behaviour.
#[derive(Clone, Debug)]
pub struct SimulatedProvider {
    pub seed: u64,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Charges declined, per thousand.
    pub decline_per_mille: u64,
    /// Charges whose answer is lost (no call back), per thousand. Their
    /// outcome is still known to a status query.
    pub silent_per_mille: u64,
    /// Refunds asked for (shared by clones).
    pub book: Arc<RefundBook>,
}

impl Default for SimulatedProvider {
    fn default() -> Self {
        SimulatedProvider {
            seed: 0,
            latency_min_ms: 200,
            latency_max_ms: 2_000,
            decline_per_mille: 50,
            silent_per_mille: 5,
            book: Arc::default(),
        }
    }
}

/// How an event's payments are charged.
#[derive(Clone, Debug)]
pub enum Provider {
    Webhook,
    Simulated(SimulatedProvider),
}

impl SimulatedProvider {
    /// The outcome of `payment`, its delay, and whether the answer is
    /// lost on its way back (it is still told to a status query).
    #[must_use]
    pub fn outcome(&self, event: EventId, payment: PaymentId) -> (ProviderAnswer, Duration, bool) {
        let h = mix(self.seed ^ mix(event.0) ^ mix(payment.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let roll = h % 1_000;
        let lost = roll < self.silent_per_mille;
        // The decline share is drawn from a different part of the hash so
        // that lost answers are declined at the same rate as the others.
        let answer = if (h >> 40) % 1_000 < self.decline_per_mille {
            ProviderAnswer::Declined
        } else {
            ProviderAnswer::Confirmed
        };
        let span = self.latency_max_ms.saturating_sub(self.latency_min_ms) + 1;
        let delay = self.latency_min_ms + (h >> 20) % span;
        (answer, Duration::from_millis(delay), lost)
    }

    /// The answer and its delay for `payment`, or `None` if the answer is
    /// lost on its way back.
    #[must_use]
    pub fn answer(&self, event: EventId, payment: PaymentId) -> Option<(ProviderAnswer, Duration)> {
        let (answer, delay, lost) = self.outcome(event, payment);
        (!lost).then_some((answer, delay))
    }
}

impl Provider {
    /// Start charging `payment`; an in-process provider answers through
    /// `answers` later. Must be called inside a tokio runtime.
    pub fn charge(&self, event: EventId, payment: PaymentId, answers: &Answers) {
        let Provider::Simulated(sim) = self else {
            tracing::debug!(%event, %payment, "charge started; waiting for the provider's webhook");
            return;
        };
        let Some((answer, delay)) = sim.answer(event, payment) else {
            tracing::debug!(%event, %payment, "simulated provider's answer is lost");
            return;
        };
        deliver(answers, payment, answer, delay);
    }

    /// Ask what became of `payment` (reconciliation): an in-process
    /// provider that knows answers through `answers`, as it would have.
    /// Must be called inside a tokio runtime.
    pub fn query(&self, event: EventId, payment: PaymentId, answers: &Answers) {
        let Provider::Simulated(sim) = self else {
            tracing::info!(%event, %payment, "payment unanswered; waiting for the provider's webhook retry");
            return;
        };
        let (answer, delay, _) = sim.outcome(event, payment);
        // A status query answers at once if the charge is done; if it is
        // still running, once it is (never after it would have anyway).
        deliver(
            answers,
            payment,
            answer,
            delay.min(Duration::from_millis(50)),
        );
    }

    /// Give back the money taken for `payment`. The event core journals a
    /// refund before asking, so this is called at most once per payment.
    pub fn refund(&self, event: EventId, payment: PaymentId) {
        tracing::warn!(target: "onsale::refund", %event, %payment, "refund issued: the payment was confirmed after it was voided");
        if let Provider::Simulated(sim) = self {
            sim.book
                .refunds
                .lock()
                .expect("refund book poisoned")
                .push((event, payment));
        }
    }
}

fn deliver(answers: &Answers, payment: PaymentId, answer: ProviderAnswer, delay: Duration) {
    let answers = Arc::clone(answers);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        // The event may have stopped meanwhile; the answer is then lost
        // here and asked for again when the event is restored.
        answers(payment, answer);
    });
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_provider_books_every_refund_it_is_asked_for() {
        let sim = SimulatedProvider::default();
        let provider = Provider::Simulated(sim.clone());
        provider.refund(EventId(1), PaymentId(7));
        provider.refund(EventId(2), PaymentId(9));
        assert_eq!(
            sim.book.refunds(),
            [(EventId(1), PaymentId(7)), (EventId(2), PaymentId(9))]
        );
    }

    #[test]
    fn a_lost_answer_is_still_known_to_a_status_query() {
        let sim = SimulatedProvider {
            silent_per_mille: 1_000,
            decline_per_mille: 0,
            ..SimulatedProvider::default()
        };
        assert_eq!(sim.answer(EventId(1), PaymentId(3)), None, "lost");
        let (answer, _, lost) = sim.outcome(EventId(1), PaymentId(3));
        assert!(lost);
        assert_eq!(answer, ProviderAnswer::Confirmed);
    }
}
