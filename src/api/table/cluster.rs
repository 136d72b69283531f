//! Small cluster-level printers: Lease, PodDisruptionBudget, PriorityClass,
//! RuntimeClass, CertificateSigningRequest and the admission webhook
//! configurations.
//!
//! Invariant: each row has the upstream columns and placeholders
//! (`N/A`, `<none>`) for the same object.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::duration::{human_duration, since};
use super::fields::{created, get, int_at, list_at, n, name, opt_int, opt_str, s, str_at};
use super::{col, no_conditions, Spec, AGE, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

pub static LEASE: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Holder",
            "string",
            "Identity of the current holder of the lease.",
        ),
        AGE,
    ],
    cells: |lease, now| {
        vec![
            s(name(lease)),
            s(str_at(lease, &["spec", "holderIdentity"])),
            age(lease, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

/// An IntOrString as upstream prints it, `N/A` when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::Number(num)) => num.to_string(),
        Some(Value::String(text)) => text.clone(),
        _ => "N/A".to_string(),
    }
}

pub static POD_DISRUPTION_BUDGET: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Min Available",
            "string",
            "Pods that must stay available during voluntary disruptions.",
        ),
        col(
            "Max Unavailable",
            "string",
            "Pods that may be unavailable during voluntary disruptions.",
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Pods that may be disrupted right now.",
        ),
        AGE,
    ],
    cells: |pdb, now| {
        vec![
            s(name(pdb)),
            s(int_or_string(get(pdb, &["spec", "minAvailable"]))),
            s(int_or_string(get(pdb, &["spec", "maxUnavailable"]))),
            n(int_at(pdb, &["status", "disruptionsAllowed"])),
            age(pdb, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static PRIORITY_CLASS: Spec = Spec {
    columns: &[
        NAME,
        col("Value", "integer", "Priority given to pods of this class."),
        col(
            "Global-Default",
            "boolean",
            "Whether pods without a class get this one.",
        ),
        AGE,
        col(
            "PreemptionPolicy",
            "string",
            "Whether pods of this class may preempt lower-priority pods.",
        ),
    ],
    cells: |pc, now| {
        vec![
            s(name(pc)),
            n(int_at(pc, &["value"])),
            Value::Bool(
                get(pc, &["globalDefault"])
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            ),
            age(pc, now),
            s(str_at(pc, &["preemptionPolicy"])),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static RUNTIME_CLASS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Handler",
            "string",
            "Container runtime handler that runs pods of this class.",
        ),
        AGE,
    ],
    cells: |rc, now| vec![s(name(rc)), s(str_at(rc, &["handler"])), age(rc, now)],
    conditions: no_conditions,
    list: None,
};

pub static CSR: Spec = Spec {
    columns: &[
        NAME,
        AGE,
        col(
            "SignerName",
            "string",
            "Signer asked to sign the certificate.",
        ),
        col("Requestor", "string", "User that created the request."),
        col(
            "RequestedDuration",
            "string",
            "Validity period asked for the certificate.",
        ),
        col(
            "Condition",
            "string",
            "Approval state of the request, and whether a certificate was issued.",
        ),
    ],
    cells: csr_cells,
    conditions: no_conditions,
    list: None,
};

fn csr_cells(csr: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut approved = false;
    let mut denied = false;
    let mut failed = false;
    for c in list_at(csr, &["status", "conditions"]) {
        match str_at(c, &["type"]) {
            "Approved" => approved = true,
            "Denied" => denied = true,
            "Failed" => failed = true,
            _ => {}
        }
    }
    let mut condition = if denied {
        "Denied"
    } else if approved {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if failed {
        condition.push_str(",Failed");
    }
    if !str_at(csr, &["status", "certificate"]).is_empty() {
        condition.push_str(",Issued");
    }
    let signer = opt_str(csr, &["spec", "signerName"])
        .filter(|v| !v.is_empty())
        .unwrap_or("<none>");
    let requested = match opt_int(csr, &["spec", "expirationSeconds"]) {
        Some(secs) => human_duration(Duration::seconds(secs)),
        None => "<none>".to_string(),
    };
    vec![
        s(name(csr)),
        age(csr, now),
        s(signer),
        s(str_at(csr, &["spec", "username"])),
        s(requested),
        s(condition),
    ]
}

/// Mutating and validating webhook configurations share one layout.
pub static WEBHOOKS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Webhooks",
            "integer",
            "Number of webhooks in the configuration.",
        ),
        AGE,
    ],
    cells: |wh, now| {
        vec![
            s(name(wh)),
            n(list_at(wh, &["webhooks"]).len() as i64),
            age(wh, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    #[test]
    fn lease_shows_holder() {
        let lease = json!({"metadata": {"name": "node1", "creationTimestamp": ago(300)},
            "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 40}});
        assert_eq!(
            Value::Array(cells(&printers::LEASE, &lease)),
            json!(["node1", "node1", "5m"])
        );
        let free = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(cells(&printers::LEASE, &free)[1], "");
    }

    #[test]
    fn pdb_prints_int_or_string_and_na() {
        let pdb = json!({"metadata": {"name": "pdb1", "creationTimestamp": ago(0)},
            "spec": {"minAvailable": 22}, "status": {"disruptionsAllowed": 5}});
        assert_eq!(
            Value::Array(cells(&printers::POD_DISRUPTION_BUDGET, &pdb)),
            json!(["pdb1", "22", "N/A", 5, "0s"])
        );
        let pct = json!({"metadata": {"name": "pdb2"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            Value::Array(cells(&printers::POD_DISRUPTION_BUDGET, &pct)),
            json!(["pdb2", "N/A", "25%", 0, "<unknown>"])
        );
    }

    #[test]
    fn priority_and_runtime_classes() {
        let pc = json!({"metadata": {"name": "pc2", "creationTimestamp": ago(300)},
            "value": 1000000000, "globalDefault": true, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            Value::Array(cells(&printers::PRIORITY_CLASS, &pc)),
            json!(["pc2", 1000000000, true, "5m", "PreemptLowerPriority"])
        );
        let rc = json!({"metadata": {"name": "runc"}, "handler": "runc"});
        assert_eq!(
            Value::Array(cells(&printers::RUNTIME_CLASS, &rc)),
            json!(["runc", "runc", "<unknown>"])
        );
    }

    #[test]
    fn csr_condition_summarises_approval() {
        let pending =
            json!({"metadata": {"name": "csr1", "creationTimestamp": ago(0)}, "spec": {}});
        assert_eq!(
            Value::Array(cells(&printers::CSR, &pending)),
            json!(["csr1", "0s", "<none>", "", "<none>", "Pending"])
        );
        let issued = json!({"metadata": {"name": "csr2"},
            "spec": {"username": "CSR Requestor", "signerName": "example.com/test-signer",
                     "expirationSeconds": 7 * 86400 + 3600},
            "status": {"conditions": [{"type": "Approved"}], "certificate": "LS0tLS1CRUdJTi..."}});
        assert_eq!(
            Value::Array(cells(&printers::CSR, &issued)),
            json!([
                "csr2",
                "<unknown>",
                "example.com/test-signer",
                "CSR Requestor",
                "7d1h",
                "Approved,Issued"
            ])
        );
        let denied = json!({"metadata": {"name": "csr3"},
            "status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}, {"type": "Failed"}]}});
        assert_eq!(cells(&printers::CSR, &denied)[5], "Denied,Failed");
    }

    #[test]
    fn webhook_configurations_count_webhooks() {
        let wh = json!({"metadata": {"name": "w"}, "webhooks": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(
            Value::Array(cells(&printers::WEBHOOKS, &wh)),
            json!(["w", 2, "<unknown>"])
        );
    }
}
