//! Printers of the control-plane kinds: ComponentStatus, APIService, FlowSchema,
//! PriorityLevelConfiguration, ValidatingAdmissionPolicy and its binding.
//!
//! Invariant: each row has the upstream columns and placeholders (`<none>`, `<unset>`,
//! `?`) for the same object.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, get, int_at, list_at, name, opt_str, s, str_at};
use super::{col, no_conditions, Spec, AGE, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

/// The first condition of `conditions` with type `t`.
fn condition<'a>(conds: &'a [Value], t: &str) -> Option<&'a Value> {
    conds.iter().find(|c| c["type"].as_str() == Some(t))
}

pub static COMPONENT_STATUS: Spec = Spec {
    columns: &[
        NAME,
        col("Status", "string", "Status of the component conditions"),
        col("Message", "string", "Message of the component conditions"),
        col("Error", "string", "Error of the component conditions"),
    ],
    cells: |cs, _| {
        let (status, message, error) = match condition(list_at(cs, &["conditions"]), "Healthy") {
            Some(c) => (
                if c["status"].as_str() == Some("True") {
                    "Healthy"
                } else {
                    "Unhealthy"
                },
                c["message"].as_str().unwrap_or_default(),
                c["error"].as_str().unwrap_or_default(),
            ),
            None => ("Unknown", "", ""),
        };
        vec![s(name(cs)), s(status), s(message), s(error)]
    },
    conditions: no_conditions,
    list: None,
};

pub static API_SERVICE: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Service",
            "string",
            "The reference to the service that hosts this API endpoint.",
        ),
        col("Available", "string", "Whether this service is available."),
        AGE,
    ],
    cells: |svc, now| {
        let service = match get(svc, &["spec", "service"]).filter(|v| !v.is_null()) {
            Some(r) => format!(
                "{}/{}",
                r["namespace"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default()
            ),
            None => "Local".to_owned(),
        };
        let available = match condition(list_at(svc, &["status", "conditions"]), "Available") {
            None => "Unknown".to_owned(),
            Some(c) => {
                let status = c["status"].as_str().unwrap_or_default();
                let reason = c["reason"].as_str().unwrap_or_default();
                if status == "True" || reason.is_empty() {
                    status.to_owned()
                } else {
                    format!("{status} ({reason})")
                }
            }
        };
        vec![s(name(svc)), s(service), s(available), age(svc, now)]
    },
    conditions: no_conditions,
    list: None,
};

pub static FLOW_SCHEMA: Spec = Spec {
    columns: &[
        NAME,
        col(
            "PriorityLevel",
            "string",
            "Name of the priority level configuration being referenced.",
        ),
        col(
            "MatchingPrecedence",
            "string",
            "Lower numbers are matched first among the schemas that match a request.",
        ),
        col(
            "DistinguisherMethod",
            "string",
            "How a request's flow is told apart from other flows.",
        ),
        AGE,
        col(
            "MissingPL",
            "string",
            "references a broken or non-existent PriorityLevelConfiguration",
        ),
    ],
    cells: |fs, now| {
        let dangling = condition(list_at(fs, &["status", "conditions"]), "Dangling")
            .and_then(|c| c["status"].as_str())
            .unwrap_or("?");
        vec![
            s(name(fs)),
            s(str_at(fs, &["spec", "priorityLevelConfiguration", "name"])),
            Value::from(int_at(fs, &["spec", "matchingPrecedence"])),
            s(opt_str(fs, &["spec", "distinguisherMethod", "type"]).unwrap_or("<none>")),
            age(fs, now),
            s(dangling),
        ]
    },
    conditions: no_conditions,
    // Upstream prints FlowSchemas in matching order: precedence, then name.
    list: Some(|_, rows| {
        let key = |r: &Value| {
            (
                r["cells"][2].as_i64().unwrap_or(0),
                r["cells"][0].as_str().unwrap_or_default().to_owned(),
            )
        };
        rows.sort_by_key(key);
    }),
};

pub static PRIORITY_LEVEL_CONFIGURATION: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Type",
            "string",
            "Whether requests at this level are limited or exempt.",
        ),
        col(
            "NominalConcurrencyShares",
            "string",
            "Share of the server's concurrency this level is entitled to.",
        ),
        col("Queues", "string", "Number of queues of this level."),
        col(
            "HandSize",
            "string",
            "Queues a flow's requests may be placed in.",
        ),
        col(
            "QueueLengthLimit",
            "string",
            "Requests allowed to wait in one queue.",
        ),
        AGE,
    ],
    cells: |pl, now| {
        let none = || s("<none>");
        let limited = get(pl, &["spec", "limited"]).filter(|v| !v.is_null());
        let (shares, queues, hand, limit) = match limited {
            None => (none(), none(), none(), none()),
            Some(l) => {
                let shares = Value::from(l["nominalConcurrencyShares"].as_i64().unwrap_or(0));
                match l["limitResponse"].get("queuing").filter(|q| !q.is_null()) {
                    Some(q) => (
                        shares,
                        Value::from(q["queues"].as_i64().unwrap_or(0)),
                        Value::from(q["handSize"].as_i64().unwrap_or(0)),
                        Value::from(q["queueLengthLimit"].as_i64().unwrap_or(0)),
                    ),
                    None => (shares, none(), none(), none()),
                }
            }
        };
        vec![
            s(name(pl)),
            s(str_at(pl, &["spec", "type"])),
            shares,
            queues,
            hand,
            limit,
            age(pl, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static VALIDATING_ADMISSION_POLICY: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Validations",
            "integer",
            "Validations indicates the number of validation rules defined in this configuration",
        ),
        col(
            "ParamKind",
            "string",
            "ParamKind specifies the kind of resources used to parameterize this policy",
        ),
        AGE,
    ],
    cells: |p, now| {
        let param_kind = match get(p, &["spec", "paramKind"]).filter(|v| !v.is_null()) {
            Some(k) => format!(
                "{}/{}",
                k["apiVersion"].as_str().unwrap_or_default(),
                k["kind"].as_str().unwrap_or_default()
            ),
            None => "<unset>".to_owned(),
        };
        vec![
            s(name(p)),
            Value::from(list_at(p, &["spec", "validations"]).len() as i64),
            s(param_kind),
            age(p, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static VALIDATING_ADMISSION_POLICY_BINDING: Spec = Spec {
    columns: &[
        NAME,
        col(
            "PolicyName",
            "string",
            "PolicyName indicates the policy definition which the policy binding binded to",
        ),
        col(
            "ParamRef",
            "string",
            "ParamRef indicates the param resource which sets the configuration param",
        ),
        AGE,
    ],
    cells: |b, now| {
        let param = match get(b, &["spec", "paramRef"]).filter(|v| !v.is_null()) {
            None => "<unset>".to_owned(),
            Some(r) => {
                let n = r["name"].as_str().unwrap_or_default();
                let ns = r["namespace"].as_str().unwrap_or_default();
                if !n.is_empty() {
                    if ns.is_empty() {
                        format!("*/{n}")
                    } else {
                        format!("{ns}/{n}")
                    }
                } else if r.get("selector").is_some_and(|s| !s.is_null()) {
                    super::format::selector_string(r.get("selector"))
                        .unwrap_or_else(|_| "<error>".into())
                } else {
                    "<unset>".to_owned()
                }
            }
        };
        vec![
            s(name(b)),
            s(str_at(b, &["spec", "policyName"])),
            s(param),
            age(b, now),
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
    fn component_status_reports_the_healthy_condition() {
        let cs = json!({"metadata": {"name": "scheduler"},
            "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            Value::Array(cells(&printers::COMPONENT_STATUS, &cs)),
            json!(["scheduler", "Healthy", "ok", ""])
        );
    }

    #[test]
    fn api_service_shows_local_and_availability() {
        let svc = json!({"metadata": {"name": "v1.apps", "creationTimestamp": ago(60)},
            "spec": {"group": "apps", "version": "v1"},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(
            Value::Array(cells(&printers::API_SERVICE, &svc)),
            json!(["v1.apps", "Local", "True", "60s"])
        );
        let remote = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
        assert_eq!(
            cells(&printers::API_SERVICE, &remote)[1..3],
            [
                json!("kube-system/metrics-server"),
                json!("False (MissingEndpoints)")
            ]
        );
    }

    #[test]
    fn flow_schemas_and_priority_levels() {
        let fs = json!({"metadata": {"name": "catch-all"}, "spec": {"priorityLevelConfiguration": {"name": "catch-all"},
            "matchingPrecedence": 10000, "distinguisherMethod": {"type": "ByUser"}}});
        assert_eq!(
            Value::Array(cells(&printers::FLOW_SCHEMA, &fs)),
            json!(["catch-all", "catch-all", 10000, "ByUser", "<unknown>", "?"])
        );
        let pl = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt", "exempt": {}}});
        assert_eq!(
            Value::Array(cells(&printers::PRIORITY_LEVEL_CONFIGURATION, &pl)),
            json!([
                "exempt",
                "Exempt",
                "<none>",
                "<none>",
                "<none>",
                "<none>",
                "<unknown>"
            ])
        );
    }

    #[test]
    fn admission_policy_rows() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"validations": [{}, {}]}});
        assert_eq!(
            Value::Array(cells(&printers::VALIDATING_ADMISSION_POLICY, &p)),
            json!(["p", 2, "<unset>", "<unknown>"])
        );
        let b = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": {"name": "x"}}});
        assert_eq!(
            Value::Array(cells(&printers::VALIDATING_ADMISSION_POLICY_BINDING, &b)),
            json!(["b", "p", "*/x", "<unknown>"])
        );
    }
}
