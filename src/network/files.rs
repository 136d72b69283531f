//! The pod's `/etc/hosts` and `/etc/resolv.conf`, rendered exactly as the kubelet and
//! containerd write them (kubelet `managedHostsFileContent`/`nodeHostsFileContent`,
//! containerd's resolv.conf layout: search, nameservers, options). Pure functions over
//! strings; the caller reads the host's files and writes the results.

use super::{DnsConfig, SandboxRequest};
use std::fmt::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// `/etc/hosts` of a pod with its own network namespace.
pub fn pod_hosts(req: &SandboxRequest, pod_ip: IpAddr) -> String {
    let mut out = String::from(MANAGED_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    match &req.fqdn {
        Some(fqdn) => {
            let _ = writeln!(out, "{pod_ip}\t{fqdn}\t{}", req.hostname);
        }
        None => {
            let _ = writeln!(out, "{pod_ip}\t{}", req.hostname);
        }
    }
    out.push_str(&host_aliases(&req.host_aliases));
    out
}

/// `/etc/hosts` of a host-network pod: the host's file under the kubelet's header.
pub fn host_network_hosts(host_hosts: &str, aliases: &[(IpAddr, Vec<String>)]) -> String {
    let mut out = String::from(MANAGED_HEADER_HOST_NETWORK);
    out.push_str(host_hosts);
    out.push_str(&host_aliases(aliases));
    out
}

fn host_aliases(aliases: &[(IpAddr, Vec<String>)]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for (ip, names) in aliases {
        let _ = writeln!(out, "{ip}\t{}", names.join("\t"));
    }
    out
}

/// The parts of a resolv.conf the kubelet reads (`parseResolvConf`): nameservers
/// accumulate, the last `search` and `options` lines win.
pub fn parse_resolv_conf(content: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in content.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["nameserver", ns, ..] => {
                if let Ok(ip) = ns.parse() {
                    dns.nameservers.push(ip);
                }
            }
            ["search", rest @ ..] => {
                dns.searches = rest
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            ["options", rest @ ..] => {
                dns.options = append_options(std::mem::take(&mut dns.options), rest);
            }
            _ => {}
        }
    }
    dns
}

/// The kubelet's `appendOptions`: a later option replaces an earlier one with the same
/// name (`ndots:5` replaces `ndots:1`), order of first appearance kept.
fn append_options(mut options: Vec<String>, new: &[impl AsRef<str>]) -> Vec<String> {
    for opt in new {
        let opt = opt.as_ref();
        let name = opt.split(':').next().unwrap_or(opt);
        match options
            .iter_mut()
            .find(|o| o.split(':').next().unwrap_or(o) == name)
        {
            Some(existing) => *existing = opt.to_string(),
            None => options.push(opt.to_string()),
        }
    }
    options
}

/// The pod's effective resolver: the request's, or with no nameservers the host's
/// resolvers with the host's searches and options, the request's added after them.
pub fn effective_dns(req: &DnsConfig, host: &DnsConfig) -> DnsConfig {
    if !req.nameservers.is_empty() {
        return req.clone();
    }
    let mut searches = host.searches.clone();
    for s in &req.searches {
        if !searches.contains(s) {
            searches.push(s.clone());
        }
    }
    DnsConfig {
        nameservers: host.nameservers.clone(),
        searches,
        options: append_options(host.options.clone(), &req.options),
    }
}

/// containerd's resolv.conf layout.
pub fn render_resolv_conf(dns: &DnsConfig) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        let _ = writeln!(out, "search {}", dns.searches.join(" "));
    }
    for ns in &dns.nameservers {
        let _ = writeln!(out, "nameserver {ns}");
    }
    if !dns.options.is_empty() {
        let _ = writeln!(out, "options {}", dns.options.join(" "));
    }
    out
}

/// The host resolv.conf a node should hand to pods, k3s style: `/etc/resolv.conf`,
/// unless its nameservers are all loopback (systemd-resolved's stub, useless inside a
/// pod's namespace) and systemd-resolved's upstream file exists.
pub fn default_host_resolv_conf() -> PathBuf {
    pick_host_resolv_conf(
        Path::new("/etc/resolv.conf"),
        Path::new("/run/systemd/resolve/resolv.conf"),
    )
}

fn pick_host_resolv_conf(etc: &Path, resolved: &Path) -> PathBuf {
    let only_loopback = std::fs::read_to_string(etc)
        .map(|c| {
            let dns = parse_resolv_conf(&c);
            !dns.nameservers.is_empty() && dns.nameservers.iter().all(|ip| ip.is_loopback())
        })
        .unwrap_or(false);
    if only_loopback && resolved.exists() {
        resolved.to_path_buf()
    } else {
        etc.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> SandboxRequest {
        SandboxRequest {
            id: "uid-1".into(),
            namespace: "default".into(),
            name: "web".into(),
            hostname: "web".into(),
            ..Default::default()
        }
    }

    #[test]
    fn pod_hosts_matches_the_kubelets_file() {
        let got = pod_hosts(&req(), "10.42.0.7".parse().unwrap());
        assert_eq!(
            got,
            "# Kubernetes-managed hosts file.\n\
             127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\n\
             fe00::1\tip6-allnodes\n\
             fe00::2\tip6-allrouters\n\
             10.42.0.7\tweb\n"
        );
    }

    #[test]
    fn pod_hosts_with_fqdn_and_host_aliases() {
        let mut r = req();
        r.fqdn = Some("web.sub.default.svc.cluster.local".into());
        r.host_aliases = vec![
            (
                "123.45.67.89".parse().unwrap(),
                vec!["foo".into(), "bar".into()],
            ),
            ("::1".parse().unwrap(), vec!["six".into()]),
        ];
        let got = pod_hosts(&r, "10.42.0.7".parse().unwrap());
        assert!(
            got.ends_with(
                "fe00::2\tip6-allrouters\n\
                 10.42.0.7\tweb.sub.default.svc.cluster.local\tweb\n\
                 \n\
                 # Entries added by HostAliases.\n\
                 123.45.67.89\tfoo\tbar\n\
                 ::1\tsix\n"
            ),
            "{got}"
        );
    }

    #[test]
    fn host_network_hosts_wraps_the_hosts_file() {
        let got = host_network_hosts(
            "127.0.0.1 localhost\n",
            &[("1.2.3.4".parse().unwrap(), vec!["a".into()])],
        );
        assert_eq!(
            got,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\
             \n# Entries added by HostAliases.\n1.2.3.4\ta\n"
        );
        assert_eq!(
            host_network_hosts("x\n", &[]),
            "# Kubernetes-managed hosts file (host network).\nx\n"
        );
    }

    #[test]
    fn resolv_conf_parsing_follows_the_kubelet() {
        let dns = parse_resolv_conf(
            "# generated\nnameserver 1.1.1.1\nsearch old.example\nnameserver 8.8.8.8\n\
             search a.example. . b.example\noptions ndots:1 rotate\noptions ndots:3\n\
             nameserver\n",
        );
        assert_eq!(
            dns.nameservers,
            vec![
                "1.1.1.1".parse::<IpAddr>().unwrap(),
                "8.8.8.8".parse().unwrap()
            ]
        );
        assert_eq!(dns.searches, ["a.example", "b.example"]);
        assert_eq!(dns.options, ["ndots:3", "rotate"]);
    }

    #[test]
    fn empty_nameservers_take_the_hosts_resolvers_searches_and_options() {
        let host = parse_resolv_conf("nameserver 9.9.9.9\nsearch lan\noptions edns0\n");
        let req = DnsConfig {
            nameservers: vec![],
            searches: vec!["extra".into()],
            options: vec!["ndots:2".into()],
        };
        let eff = effective_dns(&req, &host);
        assert_eq!(
            render_resolv_conf(&eff),
            "search lan extra\nnameserver 9.9.9.9\noptions edns0 ndots:2\n"
        );
    }

    #[test]
    fn explicit_nameservers_are_used_as_given() {
        let host = parse_resolv_conf("nameserver 9.9.9.9\nsearch lan\n");
        let req = DnsConfig {
            nameservers: vec!["10.43.0.10".parse().unwrap()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            render_resolv_conf(&effective_dns(&req, &host)),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.43.0.10\n\
             options ndots:5\n"
        );
        assert_eq!(render_resolv_conf(&DnsConfig::default()), "");
    }

    #[test]
    fn a_stub_resolver_host_hands_pods_systemd_resolveds_upstream_file() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("resolv.conf");
        let resolved = dir.path().join("upstream.conf");
        std::fs::write(&etc, "nameserver 127.0.0.53\noptions edns0\n").unwrap();
        // No upstream file: nothing better to offer.
        assert_eq!(pick_host_resolv_conf(&etc, &resolved), etc);
        std::fs::write(&resolved, "nameserver 192.0.2.1\n").unwrap();
        assert_eq!(pick_host_resolv_conf(&etc, &resolved), resolved);
        std::fs::write(&etc, "nameserver 127.0.0.53\nnameserver 192.0.2.2\n").unwrap();
        assert_eq!(pick_host_resolv_conf(&etc, &resolved), etc);
    }
}
