use super::*;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};

const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
36 30 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
        .build()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn hybrid_mountinfo_yields_v1_controllers_and_the_unified_tree() {
    let h = Hierarchies::from_mountinfo(HYBRID);
    let roots: Vec<_> =
        h.v1.iter()
            .map(|(p, c)| (p.to_str().unwrap(), c.join(",")))
            .collect();
    assert_eq!(
        roots,
        [
            ("/sys/fs/cgroup/cpu", "cpu".to_string()),
            ("/sys/fs/cgroup/cpuacct", "cpuacct".into()),
            ("/sys/fs/cgroup/memory", "memory".into()),
            ("/sys/fs/cgroup/pids", "pids".into())
        ]
    );
    assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
}

#[test]
fn a_node_without_the_limit_controllers_is_told_which_are_missing() {
    assert!(Hierarchies::from_mountinfo(HYBRID)
        .missing_controllers()
        .is_empty());
    // `ip netns exec` mounts a fresh sysfs over /sys: no cgroup mounts are left.
    let none = Hierarchies::from_mountinfo("25 1 0:22 / /sys rw - sysfs sysfs rw\n");
    assert_eq!(none.missing_controllers(), ["cpu", "memory", "pids"]);
    // v2 only: whatever its root's cgroup.controllers lists.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("cgroup.controllers"),
        "cpuset cpu io memory\n",
    )
    .unwrap();
    let v2 = Hierarchies {
        v1: vec![],
        v2: Some(tmp.path().to_path_buf()),
    };
    assert_eq!(v2.missing_controllers(), ["pids"]);
}

#[test]
fn comounted_v1_controllers_share_one_directory() {
    let h = Hierarchies::from_mountinfo(
        "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
    );
    assert_eq!(h.v1.len(), 1);
    assert_eq!(h.v1[0].1, ["cpu", "cpuacct"]);
}

#[test]
fn v1_limits_are_written_to_each_controller_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let h = Hierarchies {
        v1: vec![
            (t.join("cpu"), vec!["cpu".into()]),
            (t.join("memory"), vec!["memory".into()]),
            (t.join("pids"), vec!["pids".into()]),
        ],
        v2: None,
    };
    let set = CgroupSet::plan(&h, "/skiff/c1");
    set.create(Some(&resources())).unwrap();
    assert_eq!(
        read(&t.join("memory/skiff/c1/memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(&t.join("cpu/skiff/c1/cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&t.join("cpu/skiff/c1/cpu.cfs_period_us")), "100000");
    assert_eq!(read(&t.join("cpu/skiff/c1/cpu.shares")), "512");
    assert_eq!(read(&t.join("pids/skiff/c1/pids.max")), "20");
    assert!(!t.join("cpu/skiff/c1/memory.limit_in_bytes").exists());
    set.add_pid(42).unwrap();
    assert_eq!(read(&t.join("pids/skiff/c1/cgroup.procs")), "42");
    std::fs::write(
        t.join("memory/skiff/c1/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    )
    .unwrap();
    assert_eq!(set.oom_kills(), 2);
}

#[test]
fn v2_limits_use_unified_files_and_delegate_controllers_down_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("unified");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma\n",
    )
    .unwrap();
    let h = Hierarchies {
        v1: vec![],
        v2: Some(root.clone()),
    };
    let set = CgroupSet::plan(&h, "/skiff/c1");
    assert_eq!(set.dirs[0].controllers, ["cpu", "memory", "pids"]);
    set.create(Some(&resources())).unwrap();
    let leaf = root.join("skiff/c1");
    assert_eq!(read(&leaf.join("memory.max")), "67108864");
    assert_eq!(read(&leaf.join("cpu.max")), "50000 100000");
    assert_eq!(
        read(&leaf.join("cpu.weight")),
        shares_to_weight(512).to_string()
    );
    assert_eq!(read(&leaf.join("pids.max")), "20");
    assert_eq!(
        read(&root.join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        read(&root.join("skiff/cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    std::fs::write(
        leaf.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    )
    .unwrap();
    assert_eq!(set.oom_kills(), 1);
}

#[test]
fn v2_tree_without_controllers_is_joined_but_gets_no_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("unified");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("cgroup.controllers"), "").unwrap();
    let h = Hierarchies {
        v1: vec![(tmp.path().join("memory"), vec!["memory".into()])],
        v2: Some(root.clone()),
    };
    let set = CgroupSet::plan(&h, "skiff/c1");
    set.create(Some(&resources())).unwrap();
    assert!(root.join("skiff/c1").is_dir());
    assert!(!root.join("skiff/c1/memory.max").exists());
    assert!(!root.join("cgroup.subtree_control").exists());
}

#[test]
fn shares_map_onto_the_v2_weight_range() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1024), 39);
}

#[test]
fn remove_deletes_the_container_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Hierarchies {
        v1: vec![(tmp.path().join("pids"), vec!["pids".into()])],
        v2: None,
    };
    let set = CgroupSet::plan(&h, "/skiff/c1");
    set.create(None).unwrap();
    set.remove().unwrap();
    assert!(!tmp.path().join("pids/skiff/c1").exists());
    set.remove().unwrap();
}
