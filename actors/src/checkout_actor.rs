//! `CheckoutActor`: one hold's checkout session and its timer.
//!
//! **Messages.** `Arm { at }` sets the one timer to fire at `at` (absolute
//! wall-clock ms: the deadline, or the provider timeout once paying);
//! `Pay { payment }` starts the charge with the provider; `Fire { generation }`
//! is the timer itself. When the timer fires the actor tells its event
//! (`EventMsg::CheckoutDue`); the event core decides what is due, so a
//! late or duplicate firing is harmless.
//!
//! **Ordering and capacity.** Messages come only from its event actor and
//! its own timer, at most a handful per session: no bound is needed beyond
//! the event's own.
//!
//! **Recovery.** Deadlines are stored absolutely; after a restore the event
//! spawns a session per open hold and arms it from the stored deadline.
//!
//! **Shutdown.** Stopped by its event when the hold ends (sold or
//! released), and with its event.

use std::time::Duration;

use onsale_schema::{EventId, HoldId, Millis, PaymentId};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::event_actor::{EventMsg, wall_now};
use crate::provider::Provider;

#[derive(Debug)]
pub enum CheckoutMsg {
    Arm { at: Millis },
    Pay { payment: PaymentId },
    Fire { generation: u64 },
}

impl ractor::Message for CheckoutMsg {}

#[derive(Debug)]
pub struct CheckoutActor;

#[derive(Debug)]
pub struct CheckoutArgs {
    pub event: EventId,
    pub hold: HoldId,
    pub event_ref: ActorRef<EventMsg>,
    pub provider: Provider,
    pub first_alarm: Millis,
}

#[derive(Debug)]
pub struct CheckoutState {
    args: CheckoutArgs,
    generation: u64,
}

impl CheckoutState {
    fn arm(&mut self, myself: &ActorRef<CheckoutMsg>, at: Millis) {
        self.generation += 1;
        let generation = self.generation;
        let delay = Duration::from_millis(at.saturating_sub(wall_now()));
        myself.send_after(delay, move || CheckoutMsg::Fire { generation });
    }
}

impl Actor for CheckoutActor {
    type Msg = CheckoutMsg;
    type State = CheckoutState;
    type Arguments = CheckoutArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let at = args.first_alarm;
        let mut state = CheckoutState {
            args,
            generation: 0,
        };
        state.arm(&myself, at);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CheckoutMsg::Arm { at } => state.arm(&myself, at),
            CheckoutMsg::Pay { payment } => {
                let args = &state.args;
                args.provider.charge(args.event, payment, &args.event_ref);
            }
            CheckoutMsg::Fire { generation } if generation == state.generation => {
                let hold = state.args.hold;
                // The event may be stopping; then so are we.
                let _ = state.args.event_ref.cast(EventMsg::CheckoutDue { hold });
            }
            CheckoutMsg::Fire { .. } => {} // an alarm replaced by a later Arm
        }
        Ok(())
    }
}
