//! The CLI's one error type and its exit codes (documented in `--help`):
//! 0 ok, 1 error, 2 usage, 3 not found, 4 conflict or wrong state,
//! 5 timed out.

use std::fmt;

/// What kind of failure, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Anything else: a refused token, no endpoint answering, a server error.
    Error,
    /// The command line or an input file is wrong.
    Usage,
    /// The event or node does not exist.
    NotFound,
    /// The cluster refused because of its state (an illegal transition,
    /// an event id taken with another spec).
    Conflict,
    /// A deadline passed.
    TimedOut,
}

impl Kind {
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Error => 1,
            Kind::Usage => 2,
            Kind::NotFound => 3,
            Kind::Conflict => 4,
            Kind::TimedOut => 5,
        }
    }
}

/// A failed command: its kind, a stable code (the server's error code when
/// the server said it) and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlError {
    pub kind: Kind,
    pub code: String,
    pub message: String,
}

impl CtlError {
    pub fn new(kind: Kind, code: impl Into<String>, message: impl Into<String>) -> CtlError {
        CtlError {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> CtlError {
        CtlError::new(Kind::Usage, "usage", message)
    }

    pub fn other(message: impl Into<String>) -> CtlError {
        CtlError::new(Kind::Error, "error", message)
    }

    pub fn timed_out(message: impl Into<String>) -> CtlError {
        CtlError::new(Kind::TimedOut, "timed_out", message)
    }

    pub fn conflict(message: impl Into<String>) -> CtlError {
        CtlError::new(Kind::Conflict, "wrong_state", message)
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CtlError {}

pub type Result<T> = std::result::Result<T, CtlError>;
