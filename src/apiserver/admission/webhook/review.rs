//! The `AdmissionReview` a webhook is sent and the checks on what it answers, as upstream's
//! `webhook/request` package (admission.k8s.io/v1, or v1beta1 for webhooks that only list
//! that version in `admissionReviewVersions`).
//!
//! Invariant: an answer is used only if it passes [`verify`]; anything else is a
//! `received invalid webhook response` failure subject to the failurePolicy.

use super::matching::{is_namespace_object, Invocation};
use crate::apiserver::admission::{Attributes, Operation};
use serde_json::{json, Map, Value};

/// The AdmissionReview versions skiff speaks, in upstream's order of preference (the first
/// one the webhook lists wins).
const KNOWN_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The version to send, or upstream's error when the webhook accepts none we know.
pub fn choose_version(accepted: &[String]) -> Result<&'static str, String> {
    accepted
        .iter()
        .find_map(|v| KNOWN_VERSIONS.iter().find(|k| **k == v).copied())
        .ok_or_else(|| {
            "webhook does not accept known AdmissionReview versions (v1, v1beta1)".to_owned()
        })
}

/// The options object of the request as upstream passes it (`CreateOptions`, ...), when the
/// write path did not hand one over.
fn options_of(attrs: &Attributes<'_>) -> Value {
    if !attrs.options.is_null() {
        return attrs.options.clone();
    }
    let kind = match attrs.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
        Operation::Connect => return Value::Null,
    };
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if attrs.dry_run {
        o["dryRun"] = json!(["All"]);
    }
    o
}

/// The review sent to a webhook.
pub fn request(
    version: &str,
    uid: &str,
    inv: &Invocation,
    attrs: &Attributes<'_>,
    obj: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let rt = attrs.rt;
    let mut user = Map::new();
    user.insert("username".into(), json!(attrs.user.name));
    if !attrs.user.uid.is_empty() {
        user.insert("uid".into(), json!(attrs.user.uid));
    }
    if !attrs.user.groups.is_empty() {
        user.insert("groups".into(), json!(attrs.user.groups));
    }
    if !attrs.user.extra.is_empty() {
        user.insert("extra".into(), json!(attrs.user.extra));
    }
    let mut req = Map::new();
    req.insert("uid".into(), json!(uid));
    req.insert(
        "kind".into(),
        json!({"group": inv.kind_group, "version": inv.kind_version, "kind": inv.kind}),
    );
    req.insert(
        "resource".into(),
        json!({"group": inv.group, "version": inv.version, "resource": inv.resource}),
    );
    let sub = attrs.subresource.unwrap_or_default();
    if !sub.is_empty() {
        req.insert("subResource".into(), json!(sub));
    }
    let (kind_group, kind_version, kind) = attrs.object_kind();
    req.insert(
        "requestKind".into(),
        json!({"group": kind_group, "version": kind_version, "kind": kind}),
    );
    req.insert(
        "requestResource".into(),
        json!({"group": rt.group, "version": rt.version, "resource": rt.plural}),
    );
    if !sub.is_empty() {
        req.insert("requestSubResource".into(), json!(sub));
    }
    if !attrs.name.is_empty() {
        req.insert("name".into(), json!(attrs.name));
    }
    // Upstream's request info names a Namespace as its own namespace once it has a name in
    // the path (every operation but create).
    let namespace = match attrs.namespace {
        Some(ns) if !ns.is_empty() => ns,
        _ if is_namespace_object(attrs) && attrs.operation != Operation::Create => attrs.name,
        _ => "",
    };
    if !namespace.is_empty() {
        req.insert("namespace".into(), json!(namespace));
    }
    req.insert("operation".into(), json!(attrs.operation.as_str()));
    req.insert("userInfo".into(), Value::Object(user));
    req.insert("object".into(), obj.cloned().unwrap_or(Value::Null));
    req.insert("oldObject".into(), old.cloned().unwrap_or(Value::Null));
    req.insert("dryRun".into(), json!(attrs.dry_run));
    req.insert("options".into(), options_of(attrs));
    json!({
        "kind": "AdmissionReview",
        "apiVersion": format!("admission.k8s.io/{version}"),
        "request": Value::Object(req),
    })
}

/// What a webhook answered, once verified.
#[derive(Debug, Default)]
pub struct Answer {
    pub allowed: bool,
    /// The decoded JSONPatch (mutating webhooks only).
    pub patch: Option<Value>,
    /// `response.status` (a `metav1.Status`), `Null` when absent.
    pub result: Value,
    pub warnings: Vec<String>,
}

/// Checks a webhook's answer as upstream's `VerifyAdmissionResponse` (and the decoding
/// before it) does. The error is the whole `ErrCallingWebhook` reason
/// (`received invalid webhook response: ...`, `received undecodable patch ...`).
pub fn verify(version: &str, uid: &str, mutating: bool, review: &Value) -> Result<Answer, String> {
    use base64::Engine as _;
    let invalid = |m: &str| Err(format!("received invalid webhook response: {m}"));
    let resp = &review["response"];
    if !resp.is_object() {
        return invalid("webhook response was absent");
    }
    let patch_b64 = resp["patch"].as_str().unwrap_or_default();
    let patch_type = &resp["patchType"];
    if version == "v1" {
        let got_uid = resp["uid"].as_str().unwrap_or_default();
        if got_uid != uid {
            return invalid(&format!("expected response.uid={uid:?}, got {got_uid:?}"));
        }
        let api_version = review["apiVersion"].as_str().unwrap_or_default();
        let (group, ver) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = review["kind"].as_str().unwrap_or_default();
        if (group, ver, kind) != ("admission.k8s.io", "v1", "AdmissionReview") {
            return invalid(&format!(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {group}/{ver}, Kind={kind}"
            ));
        }
        if mutating {
            if !patch_b64.is_empty() && patch_type.is_null() {
                return invalid("webhook returned response.patch but not response.patchType");
            }
            if patch_b64.is_empty() && !patch_type.is_null() {
                return invalid("webhook returned response.patchType but not response.patch");
            }
            if patch_type.as_str() == Some("") {
                return invalid("webhook returned invalid response.patchType of \"\"");
            }
        } else {
            if !patch_b64.is_empty() {
                return invalid("validating webhook may not return response.patch");
            }
            if !patch_type.is_null() {
                return invalid("validating webhook may not return response.patchType");
            }
        }
    }
    let patch = if mutating && !patch_b64.is_empty() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch_b64)
            .map_err(|e| {
                format!("failed to call webhook: illegal base64 data in response.patch: {e}")
            })?;
        let kind = patch_type.as_str().unwrap_or("JSONPatch");
        if kind != "JSONPatch" {
            return Err(format!("unsupported patch type {kind:?}"));
        }
        let ops: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("received undecodable patch in webhook response: {e}"))?;
        if !ops.is_array() {
            return Err(
                "received undecodable patch in webhook response: json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                    .into(),
            );
        }
        Some(ops)
    } else {
        None
    };
    Ok(Answer {
        allowed: resp["allowed"].as_bool().unwrap_or(false),
        patch,
        result: resp["status"].clone(),
        warnings: resp["warnings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}
