//! End-to-end tests of `onsale-sim`: determinism, the referee catching an
//! injected bug, scenario errors, the shipped scenarios. Small fan counts
//! only; the 10M-fan `eras` scenario is a benchmark (see the README).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use onsale_sim::scenario::Scenario;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn repo_venue(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../venues")
        .join(name)
        .display()
        .to_string()
}

/// Run the binary with `args`.
fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onsale-sim"))
        .args(args)
        .output()
        .expect("onsale-sim runs")
}

/// `onsale-sim run SCENARIO --seed SEED --out DIR`; returns the output.
fn run(scenario: &Path, seed: u64, out: &Path) -> Output {
    sim(&[
        "run",
        scenario.to_str().unwrap(),
        "--seed",
        &seed.to_string(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(dir, "summary.json")).unwrap()
}

/// The club scenario, rewritten into `dir` with its venue made absolute and
/// `extra` TOML appended.
fn club_variant(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(scenarios_dir().join("club.toml")).unwrap();
    let text = text.replace(
        "venue = \"venues/club.json\"",
        &format!("venue = {:?}", repo_venue("club.json")),
    );
    let path = dir.join("variant.toml");
    std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
    path
}

#[test]
fn same_seed_gives_byte_identical_outputs_and_another_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let club = scenarios_dir().join("club.toml");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for (dir, seed) in [(&a, 7), (&b, 7), (&c, 8)] {
        let out = run(&club, seed, dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for file in ["summary.json", "timeseries.csv", "report.html"] {
        assert_eq!(
            read(&a, file),
            read(&b, file),
            "{file} differs between runs"
        );
    }
    assert_ne!(read(&a, "summary.json"), read(&c, "summary.json"));
    assert_ne!(read(&a, "timeseries.csv"), read(&c, "timeseries.csv"));
    let s = summary(&a);
    assert_eq!(s["invariants"]["verdict"], "ok");
    assert_eq!(s["tickets_sold"], 508, "the club sells out");
    // The race the design turns on is exercised: payments submitted in
    // time but confirmed after the checkout deadline were honoured, and
    // confirmations after the provider timeout were refunded.
    assert!(s["sold_after_deadline"].as_u64().unwrap() > 0);
    assert!(s["refunds"].as_u64().unwrap() > 0);
    assert!(s["invariants"]["core_checks"].as_u64().unwrap() > 1);
}

#[test]
fn an_injected_double_sale_is_caught_with_the_seed_and_step() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = club_variant(tmp.path(), "[faults]\ninject_double_sell_at_order = 25");
    let out_dir = tmp.path().join("out");
    let out = run(&scenario, 42, &out_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("with seed 42"), "{stderr}");
    assert!(stderr.contains("at step "), "{stderr}");
    assert!(stderr.contains("sold twice"), "{stderr}");
    let s = summary(&out_dir);
    assert_eq!(s["invariants"]["verdict"], "violated");
    assert!(s["invariants"]["violation_step"].as_u64().unwrap() > 0);
    // The same run without the fault is clean.
    let clean = club_variant(tmp.path(), "");
    assert!(run(&clean, 42, &tmp.path().join("clean")).status.success());
}

#[test]
fn crashes_restore_from_snapshot_and_journal_and_fans_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = club_variant(
        tmp.path(),
        "[[crashes]]\nat_s = 75\ndowntime_s = 5\n\n[[crashes]]\nat_s = 200\ndowntime_s = 20\n\n\
         [[storms]]\nat_s = 150\nshare = 0.8\nspread_s = 5",
    );
    let out_dir = tmp.path().join("out");
    let out = run(&scenario, 3, &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out_dir);
    assert_eq!(s["invariants"]["verdict"], "ok");
    assert_eq!(s["crashes"], 2);
    assert_eq!(s["restores"], 2);
    assert!(
        s["resumes"].as_u64().unwrap() > 0,
        "waiting fans came back with tokens"
    );
    assert_eq!(s["tickets_sold"], 508);
}

#[test]
fn a_pre_queue_lottery_reorders_places_but_admits_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(club_variant(tmp.path(), ""))
        .unwrap()
        .replace("opens_at_s = 60", "opens_at_s = 600")
        .replace(
            "curve = { kind = \"burst\", duration_s = 300, half_life_s = 20 }",
            "curve = { kind = \"pre_queue\", opens_before_s = 600, late_share = 0.2, late_duration_s = 120, randomize = true }",
        );
    let scenario = tmp.path().join("lottery.toml");
    std::fs::write(&scenario, text).unwrap();
    let out_dir = tmp.path().join("out");
    let out = run(&scenario, 5, &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out_dir);
    assert_eq!(s["invariants"]["verdict"], "ok");
    assert!(
        s["fairness"]["arrival_position_inversions"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn compare_puts_two_runs_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let three = club_variant(tmp.path(), "");
    let five_text = std::fs::read_to_string(&three)
        .unwrap()
        .replace("full_factor = 3", "full_factor = 5");
    let five = tmp.path().join("five.toml");
    std::fs::write(&five, five_text).unwrap();
    let (a, b, out) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("cmp"),
    );
    assert!(run(&three, 1, &a).status.success());
    assert!(run(&five, 1, &b).status.success());
    let o = sim(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&read(&out, "compare.json")).unwrap();
    let joined = &doc["metrics"]["joined"];
    assert!(
        joined["b"].as_u64() > joined["a"].as_u64(),
        "a bigger room lets more in: {joined}"
    );
    assert!(
        String::from_utf8(read(&out, "compare.html"))
            .unwrap()
            .contains("<svg")
    );
}

#[test]
fn load_mode_drives_loopback_only_and_needs_a_target() {
    let o = sim(&["load", "--fans", "10"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--target"));
    let o = sim(&[
        "load",
        "--target",
        "http://10.1.2.3:80",
        "--event",
        "1",
        "--fans",
        "10",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("only drives loopback"));
}

#[test]
fn every_shipped_scenario_parses_and_eras_is_the_big_one() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            names.push(s.file.name.clone());
        }
    }
    names.sort();
    assert_eq!(names, ["bots", "club", "crash", "eras"]);
    let eras = Scenario::load(&scenarios_dir().join("eras.toml")).unwrap();
    assert!(eras.file.arrivals.fans >= 10_000_000);
    assert_eq!(eras.venue.seat_count(), 60_000);
    assert!(matches!(
        eras.file.arrivals.curve,
        onsale_sim::scenario::Curve::Burst { .. }
    ));
}

/// Parse scenario text as `bad.toml`; the error message.
fn error_of(text: &str) -> String {
    let venue = repo_venue("club.json");
    let text = text.replace("VENUE", &venue);
    match Scenario::parse(Path::new("/tmp/bad.toml"), &text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => format!("{e:#}"),
    }
}

const MINIMAL: &str = "name = \"x\"\nvenue = \"VENUE\"\n[arrivals]\nfans = 10\ncurve = { kind = \"poisson\", rate_per_s = 1 }\n";

#[test]
fn bad_scenario_files_name_the_file_and_the_field() {
    Scenario::parse(
        Path::new("/tmp/ok.toml"),
        &MINIMAL.replace("VENUE", &repo_venue("club.json")),
    )
    .expect("the minimal scenario is fine");
    let cases = [
        (format!("{MINIMAL}colour = 3\n"), "unknown field `colour`"),
        (
            format!("{MINIMAL}[fans]\npatience = 3\n"),
            "unknown field `patience`",
        ),
        (
            format!("{MINIMAL}[fans]\npay_probability = 1.5\n"),
            "field `fans.pay_probability`",
        ),
        (
            format!("{MINIMAL}[event]\nfull_factor = 0\n"),
            "field `event.full_factor`",
        ),
        (
            format!("{MINIMAL}[event]\nfull_facter = 3\n"),
            "unknown field `full_facter`",
        ),
        (
            MINIMAL.replace("rate_per_s = 1", "rate_per_s = -1"),
            "field `arrivals.curve.rate_per_s`",
        ),
        (
            MINIMAL.replace("poisson", "tsunami"),
            "unknown variant `tsunami`",
        ),
        (
            MINIMAL.replace("fans = 10", "fans = 0"),
            "field `arrivals.fans`",
        ),
        (
            MINIMAL.replace("VENUE", "no/such/venue.json"),
            "field `venue`",
        ),
        (
            format!("{MINIMAL}[[crashes]]\nat_s = 10\ndowntime_s = 0\n"),
            "field `crashes[0].downtime_s`",
        ),
        (
            format!("{MINIMAL}[fans]\nshow_up_s = {{ min = 9, max = 3 }}\n"),
            "field `fans.show_up_s`",
        ),
        (
            MINIMAL.replace("name = \"x\"\n", ""),
            "missing field `name`",
        ),
    ];
    for (text, expected) in cases {
        let e = error_of(&text);
        assert!(e.contains("/tmp/bad.toml"), "no file name in: {e}");
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
    }
}

#[test]
fn a_venue_that_is_not_a_venue_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let venue = tmp.path().join("venue.json");
    std::fs::write(&venue, "{\"name\": \"x\"}").unwrap();
    let text = MINIMAL.replace("VENUE", venue.to_str().unwrap());
    let e = format!(
        "{:#}",
        Scenario::parse(&tmp.path().join("s.toml"), &text).unwrap_err()
    );
    assert!(
        e.contains("field `venue`") && e.contains("not a valid venue"),
        "{e}"
    );
}
