//! networking.k8s.io (Ingresses, IngressClasses, NetworkPolicies, IPAddresses,
//! ServiceCIDRs) and discovery.k8s.io EndpointSlices: defaults, validation and printers.
//! The API server keeps the default `kubernetes` ServiceCIDR ([`default_service_cidr`]).

use super::{immutable, Printing, Strategy};
use crate::api::defaults::groups;
use crate::api::table::printers;
use crate::api::validation::FieldError;
use serde_json::Value;

pub static INGRESS: Strategy = Strategy {
    kind: "Ingress",
    printer: Printing::Builtin(&printers::INGRESS),
    ..Strategy::GENERIC
};

pub static INGRESS_CLASS: Strategy = Strategy {
    kind: "IngressClass",
    defaults: groups::ingress_class,
    printer: Printing::Builtin(&printers::INGRESS_CLASS),
    ..Strategy::GENERIC
};

pub static NETWORK_POLICY: Strategy = Strategy {
    kind: "NetworkPolicy",
    defaults: groups::network_policy,
    printer: Printing::Builtin(&printers::NETWORK_POLICY),
    ..Strategy::GENERIC
};

pub static ENDPOINT_SLICE: Strategy = Strategy {
    kind: "EndpointSlice",
    defaults: groups::endpoint_slice,
    printer: Printing::Builtin(&printers::ENDPOINT_SLICE),
    ..Strategy::GENERIC
};

pub static IP_ADDRESS: Strategy = Strategy {
    kind: "IPAddress",
    name_rule: ip_address_name,
    validate: validate_ip_address,
    validate_update: ip_address_update,
    printer: Printing::Builtin(&printers::IP_ADDRESS),
    ..Strategy::GENERIC
};

pub static SERVICE_CIDR: Strategy = Strategy {
    kind: "ServiceCIDR",
    validate: validate_service_cidr,
    validate_update: service_cidr_update,
    printer: Printing::Builtin(&printers::SERVICE_CIDR),
    ..Strategy::GENERIC
};

/// An IPAddress is named by its address, in canonical form.
fn ip_address_name(name: &str, _prefix: bool) -> Vec<String> {
    match name.parse::<std::net::IpAddr>() {
        Err(_) => vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
        Ok(ip) if ip.to_string() != name => {
            vec![format!("must be in canonical form ({:?})", ip.to_string())]
        }
        Ok(_) => Vec::new(),
    }
}

fn validate_ip_address(ip: &Value, errs: &mut Vec<FieldError>) {
    let Some(p) = ip["spec"].get("parentRef").filter(|v| !v.is_null()) else {
        errs.push(FieldError::required("spec.parentRef", ""));
        return;
    };
    for f in ["resource", "name"] {
        if p[f].as_str().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(&format!("spec.parentRef.{f}"), ""));
        }
    }
}

fn ip_address_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["spec"]["parentRef"] != new["spec"]["parentRef"] {
        errs.push(immutable(
            "spec.parentRef",
            &new["spec"]["parentRef"],
            "field is immutable",
        ));
    }
}

/// The address family of a CIDR in canonical form, or the error upstream reports.
fn cidr_family(cidr: &str) -> Result<bool, String> {
    const MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
    let (ip, bits) = cidr.split_once('/').ok_or(MSG)?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| MSG)?;
    let bits: u32 = bits.parse().map_err(|_| MSG)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(MSG.into());
    }
    Ok(ip.is_ipv4())
}

fn validate_cidrs(cidrs: &[Value], errs: &mut Vec<FieldError>) {
    const PATH: &str = "spec.cidrs";
    if cidrs.is_empty() {
        errs.push(FieldError::required(PATH, "at least one CIDR required"));
        return;
    }
    if cidrs.len() > 2 {
        errs.push(FieldError::invalid(
            PATH,
            &Value::from(cidrs.to_vec()),
            "may only hold up to 2 values",
        ));
        return;
    }
    let mut families = Vec::new();
    for (i, c) in cidrs.iter().enumerate() {
        let c = c.as_str().unwrap_or_default();
        match cidr_family(c) {
            Ok(v4) => families.push(v4),
            Err(msg) => errs.push(FieldError::invalid(&format!("{PATH}[{i}]"), c, &msg)),
        }
    }
    if families.len() == 2 && families[0] == families[1] {
        errs.push(FieldError::invalid(
            PATH,
            &Value::from(cidrs.to_vec()),
            "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
        ));
    }
}

fn cidrs_of(v: &Value) -> &[Value] {
    v["spec"]["cidrs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn validate_service_cidr(sc: &Value, errs: &mut Vec<FieldError>) {
    validate_cidrs(cidrs_of(sc), errs);
}

/// CIDRs never change; a single-family ServiceCIDR may gain its second family.
fn service_cidr_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let (o, n) = (cidrs_of(old), cidrs_of(new));
    match (o.len(), n.len()) {
        (a, b) if a == b => {
            for (i, (x, y)) in o.iter().zip(n).enumerate() {
                if x != y {
                    errs.push(immutable(
                        &format!("spec.cidrs[{i}]"),
                        y,
                        "field is immutable",
                    ));
                }
            }
        }
        (1, 2) => {
            if o[0] != n[0] {
                errs.push(immutable("spec.cidrs[0]", &n[0], "field is immutable"));
            }
        }
        _ => errs.push(immutable(
            "spec.cidrs",
            &new["spec"]["cidrs"],
            "field is immutable",
        )),
    }
}

/// The default ServiceCIDR upstream's apiserver keeps, from the service range flag.
pub fn default_service_cidr(cidrs: &[String], now: &str) -> Value {
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": "kubernetes"},
        "spec": {"cidrs": cidrs},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "",
            "message": "Kubernetes Service CIDR is ready", "lastTransitionTime": now}]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ip_addresses_are_named_canonically_and_need_a_parent() {
        assert!(ip_address_name("10.0.0.1", false).is_empty());
        assert_eq!(
            ip_address_name("2001:db8:0::1", false),
            vec!["must be in canonical form (\"2001:db8::1\")"]
        );
        assert_eq!(ip_address_name("nope", false).len(), 1);
        let errs = IP_ADDRESS.validate_create(
            &json!({"metadata": {"name": "10.0.0.1"}, "spec": {}}),
            false,
        );
        assert_eq!(errs[0].to_string(), "spec.parentRef: Required value");
    }

    #[test]
    fn service_cidrs_validate_and_only_grow_a_second_family() {
        let sc = json!({"metadata": {"name": "a"}, "spec": {"cidrs": ["10.43.0.0/16"]}});
        assert!(SERVICE_CIDR.validate_create(&sc, false).is_empty());
        let bad =
            json!({"metadata": {"name": "a"}, "spec": {"cidrs": ["10.0.0.0/8", "10.1.0.0/16"]}});
        assert_eq!(SERVICE_CIDR.validate_create(&bad, false).len(), 1);
        let grown =
            json!({"metadata": {"name": "a"}, "spec": {"cidrs": ["10.43.0.0/16", "fd00::/108"]}});
        assert!(SERVICE_CIDR.validate_update(None, &sc, &grown).is_empty());
        let changed = json!({"metadata": {"name": "a"}, "spec": {"cidrs": ["10.44.0.0/16"]}});
        assert_eq!(
            SERVICE_CIDR.validate_update(None, &sc, &changed)[0].field,
            "spec.cidrs[0]"
        );
    }
}
