//! `EventActor`: the shell around one event's `EventCore`.
//!
//! **Messages.** `Command` (from the router: a fan's or operator's command
//! with a reply port), `Written` (from the journal writer), `CheckoutDue`
//! (a checkout session's alarm rang), `ProviderAnswer` (from an in-process
//! payment provider), `Tick` (its own periodic timer, for admission
//! windows and snapshots; checkout times are the sessions' alone).
//!
//! **Ordering.** One message at a time, in arrival order; the core sees
//! every input with the wall-clock time it is handled at.
//!
//! **The output gate.** Nothing the event says leaves before the journal
//! records it depends on are durable: replies, pushes to gateways, charges
//! sent to the provider, payment queries and refunds wait in an
//! [`OutputGate`] (a pure struct, property-tested on its own and shared
//! with the simulator), tagged with the journal sequence they need, and go
//! out in order when the writer reports that sequence durable. The actor keeps serving meanwhile, so the next
//! commit batches everything that arrived during this one (group commit).
//!
//! **Capacity.** Callers go through [`EventHandle`], which answers `busy`
//! without queueing when `MAILBOX_MAX` commands are already waiting; the
//! actor answers `busy` itself while more than `JOURNAL_PENDING_MAX`
//! records are not yet durable (the store is behind). Memory is therefore
//! bounded whatever the offered load.
//!
//! **Shutdown.** On `Stopped` from the writer (store failing past its retry
//! window, or fenced by a new owner) the actor stops at once: gated replies
//! are dropped (their callers see the call fail and retry elsewhere), never
//! sent. Its checkout sessions stop with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use onsale_schema::message::{Command, ProviderAnswer, Push, Reply};
use onsale_schema::token::{self, QueueClaims, TokenKey};
use onsale_schema::{ErrorCode, EventId, HoldId, Millis, PaymentId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rustc_hash::FxHashMap;
use tokio::sync::broadcast;

use crate::checkout_actor::{CheckoutActor, CheckoutArgs, CheckoutMsg, Ring};
use crate::clock::wall_now;
use crate::event_core::EventCore;
use crate::journal::{EventLog, WriteDone, WriteOp, Writer};
use crate::output_gate::OutputGate;
use crate::provider::{Answers, Provider};

/// Commands waiting in one event's mailbox before callers get `busy`.
pub const MAILBOX_MAX: usize = 16_384;
/// Journal records not yet durable before the event answers `busy`.
pub const JOURNAL_PENDING_MAX: u64 = 200_000;
/// Replies and pushes waiting for durability before every command (reads
/// too) is answered `busy` at once, ungated.
pub const GATED_MAX: usize = 400_000;
/// Journal records after which a snapshot is taken (compaction), unless
/// the node configures another number.
pub const SNAPSHOT_EVERY_RECORDS: u64 = 50_000;
/// A snapshot is also taken this often if anything changed.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// How often the event runs its own timers (admission windows).
pub const TICK: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub enum EventMsg {
    Command {
        command: Command,
        reply: RpcReplyPort<Reply>,
    },
    Written(WriteDone),
    CheckoutDue {
        hold: HoldId,
    },
    ProviderAnswer {
        payment: PaymentId,
        answer: ProviderAnswer,
    },
    Tick,
    /// Stop taking commands (each is answered `busy`: the event is
    /// moving) and answer once every journal record made so far is
    /// durable and every gated reply sent. For an online move.
    Freeze {
        reply: RpcReplyPort<()>,
    },
}

impl ractor::Message for EventMsg {}

/// A handle to an event actor that bounds its mailbox.
#[derive(Clone, Debug)]
pub struct EventHandle {
    pub event: EventId,
    /// Private: every command goes through [`EventHandle::call`], which
    /// enforces the mailbox bound.
    actor: ActorRef<EventMsg>,
    queued: Arc<AtomicUsize>,
    numbers: Numbers,
}

/// The event's numbers (its overview without section summaries) as it
/// last computed them, after each input: for operators' listings, read
/// without a message to the actor. They may include what is not durable
/// yet (a sale whose journal record is being written).
type Numbers = Arc<std::sync::Mutex<Option<onsale_schema::message::EventOverview>>>;

impl EventHandle {
    /// The event's numbers as of its last input (see [`Numbers`]); `None`
    /// before its first.
    #[must_use]
    pub fn numbers(&self) -> Option<onsale_schema::message::EventOverview> {
        self.numbers.lock().expect("not poisoned").clone()
    }

    /// Send a command and wait for its (durable) reply. `busy` at once if
    /// the mailbox is full; an error if the event stopped meanwhile.
    pub async fn call(&self, command: Command) -> Reply {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= MAILBOX_MAX {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Reply::error(ErrorCode::Busy, "event mailbox is full; retry shortly");
        }
        let (tx, rx) = ractor::concurrency::oneshot();
        let msg = EventMsg::Command {
            command,
            reply: tx.into(),
        };
        if self.actor.cast(msg).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Reply::error(ErrorCode::Busy, "event is restarting; retry shortly");
        }
        match rx.await {
            Ok(reply) => reply,
            Err(_) => Reply::error(ErrorCode::Busy, "event stopped before answering; retry"),
        }
    }

    /// The actor's id (to match supervision events to events).
    #[must_use]
    pub fn actor_id(&self) -> ractor::ActorId {
        self.actor.get_id()
    }

    /// Stop the event actor; its gated replies are dropped, never sent.
    pub fn stop(&self, why: &str) {
        self.actor.stop(Some(why.to_owned()));
    }

    /// Freeze the event (see [`EventMsg::Freeze`]): `true` once it is
    /// frozen with nothing left to make durable, `false` if that did not
    /// happen within `limit` (it stays frozen; stop it or let it go on).
    pub async fn freeze(&self, limit: std::time::Duration) -> bool {
        matches!(
            self.actor
                .call(|reply| EventMsg::Freeze { reply }, Some(limit))
                .await,
            Ok(ractor::rpc::CallResult::Success(()))
        )
    }

    /// Stop the event actor and wait (at most `limit`) until it has.
    pub async fn stop_and_wait(&self, why: &str, limit: std::time::Duration) {
        let _ = self
            .actor
            .stop_and_wait(Some(why.to_owned()), Some(limit))
            .await;
    }

    /// Commands queued and not yet taken up by the actor.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
pub struct EventActor;

/// What an event actor starts from.
pub struct EventArgs {
    pub core: EventCore,
    pub log: Box<dyn EventLog>,
    pub key: TokenKey,
    pub provider: Provider,
    pub pushes: broadcast::Sender<(EventId, Push)>,
    /// Journal records between snapshots (a fan admitted in a burst counts
    /// as one).
    pub snapshot_every_records: u64,
    /// The provider is first asked about a silent payment this long after
    /// it was submitted (`checkout_core::PAYMENT_QUERY_AFTER_MS` by default).
    pub payment_query_after_ms: u64,
}

impl std::fmt::Debug for EventArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventArgs")
            .field("event", &self.core.event())
            .finish_non_exhaustive()
    }
}

/// Something the event said, waiting for the journal it depends on.
#[derive(Debug)]
enum Gated {
    Reply(RpcReplyPort<Reply>, Reply),
    Push(Push),
    Charge { hold: HoldId, payment: PaymentId },
    Query { hold: HoldId, payment: PaymentId },
    Refund(PaymentId),
}

pub struct EventState {
    core: EventCore,
    writer: Writer,
    key: TokenKey,
    provider: Provider,
    pushes: broadcast::Sender<(EventId, Push)>,
    queued: Arc<AtomicUsize>,
    /// What the event said, waiting for the journal it depends on.
    gate: OutputGate<Gated>,
    checkouts: FxHashMap<HoldId, CheckoutActor>,
    /// Handed to every checkout session: its alarm rang.
    ring: Ring,
    /// Handed to the provider: where its answers go.
    answers: Answers,
    records_since_snapshot: u64,
    snapshot_every_records: u64,
    last_snapshot: std::time::Instant,
    snapshot_in_flight: bool,
    /// Frozen for a move: commands are answered `busy`; the callers here
    /// hear once everything is durable.
    frozen: Option<Vec<RpcReplyPort<()>>>,
    /// Shared with the handle, refreshed after each input.
    numbers: Numbers,
}

impl std::fmt::Debug for EventState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventState")
            .field("event", &self.core.event())
            .field("durable_seq", &self.gate.durable_seq())
            .field("gated", &self.gate.len())
            .finish_non_exhaustive()
    }
}

impl EventActor {
    /// Spawn an event actor (linked to `supervisor` if given) and its
    /// journal writer; returns the bounded handle.
    pub async fn start(
        args: EventArgs,
        supervisor: Option<ractor::ActorCell>,
    ) -> Result<EventHandle, ActorProcessingErr> {
        let event = args.core.event();
        let queued = Arc::new(AtomicUsize::new(0));
        let numbers: Numbers = Arc::new(std::sync::Mutex::new(Some(args.core.numbers())));
        let start = StartArgs {
            args,
            queued: Arc::clone(&queued),
            numbers: Arc::clone(&numbers),
        };
        let (actor, _) = match supervisor {
            Some(sup) => Actor::spawn_linked(None, EventActor, start, sup).await?,
            None => Actor::spawn(None, EventActor, start).await?,
        };
        Ok(EventHandle {
            event,
            actor,
            queued,
            numbers,
        })
    }
}

#[derive(Debug)]
pub struct StartArgs {
    args: EventArgs,
    queued: Arc<AtomicUsize>,
    numbers: Numbers,
}

impl Actor for EventActor {
    type Msg = EventMsg;
    type State = EventState;
    type Arguments = StartArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        start: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let StartArgs {
            args,
            queued,
            numbers,
        } = start;
        let event = args.core.event();
        let me = myself.clone();
        let writer = Writer::spawn(format!("journal-{}", event.0), args.log, move |done| {
            let _ = me.cast(EventMsg::Written(done));
        })?;
        let durable_seq = args.core.journal_seq();
        let mut core = args.core;
        core.set_payment_query_after_ms(args.payment_query_after_ms);
        core.set_entropy(entropy());
        let me = myself.clone();
        let ring: Ring = Arc::new(move |hold| {
            // The event may be stopping; then so are its sessions, shortly.
            let _ = me.cast(EventMsg::CheckoutDue { hold });
        });
        let me = myself.clone();
        let answers: Answers = Arc::new(move |payment, answer| {
            // Lost if the event stopped: asked again after its restore.
            let _ = me.cast(EventMsg::ProviderAnswer { payment, answer });
        });
        let mut state = EventState {
            core,
            writer,
            key: args.key,
            provider: args.provider,
            pushes: args.pushes,
            queued,
            gate: OutputGate::new(durable_seq, GATED_MAX),
            checkouts: FxHashMap::default(),
            ring,
            answers,
            records_since_snapshot: 0,
            snapshot_every_records: args.snapshot_every_records.max(1),
            last_snapshot: std::time::Instant::now(),
            snapshot_in_flight: false,
            frozen: None,
            numbers,
        };
        state.start_checkouts();
        myself.send_interval(TICK, || EventMsg::Tick);
        state.after_input()?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EventMsg::Command { command, reply } => {
                state.queued.fetch_sub(1, Ordering::AcqRel);
                if state.frozen.is_some() {
                    let _ = reply.send(Reply::error(
                        ErrorCode::Busy,
                        "the event is moving to another node; retry shortly",
                    ));
                    return Ok(());
                }
                if state.gate.is_full() {
                    let _ = reply.send(Reply::error(
                        ErrorCode::Busy,
                        "the store is behind; retry shortly",
                    ));
                    return Ok(());
                }
                let answer = state.command(command);
                state.after_input()?;
                state.gate(Gated::Reply(reply, answer));
            }
            EventMsg::Written(done) => state.written(&myself, done)?,
            EventMsg::CheckoutDue { hold } => {
                state.core.checkout_alarm(hold, wall_now());
                state.after_input()?;
            }
            EventMsg::Tick => {
                state.core.handle_timeout(wall_now());
                state.after_input()?;
                state.maybe_snapshot(false);
            }
            EventMsg::ProviderAnswer { payment, answer } => {
                state.core.provider_answer(payment, answer, wall_now());
                state.after_input()?;
            }
            EventMsg::Freeze { reply } => {
                state.frozen.get_or_insert_with(Vec::new).push(reply);
                state.answer_frozen();
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Dropping the handles ends the sessions and their timers.
        state.checkouts.clear();
        Ok(())
    }
}

/// Eight bytes of the OS's randomness (for the draw's seed), or, if it
/// cannot be read, the standard library's per-process random hash keys.
fn entropy() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(crate::clock::wall_now().0.into());
            hasher.finish()
        }
    }
}

impl EventState {
    fn command(&mut self, command: Command) -> Reply {
        let now = wall_now();
        let pending = self.core.journal_seq() - self.gate.durable_seq();
        if pending > JOURNAL_PENDING_MAX && mutates(&command) {
            return Reply::error(ErrorCode::Busy, "the store is behind; retry shortly");
        }
        let core = &mut self.core;
        match command {
            Command::Join { fan } => match core.join(fan, now) {
                Ok(joined) => {
                    let token = self.sign(fan, joined.position, now);
                    Reply::Joined { joined, token }
                }
                Err(refused) => Reply::JoinRefused { refused },
            },
            Command::JoinWithCode { fan, code } => {
                if let Err(e) = token::verify_presale(&self.key, &code, core.event(), fan) {
                    return Reply::error(
                        ErrorCode::InvalidPresaleCode,
                        format!("presale code refused: {e}"),
                    );
                }
                match core.join_with_code(fan, now) {
                    Ok(joined) => {
                        let token = self.sign(fan, joined.position, now);
                        Reply::Joined { joined, token }
                    }
                    Err(refused) => Reply::JoinRefused { refused },
                }
            }
            Command::SetStamp { bits } => Reply::Stamp {
                bits: core.set_stamp(bits, now),
                set: core.stamp_set(),
            },
            Command::Resume { fan, token } => {
                let verified = match token::verify(&self.key, &token, core.event(), fan, now) {
                    Ok(verified) => verified,
                    Err(e) => return Reply::error(e.code(), e.to_string()),
                };
                match core.resume(&verified, now) {
                    Ok(joined) => Reply::Joined { joined, token },
                    Err(refused) => Reply::JoinRefused { refused },
                }
            }
            Command::Leave { fan } => Reply::Status {
                status: core.leave(fan, now),
            },
            Command::Enter { fan } => Reply::Status {
                status: core.enter(fan, now),
            },
            Command::Status { fan } => Reply::Status {
                status: core.status(fan),
            },
            Command::Overview => Reply::Overview {
                overview: core.overview(),
            },
            Command::SectionSeats { section } => match core.section_seats(section) {
                Some(seats) => Reply::SectionSeats { seats },
                None => Reply::error(ErrorCode::UnknownSection, "no such section"),
            },
            Command::Hold { fan, request } => match core.hold(fan, &request, now) {
                Ok(placed) => Reply::HoldPlaced { placed },
                Err(rejected) => Reply::HoldRejected { rejected },
            },
            Command::Release { fan, hold } => match core.release(fan, hold, now) {
                Ok(()) => Reply::Released,
                Err(refused) => Reply::PaymentRefused { refused },
            },
            Command::SubmitPayment { fan, hold } => match core.submit_payment(fan, hold, now) {
                Ok(started) => Reply::PaymentStarted { started },
                Err(refused) => Reply::PaymentRefused { refused },
            },
            Command::ProviderAnswer { payment, answer } => Reply::PaymentSettled {
                settled: core.provider_answer(payment, answer, now),
            },
            Command::Audit => Reply::Audit {
                audit: onsale_schema::message::Audit {
                    problem: core.check_invariants().err(),
                    journal_seq: core.journal_seq(),
                    next_position: core.next_position(),
                    orders: core.orders().to_vec(),
                },
            },
            Command::Sale { command } => match core.sale_command(command, now) {
                Ok(state) => Reply::Sale { state },
                Err(state) => Reply::error(
                    ErrorCode::WrongSaleState,
                    format!("the sale is {} and cannot take that", state.as_str()),
                ),
            },
        }
    }

    fn sign(
        &self,
        fan: onsale_schema::FanId,
        position: onsale_schema::Position,
        now: Millis,
    ) -> String {
        let claims = QueueClaims {
            event: self.core.event(),
            fan,
            position,
            issued_at: now,
        };
        token::sign(&self.key, &claims)
    }

    /// Route the core's effects: journal to the writer, the rest through
    /// the gate.
    fn after_input(&mut self) -> Result<(), ActorProcessingErr> {
        *self.numbers.lock().expect("not poisoned") = Some(self.core.numbers());
        let effects: Vec<crate::Effect> = self.core.drain_effects().collect();
        let mut batch = Vec::new();
        for effect in effects {
            match effect {
                crate::Effect::Journal(record) => batch.push(record),
                crate::Effect::ArmCheckout { hold, at } => self.arm(hold, at),
                crate::Effect::EndCheckout { hold } => {
                    // Dropping the handle ends the session and its timer.
                    self.checkouts.remove(&hold);
                }
                crate::Effect::QueryPayment { payment, hold } => {
                    self.gate(Gated::Query { hold, payment });
                }
                crate::Effect::ReserveCounter { ceiling } => {
                    self.write(WriteOp::Counter(ceiling))?
                }
                crate::Effect::Push(push) => self.gate(Gated::Push(push)),
                crate::Effect::RequestPayment { payment, hold, .. } => {
                    self.gate(Gated::Charge { hold, payment });
                }
                crate::Effect::Refund { payment } => self.gate(Gated::Refund(payment)),
            }
        }
        if !batch.is_empty() {
            // Replay work, not entries: a burst of admissions counts a
            // change per fan.
            self.records_since_snapshot += batch
                .iter()
                .map(|r| r.entry.admissions().count().max(1) as u64)
                .sum::<u64>();
            self.write(WriteOp::Journal(batch))?;
            self.maybe_snapshot(true);
        }
        Ok(())
    }

    fn write(&self, op: WriteOp) -> Result<(), ActorProcessingErr> {
        self.writer
            .send(op)
            .map_err(|_| "the journal writer stopped".into())
    }

    /// Arm `hold`'s session at `at`, starting the session if it has none.
    fn arm(&mut self, hold: HoldId, at: Millis) {
        if let Some(checkout) = self.checkouts.get(&hold) {
            checkout.send(CheckoutMsg::Arm { at });
            return;
        }
        let args = CheckoutArgs {
            event: self.core.event(),
            hold,
            provider: self.provider.clone(),
            answers: Arc::clone(&self.answers),
            ring: Arc::clone(&self.ring),
            first_alarm: at,
        };
        self.checkouts.insert(hold, CheckoutActor::start(args));
    }

    /// After a start or restore: one session per open checkout, armed as
    /// its core says. A payment that was with the provider is asked about
    /// when its alarm rings (at once if its first query is past).
    fn start_checkouts(&mut self) {
        for (hold, at) in self.core.checkout_alarms() {
            self.arm(hold, at);
        }
    }

    /// Queue something said until the journal it depends on is durable.
    fn gate(&mut self, gated: Gated) {
        self.gate.push(self.core.journal_seq(), gated);
        self.flush();
    }

    /// Say everything whose journal is durable, in order.
    fn flush(&mut self) {
        while let Some(gated) = self.gate.pop() {
            self.emit(gated);
        }
    }

    fn emit(&mut self, gated: Gated) {
        let event = self.core.event();
        match gated {
            Gated::Reply(port, reply) => {
                let _ = port.send(reply); // the caller may have given up
            }
            Gated::Push(push) => {
                let _ = self.pushes.send((event, push)); // no gateway listening
            }
            Gated::Charge { hold, payment } => {
                if let Some(checkout) = self.checkouts.get(&hold) {
                    checkout.send(CheckoutMsg::Pay { payment });
                }
            }
            Gated::Query { hold, payment } => {
                if let Some(checkout) = self.checkouts.get(&hold) {
                    checkout.send(CheckoutMsg::Query { payment });
                }
            }
            Gated::Refund(payment) => self.provider.refund(event, payment),
        }
    }

    fn written(
        &mut self,
        myself: &ActorRef<EventMsg>,
        done: WriteDone,
    ) -> Result<(), ActorProcessingErr> {
        match done {
            WriteDone::Durable { seq } => {
                self.gate.durable(seq);
                self.flush();
                self.answer_frozen();
            }
            WriteDone::Counter { ceiling } => self.core.counter_durable(ceiling),
            WriteDone::Snapshot { .. } => self.snapshot_in_flight = false,
            WriteDone::Stopped { error } => {
                tracing::error!(event = %self.core.event(), %error, "journal writer stopped; stopping the event");
                // Drop everything gated: none of it may be said now.
                self.gate.clear();
                myself.stop(Some(format!("journal writer stopped: {error}")));
            }
        }
        Ok(())
    }

    /// Frozen, and nothing left to make durable: tell those waiting.
    fn answer_frozen(&mut self) {
        let settled = self.gate.durable_seq() >= self.core.journal_seq() && self.gate.is_empty();
        if settled && let Some(waiting) = self.frozen.as_mut() {
            for reply in waiting.drain(..) {
                let _ = reply.send(());
            }
        }
    }

    fn maybe_snapshot(&mut self, by_count_only: bool) {
        if self.snapshot_in_flight || self.records_since_snapshot == 0 {
            return;
        }
        let due = self.records_since_snapshot >= self.snapshot_every_records
            || (!by_count_only && self.last_snapshot.elapsed() >= SNAPSHOT_EVERY);
        if !due {
            return;
        }
        let snapshot = self.core.snapshot();
        // A failed send means the writer is gone; the next journal write
        // stops the event.
        if self.write(WriteOp::Snapshot(Box::new(snapshot))).is_ok() {
            self.snapshot_in_flight = true;
            self.records_since_snapshot = 0;
            self.last_snapshot = std::time::Instant::now();
        }
    }
}

/// Whether a command may write the journal (and so is refused while the
/// store is behind).
fn mutates(command: &Command) -> bool {
    !matches!(
        command,
        Command::Status { .. } | Command::Overview | Command::SectionSeats { .. } | Command::Audit
    )
}
