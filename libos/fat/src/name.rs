//! FAT names: making short (8.3) names and long (VFAT) names for new entries, showing and
//! matching stored ones.
//!
//! A name with an 8.3 form is stored as one: a part (base or extension) written all in
//! lower case keeps its case through the flags Windows NT and Linux use (byte 12 of the
//! entry); a mixed-case part is stored upper-case. A file or directory name with no 8.3 form (too long,
//! a space, a second dot, `+,;=[]`, a character outside ASCII) is stored as a long name in
//! long-name slots, before an 8.3 alias made from it with a numeric tail (`LONGFI~1.TXT`)
//! that no other entry of the directory has (the libOS writes those slots itself: the
//! crate cannot).

extern crate alloc;

use alloc::string::String;
use exo_libos::fs::{Error, Result};

/// Byte 12 flag: the base name is shown in lower case.
pub const LOWER_BASE: u8 = 0x08;
/// Byte 12 flag: the extension is shown in lower case.
pub const LOWER_EXT: u8 = 0x10;

fn allowed(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'()-@^_`{}~".contains(&c)
}

/// Packs one part into `out` (upper-cased); returns its case flag if it was all lower case.
fn pack(part: &str, out: &mut [u8], flag: u8) -> Result<u8> {
    if part.len() > out.len() {
        return Err(Error::NameTooLong);
    }
    let b = part.as_bytes();
    if !b.iter().all(|&c| allowed(c)) {
        return Err(Error::InvalidName);
    }
    for (o, c) in out.iter_mut().zip(b) {
        *o = c.to_ascii_uppercase();
    }
    let lower = b.iter().any(u8::is_ascii_lowercase);
    let upper = b.iter().any(u8::is_ascii_uppercase);
    Ok(if lower && !upper { flag } else { 0 })
}

/// The stored 8.3 form of `name` and its case flags.
///
/// [`Error::NameTooLong`] if the base has more than 8 or the extension more than 3
/// characters; [`Error::InvalidName`] for any other name with no 8.3 form (more than one
/// dot, a leading or trailing dot, a space, a character outside `A-Z a-z 0-9` and
/// ``! # $ % & ' ( ) - @ ^ _ ` { } ~``).
pub fn short_name(name: &str) -> Result<([u8; 11], u8)> {
    let (base, ext) = match name.split_once('.') {
        Some((_, e)) if e.is_empty() || e.contains('.') => return Err(Error::InvalidName),
        Some((b, e)) => (b, e),
        None => (name, ""),
    };
    if base.is_empty() {
        return Err(Error::InvalidName);
    }
    let mut sfn = [b' '; 11];
    let flags = pack(base, &mut sfn[..8], LOWER_BASE)? | pack(ext, &mut sfn[8..], LOWER_EXT)?;
    Ok((sfn, flags))
}

fn push_part(out: &mut String, part: &[u8], lower: bool) {
    for (i, &c) in part.iter().enumerate() {
        // 0x05 in the first byte stands for 0xE5 (which itself marks a deleted entry).
        let c = if i == 0 && c == 0x05 { 0xe5 } else { c };
        let c = if lower { c.to_ascii_lowercase() } else { c };
        // Bytes above 0x7F are in the volume's OEM code page; shown as Latin-1.
        out.push(char::from(c));
    }
}

/// How a stored short name is shown: `README.TXT`, or `readme.txt` with the case flags.
pub fn display(sfn: &[u8; 11], case: u8) -> String {
    let base = trim(&sfn[..8]);
    let ext = trim(&sfn[8..]);
    let mut s = String::with_capacity(12);
    push_part(&mut s, base, case & LOWER_BASE != 0);
    if !ext.is_empty() {
        s.push('.');
        push_part(&mut s, ext, case & LOWER_EXT != 0);
    }
    s
}

fn trim(b: &[u8]) -> &[u8] {
    let n = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    &b[..n]
}

/// The string `embedded-sdmmc` turns back into exactly `sfn`, if there is one (plain
/// printable ASCII, upper case, no embedded spaces).
pub fn crate_string(sfn: &[u8; 11]) -> Option<String> {
    let (base, ext) = (trim(&sfn[..8]), trim(&sfn[8..]));
    let ok = |p: &[u8]| p.iter().all(|&c| allowed(c) && !c.is_ascii_lowercase());
    if base.is_empty() || !ok(base) || !ok(ext) {
        return None;
    }
    let mut s = String::with_capacity(12);
    push_part(&mut s, base, false);
    if !ext.is_empty() {
        s.push('.');
        push_part(&mut s, ext, false);
    }
    Some(s)
}

/// The LFN checksum of a short name (stored in each of its long-name entries).
pub fn checksum(sfn: &[u8; 11]) -> u8 {
    sfn.iter().fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c))
}

/// Where a long-name slot's 13 UTF-16 units lie in its 32 bytes, in order.
pub const LFN_UNITS_AT: [usize; 13] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// The most UTF-16 units a long name holds.
pub const LONG_MAX: usize = 255;

/// `name` as a long name's UTF-16 units: [`Error::NameTooLong`] past [`LONG_MAX`];
/// [`Error::InvalidName`] for an empty name, a control character, one of ``"*/:<>?\|``, or
/// a trailing dot or space (which other systems drop, making it another name there).
pub fn long_name(name: &str) -> Result<alloc::vec::Vec<u16>> {
    let bad = |c: char| c < ' ' || c == '\u{7f}' || "\"*/:<>?\\|".contains(c);
    if name.is_empty() || name.chars().any(bad) || name.ends_with(['.', ' ']) {
        return Err(Error::InvalidName);
    }
    let units: alloc::vec::Vec<u16> = name.encode_utf16().collect();
    if units.len() > LONG_MAX {
        return Err(Error::NameTooLong);
    }
    Ok(units)
}

/// The 8.3 alias of long name `name`: its characters that 8.3 allows, upper-cased, others
/// as `_`, spaces and all dots but the last dropped; the base cut to leave room for `~n`,
/// with `n` the smallest from 1 that `taken` refuses for none. [`Error::Exists`] if every
/// tail up to `~999999` is taken.
pub fn alias(name: &str, taken: impl Fn(&[u8; 11]) -> bool) -> Result<[u8; 11]> {
    let keep = |p: &str| -> alloc::vec::Vec<u8> {
        let c = p.chars().filter(|&c| c != ' ' && c != '.');
        c.map(|c| if c.is_ascii() && allowed(c as u8) { c.to_ascii_uppercase() as u8 } else { b'_' })
            .collect()
    };
    let (base, ext) = match name.trim_start_matches('.').rsplit_once('.') {
        Some((b, e)) => (keep(b), keep(e)),
        None => (keep(name), alloc::vec::Vec::new()),
    };
    let mut sfn = [b' '; 11];
    for (o, &c) in sfn[8..].iter_mut().zip(&ext) {
        *o = c;
    }
    for n in 1..=999_999u32 {
        let tail = alloc::format!("~{n}");
        let cut = base.len().min(8 - tail.len());
        sfn[..8].fill(b' ');
        sfn[..cut].copy_from_slice(&base[..cut]);
        sfn[cut..cut + tail.len()].copy_from_slice(tail.as_bytes());
        if !taken(&sfn) {
            return Ok(sfn);
        }
    }
    Err(Error::Exists)
}

/// The long-name slots for `units` before 8.3 entry `sfn`, in the order they are stored
/// (the last part first, marked 0x40): 13 units a slot, a 0 after the last unit if room,
/// then 0xFFFF.
pub fn long_slots(units: &[u16], sfn: &[u8; 11]) -> alloc::vec::Vec<[u8; 32]> {
    let n = units.len().div_ceil(13);
    let csum = checksum(sfn);
    (1..=n)
        .rev()
        .map(|seq| {
            let mut s = [0u8; 32];
            s[0] = seq as u8 | if seq == n { 0x40 } else { 0 };
            (s[11], s[13]) = (0x0f, csum);
            for (i, at) in LFN_UNITS_AT.into_iter().enumerate() {
                let k = (seq - 1) * 13 + i;
                let u = match k.cmp(&units.len()) {
                    core::cmp::Ordering::Less => units[k],
                    core::cmp::Ordering::Equal => 0,
                    core::cmp::Ordering::Greater => 0xffff,
                };
                s[at..at + 2].copy_from_slice(&u.to_le_bytes());
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sfn: &[u8; 11]) -> &str {
        core::str::from_utf8(sfn).unwrap()
    }

    #[test]
    fn an_alias_keeps_what_8_3_allows_and_takes_the_first_free_tail() {
        let none = |_: &[u8; 11]| false;
        assert_eq!(s(&alias("Long File Name.txt", none).unwrap()), "LONGFI~1TXT");
        assert_eq!(s(&alias("x.tar.gz", none).unwrap()), "XTAR~1  GZ ");
        assert_eq!(s(&alias(".bashrc", none).unwrap()), "BASHRC~1   ");
        assert_eq!(s(&alias("semi;colon+é.text", none).unwrap()), "SEMI_C~1TEX");
        let taken = |n: &[u8; 11]| n[..6] == *b"LONGFI";
        // ~1 to ~9 taken: the base gives up a character for the second digit.
        assert_eq!(s(&alias("Long File Name.txt", taken).unwrap()), "LONGF~10TXT");
        assert_eq!(alias("a b", |_| true), Err(Error::Exists));
    }

    #[test]
    fn a_long_name_is_refused_only_for_what_fat_cannot_hold() {
        assert_eq!(long_name("a name with spaces, and more.txt").unwrap().len(), 32);
        assert_eq!(long_name(&"x".repeat(LONG_MAX)).unwrap().len(), LONG_MAX);
        assert_eq!(long_name(&"x".repeat(LONG_MAX + 1)), Err(Error::NameTooLong));
        for bad in ["", "a*b", "a?b", "a:b", "a\\b", "a|b", "a\"b", "a<b", "tab\there", "dot.", "space "] {
            assert_eq!(long_name(bad), Err(Error::InvalidName), "{bad:?}");
        }
    }

    #[test]
    fn long_slots_run_last_part_first_with_the_checksum_and_padding() {
        let units: alloc::vec::Vec<u16> = "abcdefghijklmnop".encode_utf16().collect(); // 16: two slots
        let sfn = *b"ABCDEF~1   ";
        let slots = long_slots(&units, &sfn);
        assert_eq!(slots.len(), 2);
        assert_eq!((slots[0][0], slots[1][0]), (0x42, 0x01));
        assert!(slots.iter().all(|e| e[11] == 0x0f && e[13] == checksum(&sfn)));
        let unit = |e: &[u8; 32], at: usize| u16::from_le_bytes([e[at], e[at + 1]]);
        // The second part: "nop", the terminator, then 0xFFFF.
        assert_eq!(
            [unit(&slots[0], 1), unit(&slots[0], 5), unit(&slots[0], 7), unit(&slots[0], 9)],
            [u16::from(b'n'), u16::from(b'p'), 0, 0xffff]
        );
        assert_eq!(unit(&slots[1], 30), u16::from(b'm'));
    }
}
