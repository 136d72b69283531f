//! certificates.k8s.io CertificateSigningRequests, as upstream's csr strategies: the server
//! records the requester in the spec, the spec never changes, the `approval` subresource
//! changes only the Approved/Denied conditions, the `status` subresource everything else
//! (conditions other than Approved/Denied, and the certificate, once). Signing is not done
//! here.
//!
//! Invariant: a stored CSR never has both an Approved and a Denied condition, never loses a
//! condition of type Approved, Denied or Failed, and its certificate, once set, is final.

use super::{immutable, Printing, Strategy};
use crate::api::registry::Subresource;
use crate::api::requester::Requester;
use crate::api::table::printers;
use crate::api::validation::FieldError;
use base64::Engine;
use serde_json::{json, Value};

pub static CERTIFICATE_SIGNING_REQUEST: Strategy = Strategy {
    kind: "CertificateSigningRequest",
    name_rule: any_name,
    validate: validate_csr,
    validate_update: spec_unchanged,
    prepare_for_create: clear_requester,
    prepare_for_create_by: Some(record_requester),
    initial_status: empty_status,
    prepare_for_update: keep_spec_and_status,
    prepare_for_status_update: status_update,
    prepare_for_subresource_update: approval_update,
    validate_subresource_update: validate_csr_update,
    printer: Printing::Builtin(&printers::CSR),
    ..Strategy::GENERIC
};

const APPROVED: &str = "Approved";
const DENIED: &str = "Denied";
const FAILED: &str = "Failed";

/// Upstream does not care what CSRs are called (`ValidateCertificateRequestName`).
fn any_name(_: &str, _: bool) -> Vec<String> {
    Vec::new()
}

/// Whatever requester fields the client sent are dropped; only the server sets them.
fn clear_requester(csr: &mut Value) {
    if let Some(spec) = csr.get_mut("spec").and_then(Value::as_object_mut) {
        for k in ["username", "uid", "groups", "extra"] {
            spec.remove(k);
        }
    }
}

fn record_requester(csr: &mut Value, user: &Requester) {
    if !csr["spec"].is_object() {
        csr["spec"] = json!({});
    }
    let spec = &mut csr["spec"];
    spec["username"] = json!(user.name);
    if !user.uid.is_empty() {
        spec["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        spec["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        spec["extra"] = json!(user.extra);
    }
}

fn empty_status(csr: &mut Value) {
    csr["status"] = json!({});
}

/// Updates of the main resource change neither spec nor status.
fn keep_spec_and_status(old: &Value, new: &mut Value) {
    let Some(n) = new.as_object_mut() else {
        return;
    };
    for k in ["spec", "status"] {
        match old.get(k) {
            Some(v) => {
                n.insert(k.into(), v.clone());
            }
            None => {
                n.remove(k);
            }
        }
    }
}

fn conditions(csr: &Value) -> &[Value] {
    csr["status"]["conditions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn of_type<'a>(csr: &'a Value, t: &str) -> Vec<&'a Value> {
    conditions(csr)
        .iter()
        .filter(|c| c["type"].as_str() == Some(t))
        .collect()
}

/// Timestamps of new conditions (upstream's `populateConditionTimestamps`): lastUpdateTime
/// now, lastTransitionTime carried from an old condition of the same type and status.
fn stamp_conditions(old: &Value, new: &mut Value) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let old_conds = conditions(old).to_vec();
    let Some(conds) = new["status"]["conditions"].as_array_mut() else {
        return;
    };
    for c in conds.iter_mut().filter_map(Value::as_object_mut) {
        if c.get("lastUpdateTime").is_none_or(Value::is_null) {
            c.insert("lastUpdateTime".into(), json!(now));
        }
        if c.get("lastTransitionTime").is_none_or(Value::is_null) {
            let carried = old_conds
                .iter()
                .find(|o| {
                    o["type"] == c.get("type").cloned().unwrap_or_default()
                        && o["status"] == c.get("status").cloned().unwrap_or_default()
                        && o["lastTransitionTime"].is_string()
                })
                .map(|o| o["lastTransitionTime"].clone());
            c.insert("lastTransitionTime".into(), carried.unwrap_or(json!(now)));
        }
    }
}

/// The status subresource: the spec stays, and Approved/Denied conditions are what they
/// were (when their count did not change; validation refuses the rest).
fn status_update(old: &Value, new: &mut Value) {
    super::status_only(old, new);
    for t in [APPROVED, DENIED] {
        let old_idx: Vec<usize> = index_of(old, t);
        let new_idx: Vec<usize> = index_of(new, t);
        if old_idx.len() == new_idx.len() {
            for (o, n) in old_idx.iter().zip(new_idx) {
                new["status"]["conditions"][n] = old["status"]["conditions"][*o].clone();
            }
        }
    }
    stamp_conditions(old, new);
}

fn index_of(csr: &Value, t: &str) -> Vec<usize> {
    conditions(csr)
        .iter()
        .enumerate()
        .filter(|(_, c)| c["type"].as_str() == Some(t))
        .map(|(i, _)| i)
        .collect()
}

/// The approval subresource: only `status.conditions` changes.
/// The `approval` subresource (the only one besides status): conditions only.
fn approval_update(_: Subresource, old: &Value, new: &mut Value) {
    stamp_conditions(old, new);
    let conds = new["status"]["conditions"].clone();
    let metadata = new.get("metadata").cloned();
    let mut merged = old.clone();
    if let Some(m) = metadata {
        merged["metadata"] = m;
    }
    if !merged["status"].is_object() {
        merged["status"] = json!({});
    }
    if conds.is_null() {
        if let Some(s) = merged["status"].as_object_mut() {
            s.remove("conditions");
        }
    } else {
        merged["status"]["conditions"] = conds;
    }
    *new = merged;
}

fn spec_unchanged(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    // The main strategy copies the spec over; this catches any other path.
    if old["spec"] != new["spec"] {
        errs.push(immutable("spec", &new["spec"], "field is immutable"));
    }
}

const VALID_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// Upstream's `ParseCSR` + `x509.ParseCertificateRequest` (the signature is checked by the
/// signer, which parses the request again).
fn parse_request(b64: &str) -> Result<(), String> {
    let pem_bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    let wrong_type = || "PEM block type must be CERTIFICATE REQUEST".to_string();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem_bytes).map_err(|_| wrong_type())?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(wrong_type());
    }
    x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
        .map(|_| ())
        .map_err(|e| format!("x509: malformed certificate request: {e}"))
}

use x509_parser::prelude::FromDer;

fn validate_signer_name(name: &str, errs: &mut Vec<FieldError>) {
    const FIELD: &str = "spec.signerName";
    if name.is_empty() {
        errs.push(FieldError::required(FIELD, ""));
        return;
    }
    let Some((domain, path)) = name.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        errs.push(FieldError::invalid(
            FIELD,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    for label in domain.split('.') {
        if let Some(msg) = crate::api::validation::strings::is_dns1123_label(label).first() {
            errs.push(FieldError::invalid(
                FIELD,
                domain,
                &format!("validating label {label:?}: {msg}"),
            ));
            break;
        }
    }
    if domain.split('.').count() < 2 {
        errs.push(FieldError::invalid(
            FIELD,
            domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for label in path.split('.') {
        if let Some(msg) = crate::api::validation::strings::is_dns1123_subdomain(label).first() {
            errs.push(FieldError::invalid(
                FIELD,
                path,
                &format!("validating label {label:?}: {msg}"),
            ));
            break;
        }
    }
}

fn validate_csr(csr: &Value, errs: &mut Vec<FieldError>) {
    let spec = &csr["spec"];
    let request = spec["request"].as_str().unwrap_or_default();
    if let Err(e) = parse_request(request) {
        errs.push(FieldError::invalid("spec.request", request, &e));
    }
    let usages = spec["usages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if usages.is_empty() {
        errs.push(FieldError::required("spec.usages", ""));
    }
    let mut seen = Vec::new();
    for (i, u) in usages.iter().enumerate() {
        let u = u.as_str().unwrap_or_default();
        if !VALID_USAGES.contains(&u) {
            errs.push(FieldError::not_supported(
                &format!("spec.usages[{i}]"),
                u,
                VALID_USAGES,
            ));
        }
        if seen.contains(&u) {
            errs.push(FieldError::duplicate(&format!("spec.usages[{i}]"), u));
        }
        seen.push(u);
    }
    let signer = spec["signerName"].as_str().unwrap_or_default();
    if signer == "kubernetes.io/legacy-unknown" {
        errs.push(FieldError::invalid(
            "spec.signerName",
            signer,
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        validate_signer_name(signer, errs);
    }
    if let Some(secs) = spec["expirationSeconds"].as_i64() {
        if secs < 600 {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                secs,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    validate_conditions(csr, errs);
    if let Some(cert) = csr["status"]["certificate"]
        .as_str()
        .filter(|c| !c.is_empty())
    {
        if let Err(e) = validate_certificate(cert) {
            errs.push(FieldError::invalid(
                "status.certificate",
                crate::api::validation::BadValue::Raw("\"<certificate data>\"".into()),
                &e,
            ));
        }
    }
}

fn validate_certificate(b64: &str) -> Result<(), String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("illegal base64 data: {e}"))?;
    let mut rest: &[u8] = &data;
    let mut blocks = 0;
    while let Ok((r, pem)) = x509_parser::pem::parse_x509_pem(rest) {
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                pem.label
            ));
        }
        pem.parse_x509()
            .map_err(|e| format!("x509: malformed certificate: {e}"))?;
        blocks += 1;
        rest = r;
        if rest.iter().all(u8::is_ascii_whitespace) {
            break;
        }
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

fn validate_conditions(csr: &Value, errs: &mut Vec<FieldError>) {
    const PATH: &str = "status.conditions";
    let (mut approved, mut denied) = (false, false);
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conditions(csr).iter().enumerate() {
        let t = c["type"].as_str().unwrap_or_default();
        if t.is_empty() {
            errs.push(FieldError::required(&format!("{PATH}[{i}].type"), ""));
        }
        let status = c["status"].as_str().unwrap_or_default();
        let true_only = matches!(t, APPROVED | DENIED | FAILED);
        let allowed: &[&str] = if true_only {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if status.is_empty() {
            errs.push(FieldError::required(&format!("{PATH}[{i}].status"), ""));
        } else if !allowed.contains(&status) {
            errs.push(FieldError::not_supported(
                &format!("{PATH}[{i}].status"),
                status,
                allowed,
            ));
        }
        match t {
            APPROVED => {
                approved = true;
                if denied {
                    errs.push(exclusive(t));
                }
            }
            DENIED => {
                denied = true;
                if approved {
                    errs.push(exclusive(t));
                }
            }
            _ => {}
        }
        if seen.contains(&t) {
            errs.push(FieldError::duplicate(&format!("{PATH}[{i}].type"), t));
        }
        seen.push(t);
    }
}

fn exclusive(t: &str) -> FieldError {
    FieldError::invalid(
        "status.conditions",
        t,
        "Approved and Denied conditions are mutually exclusive",
    )
}

/// Upstream's `validateCertificateSigningRequestUpdate` rules for each write path.
fn validate_csr_update(
    sub: Option<Subresource>,
    old: &Value,
    new: &Value,
    errs: &mut Vec<FieldError>,
) {
    for t in [APPROVED, DENIED, FAILED] {
        if of_type(new, t).len() < of_type(old, t).len() {
            errs.push(FieldError::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if sub != Some(Subresource::Approval) {
        for t in [APPROVED, DENIED] {
            let (o, n) = (of_type(old, t), of_type(new, t));
            if n.len() > o.len() {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    &format!("updates may not add a condition of type {t:?}"),
                ));
            } else if n.len() == o.len() && n != o {
                errs.push(FieldError::forbidden(
                    "status.conditions",
                    &format!("updates may not modify a condition of type {t:?}"),
                ));
            }
        }
    }
    let (oc, nc) = (
        old["status"]["certificate"].as_str().unwrap_or_default(),
        new["status"]["certificate"].as_str().unwrap_or_default(),
    );
    if oc != nc {
        if sub != Some(Subresource::Status) {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if !oc.is_empty() {
            errs.push(FieldError::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> Value {
        json!({"metadata": {"name": "c"}, "spec": {"signerName": "example.com/s",
            "usages": ["client auth"], "request": "", "username": "mallory"}, "status": {}})
    }

    fn update(sub: Option<Subresource>, old: &Value, mut new: Value) -> (Value, Vec<String>) {
        match sub {
            Some(Subresource::Approval) => approval_update(Subresource::Approval, old, &mut new),
            Some(Subresource::Status) => status_update(old, &mut new),
            _ => keep_spec_and_status(old, &mut new),
        }
        let mut errs = Vec::new();
        validate_conditions(&new, &mut errs);
        let errs: Vec<String> = errs
            .into_iter()
            .chain(CERTIFICATE_SIGNING_REQUEST.validate_update(sub, old, &new))
            .map(|e| e.to_string())
            .collect();
        (new, errs)
    }

    #[test]
    fn the_requester_is_set_by_the_server() {
        let mut c = csr();
        clear_requester(&mut c);
        record_requester(
            &mut c,
            &Requester {
                name: "system:admin".into(),
                groups: vec!["system:masters".into()],
                ..Requester::default()
            },
        );
        assert_eq!(c["spec"]["username"], "system:admin");
        assert_eq!(c["spec"]["groups"], json!(["system:masters"]));
        assert!(c["spec"].get("uid").is_none());
    }

    #[test]
    fn approval_changes_only_conditions_and_never_both_approved_and_denied() {
        let old = csr();
        let mut new = old.clone();
        new["spec"]["signerName"] = json!("example.com/other");
        new["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True"}], "certificate": "eA=="});
        let (approved, errs) = update(Some(Subresource::Approval), &old, new);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(approved["spec"]["signerName"], "example.com/s");
        assert!(approved["status"].get("certificate").is_none());
        assert!(approved["status"]["conditions"][0]["lastUpdateTime"].is_string());

        let mut both = approved.clone();
        both["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "Denied", "status": "True"}));
        let (_, errs) = update(Some(Subresource::Approval), &approved, both);
        assert_eq!(errs, vec!["status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"]);

        let mut removed = approved.clone();
        removed["status"]["conditions"] = json!([]);
        let (_, errs) = update(Some(Subresource::Approval), &approved, removed);
        assert_eq!(errs, vec!["status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""]);
    }

    #[test]
    fn status_writes_set_the_certificate_once_and_never_approve() {
        let old = csr();
        let mut new = old.clone();
        new["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        let (_, errs) = update(Some(Subresource::Status), &old, new);
        assert_eq!(errs, vec!["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]);

        let mut issued = old.clone();
        issued["status"] = json!({"certificate": "Y2VydA=="});
        let (issued, errs) = update(Some(Subresource::Status), &old, issued);
        assert!(errs.is_empty(), "{errs:?}");
        let mut again = issued.clone();
        again["status"]["certificate"] = json!("b3RoZXI=");
        let (_, errs) = update(Some(Subresource::Status), &issued, again);
        assert_eq!(errs, vec!["status.certificate: Forbidden: updates may not modify existing certificate content"]);

        // The main resource keeps spec and status.
        let mut main = issued.clone();
        main["status"] = json!({});
        let (kept, errs) = update(None, &issued, main);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(kept["status"]["certificate"], "Y2VydA==");
    }

    #[test]
    fn requests_must_be_pem_csrs_with_a_valid_signer() {
        let mut errs = Vec::new();
        validate_csr(&csr(), &mut errs);
        assert_eq!(
            errs[0].to_string(),
            "spec.request: Invalid value: \"\": PEM block type must be CERTIFICATE REQUEST"
        );
        let mut errs = Vec::new();
        validate_signer_name("nodomain", &mut errs);
        assert_eq!(errs[0].to_string(), "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'");
    }
}
