//! What the change feed publishes: one message per journal record that
//! matters to the business, with a deterministic id.
//!
//! [`EventFeed`] turns one event's journal records, in order, into
//! messages. Most records say everything themselves; a sale or a release
//! names only its hold, so the feed remembers the holds still open (their
//! fan and seats) and fills them in. What it remembers is rebuilt after a
//! restart by reading the journal again from [`EventFeed::keep_from`],
//! which the store keeps for the feed.
//!
//! Subjects are `<prefix>.<event>.<kind>` (`onsale.7.sold`), ids
//! `<event>:<seq>`, bodies JSON: see docs/protocol.md ("The change feed").

use std::collections::HashMap;
use std::sync::Arc;

use onsale_schema::config::SaleState;
use onsale_schema::snapshot::{JournalEntry, JournalRecord, ReleaseReason};
use onsale_schema::venue::Venue;
use onsale_schema::{EventId, FanId, HoldId, Millis, SeatIdx};
use serde::Serialize;

/// The version of the message bodies (`"v"`). Bumped when a field changes
/// meaning or goes; new fields may appear without a bump.
pub const FEED_SCHEMA_VERSION: u32 = 1;

/// The subject prefix by default.
pub const DEFAULT_PREFIX: &str = "onsale";

/// One message, ready to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedMessage {
    pub subject: String,
    /// `<event>:<seq>`: the broker drops a repeat of it.
    pub id: String,
    pub body: Vec<u8>,
    /// The journal record it comes from (for a gap: the last record missed).
    pub seq: u64,
    pub at: Millis,
}

/// The message id of `event`'s record `seq`.
#[must_use]
pub fn message_id(event: EventId, seq: u64) -> String {
    format!("{}:{seq}", event.0)
}

/// The (event, seq) a message id names, if it is one of ours.
#[must_use]
pub fn parse_message_id(id: &str) -> Option<(EventId, u64)> {
    let (event, seq) = id.split_once(':')?;
    Some((EventId(event.parse().ok()?), seq.parse().ok()?))
}

/// A hold the feed knows to be open.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OpenHold {
    fan: FanId,
    seats: Vec<SeatIdx>,
    /// The record that placed it (rebuilding the feed reads from there).
    placed: u64,
}

/// One event's journal, as the feed reads it.
#[derive(Debug)]
pub struct EventFeed {
    event: EventId,
    venue: Arc<Venue>,
    prefix: String,
    holds: HashMap<HoldId, OpenHold>,
    /// The last record that made a message.
    last_message: u64,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    v: u32,
    event: u64,
    seq: u64,
    /// The seq of this event's previous message (0: none): a consumer sees
    /// a gap as `prev` not being the last seq it has.
    prev: u64,
    kind: &'a str,
    /// When the record was written (ms since the Unix epoch).
    at: u64,
    #[serde(flatten)]
    data: T,
}

/// A seat as a message names it.
#[derive(Serialize)]
struct SeatBody<'a> {
    seat: u32,
    section: &'a str,
    row: &'a str,
    number: &'a str,
    price_cents: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Sale {
        state: &'static str,
    },
    Admitted {
        fans: Vec<AdmittedFan>,
    },
    Held {
        hold: u64,
        fan: u64,
        seats: Vec<SeatBody<'a>>,
        total_cents: u64,
        deadline: u64,
    },
    Released {
        hold: u64,
        /// `null` only for a hold placed before records the store no longer
        /// keeps (see docs/protocol.md).
        fan: Option<u64>,
        seats: Option<Vec<SeatBody<'a>>>,
        reason: &'static str,
    },
    Sold {
        order: u64,
        hold: u64,
        fan: Option<u64>,
        seats: Option<Vec<SeatBody<'a>>>,
        total_cents: Option<u64>,
    },
    Gap {
        from: u64,
        to: u64,
    },
}

#[derive(Serialize)]
struct AdmittedFan {
    fan: u64,
    position: u64,
}

fn sale_state(state: SaleState) -> &'static str {
    state.as_str()
}

fn reason(reason: ReleaseReason) -> &'static str {
    match reason {
        ReleaseReason::ByFan => "by_fan",
        ReleaseReason::Expired => "expired",
        ReleaseReason::Declined => "declined",
        ReleaseReason::Voided => "voided",
        ReleaseReason::Closed => "closed",
    }
}

impl EventFeed {
    #[must_use]
    pub fn new(event: EventId, venue: Arc<Venue>, prefix: &str, last_message: u64) -> EventFeed {
        EventFeed {
            event,
            venue,
            prefix: prefix.to_owned(),
            holds: HashMap::new(),
            last_message,
        }
    }

    #[must_use]
    pub fn event(&self) -> EventId {
        self.event
    }

    /// The seq of the last record that made a message.
    #[must_use]
    pub fn last_message(&self) -> u64 {
        self.last_message
    }

    /// The oldest record to read again to know, after `published`, the
    /// holds still open: the one that placed the oldest of them, else the
    /// next record.
    #[must_use]
    pub fn keep_from(&self, published: u64) -> u64 {
        self.holds
            .values()
            .map(|h| h.placed)
            .min()
            .unwrap_or(published + 1)
            .min(published + 1)
    }

    /// Remember a hold known from elsewhere (a snapshot), placed at or
    /// before `placed`.
    pub fn know_hold(&mut self, hold: HoldId, fan: FanId, seats: Vec<SeatIdx>, placed: u64) {
        self.holds.insert(hold, OpenHold { fan, seats, placed });
    }

    /// Read a record again without publishing (rebuilding after a restart).
    pub fn replay(&mut self, record: &JournalRecord) {
        self.track(&record.entry, record.seq);
    }

    /// The message for the records `from..=to` the store no longer keeps
    /// (compacted before the feed read them).
    pub fn gap(&mut self, from: u64, to: u64, at: Millis) -> FeedMessage {
        let message = self.message(to, at, "gap", Data::Gap { from, to });
        self.last_message = to;
        message
    }

    /// Read the next record; the message it makes, if it matters.
    pub fn apply(&mut self, record: &JournalRecord) -> Option<FeedMessage> {
        let (seq, at) = (record.seq, record.at);
        let message = match &record.entry {
            JournalEntry::Sale { state } => Some(self.message(
                seq,
                at,
                "sale",
                Data::Sale {
                    state: sale_state(*state),
                },
            )),
            entry @ (JournalEntry::Admitted { .. } | JournalEntry::AdmittedMany { .. }) => {
                let fans = entry
                    .admissions()
                    .map(|(fan, position, _)| AdmittedFan {
                        fan: fan.0,
                        position: position.0,
                    })
                    .collect();
                Some(self.message(seq, at, "admitted", Data::Admitted { fans }))
            }
            JournalEntry::HoldPlaced {
                hold,
                fan,
                seats,
                deadline,
            } => {
                let venue = Arc::clone(&self.venue);
                let (bodies, total) = seat_bodies(&venue, seats);
                Some(self.message(
                    seq,
                    at,
                    "held",
                    Data::Held {
                        hold: hold.0,
                        fan: fan.0,
                        seats: bodies,
                        total_cents: total,
                        deadline: deadline.0,
                    },
                ))
            }
            JournalEntry::HoldReleased { hold, reason: why } => {
                let known = self.holds.get(hold).cloned();
                let venue = Arc::clone(&self.venue);
                let seats = known.as_ref().map(|h| seat_bodies(&venue, &h.seats).0);
                Some(self.message(
                    seq,
                    at,
                    "released",
                    Data::Released {
                        hold: hold.0,
                        fan: known.as_ref().map(|h| h.fan.0),
                        seats,
                        reason: reason(*why),
                    },
                ))
            }
            JournalEntry::Sold { hold, order, .. } => {
                let known = self.holds.get(hold).cloned();
                let venue = Arc::clone(&self.venue);
                let seats = known.as_ref().map(|h| seat_bodies(&venue, &h.seats));
                Some(self.message(
                    seq,
                    at,
                    "sold",
                    Data::Sold {
                        order: order.0,
                        hold: hold.0,
                        fan: known.as_ref().map(|h| h.fan.0),
                        total_cents: seats.as_ref().map(|s| s.1),
                        seats: seats.map(|s| s.0),
                    },
                ))
            }
            JournalEntry::Entered { .. }
            | JournalEntry::AdmissionLapsed { .. }
            | JournalEntry::PaymentSubmitted { .. }
            | JournalEntry::PaymentDeclined { .. }
            | JournalEntry::Refunded { .. }
            | JournalEntry::PreQueued { .. }
            | JournalEntry::Drawn { .. }
            | JournalEntry::PresaleJoined { .. }
            | JournalEntry::StampDifficulty { .. } => None,
        };
        self.track(&record.entry, seq);
        message
    }

    fn track(&mut self, entry: &JournalEntry, seq: u64) {
        match entry {
            JournalEntry::HoldPlaced {
                hold, fan, seats, ..
            } => {
                self.holds.insert(
                    *hold,
                    OpenHold {
                        fan: *fan,
                        seats: seats.clone(),
                        placed: seq,
                    },
                );
            }
            JournalEntry::HoldReleased { hold, .. } | JournalEntry::Sold { hold, .. } => {
                self.holds.remove(hold);
            }
            _ => {}
        }
        if matters(entry) {
            self.last_message = seq;
        }
    }

    fn message(&mut self, seq: u64, at: Millis, kind: &str, data: Data<'_>) -> FeedMessage {
        let body = serde_json::to_vec(&Envelope {
            v: FEED_SCHEMA_VERSION,
            event: self.event.0,
            seq,
            prev: self.last_message,
            kind,
            at: at.0,
            data,
        })
        .expect("feed bodies serialise");
        FeedMessage {
            subject: format!("{}.{}.{kind}", self.prefix, self.event.0),
            id: if kind == "gap" {
                format!("{}:gap:{seq}", self.event.0)
            } else {
                message_id(self.event, seq)
            },
            body,
            seq,
            at,
        }
    }
}

/// Whether a journal entry makes a message.
#[must_use]
pub fn matters(entry: &JournalEntry) -> bool {
    matches!(
        entry,
        JournalEntry::Sale { .. }
            | JournalEntry::Admitted { .. }
            | JournalEntry::AdmittedMany { .. }
            | JournalEntry::HoldPlaced { .. }
            | JournalEntry::HoldReleased { .. }
            | JournalEntry::Sold { .. }
    )
}

fn seat_bodies<'v>(venue: &'v Venue, seats: &[SeatIdx]) -> (Vec<SeatBody<'v>>, u64) {
    let mut total = 0;
    let bodies = seats
        .iter()
        .filter_map(|&seat| {
            let s = venue.seat(seat)?;
            let row = venue.row(s.row);
            let section = venue.section(row.section)?;
            let price_cents = venue.price_cents(seat);
            total += price_cents;
            Some(SeatBody {
                seat: seat.0,
                section: &section.id,
                row: &row.id,
                number: &s.id,
                price_cents,
            })
        })
        .collect();
    (bodies, total)
}
