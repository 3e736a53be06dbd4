//! Mutual TLS on the mesh, with real processes and certificates made by
//! `openssl`: two nodes and a gateway, each presenting a certificate the
//! cluster's CA signed, serve a sale end to end; a gateway without TLS
//! and a gateway whose certificate another CA signed, both with the right
//! cookie, never join.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use onsale_tests::client::{Fan, ops};
use onsale_tests::{NodeProcess, free_port, scratch_dir, venue_json};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA `{name}-ca.pem` and a certificate `{name}.pem` / `{name}.key` it
/// signed for the DNS name `onsale-node`, usable by client and server.
fn make_certs(dir: &Path, name: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &csr,
            "-subj",
            "/CN=onsale-node",
        ],
    );
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=DNS:onsale-node\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("extensions file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

fn write_cookie(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "mesh tls test cookie, shared").expect("cookie file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// The TLS flags for certificates `name` (CA `ca`).
fn tls_args(dir: &Path, name: &str, ca: &str) -> Vec<String> {
    let file = |f: String| dir.join(f).display().to_string();
    vec![
        "--cluster-tls-cert".into(),
        file(format!("{name}.pem")),
        "--cluster-tls-key".into(),
        file(format!("{name}.key")),
        "--cluster-tls-ca".into(),
        file(format!("{ca}-ca.pem")),
    ]
}

fn mesh_args(listen: &str, cookie: &Path, id: &str, role: &str, seeds: &str) -> Vec<String> {
    [
        "--cluster-listen",
        listen,
        "--cookie-file",
        &cookie.display().to_string(),
        "--node-id",
        id,
        "--role",
        role,
        "--seeds",
        seeds,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn start_gateway(
    store: &Path,
    host: &str,
    cookie: &Path,
    id: &str,
    seeds: &str,
    tls: &[String],
) -> NodeProcess {
    let http = format!("{host}:{}", free_port());
    let mut args = vec!["--listen".to_owned(), http.clone()];
    args.extend(mesh_args(
        &format!("{host}:{}", free_port()),
        cookie,
        id,
        "gateway",
        seeds,
    ));
    args.extend_from_slice(tls);
    NodeProcess::start_with(store, &http, &args, "onsale serving http://")
        .unwrap_or_else(|e| panic!("gateway {id} starts: {e:#}"))
}

/// The mesh peers `gateway` has now.
async fn peers(gateway: &str) -> Vec<Value> {
    let view = ops(gateway, "GET", "/api/ops/cluster", &Value::Null).await;
    assert_eq!(view.status, 200, "{view:?}");
    view.json()["peers"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_speak_mutual_tls_and_refuse_peers_without_the_cluster_ca() {
    let dir = scratch_dir("mesh-tls");
    make_certs(&dir, "cluster");
    make_certs(&dir, "rogue");
    let cookie = dir.join("cookie");
    write_cookie(&cookie);
    let store = dir.join("cluster.db");
    let good = tls_args(&dir, "cluster", "cluster");
    let node_addrs: Vec<String> = (0..2)
        .map(|i| format!("127.0.0.{}:{}", 31 + i, free_port()))
        .collect();
    let seeds = node_addrs.join(",");
    let _nodes: Vec<NodeProcess> = (0..2)
        .map(|i| {
            let mut args = mesh_args(&node_addrs[i], &cookie, &format!("n{i}"), "node", &seeds);
            args.extend_from_slice(&good);
            NodeProcess::start_with(
                &store,
                &node_addrs[i],
                &args,
                &format!("onsale mesh n{i} on"),
            )
            .unwrap_or_else(|e| panic!("node n{i} starts: {e:#}"))
        })
        .collect();
    let gateway = start_gateway(&store, "127.0.0.41", &cookie, "g0", &seeds, &good);
    let gateway = gateway.addr.clone();

    // A sale end to end, every call crossing the TLS mesh.
    let venue: Value = serde_json::from_str(&venue_json(1, 2, 5)).expect("venue");
    let deadline = Instant::now() + WAIT;
    loop {
        let created = ops(
            &gateway,
            "POST",
            "/api/ops/events",
            &json!({"event": 61, "name": "TLS night", "city": "Testville",
                    "starts_at": 1_900_000_000_000u64, "venue": venue,
                    "config": {"shoppers_max": 5, "tickets_per_fan_max": 2}}),
        )
        .await;
        if created.status == 200 {
            break;
        }
        assert!(
            created.status == 503 && Instant::now() < deadline,
            "{created:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let opened = ops(
        &gateway,
        "POST",
        "/api/ops/events/61/sale",
        &json!({"command": "open"}),
    )
    .await;
    assert_eq!(opened.status, 200, "{opened:?}");
    let fan = Fan::login(&gateway, "tls-fan").await;
    let joined = fan.call(61, json!({"cmd": "join"})).await;
    assert_eq!(joined["reply"], "joined", "{joined}");
    fan.call(61, json!({"cmd": "enter"})).await;
    let held = fan
        .call(
            61,
            json!({"cmd": "hold", "request": {"kind": "best", "count": 1, "area": {"in": "anywhere"}}}),
        )
        .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    let mut expected: Vec<Value> = vec![json!("n0"), json!("n1")];
    assert_eq!(
        peers(&gateway).await,
        expected,
        "the gateway reaches both nodes"
    );

    // Right cookie, no TLS; right cookie, another CA: neither joins.
    let plain = start_gateway(&store, "127.0.0.42", &cookie, "g-plain", &seeds, &[]);
    let rogue_tls = tls_args(&dir, "rogue", "rogue");
    let rogue = start_gateway(&store, "127.0.0.43", &cookie, "g-rogue", &seeds, &rogue_tls);
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        assert_eq!(
            peers(&plain.addr).await,
            Vec::<Value>::new(),
            "a plain peer joined"
        );
        assert_eq!(
            peers(&rogue.addr).await,
            Vec::<Value>::new(),
            "another CA's peer joined"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let nodes = ops(&gateway, "GET", "/api/ops/nodes", &Value::Null).await;
    let names: Vec<Value> = nodes.json()["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].clone())
        .collect();
    expected.insert(0, json!("g0"));
    assert_eq!(names, expected, "only the cluster's processes are listed");
    let stats = ops(&gateway, "GET", "/api/ops/events/61/stats", &Value::Null).await;
    assert_eq!(stats.json()["overview"]["held"], 1, "{stats:?}");
}
