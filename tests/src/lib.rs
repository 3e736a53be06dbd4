//! Support for the cross-crate tests in `tests/tests/`: real node
//! processes on a real store, driven over the node RPC on loopback, and a
//! real NATS JetStream broker for the change feed ([`nats`]).

pub mod bench;
pub mod client;
pub mod nats;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use onsale_schema::spec::EventSpec;
use onsale_schema::venue::{PriceLevelFile, RowFile, SeatFile, SectionFile, VenueFile};
use onsale_schema::{EventConfig, EventId, Millis};

/// A free loopback port (bound, then released for the node to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh directory for one test's store.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("onsale-{name}-{}-{}", std::process::id(), nanos()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Wall-clock milliseconds, as the node sees them.
pub fn now_ms() -> u64 {
    onsale_actors::clock::wall_now().0
}

/// A small venue: `sections` × `rows` × `seats` seats.
pub fn venue_json(sections: u32, rows: u32, seats: u32) -> String {
    let file = VenueFile {
        name: "Test Hall".into(),
        city: "Loopback".into(),
        price_levels: vec![PriceLevelFile {
            id: "std".into(),
            name: "Standard".into(),
            price_cents: 5_000,
        }],
        sections: (0..sections)
            .map(|s| SectionFile {
                id: format!("S{s}"),
                name: format!("Section {s}"),
                price_level: Some("std".into()),
                map: None,
                rows: (0..rows)
                    .map(|r| RowFile {
                        id: format!("{}", r + 1),
                        price_level: None,
                        seats: (0..seats)
                            .map(|n| SeatFile {
                                id: format!("{}", n + 1),
                                price_level: None,
                                accessible: false,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_string(&file).expect("venue encodes")
}

/// An event spec over `venue_json` with `config`.
pub fn spec(event: u64, venue_json: String, config: EventConfig) -> EventSpec {
    EventSpec {
        event: EventId(event),
        name: format!("Test event {event}"),
        city: "Loopback".into(),
        starts_at: Millis(now_ms() + 86_400_000),
        venue_json,
        config,
    }
}

/// Create the event `spec` describes through the node RPC at `addr` and
/// open its sale; panics naming what was refused.
pub async fn create_and_open(addr: &str, spec: EventSpec) {
    use onsale_schema::message::{Command as EventCommand, Reply, SaleCommand};
    let event = spec.event;
    let client = onsale_cluster::rpc::Client::connect(addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("connects");
    let created = client.create_event(spec).await.expect("create");
    assert!(
        matches!(created, Reply::Overview { .. }),
        "create: {created:?}"
    );
    let open = EventCommand::Sale {
        command: SaleCommand::Open,
    };
    let opened = client.call(event, open).await.expect("open");
    assert!(matches!(opened, Reply::Sale { .. }), "open: {opened:?}");
}

/// The operators' bearer token every test node is started with.
pub const OPERATOR_TOKEN: &str = "operator token for tests";

/// The `onsale` binary, the very program users run (built from `node/`),
/// beside this test executable: `target/<profile>/onsale`.
///
/// The first call in a test process runs `cargo build` for it, so that
/// `cargo test -p onsale-tests` alone works and never starts a stale
/// binary (`cargo test --workspace` has built one already: `node/` has
/// integration tests of its own).
///
/// The build uses the profile `cargo test` builds everything with (`test`
/// in `target/debug`, `release` in `target/release`), so the libraries
/// are shared with the test build. With the `dev` profile, every
/// alternation of `cargo test` and this build would recompile the whole
/// workspace at another opt-level. What may still differ: features that
/// dev-dependencies turn on in a few third-party crates under
/// `cargo test --workspace` (clap, regex-syntax, rustix); cargo keeps each
/// variant, so after a change only the binary itself is built twice.
pub fn onsale_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_onsale().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("the onsale binary: {e}"))
}

fn build_onsale() -> anyhow::Result<PathBuf> {
    // target/<profile>/deps/<test executable>
    let exe = std::env::current_exe().context("the test executable's path")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in target/<profile>/deps")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "test",
        Some("release") => "release",
        other => bail!("unexpected target directory {other:?} for the test executable"),
    };
    let target_dir = profile_dir
        .parent()
        .context("the test executable is not in target/<profile>/deps")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--locked", "--profile", profile])
        .args(["-p", "onsale-node", "--bin", "onsale"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .context("running cargo build for the onsale binary")?;
    if !status.success() {
        bail!("cargo build -p onsale-node --bin onsale failed: {status}");
    }
    let bin = profile_dir.join("onsale");
    if !bin.is_file() {
        bail!("{} is missing after cargo build", bin.display());
    }
    Ok(bin)
}

/// A node process under test: the `onsale` binary on a scratch store.
#[derive(Debug)]
pub struct NodeProcess {
    bin: PathBuf,
    child: Option<Child>,
    pub addr: String,
    store: PathBuf,
    extra: Vec<String>,
    /// How it is addressed and when it is ready.
    launch: Launch,
    /// A command the binary runs under (`ip netns exec NAME`), if any.
    wrapper: Vec<String>,
    /// Time from spawn to the "serving" line, for the last start.
    pub ready_in: Duration,
}

impl NodeProcess {
    /// Start `onsale` on `store`, serving the node RPC on a free port.
    pub fn start(store: &Path, extra: &[&str]) -> anyhow::Result<NodeProcess> {
        let mut node = NodeProcess {
            bin: onsale_binary()?,
            child: None,
            addr: format!("127.0.0.1:{}", free_port()),
            store: store.to_path_buf(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            launch: Launch::Rpc,
            wrapper: Vec::new(),
            ready_in: Duration::ZERO,
        };
        node.spawn()?;
        Ok(node)
    }

    /// Start `onsale` serving only the HTTP gateway, on a free port
    /// (`addr` is then the HTTP address). Tests pass `--demo` in `extra` to
    /// get the demo event.
    pub fn start_http(store: &Path, extra: &[&str]) -> anyhow::Result<NodeProcess> {
        let mut node = NodeProcess {
            bin: onsale_binary()?,
            child: None,
            addr: format!("127.0.0.1:{}", free_port()),
            store: store.to_path_buf(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            launch: Launch::Http,
            wrapper: Vec::new(),
            ready_in: Duration::ZERO,
        };
        node.spawn()?;
        Ok(node)
    }

    /// Start `onsale` on `store` with exactly `args` (no address flag is
    /// added): ready when a line containing `ready_line` is printed. `addr`
    /// is what the test calls it by (its HTTP or cluster address).
    pub fn start_with(
        store: &Path,
        addr: &str,
        args: &[String],
        ready_line: &str,
    ) -> anyhow::Result<NodeProcess> {
        NodeProcess::start_wrapped(&[], store, addr, args, ready_line)
    }

    /// As [`NodeProcess::start_with`], the binary run under `wrapper`
    /// (e.g. `ip netns exec NAME`, which execs it: the pid is the node's).
    pub fn start_wrapped(
        wrapper: &[&str],
        store: &Path,
        addr: &str,
        args: &[String],
        ready_line: &str,
    ) -> anyhow::Result<NodeProcess> {
        let mut node = NodeProcess {
            bin: onsale_binary()?,
            child: None,
            addr: addr.to_owned(),
            store: store.to_path_buf(),
            extra: args.to_vec(),
            launch: Launch::Given {
                ready_line: ready_line.to_owned(),
            },
            wrapper: wrapper.iter().map(|s| (*s).to_owned()).collect(),
            ready_in: Duration::ZERO,
        };
        node.spawn()?;
        Ok(node)
    }

    /// The process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let (address, ready_line): (Vec<&str>, &str) = match &self.launch {
            Launch::Http => (vec!["--listen", &self.addr], "onsale serving http://"),
            Launch::Rpc => (vec!["--rpc", &self.addr], " serving on "),
            Launch::Given { ready_line } => (vec![], ready_line.as_str()),
        };
        let ready_line = ready_line.to_owned();
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.bin);
                command
            }
            None => Command::new(&self.bin),
        };
        let mut child = command
            .args(&address)
            .arg("--store")
            .arg(&self.store)
            .args(&self.extra)
            .env(
                "ONSALE_LOG",
                std::env::var("ONSALE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("ONSALE_TOKEN_SECRET", "test secret shared by every node")
            .env("ONSALE_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the node")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("node did not start serving within 30 s");
            }
            match lines.next() {
                Some(Ok(line)) if line.contains(&ready_line) => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("reading node stdout: {e}"),
                None => bail!("node exited before serving: {:?}", child.wait()),
            }
        }
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.ready_in = started.elapsed();
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill -9 and start again on the same store and address.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    /// Stop the process (SIGSTOP) or let it go on (SIGCONT), to model a
    /// node that is paused or partitioned.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
    }
}

/// How a [`NodeProcess`] is addressed and when it is ready.
#[derive(Debug)]
enum Launch {
    /// `--rpc addr`, ready when the node RPC serves.
    Rpc,
    /// `--listen addr`, ready when HTTP serves.
    Http,
    /// The arguments as given, ready at this line.
    Given { ready_line: String },
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The index `i` of the node `n{i}` holding a live lease on `event` in the
/// embedded store at `store`, read directly (as an operator would), if any.
pub fn lease_holder(store: &Path, event: u64) -> Option<usize> {
    use onsale_cluster::store::Store;
    let store = onsale_cluster::store::sqlite::SqliteStore::open(store).ok()?;
    let lease = store.event_lease(onsale_schema::EventId(event)).ok()??;
    if lease.expires.0 <= now_ms() {
        return None;
    }
    lease.node.0.strip_prefix('n')?.parse().ok()
}

/// A tiny deterministic generator for test drivers (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
