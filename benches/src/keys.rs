//! Benchmark keys: deterministic, distinct, and in a pseudo-random order
//! (key `i` is a bijective mix of `i`, so consecutive keys land in
//! unrelated buckets).

use core::hash::Hash;

/// A kind of key the benchmarks run on.
pub trait Key: Clone + Eq + Hash + Send + Sync + 'static {
    /// The name used in benchmark ids and tables.
    const NAME: &'static str;
    /// The key's bytes, as ratecard and the floor hash them.
    type Bytes: AsRef<[u8]> + Copy + Send + Sync + 'static;
    /// The `i`-th key; distinct for distinct `i`.
    fn nth(i: u64) -> Self;
    /// The key's bytes.
    fn bytes(&self) -> Self::Bytes;
}

/// SplitMix64's finaliser: a bijection on u64.
pub const fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Key for u64 {
    const NAME: &'static str = "u64";
    type Bytes = [u8; 8];

    fn nth(i: u64) -> u64 {
        mix(i)
    }

    fn bytes(&self) -> [u8; 8] {
        self.to_le_bytes()
    }
}

/// An IPv6 address: a documentation prefix (2001:db8::/32) above bits
/// that spell `mix(i)` in full.
fn ipv6(i: u64) -> u128 {
    (0x2001_0db8u128 << 96) | (mix(i) as u128) << 32 | mix(!i) as u128 >> 32
}

/// IPv6 addresses as 16 bytes in network order: the benchmarks' IPv6 key,
/// and governor's leanest layout for it (an 8-byte-aligned map entry).
impl Key for [u8; 16] {
    const NAME: &'static str = "ipv6";
    type Bytes = [u8; 16];

    fn nth(i: u64) -> [u8; 16] {
        ipv6(i).to_be_bytes()
    }

    fn bytes(&self) -> [u8; 16] {
        *self
    }
}

/// IPv6 addresses as `u128` (16-byte aligned, so governor's map entries
/// grow): measured for memory only.
impl Key for u128 {
    const NAME: &'static str = "ipv6-u128";
    type Bytes = [u8; 16];

    fn nth(i: u64) -> u128 {
        ipv6(i)
    }

    fn bytes(&self) -> [u8; 16] {
        self.to_be_bytes()
    }
}

/// Length of a Clerk secret key in these benchmarks.
pub const SECRET_KEY_LEN: usize = 48;

/// 48-byte secret keys, `sk_live_` and 40 base-62 characters.
impl Key for String {
    const NAME: &'static str = "secret48";
    type Bytes = [u8; SECRET_KEY_LEN];

    fn nth(i: u64) -> String {
        let b = secret_key(i);
        b.iter().map(|&c| c as char).collect()
    }

    fn bytes(&self) -> [u8; SECRET_KEY_LEN] {
        let mut out = [0u8; SECRET_KEY_LEN];
        let n = self.len().min(SECRET_KEY_LEN);
        out[..n].copy_from_slice(&self.as_bytes()[..n]);
        out
    }
}

/// The `i`-th secret key's bytes: its first 11 base-62 digits spell
/// `mix(i)` in full (62^11 > 2^64), so distinct `i` give distinct keys.
pub fn secret_key(i: u64) -> [u8; SECRET_KEY_LEN] {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [0u8; SECRET_KEY_LEN];
    out[..8].copy_from_slice(b"sk_live_");
    let mut word = mix(i);
    let mut filler = mix(i ^ 0x5eed);
    for (n, c) in out[8..].iter_mut().enumerate() {
        let v = if n < 11 {
            let d = word % 62;
            word /= 62;
            d
        } else {
            if n % 10 == 1 {
                filler = mix(filler);
            }
            let d = filler % 62;
            filler /= 62;
            d
        };
        *c = DIGITS[v as usize];
    }
    out
}

/// `n` distinct keys, owned (for governor and the hash map) and as bytes
/// (for ratecard and the floor), in the same order.
pub struct KeySet<K: Key> {
    /// The keys.
    pub owned: Vec<K>,
    /// Their bytes.
    pub bytes: Vec<K::Bytes>,
}

impl<K: Key> KeySet<K> {
    /// Keys `0..n`.
    pub fn new(n: usize) -> KeySet<K> {
        let owned: Vec<K> = (0..n as u64).map(K::nth).collect();
        let bytes = owned.iter().map(K::bytes).collect();
        KeySet { owned, bytes }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.owned.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.owned.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn distinct<K: Key>(n: usize) -> bool {
        let set = KeySet::<K>::new(n);
        let bytes: HashSet<Vec<u8>> = set.bytes.iter().map(|b| b.as_ref().to_vec()).collect();
        bytes.len() == n && set.owned.iter().collect::<HashSet<_>>().len() == n
    }

    #[test]
    fn keys_of_every_kind_are_distinct() {
        assert!(distinct::<u64>(100_000));
        assert!(distinct::<[u8; 16]>(100_000));
        assert!(distinct::<u128>(100_000));
        assert!(distinct::<String>(100_000));
    }

    #[test]
    fn secret_keys_are_48_bytes_of_a_live_key() {
        let k = String::nth(7);
        assert_eq!(k.len(), SECRET_KEY_LEN);
        assert!(k.starts_with("sk_live_"));
        assert!(k[8..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
