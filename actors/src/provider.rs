//! Payment providers, as the event actor's shell sees them.
//!
//! Two kinds, both in the shape real providers have: a charge is started,
//! and its answer arrives later, possibly never, possibly twice.
//! - [`Provider::Webhook`]: an external provider that answers through the
//!   signed webhook (`Command::ProviderAnswer` delivered to the event). The
//!   node only starts charges; a provider retries its webhook until it is
//!   acknowledged, so an answer given while the node was down arrives when
//!   it is back.
//! - [`Provider::Simulated`]: in-process, with latency, a decline rate and
//!   a share of charges it never answers. Its answers are a pure function
//!   of the payment id and a seed, so a restarted node that asks again
//!   ("reconciles") gets the same answer the provider gave before.

use std::time::Duration;

use onsale_schema::message::ProviderAnswer;
use onsale_schema::{EventId, PaymentId};
use ractor::ActorRef;

use crate::event_actor::EventMsg;

/// The simulated provider's behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedProvider {
    pub seed: u64,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Charges declined, per thousand.
    pub decline_per_mille: u64,
    /// Charges never answered, per thousand.
    pub silent_per_mille: u64,
}

impl Default for SimulatedProvider {
    fn default() -> Self {
        SimulatedProvider {
            seed: 0,
            latency_min_ms: 200,
            latency_max_ms: 2_000,
            decline_per_mille: 50,
            silent_per_mille: 5,
        }
    }
}

/// How an event's payments are charged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    Webhook,
    Simulated(SimulatedProvider),
}

impl SimulatedProvider {
    /// The answer and its delay for `payment`, or `None` if it never answers.
    #[must_use]
    pub fn answer(&self, event: EventId, payment: PaymentId) -> Option<(ProviderAnswer, Duration)> {
        let h = mix(self.seed ^ mix(event.0) ^ mix(payment.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let roll = h % 1_000;
        if roll < self.silent_per_mille {
            return None;
        }
        let answer = if roll < self.silent_per_mille + self.decline_per_mille {
            ProviderAnswer::Declined
        } else {
            ProviderAnswer::Confirmed
        };
        let span = self.latency_max_ms.saturating_sub(self.latency_min_ms) + 1;
        let delay = self.latency_min_ms + (h >> 20) % span;
        Some((answer, Duration::from_millis(delay)))
    }
}

impl Provider {
    /// Start charging `payment`; an in-process provider answers the event
    /// actor later. Must be called inside a tokio runtime.
    pub fn charge(&self, event: EventId, payment: PaymentId, reply_to: &ActorRef<EventMsg>) {
        let Provider::Simulated(sim) = self else {
            tracing::debug!(%event, %payment, "charge started; waiting for the provider's webhook");
            return;
        };
        let Some((answer, delay)) = sim.answer(event, payment) else {
            tracing::debug!(%event, %payment, "simulated provider stays silent");
            return;
        };
        let reply_to = reply_to.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The event may have stopped meanwhile; the answer is then lost
            // here and reconciled when the event is restored.
            let _ = reply_to.cast(EventMsg::ProviderAnswer { payment, answer });
        });
    }

    /// Refund a payment the event no longer honours.
    pub fn refund(&self, event: EventId, payment: PaymentId) {
        tracing::info!(%event, %payment, "refund issued");
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
