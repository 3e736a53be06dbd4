//! The node RPC against an adversary: a real `onsale --demo --rpc` process
//! on loopback, spoken to with raw frames. Without the cluster secret a
//! client cannot act; a stalled or oversized first frame is cut off; past
//! the connection bound new connections are closed at once.

use std::time::Duration;

use onsale_cluster::rpc::Client;
use onsale_schema::message::{Command, Reply, SaleCommand};
use onsale_schema::rpc::{self, ClientFrame, FRAME_HEADER_BYTES, NONCE_BYTES, ServerFrame};
use onsale_schema::{ErrorCode, EventId, SaleState, limits};
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, scratch_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The next server frame, or `None` if the node closed the connection
/// (within 20 s: a node that waits forever fails the test).
async fn next_frame(stream: &mut TcpStream) -> Option<ServerFrame> {
    let read = async {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        stream.read_exact(&mut header).await.ok()?;
        let mut body = vec![0u8; rpc::frame_len(header).ok()?];
        stream.read_exact(&mut body).await.ok()?;
        rpc::decode_frame::<ServerFrame>(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the node answers or closes")
}

/// A raw connection and the node's challenge.
async fn challenged(addr: &str) -> (TcpStream, [u8; NONCE_BYTES]) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    match next_frame(&mut stream).await {
        Some(ServerFrame::Challenge { nonce }) => (stream, nonce),
        other => panic!("no challenge: {other:?}"),
    }
}

async fn expect_refused(stream: &mut TcpStream, code: ErrorCode) {
    match next_frame(stream).await {
        Some(ServerFrame::Error { code: given, .. }) => assert_eq!(given, code),
        other => panic!("not refused with {code}: {other:?}"),
    }
    assert!(
        next_frame(stream).await.is_none(),
        "the connection stays open"
    );
}

async fn sale_state(addr: &str) -> SaleState {
    let client = Client::connect(addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("connects");
    match client.call(EventId(1), Command::Overview).await {
        Ok(Reply::Overview { overview }) => overview.sale,
        other => panic!("no overview: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_holders_of_the_secret_may_use_the_node_rpc_within_its_bounds() {
    let store = scratch_dir("rpc-credential").join("demo.db");
    let node = NodeProcess::start(&store, &["--demo"]).expect("the node starts");
    let addr = node.addr.as_str();
    assert_eq!(sale_state(addr).await, SaleState::OnSale);
    let close = ClientFrame::Request {
        id: 1,
        event: EventId(1),
        command: Command::Sale {
            command: SaleCommand::Close,
        },
    };
    let close = rpc::encode_frame(&close).unwrap();
    // The 9-byte "close the sale" without a hello.
    let (mut stream, _) = challenged(addr).await;
    stream.write_all(&close).await.unwrap();
    expect_refused(&mut stream, ErrorCode::Unauthorized).await;
    // A hello proving another secret.
    let (mut stream, nonce) = challenged(addr).await;
    let proof = rpc::hello_proof(b"not the operator token", &nonce);
    let hello = rpc::encode_frame(&ClientFrame::Hello { proof }).unwrap();
    stream.write_all(&hello).await.unwrap();
    let _ = stream.write_all(&close).await;
    expect_refused(&mut stream, ErrorCode::Unauthorized).await;
    // A proof for another connection's nonce.
    let (_, other_nonce) = challenged(addr).await;
    let (mut stream, _) = challenged(addr).await;
    let proof = rpc::hello_proof(OPERATOR_TOKEN.as_bytes(), &other_nonce);
    let hello = rpc::encode_frame(&ClientFrame::Hello { proof }).unwrap();
    stream.write_all(&hello).await.unwrap();
    expect_refused(&mut stream, ErrorCode::Unauthorized).await;
    // A 4 MiB length before any hello: refused without waiting for it.
    let (mut stream, _) = challenged(addr).await;
    let length = (limits::RPC_FRAME_BYTES_MAX as u32).to_be_bytes();
    stream.write_all(&length).await.unwrap();
    stream.write_all(&[0u8; 16]).await.unwrap();
    expect_refused(&mut stream, ErrorCode::PayloadTooLarge).await;
    // A first frame started and never finished: cut off (hello deadline).
    let (mut stream, _) = challenged(addr).await;
    stream.write_all(&[0, 0, 0, 40, 1, 2, 3]).await.unwrap();
    expect_refused(&mut stream, ErrorCode::Unauthorized).await;
    // Still on sale: nothing the refused clients sent did anything.
    assert_eq!(sale_state(addr).await, SaleState::OnSale);
    // The connection bound: past it, a new connection is closed at once.
    let mut held = Vec::new();
    for _ in 0..limits::RPC_CONNECTIONS_MAX {
        held.push(challenged(addr).await.0);
    }
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    assert!(next_frame(&mut extra).await.is_none(), "over the bound");
    drop(held);
    // Freed: the operator's client is served again.
    let mut state = None;
    for _ in 0..100 {
        let client = Client::connect(addr, OPERATOR_TOKEN.as_bytes()).await;
        if let Ok(client) = client
            && let Ok(Reply::Overview { overview }) =
                client.call(EventId(1), Command::Overview).await
        {
            state = Some(overview.sale);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, Some(SaleState::OnSale));
}
