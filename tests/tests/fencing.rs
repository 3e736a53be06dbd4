//! Failover and fencing with real processes sharing one store: node A
//! owns an event and is paused (SIGSTOP, as a stalled or partitioned node
//! would be). Its lease expires, node B takes the event over, with every
//! hold and admission intact, and sells. Then A wakes up believing it still
//! owns the event: nothing it does may be acknowledged, because every
//! write it attempts carries a stale epoch.

use std::time::{Duration, Instant};

use onsale_cluster::rpc::Client;
use onsale_schema::message::{
    Command, FanStatus, HoldRequest, JoinRefused, PaymentSettled, ProviderAnswer, Reply,
    SaleCommand,
};
use onsale_schema::{ErrorCode, EventConfig, EventId, FanId, SeatIdx};
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, scratch_dir, spec, venue_json};

const EVENT: EventId = EventId(7);

async fn call(client: &Client, command: Command) -> Reply {
    for _ in 0..200 {
        let reply = client.call(EVENT, command.clone()).await.expect("reply");
        let busy = matches!(
            reply,
            Reply::JoinRefused {
                refused: JoinRefused::Busy
            } | Reply::Error {
                code: ErrorCode::Busy,
                ..
            }
        );
        if !busy {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still busy after 10 s: {command:?}");
}

fn seats(list: &[u32]) -> HoldRequest {
    HoldRequest::Seats {
        seats: list.iter().map(|s| SeatIdx(*s)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_its_successor_keeps_everything() {
    let dir = scratch_dir("fencing");
    let store = dir.join("onsale.db");
    let args = ["--provider", "webhook", "--lease-ttl-ms", "600"];
    let node_a = NodeProcess::start(&store, &args).expect("node A");
    let a = Client::connect(&node_a.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("A");
    let config = EventConfig {
        shopping_window_ms: 60_000,
        show_up_window_ms: 60_000,
        checkout_window_ms: 60_000,
        provider_timeout_ms: 120_000,
        counter_block: 4,
        ..EventConfig::default()
    };
    let created = a
        .create_event(spec(EVENT.0, venue_json(1, 2, 10), config))
        .await
        .expect("create");
    assert!(matches!(created, Reply::Overview { .. }), "{created:?}");
    call(
        &a,
        Command::Sale {
            command: SaleCommand::Open,
        },
    )
    .await;
    let (fan1, fan3) = (FanId(1), FanId(3));
    call(&a, Command::Join { fan: fan1 }).await;
    call(&a, Command::Join { fan: fan3 }).await;
    let Reply::HoldPlaced { placed } = call(
        &a,
        Command::Hold {
            fan: fan1,
            request: seats(&[0, 1]),
        },
    )
    .await
    else {
        panic!("A did not hold");
    };

    // B starts on the same store while A owns the event: B leaves it alone.
    let node_b = NodeProcess::start(&store, &args).expect("node B");
    let b = Client::connect(&node_b.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("B");

    node_a.signal("STOP");
    // Let A's lease expire; B adopts the event (or takes it on demand).
    // Until then B says A owns it.
    let started = Instant::now();
    let status = loop {
        match b
            .call(EVENT, Command::Status { fan: fan1 })
            .await
            .expect("B answers")
        {
            Reply::NotOwner { owner } if started.elapsed() < Duration::from_secs(10) => {
                assert_eq!(owner.node, format!("node@{}", node_a.addr), "B names A");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Reply::Error {
                code: ErrorCode::Busy,
                ..
            } if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    eprintln!(
        "B took the event over {:?} after A was paused",
        started.elapsed()
    );
    let Reply::Status {
        status: Some(FanStatus::Holding { hold, .. }),
    } = status
    else {
        panic!("fan 1's hold did not survive the failover: {status:?}");
    };
    assert_eq!(hold, placed.hold);

    // A wakes up, still believing it owns the event, before B has written
    // anything to the journal: only the epoch can stop A's writes now.
    // Nothing it does may be acknowledged.
    node_a.signal("CONT");
    let stale = a
        .call(
            EVENT,
            Command::Hold {
                fan: fan3,
                request: seats(&[0, 1, 2]),
            },
        )
        .await;
    assert!(
        !matches!(stale, Ok(Reply::HoldPlaced { .. })),
        "a fenced owner acknowledged a hold on seats its successor owns: {stale:?}"
    );
    let stale = a.call(EVENT, Command::Release { fan: fan1, hold }).await;
    assert!(
        !matches!(stale, Ok(Reply::Released)),
        "a fenced owner acknowledged releasing a hold it no longer owns: {stale:?}"
    );

    // B serves: the held seats stay held, fan 1 pays and buys them.
    let fan2 = FanId(2);
    call(&b, Command::Join { fan: fan2 }).await;
    let taken = call(
        &b,
        Command::Hold {
            fan: fan2,
            request: seats(&[0, 1]),
        },
    )
    .await;
    assert!(
        matches!(taken, Reply::HoldRejected { .. }),
        "seats held on A were resold on B: {taken:?}"
    );
    let Reply::PaymentStarted { started } =
        call(&b, Command::SubmitPayment { fan: fan1, hold }).await
    else {
        panic!("B refused fan 1's payment");
    };
    let answer = ProviderAnswer::Confirmed;
    let settled = call(
        &b,
        Command::ProviderAnswer {
            payment: started.payment,
            answer,
        },
    )
    .await;
    assert!(
        matches!(
            settled,
            Reply::PaymentSettled {
                settled: PaymentSettled::Sold { .. }
            }
        ),
        "{settled:?}"
    );

    // B's state is whole: one sale, seats 0 and 1, invariants intact.
    let Reply::Audit { audit } = call(&b, Command::Audit).await else {
        panic!("audit");
    };
    assert_eq!(audit.problem, None);
    assert_eq!(audit.orders.len(), 1);
    assert_eq!(audit.orders[0].seats, vec![SeatIdx(0), SeatIdx(1)]);
    assert_eq!(audit.orders[0].fan, fan1);
}
