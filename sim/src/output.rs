//! Writing a run's results into a directory.

use std::path::Path;

use anyhow::Context;

use crate::engine::RunOutput;
use crate::metrics;
use crate::report;
use crate::scenario::Scenario;

pub const SUMMARY_FILE: &str = "summary.json";
pub const TIMESERIES_FILE: &str = "timeseries.csv";
pub const REPORT_FILE: &str = "report.html";

/// Write `summary.json`, `timeseries.csv` and `report.html` into `dir`.
pub fn write_run(dir: &Path, scenario: &Scenario, run: &RunOutput) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let mut summary = serde_json::to_string_pretty(&run.summary)?;
    summary.push('\n');
    write(dir, SUMMARY_FILE, summary.as_bytes())?;
    write(dir, TIMESERIES_FILE, metrics::csv(&run.samples).as_bytes())?;
    let html = report::run_report(scenario, run)?;
    write(dir, REPORT_FILE, html.as_bytes())?;
    Ok(())
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
