//! The TokenRequest API (`POST serviceaccounts/{name}/token`, `kubectl create token`):
//! issues a signed, time-limited, audience-scoped JWT for a service account, optionally
//! bound to a Pod, Secret or Node (upstream's `pkg/registry/core/serviceaccount/storage/
//! token.go`). Nothing is stored.
//!
//! Invariant: a token is issued only for a service account and bound object that exist
//! (with the UIDs the request names, if any), for 10 minutes to 2^32 seconds.

use super::subresources::admit_subresource_create;
use super::write::read_body;
use crate::apiserver::authn::service_account::{self, Bound, ObjRef, TokenSpec};
use crate::apiserver::authn::{get_object, IDENTITY};
use crate::apiserver::body::decode_object;
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::response::{self, Body};
use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiState, RequestBody, UserInfo};
use http::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// Tokens requested for exactly this long for a pod with the API's audiences get a year
/// and a `warnafter` (upstream's `--service-account-extend-token-expiration`, default on):
/// kubelets ask for 3607 s.
const WARN_ONLY_EXPIRATION_SECONDS: i64 = 3600 + 7;
const EXTENDED_EXPIRATION_SECONDS: i64 = 24 * 365 * 60 * 60;

fn invalid(name: &str, field: &str, value: Value, detail: &str) -> ApiError {
    let shown = match &value {
        Value::String(s) => format!("{s:?}"),
        v => v.to_string(),
    };
    ApiError {
        details: Some(json!({
            "name": name, "group": "authentication.k8s.io", "kind": "TokenRequest",
            "causes": [{"reason": "FieldValueInvalid", "message": format!("Invalid value: {shown}: {detail}"), "field": field}],
        })),
        ..ApiError::new(
            422,
            "Invalid",
            format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: {field}: Invalid value: {shown}: {detail}"),
        )
    }
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError {
        details: Some(json!({"name": name, "kind": resource})),
        ..ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
    }
}

/// 409 on `group_resource` (upstream names the kind here: `TokenRequest.authentication.k8s.io`, `Pod`).
fn conflict(group_resource: &str, name: &str, why: String) -> ApiError {
    ApiError {
        details: Some(json!({"name": name, "kind": group_resource})),
        ..ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {group_resource} \"{name}\": {why}"),
        )
    }
}

pub async fn create(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    req: Request<RequestBody>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let ns = rr
        .namespace
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("namespace is required"))?;
    let name = rr.name.as_deref().unwrap_or_default();
    let raw = read_body(req).await?;
    let mut tr = decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    if !tr.is_object() {
        return Err(ApiError::bad_request(
            "the body of a TokenRequest must be an object",
        ));
    }
    let meta = &tr["metadata"];
    let req_name = meta["name"].as_str().unwrap_or_default().to_owned();
    if !req_name.is_empty() && req_name != name {
        return Err(invalid(
            name,
            "metadata.name",
            json!(req_name),
            "must match the service account name if specified",
        ));
    }
    let req_ns = meta["namespace"].as_str().unwrap_or_default().to_owned();
    if !req_ns.is_empty() && req_ns != ns {
        return Err(invalid(
            name,
            "metadata.namespace",
            json!(req_ns),
            "must match the service account namespace if specified",
        ));
    }
    // Admission sees the TokenRequest as a create of `serviceaccounts/token` (NodeRestriction
    // limits what a kubelet may ask for).
    admit_subresource_create(state, rr, Some("token"), user, false, &mut tr).await?;
    let sa = get_object(state, "serviceaccounts", Some(ns), name, IDENTITY)
        .await
        .ok_or_else(|| not_found("serviceaccounts", name))?;
    let sa_ref = ObjRef::of(&sa);
    let req_uid = tr["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !req_uid.is_empty() && req_uid != sa_ref.uid {
        return Err(conflict("TokenRequest.authentication.k8s.io", name, format!(
            "the UID in the token request ({req_uid}) does not match the UID of the service account ({})",
            sa_ref.uid
        )));
    }
    let spec = &tr["spec"];
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => state.authn.api_audiences().to_vec(),
    };
    let requested = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v.as_i64().ok_or_else(|| {
            invalid(
                name,
                "spec.expirationSeconds",
                v.clone(),
                "must be an integer",
            )
        })?,
    };
    if requested < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            json!(requested),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if requested > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            json!(requested),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound_ref = spec["boundObjectRef"].clone();
    let bound = if bound_ref.is_object() {
        bind(state, ns, name, &bound_ref).await?
    } else {
        Bound::Nothing
    };
    let now = chrono::Utc::now();
    let mut exp = requested;
    let mut warn_after = 0;
    let api_auds = state.authn.api_audiences();
    if matches!(bound, Bound::Pod { .. })
        && requested == WARN_ONLY_EXPIRATION_SECONDS
        && audiences.iter().all(|a| api_auds.contains(a))
    {
        warn_after = requested;
        exp = EXTENDED_EXPIRATION_SECONDS;
    }
    let claims = service_account::claims(&TokenSpec {
        namespace: ns,
        service_account: sa_ref.clone(),
        bound,
        audiences: &audiences,
        issued_at: now.timestamp(),
        expiration_seconds: exp,
        warn_after_seconds: warn_after,
        jti: uuid::Uuid::new_v4().to_string(),
    });
    let token = state
        .authn
        .service_account_key()
        .sign(&claims)
        .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;
    let expires = now + chrono::Duration::seconds(requested);
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    tr["apiVersion"] = json!("authentication.k8s.io/v1");
    tr["kind"] = json!("TokenRequest");
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(sa_ref.name));
    metadata.insert("namespace".into(), json!(ns));
    metadata.insert("uid".into(), json!(sa_ref.uid));
    metadata.insert("creationTimestamp".into(), json!(ts(now)));
    tr["metadata"] = Value::Object(metadata);
    tr["spec"]["audiences"] = json!(audiences);
    tr["spec"]["expirationSeconds"] = json!(requested);
    tr["spec"]["boundObjectRef"] = if bound_ref.is_object() {
        bound_ref
    } else {
        Value::Null
    };
    if tr["spec"]["boundObjectRef"].is_null() {
        if let Some(s) = tr["spec"].as_object_mut() {
            s.remove("boundObjectRef");
        }
    }
    tr["status"] = json!({"token": token, "expirationTimestamp": ts(expires)});
    Ok(response::json(201, &tr))
}

/// Resolves `spec.boundObjectRef` to what the token will be bound to.
async fn bind(state: &ApiState, ns: &str, sa_name: &str, r: &Value) -> Result<Bound, ApiError> {
    let api_version = r["apiVersion"].as_str().unwrap_or_default();
    let kind = r["kind"].as_str().unwrap_or_default();
    let name = r["name"].as_str().unwrap_or_default();
    let want_uid = r["uid"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let (plural, namespace) = match (group, kind) {
        ("", "Pod") => ("pods", Some(ns)),
        ("", "Secret") => ("secrets", Some(ns)),
        ("", "Node") => ("nodes", None),
        _ => {
            let gvk = if group.is_empty() {
                format!("/{version}, Kind={kind}")
            } else {
                format!("{group}/{version}, Kind={kind}")
            };
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {gvk}"
            )));
        }
    };
    let keep = [IDENTITY, &["spec.serviceAccountName", "spec.nodeName"]].concat();
    let obj = get_object(state, plural, namespace, name, &keep)
        .await
        .ok_or_else(|| not_found(plural, name))?;
    let found = ObjRef::of(&obj);
    if !want_uid.is_empty() && want_uid != found.uid {
        return Err(conflict(kind, name, format!(
            "the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
        )));
    }
    Ok(match kind {
        "Pod" => {
            if obj["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                != sa_name
            {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            let node = match obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                Some(n) => Some(match get_object(state, "nodes", None, n, IDENTITY).await {
                    Some(node) => ObjRef::of(&node),
                    None => ObjRef {
                        name: n.to_owned(),
                        uid: String::new(),
                    },
                }),
                None => None,
            };
            Bound::Pod { pod: found, node }
        }
        "Secret" => Bound::Secret(found),
        _ => Bound::Node(found),
    })
}
