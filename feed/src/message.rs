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
use std::io::Write as _;
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
        // The envelope's fields, then the kind's (serde's `flatten` would
        // buffer every field through a map: a third of the relay's time).
        let mut body = Vec::with_capacity(256);
        write!(
            body,
            r#"{{"v":{FEED_SCHEMA_VERSION},"event":{},"seq":{seq},"prev":{},"kind":"{kind}","at":{},"#,
            self.event.0, self.last_message, at.0
        )
        .expect("writing to a Vec");
        let data = serde_json::to_vec(&data).expect("feed bodies serialise");
        // `data` is an object: its fields follow the envelope's.
        body.extend_from_slice(&data[1..]);
        FeedMessage {
            subject: format!("{}.{}.{kind}", self.prefix, self.event.0),
            // A gap's seq is its last record, which no other message has.
            id: message_id(self.event, seq),
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

#[cfg(test)]
mod tests {
    use onsale_schema::snapshot::SCHEMA_VERSION;
    use onsale_schema::{OrderId, Position};
    use serde_json::{Value, json};

    use super::*;

    fn feed() -> EventFeed {
        let venue = Venue::from_json(include_bytes!("../../venues/club.json")).expect("venue");
        EventFeed::new(EventId(7), Arc::new(venue), "onsale", 0)
    }

    fn record(seq: u64, entry: JournalEntry) -> JournalRecord {
        JournalRecord {
            schema_version: SCHEMA_VERSION,
            event: EventId(7),
            seq,
            at: Millis(1_000 + seq),
            entry,
        }
    }

    fn body(message: &FeedMessage) -> Value {
        serde_json::from_slice(&message.body).expect("JSON")
    }

    /// Each kind's body, the envelope first; `prev` chains the messages
    /// over records that make none; a sale names what its hold held.
    #[test]
    fn messages_carry_the_envelope_chain_and_what_the_hold_held() {
        let mut feed = feed();
        let seats = vec![SeatIdx(0), SeatIdx(1)];
        let admitted = feed
            .apply(&record(
                1,
                JournalEntry::AdmittedMany {
                    at: Millis(1_001),
                    fans: vec![(FanId(5), Position(1)), (FanId(6), Position(2))],
                },
            ))
            .expect("a message");
        assert_eq!(admitted.subject, "onsale.7.admitted");
        assert_eq!(admitted.id, "7:1");
        assert_eq!(
            body(&admitted),
            json!({"v": 1, "event": 7, "seq": 1, "prev": 0, "kind": "admitted", "at": 1_001,
                   "fans": [{"fan": 5, "position": 1}, {"fan": 6, "position": 2}]})
        );
        assert_eq!(
            feed.apply(&record(2, JournalEntry::Entered { fan: FanId(5) })),
            None
        );
        let held = feed
            .apply(&record(
                3,
                JournalEntry::HoldPlaced {
                    hold: HoldId(9),
                    fan: FanId(5),
                    seats: seats.clone(),
                    deadline: Millis(60_000),
                },
            ))
            .expect("a message");
        let held = body(&held);
        assert_eq!(held["prev"], 1, "the entered record made no message");
        assert_eq!(held["seats"].as_array().map(Vec::len), Some(2));
        let price: u64 = seats.iter().map(|&s| feed.venue.price_cents(s)).sum();
        assert_eq!(held["total_cents"], price);
        assert_eq!(held["seats"][0]["section"], "FLOOR");
        assert_eq!(feed.keep_from(3), 3, "the open hold's record is kept");
        let sold = feed
            .apply(&record(
                4,
                JournalEntry::Sold {
                    hold: HoldId(9),
                    order: OrderId(1),
                    at: Millis(1_004),
                },
            ))
            .expect("a message");
        let sold = body(&sold);
        assert_eq!(sold["kind"], "sold");
        assert_eq!(sold["prev"], 3);
        assert_eq!(
            (sold["fan"].clone(), sold["total_cents"].clone()),
            (json!(5), json!(price))
        );
        assert_eq!(sold["seats"], held["seats"]);
        assert_eq!(
            feed.keep_from(4),
            5,
            "no hold open: nothing before is needed"
        );
        assert_eq!(parse_message_id("7:4"), Some((EventId(7), 4)));
        assert_eq!(parse_message_id("7:x"), None);
    }

    /// Rebuilt by replaying from `keep_from`, a feed makes the same
    /// messages as the one that never stopped.
    #[test]
    fn a_rebuilt_feed_makes_the_same_messages() {
        let records = [
            record(
                1,
                JournalEntry::HoldPlaced {
                    hold: HoldId(1),
                    fan: FanId(5),
                    seats: vec![SeatIdx(3)],
                    deadline: Millis(9_000),
                },
            ),
            record(
                2,
                JournalEntry::HoldPlaced {
                    hold: HoldId(2),
                    fan: FanId(6),
                    seats: vec![SeatIdx(4)],
                    deadline: Millis(9_000),
                },
            ),
            record(
                3,
                JournalEntry::HoldReleased {
                    hold: HoldId(1),
                    reason: ReleaseReason::Expired,
                },
            ),
            record(
                4,
                JournalEntry::Sold {
                    hold: HoldId(2),
                    order: OrderId(1),
                    at: Millis(5),
                },
            ),
        ];
        let mut whole = feed();
        let all: Vec<FeedMessage> = records.iter().filter_map(|r| whole.apply(r)).collect();
        // Stopped after record 3: its cursor.
        let mut first = feed();
        for r in &records[..3] {
            let _ = first.apply(r);
        }
        let keep_from = first.keep_from(3);
        assert_eq!(keep_from, 2, "hold 2 is still open");
        let mut rebuilt = EventFeed::new(EventId(7), Arc::clone(&first.venue), "onsale", 3);
        for r in records.iter().filter(|r| r.seq >= keep_from && r.seq <= 3) {
            rebuilt.replay(r);
        }
        assert_eq!(rebuilt.apply(&records[3]).as_ref(), all.last());
    }
}
