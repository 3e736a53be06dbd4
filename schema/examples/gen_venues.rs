//! Generates the two example venues shipped in `venues/`.
//!
//! - `club.json`: "The Cellar", Bristol. A 508-seat club: a 336-seat floor
//!   (front rows priced higher), a 156-seat balcony and two 8-seat boxes,
//!   with accessible seats at the ends of the floor's back row. Pretty JSON.
//! - `stadium.json`: "Harbour Stadium", Lisbon. Exactly 60,000 seats: 8
//!   floor sections on the field, a lower bowl of 32 sections (101–132) and
//!   an upper bowl of 40 sections (201–240) around it, 8 price levels
//!   (closer to the field costs more), accessible seats at the row ends of
//!   some sections. Compact JSON.
//!
//! Both carry a `map` rectangle per section (map units; the club is 100 ×
//! 100 with the stage at the top, the stadium 1000 × 900 with the field in
//! the middle) so a seat map can be drawn. Price levels are set on sections
//! and rows, not per seat, to keep the files small.
//!
//! The output is a pure function of this code (no randomness), so running
//! it again reproduces the checked-in files byte for byte:
//!
//! ```text
//! cargo run -p onsale-schema --example gen_venues -- venues
//! ```
//!
//! `schema/tests/venue.rs` includes this file and fails if the checked-in
//! files differ from what it generates.

use std::error::Error;
use std::path::Path;

use onsale_schema::Venue;
use onsale_schema::venue::{PriceLevelFile, RowFile, SeatFile, SectionFile, SectionMap, VenueFile};

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = std::env::args().nth(1).ok_or("usage: gen_venues OUT_DIR")?;
    let out_dir = Path::new(&out_dir);
    std::fs::create_dir_all(out_dir)?;

    write_checked(&out_dir.join("club.json"), &club_json())?;
    write_checked(&out_dir.join("stadium.json"), &stadium_json())?;
    Ok(())
}

/// The bytes of `club.json` (pretty, so it reads as an example).
pub fn club_json() -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(&club()).expect("a venue file always serializes");
    bytes.push(b'\n');
    bytes
}

/// The bytes of `stadium.json` (compact: it is large).
pub fn stadium_json() -> Vec<u8> {
    serde_json::to_vec(&stadium()).expect("a venue file always serializes")
}

/// Check the bytes load as a venue before writing them.
fn write_checked(path: &Path, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    let venue = Venue::from_json(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(path, bytes)?;
    println!(
        "{}: {} seats, {} sections, {} bytes",
        path.display(),
        venue.seat_count(),
        venue.sections.len(),
        bytes.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The club

fn club() -> VenueFile {
    let floor_rows = (0..12)
        .map(|r| {
            // Rows A–C are the front rows; the back row (L) has accessible
            // seats at both ends, by the doors.
            let price_level = (r < 3).then(|| "floor-front".to_owned());
            let accessible = |s: u32| r == 11 && (s <= 2 || s >= 27);
            row(letter(r), price_level, 28, accessible)
        })
        .collect();
    let balcony_rows = (0..6)
        .map(|r| row(letter(r), None, 26, |_| false))
        .collect();
    let box_rows = || (0..2).map(|r| row(letter(r), None, 4, |_| false)).collect();

    VenueFile {
        name: "The Cellar".into(),
        city: "Bristol".into(),
        price_levels: vec![
            level("box", "Box", 9_000),
            level("floor-front", "Floor Front", 6_500),
            level("floor", "Floor", 4_500),
            level("balcony", "Balcony", 3_500),
        ],
        sections: vec![
            section(
                "FLOOR",
                "Floor",
                "floor",
                rect(15.0, 18.0, 70.0, 50.0),
                floor_rows,
            ),
            section(
                "BOX-L",
                "Box Left",
                "box",
                rect(2.0, 25.0, 10.0, 20.0),
                box_rows(),
            ),
            section(
                "BOX-R",
                "Box Right",
                "box",
                rect(88.0, 25.0, 10.0, 20.0),
                box_rows(),
            ),
            section(
                "BALCONY",
                "Balcony",
                "balcony",
                rect(5.0, 75.0, 90.0, 22.0),
                balcony_rows,
            ),
        ],
    }
}

// ---------------------------------------------------------------------------
// The stadium
//
// Floor:       8 sections × 20 rows × 25 seats               =  4,000
// Lower bowl: 32 sections × 25 rows, row r has 16 + r seats  = 22,400
// Upper bowl: 40 sections × 21 rows, row r has 30 + r seats  = 33,600
//                                                      total  = 60,000

/// The field, in map units; both bowls are rings around it.
const FIELD: Rect = Rect {
    x0: 300.0,
    y0: 300.0,
    x1: 700.0,
    y1: 600.0,
};

fn stadium() -> VenueFile {
    let mut sections = floor_sections();
    sections.extend(bowl_sections(&LOWER_BOWL));
    sections.extend(bowl_sections(&UPPER_BOWL));
    VenueFile {
        name: "Harbour Stadium".into(),
        city: "Lisbon".into(),
        price_levels: vec![
            level("floor-center", "Floor Center", 25_000),
            level("floor", "Floor", 18_000),
            level("lower-premium", "Lower Sideline Rows 1-8", 17_500),
            level("lower-sideline", "Lower Sideline", 14_000),
            level("lower-end", "Lower End", 10_000),
            level("upper-sideline", "Upper Sideline", 8_000),
            level("upper-end", "Upper End", 5_500),
            level("upper-value", "Upper Value", 3_500),
        ],
        sections,
    }
}

/// A 4 × 2 grid of floor sections on the field; the middle two columns
/// are the pricier "floor-center".
fn floor_sections() -> Vec<SectionFile> {
    let (columns, lines) = (4, 2);
    let margin = 20.0;
    let width = (FIELD.x1 - FIELD.x0 - margin * 2.0) / columns as f32;
    let height = (FIELD.y1 - FIELD.y0 - margin * 2.0) / lines as f32;
    let mut sections = Vec::new();
    for line in 0..lines {
        for column in 0..columns {
            let n = line * columns + column + 1;
            let price_level = if column == 1 || column == 2 {
                "floor-center"
            } else {
                "floor"
            };
            let map = rect(
                FIELD.x0 + margin + column as f32 * width + 2.0,
                FIELD.y0 + margin + line as f32 * height + 2.0,
                width - 4.0,
                height - 4.0,
            );
            let rows = (0..20)
                .map(|r| row(letter(r), None, 25, |_| false))
                .collect();
            sections.push(section(
                &format!("F{n}"),
                &format!("Floor {n}"),
                price_level,
                map,
                rows,
            ));
        }
    }
    sections
}

/// One ring of sections around the field.
struct Bowl {
    /// Section numbers are `first_number`, `first_number + 1`, … clockwise
    /// from the north-west corner.
    first_number: u32,
    /// Distance of the ring's inner and outer edge from the field.
    inner: f32,
    outer: f32,
    /// Sections along each sideline (north, south), each end (east,
    /// west) and in each corner.
    per_sideline: u32,
    per_end: u32,
    per_corner: u32,
    rows: u32,
    /// Seats in the front row; each row back has one more.
    front_row_seats: u32,
    upper: bool,
}

const LOWER_BOWL: Bowl = Bowl {
    first_number: 101,
    inner: 20.0,
    outer: 140.0,
    per_sideline: 7,
    per_end: 5,
    per_corner: 2,
    rows: 25,
    front_row_seats: 16,
    upper: false,
};

const UPPER_BOWL: Bowl = Bowl {
    first_number: 201,
    inner: 160.0,
    outer: 290.0,
    per_sideline: 10,
    per_end: 6,
    per_corner: 2,
    rows: 21,
    front_row_seats: 30,
    upper: true,
};

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Sideline,
    End,
    Corner,
}

fn bowl_sections(bowl: &Bowl) -> Vec<SectionFile> {
    let inner = FIELD.grow(bowl.inner);
    let outer = FIELD.grow(bowl.outer);
    let mut places = Vec::new();
    // Clockwise from the north-west corner: the corner square is split
    // into vertical strips, sidelines along x, ends along y.
    let corners = [
        Rect {
            x0: outer.x0,
            y0: outer.y0,
            x1: inner.x0,
            y1: inner.y0,
        },
        Rect {
            x0: inner.x1,
            y0: outer.y0,
            x1: outer.x1,
            y1: inner.y0,
        },
        Rect {
            x0: inner.x1,
            y0: inner.y1,
            x1: outer.x1,
            y1: outer.y1,
        },
        Rect {
            x0: outer.x0,
            y0: inner.y1,
            x1: inner.x0,
            y1: outer.y1,
        },
    ];
    let north = Rect {
        x0: inner.x0,
        y0: outer.y0,
        x1: inner.x1,
        y1: inner.y0,
    };
    let east = Rect {
        x0: inner.x1,
        y0: inner.y0,
        x1: outer.x1,
        y1: inner.y1,
    };
    let south = Rect {
        x0: inner.x0,
        y0: inner.y1,
        x1: inner.x1,
        y1: outer.y1,
    };
    let west = Rect {
        x0: outer.x0,
        y0: inner.y0,
        x1: inner.x0,
        y1: inner.y1,
    };
    let (c, s, e) = (bowl.per_corner, bowl.per_sideline, bowl.per_end);
    places.extend(corners[0].split_x(c).map(|r| (Side::Corner, r)));
    places.extend(north.split_x(s).map(|r| (Side::Sideline, r)));
    places.extend(corners[1].split_x(c).map(|r| (Side::Corner, r)));
    places.extend(east.split_y(e).map(|r| (Side::End, r)));
    places.extend(corners[2].split_x(c).rev().map(|r| (Side::Corner, r)));
    places.extend(south.split_x(s).rev().map(|r| (Side::Sideline, r)));
    places.extend(corners[3].split_x(c).rev().map(|r| (Side::Corner, r)));
    places.extend(west.split_y(e).rev().map(|r| (Side::End, r)));

    places
        .into_iter()
        .zip(bowl.first_number..)
        .map(|((side, map), number)| bowl_section(bowl, number, side, map))
        .collect()
}

fn bowl_section(bowl: &Bowl, number: u32, side: Side, map: Rect) -> SectionFile {
    let sideline = side == Side::Sideline;
    let price_level = match (bowl.upper, sideline) {
        (false, true) => "lower-sideline",
        (false, false) => "lower-end",
        (true, true) => "upper-sideline",
        (true, false) => "upper-end",
    };
    // Wheelchair platforms: the back row of every even lower-bowl section,
    // the front row of every fourth upper-bowl section; two seats at each
    // end of the row.
    let accessible_row = match (
        bowl.upper,
        number.is_multiple_of(2),
        number.is_multiple_of(4),
    ) {
        (false, true, _) => Some(bowl.rows - 1),
        (true, _, true) => Some(0),
        _ => None,
    };
    let rows = (0..bowl.rows)
        .map(|r| {
            let row_level = match (bowl.upper, sideline) {
                (false, true) if r < 8 => Some("lower-premium"),
                (true, false) if r + 6 >= bowl.rows => Some("upper-value"),
                _ => None,
            };
            let seats = bowl.front_row_seats + r;
            let accessible = |s: u32| accessible_row == Some(r) && (s <= 2 || s + 2 > seats);
            row(
                (r + 1).to_string(),
                row_level.map(str::to_owned),
                seats,
                accessible,
            )
        })
        .collect();
    let bowl_name = if bowl.upper { "Upper" } else { "Lower" };
    section(
        &number.to_string(),
        &format!("{bowl_name} {number}"),
        price_level,
        map.inset(2.0),
        rows,
    )
}

// ---------------------------------------------------------------------------
// Building blocks

#[derive(Clone, Copy)]
struct Rect {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

impl Rect {
    fn grow(self, by: f32) -> Rect {
        Rect {
            x0: self.x0 - by,
            y0: self.y0 - by,
            x1: self.x1 + by,
            y1: self.y1 + by,
        }
    }

    fn inset(self, by: f32) -> SectionMap {
        rect(
            self.x0 + by,
            self.y0 + by,
            self.x1 - self.x0 - by * 2.0,
            self.y1 - self.y0 - by * 2.0,
        )
    }

    /// `n` equal strips side by side, west to east.
    fn split_x(self, n: u32) -> impl DoubleEndedIterator<Item = Rect> {
        let width = (self.x1 - self.x0) / n as f32;
        (0..n).map(move |i| Rect {
            x0: self.x0 + i as f32 * width,
            x1: self.x0 + (i + 1) as f32 * width,
            ..self
        })
    }

    /// `n` equal strips stacked, north to south.
    fn split_y(self, n: u32) -> impl DoubleEndedIterator<Item = Rect> {
        let height = (self.y1 - self.y0) / n as f32;
        (0..n).map(move |i| Rect {
            y0: self.y0 + i as f32 * height,
            y1: self.y0 + (i + 1) as f32 * height,
            ..self
        })
    }
}

fn rect(x: f32, y: f32, width: f32, height: f32) -> SectionMap {
    // Round to a tenth of a unit so the JSON stays short.
    let round = |v: f32| (v * 10.0).round() / 10.0;
    SectionMap {
        x: round(x),
        y: round(y),
        width: round(width),
        height: round(height),
    }
}

fn level(id: &str, name: &str, price_cents: u64) -> PriceLevelFile {
    PriceLevelFile {
        id: id.into(),
        name: name.into(),
        price_cents,
    }
}

fn section(
    id: &str,
    name: &str,
    price_level: &str,
    map: SectionMap,
    rows: Vec<RowFile>,
) -> SectionFile {
    SectionFile {
        id: id.into(),
        name: name.into(),
        price_level: Some(price_level.into()),
        map: Some(map),
        rows,
    }
}

/// A row of seats numbered 1..=`seats` in physical order.
fn row(
    id: String,
    price_level: Option<String>,
    seats: u32,
    accessible: impl Fn(u32) -> bool,
) -> RowFile {
    RowFile {
        id,
        price_level,
        seats: (1..=seats)
            .map(|s| SeatFile {
                id: s.to_string(),
                price_level: None,
                accessible: accessible(s),
            })
            .collect(),
    }
}

/// Row letters: A, B, … Z (the venues here never need more).
fn letter(index: u32) -> String {
    assert!(index < 26, "row index {index} has no single letter");
    char::from(b'A' + index as u8).to_string()
}
