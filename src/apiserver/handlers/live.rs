//! ComponentStatus (`kubectl get cs`): answered at each read, never stored. Upstream probes
//! the scheduler, the controller manager and each etcd server; here they all run inside
//! this process, so a server able to answer has them running: each is reported Healthy.
//! The store stands in for etcd under upstream's name `etcd-0`, so scripts that look for it
//! find it.
//!
//! Invariant: get and list only (the registry gives the type no other verb); the answer
//! depends on nothing stored.

use super::super::request::{Output, Query, ResourceRequest, Verb};
use super::super::response::{self, Body};
use super::super::status::ApiError;
use super::super::ApiState;
use crate::api::selector::LabelSelector;
use crate::api::table;
use http::Response;
use serde_json::{json, Value};

/// Upstream's component names, in upstream's order.
const COMPONENTS: &[&str] = &["controller-manager", "scheduler", "etcd-0"];

const TABLE_CT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The warning upstream sends with every ComponentStatus response (the type's
/// prerelease-lifecycle deprecation).
const DEPRECATED: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// One ComponentStatus as upstream shapes it.
fn component(name: &str) -> Value {
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}],
    })
}

pub fn serve(
    _state: &ApiState,
    rr: &ResourceRequest,
    q: &Query,
    output: Output,
) -> Result<Response<Body>, ApiError> {
    let rt = &rr.rt;
    let items: Vec<Value> = match (rr.verb, rr.name.as_deref()) {
        (Verb::Get, Some(name)) => {
            if !COMPONENTS.contains(&name) {
                return Err(ApiError::not_found(rt, name));
            }
            vec![component(name)]
        }
        (Verb::List, None) => {
            let labels = q
                .label_selector
                .as_deref()
                .map(LabelSelector::parse)
                .transpose()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            COMPONENTS
                .iter()
                .map(|c| component(c))
                // The objects carry no labels: only a selector every empty set matches
                // keeps them.
                .filter(|o| {
                    labels
                        .as_ref()
                        .is_none_or(|l| l.matches(o["metadata"]["labels"].as_object()))
                })
                .collect()
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let single = rr.name.is_some();
    let resp = match output {
        Output::Table => {
            let t = table::table(
                &rt.strategy.printer(rt),
                items.iter(),
                "",
                None,
                None,
                chrono::Utc::now(),
            );
            response::json_typed(200, TABLE_CT, &t)
        }
        // Live objects are answered in JSON (clients that ask for protobuf also accept it).
        Output::PartialMetadata | Output::PartialMetadataProtobuf => {
            let metas: Vec<Value> = items.iter().map(table::partial_object_metadata).collect();
            if single {
                response::json_typed(
                    200,
                    "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
                    &metas[0],
                )
            } else {
                response::json_typed(
                    200,
                    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                            "metadata": {}, "items": metas}),
                )
            }
        }
        Output::Json | Output::Protobuf if single => response::json(200, &items[0]),
        Output::Json | Output::Protobuf => response::json(
            200,
            &json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items}),
        ),
    };
    Ok(crate::apiserver::body::with_warnings(
        resp,
        &[DEPRECATED.to_owned()],
    ))
}
