//! Writing a run's results into a directory.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::engine::{Purchase, RunOutput};
use crate::metrics;
use crate::report;
use crate::scenario::Scenario;

pub const SUMMARY_FILE: &str = "summary.json";
pub const TIMESERIES_FILE: &str = "timeseries.csv";
pub const REPORT_FILE: &str = "report.html";
pub const PURCHASES_FILE: &str = "purchases.csv";
pub const PURCHASES_HEADER: &str = "rank,bot,arrived_ms,position,purchased_ms,tickets";

/// Write `summary.json`, `timeseries.csv`, `purchases.csv` and
/// `report.html` into `dir`.
pub fn write_run(dir: &Path, scenario: &Scenario, run: &RunOutput) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let mut summary = serde_json::to_string_pretty(&run.summary)?;
    summary.push('\n');
    write(dir, SUMMARY_FILE, summary.as_bytes())?;
    write(dir, TIMESERIES_FILE, metrics::csv(&run.samples).as_bytes())?;
    write(
        dir,
        PURCHASES_FILE,
        purchases_csv(&run.purchases).as_bytes(),
    )?;
    let html = report::run_report(scenario, run)?;
    write(dir, REPORT_FILE, html.as_bytes())?;
    Ok(())
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// `purchases.csv`: one row per order in sale order (at most one per
/// account, so at most the venue's seats). `rank` is the buyer's arrival
/// order, the same fan in every run of one seed and crowd.
#[must_use]
pub fn purchases_csv(purchases: &[Purchase]) -> String {
    let mut out = String::with_capacity(40 * (purchases.len() + 1));
    out.push_str(PURCHASES_HEADER);
    out.push('\n');
    for p in purchases {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            p.rank,
            u8::from(p.bot),
            p.arrived_ms,
            p.position,
            p.at_ms,
            p.tickets
        );
    }
    out
}
