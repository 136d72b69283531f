//! Strategic merge patch, applied the way the API server applies it.
//!
//! Behaviour follows apimachinery's `strategicpatch` in its server mode: maps merge
//! recursively, `null` deletes, lists with a merge key merge item by item, lists of
//! primitives with `patchStrategy:"merge"` merge as deduplicated sets, all other lists are
//! replaced. Directives: `$patch: replace|delete|merge` on maps and list items,
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
//!
//! Invariant: directives never reach the result. Where upstream would copy a patch value
//! verbatim into a place the original lacks, this module merges it into an empty value, so
//! nested directives are honoured and nulls dropped there too.
//!
//! Order of merged lists (as upstream): items named by the patch keep the patch's order,
//! items only the server has keep theirs, and the two are interleaved by the server order;
//! `$setElementOrder` overrides the patch order.

use serde_json::{Map, Value};

use super::merge_keys::{self, Field, Smp, Ty};
use super::{same_value, PatchError};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// Applies strategic merge patch `patch` to `target`, a built-in object of `(group, kind)`
/// (group "" for core). Kinds without compiled-in strategies, custom resources above all,
/// get `PatchError::UnsupportedKind` (upstream answers 415).
pub fn strategic_merge_patch(
    target: &Value,
    patch: &Value,
    group: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let ty = merge_keys::root(group, kind).ok_or_else(|| PatchError::UnsupportedKind {
        group: group.to_owned(),
        kind: kind.to_owned(),
    })?;
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match target {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(PatchError::Malformed(
                "the object to patch is not a JSON object".into(),
            ))
        }
    };
    merge_map(original, patch.clone(), ty, "").map(Value::Object)
}

/// Merges `patch` into `original`, both maps of type `ty` found at `path`.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(PATCH) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, ty, path),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::Malformed(format!(
                    "unknown $patch directive {directive} in the map at {}",
                    shown(path)
                )))
            }
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        retain_keys(&mut original, &patch, &retain, path)?;
    }
    apply_set_element_orders(&mut original, &mut patch, ty, path)?;

    for (key, patch_value) in patch {
        if let Some(list) = key.strip_prefix(DELETE_PRIMITIVES) {
            delete_from_primitive_list(&mut original, list, &patch_value, path)?;
            continue;
        }
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let field = merge_keys::lookup(ty, &key);
        let child = format!("{path}.{key}");
        match original.get_mut(&key) {
            Some(slot) => {
                let old = std::mem::take(slot);
                *slot = merge_value(old, patch_value, &field, &child)?;
            }
            None => {
                let value = fresh_value(patch_value, &field, &child)?;
                original.insert(key, value);
            }
        }
    }
    Ok(original)
}

/// Merges a patch value into an existing value of field `field`.
fn merge_value(
    original: Value,
    patch: Value,
    field: &Field,
    path: &str,
) -> Result<Value, PatchError> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => {
            if field.smp == Smp::Replace {
                merge_map(Map::new(), p, field.ty, path).map(Value::Object)
            } else {
                merge_map(o, p, field.ty, path).map(Value::Object)
            }
        }
        (Value::Array(o), Value::Array(p)) => match field.smp {
            Smp::MergeKey(key) => merge_list(o, p, Some(key), field.ty, path).map(Value::Array),
            Smp::MergePrimitives => merge_list(o, p, None, field.ty, path).map(Value::Array),
            // An atomic list is replaced by the patch's list exactly as sent (as upstream).
            Smp::Default | Smp::Replace => Ok(Value::Array(p)),
        },
        (_, patch) => fresh_value(patch, field, path),
    }
}

/// A patch value placed where the original has nothing to merge with.
fn fresh_value(patch: Value, field: &Field, path: &str) -> Result<Value, PatchError> {
    match patch {
        Value::Object(p) => merge_map(Map::new(), p, field.ty, path).map(Value::Object),
        Value::Array(p) => match field.smp {
            Smp::MergeKey(key) => {
                merge_list(Vec::new(), p, Some(key), field.ty, path).map(Value::Array)
            }
            Smp::MergePrimitives => {
                merge_list(Vec::new(), p, None, field.ty, path).map(Value::Array)
            }
            Smp::Default | Smp::Replace => {
                Ok(strip_directives(Value::Array(p)).unwrap_or(Value::Null))
            }
        },
        other => Ok(other),
    }
}

/// Drops maps carrying `$patch` and null map entries from a value copied into the result.
fn strip_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(PATCH) {
                return None;
            }
            Some(Value::Object(
                map.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .filter_map(|(k, v)| strip_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(strip_directives).collect(),
        )),
        other => Some(other),
    }
}

/// `$retainKeys`: the original keeps only the listed fields, and the patch may only set
/// listed fields.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &str,
) -> Result<(), PatchError> {
    let Value::Array(keep) = retain else {
        return Err(PatchError::Malformed(format!(
            "invalid patch format of $retainKeys at {}: expected a list of field names",
            shown(path)
        )));
    };
    let listed = |name: &str| keep.iter().any(|k| k.as_str() == Some(name));
    for (key, value) in patch {
        let directive = key.starts_with(SET_ORDER) || key.starts_with(DELETE_PRIMITIVES);
        if !value.is_null() && !directive && !listed(key) {
            return Err(PatchError::Malformed(format!(
                "invalid patch format of $retainKeys at {}: field {key:?} is set but not listed",
                shown(path)
            )));
        }
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    list: &str,
    patch_value: &Value,
    path: &str,
) -> Result<(), PatchError> {
    let Value::Array(doomed) = patch_value else {
        return Err(PatchError::Malformed(format!(
            "invalid patch format of {DELETE_PRIMITIVES}{list} at {}: expected a list",
            shown(path)
        )));
    };
    // A list the original lacks stays absent: deleting from nothing adds nothing.
    if let Some(Value::Array(items)) = original.get_mut(list) {
        items.retain(|item| !doomed.iter().any(|d| same_value(item, d)));
    }
    Ok(())
}

/// Handles every `$setElementOrder/<list>` of `patch`: merges that list (removing it from
/// the patch so the main loop skips it) and orders the result by the directive.
fn apply_set_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
    path: &str,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let order = patch.remove(&directive).unwrap_or_default();
        let name = &directive[SET_ORDER.len()..];
        let Value::Array(order) = order else {
            return Err(PatchError::Malformed(format!(
                "invalid patch format of {directive} at {}: expected a list",
                shown(path)
            )));
        };
        if name.is_empty() {
            return Err(PatchError::Malformed(format!(
                "invalid patch format of {directive} at {}: no list named",
                shown(path)
            )));
        }
        let field = merge_keys::lookup(ty, name);
        let key = match field.smp {
            Smp::MergeKey(key) => Some(key),
            _ => None,
        };
        let child = format!("{path}.{name}");
        let server_order = match original.get(name) {
            Some(Value::Array(items)) => Some(items.clone()),
            _ => None,
        };
        let patch_list = match patch.remove(name) {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(Value::Null) => {
                // Deleting the list outright leaves nothing to order.
                original.remove(name);
                continue;
            }
            Some(_) => {
                return Err(PatchError::Malformed(format!(
                    "{} must be a list to go with {directive}",
                    shown(&child)
                )))
            }
        };
        if let Some(items) = &patch_list {
            check_order_matches_patch(items, &order, key, &child)?;
        }
        let merged = match (server_order.clone(), patch_list) {
            (Some(o), None) => o,
            (None, Some(p)) => match fresh_value(Value::Array(p), &field, &child)? {
                Value::Array(items) => items,
                _ => Vec::new(),
            },
            (Some(o), Some(p)) => {
                match merge_value(Value::Array(o), Value::Array(p), &field, &child)? {
                    Value::Array(items) => items,
                    _ => Vec::new(),
                }
            }
            (None, None) => continue,
        };
        let (ordered, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| position(&order, item, key).is_some());
        let server_order = server_order.unwrap_or_default();
        let items = interleave(ordered, server_only, &order, &server_order, key);
        original.insert(name.to_owned(), Value::Array(items));
    }
    Ok(())
}

/// The items of a patch list must appear in `$setElementOrder` in the same relative order.
fn check_order_matches_patch(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &str,
) -> Result<(), PatchError> {
    let mut wanted = patch_list
        .iter()
        .filter(|item| !item.as_object().is_some_and(|m| m.contains_key(PATCH)))
        .peekable();
    for entry in order {
        match wanted.peek() {
            Some(item) if identity(item, key) == identity(entry, key) => {
                wanted.next();
            }
            Some(_) => {}
            None => break,
        }
    }
    if wanted.peek().is_some() {
        return Err(PatchError::Unprocessable(format!(
            "the order in the patch list {} doesn't match its $setElementOrder list",
            shown(path)
        )));
    }
    Ok(())
}

/// Merges two lists that `patchStrategy:"merge"` declares mergeable: by `key` for maps,
/// as a set for primitives.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: Option<&str>,
    item_ty: Ty,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let maps = items_are_maps(&original, &patch, path)?;
    if !maps {
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(&patch) {
            if !merged.iter().any(|m| same_value(m, item)) {
                merged.push(item.clone());
            }
        }
        let (from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| position(&patch, item, None).is_some());
        return Ok(interleave(from_patch, server_only, &patch, &original, None));
    }
    let key = key.ok_or_else(|| {
        PatchError::Unprocessable(format!(
            "cannot merge lists without merge key for {}",
            shown(path)
        ))
    })?;

    // Items carrying `$patch` act on the whole list before any merging.
    let mut original = original;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let directive = item.get(PATCH).cloned();
        match directive.as_ref().map(|d| d.as_str()) {
            None => plain.push(item),
            Some(Some("delete")) => {
                let wanted = merge_key_of(&item, key, path)?.clone();
                original.retain(|o| !o.get(key).is_some_and(|v| same_value(v, &wanted)));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                return Err(PatchError::Malformed(format!(
                    "$patch: merge is not supported in the items of list {}",
                    shown(path)
                )))
            }
            Some(_) => {
                return Err(PatchError::Malformed(format!(
                    "unknown $patch directive {} in an item of list {}",
                    directive.unwrap_or_default(),
                    shown(path)
                )))
            }
        }
    }
    if replace {
        return plain
            .into_iter()
            .map(|item| fresh_item(item, item_ty, path))
            .collect();
    }

    let server_order = original.clone();
    let mut merged = original;
    for item in &plain {
        let wanted = merge_key_of(item, key, path)?;
        let found = merged
            .iter()
            .position(|o| o.get(key).is_some_and(|v| same_value(v, wanted)));
        match found {
            Some(i) => {
                let old = std::mem::take(&mut merged[i]);
                merged[i] = match (old, item.clone()) {
                    (Value::Object(o), Value::Object(p)) => {
                        Value::Object(merge_map(o, p, item_ty, path)?)
                    }
                    (_, p) => fresh_item(p, item_ty, path)?,
                };
            }
            None => merged.push(fresh_item(item.clone(), item_ty, path)?),
        }
    }
    let (from_patch, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(&plain, item, Some(key)).is_some());
    Ok(interleave(
        from_patch,
        server_only,
        &plain,
        &server_order,
        Some(key),
    ))
}

fn fresh_item(item: Value, item_ty: Ty, path: &str) -> Result<Value, PatchError> {
    match item {
        Value::Object(p) => merge_map(Map::new(), p, item_ty, path).map(Value::Object),
        other => Ok(other),
    }
}

/// Whether the items of a mergeable list are maps; mixing kinds or nesting lists is an error.
fn items_are_maps(original: &[Value], patch: &[Value], path: &str) -> Result<bool, PatchError> {
    let mut maps = None;
    for item in original.iter().chain(patch) {
        if item.is_array() {
            return Err(PatchError::Unprocessable(format!(
                "lists of lists are not supported (at {})",
                shown(path)
            )));
        }
        let is_map = item.is_object();
        if maps.is_some_and(|m| m != is_map) {
            return Err(PatchError::Unprocessable(format!(
                "the list {} mixes maps and other values",
                shown(path)
            )));
        }
        maps = Some(is_map);
    }
    Ok(maps.unwrap_or(false))
}

fn merge_key_of<'a>(item: &'a Value, key: &str, path: &str) -> Result<&'a Value, PatchError> {
    item.get(key).ok_or_else(|| {
        PatchError::Unprocessable(format!(
            "map: {item} does not contain declared merge key: {key} (list {})",
            shown(path)
        ))
    })
}

/// What identifies a list item: its merge key value for maps, the item itself otherwise.
fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let wanted = identity(item, key);
    list.iter()
        .position(|entry| match (identity(entry, key), wanted) {
            (Some(a), Some(b)) => same_value(a, b),
            (None, None) => true,
            _ => false,
        })
}

/// Orders a merged list: `from_patch` by `patch_order`, `server_only` by `server_order`,
/// then a server-only item goes before a patch item only when the server order puts it
/// there (so new items come first unless the order says otherwise, as upstream).
fn interleave(
    mut from_patch: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let rank = |order: &[Value], item: &Value| position(order, item, key).unwrap_or(usize::MAX);
    from_patch.sort_by_key(|item| rank(patch_order, item));
    server_only.sort_by_key(|item| rank(server_order, item));

    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    position(server_order, l, key),
                    position(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// A path for messages: the root is shown as ".".
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
