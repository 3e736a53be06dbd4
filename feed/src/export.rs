//! Parquet export for analytics: one event's sales, admissions and journal
//! as four Parquet files that DuckDB, pandas or ClickHouse read directly
//! (`onsale export --event E --out DIR`).
//!
//! **What is read.** The event's spec, its stored state (snapshot +
//! journal after it, one read transaction of [`Store::load_event`]),
//! restored exactly as a node restores it ([`onsale_cluster::node::restore`])
//! to get the orders an audit would report; and the journal records the
//! store still keeps below the snapshot ([`Store::read_journal`], in pages
//! of [`JOURNAL_PAGE_RECORDS`]). Nothing in the store is written. A node
//! may serve the event meanwhile (SQLite in WAL mode lets readers and the
//! writer share the file): the export describes the event as of the
//! journal seq it restored, and ignores records written after it.
//!
//! **Files** (every id an unsigned 64-bit integer, every time a UTC
//! timestamp in milliseconds, every name a UTF-8 string):
//!
//! - `tickets.parquet`: one row per seat sold: `event, order, fan,
//!   position, payment, section, section_name, row, seat, seat_index,
//!   price_level, price_cents, sold_at`.
//! - `orders.parquet`: one row per order: `event, order, fan, position,
//!   payment, seats, total_cents, sold_at`.
//! - `admissions.parquet`: one row per admission the store knows of:
//!   `event, fan, position, admitted_at`. Every admission in the journal
//!   the store keeps, then the snapshot's shoppers and the buyers not
//!   listed by then (a buyer admitted before the kept journal has a null
//!   `admitted_at`). **After compaction, older admissions of fans who did
//!   not buy are no longer in the store**: a snapshot keeps only the fans
//!   still shopping, and compaction deletes the journal it folds in (unless
//!   the change feed keeps it, see `Store::set_feed_retention`). The change
//!   feed's stream has every admission.
//! - `timeline.parquet`: one row per journal record kept: `event, seq, at,
//!   kind, fan, hold, order, seats, detail`, where `kind` is one of
//!   [`TIMELINE_KINDS`], and `fan`, `hold`, `order`, `seats` (a count) and
//!   `detail` (the sale state, a release reason, a payment, ...) are null
//!   where the record has none.
//!
//! **All or nothing.** Each file is written to a temporary name in the
//! output directory, synced, and renamed into place only once all four
//! are complete: an export that fails (a full disk, an unreadable record)
//! leaves no partial file and no temporary one, and a previous export's
//! files untouched. Errors name the file and the operating system's error.
//!
//! **Cost.** Rows are buffered and written [`ROW_GROUP_ROWS`] at a time
//! (Snappy-compressed, dictionary-encoded), so memory stays bounded
//! whatever the journal's length, besides the restored event itself and
//! one entry per admitted fan (to list each fan once). A sold-out
//! 60,000-seat stadium exports in well under a second (the `export`
//! bench of this crate).

pub mod fixture;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use onsale_cluster::node::{RestoreError, restore};
use onsale_cluster::store::{JournalBytes, Store, StoreError};
use onsale_schema::snapshot::{
    EventSnapshot, JournalEntry, JournalRecord, OrderRecord, RecordError, ReleaseReason,
};
use onsale_schema::venue::Venue;
use onsale_schema::{EventId, FanId, HoldId, Millis, OrderId};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;

/// Journal records read from the store per call: a page of admissions
/// (up to 2,048 fans a record) is a few MB at most.
pub const JOURNAL_PAGE_RECORDS: usize = 4_096;

/// Rows per Parquet row group, so that a long journal is written in
/// pieces: a group of timeline rows takes about 25 MB while it is built.
/// DuckDB reads row groups in parallel.
pub const ROW_GROUP_ROWS: usize = 262_144;

/// Every `kind` of `timeline.parquet`, one per journal entry
/// (`Admitted` and `AdmittedMany` are both `admitted`).
pub const TIMELINE_KINDS: [&str; 14] = [
    "sale",
    "admitted",
    "entered",
    "admission_lapsed",
    "held",
    "released",
    "payment_submitted",
    "payment_declined",
    "sold",
    "refunded",
    "pre_queued",
    "drawn",
    "presale_joined",
    "stamp_difficulty",
];

/// The files an export writes, in the order it writes them.
pub const FILES: [&str; 4] = [
    "tickets.parquet",
    "orders.parquet",
    "admissions.parquet",
    "timeline.parquet",
];

/// Why an export failed. Nothing was left in the output directory.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no event {event} in the store; it holds {}", EventList(known))]
    UnknownEvent { event: u64, known: Vec<u64> },
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("event {event} cannot be restored: {source}")]
    Restore {
        event: u64,
        #[source]
        source: RestoreError,
    },
    #[error("event {event}: journal record {seq} does not decode: {source}")]
    Journal {
        event: u64,
        seq: u64,
        #[source]
        source: RecordError,
    },
    #[error("event {event}: the journal record stored at {stored} says it is record {found}")]
    JournalMisfiled { event: u64, stored: u64, found: u64 },
    #[error("{}: cannot write there: {source}", dir.display())]
    OutDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", file.display())]
    Write {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", file.display())]
    Parquet {
        file: PathBuf,
        #[source]
        source: ParquetError,
    },
}

struct EventList<'a>(&'a [u64]);

impl fmt::Display for EventList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no events");
        }
        f.write_str("events ")?;
        for (i, event) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{event}")?;
        }
        Ok(())
    }
}

/// One file written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWritten {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// What an export wrote and which part of the journal it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub event: EventId,
    /// The files, in [`FILES`] order.
    pub files: Vec<FileWritten>,
    /// The journal seq the event was restored through: every file
    /// describes the event as of this record.
    pub journal_seq: u64,
    /// The seq of the snapshot the event was restored from (0: none).
    pub snapshot_seq: u64,
    /// The first and last journal record in `timeline.parquet` (`None`:
    /// the store keeps no journal of the event).
    pub timeline: Option<(u64, u64)>,
    /// Records within that range that were compacted while the export
    /// read them (a relay moving on, or a new snapshot): not in the
    /// timeline.
    pub timeline_missing: u64,
}

impl fmt::Display for Exported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(
                f,
                "{}: {} rows, {} bytes",
                file.path.display(),
                file.rows,
                file.bytes
            )?;
        }
        let event = self.event.0;
        match self.timeline {
            None => write!(f, "event {event}: no journal kept")?,
            Some((first, last)) => {
                write!(f, "event {event}: journal seq {first}..={last}")?;
                if self.timeline_missing > 0 {
                    write!(
                        f,
                        " ({} records compacted while reading)",
                        self.timeline_missing
                    )?;
                }
                if first > 1 {
                    write!(
                        f,
                        "; seq 1..={} compacted into the snapshot (earlier admissions of fans who \
                         did not buy are not in the store)",
                        first - 1
                    )?;
                }
            }
        }
        writeln!(
            f,
            "; restored through seq {} (snapshot at {})",
            self.journal_seq, self.snapshot_seq
        )
    }
}

/// Export `event` from `store` into the directory `out` (created if
/// missing). `now` (wall clock) starts the clock of an event never
/// snapshotted, as it would on a node. See the module docs.
pub fn export<S: Store + ?Sized>(
    store: &S,
    event: EventId,
    out: &Path,
    now: Millis,
) -> Result<Exported, ExportError> {
    let specs = store.event_specs()?;
    let Some((_, spec)) = specs.iter().find(|(id, _)| *id == event) else {
        return Err(ExportError::UnknownEvent {
            event: event.0,
            known: specs.iter().map(|(id, _)| id.0).collect(),
        });
    };
    let spec = spec.clone().map_err(StoreError::Damaged)?;
    let stored = store.load_event(event)?;
    let core = restore(&spec, &stored, now).map_err(|source| ExportError::Restore {
        event: event.0,
        source,
    })?;
    // The snapshot restored without error just now: its shoppers and open
    // holds start the admissions and the timeline's holds.
    let (snapshot_seq, snapshot) = match &stored.snapshot {
        Some((seq, bytes)) => {
            let snapshot = EventSnapshot::decode(bytes).map_err(|source| ExportError::Restore {
                event: event.0,
                source: RestoreError::SnapshotDecode { seq: *seq, source },
            })?;
            (*seq, Some(snapshot))
        }
        None => (0, None),
    };
    std::fs::create_dir_all(out).map_err(|source| ExportError::OutDir {
        dir: out.to_path_buf(),
        source,
    })?;
    let sale = Sale {
        event,
        venue: Arc::clone(core.venue()),
        orders: core.orders(),
    };
    let mut staged = Vec::with_capacity(FILES.len());
    staged.push(stage(out, FILES[0], |file, path| sale.tickets(file, path))?);
    staged.push(stage(out, FILES[1], |file, path| sale.orders(file, path))?);
    let journal = Journal {
        store,
        event,
        snapshot_seq,
        snapshot: snapshot.as_ref(),
        after_snapshot: &stored.journal,
    };
    let ([admissions, timeline], history) =
        stage_pair(out, [FILES[2], FILES[3]], |a, t| journal.write(&sale, a, t))?;
    staged.push(admissions);
    staged.push(timeline);
    let files = publish(out, staged)?;
    Ok(Exported {
        event,
        files,
        journal_seq: core.journal_seq(),
        snapshot_seq,
        timeline: history.range,
        timeline_missing: history.missing,
    })
}

// ----- staging: temporary files renamed into place together -----

/// A complete file under a temporary name in the output directory,
/// removed if dropped before [`publish`].
struct Staged {
    name: &'static str,
    temp: tempfile::NamedTempFile,
    rows: u64,
}

/// Create a temporary file for `name` in `dir`, let `write` fill it
/// (given the file's final path for its errors; returning its rows), and
/// sync it.
fn stage(
    dir: &Path,
    name: &'static str,
    write: impl FnOnce(&File, PathBuf) -> Result<u64, ExportError>,
) -> Result<Staged, ExportError> {
    let temp = temp_file(dir, name)?;
    let rows = write(temp.as_file(), dir.join(name))?;
    sync(dir, name, &temp)?;
    Ok(Staged { name, temp, rows })
}

/// [`stage`] for two files written together (one pass over the journal
/// fills both).
fn stage_pair<R>(
    dir: &Path,
    names: [&'static str; 2],
    write: impl FnOnce(
        &mut ParquetFile<'_, Admissions>,
        &mut ParquetFile<'_, Timeline>,
    ) -> Result<R, ExportError>,
) -> Result<([Staged; 2], R), ExportError> {
    let first = temp_file(dir, names[0])?;
    let second = temp_file(dir, names[1])?;
    let (first_rows, second_rows, written) = {
        let mut a =
            ParquetFile::create(first.as_file(), dir.join(names[0]), Admissions::default())?;
        let mut t = ParquetFile::create(second.as_file(), dir.join(names[1]), Timeline::default())?;
        let written = write(&mut a, &mut t)?;
        (a.close()?, t.close()?, written)
    };
    sync(dir, names[0], &first)?;
    sync(dir, names[1], &second)?;
    let staged = [
        Staged {
            name: names[0],
            temp: first,
            rows: first_rows,
        },
        Staged {
            name: names[1],
            temp: second,
            rows: second_rows,
        },
    ];
    Ok((staged, written))
}

fn temp_file(dir: &Path, name: &str) -> Result<tempfile::NamedTempFile, ExportError> {
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|source| ExportError::OutDir {
            dir: dir.to_path_buf(),
            source,
        })
}

fn sync(dir: &Path, name: &str, temp: &tempfile::NamedTempFile) -> Result<(), ExportError> {
    temp.as_file()
        .sync_all()
        .map_err(|source| ExportError::Write {
            file: dir.join(name),
            source,
        })
}

/// Rename every staged file to its name, then sync the directory.
fn publish(dir: &Path, staged: Vec<Staged>) -> Result<Vec<FileWritten>, ExportError> {
    let mut files = Vec::with_capacity(staged.len());
    for Staged { name, temp, rows } in staged {
        let path = dir.join(name);
        let write_error = |source| ExportError::Write {
            file: path.clone(),
            source,
        };
        let bytes = temp.as_file().metadata().map_err(write_error)?.len();
        temp.persist(&path).map_err(|e| write_error(e.error))?;
        files.push(FileWritten { path, rows, bytes });
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| ExportError::OutDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    Ok(files)
}

// ----- the sale: tickets and orders, from the restored event -----

struct Sale<'a> {
    event: EventId,
    venue: Arc<Venue>,
    orders: &'a [OrderRecord],
}

impl Sale<'_> {
    fn tickets(&self, file: &File, path: PathBuf) -> Result<u64, ExportError> {
        let mut out = ParquetFile::create(file, path, Tickets::default())?;
        let venue = &self.venue;
        for order in self.orders {
            for &seat_index in &order.seats {
                let seat = venue
                    .seat(seat_index)
                    .expect("restored orders name venue seats");
                let row = venue.row(seat.row);
                let section = &venue.sections[row.section.0 as usize];
                let price = &venue.price_levels[seat.price_level.0 as usize];
                let t = &mut out.table;
                t.order_of_sale.push(self.event, order);
                t.section.push(section.id.as_str().into());
                t.section_name.push(section.name.as_str().into());
                t.row.push(row.id.as_str().into());
                t.seat.push(seat.id.as_str().into());
                t.seat_index.push(seat_index.0 as i32);
                t.price_level.push(price.id.as_str().into());
                t.price_cents.push(cents(price.price_cents));
                out.row_done()?;
            }
        }
        out.close()
    }

    fn orders(&self, file: &File, path: PathBuf) -> Result<u64, ExportError> {
        let mut out = ParquetFile::create(file, path, Orders::default())?;
        for order in self.orders {
            let total: u64 = order.seats.iter().map(|s| self.venue.price_cents(*s)).sum();
            let t = &mut out.table;
            t.order_of_sale.push(self.event, order);
            t.seats.push(order.seats.len() as i64);
            t.total_cents.push(cents(total));
            out.row_done()?;
        }
        out.close()
    }
}

// ----- the journal: admissions and timeline -----

struct Journal<'a, S: ?Sized> {
    store: &'a S,
    event: EventId,
    snapshot_seq: u64,
    snapshot: Option<&'a EventSnapshot>,
    /// The records after the snapshot, from the same read as the snapshot.
    after_snapshot: &'a [JournalBytes],
}

/// The part of the journal the timeline covers.
struct History {
    range: Option<(u64, u64)>,
    missing: u64,
}

/// What the timeline knows of a hold while it is open.
#[derive(Clone, Copy)]
struct HoldInfo {
    fan: FanId,
    seats: u32,
}

impl<S: Store + ?Sized> Journal<'_, S> {
    /// One pass over the kept journal: the records at or below the
    /// snapshot the store still keeps, read in pages, then those after it.
    fn write(
        &self,
        sale: &Sale<'_>,
        admissions: &mut ParquetFile<'_, Admissions>,
        timeline: &mut ParquetFile<'_, Timeline>,
    ) -> Result<History, ExportError> {
        let orders: HashMap<OrderId, &OrderRecord> =
            sale.orders.iter().map(|o| (o.order, o)).collect();
        let mut holds: HashMap<HoldId, HoldInfo> = self
            .snapshot
            .map(|s| {
                s.holds
                    .iter()
                    .map(|h| {
                        let seats = h.seats.len() as u32;
                        (h.hold, HoldInfo { fan: h.fan, seats })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut listed: HashSet<FanId> = HashSet::new();
        let mut history = History {
            range: None,
            missing: 0,
        };
        let mut apply = |bytes: &JournalBytes| -> Result<(), ExportError> {
            let record = self.decode(bytes)?;
            history.range = Some(match history.range {
                None => (record.seq, record.seq),
                Some((first, last)) => {
                    history.missing += record.seq.saturating_sub(last + 1);
                    (first, record.seq)
                }
            });
            for (fan, position, at) in record.entry.admissions() {
                listed.insert(fan);
                admissions.table.push(self.event, fan, position.0, Some(at));
                admissions.row_done()?;
            }
            timeline
                .table
                .push(self.event, &record, &mut holds, &orders);
            timeline.row_done()
        };
        let mut after = 0;
        'pages: while after < self.snapshot_seq {
            let page = self
                .store
                .read_journal(self.event, after, JOURNAL_PAGE_RECORDS)?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.seq;
            for bytes in &page {
                if bytes.seq > self.snapshot_seq {
                    break 'pages;
                }
                apply(bytes)?;
            }
        }
        for bytes in self.after_snapshot {
            apply(bytes)?;
        }
        // Fans the kept journal does not show admitted: those still
        // shopping at the snapshot, and buyers admitted before it.
        let shoppers = self.snapshot.into_iter().flat_map(|s| &s.shoppers);
        for shopper in shoppers {
            if listed.insert(shopper.fan) {
                let at = Some(shopper.admitted_at);
                admissions
                    .table
                    .push(self.event, shopper.fan, shopper.position.0, at);
                admissions.row_done()?;
            }
        }
        for order in sale.orders {
            if listed.insert(order.fan) {
                admissions
                    .table
                    .push(self.event, order.fan, order.position.0, None);
                admissions.row_done()?;
            }
        }
        Ok(history)
    }

    fn decode(&self, bytes: &JournalBytes) -> Result<JournalRecord, ExportError> {
        let record =
            JournalRecord::decode(&bytes.bytes).map_err(|source| ExportError::Journal {
                event: self.event.0,
                seq: bytes.seq,
                source,
            })?;
        if record.seq != bytes.seq {
            return Err(ExportError::JournalMisfiled {
                event: self.event.0,
                stored: bytes.seq,
                found: record.seq,
            });
        }
        Ok(record)
    }
}

/// One timeline row's fields beyond the event, seq and time.
#[derive(Default)]
struct Step {
    kind: &'static str,
    fan: Option<FanId>,
    hold: Option<HoldId>,
    order: Option<OrderId>,
    seats: Option<u32>,
    detail: Option<String>,
}

/// What a journal record says, for the timeline. `holds` follows the
/// holds open (to name the fan of a payment or a release), `orders` are
/// the event's orders (to name the fan and seats of a sale).
fn step(
    entry: &JournalEntry,
    holds: &mut HashMap<HoldId, HoldInfo>,
    orders: &HashMap<OrderId, &OrderRecord>,
) -> Step {
    let of_hold = |kind: &'static str, hold: HoldId, info: Option<HoldInfo>, detail| Step {
        kind,
        fan: info.map(|h| h.fan),
        hold: Some(hold),
        seats: info.map(|h| h.seats),
        detail,
        ..Step::default()
    };
    let of_fan = |kind: &'static str, fan: FanId| Step {
        kind,
        fan: Some(fan),
        ..Step::default()
    };
    let detail = |kind: &'static str, detail: String| Step {
        kind,
        detail: Some(detail),
        ..Step::default()
    };
    match entry {
        JournalEntry::Sale { state } => detail("sale", state.as_str().to_owned()),
        JournalEntry::Admitted { fan, position, .. } => Step {
            detail: Some(format!("position {}", position.0)),
            ..of_fan("admitted", *fan)
        },
        JournalEntry::AdmittedMany { fans, .. } => {
            let first = fans.first().map_or(0, |f| f.1.0);
            let last = fans.last().map_or(0, |f| f.1.0);
            Step {
                kind: "admitted",
                fan: match fans.as_slice() {
                    [(fan, _)] => Some(*fan),
                    _ => None,
                },
                detail: Some(format!("{} fans, positions {first}..={last}", fans.len())),
                ..Step::default()
            }
        }
        JournalEntry::Entered { fan } => of_fan("entered", *fan),
        JournalEntry::AdmissionLapsed { fan } => of_fan("admission_lapsed", *fan),
        JournalEntry::HoldPlaced {
            hold, fan, seats, ..
        } => {
            let info = HoldInfo {
                fan: *fan,
                seats: seats.len() as u32,
            };
            holds.insert(*hold, info);
            of_hold("held", *hold, Some(info), None)
        }
        JournalEntry::HoldReleased { hold, reason } => {
            let reason = release_reason(*reason).to_owned();
            of_hold("released", *hold, holds.remove(hold), Some(reason))
        }
        JournalEntry::PaymentSubmitted { hold, payment, .. } => {
            let payment = Some(format!("payment {}", payment.0));
            of_hold(
                "payment_submitted",
                *hold,
                holds.get(hold).copied(),
                payment,
            )
        }
        JournalEntry::PaymentDeclined { hold, payment } => {
            let payment = Some(format!("payment {}", payment.0));
            of_hold("payment_declined", *hold, holds.get(hold).copied(), payment)
        }
        JournalEntry::Sold { hold, order, .. } => {
            let info = holds.remove(hold);
            let sold = orders.get(order);
            Step {
                order: Some(*order),
                fan: sold.map(|o| o.fan).or(info.map(|h| h.fan)),
                seats: sold.map(|o| o.seats.len() as u32).or(info.map(|h| h.seats)),
                ..of_hold("sold", *hold, info, None)
            }
        }
        JournalEntry::Refunded { payment } => detail("refunded", format!("payment {}", payment.0)),
        JournalEntry::PreQueued { fan } => of_fan("pre_queued", *fan),
        JournalEntry::Drawn { seed, base, count } => detail(
            "drawn",
            format!("{count} fans from position {}, seed {seed}", base.0),
        ),
        JournalEntry::PresaleJoined { fan } => of_fan("presale_joined", *fan),
        JournalEntry::StampDifficulty { bits } => {
            detail("stamp_difficulty", format!("{bits} bits"))
        }
    }
}

fn release_reason(reason: ReleaseReason) -> &'static str {
    match reason {
        ReleaseReason::ByFan => "by_fan",
        ReleaseReason::Expired => "expired",
        ReleaseReason::Declined => "declined",
        ReleaseReason::Voided => "voided",
        ReleaseReason::Closed => "closed",
    }
}

// ----- Parquet: columns, tables, files -----

/// An id as Parquet stores an unsigned 64-bit integer (the same bits in
/// an INT64, read back as unsigned by the `INTEGER(64,false)` type).
fn id(value: u64) -> i64 {
    value as i64
}

/// Cents fit an INT64 for any price a venue file can name.
fn cents(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch as a Parquet timestamp.
fn millis(at: Millis) -> i64 {
    i64::try_from(at.0).unwrap_or(i64::MAX)
}

/// One column's values for the rows of the row group being built, with
/// definition levels if the column is nullable (1: a value, 0: null).
struct Column<T: DataType> {
    values: Vec<T::T>,
    levels: Option<Vec<i16>>,
}

impl<T: DataType> Column<T> {
    fn required() -> Self {
        Column {
            values: Vec::new(),
            levels: None,
        }
    }

    fn optional() -> Self {
        Column {
            values: Vec::new(),
            levels: Some(Vec::new()),
        }
    }

    fn push(&mut self, value: T::T) {
        self.values.push(value);
        if let Some(levels) = &mut self.levels {
            levels.push(1);
        }
    }

    fn push_opt(&mut self, value: Option<T::T>) {
        match value {
            Some(value) => self.push(value),
            None => self
                .levels
                .as_mut()
                .expect("only nullable columns take nulls")
                .push(0),
        }
    }

    /// Write the values as the next column of `group`, and clear them.
    fn write(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, &File>,
    ) -> Result<(), ParquetError> {
        let mut column = group.next_column()?.ok_or_else(|| {
            ParquetError::General("more columns written than the schema has".into())
        })?;
        column
            .typed::<T>()
            .write_batch(&self.values, self.levels.as_deref(), None)?;
        column.close()?;
        self.values.clear();
        if let Some(levels) = &mut self.levels {
            levels.clear();
        }
        Ok(())
    }
}

impl Column<Int64Type> {
    fn push_id(&mut self, value: Option<u64>) {
        self.push_opt(value.map(id));
    }
}

/// The rows of one table being built: its schema, and its columns
/// written in the schema's order.
trait Table {
    /// The Parquet message type (names, types, logical types).
    const SCHEMA: &'static str;
    /// Rows buffered.
    fn rows(&self) -> usize;
    /// Write the buffered rows as one row group's columns, and clear them.
    fn write(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, &File>,
    ) -> Result<(), ParquetError>;
}

/// A Parquet file being written, a row group at a time.
struct ParquetFile<'a, T: Table> {
    writer: SerializedFileWriter<&'a File>,
    table: T,
    rows: u64,
    /// The name errors give.
    path: PathBuf,
}

impl<'a, T: Table> ParquetFile<'a, T> {
    fn create(file: &'a File, path: PathBuf, table: T) -> Result<Self, ExportError> {
        let schema = parse_message_type(T::SCHEMA).expect("the export's schemas parse");
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("onsale export {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties))
            .map_err(|e| write_error(&path, e))?;
        Ok(ParquetFile {
            writer,
            table,
            rows: 0,
            path,
        })
    }

    /// A row was pushed onto every column: write a row group when full.
    fn row_done(&mut self) -> Result<(), ExportError> {
        self.rows += 1;
        if self.table.rows() >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        let mut group = self
            .writer
            .next_row_group()
            .map_err(|e| write_error(&self.path, e))?;
        self.table
            .write(&mut group)
            .map_err(|e| write_error(&self.path, e))?;
        group.close().map_err(|e| write_error(&self.path, e))?;
        Ok(())
    }

    /// Write the last row group and the footer; returns the rows written.
    fn close(mut self) -> Result<u64, ExportError> {
        if self.table.rows() > 0 {
            self.flush()?;
        }
        self.writer
            .close()
            .map_err(|e| write_error(&self.path, e))?;
        Ok(self.rows)
    }
}

/// A Parquet error as the export reports it: a failed write as the
/// operating system's error (no space left, ...), naming the file.
fn write_error(file: &Path, error: ParquetError) -> ExportError {
    let file = file.to_path_buf();
    match error {
        ParquetError::External(inner) => match inner.downcast::<io::Error>() {
            Ok(source) => ExportError::Write {
                file,
                source: *source,
            },
            Err(inner) => ExportError::Parquet {
                file,
                source: ParquetError::External(inner),
            },
        },
        source => ExportError::Parquet { file, source },
    }
}

/// The columns tickets and orders share: who bought which order, when.
struct OrderColumns {
    event: Column<Int64Type>,
    order: Column<Int64Type>,
    fan: Column<Int64Type>,
    position: Column<Int64Type>,
    payment: Column<Int64Type>,
    sold_at: Column<Int64Type>,
}

impl Default for OrderColumns {
    fn default() -> Self {
        OrderColumns {
            event: Column::required(),
            order: Column::required(),
            fan: Column::required(),
            position: Column::required(),
            payment: Column::required(),
            sold_at: Column::required(),
        }
    }
}

impl OrderColumns {
    fn push(&mut self, event: EventId, order: &OrderRecord) {
        self.event.push(id(event.0));
        self.order.push(id(order.order.0));
        self.fan.push(id(order.fan.0));
        self.position.push(id(order.position.0));
        self.payment.push(id(order.payment.0));
        self.sold_at.push(millis(order.at));
    }

    /// The first five columns (`sold_at` goes last in both tables).
    fn write_ids(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, &File>,
    ) -> Result<(), ParquetError> {
        self.event.write(group)?;
        self.order.write(group)?;
        self.fan.write(group)?;
        self.position.write(group)?;
        self.payment.write(group)
    }
}

struct Tickets {
    order_of_sale: OrderColumns,
    section: Column<ByteArrayType>,
    section_name: Column<ByteArrayType>,
    row: Column<ByteArrayType>,
    seat: Column<ByteArrayType>,
    seat_index: Column<Int32Type>,
    price_level: Column<ByteArrayType>,
    price_cents: Column<Int64Type>,
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets {
            order_of_sale: OrderColumns::default(),
            section: Column::required(),
            section_name: Column::required(),
            row: Column::required(),
            seat: Column::required(),
            seat_index: Column::required(),
            price_level: Column::required(),
            price_cents: Column::required(),
        }
    }
}

impl Table for Tickets {
    const SCHEMA: &'static str = "
        message ticket {
            REQUIRED INT64 event (INTEGER(64,false));
            REQUIRED INT64 order (INTEGER(64,false));
            REQUIRED INT64 fan (INTEGER(64,false));
            REQUIRED INT64 position (INTEGER(64,false));
            REQUIRED INT64 payment (INTEGER(64,false));
            REQUIRED BYTE_ARRAY section (STRING);
            REQUIRED BYTE_ARRAY section_name (STRING);
            REQUIRED BYTE_ARRAY row (STRING);
            REQUIRED BYTE_ARRAY seat (STRING);
            REQUIRED INT32 seat_index (INTEGER(32,false));
            REQUIRED BYTE_ARRAY price_level (STRING);
            REQUIRED INT64 price_cents;
            REQUIRED INT64 sold_at (TIMESTAMP(MILLIS,true));
        }";

    fn rows(&self) -> usize {
        self.order_of_sale.event.values.len()
    }

    fn write(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, &File>,
    ) -> Result<(), ParquetError> {
        self.order_of_sale.write_ids(group)?;
        self.section.write(group)?;
        self.section_name.write(group)?;
        self.row.write(group)?;
        self.seat.write(group)?;
        self.seat_index.write(group)?;
        self.price_level.write(group)?;
        self.price_cents.write(group)?;
        self.order_of_sale.sold_at.write(group)
    }
}

struct Orders {
    order_of_sale: OrderColumns,
    seats: Column<Int64Type>,
    total_cents: Column<Int64Type>,
}

impl Default for Orders {
    fn default() -> Self {
        Orders {
            order_of_sale: OrderColumns::default(),
            seats: Column::required(),
            total_cents: Column::required(),
        }
    }
}

impl Table for Orders {
    const SCHEMA: &'static str = "
        message order {
            REQUIRED INT64 event (INTEGER(64,false));
            REQUIRED INT64 order (INTEGER(64,false));
            REQUIRED INT64 fan (INTEGER(64,false));
            REQUIRED INT64 position (INTEGER(64,false));
            REQUIRED INT64 payment (INTEGER(64,false));
            REQUIRED INT64 seats;
            REQUIRED INT64 total_cents;
            REQUIRED INT64 sold_at (TIMESTAMP(MILLIS,true));
        }";

    fn rows(&self) -> usize {
        self.order_of_sale.event.values.len()
    }

    fn write(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, &File>,
    ) -> Result<(), ParquetError> {
        self.order_of_sale.write_ids(group)?;
        self.seats.write(group)?;
        self.total_cents.write(group)?;
        self.order_of_sale.sold_at.write(group)
    }
}

struct Admissions {
    event: Column<Int64Type>,
    fan: Column<Int64Type>,
    position: Column<Int64Type>,
    admitted_at: Column<Int64Type>,
}

impl Default for Admissions {
    fn default() -> Self {
        Admissions {
            event: Column::required(),
            fan: Column::required(),
            position: Column::required(),
            admitted_at: Column::optional(),
        }
    }
}

impl Admissions {
    fn push(&mut self, event: EventId, fan: FanId, position: u64, at: Option<Millis>) {
        self.event.push(id(event.0));
        self.fan.push(id(fan.0));
        self.position.push(id(position));
        self.admitted_at.push_opt(at.map(millis));
    }
}

impl Table for Admissions {
    const SCHEMA: &'static str = "
        message admission {
            REQUIRED INT64 event (INTEGER(64,false));
            REQUIRED INT64 fan (INTEGER(64,false));
            REQUIRED INT64 position (INTEGER(64,false));
            OPTIONAL INT64 admitted_at (TIMESTAMP(MILLIS,true));
        }";

    fn rows(&self) -> usize {
        self.event.values.len()
    }

    fn write(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, &File>,
    ) -> Result<(), ParquetError> {
        self.event.write(group)?;
        self.fan.write(group)?;
        self.position.write(group)?;
        self.admitted_at.write(group)
    }
}

struct Timeline {
    event: Column<Int64Type>,
    seq: Column<Int64Type>,
    at: Column<Int64Type>,
    kind: Column<ByteArrayType>,
    fan: Column<Int64Type>,
    hold: Column<Int64Type>,
    order: Column<Int64Type>,
    seats: Column<Int64Type>,
    detail: Column<ByteArrayType>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            event: Column::required(),
            seq: Column::required(),
            at: Column::required(),
            kind: Column::required(),
            fan: Column::optional(),
            hold: Column::optional(),
            order: Column::optional(),
            seats: Column::optional(),
            detail: Column::optional(),
        }
    }
}

impl Timeline {
    fn push(
        &mut self,
        event: EventId,
        record: &JournalRecord,
        holds: &mut HashMap<HoldId, HoldInfo>,
        orders: &HashMap<OrderId, &OrderRecord>,
    ) {
        let step = step(&record.entry, holds, orders);
        self.event.push(id(event.0));
        self.seq.push(id(record.seq));
        self.at.push(millis(record.at));
        self.kind.push(step.kind.into());
        self.fan.push_id(step.fan.map(|f| f.0));
        self.hold.push_id(step.hold.map(|h| h.0));
        self.order.push_id(step.order.map(|o| o.0));
        self.seats.push_opt(step.seats.map(i64::from));
        self.detail
            .push_opt(step.detail.map(|d| ByteArray::from(d.into_bytes())));
    }
}

impl Table for Timeline {
    const SCHEMA: &'static str = "
        message timeline {
            REQUIRED INT64 event (INTEGER(64,false));
            REQUIRED INT64 seq (INTEGER(64,false));
            REQUIRED INT64 at (TIMESTAMP(MILLIS,true));
            REQUIRED BYTE_ARRAY kind (STRING);
            OPTIONAL INT64 fan (INTEGER(64,false));
            OPTIONAL INT64 hold (INTEGER(64,false));
            OPTIONAL INT64 order (INTEGER(64,false));
            OPTIONAL INT64 seats;
            OPTIONAL BYTE_ARRAY detail (STRING);
        }";

    fn rows(&self) -> usize {
        self.event.values.len()
    }

    fn write(
        &mut self,
        group: &mut SerializedRowGroupWriter<'_, &File>,
    ) -> Result<(), ParquetError> {
        self.event.write(group)?;
        self.seq.write(group)?;
        self.at.write(group)?;
        self.kind.write(group)?;
        self.fan.write(group)?;
        self.hold.write(group)?;
        self.order.write(group)?;
        self.seats.write(group)?;
        self.detail.write(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses() {
        for schema in [
            Tickets::SCHEMA,
            Orders::SCHEMA,
            Admissions::SCHEMA,
            Timeline::SCHEMA,
        ] {
            parse_message_type(schema).expect("parses");
        }
    }

    #[test]
    fn unknown_events_are_listed() {
        let error = ExportError::UnknownEvent {
            event: 9,
            known: vec![1, 2],
        };
        assert_eq!(
            error.to_string(),
            "no event 9 in the store; it holds events 1, 2"
        );
    }
}
