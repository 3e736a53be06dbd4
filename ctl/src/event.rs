//! `event list | describe | create | open | pause | resume | close | move | audit`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use onsale_schema::EventConfig;
use onsale_schema::venue::Venue;
use serde_json::{Value, json};

use crate::api::{self, Audit, EventDetail, EventEntry, Overview, SaleState};
use crate::cli::{CreateArgs, EventCommand};
use crate::client::Client;
use crate::cluster;
use crate::error::{CtlError, Kind, Result};
use crate::output::{Out, Table, cell, pairs, time_cell};
use crate::timefmt;
use crate::watch::{self, View};

pub fn run(client: &Client, out: Out, command: &EventCommand) -> Result<()> {
    match command {
        EventCommand::List { node, state, watch } => {
            let query = query(node.as_deref(), state.as_deref());
            watch::run(out, watch, || list(client, out, &query))
        }
        EventCommand::Describe { event } => describe(client, out, *event),
        EventCommand::Create(args) => create(client, out, args),
        EventCommand::Open { event } => sale(client, out, *event, Sale::Open),
        EventCommand::Pause { event } => sale(client, out, *event, Sale::Pause),
        EventCommand::Resume { event } => sale(client, out, *event, Sale::Resume),
        EventCommand::Close { event } => sale(client, out, *event, Sale::Close),
        EventCommand::Move {
            event,
            to,
            wait,
            deadline,
        } => move_event(
            client,
            out,
            *event,
            to,
            wait.then(|| timefmt::parse_duration(deadline))
                .transpose()?,
        ),
        EventCommand::Audit { event } => audit(client, out, *event),
        EventCommand::Codes {
            event,
            fans,
            names,
            names_file,
        } => codes(client, out, *event, fans, names, names_file.as_deref()),
        EventCommand::Stamp { event, bits } => stamp(client, out, *event, *bits),
    }
}

fn query(node: Option<&str>, state: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(node) = node {
        parts.push(format!("node={}", encode_query(node)));
    }
    if let Some(state) = state {
        parts.push(format!("state={}", encode_query(state)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn list(client: &Client, out: Out, query: &str) -> Result<View> {
    let raw = client.get(&format!("/api/ops/events{query}"))?;
    let events: api::EventList = api::decode(raw.clone(), "GET /api/ops/events")?;
    let mut json = raw;
    json["time"] = json!(timefmt::now_ms());
    Ok(View {
        json,
        table: table(&events.events, out.wide()).render(!out.no_headers),
    })
}

/// `sold/held/capacity`, `-` when the event is not served now.
fn seats(e: &EventEntry) -> String {
    match (e.sold, e.held, e.capacity) {
        (Some(sold), Some(held), Some(capacity)) => format!("{sold}/{held}/{capacity}"),
        _ => "-".to_owned(),
    }
}

fn table(events: &[EventEntry], wide: bool) -> Table {
    let mut headers = vec![
        "ID",
        "NAME",
        "SALE",
        "OWNER",
        "EPOCH",
        "DESIRED",
        "SOLD/HELD/CAP",
        "WAITING",
        "FULL",
    ];
    if wide {
        headers.extend(["CITY", "STARTS", "LEASE EXPIRES", "ADMITTED THROUGH"]);
    }
    let mut table = Table::new(&headers);
    for e in events {
        let mut row = vec![
            e.event.0.to_string(),
            e.name.clone(),
            cell(e.sale.map(SaleState::as_str)),
            cell(e.owner.as_ref()),
            cell(e.epoch),
            cell(e.desired.as_ref()),
            seats(e),
            cell(e.waiting),
            cell(e.full.map(|f| if f { "yes" } else { "no" })),
        ];
        if wide {
            row.extend([
                e.city.clone(),
                time_cell(Some(e.starts_at.0)),
                time_cell(e.lease_expires.map(|t| t.0)),
                cell(e.admitted_through.map(|p| p.0)),
            ]);
        }
        table.row(row);
    }
    table
}

fn describe(client: &Client, out: Out, event: u64) -> Result<()> {
    let raw = client.get(&format!("/api/ops/events/{event}"))?;
    if out.json() {
        out.document(&raw);
        return Ok(());
    }
    let d: EventDetail = api::decode(raw, "GET /api/ops/events/{event}")?;
    print!("{}", pairs(&detail_rows(&d, timefmt::now_ms())));
    Ok(())
}

fn detail_rows(d: &EventDetail, now_ms: u64) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("event", d.event.0.to_string()),
        ("name", d.name.clone()),
        ("city", d.city.clone()),
        ("starts", time_cell(Some(d.starts_at.0))),
    ];
    match &d.lease {
        Some(lease) => rows.extend([
            ("owner", lease.node.clone()),
            ("epoch", lease.epoch.to_string()),
            (
                "lease expires",
                format!(
                    "{} ({})",
                    timefmt::local(lease.expires.0),
                    timefmt::relative(lease.expires.0, now_ms)
                ),
            ),
        ]),
        None => rows.push(("owner", "none (no live lease)".to_owned())),
    }
    rows.push(("desired", cell(d.desired.as_ref())));
    rows.push(("ranking", d.ranking.join(", ")));
    match &d.overview {
        Some(o) => rows.extend([
            ("sale", o.sale.as_str().to_owned()),
            ("capacity", o.capacity.to_string()),
            ("sold", o.sold.to_string()),
            ("held", o.held.to_string()),
            (
                "available",
                o.capacity.saturating_sub(o.sold + o.held).to_string(),
            ),
            ("waiting", o.waiting.to_string()),
            ("admitted through", o.admitted_through.0.to_string()),
            ("full", if o.full { "yes" } else { "no" }.to_owned()),
        ]),
        None => rows.push(("sale", "- (not served now)".to_owned())),
    }
    rows
}

// ----- create ----------------------------------------------------------------

/// The request `event create` sends, checked locally first.
#[derive(Debug)]
struct Checked {
    venue: Venue,
    body: Value,
}

/// Read and check the venue and config files and build the request body.
/// Errors name the file and the field (the schema's own parsers say which).
fn check(args: &CreateArgs, event: Option<u64>, now_ms: u64) -> Result<Checked> {
    let venue_bytes = std::fs::read(&args.file).map_err(|e| {
        CtlError::usage(format!(
            "reading the venue file {}: {e}",
            args.file.display()
        ))
    })?;
    let venue = Venue::from_json(&venue_bytes).map_err(|e| {
        CtlError::new(
            Kind::Usage,
            "invalid_venue",
            format!("venue file {}: {e}", args.file.display()),
        )
    })?;
    let venue_value: Value = serde_json::from_slice(&venue_bytes)
        .map_err(|e| CtlError::usage(format!("venue file {}: {e}", args.file.display())))?;
    let config = match &args.config {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                CtlError::usage(format!("reading the config file {}: {e}", path.display()))
            })?;
            let config: EventConfig = serde_json::from_slice(&bytes).map_err(|e| {
                CtlError::new(
                    Kind::Usage,
                    "invalid_config",
                    format!("config file {}: {e}", path.display()),
                )
            })?;
            config.check().map_err(|e| {
                CtlError::new(
                    Kind::Usage,
                    "invalid_config",
                    format!("config file {}: {e}", path.display()),
                )
            })?;
            config
        }
        None => EventConfig::default(),
    };
    let mut config = config;
    if let Some(at) = &args.opens_at {
        config.opens_at = Some(onsale_schema::Millis(timefmt::parse_time(at, now_ms)?));
    }
    if let Some(until) = &args.presale_until {
        config.presale_until = Some(onsale_schema::Millis(timefmt::parse_time(until, now_ms)?));
    }
    config.pre_queue_draw |= args.pre_queue_draw;
    let name = args.name.clone().unwrap_or_else(|| venue.name.clone());
    let city = args.city.clone().unwrap_or_else(|| venue.city.clone());
    for (field, value) in [("--name", &name), ("--city", &city)] {
        if value.trim().is_empty() || value.len() > onsale_schema::limits::NAME_BYTES_MAX {
            return Err(CtlError::usage(format!(
                "{field} is empty or longer than {} bytes",
                onsale_schema::limits::NAME_BYTES_MAX
            )));
        }
    }
    let starts_at = timefmt::parse_time(&args.starts_at, now_ms)?;
    if let Some(id) = event
        && id >= 1 << 53
    {
        return Err(CtlError::usage(format!("--id {id} is not below 2^53")));
    }
    let config_value = serde_json::to_value(&config)
        .map_err(|e| CtlError::other(format!("encoding the config: {e}")))?;
    let body = json!({"event": event, "name": name, "city": city, "starts_at": starts_at,
                      "venue": venue_value, "config": config_value});
    Ok(Checked { venue, body })
}

fn summary(checked: &Checked) -> Value {
    let b = &checked.body;
    json!({"event": b["event"], "name": b["name"], "city": b["city"], "starts_at": b["starts_at"],
           "venue": checked.venue.name, "sections": checked.venue.sections.len(),
           "seats": checked.venue.seat_count(), "config": b["config"]})
}

pub fn create_dry_run(out: Out, args: &CreateArgs) -> Result<()> {
    let checked = check(args, args.id, timefmt::now_ms())?;
    let summary = summary(&checked);
    if out.json() {
        out.document(&json!({"dry_run": true, "valid": true, "would_create": summary}));
    } else {
        println!(
            "valid: would create event {} {:?} in {} at {}: venue {:?}, {} sections, {} seats (dry run, nothing sent)",
            args.id
                .map_or("(next free id)".to_owned(), |id| id.to_string()),
            summary["name"].as_str().unwrap_or(""),
            summary["city"].as_str().unwrap_or(""),
            time_cell(summary["starts_at"].as_u64()),
            checked.venue.name,
            checked.venue.sections.len(),
            checked.venue.seat_count()
        );
    }
    Ok(())
}

fn create(client: &Client, out: Out, args: &CreateArgs) -> Result<()> {
    // Check the files before anything goes over the network.
    check(args, args.id, timefmt::now_ms())?;
    let id = match args.id {
        Some(id) => id,
        None => next_free_id(client)?,
    };
    let checked = check(args, Some(id), timefmt::now_ms())?;
    let raw = client
        .post("/api/ops/events", &checked.body)
        .map_err(|e| match e.code.as_str() {
            "event_exists" => CtlError::new(
                Kind::Conflict,
                e.code.clone(),
                format!(
                    "event {id} exists with another venue, name, time or config: {}",
                    e.message
                ),
            ),
            _ => e,
        })?;
    let overview: Overview = api::decode(raw["overview"].clone(), "POST /api/ops/events")?;
    if out.json() {
        out.document(&raw["overview"]);
    } else {
        println!(
            "event {} ready: {:?}, {} seats, sale {}",
            overview.event.0,
            checked.body["name"].as_str().unwrap_or(""),
            overview.capacity,
            overview.sale.as_str()
        );
    }
    Ok(())
}

/// Presale codes, asked for in batches the API takes.
fn codes(
    client: &Client,
    out: Out,
    event: u64,
    fans: &[u64],
    names: &[String],
    names_file: Option<&std::path::Path>,
) -> Result<()> {
    let mut names = names.to_vec();
    if let Some(path) = names_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CtlError::usage(format!("reading {}: {e}", path.display())))?;
        names.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    if fans.is_empty() && names.is_empty() {
        return Err(CtlError::usage(
            "give fans (--fan), names (--name) or --names-file",
        ));
    }
    let batch = onsale_schema::limits::PRESALE_CODES_PER_REQUEST_MAX;
    let path = format!("/api/ops/events/{event}/presale-codes");
    let mut all = Vec::new();
    for chunk in fans.chunks(batch) {
        let raw = client.post(&path, &json!({"fans": chunk}))?;
        all.extend(raw["codes"].as_array().cloned().unwrap_or_default());
    }
    for chunk in names.chunks(batch) {
        let raw = client.post(&path, &json!({"names": chunk}))?;
        all.extend(raw["codes"].as_array().cloned().unwrap_or_default());
    }
    if out.json() {
        out.document(&json!({"event": event, "codes": all}));
    } else {
        if !out.no_headers {
            println!("fan,name,code");
        }
        for c in &all {
            println!(
                "{},{},{}",
                c["fan"],
                c["name"].as_str().unwrap_or(""),
                c["code"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// Set the proof of work joins need.
fn stamp(client: &Client, out: Out, event: u64, bits: u8) -> Result<()> {
    let raw = client.post(
        &format!("/api/ops/events/{event}/stamp"),
        &json!({"bits": bits}),
    )?;
    if out.json() {
        out.document(&raw);
    } else {
        println!(
            "event {event}: joins need {} bits of work now (operator's setting {})",
            raw["bits"], raw["set"]
        );
    }
    Ok(())
}

fn next_free_id(client: &Client) -> Result<u64> {
    let events = cluster::events(client, "")?.events;
    Ok(events.iter().map(|e| e.event.0).max().map_or(1, |m| m + 1))
}

// ----- the sale ----------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sale {
    Open,
    Pause,
    Resume,
    Close,
}

impl Sale {
    /// The command sent and the state it leads to.
    fn command(self) -> (&'static str, &'static str) {
        match self {
            Sale::Open | Sale::Resume => ("open", "on_sale"),
            Sale::Pause => ("pause", "paused"),
            Sale::Close => ("close", "closed"),
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Sale::Open => "open",
            Sale::Pause => "pause",
            Sale::Resume => "resume",
            Sale::Close => "close",
        }
    }
}

/// The event answers its state after a sale command: the new one, or the
/// one it stayed in when the command does not apply (idempotent when it
/// is already there). A state other than the target is a wrong state (4).
fn sale_outcome(sale: Sale, event: u64, state: &str) -> Result<()> {
    let (_, target) = sale.command();
    if state == target {
        return Ok(());
    }
    Err(CtlError::conflict(format!(
        "cannot {} event {event}: its sale is {state}",
        sale.verb()
    )))
}

fn stats(client: &Client, event: u64) -> Result<Overview> {
    let raw = client.get(&format!("/api/ops/events/{event}/stats"))?;
    api::decode(raw["overview"].clone(), "GET .../stats")
}

fn sale(client: &Client, out: Out, event: u64, sale: Sale) -> Result<()> {
    if sale == Sale::Resume {
        // Resume is "open" only for a paused (or running) sale: a
        // scheduled one is opened, not resumed.
        let now = stats(client, event)?;
        if now.sale == SaleState::Scheduled {
            return Err(CtlError::conflict(format!(
                "cannot resume event {event}: its sale has not opened yet (use `onsalectl event open {event}`)"
            )));
        }
    }
    let (command, _) = sale.command();
    let answer = client.post(
        &format!("/api/ops/events/{event}/sale"),
        &json!({"command": command}),
    );
    let state = match answer {
        Ok(raw) => raw["state"].as_str().unwrap_or("unknown").to_owned(),
        // A command that does not apply to the sale's state is refused
        // (409 `wrong_sale_state`); the state it is in says whether it was
        // already done.
        Err(e) if e.code == "wrong_sale_state" => stats(client, event)?.sale.as_str().to_owned(),
        Err(e) => return Err(e),
    };
    let outcome = sale_outcome(sale, event, &state);
    if outcome.is_ok() {
        if out.json() {
            out.document(&json!({"event": event, "sale": state}));
        } else {
            println!("event {event}: sale {state}");
        }
    }
    outcome
}

// ----- move and audit ---------------------------------------------------------------

fn move_event(
    client: &Client,
    out: Out,
    event: u64,
    to: &str,
    wait: Option<Duration>,
) -> Result<()> {
    let started = Instant::now();
    let raw = client.post(&format!("/api/ops/events/{event}/move"), &json!({"to": to}))?;
    let moved = &raw["moved"];
    if let Some(deadline) = wait {
        await_served(client, event, to, deadline, started)?;
    }
    if out.json() {
        out.document(moved);
    } else {
        println!(
            "event {event} moved to {} (epoch {})",
            moved["node"].as_str().unwrap_or(to),
            cell(moved["epoch"].as_u64())
        );
    }
    Ok(())
}

/// Wait until `event`'s lease is on `node` and it answers its overview.
fn await_served(
    client: &Client,
    event: u64,
    node: &str,
    deadline: Duration,
    started: Instant,
) -> Result<()> {
    loop {
        let d: EventDetail = api::decode(
            client.get(&format!("/api/ops/events/{event}"))?,
            "GET /api/ops/events/{event}",
        )?;
        let on_node = d.lease.as_ref().is_some_and(|l| l.node == node);
        if on_node && d.overview.is_some() {
            return Ok(());
        }
        if started.elapsed() >= deadline {
            return Err(CtlError::timed_out(format!(
                "event {event} is not served by {node} after {}",
                timefmt::age(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX))
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Problems the CLI finds itself in an audit: a seat in two orders.
fn seat_problems(audit: &Audit) -> Vec<String> {
    let mut seen: BTreeMap<u32, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    for order in &audit.orders {
        for seat in &order.seats {
            if let Some(first) = seen.insert(seat.0, order.order.0) {
                problems.push(format!(
                    "seat {} is in orders {first} and {}",
                    seat.0, order.order.0
                ));
            }
        }
    }
    problems
}

fn audit(client: &Client, out: Out, event: u64) -> Result<()> {
    let raw = client.get(&format!("/api/ops/events/{event}/audit"))?;
    let audit: Audit = api::decode(raw["audit"].clone(), "GET .../audit")?;
    let mut problems: Vec<String> = audit.problem.iter().cloned().collect();
    problems.extend(seat_problems(&audit));
    let tickets: usize = audit.orders.iter().map(|o| o.seats.len()).sum();
    if out.json() {
        out.document(
            &json!({"event": event, "ok": problems.is_empty(), "problems": problems,
            "orders": audit.orders.len(), "tickets": tickets,
            "journal_seq": audit.journal_seq, "next_position": audit.next_position.0,
            "audit": raw["audit"]}),
        );
    } else {
        print!(
            "{}",
            pairs(&[
                ("event", event.to_string()),
                (
                    "verdict",
                    if problems.is_empty() {
                        "ok".to_owned()
                    } else {
                        format!("PROBLEM: {}", problems.join("; "))
                    }
                ),
                ("orders", audit.orders.len().to_string()),
                ("tickets sold", tickets.to_string()),
                ("journal seq", audit.journal_seq.to_string()),
                ("next position", audit.next_position.0.to_string()),
            ])
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CtlError::new(
            Kind::Error,
            "audit_failed",
            format!("event {event} failed its audit: {}", problems.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn list_queries_are_encoded() {
        assert_eq!(query(None, None), "");
        assert_eq!(query(Some("n1"), Some("on_sale")), "?node=n1&state=on_sale");
        assert_eq!(query(Some("a b"), None), "?node=a%20b");
    }

    #[test]
    fn sale_outcomes_are_idempotent_and_refuse_wrong_states() {
        assert!(sale_outcome(Sale::Open, 1, "on_sale").is_ok());
        assert!(sale_outcome(Sale::Resume, 1, "on_sale").is_ok());
        assert!(sale_outcome(Sale::Close, 1, "closed").is_ok());
        let e = sale_outcome(Sale::Open, 1, "closed").unwrap_err();
        assert_eq!(e.kind.exit_code(), 4);
        assert_eq!(e.message, "cannot open event 1: its sale is closed");
        assert!(sale_outcome(Sale::Pause, 1, "scheduled").is_err());
    }

    #[test]
    fn audits_find_a_seat_sold_twice() {
        let order = |order: u64, seats: &[u32]| json!({"order": order, "fan": 7, "position": 1, "payment": order, "seats": seats, "at": 5});
        let audit: Audit = api::decode(
            json!({"problem": null, "journal_seq": 9, "next_position": 3,
                   "orders": [order(1, &[3, 4]), order(2, &[4])]}),
            "audit",
        )
        .unwrap();
        assert_eq!(seat_problems(&audit), vec!["seat 4 is in orders 1 and 2"]);
    }

    fn args(dir: &std::path::Path, venue: &str, config: Option<&str>) -> CreateArgs {
        std::fs::write(dir.join("venue.json"), venue).unwrap();
        if let Some(config) = config {
            std::fs::write(dir.join("config.json"), config).unwrap();
        }
        CreateArgs {
            file: dir.join("venue.json"),
            config: config.map(|_| dir.join("config.json")),
            id: Some(5),
            name: None,
            city: None,
            starts_at: "2027-01-01T20:00:00Z".into(),
            opens_at: None,
            pre_queue_draw: false,
            presale_until: None,
            dry_run: true,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("onsalectl-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn create_checks_the_venue_and_config_locally_naming_the_field() {
        let dir = scratch("create");
        let club = include_str!("../../venues/club.json");
        let ok = check(&args(&dir, club, None), Some(5), 0).unwrap();
        assert_eq!(ok.body["event"], 5);
        assert_eq!(ok.body["starts_at"], 1_798_833_600_000u64);
        assert_eq!(ok.body["name"], ok.venue.name.as_str());

        let e = check(
            &args(&dir, r#"{"name":"x","city":"y","sections":[]}"#, None),
            None,
            0,
        )
        .unwrap_err();
        assert_eq!(e.kind, Kind::Usage);
        assert!(e.message.contains("price_levels"), "{}", e.message);

        let e = check(&args(&dir, club, Some(r#"{"full_factor":0}"#)), None, 0).unwrap_err();
        assert!(e.message.contains("full_factor"), "{}", e.message);
        let e = check(&args(&dir, club, Some(r#"{"tickets_per_fan":2}"#)), None, 0).unwrap_err();
        assert!(e.message.contains("tickets_per_fan"), "{}", e.message);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn describe_shows_lease_ranking_and_numbers() {
        let d: EventDetail = api::decode(
            json!({"event": 1, "name": "Demo", "city": "c", "starts_at": 0,
                   "lease": {"node": "n1", "epoch": 4, "expires": 3000},
                   "desired": "n2", "ranking": ["n2", "n1"],
                   "overview": {"event": 1, "sale": "on_sale", "capacity": 10, "sold": 3,
                                "held": 2, "waiting": 0, "full": false, "admitted_through": 0,
                                "sections": []}}),
            "event",
        )
        .unwrap();
        let rows: BTreeMap<_, _> = detail_rows(&d, 1_000).into_iter().collect();
        assert_eq!(rows["owner"], "n1");
        assert_eq!(rows["epoch"], "4");
        assert!(rows["lease expires"].ends_with("(in 2.0s)"));
        assert_eq!(rows["ranking"], "n2, n1");
        assert_eq!(rows["available"], "5");
        assert_eq!(rows["sale"], "on_sale");
    }
}
