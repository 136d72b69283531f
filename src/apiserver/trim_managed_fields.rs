//! `metadata.managedFields` cut out of JSON bytes without parsing them into a tree: for
//! in-process callers, which never read managed fields (see [`super::inprocess`]).
//!
//! A pod's managed fields are about a third of its JSON and most of what a typed decode of
//! it allocates (each `fieldsV1` is a tree of maps).
//!
//! Invariant: `json` must be one whole JSON document (an object, a list of them under
//! `items`, or a watch event with one under `object`), as every JSON body and watch event
//! line the API server sends in-process is. The scan stops once an object's `metadata` is
//! behind it (stored objects put `apiVersion` and `kind` before it, and `spec`/`status`
//! after it, unread); a list is read to its end. Bytes that do not scan as JSON this far
//! are passed on unchanged.

use bytes::Bytes;
use std::ops::Range;

const NEEDLE: &[u8] = b"\"managedFields\"";

/// `json` without the `metadata.managedFields` of its object(s); `None` when there is
/// nothing to cut.
pub fn without_managed_fields(json: &[u8]) -> Option<Bytes> {
    memchr::memmem::find(json, NEEDLE)?;
    let mut scan = Scan {
        b: json,
        i: 0,
        cuts: Vec::new(),
        done: false,
    };
    scan.value(Role::Document)?;
    if !scan.done {
        scan.ws();
        if scan.i != json.len() {
            return None;
        }
    }
    if scan.cuts.is_empty() {
        return None;
    }
    let removed: usize = scan.cuts.iter().map(|c| c.len()).sum();
    let mut out = Vec::with_capacity(json.len() - removed);
    let mut from = 0;
    for cut in &scan.cuts {
        out.extend_from_slice(&json[from..cut.start]);
        from = cut.end;
    }
    out.extend_from_slice(&json[from..]);
    Some(Bytes::from(out))
}

/// What a value is to the trimmer, which decides what its members are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The whole body: an object, a list (`items`) or a watch event (`object`).
    Document,
    /// A watch event's object: the scan ends with its `metadata`.
    Object,
    /// A list's `items`: each is an [`Role::Item`].
    Items,
    /// An object of a list: its `metadata` is trimmed and the scan goes on to the next.
    Item,
    /// An object's `metadata`: its `managedFields` member is cut.
    Metadata,
    /// Anything else, skipped.
    Other,
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    /// Byte ranges to leave out, in order.
    cuts: Vec<Range<usize>>,
    /// The document's one object's metadata is behind the cursor: nothing more to cut.
    done: bool,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string starting at the cursor; returns its raw contents (escapes left as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            let at = self.i + memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            if self.b[at] == b'\\' {
                self.i = at + 2;
                continue;
            }
            self.i = at + 1;
            return Some(&self.b[start..at]);
        }
    }

    fn value(&mut self, role: Role) -> Option<()> {
        self.ws();
        match (self.peek()?, role) {
            (b'{', Role::Document | Role::Object | Role::Item | Role::Metadata) => {
                self.object(role)
            }
            (b'[', Role::Items) => {
                self.i += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value(Role::Item)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            _ => self.skip(),
        }
    }

    /// An object whose members are trimmed as `role` says.
    fn object(&mut self, role: Role) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        // Where the comma before the current member is, if it has one.
        let mut comma_before = None;
        loop {
            self.ws();
            let start = self.i;
            let key = self.string()?;
            self.eat(b':')?;
            let member = match (role, key) {
                (Role::Document | Role::Object | Role::Item, b"metadata") => Role::Metadata,
                (Role::Document, b"object") => Role::Object,
                (Role::Document, b"items") => Role::Items,
                _ => Role::Other,
            };
            let cut = role == Role::Metadata && key == b"managedFields";
            self.value(member)?;
            if self.done {
                return Some(());
            }
            if member == Role::Metadata && matches!(role, Role::Document | Role::Object) {
                self.done = true;
                return Some(());
            }
            let end = self.i;
            self.ws();
            let next = self.peek()?;
            if cut {
                // Take one comma with the member: the one after it, else the one before.
                match (next, comma_before) {
                    (b',', _) => self.cuts.push(start..self.i + 1),
                    (_, Some(c)) => self.cuts.push(c..end),
                    (_, None) => self.cuts.push(start..end),
                }
            }
            match next {
                b',' => {
                    comma_before = Some(self.i);
                    self.i += 1;
                }
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Any value, unexamined: strings and brackets are followed, nothing else is checked.
    fn skip(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                // A number or a literal: up to the next delimiter.
                let start = self.i;
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn trimmed(v: &Value) -> Value {
        let bytes = serde_json::to_vec(v).unwrap();
        serde_json::from_slice(&without_managed_fields(&bytes).expect("trimmed")).unwrap()
    }

    fn mf() -> Value {
        json!([{"manager": "m", "operation": "Update", "fieldsV1": {"f:spec": {"f:x": {}}}}])
    }

    #[test]
    fn an_objects_managed_fields_go_wherever_they_are_among_its_metadata() {
        for other in [
            json!({}),
            json!({"a": "1"}),
            json!({"a": "1", "z": [1, {"b": "]"}]}),
        ] {
            let mut meta = other.as_object().unwrap().clone();
            meta.insert("managedFields".into(), mf());
            let obj = json!({"kind": "Pod", "metadata": meta, "spec": {"managedFields": [1]}});
            let want = json!({"kind": "Pod", "metadata": other, "spec": {"managedFields": [1]}});
            assert_eq!(trimmed(&obj), want);
        }
    }

    #[test]
    fn pretty_printed_json_is_trimmed_too() {
        let obj = json!({"metadata": {"name": "p", "managedFields": mf(), "uid": "u"}});
        let bytes = serde_json::to_vec_pretty(&obj).unwrap();
        let out: Value = serde_json::from_slice(&without_managed_fields(&bytes).unwrap()).unwrap();
        assert_eq!(out, json!({"metadata": {"name": "p", "uid": "u"}}));
    }

    #[test]
    fn list_items_and_watch_event_objects_are_trimmed() {
        let item = |n: &str| json!({"metadata": {"name": n, "managedFields": mf()}});
        let bare = |n: &str| json!({"metadata": {"name": n}});
        let list = json!({"kind": "PodList", "metadata": {"resourceVersion": "3"},
                          "items": [item("a"), item("b")]});
        assert_eq!(
            trimmed(&list),
            json!({"kind": "PodList", "metadata": {"resourceVersion": "3"},
                   "items": [bare("a"), bare("b")]})
        );
        let mut line = serde_json::to_vec(&json!({"type": "ADDED", "object": item("a")})).unwrap();
        line.push(b'\n');
        let out = without_managed_fields(&line).unwrap();
        assert!(out.ends_with(b"}\n"));
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out, json!({"type": "ADDED", "object": bare("a")}));
    }

    #[test]
    fn managed_fields_elsewhere_and_strings_that_look_like_them_stay() {
        let obj = json!({
            "metadata": {"name": "x\"managedFields\":[]", "annotations": {"managedFields": "[]"}},
            "data": {"managedFields": "[1]"},
            "spec": {"template": {"metadata": {"managedFields": [2]}}},
        });
        assert!(without_managed_fields(&serde_json::to_vec(&obj).unwrap()).is_none());
    }

    #[test]
    fn a_list_that_does_not_scan_to_its_end_passes_unchanged() {
        let list = json!({"items": [{"metadata": {"managedFields": mf()}}]});
        let whole = serde_json::to_vec(&list).unwrap();
        assert!(without_managed_fields(&whole).is_some());
        for part in [&whole[..whole.len() - 1], &whole[1..]] {
            assert!(without_managed_fields(part).is_none());
        }
        let mut trailing_comma = whole.clone();
        trailing_comma.push(b',');
        assert!(without_managed_fields(&trailing_comma).is_none());
    }

    #[test]
    fn an_objects_spec_and_status_are_not_read() {
        // Stored objects keep their keys sorted: what follows `metadata` is copied unread,
        // so even bytes that are not JSON there pass through as they are.
        let head =
            serde_json::to_vec(&json!({"metadata": {"managedFields": mf(), "n": 1}})).unwrap();
        let mut obj = head[..head.len() - 1].to_vec();
        obj.extend_from_slice(b",\"spec\":{\"managedFields\":[1]}}");
        let out = without_managed_fields(&obj).unwrap();
        assert_eq!(
            &out[..],
            br#"{"metadata":{"n":1},"spec":{"managedFields":[1]}}"#
        );
    }
}
