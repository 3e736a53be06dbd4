//! Rendezvous (highest-random-weight) placement: the node an event should
//! live on is the one whose hash with the event id is highest. Adding or
//! removing a node moves only the events that hash highest to it, and every
//! process that sees the same nodes names the same owner.
//!
//! The hash is BLAKE3 over a fixed domain tag, the event id (little-endian)
//! and the node's name: the same on every build, machine and endianness.
//! The placement names the *desired* owner; the event's lease names the
//! actual one.

use onsale_schema::EventId;

use crate::store::NodeId;

/// Domain separation: a hash for placement, not for anything else.
const DOMAIN: &[u8] = b"onsale placement v1\0";

/// The weight of `node` for `event` (higher wins).
#[must_use]
pub fn weight(event: EventId, node: &NodeId) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(DOMAIN);
    hasher.update(&event.0.to_le_bytes());
    hasher.update(node.0.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// The desired owner of `event` among `nodes` (ties, which need a 64-bit
/// collision, go to the smaller name). `None` if there are no nodes.
#[must_use]
pub fn owner_of<'a>(
    event: EventId,
    nodes: impl IntoIterator<Item = &'a NodeId>,
) -> Option<&'a NodeId> {
    nodes.into_iter().max_by(|a, b| {
        weight(event, a)
            .cmp(&weight(event, b))
            .then_with(|| b.cmp(a))
    })
}

/// `nodes` in the order they would take `event` over: the desired owner
/// first, then the node that takes over if it dies, and so on.
#[must_use]
pub fn order_of(event: EventId, nodes: &[NodeId]) -> Vec<NodeId> {
    let mut ordered = nodes.to_vec();
    ordered.sort_by(|a, b| {
        weight(event, b)
            .cmp(&weight(event, a))
            .then_with(|| a.cmp(b))
    });
    ordered.dedup();
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId(format!("node-{i}"))).collect()
    }

    /// Pinned values: a change to the hash would move every event of a
    /// running cluster on its next failover, so it must be deliberate.
    #[test]
    fn the_hash_is_stable_across_builds() {
        let nodes = nodes(3);
        let owners: Vec<&str> = (1..=8)
            .map(|e| owner_of(EventId(e), &nodes).map_or("", |n| n.0.as_str()))
            .collect();
        assert_eq!(owners, PINNED_OWNERS);
        assert_eq!(weight(EventId(1), &NodeId("node-a".into())), PINNED_WEIGHT);
    }

    const PINNED_OWNERS: [&str; 8] = [
        "node-0", "node-2", "node-1", "node-1", "node-0", "node-2", "node-2", "node-1",
    ];
    const PINNED_WEIGHT: u64 = 4_881_599_488_437_750_672;

    #[test]
    fn ten_thousand_events_spread_evenly_over_five_nodes() {
        let nodes = nodes(5);
        let mut counts = [0u32; 5];
        for e in 0..10_000 {
            let owner = owner_of(EventId(e), &nodes).expect("nodes");
            counts[nodes.iter().position(|n| n == owner).expect("one of them")] += 1;
        }
        for count in counts {
            assert!(
                (1_700..=2_300).contains(&count),
                "uneven spread: {counts:?}"
            );
        }
    }

    proptest! {
        /// Removing a node moves only the events it owned, each to the
        /// next node in its order; adding one back moves them back.
        #[test]
        fn only_the_lost_nodes_events_move(event in any::<u64>(), n in 2usize..8, gone in 0usize..8) {
            let all = nodes(n);
            let gone = gone % n;
            let rest: Vec<NodeId> = all.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, n)| n.clone()).collect();
            let before = owner_of(EventId(event), &all).cloned().expect("nodes");
            let after = owner_of(EventId(event), &rest).cloned().expect("nodes");
            if before != all[gone] {
                prop_assert_eq!(&before, &after);
            } else {
                prop_assert_eq!(&after, &order_of(EventId(event), &all)[1]);
            }
        }

        /// The order does not depend on how the nodes are listed.
        #[test]
        fn listing_order_does_not_matter(event in any::<u64>(), n in 1usize..8, seed in any::<u64>()) {
            let all = nodes(n);
            let mut shuffled = all.clone();
            shuffled.rotate_left((seed as usize) % n);
            shuffled.reverse();
            prop_assert_eq!(order_of(EventId(event), &all), order_of(EventId(event), &shuffled));
            prop_assert_eq!(owner_of(EventId(event), &all), owner_of(EventId(event), &shuffled));
        }
    }
}
