//! FieldsV1 JSON (`managedFields[].fieldsV1`) edited in place by a [`FieldSet`], with the
//! result [`FieldSet::difference`] / [`FieldSet::union`] followed by
//! [`FieldSet::to_fields_v1`] would give: an Update entry's set changes by a few paths per
//! write, and decoding it into a trie and encoding it back was most of the managed-fields
//! bookkeeping of a pod status write.
//!
//! A node is a JSON object; it is a member when it is `{}` or holds `"."`. Elements are
//! looked up as spelled, which is right for the canonical spelling this server stores.
//! [`spelled`] tells beforehand whether an edit could meet an element spelled otherwise;
//! callers decode the entry instead then.

use serde_json::{Map, Value};

use super::fields::FieldSet;

/// Whether every element of `set` that is not a field name (`k:`, `v:`, `i:`) is found as
/// spelled wherever `raw` holds the node above it: then [`remove`] and [`add`] cannot miss
/// an element spelled another way (field names have one spelling).
pub(crate) fn spelled(raw: &Map<String, Value>, set: &FieldSet) -> bool {
    set.children()
        .all(|(element, child)| match raw.get(element) {
            Some(Value::Object(below)) => spelled(below, child),
            Some(_) => false,
            None => element.starts_with("f:"),
        })
}

/// Removes the exact paths of `set` from the entry's root `node` (a member of `set` stops
/// being a member; what lies below it stays). Returns whether the entry is left empty.
pub(crate) fn remove(node: &mut Map<String, Value>, set: &FieldSet) -> bool {
    remove_below(node, false, set)
}

/// [`remove`] at a node that is a member when `member` (the root never is, though `{}`
/// spells a member elsewhere). Returns whether it is left empty, so its parent drops it.
fn remove_below(node: &mut Map<String, Value>, member: bool, set: &FieldSet) -> bool {
    for (element, child) in set.children() {
        if let Some(Value::Object(below)) = node.get_mut(element.as_str()) {
            let was = is_member(below);
            if remove_below(below, was, child) {
                node.remove(element.as_str());
            }
        }
    }
    normalize(node, member && !set.is_member())
}

/// Adds the paths of `set` to `node`, a member already when `member` (false at an entry's
/// root). Returns whether `node` is empty (only when both were).
pub(crate) fn add(node: &mut Map<String, Value>, member: bool, set: &FieldSet) -> bool {
    for (element, child) in set.children() {
        match node.get_mut(element.as_str()) {
            Some(Value::Object(below)) => {
                let was = is_member(below);
                add(below, was, child);
            }
            _ => {
                let mut below = Map::new();
                if !add(&mut below, false, child) {
                    node.insert(element.clone(), Value::Object(below));
                }
            }
        }
    }
    normalize(node, member || set.is_member())
}

fn is_member(node: &Map<String, Value>) -> bool {
    node.is_empty() || node.contains_key(".")
}

/// Spells `node` as `to_fields_v1` does: `"."` only beside children; a member without
/// children is `{}`. Returns whether it is empty (neither member nor parent).
fn normalize(node: &mut Map<String, Value>, member: bool) -> bool {
    let children = node.keys().any(|k| k != ".");
    match (member, children) {
        (true, true) => {
            node.insert(".".into(), Value::Object(Map::new()));
            false
        }
        (true, false) => {
            node.remove(".");
            false
        }
        (false, true) => {
            node.remove(".");
            false
        }
        (false, false) => {
            node.clear();
            true
        }
    }
}

#[cfg(test)]
#[path = "fields_raw_tests.rs"]
mod tests;
