//! `report.html`: the run's key figures and SVG plots (plotters, SVG
//! backend only), in one self-contained page.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::engine::RunOutput;
use crate::metrics::{DefencesSummary, Percentiles, Sample};
use crate::scenario::Scenario;

/// Points drawn per line at most: longer series are averaged in buckets.
const POINTS_MAX: usize = 1_500;
/// Buyers drawn in the fairness scatter at most (every k-th).
const SCATTER_MAX: usize = 2_500;

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);

/// One line of a chart.
#[derive(Debug)]
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A line chart as SVG text.
pub fn line_chart(title: &str, x_desc: &str, y_desc: &str, lines: &[Line]) -> String {
    let mut svg = String::new();
    if let Err(e) = draw_lines(&mut svg, title, x_desc, y_desc, lines) {
        return format!("<p>plot failed: {}</p>", escape(&e.to_string()));
    }
    svg
}

fn draw_lines(
    svg: &mut String,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
) -> PlotResult<()> {
    let x_max = max_of(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
    let y_max = max_of(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
    let root = SVGBackend::with_string(svg, (860, 300)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max * 1.05)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| number(*y))
        .light_line_style(WHITE)
        .draw()?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    if lines.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Bars `(label, value)` over equal-width buckets starting at `x0`.
fn histogram(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x0: f64,
    width: f64,
    counts: &[u64],
) -> String {
    let mut svg = String::new();
    let r = (|| -> PlotResult<()> {
        let x_max = x0 + width * counts.len().max(1) as f64;
        let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let root = SVGBackend::with_string(&mut svg, (860, 300)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x_max, 0f64..y_max * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| number(*x))
            .y_label_formatter(&|y| number(*y))
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let left = x0 + width * i as f64;
            Rectangle::new([(left, 0.0), (left + width, *c as f64)], BLUE.filled())
        }))?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = r {
        return format!("<p>plot failed: {}</p>", escape(&e.to_string()));
    }
    svg
}

fn scatter(title: &str, x_desc: &str, y_desc: &str, points: &[(f64, f64, bool)]) -> String {
    let mut svg = String::new();
    let r = (|| -> PlotResult<()> {
        let x_max = max_of(points.iter().map(|p| p.0));
        let y_max = max_of(points.iter().map(|p| p.1));
        let root = SVGBackend::with_string(&mut svg, (860, 340)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| number(*x))
            .y_label_formatter(&|y| number(*y))
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(points.iter().map(|(x, y, bot)| {
            let color = if *bot { RED_ } else { BLUE };
            Circle::new((*x, *y), 2, color.filled())
        }))?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = r {
        return format!("<p>plot failed: {}</p>", escape(&e.to_string()));
    }
    svg
}

/// An axis label: whole numbers without decimals.
fn number(x: f64) -> String {
    if x.fract() == 0.0 || x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn max_of(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.fold(0.0f64, f64::max);
    if m > 0.0 { m } else { 1.0 }
}

/// At most `POINTS_MAX` points: buckets of consecutive samples averaged.
pub fn series(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    let k = samples.len().div_ceil(POINTS_MAX).max(1);
    samples
        .chunks(k)
        .map(|chunk| {
            let x = chunk[0].t_s as f64;
            let y = chunk.iter().map(&value).sum::<f64>() / chunk.len() as f64;
            (x, y)
        })
        .collect()
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.ok{color:#080}.bad{color:#c00;font-weight:bold}\
svg{display:block;margin:1em 0}";

/// The whole page.
pub fn run_report(scenario: &Scenario, run: &RunOutput) -> anyhow::Result<String> {
    let s = &run.summary;
    let samples = &run.samples;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>onsale-sim: {name}</title>\
         <style>{STYLE}</style></head><body><h1>onsale-sim: {name}</h1><p>{desc}</p>",
        name = escape(&s.scenario),
        desc = escape(&scenario.file.description),
    );
    let verdict = match &s.invariants.violation {
        None => "<span class=\"ok\">all invariants held</span>".to_owned(),
        Some(v) => format!("<span class=\"bad\">{}</span>", escape(v)),
    };
    let _ = write!(
        html,
        "<p>Seed {seed}, venue {venue} ({cap} seats), {fans} fans. Invariants: {verdict} \
         ({checks} core checks).</p>",
        seed = s.seed,
        venue = escape(&s.venue),
        cap = s.capacity,
        fans = s.fans,
        checks = s.invariants.core_checks,
    );
    html.push_str("<table><tr><th>measure</th><th>value</th></tr>");
    let sold_out = s.sold_out_after_s.map_or("not sold out".to_owned(), |t| {
        format!("{t:.1} s after opening")
    });
    let mut rows: Vec<(&str, String)> = vec![
        (
            "arrivals (people / bots)",
            format!("{} ({} / {})", s.arrivals, s.people, s.bots),
        ),
        ("accounts", s.accounts.to_string()),
        ("join attempts", s.join_attempts.to_string()),
        ("joined the line", s.joined.to_string()),
        (
            "\"full\" answers / gave up after them",
            format!("{} / {}", s.turned_away_full, s.gave_up_full),
        ),
        ("told \"sold out\"", s.turned_away_sold_out.to_string()),
        ("admitted", s.admitted.to_string()),
        (
            "no-shows / turns lapsed",
            format!("{} / {}", s.no_shows, s.turns_lapsed),
        ),
        (
            "holds / hold rejections",
            format!("{} / {}", s.holds, s.hold_rejections),
        ),
        (
            "payments submitted / late / declined",
            format!(
                "{} / {} / {}",
                s.payments_submitted, s.payments_late, s.payments_declined
            ),
        ),
        (
            "provider silent / answered late / refunds",
            format!(
                "{} / {} / {}",
                s.payments_silent, s.payments_answered_late, s.refunds
            ),
        ),
        (
            "sales confirmed after the checkout deadline (honoured)",
            s.sold_after_deadline.to_string(),
        ),
        (
            "orders / tickets sold",
            format!("{} / {}", s.orders, s.tickets_sold),
        ),
        ("sell-through", format!("{:.2} %", s.sell_through * 100.0)),
        ("sold out", sold_out),
        (
            "99 % sold",
            s.sold_99_after_s
                .map_or("no".to_owned(), |t| format!("{t:.1} s after opening")),
        ),
        (
            "abandoned waiting / at checkout",
            format!("{} / {}", s.abandoned_waiting, s.abandoned_checkout),
        ),
        (
            "bots' share of tickets",
            format!("{:.2} %", s.bot_ticket_share * 100.0),
        ),
        (
            "genuine fans: buyers / people (purchase rate)",
            format!(
                "{} / {} ({:.2} %)",
                s.genuine.buyers,
                s.genuine.people,
                s.genuine.purchase_rate * 100.0
            ),
        ),
        (
            "genuine buyers: arrival → purchase p50 / p90",
            p50_p90(&s.genuine.arrival_to_purchase),
        ),
        (
            "genuine buyers: arrival → place in line p50 / p90",
            p50_p90(&s.genuine.arrival_to_join),
        ),
        (
            "genuine buyers: place in line → purchase p50 / p90",
            p50_p90(&s.genuine.join_to_purchase),
        ),
        (
            "time in queue p50 / p90 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} s",
                s.time_in_queue.p50_s,
                s.time_in_queue.p90_s,
                s.time_in_queue.p99_s,
                s.time_in_queue.max_s
            ),
        ),
        (
            "arrival vs purchase inversions",
            format!(
                "{} ({:.4} of pairs)",
                s.fairness.arrival_purchase_inversions, s.fairness.arrival_purchase_inversion_share
            ),
        ),
        (
            "arrival vs position inversions",
            format!(
                "{} ({:.4} of pairs)",
                s.fairness.arrival_position_inversions, s.fairness.arrival_position_inversion_share
            ),
        ),
        (
            "crashes / restores / resumes with token",
            format!("{} / {} / {}", s.crashes, s.restores, s.resumes),
        ),
        (
            "journal records / snapshots / pushes",
            format!(
                "{} / {} / {}",
                s.journal_records, s.snapshots, s.pushes.total
            ),
        ),
        (
            "events processed / virtual duration",
            format!("{} / {:.0} s", s.events_processed, s.virtual_duration_s),
        ),
    ];
    rows.extend(defence_rows(&s.defences));
    for (name, value) in rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(&value)
        );
    }
    html.push_str("</table>");
    let chart = |html: &mut String, svg: String| html.push_str(&svg);
    chart(
        &mut html,
        line_chart(
            "Waiting room",
            "virtual time (s)",
            "fans",
            &[
                Line {
                    name: "waiting".into(),
                    color: BLUE,
                    points: series(samples, |s| s.waiting as f64),
                },
                Line {
                    name: "shopping".into(),
                    color: ORANGE,
                    points: series(samples, |s| f64::from(s.shopping)),
                },
            ],
        ),
    );
    chart(
        &mut html,
        line_chart(
            "Admissions per second",
            "virtual time (s)",
            "fans / s",
            &[Line {
                name: "admitted/s".into(),
                color: GREEN_,
                points: series(samples, |s| s.admitted_per_s),
            }],
        ),
    );
    chart(
        &mut html,
        line_chart(
            "Sales per second",
            "virtual time (s)",
            "tickets / s",
            &[Line {
                name: "tickets/s".into(),
                color: RED_,
                points: series(samples, |s| s.sales_per_s),
            }],
        ),
    );
    let cap = f64::from(s.capacity.max(1));
    chart(
        &mut html,
        line_chart(
            "Sell-through",
            "virtual time (s)",
            "% of seats",
            &[
                Line {
                    name: "sold".into(),
                    color: RED_,
                    points: series(samples, |s| f64::from(s.sold) * 100.0 / cap),
                },
                Line {
                    name: "held".into(),
                    color: PURPLE,
                    points: series(samples, |s| f64::from(s.held) * 100.0 / cap),
                },
            ],
        ),
    );
    html.push_str(&queue_histogram(&run.queue_waits_ms));
    let mut abandoned = 0u64;
    let mut turned = 0u64;
    let cumulative: Vec<Sample> = samples
        .iter()
        .map(|s| {
            abandoned += s.abandoned;
            turned += s.turned_away;
            Sample {
                abandoned,
                turned_away: turned,
                ..s.clone()
            }
        })
        .collect();
    chart(
        &mut html,
        line_chart(
            "Abandonment and turned away (cumulative)",
            "virtual time (s)",
            "fans",
            &[
                Line {
                    name: "abandoned (waiting or at checkout)".into(),
                    color: ORANGE,
                    points: series(&cumulative, |s| s.abandoned as f64),
                },
                Line {
                    name: "turned away (full or sold out)".into(),
                    color: BLUE,
                    points: series(&cumulative, |s| s.turned_away as f64),
                },
            ],
        ),
    );
    html.push_str(&fairness_plot(run));
    html.push_str(&bots_plot(run));
    html.push_str("</body></html>\n");
    Ok(html)
}

fn p50_p90(p: &Percentiles) -> String {
    format!("{:.1} / {:.1} s", p.p50_s, p.p90_s)
}

/// The defences' rows: which are on, and what each refused or cost.
fn defence_rows(d: &DefencesSummary) -> Vec<(&'static str, String)> {
    if d.on.is_empty() {
        return vec![("defences", "none".to_owned())];
    }
    let (c, w, l) = (&d.codes, &d.proof_of_work, &d.ip_limits);
    vec![
        ("defences", d.on.join(", ")),
        (
            "draw: openings drawn / places drawn",
            format!("{} / {}", d.draw.openings_drawn, d.draw.places_drawn),
        ),
        (
            "codes: people / bot accounts holding one",
            format!("{} / {}", c.people_with_code, c.bot_accounts_with_code),
        ),
        (
            "codes: joins refused (people) / waited for the general sale / turned away",
            format!(
                "{} ({}) / {} / {}",
                c.joins_refused, c.people_refused, c.waited_for_general_sale, c.turned_away
            ),
        ),
        (
            "proof of work: phone solves / bot solves / bots' core-seconds",
            format!(
                "{} / {} / {:.0}",
                w.phone_solves, w.bot_solves, w.bot_core_s
            ),
        ),
        (
            "proof of work: a genuine join's wait p50 / p90",
            p50_p90(&w.people_join_delay),
        ),
        (
            "address limit: joins refused (people) / people refused at least once / gave up",
            format!(
                "{} ({}) / {} / {}",
                l.joins_refused, l.people_refused, l.people_ever_refused, l.accounts_gave_up
            ),
        ),
        (
            "address limit: addresses / people behind a shared NAT",
            format!("{} / {}", l.addresses, l.people_behind_nat),
        ),
    ]
}

fn queue_histogram(waits_ms: &[u32]) -> String {
    let max_s = waits_ms.iter().copied().max().unwrap_or(0) as f64 / 1000.0;
    let buckets = 60usize;
    let width = (max_s / buckets as f64).max(1.0);
    let mut counts = vec![0u64; buckets];
    for w in waits_ms {
        let i = ((f64::from(*w) / 1000.0) / width) as usize;
        counts[i.min(buckets - 1)] += 1;
    }
    histogram(
        "Time in queue (joined to admitted)",
        "seconds",
        "admitted fans",
        0.0,
        width,
        &counts,
    )
}

fn fairness_plot(run: &RunOutput) -> String {
    let p = &run.purchases;
    let k = p.len().div_ceil(SCATTER_MAX).max(1);
    let points: Vec<(f64, f64, bool)> = p
        .iter()
        .enumerate()
        .step_by(k)
        .map(|(i, b)| (f64::from(b.rank), i as f64, b.bot))
        .collect();
    let f = &run.summary.fairness;
    format!(
        "<h2>Fairness</h2><p>Each dot is an order (red: a bot's). On a perfectly fair \
         sale the dots rise from left to right. {} of {} pairs of buyers bought in the \
         opposite order of their arrival (share {:.4}).</p>{}",
        f.arrival_purchase_inversions,
        (f.purchases * f.purchases.saturating_sub(1)) / 2,
        f.arrival_purchase_inversion_share,
        scatter(
            "Arrival order vs purchase order",
            "arrival rank",
            "order number",
            &points
        )
    )
}

fn bots_plot(run: &RunOutput) -> String {
    let mut bot = 0u64;
    let mut all = 0u64;
    let k = run.purchases.len().div_ceil(POINTS_MAX).max(1);
    let mut points = Vec::new();
    for (i, p) in run.purchases.iter().enumerate() {
        all += u64::from(p.tickets);
        if p.bot {
            bot += u64::from(p.tickets);
        }
        if i % k == 0 || i + 1 == run.purchases.len() {
            points.push((all as f64, bot as f64 * 100.0 / all as f64));
        }
    }
    format!(
        "<h2>Bots</h2><p>{} bot orders, {} tickets: {:.2} % of tickets sold.</p>{}",
        run.summary.bot_orders,
        run.summary.bot_tickets,
        run.summary.bot_ticket_share * 100.0,
        line_chart(
            "Bots' share of tickets sold so far",
            "tickets sold",
            "% to bots",
            &[Line {
                name: "bot share".into(),
                color: RED_,
                points
            }]
        )
    )
}
