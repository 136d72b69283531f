//! Sets of field paths as server-side apply tracks them, in the FieldsV1 encoding of
//! `metadata.managedFields[].fieldsV1`.
//!
//! A path is a list of path elements spelled as in FieldsV1: `f:<field>` for a map field,
//! `k:{"name":"web"}` for the item of a keyed list (keys sorted, JSON compact), `v:<json>`
//! for the item of a set, and `i:<n>` for a positional item (never produced here, accepted
//! when decoding). A `FieldSet` is a trie of those elements; a node that is itself in the
//! set is a *member* (`".": {}` in FieldsV1 when it also has children).
//!
//! Invariant: every element string is canonical (keys sorted, compact JSON), so two sets
//! built from equal objects compare equal whatever order their maps were written in.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::merge_keys::{self, Field, ListType, Ty};

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// The node at `element` below this one, if anything is recorded there.
    pub fn child(&self, element: &str) -> Option<&FieldSet> {
        self.children.get(element)
    }

    pub fn children(&self) -> impl Iterator<Item = (&String, &FieldSet)> {
        self.children.iter()
    }

    pub fn is_member(&self) -> bool {
        self.member
    }

    pub fn insert(&mut self, path: &[String]) {
        self.node_mut(path).member = true;
    }

    /// The node at `path`, created (as a non-member) where absent. Existing elements are
    /// looked up, not copied: most inserts share all but their last element.
    fn node_mut(&mut self, path: &[String]) -> &mut FieldSet {
        let mut node = self;
        for element in path {
            if !node.children.contains_key(element) {
                node.children.insert(element.clone(), FieldSet::default());
            }
            node = node
                .children
                .get_mut(element)
                .expect("the child was just ensured");
        }
        node
    }

    /// The child at `element`, created (as a non-member) where absent.
    fn child_mut(&mut self, element: String) -> &mut FieldSet {
        self.children.entry(element).or_default()
    }

    /// Adds every path of `other` (the union, in place: `other`'s nodes are moved, not
    /// copied).
    pub fn absorb(&mut self, other: FieldSet) {
        self.member |= other.member;
        for (element, theirs) in other.children {
            match self.children.get_mut(&element) {
                Some(ours) => ours.absorb(theirs),
                None => {
                    self.children.insert(element, theirs);
                }
            }
        }
    }

    /// Removes the paths of `other` (the difference, in place; see [`FieldSet::difference`]).
    pub fn remove(&mut self, other: &FieldSet) {
        self.member &= !other.member;
        for (element, theirs) in &other.children {
            if let Some(ours) = self.children.get_mut(element) {
                ours.remove(theirs);
                if ours.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (element, theirs) in &other.children {
            let merged = match out.children.get(element) {
                Some(ours) => ours.union(theirs),
                None => theirs.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// The paths of `self` that are not paths of `other` (exact paths: removing a member
    /// does not remove what lies below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, ours) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => ours.difference(theirs),
                None => ours.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, ours) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let common = ours.intersection(theirs);
                if !common.is_empty() {
                    out.children.insert(element.clone(), common);
                }
            }
        }
        out
    }

    /// Every member path, in trie order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 JSON of this set.
    #[cfg(test)]
    pub fn to_fields_v1(&self) -> Value {
        self.clone().into_fields_v1()
    }

    /// The FieldsV1 JSON of this set, moving the element strings rather than copying them.
    pub fn into_fields_v1(self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (element, child) in self.children {
            map.insert(element, child.into_fields_v1());
        }
        Value::Object(map)
    }

    /// Reads FieldsV1 JSON; `None` when it is not valid FieldsV1.
    pub fn from_fields_v1(value: &Value) -> Option<FieldSet> {
        let Value::Object(map) = value else {
            return None;
        };
        let mut set = FieldSet {
            member: map.is_empty(),
            children: BTreeMap::new(),
        };
        for (element, child) in map {
            if element == "." {
                set.member = true;
                continue;
            }
            let element = canonical_element(element)?;
            set.children
                .insert(element, FieldSet::from_fields_v1(child)?);
        }
        Some(set)
    }
}

/// Re-spells a FieldsV1 element canonically (key order, JSON spacing).
fn canonical_element(element: &str) -> Option<String> {
    let (prefix, rest) = element.split_at_checked(2)?;
    match prefix {
        "f:" => Some(element.to_owned()),
        "i:" => rest.parse::<u64>().ok().map(|_| element.to_owned()),
        "v:" => serde_json::from_str::<Value>(rest)
            .ok()
            .map(|v| value_element(&v)),
        "k:" => match serde_json::from_str::<Value>(rest).ok()? {
            Value::Object(keys) => Some(key_element(
                keys.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
            )),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn field_element(name: &str) -> String {
    format!("f:{name}")
}

fn value_element(value: &Value) -> String {
    format!("v:{}", canonical_json(value))
}

fn key_element(mut keys: Vec<(&str, Value)>) -> String {
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = keys
        .iter()
        .map(|(name, value)| format!("{}:{}", Value::from(*name), canonical_json(value)))
        .collect();
    format!("k:{{{}}}", body.join(","))
}

/// Compact JSON with object keys sorted, whatever the map's own order.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), canonical_json(v)))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", body.join(","))
        }
        other => other.to_string(),
    }
}

/// The element naming `item` in a list of type `list`, or `None` when the item cannot be
/// identified (an atomic list, a keyed item that is not a map or lacks a key without a
/// default). `strict` also refuses a keyed item missing a key.
pub(crate) fn item_element(item: &Value, list: ListType, strict: bool) -> Option<String> {
    match list {
        ListType::Atomic => None,
        ListType::Set => Some(value_element(item)),
        ListType::Map(keys) => {
            let map = item.as_object()?;
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                match map
                    .get(*key)
                    .cloned()
                    .or_else(|| merge_keys::key_default(key))
                {
                    Some(value) => found.push((*key, value)),
                    None if strict => return None,
                    None => {}
                }
            }
            (!found.is_empty()).then(|| key_element(found))
        }
    }
}

/// The elements of every item of a list, or `None` when some item cannot be identified or
/// two items share one (then the list is handled as atomic).
pub(crate) fn item_elements(items: &[Value], list: ListType) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let element = item_element(item, list, false)?;
        if out.contains(&element) {
            return None;
        }
        out.push(element);
    }
    Some(out)
}

/// Whether a value of `field` is owned as a whole: atomic maps and lists, scalars, nulls.
pub(crate) fn is_leaf(value: &Value, field: &Field) -> bool {
    match value {
        Value::Object(map) => field.ty == Ty::Atomic || map.is_empty(),
        Value::Array(_) => field.list == ListType::Atomic,
        _ => true,
    }
}

/// The set of every field `value` sets, as apply records it for its configuration: leaves
/// and list items are members, maps with content are not.
pub(crate) fn to_field_set(value: &Value, ty: Ty) -> FieldSet {
    let mut set = FieldSet::default();
    if let Value::Object(map) = value {
        walk_map(map, ty, &mut Vec::new(), &mut set);
    }
    set
}

fn walk_map(map: &Map<String, Value>, ty: Ty, path: &mut Vec<String>, set: &mut FieldSet) {
    for (name, value) in map {
        let field = merge_keys::lookup(ty, name);
        path.push(field_element(name));
        walk_value(value, &field, path, set);
        path.pop();
    }
}

fn walk_value(value: &Value, field: &Field, path: &mut Vec<String>, set: &mut FieldSet) {
    if is_leaf(value, field) {
        set.insert(path);
        return;
    }
    match value {
        Value::Object(map) => walk_map(map, field.ty, path, set),
        Value::Array(items) => match item_elements(items, field.list) {
            None => set.insert(path),
            Some(elements) => {
                for (item, element) in items.iter().zip(elements) {
                    path.push(element);
                    set.insert(path);
                    if field.list != ListType::Set {
                        if let Value::Object(map) = item {
                            if field.ty != Ty::Atomic {
                                walk_map(map, field.ty, path, set);
                            }
                        }
                    }
                    path.pop();
                }
            }
        },
        _ => set.insert(path),
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    #[cfg(test)]
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    /// (what was added or modified, what was removed), less the `ignored` paths; the sets
    /// are moved and edited in place, not copied.
    pub fn into_changes(self, ignored: &FieldSet) -> (FieldSet, FieldSet) {
        let (mut changed, mut removed) = (self.added, self.removed);
        changed.absorb(self.modified);
        changed.remove(ignored);
        removed.remove(ignored);
        (changed, removed)
    }
}

/// Compares two versions of an object of type `ty`. Every node of an added or removed
/// subtree is listed, so ownership of all of it moves. `metadata.managedFields` is not a
/// field of the object and is never compared, so callers need not copy objects to strip it.
pub(crate) fn compare(old: Option<&Value>, new: Option<&Value>, ty: Ty) -> Comparison {
    let mut cmp = Comparison::default();
    let empty = Value::Object(Map::new());
    let root = Field {
        ty,
        ..Field::UNKNOWN
    };
    compare_map_values(
        old.unwrap_or(&empty),
        new.unwrap_or(&empty),
        &root,
        &mut Vec::new(),
        &mut cmp,
    );
    cmp
}

fn compare_map_values(
    old: &Value,
    new: &Value,
    field: &Field,
    path: &mut Vec<String>,
    cmp: &mut Comparison,
) {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return;
    };
    let in_metadata = path.len() == 1 && path[0] == "f:metadata";
    let compared = |name: &str| !(in_metadata && name == "managedFields");
    for (name, old_value) in old.iter().filter(|(n, _)| compared(n)) {
        let new_value = new.get(name);
        // Equal values record nothing; checking that first spares building the paths of
        // every untouched field (a status write leaves all of spec and metadata alone).
        if new_value == Some(old_value) {
            continue;
        }
        let child = merge_keys::lookup(field.ty, name);
        path.push(field_element(name));
        compare_values(Some(old_value), new_value, &child, path, cmp);
        path.pop();
    }
    for (name, new_value) in new.iter().filter(|(n, _)| compared(n)) {
        if !old.contains_key(name) {
            let child = merge_keys::lookup(field.ty, name);
            path.push(field_element(name));
            compare_values(None, Some(new_value), &child, path, cmp);
            path.pop();
        }
    }
}

fn compare_values(
    old: Option<&Value>,
    new: Option<&Value>,
    field: &Field,
    path: &mut Vec<String>,
    cmp: &mut Comparison,
) {
    match (old, new) {
        (None, None) => {}
        (None, Some(new)) => {
            mark_subtree(new, field, path, &mut cmp.added);
        }
        (Some(old), None) => {
            mark_subtree(old, field, path, &mut cmp.removed);
        }
        (Some(old), Some(new)) => match (old, new) {
            (Value::Object(_), Value::Object(_)) if field.ty != Ty::Atomic => {
                compare_map_values(old, new, field, path, cmp);
            }
            (Value::Array(_), Value::Array(_)) if field.list != ListType::Atomic => {
                compare_lists(old, new, field, path, cmp);
            }
            _ => {
                if !super::same_value(old, new) {
                    cmp.modified.insert(path);
                }
            }
        },
    }
}

fn compare_lists(
    old: &Value,
    new: &Value,
    field: &Field,
    path: &mut Vec<String>,
    cmp: &mut Comparison,
) {
    let (Value::Array(old_items), Value::Array(new_items)) = (old, new) else {
        return;
    };
    let (Some(old_elements), Some(new_elements)) = (
        item_elements(old_items, field.list),
        item_elements(new_items, field.list),
    ) else {
        if !super::same_value(old, new) {
            cmp.modified.insert(path);
        }
        return;
    };
    let item_field = Field {
        ty: field.ty,
        ..Field::UNKNOWN
    };
    for (old_item, element) in old_items.iter().zip(&old_elements) {
        let new_item = new_elements
            .iter()
            .position(|e| e == element)
            .map(|i| &new_items[i]);
        path.push(element.clone());
        match new_item {
            None => mark_subtree(old_item, &item_field, path, &mut cmp.removed),
            Some(new_item) if field.list == ListType::Set || field.ty == Ty::Atomic => {
                if !super::same_value(old_item, new_item) {
                    cmp.modified.insert(path);
                }
            }
            Some(new_item) => compare_map_values(old_item, new_item, &item_field, path, cmp),
        }
        path.pop();
    }
    for (new_item, element) in new_items.iter().zip(&new_elements) {
        if !old_elements.contains(element) {
            path.push(element.clone());
            mark_subtree(new_item, &item_field, path, &mut cmp.added);
            path.pop();
        }
    }
}

/// Lists a whole subtree that appeared or disappeared: the node itself and everything
/// below it. `metadata`, `spec` and `status` themselves are left out: upstream compares
/// typed objects, which always carry those structs.
///
/// The subtree is built as a trie of its own and grafted at `path` once, rather than
/// inserted path by path from the root.
fn mark_subtree(value: &Value, field: &Field, path: &mut Vec<String>, set: &mut FieldSet) {
    let always_there = matches!(path.as_slice(), [top] if ["f:metadata", "f:spec", "f:status"].contains(&top.as_str()));
    let mut subtree = FieldSet::default();
    mark_node(value, field, !always_there, &mut subtree);
    if !subtree.is_empty() {
        set.node_mut(path).absorb(subtree);
    }
}

/// Marks `value`'s node (a member if it is a leaf, or if `member`) and everything below.
fn mark_node(value: &Value, field: &Field, member: bool, node: &mut FieldSet) {
    let leaf = is_leaf(value, field);
    node.member |= leaf || member;
    if leaf {
        return;
    }
    match value {
        Value::Object(map) => mark_children(map, field.ty, node),
        Value::Array(items) => match item_elements(items, field.list) {
            None => node.member = true,
            Some(elements) => {
                let keyed = field.list != ListType::Set && field.ty != Ty::Atomic;
                for (item, element) in items.iter().zip(elements) {
                    let child = node.child_mut(element);
                    child.member = true;
                    if let (true, Value::Object(map)) = (keyed, item) {
                        mark_children(map, field.ty, child);
                    }
                }
            }
        },
        _ => {}
    }
}

fn mark_children(map: &Map<String, Value>, ty: Ty, node: &mut FieldSet) {
    for (name, child_value) in map {
        let child = merge_keys::lookup(ty, name);
        mark_node(
            child_value,
            &child,
            true,
            node.child_mut(field_element(name)),
        );
    }
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="web"].image`.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        let (prefix, rest) = element.split_at_checked(2).unwrap_or(("", element));
        match prefix {
            "f:" => {
                out.push('.');
                out.push_str(rest);
            }
            "k:" => {
                let keys: Vec<String> = match serde_json::from_str::<Value>(rest) {
                    Ok(Value::Object(map)) => map
                        .iter()
                        .map(|(k, v)| format!("{k}={}", display_value(v)))
                        .collect(),
                    _ => vec![rest.to_owned()],
                };
                out.push_str(&format!("[{}]", keys.join(",")));
            }
            "v:" => {
                let shown = serde_json::from_str::<Value>(rest)
                    .map(|v| display_value(&v))
                    .unwrap_or_else(|_| rest.to_owned());
                out.push_str(&format!("[={shown}]"));
            }
            "i:" => out.push_str(&format!("[{rest}]")),
            _ => out.push_str(element),
        }
    }
    out
}

/// Strings quoted, everything else as JSON.
fn display_value(value: &Value) -> String {
    value.to_string()
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod tests;
