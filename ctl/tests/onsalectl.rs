//! `onsalectl` against real `onsale` processes: three nodes (each also a
//! gateway, so each is an operator endpoint) on a ractor_cluster mesh,
//! sharing one embedded store, each on its own loopback address.
//!
//! - Every command's table and JSON output agree with the cluster's state
//!   (read back through other commands and the store's leases).
//! - Sale commands are idempotent; an illegal transition exits 4; an
//!   unknown event or node exits 3; a venue or config file that is wrong
//!   exits 2 naming the field, before anything is sent.
//! - A wrong token, no token, and endpoints that do not answer give a clear
//!   message.
//! - Drain and move during a live sale with fans buying: nothing is lost
//!   (the audit passes and counts every acknowledged sale).
//! - With one node killed every command still answers through another
//!   endpoint; `cluster health` fails while it is down and passes again
//!   once it is back.
//! - `top` in tmux: it draws, updates, redraws on resize and quits on `q`;
//!   one screen is kept as `<target>/onsalectl-top-screen.txt`.
//!
//! No timing assertions: every wait is bounded and only bounds a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onsale_tests::client::Fan;
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, free_port, scratch_dir, venue_json};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const COOKIE: &str = "onsalectl test cookie, shared by the cluster";

/// Three (or fewer) `onsale` processes of the default role: each owns
/// events and serves HTTP, so each is an endpoint.
struct Cluster {
    dir: PathBuf,
    nodes: Vec<NodeProcess>,
    /// HTTP addresses, by node index (`n{i}`).
    http: Vec<String>,
}

impl Cluster {
    fn start(name: &str, count: usize) -> Cluster {
        let dir = scratch_dir(name);
        let cookie = dir.join("cookie");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&cookie, COOKIE).expect("cookie file");
            std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        std::fs::write(dir.join("token"), OPERATOR_TOKEN).expect("token file");
        let mesh: Vec<String> = (0..count)
            .map(|i| format!("127.0.0.{}:{}", 31 + i, free_port()))
            .collect();
        let http: Vec<String> = (0..count)
            .map(|i| format!("127.0.0.{}:{}", 31 + i, free_port()))
            .collect();
        let nodes = (0..count)
            .map(|i| {
                let args: Vec<String> = [
                    "--listen",
                    &http[i],
                    "--cluster-listen",
                    &mesh[i],
                    "--cookie-file",
                    &cookie.display().to_string(),
                    "--node-id",
                    &format!("n{i}"),
                    "--seeds",
                    &mesh[0],
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                NodeProcess::start_with(
                    &dir.join("cluster.db"),
                    &http[i],
                    &args,
                    "onsale serving http://",
                )
                .unwrap_or_else(|e| panic!("node n{i} starts: {e:#}"))
            })
            .collect();
        let cluster = Cluster { dir, nodes, http };
        cluster.await_placeable();
        cluster
    }

    /// Wait until every node would place events on every node.
    fn await_placeable(&self) {
        for http in &self.http {
            eventually("every node sees every node as placeable", || {
                let run = onsalectl(
                    &format!("http://{http}"),
                    Some(&self.dir.join("token")),
                    &["cluster", "status", "-o", "json"],
                );
                run.code == 0
                    && run.json()["placeable"].as_array().map(Vec::len) == Some(self.http.len())
            });
        }
    }

    fn endpoints(&self) -> String {
        self.http
            .iter()
            .map(|a| format!("http://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn ctl(&self, args: &[&str]) -> Run {
        onsalectl(&self.endpoints(), Some(&self.dir.join("token")), args)
    }

    /// Write `text` into the scratch dir as `name`; its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write a file");
        path.display().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One finished `onsalectl` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "onsalectl failed: {self:#?}");
        self
    }

    fn exits(self, code: i32) -> Run {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Table rows (after the header), split on runs of spaces.
    fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .skip(1)
            .map(|l| {
                l.split("   ")
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect()
    }

    /// The value of `key:` in a describe's key-value output.
    fn field(&self, key: &str) -> String {
        let prefix = format!("{key}:");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {key:?} in {}", self.stdout))
            .trim()
            .to_owned()
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_onsalectl")
}

fn onsalectl(endpoints: &str, token_file: Option<&Path>, args: &[&str]) -> Run {
    let mut command = Command::new(bin());
    command
        .arg("--endpoint")
        .arg(endpoints)
        .env_remove("ONSALE_OPERATOR_TOKEN")
        .env_remove("ONSALE_ENDPOINT")
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    if let Some(token_file) = token_file {
        command.arg("--token-file").arg(token_file);
    }
    let output = command.args(args).output().expect("onsalectl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Retry `check` until it holds, for at most `WAIT`.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn owner(cluster: &Cluster, event: u64) -> String {
    let d = cluster
        .ctl(&["event", "describe", &event.to_string(), "-o", "json"])
        .ok()
        .json();
    d["lease"]["node"].as_str().expect("a lease").to_owned()
}

// ----- without a cluster ---------------------------------------------------------

#[test]
fn bad_input_is_refused_with_a_clear_message_and_its_exit_code() {
    let dir = scratch_dir("ctl-offline");
    let token = dir.join("token");
    std::fs::write(&token, OPERATOR_TOKEN).expect("token");
    // Nothing listens here.
    let nowhere = format!("http://127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let venue = dir.join("venue.json");
    let create = |venue_text: &str, extra: &[&str]| {
        std::fs::write(&venue, venue_text).expect("venue");
        let mut args = vec![
            "event",
            "create",
            "-f",
            venue.to_str().expect("path"),
            "--id",
            "7",
        ];
        if !extra.contains(&"--starts-at") {
            args.extend(["--starts-at", "2027-01-01T20:00:00Z"]);
        }
        args.extend(extra);
        onsalectl(&nowhere, Some(&token), &args)
    };

    // The venue is checked before anything is sent: exit 2, the field named.
    let run = create(r#"{"name":"Hall","city":"X","sections":[]}"#, &[]).exits(2);
    assert!(run.stderr.contains("price_levels"), "{run:?}");
    let run = create(
        &venue_json(1, 1, 2).replace("\"std\",\"name\"", "\"std\",\"nom\""),
        &[],
    )
    .exits(2);
    assert!(run.stderr.contains("venue file"), "{run:?}");
    let run = create(&venue_json(1, 1, 2).replace("Section 0", ""), &[]).exits(2);
    assert!(run.stderr.contains("section"), "{run:?}");
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"full_factor": 0}"#).expect("config");
    let run = create(
        &venue_json(1, 1, 2),
        &["--config", config.to_str().expect("path")],
    )
    .exits(2);
    assert!(run.stderr.contains("full_factor"), "{run:?}");
    std::fs::write(&config, r#"{"tickets": 2}"#).expect("config");
    let run = create(
        &venue_json(1, 1, 2),
        &["--config", config.to_str().expect("path")],
    )
    .exits(2);
    assert!(run.stderr.contains("unknown field `tickets`"), "{run:?}");
    let run = create(&venue_json(1, 1, 2), &["--starts-at", "next week"]).exits(2);
    assert!(run.stderr.contains("not a time"), "{run:?}");
    // A good file with --dry-run sends nothing and says what it would do.
    let run = create(&venue_json(2, 3, 4), &["--dry-run", "-o", "json"]).ok();
    assert_eq!(run.json()["would_create"]["seats"], 24, "{run:?}");
    assert_eq!(
        run.json()["would_create"]["starts_at"],
        "2027-01-01T20:00:00Z"
    );

    // Unreachable endpoints: every one is named, exit 1.
    let run = create(&venue_json(1, 1, 2), &[]).exits(1);
    assert!(run.stderr.contains("no endpoint answered"), "{run:?}");
    assert!(run.stderr.contains("Connection refused"), "{run:?}");
    let run = onsalectl(&nowhere, Some(&token), &["-o", "json", "event", "list"]).exits(1);
    let error: Value = serde_json::from_str(run.stderr.trim()).expect("a JSON error");
    assert_eq!(error["error"]["code"], "unreachable", "{run:?}");
    // No token; a bad endpoint; an unknown flag value: usage, exit 2.
    let run = onsalectl(&nowhere, None, &["event", "list"]).exits(2);
    assert!(run.stderr.contains("ONSALE_OPERATOR_TOKEN"), "{run:?}");
    let run = onsalectl("ftp://x", Some(&token), &["event", "list"]).exits(2);
    assert!(run.stderr.contains("not http://HOST:PORT"), "{run:?}");
    onsalectl(
        &nowhere,
        Some(&token),
        &["event", "list", "--state", "open"],
    )
    .exits(2);

    for shell in ["bash", "zsh", "fish"] {
        let run = onsalectl(&nowhere, None, &["completions", shell]).ok();
        assert!(
            run.stdout.contains("onsalectl") && run.stdout.contains("drain"),
            "{shell}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ----- against a cluster ---------------------------------------------------------

#[test]
fn every_command_answers_as_the_cluster_is_through_any_live_endpoint() {
    let mut cluster = Cluster::start("ctl-commands", 3);
    let venue = cluster.file("venue.json", &venue_json(2, 3, 5));
    let starts = ["--starts-at", "2027-01-01T20:00:00Z"];
    let create = |id: &str, name: &str| {
        let mut args = vec!["event", "create", "-f", &venue, "--id", id, "--name", name];
        args.extend(starts);
        cluster.ctl(&args)
    };

    // Create: idempotent by id; another spec under the same id is a conflict.
    let run = create("1", "Ctl night").ok();
    assert!(run.stdout.contains("event 1 ready"), "{run:?}");
    create("1", "Ctl night").ok();
    let run = create("1", "Another night").exits(4);
    assert!(run.stderr.contains("exists"), "{run:?}");
    create("2", "Second night").ok();
    // Fair access: the draw and the presale at creation, presale codes
    // (CSV, by id and by name) and the proof of work.
    let mut args = vec![
        "event",
        "create",
        "-f",
        &venue,
        "--id",
        "9",
        "--pre-queue-draw",
        "--opens-at",
        "+1h",
        "--presale-until",
        "+30m",
        "--dry-run",
        "-o",
        "json",
    ];
    args.extend(starts);
    let planned = cluster.ctl(&args).ok().json();
    let config = &planned["would_create"]["config"];
    assert_eq!(config["pre_queue_draw"], true, "{planned}");
    assert!(
        config["opens_at"].as_u64() > config["presale_until"].as_u64(),
        "{planned}"
    );
    let codes = cluster
        .ctl(&["event", "codes", "2", "--fan", "11", "--name", "nora"])
        .ok();
    let lines: Vec<&str> = codes.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"fan,name,code"), "{codes:?}");
    assert!(lines[1].starts_with("11,,p"), "{codes:?}");
    assert!(lines[2].contains(",nora,p"), "{codes:?}");
    cluster.ctl(&["event", "codes", "2"]).exits(2);
    let run = cluster.ctl(&["event", "stamp", "2", "16"]).ok();
    assert!(run.stdout.contains("16 bits"), "{run:?}");
    cluster.ctl(&["event", "stamp", "2", "0"]).ok();
    let config = cluster.file("config.json", r#"{"tickets_per_fan_max": 2}"#);
    let mut args = vec![
        "event", "create", "-f", &venue, "--id", "3", "--config", &config, "-o", "json",
    ];
    args.extend(starts);
    let created = cluster.ctl(&args).ok().json();
    assert_eq!(
        (created["event"].as_u64(), created["capacity"].as_u64()),
        (Some(3), Some(30))
    );

    // Sale commands: idempotent, illegal transitions exit 4.
    let run = cluster.ctl(&["event", "open", "1"]).ok();
    assert_eq!(run.stdout.trim(), "event 1: sale on_sale");
    cluster.ctl(&["event", "open", "1"]).ok();
    cluster.ctl(&["event", "pause", "1"]).ok();
    cluster.ctl(&["event", "pause", "1"]).ok();
    let run = cluster.ctl(&["event", "resume", "1", "-o", "json"]).ok();
    assert_eq!(run.json()["sale"], "on_sale");
    let run = cluster.ctl(&["event", "resume", "2"]).exits(4);
    assert!(run.stderr.contains("has not opened yet"), "{run:?}");
    cluster.ctl(&["event", "close", "3"]).ok();
    cluster.ctl(&["event", "close", "3"]).ok();
    let run = cluster.ctl(&["event", "open", "3"]).exits(4);
    assert!(run.stderr.contains("its sale is closed"), "{run:?}");
    let run = cluster.ctl(&["event", "describe", "99"]).exits(3);
    assert!(run.stderr.contains("99"), "{run:?}");
    cluster.ctl(&["event", "open", "99"]).exits(3);
    cluster.ctl(&["event", "audit", "99"]).exits(3);

    // event list: JSON and table agree with describe and with each other.
    let list = cluster.ctl(&["event", "list", "-o", "json"]).ok().json();
    let events = list["events"].as_array().expect("events");
    assert_eq!(events.len(), 3, "{list}");
    let sales: Vec<&str> = events
        .iter()
        .map(|e| e["sale"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(sales, ["on_sale", "scheduled", "closed"]);
    assert_eq!(
        events[0]["starts_at"], "2027-01-01T20:00:00Z",
        "times in RFC 3339"
    );
    let table = cluster.ctl(&["event", "list"]).ok();
    assert!(table.stdout.starts_with("ID "), "{table:?}");
    let rows = table.rows();
    assert_eq!(rows.len(), 3, "{table:?}");
    for (row, event) in rows.iter().zip(events) {
        let id = event["event"].as_u64().expect("id");
        let owner = owner(&cluster, id);
        assert_eq!(event["owner"], owner.as_str(), "{event}");
        assert_eq!(row[0], id.to_string());
        assert_eq!(row[2], event["sale"].as_str().expect("sale"));
        assert_eq!(row[3], owner);
        assert_eq!(row[6], "0/0/30", "sold/held/capacity: {row:?}");
    }
    let no_headers = cluster.ctl(&["event", "list", "--no-headers"]).ok();
    assert_eq!(no_headers.stdout.lines().count(), 3);
    let wide = cluster.ctl(&["event", "list", "-o", "wide"]).ok();
    assert!(
        wide.stdout.contains("2027-01-01 20:00:00"),
        "local time (TZ=UTC): {wide:?}"
    );
    let on_sale = cluster
        .ctl(&["event", "list", "--state", "on_sale", "--json"])
        .ok()
        .json();
    assert_eq!(
        on_sale["events"].as_array().map(Vec::len),
        Some(1),
        "{on_sale}"
    );
    let first_owner = owner(&cluster, 1);
    let mine = cluster
        .ctl(&["event", "list", "--node", &first_owner, "-o", "json"])
        .ok()
        .json();
    assert!(
        mine["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["owner"] == first_owner.as_str())
    );

    // describe: lease, ranking, numbers.
    let d = cluster.ctl(&["event", "describe", "1"]).ok();
    assert_eq!(d.field("owner"), first_owner);
    assert_eq!(d.field("sale"), "on_sale");
    assert_eq!(d.field("capacity"), "30");
    assert_eq!(d.field("ranking").split(", ").count(), 3, "{d:?}");

    // node list / describe.
    let nodes = cluster.ctl(&["node", "list", "-o", "json"]).ok().json();
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["n0", "n1", "n2"], "{nodes}");
    assert!(
        nodes["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .all(|n| n["state"] == "up")
    );
    let table = cluster.ctl(&["node", "list"]).ok();
    assert!(table.stdout.starts_with("NAME "), "{table:?}");
    let total: u64 = table
        .rows()
        .iter()
        .map(|r| r[4].parse::<u64>().expect("events"))
        .sum();
    assert_eq!(total, 3, "every event is served once: {table:?}");
    let wide = cluster.ctl(&["node", "list", "-o", "wide"]).ok();
    assert!(wide.stdout.contains("REACHABLE"), "{wide:?}");
    let described = cluster
        .ctl(&["node", "describe", &first_owner, "-o", "json"])
        .ok()
        .json();
    assert!(
        described["serves"]
            .as_array()
            .expect("serves")
            .contains(&json!(1)),
        "{described}"
    );
    let run = cluster.ctl(&["node", "describe", "nowhere"]).exits(3);
    assert!(run.stderr.contains("nowhere"), "{run:?}");

    // cordon / uncordon.
    let run = cluster.ctl(&["node", "cordon", "n2"]).ok();
    assert_eq!(run.stdout.trim(), "node n2 cordoned: state cordoned");
    let d = cluster.ctl(&["node", "describe", "n2"]).ok();
    assert_eq!(
        (d.field("state"), d.field("placeable")),
        ("cordoned".into(), "no".into())
    );
    cluster.ctl(&["node", "uncordon", "n2"]).ok();
    assert_eq!(
        cluster.ctl(&["node", "describe", "n2"]).ok().field("state"),
        "up"
    );

    // placement: owner vs desired, for every event (scheduled events may
    // still be moving back after the uncordon, so each row is judged on
    // its own owner and desired node), and --diff keeps the misplaced.
    let placement = cluster.ctl(&["placement", "-o", "json"]).ok().json();
    let rows = placement["events"].as_array().expect("rows");
    let ids: Vec<u64> = rows.iter().filter_map(|p| p["event"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3], "{placement}");
    for p in rows {
        let expected = if p["owner"] == p["desired"] {
            "ok"
        } else {
            "misplaced"
        };
        assert_eq!(p["placement"], expected, "{p}");
    }
    let diff = cluster
        .ctl(&["placement", "--diff", "-o", "json"])
        .ok()
        .json();
    assert!(
        diff["events"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|p| p["placement"] != "ok"),
        "{diff}"
    );

    // cluster status and health.
    let status = cluster
        .ctl(&["cluster", "status", "-o", "json"])
        .ok()
        .json();
    assert_eq!(status["nodes"]["up"], 3, "{status}");
    assert_eq!(status["events"]["total"], 3, "{status}");
    assert_eq!(status["events"]["by_sale"]["on_sale"], 1, "{status}");
    assert_eq!(status["store"]["ok"], true, "{status}");
    let table = cluster.ctl(&["cluster", "status"]).ok();
    assert_eq!(table.field("nodes"), "3/3 up (3 up)", "{table:?}");
    assert_eq!(table.field("health"), "healthy");
    cluster.ctl(&["cluster", "health"]).ok();
    cluster
        .ctl(&["cluster", "health", "--expect-nodes", "4"])
        .exits(1);

    // --watch streams NDJSON when stdout is not a terminal.
    watch_lines(&cluster, &["node", "list", "-w", "--interval", "200ms"], 2);

    // A wrong token is named as such.
    let wrong = cluster.file("wrong-token", "not the operator token at all");
    let run = onsalectl(
        &cluster.endpoints(),
        Some(Path::new(&wrong)),
        &["event", "list"],
    )
    .exits(1);
    assert!(run.stderr.contains("operator token was refused"), "{run:?}");

    live_sale_moves_and_drains(&cluster);
    one_node_killed(&mut cluster);
}

/// Run a `--watch` command until it printed `lines` NDJSON lines.
fn watch_lines(cluster: &Cluster, args: &[&str], lines: usize) {
    let mut child = Command::new(bin())
        .arg("--endpoint")
        .arg(cluster.endpoints())
        .arg("--token-file")
        .arg(cluster.dir.join("token"))
        .args(args)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("watch starts");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    for _ in 0..lines {
        let line = receiver.recv_timeout(WAIT).expect("a watch line");
        let value: Value = serde_json::from_str(&line).expect("NDJSON");
        assert!(value["time"].is_string(), "{value}");
        assert_eq!(value["nodes"].as_array().map(Vec::len), Some(3), "{value}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Fans buy through one gateway while the event moves and its owner is
/// drained; the audit then passes and counts every sale.
fn live_sale_moves_and_drains(cluster: &Cluster) {
    let gateway = cluster.http[0].clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let buyers = runtime.spawn(async move {
        let mut bought = 0;
        for i in 0..6 {
            if buy(&gateway, 1, &format!("ctl-fan-{i}")).await {
                bought += 1;
            }
        }
        bought
    });

    let from = owner(cluster, 1);
    let to = if from == "n0" { "n1" } else { "n0" };
    let run = cluster
        .ctl(&["event", "move", "1", "--to", to, "--wait"])
        .ok();
    assert!(
        run.stdout.starts_with(&format!("event 1 moved to {to}")),
        "{run:?}"
    );
    assert_eq!(owner(cluster, 1), to);
    let run = cluster
        .ctl(&["event", "move", "1", "--to", "nowhere"])
        .exits(3);
    assert!(run.stderr.contains("nowhere"), "{run:?}");

    // Drain the new owner: NDJSON progress, ending drained with nothing left.
    let run = cluster
        .ctl(&["node", "drain", to, "--deadline", "30s", "-o", "json"])
        .ok();
    let last: Value =
        serde_json::from_str(run.stdout.lines().last().expect("progress")).expect("NDJSON");
    assert_eq!(
        (last["state"].as_str(), last["events_left"].as_u64()),
        (Some("drained"), Some(0)),
        "{run:?}"
    );
    assert_ne!(owner(cluster, 1), to, "the event left the drained node");
    let d = cluster.ctl(&["node", "describe", to]).ok();
    assert_eq!(
        (d.field("state"), d.field("events")),
        ("drained".into(), "0".into())
    );
    let list = cluster
        .ctl(&["event", "list", "--node", to, "-o", "json"])
        .ok()
        .json();
    assert_eq!(list["events"].as_array().map(Vec::len), Some(0), "{list}");
    cluster.ctl(&["node", "uncordon", to]).ok();

    let bought: u64 = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), buyers)
            .await
            .expect("the buyers finish")
            .expect("the buyers do not panic")
    });
    let audit = cluster
        .ctl(&["event", "audit", "1", "-o", "json"])
        .ok()
        .json();
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(
        audit["tickets"].as_u64(),
        Some(bought),
        "every acknowledged sale is there: {audit}"
    );
    let d = cluster.ctl(&["event", "describe", "1"]).ok();
    assert_eq!(d.field("sold"), bought.to_string());
    let table = cluster.ctl(&["event", "audit", "1"]).ok();
    assert_eq!(table.field("verdict"), "ok");
}

/// One fan joins, waits for its admission, holds a seat and pays; true when
/// the purchase went through (the simulated provider declines some).
async fn buy(gateway: &str, event: u64, name: &str) -> bool {
    let fan = Fan::login(gateway, name).await;
    let joined = call_retrying(&fan, event, json!({"cmd": "join"})).await;
    let token = joined["token"].as_str().expect("token").to_owned();
    let (mut socket, _) = fan.watch(event, &token).await;
    call_retrying(&fan, event, json!({"cmd": "enter"})).await;
    let held = call_retrying(
        &fan,
        event,
        json!({"cmd": "hold", "request": {"kind": "best", "count": 1, "area": {"in": "anywhere"}}}),
    )
    .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    let hold = held["placed"]["hold"].clone();
    let started = call_retrying(&fan, event, json!({"cmd": "submit_payment", "hold": hold})).await;
    assert_eq!(started["reply"], "payment_started", "{started}");
    let settled = socket
        .until(Duration::from_secs(60), |p| {
            p["push"] == "purchased" || p["push"] == "payment_declined"
        })
        .await
        .expect("the payment settles");
    settled["push"] == "purchased"
}

/// A fan command, retried while the event is busy (moving).
async fn call_retrying(fan: &Fan, event: u64, command: Value) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = fan.send(event, command.clone()).await;
        if response.status == 200 {
            return response.json();
        }
        assert!(
            response.status == 503 && Instant::now() < deadline,
            "{command}: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kill n0 (the first endpoint): every command answers through another
/// endpoint, health fails; start it again: health passes.
fn one_node_killed(cluster: &mut Cluster) {
    cluster.nodes[0].kill9();
    let run = cluster.ctl(&["cluster", "health"]).exits(1);
    assert!(run.stdout.contains("unhealthy"), "{run:?}");
    assert!(
        run.stdout.contains(&cluster.http[0]),
        "the dead endpoint is named: {run:?}"
    );
    // Its events are taken over; every command answers meanwhile.
    eventually("the killed node's events are taken over", || {
        let list = cluster.ctl(&["event", "list", "-o", "json"]).ok().json();
        list["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["owner"].is_string() && e["owner"] != "n0")
    });
    for args in [
        &["cluster", "status"][..],
        &["node", "list"],
        &["node", "describe", "n1"],
        &["event", "list", "-o", "wide"],
        &["event", "describe", "1"],
        &["event", "audit", "1"],
        &["event", "pause", "1"],
        &["event", "resume", "1"],
        &["placement", "--diff"],
    ] {
        cluster.ctl(args).ok();
    }
    cluster.ctl(&["cluster", "health", "-o", "json"]).exits(1);

    cluster.nodes[0].restart().expect("n0 starts again");
    cluster.await_placeable();
    eventually("health passes once n0 is back", || {
        cluster.ctl(&["cluster", "health"]).code == 0
    });
    let nodes = cluster.ctl(&["node", "list", "-o", "json"]).ok().json();
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(3), "{nodes}");

    // Without --id, create takes the next free id.
    let venue = cluster.dir.join("venue.json").display().to_string();
    let run = cluster
        .ctl(&["event", "create", "-f", &venue, "--starts-at", "+7d"])
        .ok();
    assert!(run.stdout.starts_with("event 4 ready"), "{run:?}");
    // Errors are JSON on stderr with -o json, with the exit code.
    let run = cluster
        .ctl(&["event", "describe", "77", "-o", "json"])
        .exits(3);
    let error: Value = serde_json::from_str(run.stderr.trim()).expect("a JSON error");
    assert_eq!(error["error"]["code"], "unknown_event", "{run:?}");
    assert_eq!(error["error"]["exit_code"], 3, "{run:?}");
}

// ----- top, in a terminal ----------------------------------------------------------

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let available = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            available,
            "tmux is needed for the `top` test (scripts/test.sh installs it)"
        );
        Tmux {
            socket: format!("onsalectl-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux runs");
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Wait until the screen satisfies `check`; the screen.
    fn until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "not within {WAIT:?}: {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", "top"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The number after `poll ` in top's title line.
fn polls(screen: &str) -> u64 {
    screen
        .split("poll ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The events table's row for `event` (its cells).
fn event_row(screen: &str, event: u64) -> Option<Vec<String>> {
    screen.lines().find_map(|line| {
        let cells: Vec<String> = line
            .trim_matches(|c| c == '│' || c == ' ')
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        (cells.first() == Some(&event.to_string()) && cells.len() > 8).then_some(cells)
    })
}

#[test]
fn top_draws_updates_redraws_on_resize_and_quits_on_q() {
    let cluster = Cluster::start("ctl-top", 2);
    let venue = cluster.file("venue.json", &venue_json(1, 2, 10));
    cluster
        .ctl(&[
            "event",
            "create",
            "-f",
            &venue,
            "--id",
            "5",
            "--name",
            "Top night",
            "--starts-at",
            "+30d",
        ])
        .ok();
    let tmux = Tmux::new();
    let command = format!(
        "{} --endpoint {} --token-file {} top --event 5",
        bin(),
        cluster.endpoints(),
        cluster.dir.join("token").display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);

    // It draws: the title, the event (scheduled, nobody waiting) and the nodes.
    let screen = tmux.until("top draws the event and both nodes", |s| {
        s.contains("onsalectl top")
            && event_row(s, 5).is_some()
            && s.contains("│n0 ")
            && s.contains("│n1 ")
    });
    let row = event_row(&screen, 5).expect("the event's row");
    assert_eq!(&row[1..5], ["Top", "night", "scheduled", "0"], "{screen}");

    // It updates: fans queue before the sale opens, then the sale opens.
    let gateway = cluster.http[0].clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for i in 0..4 {
            let fan = Fan::login(&gateway, &format!("top-fan-{i}")).await;
            call_retrying(&fan, 5, json!({"cmd": "join"})).await;
        }
    });
    tmux.until("top shows four fans waiting", |s| {
        event_row(s, 5).is_some_and(|r| r[3] == "scheduled" && r[4] == "4")
    });
    cluster.ctl(&["event", "open", "5"]).ok();
    let before = polls(&tmux.screen());
    let screen = tmux.until("top shows the sale open and keeps polling", |s| {
        event_row(s, 5).is_some_and(|r| r[3] == "on_sale") && polls(s) > before
    });
    assert!(
        screen.contains("admissions/s"),
        "the sparklines are drawn: {screen}"
    );

    // A resize redraws at the new size.
    tmux.run(&["resize-window", "-t", "top", "-x", "100", "-y", "30"]);
    let screen = tmux.until("top redraws at 100 columns", |s| {
        s.contains("onsalectl top")
            && s.lines().all(|l| l.chars().count() <= 100)
            && s.lines().any(|l| l.chars().count() > 90)
    });
    save_screen(&screen);

    // q quits.
    tmux.run(&["send-keys", "-t", "top", "q"]);
    eventually("top quits on q", || !tmux.alive());

    // On a terminal, --watch redraws a table and drain draws a progress bar.
    let ctl = |args: &str| {
        format!(
            "{} --endpoint {} --token-file {} {args}; sleep 60",
            bin(),
            cluster.endpoints(),
            cluster.dir.join("token").display()
        )
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        &ctl("node list -w --interval 300ms"),
    ]);
    tmux.until("the watched table is drawn", |s| {
        s.contains("Ctrl-C to stop") && s.contains("NAME") && s.contains("n1")
    });
    tmux.run(&["kill-session", "-t", "top"]);
    let drained = owner(&cluster, 5);
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "120",
        "-y",
        "40",
        &ctl(&format!("node drain {drained}")),
    ]);
    let screen = tmux.until("the drain finishes on the terminal", |s| {
        s.contains(&format!("node {drained} drained"))
    });
    assert!(
        screen.contains("] 1/1 events moved"),
        "the progress bar: {screen}"
    );
    assert_ne!(owner(&cluster, 5), drained);
}

/// Keep one screen as an artefact: `<target dir>/onsalectl-top-screen.txt`.
fn save_screen(screen: &str) {
    // The test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test executable");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .expect("the target directory");
    let path = target.join("onsalectl-top-screen.txt");
    std::fs::write(&path, screen).expect("save the screen");
    println!("top's screen: {}", path.display());
}
