//! Duplicate keys in a JSON body. serde_json's `Value` keeps the last of two equal keys
//! silently, so a second, value-less pass over the raw bytes records where keys repeat.
//! Only run when the request's field validation is Strict or Warn.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Paths (`spec.replicas`, `spec.containers[0].name`) of every key that appears more than
/// once in its object, in document order. Malformed JSON gives no paths: the real decode
/// reports the syntax error.
pub fn duplicate_json_fields(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk {
        stack: &mut stack,
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// One step of the path to the value being walked. Keys borrow from the body (unless they
/// contain escapes), so a body without duplicates costs no string allocation.
enum Seg<'de> {
    Key(Cow<'de, str>),
    Index(usize),
}

fn render(stack: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in stack {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A map key, borrowed from the body when it has no escapes (serde's own `Cow` impl
/// always copies).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

struct Walk<'a, 'de> {
    stack: &'a mut Vec<Seg<'de>>,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let repeated = !seen.insert(key.clone());
            self.stack.push(Seg::Key(key));
            if repeated {
                self.found.push(render(self.stack));
            }
            let r = map.next_value_seed(Walk {
                stack: self.stack,
                found: self.found,
            });
            self.stack.pop();
            r?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            self.stack.push(Seg::Index(i));
            let r = seq.next_element_seed(Walk {
                stack: self.stack,
                found: self.found,
            });
            self.stack.pop();
            if r?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_found_with_their_paths_in_document_order() {
        let body = br#"{"spec": {"unknownField": "foo", "replicas": 2, "replicas": 3,
            "template": {"spec": {"containers": [{"name": "a", "name": "b"}]}}},
            "spec": {}}"#;
        assert_eq!(
            duplicate_json_fields(body),
            [
                "spec.replicas",
                "spec.template.spec.containers[0].name",
                "spec"
            ]
        );
        assert!(duplicate_json_fields(br#"{"a": {"b": 1}, "c": {"b": 1}}"#).is_empty());
        assert!(duplicate_json_fields(b"{").is_empty());
    }

    #[test]
    fn escaped_keys_compare_by_their_text() {
        assert_eq!(duplicate_json_fields(br#"{"a": 1, "\u0061": 2}"#), ["a"]);
    }
}
