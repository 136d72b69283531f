//! Duplicate keys in a JSON body. serde_json's `Value` keeps the last of two equal keys
//! silently, so the body is parsed here into the same `Value` while noting where keys
//! repeat: one pass, where a second walk over the bytes used to cost as much as the parse
//! (8% of a pod status patch). Only used when the request's field validation is Strict or
//! Warn.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// `body` parsed as serde_json parses it (a repeated key keeps its last value), and the
/// paths (`spec.replicas`, `spec.containers[0].name`) of every key that appears more than
/// once in its object, in document order.
pub fn parse_noting_duplicates(body: &[u8]) -> serde_json::Result<(Value, Vec<String>)> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Noting.deserialize(&mut de)?;
    de.end()?;
    Ok(parsed)
}

/// `prefix` (a key or `[i]`) followed by a path relative to it.
fn join(prefix: &str, rest: &str) -> String {
    if rest.is_empty() {
        prefix.to_owned()
    } else if rest.starts_with('[') {
        format!("{prefix}{rest}")
    } else {
        format!("{prefix}.{rest}")
    }
}

/// Parses one value; its result holds the repeated keys below it, as paths relative to it.
struct Noting;

impl<'de> DeserializeSeed<'de> for Noting {
    type Value = (Value, Vec<String>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Noting {
    type Value = (Value, Vec<String>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        let mut found = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                found.push(key.clone());
            }
            let (value, below) = access.next_value_seed(Noting)?;
            found.extend(below.iter().map(|rest| join(&key, rest)));
            map.insert(key, value);
        }
        Ok((Value::Object(map), found))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        let mut found = Vec::new();
        while let Some((value, below)) = access.next_element_seed(Noting)? {
            let index = format!("[{}]", items.len());
            found.extend(below.iter().map(|rest| join(&index, rest)));
            items.push(value);
        }
        Ok((Value::Array(items), found))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok((Value::Bool(v), Vec::new()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok((Value::from(v), Vec::new()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok((Value::from(v), Vec::new()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok((Value::from(v), Vec::new()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok((Value::String(v.to_owned()), Vec::new()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok((Value::String(v), Vec::new()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((Value::Null, Vec::new()))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok((Value::Null, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicates(body: &[u8]) -> Vec<String> {
        parse_noting_duplicates(body).map_or_else(|_| Vec::new(), |(_, found)| found)
    }

    #[test]
    fn repeated_keys_are_found_with_their_paths_in_document_order() {
        let body = br#"{"spec": {"unknownField": "foo", "replicas": 2, "replicas": 3,
            "template": {"spec": {"containers": [{"name": "a", "name": "b"}]}}},
            "spec": {}}"#;
        assert_eq!(
            duplicates(body),
            [
                "spec.replicas",
                "spec.template.spec.containers[0].name",
                "spec"
            ]
        );
        assert!(duplicates(br#"{"a": {"b": 1}, "c": {"b": 1}}"#).is_empty());
        assert!(duplicates(b"{").is_empty());
    }

    #[test]
    fn the_value_is_what_serde_json_parses_the_last_repeated_key_winning() {
        let body = br#"{"a": [1, -2, 3.5, "x", null, true, {"b": 1, "b": {"c": []}}],
            "a2": {}, "e": "\u00e9\n", "big": 18446744073709551615}"#;
        let (value, found) = parse_noting_duplicates(body).expect("parses");
        let plain: Value = serde_json::from_slice(body).expect("parses");
        assert_eq!(value, plain);
        assert_eq!(found, ["a[6].b"]);
        assert!(parse_noting_duplicates(b"{} x").is_err(), "trailing bytes");
    }

    #[test]
    fn escaped_keys_compare_by_their_text() {
        assert_eq!(duplicates(br#"{"a": 1, "\u0061": 2}"#), ["a"]);
    }
}
