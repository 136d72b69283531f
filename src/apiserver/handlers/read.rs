//! get and list, in JSON, Table and PartialObjectMetadata form.
//!
//! Lists without selectors are assembled from the stored bytes without parsing them, which
//! keeps a list of 10,000 objects cheap. Chunked lists are consistent as upstream's: every
//! page after the first is read at the first page's resourceVersion (the store's
//! point-in-time read), and once that revision is compacted the answer is 410 Expired with a
//! token that continues at the current revision.

use super::super::objects::parse_record;
use super::super::request::{Output, Query, ResourceRequest};
use super::super::response::{self, Body};
use super::super::status::ApiError;
use super::super::ApiState;
use crate::api::protobuf::ListWriter;
use crate::api::registry::ResourceType;
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::api::table::{self, Printer};
use crate::store::{Page, Record, StoreError};
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::Response;
use serde_json::{json, Value};

const TABLE_CT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Table printer for a resource type.
pub fn printer(rt: &ResourceType) -> Printer {
    rt.strategy.printer(rt)
}

/// Whether stored objects may differ from what is served: another version's apiVersion
/// (multi-version types), or schema defaults added since they were written (upstream
/// defaults custom resources when reading them from storage too).
fn needs_version_rewrite(state: &ApiState, rt: &ResourceType) -> bool {
    state.registry.version_count(rt) > 1 || crate::api::schema::defaults_on_read(rt)
}

/// The stored bytes of an object as served at the requested version.
pub fn served_bytes(rewrite: bool, rt: &ResourceType, r: &Record) -> Result<Bytes, ApiError> {
    if !rewrite {
        return Ok(r.value.clone());
    }
    let v = served_value(rt, r)?;
    Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
}

pub fn served_value(rt: &ResourceType, r: &Record) -> Result<Value, ApiError> {
    let mut v = parse_record(r)?;
    crate::api::conversion::to_version(&mut v, &rt.api_version());
    crate::api::schema::apply_defaults(rt, &mut v);
    Ok(v)
}

pub async fn get(
    state: &ApiState,
    rr: &ResourceRequest,
    output: Output,
) -> Result<Response<Body>, ApiError> {
    let rt = &rr.rt;
    let name = rr.name.as_deref().unwrap_or_default();
    let rec = state
        .store
        .get(&rt.key(rr.namespace.as_deref(), name))
        .await?
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    match output {
        Output::Json => Ok(response::bytes(
            200,
            "application/json",
            served_bytes(needs_version_rewrite(state, rt), rt, &rec)?,
        )),
        Output::Protobuf => Ok(response::object(200, output, &served_value(rt, &rec)?)),
        Output::PartialMetadataProtobuf => {
            let partial = table::partial_object_metadata(&served_value(rt, &rec)?);
            Ok(response::object(200, Output::Protobuf, &partial))
        }
        Output::Table => {
            let obj = served_value(rt, &rec)?;
            let rv = rec.mod_revision.to_string();
            let t = table::table(&printer(rt), [&obj], &rv, None, None, chrono::Utc::now());
            Ok(response::json_typed(200, TABLE_CT, &t))
        }
        Output::PartialMetadata => {
            let obj = served_value(rt, &rec)?;
            Ok(response::json_typed(
                200,
                "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
                &table::partial_object_metadata(&obj),
            ))
        }
    }
}

/// Parsed label and field selectors of a request (plus the name of a single-object watch).
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    group: String,
    plural: String,
    /// A custom resource's field labels are its object meta plus its CRD version's
    /// `selectableFields`, read by path.
    custom: bool,
}

impl Filter {
    pub fn new(rt: &ResourceType, q: &Query, name: Option<&str>) -> Result<Filter, ApiError> {
        let labels = q
            .label_selector
            .as_deref()
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut field_str = q.field_selector.clone().unwrap_or_default();
        if let Some(n) = name {
            if !field_str.is_empty() {
                field_str.push(',');
            }
            field_str.push_str(&format!("metadata.name={n}"));
        }
        let fields = if field_str.is_empty() {
            None
        } else {
            // Unsupported field labels are refused up front, as upstream does.
            let parsed = FieldSelector::parse(&field_str)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let f = match &rt.custom {
                Some(custom) => {
                    check_custom_field_labels(&parsed, rt.namespaced, &custom.selectable_fields)?;
                    parsed
                }
                None => parsed
                    .transform_for(&rt.group, &rt.plural)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            };
            Some(f)
        };
        Ok(Filter {
            labels,
            fields,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            custom: rt.custom.is_some(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// The value the field selector requires `field` (a canonical field label) to equal, if
    /// it has such a term.
    pub fn field_equals(&self, field: &str) -> Option<&str> {
        self.fields.as_ref()?.requires_exact_match(field)
    }

    /// The label selector, if any.
    pub fn labels(&self) -> Option<&LabelSelector> {
        self.labels.as_ref()
    }

    /// The field selector when it is at most one `field=value` term: `Some(None)` for none,
    /// `Some(Some((field, value)))` for one, `None` for anything else.
    pub fn at_most_one_field_equals(&self) -> Option<Option<(&str, &str)>> {
        match &self.fields {
            None => Some(None),
            Some(f) => f.single_exact_match().map(Some),
        }
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels {
            if !l.matches(obj["metadata"]["labels"].as_object()) {
                return false;
            }
        }
        if let Some(f) = &self.fields {
            let selected = if self.custom {
                f.matches(obj, crate::api::selector::path_value)
            } else {
                f.matches_object(&self.group, &self.plural, obj)
                    .unwrap_or(false)
            };
            if !selected {
                return false;
            }
        }
        true
    }
}

/// Upstream's CR field-label conversion: `metadata.name`, `metadata.namespace` (namespaced
/// kinds only) and the CRD version's selectable fields.
fn check_custom_field_labels(
    selector: &FieldSelector,
    namespaced: bool,
    selectable: &[String],
) -> Result<(), ApiError> {
    for t in selector.terms() {
        let known = t.field == "metadata.name"
            || (namespaced && t.field == "metadata.namespace")
            || selectable.contains(&t.field);
        if !known {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {}",
                t.field
            )));
        }
    }
    Ok(())
}

/// Continue tokens carry the list revision and the last key served. A token without a
/// revision (`rv` -1, as upstream) continues at the current revision: it is what an Expired
/// answer offers once the list's revision is compacted.
fn encode_continue(rv: Option<u64>, last_key: &str) -> String {
    let rv = rv.and_then(|r| i64::try_from(r).ok()).unwrap_or(-1);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rv, "start": last_key}).to_string())
}

fn decode_continue(token: &str) -> Result<(Option<u64>, String), ApiError> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = match v["rv"].as_i64().ok_or_else(bad)? {
        -1 => None,
        rv => Some(
            u64::try_from(rv)
                .ok()
                .filter(|&rv| rv > 0)
                .ok_or_else(bad)?,
        ),
    };
    Ok((rv, v["start"].as_str().ok_or_else(bad)?.to_owned()))
}

/// The records a list serves and the revision they are consistent at: for a continued list
/// the token's revision, so every page shows the first page's snapshot (upstream reads etcd
/// `WithRev`); for `resourceVersionMatch=Exact` the requested one; otherwise now.
async fn read_records(state: &ApiState, prefix: &str, q: &Query) -> Result<Page, ApiError> {
    let store = &state.store;
    if let Some(token) = &q.continue_token {
        if q.resource_version.as_deref().is_some_and(|rv| rv != "0") {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (rv, start) = decode_continue(token)?;
        let page = match rv {
            Some(rv) => store.list_at(prefix, Some(&start), 0, rv).await,
            None => store.list_from(prefix, Some(&start), 0).await,
        };
        return match page {
            Err(StoreError::Compacted { .. }) => {
                Err(ApiError::continue_expired(encode_continue(None, &start)))
            }
            other => Ok(other?),
        };
    }
    if q.resource_version_match.as_deref() == Some("Exact") {
        let rv = q
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse::<u64>().ok())
            .filter(|&rv| rv > 0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" needs a resourceVersion other than \"0\"",
                )
            })?;
        return match store.list_at(prefix, None, 0, rv).await {
            Err(StoreError::Compacted { .. }) => Err(ApiError::list_expired()),
            other => Ok(other?),
        };
    }
    Ok(store.list_from(prefix, None, 0).await?)
}

pub async fn list(
    state: &ApiState,
    rr: &ResourceRequest,
    q: &Query,
    output: Output,
) -> Result<Response<Body>, ApiError> {
    let rt = &rr.rt;
    let filter = Filter::new(rt, q, None)?;
    let page = read_records(state, &rt.namespace_prefix(rr.namespace.as_deref()), q).await?;
    let (mut records, list_rev) = (page.records, page.revision);
    // Keep only matches; parse only when a selector needs the object.
    let mut parsed: Vec<Option<Value>> = Vec::new();
    if !filter.is_empty() {
        let mut kept = Vec::with_capacity(records.len());
        for r in records {
            let v = parse_record(&r)?;
            if filter.matches(&v) {
                parsed.push(Some(v));
                kept.push(r);
            }
        }
        records = kept;
    }
    let mut continue_token = None;
    let mut remaining = None;
    if let Some(limit) = q.limit {
        if records.len() > limit {
            remaining = Some((records.len() - limit) as i64);
            records.truncate(limit);
            parsed.truncate(limit);
            continue_token = records
                .last()
                .map(|r| encode_continue(Some(list_rev), &r.key));
        }
    }
    let rv_str = list_rev.to_string();
    let list_meta = || {
        let mut meta = json!({"resourceVersion": rv_str});
        if let Some(c) = &continue_token {
            meta["continue"] = json!(c);
            meta["remainingItemCount"] = json!(remaining);
        }
        meta
    };
    match output {
        Output::Protobuf | Output::PartialMetadataProtobuf => {
            let partial = output == Output::PartialMetadataProtobuf;
            let capacity = records.iter().map(|r| r.value.len()).sum::<usize>();
            let (api_version, kind) = if partial {
                ("meta.k8s.io/v1".to_owned(), "PartialObjectMetadata")
            } else {
                (rt.api_version(), rt.kind.as_str())
            };
            let mut w = ListWriter::new(&api_version, kind, &list_meta(), capacity)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let mut parsed = parsed.into_iter();
            let rewrite_protobuf = !partial && needs_version_rewrite(state, rt);
            for r in &records {
                // Items carry no type meta in protobuf, and only custom resources have
                // schema defaults (they reach here only as PartialObjectMetadata, whose
                // metadata defaults do not touch): the stored object is what is encoded.
                let v = match parsed.next().flatten() {
                    // Parsed to be selected, and still in the version that stored it.
                    Some(mut v) => {
                        if rewrite_protobuf {
                            crate::api::conversion::to_version(&mut v, &rt.api_version());
                        }
                        v
                    }
                    None => {
                        let mut v = parse_record(r)?;
                        if rewrite_protobuf {
                            crate::api::conversion::to_version(&mut v, &rt.api_version());
                        }
                        v
                    }
                };
                w.push(&v).map_err(|e| ApiError::internal(e.to_string()))?;
            }
            Ok(response::bytes(200, response::PROTOBUF, w.finish()))
        }
        Output::Json => {
            let rewrite = needs_version_rewrite(state, rt);
            let mut buf = BytesMut::with_capacity(
                records.iter().map(|r| r.value.len() + 1).sum::<usize>() + 256,
            );
            buf.put_slice(
                format!("{{\"apiVersion\":\"{}\",\"items\":[", rt.api_version()).as_bytes(),
            );
            for (i, r) in records.iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(&served_bytes(rewrite, rt, r)?);
            }
            let meta = list_meta();
            buf.put_slice(
                format!("],\"kind\":\"{}List\",\"metadata\":{}}}", rt.kind, meta).as_bytes(),
            );
            Ok(response::bytes(200, "application/json", buf.freeze()))
        }
        Output::Table | Output::PartialMetadata => {
            let objs: Vec<Value> = if parsed.is_empty() {
                records
                    .iter()
                    .map(|r| served_value(rt, r))
                    .collect::<Result<_, _>>()?
            } else {
                parsed
                    .into_iter()
                    .flatten()
                    .map(|mut v| {
                        crate::api::conversion::to_version(&mut v, &rt.api_version());
                        v
                    })
                    .collect()
            };
            if output == Output::Table {
                let refs: Vec<&Value> = objs.iter().collect();
                let t = table::table(
                    &printer(rt),
                    refs,
                    &rv_str,
                    continue_token.as_deref(),
                    remaining,
                    chrono::Utc::now(),
                );
                Ok(response::json_typed(200, TABLE_CT, &t))
            } else {
                let items: Vec<Value> = objs.iter().map(table::partial_object_metadata).collect();
                let mut meta = json!({"resourceVersion": rv_str});
                if let Some(c) = &continue_token {
                    meta["continue"] = json!(c);
                }
                Ok(response::json_typed(
                    200,
                    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
                ))
            }
        }
    }
}
