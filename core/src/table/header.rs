//! The table's header: layout, recorded configuration, seed and checksum.
//!
//! Every field is an atomic word, so reading a header that another process
//! is writing (or has corrupted) is defined behaviour; `attach` verifies the
//! checksum over the fixed fields and then trusts only its own copies.

use core::hash::Hasher;
use core::sync::atomic::{AtomicU64, Ordering};
use siphasher::sip::SipHasher13;

use crate::hash::Seed;

/// "RATECRD1" in little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RATECRD1");
/// Bumped whenever the memory layout changes.
pub const LAYOUT_VERSION: u64 = 1;

const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_CAPACITY: usize = 2;
const W_CONFIG: usize = 3;
const W_FINGERPRINT: usize = 4;
const W_SEED0: usize = 5;
const W_SEED1: usize = 6;
const W_NRULES: usize = 7;
const FIXED: usize = 8;
const W_CHECKSUM: usize = 8;
const W_STATE: usize = 9;

/// Header state: being written by the one thread that won the right to.
const STATE_WRITING: u64 = 1;
/// Header state: complete and covered by its checksum.
const STATE_READY: u64 = 0x0ead_900d;

/// The header: 256 bytes at the start of a table's memory.
#[repr(C, align(64))]
pub struct Header {
    words: [AtomicU64; 32],
}

/// The header's fixed fields, as written by `init` and verified by `attach`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    /// Slots in the table (a power-of-two number of 4-slot buckets).
    pub capacity: u64,
    /// Packed recorded configuration.
    pub config: u64,
    /// Fingerprint of the rule table.
    pub fingerprint: u64,
    /// The hash seed.
    pub seed: Seed,
    /// Rules in the table.
    pub nrules: u64,
}

/// Why a header was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// No magic or an unknown layout version: not a ratecard table.
    NotATable,
    /// Magic and version match but the checksum does not: corrupt.
    Corrupt,
    /// Not yet written: a static table whose seed has not been set, or
    /// memory whose `init` has not finished.
    NotSeeded,
}

impl Header {
    /// A header with every word zero.
    pub const fn zeroed() -> Header {
        Header {
            words: [const { AtomicU64::new(0) }; 32],
        }
    }

    fn get(&self, w: usize) -> u64 {
        self.words[w].load(Ordering::Acquire)
    }

    fn set(&self, w: usize, v: u64) {
        self.words[w].store(v, Ordering::Release)
    }

    /// Write every field and mark the header ready.
    pub fn write(&self, f: &Fields) {
        self.set(W_STATE, STATE_WRITING);
        self.set(W_MAGIC, MAGIC);
        self.set(W_VERSION, LAYOUT_VERSION);
        self.set(W_CAPACITY, f.capacity);
        self.set(W_CONFIG, f.config);
        self.set(W_FINGERPRINT, f.fingerprint);
        self.set(W_SEED0, f.seed.k0);
        self.set(W_SEED1, f.seed.k1);
        self.set(W_NRULES, f.nrules);
        self.set(W_CHECKSUM, self.checksum());
        self.set(W_STATE, STATE_READY);
    }

    /// Write a zeroed header (a static table's) once: only the first caller
    /// writes; returns whether it was this one.
    pub fn write_once(&self, f: &Fields) -> bool {
        if self.words[W_STATE]
            .compare_exchange(0, STATE_WRITING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.write(f);
        true
    }

    /// Read and verify the fixed fields.
    pub fn read(&self) -> Result<Fields, HeaderError> {
        if self.get(W_MAGIC) != MAGIC || self.get(W_VERSION) != LAYOUT_VERSION {
            return Err(HeaderError::NotATable);
        }
        match self.get(W_STATE) {
            STATE_READY => {}
            0 | STATE_WRITING => return Err(HeaderError::NotSeeded),
            _ => return Err(HeaderError::Corrupt),
        }
        let fields = Fields {
            capacity: self.get(W_CAPACITY),
            config: self.get(W_CONFIG),
            fingerprint: self.get(W_FINGERPRINT),
            seed: Seed {
                k0: self.get(W_SEED0),
                k1: self.get(W_SEED1),
            },
            nrules: self.get(W_NRULES),
        };
        if self.get(W_CHECKSUM) != self.checksum() {
            return Err(HeaderError::Corrupt);
        }
        Ok(fields)
    }

    fn checksum(&self) -> u64 {
        let mut h = SipHasher13::new_with_keys(MAGIC, LAYOUT_VERSION);
        for w in 0..FIXED {
            h.write_u64(self.get(w));
        }
        h.finish()
    }

    /// Overwrite one raw word (tests and fuzzing corrupt headers with it).
    #[doc(hidden)]
    pub fn poke(&self, word: usize, value: u64) {
        if let Some(w) = self.words.get(word) {
            w.store(value, Ordering::Release);
        }
    }
}
