//! Server-side apply and the `metadata.managedFields` bookkeeping of ordinary writes.
//!
//! `apply` merges an apply configuration into the live object, prunes what the manager
//! stopped applying, detects conflicts with other managers and records the manager's Apply
//! entry. `record_update` records who changed what on a create, update or patch.
//! This is a simplified structured-merge-diff: one API version per kind (no conversion),
//! no cap on the number of Update entries, status treated like any field (a write through
//! a subresource is recorded as its own manager entry, `subresource: status`, as upstream).
//!
//! Invariant: after either call, every entry of `managedFields` owns a non-empty set, no
//! path the object lacks was newly granted, the server-owned metadata (name, namespace,
//! uid, resourceVersion, generation, creationTimestamp, managedFields...) is owned by no
//! one, and the Apply entry of a manager is exactly the set of its last configuration.

use serde_json::{Map, Value};

use super::fields::{self, FieldSet};
use super::fields_raw;
use super::merge_keys::{self, Ty};
use super::{ssa_merge, PatchError};

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";
/// The Update manager that owns everything of an object written before any managedFields
/// existed, so a first apply conflicts with values it did not set (as upstream).
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Server-side apply of configuration `applied` by `manager` onto `live` (`None` when the
/// object does not exist yet: apply creates it), through `subresource` (`status`) or the
/// object itself (`None`). `(group, kind)` selects the list keys
/// (custom resources: none, every list atomic); `api_version` is the request's
/// group/version, e.g. `apps/v1`; `now` the RFC 3339 time for the Apply entry.
///
/// Returns the new object with `metadata.managedFields` updated. The caller still sets
/// server fields (uid, resourceVersion...), defaults and validates it.
#[allow(clippy::too_many_arguments)] // the signature the API server was promised
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
    group: &str,
    kind: &str,
    api_version: &str,
    now: &str,
) -> Result<Value, PatchError> {
    check_configuration(applied, kind, api_version)?;
    let ty = merge_keys::root(group, kind).unwrap_or(Ty::Any);
    let recorded = decode(live.and_then(|l| l.pointer("/metadata/managedFields")));
    let live = live.map(without_managed_fields);
    let mut entries = match live.as_ref() {
        Some(object) if recorded.is_empty() => vec![before_first_apply(object, ty, api_version)],
        _ => recorded,
    };
    let ignored = &*IGNORED_FIELDS;
    let config_set = fields::to_field_set(applied, ty).difference(ignored);
    let mut merged = ssa_merge::merge(
        live.as_ref().unwrap_or(&Value::Object(Map::new())),
        applied,
        ty,
    )?;

    let previous = take_entry(&mut entries, manager, subresource, APPLY, api_version);
    if let Some(previous) = &previous {
        let keep = entries
            .iter()
            .fold(config_set.clone(), |all, e| all.union(&e.set));
        ssa_merge::prune(&mut merged, &previous.set, &keep, ty);
    }

    let (changed, removed) =
        fields::compare(live.as_ref(), Some(&merged), ty).into_changes(ignored);
    let mut conflicts = Vec::new();
    for entry in &entries {
        for path in entry.set.intersection(&changed).paths() {
            conflicts.push((entry.printed(), fields::display_path(&path)));
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by(|a, b| a.0.cmp(&b.0));
        return Err(PatchError::Conflict { conflicts });
    }
    for entry in &mut entries {
        entry.set.remove(&changed);
        entry.set.remove(&removed);
    }
    // An apply that changes nothing keeps its time, so re-applying an unchanged manifest
    // leaves the object byte-for-byte the same (no new resourceVersion, no watch event).
    let unchanged = changed.is_empty() && removed.is_empty();
    let time = match previous {
        Some(previous) if unchanged && previous.time.is_some() => previous.time,
        _ => Some(now.to_owned()),
    };
    entries.push(Entry {
        manager: manager.to_owned(),
        operation: APPLY.to_owned(),
        api_version: api_version.to_owned(),
        time,
        subresource: subresource.map(str::to_owned),
        set: config_set,
    });
    set_managed_fields(
        &mut merged,
        entries.into_iter().map(Slot::Decoded).collect(),
    );
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) by `manager` through `subresource`
/// (`None`: the object itself) in `new`'s `metadata.managedFields`: the manager's Update
/// entry for that subresource (as upstream, a kubelet's status writes are its
/// `subresource: status` entry, apart from its writes of the pod) gains every field whose
/// value was added or changed since `old` (`None` on create) and loses removed ones; other
/// managers lose the fields that changed. The kind comes from `new.kind`, its group from
/// `api_version`. Managed fields sent in `new` replace the stored ones (an empty list
/// resets ownership), as upstream lets clients do.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    api_version: &str,
    now: &str,
) {
    if !new.is_object() {
        return;
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = new
        .get("kind")
        .or_else(|| old.and_then(|o| o.get("kind")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ty = merge_keys::root(group, kind).unwrap_or(Ty::Any);
    let sent = new
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove("managedFields"));
    let stored = old.and_then(|o| o.pointer("/metadata/managedFields"));
    // `compare` skips managedFields, so neither object is copied to strip them.
    let (changed, removed) = fields::compare(old, Some(new), ty).into_changes(&IGNORED_FIELDS);

    let (mut slots, own) = match &sent {
        // Entries the client sent are decoded whole: that checks them.
        Some(sent) if !sent.is_null() && Some(sent) != stored => {
            let mut entries = decode(Some(sent));
            let own = take_entry(&mut entries, manager, subresource, UPDATE, api_version);
            let slots = entries.into_iter().map(Slot::Decoded).collect();
            (slots, own.map_or(Own::Absent, Own::Decoded))
        }
        // The stored entries were encoded here (canonical spelling), so each is edited as
        // JSON: kept as it is when the write took none of its fields, else the few paths
        // that moved are removed or added in place. Decoding every entry into a trie and
        // encoding it back was most of the bookkeeping's cost.
        _ => match stored {
            Some(Value::Array(items)) => StoredEdit {
                changed: &changed,
                removed: &removed,
                touched: changed.union(&removed),
                manager,
                subresource,
                api_version,
                now,
            }
            .slots(items),
            // Nothing stored (every create): no entry to edit, nor their union to build.
            _ => (Vec::new(), Own::Absent),
        },
    };
    for slot in &mut slots {
        if let Slot::Decoded(entry) = slot {
            entry.set.remove(&changed);
            entry.set.remove(&removed);
        }
    }
    let mut own = match own {
        Own::Edited => return set_managed_fields(new, slots),
        Own::Decoded(entry) => entry,
        Own::Absent => Entry {
            manager: manager.to_owned(),
            operation: UPDATE.to_owned(),
            api_version: api_version.to_owned(),
            time: None,
            subresource: subresource.map(str::to_owned),
            set: FieldSet::default(),
        },
    };
    // As upstream, the time moves only when this write took fields.
    if !changed.is_empty() {
        own.time = Some(now.to_owned());
    }
    own.set.remove(&removed);
    own.set.absorb(changed);
    slots.push(Slot::Decoded(own));
    set_managed_fields(new, slots);
}

/// The writer's own Update entry among the stored ones.
enum Own {
    /// Edited in place, already among the slots.
    Edited,
    /// Decoded, still to be updated.
    Decoded(Entry),
    /// None yet.
    Absent,
}

/// How a write's changes are recorded in the stored entries, edited as JSON.
struct StoredEdit<'a> {
    changed: &'a FieldSet,
    removed: &'a FieldSet,
    /// `changed` and `removed` together: what every other manager loses.
    touched: FieldSet,
    manager: &'a str,
    subresource: Option<&'a str>,
    api_version: &'a str,
    now: &'a str,
}

impl StoredEdit<'_> {
    /// The stored entries after the write, but for the writer's own entry when it could
    /// not be edited in place. An entry spelled in a way an edit could misread is decoded
    /// instead (`Slot::Decoded`, still to be updated); an entry `decode` would drop is
    /// dropped.
    fn slots(&self, items: &[Value]) -> (Vec<Slot>, Own) {
        let mut own_state = Own::Absent;
        let mut out = Vec::with_capacity(items.len() + 1);
        for item in items {
            let Some(Value::Object(fields_v1)) = item.get("fieldsV1") else {
                continue;
            };
            let Some(header) = decode_header(item) else {
                continue;
            };
            // Only the first entry of the writer's is its own, as `take_entry` finds it.
            let own = matches!(own_state, Own::Absent)
                && header.belongs_to(self.manager, self.subresource, UPDATE, self.api_version);
            if !own && self.touched.is_empty() {
                out.push(Slot::Kept(item.clone()));
                continue;
            }
            if !fields_raw::spelled(fields_v1, &self.touched) {
                match decode_item(item) {
                    Some(entry) if own => own_state = Own::Decoded(entry),
                    decoded => out.extend(decoded.map(Slot::Decoded)),
                }
                continue;
            }
            let mut item = item.clone();
            let Some(Value::Object(fields_v1)) = item.get_mut("fieldsV1") else {
                continue;
            };
            let empty = if own {
                own_state = Own::Edited;
                fields_raw::remove(fields_v1, self.removed);
                fields_raw::add(fields_v1, false, self.changed)
            } else {
                fields_raw::remove(fields_v1, &self.touched)
            };
            if own && !self.changed.is_empty() {
                item["time"] = Value::from(self.now);
            }
            if !empty {
                out.push(Slot::Kept(item));
            }
        }
        (out, own_state)
    }
}

/// An entry of `managedFields` being rewritten: decoded, or kept as JSON (as stored, or
/// edited in place).
enum Slot {
    Decoded(Entry),
    Kept(Value),
}

impl Slot {
    fn is_empty(&self) -> bool {
        match self {
            Slot::Decoded(e) => e.set.is_empty(),
            Slot::Kept(_) => false,
        }
    }

    /// Upstream's entry order: operation, time, manager, API version, subresource.
    fn order_key(&self) -> (&str, i64, &str, &str, Option<&str>) {
        match self {
            Slot::Decoded(e) => (
                &e.operation,
                e.seconds(),
                &e.manager,
                &e.api_version,
                e.subresource.as_deref(),
            ),
            Slot::Kept(item) => {
                let text = |k: &str| item.get(k).and_then(Value::as_str);
                (
                    text("operation").unwrap_or_default(),
                    seconds(text("time")),
                    text("manager").unwrap_or_default(),
                    text("apiVersion").unwrap_or_default(),
                    text("subresource").filter(|s| !s.is_empty()),
                )
            }
        }
    }

    fn into_json(self) -> Value {
        match self {
            Slot::Decoded(e) => e.into_json(),
            Slot::Kept(item) => item,
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    /// Whether a write by `manager` through `subresource` with `operation` at `api_version`
    /// goes to this entry. Apply entries are one per manager and subresource; Update
    /// entries one per manager, subresource and API version.
    fn belongs_to(
        &self,
        manager: &str,
        subresource: Option<&str>,
        operation: &str,
        api_version: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == APPLY || self.api_version == api_version)
    }

    /// The manager as upstream names it in conflict messages.
    fn printed(&self) -> String {
        let mut out = Value::from(self.manager.as_str()).to_string();
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {}", Value::from(sub.as_str())));
        }
        if self.operation == UPDATE {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn into_json(self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), self.manager.into());
        map.insert("operation".into(), self.operation.into());
        map.insert("apiVersion".into(), self.api_version.into());
        if let Some(time) = self.time {
            map.insert("time".into(), time.into());
        }
        map.insert("fieldsType".into(), "FieldsV1".into());
        map.insert("fieldsV1".into(), self.set.into_fields_v1());
        if let Some(sub) = self.subresource {
            map.insert("subresource".into(), sub.into());
        }
        Value::Object(map)
    }

    /// Seconds since the epoch of `time`, for upstream's entry order.
    fn seconds(&self) -> i64 {
        seconds(self.time.as_deref())
    }
}

/// Removes and returns the entry a write by `manager` through `subresource` with
/// `operation` belongs to.
fn take_entry(
    entries: &mut Vec<Entry>,
    manager: &str,
    subresource: Option<&str>,
    operation: &str,
    api_version: &str,
) -> Option<Entry> {
    let index = entries
        .iter()
        .position(|e| e.belongs_to(manager, subresource, operation, api_version))?;
    Some(entries.remove(index))
}

/// Reads `managedFields`, skipping entries that are not well-formed FieldsV1.
fn decode(managed: Option<&Value>) -> Vec<Entry> {
    let Some(Value::Array(items)) = managed else {
        return Vec::new();
    };
    items.iter().filter_map(decode_item).collect()
}

/// One entry of `managedFields`; `None` when it is not well-formed FieldsV1.
fn decode_item(item: &Value) -> Option<Entry> {
    let mut entry = decode_header(item)?;
    entry.set = FieldSet::from_fields_v1(item.get("fieldsV1")?)?;
    Some(entry)
}

/// An entry's manager, operation, version, time and subresource, its set left empty;
/// `None` for an entry `decode` skips on those.
fn decode_header(item: &Value) -> Option<Entry> {
    let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
    if text("fieldsType").is_some_and(|t| t != "FieldsV1") {
        return None;
    }
    Some(Entry {
        manager: text("manager").unwrap_or_default(),
        operation: text("operation").filter(|o| o == APPLY || o == UPDATE)?,
        api_version: text("apiVersion").unwrap_or_default(),
        time: text("time"),
        subresource: text("subresource").filter(|s| !s.is_empty()),
        set: FieldSet::default(),
    })
}

/// Seconds since the epoch of an entry's `time`, 0 without one.
fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp())
}

/// Writes the entries, sorted as upstream sorts them; no entries means no field.
fn set_managed_fields(object: &mut Value, mut slots: Vec<Slot>) {
    slots.retain(|s| !s.is_empty());
    slots.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    let Value::Object(root) = object else {
        return;
    };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else {
        return;
    };
    if slots.is_empty() {
        metadata.remove("managedFields");
    } else {
        let list = slots.into_iter().map(Slot::into_json).collect();
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}

fn without_managed_fields(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(Value::Object(metadata)) = copy.get_mut("metadata") {
        metadata.remove("managedFields");
    }
    copy
}

fn before_first_apply(live: &Value, ty: Ty, api_version: &str) -> Entry {
    let version = live
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or(api_version);
    Entry {
        manager: BEFORE_FIRST_APPLY.to_owned(),
        operation: UPDATE.to_owned(),
        api_version: version.to_owned(),
        time: None,
        subresource: None,
        set: fields::to_field_set(live, ty).difference(&IGNORED_FIELDS),
    }
}

/// Fields the server owns, which no manager is recorded as owning (upstream's list).
/// [`ignored_fields`], built once: every update consults it.
static IGNORED_FIELDS: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(ignored_fields);

fn ignored_fields() -> FieldSet {
    let mut set = FieldSet::default();
    let f = fields::field_element;
    set.insert(&[f("apiVersion")]);
    set.insert(&[f("kind")]);
    set.insert(&[f("metadata")]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[f("metadata"), f(name)]);
    }
    set
}

/// Refuses configurations upstream refuses: not an object, kind or apiVersion missing or
/// different from the request's, or managedFields set.
fn check_configuration(applied: &Value, kind: &str, api_version: &str) -> Result<(), PatchError> {
    let Value::Object(config) = applied else {
        return Err(PatchError::InvalidApply(
            "the apply configuration must be an object".into(),
        ));
    };
    match config.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            return Err(PatchError::InvalidApply(
                "Object 'Kind' is missing in the apply configuration".into(),
            ))
        }
        Some(k) if k != kind => {
            return Err(PatchError::InvalidApply(format!(
                "the apply configuration has kind {k:?}, but the request is for {kind:?}"
            )))
        }
        Some(_) => {}
    }
    match config.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            return Err(PatchError::InvalidApply(
                "Object 'apiVersion' is missing in the apply configuration".into(),
            ))
        }
        Some(v) if v != api_version => {
            return Err(PatchError::InvalidApply(format!(
            "the apply configuration has apiVersion {v:?}, but the request is for {api_version:?}"
        )))
        }
        Some(_) => {}
    }
    let managed = applied.pointer("/metadata/managedFields");
    if managed.is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(PatchError::InvalidApply(
            "metadata.managedFields must be nil in an apply configuration".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
