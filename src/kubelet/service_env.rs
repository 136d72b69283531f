//! Service environment variables (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_<P>_TCP...`), as
//! upstream's kubelet injects them: the `kubernetes` service of `default` always (in-cluster
//! clients find the API through it), the pod's own namespace's services when
//! `enableServiceLinks` is not false.
//!
//! Invariant: built from the kubelet's service cache only (no API call on container start);
//! variables the container defines itself win.

use k8s_openapi::api::core::v1::{Pod, Service};
use std::collections::BTreeMap;

fn env_name(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}

/// Upstream's `envvars.FromServices` for one service.
fn vars_of(svc: &Service, out: &mut BTreeMap<String, String>) {
    let Some(spec) = &svc.spec else { return };
    let Some(ip) = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")
    else {
        return;
    };
    let name = env_name(svc.metadata.name.as_deref().unwrap_or(""));
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    let Some(first) = ports.first() else { return };
    out.insert(format!("{name}_SERVICE_HOST"), ip.to_string());
    out.insert(format!("{name}_SERVICE_PORT"), first.port.to_string());
    for p in ports {
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.insert(
                format!("{name}_SERVICE_PORT_{}", env_name(n)),
                p.port.to_string(),
            );
        }
    }
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.clone().unwrap_or_else(|| "TCP".into())
    };
    out.insert(
        format!("{name}_PORT"),
        format!(
            "{}://{ip}:{}",
            proto(first).to_ascii_lowercase(),
            first.port
        ),
    );
    for p in ports {
        let pre = format!("{name}_PORT_{}_{}", p.port, proto(p).to_ascii_uppercase());
        out.insert(
            pre.clone(),
            format!("{}://{ip}:{}", proto(p).to_ascii_lowercase(), p.port),
        );
        out.insert(format!("{pre}_PROTO"), proto(p).to_ascii_lowercase());
        out.insert(format!("{pre}_PORT"), p.port.to_string());
        out.insert(format!("{pre}_ADDR"), ip.to_string());
    }
}

/// The service variables for `pod`, from `services` (every namespace).
pub fn for_pod<'a>(
    pod: &Pod,
    services: impl Iterator<Item = &'a Service>,
) -> BTreeMap<String, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut out = BTreeMap::new();
    let mut master = None;
    for s in services {
        let sns = s.metadata.namespace.as_deref().unwrap_or("");
        if sns == "default" && s.metadata.name.as_deref() == Some("kubernetes") {
            master = Some(s);
        } else if links && sns == ns {
            vars_of(s, &mut out);
        }
    }
    if let Some(m) = master {
        vars_of(m, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        let mut s = Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(String::from),
                            port: *p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s
    }

    #[test]
    fn the_api_service_is_always_there_and_links_follow_the_namespace() {
        let all = [
            svc(
                "default",
                "kubernetes",
                "10.43.0.1",
                &[(Some("https"), 443)],
            ),
            svc("prod", "redis-main", "10.43.0.9", &[(None, 6379)]),
            svc("other", "db", "10.43.0.7", &[(None, 5432)]),
            svc("prod", "headless", "None", &[(None, 80)]),
        ];
        let mut p = Pod::default();
        p.metadata.namespace = Some("prod".into());
        let env = for_pod(&p, all.iter());
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://10.43.0.1:443");
        assert_eq!(env["REDIS_MAIN_PORT"], "tcp://10.43.0.9:6379");
        assert_eq!(env["REDIS_MAIN_PORT_6379_TCP_ADDR"], "10.43.0.9");
        assert!(!env.contains_key("DB_SERVICE_HOST") && !env.contains_key("HEADLESS_SERVICE_HOST"));
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            enable_service_links: Some(false),
            ..Default::default()
        });
        let env = for_pod(&p, all.iter());
        assert!(
            env.contains_key("KUBERNETES_SERVICE_HOST")
                && !env.contains_key("REDIS_MAIN_SERVICE_HOST")
        );
    }
}
