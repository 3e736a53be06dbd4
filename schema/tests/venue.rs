//! Venue files: every refusal a file can cause, and the shipped examples.
//!
//! Every venue here is loaded through [`check`], the path a venue file
//! takes in production (bytes into `Venue::from_json`).

use std::ops::Range;

use onsale_schema::limits;
use onsale_schema::venue::Venue;
use onsale_schema::{RowIdx, SeatIdx, SectionIdx, VenueError};
use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "../examples/gen_venues.rs"]
mod gen_venues;

/// Load a venue file from its bytes (JSON text, or any garbage).
fn check(json: impl AsRef<[u8]>) -> Result<Venue, VenueError> {
    Venue::from_json(json.as_ref())
}

/// A small valid venue exercising every way to set a price level.
fn tiny() -> Value {
    json!({
        "name": "Tiny Hall",
        "city": "Testville",
        "price_levels": [
            { "id": "front", "name": "Front", "price_cents": 5000 },
            { "id": "back", "name": "Back", "price_cents": 3000 }
        ],
        "sections": [
            {
                "id": "FLOOR",
                "name": "Floor",
                "price_level": "front",
                "map": { "x": 0.0, "y": 0.0, "width": 10.0, "height": 5.0 },
                "rows": [
                    { "id": "A", "seats": [{ "id": "1" }, { "id": "2" }, { "id": "3", "accessible": true }] },
                    { "id": "B", "price_level": "back", "seats": [{ "id": "1" }, { "id": "2", "price_level": "front" }] }
                ]
            },
            {
                "id": "BALCONY",
                "name": "Balcony",
                "rows": [{ "id": "A", "price_level": "back", "seats": [{ "id": "1" }, { "id": "2" }] }]
            }
        ]
    })
}

/// `tiny()` changed by `edit`, expected to be refused with `expected`,
/// whose message must mention each of `names`.
fn refused(edit: impl FnOnce(&mut Value), expected: VenueError, names: &[&str]) {
    let mut file = tiny();
    edit(&mut file);
    let err = check(file.to_string()).expect_err("the edited venue must be refused");
    assert_eq!(err, expected);
    assert_mentions(&err, names);
}

fn assert_mentions(err: &VenueError, names: &[&str]) {
    let message = err.to_string();
    for name in names {
        assert!(
            message.contains(name),
            "{message:?} does not mention {name:?}"
        );
    }
}

fn seats(n: usize) -> Value {
    (1..=n).map(|i| json!({ "id": i.to_string() })).collect()
}

fn json_message(err: VenueError) -> String {
    match err {
        VenueError::Json { message } => message,
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The small venue

#[test]
fn tiny_venue_loads_with_nearest_price_level() {
    let venue = check(tiny().to_string()).unwrap();
    assert_eq!(venue.seat_count(), 7);
    let level = |seat: u32| venue.seats[seat as usize].price_level.0;
    // FLOOR A 1..3 from the section, B1 from its row, B2 from the seat,
    // BALCONY A from its row.
    let levels: Vec<u16> = (0..7).map(level).collect();
    assert_eq!(levels, [0, 0, 0, 1, 0, 1, 1]);
    assert!(venue.seats[2].accessible);
    assert_eq!(venue.seat_label(SeatIdx(4)), "Floor / row B / seat 2");
    assert_eq!(venue.price_cents(SeatIdx(4)), 5000);
}

// ---------------------------------------------------------------------------
// Every refusal a file can cause

#[test]
fn file_too_large() {
    let size = limits::VENUE_FILE_BYTES_MAX + 1;
    let err = check(vec![b' '; size]).unwrap_err();
    assert_eq!(
        err,
        VenueError::FileTooLarge {
            size,
            max: limits::VENUE_FILE_BYTES_MAX
        }
    );
    assert_mentions(&err, &["venue file", &size.to_string()]);
}

#[test]
fn malformed_json_names_line_and_column() {
    let message = json_message(check("{\n  \"name\": \"Tiny Hall\",\n  \"city\": ").unwrap_err());
    assert!(message.contains("line 3"), "{message}");

    let message = json_message(check(b"\xff\xfe").unwrap_err());
    assert!(message.contains("line 1 column 1"), "{message}");
}

#[test]
fn wrong_types_are_json_errors() {
    let mut file = tiny();
    file["price_levels"][0]["price_cents"] = json!(-1);
    let message = json_message(check(file.to_string()).unwrap_err());
    assert!(message.contains("-1"), "{message}");
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let mut file = tiny();
    file["capacity"] = json!(7);
    let message = json_message(check(file.to_string()).unwrap_err());
    assert!(message.contains("unknown field `capacity`"), "{message}");

    let mut file = tiny();
    file["sections"][0]["rows"][1]["seats"][0]["vip"] = json!(true);
    let message = json_message(check(file.to_string()).unwrap_err());
    assert!(message.contains("unknown field `vip`"), "{message}");

    let mut file = tiny();
    file["sections"][1]["map"] =
        json!({ "x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0, "z": 2.0 });
    let message = json_message(check(file.to_string()).unwrap_err());
    assert!(message.contains("unknown field `z`"), "{message}");
}

#[test]
fn no_price_levels() {
    refused(
        |f| f["price_levels"] = json!([]),
        VenueError::NoPriceLevels,
        &["price levels"],
    );
}

#[test]
fn no_sections() {
    refused(
        |f| f["sections"] = json!([]),
        VenueError::NoSections,
        &["sections"],
    );
}

#[test]
fn duplicate_price_level() {
    refused(
        |f| f["price_levels"][1]["id"] = json!("front"),
        VenueError::DuplicatePriceLevel { id: "front".into() },
        &["\"front\""],
    );
}

#[test]
fn duplicate_section() {
    refused(
        |f| f["sections"][1]["id"] = json!("FLOOR"),
        VenueError::DuplicateSection { id: "FLOOR".into() },
        &["\"FLOOR\""],
    );
}

#[test]
fn duplicate_row() {
    refused(
        |f| f["sections"][0]["rows"][1]["id"] = json!("A"),
        VenueError::DuplicateRow {
            section: "FLOOR".into(),
            row: "A".into(),
        },
        &["\"FLOOR\"", "\"A\""],
    );
}

#[test]
fn duplicate_seat() {
    refused(
        |f| f["sections"][0]["rows"][1]["seats"][1]["id"] = json!("1"),
        VenueError::DuplicateSeat {
            section: "FLOOR".into(),
            row: "B".into(),
            seat: "1".into(),
        },
        &["\"FLOOR\"", "\"B\"", "\"1\""],
    );
}

#[test]
fn same_row_and_seat_ids_in_different_sections_are_fine() {
    // FLOOR and BALCONY both have a row "A" with a seat "1".
    let venue = check(tiny().to_string()).unwrap();
    assert_eq!(venue.rows[0].id, venue.rows[2].id);
}

#[test]
fn empty_section() {
    refused(
        |f| f["sections"][1]["rows"] = json!([]),
        VenueError::EmptySection {
            section: "BALCONY".into(),
        },
        &["\"BALCONY\""],
    );
}

#[test]
fn empty_row() {
    refused(
        |f| f["sections"][0]["rows"][1]["seats"] = json!([]),
        VenueError::EmptyRow {
            section: "FLOOR".into(),
            row: "B".into(),
        },
        &["\"FLOOR\"", "\"B\""],
    );
}

#[test]
fn unknown_price_level_on_a_seat() {
    refused(
        |f| f["sections"][0]["rows"][0]["seats"][2]["price_level"] = json!("vip"),
        VenueError::UnknownPriceLevel {
            place: r#""FLOOR"/"A"/"3""#.into(),
            id: "vip".into(),
        },
        &["\"FLOOR\"", "\"A\"", "\"3\"", "\"vip\""],
    );
}

#[test]
fn unknown_price_level_on_a_section_is_reported_at_its_first_seat() {
    refused(
        |f| f["sections"][0]["price_level"] = json!("gold"),
        VenueError::UnknownPriceLevel {
            place: r#""FLOOR"/"A"/"1""#.into(),
            id: "gold".into(),
        },
        &["\"FLOOR\"", "\"gold\""],
    );
}

#[test]
fn missing_price_level() {
    refused(
        |f| {
            let row = f["sections"][1]["rows"][0].as_object_mut().unwrap();
            row.remove("price_level");
        },
        VenueError::MissingPriceLevel {
            place: r#""BALCONY"/"A"/"1""#.into(),
        },
        &["\"BALCONY\"", "\"A\"", "\"1\""],
    );
}

#[test]
fn bad_names_empty() {
    refused(
        |f| f["name"] = json!(""),
        VenueError::BadName {
            what: "venue name",
            place: "venue".into(),
        },
        &["venue name", "venue"],
    );
    refused(
        |f| f["city"] = json!(""),
        VenueError::BadName {
            what: "city",
            place: "venue".into(),
        },
        &["city"],
    );
    refused(
        |f| f["price_levels"][0]["id"] = json!(""),
        VenueError::BadName {
            what: "price level id",
            place: "price_levels".into(),
        },
        &["price level id", "price_levels"],
    );
    refused(
        |f| f["sections"][1]["id"] = json!(""),
        VenueError::BadName {
            what: "section id",
            place: "venue".into(),
        },
        &["section id"],
    );
    refused(
        |f| f["sections"][0]["rows"][1]["id"] = json!(""),
        VenueError::BadName {
            what: "row id",
            place: r#"section "FLOOR" row """#.into(),
        },
        &["row id", "\"FLOOR\""],
    );
    refused(
        |f| f["sections"][0]["rows"][1]["seats"][0]["id"] = json!(""),
        VenueError::BadName {
            what: "seat id",
            place: r#""FLOOR"/"B"/"""#.into(),
        },
        &["seat id", "\"FLOOR\"", "\"B\""],
    );
}

#[test]
fn bad_names_too_long() {
    let long = "x".repeat(limits::NAME_BYTES_MAX + 1);
    refused(
        |f| f["sections"][1]["name"] = json!(long),
        VenueError::BadName {
            what: "section name",
            place: "BALCONY".into(),
        },
        &[
            "section name",
            "BALCONY",
            &limits::NAME_BYTES_MAX.to_string(),
        ],
    );
    refused(
        |f| f["price_levels"][1]["name"] = json!(long),
        VenueError::BadName {
            what: "price level name",
            place: "back".into(),
        },
        &["price level name", "back"],
    );
    // Exactly at the limit is fine; the limit is in bytes, not characters.
    let mut file = tiny();
    file["sections"][1]["name"] = json!("x".repeat(limits::NAME_BYTES_MAX));
    check(file.to_string()).unwrap();
    let mut file = tiny();
    file["sections"][1]["name"] = json!("é".repeat(limits::NAME_BYTES_MAX / 2 + 1));
    assert!(matches!(
        check(file.to_string()),
        Err(VenueError::BadName {
            what: "section name",
            ..
        })
    ));
}

#[test]
fn too_many_seats_in_a_row() {
    let max = limits::ROW_SEATS_MAX;
    refused(
        |f| f["sections"][0]["rows"][1]["seats"] = seats(max + 1),
        VenueError::TooMany {
            what: "seat in a row",
            place: r#"section "FLOOR" row "B""#.into(),
            count: max + 1,
            max,
        },
        &["\"FLOOR\"", "\"B\"", &(max + 1).to_string()],
    );
    // A row of exactly the limit is fine.
    let mut file = tiny();
    file["sections"][0]["rows"][1]["seats"] = seats(max);
    assert_eq!(
        check(file.to_string()).unwrap().seat_count() as usize,
        5 + max
    );
}

#[test]
fn too_many_rows_in_a_section() {
    let max = limits::SECTION_ROWS_MAX;
    let rows: Value = (1..=max + 1)
        .map(|i| json!({ "id": i.to_string(), "seats": [{ "id": "1" }] }))
        .collect();
    refused(
        |f| f["sections"][1]["rows"] = rows,
        VenueError::TooMany {
            what: "row",
            place: r#"section "BALCONY""#.into(),
            count: max + 1,
            max,
        },
        &["\"BALCONY\""],
    );
}

#[test]
fn too_many_sections() {
    let max = limits::VENUE_SECTIONS_MAX;
    let sections: Value = (1..=max + 1)
        .map(|i| {
            json!({
                "id": i.to_string(), "name": "S", "price_level": "back",
                "rows": [{ "id": "A", "seats": [{ "id": "1" }] }]
            })
        })
        .collect();
    refused(
        |f| f["sections"] = sections,
        VenueError::TooMany {
            what: "section",
            place: "venue".into(),
            count: max + 1,
            max,
        },
        &["venue"],
    );
}

#[test]
fn too_many_price_levels() {
    let max = limits::VENUE_PRICE_LEVELS_MAX;
    let levels: Value = (1..=max + 1)
        .map(|i| json!({ "id": i.to_string(), "name": "P", "price_cents": i }))
        .collect();
    refused(
        |f| f["price_levels"] = levels,
        VenueError::TooMany {
            what: "price level",
            place: "price_levels".into(),
            count: max + 1,
            max,
        },
        &["price_levels"],
    );
}

#[test]
fn too_many_seats_in_the_venue() {
    let per_row = limits::ROW_SEATS_MAX;
    // FLOOR has 5 seats; BALCONY gets full rows until the venue overflows.
    let floor_seats = 5;
    let last_row = (limits::VENUE_SEATS_MAX - floor_seats) / per_row + 1;
    let row_seats = seats(per_row);
    let rows: Value = (1..=last_row)
        .map(|i| json!({ "id": i.to_string(), "price_level": "back", "seats": row_seats }))
        .collect();
    let count = floor_seats + last_row * per_row;
    refused(
        |f| f["sections"][1]["rows"] = rows,
        VenueError::TooMany {
            what: "seat",
            place: format!("section \"BALCONY\" row \"{last_row}\""),
            count,
            max: limits::VENUE_SEATS_MAX,
        },
        &["\"BALCONY\"", &format!("\"{last_row}\"")],
    );
}

#[test]
fn bad_map_rectangle() {
    let bad_maps = [
        json!({ "x": 0.0, "y": 0.0, "width": 0.0, "height": 5.0 }),
        json!({ "x": 0.0, "y": 0.0, "width": 4.0, "height": -5.0 }),
        // Out of f32 range: parses as infinity.
        json!({ "x": 1e39, "y": 0.0, "width": 4.0, "height": 5.0 }),
        json!({ "x": 0.0, "y": 0.0, "width": 4.0, "height": 1e39 }),
    ];
    for map in bad_maps {
        refused(
            |f| f["sections"][1]["map"] = map,
            VenueError::BadMap {
                section: "BALCONY".into(),
            },
            &["\"BALCONY\""],
        );
    }
    // Negative coordinates are fine; only the size must be positive.
    let mut file = tiny();
    file["sections"][1]["map"] = json!({ "x": -3.0, "y": -4.0, "width": 1.0, "height": 1.0 });
    check(file.to_string()).unwrap();
}

// ---------------------------------------------------------------------------
// The shipped venues

fn shipped(name: &str) -> Venue {
    let path = format!("{}/../venues/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    check(bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn accessible_count(venue: &Venue) -> usize {
    venue.seats.iter().filter(|s| s.accessible).count()
}

#[test]
fn shipped_files_are_what_the_generator_makes() {
    let dir = format!("{}/../venues", env!("CARGO_MANIFEST_DIR"));
    let regenerate = "regenerate with `cargo run -p onsale-schema --example gen_venues -- venues`";
    let club = std::fs::read(format!("{dir}/club.json")).unwrap();
    assert!(
        club == gen_venues::club_json(),
        "club.json is stale: {regenerate}"
    );
    let stadium = std::fs::read(format!("{dir}/stadium.json")).unwrap();
    assert!(
        stadium == gen_venues::stadium_json(),
        "stadium.json is stale: {regenerate}"
    );
}

#[test]
fn club_is_as_documented() {
    let club = shipped("club.json");
    assert_eq!(club.name, "The Cellar");
    assert!(
        (450..=550).contains(&club.seat_count()),
        "{}",
        club.seat_count()
    );
    assert_eq!(club.seat_count(), 508);
    assert_eq!(club.sections.len(), 4);
    assert_eq!(club.price_levels.len(), 4);
    assert_eq!(accessible_count(&club), 4);
    assert!(club.sections.iter().all(|s| s.map.is_some()));
}

#[test]
fn stadium_is_as_documented() {
    let stadium = shipped("stadium.json");
    assert_eq!(stadium.name, "Harbour Stadium");
    assert_eq!(stadium.seat_count(), 60_000);
    assert_eq!(stadium.sections.len(), 8 + 32 + 40);
    assert_eq!(stadium.price_levels.len(), 8);
    assert_eq!(accessible_count(&stadium), 104);
    assert!(stadium.sections.iter().all(|s| s.map.is_some()));
    // Closer is pricier: price levels are listed dearest first.
    let prices: Vec<u64> = stadium.price_levels.iter().map(|p| p.price_cents).collect();
    assert!(prices.is_sorted_by(|a, b| a > b), "{prices:?}");
    // Every price level is sold somewhere.
    for (i, level) in stadium.price_levels.iter().enumerate() {
        assert!(
            stadium.seats.iter().any(|s| s.price_level.0 as usize == i),
            "price level {} is unused",
            level.id
        );
    }
}

/// `ranges` tile `0..total` in order, none empty.
fn assert_tiles(ranges: impl Iterator<Item = Range<u32>>, total: usize) {
    let mut next = 0;
    for range in ranges {
        assert_eq!(range.start, next);
        assert!(range.end > range.start);
        next = range.end;
    }
    assert_eq!(next as usize, total);
}

fn assert_well_indexed(venue: &Venue) {
    assert_tiles(
        venue.sections.iter().map(|s| s.rows.clone()),
        venue.rows.len(),
    );
    assert_tiles(
        venue.sections.iter().map(|s| s.seats.clone()),
        venue.seats.len(),
    );
    // Seats of each row are contiguous: the rows' ranges tile the seats.
    assert_tiles(
        venue.rows.iter().map(|r| r.seats.clone()),
        venue.seats.len(),
    );
    for (r, row) in venue.rows.iter().enumerate() {
        for seat in row.seats.clone() {
            assert_eq!(venue.row_of(SeatIdx(seat)), RowIdx(r as u32));
        }
    }
    for (s, section) in venue.sections.iter().enumerate() {
        let section_idx = SectionIdx(s as u16);
        for row in section.rows.clone() {
            assert_eq!(venue.row(RowIdx(row)).section, section_idx);
        }
        for seat in section.seats.clone() {
            assert_eq!(venue.section_of(SeatIdx(seat)), section_idx);
            assert!(section.rows.contains(&venue.row_of(SeatIdx(seat)).0));
        }
    }
}

#[test]
fn shipped_venues_are_well_indexed() {
    assert_well_indexed(&shipped("club.json"));
    assert_well_indexed(&shipped("stadium.json"));
    assert_well_indexed(&check(tiny().to_string()).unwrap());
}

#[test]
fn file_form_round_trips() {
    for venue in [
        shipped("club.json"),
        shipped("stadium.json"),
        check(tiny().to_string()).unwrap(),
    ] {
        let file = venue.to_file();
        assert_eq!(Venue::from_file(&file).unwrap(), venue);
        // And through JSON text, the way an operator would save it.
        assert_eq!(check(serde_json::to_vec(&file).unwrap()).unwrap(), venue);
    }
}

#[test]
fn digest_is_stable_and_tells_venues_apart() {
    let club = shipped("club.json");
    let stadium = shipped("stadium.json");
    assert_eq!(club.digest(), shipped("club.json").digest());
    assert_eq!(stadium.digest(), shipped("stadium.json").digest());
    assert_ne!(club.digest(), stadium.digest());
    // Any change to the content changes the digest, a price for one.
    let mut dearer = club.to_file();
    dearer.price_levels[0].price_cents += 1;
    assert_ne!(Venue::from_file(&dearer).unwrap().digest(), club.digest());
}
