//! Per-client limits on a real node, over HTTP: logins and the fan routes
//! limited per client address (an IPv4 address, an IPv6 /64), the client
//! taken from `X-Forwarded-For` only when the peer is a trusted proxy.
//! Test clients and the proxy are loopback addresses of their own
//! (127.0.0.x as the TCP source).

use onsale_tests::client::{Response, ops, request_from};
use onsale_tests::{NodeProcess, scratch_dir};
use serde_json::{Value, json};

const PROXY: &str = "127.0.0.2";

async fn login(node: &str, from: &str, forwarded: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = forwarded
        .map(|f| vec![("X-Forwarded-For", f)])
        .unwrap_or_default();
    let body = json!({"name": "limited fan"}).to_string();
    request_from(
        from,
        node,
        "POST",
        "/api/session",
        &headers,
        body.as_bytes(),
    )
    .await
}

fn limited(response: &Response, what: &str) {
    assert_eq!(response.status, 429, "{what}: {response:?}");
    assert_eq!(
        response.json()["code"],
        "rate_limited",
        "{what}: {response:?}"
    );
    assert!(
        response.header("retry-after").is_some(),
        "{what}: {response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_limited_by_address_and_only_trusted_proxies_may_name_them() {
    let dir = scratch_dir("client-limits");
    let node = NodeProcess::start_http(
        &dir.join("store.db"),
        &[
            "--demo",
            "--client-rps",
            "1",
            "--client-burst",
            "20",
            "--logins-per-min",
            "3",
            "--trusted-proxies",
            &format!("{PROXY}/32"),
        ],
    )
    .expect("node starts");
    let node = node.addr.clone();

    // A direct client: three logins a minute, whatever it forwards.
    for i in 0..3 {
        let ok = login(&node, "127.0.0.1", Some(&format!("198.51.100.{i}"))).await;
        assert_eq!(ok.status, 200, "login {i}: {ok:?}");
    }
    limited(
        &login(&node, "127.0.0.1", Some("198.51.100.99")).await,
        "a 4th login, with a forged X-Forwarded-For",
    );
    // Another address is another client.
    assert_eq!(login(&node, "127.0.0.3", None).await.status, 200);

    // Behind the trusted proxy: each forwarded client has its own budget.
    for i in 0..3 {
        let ok = login(&node, PROXY, Some("6.6.6.6, 203.0.113.5")).await;
        assert_eq!(ok.status, 200, "forwarded login {i}: {ok:?}");
    }
    limited(
        &login(&node, PROXY, Some("203.0.113.5")).await,
        "the forwarded client's 4th login",
    );
    assert_eq!(login(&node, PROXY, Some("203.0.113.6")).await.status, 200);
    // IPv6: one /64 is one client.
    for i in 1..=3 {
        let ok = login(&node, PROXY, Some(&format!("2001:db8::{i}"))).await;
        assert_eq!(ok.status, 200, "v6 login {i}: {ok:?}");
    }
    limited(
        &login(&node, PROXY, Some("2001:db8::ffff")).await,
        "another address of the same /64",
    );
    assert_eq!(
        login(&node, PROXY, Some("2001:db8:0:1::1")).await.status,
        200,
        "another /64"
    );

    // The anonymous catalogue: a burst of 20, then 1 a second.
    let mut answers = Vec::new();
    for _ in 0..40 {
        let response = request_from("127.0.0.4", &node, "GET", "/api/events/1", &[], b"").await;
        answers.push(response.status);
        if response.status == 429 {
            limited(&response, "an event-detail flood");
            break;
        }
    }
    assert_eq!(
        answers.last(),
        Some(&429),
        "the flood was never limited: {answers:?}"
    );
    assert!(answers.len() >= 20, "limited inside the burst: {answers:?}");
    // Operators are not fans: their routes are not limited per client.
    let view = ops(&node, "GET", "/api/ops/cluster", &Value::Null).await;
    assert_eq!(view.status, 200, "{view:?}");
}
