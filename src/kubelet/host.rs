//! Reading the host for the node status: facts that do not change ([`host_info`]: kernel,
//! OS image from `/etc/os-release`, architecture, machine and boot IDs, CPUs, memory), the
//! measurements taken at every status update ([`measure`]: `/proc/meminfo` MemAvailable,
//! `statvfs` of the agent dir, the number of processes against `kernel/pid_max`), and the
//! address of the default-route interface ([`default_route_ip`]).
//!
//! Invariant: every reader tolerates a missing file with an empty or zero value (a
//! container or an unusual kernel must not stop the node from registering); the parsers
//! are pure and tested on fixture text.

use super::node_status::{HostInfo, Measurements};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `/proc/meminfo` field in bytes.
pub fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// `PRETTY_NAME` of an os-release file.
pub fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".to_owned())
}

/// Go's GOARCH for the machine name `uname -m` reports.
pub fn go_arch(machine: &str) -> String {
    match machine {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv6l" | "arm" => "arm",
        "i686" | "i386" => "386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_owned()
}

/// The facts of this host.
pub fn host_info() -> HostInfo {
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    HostInfo {
        hostname: field(|u| u.nodename()).to_lowercase(),
        kernel_version: field(|u| u.release()),
        os_image: os_image(&os_release),
        architecture: go_arch(&field(|u| u.machine())),
        machine_id: read("/etc/machine-id").trim().to_owned(),
        system_uuid: read("/sys/class/dmi/id/product_uuid").trim().to_owned(),
        boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_owned(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
        memory_bytes: meminfo_field(&read("/proc/meminfo"), "MemTotal").unwrap_or(0),
    }
}

/// (capacity, available) bytes of the filesystem holding `dir`; zeros if unreadable.
pub fn fs_size(dir: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            // The field types differ between libc targets (u32 on some 32-bit ones).
            #[allow(clippy::unnecessary_cast)]
            let (f, blocks, avail) = (
                s.fragment_size() as u64,
                s.blocks() as u64,
                s.blocks_available() as u64,
            );
            (blocks * f, avail * f)
        }
        Err(_) => (0, 0),
    }
}

/// Takes the measurements of one status update; `fs_dir` is the agent dir.
pub fn measure(fs_dir: &Path) -> Measurements {
    let (fs_capacity, fs_available) = fs_size(fs_dir);
    let pids = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        })
        .unwrap_or(0);
    let meminfo = read("/proc/meminfo");
    Measurements {
        memory_capacity: meminfo_field(&meminfo, "MemTotal").unwrap_or(0),
        memory_available: meminfo_field(&meminfo, "MemAvailable").unwrap_or(u64::MAX),
        fs_capacity,
        fs_available,
        pids,
        pid_max: read("/proc/sys/kernel/pid_max").trim().parse().unwrap_or(0),
    }
}

/// The interface of the IPv4 default route in a `/proc/net/route` table.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() > 2 && cols[1] == "00000000").then(|| cols[0].to_owned())
    })
}

/// The first IPv4 address of the default-route interface, else the first global IPv4
/// address, else loopback.
pub fn default_route_ip() -> IpAddr {
    let iface = default_route_interface(&read("/proc/net/route"));
    let addrs: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .map(|a| {
            a.filter_map(|a| {
                let ip = a.address?.as_sockaddr_in()?.ip();
                Some((a.interface_name, ip))
            })
            .collect()
        })
        .unwrap_or_default();
    let pick = addrs
        .iter()
        .find(|(i, _)| Some(i) == iface.as_ref())
        .or_else(|| addrs.iter().find(|(_, ip)| !ip.is_loopback()))
        .map(|(_, ip)| *ip)
        .unwrap_or(Ipv4Addr::LOCALHOST);
    IpAddr::V4(pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_are_read_in_bytes() {
        let t = "MemTotal:       16318412 kB\nMemFree:  100 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(meminfo_field(t, "MemTotal"), Some(16318412 * 1024));
        assert_eq!(meminfo_field(t, "MemAvailable"), Some(8_000_000 * 1024));
        assert_eq!(meminfo_field(t, "Mem"), None);
    }

    #[test]
    fn os_image_is_the_pretty_name() {
        assert_eq!(
            os_image("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n"),
            "Debian GNU/Linux 13 (trixie)"
        );
        assert_eq!(os_image(""), "Linux");
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn the_default_route_interface_is_found() {
        let t = "Iface\tDestination\tGateway\tFlags\nlo\t0000007F\t00000000\t0001\neth0\t00000000\t0100000A\t0003\n";
        assert_eq!(default_route_interface(t).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn this_host_is_measured() {
        let m = measure(Path::new("/"));
        assert!(m.fs_capacity > 0 && m.pids > 0 && m.pid_max > 0);
        assert!(host_info().cpus >= 1);
    }
}
