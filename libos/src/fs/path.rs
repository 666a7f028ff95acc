//! Paths: lexical normalisation (`.`, `..`, repeated slashes) and mount-point resolution.
//!
//! Normalisation is purely lexical (exo has no symbolic links): `..` removes the previous
//! component and stops at `/`. A file system is only ever handed the normalised remainder of
//! a path below its mount point, so no path can climb out of a mount's root.

extern crate alloc;

use super::{Error, Result};
use alloc::string::String;
use alloc::vec::Vec;

/// Longest component accepted anywhere (back ends may allow less).
pub const NAME_MAX: usize = 255;
/// Longest normalised path accepted.
pub const PATH_MAX: usize = 4096;

/// Normalises an absolute path: `"//a/./b/../c/"` becomes `"/a/c"`, `"/.."` becomes `"/"`.
///
/// Fails with [`Error::InvalidArgument`] for a relative or empty path, [`Error::InvalidName`]
/// for a component holding a NUL byte, and [`Error::NameTooLong`] for a component longer
/// than [`NAME_MAX`] bytes or a result longer than [`PATH_MAX`].
pub fn normalize(path: &str) -> Result<String> {
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => {
                if name.len() > NAME_MAX {
                    return Err(Error::NameTooLong);
                }
                if name.contains('\0') {
                    return Err(Error::InvalidName);
                }
                parts.push(name);
            }
        }
    }
    let mut out = String::with_capacity(path.len().max(1));
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    if out.len() > PATH_MAX {
        return Err(Error::NameTooLong);
    }
    Ok(out)
}

/// Whether `path` is already what [`normalize`] makes of it (so a caller can use it as it
/// is, without the allocation): absolute, no empty, `.` or `..` component, no trailing `/`
/// (except `/` itself), no NUL, and within the length limits.
pub fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') || b.len() > PATH_MAX {
        return false;
    }
    if b.len() == 1 {
        return true;
    }
    b[1..]
        .split(|&c| c == b'/')
        .all(|c| !c.is_empty() && c != b"." && c != b".." && c.len() <= NAME_MAX && !c.contains(&0))
}

/// The components of a normalised path (none for `/`).
pub fn components(norm: &str) -> impl Iterator<Item = &str> {
    norm.split('/').filter(|c| !c.is_empty())
}

/// Splits a normalised path into its parent and last component; `None` for `/`.
pub fn split_last(norm: &str) -> Option<(&str, &str)> {
    if norm == "/" {
        return None;
    }
    let i = norm.rfind('/')?;
    let parent = if i == 0 { "/" } else { &norm[..i] };
    Some((parent, &norm[i + 1..]))
}

/// Whether normalised `path` is `dir` itself or lies below it.
pub fn is_within(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path.starts_with('/');
    }
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// The remainder of normalised `path` below normalised `dir`, as an absolute path (`/` for
/// `dir` itself); `None` if `path` is not within `dir`.
pub fn strip_dir<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    if !is_within(path, dir) {
        return None;
    }
    if dir == "/" {
        return Some(path);
    }
    let rest = &path[dir.len()..];
    Some(if rest.is_empty() { "/" } else { rest })
}

/// The mount point that owns normalised `path`: the longest of `mounts` (normalised) that
/// `path` lies within. Returns its index and the path below it.
pub fn resolve<'a, 'm>(mounts: impl IntoIterator<Item = &'m str>, path: &'a str) -> Option<(usize, &'a str)> {
    let mut best: Option<(usize, usize, &'a str)> = None;
    for (i, m) in mounts.into_iter().enumerate() {
        if let Some(rest) = strip_dir(path, m) {
            if best.is_none_or(|(_, len, _)| m.len() > len) {
                best = Some((i, m.len(), rest));
            }
        }
    }
    best.map(|(i, _, rest)| (i, rest))
}

/// Joins a normalised directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    let mut s = String::with_capacity(dir.len() + name.len() + 1);
    s.push_str(dir);
    if !dir.ends_with('/') {
        s.push('/');
    }
    s.push_str(name);
    s
}
