//! Little-endian fields in byte slices: every integer exo puts on a disk or a wire is one.
//!
//! `get_*` and `put_*` index like slices do (they panic past the end), for formats whose
//! buffers have a fixed size; `read_*` return `None` instead, for parsers of untrusted input.

#[inline(always)]
pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

#[inline(always)]
pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline(always)]
pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The `u16` at `at`, or `None` when it does not fit in `b`.
pub fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(get_u16(b.get(at..at.checked_add(2)?)?, 0))
}

/// The `u32` at `at`, or `None` when it does not fit in `b`.
pub fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(get_u32(b.get(at..at.checked_add(4)?)?, 0))
}

/// The `u64` at `at`, or `None` when it does not fit in `b`.
pub fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(get_u64(b.get(at..at.checked_add(8)?)?, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_little_endian() {
        let mut b = [0u8; 16];
        put_u16(&mut b, 1, 0xbeef);
        put_u32(&mut b, 3, 0x0102_0304);
        put_u64(&mut b, 7, 0x1122_3344_5566_7788);
        assert_eq!(b[1..3], [0xef, 0xbe]);
        assert_eq!(b[3..7], [4, 3, 2, 1]);
        assert_eq!(get_u16(&b, 1), 0xbeef);
        assert_eq!(get_u32(&b, 3), 0x0102_0304);
        assert_eq!(get_u64(&b, 7), 0x1122_3344_5566_7788);
    }

    #[test]
    fn checked_reads_refuse_fields_past_the_end() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(read_u16(&b, 6), Some(0x0807));
        assert_eq!(read_u16(&b, 7), None);
        assert_eq!(read_u32(&b, 5), None);
        assert_eq!(read_u64(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(read_u64(&b, 1), None);
        assert_eq!(read_u32(&b, usize::MAX), None);
    }
}
