use super::*;
use crate::runtime::containers::Resources;
use oci_spec::runtime::LinuxNamespaceType;

fn image(config: &str) -> ImageConfiguration {
    serde_json::from_str(&format!(
        r#"{{"architecture":"amd64","os":"linux","config":{config},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    ))
    .expect("fixture image config is valid")
}

fn cfg() -> ContainerConfig {
    ContainerConfig {
        id: "c1".into(),
        ..Default::default()
    }
}

#[test]
fn args_come_from_entrypoint_and_cmd_when_caller_gives_none() {
    let img = image(r#"{"Entrypoint":["/ep"],"Cmd":["a","b"]}"#);
    assert_eq!(resolve_args(&img, &cfg()).unwrap(), ["/ep", "a", "b"]);
}

#[test]
fn caller_command_drops_image_cmd_and_args_replace_cmd() {
    let img = image(r#"{"Entrypoint":["/ep"],"Cmd":["a"]}"#);
    let c = ContainerConfig {
        command: Some(vec!["/x".into()]),
        ..cfg()
    };
    assert_eq!(resolve_args(&img, &c).unwrap(), ["/x"]);
    let c = ContainerConfig {
        args: Some(vec!["z".into()]),
        ..cfg()
    };
    assert_eq!(resolve_args(&img, &c).unwrap(), ["/ep", "z"]);
}

#[test]
fn image_without_any_command_is_an_error() {
    assert!(matches!(
        resolve_args(&image("{}"), &cfg()),
        Err(SpecError::NoCommand)
    ));
}

#[test]
fn caller_env_overrides_image_env_and_path_is_always_set() {
    let img = image(r#"{"Env":["A=1","B=2"]}"#);
    let c = ContainerConfig {
        env: vec![("B".into(), "3".into()), ("C".into(), "4".into())],
        ..cfg()
    };
    let env = resolve_env(&img, &c);
    assert_eq!(env, [DEFAULT_PATH, "A=1", "B=3", "C=4"]);
}

#[test]
fn named_user_resolves_through_passwd_and_group_membership() {
    let accounts = Accounts {
        passwd: Some("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"),
        group: Some("root:x:0:\napp:x:1001:\nvideo:x:44:app,other\nwheel:x:10:root\n"),
    };
    let u = resolve_user("app", accounts).unwrap();
    assert_eq!(
        u,
        User {
            uid: 1000,
            gid: 1001,
            additional_gids: vec![44]
        }
    );
    let u = resolve_user("1000:wheel", accounts).unwrap();
    assert_eq!((u.uid, u.gid), (1000, 10));
    assert!(matches!(
        resolve_user("ghost", accounts),
        Err(SpecError::UnknownUser(_))
    ));
    assert_eq!(
        resolve_user("5:6", Accounts::default()).unwrap(),
        User {
            uid: 5,
            gid: 6,
            additional_gids: vec![]
        }
    );
}

#[test]
fn spec_carries_overrides_limits_and_defaults() {
    let img = image(r#"{"Cmd":["sh"],"WorkingDir":"/srv","User":"7:8","StopSignal":"SIGQUIT"}"#);
    let c = ContainerConfig {
        read_only_rootfs: true,
        hostname: Some("h".into()),
        resources: Resources {
            memory_limit_bytes: Some(64 << 20),
            cpu_quota_us: Some(50_000),
            cpu_period_us: Some(100_000),
            cpu_shares: None,
            pids_limit: Some(20),
        },
        network: Network::Join("/run/netns/p".into()),
        resolv_conf: Some("/tmp/resolv".into()),
        mounts: vec![Mount::Tmpfs {
            destination: "/scratch".into(),
            size_bytes: Some(1024),
        }],
        ..cfg()
    };
    let s = generate(&img, &c, Accounts::default(), "/skiff/c1").unwrap();
    let p = s.process().as_ref().unwrap();
    assert_eq!(p.cwd().to_str(), Some("/srv"));
    assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
    assert_eq!(p.no_new_privileges(), Some(true));
    // non-root: capabilities only in the bounding set
    let caps = p.capabilities().as_ref().unwrap();
    assert!(caps.effective().as_ref().unwrap().is_empty());
    assert_eq!(caps.bounding().as_ref().unwrap().len(), DEFAULT_CAPS.len());
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(s.hostname().as_deref(), Some("h"));
    assert_eq!(
        s.annotations().as_ref().unwrap()[STOP_SIGNAL_ANNOTATION],
        "SIGQUIT"
    );
    let l = s.linux().as_ref().unwrap();
    let res = l.resources().as_ref().unwrap();
    assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
    assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
    assert_eq!(res.pids().as_ref().unwrap().limit(), 20);
    let net = l
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .unwrap();
    assert_eq!(net.path().as_ref().unwrap().to_str(), Some("/run/netns/p"));
    let dests: Vec<String> = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/scratch",
        "/etc/resolv.conf",
    ] {
        assert!(dests.contains(&d.to_string()), "missing mount {d}");
    }
    assert!(l
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
    // the spec round-trips through config.json
    let json = serde_json::to_string(&s).unwrap();
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back.hostname().as_deref(), Some("h"));
}

#[test]
fn host_network_adds_no_network_namespace() {
    let c = ContainerConfig {
        network: Network::Host,
        args: Some(vec!["true".into()]),
        ..cfg()
    };
    let s = generate(&image("{}"), &c, Accounts::default(), "/skiff/c1").unwrap();
    let ns = s.linux().as_ref().unwrap().namespaces().as_ref().unwrap();
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    assert_eq!(ns.len(), 4);
}

#[test]
fn capabilities_add_drop_and_privileged_follow_the_security_settings() {
    use crate::runtime::containers::Security;
    use oci_spec::runtime::Capability;
    let def = super::capability_set(&Security::default());
    assert!(def.contains(&Capability::Chown) && !def.contains(&Capability::NetAdmin));
    let s = Security {
        cap_add: vec!["NET_ADMIN".into()],
        cap_drop: vec!["CHOWN".into()],
        ..Default::default()
    };
    let set = super::capability_set(&s);
    assert!(set.contains(&Capability::NetAdmin) && !set.contains(&Capability::Chown));
    let none = super::capability_set(&Security {
        cap_add: vec!["NET_ADMIN".into()],
        cap_drop: vec!["ALL".into()],
        ..Default::default()
    });
    assert!(none.is_empty());
    let all = super::capability_set(&Security {
        privileged: true,
        ..Default::default()
    });
    assert!(all.contains(&Capability::SysAdmin) && all.len() >= 30);
    // Privileged means every capability this process still holds, no more: a sandbox
    // that dropped one (here CAP_SYS_RESOURCE may be gone) must not fail the start.
    let bounding = super::own_bounding_set();
    let known = (1u64 << 41) - 1;
    assert_eq!(all.len() as u32, (bounding & known).count_ones());
    assert_eq!(
        all.contains(&Capability::SysResource),
        bounding & (1 << 24) != 0
    );
}
