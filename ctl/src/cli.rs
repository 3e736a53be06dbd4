//! The command line (clap). Exit codes: 0 ok, 1 error, 2 usage (also a
//! malformed venue or config file), 3 not found, 4 conflict or wrong
//! state, 5 timed out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

const AFTER_HELP: &str = "\
Endpoints: --endpoint http://HOST:PORT,... (or ONSALE_ENDPOINT); when one does not \
answer the next is tried. Token: --token-file FILE, or ONSALE_OPERATOR_TOKEN.

Exit codes: 0 ok, 1 error, 2 usage or invalid input file, 3 not found, \
4 conflict or wrong state, 5 timed out.";

/// onsalectl: operate an onsale cluster through the operator HTTP API of any node.
#[derive(Debug, Parser)]
#[command(name = "onsalectl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Operator endpoints, tried in order (comma-separated).
    #[arg(
        long,
        env = "ONSALE_ENDPOINT",
        value_delimiter = ',',
        global = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub endpoint: Vec<String>,

    /// A file holding the operator token (else ONSALE_OPERATOR_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, global = true, default_value = "table")]
    pub output: Format,

    /// Same as `-o json`.
    #[arg(long, global = true)]
    pub json: bool,

    /// Tables without their header line.
    #[arg(long, global = true)]
    pub no_headers: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The cluster as a whole.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Nodes: list, describe, cordon, drain.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Events: list, create, open, pause, move, audit.
    #[command(subcommand)]
    Event(EventCommand),
    /// Desired vs actual owner of every event.
    Placement {
        /// Only events not on their desired owner.
        #[arg(long)]
        diff: bool,
    },
    /// A live view of events and nodes (q quits).
    Top {
        /// Follow one event in detail.
        #[arg(long, value_name = "E")]
        event: Option<u64>,
        /// Time between polls.
        #[arg(long, default_value = "1s", value_name = "DURATION")]
        interval: String,
    },
    /// Print a shell completion script: `onsalectl completions bash > /etc/bash_completion.d/onsalectl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `-w/--watch` and its poll interval.
#[derive(Clone, Debug, Args)]
pub struct Watch {
    /// Keep polling: NDJSON lines, or a redrawn table on a terminal.
    #[arg(short, long)]
    pub watch: bool,
    /// Time between polls with --watch.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub interval: String,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes up/total, events by sale state, leases, store health.
    Status {
        #[command(flatten)]
        watch: Watch,
    },
    /// Exit 0 when every node is up and reachable, every endpoint answers
    /// and the store is ok; 1 otherwise, naming each problem.
    Health {
        /// Also unhealthy when fewer nodes (that own events) than this are up.
        #[arg(long, value_name = "N")]
        expect_nodes: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Every node: address, role, state, events, fans, heartbeat age.
    List {
        #[command(flatten)]
        watch: Watch,
    },
    /// One node in detail.
    Describe { node: String },
    /// Stop placing new events on the node (its events stay).
    Cordon { node: String },
    /// Place events on the node again (also ends a drain).
    Uncordon { node: String },
    /// Cordon the node and move each of its events off it, online.
    Drain {
        node: String,
        /// Give up waiting after this long (exit 5); the drain goes on.
        #[arg(long, default_value = "60s", value_name = "DURATION")]
        deadline: String,
        /// Start the drain and return at once.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Every event: sale, owner, epoch, desired owner, seats, waiting.
    List {
        /// Only events owned by this node.
        #[arg(long, value_name = "N")]
        node: Option<String>,
        /// Only events in this sale state.
        #[arg(long, value_name = "S", value_parser = clap::builder::PossibleValuesParser::new(crate::api::SALE_STATES))]
        state: Option<String>,
        #[command(flatten)]
        watch: Watch,
    },
    /// Lease, epoch, expiry, placement ranking and the sale's numbers.
    Describe { event: u64 },
    /// Create an event from a venue file (checked locally first). Idempotent by id.
    Create(CreateArgs),
    /// Open the sale (scheduled or paused → on sale).
    Open { event: u64 },
    /// Pause the sale: the queue stays, nobody is admitted.
    Pause { event: u64 },
    /// Resume a paused sale.
    Resume { event: u64 },
    /// Close the sale for good.
    Close { event: u64 },
    /// Move the event online to another node.
    Move {
        event: u64,
        /// The node to move it to.
        #[arg(long, value_name = "N")]
        to: String,
        /// After the move, wait until the event serves on the new node.
        #[arg(long)]
        wait: bool,
        /// Longest wait with --wait.
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        deadline: String,
    },
    /// The event's audit: exit 1 on any problem.
    Audit { event: u64 },
    /// Presale codes for registered fans, one `fan,name,code` line each
    /// (by fan id with --fan, by login name with --name or a --names
    /// file, one name per line).
    Codes {
        event: u64,
        #[arg(long = "fan", value_name = "FAN")]
        fans: Vec<u64>,
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        #[arg(long, value_name = "FILE")]
        names_file: Option<PathBuf>,
    },
    /// The proof of work joins need, in leading zero bits (0: none but the
    /// event's automatic rule).
    Stamp { event: u64, bits: u8 },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The venue file (JSON, as venues/club.json).
    #[arg(short = 'f', long = "file", value_name = "VENUE")]
    pub file: PathBuf,
    /// Event settings (JSON; fields as in EventConfig, unknown fields refused).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The event id (without it: the next free id; give it to make retries idempotent).
    #[arg(long, value_name = "E")]
    pub id: Option<u64>,
    /// The event's name (default: the venue's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The city (default: the venue's city).
    #[arg(long)]
    pub city: Option<String>,
    /// When the event starts: RFC 3339, ms since the epoch, or +DURATION.
    #[arg(long, value_name = "T")]
    pub starts_at: String,
    /// When the sale opens by itself: RFC 3339, ms since the epoch, or +DURATION.
    #[arg(long, value_name = "T")]
    pub opens_at: Option<String>,
    /// Fans who join before the opening get random places when it opens.
    #[arg(long)]
    pub pre_queue_draw: bool,
    /// Until when joining takes a presale code: RFC 3339, ms, or +DURATION.
    #[arg(long, value_name = "T")]
    pub presale_until: Option<String>,
    /// Check the files and print what would be created; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}
