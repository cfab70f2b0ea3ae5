//! Keyed hashing of subjects into slot tags.
//!
//! A tag is a key's only identity in the table, so it must be a keyed PRF:
//! SipHash-1-3 with a 128-bit secret seed. The subject (tenant + secret key,
//! or tenant + client IP) is hashed once per request into 128 bits; each
//! rule's tag is derived from that with a bijective mixer, and rules with
//! `{param}` captures hash their captured ids with SipHash keyed by the
//! subject hash itself. Secret keys are never stored, only these hashes.

use core::hash::Hasher;
use siphasher::sip::SipHasher13 as Sip64;
use siphasher::sip128::{Hasher128, SipHasher13 as Sip128};

/// Low bits of a tag: the rule index.
pub const RULE_BITS: u32 = 6;
/// Mask of the rule index in a tag.
pub const RULE_MASK: u64 = (1 << RULE_BITS) - 1;
/// Bits 6..8 of a tag: the slot's marker kind (0 = live).
pub const FLAG_SHIFT: u32 = RULE_BITS;
/// Mask of the marker kind in a tag.
pub const FLAG_MASK: u64 = 0b11 << FLAG_SHIFT;
/// The bits that identify a key: everything but the marker kind.
pub const IDENTITY_MASK: u64 = !FLAG_MASK;
const HASH_SHIFT: u32 = RULE_BITS + 2;

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
pub fn subject(seed: &Seed, domain: Domain, tenant: &[u8], bytes: &[u8]) -> SubjectHash {
    let mut h = Sip128::new_with_keys(seed.k0, seed.k1);
    h.write_u8(domain as u8);
    h.write_u64(tenant.len() as u64);
    h.write(tenant);
    h.write(bytes);
    let out = h.finish128();
    SubjectHash(out.h1, out.h2)
}

/// The tag of `rule` for a subject with no captures.
pub fn tag(subject: SubjectHash, rule: u8) -> u64 {
    let salt = (rule as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    finish_tag(mix(subject.0 ^ salt), rule)
}

/// The tag of `rule` for a subject extended by captured ids; `captures`
/// yields each id's decoded bytes in turn.
pub fn tag_with_captures<I, J>(subject: SubjectHash, rule: u8, captures: I) -> u64
where
    I: IntoIterator<Item = J>,
    J: IntoIterator<Item = u8>,
{
    let mut h = Sip64::new_with_keys(subject.0, subject.1);
    h.write_u8(rule);
    for capture in captures {
        let mut len = 0u64;
        for b in capture {
            h.write_u8(b);
            len += 1;
        }
        // The length after the bytes keeps ("ab","c") apart from ("a","bc").
        h.write_u64(len);
    }
    finish_tag(h.finish(), rule)
}

fn finish_tag(hash: u64, rule: u8) -> u64 {
    let mut high = hash >> HASH_SHIFT;
    if high == 0 {
        high = 1;
    }
    high << HASH_SHIFT | (rule as u64 & RULE_MASK)
}

/// A bijective 64-bit finaliser (from MurmurHash3).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The rule index stored in a tag.
pub const fn rule_of(tag: u64) -> usize {
    (tag & RULE_MASK) as usize
}

/// The two candidate buckets of a tag, for a table of `mask + 1` buckets.
/// Symmetric: `alt(alt(b)) == b`, so a slot can move without its key.
pub const fn buckets(tag: u64, mask: u64) -> (u64, u64) {
    let b1 = (tag >> HASH_SHIFT) & mask;
    (b1, alt(b1, tag, mask))
}

/// The other candidate bucket of a tag stored in bucket `b`.
pub const fn alt(b: u64, tag: u64, mask: u64) -> u64 {
    let mut f = (tag >> (HASH_SHIFT + 28)) & mask;
    if f == 0 {
        f = 1 & mask;
    }
    b ^ f
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: Seed = Seed { k0: 1, k1: 2 };

    #[test]
    fn tags_are_nonzero_live_and_carry_the_rule_index() {
        for rule in 0..64u8 {
            let t = tag(subject(&SEED, Domain::Ip, b"", &[1, 2, 3, 4]), rule);
            assert_ne!(t, 0);
            assert_eq!(t & FLAG_MASK, 0);
            assert_eq!(rule_of(t), rule as usize);
        }
    }

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
    fn capture_boundaries_matter() {
        let s = subject(&SEED, Domain::SecretKey, b"", b"sk_test_x");
        let ab_c = tag_with_captures(s, 3, [b"ab".iter().copied(), b"c".iter().copied()]);
        let a_bc = tag_with_captures(s, 3, [b"a".iter().copied(), b"bc".iter().copied()]);
        assert_ne!(ab_c, a_bc);
        assert_eq!(rule_of(ab_c), 3);
    }

    #[test]
    fn alternate_bucket_is_an_involution() {
        let mask = (1 << 10) - 1;
        for i in 0..1000u64 {
            let t = tag(subject(&SEED, Domain::Ip, b"", &i.to_le_bytes()), 1);
            let (b1, b2) = buckets(t, mask);
            assert_eq!(alt(b2, t, mask), b1);
            assert_ne!(b1, b2);
        }
        assert_eq!(buckets(12345 << 8, 0), (0, 0));
    }
}
