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

fn demo(name: &str) -> NodeProcess {
    let store = scratch_dir(name).join("demo.db");
    NodeProcess::start_http(&store, &["--demo"]).expect("the demo gateway starts")
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

#[test]
fn fans_who_join_a_drawn_event_before_it_opens_all_hear_their_drawn_places() {
    // 200 fans join an event with the pre-queue draw while its sale is
    // scheduled, each solving a proof-of-work stamp (8 bits: a few
    // hundred hashes) when the gateway asks; all are told they are
    // pre-queued. Once all watch, the driver opens the sale: every fan
    // hears its drawn place on its websocket, then its admission.
    let store = scratch_dir("load-pre-queue").join("onsale.db");
    let node = NodeProcess::start_http(&store, &[]).expect("the gateway starts");
    let target = format!("http://{}", node.addr);
    let venue = scratch_dir("load-pre-queue-venue").join("venue.json");
    std::fs::write(&venue, venue_json(2, 10, 20)).expect("write the venue");
    let report = load(
        &format!(
            "--target {target} --event 12 --fans 200 --workers 2 --in-process --mode wait \
             --duration-s 60 --create-venue {} --create-config {{\"shoppers_max\":200}} \
             --pre-queue-draw --open-after-joined --stamp-bits 8",
            venue.display()
        ),
        &["--ops-token", OPERATOR_TOKEN],
    );
    // No position twice, admissions in drawn order, no pre-queued fan
    // left without a place.
    assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.run.sale_opened_when.as_deref(), Some("all_waiting"));
    let p = report.pre_queue.as_ref().expect("fans were pre-queued");
    assert_eq!(p.pre_queued, 200, "{p:?}");
    assert_eq!(p.placed, 200, "{p:?}");
    assert_eq!(
        p.via_push, 200,
        "each heard its place in a position push: {p:?}"
    );
    assert_eq!(p.unheard_at_opening, 0, "{p:?}");
    assert_eq!((p.first_place, p.last_place), (Some(1), Some(200)), "{p:?}");
    assert!(p.contiguous, "{p:?}");
    // All admitted at the opening, by push, in drawn order.
    assert_eq!(outcome(&report, "admitted"), 200, "{:?}", report.outcomes);
    assert_eq!(report.admissions.via_push, 200, "{:?}", report.admissions);
    assert_eq!(p.admitted_at_opening.count, 200, "{p:?}");
    // One stamp per fan: asked for once, solved once.
    let stamps = report.stamps.as_ref().expect("stamps were asked for");
    assert_eq!((stamps.solved, stamps.fans), (200, 200), "{stamps:?}");
    assert_eq!(
        stamps.refused.iter().collect::<Vec<_>>(),
        [(&"stamp_required".to_owned(), &200)],
        "{stamps:?}"
    );
}

/// `sim/scenarios/club.toml` with its venue made absolute and a refresh
/// storm added (club has none): many waiting fans drop their websocket at
/// once and come back with their queue tokens.
fn club_with_a_storm(dir: &std::path::Path) -> std::path::PathBuf {
    let sim = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim");
    let text = std::fs::read_to_string(sim.join("scenarios/club.toml")).expect("club.toml");
    let venue = sim.join("../venues/club.json");
    let text = text.replace(
        "venue = \"venues/club.json\"",
        &format!("venue = {:?}", venue.display().to_string()),
    );
    // Scenario time: the sale opens at 60 s, the burst of arrivals runs
    // to 360 s; the storm breaks at 260 s, while most fans still wait.
    let storm = "[[storms]]\nat_s = 260\nshare = 0.5\nspread_s = 50\n";
    let path = dir.join("club-storm.toml");
    std::fs::write(&path, format!("{text}\n{storm}")).expect("write the scenario");
    path
}

#[test]
fn scenario_fans_behave_as_the_club_scenario_says() {
    // An event created from the scenario (The Cellar, its [event] config
    // with the windows scaled too), 300 fans with club's behaviour at 1/50
    // of scenario time (its 300 s burst of arrivals in 6 s); the sale
    // opens once all wait.
    let node = demo("load-scenario");
    let target = format!("http://{}", node.addr);
    let scenario = club_with_a_storm(&scratch_dir("load-scenario-file"));
    let report = load(
        &format!(
            "--target {target} --event 30 --fans 300 --workers 2 --in-process --seed 3 \
             --scenario {} --time-scale 0.02 --create-from-scenario --open-after-joined \
             --duration-s 20",
            scenario.display()
        ),
        &["--ops-token", OPERATOR_TOKEN],
    );
    // No seat twice, admissions in order, nobody passed over (those who
    // gave up are not), every reload kept its place, told = durable.
    assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
    assert_eq!(report.fans_missing, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.checks.audit.is_some(), "the audit was read");
    let b = report.behaviour.as_ref().expect("a scenario run");
    // Club's party weights (0.3, 0.4, 0.15, 0.15) and seat preferences.
    assert_eq!(
        b.party_sizes.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    for area in ["anywhere", "price_level", "section"] {
        assert!(b.areas.keys().any(|k| k.starts_with(area)), "{:?}", b.areas);
    }
    // Impatient fans (30 %, patience 30 min mean, so ~36 s here) whose
    // patience ran out before their turn left the line.
    assert!(b.abandoned >= 1, "{b:?}");
    assert_eq!(outcome(&report, "abandoned"), b.abandoned);
    assert_eq!(report.checks.passed_over.violations, 0);
    // The storm and the periodic reloads: back with their own position.
    assert!(b.fans_reloaded >= 20, "{b:?}");
    assert_eq!(report.checks.reload_moved.violations, 0);
    assert!(
        b.fans_reloaded_kept_position * 10 >= b.fans_reloaded * 9,
        "{b:?}"
    );
    // Most fans buy; others never show up or never pay (7 %), or see
    // their hold lapse (a declined payment is noticed by polling every
    // 5 s, after the 2.4 s checkout window).
    assert!(
        outcome(&report, "purchased") >= 150,
        "{:?}",
        report.outcomes
    );
    assert!(
        outcome(&report, "checkout_abandoned") + outcome(&report, "no_show") >= 1,
        "{:?}",
        report.outcomes
    );
}

/// The gateway's event overview (`GET /api/ops/events/{event}/stats`), or
/// `None` while the event does not answer yet.
fn overview(addr: &str, event: u64) -> Option<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let path = format!("/api/ops/events/{event}/stats");
    let response = runtime.block_on(onsale_tests::client::ops(
        addr,
        "GET",
        &path,
        &serde_json::Value::Null,
    ));
    (response.status == 200).then(|| response.json()["overview"].clone())
}

#[test]
fn fans_resume_their_places_after_the_gateway_is_killed_and_restarted() {
    // 240 fans for 60 seats: the first few dozen hold every seat and pay
    // while the others wait (for seats freed by a declined payment, or to
    // hear "sold out"). Once 100 wait and seats are held, the gateway is
    // killed (-9) and started again on its store and
    // address 1.5 s later. Every websocket breaks; the fans reconnect
    // (refused until the gateway is back) with backoff,
    // watch with their queue tokens and must get their own positions back
    // (paying fans too: they ask `resume`), with no fan lost to the crash.
    let dir = scratch_dir("load-crash");
    let store = dir.join("onsale.db");
    let mut node =
        NodeProcess::start_http(&store, &["--lease-ttl-ms", "1000"]).expect("the gateway starts");
    let target = format!("http://{}", node.addr);
    let venue = dir.join("venue.json");
    std::fs::write(&venue, venue_json(1, 6, 10)).expect("write the venue");
    let words = format!(
        "--target {target} --event 9 --fans 240 --workers 2 --in-process --seed 5 \
         --duration-s 45 --create-venue {} --create-config {{\"full_factor\":10}} \
         --open-at-start",
        venue.display()
    );
    let driver = std::thread::spawn(move || load(&words, &["--ops-token", OPERATOR_TOKEN]));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut o = serde_json::Value::Null;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "100 fans never waited with seats held: {o}"
        );
        o = overview(&node.addr, 9).unwrap_or_default();
        let count = |name: &str| o[name].as_u64().unwrap_or(0);
        let (waiting, held, sold) = (count("waiting"), count("held"), count("sold"));
        if waiting >= 100 && held > 0 {
            eprintln!(
                "killing the gateway: {waiting} fans waiting, {held} seats held, {sold} sold"
            );
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    node.kill9();
    // Down for a while: the fans' reconnects are refused, and back off.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    node.restart().expect("the gateway restarts on its store");
    eprintln!("restarted in {:?}", node.ready_in);
    let report = driver.join().expect("the driver");

    let r = &report.resumes;
    assert!(r.fans_disconnected >= 100, "{r:?}");
    assert!(r.resumes > 0, "{r:?}");
    assert_eq!(r.resumes_kept_position, r.resumes, "{r:?}");
    assert_eq!(
        report.checks.resume_moved.violations, 0,
        "{:?}",
        report.checks
    );
    assert_eq!(r.fans_gave_up, 0, "{r:?}");
    // No fan ended because its connection broke: no errors at all.
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(outcome(&report, "error"), 0, "{:?}", report.outcomes);
    assert_eq!(report.fans_missing, 0);
    // The fans' other checks and the event's audit hold through the crash.
    assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
    assert!(report.checks.audit.is_some(), "the audit was read");
}
