//! `onsalectl top`: a live view of the cluster, polled once per interval
//! (default 1 s): per event its sale, waiting fans, admissions/s and
//! sales/s (from the change of `admitted_through` and `sold` between two
//! polls), holds, sold/capacity, full, with sparklines; per node its state,
//! events, fans and heartbeat age. `q`, Esc or Ctrl-C quits; a resize
//! redraws at once.
//!
//! Two requests per poll (`GET /api/ops/events`, `GET /api/ops/nodes`).
//! [`Top`] is the state without I/O: it takes each poll's answers and the
//! time, and the tests drive it directly.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Sparkline, Table};
use ratatui::{DefaultTerminal, Frame};

use crate::api::{self, EventEntry, NodeEntry};
use crate::client::Client;
use crate::cluster;
use crate::error::{CtlError, Result};
use crate::timefmt;

/// Rates kept per event for the sparklines (two minutes at 1 s).
const HISTORY_MAX: usize = 120;
/// Width of the text sparkline in the events table.
const TREND_WIDTH: usize = 20;

/// One event as `top` follows it.
#[derive(Debug, Clone)]
struct Track {
    entry: EventEntry,
    /// (time ms, admitted_through, sold) at the previous poll.
    last: Option<(u64, u64, u64)>,
    admissions_per_s: f64,
    sales_per_s: f64,
    admissions: VecDeque<u64>,
    sales: VecDeque<u64>,
}

/// What `top` shows, fed by polls.
#[derive(Debug, Default)]
pub struct Top {
    events: BTreeMap<u64, Track>,
    nodes: Vec<NodeEntry>,
    answered_by: String,
    polled_at_ms: u64,
    polls: u64,
    error: Option<String>,
}

fn push(history: &mut VecDeque<u64>, value: f64) {
    if history.len() == HISTORY_MAX {
        history.pop_front();
    }
    history.push_back(value.round() as u64);
}

impl Top {
    /// A poll of the event list at `now_ms`: rates from the change since
    /// the previous poll (a counter that went backwards counts as 0).
    pub fn observe_events(&mut self, now_ms: u64, entries: Vec<EventEntry>) {
        let mut next = BTreeMap::new();
        for entry in entries {
            let id = entry.event.0;
            let mut track = self.events.remove(&id).unwrap_or(Track {
                entry: entry.clone(),
                last: None,
                admissions_per_s: 0.0,
                sales_per_s: 0.0,
                admissions: VecDeque::new(),
                sales: VecDeque::new(),
            });
            let admitted = entry.admitted_through.map(|p| p.0);
            let sold = entry.sold.map(u64::from);
            if let (Some(admitted), Some(sold)) = (admitted, sold) {
                if let Some((at, last_admitted, last_sold)) = track.last
                    && now_ms > at
                {
                    let seconds = (now_ms - at) as f64 / 1000.0;
                    track.admissions_per_s =
                        admitted.saturating_sub(last_admitted) as f64 / seconds;
                    track.sales_per_s = sold.saturating_sub(last_sold) as f64 / seconds;
                    push(&mut track.admissions, track.admissions_per_s);
                    push(&mut track.sales, track.sales_per_s);
                }
                track.last = Some((now_ms, admitted, sold));
            } else {
                track.last = None;
                track.admissions_per_s = 0.0;
                track.sales_per_s = 0.0;
            }
            track.entry = entry;
            next.insert(id, track);
        }
        self.events = next;
        self.polled_at_ms = now_ms;
        self.polls += 1;
    }

    pub fn observe_nodes(&mut self, nodes: api::NodeList) {
        self.answered_by = nodes.answered_by;
        self.nodes = nodes.nodes;
    }
}

/// `▁▂▃▅▇` over the last `width` values, scaled to their maximum.
fn trend(history: &VecDeque<u64>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let shown: Vec<u64> = history.iter().rev().take(width).rev().copied().collect();
    let max = shown.iter().copied().max().unwrap_or(0);
    shown
        .iter()
        .map(|&v| {
            let level = (v * 7).checked_div(max).unwrap_or(0);
            BARS[usize::try_from(level).unwrap_or(7).min(7)]
        })
        .collect()
}

fn rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub fn run(client: &Client, event: Option<u64>, interval: Duration) -> Result<()> {
    let interval = interval.max(Duration::from_millis(200));
    let mut top = Top::default();
    let mut terminal =
        ratatui::try_init().map_err(|e| CtlError::other(format!("top needs a terminal: {e}")))?;
    let result = run_loop(&mut terminal, client, &mut top, event, interval);
    ratatui::restore();
    result
}

fn poll(client: &Client, top: &mut Top, event: Option<u64>) {
    let events = cluster::events(client, "");
    let nodes = cluster::nodes(client);
    let now = timefmt::now_ms();
    let mut errors = Vec::new();
    match events {
        Ok(list) => {
            let entries = list
                .events
                .into_iter()
                .filter(|e| event.is_none_or(|id| e.event.0 == id))
                .collect();
            top.observe_events(now, entries);
        }
        Err(e) => errors.push(e.message),
    }
    match nodes {
        Ok(nodes) => top.observe_nodes(nodes),
        Err(e) => errors.push(e.message),
    }
    top.error = (!errors.is_empty()).then(|| errors.join("; "));
}

fn run_loop(
    terminal: &mut DefaultTerminal,
    client: &Client,
    top: &mut Top,
    event: Option<u64>,
    interval: Duration,
) -> Result<()> {
    let io = |e: std::io::Error| CtlError::other(format!("the terminal: {e}"));
    let mut next_poll = Instant::now();
    loop {
        if Instant::now() >= next_poll {
            poll(client, top, event);
            next_poll = Instant::now() + interval;
        }
        let endpoint = client.current_endpoint().to_string();
        terminal
            .draw(|frame| draw(frame, top, event, &endpoint, interval))
            .map_err(io)?;
        let wait = next_poll.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(io)? {
            match event::read().map_err(io)? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
                // Redrawn at the top of the loop, at the new size.
                _ => {}
            }
        }
    }
}

fn draw(frame: &mut Frame<'_>, top: &Top, event: Option<u64>, endpoint: &str, interval: Duration) {
    let node_rows = u16::try_from(top.nodes.len()).unwrap_or(20).min(20);
    let chunks = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(8),
            Constraint::Length(node_rows + 3),
            Constraint::Length(1),
        ])
        .split(frame.area());
    let title = format!(
        "onsalectl top  {endpoint} (answered by {})  {}  every {}  poll {}  q quits",
        if top.answered_by.is_empty() {
            "-"
        } else {
            &top.answered_by
        },
        if top.polled_at_ms == 0 {
            "-".to_owned()
        } else {
            timefmt::local(top.polled_at_ms)
        },
        timefmt::age(u64::try_from(interval.as_millis()).unwrap_or(0)),
        top.polls
    );
    frame.render_widget(
        Paragraph::new(title).style(Style::default().add_modifier(Modifier::BOLD)),
        chunks[0],
    );
    frame.render_widget(events_table(top), chunks[1]);
    draw_focus(frame, top, event, chunks[2]);
    frame.render_widget(nodes_table(top), chunks[3]);
    let footer = match &top.error {
        Some(error) => format!("error: {error}"),
        None => format!("{} events, {} nodes", top.events.len(), top.nodes.len()),
    };
    frame.render_widget(Paragraph::new(Line::from(footer)), chunks[4]);
}

fn events_table(top: &Top) -> Table<'static> {
    let header = Row::new([
        "ID",
        "NAME",
        "SALE",
        "WAITING",
        "ADM/S",
        "SALES/S",
        "HELD",
        "SOLD/CAP",
        "FULL",
        "SALES/S TREND",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = top.events.values().map(|t| {
        let e = &t.entry;
        let sold_cap = match (e.sold, e.capacity) {
            (Some(sold), Some(cap)) => format!("{sold}/{cap}"),
            _ => "-".to_owned(),
        };
        Row::new([
            e.event.0.to_string(),
            e.name.clone(),
            e.sale.map_or("-".to_owned(), |s| s.as_str().to_owned()),
            or_dash(e.waiting),
            rate(t.admissions_per_s),
            rate(t.sales_per_s),
            or_dash(e.held),
            sold_cap,
            e.full
                .map_or("-", |f| if f { "FULL" } else { "no" })
                .to_owned(),
            trend(&t.sales, TREND_WIDTH),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Min(12),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(13),
            Constraint::Length(5),
            Constraint::Length(TREND_WIDTH as u16 + 1),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(" events "))
}

fn draw_focus(frame: &mut Frame<'_>, top: &Top, event: Option<u64>, area: Rect) {
    let focus = match event {
        Some(id) => top.events.get(&id),
        None => top.events.values().next(),
    };
    let halves = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(area);
    let Some(track) = focus else {
        let text = match event {
            Some(id) => format!("event {id}: not found (yet)"),
            None => "no events".to_owned(),
        };
        frame.render_widget(
            Paragraph::new(text).block(Block::default().borders(Borders::ALL)),
            area,
        );
        return;
    };
    let id = track.entry.event.0;
    let admissions: Vec<u64> = track.admissions.iter().copied().collect();
    let sales: Vec<u64> = track.sales.iter().copied().collect();
    let spark = |title: String, data: &[u64], width: u16| {
        let shown = data
            .len()
            .saturating_sub(usize::from(width.saturating_sub(2)));
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(data[shown..].to_vec())
    };
    frame.render_widget(
        spark(
            format!(" event {id} admissions/s {} ", rate(track.admissions_per_s)),
            &admissions,
            halves[0].width,
        ),
        halves[0],
    );
    frame.render_widget(
        spark(
            format!(" event {id} sales/s {} ", rate(track.sales_per_s)),
            &sales,
            halves[1].width,
        ),
        halves[1],
    );
}

fn nodes_table(top: &Top) -> Table<'static> {
    let header = Row::new([
        "NODE",
        "ROLE",
        "STATE",
        "EVENTS",
        "FANS",
        "HEARTBEAT",
        "REACHABLE",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = top.nodes.iter().map(|n| {
        Row::new([
            n.node.clone(),
            api::name(&n.role),
            api::name(&n.state),
            or_dash(n.events),
            or_dash(n.fans),
            n.heartbeat_age_ms.map_or("-".to_owned(), timefmt::age),
            if n.reachable { "yes" } else { "NO" }.to_owned(),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(10),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(" nodes "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::event;
    use onsale_schema::ids::Position;

    fn live(id: u64, admitted: u64, sold: u32) -> EventEntry {
        let mut e = event(id);
        e.admitted_through = Some(Position(admitted));
        e.sold = Some(sold);
        e.capacity = Some(100);
        e
    }

    #[test]
    fn rates_come_from_the_change_between_polls() {
        let mut top = Top::default();
        top.observe_events(10_000, vec![live(1, 10, 2)]);
        assert_eq!(top.events[&1].sales_per_s, 0.0);
        top.observe_events(12_000, vec![live(1, 30, 8)]);
        assert_eq!(top.events[&1].admissions_per_s, 10.0);
        assert_eq!(top.events[&1].sales_per_s, 3.0);
        assert_eq!(top.events[&1].sales, VecDeque::from([3]));
        // A counter that goes backwards (a restore) is no negative rate.
        top.observe_events(13_000, vec![live(1, 5, 8)]);
        assert_eq!(top.events[&1].admissions_per_s, 0.0);
        // An event that is not served now has no rate, and starts afresh.
        top.observe_events(14_000, vec![event(1)]);
        assert_eq!(top.events[&1].last, None);
        top.observe_events(15_000, vec![]);
        assert!(top.events.is_empty());
    }

    #[test]
    fn histories_are_bounded() {
        let mut top = Top::default();
        for i in 0..(HISTORY_MAX as u64 + 50) {
            top.observe_events(i * 1000, vec![live(1, i, u32::try_from(i).unwrap())]);
        }
        assert_eq!(top.events[&1].sales.len(), HISTORY_MAX);
    }

    #[test]
    fn trends_scale_to_their_maximum() {
        assert_eq!(trend(&VecDeque::from([0, 1, 2, 4]), 10), "▁▂▄█");
        assert_eq!(trend(&VecDeque::from([0, 0]), 10), "▁▁");
        assert_eq!(trend(&VecDeque::from([9, 0, 7]), 2), "▁█");
    }
}
