//! Services and Endpoints: service defaults and validation (DNS-1035 names), the
//! allocated cluster IP that an update keeps and may not change, and the empty
//! load-balancer status a new Service starts with.

use super::{immutable, set_status, Bookkeeping, Printing, Strategy};
use crate::api::defaults::core_v1;
use crate::api::table::printers;
use crate::api::validation::core_v1::validate_service;
use crate::api::validation::strings::name_is_dns1035_label;
use crate::api::validation::FieldError;
use serde_json::{json, Value};

pub static SERVICE: Strategy = Strategy {
    kind: "Service",
    defaults: core_v1::service,
    name_rule: name_is_dns1035_label,
    validate: validate_service,
    validate_update: cluster_ip_unchanged,
    initial_status: |svc| set_status(svc, json!({"loadBalancer": {}})),
    prepare_for_update: keep_cluster_ip,
    printer: Printing::Builtin(&printers::SERVICE),
    bookkeeping: Bookkeeping::ClusterIp,
    ..Strategy::GENERIC
};

pub static ENDPOINTS: Strategy = Strategy {
    kind: "Endpoints",
    defaults: core_v1::endpoints,
    printer: Printing::Builtin(&printers::ENDPOINTS),
    ..Strategy::GENERIC
};

/// An update without clusterIP keeps the allocated one (and its clusterIPs).
fn keep_cluster_ip(old: &Value, new: &mut Value) {
    if new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) {
        new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
        if let Some(ips) = old["spec"].get("clusterIPs") {
            new["spec"]["clusterIPs"] = ips.clone();
        }
    }
}

fn cluster_ip_unchanged(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let ip = &new["spec"]["clusterIP"];
    if ip
        .as_str()
        .is_some_and(|ip| Some(ip) != old["spec"]["clusterIP"].as_str())
    {
        errs.push(immutable(
            "spec.clusterIPs[0]",
            ip,
            "may not change once set",
        ));
    }
}
