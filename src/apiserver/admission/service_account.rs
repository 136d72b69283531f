//! ServiceAccount: every pod runs as a service account (`default` unless it names one),
//! which must exist; unless `automountServiceAccountToken` is false (on the pod, else on the
//! service account) the pod gets upstream's projected `kube-api-access-xxxxx` volume (a
//! bound token, the `kube-root-ca.crt` CA bundle and the namespace) mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every container and init container
//! that mounts nothing there, and the service account's `imagePullSecrets` when it has none.
//! Service accounts annotated `kubernetes.io/enforce-mountable-secrets: "true"` limit the
//! secrets their pods may reference to the ones they list. Mirror pods (static pods of a
//! node) may reference no service account, secret or token.

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const VOLUME_PREFIX: &str = "kube-api-access-";
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const ENFORCE_MOUNTABLE_SECRETS: &str = "kubernetes.io/enforce-mountable-secrets";
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`: an hour plus 7 s, so a kubelet that
/// refreshes hourly is told apart from one that does not.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// Live lookups of the `default` service account while its controller may still be
/// creating it in a new namespace (upstream: 10, 100-200 ms apart).
const DEFAULT_LOOKUP_ATTEMPTS: usize = 10;

pub struct ServiceAccount;

/// Upstream's `TokenVolumeSource()`, with the defaults the API would give it.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

fn is_mirror(pod: &Value) -> bool {
    pod["metadata"]["annotations"].get(MIRROR_POD).is_some()
}

fn sa_name(pod: &Value) -> &str {
    let spec = &pod["spec"];
    match spec["serviceAccountName"].as_str() {
        Some(n) if !n.is_empty() => n,
        // The deprecated field still names the account when the new one is empty.
        _ => spec["serviceAccount"].as_str().unwrap_or_default(),
    }
}

/// Go's `strconv.ParseBool` accepting true.
fn parses_true(s: &str) -> bool {
    matches!(s, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| CHARS[rand::random_range(0..CHARS.len())] as char)
        .collect()
}

fn array<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    v[key].as_array().into_iter().flatten()
}

/// The fields of a service account this plugin reads (every pod create looks it up).
const SA_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.annotations",
    "secrets",
    "imagePullSecrets",
    "automountServiceAccountToken",
];

async fn lookup(
    state: &ApiState,
    attrs: &Attributes<'_>,
    ns: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_LOOKUP_ATTEMPTS
    } else {
        1
    };
    let pause = Duration::from_millis(100 + rand::random_range(0..100));
    for i in 0..attempts {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        let sa = support::get_fields(state, "", "serviceaccounts", Some(ns), name, SA_FIELDS);
        if let Some(sa) = sa.await? {
            return Ok(sa);
        }
    }
    Err(attrs.forbidden(format!(
        "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
    )))
}

/// Whether the pod references any secret (upstream's `VisitPodSecretNames`).
fn references_secrets(pod: &Value) -> bool {
    let spec = &pod["spec"];
    if array(spec, "imagePullSecrets").next().is_some() {
        return true;
    }
    for v in array(spec, "volumes") {
        let Some(m) = v.as_object() else { continue };
        for (kind, src) in m {
            if kind == "secret"
                || !src["secretRef"].is_null()
                || !src["nodePublishSecretRef"].is_null()
                || !src["secretName"].is_null()
            {
                return true;
            }
            if kind == "projected" && array(src, "sources").any(|s| !s["secret"].is_null()) {
                return true;
            }
        }
    }
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| array(spec, list))
        .any(|c| {
            array(c, "env").any(|e| !e["valueFrom"]["secretKeyRef"].is_null())
                || array(c, "envFrom").any(|e| !e["secretRef"].is_null())
        })
}

/// Upstream's checks for pods of an account that enforces mountable secrets.
fn limit_secret_references(sa: &Value, pod: &Value) -> Result<(), String> {
    let sa_name = sa["metadata"]["name"].as_str().unwrap_or_default();
    let mountable: BTreeSet<&str> = array(sa, "secrets")
        .filter_map(|s| s["name"].as_str())
        .collect();
    let spec = &pod["spec"];
    for v in array(spec, "volumes") {
        if let Some(name) = v["secret"]["secretName"].as_str() {
            if !mountable.contains(name) {
                return Err(format!("volume with secret.secretName=\"{name}\" is not allowed because service account {sa_name} does not reference that secret"));
            }
        }
    }
    check_container_secrets(
        spec,
        "initContainers",
        "init container",
        &mountable,
        sa_name,
    )?;
    check_container_secrets(spec, "containers", "container", &mountable, sa_name)?;
    let pull: BTreeSet<&str> = array(sa, "imagePullSecrets")
        .filter_map(|s| s["name"].as_str())
        .collect();
    for (i, s) in array(spec, "imagePullSecrets").enumerate() {
        let name = s["name"].as_str().unwrap_or_default();
        if !pull.contains(name) {
            return Err(format!("imagePullSecrets[{i}].name=\"{name}\" is not allowed because service account {sa_name} does not reference that imagePullSecret"));
        }
    }
    Ok(())
}

fn check_container_secrets(
    spec: &Value,
    list: &str,
    what: &str,
    mountable: &BTreeSet<&str>,
    sa_name: &str,
) -> Result<(), String> {
    for c in array(spec, list) {
        let cname = c["name"].as_str().unwrap_or_default();
        for e in array(c, "env") {
            if let Some(secret) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                if !mountable.contains(secret) {
                    let env = e["name"].as_str().unwrap_or_default();
                    return Err(format!("{what} {cname} with envVar {env} referencing secret.secretName=\"{secret}\" is not allowed because service account {sa_name} does not reference that secret"));
                }
            }
        }
        for e in array(c, "envFrom") {
            if let Some(secret) = e["secretRef"]["name"].as_str() {
                if !mountable.contains(secret) {
                    return Err(format!("{what} {cname} with envFrom referencing secret.secretName=\"{secret}\" is not allowed because service account {sa_name} does not reference that secret"));
                }
            }
        }
    }
    Ok(())
}

fn enforces_mountable_secrets(sa: &Value) -> bool {
    sa["metadata"]["annotations"][ENFORCE_MOUNTABLE_SECRETS]
        .as_str()
        .is_some_and(parses_true)
}

/// Adds the token volume and its mounts (upstream's `mountServiceAccountToken`).
fn mount_token(pod: &mut Value) {
    let existing = array(&pod["spec"], "volumes")
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_owned);
    let has_volume = existing.is_some();
    let volume_name = existing.unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", random_suffix()));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for c in containers {
            if array(c, "volumeMounts").any(|m| m["mountPath"] == MOUNT_PATH) {
                continue;
            }
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount.clone()]),
            }
            needs_volume = true;
        }
    }
    if !has_volume && needs_volume {
        let volume = json!({"name": volume_name, "projected": token_volume_source()});
        match pod["spec"]["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(volume),
            None => pod["spec"]["volumes"] = json!([volume]),
        }
    }
}

impl ServiceAccount {
    async fn check(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let ns = attrs.namespace.unwrap_or_default();
        if attrs.operation == Operation::Update {
            return self.check_ephemeral(state, attrs, pod).await;
        }
        if is_mirror(pod) {
            if !sa_name(pod).is_empty() {
                return Err(attrs.forbidden("a mirror pod may not reference service accounts"));
            }
            if references_secrets(pod) {
                return Err(attrs.forbidden("a mirror pod may not reference secrets"));
            }
            let token_projection = array(&pod["spec"], "volumes").any(|v| {
                array(&v["projected"], "sources").any(|s| !s["serviceAccountToken"].is_null())
            });
            if token_projection {
                return Err(attrs
                    .forbidden("a mirror pod may not use ServiceAccountToken volume projections"));
            }
            return Ok(());
        }
        let name = sa_name(pod);
        if name.is_empty() {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            return Err(attrs.forbidden(format!(
                "no service account specified for pod {ns}/{pod_name}"
            )));
        }
        let sa = lookup(state, attrs, ns, name).await?;
        if enforces_mountable_secrets(&sa) {
            limit_secret_references(&sa, pod).map_err(|e| attrs.forbidden(e))?;
        }
        Ok(())
    }

    /// Ephemeral containers added to a running pod may only use the account's secrets.
    async fn check_ephemeral(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let ns = attrs.namespace.unwrap_or_default();
        let name = sa_name(pod);
        if name.is_empty() {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            return Err(attrs.forbidden(format!(
                "no service account specified for pod {ns}/{pod_name}"
            )));
        }
        let sa = lookup(state, attrs, ns, name).await?;
        if !enforces_mountable_secrets(&sa) {
            return Ok(());
        }
        let mountable: BTreeSet<&str> = array(&sa, "secrets")
            .filter_map(|s| s["name"].as_str())
            .collect();
        check_container_secrets(
            &pod["spec"],
            "ephemeralContainers",
            "ephemeral container",
            &mountable,
            name,
        )
        .map_err(|e| attrs.forbidden(e))
    }
}

impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.is("", "pods")
            && match attrs.operation {
                Operation::Create => attrs.is_main(),
                Operation::Update => attrs.subresource == Some("ephemeralcontainers"),
                _ => false,
            }
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        pod: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            if attrs.operation != Operation::Create || is_mirror(pod) {
                return Ok(());
            }
            let ns = attrs.namespace.unwrap_or_default();
            let name = match sa_name(pod) {
                "" => DEFAULT_SERVICE_ACCOUNT.to_owned(),
                n => n.to_owned(),
            };
            // Both fields name the account, as the v1 conversion writes them.
            pod["spec"]["serviceAccountName"] = json!(name);
            pod["spec"]["serviceAccount"] = json!(name);
            let sa = lookup(state, attrs, ns, &name).await?;
            let automount = pod["spec"]["automountServiceAccountToken"]
                .as_bool()
                .or_else(|| sa["automountServiceAccountToken"].as_bool())
                .unwrap_or(true);
            if automount {
                mount_token(pod);
            }
            let has_pull_secrets = pod["spec"]["imagePullSecrets"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            let sa_pull: Vec<Value> = array(&sa, "imagePullSecrets")
                .map(|s| json!({"name": s["name"]}))
                .collect();
            if !has_pull_secrets && !sa_pull.is_empty() {
                pod["spec"]["imagePullSecrets"] = Value::Array(sa_pull);
            }
            Ok(())
        })
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        pod: Option<&'a Value>,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            match pod {
                Some(pod) => self.check(state, attrs, pod).await,
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests;
