//! The venue model: sections → rows → seats, price levels, accessible seats.
//!
//! A venue is written by people as JSON (a [`VenueFile`]) and checked into
//! a [`Venue`], whose flat, indexed form is what cores use. Checking rejects
//! anything ambiguous with an error that names the place: duplicate ids,
//! empty sections or rows, unknown or missing price levels, oversized lists.
//!
//! A price level may be given on a section, a row or a seat; the nearest
//! one wins. Seats of a row are listed in physical order, so neighbours in
//! the list are neighbours in the venue.

use std::collections::HashSet;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::ids::{PriceLevelIdx, RowIdx, SeatIdx, SectionIdx};
use crate::limits;

/// A venue file as written by people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueFile {
    pub name: String,
    pub city: String,
    pub price_levels: Vec<PriceLevelFile>,
    pub sections: Vec<SectionFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceLevelFile {
    pub id: String,
    pub name: String,
    pub price_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionFile {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_level: Option<String>,
    /// Where the section is drawn on the venue map, in map units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<SectionMap>,
    pub rows: Vec<RowFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFile {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_level: Option<String>,
    pub seats: Vec<SeatFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeatFile {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_level: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accessible: bool,
}

/// A section's rectangle on the venue map (for the fan page's SVG).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionMap {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// A checked venue in flat, indexed form. It has no `Deserialize`: the only
/// way to get one is through the checks of [`Venue::from_file`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Venue {
    pub name: String,
    pub city: String,
    pub price_levels: Vec<PriceLevel>,
    pub sections: Vec<Section>,
    pub rows: Vec<Row>,
    pub seats: Vec<Seat>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceLevel {
    pub id: String,
    pub name: String,
    pub price_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Section {
    pub id: String,
    pub name: String,
    pub map: Option<SectionMap>,
    /// Rows of this section, front first, as indices into `Venue::rows`.
    pub rows: Range<u32>,
    /// Seats of this section, as indices into `Venue::seats`.
    pub seats: Range<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    pub id: String,
    pub section: SectionIdx,
    /// Seats of this row in physical order, as indices into `Venue::seats`.
    pub seats: Range<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Seat {
    pub id: String,
    pub row: RowIdx,
    pub price_level: PriceLevelIdx,
    pub accessible: bool,
}

/// Why a venue file was refused. Each names the place of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VenueError {
    #[error("venue file is {size} bytes, more than the limit of {max}")]
    FileTooLarge { size: usize, max: usize },
    #[error("venue file is not valid JSON for a venue: {message}")]
    Json { message: String },
    #[error("{what} at {place} is empty or longer than {max} bytes", max = limits::NAME_BYTES_MAX)]
    BadName { what: &'static str, place: String },
    #[error("venue has no price levels")]
    NoPriceLevels,
    #[error("venue has no sections")]
    NoSections,
    #[error("price level {id:?} is defined twice")]
    DuplicatePriceLevel { id: String },
    #[error("section {id:?} is defined twice")]
    DuplicateSection { id: String },
    #[error("row {row:?} is defined twice in section {section:?}")]
    DuplicateRow { section: String, row: String },
    #[error("seat {seat:?} is defined twice in section {section:?} row {row:?}")]
    DuplicateSeat {
        section: String,
        row: String,
        seat: String,
    },
    #[error("section {section:?} has no rows")]
    EmptySection { section: String },
    #[error("row {row:?} of section {section:?} has no seats")]
    EmptyRow { section: String, row: String },
    #[error("{place} names unknown price level {id:?}")]
    UnknownPriceLevel { place: String, id: String },
    #[error("seat {place} has no price level (set one on the seat, its row or its section)")]
    MissingPriceLevel { place: String },
    #[error("{what} count {count} at {place} exceeds the limit of {max}")]
    TooMany {
        what: &'static str,
        place: String,
        count: usize,
        max: usize,
    },
    #[error("section {section:?} map rectangle is not finite and positive")]
    BadMap { section: String },
}

impl Venue {
    /// Parse and check a venue file. Never panics, whatever the bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Venue, VenueError> {
        if bytes.len() > limits::VENUE_FILE_BYTES_MAX {
            return Err(VenueError::FileTooLarge {
                size: bytes.len(),
                max: limits::VENUE_FILE_BYTES_MAX,
            });
        }
        let file: VenueFile = serde_json::from_slice(bytes).map_err(|e| VenueError::Json {
            message: e.to_string(),
        })?;
        Venue::from_file(&file)
    }

    /// Check a parsed venue file and build the indexed form.
    pub fn from_file(file: &VenueFile) -> Result<Venue, VenueError> {
        check_name("venue name", "venue", &file.name)?;
        check_name("city", "venue", &file.city)?;
        let price_levels = check_price_levels(&file.price_levels)?;
        if file.sections.is_empty() {
            return Err(VenueError::NoSections);
        }
        check_count(
            "section",
            "venue",
            file.sections.len(),
            limits::VENUE_SECTIONS_MAX,
        )?;
        let mut venue = Venue {
            name: file.name.clone(),
            city: file.city.clone(),
            price_levels,
            sections: Vec::with_capacity(file.sections.len()),
            rows: Vec::new(),
            seats: Vec::new(),
        };
        let mut section_ids = HashSet::new();
        for section in &file.sections {
            if !section_ids.insert(section.id.as_str()) {
                return Err(VenueError::DuplicateSection {
                    id: section.id.clone(),
                });
            }
            venue.push_section(file, section)?;
        }
        Ok(venue)
    }

    fn push_section(&mut self, file: &VenueFile, section: &SectionFile) -> Result<(), VenueError> {
        check_name("section id", "venue", &section.id)?;
        check_name("section name", &section.id, &section.name)?;
        if let Some(map) = section.map {
            let ok = [map.x, map.y].iter().all(|v| v.is_finite())
                && [map.width, map.height]
                    .iter()
                    .all(|v| v.is_finite() && *v > 0.0);
            if !ok {
                return Err(VenueError::BadMap {
                    section: section.id.clone(),
                });
            }
        }
        if section.rows.is_empty() {
            return Err(VenueError::EmptySection {
                section: section.id.clone(),
            });
        }
        check_count(
            "row",
            &format!("section {:?}", section.id),
            section.rows.len(),
            limits::SECTION_ROWS_MAX,
        )?;
        let section_idx = SectionIdx(self.sections.len() as u16);
        let rows_start = self.rows.len() as u32;
        let seats_start = self.seats.len() as u32;
        let mut row_ids = HashSet::new();
        for row in &section.rows {
            if !row_ids.insert(row.id.as_str()) {
                return Err(VenueError::DuplicateRow {
                    section: section.id.clone(),
                    row: row.id.clone(),
                });
            }
            self.push_row(file, section, section_idx, row)?;
        }
        self.sections.push(Section {
            id: section.id.clone(),
            name: section.name.clone(),
            map: section.map,
            rows: rows_start..self.rows.len() as u32,
            seats: seats_start..self.seats.len() as u32,
        });
        Ok(())
    }

    fn push_row(
        &mut self,
        file: &VenueFile,
        section: &SectionFile,
        section_idx: SectionIdx,
        row: &RowFile,
    ) -> Result<(), VenueError> {
        let place = || format!("section {:?} row {:?}", section.id, row.id);
        check_name("row id", &place(), &row.id)?;
        if row.seats.is_empty() {
            return Err(VenueError::EmptyRow {
                section: section.id.clone(),
                row: row.id.clone(),
            });
        }
        check_count(
            "seat in a row",
            &place(),
            row.seats.len(),
            limits::ROW_SEATS_MAX,
        )?;
        check_count(
            "seat",
            &place(),
            self.seats.len() + row.seats.len(),
            limits::VENUE_SEATS_MAX,
        )?;
        let row_idx = RowIdx(self.rows.len() as u32);
        let start = self.seats.len() as u32;
        let mut seat_ids = HashSet::new();
        for seat in &row.seats {
            let seat_place = || format!("{:?}/{:?}/{:?}", section.id, row.id, seat.id);
            check_name("seat id", &seat_place(), &seat.id)?;
            if !seat_ids.insert(seat.id.as_str()) {
                return Err(VenueError::DuplicateSeat {
                    section: section.id.clone(),
                    row: row.id.clone(),
                    seat: seat.id.clone(),
                });
            }
            let level_id = seat
                .price_level
                .as_ref()
                .or(row.price_level.as_ref())
                .or(section.price_level.as_ref())
                .ok_or_else(|| VenueError::MissingPriceLevel {
                    place: seat_place(),
                })?;
            let price_level = file
                .price_levels
                .iter()
                .position(|p| &p.id == level_id)
                .ok_or_else(|| VenueError::UnknownPriceLevel {
                    place: seat_place(),
                    id: level_id.clone(),
                })?;
            self.seats.push(Seat {
                id: seat.id.clone(),
                row: row_idx,
                price_level: PriceLevelIdx(price_level as u16),
                accessible: seat.accessible,
            });
        }
        self.rows.push(Row {
            id: row.id.clone(),
            section: section_idx,
            seats: start..self.seats.len() as u32,
        });
        Ok(())
    }

    /// The file form of this venue (what `from_file` accepts back).
    #[must_use]
    pub fn to_file(&self) -> VenueFile {
        let sections = self
            .sections
            .iter()
            .map(|section| SectionFile {
                id: section.id.clone(),
                name: section.name.clone(),
                price_level: None,
                map: section.map,
                rows: section
                    .rows
                    .clone()
                    .map(|r| {
                        let row = &self.rows[r as usize];
                        RowFile {
                            id: row.id.clone(),
                            price_level: None,
                            seats: row
                                .seats
                                .clone()
                                .map(|s| {
                                    let seat = &self.seats[s as usize];
                                    SeatFile {
                                        id: seat.id.clone(),
                                        price_level: Some(
                                            self.price_levels[seat.price_level.0 as usize]
                                                .id
                                                .clone(),
                                        ),
                                        accessible: seat.accessible,
                                    }
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        VenueFile {
            name: self.name.clone(),
            city: self.city.clone(),
            price_levels: self
                .price_levels
                .iter()
                .map(|p| PriceLevelFile {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    price_cents: p.price_cents,
                })
                .collect(),
            sections,
        }
    }

    /// A fingerprint of the venue's content. Snapshots record it so that a
    /// snapshot is never restored onto a different venue.
    #[must_use]
    pub fn digest(&self) -> u64 {
        let bytes = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("a venue always encodes");
        let hash = blake3::hash(&bytes);
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    #[must_use]
    pub fn seat_count(&self) -> u32 {
        self.seats.len() as u32
    }

    #[must_use]
    pub fn seat(&self, seat: SeatIdx) -> Option<&Seat> {
        self.seats.get(seat.0 as usize)
    }

    #[must_use]
    pub fn row_of(&self, seat: SeatIdx) -> RowIdx {
        self.seats[seat.0 as usize].row
    }

    #[must_use]
    pub fn section_of(&self, seat: SeatIdx) -> SectionIdx {
        self.rows[self.row_of(seat).0 as usize].section
    }

    #[must_use]
    pub fn row(&self, row: RowIdx) -> &Row {
        &self.rows[row.0 as usize]
    }

    #[must_use]
    pub fn section(&self, section: SectionIdx) -> Option<&Section> {
        self.sections.get(section.0 as usize)
    }

    #[must_use]
    pub fn price_cents(&self, seat: SeatIdx) -> u64 {
        self.price_levels[self.seats[seat.0 as usize].price_level.0 as usize].price_cents
    }

    #[must_use]
    pub fn section_by_id(&self, id: &str) -> Option<SectionIdx> {
        self.sections
            .iter()
            .position(|s| s.id == id)
            .map(|i| SectionIdx(i as u16))
    }

    #[must_use]
    pub fn price_level_by_id(&self, id: &str) -> Option<PriceLevelIdx> {
        self.price_levels
            .iter()
            .position(|p| p.id == id)
            .map(|i| PriceLevelIdx(i as u16))
    }

    /// A human label such as `"FLOOR A / row 3 / seat 12"`.
    #[must_use]
    pub fn seat_label(&self, seat: SeatIdx) -> String {
        let Some(s) = self.seat(seat) else {
            return format!("{seat}");
        };
        let row = self.row(s.row);
        let section = &self.sections[row.section.0 as usize];
        format!("{} / row {} / seat {}", section.name, row.id, s.id)
    }
}

fn check_name(what: &'static str, place: &str, name: &str) -> Result<(), VenueError> {
    if name.is_empty() || name.len() > limits::NAME_BYTES_MAX {
        return Err(VenueError::BadName {
            what,
            place: place.to_owned(),
        });
    }
    Ok(())
}

fn check_count(
    what: &'static str,
    place: &str,
    count: usize,
    max: usize,
) -> Result<(), VenueError> {
    if count > max {
        return Err(VenueError::TooMany {
            what,
            place: place.to_owned(),
            count,
            max,
        });
    }
    Ok(())
}

fn check_price_levels(levels: &[PriceLevelFile]) -> Result<Vec<PriceLevel>, VenueError> {
    if levels.is_empty() {
        return Err(VenueError::NoPriceLevels);
    }
    check_count(
        "price level",
        "price_levels",
        levels.len(),
        limits::VENUE_PRICE_LEVELS_MAX,
    )?;
    let mut ids = HashSet::new();
    let mut out = Vec::with_capacity(levels.len());
    for level in levels {
        check_name("price level id", "price_levels", &level.id)?;
        check_name("price level name", &level.id, &level.name)?;
        if !ids.insert(level.id.as_str()) {
            return Err(VenueError::DuplicatePriceLevel {
                id: level.id.clone(),
            });
        }
        out.push(PriceLevel {
            id: level.id.clone(),
            name: level.name.clone(),
            price_cents: level.price_cents,
        });
    }
    Ok(out)
}
