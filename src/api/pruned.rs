//! Parsing only some fields of a stored object: checks that read a few fields of a large
//! object (a pod's uid and node for a token, a node's uid) get a JSON tree of just those,
//! and serde skips the rest without allocating (a whole pod parsed twice per token request
//! was most of the request's cost under `bench.sh scale`).
//!
//! Invariant: the tree holds every kept field exactly as a full parse would (same value,
//! same place), and nothing else; kept paths whose parents are not objects are absent.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// `bytes` (a JSON object) parsed to a tree holding only the fields at `keep`, each a
/// dotted path (`"metadata.uid"`, `"spec.volumes"`: the whole value under it is kept).
pub fn parse(bytes: &[u8], keep: &[&str]) -> serde_json::Result<Value> {
    let paths: Vec<Vec<&str>> = keep.iter().map(|p| p.split('.').collect()).collect();
    let refs: Vec<&[&str]> = paths.iter().map(Vec::as_slice).collect();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Keep(&refs).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Keeps, of the value it reads, the fields the remaining `paths` name; an empty path keeps
/// the whole value.
struct Keep<'p, 'k>(&'p [&'k [&'k str]]);

impl<'de> DeserializeSeed<'de> for Keep<'_, '_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.iter().any(|p| p.is_empty()) {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Keep<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let rest: Vec<&[&str]> = self
                .0
                .iter()
                .filter(|p| p.first() == Some(&key.as_ref()))
                .map(|p| &p[1..])
                .collect();
            if rest.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let v = map.next_value_seed(Keep(&rest))?;
            // A parent kept only for its children is dropped when none of them was there
            // (or it is not an object).
            let parent_only = rest.iter().all(|p| !p.is_empty());
            let nothing_kept = v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
            if !(parent_only && nothing_kept) {
                out.insert(key.into_owned(), v);
            }
        }
        Ok(Value::Object(out))
    }

    // Anything but an object has no fields to keep.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a full parse shows at each kept path.
    fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
        path.split('.').fold(v, |v, k| &v[k])
    }

    #[test]
    fn kept_fields_are_as_a_full_parse_reads_them_and_nothing_else_is_there() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u-1", "labels": {"a": "b"},
                         "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                     "volumes": [{"name": "t", "projected": {"sources": [
                         {"serviceAccountToken": {"audience": "x", "path": "t"}}]}}],
                     "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}]},
        });
        let bytes = serde_json::to_vec(&pod).unwrap();
        let keep = [
            "metadata.uid",
            "metadata.deletionTimestamp",
            "spec.nodeName",
            "spec.volumes",
            "status.phase.deeper",
        ];
        let v = parse(&bytes, &keep).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"uid": "u-1"},
                   "spec": {"nodeName": "n1", "volumes": pod["spec"]["volumes"]}})
        );
        for path in keep {
            assert_eq!(at(&v, path), at(&pod, path), "{path}");
        }
    }

    #[test]
    fn a_record_that_is_not_json_is_an_error() {
        assert!(parse(b"{\"metadata\": ", &["metadata.uid"]).is_err());
        assert!(parse(b"{} trailing", &["metadata.uid"]).is_err());
        assert_eq!(parse(b"[1, 2]", &["metadata"]).unwrap(), Value::Null);
    }
}
