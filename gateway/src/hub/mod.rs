//! The hub: one task per gateway that turns each event's pushes into
//! frames for this gateway's own fan connections.
//!
//! **Fan-out is per gateway, not per fan.** The event sends "admitted
//! through position P" once; the hub keeps its waiting fans ordered by
//! position and tells exactly those at or below P. Seat changes go only to
//! the fans viewing that section; per-fan pushes (purchased, hold expired)
//! only to that fan's connections. A frame for many fans is encoded once.
//!
//! **Messages.** [`HubMsg`] from connections (watch, view, hold, gone), the
//! node's push stream, and a tick every [`TICK`] (position and estimated
//! wait every [`POSITION_EVERY`]). Hold-expiry warnings are the event's
//! own pushes (`HoldExpiring`), whichever gateway placed the hold: the hub
//! only delivers them.
//!
//! **Capacity.** The control channel is bounded ([`CONTROL_QUEUE`]);
//! connections wait for room (backpressure). Each connection's outbox is
//! bounded ([`limits::WS_OUTBOX_FRAMES_MAX`]); a connection that falls
//! that far behind is closed, and resynchronises when the fan reconnects.
//! If the push stream itself lags (the hub fell behind the node), every
//! watched event is resynchronised from a fresh overview, and every fan in
//! its turn rereads its own status (a lost "purchased" or "declined").
//!
//! **Shutdown.** The hub ends when the node's push stream closes.

mod frame;
mod outbox;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use onsale_cluster::node::Node;
use onsale_schema::api::WsPush;
use onsale_schema::message::{Command, FanStatus, Push, Reply};
use onsale_schema::{EventId, FanId, Millis, Position, SaleState, SectionIdx};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::{broadcast, mpsc};

pub use frame::{Delivery, admitted, delivery, encode};
pub use outbox::{DEFERRED_FRAMES_MAX, Outbox};

use crate::edge::EdgeCache;
use outbox::Wakes;

/// How often the hub wakes on its own.
pub const TICK: Duration = Duration::from_millis(250);
/// How often waiting fans hear their position and estimated wait.
pub const POSITION_EVERY: Duration = Duration::from_secs(2);
/// Waiting fans are told their position in this many slices, one per tick.
const POSITION_SLICES: u64 = POSITION_EVERY.as_millis() as u64 / TICK.as_millis() as u64;
/// Pushes the hub queues before waking the connections it queued for.
pub const PUSH_BATCH_MAX: usize = 64;
/// Control messages queued for the hub.
pub const CONTROL_QUEUE: usize = 65_536;

/// A fan connection's id, unique within this gateway.
pub type ConnId = u64;

/// What connections tell the hub.
#[derive(Debug)]
pub enum HubMsg {
    /// The connection follows `event` as `fan`, whose status is `status`.
    Watch {
        conn: ConnId,
        fan: FanId,
        event: EventId,
        status: Option<FanStatus>,
        outbox: Arc<Outbox>,
    },
    /// Seat changes of this section only (or none).
    View {
        conn: ConnId,
        section: Option<SectionIdx>,
    },
    /// The connection closed.
    Gone { conn: ConnId },
    /// An HTTP command told `fan` where it stands (join, resume, leave,
    /// status, enter): its connections follow.
    FanStatus {
        event: EventId,
        fan: FanId,
        status: Option<FanStatus>,
    },
}

/// How connections reach the hub.
#[derive(Clone, Debug)]
pub struct HubHandle {
    tx: mpsc::Sender<HubMsg>,
    next: Arc<AtomicU64>,
}

impl HubHandle {
    /// A new connection id.
    #[must_use]
    pub fn conn_id(&self) -> ConnId {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Tell the hub (waits while its queue is full).
    pub async fn send(&self, msg: HubMsg) {
        if self.tx.send(msg).await.is_err() {
            tracing::debug!("the hub has stopped");
        }
    }

    /// Tell the hub without waiting; dropped (and logged) when it is full.
    pub fn try_send(&self, msg: HubMsg) {
        if let Err(e) = self.tx.try_send(msg) {
            tracing::warn!(error = %e, "hub queue full: a message was dropped");
        }
    }
}

/// Start the hub over a node's pushes.
pub fn spawn(node: Node, edge: Arc<EdgeCache>) -> HubHandle {
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let pushes = node.subscribe();
    let hub = Hub {
        wakes: Wakes::default(),
        node,
        edge,
        conns: FxHashMap::default(),
        rooms: FxHashMap::default(),
        frontiers: FxHashMap::default(),
        position_tick: 0,
    };
    tokio::spawn(hub.run(rx, pushes));
    HubHandle {
        tx,
        next: Arc::new(AtomicU64::new(1)),
    }
}

#[derive(Debug)]
struct Conn {
    fan: FanId,
    event: EventId,
    /// Its position while it waits.
    waiting: Option<Position>,
    /// In the pre-queue when last heard of: its position comes with the
    /// draw's pushes.
    pre_queued: bool,
    /// Admitted or holding when last heard of: pushes to this one fan
    /// (purchased, declined, hold expired) may come.
    in_turn: bool,
    section: Option<SectionIdx>,
    outbox: Arc<Outbox>,
}

fn in_turn(status: Option<&FanStatus>) -> bool {
    matches!(
        status,
        Some(FanStatus::Admitted { .. } | FanStatus::Holding { .. })
    )
}

/// One event as this gateway's fans see it.
#[derive(Debug, Default)]
struct Room {
    conns: FxHashSet<ConnId>,
    waiting: BTreeSet<(Position, ConnId)>,
    by_fan: FxHashMap<FanId, Vec<ConnId>>,
    viewers: FxHashMap<SectionIdx, FxHashSet<ConnId>>,
    admitted_through: Position,
    /// The sale opened (so a pre-queued fan's position was drawn).
    opened: bool,
    /// Admission rate estimate (positions per second) and its last sample.
    rate: f64,
    sample: Option<(Instant, Position)>,
}

impl Room {
    fn unview(&mut self, section: SectionIdx, conn: ConnId) {
        if let Some(viewers) = self.viewers.get_mut(&section) {
            viewers.remove(&conn);
            if viewers.is_empty() {
                self.viewers.remove(&section);
            }
        }
    }

    fn note_admissions(&mut self, through: Position) {
        let now = Instant::now();
        match self.sample {
            Some((at, from)) if through > from => {
                let secs = now.duration_since(at).as_secs_f64().max(0.05);
                let instant = (through.0 - from.0) as f64 / secs;
                self.rate = if self.rate == 0.0 {
                    instant
                } else {
                    0.7 * self.rate + 0.3 * instant
                };
                self.sample = Some((now, through));
            }
            Some(_) => {}
            None => self.sample = Some((now, through)),
        }
    }

    fn eta_ms(&self, ahead: u64) -> Option<u64> {
        // Stale estimates decay: no admission for 30 s means "unknown".
        let fresh = self
            .sample
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(30));
        (self.rate > 0.0 && fresh).then(|| ((ahead as f64 / self.rate) * 1000.0) as u64)
    }
}

struct Hub {
    wakes: Wakes,
    node: Node,
    edge: Arc<EdgeCache>,
    conns: FxHashMap<ConnId, Conn>,
    rooms: FxHashMap<EventId, Room>,
    /// Each event's admission frontier, kept even while no fan here
    /// watches it, so a room made later starts from the truth.
    frontiers: FxHashMap<EventId, Position>,
    position_tick: u64,
}

impl Hub {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<HubMsg>,
        mut pushes: broadcast::Receiver<(EventId, Push)>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Ok((event, push)) => {
                        self.on_push(event, push);
                        // And the pushes already here, before waking anyone
                        // (a bounded batch: a steady flood must not starve
                        // the connections of their wake-ups).
                        for _ in 1..PUSH_BATCH_MAX {
                            match pushes.try_recv() {
                                Ok((event, push)) => self.on_push(event, push),
                                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                                    self.lagged(missed).await;
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => self.lagged(missed).await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                msg = rx.recv() => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
            }
            self.wakes.wake_all();
        }
    }

    async fn lagged(&mut self, missed: u64) {
        tracing::warn!(
            missed,
            "the hub lagged behind the node's pushes; resynchronising"
        );
        // What is queued goes out while the events are asked.
        self.wakes.wake_all();
        self.edge.forget_all();
        self.resync().await;
        // Pushes to one fan (purchased, declined, hold expired) may be among
        // those missed: every fan in its turn rereads its status from the
        // event (at most the events' shoppers; waiting fans are covered by
        // the frontier above).
        // So may a draw's positions: pre-queued fans reread theirs too.
        for c in self.conns.values().filter(|c| c.in_turn || c.pre_queued) {
            c.outbox.request_recheck();
        }
    }

    fn on_msg(&mut self, msg: HubMsg) {
        match msg {
            HubMsg::Watch {
                conn,
                fan,
                event,
                status,
                outbox,
            } => {
                self.forget(conn);
                let waiting = match status {
                    Some(FanStatus::Waiting { position, .. }) => Some(position),
                    _ => None,
                };
                let frontier = self.frontiers.get(&event).copied().unwrap_or_default();
                let room = self.rooms.entry(event).or_insert_with(|| Room {
                    admitted_through: frontier,
                    ..Room::default()
                });
                room.conns.insert(conn);
                room.by_fan.entry(fan).or_default().push(conn);
                let pre_queued = matches!(status, Some(FanStatus::PreQueued { .. }));
                if pre_queued && room.opened {
                    // Drawn between the status read and now: ask the event.
                    outbox.request_recheck();
                }
                if let Some(position) = waiting {
                    room.waiting.insert((position, conn));
                    if position <= room.admitted_through {
                        // Admitted between the status read and now, or
                        // resumed below the frontier: ask the event.
                        outbox.request_recheck();
                    }
                }
                self.conns.insert(
                    conn,
                    Conn {
                        fan,
                        event,
                        waiting,
                        pre_queued,
                        in_turn: in_turn(status.as_ref()),
                        section: None,
                        outbox,
                    },
                );
                metrics::gauge!("onsale_ws_watching").set(self.conns.len() as f64);
            }
            HubMsg::View { conn, section } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                let room = self.rooms.entry(c.event).or_default();
                if let Some(old) = c.section.take() {
                    room.unview(old, conn);
                }
                if let Some(section) = section {
                    room.viewers.entry(section).or_default().insert(conn);
                }
                c.section = section;
            }
            HubMsg::FanStatus { event, fan, status } => {
                let Some(room) = self.rooms.get_mut(&event) else {
                    return;
                };
                let waiting = match status {
                    Some(FanStatus::Waiting { position, .. }) => Some(position),
                    _ => None,
                };
                let pre_queued = matches!(status, Some(FanStatus::PreQueued { .. }));
                for conn in room.by_fan.get(&fan).into_iter().flatten() {
                    let Some(c) = self.conns.get_mut(conn) else {
                        continue;
                    };
                    c.in_turn = in_turn(status.as_ref());
                    c.pre_queued = pre_queued;
                    if pre_queued && room.opened {
                        c.outbox.request_recheck();
                    }
                    if let Some(old) = c.waiting.take() {
                        room.waiting.remove(&(old, *conn));
                    }
                    if let Some(position) = waiting {
                        room.waiting.insert((position, *conn));
                        c.waiting = Some(position);
                        if position <= room.admitted_through {
                            c.outbox.request_recheck();
                        }
                    }
                }
            }
            HubMsg::Gone { conn } => {
                self.forget(conn);
                metrics::gauge!("onsale_ws_watching").set(self.conns.len() as f64);
            }
        }
    }

    fn forget(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&c.event) else {
            return;
        };
        room.conns.remove(&conn);
        if let Some(position) = c.waiting {
            room.waiting.remove(&(position, conn));
        }
        if let Some(conns) = room.by_fan.get_mut(&c.fan) {
            conns.retain(|other| *other != conn);
            if conns.is_empty() {
                room.by_fan.remove(&c.fan);
            }
        }
        if let Some(section) = c.section {
            room.unview(section, conn);
        }
    }

    fn on_push(&mut self, event: EventId, push: Push) {
        self.edge.apply(event, &push);
        if let Push::AdmittedThrough { position, .. } = push {
            let frontier = self.frontiers.entry(event).or_default();
            *frontier = (*frontier).max(position);
        }
        let Some(room) = self.rooms.get_mut(&event) else {
            return;
        };
        if matches!(&push, Push::Drawn { .. })
            || matches!(&push, Push::Sale { state } if *state != SaleState::Scheduled)
        {
            room.opened = true;
        }
        // The hub's own books first: who is no longer waiting.
        if let Push::FanAdmitted { fan, .. } = &push {
            for conn in room.by_fan.get(fan).into_iter().flatten() {
                if let Some(c) = self.conns.get_mut(conn) {
                    if let Some(p) = c.waiting.take() {
                        room.waiting.remove(&(p, *conn));
                    }
                    c.in_turn = true;
                }
            }
        }
        match frame::delivery(event, push) {
            Delivery::AdmittedThrough {
                through,
                decided_at,
            } => Self::admit_through(
                &mut self.conns,
                &self.wakes,
                room,
                event,
                through,
                decided_at,
            ),
            Delivery::Room(push) => {
                Self::to_room(&self.conns, &self.wakes, room, &encode(&push));
            }
            Delivery::Viewers { section, push } => {
                let Some(viewers) = room.viewers.get(&section) else {
                    return;
                };
                let frame = encode(&push);
                for conn in viewers {
                    if let Some(c) = self.conns.get(conn) {
                        self.wakes.send(&c.outbox, frame.clone());
                    }
                }
            }
            Delivery::Fan { fan, push } => {
                Self::to_fan(&self.conns, &self.wakes, room, fan, &encode(&push));
            }
            Delivery::Drawn { fans } => {
                Self::place_drawn(&mut self.conns, &self.wakes, room, event, &fans);
            }
        }
    }

    /// Pre-queued fans here got their positions: they wait there now, and
    /// hear where that is (those already through hear it at once from
    /// the admissions that follow the draw).
    fn place_drawn(
        conns: &mut FxHashMap<ConnId, Conn>,
        wakes: &Wakes,
        room: &mut Room,
        event: EventId,
        fans: &[(FanId, Position)],
    ) {
        for (fan, position) in fans {
            for conn in room.by_fan.get(fan).into_iter().flatten() {
                let Some(c) = conns.get_mut(conn) else {
                    continue;
                };
                if !c.pre_queued {
                    continue;
                }
                c.pre_queued = false;
                c.waiting = Some(*position);
                room.waiting.insert((*position, *conn));
                let ahead = position.0.saturating_sub(room.admitted_through.0 + 1);
                wakes.send(
                    &c.outbox,
                    encode(&WsPush::Position {
                        event,
                        position: *position,
                        ahead,
                        admitted_through: room.admitted_through,
                        eta_ms: None,
                    }),
                );
            }
        }
    }

    /// Tell every fan waiting at or below `through` that its turn came.
    fn admit_through(
        conns: &mut FxHashMap<ConnId, Conn>,
        wakes: &Wakes,
        room: &mut Room,
        event: EventId,
        through: Position,
        decided_at: Millis,
    ) {
        room.admitted_through = room.admitted_through.max(through);
        room.note_admissions(through);
        let heard = onsale_actors::clock::wall_now();
        let fan_out = Instant::now();
        let mut told = 0u64;
        while let Some(&(p, conn)) = room.waiting.first() {
            if p > through {
                break;
            }
            room.waiting.pop_first();
            if let Some(c) = conns.get_mut(&conn) {
                c.waiting = None;
                c.in_turn = true;
                wakes.send(&c.outbox, encode(&frame::admitted(event, p, decided_at)));
                told += 1;
            }
        }
        metrics::counter!("onsale_admissions_pushed_total").increment(told);
        if told > 0 {
            // From the decision to the hub hearing of it (the journal made
            // durable, the push through the node).
            let push_delay_ms = heard.saturating_sub(decided_at);
            tracing::debug!(
                %event,
                told,
                push_delay_ms,
                fan_out_us = fan_out.elapsed().as_micros() as u64,
                "admissions fanned out"
            );
            metrics::histogram!("onsale_admission_push_delay_ms").record(push_delay_ms as f64);
        }
    }

    fn to_room(conns: &FxHashMap<ConnId, Conn>, wakes: &Wakes, room: &Room, frame: &Bytes) {
        for conn in &room.conns {
            if let Some(c) = conns.get(conn) {
                wakes.send(&c.outbox, frame.clone());
            }
        }
    }

    fn to_fan(
        conns: &FxHashMap<ConnId, Conn>,
        wakes: &Wakes,
        room: &Room,
        fan: FanId,
        frame: &Bytes,
    ) {
        for conn in room.by_fan.get(&fan).into_iter().flatten() {
            if let Some(c) = conns.get(conn) {
                wakes.send(&c.outbox, frame.clone());
            }
        }
    }

    fn on_tick(&mut self) {
        // Each tick tells one slice of the waiting fans, so that every fan
        // hears every POSITION_EVERY without a burst of frames (19,000 at
        // once would delay an admission landing just behind it).
        self.position_tick = self.position_tick.wrapping_add(1);
        self.send_positions(self.position_tick % POSITION_SLICES);
        // Closed connections whose tasks are gone are cleaned by `Gone`;
        // rooms nobody watches are dropped here.
        self.rooms.retain(|_, room| !room.conns.is_empty());
    }

    fn send_positions(&self, slice: u64) {
        for (&event, room) in &self.rooms {
            for &(position, conn) in &room.waiting {
                if conn % POSITION_SLICES != slice {
                    continue;
                }
                let Some(c) = self.conns.get(&conn) else {
                    continue;
                };
                if position <= room.admitted_through {
                    // Admitted already (the push raced the watch), or a
                    // fan who resumed below the frontier: ask the event.
                    c.outbox.request_recheck();
                    continue;
                }
                let ahead = position.0.saturating_sub(room.admitted_through.0 + 1);
                self.wakes.send(
                    &c.outbox,
                    encode(&WsPush::Position {
                        event,
                        position,
                        ahead,
                        admitted_through: room.admitted_through,
                        eta_ms: room.eta_ms(ahead),
                    }),
                );
            }
        }
    }

    /// After lagging: read every watched event's overview and admit the
    /// waiting fans it says are through.
    async fn resync(&mut self) {
        let events: Vec<EventId> = self.rooms.keys().copied().collect();
        for event in events {
            let reply = self.node.call(event, Command::Overview).await;
            if let Reply::Overview { overview } = reply {
                self.edge.learn(&overview);
                self.on_push(
                    event,
                    Push::AdmittedThrough {
                        position: overview.admitted_through,
                        decided_at: onsale_actors::clock::wall_now(),
                    },
                );
                let sale = overview.sale;
                self.on_push(event, Push::Sale { state: sale });
            }
        }
    }
}
