//! A real NATS JetStream broker for the change feed's tests (issue 15):
//! Debian's `nats-server` run as a child process on a free loopback port,
//! with file storage in a scratch directory, killed with SIGKILL and
//! restarted on the same port and store when a test asks.
//!
//! Beside the process, plain helpers a test calls by URL: read back every
//! message a stream holds, in stream order ([`stream_messages`]), and make
//! the broker misbehave for bad-input tests (a stream that refuses
//! publishes once full, a stream deleted or shrunk under the feed).
//!
//! Every helper panics with what went wrong, naming the server's log where
//! it helps: these are test fixtures, and a test that cannot set up its
//! broker has nothing better to do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt as _;

use crate::{free_port, scratch_dir};

/// How long a start or restart may take until the server accepts clients
/// and answers JetStream requests. A file store of a few thousand messages
/// recovers in milliseconds; the bound is for a machine busy compiling.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How long [`stream_messages`] may take to read a whole stream.
const READ_WITHIN: Duration = Duration::from_secs(60);

/// How many message reads [`stream_messages`] keeps in flight: 100,000
/// messages took 16 s one at a time on loopback, 8 s with 64 (two cores,
/// busy compiling).
const READ_IN_FLIGHT: usize = 64;

/// How long any one request to the broker (connect, a JetStream API call)
/// may take inside the helpers.
const REQUEST_WITHIN: Duration = Duration::from_secs(5);

/// The duplicate window of streams made by [`create_stream`]: the server's
/// default, spelt out so tests can rely on it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How many lines of the server's log a panic quotes.
const LOG_TAIL_LINES: usize = 30;

/// A `nats-server -js` process under test, on `127.0.0.1` and a store
/// directory of its own. Dropping it kills the process and removes the
/// directory (kept, and named on stderr, when the test is panicking).
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    /// The scratch directory: the log file and the JetStream store (`js/`).
    dir: PathBuf,
}

impl NatsServer {
    /// Start a server with JetStream on a free loopback port and a fresh
    /// store, and wait until it accepts clients and JetStream answers.
    ///
    /// Panics when no `nats-server` binary is found (see
    /// [`nats_server_binary`]) or when the server is not ready within 30 s.
    pub async fn start() -> NatsServer {
        let mut server = NatsServer {
            bin: nats_server_binary(),
            child: None,
            port: free_port(),
            dir: scratch_dir("nats"),
        };
        server.spawn().await;
        server
    }

    /// The address clients connect to: `nats://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store directory (`-sd`), kept across restarts.
    #[must_use]
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("js")
    }

    /// The server's log file.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }

    /// The process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and wait for the process to be gone: no shutdown, no flush
    /// of the store beyond what the server had written already.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill -9 (if running) and start again on the same port and store
    /// directory, waiting until it is ready as [`NatsServer::start`] does.
    /// Clients connected before reconnect by themselves, and then send
    /// what they buffered while it was down: publishes whose acks timed out
    /// may still be stored, after a gap (see `tests/nats_harness.rs`).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let log = self.log_path();
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store_dir())
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.bin.display()));
        self.child = Some(child);
        if tokio::time::timeout(READY_WITHIN, self.wait_ready())
            .await
            .is_err()
        {
            self.panic_with_log(&format!("not ready within {READY_WITHIN:?}"));
        }
    }

    /// Until a fresh client connects and `$JS.API.INFO` answers. A server
    /// that exits meanwhile is a panic, not a wait.
    async fn wait_ready(&mut self) {
        let url = self.url();
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.panic_with_log(&format!("exited before it was ready: {status}"));
            }
            if jetstream_answers(&url).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn panic_with_log(&mut self, what: &str) -> ! {
        self.kill9();
        panic!(
            "nats-server on {} {what}; the last lines of {}:\n{}",
            self.url(),
            self.log_path().display(),
            log_tail(&self.log_path(), LOG_TAIL_LINES),
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("nats-server's directory kept: {}", self.dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a fresh client connects to `url` and JetStream answers an
/// account info request (`$JS.API.INFO`), each within [`REQUEST_WITHIN`].
///
/// The request is sent raw: async-nats 0.52's `Context::query_account`
/// cannot decode nats-server 2.9's answer, which lacks the reserved
/// memory and storage fields of later servers.
async fn jetstream_answers(url: &str) -> bool {
    let Ok(client) = connect(url).await else {
        return false;
    };
    let Ok(reply) = client.request("$JS.API.INFO", Bytes::new()).await else {
        return false;
    };
    let Ok(info) = serde_json::from_slice::<serde_json::Value>(&reply.payload) else {
        return false;
    };
    info["type"] == "io.nats.jetstream.api.v1.account_info_response" && info.get("error").is_none()
}

/// The last `lines` lines of the file at `path`, or why it is unreadable.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// The `nats-server` to run: `$ONSALE_NATS_SERVER` if set, else
/// `nats-server` on `PATH`, else `/usr/sbin/nats-server` (where Debian
/// installs it, not on a normal user's `PATH`).
///
/// Panics, saying how to install it, when there is none.
#[must_use]
pub fn nats_server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ONSALE_NATS_SERVER") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ONSALE_NATS_SERVER={} is not a file",
            bin.display()
        );
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|bin| bin.is_file());
    let debian = PathBuf::from("/usr/sbin/nats-server");
    match on_path {
        Some(bin) => bin,
        None if debian.is_file() => debian,
        None => panic!(
            "no nats-server for the change feed's tests: apt-get install nats-server \
             (scripts/test.sh installs it), or set ONSALE_NATS_SERVER to its path"
        ),
    }
}

/// A client of `url`, connected within [`REQUEST_WITHIN`], whose requests
/// time out after as long.
pub async fn connect(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .connection_timeout(REQUEST_WITHIN)
        .request_timeout(Some(REQUEST_WITHIN))
        .connect(url)
        .await
}

/// A JetStream context on a fresh client of `url`; panics if it cannot
/// connect.
pub async fn jetstream_context(url: &str) -> jetstream::Context {
    let client = connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    jetstream::new(client)
}

/// One message a stream holds, as [`stream_messages`] read it.
#[derive(Clone, Debug)]
pub struct StreamMessage {
    /// Its sequence in the stream (from 1, gaps where messages were
    /// deleted).
    pub stream_seq: u64,
    /// The subject it was published to.
    pub subject: String,
    /// Its `Nats-Msg-Id` header, the deduplication id, if it had one.
    pub msg_id: Option<String>,
    /// The body as published.
    pub payload: Bytes,
}

impl StreamMessage {
    /// The body as JSON; panics, naming the message, if it is not.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "message {} on {} is not JSON ({e}): {:?}",
                self.stream_seq,
                self.subject,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

/// Every message `stream` on the broker at `url` holds now, in stream
/// order, read within 60 s (else a panic).
///
/// Reads by sequence from the stream's first to its last with the
/// `STREAM.MSG.GET` API (in every JetStream server, and needing no
/// consumer and no `allow_direct`), [`READ_IN_FLIGHT`] requests at a
/// time, skipping sequences deleted inside the range.
pub async fn stream_messages(url: &str, stream: &str) -> Vec<StreamMessage> {
    match tokio::time::timeout(READ_WITHIN, read_stream(url, stream)).await {
        Ok(messages) => messages,
        Err(_) => panic!("reading stream {stream} on {url} took over {READ_WITHIN:?}"),
    }
}

async fn read_stream(url: &str, name: &str) -> Vec<StreamMessage> {
    let js = jetstream_context(url).await;
    let mut stream = js
        .get_stream(name)
        .await
        .unwrap_or_else(|e| panic!("stream {name} on {url}: {e}"));
    let state = stream
        .info()
        .await
        .unwrap_or_else(|e| panic!("stream {name}'s info: {e}"))
        .state
        .clone();
    let mut messages = Vec::with_capacity(usize::try_from(state.messages).unwrap_or(0));
    if state.messages == 0 {
        return messages;
    }
    let stream = &stream;
    let mut gets = futures::stream::iter(state.first_sequence..=state.last_sequence)
        .map(|seq| async move { (seq, stream.get_raw_message(seq).await) })
        .buffered(READ_IN_FLIGHT);
    while let Some((seq, got)) = gets.next().await {
        let raw = match got {
            Ok(raw) => raw,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => continue,
            Err(e) => panic!("stream {name}, message {seq}: {e}"),
        };
        messages.push(StreamMessage {
            stream_seq: raw.sequence,
            subject: raw.subject.to_string(),
            msg_id: raw
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|id| id.as_str().to_owned()),
            payload: raw.payload,
        });
    }
    messages
}

/// Create stream `name` on file storage capturing `subjects`, with the
/// [`DUPLICATE_WINDOW`], holding at most `max_msgs` messages (`None`: no
/// limit) and refusing publishes beyond that (`DiscardPolicy::New`) rather
/// than dropping its oldest.
pub async fn create_stream(url: &str, name: &str, subjects: &[&str], max_msgs: Option<u64>) {
    let js = jetstream_context(url).await;
    let config = stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_messages: max_msgs_field(max_msgs),
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    js.create_stream(config)
        .await
        .unwrap_or_else(|e| panic!("creating stream {name} on {url}: {e}"));
}

/// Delete stream `name` and every message in it, as an operator could
/// under a running feed.
pub async fn delete_stream(url: &str, name: &str) {
    let js = jetstream_context(url).await;
    js.delete_stream(name)
        .await
        .unwrap_or_else(|e| panic!("deleting stream {name} on {url}: {e}"));
}

/// Set stream `name`'s message limit to `max_msgs` (`None`: no limit),
/// keeping the rest of its configuration. A limit below what the stream
/// holds drops its oldest messages at once (limits retention), whatever
/// the discard policy, which only governs new publishes.
pub async fn update_stream_max_msgs(url: &str, name: &str, max_msgs: Option<u64>) {
    let js = jetstream_context(url).await;
    let mut stream = js
        .get_stream(name)
        .await
        .unwrap_or_else(|e| panic!("stream {name} on {url}: {e}"));
    let mut config = stream
        .info()
        .await
        .unwrap_or_else(|e| panic!("stream {name}'s info: {e}"))
        .config
        .clone();
    config.max_messages = max_msgs_field(max_msgs);
    js.update_stream(config)
        .await
        .unwrap_or_else(|e| panic!("updating stream {name} on {url}: {e}"));
}

/// JetStream's spelling of a message limit: `-1` for none.
fn max_msgs_field(max_msgs: Option<u64>) -> i64 {
    max_msgs.map_or(-1, |n| {
        i64::try_from(n).expect("a message limit below 2^63")
    })
}
