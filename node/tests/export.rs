//! `onsale export` as a user meets it: the built binary on a real store,
//! its summary, its errors, and (when Python's `duckdb` is installed) the
//! files read by DuckDB through `scripts/duckdb-check.py`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use onsale_feed::export::fixture::{self, Seller};
use onsale_schema::EventId;

const ONSALE: &str = env!("CARGO_BIN_EXE_onsale");
const EVENT: EventId = EventId(7);

/// Run `onsale` with `args` to completion, with no inherited settings.
fn onsale(args: &[&str]) -> Output {
    Command::new(ONSALE)
        .args(args)
        .env_remove("ONSALE_STORE")
        .env("ONSALE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("onsale runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// The club sold out in parties of up to four, its store at `dir/onsale.db`.
fn sold_club(dir: &Path) -> (PathBuf, Seller) {
    let store = dir.join("onsale.db");
    let club = include_str!("../../venues/club.json");
    let mut seller = Seller::create(&store, &fixture::spec(EVENT, club), fixture::START);
    seller.open();
    seller.sell_out(4, 2_000);
    seller.flush();
    (store, seller)
}

#[test]
fn export_writes_four_files_and_says_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (store, seller) = sold_club(dir.path());
    let out = dir.path().join("out");
    let run = onsale(&[
        "export",
        "--event",
        "7",
        "--out",
        path(&out),
        "--store",
        path(&store),
    ]);
    assert!(run.status.success(), "{run:?}");
    let stdout = text(&run.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let orders = seller.core().orders();
    let seats: usize = orders.iter().map(|o| o.seats.len()).sum();
    for (line, (name, rows)) in lines
        .iter()
        .zip([("tickets.parquet", seats), ("orders.parquet", orders.len())])
    {
        let file = out.join(name);
        let bytes = std::fs::metadata(&file).unwrap().len();
        assert_eq!(
            *line,
            format!("{}: {rows} rows, {bytes} bytes", file.display()),
            "{stdout}"
        );
    }
    for name in ["admissions.parquet", "timeline.parquet"] {
        assert!(out.join(name).is_file(), "{name}");
    }
    assert!(
        lines[4].contains(&format!("journal seq 1..={}", seller.core().journal_seq())),
        "{stdout}"
    );

    duckdb_check(&out, seats, orders.len());
}

/// Read the files with DuckDB (`scripts/duckdb-check.py`), if Python has
/// it: counts, types and the README's query.
fn duckdb_check(out: &Path, tickets: usize, orders: usize) {
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_duckdb {
        println!("skipped the DuckDB check: python3 cannot import duckdb (pip install duckdb)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/duckdb-check.py");
    let check = Command::new("python3")
        .arg(script)
        .arg(out)
        .args(["--tickets", &tickets.to_string()])
        .args(["--orders", &orders.to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    println!("{}", text(&check.stdout));
}

#[test]
fn an_unknown_event_is_refused_naming_the_events_there() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _seller) = sold_club(dir.path());
    let out = dir.path().join("out");
    let run = onsale(&[
        "export",
        "--event",
        "9",
        "--out",
        path(&out),
        "--store",
        path(&store),
    ]);
    assert!(!run.status.success(), "{run:?}");
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("no event 9 in the store; it holds events 7"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_path_without_a_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here.db");
    let out = dir.path().join("out");
    let run = onsale(&[
        "export",
        "--event",
        "7",
        "--out",
        path(&out),
        "--store",
        path(&missing),
    ]);
    assert!(!run.status.success(), "{run:?}");
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: no onsale store here (no such file); give the node's store with --store PATH",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!missing.exists(), "no store made by an export");

    let not_a_store = dir.path().join("notes.txt");
    std::fs::write(&not_a_store, "x".repeat(4096)).unwrap();
    let run = onsale(&[
        "export",
        "--event",
        "7",
        "--out",
        path(&out),
        "--store",
        path(&not_a_store),
    ]);
    assert!(!run.status.success(), "{run:?}");
    let stderr = text(&run.stderr);
    assert!(stderr.contains("not an SQLite database"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn an_output_directory_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _seller) = sold_club(dir.path());
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("out");
    let run = onsale(&[
        "export",
        "--event",
        "7",
        "--out",
        path(&out),
        "--store",
        path(&store),
    ]);
    assert!(!run.status.success(), "{run:?}");
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains(&format!("{}: cannot write there", out.display())),
        "{stderr}"
    );
}
