//! Pod spec checks, used for Pods and for every pod template (workloads, Jobs, CronJobs).
//!
//! Invariant: covers what users commonly get wrong (containers, names, images, ports,
//! volume mounts, env names, policies) with upstream's paths and wording; anything not
//! checked here is accepted.

use std::collections::BTreeSet;

use serde_json::Value;

use super::field::{FieldError, FieldPath};
use super::json::{arr_of, field, int_of, obj_of, str_of};
use super::meta::{validate_annotations, validate_labels};
use super::strings::{is_dns1123_label, is_valid_port_name, is_valid_port_num};

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn validate_dns1123_label(value: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for msg in is_dns1123_label(value) {
        errs.push(FieldError::invalid(path.as_str(), value, &msg));
    }
}

/// Upstream's `ValidatePortNumOrName` for an int-or-string port (`targetPort`, probe ports).
pub(super) fn validate_port_num_or_name(
    port: Option<&Value>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    match port {
        Some(Value::String(name)) => {
            for msg in is_valid_port_name(name) {
                errs.push(FieldError::invalid(path.as_str(), name.as_str(), &msg));
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or_default();
            for msg in is_valid_port_num(n) {
                errs.push(FieldError::invalid(path.as_str(), n, &msg));
            }
        }
        None => {}
    }
}

/// A port `protocol`: required, one of SCTP/TCP/UDP.
pub(super) fn validate_protocol(proto: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if proto.is_empty() {
        errs.push(FieldError::required(path.as_str(), ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(path.as_str(), proto, PROTOCOLS));
    }
}

fn validate_container_ports(ports: &[Value], path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let p = Some(p);
        let idx = path.index(i);
        let name = str_of(p, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(idx.child("name").as_str(), name, &msg));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(idx.child("name").as_str(), name));
            }
        }
        match int_of(p, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(
                idx.child("containerPort").as_str(),
                "",
            )),
            n => {
                for msg in is_valid_port_num(n) {
                    errs.push(FieldError::invalid(
                        idx.child("containerPort").as_str(),
                        n,
                        &msg,
                    ));
                }
            }
        }
        if let Some(h) = int_of(p, "hostPort").filter(|h| *h != 0) {
            for msg in is_valid_port_num(h) {
                errs.push(FieldError::invalid(idx.child("hostPort").as_str(), h, &msg));
            }
        }
        validate_protocol(str_of(p, "protocol"), &idx.child("protocol"), errs);
    }
}

fn validate_env(env: &[Value], path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, e) in env.iter().enumerate() {
        let name = str_of(Some(e), "name");
        let p = path.index(i).child("name");
        if name.is_empty() {
            errs.push(FieldError::required(p.as_str(), ""));
        } else if name
            .chars()
            .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '=')
        {
            errs.push(FieldError::invalid(
                p.as_str(),
                name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: &[Value],
    volumes: &BTreeSet<&str>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for (i, m) in mounts.iter().enumerate() {
        let m = Some(m);
        let idx = path.index(i);
        let name = str_of(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(idx.child("name").as_str(), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(idx.child("name").as_str(), name));
        }
        if str_of(m, "mountPath").is_empty() {
            errs.push(FieldError::required(idx.child("mountPath").as_str(), ""));
        }
    }
}

fn validate_pull_policy(policy: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    const POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
    if policy.is_empty() {
        errs.push(FieldError::required(path.as_str(), ""));
    } else if !POLICIES.contains(&policy) {
        errs.push(FieldError::not_supported(path.as_str(), policy, POLICIES));
    }
}

fn validate_containers<'a>(
    containers: &'a [Value],
    all_names: &mut BTreeSet<&'a str>,
    volumes: &BTreeSet<&str>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for (i, c) in containers.iter().enumerate() {
        let c = Some(c);
        let idx = path.index(i);
        let name = str_of(c, "name");
        if name.is_empty() {
            errs.push(FieldError::required(idx.child("name").as_str(), ""));
        } else {
            validate_dns1123_label(name, &idx.child("name"), errs);
        }
        if str_of(c, "image").is_empty() {
            errs.push(FieldError::required(idx.child("image").as_str(), ""));
        }
        validate_container_ports(arr_of(c, "ports"), &idx.child("ports"), errs);
        validate_env(arr_of(c, "env"), &idx.child("env"), errs);
        validate_volume_mounts(
            arr_of(c, "volumeMounts"),
            volumes,
            &idx.child("volumeMounts"),
            errs,
        );
        validate_pull_policy(
            str_of(c, "imagePullPolicy"),
            &idx.child("imagePullPolicy"),
            errs,
        );
        if !name.is_empty() && !all_names.insert(name) {
            errs.push(FieldError::duplicate(idx.child("name").as_str(), name));
        }
    }
}

/// Fields an ephemeral container may not set (upstream's allow-list, inverted), with the
/// names its errors use.
const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

/// A value Go would see as its zero value (absent, null, false, "", 0, {} or []).
fn is_zero(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
    }
}

/// Upstream's `validateEphemeralContainers`: the common container checks, names unique
/// among all containers, a target that is a regular or init container, and none of the
/// fields that make no sense for a debugging container.
fn validate_ephemeral_containers<'a>(
    containers: &'a [Value],
    targets: &BTreeSet<&str>,
    all_names: &mut BTreeSet<&'a str>,
    volumes: &BTreeSet<&str>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    validate_containers(containers, all_names, volumes, path, errs);
    for (i, c) in containers.iter().enumerate() {
        let idx = path.index(i);
        let target = str_of(Some(c), "targetContainerName");
        if !target.is_empty() && !targets.contains(target) {
            errs.push(FieldError::not_found(
                idx.child("targetContainerName").as_str(),
                target,
            ));
        }
        for f in EPHEMERAL_FORBIDDEN {
            if !is_zero(c.get(*f)) {
                errs.push(FieldError::forbidden(
                    idx.child(f).as_str(),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, m) in arr_of(Some(c), "volumeMounts").iter().enumerate() {
            for f in ["subPath", "subPathExpr"] {
                if !str_of(Some(m), f).is_empty() {
                    errs.push(FieldError::forbidden(
                        idx.child("volumeMounts").index(j).child(f).as_str(),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

/// Upstream's `validateResizePolicy`: cpu or memory, each once, NotRequired or
/// RestartContainer, and only NotRequired for a pod that is never restarted.
fn validate_resize_policy(
    policies: &[Value],
    restart_policy: &str,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mut seen = BTreeSet::new();
    for (i, p) in policies.iter().enumerate() {
        let idx = path.index(i);
        let name = str_of(Some(p), "resourceName");
        match name {
            "cpu" | "memory" => {
                if !seen.insert(name) {
                    errs.push(FieldError::duplicate(idx.as_str(), name));
                }
            }
            "" => errs.push(FieldError::required(idx.as_str(), "")),
            _ => errs.push(FieldError::not_supported(
                idx.as_str(),
                name,
                &["cpu", "memory"],
            )),
        }
        let policy = str_of(Some(p), "restartPolicy");
        match policy {
            "NotRequired" => {}
            "RestartContainer" if restart_policy == "Never" => {
                errs.push(FieldError::invalid(
                    idx.as_str(),
                    policy,
                    "must be 'NotRequired' when pod `restartPolicy` is 'Never'",
                ));
            }
            "RestartContainer" => {}
            "" => errs.push(FieldError::required(idx.as_str(), "")),
            _ => errs.push(FieldError::not_supported(
                idx.as_str(),
                policy,
                &["NotRequired", "RestartContainer"],
            )),
        }
    }
}

/// Upstream's `ValidatePodSpec` (the commonly hit parts). `spec` is at `path`.
pub(super) fn validate_pod_spec(
    spec: Option<&Value>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mut volumes = BTreeSet::new();
    for (i, v) in arr_of(spec, "volumes").iter().enumerate() {
        let name_path = path.child("volumes").index(i).child("name");
        let name = str_of(Some(v), "name");
        if name.is_empty() {
            errs.push(FieldError::required(name_path.as_str(), ""));
        } else {
            validate_dns1123_label(name, &name_path, errs);
        }
        if !volumes.insert(name) {
            errs.push(FieldError::duplicate(name_path.as_str(), name));
        }
        if let Some(image) = v.get("image").filter(|i| i.is_object()) {
            let at = path.child("volumes").index(i).child("image");
            if str_of(Some(image), "reference").is_empty() {
                errs.push(FieldError::required(at.child("reference").as_str(), ""));
            }
            validate_pull_policy(
                str_of(Some(image), "pullPolicy"),
                &at.child("pullPolicy"),
                errs,
            );
        }
    }
    let containers = arr_of(spec, "containers");
    let mut names = BTreeSet::new();
    if containers.is_empty() {
        errs.push(FieldError::required(path.child("containers").as_str(), ""));
    } else {
        validate_containers(
            containers,
            &mut names,
            &volumes,
            &path.child("containers"),
            errs,
        );
    }
    validate_containers(
        arr_of(spec, "initContainers"),
        &mut names,
        &volumes,
        &path.child("initContainers"),
        errs,
    );
    let targets: BTreeSet<&str> = names.clone();
    validate_ephemeral_containers(
        arr_of(spec, "ephemeralContainers"),
        &targets,
        &mut names,
        &volumes,
        &path.child("ephemeralContainers"),
        errs,
    );
    let restart_policy = str_of(spec, "restartPolicy");
    for (i, c) in arr_of(spec, "containers").iter().enumerate() {
        validate_resize_policy(
            arr_of(Some(c), "resizePolicy"),
            restart_policy,
            &path.child("containers").index(i).child("resizePolicy"),
            errs,
        );
    }
    const RESTART: &[&str] = &["Always", "OnFailure", "Never"];
    let restart = str_of(spec, "restartPolicy");
    if restart.is_empty() {
        errs.push(FieldError::required(
            path.child("restartPolicy").as_str(),
            "",
        ));
    } else if !RESTART.contains(&restart) {
        errs.push(FieldError::not_supported(
            path.child("restartPolicy").as_str(),
            restart,
            RESTART,
        ));
    }
    validate_sysctls(
        field(field(spec, "securityContext"), "sysctls"),
        &path.child("securityContext").child("sysctls"),
        errs,
    );
    const DNS: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    let dns = str_of(spec, "dnsPolicy");
    if dns.is_empty() {
        errs.push(FieldError::required(path.child("dnsPolicy").as_str(), ""));
    } else if !DNS.contains(&dns) {
        errs.push(FieldError::not_supported(
            path.child("dnsPolicy").as_str(),
            dns,
            DNS,
        ));
    }
}

/// Upstream's sysctl name format (dots or slashes between segments).
const SYSCTL_REGEX: &str =
    "^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

/// Whether `name` matches [`SYSCTL_REGEX`] and has at most 253 characters.
fn is_valid_sysctl_name(name: &str) -> bool {
    let segment_ok = |seg: &str| {
        let b = seg.as_bytes();
        let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty()
            && edge(b[0])
            && edge(b[b.len() - 1])
            && b.iter().all(|&c| edge(c) || c == b'-' || c == b'_')
    };
    name.len() <= 253 && name.split(['.', '/']).all(segment_ok)
}

/// `spec.securityContext.sysctls`: names well formed and not repeated.
fn validate_sysctls(sysctls: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, s) in sysctls
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name_path = path.index(i).child("name");
        let name = str_of(Some(s), "name");
        if name.is_empty() {
            errs.push(FieldError::required(name_path.as_str(), ""));
        } else if !is_valid_sysctl_name(name) {
            errs.push(FieldError::invalid(
                name_path.as_str(),
                name,
                &format!("must have at most 253 characters and match regex {SYSCTL_REGEX}"),
            ));
        } else if !seen.insert(name) {
            errs.push(FieldError::duplicate(name_path.as_str(), name));
        }
    }
}

/// Checks only a real Pod gets (not templates).
pub(crate) fn validate_pod(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    validate_pod_spec(spec, &path, errs);
    for (i, c) in arr_of(spec, "containers").iter().enumerate() {
        let image = str_of(Some(c), "image");
        if image.trim() != image {
            errs.push(FieldError::invalid(
                path.child("containers").index(i).child("image").as_str(),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
    }
}

/// Upstream's `ValidatePodTemplateSpec`; `path` is the template (e.g. `spec.template`).
/// Upstream reports template label/annotation errors at `<path>.labels`, without `metadata`.
pub(super) fn validate_pod_template(
    template: Option<&Value>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let meta = field(template, "metadata");
    validate_labels(obj_of(meta, "labels"), &path.child("labels"), errs);
    validate_annotations(
        obj_of(meta, "annotations"),
        &path.child("annotations"),
        errs,
    );
    validate_pod_spec(field(template, "spec"), &path.child("spec"), errs);
    if !arr_of(field(template, "spec"), "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers").as_str(),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// Upstream's `ValidatePodCreate`: ephemeral containers are added only through the
/// `ephemeralcontainers` subresource.
pub(crate) fn validate_pod_create(obj: &Value, errs: &mut Vec<FieldError>) {
    if !arr_of(field(Some(obj), "spec"), "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
}
