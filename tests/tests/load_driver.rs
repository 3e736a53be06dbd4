//! The load driver (`onsale-sim load`, library `onsale_sim::load`) against
//! a real gateway process: fans over real sockets, checked from their side.
//!
//! Workers run in-process here (`--in-process`): the test binary is not
//! `onsale-sim`, so it cannot spawn itself as a worker. Small counts and
//! short deadlines: this shows the driver and the gateway agree on the
//! protocol, it measures nothing (benchmarks are `onsale-sim load` runs,
//! see sim/README.md).

use onsale_sim::load::coordinator::{self, LoadOptions};
use onsale_sim::load::report::{LoadReport, summary};
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, scratch_dir, venue_json};

const NODE: &str = env!("CARGO_BIN_EXE_onsale-node-under-test");

fn demo(name: &str) -> NodeProcess {
    let store = scratch_dir(name).join("demo.db");
    NodeProcess::start_http(NODE, &store, &["--demo"]).expect("the demo gateway starts")
}

/// Run `onsale-sim load` with these words (split on spaces), then `extra`.
fn load(words: &str, extra: &[&str]) -> LoadReport {
    let args = words.split_whitespace().chain(extra.iter().copied());
    let options = LoadOptions::from_args(args).expect("load options");
    let report = coordinator::run(&options).expect("the load run");
    eprint!("{}", summary(&report));
    report
}

fn outcome(report: &LoadReport, name: &str) -> u64 {
    report.outcomes.get(name).copied().unwrap_or(0)
}

#[test]
fn journeys_buy_seats_once_each_on_the_demo_event() {
    let node = demo("load-journey");
    let target = format!("http://{}", node.addr);
    let report = load(
        &format!("--target {target} --event 1 --fans 120 --workers 2 --in-process --duration-s 20"),
        &["--ops-token", OPERATOR_TOKEN],
    );
    assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
    assert_eq!(report.fans_missing, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // The demo's simulated provider declines some payments and never
    // answers others: those fans end refused or still paying.
    let purchased = outcome(&report, "purchased");
    let unpaid = outcome(&report, "payment_refused") + outcome(&report, "timed_out");
    assert_eq!(purchased + unpaid, 120, "{:?}", report.outcomes);
    assert!(purchased >= 60, "{:?}", report.outcomes);
    assert!(report.checks.seats_bought >= purchased && report.checks.seats_bought <= 508);
    assert_eq!(report.latency.pay_to_purchased.count, purchased);
    // Every purchase a fan was told of is an order in the event's audit.
    let audit = report.checks.audit.as_ref().expect("the audit was read");
    assert_eq!(audit.orders, purchased + audit.orders_unheard, "{audit:?}");
}

#[test]
fn a_mass_admission_reaches_every_waiting_fan_in_order() {
    // The sale opens once all 300 wait, or at half time (30 s) on a
    // machine too busy to let them in sooner; the run ends when all are in.
    let node = demo("load-mass-admission");
    let target = format!("http://{}", node.addr);
    let venue = scratch_dir("load-mass-admission-venue").join("venue.json");
    std::fs::write(&venue, venue_json(2, 10, 20)).expect("write the venue");
    let report = load(
        &format!(
            "--target {target} --event 7 --fans 300 --workers 2 --in-process --mode wait \
         --duration-s 60 --create-venue {} --open-after-joined",
            venue.display()
        ),
        &["--ops-token", OPERATOR_TOKEN],
    );
    assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
    assert_eq!(report.run.sale_opened_when.as_deref(), Some("all_waiting"));
    assert_eq!(report.run.waiting_max, 300);
    assert_eq!(outcome(&report, "admitted"), 300, "{:?}", report.outcomes);
    let admissions = &report.admissions;
    assert_eq!(admissions.via_push, 300, "{admissions:?}");
    assert_eq!(admissions.without_decided_at, 0, "{admissions:?}");
    assert_eq!(admissions.delivery.count, 300);
}
