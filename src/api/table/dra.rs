//! resource.k8s.io printers: DeviceClass, ResourceClaim, ResourceClaimTemplate and
//! ResourceSlice.
//!
//! Invariant: a claim's State lists `deleted`, then `pending` or `allocated[,reserved]`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, deleting, has, list_at, name, s, str_at};
use super::{col, no_conditions, Spec, AGE, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

pub static DEVICE_CLASS: Spec = Spec {
    columns: &[NAME, AGE],
    cells: |c, now| vec![s(name(c)), age(c, now)],
    conditions: no_conditions,
    list: None,
};

pub static RESOURCE_CLAIM_TEMPLATE: Spec = Spec {
    columns: &[NAME, AGE],
    cells: |c, now| vec![s(name(c)), age(c, now)],
    conditions: no_conditions,
    list: None,
};

/// Upstream's `resourceClaimState`.
fn claim_state(claim: &Value) -> String {
    let mut states = Vec::new();
    let deleted = deleting(claim);
    if deleted {
        states.push("deleted");
    }
    if !has(claim, &["status", "allocation"]) {
        if !deleted {
            states.push("pending");
        }
    } else {
        states.push("allocated");
        if !list_at(claim, &["status", "reservedFor"]).is_empty() {
            states.push("reserved");
        }
    }
    states.join(",")
}

pub static RESOURCE_CLAIM: Spec = Spec {
    columns: &[
        NAME,
        col(
            "State",
            "string",
            "A summary of the current state (allocated, pending, reserved, etc.).",
        ),
        AGE,
    ],
    cells: |c, now| vec![s(name(c)), s(claim_state(c)), age(c, now)],
    conditions: no_conditions,
    list: None,
};

pub static RESOURCE_SLICE: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Node",
            "string",
            "Node the devices of the slice are local to.",
        ),
        col("Driver", "string", "Driver that publishes the slice."),
        col("Pool", "string", "Name of the pool the slice belongs to."),
        AGE,
    ],
    cells: |sl, now| {
        vec![
            s(name(sl)),
            s(str_at(sl, &["spec", "nodeName"])),
            s(str_at(sl, &["spec", "driver"])),
            s(str_at(sl, &["spec", "pool", "name"])),
            age(sl, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::cells;
    use serde_json::json;

    #[test]
    fn claim_state_summarises_allocation() {
        let pending = json!({"metadata": {"name": "c"}});
        assert_eq!(cells(&printers::RESOURCE_CLAIM, &pending)[1], "pending");
        let reserved =
            json!({"metadata": {"name": "c"}, "status": {"allocation": {}, "reservedFor": [{}]}});
        assert_eq!(
            cells(&printers::RESOURCE_CLAIM, &reserved)[1],
            "allocated,reserved"
        );
    }
}
