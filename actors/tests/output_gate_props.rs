//! Properties of `OutputGate` on its own, over random sequences of journal
//! records produced, items produced, durable reports (out of order,
//! repeated, lower than before) and stops:
//! - every item leaves exactly once, unless a stop drops it first, and a
//!   stop hands back exactly the items that had not left;
//! - items leave in the order they were produced;
//! - no item leaves before the record it needs is durable;
//! - as soon as possible: after every input, the gate holds back nothing
//!   that may leave (its oldest item needs a record not yet durable).

use onsale_actors::OutputGate;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// The shell's journal grows by this many records.
    Records(u8),
    /// An item produced now: it needs every record produced so far.
    Item,
    /// An item needing this sequence, whatever came before (the gate's
    /// rule when needs are not monotone: it waits for every item before
    /// it too).
    ItemNeeding(u64),
    /// The writer reports this share (per 256) of the records produced so
    /// far durable: reports go backwards and repeat as often as forwards.
    Durable(u8),
    /// The writer stopped: everything waiting is dropped.
    Stop,
}

fn op(any_needs: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4).prop_map(Op::Records),
        4 => Just(Op::Item),
        1 => (0u64..40).prop_map(move |seq| if any_needs { Op::ItemNeeding(seq) } else { Op::Item }),
        4 => any::<u8>().prop_map(Op::Durable),
        1 => Just(Op::Stop),
    ]
}

/// What the test knows of one produced item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Waiting,
    Left,
    Dropped,
}

/// Drive a gate through `ops`, checking the properties after every input;
/// at the end, make everything durable and check that every item left.
fn check(ops: &[Op]) {
    let len_max = 8;
    let mut gate = OutputGate::new(0, len_max);
    let mut produced = 0u64;
    let mut durable_max = 0u64;
    let mut needs: Vec<u64> = Vec::new();
    let mut fates: Vec<Fate> = Vec::new();
    let mut last_left: Option<usize> = None;
    for op in ops {
        match *op {
            Op::Records(n) => produced += u64::from(n),
            Op::Item | Op::ItemNeeding(_) => {
                let need = match *op {
                    Op::ItemNeeding(seq) => seq,
                    _ => produced,
                };
                gate.push(need, needs.len());
                needs.push(need);
                fates.push(Fate::Waiting);
            }
            Op::Durable(share) => {
                let seq = produced * u64::from(share) / 255;
                durable_max = durable_max.max(seq);
                gate.durable(seq);
            }
            Op::Stop => {
                let dropped = gate.clear();
                let waiting: Vec<usize> = (0..fates.len())
                    .filter(|&i| fates[i] == Fate::Waiting)
                    .collect();
                assert_eq!(dropped, waiting, "a stop hands back what had not left");
                for i in dropped {
                    fates[i] = Fate::Dropped;
                }
            }
        }
        drain(&mut gate, &needs, &mut fates, &mut last_left, durable_max);
        let waiting = fates.iter().filter(|f| **f == Fate::Waiting).count();
        assert_eq!(gate.len(), waiting);
        assert_eq!(gate.is_full(), waiting >= len_max);
        assert_eq!(gate.durable_seq(), durable_max);
    }
    gate.durable(u64::MAX);
    drain(&mut gate, &needs, &mut fates, &mut last_left, u64::MAX);
    assert!(gate.is_empty());
    assert!(fates.iter().all(|f| *f != Fate::Waiting), "every item left");
}

/// Take what may leave now and check it: once, in order, never early, and
/// nothing that may leave is held back.
fn drain(
    gate: &mut OutputGate<usize>,
    needs: &[u64],
    fates: &mut [Fate],
    last_left: &mut Option<usize>,
    durable_max: u64,
) {
    while let Some(item) = gate.pop() {
        assert_eq!(fates[item], Fate::Waiting, "item {item} left twice");
        assert!(*last_left < Some(item), "item {item} left out of order");
        assert!(
            needs[item] <= durable_max,
            "item {item} needing {} left with {durable_max} durable",
            needs[item]
        );
        // Every item produced before it has left or was dropped.
        assert!(fates[..item].iter().all(|f| *f != Fate::Waiting));
        fates[item] = Fate::Left;
        *last_left = Some(item);
    }
    if let Some(first) = fates.iter().position(|f| *f == Fate::Waiting) {
        assert!(
            needs[first] > durable_max,
            "item {first} needing {} held back with {durable_max} durable",
            needs[first]
        );
        assert_eq!(gate.needs_seq(), Some(needs[first]));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Items produced as a shell produces them: each needs the journal so
    /// far, so needs never decrease.
    #[test]
    fn items_leave_once_in_order_when_durable(ops in prop::collection::vec(op(false), 0..200)) {
        check(&ops);
    }

    /// Any needs at all: an item still waits for every item before it.
    #[test]
    fn unordered_needs_still_leave_in_order(ops in prop::collection::vec(op(true), 0..200)) {
        check(&ops);
    }
}

#[test]
fn an_item_whose_records_are_durable_leaves_at_once() {
    let mut gate = OutputGate::new(5, 4);
    gate.push(5, "reply");
    assert_eq!(gate.pop(), Some("reply"));
    assert_eq!(gate.pop(), None);
}

#[test]
fn a_lower_or_repeated_report_keeps_the_highest() {
    let mut gate = OutputGate::new(0, 4);
    gate.push(3, 'a');
    gate.push(4, 'b');
    gate.durable(3);
    gate.durable(1);
    gate.durable(3);
    assert_eq!(gate.durable_seq(), 3);
    assert_eq!(gate.pop(), Some('a'));
    assert_eq!(gate.pop(), None);
    assert_eq!(gate.needs_seq(), Some(4));
}

#[test]
fn a_stop_drops_what_waits_and_keeps_what_is_durable() {
    let mut gate = OutputGate::new(0, 2);
    gate.push(1, 'a');
    gate.push(2, 'b');
    assert!(gate.is_full());
    assert_eq!(gate.clear(), vec!['a', 'b']);
    gate.durable(2);
    gate.push(2, 'c');
    assert_eq!(gate.pop(), Some('c'));
}
