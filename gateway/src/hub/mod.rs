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
//! node's push stream, and a tick every [`TICK`] (hold-expiry warnings;
//! position and estimated wait every [`POSITION_EVERY`]).
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

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use onsale_cluster::node::Node;
use onsale_schema::api::WsPush;
use onsale_schema::message::{Command, FanStatus, Push, Reply};
use onsale_schema::{EventId, FanId, HoldId, Millis, Position, SectionIdx, limits};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::edge::EdgeCache;

/// How often the hub wakes on its own.
pub const TICK: Duration = Duration::from_millis(250);
/// How often waiting fans hear their position and estimated wait.
pub const POSITION_EVERY: Duration = Duration::from_secs(2);
/// Waiting fans are told their position in this many slices, one per tick.
const POSITION_SLICES: u64 = POSITION_EVERY.as_millis() as u64 / TICK.as_millis() as u64;
/// Hold-expiry warnings go out this long before the deadline.
pub const HOLD_WARNING_MS: u64 = 60_000;
/// Pushes the hub queues before waking the connections it queued for.
pub const PUSH_BATCH_MAX: usize = 64;
/// Frames the hub queues for one connection before waking it anyway,
/// batch or not (far below the outbox's limit).
pub const DEFERRED_FRAMES_MAX: usize = 32;
/// Control messages queued for the hub.
pub const CONTROL_QUEUE: usize = 65_536;

/// A fan connection's id, unique within this gateway.
pub type ConnId = u64;

/// Frames waiting to be written to one connection.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<Bytes>>,
    notify: Notify,
    closed: AtomicBool,
    recheck: AtomicBool,
    /// Frames were queued by the hub and the connection is not woken yet.
    wake_due: AtomicBool,
}

impl Outbox {
    /// Queue a frame and wake the connection. False (and the outbox
    /// closes) when the connection is too far behind; false when it is
    /// closed already.
    pub fn push(&self, frame: Bytes) -> bool {
        let queued = self.enqueue(frame).is_some();
        if queued {
            self.notify.notify_one();
        }
        queued
    }

    /// Queue a frame without waking the connection. True when the caller
    /// must [`wake`](Self::wake) it later (the first frame since the last
    /// wake). A connection with [`DEFERRED_FRAMES_MAX`] frames queued is
    /// woken at once: it must drain long before its outbox overflows.
    fn push_deferred(&self, frame: Bytes) -> bool {
        let Some(queued) = self.enqueue(frame) else {
            return false;
        };
        if queued >= DEFERRED_FRAMES_MAX {
            self.notify.notify_one();
        }
        !self.wake_due.swap(true, Ordering::AcqRel)
    }

    fn wake(&self) {
        self.wake_due.store(false, Ordering::Release);
        self.notify.notify_one();
    }

    /// Queue a frame; how many are queued now, or `None` if refused.
    fn enqueue(&self, frame: Bytes) -> Option<usize> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let mut queue = self.queue.lock().expect("not poisoned");
        if queue.len() >= limits::WS_OUTBOX_FRAMES_MAX {
            drop(queue);
            metrics::counter!("onsale_ws_slow_closed_total").increment(1);
            self.close();
            return None;
        }
        queue.push_back(frame);
        Some(queue.len())
    }

    /// Take every queued frame.
    pub fn take(&self) -> VecDeque<Bytes> {
        std::mem::take(&mut *self.queue.lock().expect("not poisoned"))
    }

    /// Wait until a frame is queued or the outbox closes.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Ask the connection to reread its fan's status from the event.
    pub fn request_recheck(&self) {
        self.recheck.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether a recheck was asked for (and clear the request).
    pub fn take_recheck(&self) -> bool {
        self.recheck.swap(false, Ordering::AcqRel)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

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
    /// The fan holds seats until `deadline`: warn it before.
    Hold {
        event: EventId,
        fan: FanId,
        hold: HoldId,
        deadline: Millis,
    },
    /// The hold was paid for or released: no warning.
    HoldDone { event: EventId, hold: HoldId },
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
        warnings: BTreeSet::new(),
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

/// Connections the hub queued frames for, woken together once the pushes
/// at hand are all queued. Pushes released together (an event opening its
/// sale says "open" and "admitted through P" at once) then reach each fan
/// in one write: woken after the first push, a connection would write it
/// alone while the hub still queued the second.
#[derive(Debug, Default)]
struct Wakes(RefCell<Vec<Arc<Outbox>>>);

impl Wakes {
    fn send(&self, outbox: &Arc<Outbox>, frame: Bytes) {
        if outbox.push_deferred(frame) {
            self.0.borrow_mut().push(Arc::clone(outbox));
        }
    }

    fn wake_all(&self) {
        for outbox in self.0.borrow_mut().drain(..) {
            outbox.wake();
        }
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
    /// (warn at, event, fan, hold, deadline)
    warnings: BTreeSet<(Millis, EventId, FanId, HoldId, Millis)>,
    position_tick: u64,
}

fn encode(push: &WsPush) -> Bytes {
    crate::ws_frame::json_frame(push)
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
        for c in self.conns.values().filter(|c| c.in_turn) {
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
            HubMsg::Hold {
                event,
                fan,
                hold,
                deadline,
            } => {
                let warn_at = Millis(deadline.0.saturating_sub(HOLD_WARNING_MS));
                self.warnings.insert((warn_at, event, fan, hold, deadline));
            }
            HubMsg::HoldDone { event, hold } => {
                self.warnings.retain(|w| !(w.1 == event && w.3 == hold));
            }
            HubMsg::FanStatus { event, fan, status } => {
                let Some(room) = self.rooms.get_mut(&event) else {
                    return;
                };
                let waiting = match status {
                    Some(FanStatus::Waiting { position, .. }) => Some(position),
                    _ => None,
                };
                for conn in room.by_fan.get(&fan).into_iter().flatten() {
                    let Some(c) = self.conns.get_mut(conn) else {
                        continue;
                    };
                    c.in_turn = in_turn(status.as_ref());
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
        match push {
            Push::AdmittedThrough {
                position,
                decided_at,
            } => {
                room.admitted_through = room.admitted_through.max(position);
                room.note_admissions(position);
                let heard = onsale_actors::clock::wall_now();
                let fan_out = Instant::now();
                let mut told = 0u64;
                while let Some(&(p, conn)) = room.waiting.first() {
                    if p > position {
                        break;
                    }
                    room.waiting.pop_first();
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.waiting = None;
                        c.in_turn = true;
                        let frame = encode(&WsPush::Admitted {
                            event,
                            position: p,
                            decided_at,
                        });
                        self.wakes.send(&c.outbox, frame);
                        told += 1;
                    }
                }
                metrics::counter!("onsale_admissions_pushed_total").increment(told);
                if told > 0 {
                    // From the decision to the hub hearing of it (the
                    // journal made durable, the push through the node).
                    let push_delay_ms = heard.saturating_sub(decided_at);
                    tracing::debug!(
                        %event,
                        told,
                        push_delay_ms,
                        fan_out_us = fan_out.elapsed().as_micros() as u64,
                        "admissions fanned out"
                    );
                    metrics::histogram!("onsale_admission_push_delay_ms")
                        .record(push_delay_ms as f64);
                }
            }
            Push::FanAdmitted {
                fan,
                position,
                decided_at,
            } => {
                let frame = encode(&WsPush::Admitted {
                    event,
                    position,
                    decided_at,
                });
                for conn in room.by_fan.get(&fan).into_iter().flatten() {
                    if let Some(c) = self.conns.get_mut(conn) {
                        if let Some(p) = c.waiting.take() {
                            room.waiting.remove(&(p, *conn));
                        }
                        c.in_turn = true;
                        self.wakes.send(&c.outbox, frame.clone());
                    }
                }
            }
            Push::Full { full } => {
                Self::to_room(
                    &self.conns,
                    &self.wakes,
                    room,
                    &encode(&WsPush::Full { event, full }),
                );
            }
            Push::SoldOut => {
                Self::to_room(
                    &self.conns,
                    &self.wakes,
                    room,
                    &encode(&WsPush::SoldOut { event }),
                );
            }
            Push::Sale { state } => {
                Self::to_room(
                    &self.conns,
                    &self.wakes,
                    room,
                    &encode(&WsPush::Sale { event, state }),
                );
            }
            Push::SeatsChanged {
                section,
                seats,
                available,
            } => {
                let Some(viewers) = room.viewers.get(&section) else {
                    return;
                };
                let frame = encode(&WsPush::SeatsChanged {
                    event,
                    section,
                    seats,
                    available,
                });
                for conn in viewers {
                    if let Some(c) = self.conns.get(conn) {
                        self.wakes.send(&c.outbox, frame.clone());
                    }
                }
            }
            Push::HoldExpiring {
                fan,
                hold,
                deadline,
            } => Self::to_fan(
                &self.conns,
                &self.wakes,
                room,
                fan,
                &encode(&WsPush::HoldExpiring {
                    event,
                    hold,
                    deadline,
                }),
            ),
            Push::HoldExpired { fan, hold } => {
                self.warnings.retain(|w| !(w.1 == event && w.3 == hold));
                Self::to_fan(
                    &self.conns,
                    &self.wakes,
                    room,
                    fan,
                    &encode(&WsPush::HoldExpired { event, hold }),
                );
            }
            Push::AdmissionExpired { fan } => Self::to_fan(
                &self.conns,
                &self.wakes,
                room,
                fan,
                &encode(&WsPush::AdmissionExpired { event }),
            ),
            Push::PaymentDeclined {
                fan,
                hold,
                retry_until,
            } => Self::to_fan(
                &self.conns,
                &self.wakes,
                room,
                fan,
                &encode(&WsPush::PaymentDeclined {
                    event,
                    hold,
                    retry_until,
                }),
            ),
            Push::Purchased { fan, order, seats } => Self::to_fan(
                &self.conns,
                &self.wakes,
                room,
                fan,
                &encode(&WsPush::Purchased {
                    event,
                    order,
                    seats,
                }),
            ),
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
        let now = onsale_actors::clock::wall_now();
        while let Some(&first) = self.warnings.first() {
            let (warn_at, event, fan, hold, deadline) = first;
            if warn_at > now {
                break;
            }
            self.warnings.pop_first();
            if let Some(room) = self.rooms.get(&event) {
                let frame = encode(&WsPush::HoldExpiring {
                    event,
                    hold,
                    deadline,
                });
                Self::to_fan(&self.conns, &self.wakes, room, fan, &frame);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_queued_together_wake_the_connection_once_after_the_last() {
        let outbox = Arc::new(Outbox::default());
        let wakes = Wakes::default();
        wakes.send(&outbox, Bytes::from_static(b"sale open"));
        wakes.send(&outbox, Bytes::from_static(b"admitted"));
        assert_eq!(wakes.0.borrow().len(), 1, "one wake for both frames");
        // Not woken yet: the connection would write the first frame alone.
        let early = tokio::time::timeout(Duration::from_millis(20), outbox.ready()).await;
        assert!(early.is_err());
        wakes.wake_all();
        outbox.ready().await;
        assert_eq!(outbox.take(), [&b"sale open"[..], &b"admitted"[..]]);
        // The next frame asks for a wake again.
        wakes.send(&outbox, Bytes::from_static(b"position"));
        assert_eq!(wakes.0.borrow().len(), 1);
    }

    #[tokio::test]
    async fn a_connection_sent_many_frames_in_one_batch_is_woken_before_it_overflows() {
        let outbox = Arc::new(Outbox::default());
        let wakes = Wakes::default();
        // 300 seat changes for a section this fan views, all in one batch.
        for _ in 0..300 {
            wakes.send(&outbox, Bytes::from_static(b"seats_changed"));
            if outbox.queue.lock().unwrap().len() >= DEFERRED_FRAMES_MAX {
                // The connection task: woken, it drains.
                tokio::time::timeout(Duration::from_secs(1), outbox.ready())
                    .await
                    .expect("woken before the batch ends");
                outbox.take();
            }
        }
        assert!(
            !outbox.is_closed(),
            "a healthy connection was closed as slow"
        );
        wakes.wake_all();
    }

    #[test]
    fn an_outbox_that_overflows_closes_and_takes_no_more() {
        let outbox = Outbox::default();
        for _ in 0..limits::WS_OUTBOX_FRAMES_MAX {
            assert!(outbox.push(Bytes::from_static(b"x")));
        }
        assert!(!outbox.push(Bytes::from_static(b"one too many")));
        assert!(outbox.is_closed());
        assert!(!outbox.push_deferred(Bytes::from_static(b"after")));
    }
}
