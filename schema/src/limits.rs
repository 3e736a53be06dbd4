//! The bounds on what crosses a process boundary or is stored (messages,
//! records, venues, fans, holds), in one place, with what each costs.
//!
//! A decoder, queue, map or loop without a named bound is a bug. Bounds
//! that belong to one component's own machinery are named beside it, each
//! with its cost, and listed here so that none is hidden:
//! - `onsale_actors::event_actor`: `MAILBOX_MAX` (commands queued per
//!   event), `JOURNAL_PENDING_MAX` (records not yet durable),
//!   `GATED_MAX` (replies and pushes waiting for durability),
//!   `SNAPSHOT_EVERY_RECORDS`, `SNAPSHOT_EVERY`, `TICK`.
//! - `onsale_actors::journal`: `BATCH_RECORDS_MAX` (records per group
//!   commit), `RETRY_FOR` (how long a failing store is retried).
//! - `onsale_actors::checkout_core`: `HOLD_WARNING_MS`,
//!   `PAYMENT_QUERY_AFTER_MS`, `QUERY_INTERVAL_MAX_MS`.
//! - `onsale_cluster::node`: `PUSH_BUFFER` (pushes per subscriber);
//!   `onsale_cluster::store`: `JOURNAL_APPEND_BYTES_MAX`, SQLite's
//!   `BUSY_TIMEOUT`, FoundationDB's `CHUNK_BYTES`,
//!   `TRANSACTION_WRITE_BYTES`, `TRANSACTION_TIMEOUT_MS`,
//!   `TRANSACTION_RETRY_LIMIT`; `onsale_cluster::rpc`:
//!   `INFLIGHT_PER_CONNECTION`, `OUTBOX_FRAMES`,
//!   `SUBSCRIPTIONS_PER_CONNECTION`.
//! - the gateway: `edge::EDGE_TTL`; `auth::LOGIN_NAME_BYTES_MAX`,
//!   `auth::WEBHOOK_TOLERANCE_MS`; `ws::GARBAGE_MAX`, `ws::PING_EVERY`,
//!   `ws::FAN_SOCKETS_MAX`, `ws::WRITE_TIMEOUT`, `ws::SILENCE_MAX`,
//!   `ws::READ_BYTES_MAX`; the hub's `TICK` and `POSITION_EVERY`, its
//!   outbox and control-channel bounds; the HTTP accept loop's header,
//!   idle and request timeouts and its connection budget.

/// Largest encoded message accepted from a peer or a client (commands,
/// replies, pushes). 64 KiB holds a seat list for a whole large section.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Largest HTTP request head (request line and headers) a connection may
/// buffer; past it the gateway answers 431 `headers_too_large` and closes.
/// A browser's head with cookies is 1-4 KiB. hyper's own default (~400 KB)
/// let 1,000 sockets sending unfinished heads pin 387 MB for 15 s; at
/// 16 KiB the same costs 16 MB. hyper refuses a bound below 8 KiB.
pub const HTTP_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Largest node RPC frame. Larger than a message because an operator's
/// `CreateEvent` carries a whole venue file (the 60,000-seat example is
/// ~0.8 MB); each connection buffers at most one frame.
pub const RPC_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Node RPC connections a node holds at once; past it, new ones are closed
/// at once. Taken out of the gateway's connection budget (both come from
/// the open-files limit), so 20,000 idle RPC sockets can no longer starve
/// fans of file handles. Each costs a socket, two small tasks and at most
/// one frame being read.
pub const RPC_CONNECTIONS_MAX: usize = 256;

/// Largest first frame of an RPC connection (the `Hello`, ~40 bytes): an
/// unauthenticated peer cannot make the node allocate for a large frame.
pub const RPC_HELLO_BYTES_MAX: usize = 256;

/// An RPC connection must prove the cluster secret within this of being
/// accepted, or it is closed.
pub const RPC_HELLO_TIMEOUT_MS: u64 = 5_000;

/// Once a frame's first byte has arrived, the whole frame must arrive
/// within this: a 4 MiB length followed by a trickle no longer pins a
/// buffer forever.
/// 4 MiB in 10 s is 0.4 MB/s, far below any link a node talks over.
pub const RPC_FRAME_READ_TIMEOUT_MS: u64 = 10_000;

/// An RPC connection that sends nothing for this long, with no request in
/// flight and no subscription, is closed.
pub const RPC_IDLE_TIMEOUT_MS: u64 = 120_000;

/// Largest encoded snapshot accepted. A 60,000-seat event sold out in
/// parties of one encodes to about 0.6 MB; 16 MiB leaves room for huge
/// venues while refusing garbage that claims to be gigabytes long.
pub const SNAPSHOT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest venue file accepted (JSON). The 60,000-seat example is ~1.3 MB.
pub const VENUE_FILE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Seats in one venue. Seat indices are `u32`; this keeps the seat state
/// array of one event under a few MB.
pub const VENUE_SEATS_MAX: usize = 250_000;

/// Sections in one venue (`SectionIdx` is `u16`).
pub const VENUE_SECTIONS_MAX: usize = 4_096;

/// Rows in one section.
pub const SECTION_ROWS_MAX: usize = 1_000;

/// Seats in one row. Bounds the cost of a best-adjacent scan of a row.
pub const ROW_SEATS_MAX: usize = 1_000;

/// Price levels in one venue (`PriceLevelIdx` is `u16`).
pub const VENUE_PRICE_LEVELS_MAX: usize = 256;

/// Length of any name or id string in a venue file, in bytes.
pub const NAME_BYTES_MAX: usize = 128;

/// Tickets one fan may buy for one event, whatever the event's config says.
pub const TICKETS_PER_FAN_MAX: u8 = 16;

/// Seats in one hold request (a list, or best-N). Equal to the hard ticket
/// cap: a request for more could never be granted.
pub const HOLD_SEATS_MAX: usize = TICKETS_PER_FAN_MAX as usize;

/// Fans admitted and shopping at once for one event, whatever the config
/// says. Each costs one entry in the shopper map and one timer.
pub const SHOPPERS_MAX: u32 = 100_000;

/// Fans known to one event core at once (waiting, admitted or done). At
/// ~40 bytes each this is ~1.3 GB: a core refuses joins beyond it with
/// `busy` instead of growing without bound.
pub const EVENT_FANS_MAX: usize = 32_000_000;

/// Fans in one event's pre-queue (joined before a drawn opening). Each is
/// durable: one journal entry, and up to 10 bytes in every snapshot, so a
/// full pre-queue adds ~10 MB to a snapshot (under `SNAPSHOT_BYTES_MAX`
/// with a 250,000-seat venue's orders). Joins beyond it are `busy` until
/// the opening.
pub const PRE_QUEUE_MAX: usize = 1_000_000;

/// Presale codes asked for in one operator request (a list of fan ids or
/// login names fits the operator routes' body limit, `MESSAGE_BYTES_MAX`).
pub const PRESALE_CODES_PER_REQUEST_MAX: usize = 1_000;

/// The most leading zero bits a join's proof of work may be asked for
/// (2^24 hashes: seconds on a desktop, tens of seconds on a phone, and
/// near the stamp's lifetime, `STAMP_TTL_MS`, for the slowest).
pub const STAMP_BITS_MAX: u8 = 24;

/// Drawn positions in one push to gateways (each entry up to 15 bytes, so
/// a push stays under half of `MESSAGE_BYTES_MAX`).
pub const DRAWN_PER_PUSH_MAX: usize = 2_048;

/// Voided payments remembered so that a provider confirmation arriving
/// after the void is refunded rather than lost. Oldest are forgotten first.
pub const VOIDED_PAYMENTS_MAX: usize = 65_536;

/// Fans in one journal entry of admissions. An entry is at most ~19 bytes
/// a fan (two varints), so 2,048 stay well inside [`MESSAGE_BYTES_MAX`]
/// and FoundationDB's 100 kB value limit.
pub const ADMISSIONS_PER_ENTRY_MAX: usize = 2_048;

/// Effects one core buffers before the shell must drain them. The shell
/// drains after every input; this guards against a shell that forgets.
pub const EFFECTS_MAX: usize = 1_000_000;

/// How long a queue token stays valid after it was issued, in ms.
/// A week covers presales announced days ahead.
pub const QUEUE_TOKEN_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Largest websocket frame a fan may send (its requests are tiny).
pub const WS_FRAME_BYTES_MAX: usize = 4 * 1024;

/// Frames queued for one fan's websocket before it counts as too slow and
/// is closed (it reconnects and resynchronises from its status).
pub const WS_OUTBOX_FRAMES_MAX: usize = 256;

/// How long a session token lasts, in ms (a day).
pub const SESSION_TTL_MS: u64 = 24 * 3600 * 1000;

/// Events returned by one catalogue search.
pub const EVENT_LIST_MAX: usize = 200;

/// How long a caller waits for a node's router (activating an event,
/// creating one) before answering `busy`. The router activates events one
/// at a time and an activation restores the event (snapshot + journal), so
/// a request queued behind a large restore may wait for it; past this it
/// gets `busy` and retries rather than hang. Well under the gateway's 30 s
/// request deadline.
pub const ROUTER_CALL_TIMEOUT_MS: u64 = 10_000;

/// Events owned by other nodes that one node remembers (the owner and its
/// lease, until the lease expires) so that it answers `not_owner` without
/// a store read. ~100 bytes each; when full, expired entries are dropped
/// first, and an event that still does not fit is answered through the
/// router and the store, as if not remembered.
pub const OWNERS_REMEMBERED_MAX: usize = 65_536;

/// How long a proof-of-work challenge (`stamp`) may be answered after the
/// gateway issued it, in ms; older answers are `stamp_stale`. It bounds
/// how long a spent stamp must be remembered (see `SPENT_STAMPS_MAX`), and
/// it must cover a phone's solve: at 20 bits (~1 M hashes) a phone takes
/// a few seconds, and at 22 bits all but ~1 in 100,000 finish within it
/// (the stamp module's cost section has the figures).
pub const STAMP_TTL_MS: u64 = 120_000;

/// How far ahead of a gateway's clock a challenge's issue time may be
/// (another gateway of the cluster, its clock slightly ahead, issued it),
/// in ms; further ahead is `stamp_future`.
pub const STAMP_CLOCK_SKEW_MS: u64 = 5_000;

/// Spent stamps one gateway remembers (replay protection). Each stays
/// until its challenge is stale (`STAMP_TTL_MS` plus at most a sixteenth
/// of it) and costs ~20-40 bytes (a hash set's load), so the bound is at
/// most ~40 MB and sustains ~8,000 stamped joins/s per gateway. When full
/// of live entries, spends are refused `stamp_busy` rather than a live one
/// forgotten, which would let its stamp be replayed.
pub const SPENT_STAMPS_MAX: usize = 1 << 20;
