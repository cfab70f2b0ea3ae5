//! The library's version as header macros, so C code can test it at compile
//! time (`#if RATECARD_VERSION_MINOR >= 2`) and compare it with
//! `ratecard_version()` at run time.
//!
//! cbindgen reads literals only, so the numbers are written out here; a
//! compile-time check below ties them to Cargo.toml's version.

/// The major version of the header (and of the library it came with).
pub const RATECARD_VERSION_MAJOR: u32 = 0;

/// The minor version of the header.
pub const RATECARD_VERSION_MINOR: u32 = 1;

/// The patch version of the header.
pub const RATECARD_VERSION_PATCH: u32 = 0;

/// A decimal `&str` of Cargo's version parts as a number; `u32::MAX` for
/// anything else, so that a mismatch below fails instead of passing.
const fn parse(s: &str) -> u32 {
    let mut rest = s.as_bytes();
    if rest.is_empty() {
        return u32::MAX;
    }
    let mut n: u32 = 0;
    while let [digit @ b'0'..=b'9', tail @ ..] = rest {
        n = match n.checked_mul(10) {
            Some(m) => match m.checked_add(digit.wrapping_sub(b'0') as u32) {
                Some(v) => v,
                None => return u32::MAX,
            },
            None => return u32::MAX,
        };
        rest = tail;
    }
    if rest.is_empty() {
        n
    } else {
        u32::MAX
    }
}

// A version bump in Cargo.toml that forgets these constants stops the build.
const _: () = assert!(
    parse(env!("CARGO_PKG_VERSION_MAJOR")) == RATECARD_VERSION_MAJOR
        && parse(env!("CARGO_PKG_VERSION_MINOR")) == RATECARD_VERSION_MINOR
        && parse(env!("CARGO_PKG_VERSION_PATCH")) == RATECARD_VERSION_PATCH,
    "ffi/src/version.rs: RATECARD_VERSION_* differ from Cargo.toml's version"
);
