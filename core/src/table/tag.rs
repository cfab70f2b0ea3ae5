//! A slot's tag: the 64 bits that identify one (rule, subject) key in the
//! table, and where a tag's two candidate buckets are.
//!
//! Layout, low bits first: the rule index (6 bits), the marker kind (2 bits,
//! 0 = live; see [`super::slot`]), then 56 bits of keyed hash, never all
//! zero, so a tag is never 0 (0 marks an empty slot). Bucket placement reads
//! the hash bits only, so a marker and the live slot of one key have the
//! same two buckets.

/// Bits of a tag holding the rule index.
pub const RULE_BITS: u32 = 6;
/// Mask of the rule index in a tag.
pub const RULE_MASK: u64 = (1 << RULE_BITS) - 1;
/// Bits 6..8 of a tag: the slot's marker kind (0 = live).
pub const FLAG_SHIFT: u32 = RULE_BITS;
/// Mask of the marker kind in a tag.
pub const FLAG_MASK: u64 = 0b11 << FLAG_SHIFT;
/// The bits that identify a key: everything but the marker kind.
pub const IDENTITY_MASK: u64 = !FLAG_MASK;
/// Where the keyed hash starts.
const HASH_SHIFT: u32 = RULE_BITS + 2;

/// The tag of rule `rule` for a subject whose first hash word is `h1`, for
/// rules whose key is the subject alone (no captured ids).
#[inline(always)]
pub fn of_subject(h1: u64, rule: u8) -> u64 {
    // A distinct bijection per rule: one subject's tags for different rules
    // are unrelated, and a 64-bit input loses nothing.
    let salt = (rule as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    of_hash(mix(h1 ^ salt), rule)
}

/// The tag of rule `rule` for a key whose keyed 64-bit hash is `hash`.
#[inline(always)]
pub fn of_hash(hash: u64, rule: u8) -> u64 {
    let mut high = hash >> HASH_SHIFT;
    if high == 0 {
        high = 1;
    }
    high << HASH_SHIFT | (rule as u64 & RULE_MASK)
}

/// The tag under which the local table caches a remote denial of the key
/// `tag` (the Redis mode): the same rule index, an unrelated identity, so a
/// cache entry never meets the key's own local state.
#[inline(always)]
pub fn cached(tag: u64) -> u64 {
    of_hash(mix(tag ^ 0x6361_6368_6564_2121), rule_of(tag) as u8)
}

/// A bijective 64-bit finaliser (MurmurHash3's).
#[inline(always)]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The rule index stored in a tag.
#[inline(always)]
pub const fn rule_of(tag: u64) -> usize {
    (tag & RULE_MASK) as usize
}

/// The two candidate buckets of a tag, for a table of `mask + 1` buckets.
/// Symmetric: `alt(alt(b)) == b`, so a slot can move without its key.
#[inline(always)]
pub const fn buckets(tag: u64, mask: u64) -> (u64, u64) {
    let b1 = (tag >> HASH_SHIFT) & mask;
    (b1, alt(b1, tag, mask))
}

/// The other candidate bucket of a tag stored in bucket `b`.
#[inline(always)]
pub const fn alt(b: u64, tag: u64, mask: u64) -> u64 {
    // Bits far from the primary bucket's, so the two are independent for
    // tables of up to 2^28 buckets.
    let mut f = (tag >> (HASH_SHIFT + 28)) & mask;
    if f == 0 {
        f = 1 & mask;
    }
    b ^ f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_nonzero_live_and_carry_the_rule_index() {
        for rule in 0..64u8 {
            for h in [0u64, 1, 0xff, u64::MAX, 0x1234_5678_9abc_def0] {
                let t = of_subject(h, rule);
                assert_ne!(t, 0);
                assert_eq!(t & FLAG_MASK, 0);
                assert_eq!(rule_of(t), rule as usize);
                assert_ne!(of_hash(h, rule), 0);
            }
        }
    }

    #[test]
    fn one_subject_has_unrelated_tags_for_different_rules() {
        let a = of_subject(42, 0);
        let b = of_subject(42, 1);
        assert_ne!(
            a & IDENTITY_MASK & !RULE_MASK,
            b & IDENTITY_MASK & !RULE_MASK
        );
    }

    #[test]
    fn alternate_bucket_is_an_involution_and_differs() {
        let mask = (1 << 10) - 1;
        for i in 0..1000u64 {
            let t = of_subject(i.wrapping_mul(0x9e37_79b9), 1);
            let (b1, b2) = buckets(t, mask);
            assert_eq!(alt(b2, t, mask), b1);
            assert_ne!(b1, b2);
        }
        assert_eq!(buckets(12345 << 8, 0), (0, 0));
    }
}
