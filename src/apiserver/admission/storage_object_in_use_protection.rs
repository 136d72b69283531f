//! StorageObjectInUseProtection: every new PersistentVolumeClaim gets the
//! `kubernetes.io/pvc-protection` finalizer and every new PersistentVolume the
//! `kubernetes.io/pv-protection` one, which the protection controllers remove once nothing
//! uses the object (`controllers::pvc_protection`, `controllers::pv_protection`).

use super::{Admit, Attributes, Operation, Plugin};
use crate::apiserver::ApiState;
use crate::controllers::{pv_protection, pvc_protection};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct StorageObjectInUseProtection;

impl Plugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.operation == Operation::Create
            && attrs.is_main()
            && (attrs.is("", "persistentvolumeclaims") || attrs.is("", "persistentvolumes"))
    }

    fn admit<'a>(
        &'a self,
        _state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let finalizer = if attrs.is("", "persistentvolumes") {
                pv_protection::FINALIZER
            } else {
                pvc_protection::FINALIZER
            };
            add_finalizer(obj, finalizer);
            Ok(())
        })
    }
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = &mut obj["metadata"];
    match meta["finalizers"].as_array_mut() {
        Some(list) if list.iter().any(|f| f == finalizer) => {}
        Some(list) => list.push(json!(finalizer)),
        None => meta["finalizers"] = json!([finalizer]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_once_beside_others() {
        let mut obj = json!({"metadata": {"name": "c"}});
        add_finalizer(&mut obj, pvc_protection::FINALIZER);
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!([pvc_protection::FINALIZER])
        );
        add_finalizer(&mut obj, pvc_protection::FINALIZER);
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!([pvc_protection::FINALIZER])
        );
        let mut obj = json!({"metadata": {"finalizers": ["a/b"]}});
        add_finalizer(&mut obj, pv_protection::FINALIZER);
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!(["a/b", pv_protection::FINALIZER])
        );
    }
}
