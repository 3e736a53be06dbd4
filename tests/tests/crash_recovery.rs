//! Kill -9 recovery: a node process on the embedded store is killed at
//! random points while fans join, hold, pay and get confirmed (so mid-hold,
//! mid-payment and, with a snapshot every few records, mid-snapshot), then
//! restarted on the same store. After every restart:
//! - no acknowledged sale is lost, and no seat is sold twice;
//! - the event's own invariant audit passes;
//! - positions continue above everything handed out before;
//! - waiting fans resume their exact positions with their tokens;
//! - unexpired holds are still held with their deadlines, and expire when
//!   those deadlines pass (timers re-armed from stored deadlines);
//! - a payment the provider confirmed while the node was down is applied
//!   when its webhook is delivered after the restart.
//!
//! A fast set of seeds runs in the default suite; `ONSALE_SOAK_SEEDS=N`
//! runs N seeds with more crashes each (see README).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onsale_cluster::rpc::Client;
use onsale_schema::message::{
    Area, Command, FanStatus, HoldRequest, PaymentSettled, ProviderAnswer, Reply, SaleCommand,
};
use onsale_schema::{EventConfig, EventId, FanId, HoldId, Millis, OrderId, PaymentId, SeatIdx};
use onsale_tests::{
    NodeProcess, OPERATOR_TOKEN, Rng, create_and_open, now_ms, scratch_dir, spec, venue_json,
};

const EVENT: EventId = EventId(42);
const CHECKOUT_MS: u64 = 1_500;
const PROVIDER_TIMEOUT_MS: u64 = 4_000;

fn config() -> EventConfig {
    EventConfig {
        tickets_per_fan_max: 4,
        full_factor: 50,
        shoppers_max: 16,
        show_up_window_ms: 1_000,
        shopping_window_ms: 3_000,
        checkout_window_ms: CHECKOUT_MS,
        provider_timeout_ms: PROVIDER_TIMEOUT_MS,
        counter_block: 8,
        ..EventConfig::default()
    }
}

/// What fans and the provider were told: the only claims the test makes.
#[derive(Debug, Default)]
struct Ledger {
    positions_max: u64,
    /// Fans told "waiting" and their tokens.
    waiting: HashMap<FanId, (u64, String)>,
    /// Holds acknowledged, with seats and deadline.
    holds: HashMap<HoldId, (FanId, Vec<SeatIdx>, Millis)>,
    /// Holds for which a payment was ever sent (acknowledged or not).
    pay_attempted: HashSet<HoldId>,
    /// Payments acknowledged as submitted: hold, time the request was sent.
    submitted: HashMap<PaymentId, (HoldId, u64)>,
    /// The provider's decision for each payment.
    decided: HashMap<PaymentId, ProviderAnswer>,
    /// Payments whose webhook delivery was acknowledged: a provider does
    /// not deliver those again.
    delivered: HashSet<PaymentId>,
    /// Sales acknowledged to fans.
    sales: HashMap<OrderId, Vec<SeatIdx>>,
}

type Shared = Arc<Mutex<Ledger>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_state_survives_kill_9_fast_seeds() {
    let seeds: u64 = std::env::var("ONSALE_SOAK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let crashes = if seeds > 3 { 6 } else { 3 };
    for seed in 0..seeds {
        run_seed(seed, crashes).await;
    }
}

async fn run_seed(seed: u64, crashes: u32) {
    let dir = scratch_dir(&format!("crash-{seed}"));
    let store = dir.join("onsale.db");
    let mut node = NodeProcess::start(
        &store,
        &[
            "--provider",
            "webhook",
            "--snapshot-every",
            "7",
            "--lease-ttl-ms",
            "1000",
        ],
    )
    .expect("node starts");
    create_and_open(&node.addr, spec(EVENT.0, venue_json(2, 8, 10), config())).await;

    let ledger: Shared = Arc::default();
    let mut rng = Rng(seed.wrapping_mul(7_919) + 1);
    for round in 0..crashes {
        let client = Arc::new(
            Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
                .await
                .expect("connects"),
        );
        let fans = (0..40).map(|i| FanId(u64::from(round) * 1_000 + i + seed * 100_000));
        let mut tasks = Vec::new();
        for fan in fans {
            let (client, ledger, rng) = (
                Arc::clone(&client),
                Arc::clone(&ledger),
                Rng(rng.next_u64()),
            );
            tasks.push(tokio::spawn(fan_journey(client, ledger, rng, fan)));
        }
        let provider = tokio::spawn(provider(
            Arc::clone(&client),
            Arc::clone(&ledger),
            Rng(rng.next_u64()),
        ));
        // Kill while fans are mid-hold, mid-payment, mid-snapshot.
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1_000))).await;
        node.kill9();
        for task in tasks {
            let _ = task.await;
        }
        provider.abort();
        drop(client);
        node.restart().expect("node restarts");
        eprintln!(
            "seed {seed} round {round}: restarted in {:?}",
            node.ready_in
        );
        verify(&node.addr, &ledger).await;
    }
    let l = ledger.lock().unwrap();
    eprintln!(
        "seed {seed}: {} sales acknowledged, {} holds, {} payments, {} still waiting",
        l.sales.len(),
        l.holds.len(),
        l.submitted.len(),
        l.waiting.len()
    );
    assert!(
        !l.sales.is_empty(),
        "the driver sold nothing: the test checked nothing"
    );
}

async fn fan_journey(client: Arc<Client>, ledger: Shared, mut rng: Rng, fan: FanId) {
    // Arrivals spread over the whole window in which the kill may land.
    tokio::time::sleep(Duration::from_millis(rng.below(1_200))).await;
    let Ok(Reply::Joined { joined, token }) = client.call(EVENT, Command::Join { fan }).await
    else {
        return;
    };
    {
        let mut l = ledger.lock().unwrap();
        l.positions_max = l.positions_max.max(joined.position.0);
        if let FanStatus::Waiting { .. } = joined.status {
            l.waiting.insert(fan, (joined.position.0, token));
        }
    }
    for _ in 0..50 {
        match client.call(EVENT, Command::Status { fan }).await {
            Ok(Reply::Status {
                status: Some(FanStatus::Admitted { .. }),
            }) => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
    ledger.lock().unwrap().waiting.remove(&fan);
    let _ = client.call(EVENT, Command::Enter { fan }).await;
    let request = HoldRequest::Best {
        count: 1 + rng.below(3) as u8,
        area: Area::Anywhere,
    };
    let Ok(Reply::HoldPlaced { placed }) = client.call(EVENT, Command::Hold { fan, request }).await
    else {
        return;
    };
    ledger
        .lock()
        .unwrap()
        .holds
        .insert(placed.hold, (fan, placed.seats.clone(), placed.deadline));
    if rng.below(4) == 0 {
        return; // lets the checkout clock run out
    }
    tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
    let sent_at = now_ms();
    ledger.lock().unwrap().pay_attempted.insert(placed.hold);
    if let Ok(Reply::PaymentStarted { started }) = client
        .call(
            EVENT,
            Command::SubmitPayment {
                fan,
                hold: placed.hold,
            },
        )
        .await
    {
        ledger
            .lock()
            .unwrap()
            .submitted
            .insert(started.payment, (placed.hold, sent_at));
    }
}

/// The payment provider: decides each acknowledged payment and delivers
/// the answer by webhook after a while. Answers it could not deliver
/// (node down) are delivered after the restart, in `verify`.
async fn provider(client: Arc<Client>, ledger: Shared, mut rng: Rng) {
    let mut delivered = HashSet::new();
    loop {
        let due: Vec<PaymentId> = {
            let l = ledger.lock().unwrap();
            l.submitted
                .keys()
                .filter(|p| !delivered.contains(*p) && !l.decided.contains_key(*p))
                .copied()
                .collect()
        };
        for payment in due {
            delivered.insert(payment);
            let answer = if rng.below(7) == 0 {
                ProviderAnswer::Declined
            } else {
                ProviderAnswer::Confirmed
            };
            ledger.lock().unwrap().decided.insert(payment, answer);
            let (client, ledger) = (Arc::clone(&client), Arc::clone(&ledger));
            let delay = rng.below(250);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let reply = client
                    .call(EVENT, Command::ProviderAnswer { payment, answer })
                    .await;
                record_settled(&ledger, payment, reply.ok());
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn record_settled(ledger: &Shared, _payment: PaymentId, reply: Option<Reply>) {
    let Some(Reply::PaymentSettled {
        settled: PaymentSettled::Sold { order },
    }) = reply
    else {
        return;
    };
    // The seats come from the audit; here only the order is acknowledged.
    ledger.lock().unwrap().sales.entry(order).or_default();
}

async fn verify(addr: &str, ledger: &Shared) {
    let client = Client::connect(addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("reconnects");
    let audit = match client.call(EVENT, Command::Audit).await.expect("audit") {
        Reply::Audit { audit } => audit,
        other => panic!("audit: {other:?}"),
    };
    assert_eq!(audit.problem, None, "an invariant broke across the crash");
    if let Ok(Reply::Overview { overview: o }) = client.call(EVENT, Command::Overview).await {
        eprintln!(
            "  after restart: {} sold {} held {} waiting, frontier {}",
            o.sold, o.held, o.waiting, o.admitted_through
        );
    }
    let orders: HashMap<OrderId, Vec<SeatIdx>> = audit
        .orders
        .iter()
        .map(|o| (o.order, o.seats.clone()))
        .collect();
    let mut seats_sold = HashSet::new();
    for order in &audit.orders {
        for seat in &order.seats {
            assert!(seats_sold.insert(*seat), "{seat} sold twice");
        }
    }
    {
        let mut l = ledger.lock().unwrap();
        for (order, seats) in l.sales.iter_mut() {
            let stored = orders
                .get(order)
                .unwrap_or_else(|| panic!("acknowledged {order} was lost"));
            if seats.is_empty() {
                seats.clone_from(stored);
            }
            assert_eq!(seats, stored, "{order} changed its seats");
        }
        assert!(
            audit.next_position.0 > l.positions_max,
            "counter at {} after {} was handed out",
            audit.next_position,
            l.positions_max
        );
    }
    // Webhooks: every answer not yet acknowledged is delivered again
    // (providers retry until acknowledged), including those decided while
    // the node was down. A confirmation inside the provider timeout wins.
    let decided: Vec<(PaymentId, ProviderAnswer, u64)> = {
        let l = ledger.lock().unwrap();
        l.decided
            .iter()
            .filter(|(p, _)| !l.delivered.contains(*p))
            .map(|(p, a)| (*p, *a, l.submitted[p].1))
            .collect()
    };
    for (payment, answer, sent_at) in decided {
        let reply = client
            .call(EVENT, Command::ProviderAnswer { payment, answer })
            .await
            .expect("webhook delivered");
        let in_time = now_ms() + 300 < sent_at + PROVIDER_TIMEOUT_MS;
        if answer == ProviderAnswer::Confirmed && in_time {
            assert!(
                matches!(
                    reply,
                    Reply::PaymentSettled {
                        settled: PaymentSettled::Sold { .. }
                    }
                ),
                "{payment} confirmed within the provider timeout but got {reply:?}"
            );
        }
        record_settled(ledger, payment, Some(reply));
    }
    // Waiting fans resume their exact places with their tokens.
    let waiting: Vec<(FanId, u64, String)> = {
        let l = ledger.lock().unwrap();
        l.waiting
            .iter()
            .map(|(f, (p, t))| (*f, *p, t.clone()))
            .collect()
    };
    for (fan, position, token) in waiting {
        match client
            .call(EVENT, Command::Resume { fan, token })
            .await
            .expect("resume")
        {
            Reply::Joined { joined, .. } => {
                assert_eq!(joined.position.0, position, "{fan} lost its place")
            }
            Reply::JoinRefused { .. } => {} // sold out or closed: told so
            other => panic!("resume of {fan}: {other:?}"),
        }
    }
    // A fresh fan gets a position above everything handed out before.
    let fresh = FanId(9_000_000 + now_ms() % 1_000_000);
    if let Reply::Joined { joined, .. } = client
        .call(EVENT, Command::Join { fan: fresh })
        .await
        .expect("join")
    {
        let mut l = ledger.lock().unwrap();
        assert!(
            joined.position.0 > l.positions_max,
            "position {} reused",
            joined.position
        );
        l.positions_max = joined.position.0;
    }
    check_holds(&client, ledger).await;
}

/// Unexpired holds are still held after the restart, with their
/// deadlines (paying or not: a payment sent as the node died may have been
/// journaled), and those never paid for are released once their deadlines
/// pass (timers re-armed from stored deadlines).
async fn check_holds(client: &Client, ledger: &Shared) {
    let now = now_ms();
    let live: Vec<(HoldId, FanId, Millis, bool)> = {
        let l = ledger.lock().unwrap();
        let answered: HashSet<HoldId> = l.submitted.values().map(|(h, _)| *h).collect();
        l.holds
            .iter()
            .filter(|(h, (_, _, d))| !answered.contains(h) && d.0 > now + 300)
            .map(|(h, (f, _, d))| (*h, *f, *d, l.pay_attempted.contains(h)))
            .collect()
    };
    eprintln!("  {} unexpired holds carried across the crash", live.len());
    for (hold, fan, deadline, _) in &live {
        let status = client
            .call(EVENT, Command::Status { fan: *fan })
            .await
            .expect("status");
        match status {
            Reply::Status {
                status:
                    Some(FanStatus::Holding {
                        hold: h,
                        deadline: d,
                        ..
                    }),
            } => {
                assert_eq!(
                    (h, d),
                    (*hold, *deadline),
                    "{fan}'s hold changed across the crash"
                );
            }
            other => panic!("{fan}'s unexpired {hold} did not survive the crash: {other:?}"),
        }
    }
    let unpaid: Vec<&(HoldId, FanId, Millis, bool)> = live.iter().filter(|h| !h.3).collect();
    let Some(last) = unpaid.iter().map(|(_, _, d, _)| d.0).max() else {
        return;
    };
    tokio::time::sleep(Duration::from_millis(last.saturating_sub(now_ms()) + 700)).await;
    for (hold, fan, _, _) in unpaid {
        let status = client
            .call(EVENT, Command::Status { fan: *fan })
            .await
            .expect("status");
        if let Reply::Status {
            status: Some(FanStatus::Holding { hold: h, .. }),
        } = status
        {
            assert_ne!(
                h, *hold,
                "{fan}'s {hold} outlived its deadline after the restart"
            );
        }
    }
}

/// The output gate, made visible: with a store that takes 300 ms per
/// write, every acknowledgement is followed at once by kill -9. Whatever
/// was acknowledged must be there after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_is_never_ahead_of_the_store() {
    let dir = scratch_dir("gate");
    let store = dir.join("onsale.db");
    let args = [
        "--provider",
        "webhook",
        "--fault-write-delay-ms",
        "300",
        "--lease-ttl-ms",
        "1000",
    ];
    let mut node = NodeProcess::start(&store, &args).expect("node starts");
    let client = Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("connects");
    let created = client
        .create_event(spec(EVENT.0, venue_json(1, 2, 10), config()))
        .await
        .expect("create");
    assert!(
        matches!(created, Reply::Overview { .. }),
        "create: {created:?}"
    );
    let opened = call(
        &client,
        Command::Sale {
            command: SaleCommand::Open,
        },
    )
    .await;
    assert!(matches!(opened, Reply::Sale { .. }), "open: {opened:?}");
    let fan = FanId(7);
    let joined = call(&client, Command::Join { fan }).await;
    assert!(matches!(joined, Reply::Joined { .. }), "join: {joined:?}");
    node.kill9();
    node.restart().expect("restarts");

    let client = Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("reconnects");
    let status = call(&client, Command::Status { fan }).await;
    assert!(
        matches!(
            status,
            Reply::Status {
                status: Some(FanStatus::Admitted { .. })
            }
        ),
        "the admission told to the fan was lost: {status:?}"
    );
    let request = HoldRequest::Seats {
        seats: vec![SeatIdx(3), SeatIdx(4)],
    };
    let placed = match call(&client, Command::Hold { fan, request }).await {
        Reply::HoldPlaced { placed } => placed,
        other => panic!("hold: {other:?}"),
    };
    node.kill9();
    node.restart().expect("restarts");

    let client = Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("reconnects");
    match call(&client, Command::Status { fan }).await {
        Reply::Status {
            status: Some(FanStatus::Holding { hold, .. }),
        } => assert_eq!(hold, placed.hold),
        other => panic!("the hold told to the fan was lost: {other:?}"),
    }
    let hold = placed.hold;
    let started = match call(&client, Command::SubmitPayment { fan, hold }).await {
        Reply::PaymentStarted { started } => started,
        other => panic!("pay: {other:?}"),
    };
    node.kill9();
    node.restart().expect("restarts");

    let client = Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("reconnects");
    let answer = ProviderAnswer::Confirmed;
    let settled = call(
        &client,
        Command::ProviderAnswer {
            payment: started.payment,
            answer,
        },
    )
    .await;
    let Reply::PaymentSettled {
        settled: PaymentSettled::Sold { order },
    } = settled
    else {
        panic!("the payment told to the fan was lost: {settled:?}");
    };
    node.kill9();
    node.restart().expect("restarts");

    let client = Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("reconnects");
    let Reply::Audit { audit } = call(&client, Command::Audit).await else {
        panic!("audit failed");
    };
    let sold = audit
        .orders
        .iter()
        .find(|o| o.order == order)
        .expect("the sale told to the fan was lost");
    assert_eq!(sold.seats, vec![SeatIdx(3), SeatIdx(4)]);
    assert_eq!(audit.problem, None);
}

/// A call that retries while the event says "busy, retry".
async fn call(client: &Client, command: Command) -> Reply {
    for _ in 0..100 {
        let reply = client.call(EVENT, command.clone()).await.expect("reply");
        let busy = matches!(
            reply,
            Reply::JoinRefused {
                refused: onsale_schema::message::JoinRefused::Busy
            } | Reply::Error {
                code: onsale_schema::ErrorCode::Busy,
                ..
            }
        );
        if !busy {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still busy after 5 s: {command:?}");
}
