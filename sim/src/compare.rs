//! `onsale-sim compare A B`: two runs side by side (e.g. full_factor 3 vs 5,
//! or defences off vs on).
//!
//! Besides the key figures, when both runs have the same crowd (same seed,
//! and the same numbers of fans, people and bots: who arrives is drawn
//! from the seed alone, see `engine`), it follows the genuine fans who
//! bought in both runs, by their arrival rank: how long the same people
//! took to buy in each. Without that, a median over buyers compares
//! different people once the defences change who buys.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::metrics::{self, Percentiles, Summary, ms32};
use crate::output::{self, PURCHASES_FILE, PURCHASES_HEADER, SUMMARY_FILE, TIMESERIES_FILE};
use crate::report::{self, Line};

/// The summaries' key figures, as JSON pointers.
pub const KEY_METRICS: [&str; 38] = [
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
    "/genuine/buyers",
    "/genuine/tickets",
    "/genuine/purchase_rate",
    "/genuine/arrival_to_purchase/p50_s",
    "/genuine/arrival_to_purchase/p90_s",
    "/genuine/arrival_to_join/p50_s",
    "/genuine/arrival_to_join/p90_s",
    "/genuine/join_to_purchase/p50_s",
    "/defences/draw/places_drawn",
    "/defences/codes/joins_refused",
    "/defences/codes/people_refused",
    "/defences/proof_of_work/bot_core_s",
    "/defences/proof_of_work/people_join_delay/p90_s",
    "/defences/ip_limits/joins_refused",
    "/defences/ip_limits/people_ever_refused",
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
    /// Genuine buyers by arrival rank: (rank, arrival to purchase in ms),
    /// from `purchases.csv` if the run wrote one.
    genuine_buyers: Option<Vec<(u32, u64)>>,
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
    let path = dir.join(PURCHASES_FILE);
    let genuine_buyers = match std::fs::read_to_string(&path) {
        Ok(text) => Some(genuine_buyers(&text).with_context(|| format!("{}", path.display()))?),
        Err(_) => None,
    };
    Ok(RunDir {
        summary,
        json,
        rows,
        genuine_buyers,
    })
}

/// `(rank, arrival to purchase)` of each genuine buyer in `purchases.csv`,
/// sorted by rank.
fn genuine_buyers(text: &str) -> anyhow::Result<Vec<(u32, u64)>> {
    let mut lines = text.lines();
    anyhow::ensure!(
        lines.next() == Some(PURCHASES_HEADER),
        "not a purchases.csv of this version"
    );
    let mut buyers = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<u64> = line
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("line {}: bad cell", i + 2))?;
        let [rank, bot, arrived, _position, purchased, _tickets] = cells[..] else {
            anyhow::bail!("line {}: needs 6 cells", i + 2);
        };
        if bot == 0 {
            buyers.push((rank as u32, purchased.saturating_sub(arrived)));
        }
    }
    buyers.sort_unstable();
    Ok(buyers)
}

/// The genuine fans who bought in both runs (same crowd only): how many,
/// and their arrival-to-purchase times in A and in B.
fn same_genuine_buyers(a: &RunDir, b: &RunDir) -> Result<Value, &'static str> {
    let (sa, sb) = (&a.summary, &b.summary);
    if (sa.seed, sa.fans, sa.people, sa.bots) != (sb.seed, sb.fans, sb.people, sb.bots) {
        return Err("not the same crowd (seed, fans, people or bots differ)");
    }
    let (Some(ba), Some(bb)) = (&a.genuine_buyers, &b.genuine_buyers) else {
        return Err("a run has no purchases.csv");
    };
    let mut in_a = Vec::new();
    let mut in_b = Vec::new();
    let mut j = 0;
    for &(rank, waited) in ba {
        while j < bb.len() && bb[j].0 < rank {
            j += 1;
        }
        if j < bb.len() && bb[j].0 == rank {
            in_a.push(ms32(waited));
            in_b.push(ms32(bb[j].1));
        }
    }
    let count = in_a.len();
    let (pa, pb) = (Percentiles::of_ms(&mut in_a), Percentiles::of_ms(&mut in_b));
    Ok(json!({
        "count": count,
        "only_in_a": ba.len() - count,
        "only_in_b": bb.len() - count,
        "arrival_to_purchase_a": pa,
        "arrival_to_purchase_b": pb,
    }))
}

/// `b / a − 1`, when it means something.
fn relative(a: Option<f64>, b: Option<f64>) -> Value {
    match (a, b) {
        (Some(x), Some(y)) if x != 0.0 => json!(metrics::round6(y / x - 1.0)),
        _ => Value::Null,
    }
}

fn defences_on(run: &RunDir) -> String {
    let on = &run.summary.defences.on;
    if on.is_empty() {
        "none".to_owned()
    } else {
        on.join(", ")
    }
}

fn label(run: &RunDir) -> String {
    format!("{} (seed {})", run.summary.scenario, run.summary.seed)
}

/// Write `compare.json` and `compare.html` into `out`.
pub fn compare(a: &Path, b: &Path, out: &Path) -> anyhow::Result<()> {
    let ra = read(a)?;
    let rb = read(b)?;
    let mut metrics_json = Map::new();
    let mut table = String::from(
        "<table><tr><th>measure</th><th>A</th><th>B</th><th>B − A</th><th>B / A − 1</th></tr>",
    );
    for pointer in KEY_METRICS {
        let va = ra.json.pointer(pointer).cloned().unwrap_or(Value::Null);
        let vb = rb.json.pointer(pointer).cloned().unwrap_or(Value::Null);
        let delta = match (va.as_f64(), vb.as_f64()) {
            (Some(x), Some(y)) => json!(metrics::round6(y - x)),
            _ => Value::Null,
        };
        let change = relative(va.as_f64(), vb.as_f64());
        let shown = change
            .as_f64()
            .map_or(String::new(), |c| format!("{:+.1} %", c * 100.0));
        let name = pointer.trim_start_matches('/').replace('/', ".");
        let _ = write!(
            table,
            "<tr><td>{name}</td><td>{va}</td><td>{vb}</td><td>{delta}</td><td>{shown}</td></tr>"
        );
        metrics_json.insert(
            name,
            json!({ "a": va, "b": vb, "b_minus_a": delta, "b_over_a_minus_1": change }),
        );
    }
    table.push_str("</table>");
    let same = same_genuine_buyers(&ra, &rb);
    let same_html = match &same {
        Ok(v) => {
            let p50 = |side: &str| v[side]["p50_s"].as_f64().unwrap_or(0.0);
            let p90 = |side: &str| v[side]["p90_s"].as_f64().unwrap_or(0.0);
            format!(
                "<h2>The same genuine fans</h2><p>{} genuine fans bought in both runs ({} only \
                 in A, {} only in B). Their arrival → purchase: p50 {:.1} s in A, {:.1} s in B; \
                 p90 {:.1} s in A, {:.1} s in B.</p>",
                v["count"],
                v["only_in_a"],
                v["only_in_b"],
                p50("arrival_to_purchase_a"),
                p50("arrival_to_purchase_b"),
                p90("arrival_to_purchase_a"),
                p90("arrival_to_purchase_b"),
            )
        }
        Err(why) => format!("<p>No genuine fans followed across the runs: {why}.</p>"),
    };
    let doc = json!({
        "a": { "dir": a.display().to_string(), "scenario": ra.summary.scenario, "seed": ra.summary.seed, "defences": ra.summary.defences.on },
        "b": { "dir": b.display().to_string(), "scenario": rb.summary.scenario, "seed": rb.summary.seed, "defences": rb.summary.defences.on },
        "metrics": Value::Object(metrics_json),
        "same_genuine_buyers": same.as_ref().map_or(Value::Null, Clone::clone),
    });
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    output::write(out, "compare.json", text.as_bytes())?;
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>onsale-sim compare</title>\
         <style>{}</style></head><body><h1>A: {} vs B: {}</h1>\
         <p>Defences in A: {}; in B: {}.</p>{table}{same_html}",
        report::STYLE,
        report::escape(&label(&ra)),
        report::escape(&label(&rb)),
        report::escape(&defences_on(&ra)),
        report::escape(&defences_on(&rb)),
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
