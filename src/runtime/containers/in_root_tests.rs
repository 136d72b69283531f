//! Tests of in-root resolution on temp dirs (no root needed): hostile symlinks stay inside.

use super::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

/// A temp dir with `root/` (the container root) and `host/` beside it (what must stay
/// untouched), plus the resolved real paths for comparisons.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    host: PathBuf,
    fd: OwnedFd,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fs::canonicalize(dir.path()).expect("canonical tempdir");
    let root = base.join("root");
    let host = base.join("host");
    fs::create_dir_all(root.join("etc")).expect("root/etc");
    fs::create_dir_all(&host).expect("host");
    fs::write(host.join("canary"), "canary").expect("canary");
    let fd = open_root(&root).expect("open root");
    Fixture {
        _dir: dir,
        root,
        host,
        fd,
    }
}

fn real(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(describe(fd))
}

/// `../../..` deep enough to reach `/` from anywhere, then `target` (absolute).
fn climbing(target: &Path) -> PathBuf {
    Path::new(&"../".repeat(40)).join(target.strip_prefix("/").expect("absolute"))
}

#[test]
fn relative_symlink_climbing_out_is_created_inside_the_root() {
    let f = fixture();
    symlink(climbing(&f.host.join("canary")), f.root.join("etc/hosts")).unwrap();
    let fd = ensure(f.fd.as_fd(), Path::new("/etc/hosts"), Kind::File).unwrap();
    let inside = f
        .root
        .join(f.host.join("canary").strip_prefix("/").unwrap());
    assert_eq!(real(&fd), inside);
    assert!(inside.is_file());
    assert_eq!(fs::read_to_string(f.host.join("canary")).unwrap(), "canary");
    assert_eq!(fs::read_dir(&f.host).unwrap().count(), 1);
}

#[test]
fn absolute_symlink_restarts_at_the_root() {
    let f = fixture();
    symlink(&f.host, f.root.join("data")).unwrap();
    let fd = ensure(f.fd.as_fd(), Path::new("data/sub"), Kind::Dir).unwrap();
    let inside = f.root.join(f.host.strip_prefix("/").unwrap()).join("sub");
    assert_eq!(real(&fd), inside);
    assert!(inside.is_dir());
    assert!(!f.host.join("sub").exists());
}

#[test]
fn existing_paths_resolve_through_in_root_symlinks() {
    let f = fixture();
    fs::create_dir_all(f.root.join("usr/lib")).unwrap();
    symlink("usr/lib", f.root.join("lib")).unwrap();
    symlink("/etc", f.root.join("usr/lib/etc-link")).unwrap();
    let fd = open(f.fd.as_fd(), Path::new("/lib/etc-link")).unwrap();
    assert_eq!(real(&fd), f.root.join("etc"));
    let fd = walk(f.fd.as_fd(), Path::new("/lib/etc-link"), None).unwrap();
    assert_eq!(real(&fd), f.root.join("etc"));
}

#[test]
fn a_symlink_to_slash_resolves_to_the_root_itself() {
    let f = fixture();
    symlink("/", f.root.join("vol")).unwrap();
    symlink("../../..", f.root.join("etc/up")).unwrap();
    assert!(is_same_file(
        open(f.fd.as_fd(), Path::new("/")).unwrap().as_fd(),
        f.fd.as_fd()
    )
    .unwrap());
    assert!(is_same_file(
        open(f.fd.as_fd(), Path::new("")).unwrap().as_fd(),
        f.fd.as_fd()
    )
    .unwrap());
    for p in ["/vol", "/etc/up", "/"] {
        let fd = ensure(f.fd.as_fd(), Path::new(p), Kind::Dir).unwrap();
        assert!(is_same_file(fd.as_fd(), f.fd.as_fd()).unwrap(), "{p}");
    }
}

#[test]
fn missing_paths_are_not_created_by_open() {
    let f = fixture();
    assert_eq!(
        open(f.fd.as_fd(), Path::new("/no/such")).unwrap_err(),
        Errno::ENOENT
    );
    assert_eq!(
        walk(f.fd.as_fd(), Path::new("/no/such"), None).unwrap_err(),
        Errno::ENOENT
    );
    assert!(!f.root.join("no").exists());
}

#[test]
fn symlink_loops_and_files_as_directories_are_errors() {
    let f = fixture();
    symlink("b", f.root.join("a")).unwrap();
    symlink("a", f.root.join("b")).unwrap();
    assert_eq!(
        ensure(f.fd.as_fd(), Path::new("/a/x"), Kind::Dir).unwrap_err(),
        Errno::ELOOP
    );
    fs::write(f.root.join("etc/file"), "").unwrap();
    assert_eq!(
        ensure(f.fd.as_fd(), Path::new("/etc/file/x"), Kind::Dir).unwrap_err(),
        Errno::ENOTDIR
    );
}

#[test]
fn files_are_read_inside_the_root() {
    let f = fixture();
    symlink(climbing(&f.host.join("canary")), f.root.join("etc/passwd")).unwrap();
    let err = read_to_string(&f.root, Path::new("/etc/passwd")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    nix::unistd::mkfifo(&f.root.join("etc/shadow"), Mode::from_bits_truncate(0o600)).unwrap();
    let err = read_to_string(&f.root, Path::new("/etc/shadow")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    fs::write(f.root.join("etc/group"), "root:x:0:\n").unwrap();
    assert_eq!(
        read_to_string(&f.root, Path::new("/etc/group")).unwrap(),
        "root:x:0:\n"
    );
}
