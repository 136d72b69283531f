//! Gives back the code pages the shim only needed to start.
//!
//! The shim is the whole skiff binary: setting up a container touches a few MB of its code
//! (plus the kernel maps up to 64 KiB around each page it faults in), which then stays in
//! the shim's resident set for the container's lifetime although the serve loop uses a
//! small part of it. Those pages are clean copies of the page cache, shared with every
//! other skiff process, so unmapping them frees nothing global but keeps each shim's RSS to
//! what it uses; a page needed again is faulted back in from the page cache.
//!
//! Invariant: only mappings without a single private (copy-on-write) page are dropped, so
//! nothing the process wrote can be lost — `MADV_DONTNEED` on a private file mapping would
//! otherwise revert written pages to the file's contents.

use std::fs;

/// One file-backed, non-writable mapping of the process.
struct Mapping {
    start: usize,
    end: usize,
    anonymous_kb: u64,
}

/// Drops the resident clean file pages of read-only and executable mappings. Must run
/// while the process is single-threaded (nothing may map or unmap concurrently).
pub(super) fn drop_clean_file_pages() {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for m in parse(&smaps) {
        if m.anonymous_kb != 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process with no private pages (see
        // the module invariant); the process is single-threaded, so it cannot change
        // between reading smaps and this call.
        unsafe {
            nix::libc::madvise(
                m.start as *mut nix::libc::c_void,
                m.end - m.start,
                nix::libc::MADV_DONTNEED,
            );
        }
    }
}

/// The file-backed mappings that are not writable, with their private page count.
fn parse(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Anonymous:") {
            if let Some(m) = current.as_mut() {
                m.anonymous_kb = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(1);
            }
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            // A "Key: value" line, not a mapping header.
            continue;
        };
        if let Some(m) = current.take() {
            out.push(m);
        }
        let path = fields.nth(3).unwrap_or("");
        let file_backed = path.starts_with('/');
        let read_only = perms.as_bytes().get(1) == Some(&b'-');
        if file_backed && read_only && perms.ends_with('p') {
            // Unknown until the mapping's own `Anonymous:` line says otherwise.
            current = Some(Mapping {
                start,
                end,
                anonymous_kb: u64::MAX,
            });
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:00 123 /usr/bin/skiff
Size:               1024 kB
Anonymous:             0 kB
55d0a0100000-55d0a0300000 r-xp 00100000 fe:00 123 /usr/bin/skiff
Size:               2048 kB
Anonymous:             0 kB
55d0a0300000-55d0a0340000 r--p 00300000 fe:00 123 /usr/bin/skiff
Size:                256 kB
Anonymous:           256 kB
55d0a0340000-55d0a0350000 rw-p 00340000 fe:00 123 /usr/bin/skiff
Anonymous:            64 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Anonymous:            12 kB
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_are_candidates() {
        let maps = parse(SMAPS);
        let clean: Vec<_> = maps
            .iter()
            .filter(|m| m.anonymous_kb == 0)
            .map(|m| (m.start, m.end))
            .collect();
        // Text and rodata qualify; relocated RELRO (private pages), writable data, the
        // stack and the vdso do not.
        assert_eq!(
            clean,
            vec![
                (0x55d0a0000000, 0x55d0a0100000),
                (0x55d0a0100000, 0x55d0a0300000)
            ]
        );
    }
}
