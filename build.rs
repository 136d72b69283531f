//! Build script: tells the code whether it is built by root. Root-only tests (namespaces,
//! mounts, cgroups, device nodes) carry
//! `#[cfg_attr(skiff_unprivileged, ignore = "needs root: ...")]`, so a build by another user
//! reports them as ignored instead of failing or silently passing; a root build runs them.

use std::os::unix::fs::MetadataExt;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skiff_unprivileged)");
    println!("cargo::rerun-if-changed=build.rs");
    // A different user building the same target dir must re-run this check.
    println!("cargo::rerun-if-env-changed=USER");
    println!("cargo::rerun-if-env-changed=SUDO_UID");
    // /proc/self is owned by the effective uid of the process looking at it.
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if euid != 0 {
        println!("cargo::rustc-cfg=skiff_unprivileged");
    }
}
