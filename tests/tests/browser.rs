//! The fan web page in a real browser: Debian's headless Chromium, driven
//! through chromedriver, against a real `onsale --listen` process. Events
//! are set up through the operator API with small inline venues.
//!
//! Each test saves PNG screenshots of the screens it passes through into
//! `<target>/browser-screenshots/` (CI keeps them as artefacts). Every wait
//! is a bounded poll (`webdriver::WAIT`); no test asserts on timing.
//!
//! chromedriver and chromium must be installed (`scripts/test.sh` installs
//! them); without them these tests fail, they do not skip.

#[path = "browser/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use onsale_tests::client::{Fan, answer_payment, ops};
use onsale_tests::{NodeProcess, now_ms, scratch_dir};
use serde_json::{Value, json};
use webdriver::{Browser, Driver, WAIT, Window};

/// A phone (the journey) and a laptop (the rest).
const PHONE: Window = Window {
    width: 390,
    height: 844,
    phone: true,
};
const LAPTOP: Window = Window {
    width: 1280,
    height: 860,
    phone: false,
};

/// One browser test at a time: each runs a Chromium, and CI has two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where screenshots go: `$CARGO_TARGET_DIR` or the workspace's `target/`.
fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("browser-screenshots")
}

/// A gateway process (no demo event; the tests create theirs).
struct Site {
    node: NodeProcess,
}

impl Site {
    fn start(name: &str) -> anyhow::Result<Site> {
        Site::start_with(name, &[])
    }

    fn start_with(name: &str, extra: &[&str]) -> anyhow::Result<Site> {
        let store = scratch_dir(name).join("browser.db");
        let node = NodeProcess::start_http(&store, extra)?;
        Ok(Site { node })
    }

    fn addr(&self) -> &str {
        &self.node.addr
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.addr)
    }

    /// An operator request that must answer 200.
    async fn ops(&self, method: &str, path: &str, body: &Value) -> Value {
        let response = ops(self.addr(), method, path, body).await;
        assert_eq!(response.status, 200, "{method} {path}: {response:?}");
        response.json()
    }

    /// Create an event (sale not yet open) over `venue` with `config`.
    async fn create_event(&self, event: u64, name: &str, venue: Value, config: Value) {
        let body = json!({
            "event": event,
            "name": name,
            "city": venue["city"],
            "starts_at": now_ms() + 14 * 86_400_000,
            "venue": venue,
            "config": config,
        });
        self.ops("POST", "/api/ops/events", &body).await;
    }

    async fn open_sale(&self, event: u64) {
        let path = format!("/api/ops/events/{event}/sale");
        let reply = self.ops("POST", &path, &json!({"command": "open"})).await;
        assert_eq!(reply["state"], "on_sale", "{reply}");
    }

    async fn fan(&self, name: &str) -> Fan {
        Fan::login(self.addr(), name).await
    }
}

async fn join(fan: &Fan, event: u64) {
    let reply = fan.call(event, json!({"cmd": "join"})).await;
    assert_eq!(reply["reply"], "joined", "{reply}");
}

/// Poll a fan's `status` until `done` says so; that status.
async fn wait_status(fan: &Fan, event: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = fan.call(event, json!({"cmd": "status"})).await;
        if done(&reply["status"]) {
            return reply["status"].clone();
        }
        assert!(Instant::now() < deadline, "status not reached: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Join, get admitted, hold the best `count` seats and pay until the
/// purchase is confirmed (the simulated provider declines a few).
async fn buy(fan: &Fan, event: u64, count: u8) {
    join(fan, event).await;
    wait_status(fan, event, |s| s["status"] == "admitted").await;
    let request = json!({"kind": "best", "count": count, "area": {"in": "anywhere"}});
    let held = fan
        .call(event, json!({"cmd": "hold", "request": request}))
        .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    let hold = held["placed"]["hold"].clone();
    for _ in 0..5 {
        let pay = json!({"cmd": "submit_payment", "hold": hold});
        let started = fan.call(event, pay).await;
        assert_eq!(started["reply"], "payment_started", "{started}");
        let status = wait_status(fan, event, |s| {
            s["status"] == "purchased" || (s["status"] == "holding" && s["paying"] == false)
        })
        .await;
        if status["status"] == "purchased" {
            return;
        }
    }
    panic!("five payments declined in a row");
}

/// A venue file: `sections` of (name, map rectangle, rows, seats per row).
fn venue(city: &str, sections: &[(&str, [f32; 4], u32, u32)]) -> Value {
    let sections: Vec<Value> = sections
        .iter()
        .map(|(name, [x, y, width, height], rows, seats)| {
            let rows: Vec<Value> = (0..*rows)
                .map(|r| {
                    let row = char::from(b'A' + u8::try_from(r).expect("few rows"));
                    let seats: Vec<Value> =
                        (1..=*seats).map(|n| json!({"id": n.to_string()})).collect();
                    let mut row = json!({"id": row.to_string(), "seats": seats});
                    if r == 0 {
                        // The front row costs more.
                        row["price_level"] = json!("front");
                    }
                    row
                })
                .collect();
            json!({
                "id": name.to_uppercase(),
                "name": name,
                "price_level": "std",
                "map": {"x": x, "y": y, "width": width, "height": height},
                "rows": rows,
            })
        })
        .collect();
    json!({
        "name": "The Test Hall",
        "city": city,
        "price_levels": [
            {"id": "front", "name": "Front row", "price_cents": 6_500},
            {"id": "std", "name": "Standard", "price_cents": 4_000},
        ],
        "sections": sections,
    })
}

/// A one-row venue of `seats` seats.
fn tiny_venue(seats: u32) -> Value {
    venue(
        "Testville",
        &[("Floor", [15.0, 20.0, 70.0, 60.0], 1, seats)],
    )
}

/// Open the page and log in as `name`; the event list is shown after.
async fn login(browser: &Browser, site: &Site, name: &str) -> anyhow::Result<()> {
    browser.goto(&site.url("/")).await?;
    browser.wait_for("#screen-login").await?;
    sign_in(browser, name).await
}

/// Log in on the login screen shown.
async fn sign_in(browser: &Browser, name: &str) -> anyhow::Result<()> {
    browser.fill("#login-name", name).await?;
    browser.click("#login-submit").await?;
    browser.wait_for("#screen-events").await
}

/// Start chromedriver and a browser showing `window`.
async fn browser(window: Window) -> anyhow::Result<(Driver, Browser)> {
    let mut driver = Driver::start().await?;
    let browser = driver.browser(window, &screenshots()).await?;
    Ok((driver, browser))
}

/// The whole journey on a phone: log in, find the event by searching, join
/// the line before the sale opens, get admitted when it opens, watch a seat
/// go in real time, pick two seats on the map, hold them, pay through the
/// simulated provider, and see the confirmation with the seats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_buys_two_seats_in_the_browser() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let site = Site::start("browser-journey")?;
    let event = 11;
    let hall = venue(
        "Testville",
        &[
            ("Stalls", [10.0, 16.0, 80.0, 46.0], 4, 8),
            ("Circle", [10.0, 68.0, 80.0, 28.0], 2, 6),
        ],
    );
    site.create_event(event, "Browser Journey Night", hall.clone(), json!({}))
        .await;
    site.create_event(12, "Quiet Recital", hall, json!({}))
        .await;
    site.open_sale(12).await;
    // Two fans queue first, so the browser's fan has people ahead.
    let (bob, carol) = (site.fan("bob").await, site.fan("carol").await);
    join(&bob, event).await;
    join(&carol, event).await;

    let (_driver, browser) = browser(PHONE).await?;
    browser.goto(&site.url("/")).await?;
    browser.wait_for("#screen-login").await?;
    browser.screenshot("00-login-phone").await?;
    sign_in(&browser, "alice").await?;
    browser.wait_for("#event-list [data-event]").await?;
    browser.screenshot("01-events-phone").await?;

    browser.fill("#search-q", "journey").await?;
    browser.click("#search-submit").await?;
    let listed = browser
        .wait_until(
            "the search lists only the journey event",
            "const items = [...document.querySelectorAll('#event-list [data-event]')];\
             return items.length === 1 ? items[0].dataset.event : null;",
        )
        .await?;
    assert_eq!(listed, json!(event.to_string()));
    browser.screenshot("02-search-phone").await?;

    browser.click(&format!("[data-event=\"{event}\"]")).await?;
    browser
        .wait_for("#screen-event #venue-map [data-section]")
        .await?;
    browser.screenshot("03-event-phone").await?;
    browser.click("#join").await?;

    // The sale is not open: the fan waits, third in line.
    browser.wait_for("#screen-waiting").await?;
    browser
        .wait_until(
            "the waiting room shows the place in line",
            "return /#\\d+/.test(document.getElementById('position').textContent);",
        )
        .await?;
    assert!(browser.is_displayed("#progress").await?);
    assert!(!browser.text("#eta").await?.is_empty());
    browser.screenshot("04-waiting-room-phone").await?;

    site.open_sale(event).await;
    browser.wait_for("#screen-shop").await?;
    browser.click("#shop-map [data-section=\"0\"]").await?;
    browser.wait_for("#seatmap [data-seat]").await?;

    // Bob (admitted too) takes the last seat of the front row: the map shows
    // it taken without a reload.
    wait_status(&bob, event, |s| s["status"] == "admitted").await;
    let last = browser
        .execute("const seats = document.querySelectorAll('#seatmap circle.available'); return Number(seats[7].dataset.seat);")
        .await?;
    let request = json!({"kind": "seats", "seats": [last]});
    let held = bob
        .call(event, json!({"cmd": "hold", "request": request}))
        .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    browser
        .wait_until(
            "the seat Bob holds is shown taken",
            &format!("return document.querySelector('[data-seat=\"{last}\"]').classList.contains('taken');"),
        )
        .await?;

    // Alice picks the first two seats of the front row.
    let picks = browser
        .execute("return [...document.querySelectorAll('#seatmap circle.available')].slice(0, 2).map(c => Number(c.dataset.seat));")
        .await?;
    let picks: Vec<u64> = serde_json::from_value(picks)?;
    for seat in &picks {
        browser
            .click(&format!("#seatmap [data-seat=\"{seat}\"]"))
            .await?;
    }
    browser
        .wait_until(
            "two seats selected",
            "return document.querySelectorAll('#seatmap circle.selected').length === 2;",
        )
        .await?;
    browser.screenshot("05-seat-map-phone").await?;
    browser.click("#hold-submit").await?;

    browser.wait_for("#screen-checkout").await?;
    browser
        .wait_until(
            "the countdown runs",
            "return /^\\d+:\\d\\d$/.test(document.getElementById('countdown').textContent);",
        )
        .await?;
    let held_text = browser.text("#held-seats").await?;
    assert!(held_text.contains("Row A"), "{held_text}");
    browser.screenshot("06-checkout-phone").await?;

    // Pay; a declined payment (the simulated provider declines ~5 %) may be
    // retried while the hold lasts.
    browser.click("#pay").await?;
    let mut declined = 0;
    loop {
        let shown = browser
            .wait_for_any(&["#screen-confirmation", "#screen-failed"])
            .await?;
        if shown == 0 {
            break;
        }
        declined += 1;
        ensure!(declined < 5, "five payments declined in a row");
        browser.screenshot("failed-payment-phone").await?;
        browser.click("#failed-retry").await?;
    }
    browser.wait_for("#confirmation").await?;
    let confirmed: Vec<u64> = serde_json::from_value(
        browser
            .execute("return [...document.querySelectorAll('#confirmation-seats [data-seat]')].map(li => Number(li.dataset.seat));")
            .await?,
    )?;
    assert_eq!(confirmed, picks);
    let text = browser.text("#confirmation").await?;
    assert!(text.contains("Row A"), "{text}");
    browser.screenshot("07-confirmation-phone").await?;

    // The event agrees: one order, Alice's two seats.
    let audit = site
        .ops(
            "GET",
            &format!("/api/ops/events/{event}/audit"),
            &Value::Null,
        )
        .await;
    assert_eq!(audit["audit"]["problem"], Value::Null, "{audit}");
    let orders = audit["audit"]["orders"].as_array().context("orders")?;
    assert_eq!(orders.len(), 1, "{audit}");
    browser.quit().await
}

/// An event whose every seat is sold shows the sold-out page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_event_says_so() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let site = Site::start("browser-sold-out")?;
    let event = 21;
    site.create_event(event, "Sold Out Gala", tiny_venue(2), json!({}))
        .await;
    site.open_sale(event).await;
    buy(&site.fan("buyer").await, event, 2).await;

    let (_driver, browser) = browser(LAPTOP).await?;
    login(&browser, &site, "dora").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.wait_for("#screen-soldout").await?;
    let message = browser.text("#soldout-message").await?;
    assert!(!message.is_empty());
    browser.screenshot("08-sold-out").await?;
    browser.quit().await
}

/// Tickets bought on another device: the page (a fresh browser, nothing
/// stored) shows the order with its seats by name, from the fan's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_made_elsewhere_shows_its_seats() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let site = Site::start("browser-elsewhere")?;
    let event = 23;
    let hall = venue("Testville", &[("Balcony", [10.0, 16.0, 80.0, 70.0], 2, 5)]);
    site.create_event(event, "Second Screen", hall, json!({}))
        .await;
    site.open_sale(event).await;
    buy(&site.fan("hana").await, event, 2).await;

    let (_driver, browser) = browser(PHONE).await?;
    login(&browser, &site, "hana").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.wait_for("#screen-confirmation").await?;
    let labels = browser
        .wait_until(
            "the seats by name",
            "const items = [...document.querySelectorAll('#confirmation-seats [data-seat]')];\
             return items.length === 2 && items.every((li) => li.textContent.includes('Balcony'))\
               ? items.map((li) => li.textContent).join(' | ') : null;",
        )
        .await?;
    assert!(labels.to_string().contains("Row"), "{labels}");
    let order = browser.text("#confirmation-order").await?;
    assert!(order.contains("Order #"), "{order}");
    browser.screenshot("17-bought-elsewhere").await?;
    browser.quit().await
}

/// A full waiting room turns new fans away with the full page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_waiting_room_says_so() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let site = Site::start("browser-full")?;
    let event = 31;
    // One ticket and a full factor of 1: with the sale not yet open, a fan
    // or two in line fill the room.
    site.create_event(event, "Tiny Room", tiny_venue(1), json!({"full_factor": 1}))
        .await;
    let mut early = 0;
    loop {
        early += 1;
        let fan = site.fan(&format!("early-{early}")).await;
        let reply = fan.call(event, json!({"cmd": "join"})).await;
        if reply["refused"] == "full" {
            break;
        }
        assert_eq!(reply["reply"], "joined", "{reply}");
        assert!(early < 5, "the room is not full after {early} fans");
    }

    let (_driver, browser) = browser(LAPTOP).await?;
    login(&browser, &site, "frank").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.click("#join").await?;
    browser.wait_for("#screen-full").await?;
    let message = browser.text("#full-message").await?;
    assert!(message.contains("full"), "{message}");
    browser.screenshot("09-waiting-room-full").await?;
    browser.quit().await?;

    // A fan in line since before the room filled, on a new device (no
    // queue token): the event page reads the fan's status from the event
    // itself, so the fan sees its place, never the edge's "full".
    drop(_driver);
    let (_driver, phone) = self::browser(PHONE).await?;
    login(&phone, &site, "early-1").await?;
    phone.goto(&site.url(&format!("/#/event/{event}"))).await?;
    phone.wait_for("#screen-waiting").await?;
    phone.quit().await
}

/// A hold not paid for within the checkout window expires, and the page
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_hold_expires() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let site = Site::start("browser-expired")?;
    let event = 41;
    let hall = venue("Testville", &[("Stalls", [10.0, 16.0, 80.0, 70.0], 3, 10)]);
    let config = json!({"checkout_window_ms": 3_000});
    site.create_event(event, "Quick Checkout", hall, config)
        .await;
    site.open_sale(event).await;

    let (_driver, browser) = browser(LAPTOP).await?;
    login(&browser, &site, "erin").await?;
    browser.screenshot("10-events").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.click("#join").await?;
    browser.wait_for("#screen-shop").await?;
    browser.click("#shop-map [data-section=\"0\"]").await?;
    browser.wait_for("#seatmap [data-seat]").await?;
    browser.screenshot("11-seat-map").await?;
    // The best two seats together, instead of picking.
    browser.click("#best-submit").await?;
    browser.wait_for("#screen-checkout").await?;
    browser.wait_for("#countdown").await?;
    browser.screenshot("12-checkout").await?;
    browser.wait_for("#screen-expired").await?;
    let message = browser.text("#expired-message").await?;
    assert!(!message.is_empty());
    browser.screenshot("13-hold-expired").await?;
    browser.quit().await
}

/// A declined payment shows the failed page; paying again from there, with
/// the seats still held, goes through. The provider is the signed webhook,
/// so the test decides its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_can_be_retried() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let secret = "browser webhook secret";
    let site = Site::start_with(
        "browser-declined",
        &["--provider", "webhook", "--webhook-secret", secret],
    )?;
    let event = 51;
    let hall = venue("Testville", &[("Stalls", [10.0, 16.0, 80.0, 70.0], 2, 6)]);
    site.create_event(event, "Card Trouble", hall, json!({}))
        .await;
    site.open_sale(event).await;
    let answer = |payment: u64, answer: &'static str| {
        answer_payment(site.addr(), secret, event, payment, answer)
    };
    let payment_after = |before: u64| {
        format!(
            "const p = Number(document.getElementById('pay-status').dataset.payment || 0);\
             return p > {before} ? p : null;"
        )
    };

    let (_driver, browser) = browser(LAPTOP).await?;
    login(&browser, &site, "gina").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.click("#join").await?;
    browser.click("#shop-map [data-section=\"0\"]").await?;
    browser.click("#best-submit").await?;
    browser.wait_for("#screen-checkout").await?;
    browser.click("#pay").await?;
    let first = browser
        .wait_until("the payment starts", &payment_after(0))
        .await?;
    let first = first.as_u64().context("payment id")?;
    answer(first, "declined").await;
    browser.wait_for("#screen-failed").await?;
    let message = browser.text("#failed-message").await?;
    assert!(message.contains("declined"), "{message}");
    browser.screenshot("14-payment-declined").await?;

    browser.click("#failed-retry").await?;
    let second = browser
        .wait_until("a second payment starts", &payment_after(first))
        .await?;
    answer(second.as_u64().context("payment id")?, "confirmed").await;
    browser.wait_for("#screen-confirmation").await?;
    let seats = browser
        .execute("return document.querySelectorAll('#confirmation-seats [data-seat]').length;")
        .await?;
    assert_eq!(seats, json!(2));
    browser.quit().await
}

/// The whole system restarts while the fan waits: the page reconnects its
/// websocket on its own, resumes with the queue token, keeps its place,
/// and is admitted when the sale opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_and_keeps_its_place() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let mut site = Site::start("browser-reconnect")?;
    let event = 61;
    site.create_event(event, "Steady Queue", tiny_venue(10), json!({}))
        .await;
    join(&site.fan("first-in-line").await, event).await;

    let (_driver, browser) = browser(PHONE).await?;
    login(&browser, &site, "hank").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.click("#join").await?;
    browser.wait_for("#screen-waiting").await?;
    let live = "return document.getElementById('conn').dataset.state === 'live';";
    browser.wait_until("the websocket is live", live).await?;
    let place = browser
        .wait_until(
            "a place in line",
            "const t = document.getElementById('position').textContent; return /#\\d+/.test(t) ? t : null;",
        )
        .await?;

    site.node.kill9();
    browser
        .wait_until(
            "the page notices the connection dropped",
            "return document.getElementById('conn').dataset.state === 'retry';",
        )
        .await?;
    browser.screenshot("15-reconnecting-phone").await?;
    // Blank the place on screen: only the resumed status can write it back.
    browser
        .execute("document.getElementById('position').textContent = '';")
        .await?;
    site.node.restart()?;
    browser
        .wait_until("the websocket is live again", live)
        .await?;
    browser
        .wait_until(
            "the same place in line, resumed",
            &format!("return document.getElementById('position').textContent === {place};"),
        )
        .await?;
    assert!(browser.is_displayed("#screen-waiting").await?);

    site.open_sale(event).await;
    browser.wait_for("#screen-shop").await?;
    browser.quit().await
}

/// A closed sale shows the closed page, not a join button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_sale_says_so() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let site = Site::start("browser-closed")?;
    let event = 71;
    site.create_event(event, "Last Night", tiny_venue(4), json!({}))
        .await;
    site.open_sale(event).await;
    let path = format!("/api/ops/events/{event}/sale");
    let closed = site.ops("POST", &path, &json!({"command": "close"})).await;
    assert_eq!(closed["state"], "closed", "{closed}");

    let (_driver, browser) = browser(LAPTOP).await?;
    login(&browser, &site, "ivy").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.wait_for("#screen-closed").await?;
    let message = browser.text("#closed-message").await?;
    assert!(message.contains("closed"), "{message}");
    browser.screenshot("16-sale-closed").await?;
    browser.quit().await
}

/// Fair access in the browser: an event under pressure asks for a proof of
/// work, which the page solves in its Web Worker (showing progress) before
/// it joins; the event draws places at the opening, so the page waits in
/// the pre-queue, says when places are drawn, then shows its drawn place
/// and the fan's turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_solves_a_challenge_and_waits_in_the_pre_queue() -> anyhow::Result<()> {
    let _one = ONE_BROWSER.lock().await;
    let site = Site::start("browser-fair-access")?;
    let event = 31;
    let opens_at = now_ms() + 3_600_000;
    site.create_event(
        event,
        "Fair Draw Night",
        tiny_venue(8),
        json!({"pre_queue_draw": true, "opens_at": opens_at}),
    )
    .await;
    let stamp = site
        .ops(
            "POST",
            &format!("/api/ops/events/{event}/stamp"),
            &json!({"bits": 12}),
        )
        .await;
    assert_eq!(stamp["bits"], 12, "{stamp}");
    // Others in the pre-queue too (over HTTP, with the worker's work done
    // in Rust).
    for name in ["ivy", "jon"] {
        let fan = site.fan(name).await;
        let issued = fan.get(&format!("/api/events/{event}/challenge")).await;
        let challenge = issued["challenge"].as_str().unwrap().to_owned();
        let counter = onsale_schema::stamp::solve(&challenge, 1 << 24).expect("solves");
        let header = format!("{challenge}.{counter}");
        let reply = fan
            .send_with(
                event,
                json!({"cmd": "join"}),
                &[("X-Onsale-Stamp", &header)],
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    let (_driver, browser) = browser(LAPTOP).await?;
    login(&browser, &site, "kim").await?;
    browser
        .goto(&site.url(&format!("/#/event/{event}")))
        .await?;
    browser.wait_for("#screen-event #join").await?;
    let access = browser.text("#event-access").await?;
    assert!(access.contains("random place"), "{access}");
    browser.screenshot("30-pre-queue-event").await?;
    browser.click("#join").await?;
    browser.wait_for("#screen-waiting").await?;
    // The note stays on the (now hidden) event screen.
    let work = browser
        .execute("return document.getElementById('join-work').textContent;")
        .await?;
    assert!(
        work.as_str().is_some_and(|w| w.starts_with("Checked in")),
        "the page solved a challenge: {work}"
    );
    let pre_queue = browser.text("#pre-queue").await?;
    assert!(
        pre_queue.contains("pre-queue") && pre_queue.contains("drawn at"),
        "{pre_queue}"
    );
    browser.screenshot("31-pre-queue-waiting").await?;

    // The opening: the page learns its drawn place, then its turn.
    site.open_sale(event).await;
    browser.wait_for("#screen-shop").await?;
    browser.screenshot("32-drawn-and-admitted").await?;
    browser.quit().await
}
