//! Tests of the node status rules (pure inputs, fixed clock).

use super::*;

fn host() -> HostInfo {
    HostInfo {
        hostname: "h".into(),
        architecture: "amd64".into(),
        cpus: 4,
        memory_bytes: 8 << 30,
        ..HostInfo::default()
    }
}

fn settings() -> NodeSettings {
    NodeSettings {
        name: "n1".into(),
        internal_ip: Some("10.0.0.5".parse().unwrap()),
        labels: BTreeMap::from([("tier".into(), "edge".into())]),
        taints: vec![parse_taint("dedicated=edge:NoSchedule").unwrap()],
        reserved: Reserved::parse("cpu=500m,memory=1Gi").unwrap(),
        kubelet_port: 10250,
        max_pods: MAX_PODS,
        eviction_hard: EvictionHard::default(),
        eviction_soft: Default::default(),
    }
}

fn healthy() -> Measurements {
    Measurements {
        memory_capacity: 8 << 30,
        memory_available: 4 << 30,
        fs_capacity: 100 << 30,
        fs_available: 50 << 30,
        pids: 300,
        pid_max: 4_194_304,
    }
}

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

#[test]
fn allocatable_is_capacity_less_reservations_and_eviction_thresholds() {
    let (cap, alloc) = resources(
        &host(),
        &healthy(),
        settings().reserved,
        &EvictionHard::default(),
    );
    assert_eq!(cap["cpu"].0, "4");
    assert_eq!(cap["memory"].0, "8388608Ki");
    assert_eq!(cap["pods"].0, "110");
    assert_eq!(cap["ephemeral-storage"].0, "104857600Ki");
    assert_eq!(alloc["cpu"].0, "3500m");
    // 8Gi - 1Gi reserved - 100Mi eviction threshold.
    assert_eq!(alloc["memory"].0, format!("{}Ki", (7 << 20) - 100 * 1024));
    // 90% of the filesystem, in bytes as upstream prints it.
    assert_eq!(alloc["ephemeral-storage"].0, (90u64 << 30).to_string());
    assert_eq!(alloc["pods"].0, "110");
}

#[test]
fn reservations_parse_like_kubelet_flags() {
    assert_eq!(Reserved::parse("").unwrap(), Reserved::default());
    let r = Reserved::parse("cpu=1,memory=512M,ephemeral-storage=1Gi").unwrap();
    assert_eq!(r.cpu_millis, 1000);
    assert_eq!(r.memory, 512_000_000);
    assert_eq!(r.ephemeral_storage, 1 << 30);
    assert!(Reserved::parse("gpu=1").is_err());
    assert!(Reserved::parse("cpu").is_err());
}

#[test]
fn labels_and_taints_parse_and_register() {
    assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
    assert!(parse_label("=b").is_err());
    let t = parse_taint("k:NoExecute").unwrap();
    assert_eq!(
        (t.key.as_str(), t.value, t.effect.as_str()),
        ("k", None, "NoExecute")
    );
    assert!(parse_taint("k=v:Sometimes").is_err());
    let node = initial_node(&settings(), &host());
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["beta.kubernetes.io/os"], "linux");
    assert_eq!(labels["tier"], "edge");
    assert_eq!(node.spec.unwrap().taints.unwrap()[0].key, "dedicated");
}

#[test]
fn pressure_follows_the_hard_eviction_thresholds() {
    assert_eq!(
        pressure(&healthy(), &EvictionHard::default()),
        Pressure::default()
    );
    let low_memory = Measurements {
        memory_available: 99 << 20,
        ..healthy()
    };
    assert!(pressure(&low_memory, &EvictionHard::default()).memory);
    let full_disk = Measurements {
        fs_available: 9 << 30,
        ..healthy()
    };
    assert!(pressure(&full_disk, &EvictionHard::default()).disk);
    let pids = Measurements {
        pids: 4_100_000,
        ..healthy()
    };
    assert!(pressure(&pids, &EvictionHard::default()).pid);
}

#[test]
fn eviction_hard_takes_amounts_and_shares_and_refuses_what_it_cannot_measure() {
    let e = EvictionHard::parse("memory.available<1Gi, nodefs.available<99.5%").unwrap();
    assert_eq!(e.memory_available, Threshold::Bytes(1 << 30));
    assert_eq!(e.nodefs_available, Threshold::Basis(9950));
    // 50% of the disk free is under a 99.5% threshold; 4 of 8 GiB free is over 1 GiB.
    let p = pressure(&healthy(), &e);
    assert!(p.disk && !p.memory);
    let pct = EvictionHard::parse("memory.available<60%").unwrap();
    assert!(pressure(&healthy(), &pct).memory, "4 of 8 GiB is under 60%");
    assert_eq!(
        EvictionHard::parse("nodefs.available<5Gi")
            .unwrap()
            .memory_available,
        EvictionHard::default().memory_available,
        "a signal left out keeps its default"
    );
    for bad in [
        "imagefs.available<10%",
        "memory.available>1Gi",
        "nodefs.available<120%",
        "memory.available<lots",
    ] {
        assert!(
            matches!(
                EvictionHard::parse(bad),
                Err(NodeConfigError::EvictionHard(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn conditions_keep_transition_times_until_the_status_changes() {
    let first = conditions(&[], Pressure::default(), None, t("2026-01-01T00:00:00Z"));
    let kinds: Vec<&str> = first.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        kinds,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    assert_eq!(first[3].reason.as_deref(), Some("KubeletReady"));
    assert_eq!(
        first[3].message.as_deref(),
        Some("kubelet is posting ready status")
    );
    assert_eq!(
        first[0].reason.as_deref(),
        Some("KubeletHasSufficientMemory")
    );
    let later = t("2026-01-01T00:00:10Z");
    let pressed = Pressure {
        memory: true,
        ..Pressure::default()
    };
    let second = conditions(&first, pressed, None, later.clone());
    assert_eq!(second[0].status, "True");
    assert_eq!(
        second[0].reason.as_deref(),
        Some("KubeletHasInsufficientMemory")
    );
    assert_eq!(second[0].last_transition_time, Some(later.clone()));
    assert_eq!(
        second[1].last_transition_time,
        first[1].last_transition_time
    );
    assert_eq!(second[1].last_heartbeat_time, Some(later));
}

#[test]
fn condition_changes_record_upstreams_node_events() {
    let now = t("2026-01-01T00:00:00Z");
    let first = conditions(&[], Pressure::default(), None, now.clone());
    assert_eq!(
        condition_events(&[], &first),
        [
            "NodeHasSufficientMemory",
            "NodeHasNoDiskPressure",
            "NodeHasSufficientPID"
        ]
    );
    let same = conditions(&first, Pressure::default(), None, now.clone());
    assert!(condition_events(&first, &same).is_empty());
    let disk = Pressure {
        disk: true,
        ..Pressure::default()
    };
    let pressed = conditions(&same, disk, None, now.clone());
    assert_eq!(condition_events(&same, &pressed), ["NodeHasDiskPressure"]);
    let not_ready = conditions(
        &pressed,
        disk,
        Some("container runtime network not ready"),
        now.clone(),
    );
    assert_eq!(not_ready[3].reason.as_deref(), Some("KubeletNotReady"));
    assert_eq!(
        not_ready[3].message.as_deref(),
        Some("container runtime network not ready")
    );
    assert_eq!(condition_events(&not_ready, &pressed), ["NodeReady"]);
    assert_eq!(condition_events(&pressed, &not_ready), ["NodeNotReady"]);
}

#[test]
fn unchanged_status_is_sent_only_every_report_frequency() {
    let s = settings();
    let a = status(
        &s,
        &host(),
        &healthy(),
        None,
        None,
        t("2026-01-01T00:00:00Z"),
    );
    let b = status(
        &s,
        &host(),
        &healthy(),
        Some(&a),
        None,
        t("2026-01-01T00:00:10Z"),
    );
    assert!(!changed(&a, &b));
    assert!(!should_report(Some(&a), &b, Duration::from_secs(10)));
    assert!(should_report(Some(&a), &b, REPORT_FREQUENCY));
    assert!(should_report(None, &b, Duration::ZERO));
    let full = Measurements {
        fs_available: 1 << 30,
        ..healthy()
    };
    let c = status(
        &s,
        &host(),
        &full,
        Some(&b),
        None,
        t("2026-01-01T00:00:20Z"),
    );
    assert!(should_report(Some(&b), &c, Duration::from_secs(10)));
    let info = c.node_info.unwrap();
    assert!(info.container_runtime_version.starts_with("skiff://"));
    assert_eq!(info.kubelet_version, "v1.35.0");
    assert_eq!(
        c.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
        10250
    );
    let addrs = c.addresses.unwrap();
    assert_eq!(addrs[0].type_, "InternalIP");
    assert_eq!(addrs[1].address, "n1");
}

#[test]
fn eviction_soft_needs_a_grace_period_for_each_threshold_and_no_other() {
    let s = EvictionSoft::parse(
        "memory.available<1Gi,nodefs.available<20%",
        "memory.available=1m30s, nodefs.available=2m",
        45,
    )
    .unwrap();
    assert_eq!(
        s.memory_available,
        Some((Threshold::Bytes(1 << 30), Duration::from_secs(90)))
    );
    assert_eq!(
        s.nodefs_available,
        Some((Threshold::Basis(2000), Duration::from_secs(120)))
    );
    assert_eq!(s.max_pod_grace, Duration::from_secs(45));
    let none = EvictionSoft::parse("", "", 0).unwrap();
    assert!(none.memory_available.is_none() && none.nodefs_available.is_none());
    for (thresholds, graces, why) in [
        (
            "memory.available<1Gi",
            "",
            "grace period must be specified for the soft eviction threshold memory.available",
        ),
        (
            "",
            "nodefs.available=1m",
            "grace period specified for nodefs.available, which has no soft eviction threshold",
        ),
        (
            "imagefs.available<10%",
            "imagefs.available=1m",
            "unsupported eviction signal imagefs.available",
        ),
        (
            "memory.available<1Gi",
            "memory.available=soon",
            "grace period of memory.available",
        ),
    ] {
        let err = EvictionSoft::parse(thresholds, graces, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn a_soft_threshold_is_pressure_at_once_and_evicts_only_after_its_grace_period() {
    let soft = EvictionSoft::parse("memory.available<60%", "memory.available=30s", 0).unwrap();
    let mut seen = SoftObserved::default();
    let t0 = std::time::Instant::now();
    let low = healthy(); // 4 of 8 GiB free: under 60%
    let fine = Measurements {
        memory_available: 6 << 30,
        ..healthy()
    };
    let mut at = |m: &Measurements, s: u64| {
        let (crossed, met) = seen.observe(m, &soft, t0 + Duration::from_secs(s));
        assert!(!crossed.disk && !met.disk);
        (crossed.memory, met.memory)
    };
    // Crossed (reported as pressure) at once; met (evicting) after the grace period.
    assert_eq!(at(&low, 0), (true, false));
    assert_eq!(at(&low, 29), (true, false));
    assert_eq!(at(&low, 30), (true, true));
    // A measurement above the threshold starts the count over.
    assert_eq!(at(&fine, 31), (false, false));
    assert_eq!(at(&low, 40), (true, false));
    assert_eq!(at(&low, 70), (true, true));
}

/// A soft threshold crossed is the node's pressure at once, whatever its grace period (the
/// eviction waits for it, the condition does not).
#[test]
fn a_crossed_soft_threshold_is_reported_as_pressure() {
    let mut s = settings();
    s.eviction_soft =
        EvictionSoft::parse("nodefs.available<60%", "nodefs.available=1h", 0).unwrap();
    let disk = |st: &NodeStatus| {
        st.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DiskPressure")
            .map(|c| c.status.clone())
    };
    let now = t("2026-01-01T00:00:00Z");
    // 50% available: under 60%.
    let pressed = status(&s, &host(), &healthy(), None, None, now.clone());
    assert_eq!(disk(&pressed).as_deref(), Some("True"));
    s.eviction_soft =
        EvictionSoft::parse("nodefs.available<40%", "nodefs.available=1h", 0).unwrap();
    let fine = status(&s, &host(), &healthy(), None, None, now);
    assert_eq!(disk(&fine).as_deref(), Some("False"));
}
