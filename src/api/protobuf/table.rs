//! Shapes of the generated schema table (`schema.rs`) and lookups into it.
//!
//! Invariant: every index stored in the table (field range, message reference, name) is in
//! range; `schema.rs` is generated that way and a unit test checks it, so lookups index
//! directly. Indices never come from request bytes.

use super::schema::{FIELDS, KINDS, MESSAGES, NAMES};

/// Scalar type of a field (or of the values of a map field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    Msg,
}

/// How many values a field holds. `Map` is `map<string, Kind>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Label {
    One,
    Many,
    Map,
}

/// Messages whose JSON form is not an object of their fields (Go types with a custom
/// `MarshalJSON`, or named slice types that protobuf wraps in an `items` message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Special {
    Object,
    Time,
    MicroTime,
    Quantity,
    IntOrString,
    RawJson,
    ListWrapper,
    SchemaOrArray,
    SchemaOrBool,
    SchemaOrStringArray,
}

/// Go field is a pointer: set (present on the wire) means emitted, whatever the value.
const POINTER: u8 = 1;
/// Go `omitempty`: a zero scalar, nil slice or nil map is left out.
const OMITEMPTY: u8 = 2;
/// Go `omitzero`: a zero value (here: a zero `metav1.Time`) is left out.
const OMITZERO: u8 = 4;
/// Go embedded struct with `json:",inline"`: its fields are merged into the parent.
const INLINE: u8 = 8;

#[derive(Clone, Copy, Debug)]
pub(super) struct Field {
    pub tag: u16,
    name: u16,
    pub msg: u16,
    pub kind: Kind,
    pub label: Label,
    flags: u8,
}

/// Table row constructor, short so the generated file stays readable.
pub(super) const fn f(tag: u16, name: u16, kind: Kind, label: Label, msg: u16, flags: u8) -> Field {
    Field {
        tag,
        name,
        msg,
        kind,
        label,
        flags,
    }
}

impl Field {
    pub fn name(&self) -> &'static str {
        NAMES[usize::from(self.name)]
    }
    pub fn pointer(&self) -> bool {
        self.flags & POINTER != 0
    }
    pub fn omitempty(&self) -> bool {
        self.flags & OMITEMPTY != 0
    }
    pub fn omitzero(&self) -> bool {
        self.flags & OMITZERO != 0
    }
    pub fn inline(&self) -> bool {
        self.flags & INLINE != 0
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Message {
    pub start: u16,
    pub len: u8,
    pub special: Special,
}

/// Table row constructor for messages.
pub(super) const fn m(start: u16, len: u8, special: Special) -> Message {
    Message {
        start,
        len,
        special,
    }
}

impl Message {
    pub fn get(index: u16) -> &'static Message {
        &MESSAGES[usize::from(index)]
    }
    pub fn fields(&self) -> &'static [Field] {
        let start = usize::from(self.start);
        &FIELDS[start..start + usize::from(self.len)]
    }
    pub fn field_by_tag(&self, tag: u32) -> Option<(usize, &'static Field)> {
        self.fields()
            .iter()
            .enumerate()
            .find(|(_, f)| u32::from(f.tag) == tag)
    }
}

/// The message of a top-level kind, if `apiVersion`/`kind` is registered.
pub(super) fn kind_message(api_version: &str, kind: &str) -> Option<u16> {
    KINDS
        .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()
        .map(|i| KINDS[i].2)
}

/// Whether any kind is served under `api_version` (options kinds exist in every one).
pub(super) fn known_api_version(api_version: &str) -> bool {
    KINDS.iter().any(|(v, _, _)| *v == api_version)
}

#[cfg(test)]
mod tests {
    use super::super::schema::DELETE_OPTIONS;
    use super::*;

    #[test]
    fn every_index_in_the_schema_table_is_in_range() {
        let mut covered = 0;
        for m in MESSAGES.iter() {
            let end = usize::from(m.start) + usize::from(m.len);
            assert!(end <= FIELDS.len());
            for f in m.fields() {
                assert!(usize::from(f.name) < NAMES.len());
                if f.kind == Kind::Msg {
                    assert!(usize::from(f.msg) < MESSAGES.len());
                }
                if f.inline() {
                    assert_eq!((f.kind, f.label), (Kind::Msg, Label::One));
                }
            }
            covered += usize::from(m.len);
        }
        assert_eq!(
            covered,
            FIELDS.len(),
            "message ranges cover every field once"
        );
        assert!(usize::from(DELETE_OPTIONS) < MESSAGES.len());
        for (_, _, m) in KINDS.iter() {
            assert!(usize::from(*m) < MESSAGES.len());
        }
    }

    #[test]
    fn kinds_are_sorted_for_binary_search() {
        for pair in KINDS.windows(2) {
            assert!((pair[0].0, pair[0].1) < (pair[1].0, pair[1].1), "{pair:?}");
        }
        assert!(kind_message("v1", "Secret").is_some());
        assert!(kind_message("apps/v1", "Deployment").is_some());
        assert!(kind_message("v1", "Deployment").is_none());
    }

    #[test]
    fn omitzero_is_only_used_on_times() {
        for m in MESSAGES.iter() {
            for f in m.fields().iter().filter(|f| f.omitzero()) {
                assert_eq!(f.kind, Kind::Msg, "{}", f.name());
                assert_eq!(Message::get(f.msg).special, Special::Time, "{}", f.name());
            }
        }
    }
}
