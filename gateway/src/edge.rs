//! The edge: what the gateway answers without asking an event.
//!
//! - [`EdgeCache`]: each event's sale state and full / sold-out flags, kept
//!   current by the event's pushes (and by every overview the gateway
//!   reads). A `join` to an event that is sold out or closed is answered
//!   here, so a flood of arrivals costs the event actor nothing. "Full" is
//!   not answered here: it turns away new fans only, and only the event
//!   knows whether a fan is already in line (a fan joining again from
//!   another device, without its queue token, must get its place back).
//!   A `resume` (a fan with a queue token) always goes through.
//! - [`Limits`]: a global rate limit, a per-fan one and, if configured,
//!   per-client ones (every fan route, and logins on their own; see
//!   `crate::client`), all governor's GCRA. Excess gets 429
//!   `rate_limited` with `Retry-After`.

use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use onsale_schema::message::{EventOverview, JoinRefused, Push};
use onsale_schema::{ErrorCode, EventId, FanId, SaleState};
use rustc_hash::FxHashMap;

use crate::client::ClientKey;
use crate::reply::ApiError;

/// What the edge knows of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeState {
    pub sale: SaleState,
    pub full: bool,
    /// The proof of work a join needs (bits; 0: none).
    pub stamp_bits: u8,
}

impl EdgeState {
    /// The answer to a join, if the edge can give it alone: sold out and
    /// closed, which hold for every fan alike. A full room is not among
    /// them: the event answers a fan already in line with its place and
    /// refuses a new one, without writing anything.
    #[must_use]
    pub fn refuse_join(self) -> Option<JoinRefused> {
        match self.sale {
            SaleState::SoldOut => Some(JoinRefused::SoldOut),
            SaleState::Closed => Some(JoinRefused::Closed),
            _ => None,
        }
    }
}

/// How long an entry is trusted without a fresh overview. Pushes keep an
/// entry current while they flow; this bounds how stale it can get when
/// they do not (the event moved to another node, the push stream lagged).
pub const EDGE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Entry {
    state: EdgeState,
    learned: Instant,
    refreshing: bool,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing known: ask the event.
    Unknown,
    /// Known and fresh.
    Fresh(EdgeState),
    /// Known but older than [`EDGE_TTL`]; this caller should refresh it
    /// (only one caller per event is told so at a time).
    Stale { state: EdgeState, refresh: bool },
}

/// Each event's sale state and fullness, as last pushed.
#[derive(Debug, Default)]
pub struct EdgeCache {
    events: RwLock<FxHashMap<EventId, Entry>>,
}

impl EdgeCache {
    /// The state, whatever its age.
    #[must_use]
    pub fn get(&self, event: EventId) -> Option<EdgeState> {
        self.events
            .read()
            .expect("not poisoned")
            .get(&event)
            .map(|e| e.state)
    }

    /// The state with its freshness; a stale entry elects one refresher.
    pub fn lookup(&self, event: EventId) -> Lookup {
        {
            let events = self.events.read().expect("not poisoned");
            match events.get(&event) {
                None => return Lookup::Unknown,
                Some(e) if e.learned.elapsed() <= EDGE_TTL => return Lookup::Fresh(e.state),
                Some(e) if e.refreshing => {
                    return Lookup::Stale {
                        state: e.state,
                        refresh: false,
                    };
                }
                Some(_) => {}
            }
        }
        let mut events = self.events.write().expect("not poisoned");
        match events.get_mut(&event) {
            None => Lookup::Unknown,
            Some(e) => {
                let refresh = !e.refreshing;
                e.refreshing = true;
                Lookup::Stale {
                    state: e.state,
                    refresh,
                }
            }
        }
    }

    /// A refresh failed: let another caller try.
    pub fn refresh_failed(&self, event: EventId) {
        if let Some(e) = self.events.write().expect("not poisoned").get_mut(&event) {
            e.refreshing = false;
        }
    }

    /// Learn from an overview (the whole truth at that moment).
    pub fn learn(&self, overview: &EventOverview) {
        self.events.write().expect("not poisoned").insert(
            overview.event,
            Entry {
                state: EdgeState {
                    sale: overview.sale,
                    full: overview.full,
                    stamp_bits: overview.stamp_bits,
                },
                learned: Instant::now(),
                refreshing: false,
            },
        );
    }

    /// Learn from a push. Pushes for events never seen are ignored until
    /// an overview introduces the event (its other fields are unknown).
    pub fn apply(&self, event: EventId, push: &Push) {
        let mut events = self.events.write().expect("not poisoned");
        let Some(Entry { state, .. }) = events.get_mut(&event) else {
            return;
        };
        match push {
            Push::Full { full } => state.full = *full,
            Push::SoldOut => state.sale = SaleState::SoldOut,
            Push::Sale { state: sale } => state.sale = *sale,
            Push::Stamp { bits } => state.stamp_bits = *bits,
            _ => {}
        }
    }

    /// Forget an event (it moved away, or the push stream lagged).
    pub fn forget_all(&self) {
        self.events.write().expect("not poisoned").clear();
    }
}

/// Rate limits in requests per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    pub global_per_s: NonZeroU32,
    pub fan_per_s: NonZeroU32,
    pub fan_burst: NonZeroU32,
    /// Per-client limits (`None`: none).
    pub client: Option<ClientLimitConfig>,
}

/// Limits per client (an IPv4 address or an IPv6 /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimitConfig {
    /// Requests per second on the fan routes (catalogue, login, commands,
    /// websocket upgrades), sustained, and in a burst.
    pub per_s: NonZeroU32,
    pub burst: NonZeroU32,
    /// Logins per minute (a burst of as many).
    pub logins_per_min: NonZeroU32,
}

/// The global and per-fan limiters.
#[derive(Debug)]
pub struct Limits {
    global: DefaultDirectRateLimiter,
    per_fan: DefaultKeyedRateLimiter<FanId>,
    per_client: Option<DefaultKeyedRateLimiter<ClientKey>>,
    logins: Option<DefaultKeyedRateLimiter<ClientKey>>,
    clock: DefaultClock,
}

impl Limits {
    #[must_use]
    pub fn new(config: LimitConfig) -> Limits {
        Limits {
            global: RateLimiter::direct(Quota::per_second(config.global_per_s)),
            per_fan: RateLimiter::keyed(
                Quota::per_second(config.fan_per_s).allow_burst(config.fan_burst),
            ),
            per_client: config
                .client
                .map(|c| RateLimiter::keyed(Quota::per_second(c.per_s).allow_burst(c.burst))),
            logins: config
                .client
                .map(|c| RateLimiter::keyed(Quota::per_minute(c.logins_per_min))),
            clock: DefaultClock::default(),
        }
    }

    /// Whether per-client limits are on.
    #[must_use]
    pub fn per_client(&self) -> bool {
        self.per_client.is_some()
    }

    /// One request from `client` through its limit (and, for a login, the
    /// login limit too).
    pub fn check_client(&self, client: ClientKey, login: bool) -> Result<(), ApiError> {
        let limited = |limiter: &DefaultKeyedRateLimiter<ClientKey>, scope: &'static str| {
            limiter.check_key(&client).map_err(|not_until| {
                metrics::counter!("onsale_rate_limited_total", "scope" => scope).increment(1);
                let wait = not_until.wait_time_from(self.clock.now());
                let what = if scope == "login" {
                    "logins"
                } else {
                    "requests"
                };
                ApiError::new(
                    ErrorCode::RateLimited,
                    format!("too many {what} from this address"),
                )
                .retry_after(wait.as_secs() + 1)
            })
        };
        if login && let Some(logins) = &self.logins {
            limited(logins, "login")?;
        }
        match &self.per_client {
            Some(per_client) => limited(per_client, "client"),
            None => Ok(()),
        }
    }

    /// One request through the global limit.
    pub fn check_global(&self) -> Result<(), ApiError> {
        self.global.check().map_err(|not_until| {
            metrics::counter!("onsale_rate_limited_total", "scope" => "global").increment(1);
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::new(
                ErrorCode::RateLimited,
                "the gateway is at its request limit",
            )
            .retry_after(wait.as_secs() + 1)
        })
    }

    /// One request by `fan` through its own limit.
    pub fn check_fan(&self, fan: FanId) -> Result<(), ApiError> {
        self.per_fan.check_key(&fan).map_err(|not_until| {
            metrics::counter!("onsale_rate_limited_total", "scope" => "fan").increment(1);
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::new(ErrorCode::RateLimited, "too many requests from this fan")
                .retry_after(wait.as_secs() + 1)
        })
    }

    /// Forget fans whose limit has fully recovered (bounds the map).
    pub fn forget_idle(&self) {
        self.per_fan.retain_recent();
        self.per_fan.shrink_to_fit();
        for limiter in [&self.per_client, &self.logins].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn a_fan_over_its_burst_is_limited_with_a_retry_after() {
        let limits = Limits::new(LimitConfig {
            global_per_s: nz(1_000),
            fan_per_s: nz(1),
            fan_burst: nz(3),
            client: None,
        });
        for _ in 0..3 {
            limits.check_fan(FanId(1)).unwrap();
        }
        let limited = limits.check_fan(FanId(1)).unwrap_err();
        assert_eq!(limited.code, ErrorCode::RateLimited);
        assert!(limited.retry_after_s.unwrap() >= 1);
        // Another fan is not affected.
        limits.check_fan(FanId(2)).unwrap();
    }

    #[test]
    fn the_edge_refuses_joins_only_when_it_knows() {
        let cache = EdgeCache::default();
        assert_eq!(cache.get(EventId(1)), None);
        let mut overview = EventOverview {
            event: EventId(1),
            sale: SaleState::OnSale,
            capacity: 10,
            sold: 0,
            held: 0,
            waiting: 0,
            full: false,
            admitted_through: onsale_schema::Position(0),
            sections: vec![],
            stamp_bits: 0,
        };
        cache.learn(&overview);
        assert_eq!(cache.get(EventId(1)).unwrap().refuse_join(), None);
        cache.apply(EventId(1), &Push::Full { full: true });
        assert!(cache.get(EventId(1)).unwrap().full);
        cache.apply(EventId(1), &Push::Stamp { bits: 18 });
        assert_eq!(cache.get(EventId(1)).unwrap().stamp_bits, 18);
        assert_eq!(
            cache.get(EventId(1)).unwrap().refuse_join(),
            None,
            "full: the event decides, a fan in line gets its place"
        );
        cache.apply(EventId(1), &Push::SoldOut);
        assert_eq!(
            cache.get(EventId(1)).unwrap().refuse_join(),
            Some(JoinRefused::SoldOut)
        );
        overview.sale = SaleState::Closed;
        cache.learn(&overview);
        assert_eq!(
            cache.get(EventId(1)).unwrap().refuse_join(),
            Some(JoinRefused::Closed)
        );
        // A push for an unknown event teaches nothing.
        cache.apply(EventId(2), &Push::SoldOut);
        assert_eq!(cache.get(EventId(2)), None);
        assert_eq!(cache.lookup(EventId(2)), Lookup::Unknown);
    }

    #[test]
    fn a_stale_entry_elects_one_refresher() {
        let cache = EdgeCache::default();
        let overview = EventOverview {
            event: EventId(1),
            sale: SaleState::SoldOut,
            capacity: 10,
            sold: 10,
            held: 0,
            waiting: 0,
            full: false,
            admitted_through: onsale_schema::Position(0),
            sections: vec![],
            stamp_bits: 0,
        };
        cache.learn(&overview);
        assert!(matches!(cache.lookup(EventId(1)), Lookup::Fresh(_)));
        cache
            .events
            .write()
            .unwrap()
            .get_mut(&EventId(1))
            .unwrap()
            .learned = Instant::now() - EDGE_TTL * 2;
        let state = EdgeState {
            sale: SaleState::SoldOut,
            full: false,
            stamp_bits: 0,
        };
        assert_eq!(
            cache.lookup(EventId(1)),
            Lookup::Stale {
                state,
                refresh: true
            }
        );
        assert_eq!(
            cache.lookup(EventId(1)),
            Lookup::Stale {
                state,
                refresh: false
            }
        );
        cache.refresh_failed(EventId(1));
        assert_eq!(
            cache.lookup(EventId(1)),
            Lookup::Stale {
                state,
                refresh: true
            }
        );
        cache.learn(&overview);
        assert_eq!(cache.lookup(EventId(1)), Lookup::Fresh(state));
    }
}
