//! Attributes kept beside a file: read back only while the file's bytes are the ones they
//! were made for, across remounts, whatever the clock does.
mod common;
use common::*;
use exo_lfs::{Error, Fs, MountOptions, ATTR_MAX};

#[test]
fn an_attribute_reads_back_and_survives_a_remount() {
    let mut fs = fresh(8, 64);
    let f = fs.create("/page.txt").unwrap();
    fs.write(f, 0, b"hello").unwrap();
    let (v, none) = fs.attr("/page.txt").unwrap();
    assert!(none.is_empty());
    assert_eq!(v.size, 5);
    fs.set_attr("/page.txt", v, b"prepared head").unwrap();
    assert_eq!(fs.attr("/page.txt").unwrap(), (v, b"prepared head".to_vec()));
    fs.sync().unwrap();
    let mut fs = Fs::mount(fs.into_device(), MountOptions::default()).unwrap();
    assert_eq!(fs.attr("/page.txt").unwrap(), (v, b"prepared head".to_vec()));
    assert_clean(&mut fs, "with an attribute");
}

/// The test file system's clock stands still (it always says 0), so the change time alone
/// would not move: the version still must.
#[test]
fn a_same_size_rewrite_hides_the_attribute_even_with_a_clock_that_stands_still() {
    let mut fs = fresh(8, 64);
    let f = fs.create("/a").unwrap();
    fs.write(f, 0, b"one").unwrap();
    let (v1, _) = fs.attr("/a").unwrap();
    fs.set_attr("/a", v1, b"for one").unwrap();
    fs.write(f, 0, b"two").unwrap();
    let (v2, value) = fs.attr("/a").unwrap();
    assert_ne!(v1, v2);
    assert_eq!(v2.size, 3);
    assert!(value.is_empty(), "a stale attribute was returned");
    // Nor can the old version be stored again, and a truncate moves the version on too.
    assert_eq!(fs.set_attr("/a", v1, b"for one"), Err(Error::Stale));
    fs.set_attr("/a", v2, b"for two").unwrap();
    fs.truncate(f, 3).unwrap();
    assert!(fs.attr("/a").unwrap().1.is_empty());
    // A rename after a clock that went back (a reboot: exo's restarts at 1980) does not
    // bring an old change time back either: every later version is new.
    fs.rename("/a", "/b").unwrap();
    let (v4, _) = fs.attr("/b").unwrap();
    assert!(v4.ctime > v2.ctime);
    // After a remount the old versions are still gone.
    fs.sync().unwrap();
    let mut fs = Fs::mount(fs.into_device(), MountOptions::default()).unwrap();
    let (v3, value) = fs.attr("/b").unwrap();
    assert!(value.is_empty() && v3 != v1 && v3 != v2);
}

#[test]
fn a_file_made_again_under_the_same_inode_number_does_not_inherit_an_attribute() {
    let mut fs = fresh(8, 64);
    let f = fs.create("/x").unwrap();
    fs.write(f, 0, b"same").unwrap();
    let (v, _) = fs.attr("/x").unwrap();
    fs.set_attr("/x", v, b"old").unwrap();
    fs.unlink("/x").unwrap();
    let g = fs.create("/x").unwrap();
    fs.write(g, 0, b"same").unwrap();
    let (w, value) = fs.attr("/x").unwrap();
    assert!(value.is_empty());
    assert_ne!(v, w);
}

#[test]
fn bad_attribute_requests_are_refused() {
    let mut fs = fresh(8, 64);
    fs.mkdir("/d").unwrap();
    assert_eq!(fs.attr("/d").map(drop), Err(Error::IsDir));
    assert_eq!(fs.attr("/missing").map(drop), Err(Error::NotFound));
    let f = fs.create("/f").unwrap();
    fs.write(f, 0, b"x").unwrap();
    let (v, _) = fs.attr("/f").unwrap();
    assert_eq!(fs.set_attr("/f", v, &vec![0; ATTR_MAX + 1]), Err(Error::InvalidArgument));
    fs.set_attr("/f", v, &vec![7; ATTR_MAX]).unwrap();
    assert_eq!(fs.attr("/f").unwrap().1, vec![7; ATTR_MAX]);
    let side = format!("/.attr/{}", v.ino);
    let (s, _) = fs.attr(&side).unwrap();
    assert_eq!(fs.set_attr(&side, s, b"x"), Err(Error::InvalidArgument));
    // A name that merely starts like the directory is an ordinary file.
    let g = fs.create("/.attributes").unwrap();
    fs.write(g, 0, b"y").unwrap();
    let (w, _) = fs.attr("/.attributes").unwrap();
    fs.set_attr("/.attributes", w, b"ok").unwrap();
}

/// Attributes never outlive their files: an unlink, and a rename over the file, take the
/// attribute with it, while one kept for another file stays.
#[test]
fn removing_a_file_or_renaming_over_it_removes_its_attribute() {
    let mut fs = fresh(8, 64);
    let keep = |fs: &mut Fs<_>, path: &str, value: &[u8]| {
        let f = fs.create(path).unwrap();
        fs.write(f, 0, value).unwrap();
        let (v, _) = fs.attr(path).unwrap();
        fs.set_attr(path, v, value).unwrap();
        format!("/.attr/{}", v.ino)
    };
    let (a, b, c) =
        (keep(&mut fs, "/a", b"for a"), keep(&mut fs, "/b", b"for b"), keep(&mut fs, "/c", b"for c"));
    fs.unlink("/a").unwrap();
    assert_eq!(fs.stat(&a).map(drop), Err(Error::NotFound), "unlink left the attribute");
    fs.rename("/c", "/b").unwrap();
    assert_eq!(fs.stat(&b).map(drop), Err(Error::NotFound), "the replaced file's attribute stayed");
    // The moved file keeps its own attribute's file (stale now: a rename is a change).
    assert!(fs.stat(&c).is_ok(), "the renamed file's own attribute went");
    // An attribute removed directly is only an attribute gone; the file stays.
    fs.unlink(&c).unwrap();
    assert!(fs.stat("/b").is_ok());
    fs.sync().unwrap();
    let mut fs = Fs::mount(fs.into_device(), MountOptions::default()).unwrap();
    assert_eq!(fs.stat(&a).map(drop), Err(Error::NotFound));
    assert_clean(&mut fs, "after attributes were removed with their files");
}
