//! Key names and Redis Cluster hash slots.

use super::EncodeError;

/// 64 digits with no `{`, `}`, `:` or space: hash tags stay intact and keys
/// print plainly in `redis-cli`.
const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

/// `v` in base 64 over [`DIGITS`], most significant digit first, without
/// leading zeros ("0" for 0): at most 11 bytes.
pub(super) fn base64(v: u64, tmp: &mut [u8; 11]) -> &[u8] {
    let mut at = tmp.len();
    let mut v = v;
    for slot in tmp.iter_mut().rev() {
        *slot = DIGITS.get((v & 63) as usize).copied().unwrap_or(b'0');
        at = at.saturating_sub(1);
        v >>= 6;
        if v == 0 {
            break;
        }
    }
    tmp.get(at..).unwrap_or(&[])
}

/// Length of `prefix{hashtag}tag`.
pub(super) fn key_len(prefix: &[u8], hashtag: u64, tag: u64) -> usize {
    let mut a = [0; 11];
    let mut b = [0; 11];
    prefix
        .len()
        .saturating_add(base64(hashtag, &mut a).len())
        .saturating_add(base64(tag, &mut b).len())
        .saturating_add(2)
}

/// Append `prefix{hashtag}tag` through `put`.
pub(super) fn key_parts(prefix: &[u8], hashtag: u64, tag: u64, mut put: impl FnMut(&[u8])) {
    let mut tmp = [0; 11];
    put(prefix);
    put(b"{");
    put(base64(hashtag, &mut tmp));
    put(b"}");
    put(base64(tag, &mut tmp));
}

/// Write the key `prefix{hashtag}tag` into `out` and return its length.
///
/// Both numbers are written in a 64-digit alphabet (`0-9A-Za-z-_`, no
/// leading zeros, at most 11 bytes each), so keys are at most
/// `prefix.len() + 24` bytes, and the Cluster hash tag is exactly the
/// encoded `hashtag`: every key with the same `hashtag` is in one slot.
///
/// Errors: [`EncodeError::Prefix`] if `prefix` holds `{` or `}`;
/// [`EncodeError::TooShort`] with the length needed if `out` is shorter
/// (`out` is then untouched).
pub fn write_key(
    prefix: &[u8],
    hashtag: u64,
    tag: u64,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    if prefix.iter().any(|&b| b == b'{' || b == b'}') {
        return Err(EncodeError::Prefix);
    }
    let len = key_len(prefix, hashtag, tag);
    if len > out.len() {
        return Err(EncodeError::TooShort {
            bytes: len,
            spans: 0,
        });
    }
    let mut at = 0usize;
    key_parts(prefix, hashtag, tag, |part| {
        let end = at.saturating_add(part.len());
        if let Some(dst) = out.get_mut(at..end) {
            dst.copy_from_slice(part);
        }
        at = end;
    });
    Ok(at)
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum
/// Redis Cluster hashes keys with, one table lookup per byte.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: a bad index fails the build"
)]
const CRC16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        let i = ((crc >> 8) as u8 ^ b) as usize;
        (crc << 8) ^ CRC16.get(i).copied().unwrap_or(0)
    })
}

/// The Redis Cluster slot (0..16384) of `key`: CRC16 of its hash tag, the
/// bytes between the first `{` and the first `}` after it when there are
/// any, else of the whole key.
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open.saturating_add(1)..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        rest.get(..close).filter(|t| !t.is_empty())
    });
    crc16(tagged.unwrap_or(key)) & 0x3FFF
}
