//! PersistentVolumeClaimResize: a claim's storage request may grow only when the claim is
//! bound and its StorageClass says `allowVolumeExpansion: true` (upstream's plugin of that
//! name). The default `local-path` class cannot grow a directory's quota, so it does not
//! allow it and such an update is refused here with upstream's message, before anything is
//! stored.

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::api::quantity::Quantity;
use crate::apiserver::ApiState;
use serde_json::Value;
use std::sync::Arc;

pub struct PersistentVolumeClaimResize;

fn storage_request(pvc: &Value) -> Option<Quantity> {
    pvc["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .and_then(|s| Quantity::parse(s).ok())
}

impl Plugin for PersistentVolumeClaimResize {
    fn name(&self) -> &'static str {
        "PersistentVolumeClaimResize"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.operation == Operation::Update
            && attrs.is_main()
            && attrs.is("", "persistentvolumeclaims")
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let (Some(new), Some(old)) = (obj, old) else {
                return Ok(());
            };
            let grows = match (storage_request(new), storage_request(old)) {
                (Some(n), Some(o)) => n > o,
                _ => false,
            };
            if !grows {
                return Ok(());
            }
            if old["status"]["phase"] != "Bound" {
                return Err(attrs.forbidden("Only bound persistent volume claims can be expanded"));
            }
            let class = new["spec"]["storageClassName"].as_str().unwrap_or_default();
            let allows = if class.is_empty() {
                false
            } else {
                support::get(state, "storage.k8s.io", "storageclasses", None, class)
                    .await?
                    .is_some_and(|c| c["allowVolumeExpansion"] == true)
            };
            if !allows {
                return Err(attrs.forbidden(
                    "only dynamically provisioned pvc can be resized and the storageclass \
                     that provisions the pvc must support resize",
                ));
            }
            Ok(())
        })
    }
}
