//! The catalogue: every event's name, city, date and venue, read from the
//! store's event specs and kept in memory (a venue is parsed once).
//!
//! The specs are reread at most every [`REFRESH_EVERY`], on a lookup that
//! misses or on a search, so an event created by another node's operator
//! shows up within seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onsale_cluster::node::Node;
use onsale_schema::api::{EventListing, RowInfo, SeatInfo, SectionDetail, SectionInfo};
use onsale_schema::message::{EventOverview, SectionSeats};
use onsale_schema::{EventId, Millis, SaleState, SeatIdx, SectionIdx, Venue};
use rustc_hash::FxHashMap;
use tokio::sync::Mutex;

/// How stale the catalogue may get before a miss rereads the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// One event, as the catalogue knows it.
#[derive(Debug)]
pub struct EventInfo {
    pub event: EventId,
    pub name: String,
    pub city: String,
    pub starts_at: Millis,
    pub venue: Venue,
    /// When the sale opens by itself, if scheduled.
    pub opens_at: Option<Millis>,
    /// Whether fans joining before the opening are drawn.
    pub pre_queue_draw: bool,
    /// Until when joining takes a presale code.
    pub presale_until: Option<Millis>,
}

impl EventInfo {
    #[must_use]
    pub fn listing(&self, sale: SaleState, full: bool) -> EventListing {
        EventListing {
            event: self.event,
            name: self.name.clone(),
            city: self.city.clone(),
            venue: self.venue.name.clone(),
            starts_at: self.starts_at,
            sale,
            capacity: self.venue.seat_count(),
            full,
            opens_at: self.opens_at,
            pre_queue_draw: self.pre_queue_draw,
            presale_until: self.presale_until,
        }
    }

    /// Sections with their map rectangles and live counts.
    #[must_use]
    pub fn sections(&self, overview: &EventOverview) -> Vec<SectionInfo> {
        self.venue
            .sections
            .iter()
            .enumerate()
            .map(|(i, section)| {
                let idx = SectionIdx(i as u16);
                let summary = overview.sections.iter().find(|s| s.section == idx);
                SectionInfo {
                    section: idx,
                    id: section.id.clone(),
                    name: section.name.clone(),
                    map: section.map,
                    rows: section.rows.len() as u32,
                    first_seat: SeatIdx(section.seats.start),
                    seats: section.seats.len() as u32,
                    available: summary.map_or(0, |s| s.available),
                    price_min_cents: summary.map_or(0, |s| s.price_min_cents),
                    price_max_cents: summary.map_or(0, |s| s.price_max_cents),
                }
            })
            .collect()
    }

    /// Every seat of a section with its availability.
    #[must_use]
    pub fn section_detail(&self, seats: &SectionSeats) -> Option<SectionDetail> {
        let section = self.venue.section(seats.section)?;
        let rows = section
            .rows
            .clone()
            .map(|r| {
                let row = self.venue.row(onsale_schema::RowIdx(r));
                RowInfo {
                    id: row.id.clone(),
                    seats: row
                        .seats
                        .clone()
                        .map(|s| {
                            let idx = SeatIdx(s);
                            let seat = &self.venue.seats[s as usize];
                            SeatInfo {
                                seat: idx,
                                id: seat.id.clone(),
                                price_cents: self.venue.price_cents(idx),
                                accessible: seat.accessible,
                                available: seats.is_available(idx),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Some(SectionDetail {
            event: self.event,
            section: seats.section,
            name: section.name.clone(),
            rows,
        })
    }
}

/// What a search asks for. Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// A substring of the name, any case.
    pub q: Option<String>,
    /// The city, any case.
    pub city: Option<String>,
    /// Starts at or after (ms since the epoch).
    pub from: Option<u64>,
    /// Starts at or before (ms since the epoch).
    pub to: Option<u64>,
}

impl Search {
    #[must_use]
    pub fn matches(&self, info: &EventInfo) -> bool {
        let q_ok = self.q.as_deref().is_none_or(|q| {
            q.trim().is_empty() || info.name.to_lowercase().contains(&q.trim().to_lowercase())
        });
        let city_ok = self
            .city
            .as_deref()
            .is_none_or(|c| c.trim().is_empty() || info.city.eq_ignore_ascii_case(c.trim()));
        let from_ok = self.from.is_none_or(|from| info.starts_at.0 >= from);
        let to_ok = self.to.is_none_or(|to| info.starts_at.0 <= to);
        q_ok && city_ok && from_ok && to_ok
    }
}

/// The catalogue over a node's store. Lookups that hit take a read lock
/// only; a miss rereads the store at most every [`REFRESH_EVERY`], so a
/// flood of requests for unknown events costs one map lookup each.
#[derive(Debug)]
pub struct Catalog {
    node: Node,
    events: std::sync::RwLock<FxHashMap<EventId, Arc<EventInfo>>>,
    /// When the store was last read (one refresher at a time).
    refreshed: Mutex<Option<Instant>>,
}

impl Catalog {
    #[must_use]
    pub fn new(node: Node) -> Catalog {
        Catalog {
            node,
            events: std::sync::RwLock::default(),
            refreshed: Mutex::new(None),
        }
    }

    fn lookup(&self, event: EventId) -> Option<Arc<EventInfo>> {
        self.events
            .read()
            .expect("not poisoned")
            .get(&event)
            .cloned()
    }

    /// One event, rereading the store on a miss if the copy is stale.
    pub async fn get(&self, event: EventId) -> Option<Arc<EventInfo>> {
        if let Some(info) = self.lookup(event) {
            return Some(info);
        }
        self.refresh(false).await;
        self.lookup(event)
    }

    /// Every event matching `search`, soonest first.
    pub async fn search(&self, search: &Search) -> Vec<Arc<EventInfo>> {
        self.refresh(false).await;
        let mut found: Vec<Arc<EventInfo>> = self
            .events
            .read()
            .expect("not poisoned")
            .values()
            .filter(|info| search.matches(info))
            .cloned()
            .collect();
        found.sort_by_key(|info| (info.starts_at, info.event));
        found.truncate(onsale_schema::limits::EVENT_LIST_MAX);
        found
    }

    /// Every event, by id (for operators: no limit on the count).
    pub async fn all(&self) -> Vec<Arc<EventInfo>> {
        self.refresh(false).await;
        let mut all: Vec<Arc<EventInfo>> = self
            .events
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|info| info.event);
        all
    }

    /// Forget when the store was read, so the next miss rereads it.
    pub async fn invalidate(&self) {
        *self.refreshed.lock().await = None;
    }

    async fn refresh(&self, force: bool) {
        let mut refreshed = self.refreshed.lock().await;
        if !force && refreshed.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return;
        }
        let specs = match self.node.specs().await {
            Ok(specs) => specs,
            Err(e) => {
                tracing::warn!(error = %e, "the catalogue could not read event specs");
                return;
            }
        };
        for spec in specs {
            if self.lookup(spec.event).is_some() {
                continue; // a spec never changes once created
            }
            match spec.venue() {
                Ok(venue) => {
                    self.events.write().expect("not poisoned").insert(
                        spec.event,
                        Arc::new(EventInfo {
                            event: spec.event,
                            name: spec.name,
                            city: spec.city,
                            starts_at: spec.starts_at,
                            venue,
                            opens_at: spec.config.opens_at,
                            pre_queue_draw: spec.config.pre_queue_draw,
                            presale_until: spec.config.presale_until,
                        }),
                    );
                }
                Err(e) => {
                    tracing::warn!(event = %spec.event, error = %e, "an event spec is invalid")
                }
            }
        }
        *refreshed = Some(Instant::now());
    }
}
