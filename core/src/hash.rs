//! Keyed hashing of subjects.
//!
//! A tag is a key's only identity in the table, so it must come from a
//! keyed PRF: SipHash-1-3 with a 128-bit secret seed. The subject (tenant +
//! secret key, or tenant + client IP) is hashed once per request into 128
//! bits; a rule without captures takes its tag from the first half
//! ([`crate::table::tag::of_subject`]), and a rule with `{param}` captures
//! hashes its captured ids with SipHash keyed by the whole subject hash.
//! Secret keys are never stored, only these hashes.

/// A 128-bit secret hash seed.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Seed {
    /// First SipHash key word.
    pub k0: u64,
    /// Second SipHash key word.
    pub k1: u64,
}

impl core::fmt::Debug for Seed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Seed(..)")
    }
}

impl Seed {
    /// A seed from 16 bytes (little-endian words).
    #[allow(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        reason = "constant indices below 16"
    )]
    pub const fn from_bytes(b: [u8; 16]) -> Seed {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            k0[i] = b[i];
            k1[i] = b[i + 8];
            i += 1;
        }
        Seed {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }
}

#[cfg(feature = "std")]
impl Seed {
    /// A seed of 16 bytes from the operating system's random source.
    pub fn random() -> Result<Seed, crate::SetupError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|_| crate::SetupError::SeedUnavailable)?;
        Ok(Seed::from_bytes(b))
    }
}

/// Domain of a subject, so that equal bytes of different kinds never collide.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Domain {
    /// A client IP (4 bytes, or a masked 16-byte IPv6 address).
    Ip = 1,
    /// A secret key.
    SecretKey = 2,
    /// A tenant naming an instance.
    Tenant = 3,
    /// Key bytes of a generic (rule, key) check.
    Raw = 4,
}

/// The 128-bit keyed hash of one subject.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SubjectHash(pub u64, pub u64);

/// Hash a subject: `domain`, then the tenant (length-prefixed), then the
/// subject bytes.
///
/// The message is the byte string `domain ‖ le64(tenant.len()) ‖ tenant ‖
/// bytes`, hashed with SipHash-1-3 (128-bit output) keyed by the seed: the
/// same values as feeding those writes to a streaming SipHash-1-3, computed
/// without one (a test pins both down).
#[inline]
pub fn subject(seed: &Seed, domain: Domain, tenant: &[u8], bytes: &[u8]) -> SubjectHash {
    subject_lazy(seed, domain, tenant, bytes).full()
}

/// A subject's hash with only its first half computed: all a tag without
/// captures needs. [`Subject::full`] finishes the second half on demand.
#[derive(Copy, Clone)]
pub struct Subject {
    h1: u64,
    /// The SipHash state after the first half's finalisation rounds.
    sip: Sip,
}

impl Subject {
    /// The first half of the 128-bit hash ([`SubjectHash`]'s `.0`).
    #[inline(always)]
    pub fn h1(&self) -> u64 {
        self.h1
    }

    /// The whole 128-bit hash, as [`subject`] computes it.
    #[inline]
    pub fn full(&self) -> SubjectHash {
        let mut sip = self.sip;
        sip.v1 ^= 0xdd;
        SubjectHash(self.h1, sip.d3())
    }
}

/// [`subject`], leaving the second half of the hash for later.
#[inline]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "a byte count: slice lengths sum far below usize::MAX"
)]
pub fn subject_lazy(seed: &Seed, domain: Domain, tenant: &[u8], bytes: &[u8]) -> Subject {
    let len = tenant.len() as u64;
    let mut s = Stream::new(Sip::new128(seed.k0, seed.k1));
    if len == 0 && bytes.len() < 7 {
        // A client IP: the zero length's last byte and the bytes are the
        // final block.
        s.sip.c(domain as u64);
        s.tail = le_tail(bytes) << 8;
        s.len = 9 + bytes.len();
        return s.finish128_lazy();
    }
    // The first word: the domain byte and the low seven bytes of the length;
    // its last byte opens the tail.
    s.sip.c(domain as u64 | len << 8);
    s.tail = len >> 56;
    s.ntail = 1;
    s.len = 9;
    if tenant.is_empty() {
        // Written apart so that the compiler knows one byte waits.
        s.write(bytes);
    } else {
        s.write(tenant);
        s.write(bytes);
    }
    s.finish128_lazy()
}

/// The keyed 64-bit hash of rule `rule`'s captured ids for a subject;
/// `encoded`: the captures hold percent escapes, hashed decoded.
///
/// The message is `rule ‖ (capture ‖ le64(capture.len()))*`, hashed with
/// SipHash-1-3 (64-bit output) keyed by the subject hash; a capture's
/// length after its bytes keeps ("ab","c") apart from ("a","bc").
#[inline]
pub fn captures(subject: SubjectHash, rule: u8, captures: &[&[u8]], encoded: bool) -> u64 {
    let mut s = Stream::captures(subject, rule);
    for capture in captures {
        if encoded {
            let mut len = 0u64;
            for b in crate::route::decoded(capture) {
                s.write_u8(b);
                len = len.wrapping_add(1);
            }
            s.write_u64(len);
        } else {
            s.write(capture);
            s.write_u64(capture.len() as u64);
        }
    }
    s.finish64()
}

/// SipHash-1-3 state.
#[derive(Copy, Clone)]
struct Sip {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl Sip {
    #[inline(always)]
    fn new(k0: u64, k1: u64) -> Sip {
        Sip {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    #[inline(always)]
    fn new128(k0: u64, k1: u64) -> Sip {
        let mut s = Sip::new(k0, k1);
        s.v1 ^= 0xee;
        s
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// Absorb one message word (one compression round: SipHash-1-3).
    #[inline(always)]
    fn c(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.v0 ^= m;
    }

    #[inline(always)]
    fn d3(&mut self) -> u64 {
        self.round();
        self.round();
        self.round();
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// A SipHash-1-3 message being absorbed: whole words go straight into the
/// state, the last `ntail` (< 8) bytes wait in `tail`.
struct Stream {
    sip: Sip,
    tail: u64,
    ntail: usize,
    len: usize,
}

#[allow(
    clippy::arithmetic_side_effects,
    reason = "SipHash bookkeeping: ntail < 8 (so shifts stay below 64) and len counts bytes of slices, far below usize::MAX"
)]
impl Stream {
    #[inline(always)]
    fn new(sip: Sip) -> Stream {
        Stream {
            sip,
            tail: 0,
            ntail: 0,
            len: 0,
        }
    }

    /// The capture hash of `rule` for `subject`, its rule byte written.
    #[inline(always)]
    fn captures(subject: SubjectHash, rule: u8) -> Stream {
        let mut s = Stream::new(Sip::new(subject.0, subject.1));
        s.tail = rule as u64;
        s.ntail = 1;
        s.len = 1;
        s
    }

    #[inline(always)]
    fn write_u8(&mut self, b: u8) {
        self.tail |= (b as u64) << (8 * self.ntail);
        self.ntail += 1;
        self.len += 1;
        if self.ntail == 8 {
            self.sip.c(self.tail);
            self.tail = 0;
            self.ntail = 0;
        }
    }

    #[inline(always)]
    fn write_u64(&mut self, v: u64) {
        self.len += 8;
        if self.ntail == 0 {
            self.sip.c(v);
        } else {
            let shift = 8 * self.ntail as u32;
            self.sip.c(self.tail | v << shift);
            self.tail = v >> (64 - shift);
        }
    }

    #[inline(always)]
    fn write(&mut self, msg: &[u8]) {
        self.len += msg.len();
        let mut words = msg.chunks_exact(8);
        if self.ntail == 0 {
            for w in &mut words {
                self.sip.c(le64(w));
            }
        } else {
            // 1..=7 bytes wait: each word completes the tail, and its top
            // bytes become the next tail.
            let shift = 8 * self.ntail as u32;
            for w in &mut words {
                let v = le64(w);
                self.sip.c(self.tail | v << shift);
                self.tail = v >> (64 - shift);
            }
        }
        let rest = words.remainder();
        if rest.is_empty() {
            return;
        }
        let v = le_tail(rest);
        let n = self.ntail + rest.len();
        if self.ntail == 0 {
            self.tail = v;
        } else {
            self.tail |= v << (8 * self.ntail as u32);
            if n >= 8 {
                self.sip.c(self.tail);
                self.tail = v >> (64 - 8 * self.ntail as u32);
            }
        }
        self.ntail = n & 7;
    }

    #[inline(always)]
    fn last(&self) -> u64 {
        (self.len as u64) << 56 | self.tail
    }

    /// The first half of the 128-bit finalisation; [`Subject::full`]
    /// does the second.
    #[inline(always)]
    fn finish128_lazy(mut self) -> Subject {
        let b = self.last();
        self.sip.c(b);
        self.sip.v2 ^= 0xee;
        let h1 = self.sip.d3();
        Subject { h1, sip: self.sip }
    }

    #[inline(always)]
    fn finish64(mut self) -> u64 {
        let b = self.last();
        self.sip.c(b);
        self.sip.v2 ^= 0xff;
        self.sip.d3()
    }
}

#[inline(always)]
fn le64(w: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(w);
    u64::from_le_bytes(b)
}

/// Up to seven bytes, little-endian, zero-extended.
#[inline(always)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "s has at most seven bytes, and each index is checked against its length first"
)]
fn le_tail(s: &[u8]) -> u64 {
    let n = s.len();
    let mut out = 0u64;
    let mut i = 0;
    if n >= 4 {
        out = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64;
        i = 4;
    }
    if n >= i + 2 {
        out |= (u16::from_le_bytes([s[i], s[i + 1]]) as u64) << (8 * i);
        i += 2;
    }
    if n > i {
        out |= (s[i] as u64) << (8 * i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: Seed = Seed { k0: 1, k1: 2 };

    #[test]
    fn domains_tenants_and_seeds_separate_subjects() {
        let a = subject(&SEED, Domain::Ip, b"", b"abcd");
        assert_ne!(a, subject(&SEED, Domain::SecretKey, b"", b"abcd"));
        assert_ne!(a, subject(&SEED, Domain::Ip, b"t", b"abcd"));
        assert_ne!(
            subject(&SEED, Domain::Ip, b"ab", b"cd"),
            subject(&SEED, Domain::Ip, b"a", b"bcd")
        );
        assert_ne!(a, subject(&Seed { k0: 1, k1: 3 }, Domain::Ip, b"", b"abcd"));
    }

    #[test]
    fn capture_boundaries_and_rules_matter() {
        let s = subject(&SEED, Domain::SecretKey, b"", b"sk_test_x");
        let ab_c = captures(s, 3, &[b"ab", b"c"], false);
        assert_ne!(ab_c, captures(s, 3, &[b"a", b"bc"], false));
        assert_ne!(ab_c, captures(s, 4, &[b"ab", b"c"], false));
    }

    #[test]
    fn escaped_captures_hash_as_their_decoded_bytes() {
        let s = subject(&SEED, Domain::SecretKey, b"", b"sk_test_x");
        assert_eq!(
            captures(s, 3, &[b"u%5F1", b"%6Frg"], true),
            captures(s, 3, &[b"u_1", b"org"], false)
        );
    }

    /// The hash as the streaming SipHash-1-3 of `siphasher` computes it.
    fn reference_subject(seed: &Seed, domain: Domain, tenant: &[u8], bytes: &[u8]) -> SubjectHash {
        use core::hash::Hasher;
        use siphasher::sip128::{Hasher128, SipHasher13};
        let mut h = SipHasher13::new_with_keys(seed.k0, seed.k1);
        h.write_u8(domain as u8);
        h.write_u64(tenant.len() as u64);
        h.write(tenant);
        h.write(bytes);
        let out = h.finish128();
        SubjectHash(out.h1, out.h2)
    }

    fn reference_captures(subject: SubjectHash, rule: u8, captures: &[&[u8]]) -> u64 {
        use core::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(subject.0, subject.1);
        h.write_u8(rule);
        for c in captures {
            for &b in *c {
                h.write_u8(b);
            }
            h.write_u64(c.len() as u64);
        }
        h.finish()
    }

    #[test]
    fn the_word_at_a_time_hash_is_siphash_1_3_of_the_same_message() {
        let data: std::vec::Vec<u8> = (0..200u32).map(|i| (i * 131 + 7) as u8).collect();
        let seed = Seed {
            k0: 0x0123_4567_89ab_cdef,
            k1: 0xfedc_ba98_7654_3210,
        };
        for tl in [0usize, 1, 2, 7, 8, 9, 15, 16, 17, 40] {
            for bl in 0..70 {
                let (t, b) = (&data[..tl], &data[100..100 + bl]);
                for d in [Domain::Ip, Domain::SecretKey, Domain::Tenant, Domain::Raw] {
                    assert_eq!(
                        subject(&seed, d, t, b),
                        reference_subject(&seed, d, t, b),
                        "{tl} {bl}"
                    );
                }
            }
        }
        let s = subject(&seed, Domain::SecretKey, b"", b"sk_live_x");
        for a in 0..20 {
            for b in 0..20 {
                let caps: [&[u8]; 2] = [&data[..a], &data[50..50 + b]];
                let want = reference_captures(s, 11, &caps);
                assert_eq!(captures(s, 11, &caps, false), want);
                assert_eq!(
                    captures(s, 11, &caps[..1], false),
                    reference_captures(s, 11, &caps[..1])
                );
            }
        }
    }
}
