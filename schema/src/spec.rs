//! What an operator asks for: an event, its venue and its settings. Stored
//! as the cluster's desired state; every node that may own the event reads
//! it from the store.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::config::{ConfigError, EventConfig};
use crate::ids::{EventId, Millis};
use crate::limits;
use crate::venue::{Venue, VenueError};

/// An event as created by an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSpec {
    pub event: EventId,
    pub name: String,
    pub city: String,
    /// When the show starts (wall-clock data, not a timer).
    pub starts_at: Millis,
    /// The venue file, as JSON text (checked whenever it is loaded).
    pub venue_json: String,
    pub config: EventConfig,
}

/// Why a spec was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("event name and city must be 1..={} bytes", limits::NAME_BYTES_MAX)]
    BadName,
    #[error(transparent)]
    Venue(#[from] VenueError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl EventSpec {
    /// Check the spec and build its venue.
    pub fn venue(&self) -> Result<Venue, SpecError> {
        let name_ok = |s: &str| !s.is_empty() && s.len() <= limits::NAME_BYTES_MAX;
        if !name_ok(&self.name) || !name_ok(&self.city) {
            return Err(SpecError::BadName);
        }
        self.config.check()?;
        Ok(Venue::from_json(self.venue_json.as_bytes())?)
    }

    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_record(self)
    }

    /// Decode a stored spec. Its venue is checked when [`EventSpec::venue`]
    /// builds it (once, by whoever needs it: parsing a large venue file is
    /// the dearest step of restoring an event).
    pub fn decode(bytes: &[u8]) -> Result<EventSpec, SpecError> {
        Ok(codec::decode_record(bytes)?)
    }
}
