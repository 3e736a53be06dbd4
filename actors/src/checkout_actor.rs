//! `CheckoutActor`: one hold's checkout session, with its own timer.
//!
//! A session is a small actor of its own: a tokio task with a private
//! mailbox, handling one message at a time. It is deliberately not a
//! ractor actor: an onsale opens hundreds of thousands of sessions a
//! minute, and a ractor actor (registry entry, supervision link, four
//! channels) cost ~35 µs of CPU and ~8.5 KB per hold, which capped one
//! event at ~30,000 sales/s. A session task costs a spawn, one channel and
//! one timer entry.
//!
//! **Messages.** `Arm { at }` sets the one alarm to ring at `at` (absolute
//! wall-clock ms), exactly as the event core said (`Effect::ArmCheckout`,
//! computed by `CheckoutCore::next_alarm`: the session knows no rule of
//! its own); `Pay { payment }` starts the charge with the provider;
//! `Query { payment }` asks the provider what became of a silent payment.
//! When the alarm rings the session tells its event through `ring`; the
//! event core decides what is due, so a late or duplicate ring is
//! harmless.
//!
//! **Ordering and capacity.** Messages come only from its event actor, at
//! most a handful per alarm (arm, pay, query): the mailbox needs no bound
//! beyond the event's own.
//!
//! **Recovery.** Deadlines are stored absolutely; after a restore the event
//! starts a session per open hold, armed from the core's alarms.
//!
//! **Shutdown.** When its event drops the session's handle (the hold was
//! sold or released, or the event stopped), the mailbox closes and the task
//! ends at once, taking its timer with it.

use std::sync::Arc;
use std::time::Duration;

use onsale_schema::{EventId, HoldId, Millis, PaymentId};
use tokio::sync::mpsc;

use crate::clock::wall_now;
use crate::provider::{Answers, Provider};

#[derive(Debug)]
pub enum CheckoutMsg {
    Arm { at: Millis },
    Pay { payment: PaymentId },
    Query { payment: PaymentId },
}

/// Tells the event that `hold`'s alarm rang. Called from the session task.
pub type Ring = Arc<dyn Fn(HoldId) + Send + Sync>;

/// What a session starts from.
pub struct CheckoutArgs {
    pub event: EventId,
    pub hold: HoldId,
    pub provider: Provider,
    /// Where the provider's answers go.
    pub answers: Answers,
    pub ring: Ring,
    pub first_alarm: Millis,
}

impl std::fmt::Debug for CheckoutArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutArgs")
            .field("event", &self.event)
            .field("hold", &self.hold)
            .field("first_alarm", &self.first_alarm)
            .finish_non_exhaustive()
    }
}

/// The event's handle to a running session. Dropping it ends the session.
#[derive(Debug)]
pub struct CheckoutActor {
    mailbox: mpsc::UnboundedSender<CheckoutMsg>,
}

impl CheckoutActor {
    /// Start a session. Must be called inside a tokio runtime.
    #[must_use]
    pub fn start(args: CheckoutArgs) -> CheckoutActor {
        let (mailbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(run(args, inbox));
        CheckoutActor { mailbox }
    }

    /// Send a message; a session that already ended ignores it.
    pub fn send(&self, msg: CheckoutMsg) {
        let _ = self.mailbox.send(msg);
    }
}

async fn run(args: CheckoutArgs, mut inbox: mpsc::UnboundedReceiver<CheckoutMsg>) {
    let mut alarm = Some(args.first_alarm);
    loop {
        let sleep = match alarm {
            Some(at) => Duration::from_millis(at.saturating_sub(wall_now())),
            None => Duration::from_secs(24 * 3600),
        };
        tokio::select! {
            msg = inbox.recv() => match msg {
                Some(CheckoutMsg::Arm { at }) => alarm = Some(at),
                Some(CheckoutMsg::Pay { payment }) => {
                    args.provider.charge(args.event, payment, &args.answers);
                }
                Some(CheckoutMsg::Query { payment }) => {
                    args.provider.query(args.event, payment, &args.answers);
                }
                None => return, // the hold ended, or the event stopped
            },
            () = tokio::time::sleep(sleep), if alarm.is_some() => {
                alarm = None;
                (args.ring)(args.hold);
            }
        }
    }
}
