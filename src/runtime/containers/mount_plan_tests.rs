//! Mount plan tests: order, flags and path checks, computed from generated specs (no root).

use super::*;
use crate::runtime::containers::spec::{generate, Accounts, READONLY_PATHS};
use crate::runtime::containers::{ContainerConfig, Mount};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{LinuxBuilder, MountBuilder};

fn spec_for(cfg: &ContainerConfig) -> Spec {
    let image: ImageConfiguration = serde_json::from_str(
        r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .expect("fixture image config");
    generate(&image, cfg, Accounts::default(), "/skiff/c1").expect("spec")
}

fn cfg() -> ContainerConfig {
    ContainerConfig {
        id: "c1".into(),
        ..Default::default()
    }
}

#[test]
fn default_mounts_come_first_in_spec_order_with_their_flags() {
    let p = plan(&spec_for(&cfg()), Path::new("/b")).unwrap();
    assert_eq!(p.rootfs, Path::new("/b/rootfs"));
    let dests: Vec<_> = p.mounts.iter().map(|m| m.destination.clone()).collect();
    assert_eq!(
        dests,
        ["proc", "dev", "dev/pts", "dev/shm", "dev/mqueue", "sys"].map(PathBuf::from)
    );
    match &p.mounts[1].op {
        MountOp::Fs {
            fstype,
            flags,
            data,
            ..
        } => {
            assert_eq!(fstype, "tmpfs");
            assert!(flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME));
            assert_eq!(data.as_deref(), Some("mode=755,size=65536k"));
        }
        other => panic!("dev is not a tmpfs mount: {other:?}"),
    }
    match &p.mounts[5].op {
        MountOp::Fs { fstype, flags, .. } => {
            assert_eq!(fstype, "sysfs");
            assert!(flags.contains(MsFlags::MS_RDONLY));
        }
        other => panic!("sys is not sysfs: {other:?}"),
    }
}

#[test]
fn volumes_and_hosts_files_are_binds_with_a_read_only_remount_when_asked() {
    let c = ContainerConfig {
        mounts: vec![
            Mount::Bind {
                source: "/var/lib/v1".into(),
                destination: "/data".into(),
                read_only: true,
            },
            Mount::Tmpfs {
                destination: "/scratch".into(),
                size_bytes: Some(4096),
            },
        ],
        hosts_file: Some("/var/lib/pod/hosts".into()),
        ..cfg()
    };
    let p = plan(&spec_for(&c), Path::new("/b")).unwrap();
    let tail: Vec<_> = p.mounts[6..].to_vec();
    assert_eq!(
        tail[0],
        PlannedMount {
            destination: "data".into(),
            op: MountOp::Bind {
                source: "/var/lib/v1".into(),
                recursive: true,
                remount: MsFlags::MS_RDONLY,
            },
        }
    );
    assert!(matches!(
        &tail[1].op,
        MountOp::Fs { fstype, data: Some(d), .. } if fstype == "tmpfs" && d.contains("size=4096")
    ));
    assert_eq!(
        tail[2],
        PlannedMount {
            destination: "etc/hosts".into(),
            op: MountOp::Bind {
                source: "/var/lib/pod/hosts".into(),
                recursive: true,
                remount: MsFlags::empty(),
            },
        }
    );
}

#[test]
fn destinations_with_dot_dot_are_refused_before_any_mount() {
    let mut s = spec_for(&cfg());
    let mut mounts = s.mounts().clone().unwrap_or_default();
    mounts.push(
        MountBuilder::default()
            .destination("/etc/../../host")
            .typ("tmpfs")
            .source("tmpfs")
            .build()
            .unwrap(),
    );
    s.set_mounts(Some(mounts));
    assert_eq!(
        plan(&s, Path::new("/b")).unwrap_err(),
        PlanError::Escapes("/etc/../../host".into())
    );
    assert!(container_path(Path::new("/../x")).is_err());
    assert_eq!(
        container_path(Path::new("/etc/./hosts")).unwrap(),
        Path::new("etc/hosts")
    );
}

#[test]
fn relative_bind_sources_are_relative_to_the_bundle() {
    let mut s = spec_for(&cfg());
    s.set_mounts(Some(vec![MountBuilder::default()
        .destination("/x")
        .typ("bind")
        .source("files/x")
        .options(vec!["bind".to_string()])
        .build()
        .unwrap()]));
    let p = plan(&s, Path::new("/b")).unwrap();
    assert_eq!(
        p.mounts[0].op,
        MountOp::Bind {
            source: "/b/files/x".into(),
            recursive: false,
            remount: MsFlags::empty(),
        }
    );
}

#[test]
fn masked_and_read_only_paths_default_like_containerd() {
    let s = spec_for(&cfg());
    let p = plan(&s, Path::new("/b")).unwrap();
    assert_eq!(p.masked.len(), MASKED_PATHS.len());
    assert!(p.masked.contains(&PathBuf::from("proc/kcore")));
    assert_eq!(p.readonly.len(), READONLY_PATHS.len());
    assert!(p.readonly.contains(&PathBuf::from("proc/sys")));
    assert!(!p.readonly_root);
    let mut s = s;
    s.set_linux(Some(
        LinuxBuilder::default()
            .masked_paths(vec!["/proc/../etc".to_string()])
            .build()
            .unwrap(),
    ));
    assert!(matches!(
        plan(&s, Path::new("/b")),
        Err(PlanError::Escapes(_))
    ));
}

#[test]
fn devices_and_links_live_under_dev() {
    let c = ContainerConfig {
        read_only_rootfs: true,
        ..cfg()
    };
    let p = plan(&spec_for(&c), Path::new("/b")).unwrap();
    assert!(p.readonly_root);
    let null = p.devices.iter().find(|d| d.name == "null").unwrap();
    assert_eq!((null.major, null.minor, null.mode), (1, 3, 0o666));
    assert!(p.devices.iter().all(|d| !d.name.contains('/')));
    assert!(p
        .dev_links
        .contains(&(PathBuf::from("ptmx"), PathBuf::from("pts/ptmx"))));
}

#[test]
fn options_split_into_flags_and_data() {
    let (f, d) = parse_options(&[
        "nosuid".into(),
        "mode=755".into(),
        "ro".into(),
        "size=1k".into(),
        "rprivate".into(),
    ]);
    assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
    assert_eq!(d, "mode=755,size=1k");
}
