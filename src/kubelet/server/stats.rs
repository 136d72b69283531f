//! `/stats/summary` and `/metrics/resource`: node and per-pod/container CPU and memory,
//! read from `/proc` and from each container's cgroups (v1, v2 or a hybrid of both, found
//! through `/proc/<pid>/cgroup`), in upstream's Summary API and resource-metrics shapes.
//!
//! Invariant: CPU rates (`usageNanoCores`) come from two cumulative samples at least
//! [`MIN_WINDOW`] apart, kept per container and for the node; a first request samples twice.

use super::pods;
use crate::runtime::containers::cgroups::Hierarchies;
use crate::runtime::containers::facade::Runtime;
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIN_WINDOW: Duration = Duration::from_millis(200);
/// USER_HZ: /proc/stat counts in 1/100 s on every Linux architecture we run on.
const NS_PER_TICK: u64 = 10_000_000;

/// Cumulative CPU and memory of one cgroup (or of the node).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cpu_ns: Option<u64>,
    pub working_set: Option<u64>,
    pub usage: Option<u64>,
    pub rss: Option<u64>,
    pub available: Option<u64>,
}

/// Parses `/proc/<pid>/cgroup` into controller → path (`""` for the v2 line).
pub fn parse_proc_cgroup(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            out.insert(String::new(), path.to_owned());
        }
        for c in ctrls.split(',').filter(|c| !c.is_empty()) {
            out.insert(c.to_owned(), path.to_owned());
        }
    }
    out
}

fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_u64(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// The usage of the cgroups process `pid` is in.
pub fn cgroup_usage(h: &Hierarchies, pid: i32) -> Usage {
    let Some(text) = read(Path::new(&format!("/proc/{pid}/cgroup"))) else {
        return Usage::default();
    };
    let paths = parse_proc_cgroup(&text);
    let v1_dir = |ctrl: &str| -> Option<PathBuf> {
        let (root, _) = h.v1.iter().find(|(_, cs)| cs.iter().any(|c| c == ctrl))?;
        Some(root.join(paths.get(ctrl)?.trim_start_matches('/')))
    };
    let v2_dir =
        h.v2.as_ref()
            .and_then(|root| Some(root.join(paths.get("")?.trim_start_matches('/'))));
    // CPU: cpuacct (v1) or cpu.stat (v2, present in every v2 cgroup).
    let cpu_ns = v1_dir("cpuacct")
        .and_then(|d| read_u64(&d.join("cpuacct.usage")))
        .or_else(|| {
            let stat = read(&v2_dir.as_ref()?.join("cpu.stat"))?;
            stat_value(&stat, "usage_usec").map(|us| us * 1000)
        });
    let mut u = Usage {
        cpu_ns,
        ..Usage::default()
    };
    if let Some(d) = v1_dir("memory") {
        let stat = read(&d.join("memory.stat")).unwrap_or_default();
        u.usage = read_u64(&d.join("memory.usage_in_bytes"));
        let inactive = stat_value(&stat, "total_inactive_file").unwrap_or(0);
        u.working_set = u.usage.map(|x| x.saturating_sub(inactive));
        u.rss = stat_value(&stat, "total_rss");
    } else if let Some(d) = &v2_dir {
        let stat = read(&d.join("memory.stat")).unwrap_or_default();
        u.usage = read_u64(&d.join("memory.current"));
        let inactive = stat_value(&stat, "inactive_file").unwrap_or(0);
        u.working_set = u.usage.map(|x| x.saturating_sub(inactive));
        u.rss = stat_value(&stat, "anon");
    }
    u
}

/// Whole-node usage from `/proc/stat` and `/proc/meminfo`.
pub fn node_usage(proc_stat: &str, meminfo: &str) -> Usage {
    let cpu_ns = proc_stat.lines().find(|l| l.starts_with("cpu ")).map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: everything but idle and iowait.
        let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
        busy * NS_PER_TICK
    });
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        })
    };
    let (total, free, avail) = (kib("MemTotal"), kib("MemFree"), kib("MemAvailable"));
    Usage {
        cpu_ns,
        working_set: total.zip(avail).map(|(t, a)| t.saturating_sub(a)),
        usage: total.zip(free).map(|(t, f)| t.saturating_sub(f)),
        rss: kib("AnonPages"),
        available: avail,
    }
}

/// Per-interface (rx, rxErrors, tx, txErrors) from `/proc/net/dev`, loopback left out.
pub fn net_dev(text: &str) -> Vec<(String, [u64; 4])> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((
                name.to_owned(),
                [*f.first()?, *f.get(2)?, *f.get(8)?, *f.get(10)?],
            ))
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    cpu_ns: u64,
    at: Instant,
    rate: Option<u64>,
}

/// Keeps the previous samples that rates are computed from.
pub struct StatsCollector {
    hierarchies: Hierarchies,
    samples: Mutex<HashMap<String, Sample>>,
    boot: DateTime<Utc>,
}

/// One pod container's numbers.
struct ContainerStats {
    name: String,
    start: Option<String>,
    usage: Usage,
    rate: Option<u64>,
}

impl Default for StatsCollector {
    fn default() -> Self {
        let uptime = read(Path::new("/proc/uptime"))
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        StatsCollector {
            hierarchies: Hierarchies::detect(),
            samples: Mutex::new(HashMap::new()),
            boot: Utc::now() - chrono::Duration::milliseconds((uptime * 1000.0) as i64),
        }
    }
}

impl StatsCollector {
    /// Records a cumulative sample and returns the rate in nanocores.
    fn rate(&self, key: &str, cpu_ns: Option<u64>, now: Instant) -> Option<u64> {
        let cpu_ns = cpu_ns?;
        let mut s = self.samples.lock();
        match s.get(key).copied() {
            Some(prev) if now.duration_since(prev.at) < MIN_WINDOW => prev.rate,
            Some(prev) => {
                let dt = now.duration_since(prev.at).as_nanos();
                let rate =
                    (cpu_ns.saturating_sub(prev.cpu_ns) as u128 * 1_000_000_000 / dt.max(1)) as u64;
                s.insert(
                    key.to_owned(),
                    Sample {
                        cpu_ns,
                        at: now,
                        rate: Some(rate),
                    },
                );
                Some(rate)
            }
            None => {
                s.insert(
                    key.to_owned(),
                    Sample {
                        cpu_ns,
                        at: now,
                        rate: None,
                    },
                );
                None
            }
        }
    }

    async fn gather(
        &self,
        rt: &Runtime,
    ) -> (
        Usage,
        Option<u64>,
        BTreeMap<(String, String, String), Vec<ContainerStats>>,
    ) {
        let now = Instant::now();
        let node = node_usage(
            &read(Path::new("/proc/stat")).unwrap_or_default(),
            &read(Path::new("/proc/meminfo")).unwrap_or_default(),
        );
        let node_rate = self.rate("", node.cpu_ns, now);
        let mut pods: BTreeMap<(String, String, String), Vec<ContainerStats>> = BTreeMap::new();
        for inst in pods::all_instances(rt).await.unwrap_or_default() {
            if !inst.running() || inst.state.pid <= 0 {
                continue;
            }
            let usage = cgroup_usage(&self.hierarchies, inst.state.pid);
            let rate = self.rate(&inst.state.id, usage.cpu_ns, now);
            pods.entry((
                inst.namespace.clone(),
                inst.pod.clone(),
                inst.pod_uid.clone(),
            ))
            .or_default()
            .push(ContainerStats {
                name: inst.container.clone(),
                start: inst.state.started_at.clone(),
                usage,
                rate,
            });
        }
        (node, node_rate, pods)
    }

    /// Samples twice when there is no earlier sample, so the first answer has rates.
    async fn gather_with_rates(
        &self,
        rt: &Runtime,
    ) -> (
        Usage,
        Option<u64>,
        BTreeMap<(String, String, String), Vec<ContainerStats>>,
    ) {
        let first = self.gather(rt).await;
        if first.1.is_some()
            && first
                .2
                .values()
                .flatten()
                .all(|c| c.rate.is_some() || c.usage.cpu_ns.is_none())
        {
            return first;
        }
        tokio::time::sleep(MIN_WINDOW).await;
        self.gather(rt).await
    }

    /// The Summary API (`stats/v1alpha1`).
    pub async fn summary(&self, node_name: &str, rt: &Runtime, fs_root: &Path) -> Value {
        let (node, node_rate, pods) = self.gather_with_rates(rt).await;
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let cpu = |u: &Usage, rate: Option<u64>| {
            let mut c = json!({"time": now});
            if let Some(r) = rate {
                c["usageNanoCores"] = json!(r);
            }
            if let Some(n) = u.cpu_ns {
                c["usageCoreNanoSeconds"] = json!(n);
            }
            c
        };
        let mem = |u: &Usage| {
            let mut m = json!({"time": now});
            for (k, v) in [
                ("availableBytes", u.available),
                ("usageBytes", u.usage),
                ("workingSetBytes", u.working_set),
                ("rssBytes", u.rss),
            ] {
                if let Some(v) = v {
                    m[k] = json!(v);
                }
            }
            m
        };
        let mut node_json = json!({
            "nodeName": node_name,
            "startTime": self.boot.to_rfc3339_opts(SecondsFormat::Secs, true),
            "cpu": cpu(&node, node_rate),
            "memory": mem(&node),
        });
        if let Ok(st) = nix::sys::statvfs::statvfs(fs_root) {
            let frsize = st.fragment_size();
            let cap = st.blocks() * frsize;
            let avail = st.blocks_available() * frsize;
            let free = st.blocks_free() * frsize;
            node_json["fs"] = json!({
                "time": now, "availableBytes": avail, "capacityBytes": cap,
                "usedBytes": cap.saturating_sub(free), "inodesFree": st.files_free(),
                "inodes": st.files(), "inodesUsed": st.files().saturating_sub(st.files_free()),
            });
        }
        let ifaces = net_dev(&read(Path::new("/proc/net/dev")).unwrap_or_default());
        if let Some((first, v)) = ifaces.first() {
            node_json["network"] = json!({
                "time": now, "name": first, "rxBytes": v[0], "rxErrors": v[1], "txBytes": v[2], "txErrors": v[3],
                "interfaces": ifaces.iter().map(|(n, v)| json!({"name": n, "rxBytes": v[0],
                    "rxErrors": v[1], "txBytes": v[2], "txErrors": v[3]})).collect::<Vec<_>>(),
            });
        }
        let pods: Vec<Value> = pods
            .iter()
            .map(|((ns, pod, uid), cs)| {
                let sum = |f: fn(&Usage) -> Option<u64>| -> Option<u64> {
                    cs.iter().map(|c| f(&c.usage)).sum::<Option<u64>>()
                };
                let pod_usage = Usage {
                    cpu_ns: sum(|u| u.cpu_ns),
                    working_set: sum(|u| u.working_set),
                    usage: sum(|u| u.usage),
                    rss: sum(|u| u.rss),
                    available: None,
                };
                let pod_rate = cs.iter().map(|c| c.rate).sum::<Option<u64>>();
                let start = cs.iter().filter_map(|c| c.start.clone()).min();
                json!({
                    "podRef": {"name": pod, "namespace": ns, "uid": uid},
                    "startTime": start,
                    "containers": cs.iter().map(|c| json!({
                        "name": c.name, "startTime": c.start,
                        "cpu": cpu(&c.usage, c.rate), "memory": mem(&c.usage),
                    })).collect::<Vec<_>>(),
                    "cpu": cpu(&pod_usage, pod_rate),
                    "memory": mem(&pod_usage),
                })
            })
            .collect();
        json!({"node": node_json, "pods": pods})
    }

    /// `/metrics/resource` in the Prometheus text format, as upstream's resource collector.
    pub async fn resource_metrics(&self, rt: &Runtime) -> String {
        let (node, _, pods) = self.gather(rt).await;
        let ts = Utc::now().timestamp_millis();
        let mut out = String::new();
        let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, f64)>| {
            out.push_str(&format!(
                "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}\n"
            ));
            for (labels, v) in rows {
                out.push_str(&format!("{name}{labels} {v} {ts}\n"));
            }
        };
        let secs = |ns: u64| ns as f64 / 1e9;
        let clabels = |ns: &str, pod: &str, c: &str| {
            format!("{{container=\"{c}\",namespace=\"{ns}\",pod=\"{pod}\"}}")
        };
        let plabels = |ns: &str, pod: &str| format!("{{namespace=\"{ns}\",pod=\"{pod}\"}}");
        let mut c_cpu = Vec::new();
        let mut c_mem = Vec::new();
        let mut c_start = Vec::new();
        let mut p_cpu = Vec::new();
        let mut p_mem = Vec::new();
        for ((ns, pod, _), cs) in &pods {
            for c in cs {
                if let Some(n) = c.usage.cpu_ns {
                    c_cpu.push((clabels(ns, pod, &c.name), secs(n)));
                }
                if let Some(m) = c.usage.working_set {
                    c_mem.push((clabels(ns, pod, &c.name), m as f64));
                }
                if let Some(t) = c
                    .start
                    .as_deref()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                {
                    c_start.push((clabels(ns, pod, &c.name), t.timestamp() as f64));
                }
            }
            if let Some(n) = cs.iter().map(|c| c.usage.cpu_ns).sum::<Option<u64>>() {
                p_cpu.push((plabels(ns, pod), secs(n)));
            }
            if let Some(m) = cs.iter().map(|c| c.usage.working_set).sum::<Option<u64>>() {
                p_mem.push((plabels(ns, pod), m as f64));
            }
        }
        family(
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the container in core-seconds",
            "counter",
            c_cpu,
        );
        family(
            "container_memory_working_set_bytes",
            "Current working set of the container in bytes",
            "gauge",
            c_mem,
        );
        family(
            "container_start_time_seconds",
            "Start time of the container since unix epoch in seconds",
            "gauge",
            c_start,
        );
        family(
            "node_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the node in core-seconds",
            "counter",
            node.cpu_ns
                .map(|n| (String::new(), secs(n)))
                .into_iter()
                .collect(),
        );
        family(
            "node_memory_working_set_bytes",
            "Current working set of the node in bytes",
            "gauge",
            node.working_set
                .map(|m| (String::new(), m as f64))
                .into_iter()
                .collect(),
        );
        family(
            "pod_cpu_usage_seconds_total",
            "Cumulative cpu time consumed by the pod in core-seconds",
            "counter",
            p_cpu,
        );
        family(
            "pod_memory_working_set_bytes",
            "Current working set of the pod in bytes",
            "gauge",
            p_mem,
        );
        out.push_str("# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_maps_controllers_v1_and_v2() {
        let m = parse_proc_cgroup("4:memory:/skiff/c1\n3:cpu,cpuacct:/skiff/c1\n0::/k/c1\n");
        assert_eq!(m["memory"], "/skiff/c1");
        assert_eq!(m["cpuacct"], "/skiff/c1");
        assert_eq!(m[""], "/k/c1");
    }

    #[test]
    fn node_usage_reads_proc_stat_and_meminfo() {
        let u = node_usage(
            "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3\n",
            "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nAnonPages:    100 kB\n",
        );
        assert_eq!(u.cpu_ns, Some((100 + 5 + 50 + 3 + 2 + 1) * NS_PER_TICK));
        assert_eq!(u.working_set, Some(400 * 1024));
        assert_eq!(u.usage, Some(800 * 1024));
        assert_eq!(u.available, Some(600 * 1024));
        assert_eq!(u.rss, Some(100 * 1024));
    }

    #[test]
    fn net_dev_skips_loopback() {
        let t = "Inter-|   Receive\n face |bytes\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n  eth0: 100 2 3 0 0 0 0 0 200 4 5 0 0 0 0 0\n";
        assert_eq!(net_dev(t), vec![("eth0".to_owned(), [100, 3, 200, 5])]);
    }

    #[test]
    fn rates_need_two_samples_apart() {
        let c = StatsCollector::default();
        let t0 = Instant::now();
        assert_eq!(c.rate("x", Some(1_000), t0), None);
        assert_eq!(
            c.rate("x", Some(2_000), t0 + Duration::from_millis(10)),
            None
        );
        assert_eq!(
            c.rate("x", Some(1_000 + 500_000_000), t0 + Duration::from_secs(1)),
            Some(500_000_000)
        );
    }
}
