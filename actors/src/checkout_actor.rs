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
//! **Messages.** `Arm { at }` sets the one timer to fire at `at` (absolute
//! wall-clock ms: the deadline, or the provider timeout once paying);
//! `Pay { payment }` starts the charge with the provider. When the timer
//! fires the session tells its event (`EventMsg::CheckoutDue`); the event
//! core decides what is due, so a late or duplicate firing is harmless.
//!
//! **Ordering and capacity.** Messages come only from its event actor, at
//! most a handful per session (arm, pay, re-arm after a decline): the
//! mailbox needs no bound beyond the event's own.
//!
//! **Recovery.** Deadlines are stored absolutely; after a restore the event
//! starts a session per open hold, armed from the stored deadline.
//!
//! **Shutdown.** When its event drops the session's handle (the hold was
//! sold or released, or the event stopped), the mailbox closes and the task
//! ends at once, taking its timer with it.

use std::time::Duration;

use onsale_schema::{EventId, HoldId, Millis, PaymentId};
use ractor::ActorRef;
use tokio::sync::mpsc;

use crate::clock::wall_now;
use crate::event_actor::EventMsg;
use crate::provider::Provider;

#[derive(Debug)]
pub enum CheckoutMsg {
    Arm { at: Millis },
    Pay { payment: PaymentId },
}

/// What a session starts from.
#[derive(Debug)]
pub struct CheckoutArgs {
    pub event: EventId,
    pub hold: HoldId,
    pub event_ref: ActorRef<EventMsg>,
    pub provider: Provider,
    pub first_alarm: Millis,
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
                    args.provider.charge(args.event, payment, &args.event_ref);
                }
                None => return, // the hold ended, or the event stopped
            },
            () = tokio::time::sleep(sleep), if alarm.is_some() => {
                alarm = None;
                // The event may be stopping; then so are we, shortly.
                let _ = args.event_ref.cast(EventMsg::CheckoutDue { hold: args.hold });
            }
        }
    }
}
