//! The fans: arrivals, joins, showing up, shopping, paying, reloading,
//! leaving, each calling the core as a gateway would.

use super::defences::{CodeGate, IpGate};
use super::{
    Answer, BOT, BUSY_RETRY_MS, BUSY_TRIES_MAX, CODED, DISCONNECTED, EVENT, Ev, Fan, HoldOutcome,
    IMPATIENT, NOT_YET, Phase, REFRESHER, Reload, Said, Sim, fan_id, ms32,
};
use crate::behaviour;
use onsale_schema::message::{
    FanStatus, HoldRejected, HoldRequest, JoinRefused, Joined, PaymentRefused, PaymentSettled,
    ProviderAnswer,
};
use onsale_schema::token::{self, QueueClaims, VerifiedQueueToken};
use onsale_schema::{HoldId, Millis, PaymentId, Position};

impl Sim<'_> {
    /// Try again once the node is back (a gateway answered 503).
    pub(super) fn defer(&mut self, event: Ev) {
        let spread = (self.sc.fans.reconnect_spread_s * 1000.0) as u64;
        let at = self.up_at.max(self.now) + 1 + self.rng.below(spread + 1);
        self.agenda.push(at, event);
    }

    pub(super) fn arrive(&mut self) {
        let arrival = self.arrivals.pop().expect("peeked");
        let rank = self.t.arrivals as u32;
        self.t.arrivals += 1;
        self.arrived_ms.push(ms32(self.now));
        let bot = self.model.is_bot(&mut self.crowd);
        let accounts = if bot {
            self.t.bots += 1;
            self.sc.bots.accounts
        } else {
            self.t.people += 1;
            1
        };
        for index in 0..accounts {
            let slot = self.new_fan(rank, bot, index);
            if arrival.early && self.randomize_lobby && self.opened_at.is_none() {
                self.fans[slot as usize].phase = Phase::Lobby;
                self.lobby.push(slot);
            } else {
                self.try_join(slot);
            }
        }
    }

    /// The `index`-th account of the person or bot arriving `rank`-th.
    pub(super) fn new_fan(&mut self, rank: u32, bot: bool, index: u32) -> u32 {
        let traits = self.model.traits(&mut self.crowd, bot);
        let party = traits.party;
        let slot = self.fans.len() as u32;
        let mut flags = if bot { BOT } else { 0 };
        if traits.impatient {
            flags |= IMPATIENT;
        }
        if traits.refresher {
            flags |= REFRESHER;
        }
        if self.defences.account(slot, bot, index, self.now) {
            flags |= CODED;
        }
        self.fans.push(Fan {
            rank,
            joined_ms: NOT_YET,
            position: 0,
            phase: Phase::Arriving,
            party,
            tries: 0,
            busy_tries: 0,
            refreshes: 0,
            flags,
        });
        self.t.accounts += 1;
        slot
    }

    /// A join as the fan's page makes it: unless the sale is over, with a
    /// code during the presale, once its proof of work is solved (see
    /// `send_join` for the rest).
    pub(super) fn try_join(&mut self, slot: u32) {
        self.t.join_attempts += 1;
        self.fans[slot as usize].phase = Phase::Arriving;
        if self.edge.sold_out || self.edge.closed {
            self.t.turned_away_sold_out += 1;
            self.fans[slot as usize].phase = Phase::Gone;
            return;
        }
        let f = self.fans[slot as usize];
        let bot = f.flags & BOT != 0;
        match self.defences.code_gate(f.flags & CODED != 0, bot, self.now) {
            CodeGate::Pass => {}
            CodeGate::Wait => {
                self.fans[slot as usize].phase = Phase::Lobby;
                self.defences.general_lobby.push(slot);
                return;
            }
            CodeGate::Never => {
                self.fans[slot as usize].phase = Phase::Gone;
                return;
            }
        }
        let ready = self.defences.solved_at(slot, f.rank, bot, self.now);
        if ready > self.now {
            self.agenda.push(ready, Ev::Solved(slot));
            return;
        }
        self.send_join(slot);
    }

    /// The join goes out, its proof of work solved. The gateway applies
    /// the address limit (before anything else, as it does to every
    /// request), answers "full" from its cache of the pushed flag, and
    /// passes the rest to the event.
    pub(super) fn send_join(&mut self, slot: u32) {
        let bot = self.fans[slot as usize].flags & BOT != 0;
        match self.defences.ip_gate(slot, bot, self.now) {
            IpGate::Pass => {}
            IpGate::RetryAt(at) => return self.agenda.push(at, Ev::Retry(slot)),
            IpGate::GiveUp => {
                self.fans[slot as usize].phase = Phase::Gone;
                return;
            }
        }
        if self.edge.full {
            return self.turned_away_full(slot);
        }
        if self.core.is_none() {
            self.defences.asked(slot, self.now);
            return self.defer(Ev::Retry(slot));
        }
        let now = Millis(self.now);
        let result = self.core_mut().join(fan_id(slot), now);
        self.say(Said::Answer(Answer::Join { slot, result }));
        self.settle();
    }

    /// The answer to a join, once durable (and before the effects of the
    /// same call, an admission of this very fan, are acted on).
    pub(super) fn join_answered(&mut self, slot: u32, result: Result<Joined, JoinRefused>) {
        match result {
            Ok(joined) => self.joined(slot, &joined),
            Err(JoinRefused::Full) => self.turned_away_full(slot),
            Err(JoinRefused::SoldOut | JoinRefused::Closed) => {
                self.t.turned_away_sold_out += 1;
                self.fans[slot as usize].phase = Phase::Gone;
            }
            Err(JoinRefused::Busy) => self.busy(slot),
            Err(other) => self.fail(format!("join of {} refused as {other:?}", fan_id(slot))),
        }
    }

    /// Before the core's effects (an admission of this very fan) are acted on.
    pub(super) fn joined(&mut self, slot: u32, joined: &Joined) {
        if joined.fresh {
            let r = self.ledger.issued(joined.position.0);
            self.check(r);
            self.t.joined += 1;
        }
        let Ok(position) = u32::try_from(joined.position.0) else {
            return self.fail(format!("{} beyond the simulator's range", joined.position));
        };
        let now = self.now.min(u64::from(u32::MAX - 1)) as u32;
        let f = &mut self.fans[slot as usize];
        f.position = position;
        let first = f.joined_ms == NOT_YET;
        if first {
            f.joined_ms = now;
        }
        if !matches!(joined.status, FanStatus::Waiting { .. }) {
            return;
        }
        f.phase = Phase::Waiting;
        let flags = f.flags;
        self.ledger.waits(joined.position.0, slot);
        if !first {
            return;
        }
        if flags & IMPATIENT != 0 {
            let patience = self.model.patience_ms(&mut self.rng);
            self.agenda.push(self.now + patience, Ev::Abandon(slot));
        }
        if flags & REFRESHER != 0 && self.sc.fans.refreshes_max > 0 {
            let at = self.now + self.model.refresh_after_ms(&mut self.rng);
            self.agenda.push(at, Ev::Reload(slot, Reload::Refresh));
        }
    }

    /// "Busy": the counter awaits its next durable block (or the core is
    /// at its fan limit). Retried soon, at most `BUSY_TRIES_MAX` times.
    pub(super) fn busy(&mut self, slot: u32) {
        self.t.busy_answers += 1;
        let f = &mut self.fans[slot as usize];
        if f.busy_tries >= BUSY_TRIES_MAX {
            f.phase = Phase::Gone;
            self.t.gave_up_busy += 1;
            return;
        }
        f.busy_tries += 1;
        f.phase = Phase::Arriving;
        self.defences.asked(slot, self.now);
        self.agenda.push(self.now + BUSY_RETRY_MS, Ev::Retry(slot));
    }

    pub(super) fn turned_away_full(&mut self, slot: u32) {
        self.t.turned_away_full += 1;
        let f = self.fans[slot as usize];
        let bot = f.flags & BOT != 0;
        let Some(after) = self.model.full_retry_after_ms(&mut self.rng, bot, f.tries) else {
            self.t.gave_up_full += 1;
            self.fans[slot as usize].phase = Phase::Gone;
            return;
        };
        let at = self.now + after;
        let f = &mut self.fans[slot as usize];
        f.tries += 1;
        f.phase = Phase::Arriving;
        self.defences.asked(slot, self.now);
        self.agenda.push(at, Ev::Retry(slot));
    }

    pub(super) fn show_up(&mut self, slot: u32) {
        if self.fans[slot as usize].phase != Phase::Admitted {
            return;
        }
        if self.core.is_none() {
            return self.defer(Ev::ShowUp(slot));
        }
        let now = Millis(self.now);
        let status = self.core_mut().enter(fan_id(slot), now);
        self.say(Said::Answer(Answer::Enter { slot, status }));
        self.settle();
    }

    pub(super) fn entered(&mut self, slot: u32, status: Option<FanStatus>) {
        if !matches!(status, Some(FanStatus::Admitted { .. })) {
            return;
        }
        let f = &mut self.fans[slot as usize];
        f.phase = Phase::Shopping;
        let bot = f.flags & BOT != 0;
        let at = self.now + self.model.shopping_ms(&mut self.rng, bot);
        self.agenda.push(at, Ev::Shop(slot));
    }

    /// Ask for seats, settling for fewer or anywhere if need be. The tries
    /// happen at once; the fan acts on the last answer once it is durable.
    pub(super) fn shop(&mut self, slot: u32) {
        let Some((bot, outcome)) = self.try_holds(slot) else {
            return;
        };
        self.say(Said::Answer(Answer::Hold { slot, bot, outcome }));
        self.settle();
    }

    fn try_holds(&mut self, slot: u32) -> Option<(bool, HoldOutcome)> {
        if self.fans[slot as usize].phase != Phase::Shopping {
            return None;
        }
        if self.core.is_none() {
            self.defer(Ev::Shop(slot));
            return None;
        }
        let f = self.fans[slot as usize];
        let bot = f.flags & BOT != 0;
        let mut count = f.party;
        let mut area = self.model.area(&mut self.rng, bot);
        for _ in 0..8 {
            let now = Millis(self.now);
            let request = HoldRequest::Best { count, area };
            let r = self.core_mut().hold(fan_id(slot), &request, now);
            self.settle();
            let rejected = match r {
                Ok(_) => return Some((bot, HoldOutcome::Held)),
                Err(HoldRejected::SoldOut | HoldRejected::AdmissionExpired) => {
                    return Some((bot, HoldOutcome::Gone));
                }
                Err(rejected) => rejected,
            };
            self.t.hold_rejections += 1;
            let Some(less) = behaviour::settle_for_less(count, area, &rejected) else {
                break;
            };
            (count, area) = less;
        }
        Some((bot, HoldOutcome::NoSeats))
    }

    pub(super) fn hold_answered(&mut self, slot: u32, bot: bool, outcome: HoldOutcome) {
        match outcome {
            HoldOutcome::Held => self.held(slot, bot),
            HoldOutcome::Gone => self.fans[slot as usize].phase = Phase::Gone,
            HoldOutcome::NoSeats => {
                self.t.gave_up_no_seats += 1;
                self.leave(slot);
            }
        }
    }

    pub(super) fn held(&mut self, slot: u32, bot: bool) {
        self.t.holds += 1;
        self.fans[slot as usize].phase = Phase::Holding;
        match self.model.checkout_ms(&mut self.rng, bot) {
            Some(after) => self.agenda.push(self.now + after, Ev::Pay(slot)),
            None => self.t.abandoned_checkout += 1,
        }
    }

    /// The fan gives up its turn (or place).
    pub(super) fn leave(&mut self, slot: u32) {
        self.fans[slot as usize].phase = Phase::Gone;
        if self.core.is_some() {
            let now = Millis(self.now);
            self.core_mut().leave(fan_id(slot), now);
            self.settle();
        }
    }

    pub(super) fn leave_after_hold(&mut self, slot: u32) {
        if self.fans[slot as usize].phase == Phase::Shopping {
            self.leave(slot);
        }
    }

    pub(super) fn pay(&mut self, slot: u32) {
        if self.fans[slot as usize].phase != Phase::Holding {
            return;
        }
        if self.core.is_none() {
            return self.defer(Ev::Pay(slot));
        }
        let fan = fan_id(slot);
        let Some(FanStatus::Holding {
            hold,
            deadline,
            paying: false,
        }) = self.core_mut().status(fan)
        else {
            return;
        };
        let now = Millis(self.now);
        let r = self.core_mut().submit_payment(fan, hold, now);
        if r.is_ok() && now >= deadline {
            self.fail(format!(
                "payment submitted at {now} after the deadline {deadline} was accepted"
            ));
        }
        let clock = self.core_mut().clock();
        let result = r.map(|started| (started.payment, started.hold));
        self.say(Said::Answer(Answer::Pay {
            slot,
            result,
            clock,
        }));
        self.settle();
    }

    pub(super) fn pay_answered(
        &mut self,
        slot: u32,
        result: Result<(PaymentId, HoldId), PaymentRefused>,
        clock: Millis,
    ) {
        match result {
            Ok((payment, hold)) => {
                self.ledger.payment_submitted(payment, hold, clock);
                self.t.payments_submitted += 1;
                self.fans[slot as usize].phase = Phase::Paying;
            }
            Err(PaymentRefused::Late) => self.t.payments_late += 1,
            Err(_) => {}
        }
    }

    pub(super) fn answer(&mut self, payment: PaymentId, slot: u32, confirmed: bool) {
        if self.core.is_none() {
            // The provider redelivers its webhook until someone takes it.
            let fan = slot;
            return self.defer(Ev::Answer {
                payment: payment.0,
                fan,
                confirmed,
            });
        }
        let answer = if confirmed {
            ProviderAnswer::Confirmed
        } else {
            ProviderAnswer::Declined
        };
        let now = Millis(self.now);
        let deadline = match self.core_mut().status(fan_id(slot)) {
            Some(FanStatus::Holding { deadline, .. }) => Some(deadline),
            _ => None,
        };
        let settled = self.core_mut().provider_answer(payment, answer, now);
        let after_deadline = deadline.is_some_and(|d| now >= d);
        let clock = self.core_mut().clock();
        self.say(Said::Answer(Answer::Provider {
            payment,
            slot,
            answer,
            settled,
            clock,
            after_deadline,
        }));
        self.settle();
    }

    /// The provider's answer, acted on once durable; a decline reaches the
    /// fan, who may pay again.
    pub(super) fn provider_answered(
        &mut self,
        payment: PaymentId,
        slot: u32,
        answer: ProviderAnswer,
        settled: PaymentSettled,
        clock: Millis,
        after_deadline: bool,
    ) {
        if matches!(settled, PaymentSettled::Sold { .. }) && after_deadline {
            self.t.sold_after_deadline += 1;
        }
        let r = self.ledger.answered(payment, answer, clock, &settled);
        self.check(r);
        let PaymentSettled::Declined {
            retry_until: Some(until),
            ..
        } = settled
        else {
            return;
        };
        let f = self.fans[slot as usize];
        if f.phase != Phase::Paying {
            return;
        }
        self.fans[slot as usize].phase = Phase::Holding;
        let bot = f.flags & BOT != 0;
        match self.model.pay_again_after_ms(&mut self.rng, bot) {
            Some(delay) if self.now + delay < until.0 => {
                self.agenda.push(self.now + delay, Ev::Pay(slot));
            }
            _ => self.t.abandoned_checkout += 1,
        }
    }

    pub(super) fn abandon(&mut self, slot: u32) {
        let f = self.fans[slot as usize];
        if f.phase != Phase::Waiting {
            return;
        }
        self.fans[slot as usize].phase = Phase::Gone;
        self.t.abandoned_waiting += 1;
        if f.flags & DISCONNECTED != 0 || self.core.is_none() {
            return;
        }
        self.ledger.stops_waiting(u64::from(f.position));
        let now = Millis(self.now);
        self.core_mut().leave(fan_id(slot), now);
        self.settle();
    }

    pub(super) fn token(&self, slot: u32) -> Result<VerifiedQueueToken, String> {
        let f = self.fans[slot as usize];
        let claims = QueueClaims {
            event: EVENT,
            fan: fan_id(slot),
            position: Position(u64::from(f.position)),
            issued_at: Millis(u64::from(f.joined_ms)),
        };
        let text = token::sign(&self.key, &claims);
        token::verify(&self.key, &text, EVENT, fan_id(slot), Millis(self.now))
            .map_err(|e| format!("{}'s own queue token does not verify: {e}", fan_id(slot)))
    }

    /// A waiting fan reloads its page or reconnects: it must keep its place.
    pub(super) fn reload(&mut self, slot: u32, kind: Reload) {
        let f = self.fans[slot as usize];
        if f.phase != Phase::Waiting {
            return;
        }
        if kind == Reload::Refresh {
            self.t.refreshes += 1;
            if f.refreshes + 1 < self.sc.fans.refreshes_max {
                self.fans[slot as usize].refreshes += 1;
                let at = self.now + self.model.refresh_after_ms(&mut self.rng);
                self.agenda.push(at, Ev::Reload(slot, Reload::Refresh));
            }
        }
        if self.core.is_none() {
            if f.flags & DISCONNECTED != 0 {
                self.defer(Ev::Reload(slot, Reload::Reconnect));
            }
            return;
        }
        let disconnected = f.flags & DISCONNECTED != 0;
        let now = Millis(self.now);
        let r = if !disconnected
            && kind == Reload::Refresh
            && self.model.rejoins_plainly(&mut self.rng)
        {
            self.core_mut().join(fan_id(slot), now)
        } else {
            match self.token(slot) {
                Ok(token) => self.core_mut().resume(&token, now),
                Err(e) => return self.fail(e),
            }
        };
        self.say(Said::Answer(Answer::Reload {
            slot,
            disconnected,
            result: r,
        }));
        self.settle();
    }

    /// A reload's answer, once durable: the fan must be back at its place.
    pub(super) fn reload_answered(
        &mut self,
        slot: u32,
        disconnected: bool,
        result: Result<Joined, JoinRefused>,
    ) {
        let f = self.fans[slot as usize];
        match result {
            Ok(joined) => {
                if joined.position.0 != u64::from(f.position) {
                    self.fail(format!(
                        "{} reloaded at position {} but holds a token for {}",
                        fan_id(slot),
                        joined.position.0,
                        f.position
                    ));
                }
                if disconnected {
                    self.t.resumes += 1;
                    self.fans[slot as usize].flags &= !DISCONNECTED;
                    if matches!(joined.status, FanStatus::Waiting { .. }) {
                        self.ledger.waits(joined.position.0, slot);
                    }
                }
            }
            Err(JoinRefused::SoldOut | JoinRefused::Closed) => {
                self.fans[slot as usize].phase = Phase::Gone;
                self.t.turned_away_sold_out += 1;
            }
            Err(other) => self.fail(format!(
                "{} with a valid token for position {} refused as {other:?}",
                fan_id(slot),
                f.position
            )),
        }
    }

    /// A call's answer leaves the gate: act on it.
    pub(super) fn answered(&mut self, answer: Answer) {
        match answer {
            Answer::Join { slot, result } => self.join_answered(slot, result),
            Answer::Enter { slot, status } => self.entered(slot, status),
            Answer::Hold { slot, bot, outcome } => self.hold_answered(slot, bot, outcome),
            Answer::Pay {
                slot,
                result,
                clock,
            } => self.pay_answered(slot, result, clock),
            Answer::Reload {
                slot,
                disconnected,
                result,
            } => self.reload_answered(slot, disconnected, result),
            Answer::Provider {
                payment,
                slot,
                answer,
                settled,
                clock,
                after_deadline,
            } => self.provider_answered(payment, slot, answer, settled, clock, after_deadline),
        }
    }

    /// A crash dropped this answer before it left: the caller's call
    /// failed, and it calls again once the node is back.
    pub(super) fn answer_lost(&mut self, answer: &Answer) {
        let again = match *answer {
            Answer::Join { slot, .. } => Ev::Retry(slot),
            Answer::Enter { slot, .. } => Ev::ShowUp(slot),
            Answer::Hold { slot, .. } => Ev::Shop(slot),
            Answer::Pay { slot, .. } => Ev::Pay(slot),
            Answer::Reload {
                slot, disconnected, ..
            } => {
                if !disconnected {
                    // Still waiting as far as the ledger knows: the crash
                    // sends it a reconnect of its own.
                    return;
                }
                Ev::Reload(slot, Reload::Reconnect)
            }
            Answer::Provider {
                payment,
                slot,
                answer,
                ..
            } => Ev::Answer {
                payment: payment.0,
                fan: slot,
                confirmed: answer == ProviderAnswer::Confirmed,
            },
        };
        self.defer(again);
    }
}
