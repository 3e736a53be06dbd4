//! `onsale-sim compare A B`: two runs side by side (e.g. full_factor 3 vs 5).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::metrics::{self, Summary};
use crate::output::{self, SUMMARY_FILE, TIMESERIES_FILE};
use crate::report::{self, Line};

/// The summaries' key figures, as JSON pointers.
pub const KEY_METRICS: [&str; 23] = [
    "/fans",
    "/joined",
    "/turned_away_full",
    "/gave_up_full",
    "/turned_away_sold_out",
    "/admitted",
    "/no_shows",
    "/holds",
    "/orders",
    "/tickets_sold",
    "/sell_through",
    "/sold_out_after_s",
    "/sold_99_after_s",
    "/abandoned_waiting",
    "/abandoned_checkout",
    "/bot_ticket_share",
    "/fairness/arrival_purchase_inversion_share",
    "/fairness/arrival_position_inversion_share",
    "/time_in_queue/p50_s",
    "/time_in_queue/p90_s",
    "/time_in_queue/p99_s",
    "/events_processed",
    "/virtual_duration_s",
];

struct RunDir {
    summary: Summary,
    json: Value,
    rows: Vec<Vec<f64>>,
}

fn read(dir: &Path) -> anyhow::Result<RunDir> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let summary: Summary = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a summary of this version", path.display()))?;
    let json = serde_json::to_value(&summary)?;
    let path = dir.join(TIMESERIES_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let rows = metrics::parse_csv(&text).with_context(|| format!("{}", path.display()))?;
    Ok(RunDir {
        summary,
        json,
        rows,
    })
}

fn label(run: &RunDir) -> String {
    format!("{} (seed {})", run.summary.scenario, run.summary.seed)
}

/// Write `compare.json` and `compare.html` into `out`.
pub fn compare(a: &Path, b: &Path, out: &Path) -> anyhow::Result<()> {
    let ra = read(a)?;
    let rb = read(b)?;
    let mut metrics_json = Map::new();
    let mut table =
        String::from("<table><tr><th>measure</th><th>A</th><th>B</th><th>B − A</th></tr>");
    for pointer in KEY_METRICS {
        let va = ra.json.pointer(pointer).cloned().unwrap_or(Value::Null);
        let vb = rb.json.pointer(pointer).cloned().unwrap_or(Value::Null);
        let delta = match (va.as_f64(), vb.as_f64()) {
            (Some(x), Some(y)) => json!(metrics::round6(y - x)),
            _ => Value::Null,
        };
        let name = pointer.trim_start_matches('/').replace('/', ".");
        let _ = write!(
            table,
            "<tr><td>{name}</td><td>{va}</td><td>{vb}</td><td>{delta}</td></tr>"
        );
        metrics_json.insert(name, json!({ "a": va, "b": vb, "b_minus_a": delta }));
    }
    table.push_str("</table>");
    let doc = json!({
        "a": { "dir": a.display().to_string(), "scenario": ra.summary.scenario, "seed": ra.summary.seed },
        "b": { "dir": b.display().to_string(), "scenario": rb.summary.scenario, "seed": rb.summary.seed },
        "metrics": Value::Object(metrics_json),
    });
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    output::write(out, "compare.json", text.as_bytes())?;
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>onsale-sim compare</title>\
         <style>{}</style></head><body><h1>A: {} vs B: {}</h1>{table}",
        report::STYLE,
        report::escape(&label(&ra)),
        report::escape(&label(&rb)),
    );
    // Columns of timeseries.csv (see metrics::CSV_HEADER).
    let charts = [
        ("Waiting room", "fans", 4usize),
        ("Tickets sold", "tickets", 7),
        ("Admissions per second", "fans / s", 14),
        ("Sales per second", "tickets / s", 15),
    ];
    for (title, unit, column) in charts {
        let line = |run: &RunDir, name: &str, color| Line {
            name: name.to_owned(),
            color,
            points: thin(&run.rows, column),
        };
        html.push_str(&report::line_chart(
            title,
            "virtual time (s)",
            unit,
            &[
                line(&ra, "A", plotters::style::RGBColor(31, 119, 180)),
                line(&rb, "B", plotters::style::RGBColor(214, 39, 40)),
            ],
        ));
    }
    html.push_str("</body></html>\n");
    output::write(out, "compare.html", html.as_bytes())?;
    Ok(())
}

/// `(t, column)` points, averaged down to at most 1,500.
fn thin(rows: &[Vec<f64>], column: usize) -> Vec<(f64, f64)> {
    let k = rows.len().div_ceil(1_500).max(1);
    rows.chunks(k)
        .map(|chunk| {
            let y = chunk
                .iter()
                .map(|r| r.get(column).copied().unwrap_or(0.0))
                .sum::<f64>()
                / chunk.len() as f64;
            (chunk[0][0], y)
        })
        .collect()
}
