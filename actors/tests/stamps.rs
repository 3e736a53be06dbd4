//! The proof of work an event asks of joins: an operator's setting
//! (durable) and the automatic rule (join rate against the room left).

use onsale_actors::testing::{Harness, grid_venue};
use onsale_schema::message::{Push, SaleCommand};
use onsale_schema::{EventConfig, FanId};

fn pushed_bits(h: &Harness) -> Vec<u8> {
    h.pushes
        .iter()
        .filter_map(|p| match p {
            Push::Stamp { bits } => Some(*bits),
            _ => None,
        })
        .collect()
}

#[test]
fn an_operators_difficulty_is_pushed_and_survives_a_crash() {
    let mut h = Harness::new(grid_venue(2, 2, 4), EventConfig::default());
    assert_eq!(h.core.stamp_required(), 0);
    let now = h.now;
    assert_eq!(h.core.set_stamp(18, now), 18);
    assert_eq!(
        h.core.set_stamp(99, now),
        onsale_schema::limits::STAMP_BITS_MAX
    );
    h.advance(0);
    assert_eq!(
        pushed_bits(&h),
        vec![18, onsale_schema::limits::STAMP_BITS_MAX]
    );
    h.crash_and_restore();
    assert_eq!(
        h.core.stamp_required(),
        onsale_schema::limits::STAMP_BITS_MAX
    );
    assert_eq!(
        h.core.numbers().stamp_bits,
        onsale_schema::limits::STAMP_BITS_MAX
    );
}

#[test]
fn the_automatic_rule_asks_for_work_while_joins_would_fill_the_room() {
    // 16 seats × full factor 2: a room of 32. Three joins a second would
    // fill what is left within 60 s; none for two seconds lifts it.
    let config = EventConfig {
        full_factor: 2,
        stamp_auto_bits: 16,
        stamp_auto_fill_s: 60,
        ..EventConfig::default()
    };
    let mut h = Harness::new(grid_venue(2, 2, 4), config);
    h.sale(SaleCommand::Pause).ok();
    for fan in 0..3 {
        h.join(FanId(fan)).expect("joins");
    }
    assert_eq!(h.core.stamp_required(), 0, "no whole second measured yet");
    h.advance(1_000);
    assert_eq!(
        h.core.stamp_required(),
        16,
        "3/s × 60 s ≥ the 29 places left"
    );
    h.advance(2_000);
    assert_eq!(h.core.stamp_required(), 0, "no joins: no pressure");
    assert_eq!(pushed_bits(&h), vec![16, 0]);
    // An operator's higher setting wins over the rule.
    let now = h.now;
    h.core.set_stamp(20, now);
    assert_eq!(h.core.stamp_required(), 20);
}
