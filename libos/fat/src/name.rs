//! FAT short (8.3) names: making them for new entries, showing and matching stored ones.
//!
//! The FAT libOS creates only 8.3 names (the crate cannot write long-name entries). A part
//! (base or extension) written all in lower case keeps its case through the flags Windows NT
//! and Linux use (byte 12 of the entry); a mixed-case part is stored upper-case.

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
