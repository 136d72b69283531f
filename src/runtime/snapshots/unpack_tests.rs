//! Tests of the layer unpacker. Those that chown or create device nodes and trusted xattrs
//! need root and are ignored in a build by another user (cfg set by build.rs).

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::*;

enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDev(&'a str, u32, u32),
}

fn build(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_600_000_000);
        match e {
            E::File(name, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, *data).unwrap();
            }
            E::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
            E::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            E::Hardlink(name, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            E::CharDev(name, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_size(0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Writes a raw header with an arbitrary name (tar::Builder refuses `..` and `/`).
fn raw_entry(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let bytes = h.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            bytes.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn finish_tar(mut body: Vec<u8>) -> Vec<u8> {
    body.extend_from_slice(&[0u8; 1024]);
    body
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: chown, device nodes, trusted.* xattrs"
)]
fn files_dirs_links_and_devices_keep_their_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let layer = build(&[
        E::Dir("etc/"),
        E::File("etc/passwd", b"root:x:0:0", 0o644),
        E::File("bin/su", b"#!", 0o4755),
        E::Symlink("bin/sh", "/bin/busybox"),
        E::Hardlink("etc/passwd.bak", "etc/passwd"),
        E::CharDev("dev/null", 1, 3),
    ]);
    let diff = unpack_layer(&layer[..], dir.path()).unwrap();
    assert_eq!(diff, digest(&layer));
    let p = dir.path();
    let passwd = fs::metadata(p.join("etc/passwd")).unwrap();
    assert_eq!((passwd.uid(), passwd.gid()), (1000, 1001));
    assert_eq!(passwd.mtime(), 1_600_000_000);
    assert_eq!(fs::metadata(p.join("etc")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(
        fs::metadata(p.join("bin/su")).unwrap().permissions().mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    assert_eq!(
        fs::read_link(p.join("bin/sh")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    assert_eq!(
        fs::metadata(p.join("etc/passwd.bak")).unwrap().ino(),
        passwd.ino()
    );
    let null = fs::symlink_metadata(p.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), stat::makedev(1, 3));
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: chown, device nodes, trusted.* xattrs"
)]
fn whiteouts_become_overlay_char_devices_and_opaque_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let layer = build(&[
        E::File("etc/.wh.motd", b"", 0o644),
        E::Dir("var/cache/"),
        E::File("var/cache/.wh..wh..opq", b"", 0o644),
        E::File("var/cache/new", b"x", 0o644),
    ]);
    unpack_layer(&layer[..], dir.path()).unwrap();
    let wh = fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!dir.path().join("etc/.wh.motd").exists());
    assert!(!dir.path().join("var/cache/.wh..wh..opq").exists());
    let mut buf = [0u8; 8];
    let path = CString::new(dir.path().join("var/cache").as_os_str().as_bytes()).unwrap();
    let name = CString::new("trusted.overlay.opaque").unwrap();
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        nix::libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(n, 1, "opaque xattr present");
    assert_eq!(buf[0], b'y');
    assert!(dir.path().join("var/cache/new").is_file());
}

#[test]
fn dot_dot_and_absolute_entries_are_rejected() {
    for name in ["../escape", "a/../../escape", "/etc/escape"] {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let layer = finish_tar(raw_entry(name, tar::EntryType::Regular, None, b"pwned"));
        let err = unpack_layer(&layer[..], &dest).unwrap_err();
        assert!(matches!(err, SnapshotError::Unsafe { .. }), "{name}: {err}");
        assert!(!outer.path().join("escape").exists());
    }
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: chown, device nodes, trusted.* xattrs"
)]
fn writing_through_a_symlink_out_of_the_layer_is_rejected() {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("layer");
    let victim = outer.path().join("victim");
    fs::create_dir_all(&dest).unwrap();
    fs::create_dir_all(&victim).unwrap();
    let mut body = raw_entry(
        "link",
        tar::EntryType::Symlink,
        Some(victim.to_str().unwrap()),
        b"",
    );
    body.extend(raw_entry(
        "link/owned",
        tar::EntryType::Regular,
        None,
        b"pwned",
    ));
    let err = unpack_layer(&finish_tar(body)[..], &dest).unwrap_err();
    assert!(matches!(err, SnapshotError::Unsafe { .. }), "{err}");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);

    // A relative symlink climbing out, then a file written "into" it.
    let dest2 = outer.path().join("layer2");
    fs::create_dir_all(&dest2).unwrap();
    let mut body = raw_entry("up", tar::EntryType::Symlink, Some("../victim"), b"");
    body.extend(raw_entry(
        "up/owned",
        tar::EntryType::Regular,
        None,
        b"pwned",
    ));
    assert!(unpack_layer(&finish_tar(body)[..], &dest2).is_err());
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: chown, device nodes, trusted.* xattrs"
)]
fn a_file_entry_replaces_a_symlink_instead_of_following_it() {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("layer");
    fs::create_dir_all(&dest).unwrap();
    let victim = outer.path().join("victim.txt");
    fs::write(&victim, "original").unwrap();
    let mut body = raw_entry(
        "f",
        tar::EntryType::Symlink,
        Some(victim.to_str().unwrap()),
        b"",
    );
    body.extend(raw_entry("f", tar::EntryType::Regular, None, b"new"));
    unpack_layer(&finish_tar(body)[..], &dest).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
    assert_eq!(fs::read_to_string(dest.join("f")).unwrap(), "new");
}

#[test]
fn hard_links_to_paths_outside_the_layer_are_rejected() {
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("layer");
    fs::create_dir_all(&dest).unwrap();
    let body = raw_entry("h", tar::EntryType::Link, Some("../secret"), b"");
    assert!(unpack_layer(&finish_tar(body)[..], &dest).is_err());
    let body = raw_entry("h", tar::EntryType::Link, Some("/etc/shadow"), b"");
    let err = unpack_layer(&finish_tar(body)[..], &dest).unwrap_err();
    assert!(
        err.to_string()
            .contains("hard link target /etc/shadow leaves the layer"),
        "{err}"
    );
    assert!(!dest.join("h").exists());
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: chown, device nodes, trusted.* xattrs"
)]
fn gzip_and_zstd_layers_unpack_to_the_diff_id_of_the_plain_tar() {
    let layer = build(&[E::File("hello", b"world", 0o644)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&layer[..], 3).unwrap();
    for blob in [gz, zst] {
        let dir = tempfile::tempdir().unwrap();
        let diff = unpack_layer(&blob[..], dir.path()).unwrap();
        assert_eq!(diff, digest(&layer));
        assert_eq!(fs::read(dir.path().join("hello")).unwrap(), b"world");
    }
}

#[test]
fn whiteouts_of_dot_and_dot_dot_are_rejected() {
    for name in [".wh..", ".wh...", "a/.wh..."] {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        fs::create_dir_all(dest.join("a")).unwrap();
        fs::write(outer.path().join("sibling"), "keep").unwrap();
        let layer = finish_tar(raw_entry(name, tar::EntryType::Regular, None, b""));
        let err = unpack_layer(&layer[..], &dest).unwrap_err();
        assert!(matches!(err, SnapshotError::Unsafe { .. }), "{name}: {err}");
        assert_eq!(
            fs::read_to_string(outer.path().join("sibling")).unwrap(),
            "keep"
        );
        assert!(dest.join("a").is_dir(), "{name}");
    }
}
