//! Path normalisation and mount-point resolution, table-driven.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

use exo_libos::fs::path::{is_normal, is_within, join, normalize, resolve, split_last, strip_dir};
use exo_libos::fs::Error;

#[test]
fn normalisation() {
    let long = "x".repeat(256);
    let cases: &[(&str, Result<&str, Error>)] = &[
        ("/", Ok("/")),
        ("//", Ok("/")),
        ("/.", Ok("/")),
        ("/..", Ok("/")),
        ("/../..", Ok("/")),
        ("/a", Ok("/a")),
        ("/a/", Ok("/a")),
        ("//a//b///c", Ok("/a/b/c")),
        ("/a/./b/.", Ok("/a/b")),
        ("/a/b/..", Ok("/a")),
        ("/a/b/../..", Ok("/")),
        ("/a/b/../../../..", Ok("/")),
        ("/a/../b/../c", Ok("/c")),
        ("/fat/../log/x", Ok("/log/x")),
        ("/a/.../b", Ok("/a/.../b")),
        ("/a/..b/.c", Ok("/a/..b/.c")),
        ("/caf\u{e9}/na\u{ef}ve", Ok("/caf\u{e9}/na\u{ef}ve")),
        ("", Err(Error::InvalidArgument)),
        ("a/b", Err(Error::InvalidArgument)),
        ("./a", Err(Error::InvalidArgument)),
        ("/a\0b", Err(Error::InvalidName)),
    ];
    for (input, want) in cases {
        assert_eq!(normalize(input).as_deref().map_err(|e| *e), *want, "normalize({input:?})");
        // A path is taken as it is exactly when normalising would give it back unchanged.
        assert_eq!(is_normal(input), *want == Ok(*input), "is_normal({input:?})");
    }
    assert!(!is_normal(&format!("/{long}")));
    assert!(is_normal(&format!("/{}", &long[1..])));
    assert!(!is_normal(&"/abcdefgh".repeat(520)));
    assert_eq!(normalize(&format!("/{long}")), Err(Error::NameTooLong));
    assert_eq!(normalize(&format!("/{}", &long[1..])).unwrap().len(), 256);
    // A too-long component is refused even if `..` would remove it.
    assert_eq!(normalize(&format!("/{long}/..")), Err(Error::NameTooLong));
    let deep = "/abcdefgh".repeat(500);
    assert_eq!(normalize(&deep), Err(Error::NameTooLong));
}

#[test]
fn splitting_and_joining() {
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        ("/", None),
        ("/a", Some(("/", "a"))),
        ("/a/b", Some(("/a", "b"))),
        ("/a/b/c", Some(("/a/b", "c"))),
    ];
    for (p, want) in cases {
        assert_eq!(split_last(p), *want, "split_last({p:?})");
    }
    assert_eq!(join("/", "a"), "/a");
    assert_eq!(join("/a", "b"), "/a/b");
}

#[test]
fn within_and_strip() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("/", "/", Some("/")),
        ("/a", "/", Some("/a")),
        ("/fat", "/fat", Some("/")),
        ("/fat/x", "/fat", Some("/x")),
        ("/fat/x/y", "/fat", Some("/x/y")),
        ("/fatter", "/fat", None),
        ("/fa", "/fat", None),
        ("/", "/fat", None),
        ("/log/x", "/fat", None),
    ];
    for (p, d, want) in cases {
        assert_eq!(strip_dir(p, d), *want, "strip_dir({p:?}, {d:?})");
        assert_eq!(is_within(p, d), want.is_some(), "is_within({p:?}, {d:?})");
    }
}

#[test]
fn longest_mount_point_wins() {
    let mounts = ["/", "/fat", "/log", "/fat/inner", "/mnt/deep/x"];
    let cases: &[(&str, Option<(usize, &str)>)] = &[
        ("/", Some((0, "/"))),
        ("/etc/motd", Some((0, "/etc/motd"))),
        ("/fat", Some((1, "/"))),
        ("/fat/boot.txt", Some((1, "/boot.txt"))),
        ("/fatter", Some((0, "/fatter"))),
        ("/fat/inner", Some((3, "/"))),
        ("/fat/inner/a/b", Some((3, "/a/b"))),
        ("/fat/innermost", Some((1, "/innermost"))),
        ("/log/x", Some((2, "/x"))),
        ("/mnt/deep", Some((0, "/mnt/deep"))),
        ("/mnt/deep/x/y", Some((4, "/y"))),
    ];
    for (p, want) in cases {
        assert_eq!(resolve(mounts, p), *want, "resolve({p:?})");
    }
    // Without a root mount, paths outside every mount point belong to none.
    let mounts = ["/fat", "/log"];
    assert_eq!(resolve(mounts, "/"), None);
    assert_eq!(resolve(mounts, "/other"), None);
    assert_eq!(resolve(mounts, "/log"), Some((1, "/")));
    // Resolution after normalisation cannot climb out of a mount.
    let p = normalize("/fat/../../log/./x").unwrap();
    assert_eq!(resolve(mounts, &p), Some((1, "/x")));
    let p = normalize("/fat/a/../../../..").unwrap();
    assert_eq!(resolve(mounts, &p), None);
}
