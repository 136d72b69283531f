//! What one HPA sync reads and writes besides the HPA: the target's `scale` subresource, the
//! pods its selector picks, and their `metrics.k8s.io/v1beta1` PodMetrics.
//!
//! Invariant: everything goes through the controller's own client (the
//! `horizontal-pod-autoscaler` service account), so RBAC decides as for upstream's controller.

use super::replica_calculator::{PodMetric, PodMetrics};
use super::ControllerError;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};

/// `/apis/<group>/<version>/namespaces/<ns>/<plural>` of the scale target's kind.
pub async fn target_path(
    client: &kube::Client,
    ns: &str,
    target: &CrossVersionObjectReference,
) -> Result<String, ControllerError> {
    let api_version = target.api_version.as_deref().unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let known = match (group, target.kind.as_str()) {
        ("apps", "Deployment") => Some("deployments"),
        ("apps", "ReplicaSet") => Some("replicasets"),
        ("apps", "StatefulSet") => Some("statefulsets"),
        ("", "ReplicationController") => Some("replicationcontrollers"),
        _ => None,
    };
    let plural = match known {
        Some(p) => p.to_string(),
        // Custom resources with a scale subresource: ask discovery.
        None => super::super::discovery::ResourceTypes::discover(client)
            .await?
            .resolve(api_version, &target.kind)
            .map(|t| t.ar.plural)
            .ok_or_else(|| {
                ControllerError::Invalid(format!(
                    "unable to determine resource for scale target reference: no matches for kind \"{}\" in group \"{group}\"",
                    target.kind
                ))
            })?,
    };
    Ok(if group.is_empty() {
        format!("/api/{version}/namespaces/{ns}/{plural}")
    } else {
        format!("/apis/{group}/{version}/namespaces/{ns}/{plural}")
    })
}

pub async fn get_scale(
    client: &kube::Client,
    path: &str,
    name: &str,
) -> Result<Scale, ControllerError> {
    let req = kube::core::Request::new(path)
        .get_subresource("scale", name)
        .map_err(kube::Error::BuildRequest)?;
    Ok(client.request::<Scale>(req).await?)
}

pub async fn update_scale(
    client: &kube::Client,
    path: &str,
    name: &str,
    scale: &Scale,
) -> Result<Scale, ControllerError> {
    let body = serde_json::to_vec(scale).map_err(kube::Error::SerdeError)?;
    let req = kube::core::Request::new(path)
        .replace_subresource("scale", name, &PostParams::default(), body)
        .map_err(kube::Error::BuildRequest)?;
    Ok(client.request::<Scale>(req).await?)
}

pub async fn pods(
    client: &kube::Client,
    ns: &str,
    selector: &str,
) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

/// Each selected pod's usage of `resource` (milli-units), summed over its containers (or
/// the one named); a pod whose sample lacks the resource for a container is left out.
pub async fn resource_metrics(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    resource: &str,
    container: Option<&str>,
) -> Result<PodMetrics, kube::Error> {
    let ar = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let list = api.list(&ListParams::default().labels(selector)).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|m| {
            Some((
                m.metadata.name.clone()?,
                pod_metric(m, resource, container)?,
            ))
        })
        .collect())
}

fn pod_metric(m: &DynamicObject, resource: &str, container: Option<&str>) -> Option<PodMetric> {
    let mut value = 0i64;
    let mut any = false;
    for c in m.data["containers"].as_array()? {
        if container.is_some_and(|want| c["name"] != want) {
            continue;
        }
        let q = crate::api::quantity::Quantity::parse(c["usage"][resource].as_str()?).ok()?;
        value += i64::try_from(q.milli_value()).ok()?;
        any = true;
    }
    if !any {
        return None;
    }
    let timestamp = m.data["timestamp"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let window = m.data["window"]
        .as_str()
        .and_then(go_seconds)
        .unwrap_or(SignedDuration::ZERO);
    Some(PodMetric {
        value,
        timestamp,
        window,
    })
}

/// A Go duration as metrics-server writes windows (`10s`, `1m0s`, `30.5s`).
fn go_seconds(s: &str) -> Option<SignedDuration> {
    let (mins, secs) = match s.split_once('m') {
        Some((m, rest)) => (m.parse::<f64>().ok()?, rest),
        None => (0.0, s),
    };
    let secs = match secs.strip_suffix('s') {
        Some(v) => v.parse::<f64>().ok()?,
        None if secs.is_empty() => 0.0,
        None => return None,
    };
    SignedDuration::try_from_secs_f64(mins * 60.0 + secs).ok()
}

#[cfg(test)]
mod tests {
    use super::go_seconds;
    use jiff::SignedDuration;

    #[test]
    fn metric_windows_parse_as_go_durations() {
        assert_eq!(go_seconds("10s"), Some(SignedDuration::from_secs(10)));
        assert_eq!(go_seconds("1m0s"), Some(SignedDuration::from_secs(60)));
        assert_eq!(go_seconds("1m30s"), Some(SignedDuration::from_secs(90)));
        assert_eq!(go_seconds("x"), None);
    }
}
