//! What a node knows of the events other nodes own: each one's lease as
//! last seen (from an acquire that found it held, or from a lease read),
//! believed until that lease expires. A request for such an event is
//! answered `not_owner` from here, at the cost of a map lookup: no router
//! hop and no store read per request.
//!
//! Pure: `now` is an argument (wall-clock ms, the clock leases expire by).
//! At most [`OWNERS_REMEMBERED_MAX`] events; when full, expired leases are
//! dropped first, and a lease that still does not fit is not remembered
//! (its event is then answered through the router and the store, correctly
//! if dearly).

use onsale_schema::limits::OWNERS_REMEMBERED_MAX;
use onsale_schema::message::EventOwner;
use onsale_schema::{EventId, Millis};
use rustc_hash::FxHashMap;

use crate::store::{EventLease, NodeId};

/// The leases of events other nodes own, as this node last saw them.
#[derive(Debug)]
pub struct Owners {
    me: NodeId,
    leases: FxHashMap<EventId, EventLease>,
}

impl Owners {
    /// An empty memory for node `me` (whose own leases are never kept).
    #[must_use]
    pub fn new(me: NodeId) -> Owners {
        Owners {
            me,
            leases: FxHashMap::default(),
        }
    }

    /// Take in a lease read at `now` (reads are taken in the order they
    /// were made: at the same epoch the later read is the truth, renewed
    /// or released). A lease of an older epoch than the one known changes
    /// nothing; one that is this node's, or has expired, means nobody
    /// else is known to own the event.
    pub fn learn(&mut self, lease: &EventLease, now: Millis) {
        let stale = self
            .leases
            .get(&lease.event)
            .is_some_and(|known| lease.epoch < known.epoch);
        if stale {
            return;
        }
        if lease.node == self.me || lease.expires <= now {
            self.leases.remove(&lease.event);
            return;
        }
        if self.leases.len() >= OWNERS_REMEMBERED_MAX && !self.leases.contains_key(&lease.event) {
            self.leases.retain(|_, known| known.expires > now);
            if self.leases.len() >= OWNERS_REMEMBERED_MAX {
                return;
            }
        }
        self.leases.insert(lease.event, lease.clone());
    }

    /// Who owns `event` at `now`, if another node's lease on it is known
    /// and has not expired.
    #[must_use]
    pub fn owner(&self, event: EventId, now: Millis) -> Option<&EventLease> {
        self.leases.get(&event).filter(|lease| lease.expires > now)
    }

    /// This node took `event`: nobody else owns it.
    pub fn forget(&mut self, event: EventId) {
        self.leases.remove(&event);
    }

    /// `node` is gone (proven dead): none of its leases is believed.
    pub fn forget_node(&mut self, node: &NodeId) {
        self.leases.retain(|_, lease| lease.node != *node);
    }

    /// Events remembered (expired ones included until they are dropped).
    #[must_use]
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

/// A lease as the wire names its owner.
#[must_use]
pub fn owner_of(lease: &EventLease) -> EventOwner {
    EventOwner {
        node: lease.node.0.clone(),
        epoch: lease.epoch,
        lease_expires: lease.expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: EventId = EventId(7);

    fn lease(node: &str, epoch: u64, expires: u64) -> EventLease {
        EventLease {
            event: EVENT,
            node: NodeId(node.into()),
            epoch,
            expires: Millis(expires),
        }
    }

    fn owners() -> Owners {
        Owners::new(NodeId("me".into()))
    }

    #[test]
    fn an_owner_is_known_until_its_lease_expires() {
        let mut owners = owners();
        let theirs = lease("them", 3, 1_000);
        owners.learn(&theirs, Millis(100));
        assert_eq!(owners.owner(EVENT, Millis(100)), Some(&theirs));
        assert_eq!(owners.owner(EVENT, Millis(999)), Some(&theirs));
        assert_eq!(owners.owner(EVENT, Millis(1_000)), None, "expired");
        assert_eq!(owners.owner(EventId(8), Millis(100)), None);
    }

    #[test]
    fn a_renewal_extends_what_is_known() {
        let mut owners = owners();
        owners.learn(&lease("them", 3, 1_000), Millis(100));
        owners.learn(&lease("them", 3, 2_000), Millis(900));
        assert_eq!(owners.owner(EVENT, Millis(1_500)).map(|l| l.epoch), Some(3));
    }

    #[test]
    fn an_older_epoch_never_replaces_a_newer_one() {
        let mut owners = owners();
        let newer = lease("new owner", 5, 1_000);
        owners.learn(&newer, Millis(100));
        owners.learn(&lease("old owner", 4, 5_000), Millis(100));
        assert_eq!(owners.owner(EVENT, Millis(100)), Some(&newer));
    }

    #[test]
    fn acquiring_the_event_here_forgets_its_owner() {
        let mut owners = owners();
        owners.learn(&lease("them", 3, 1_000), Millis(100));
        owners.forget(EVENT);
        assert_eq!(owners.owner(EVENT, Millis(100)), None);
        assert!(owners.is_empty());
    }

    #[test]
    fn this_nodes_own_lease_or_a_newer_expired_one_clears_the_owner() {
        let mut owners = owners();
        owners.learn(&lease("them", 3, 1_000), Millis(100));
        owners.learn(&lease("me", 4, 2_000), Millis(100));
        assert_eq!(owners.owner(EVENT, Millis(100)), None, "ours now");
        owners.learn(&lease("them", 5, 3_000), Millis(100));
        owners.learn(&lease("them", 5, 0), Millis(100));
        assert_eq!(owners.owner(EVENT, Millis(100)), None, "released");
        assert!(owners.is_empty());
    }

    #[test]
    fn an_expired_lease_is_not_learned() {
        let mut owners = owners();
        owners.learn(&lease("them", 3, 1_000), Millis(1_000));
        assert!(owners.is_empty());
    }

    #[test]
    fn when_full_expired_leases_make_room_and_live_ones_stay() {
        let mut owners = owners();
        let at = |event: usize, expires: u64| EventLease {
            event: EventId(event as u64),
            ..lease("them", 1, expires)
        };
        for event in 0..OWNERS_REMEMBERED_MAX {
            let expires = if event % 2 == 0 { 500 } else { 5_000 };
            owners.learn(&at(event, expires), Millis(0));
        }
        assert_eq!(owners.len(), OWNERS_REMEMBERED_MAX);
        // Full of live leases: a new one is not remembered.
        let late = OWNERS_REMEMBERED_MAX;
        owners.learn(&at(late, 5_000), Millis(100));
        assert_eq!(owners.owner(EventId(late as u64), Millis(100)), None);
        assert_eq!(owners.len(), OWNERS_REMEMBERED_MAX);
        // Once half have expired, they make room.
        owners.learn(&at(late, 5_000), Millis(600));
        assert!(owners.owner(EventId(late as u64), Millis(600)).is_some());
        assert_eq!(owners.len(), OWNERS_REMEMBERED_MAX / 2 + 1);
        assert!(owners.owner(EventId(1), Millis(600)).is_some());
    }
}
