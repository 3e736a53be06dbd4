//! The Parquet export over real SQLite stores: events sold through the
//! event core and a real lease (`onsale_feed::export::fixture`), exported,
//! and every file read back with the parquet crate's own reader.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use onsale_cluster::store::open::{OpenMode, open_store};
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_cluster::store::{JournalBytes, Store};
use onsale_feed::export::fixture::{self, Ending, Seller};
use onsale_feed::export::{ExportError, Exported, FILES, TIMELINE_KINDS, export};
use onsale_schema::snapshot::{JournalEntry, JournalRecord, OrderRecord};
use onsale_schema::venue::Venue;
use onsale_schema::{EventId, Millis};
use parquet::basic::{ConvertedType, LogicalType, TimeUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

const EVENT: EventId = EventId(7);
const CLUB: &str = include_str!("../../venues/club.json");
const STADIUM: &str = include_str!("../../venues/stadium.json");

type Row = BTreeMap<String, Field>;

/// Every row of a Parquet file, by column name.
fn read(path: &Path) -> Vec<Row> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = SerializedFileReader::new(file).expect("a Parquet file");
    reader
        .get_row_iter(None)
        .expect("rows")
        .map(|row| {
            row.expect("row decodes")
                .get_column_iter()
                .map(|(name, field)| (name.clone(), field.clone()))
                .collect()
        })
        .collect()
}

fn uint(row: &Row, column: &str) -> Option<u64> {
    match &row[column] {
        Field::ULong(v) => Some(*v),
        Field::UInt(v) => Some(u64::from(*v)),
        Field::Null => None,
        other => panic!("{column}: {other:?} is not unsigned"),
    }
}

fn int(row: &Row, column: &str) -> Option<i64> {
    match &row[column] {
        Field::Long(v) => Some(*v),
        Field::Null => None,
        other => panic!("{column}: {other:?} is not an INT64"),
    }
}

fn text(row: &Row, column: &str) -> Option<String> {
    match &row[column] {
        Field::Str(v) => Some(v.clone()),
        Field::Null => None,
        other => panic!("{column}: {other:?} is not a string"),
    }
}

fn time(row: &Row, column: &str) -> Option<u64> {
    match &row[column] {
        Field::TimestampMillis(v) => Some(u64::try_from(*v).expect("after 1970")),
        Field::Null => None,
        other => panic!("{column}: {other:?} is not a timestamp"),
    }
}

/// Export as the CLI does: the store opened as a node opens it.
fn export_store(store: &Path, out: &Path) -> Result<Exported, ExportError> {
    let (store, _) = open_store(store, OpenMode::Existing).expect("store opens");
    export(&store, EVENT, out, Millis(0))
}

/// A club event with every kind of outcome, sold out: releases by the fan,
/// declines, holds left to expire, turns that lapse, a snapshot half way.
fn sold_club(path: &Path, retain: bool) -> Seller {
    let mut seller = Seller::create(path, &fixture::spec(EVENT, CLUB), fixture::START);
    seller
        .store()
        .set_feed_retention(retain)
        .expect("retention set");
    seller.open();
    seller.join(700);
    for i in 0..60 {
        let ending = match i % 10 {
            3 => Ending::Released,
            5 => Ending::Declined,
            7 => Ending::Open,
            _ => Ending::Sold,
        };
        seller.buy(1 + (i % 4) as u8, ending).expect("a fan holds");
        seller.advance(1_000);
    }
    seller.snapshot();
    // Unpaid and declined holds expire; admitted fans who never showed up
    // lapse.
    seller.advance(301_000);
    seller.sell_out(4, 700);
    seller.flush();
    seller
}

/// Every journal record the store keeps, decoded.
fn kept_journal(store: &SqliteStore) -> Vec<JournalRecord> {
    store
        .read_journal(EVENT, 0, usize::MAX)
        .expect("journal")
        .iter()
        .map(|r| JournalRecord::decode(&r.bytes).expect("decodes"))
        .collect()
}

fn orders_by_id(orders: &[OrderRecord]) -> HashMap<u64, &OrderRecord> {
    orders.iter().map(|o| (o.order.0, o)).collect()
}

fn check_tickets(out: &Path, venue: &Venue, orders: &[OrderRecord]) {
    let rows = read(&out.join("tickets.parquet"));
    let seats: usize = orders.iter().map(|o| o.seats.len()).sum();
    assert_eq!(rows.len(), seats, "one ticket per seat sold");
    let by_id = orders_by_id(orders);
    let mut sold = HashSet::new();
    for row in &rows {
        assert_eq!(uint(row, "event"), Some(EVENT.0));
        let order = by_id[&uint(row, "order").unwrap()];
        let index = uint(row, "seat_index").unwrap();
        let seat_idx = onsale_schema::SeatIdx(u32::try_from(index).unwrap());
        assert!(order.seats.contains(&seat_idx), "{row:?} not in {order:?}");
        assert!(sold.insert(index), "seat {index} sold twice");
        assert_eq!(uint(row, "fan"), Some(order.fan.0));
        assert_eq!(uint(row, "position"), Some(order.position.0));
        assert_eq!(uint(row, "payment"), Some(order.payment.0));
        assert_eq!(time(row, "sold_at"), Some(order.at.0));
        let seat = venue.seat(seat_idx).unwrap();
        let venue_row = venue.row(seat.row);
        let section = venue.section(venue_row.section).unwrap();
        let price = &venue.price_levels[seat.price_level.0 as usize];
        assert_eq!(text(row, "section").as_deref(), Some(section.id.as_str()));
        assert_eq!(
            text(row, "section_name").as_deref(),
            Some(section.name.as_str())
        );
        assert_eq!(text(row, "row").as_deref(), Some(venue_row.id.as_str()));
        assert_eq!(text(row, "seat").as_deref(), Some(seat.id.as_str()));
        assert_eq!(text(row, "price_level").as_deref(), Some(price.id.as_str()));
        assert_eq!(int(row, "price_cents"), Some(price.price_cents as i64));
    }
}

fn check_orders(out: &Path, venue: &Venue, orders: &[OrderRecord]) {
    let rows = read(&out.join("orders.parquet"));
    assert_eq!(rows.len(), orders.len(), "one row per order");
    for (row, order) in rows.iter().zip(orders) {
        let total: u64 = order.seats.iter().map(|s| venue.price_cents(*s)).sum();
        assert_eq!(uint(row, "event"), Some(EVENT.0));
        assert_eq!(uint(row, "order"), Some(order.order.0));
        assert_eq!(uint(row, "fan"), Some(order.fan.0));
        assert_eq!(uint(row, "position"), Some(order.position.0));
        assert_eq!(uint(row, "payment"), Some(order.payment.0));
        assert_eq!(int(row, "seats"), Some(order.seats.len() as i64));
        assert_eq!(int(row, "total_cents"), Some(total as i64));
        assert_eq!(time(row, "sold_at"), Some(order.at.0));
    }
}

/// The timeline is the kept journal, record by record.
fn check_timeline(out: &Path, journal: &[JournalRecord], orders: &[OrderRecord]) {
    let rows = read(&out.join("timeline.parquet"));
    assert_eq!(rows.len(), journal.len(), "one row per record kept");
    let by_id = orders_by_id(orders);
    for (row, record) in rows.iter().zip(journal) {
        assert_eq!(uint(row, "event"), Some(EVENT.0));
        assert_eq!(uint(row, "seq"), Some(record.seq));
        assert_eq!(time(row, "at"), Some(record.at.0));
        let kind = text(row, "kind").unwrap();
        assert!(TIMELINE_KINDS.contains(&kind.as_str()), "{kind}");
        match &record.entry {
            JournalEntry::Sold { hold, order, .. } => {
                let sold = by_id[&order.0];
                assert_eq!(kind, "sold");
                assert_eq!(uint(row, "order"), Some(order.0));
                assert_eq!(uint(row, "hold"), Some(hold.0));
                assert_eq!(uint(row, "fan"), Some(sold.fan.0));
                assert_eq!(int(row, "seats"), Some(sold.seats.len() as i64));
            }
            JournalEntry::HoldPlaced {
                hold, fan, seats, ..
            } => {
                assert_eq!(kind, "held");
                assert_eq!(uint(row, "hold"), Some(hold.0));
                assert_eq!(uint(row, "fan"), Some(fan.0));
                assert_eq!(int(row, "seats"), Some(seats.len() as i64));
                assert_eq!(uint(row, "order"), None);
            }
            JournalEntry::HoldReleased { hold, .. } => {
                assert_eq!(kind, "released");
                assert_eq!(uint(row, "hold"), Some(hold.0));
                assert!(text(row, "detail").is_some(), "a release gives its reason");
            }
            JournalEntry::Sale { state } => {
                assert_eq!(kind, "sale");
                assert_eq!(text(row, "detail").as_deref(), Some(state.as_str()));
                assert_eq!(uint(row, "fan"), None);
            }
            JournalEntry::Entered { fan } => {
                assert_eq!(kind, "entered");
                assert_eq!(uint(row, "fan"), Some(fan.0));
            }
            _ => {}
        }
    }
}

fn kinds(out: &Path) -> HashMap<String, usize> {
    let mut kinds = HashMap::new();
    for row in read(&out.join("timeline.parquet")) {
        *kinds.entry(text(&row, "kind").unwrap()).or_default() += 1;
    }
    kinds
}

#[test]
fn a_sold_out_event_exports_every_ticket_order_admission_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let seller = sold_club(&path, true);
    let core = seller.core();
    let out = dir.path().join("export");
    let exported = export_store(&path, &out).expect("exports");

    let venue = core.venue();
    let orders = core.orders();
    assert!(orders.len() > 100, "{} orders", orders.len());
    let seats: usize = orders.iter().map(|o| o.seats.len()).sum();
    assert_eq!(seats as u32, venue.seat_count(), "sold out");
    check_tickets(&out, venue, orders);
    check_orders(&out, venue, orders);

    // With the feed's retention on, the whole journal is kept, even below
    // the snapshot.
    let journal = kept_journal(seller.store());
    assert_eq!(journal.first().unwrap().seq, 1);
    assert_eq!(journal.last().unwrap().seq, core.journal_seq());
    check_timeline(&out, &journal, orders);
    let kinds = kinds(&out);
    for kind in [
        "sale",
        "admitted",
        "entered",
        "admission_lapsed",
        "held",
        "released",
        "payment_submitted",
        "payment_declined",
        "sold",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} in {kinds:?}");
    }
    assert_eq!(kinds["sold"], orders.len());

    // Every admission in the journal, each with its time.
    let admitted: Vec<_> = journal
        .iter()
        .flat_map(|r| r.entry.admissions().collect::<Vec<_>>())
        .collect();
    let rows = read(&out.join("admissions.parquet"));
    assert_eq!(rows.len(), admitted.len());
    for (row, (fan, position, at)) in rows.iter().zip(&admitted) {
        assert_eq!(uint(row, "fan"), Some(fan.0));
        assert_eq!(uint(row, "position"), Some(position.0));
        assert_eq!(time(row, "admitted_at"), Some(at.0));
    }

    assert_eq!(exported.journal_seq, core.journal_seq());
    assert_eq!(exported.timeline, Some((1, core.journal_seq())));
    assert_eq!(exported.timeline_missing, 0);
    let rows: Vec<u64> = exported.files.iter().map(|f| f.rows).collect();
    assert_eq!(
        rows,
        [
            seats as u64,
            orders.len() as u64,
            admitted.len() as u64,
            journal.len() as u64
        ]
    );
    for (file, name) in exported.files.iter().zip(FILES) {
        assert_eq!(file.path, out.join(name));
        assert_eq!(file.bytes, std::fs::metadata(&file.path).unwrap().len());
    }
    let summary = exported.to_string();
    assert!(
        summary.contains(&format!("journal seq 1..={}", core.journal_seq())),
        "{summary}"
    );
}

#[test]
fn the_files_carry_timestamp_string_and_unsigned_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let _seller = sold_club(&path, true);
    let out = dir.path().join("export");
    export_store(&path, &out).expect("exports");
    for name in FILES {
        let reader = SerializedFileReader::new(File::open(out.join(name)).unwrap()).unwrap();
        let meta = reader.metadata();
        for column in meta.file_metadata().schema_descr().columns() {
            let logical = column.logical_type_ref().cloned();
            let expected = match column.name() {
                "sold_at" | "admitted_at" | "at" => {
                    Some(LogicalType::timestamp(true, TimeUnit::MILLIS))
                }
                "section" | "section_name" | "row" | "seat" | "price_level" | "kind" | "detail" => {
                    Some(LogicalType::String)
                }
                "seats" | "total_cents" | "price_cents" => None,
                _ => {
                    assert!(
                        matches!(
                            column.converted_type(),
                            ConvertedType::UINT_64 | ConvertedType::UINT_32
                        ),
                        "{name}: {} is {:?}",
                        column.name(),
                        column.converted_type()
                    );
                    continue;
                }
            };
            assert_eq!(logical, expected, "{name}: {}", column.name());
        }
        for group in meta.row_groups() {
            for column in group.columns() {
                assert_eq!(
                    column.compression(),
                    parquet::basic::Compression::SNAPPY,
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn after_compaction_the_timeline_starts_after_the_snapshot_and_buyers_stay_admitted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let mut seller = Seller::create(&path, &fixture::spec(EVENT, CLUB), fixture::START);
    seller.open();
    seller.join(300);
    for _ in 0..20 {
        seller.buy(2, Ending::Sold).expect("a fan buys");
        seller.advance(500);
    }
    seller.snapshot();
    let snapshot_seq = seller.core().journal_seq();
    for _ in 0..10 {
        seller.buy(2, Ending::Sold).expect("a fan buys");
    }
    seller.flush();
    let out = dir.path().join("export");
    let exported = export_store(&path, &out).expect("exports");

    // Compaction deletes the records folded into the snapshot a few with
    // each append: those still there are exported, the rest are gone.
    let core = seller.core();
    let kept = kept_journal(seller.store());
    let first = kept.first().unwrap().seq;
    assert!(
        first > 1 && first <= snapshot_seq + 1,
        "kept from {first}, snapshot at {snapshot_seq}"
    );
    assert_eq!(exported.timeline, Some((first, core.journal_seq())));
    check_timeline(&out, &kept, core.orders());
    assert!(
        exported.to_string().contains("compacted into the snapshot"),
        "{exported}"
    );

    // Every buyer and every fan still shopping at the snapshot is listed
    // once; buyers admitted before the snapshot have no admission time.
    let rows = read(&out.join("admissions.parquet"));
    let fans: Vec<u64> = rows.iter().map(|r| uint(r, "fan").unwrap()).collect();
    let unique: HashSet<u64> = fans.iter().copied().collect();
    assert_eq!(unique.len(), fans.len(), "each fan once");
    for order in core.orders() {
        assert!(unique.contains(&order.fan.0), "buyer {} listed", order.fan);
    }
    let admitted_kept: HashSet<u64> = kept
        .iter()
        .flat_map(|r| {
            r.entry
                .admissions()
                .map(|(fan, _, _)| fan.0)
                .collect::<Vec<_>>()
        })
        .collect();
    let untimed: HashSet<u64> = rows
        .iter()
        .filter(|r| time(r, "admitted_at").is_none())
        .map(|r| uint(r, "fan").unwrap())
        .collect();
    let stored = seller.store().load_event(EVENT).unwrap();
    let snapshot =
        onsale_schema::snapshot::EventSnapshot::decode(&stored.snapshot.unwrap().1).unwrap();
    let shoppers: HashSet<u64> = snapshot.shoppers.iter().map(|s| s.fan.0).collect();
    let buyers_before: HashSet<u64> = core
        .orders()
        .iter()
        .map(|o| o.fan.0)
        .filter(|fan| !admitted_kept.contains(fan) && !shoppers.contains(fan))
        .collect();
    assert!(
        !buyers_before.is_empty(),
        "some buyers' admissions compacted"
    );
    assert_eq!(
        untimed, buyers_before,
        "buyers admitted before the kept journal and not shopping at the snapshot"
    );
    for shopper in &snapshot.shoppers {
        let row = rows
            .iter()
            .find(|r| uint(r, "fan") == Some(shopper.fan.0))
            .expect("shopper listed");
        assert_eq!(uint(row, "position"), Some(shopper.position.0));
    }
}

#[test]
fn an_event_never_snapshotted_or_sold_exports_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let mut seller = Seller::create(&path, &fixture::spec(EVENT, CLUB), fixture::START);
    seller.flush();
    let out = dir.path().join("export");
    let exported = export_store(&path, &out).expect("exports");
    let rows: Vec<u64> = exported.files.iter().map(|f| f.rows).collect();
    assert_eq!(rows, [0, 0, 0, 0]);
    for name in FILES {
        assert!(read(&out.join(name)).is_empty(), "{name}");
    }
}

#[test]
fn an_unknown_event_is_refused_naming_the_events_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let _seller = Seller::create(&path, &fixture::spec(EVENT, CLUB), fixture::START);
    let (store, _) = open_store(&path, OpenMode::Existing).unwrap();
    let out = dir.path().join("export");
    let refused = export(&store, EventId(8), &out, Millis(0)).expect_err("no event 8");
    assert_eq!(
        refused.to_string(),
        "no event 8 in the store; it holds events 7"
    );
    assert!(!out.exists(), "nothing made for an unknown event");
}

#[test]
fn an_output_directory_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let _seller = sold_club(&path, false);
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out = blocker.join("export");
    let refused = export_store(&path, &out).expect_err("cannot make a directory under a file");
    assert!(matches!(refused, ExportError::OutDir { .. }), "{refused:?}");
    let message = refused.to_string();
    assert!(
        message.contains(&out.display().to_string()) && message.contains("Not a directory"),
        "{message}"
    );
}

#[test]
fn exporting_writes_nothing_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let seller = sold_club(&path, true);
    let store = seller.store();
    let before = (
        store.load_event(EVENT).unwrap(),
        store.read_journal(EVENT, 0, usize::MAX).unwrap(),
        store.event_specs().unwrap(),
        store.feed_cursor(EVENT).unwrap(),
    );
    export_store(&path, &dir.path().join("export")).expect("exports");
    let after = (
        store.load_event(EVENT).unwrap(),
        store.read_journal(EVENT, 0, usize::MAX).unwrap(),
        store.event_specs().unwrap(),
        store.feed_cursor(EVENT).unwrap(),
    );
    assert!(before == after, "the store changed");
}

// ----- a full disk -----

/// A tmpfs of 64 KiB, unmounted when dropped.
struct TinyDisk {
    path: PathBuf,
}

impl TinyDisk {
    fn mount(path: PathBuf) -> Result<TinyDisk, String> {
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&path)
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed: {status}"));
        }
        Ok(TinyDisk { path })
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_no_file() {
    if !is_root() {
        println!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    // 2,000 stadium orders: several times what 64 KiB holds as Parquet.
    let mut seller = Seller::create(&path, &fixture::spec(EVENT, STADIUM), fixture::START);
    seller.open();
    seller.join(2_000);
    for _ in 0..2_000 {
        seller.buy(2, Ending::Sold).expect("a fan buys");
        seller.advance(10);
    }
    seller.flush();
    let disk = match TinyDisk::mount(dir.path().join("tiny")) {
        Ok(disk) => disk,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let refused = export_store(&path, &disk.path).expect_err("64 KiB is not enough");
    let message = refused.to_string();
    assert!(
        message.contains("No space left on device") && message.contains(".parquet"),
        "{message}"
    );
    let left: Vec<_> = std::fs::read_dir(&disk.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    drop(disk);
}

/// Not a test of the export: that the journal a test expects is the one
/// the store gives (the fixture flushes in batches).
#[test]
fn the_fixture_leaves_its_whole_journal_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let seller = sold_club(&path, true);
    let journal: Vec<JournalBytes> = seller.store().read_journal(EVENT, 0, usize::MAX).unwrap();
    let seqs: Vec<u64> = journal.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (1..=seller.core().journal_seq()).collect();
    assert_eq!(seqs, expected);
}

/// An export taken while the event keeps selling (as a node would, in
/// another connection to the same file) describes one consistent moment.
#[test]
fn an_export_while_the_event_sells_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onsale.db");
    let mut seller = Seller::create(&path, &fixture::spec(EVENT, STADIUM), fixture::START);
    seller.store().set_feed_retention(true).unwrap();
    seller.open();
    seller.join(2_000);
    let exports = std::thread::scope(|scope| {
        let exporting = scope.spawn(|| {
            (0..5)
                .map(|run| {
                    let out = dir.path().join(format!("export-{run}"));
                    let exported = export_store(&path, &out).expect("exports");
                    (out, exported)
                })
                .collect::<Vec<_>>()
        });
        while !exporting.is_finished() {
            if seller.buy(2, Ending::Sold).is_none() {
                seller.join(2_000);
            }
            seller.flush();
            seller.advance(50);
        }
        exporting.join().expect("export thread")
    });
    let mut sold_seen = HashSet::new();
    for (out, exported) in &exports {
        let orders = read(&out.join("orders.parquet"));
        let tickets = read(&out.join("tickets.parquet"));
        let timeline = read(&out.join("timeline.parquet"));
        let seats: i64 = orders.iter().map(|r| int(r, "seats").unwrap()).sum();
        assert_eq!(tickets.len() as i64, seats, "tickets match orders");
        let sold = timeline
            .iter()
            .filter(|r| text(r, "kind").as_deref() == Some("sold"))
            .count();
        assert_eq!(sold, orders.len(), "the timeline sold what the orders hold");
        let last = timeline.last().map_or(0, |r| uint(r, "seq").unwrap());
        assert_eq!(
            last, exported.journal_seq,
            "timeline through the restored seq"
        );
        assert_eq!(exported.timeline_missing, 0);
        sold_seen.insert(orders.len());
    }
    assert!(
        sold_seen.len() > 1,
        "the exports saw the sale move on: {sold_seen:?}"
    );
}
