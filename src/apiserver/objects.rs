//! Object persistence rules shared by every write verb: server-set metadata, defaulting,
//! validation, spec/status separation, generation, resourceVersion preconditions and
//! finalizer-driven deletion.
//!
//! Invariant: every write ends in one atomic read-modify-write inside the store's `mutate`,
//! so the resourceVersion embedded in the stored JSON is exactly the revision the store gave
//! that write, and concurrent writers can never lose each other's updates. Writes that go
//! through admission ([`write_admitted`]) are computed outside the lock and stored only if
//! the object they were computed from is still the stored one.

use super::admission::{Attributes, Operation};
use super::auth::UserInfo;
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::{ResourceType, Subresource};
use crate::api::strategy::Bookkeeping;
use crate::api::validation::{self, FieldError};
use crate::store::{Op, Record};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// RFC 3339 timestamp with second precision, as Kubernetes renders `metav1.Time`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a stored record; a record that is not valid JSON means the store is corrupt.
pub fn parse_record(r: &Record) -> Result<Value, ApiError> {
    serde_json::from_slice(&r.value).map_err(|e| not_json(r, e))
}

fn not_json(r: &Record, e: serde_json::Error) -> ApiError {
    ApiError::internal(format!("stored object {} is not JSON: {e}", r.key))
}

/// The fields `keep` names of a stored record ([`crate::api::pruned`]), or all of it for an
/// empty `keep`: for checks that read a few fields of a large object.
pub fn parse_record_fields(r: &Record, keep: &[&str]) -> Result<Value, ApiError> {
    if keep.is_empty() {
        return parse_record(r);
    }
    crate::api::pruned::parse(&r.value, keep).map_err(|e| not_json(r, e))
}

/// A stored record as the version `rt` serves (writes at one version see the current
/// object at that version, whichever version stored it).
pub fn parse_record_as(rt: &ResourceType, r: &Record) -> Result<Value, ApiError> {
    let mut v = parse_record(r)?;
    if crate::api::conversion::has_shapes_per_version(&v) {
        crate::api::conversion::to_version(&mut v, &rt.api_version());
    }
    Ok(v)
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

fn finalizers_empty(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|a| a.is_empty())
}

/// Serializes with the write's revision as resourceVersion.
pub fn encode(obj: &mut Value, revision: u64) -> Result<Bytes, ApiError> {
    let m = meta_mut(obj);
    m.insert("resourceVersion".into(), json!(revision.to_string()));
    // ObjectMeta's lists and maps are `omitempty` upstream: a patch that removes the last
    // finalizer or owner leaves no `[]` behind (clients test for absence).
    for k in ["finalizers", "ownerReferences", "labels", "annotations"] {
        let empty = match m.get(k) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            _ => false,
        };
        if empty {
            m.remove(k);
        }
    }
    serde_json::to_vec(obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// Options that shape a write.
#[derive(Clone, Default)]
pub struct WriteOptions {
    pub subresource: Option<Subresource>,
    /// A write of the parent through its `scale` subresource (see `recorded_subresource`).
    pub through_scale: bool,
    pub field_manager: String,
    /// A server-side apply: the apply already set the managed fields it owns, so no update
    /// entry is recorded.
    pub server_side_apply: bool,
    /// The requesting user, filled only for kinds whose strategy records it
    /// (`prepare_for_create_by`).
    pub requester: Option<crate::api::requester::Requester>,
}

impl WriteOptions {
    /// The subresource a write's managed-fields entry names (`subresource: status`), as
    /// upstream records every write through one. A scale write is stored as a write of the
    /// parent (`subresource` is `None`) but recorded as `scale`.
    pub fn recorded_subresource(&self) -> Option<&'static str> {
        match self.subresource {
            Some(sub) => Some(sub.name()),
            None if self.through_scale => Some(Subresource::Scale.name()),
            None => None,
        }
    }
}

/// Checks kind/apiVersion of a body against the endpoint and fills them in when absent.
pub fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = rt.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            obj["apiVersion"] = json!(want_av);
        }
        Some(av) => {
            // Another served version of the same resource is accepted (stored as sent,
            // served under the requested version).
            let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            if group != rt.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
            obj["apiVersion"] = json!(want_av);
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(rt.kind),
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )))
        }
    }
    Ok(())
}

/// Checks the namespace of a body against the URL and fills it in.
pub fn check_namespace(
    rt: &ResourceType,
    ns: Option<&str>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let m = meta_mut(obj);
    if rt.namespaced {
        let want = ns.unwrap_or("default");
        match m.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                m.insert("namespace".into(), json!(want));
            }
            Some(have) if have == want => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
        }
    } else {
        m.remove("namespace");
    }
    Ok(())
}

const GENERATE_NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_suffix() -> String {
    (0..5)
        .map(|_| GENERATE_NAME_CHARS[rand::random_range(0..GENERATE_NAME_CHARS.len())] as char)
        .collect()
}

/// The server-set fields and defaults of a new object, before admission and validation.
pub fn prepare_create_unvalidated(
    state: &ApiState,
    rt: &ResourceType,
    ns: Option<&str>,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    check_type(rt, obj)?;
    check_namespace(rt, ns, obj)?;
    {
        let m = meta_mut(obj);
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            if let Some(prefix) = m.get("generateName").and_then(Value::as_str) {
                if !prefix.is_empty() {
                    let generated = format!("{prefix}{}", generated_suffix());
                    m.insert("name".into(), json!(generated));
                }
            }
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            m.remove(k);
        }
    }
    let strategy = rt.strategy;
    if strategy.tracks_generation(obj) {
        meta_mut(obj).insert("generation".into(), json!(1));
    }
    (strategy.prepare_for_create)(obj);
    if let (Some(hook), Some(user)) = (strategy.prepare_for_create_by, &opts.requester) {
        hook(obj, user);
    }
    if strategy.bookkeeping == Bookkeeping::ClusterIp {
        state.services.assign(obj)?;
    }
    strategy.apply_defaults(obj);
    crate::api::schema::apply_defaults(rt, obj);
    if rt.has_subresource(Subresource::Status) {
        (strategy.initial_status)(obj);
    }
    Ok(())
}

/// The last steps of a create, after mutating admission: validation and the create's
/// managed-fields entry.
pub fn finish_create(
    rt: &ResourceType,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    let mut create_only = Vec::new();
    (rt.strategy.validate_create_only)(obj, &mut create_only);
    invalid_if_any(rt, obj, create_only)?;
    validate(rt, obj)?;
    if opts.server_side_apply {
        return Ok(());
    }
    crate::api::patch::record_update(
        None,
        obj,
        &opts.field_manager,
        None,
        &rt.api_version(),
        &now_rfc3339(),
    );
    Ok(())
}

/// Everything that happens to a new object before it is stored (except the revision),
/// without admission: [`prepare_create_unvalidated`] then [`finish_create`].
pub fn prepare_create(
    state: &ApiState,
    rt: &ResourceType,
    ns: Option<&str>,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<(), ApiError> {
    prepare_create_unvalidated(state, rt, ns, obj, opts)?;
    finish_create(rt, obj, opts)
}

/// Runs validation and turns field errors into upstream's 422.
pub fn validate(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let mut errs = rt.strategy.validate_create(obj, rt.namespaced);
    // A custom resource also answers to its CRD's schema.
    if let Some(schema) = rt.custom.as_ref().and_then(|c| c.values.as_ref()) {
        errs.extend(schema.validate(obj));
    }
    invalid_if_any(rt, obj, errs)
}

/// Upstream's 422 for a non-empty list of field errors.
fn invalid_if_any(rt: &ResourceType, obj: &Value, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = name_of(obj);
    let message = validation::format_invalid_message(&rt.qualified_kind(), name, &errs);
    let causes = validation::causes_json(&errs);
    Err(ApiError::invalid(rt, name, message, causes))
}

/// Whether two objects differ outside metadata and status (what bumps generation).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    // Compared in place: copying both objects to strip two keys cost more than the
    // comparison (5% of a pod status patch). Both maps iterate in key order.
    let outside = |(k, _): &(&String, &Value)| k.as_str() != "metadata" && k.as_str() != "status";
    !old.iter().filter(outside).eq(new.iter().filter(outside))
}

/// Applies the update rules to `new` given the stored `old`: immutable metadata, spec/status
/// separation by subresource, resourceVersion precondition, generation, defaulting and
/// validation. Returns the object to store. Without admission:
/// [`prepare_update_unvalidated`] then [`finish_update`].
pub fn prepare_update(
    rt: &ResourceType,
    old: &Value,
    new: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let new = prepare_update_unvalidated(rt, old, new, opts)?;
    finish_update(rt, old, new, opts)
}

/// The update rules up to defaulting (server-owned metadata, spec/status separation,
/// resourceVersion precondition), before admission and validation.
pub fn prepare_update_unvalidated(
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let name = name_of(old).to_owned();
    check_type(rt, &mut new)?;
    let new_name = name_of(&new);
    if !new_name.is_empty() && new_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        )));
    }
    // Precondition: a resourceVersion in the body must match the stored one.
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str() {
        if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() {
            return Err(ApiError::conflict(rt, &name));
        }
    }
    let strategy = rt.strategy;
    let has_status = rt.has_subresource(Subresource::Status);
    let mut new = match opts.subresource {
        Some(Subresource::Status) => {
            (strategy.prepare_for_status_update)(old, &mut new);
            new
        }
        Some(
            sub @ (Subresource::Approval | Subresource::EphemeralContainers | Subresource::Resize),
        ) => {
            (strategy.prepare_for_subresource_update)(sub, old, &mut new);
            new
        }
        Some(Subresource::Finalize) => {
            // Finalize writes change only spec.finalizers.
            let mut merged = old.clone();
            merged["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
            merged
        }
        _ => {
            if has_status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            new
        }
    };
    // Server-owned metadata is carried over from the stored object.
    {
        let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old_meta.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
    }
    strategy.apply_defaults(&mut new);
    crate::api::schema::apply_defaults(rt, &mut new);
    if opts.subresource.is_none() {
        (strategy.prepare_for_update)(old, &mut new);
    }
    Ok(new)
}

/// The last steps of an update, after mutating admission: immutable fields, generation,
/// validation and the managed-fields entry.
pub fn finish_update(
    rt: &ResourceType,
    old: &Value,
    mut new: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let strategy = rt.strategy;
    invalid_if_any(
        rt,
        old,
        strategy.validate_update(opts.subresource, old, &new),
    )?;
    if strategy.tracks_generation(&new) && spec_changed(old, &new) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        meta_mut(&mut new).insert("generation".into(), json!(g));
    }
    validate(rt, &new)?;
    if opts.server_side_apply {
        return Ok(new);
    }
    crate::api::patch::record_update(
        Some(old),
        &mut new,
        &opts.field_manager,
        opts.recorded_subresource(),
        &rt.api_version(),
        &now_rfc3339(),
    );
    Ok(new)
}

/// Result of a write through [`write`]. A created or updated object comes with the JSON
/// it was stored as.
pub enum Written {
    Created(Value, Bytes),
    Updated(Value, Bytes),
    /// Deleted for good: the last state (tombstone) is returned.
    Deleted(Value),
    /// Nothing changed (an update identical to the stored object).
    Unchanged(Value),
}

impl Written {
    pub fn object(&self) -> &Value {
        match self {
            Written::Created(v, _)
            | Written::Updated(v, _)
            | Written::Deleted(v)
            | Written::Unchanged(v) => v,
        }
    }

    /// The JSON bytes [`Written::object`] was just stored as, if it was written.
    pub fn stored_json(&self) -> Option<&Bytes> {
        match self {
            Written::Created(_, stored) | Written::Updated(_, stored) => Some(stored),
            Written::Deleted(_) | Written::Unchanged(_) => None,
        }
    }
}

/// What a write closure decides, given the current object (None when absent).
pub enum Decision {
    /// Store this object (new or changed). `created` tells which.
    Put { obj: Value, created: bool },
    /// Remove the object; the value is its last state.
    Delete(Value),
    /// Leave it as it is and answer with this object.
    Keep(Value),
}

/// How often a write is computed again because the object changed between its read and
/// its store. Upstream's GuaranteedUpdate retries without bound: each lost race means
/// another writer got through. Five was too few under load: a Deployment whose controller
/// wrote its status on every step made `kubectl set image` fail with 409.
const WRITE_ATTEMPTS: usize = 32;
/// Reason of the internal "stored object changed meanwhile" error; never sent to a client.
const RETRY_REASON: &str = "SkiffRetryWrite";

/// Runs one read-modify-write of an object, optimistically (as upstream's GuaranteedUpdate):
/// `decide` runs on the object as read, outside the store's writer lock, and its decision
/// is stored only if the object has not changed since; otherwise `decide` runs again on the
/// new state. Under the lock only the revision check and the encoding remain, so writes
/// computed on both cores wait for each other's commits, not for each other's patches and
/// validation.
pub async fn write<F>(
    state: &ApiState,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
    mut decide: F,
) -> Result<Written, ApiError>
where
    F: FnMut(Option<Value>) -> Result<Decision, ApiError> + Send,
{
    write_from(state, rt, ns, name, dry_run, |cur| decide(cur.cloned())).await
}

/// [`write`] with `decide` borrowing the object as read (no copy for deciders that only
/// read it, such as a patch computed into a new object).
async fn write_from<F>(
    state: &ApiState,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
    mut decide: F,
) -> Result<Written, ApiError>
where
    F: FnMut(Option<&Value>) -> Result<Decision, ApiError> + Send,
{
    let key = rt.key(ns, name);
    for _ in 0..WRITE_ATTEMPTS {
        let (current, read_revision) = read_current(state, rt, &key).await?;
        let decision = decide(current.as_ref())?;
        match store_decision(state, rt, &key, dry_run, read_revision, current, decision).await {
            Err(e) if e.reason == RETRY_REASON => continue,
            r => return r,
        }
    }
    Err(ApiError::conflict(rt, name))
}

/// The object stored at `key`, parsed as `rt`'s version, and the revision it was read at
/// (`None`: absent).
async fn read_current(
    state: &ApiState,
    rt: &ResourceType,
    key: &str,
) -> Result<(Option<Value>, Option<u64>), ApiError> {
    let read = state.store.get(key).await?;
    let current = read.as_ref().map(|r| parse_record_as(rt, r)).transpose()?;
    Ok((current, read.map(|r| r.mod_revision)))
}

/// Like [`write`], but `decide` runs under the store's writer lock, so concurrent writers of
/// the object queue instead of racing: for counters many requests charge at once (a quota's
/// usage, a disruption budget's allowance), where optimistic writers would mostly lose and
/// compute again.
pub async fn write_locked<F>(
    state: &ApiState,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
    decide: F,
) -> Result<Written, ApiError>
where
    F: FnOnce(Option<Value>) -> Result<Decision, ApiError> + Send,
{
    let key = rt.key(ns, name);
    let (written, rev) = state
        .store
        .mutate(
            &key,
            move |cur: Option<&Record>, rev: u64| -> Result<(Op, Written), ApiError> {
                let current = cur.map(|r| parse_record_as(rt, r)).transpose()?;
                let decision = decide(current.clone())?;
                plan(rt, current.as_ref(), decision)?.commit(rev, dry_run)
            },
        )
        .await?;
    if rev.is_some() {
        state.admission.observe_write(rt);
    }
    Ok(written)
}

/// What a decision stores, settled before the revision is known.
enum Planned {
    Unchanged(Value),
    Put { obj: Value, created: bool },
    Delete(Value),
}

/// Settles `decision` against `current`, the stored object it was computed from.
fn plan(
    rt: &ResourceType,
    current: Option<&Value>,
    decision: Decision,
) -> Result<Planned, ApiError> {
    Ok(match decision {
        Decision::Keep(obj) => Planned::Unchanged(obj),
        Decision::Delete(obj) => Planned::Delete(obj),
        Decision::Put { mut obj, created } => {
            // Finalizers gone on an object being deleted: it goes away now, unless it is
            // within a grace period (a pod its kubelet is stopping).
            if !created
                && !obj["metadata"]["deletionTimestamp"].is_null()
                && obj["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(0)
                    == 0
                && finalizers_empty(&obj)
                && spec_finalizers_empty(rt, &obj)
            {
                return Ok(Planned::Delete(obj));
            }
            if let (false, Some(cur)) = (created, current) {
                // A body without resourceVersion still means "same object" here.
                let rv = cur["metadata"]["resourceVersion"].clone();
                meta_mut(&mut obj).insert("resourceVersion".into(), rv);
            }
            if !created && current == Some(&obj) {
                return Ok(Planned::Unchanged(obj));
            }
            Planned::Put { obj, created }
        }
    })
}

impl Planned {
    /// The store operation at revision `rev` (none for a dry run) and what it wrote.
    fn commit(self, rev: u64, dry_run: bool) -> Result<(Op, Written), ApiError> {
        let op = |bytes| if dry_run { Op::None } else { bytes };
        Ok(match self {
            Planned::Unchanged(obj) => (Op::None, Written::Unchanged(obj)),
            Planned::Put { mut obj, created } => {
                let bytes = encode(&mut obj, rev)?;
                let stored = op(Op::Put(bytes.clone()));
                if created {
                    (stored, Written::Created(obj, bytes))
                } else {
                    (stored, Written::Updated(obj, bytes))
                }
            }
            Planned::Delete(mut obj) => {
                let tombstone = encode(&mut obj, rev)?;
                (op(Op::Delete { tombstone }), Written::Deleted(obj))
            }
        })
    }
}

/// Stores `decision`, computed from `current` as read at `read_revision` (`None`: absent),
/// if the stored object is still that one; else fails with [`RETRY_REASON`].
async fn store_decision(
    state: &ApiState,
    rt: &Arc<ResourceType>,
    key: &str,
    dry_run: bool,
    read_revision: Option<u64>,
    current: Option<Value>,
    decision: Decision,
) -> Result<Written, ApiError> {
    let planned = match plan(rt, current.as_ref(), decision)? {
        Planned::Unchanged(obj) => return Ok(Written::Unchanged(obj)),
        p => p,
    };
    let (written, rev) = state
        .store
        .mutate(
            key,
            move |now: Option<&Record>, rev: u64| -> Result<(Op, Written), ApiError> {
                if now.map(|r| r.mod_revision) != read_revision {
                    return Err(ApiError::new(409, RETRY_REASON, "changed"));
                }
                planned.commit(rev, dry_run)
            },
        )
        .await?;
    if rev.is_some() {
        state.admission.observe_write(rt);
    }
    Ok(written)
}

fn spec_finalizers_empty(rt: &ResourceType, obj: &Value) -> bool {
    if rt.strategy.delete.spec_finalizers {
        obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    } else {
        true
    }
}

/// What an admitted write produced: the write, and the warnings admission gave.
pub struct Admitted {
    pub written: Written,
    pub warnings: Vec<String>,
}

/// A create, update, patch or subresource write through the admission chain.
///
/// `compute` turns the stored object (`None` when absent) into a [`Decision`]; a `Put` must
/// hold an object prepared up to defaulting (`prepare_create_unvalidated` /
/// `prepare_update_unvalidated`): validation and managed fields are finished here, after
/// mutating admission. `may_create` says whether `compute` can create (create, apply upsert).
///
/// Like every write ([`write`]), the object is computed (and admitted) outside the store's
/// lock and stored only if the stored object has not changed meanwhile; else it is computed
/// again.
#[allow(clippy::too_many_arguments)]
pub async fn write_admitted<F>(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    user: &UserInfo,
    dry_run: bool,
    opts: &WriteOptions,
    may_create: bool,
    mut compute: F,
) -> Result<Admitted, ApiError>
where
    F: FnMut(Option<&Value>) -> Result<Decision, ApiError> + Send,
{
    let sub = opts.subresource.map(|s| s.name());
    let attrs_for = |op| Attributes::new(op, rt, sub, ns, name, user, dry_run);
    let interested = state.admission.interested(&attrs_for(Operation::Update))
        || (may_create && state.admission.interested(&attrs_for(Operation::Create)));
    if !interested {
        let written = write_from(state, rt, ns, name, dry_run, |cur| {
            let decision = compute(cur)?;
            finish_decision(rt, cur, decision, opts)
        })
        .await?;
        return Ok(Admitted {
            written,
            warnings: Vec::new(),
        });
    }
    let key = rt.key(ns, name);
    for _ in 0..WRITE_ATTEMPTS {
        let (cur, read_revision) = read_current(state, rt, &key).await?;
        let decision = compute(cur.as_ref())?;
        let (mut obj, created) = match decision {
            Decision::Put { obj, created } => (obj, created),
            // Nothing to admit: deletes and no-ops are stored as they are.
            other => {
                let written =
                    store_decision(state, rt, &key, dry_run, read_revision, cur, other).await;
                match written {
                    Err(e) if e.reason == RETRY_REASON => continue,
                    r => {
                        return r.map(|written| Admitted {
                            written,
                            warnings: Vec::new(),
                        })
                    }
                }
            }
        };
        let op = if created {
            Operation::Create
        } else {
            Operation::Update
        };
        let obj_name = name_of(&obj).to_owned();
        let attrs = Attributes::new(op, rt, sub, ns, &obj_name, user, dry_run);
        state
            .admission
            .admit(state, &attrs, &mut obj, cur.as_ref())
            .await?;
        let decision = finish_decision(rt, cur.as_ref(), Decision::Put { obj, created }, opts)?;
        if let Decision::Put { obj, .. } = &decision {
            state
                .admission
                .validate(state, &attrs, Some(obj), cur.as_ref())
                .await?;
        }
        let written = store_decision(state, rt, &key, dry_run, read_revision, cur, decision).await;
        match written {
            Err(e) if e.reason == RETRY_REASON => continue,
            r => {
                return r.map(|written| Admitted {
                    written,
                    warnings: attrs.take_warnings(),
                })
            }
        }
    }
    Err(ApiError::conflict(rt, name))
}

/// A write through a subresource that speaks its own kind over the stored object (`scale`:
/// an autoscaling/v1 Scale over a Deployment), through admission as upstream runs it: the
/// mutating plugins see the requested view and the stored object's view (Scale, old
/// Scale), the admitted view is applied to the object, and the validating plugins see the
/// view of the result. Webhooks registered for `deployments/scale` see Scales; those for
/// `deployments` are not called.
///
/// `view` gives an object's view; `requested` turns the stored view into the one the
/// request asks for (a patch or the sent body); `apply` writes a view into the stored
/// object, returning the updated object prepared up to defaulting.
#[allow(clippy::too_many_arguments)]
pub async fn write_admitted_view<V, R, A>(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    user: &UserInfo,
    dry_run: bool,
    opts: &WriteOptions,
    subresource: Subresource,
    view: V,
    mut requested: R,
    mut apply: A,
) -> Result<Admitted, ApiError>
where
    V: Fn(&Value) -> Value,
    R: FnMut(&Value) -> Result<Value, ApiError>,
    A: FnMut(&Value, &Value) -> Result<Value, ApiError>,
{
    let key = rt.key(ns, name);
    let attrs_for = || {
        Attributes::new(
            Operation::Update,
            rt,
            Some(subresource.name()),
            ns,
            name,
            user,
            dry_run,
        )
    };
    let interested = state.admission.interested(&attrs_for());
    for _ in 0..WRITE_ATTEMPTS {
        let (cur, read_revision) = read_current(state, rt, &key).await?;
        let old = cur.as_ref().ok_or_else(|| ApiError::not_found(rt, name))?;
        let old_view = view(old);
        let mut new_view = requested(&old_view)?;
        let attrs = attrs_for();
        if interested {
            state
                .admission
                .admit(state, &attrs, &mut new_view, Some(&old_view))
                .await?;
        }
        let updated = apply(old, &new_view)?;
        let decision = finish_decision(
            rt,
            Some(old),
            Decision::Put {
                obj: updated,
                created: false,
            },
            opts,
        )?;
        if let (true, Decision::Put { obj, .. }) = (interested, &decision) {
            state
                .admission
                .validate(state, &attrs, Some(&view(obj)), Some(&old_view))
                .await?;
        }
        match store_decision(state, rt, &key, dry_run, read_revision, cur, decision).await {
            Err(e) if e.reason == RETRY_REASON => continue,
            r => {
                return r.map(|written| Admitted {
                    written,
                    warnings: attrs.take_warnings(),
                })
            }
        }
    }
    Err(ApiError::conflict(rt, name))
}

/// Validation and managed fields of a computed `Put`; other decisions pass through.
fn finish_decision(
    rt: &ResourceType,
    cur: Option<&Value>,
    decision: Decision,
    opts: &WriteOptions,
) -> Result<Decision, ApiError> {
    match (decision, cur) {
        (
            Decision::Put {
                mut obj,
                created: true,
            },
            _,
        ) => {
            finish_create(rt, &mut obj, opts)?;
            Ok(Decision::Put { obj, created: true })
        }
        (
            Decision::Put {
                obj,
                created: false,
            },
            Some(old),
        ) => Ok(Decision::Put {
            obj: finish_update(rt, old, obj, opts)?,
            created: false,
        }),
        (Decision::Put { created: false, .. }, None) => Err(ApiError::internal(
            "an update was computed for an object that does not exist",
        )),
        (other, _) => Ok(other),
    }
}

/// Runs the validating admission of a delete of the stored object, if any plugin wants it.
/// The object is read outside the delete itself, as upstream's deletion admission sees the
/// object it is about to delete without holding it.
pub async fn admit_delete(
    state: &Arc<ApiState>,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    user: &UserInfo,
    dry_run: bool,
) -> Result<(), ApiError> {
    let attrs = Attributes::new(Operation::Delete, rt, None, ns, name, user, dry_run);
    if !state.admission.interested(&attrs) {
        return Ok(());
    }
    let Some(rec) = state.store.get(&rt.key(ns, name)).await? else {
        return Ok(());
    };
    let old = parse_record(&rec)?;
    state
        .admission
        .validate(state, &attrs, None, Some(&old))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::Registry;

    fn status_write(plural: &str, group: &str, old: &Value, new: Value) -> Value {
        let rt = Registry::new()
            .lookup(group, "v1", plural)
            .expect("served type");
        let opts = WriteOptions {
            subresource: Some(Subresource::Status),
            field_manager: "test".into(),
            ..Default::default()
        };
        prepare_update(&rt, old, new, &opts).expect("status write accepted")
    }

    #[test]
    fn status_patch_keeps_label_and_annotation_changes_but_not_spec_changes() {
        let old = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "a", "uid": "u", "resourceVersion": "5", "generation": 1},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let mut patched = old.clone();
        patched["metadata"]["labels"] = json!({"team": "x"});
        patched["metadata"]["annotations"] = json!({"note": "y"});
        patched["metadata"]["uid"] = json!("other");
        patched["spec"]["finalizers"] = json!([]);
        let stored = status_write("namespaces", "", &old, patched);
        assert_eq!(stored["metadata"]["labels"], json!({"team": "x"}));
        assert_eq!(stored["metadata"]["annotations"], json!({"note": "y"}));
        assert_eq!(
            stored["metadata"]["uid"], "u",
            "server-owned metadata stays"
        );
        assert_eq!(stored["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(stored["metadata"]["generation"], 1);
    }

    #[test]
    fn deployment_status_patch_keeps_the_stored_labels() {
        let old = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default", "uid": "u", "generation": 1,
                         "labels": {"app": "d"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let mut patched = old.clone();
        patched["metadata"]["labels"] = json!({"app": "other"});
        patched["metadata"]["annotations"] = json!({"note": "y"});
        patched["status"] = json!({"replicas": 1});
        let stored = status_write("deployments", "apps", &old, patched);
        assert_eq!(stored["metadata"]["labels"], json!({"app": "d"}));
        assert_eq!(stored["metadata"]["annotations"], json!({"note": "y"}));
        assert_eq!(stored["status"]["replicas"], 1);
    }

    /// Concurrent read-modify-writes of one object from both cores: each increment is
    /// computed outside the lock, and none is lost (a write computed from a stale read is
    /// computed again); `write_locked` gives the same count by queueing. As many writers as
    /// `WRITE_ATTEMPTS`: an attempt is lost only to another writer's write, and each writes
    /// once, so none runs out of attempts (with 64 a writer could lose 32 races and get a
    /// 409, as one did once on a loaded machine).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_of_one_object_lose_no_update() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let server = crate::apiserver::testing::TestServer::start().await;
        let state = server.state.clone();
        let rt = state
            .registry
            .lookup("", "v1", "configmaps")
            .expect("configmaps");
        let counter = |cur: Option<Value>| -> Result<Decision, ApiError> {
            let mut obj = cur.unwrap_or_else(|| {
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "n", "namespace": "default"}})
            });
            let created = obj["metadata"]["uid"].is_null();
            if created {
                obj["metadata"]["uid"] = json!("u");
            }
            let n = obj["data"]["n"]
                .as_str()
                .unwrap_or("0")
                .parse::<u64>()
                .unwrap_or(0);
            obj["data"] = json!({"n": (n + 1).to_string()});
            Ok(Decision::Put { obj, created })
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..WRITE_ATTEMPTS {
            let (state, rt, calls) = (state.clone(), rt.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    write(&state, &rt, Some("default"), "n", false, |cur| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        counter(cur)
                    })
                    .await
                } else {
                    write_locked(&state, &rt, Some("default"), "n", false, counter).await
                }
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("write");
        }
        let stored = state
            .store
            .get(&rt.key(Some("default"), "n"))
            .await
            .expect("get")
            .expect("stored");
        let obj = parse_record(&stored).expect("parse");
        assert_eq!(obj["data"]["n"], WRITE_ATTEMPTS.to_string());
        assert!(calls.load(Ordering::Relaxed) >= WRITE_ATTEMPTS / 2);
    }
}
