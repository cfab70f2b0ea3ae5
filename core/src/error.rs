//! Errors: for invalid arguments and unusable memory only. Hostile but
//! valid input is decided, never an error.

use crate::rule::TableError;
use crate::table::header::HeaderError;
use crate::table::PlaceError;

/// Why a call could not be carried out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A client IP that is not 0, 4 or 16 bytes.
    InvalidIp,
    /// A request matched a rule but lacks that rule's subject (a Frontend
    /// request without an IP, a Backend request with neither key nor IP).
    MissingSubject,
    /// A rule index outside the table.
    UnknownRule,
    /// A configuration value out of range (an IPv6 prefix above 128).
    InvalidConfig,
    /// The rule table cannot be used.
    InvalidRules(TableError),
    /// A capacity of zero or above the maximum.
    Capacity,
    /// Memory shorter than the table needs.
    TooSmall,
    /// Memory not aligned to 64 bytes.
    Misaligned,
    /// A null pointer where memory was expected.
    Null,
    /// Memory that does not hold a ratecard table (or another layout version).
    NotATable,
    /// A table header whose checksum does not match: corrupt memory.
    Corrupt,
    /// A table not yet seeded (a static table) or still being initialised.
    NotSeeded,
    /// The table was made with a different rule table.
    RulesMismatch,
    /// 128-bit compare-and-swap is not lock-free on this CPU.
    NoLockFreeCas,
}

impl Error {
    /// A short description.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Error::InvalidIp => "client IP is not 4 or 16 bytes",
            Error::MissingSubject => "request lacks the subject its rule needs",
            Error::UnknownRule => "rule index out of range",
            Error::InvalidConfig => "configuration value out of range",
            Error::InvalidRules(_) => "rule table is invalid",
            Error::Capacity => "capacity is zero or above the maximum",
            Error::TooSmall => "memory is too small for the table",
            Error::Misaligned => "memory is not 64-byte aligned",
            Error::Null => "null pointer",
            Error::NotATable => "memory does not hold a ratecard table",
            Error::Corrupt => "table header checksum mismatch",
            Error::NotSeeded => "table is not seeded or not initialised",
            Error::RulesMismatch => "table was made with a different rule table",
            Error::NoLockFreeCas => "128-bit compare-and-swap is not lock-free on this CPU",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<PlaceError> for Error {
    fn from(e: PlaceError) -> Error {
        match e {
            PlaceError::Capacity => Error::Capacity,
            PlaceError::TooSmall => Error::TooSmall,
            PlaceError::Misaligned => Error::Misaligned,
            PlaceError::Null => Error::Null,
        }
    }
}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Error {
        match e {
            HeaderError::NotATable => Error::NotATable,
            HeaderError::Corrupt => Error::Corrupt,
            HeaderError::NotSeeded => Error::NotSeeded,
        }
    }
}

impl From<TableError> for Error {
    fn from(e: TableError) -> Error {
        Error::InvalidRules(e)
    }
}
