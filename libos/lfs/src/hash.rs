//! The one checksum of the format: a fast 64-bit word hash (four multiply-rotate lanes).
//!
//! CRC32 byte-at-a-time costs ~8 instructions a byte; this costs about half an instruction a
//! byte on aarch64 (plus a `memcpy` to align the words, see [`hash64`]) because it consumes
//! 32 bytes per round in four independent lanes. Each lane
//! step `v = rotl((v ^ w) * P1, 31)` is a bijection of `v` for a fixed word, so a change in any
//! single 64-bit word always changes the result. It detects accidents (torn writes, stale
//! sectors, bit rot), not adversaries. `docs/lfs-format.md` specifies it bit for bit.

use exo_format::le;
const P1: u64 = 0x9e37_79b9_7f4a_7c15;
const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const P3: u64 = 0x1656_67b1_9e37_79f9;

#[inline(always)]
fn word(b: &[u8]) -> u64 {
    le::get_u64(b, 0)
}

#[inline(always)]
fn lane(v: u64, w: u64) -> u64 {
    (v ^ w).wrapping_mul(P1).rotate_left(31)
}

/// The murmur3 64-bit finaliser: spreads every input bit over the output.
#[inline]
pub fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Bytes [`hash64`] copies into an aligned buffer at a time.
const STAGE: usize = 512;

/// A buffer whose words the compiler knows to be 8-byte aligned.
#[repr(align(8))]
struct Stage([u8; STAGE]);

/// The word at `at` (a multiple of 8) of the stage.
#[inline(always)]
fn staged(s: &Stage, at: usize) -> u64 {
    le::get_u64(&s.0, at)
}

/// Hashes `data` with `seed`. Any length; the format only hashes whole sectors, names and
/// small headers.
///
/// The words are read from an aligned copy of the data, `STAGE` bytes at a time: the
/// bare-metal target requires aligned accesses, so words read from a byte slice of unknown
/// alignment are assembled from single bytes (about three instructions a byte), while the
/// copy (`memcpy`, any alignment) and aligned loads cost about 0.6 a byte together.
pub fn hash64(seed: u64, data: &[u8]) -> u64 {
    let mut v = [seed ^ P1, seed ^ P2, seed.rotate_left(21) ^ P3, !seed];
    let mut stage = Stage([0; STAGE]);
    let mut done = 0;
    for part in data.chunks(STAGE) {
        stage.0[..part.len()].copy_from_slice(part);
        // Offsets from the start of the aligned array (not a sub-slice of it), so that the
        // compiler sees every word aligned.
        let rounds = part.len() / 32;
        for r in 0..rounds {
            let o = r * 32;
            v[0] = lane(v[0], staged(&stage, o));
            v[1] = lane(v[1], staged(&stage, o + 8));
            v[2] = lane(v[2], staged(&stage, o + 16));
            v[3] = lane(v[3], staged(&stage, o + 24));
        }
        done += rounds * 32;
    }
    let rest = &data[done..];
    let mut h = v[0] ^ v[1].rotate_left(7) ^ v[2].rotate_left(13) ^ v[3].rotate_left(19);
    let mut words = rest.chunks_exact(8);
    for w in &mut words {
        h = (h ^ word(w)).wrapping_mul(P2).rotate_left(29);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut b = [0u8; 8];
        b[..tail.len()].copy_from_slice(tail);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(P2).rotate_left(29);
    }
    mix64(h ^ data.len() as u64)
}

/// Hashes a directory entry name (the directory index uses it; it is not stored on disk).
#[inline]
pub fn name_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ name.len() as u64;
    let mut words = name.chunks_exact(8);
    for w in &mut words {
        h = (h ^ word(w)).wrapping_mul(P1).rotate_left(27);
    }
    let tail = words.remainder();
    let mut b = [0u8; 8];
    b[..tail.len()].copy_from_slice(tail);
    mix64((h ^ u64::from_le_bytes(b)).wrapping_mul(P2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_word_change_is_detected() {
        let mut buf = [0u8; 1024];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let h = hash64(5, &buf);
        for i in (0..1024).step_by(13) {
            buf[i] ^= 0x10;
            assert_ne!(hash64(5, &buf), h, "flip at {i}");
            buf[i] ^= 0x10;
        }
        assert_eq!(hash64(5, &buf), h);
        assert_ne!(hash64(6, &buf), h);
        assert_ne!(hash64(5, &buf[..1023]), h);
    }

    /// The definition as `docs/lfs-format.md` gives it, word by word.
    fn reference(seed: u64, data: &[u8]) -> u64 {
        let mut v = [seed ^ P1, seed ^ P2, seed.rotate_left(21) ^ P3, !seed];
        let mut chunks = data.chunks_exact(32);
        for c in &mut chunks {
            for (i, lane_v) in v.iter_mut().enumerate() {
                *lane_v = lane(*lane_v, word(&c[i * 8..i * 8 + 8]));
            }
        }
        let mut h = v[0] ^ v[1].rotate_left(7) ^ v[2].rotate_left(13) ^ v[3].rotate_left(19);
        let mut words = chunks.remainder().chunks_exact(8);
        for w in &mut words {
            h = (h ^ word(w)).wrapping_mul(P2).rotate_left(29);
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut b = [0u8; 8];
            b[..tail.len()].copy_from_slice(tail);
            h = (h ^ u64::from_le_bytes(b)).wrapping_mul(P2).rotate_left(29);
        }
        mix64(h ^ data.len() as u64)
    }

    #[test]
    fn staged_hash_equals_the_definition_at_every_length_and_alignment() {
        let buf: alloc::vec::Vec<u8> =
            (0..3100u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (0..1100).chain([1535, 1536, 1537, 2048, 2999]) {
            for at in [0, 1, 3, 8] {
                let d = &buf[at..at + len];
                assert_eq!(hash64(9, d), reference(9, d), "len {len} at {at}");
            }
        }
    }

    #[test]
    fn swapped_sectors_are_detected() {
        let mut buf = [0u8; 2048];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i / 512) as u8 + 1;
        }
        let h = hash64(1, &buf);
        let (a, b) = buf.split_at_mut(512);
        a.swap_with_slice(&mut b[..512]);
        assert_ne!(hash64(1, &buf), h);
    }

    #[test]
    fn names_spread() {
        assert_ne!(name_hash(b"a"), name_hash(b"b"));
        assert_ne!(name_hash(b"file0001"), name_hash(b"file0002"));
        assert_ne!(name_hash(b""), name_hash(b"\0"));
    }
}
