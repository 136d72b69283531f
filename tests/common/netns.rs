//! A network namespace joined to the host by a veth pair, for an agent that should look
//! like another host: its own addresses, reaching the server over the veth. Built with
//! `ip` (iproute2); the namespace (and with it both veth ends) is deleted when the
//! [`NetNs`] drops, also when the test fails.
//!
//! Addresses: a /30 of 10.254.0.0/16 picked from the test process id and a counter, the
//! host end `.1`, the namespace end `.2`.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct NetNs {
    pub name: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn create() -> NetNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let slot = (std::process::id().wrapping_mul(7).wrapping_add(n)) % 16_384;
        let base = u32::from(Ipv4Addr::new(10, 254, 0, 0)) + slot * 4;
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let ns = NetNs {
            name: format!("skiff-t{tag}"),
            host_ip: Ipv4Addr::from(base + 1),
            ns_ip: Ipv4Addr::from(base + 2),
        };
        let host_if = format!("skh{tag}");
        let ns_if = format!("skn{tag}");
        ip(&["netns", "add", &ns.name]);
        // From here on, Drop cleans up whatever was made.
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &host_if,
        ]);
        ip(&["link", "set", &host_if, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend(args);
            ip(&all);
        };
        exec(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns_if]);
        exec(&["link", "set", &ns_if, "up"]);
        exec(&["link", "set", "lo", "up"]);
        ns
    }

    /// `cmd` run inside the namespace.
    pub fn wrap(&self, cmd: &Command) -> Command {
        wrap_in(&self.name, cmd)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace removes the veth pair too.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A server bound beyond loopback, its certificate naming the host end of each namespace's
/// veth, so agents inside them can join.
pub fn server_reachable_from(namespaces: &[&NetNs]) -> super::TestServer {
    server_reachable_from_with(namespaces, &[])
}

/// [`server_reachable_from`] with extra `skiff server` flags.
pub fn server_reachable_from_with(namespaces: &[&NetNs], extra: &[&str]) -> super::TestServer {
    let ips: Vec<String> = namespaces.iter().map(|n| n.host_ip.to_string()).collect();
    let mut args = vec!["--bind-address", "0.0.0.0"];
    for ip in &ips {
        args.extend(["--tls-san", ip.as_str()]);
    }
    args.extend(extra);
    super::TestServer::start_with(&args)
}

/// `cmd` run inside the named network namespace (`/run/netns/NAME`).
pub fn wrap_in(name: &str, cmd: &Command) -> Command {
    // Not `ip netns exec`: that also mounts a fresh sysfs over /sys, hiding the cgroup
    // hierarchies, where another host would have its own. Only the network changes.
    use std::os::unix::process::CommandExt;
    let ns = std::fs::File::open(format!("/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("opening netns {name}: {e}"));
    let mut wrapped = super::process::copy_command(cmd);
    // SAFETY: setns is async-signal-safe; the descriptor lives in the closure.
    unsafe {
        wrapped.pre_exec(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    wrapped
}
