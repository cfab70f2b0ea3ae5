//! Errors: for invalid arguments and unusable memory only. Hostile but
//! valid input is decided, never an error.
//!
//! [`SetupError`] is what making or attaching a limiter can fail with;
//! [`CheckError`] what one decision can.

use crate::rule::TableError;
use crate::table::header::HeaderError;
use crate::table::PlaceError;

/// Why a request could not be decided.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckError {
    /// The request matched a rule but lacks that rule's subject (a Frontend
    /// request without a client IP, a Backend request with neither key,
    /// tenant nor IP).
    MissingSubject,
    /// A rule index outside the table (generic keyed checks).
    UnknownRule,
    /// The Redis mode: the request's rules count by different subjects
    /// (a client-IP rule beside an instance rule), so their keys cannot
    /// share one Cluster slot.
    MixedSubjects,
}

/// Why a limiter could not be made or attached.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetupError {
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
    /// A table header that fails its checksum or holds impossible values.
    Corrupt,
    /// A table not yet seeded (a static table) or still being initialised.
    NotSeeded,
    /// The table was made with a different rule table.
    RulesMismatch,
    /// 128-bit compare-and-swap is not lock-free on this CPU.
    NoLockFreeCas,
    /// The allocator had no memory for an owned table.
    OutOfMemory,
    /// The operating system could not supply a random seed.
    SeedUnavailable,
}

impl CheckError {
    /// A short description.
    pub const fn as_str(&self) -> &'static str {
        match self {
            CheckError::MissingSubject => "request lacks the subject its rule needs",
            CheckError::UnknownRule => "rule index out of range",
            CheckError::MixedSubjects => "the request's rules count by different subjects",
        }
    }
}

impl SetupError {
    /// A short description.
    pub const fn as_str(&self) -> &'static str {
        match self {
            SetupError::InvalidConfig => "configuration value out of range",
            SetupError::InvalidRules(_) => "rule table is invalid",
            SetupError::Capacity => "capacity is zero or above the maximum",
            SetupError::TooSmall => "memory is too small for the table",
            SetupError::Misaligned => "memory is not 64-byte aligned",
            SetupError::Null => "null pointer",
            SetupError::NotATable => "memory does not hold a ratecard table",
            SetupError::Corrupt => "table header is corrupt",
            SetupError::NotSeeded => "table is not seeded or not initialised",
            SetupError::RulesMismatch => "table was made with a different rule table",
            SetupError::NoLockFreeCas => "128-bit compare-and-swap is not lock-free on this CPU",
            SetupError::OutOfMemory => "out of memory",
            SetupError::SeedUnavailable => "no random seed available from the operating system",
        }
    }
}

impl core::fmt::Display for CheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::InvalidRules(e) => write!(f, "rule table is invalid: {}", e.as_str()),
            other => f.write_str(other.as_str()),
        }
    }
}

impl core::error::Error for CheckError {}

impl core::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SetupError::InvalidRules(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PlaceError> for SetupError {
    fn from(e: PlaceError) -> SetupError {
        match e {
            PlaceError::Capacity => SetupError::Capacity,
            PlaceError::TooSmall => SetupError::TooSmall,
            PlaceError::Misaligned => SetupError::Misaligned,
            PlaceError::Null => SetupError::Null,
            PlaceError::OutOfMemory => SetupError::OutOfMemory,
        }
    }
}

impl From<HeaderError> for SetupError {
    fn from(e: HeaderError) -> SetupError {
        match e {
            HeaderError::NotATable => SetupError::NotATable,
            HeaderError::Corrupt => SetupError::Corrupt,
            HeaderError::NotSeeded => SetupError::NotSeeded,
        }
    }
}

impl From<TableError> for SetupError {
    fn from(e: TableError) -> SetupError {
        SetupError::InvalidRules(e)
    }
}
