//! One container's runtime configuration from its pod spec: identity and log path
//! ([`super::labels`]), command/args with `$(VAR)` expansion, environment, working dir,
//! securityContext (merged over the pod's), resources, the pod's network namespace,
//! `/etc/hosts` and resolv.conf, volume mounts and the termination message file.
//!
//! Invariant: pure: the same pod, container and inputs give the same config, and every
//! refusal (runAsNonRoot) carries upstream's message.

use super::cri::ImageInfo;
use super::env::expand;
use super::labels::ContainerRef;
use crate::network::Sandbox;
use crate::runtime::containers::{ContainerConfig, Mount, Network, Security, User};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::path::Path;

/// Everything a container config is built from besides the spec.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub restart_count: u32,
    pub env: Vec<(String, String)>,
    pub sandbox: Option<&'a Sandbox>,
    pub mounts: Vec<Mount>,
    pub image: &'a ImageInfo,
    pub pod_log_dir: &'a Path,
    /// Host file bind-mounted at the container's terminationMessagePath.
    pub termination_log: Option<&'a Path>,
    /// The PID namespace to join (an ephemeral container's target), else a new one.
    pub pid_namespace: Option<std::path::PathBuf>,
}

/// `name_namespace(uid)`, upstream's `format.Pod`.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

pub fn container_ref<'a>(pod: &'a Pod, container: &'a str, restart_count: u32) -> ContainerRef<'a> {
    ContainerRef {
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod: pod.metadata.name.as_deref().unwrap_or(""),
        pod_uid: pod.metadata.uid.as_deref().unwrap_or(""),
        container,
        restart_count,
    }
}

pub fn build(i: Inputs<'_>) -> Result<ContainerConfig, String> {
    let (pod, c) = (i.pod, i.container);
    let spec = pod.spec.as_ref();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let run_as_user = csc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    let run_as_group = csc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group));
    let non_root = csc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root));
    if non_root == Some(true) {
        check_non_root(pod, c, run_as_user, i.image)?;
    }
    let mut groups: Vec<u32> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = psc.and_then(|s| s.fs_group) {
        groups.push(fs as u32);
    }
    let user = run_as_user.map(|uid| User {
        uid: uid as u32,
        gid: run_as_group.unwrap_or(0) as u32,
        additional_gids: groups.clone(),
    });
    let lookup = |n: &str| i.env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let expand_all = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map(|v| v.iter().map(|s| expand(s, lookup)).collect::<Vec<_>>())
    };
    let cref = container_ref(pod, &c.name, i.restart_count);
    let privileged = csc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = csc.and_then(|s| s.capabilities.as_ref());
    let security = Security {
        privileged,
        cap_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        cap_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        // Kubernetes' default is to allow escalation (no_new_privs unset), unlike the
        // runtime's standalone default.
        no_new_privileges: Some(
            csc.and_then(|s| s.allow_privilege_escalation) == Some(false) && !privileged,
        ),
    };
    let mut mounts = i.mounts;
    if let Some(t) = i.termination_log {
        mounts.push(Mount::Bind {
            source: t.to_path_buf(),
            destination: c
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
            read_only: false,
        });
    }
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    Ok(ContainerConfig {
        id: cref.container_id(),
        image: c.image.clone().unwrap_or_default(),
        command: expand_all(&c.command),
        args: expand_all(&c.args),
        env: i.env.clone(),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        hostname: Some(hostname(pod)),
        tty: c.tty.unwrap_or(false),
        stdin: c.stdin.unwrap_or(false),
        read_only_rootfs: csc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        mounts,
        resources: super::resources::container_resources(c),
        network: match i.sandbox.and_then(|s| s.netns.clone()) {
            _ if host_network => Network::Host,
            Some(ns) => Network::Join(ns),
            None => Network::None,
        },
        // Not over a volume the container mounts there itself (upstream's kubelet for
        // /etc/hosts, the runtime for /etc/resolv.conf).
        hosts_file: i
            .sandbox
            .map(|s| s.hosts_file.clone())
            .filter(|_| !mounts_own(c, "/etc/hosts")),
        resolv_conf: i
            .sandbox
            .map(|s| s.resolv_conf.clone())
            .filter(|_| !mounts_own(c, "/etc/resolv.conf")),
        log_path: Some(cref.log_path(i.pod_log_dir)),
        labels: cref.labels(),
        security,
        cgroup_parent: super::resources::pod_cgroup(pod).map(|c| c.path),
        sysctls: super::sysctls::of_pod(pod),
        pid_namespace: i.pid_namespace,
        pod_annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        run_to_completion_init: spec.and_then(|s| s.init_containers.as_ref()).is_some_and(
            |inits| {
                inits.iter().any(|init| {
                    init.name == c.name && init.restart_policy.as_deref() != Some("Always")
                })
            },
        ),
        ..Default::default()
    })
}

/// An ephemeral container as the container it runs as (the same fields, without its
/// target, which the caller resolves to a PID namespace).
pub fn from_ephemeral(ec: &k8s_openapi::api::core::v1::EphemeralContainer) -> Container {
    serde_json::to_value(ec)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_else(|| Container {
            name: ec.name.clone(),
            image: ec.image.clone(),
            ..Default::default()
        })
}

/// The pod's hostname (`spec.hostname` or its name, at most 63 characters).
pub fn hostname(pod: &Pod) -> String {
    let h = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    h.chars().take(63).collect()
}

/// The cluster DNS domain (DESIGN.md's default; the kubelet takes no other yet).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `<hostname>.<subdomain>.<namespace>.svc.<domain>` when the pod sets `spec.subdomain`
/// (a StatefulSet's `serviceName`): the name its headless Service resolves, which upstream's
/// kubelet also puts in the pod's `/etc/hosts`.
pub fn fqdn(pod: &Pod, domain: &str) -> Option<String> {
    let sub = pod
        .spec
        .as_ref()
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    Some(format!("{}.{sub}.{ns}.svc.{domain}", hostname(pod)))
}

fn check_non_root(
    pod: &Pod,
    c: &Container,
    uid: Option<i64>,
    image: &ImageInfo,
) -> Result<(), String> {
    let fp = format_pod(pod);
    if let Some(uid) = uid {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {fp:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    let user = image.user.as_deref().unwrap_or("");
    let name = user.split(':').next().unwrap_or("");
    match name.parse::<u32>() {
        _ if name.is_empty() => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {fp:?}, container: {})",
            c.name
        )),
        Ok(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {fp:?}, container: {})",
            c.name
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root (pod: {fp:?}, container: {})",
            c.name
        )),
    }
}

/// Whether the container mounts a volume at `path`.
fn mounts_own(c: &Container, path: &str) -> bool {
    c.volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, PodSpec, SecurityContext};
    use std::path::PathBuf;

    fn pod(c: Container, psc: Option<PodSecurityContext>) -> Pod {
        let mut p = Pod {
            spec: Some(PodSpec {
                containers: vec![c],
                security_context: psc,
                ..Default::default()
            }),
            ..Default::default()
        };
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some("u1".into());
        p
    }

    fn image(user: Option<&str>) -> ImageInfo {
        ImageInfo {
            reference: "busybox".into(),
            image_ref: "busybox@sha256:0".into(),
            user: user.map(String::from),
        }
    }

    fn inputs<'a>(
        p: &'a Pod,
        img: &'a ImageInfo,
        env: Vec<(String, String)>,
        sb: Option<&'a Sandbox>,
    ) -> Inputs<'a> {
        Inputs {
            pod: p,
            container: &p.spec.as_ref().unwrap().containers[0],
            restart_count: 3,
            env,
            sandbox: sb,
            mounts: vec![],
            image: img,
            pod_log_dir: Path::new("/var/log/pods"),
            termination_log: Some(Path::new("/pods/u1/containers/app/term")),
            pid_namespace: None,
        }
    }

    #[test]
    fn the_config_carries_the_pods_annotations_and_whether_it_is_a_run_to_completion_init() {
        let named = |name: &str, policy: Option<&str>| Container {
            name: name.into(),
            restart_policy: policy.map(Into::into),
            ..Container::default()
        };
        let mut p = pod(named("app", None), None);
        p.metadata.annotations = Some([("a".to_owned(), "1".to_owned())].into());
        p.spec.as_mut().unwrap().init_containers =
            Some(vec![named("setup", None), named("proxy", Some("Always"))]);
        let img = image(None);
        let spec = p.spec.clone().unwrap();
        let inits = spec.init_containers.as_ref().unwrap();
        for (container, init) in [
            (&inits[0], true),
            (&inits[1], false),
            (&spec.containers[0], false),
        ] {
            let cfg = build(Inputs {
                container,
                ..inputs(&p, &img, vec![], None)
            })
            .unwrap();
            assert_eq!(cfg.run_to_completion_init, init, "{}", container.name);
            assert_eq!(cfg.pod_annotations["a"], "1");
        }
    }

    #[test]
    fn a_pod_with_a_subdomain_gets_its_service_fqdn_and_one_without_none() {
        let mut p = pod(Container::default(), None);
        assert_eq!(fqdn(&p, CLUSTER_DOMAIN), None);
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        assert_eq!(
            fqdn(&p, CLUSTER_DOMAIN).as_deref(),
            Some("web-0.web.default.svc.cluster.local")
        );
    }

    #[test]
    fn command_args_env_security_and_sandbox_are_carried_into_the_runtime_config() {
        let c = Container {
            name: "app".into(),
            image: Some("busybox".into()),
            command: Some(vec!["sh".into(), "-c".into()]),
            args: Some(vec!["echo $(MSG) $$(MSG) $(NOPE)".into()]),
            security_context: Some(SecurityContext {
                run_as_user: Some(1000),
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod(
            c,
            Some(PodSecurityContext {
                run_as_group: Some(2000),
                fs_group: Some(3000),
                ..Default::default()
            }),
        );
        let sb = Sandbox {
            netns: Some(PathBuf::from("/run/netns/u1")),
            ip: None,
            hosts_file: "/pods/u1/etc-hosts".into(),
            resolv_conf: "/pods/u1/resolv.conf".into(),
        };
        let img = image(None);
        let cfg = build(inputs(
            &p,
            &img,
            vec![("MSG".into(), "hi".into())],
            Some(&sb),
        ))
        .unwrap();
        assert_eq!(cfg.args.unwrap(), ["echo hi $(MSG) $(NOPE)"]);
        assert_eq!(
            cfg.user,
            Some(User {
                uid: 1000,
                gid: 2000,
                additional_gids: vec![3000]
            })
        );
        assert!(cfg.read_only_rootfs);
        assert_eq!(cfg.security.no_new_privileges, Some(true));
        assert_eq!(cfg.security.cap_drop, ["ALL"]);
        assert_eq!(cfg.network, Network::Join("/run/netns/u1".into()));
        assert_eq!(cfg.hosts_file.unwrap(), PathBuf::from("/pods/u1/etc-hosts"));
        assert_eq!(
            cfg.log_path.unwrap(),
            PathBuf::from("/var/log/pods/default_web_u1/app/3.log")
        );
        assert_eq!(cfg.labels[super::super::labels::RESTART_COUNT], "3");
        assert!(cfg.mounts.contains(&Mount::Bind {
            source: "/pods/u1/containers/app/term".into(),
            destination: "/dev/termination-log".into(),
            read_only: false
        }));
    }

    #[test]
    fn a_container_mounting_its_own_etc_hosts_or_resolv_conf_gets_no_managed_one() {
        let mut c = Container {
            name: "app".into(),
            image: Some("busybox".into()),
            volume_mounts: Some(vec![k8s_openapi::api::core::v1::VolumeMount {
                name: "hosts".into(),
                mount_path: "/etc/hosts".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut own_resolv = c.clone();
        own_resolv.volume_mounts.as_mut().unwrap()[0].mount_path = "/etc/resolv.conf".into();
        let sb = Sandbox {
            netns: None,
            ip: None,
            hosts_file: "/pods/u1/etc-hosts".into(),
            resolv_conf: "/pods/u1/resolv.conf".into(),
        };
        let img = image(None);
        let p = pod(c.clone(), None);
        let cfg = build(inputs(&p, &img, vec![], Some(&sb))).unwrap();
        assert_eq!(cfg.hosts_file, None);
        assert!(cfg.resolv_conf.is_some());
        let p = pod(own_resolv, None);
        let cfg = build(inputs(&p, &img, vec![], Some(&sb))).unwrap();
        assert_eq!(cfg.resolv_conf, None);
        assert!(cfg.hosts_file.is_some());
        c.volume_mounts = None;
        let p = pod(c, None);
        let cfg = build(inputs(&p, &img, vec![], Some(&sb))).unwrap();
        assert!(cfg.hosts_file.is_some() && cfg.resolv_conf.is_some());
    }

    #[test]
    fn run_as_non_root_is_refused_with_upstream_messages() {
        let c = |uid: Option<i64>| Container {
            name: "app".into(),
            security_context: Some(SecurityContext {
                run_as_non_root: Some(true),
                run_as_user: uid,
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = pod(c(None), None);
        let e = build(inputs(&p, &image(None), vec![], None)).unwrap_err();
        assert_eq!(e, "container has runAsNonRoot and image will run as root (pod: \"web_default(u1)\", container: app)");
        let e = build(inputs(&p, &image(Some("nobody")), vec![], None)).unwrap_err();
        assert_eq!(e, "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"web_default(u1)\", container: app)");
        assert!(build(inputs(&p, &image(Some("65534")), vec![], None)).is_ok());
        let p = pod(c(Some(0)), None);
        let e = build(inputs(&p, &image(Some("65534")), vec![], None)).unwrap_err();
        assert_eq!(e, "container's runAsUser breaks non-root policy (pod: \"web_default(u1)\", container: app)");
    }
}
