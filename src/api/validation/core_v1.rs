//! Service, ConfigMap and Secret checks.
//!
//! Invariant: sizes are measured as upstream does (decoded bytes of Secret data, string bytes
//! of ConfigMap data, keys excluded) against the 1 MiB object limit.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::field::{BadValue, FieldError, FieldPath};
use super::json::{arr_of, field, int_of, obj_of, str_of};
use super::pod::{validate_port_num_or_name, validate_protocol};
use super::strings::{
    is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_valid_port_num,
};

/// Upstream's `MaxSecretSize`, also used for ConfigMaps.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

pub(crate) fn validate_service(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    let ty = str_of(spec, "type");
    let headless = str_of(spec, "clusterIP") == "None";
    let ports = arr_of(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(path.child("ports").as_str(), ""));
    }
    if ty == "ExternalName" {
        let cname = str_of(spec, "externalName");
        let cname = cname.strip_suffix('.').unwrap_or(cname);
        if cname.is_empty() {
            errs.push(FieldError::required(
                path.child("externalName").as_str(),
                "",
            ));
        } else {
            for msg in is_dns1123_subdomain(cname) {
                errs.push(FieldError::invalid(
                    path.child("externalName").as_str(),
                    cname,
                    &msg,
                ));
            }
        }
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let p = Some(p);
        let pp = path.child("ports").index(i);
        let name = str_of(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(pp.child("name").as_str(), ""));
        } else if !name.is_empty() {
            for msg in is_dns1123_label(name) {
                errs.push(FieldError::invalid(pp.child("name").as_str(), name, &msg));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(pp.child("name").as_str(), name));
            }
        }
        let port = int_of(p, "port").unwrap_or(0);
        for msg in is_valid_port_num(port) {
            errs.push(FieldError::invalid(pp.child("port").as_str(), port, &msg));
        }
        validate_protocol(str_of(p, "protocol"), &pp.child("protocol"), errs);
        validate_port_num_or_name(field(p, "targetPort"), &pp.child("targetPort"), errs);
    }
    // Two ports may not share (protocol, port); upstream prints its internal ServicePort.
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = str_of(Some(p), "protocol");
        let port = int_of(Some(p), "port").unwrap_or(0);
        if !seen.insert((proto, port)) {
            errs.push(FieldError::duplicate(
                path.child("ports").index(i).as_str(),
                BadValue::Raw(format!(
                    "{{\"Name\":\"\",\"Protocol\":{},\"AppProtocol\":null,\"Port\":{port},\"TargetPort\":{{\"Type\":0,\"IntVal\":0,\"StrVal\":\"\"}},\"NodePort\":0}}",
                    serde_json::to_string(proto).unwrap_or_default()
                )),
            ));
        }
    }
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            path.child("type").as_str(),
            ty,
            TYPES,
        ));
    }
    const AFFINITY: &[&str] = &["ClientIP", "None"];
    let affinity = str_of(spec, "sessionAffinity");
    if !AFFINITY.contains(&affinity) {
        errs.push(FieldError::not_supported(
            path.child("sessionAffinity").as_str(),
            affinity,
            AFFINITY,
        ));
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_of(Some(p), "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    path.child("ports").index(i).child("nodePort").as_str(),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
}

fn validate_data_keys(
    data: Option<&Map<String, Value>>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for key in data.into_iter().flatten().map(|(k, _)| k) {
        for msg in is_config_map_key(key) {
            errs.push(FieldError::invalid(
                path.key(key).as_str(),
                key.as_str(),
                &msg,
            ));
        }
    }
}

/// Length of base64 text once decoded (what upstream measures for `data`/`binaryData`).
fn decoded_len(b64: &str) -> usize {
    let trimmed = b64.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

pub(crate) fn validate_config_map(obj: &Value, errs: &mut Vec<FieldError>) {
    let data = obj_of(Some(obj), "data");
    let binary = obj_of(Some(obj), "binaryData");
    validate_data_keys(data, &FieldPath::new("data"), errs);
    validate_data_keys(binary, &FieldPath::new("binaryData"), errs);
    let mut total = 0;
    for (k, v) in binary.into_iter().flatten() {
        if data.is_some_and(|d| d.contains_key(k)) {
            errs.push(FieldError::invalid(
                FieldPath::new("binaryData").key(k).as_str(),
                k.as_str(),
                "duplicate of key present in data",
            ));
        }
        total += decoded_len(v.as_str().unwrap_or_default());
    }
    total += data
        .into_iter()
        .flatten()
        .map(|(_, v)| v.as_str().map(str::len).unwrap_or_default())
        .sum::<usize>();
    if total > MAX_SECRET_SIZE {
        // An empty path means "the whole object", as upstream reports it.
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
}

pub(crate) fn validate_secret(obj: &Value, errs: &mut Vec<FieldError>) {
    let data_path = FieldPath::new("data");
    let data = obj_of(Some(obj), "data");
    // The API server folds stringData into data before validating, so report it there.
    let string_data = obj_of(Some(obj), "stringData");
    validate_data_keys(data, &data_path, errs);
    validate_data_keys(
        string_data
            .map(|sd| {
                // Keys also present in data were already checked.
                let mut only = sd.clone();
                only.retain(|k, _| !data.is_some_and(|d| d.contains_key(k)));
                only
            })
            .as_ref(),
        &data_path,
        errs,
    );
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        if !string_data.is_some_and(|sd| sd.contains_key(k)) {
            total += decoded_len(v.as_str().unwrap_or_default());
        }
    }
    total += string_data
        .into_iter()
        .flatten()
        .map(|(_, v)| v.as_str().map(str::len).unwrap_or_default())
        .sum::<usize>();
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(data_path.as_str(), MAX_SECRET_SIZE));
    }
    let has = |k: &str| {
        data.is_some_and(|d| d.contains_key(k)) || string_data.is_some_and(|d| d.contains_key(k))
    };
    let mut require = |k: &str| {
        if !has(k) {
            errs.push(FieldError::required(data_path.key(k).as_str(), ""));
        }
    };
    match str_of(Some(obj), "type") {
        "kubernetes.io/dockerconfigjson" => require(".dockerconfigjson"),
        "kubernetes.io/dockercfg" => require(".dockercfg"),
        "kubernetes.io/tls" => {
            require("tls.crt");
            require("tls.key");
        }
        "kubernetes.io/ssh-auth" => require("ssh-privatekey"),
        // Either key may be empty, but one of them must be present.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require("username");
            require("password");
        }
        "kubernetes.io/service-account-token" => {
            let annotations = obj_of(field(Some(obj), "metadata"), "annotations");
            if annotations
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
            {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        _ => {}
    }
}
