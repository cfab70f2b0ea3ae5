//! The table's header: layout, recorded configuration, seed and checksum,
//! and the words of the table's judged time.
//!
//! Every field is an atomic word, so reading a header that another process
//! is writing (or has corrupted) is defined behaviour. Writers bracket their
//! writes with a sequence word (odd while writing); a reader takes one
//! snapshot of the fields, verifies its checksum, and accepts it only if the
//! sequence word was even and unchanged across the snapshot, so an attach
//! racing a re-init never mixes old and new fields. Attach then trusts only
//! its own copies.

use core::hash::Hasher;
use core::sync::atomic::{AtomicU64, Ordering};
use siphasher::sip::SipHasher13;

use super::clock::Clock;
use crate::config::{Config, Policy};
use crate::hash::Seed;
use crate::quota::Algorithm;
use crate::rule::InstanceKind;

/// "RATECRD1" in little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RATECRD1");
/// Bumped whenever the memory layout or the meaning of a stored word
/// changes. 2: sequence word, judged-time words, case folding.
pub const LAYOUT_VERSION: u64 = 2;

const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_CAPACITY: usize = 2;
const W_CONFIG: usize = 3;
const W_FINGERPRINT: usize = 4;
const W_SEED0: usize = 5;
const W_SEED1: usize = 6;
const W_NRULES: usize = 7;
/// Words 0..FIXED are covered by the checksum.
const FIXED: usize = 8;
const W_CHECKSUM: usize = 8;
const W_SEQ: usize = 9;
const W_MARK: usize = 10;
const W_LEAP: usize = 11;
const WORDS: usize = 32;

/// How many times a reader retries a snapshot that a writer interrupted.
const READ_RETRIES: usize = 1 << 16;

/// The header: 256 bytes at the start of a table's memory.
#[repr(C, align(64))]
pub struct Header {
    words: [AtomicU64; WORDS],
}

/// The header's fixed fields, as written by `init` and verified by `attach`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    /// Slots in the table (a power-of-two number of 4-slot buckets).
    pub capacity: u64,
    /// Packed recorded configuration ([`pack_config`]).
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
            words: [const { AtomicU64::new(0) }; WORDS],
        }
    }

    fn word(&self, w: usize) -> &AtomicU64 {
        #[allow(clippy::indexing_slicing, reason = "w % WORDS < WORDS")]
        &self.words[w % WORDS]
    }

    fn get(&self, w: usize) -> u64 {
        self.word(w).load(Ordering::Acquire)
    }

    fn set(&self, w: usize, v: u64) {
        self.word(w).store(v, Ordering::Release)
    }

    /// Write every field and mark the header ready. The judged time starts
    /// afresh.
    pub fn write(&self, f: &Fields) {
        let seq = self.get(W_SEQ);
        let writing = seq | 1;
        self.set(W_SEQ, writing);
        self.write_fields(f);
        self.set(W_SEQ, writing.wrapping_add(1).max(2));
    }

    fn write_fields(&self, f: &Fields) {
        let words = snapshot_of(f);
        for (w, &v) in words.iter().enumerate() {
            self.set(w, v);
        }
        self.set(W_CHECKSUM, checksum(&words));
        self.set(W_MARK, 0);
        self.set(W_LEAP, 0);
    }

    /// Write a zeroed header (a static table's) once: only the first caller
    /// writes; returns whether it was this one.
    pub fn write_once(&self, f: &Fields) -> bool {
        if self
            .word(W_SEQ)
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.write_fields(f);
        self.set(W_SEQ, 2);
        true
    }

    /// Whether a writer is writing the header right now (or died doing so).
    pub fn writing(&self) -> bool {
        self.get(W_SEQ) & 1 == 1
    }

    /// Read and verify the fixed fields: one consistent snapshot.
    pub fn read(&self) -> Result<Fields, HeaderError> {
        for _ in 0..READ_RETRIES {
            let before = self.get(W_SEQ);
            let mut words = [0u64; FIXED];
            for (w, v) in words.iter_mut().enumerate() {
                *v = self.get(w);
            }
            let sum = self.get(W_CHECKSUM);
            let after = self.get(W_SEQ);
            if words.get(W_MAGIC) != Some(&MAGIC) || words.get(W_VERSION) != Some(&LAYOUT_VERSION) {
                // Garbage, zeroes, or a layout this version does not know,
                // whatever the sequence word says.
                return Err(HeaderError::NotATable);
            }
            if before != after || before & 1 == 1 {
                if before & 1 == 1 && before == after {
                    // A writer is at work (or died at work): not ready.
                    return Err(HeaderError::NotSeeded);
                }
                core::hint::spin_loop();
                continue;
            }
            return verify(&words, sum, before);
        }
        Err(HeaderError::NotSeeded)
    }

    /// The words of the table's judged time.
    pub fn clock(&self) -> Clock<'_> {
        Clock {
            mark: self.word(W_MARK),
            leap: self.word(W_LEAP),
        }
    }

    /// Overwrite one raw word (tests and fuzzing corrupt headers with it).
    #[doc(hidden)]
    pub fn poke(&self, word: usize, value: u64) {
        if let Some(w) = self.words.get(word) {
            w.store(value, Ordering::Release);
        }
    }
}

fn snapshot_of(f: &Fields) -> [u64; FIXED] {
    let mut words = [0u64; FIXED];
    for (w, v) in words.iter_mut().enumerate() {
        *v = match w {
            W_MAGIC => MAGIC,
            W_VERSION => LAYOUT_VERSION,
            W_CAPACITY => f.capacity,
            W_CONFIG => f.config,
            W_FINGERPRINT => f.fingerprint,
            W_SEED0 => f.seed.k0,
            W_SEED1 => f.seed.k1,
            W_NRULES => f.nrules,
            _ => 0,
        };
    }
    words
}

fn verify(words: &[u64; FIXED], sum: u64, seq: u64) -> Result<Fields, HeaderError> {
    let [magic, version, capacity, config, fingerprint, k0, k1, nrules] = *words;
    if magic != MAGIC || version != LAYOUT_VERSION {
        return Err(HeaderError::NotATable);
    }
    if seq == 0 {
        return Err(HeaderError::NotSeeded);
    }
    if checksum(words) != sum {
        return Err(HeaderError::Corrupt);
    }
    Ok(Fields {
        capacity,
        config,
        fingerprint,
        seed: Seed { k0, k1 },
        nrules,
    })
}

fn checksum(words: &[u64; FIXED]) -> u64 {
    let mut h = SipHasher13::new_with_keys(MAGIC, LAYOUT_VERSION);
    for &w in words {
        h.write_u64(w);
    }
    h.finish()
}

/// The configuration as the header records it (`dry_run` is per handle and
/// not recorded).
pub fn pack_config(c: &Config) -> u64 {
    let algorithm = match c.algorithm {
        None => 0,
        Some(a) => (a as u64).wrapping_add(1),
    };
    c.ipv6_prefix as u64
        | (c.unknown_kind as u64) << 8
        | (c.pace as u64) << 16
        | (c.policy as u64) << 24
        | algorithm << 32
        | (c.fold_case as u64) << 40
}

/// The configuration a header records, with `capacity`; `None` for a word
/// no [`pack_config`] writes.
pub fn unpack_config(v: u64, capacity: u32) -> Option<Config> {
    let byte = |shift: u32| (v >> shift) & 0xff;
    let flag = |shift: u32| match byte(shift) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    };
    let config = Config {
        capacity,
        ipv6_prefix: byte(0) as u8,
        unknown_kind: match byte(8) {
            0 => InstanceKind::Production,
            1 => InstanceKind::Development,
            _ => return None,
        },
        pace: flag(16)?,
        policy: Policy::from_u8(byte(24) as u8)?,
        algorithm: match byte(32) {
            0 => None,
            1 => Some(Algorithm::Gcra),
            2 => Some(Algorithm::FixedWindow),
            _ => return None,
        },
        fold_case: flag(40)?,
        dry_run: false,
    };
    (pack_config(&config) == v && config.ipv6_prefix <= 128).then_some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(n: u64) -> Fields {
        Fields {
            capacity: 4 * n,
            config: n,
            fingerprint: n * 3,
            seed: Seed { k0: n, k1: !n },
            nrules: n % 64,
        }
    }

    #[test]
    fn a_written_header_reads_back_and_a_corrupt_one_is_refused() {
        let h = Header::zeroed();
        assert_eq!(h.read(), Err(HeaderError::NotATable));
        h.write(&fields(7));
        assert_eq!(h.read(), Ok(fields(7)));
        h.poke(W_CAPACITY, 99);
        assert_eq!(h.read(), Err(HeaderError::Corrupt));
        h.write(&fields(8));
        assert_eq!(h.read(), Ok(fields(8)));
    }

    #[test]
    fn a_header_being_written_is_not_ready() {
        let h = Header::zeroed();
        h.write(&fields(1));
        let seq = h.get(W_SEQ);
        h.poke(W_SEQ, seq | 1);
        assert_eq!(h.read(), Err(HeaderError::NotSeeded));
    }

    #[test]
    fn an_attach_racing_re_inits_never_sees_a_mix_of_two_headers() {
        let h = Header::zeroed();
        h.write(&fields(1));
        let stop = core::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..200_000u64 {
                    h.write(&fields(1 + (i & 1)));
                }
                stop.store(true, Ordering::Relaxed);
            });
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) || reads == 0 {
                if let Ok(f) = h.read() {
                    assert!(f == fields(1) || f == fields(2), "{f:?}");
                    reads += 1;
                }
            }
        });
    }

    #[test]
    fn every_configuration_round_trips_and_other_words_are_refused() {
        for pace in [false, true] {
            for fold_case in [false, true] {
                for policy in [Policy::Evict, Policy::Deny, Policy::Admit] {
                    for algorithm in [None, Some(Algorithm::Gcra), Some(Algorithm::FixedWindow)] {
                        let c = Config {
                            capacity: 64,
                            ipv6_prefix: 56,
                            unknown_kind: InstanceKind::Production,
                            pace,
                            algorithm,
                            policy,
                            fold_case,
                            dry_run: false,
                        };
                        assert_eq!(unpack_config(pack_config(&c), 64), Some(c));
                    }
                }
            }
        }
        assert_eq!(unpack_config(129, 64), None, "prefix above 128");
        assert_eq!(unpack_config(1 << 63, 64), None, "an unknown bit");
        assert_eq!(unpack_config(3 << 24, 64), None, "an unknown policy");
    }
}
